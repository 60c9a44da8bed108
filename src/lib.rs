//! phi-gateway: a TLS 1.3-only reverse proxy that enforces audit headers and blocks
//! unencrypted PHI before it reaches an EHR service.
//!
//! Module map (one job each):
//! - [`config`]: `gateway.yaml` → validated [`config::GatewayConfig`];
//! - [`rules`]: rule YAML → compiled [`rules::RuleSet`];
//! - [`engine`]: decoding, normalisation and scanning (pure: no pingora, no sockets);
//! - [`policy`]: modes, decisions and reasons;
//! - [`proxy`]: the pingora `ProxyHttp` implementation (thin); [`deadline`]: the request-head
//!   deadline around it (slowloris);
//! - [`admin`], [`metrics`], [`logging`]: observability;
//! - [`audit`]: the tamper-evident audit trail (records, signed checkpoints, verify);
//! - [`tls`]: TLS 1.3-only provider, certificates, development CA;
//! - [`server`]: wiring and lifecycle; [`preface`]: the HTTP/2 preface deadline;
//!   [`demo`]: the sample EHR and demo setup;
//! - [`yaml`]: YAML parsing with file:line:field errors.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod audit;
pub mod config;
pub mod deadline;
pub mod demo;
pub mod engine;
pub mod logging;
pub mod metrics;
pub mod policy;
pub mod preface;
pub mod proxy;
pub mod reload;
pub mod rules;
pub mod server;
pub mod tls;
pub mod yaml;

/// Source revision baked in at build time (`PHI_GATEWAY_REVISION`), or `unknown`.
pub const REVISION: &str = match option_env!("PHI_GATEWAY_REVISION") {
    Some(r) => r,
    None => "unknown",
};
