//! phi-gateway: a TLS 1.3-only reverse proxy that enforces audit headers and blocks
//! unencrypted PHI before it reaches an EHR service.
//!
//! The folders are the architecture. Each may use only the folders listed before it, so there
//! are no import circles (`tests/layout.rs` checks it):
//! - [`engine`]: detection: decoding, normalisation, the rule language and its compiler,
//!   validators, scanning. Pure: no pingora, no tokio, no sockets.
//! - [`telemetry`]: the Prometheus registry every capability counts into.
//! - [`verdict`]: decisions and reasons, the vocabulary one request's outcome is recorded in.
//! - [`config`]: `gateway.yaml` → validated [`config::GatewayConfig`].
//! - [`state`]: shared state (memory, or Redis for a fleet): sessions, and issue 12's counters.
//! - [`access`]: identity (validated bearer JWTs) and access control.
//! - [`audit`]: the tamper-evident audit trail (records, signed checkpoints, sinks, verify).
//! - [`access`]: who may do what: SMART scopes, FHIR interactions, the patient compartment,
//!   the YAML access policy.
//! - [`defence`]: runtime defence (issue 12): access-anomaly detection (per-principal
//!   baselines over a sliding window), containment (the fleet's suspension list) and incident
//!   alert delivery by webhook.
//! - [`gateway`]: the pingora hooks, the checks they call, the request snapshot, the listener
//!   wrappers (TLS 1.3 only, head deadline, HTTP/2 preface deadline).
//! - [`runtime`]: the process: build and run, reload, admin listener, logging, demo.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod access;
pub mod audit;
pub mod config;
pub mod defence;
pub mod engine;
pub mod gateway;
pub mod runtime;
pub mod state;
pub mod telemetry;
pub mod verdict;

/// Source revision baked in at build time (`PHI_GATEWAY_REVISION`), or `unknown`.
pub const REVISION: &str = match option_env!("PHI_GATEWAY_REVISION") {
    Some(r) => r,
    None => "unknown",
};
