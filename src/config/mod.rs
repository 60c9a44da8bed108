//! The gateway configuration file (`gateway.yaml`): parsing and validation into a
//! [`GatewayConfig`]. Nothing binds a port before this has succeeded.
//!
//! It touches no pingora and no sockets (upstream host names are resolved once; nothing is
//! bound or connected). From `engine` it uses only [`Mode`], the YAML span parser
//! [`crate::engine::source`] and the rule set digest (for [`config_hash`]).
//!
//! Parse, don't validate: [`load`] turns YAML into [`GatewayConfig`], a fully checked value in
//! which every route points at an existing upstream, every address is resolved to a
//! `SocketAddr` and every limit is in range. Nothing downstream of this module needs to
//! re-check anything, and nothing binds a port before this has succeeded (the linkerd2-proxy
//! rule). Unknown keys are errors: a typo must never silently disable a check.
//!
//! Every error names the file, the line and the field (see [`crate::engine::source::SourceError`]).
//!
//! - `raw`: the YAML as written (serde, unknown keys refused);
//! - `model`: the validated types and their defaults;
//! - `validate`: raw → validated, one function per section;
//! - `audit`: the `audit:` section's settings and their validation;
//! - `access`: the `access:` section (token issuers) and each route's `access:`;
//! - `response_guard`: each route's response leak guard;
//! - `state`: the `state:` section (memory or Redis) and `access.sessions` (automatic logoff);
//! - `defence`: the `defence:` section (access-anomaly detection and containment);
//! - `webhook`: `defence.webhook` (where incident alerts are delivered);
//! - `routing`: which route a request takes.

use std::path::{Path, PathBuf};

mod access;
mod audit;
mod break_glass;
mod defence;
mod model;
mod raw;
mod response_guard;
mod routing;
mod state;
mod validate;
mod webhook;

pub use access::{
    AccessSettings, Algorithm, Introspection, Issuer, JwksSource, Require, RouteAccess, UserClaim,
    DEFAULT_CLOCK_SKEW_SECONDS, DEFAULT_MAX_LIFETIME_SECONDS, DEFAULT_RESPONSE_HOLD_BYTES,
    DEFAULT_TOKEN_CACHE_ENTRIES,
};
pub use audit::{
    is_inside, AuditSettings, FileSinkSettings, FsyncPolicy, PostgresSettings, UserIdSource,
};
pub use break_glass::BreakGlassSettings;
pub use defence::{
    AnomalyMode, AnomalySettings, Signal, SignalSettings, SuspendWhen, SuspensionSettings,
};
pub use model::{
    ClientAuth, GatewayConfig, Inspect, Limits, Listen, LogFormat, Logging, Reload, ResourceIdMode,
    Route, RouteAudit, Server, Timeouts, Upstream, UpstreamTls, DEFAULT_AUDIT_HEADER,
    DEFAULT_AUDIT_HEADER_MAX_LENGTH, DEFAULT_HTTP2_IDLE_TIMEOUT_MS, DEFAULT_MAX_BODY_BYTES,
    DEFAULT_RESPONSE_HOLD_BUDGET_BYTES, SKIPPED_HEADERS,
};
pub use response_guard::{GuardAnswer, ResponseGuard, DEFAULT_GUARD_MAX_BYTES};
pub use routing::routing_path;
pub use state::{
    SessionSettings, StateBackend, StateSettings, DEFAULT_IDLE_TIMEOUT_SECONDS,
    DEFAULT_MAX_SESSION_SECONDS, DEFAULT_STATE_MAX_ENTRIES, DEFAULT_STATE_TIMEOUT_MS,
};
pub use validate::check_rule_overrides;
pub use webhook::{
    validate as validate_webhook, RawWebhook, WebhookFormat, WebhookSettings,
    DEFAULT_WEBHOOK_BACKOFF_MS, DEFAULT_WEBHOOK_QUEUE, DEFAULT_WEBHOOK_RETRIES,
    DEFAULT_WEBHOOK_TIMEOUT_MS, MAX_WEBHOOK_BACKOFF_MS,
};

use crate::engine::rules::RuleSet;
use crate::engine::source::SourceError;
#[cfg(doc)]
use crate::engine::Mode;
use raw::RawConfig;
use validate::validate;

/// Whether [`load_with`] resolves upstream host names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Dns {
    /// Resolve every `host:port` once, now (what `run` does).
    Resolve,
    /// Check only that each upstream address is a well-formed `host:port`; host names are not
    /// looked up and their [`Upstream::address`] is `0.0.0.0:port`. For `check --no-resolve`
    /// on a machine that cannot see the production DNS (a CI runner, a build host). Such a
    /// configuration can be validated, never run.
    Skip,
}

/// A hex SHA-256 over the configuration file and the rule set digest: the "config version"
/// that logs (and later audit records) carry.
pub fn config_hash(config: &GatewayConfig, rules: &RuleSet) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    if let Ok(bytes) = std::fs::read(&config.source) {
        ctx.update(&bytes);
    }
    ctx.update(rules.digest().as_bytes());
    ctx.finish()
        .as_ref()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Loads and validates a configuration file. Relative paths inside it are resolved against
/// the file's directory, so a config can be moved together with its certs and rules.
/// Upstream host names are resolved once, here.
pub fn load(file: &Path) -> Result<GatewayConfig, SourceError> {
    load_with(file, Dns::Resolve)
}

/// [`load`], choosing whether upstream host names are resolved.
pub fn load_with(file: &Path, dns: Dns) -> Result<GatewayConfig, SourceError> {
    let raw: RawConfig = crate::engine::source::load(file)?;
    let base = file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    validate(file, &base, raw, dns)
}

#[cfg(test)]
mod tests;
