//! The configuration as written in YAML: serde types that mirror `gateway.yaml` key for key.
//! Every struct refuses unknown keys (`deny_unknown_fields`), so a typo is an error instead of
//! a silently missing check. Nothing here is validated; [`super::validate`] turns these into
//! the types of [`super::model`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::{LogFormat, ResourceIdMode};
use crate::engine::source::Spanned;
use crate::engine::Mode;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) listen: RawListen,
    #[serde(default)]
    pub(super) admin: Option<RawAdmin>,
    pub(super) rules: RawRules,
    #[serde(default)]
    pub(super) server: RawServer,
    #[serde(default)]
    pub(super) logging: RawLogging,
    #[serde(default)]
    pub(super) reload: RawReload,
    #[serde(default)]
    pub(super) limits: RawLimits,
    #[serde(default)]
    pub(super) defaults: RawRouteDefaults,
    #[serde(default)]
    pub(super) audit: Option<RawAudit>,
    #[serde(default)]
    pub(super) access: Option<RawAccess>,
    /// Where shared state lives (`state:`; see `super::state`).
    #[serde(default)]
    pub(super) state: Option<super::state::RawState>,
    /// Runtime defence (`defence:`; see `super::defence`).
    #[serde(default)]
    pub(super) defence: Option<super::defence::RawDefence>,
    pub(super) upstreams: Vec<RawUpstream>,
    pub(super) routes: Vec<RawRoute>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawListen {
    pub(super) address: Spanned<String>,
    pub(super) cert_file: Spanned<PathBuf>,
    pub(super) key_file: Spanned<PathBuf>,
    #[serde(default = "yes")]
    pub(super) http2: bool,
    pub(super) http2_idle_timeout_ms: Option<Spanned<u64>>,
    #[serde(default)]
    pub(super) client_auth: Option<RawClientAuth>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClientAuth {
    pub(super) ca_file: Spanned<PathBuf>,
    #[serde(default = "yes")]
    pub(super) required: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    pub(super) address: Spanned<String>,
    /// The bearer token the principal endpoints require (a file, never in gateway.yaml).
    #[serde(default)]
    pub(super) token_file: Option<Spanned<PathBuf>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRules {
    pub(super) dir: Spanned<PathBuf>,
    /// Site rule directories layered over `dir`, in order (override or disable by id).
    #[serde(default)]
    pub(super) overlays: Vec<PathBuf>,
    /// Secret key for `exceptions.values` fingerprints; default `audit.fingerprint_key_file`.
    #[serde(default)]
    pub(super) fingerprint_key_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub(super) threads: Option<Spanned<usize>>,
    pub(super) grace_period_seconds: Option<Spanned<u64>>,
    pub(super) graceful_shutdown_timeout_seconds: Option<Spanned<u64>>,
    pub(super) shutdown_delay_seconds: Option<Spanned<u64>>,
    pub(super) pid_file: Option<PathBuf>,
    pub(super) upgrade_sock: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLogging {
    #[serde(default)]
    pub(super) format: LogFormat,
    pub(super) level: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReload {
    pub(super) watch: Option<bool>,
    pub(super) watch_interval_ms: Option<Spanned<u64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub(super) max_decoded_bytes: Option<Spanned<u64>>,
    pub(super) max_expansion_ratio: Option<Spanned<u64>>,
    pub(super) max_json_depth: Option<Spanned<usize>>,
    pub(super) max_uri_bytes: Option<Spanned<u64>>,
    pub(super) max_header_bytes: Option<Spanned<u64>>,
    pub(super) header_timeout_ms: Option<Spanned<u64>>,
    pub(super) body_timeout_ms: Option<Spanned<u64>>,
    pub(super) response_hold_budget_bytes: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAudit {
    #[serde(default = "yes")]
    pub(super) enabled: bool,
    pub(super) dir: Spanned<PathBuf>,
    pub(super) signing_key_file: Spanned<PathBuf>,
    pub(super) fingerprint_key_file: Spanned<PathBuf>,
    #[serde(default)]
    pub(super) user_id: Option<RawUserId>,
    #[serde(default)]
    pub(super) fsync: Option<Spanned<RawFsync>>,
    pub(super) fsync_interval_ms: Option<Spanned<u64>>,
    pub(super) queue_capacity: Option<Spanned<u64>>,
    pub(super) segment_max_bytes: Option<Spanned<u64>>,
    pub(super) segment_max_age_seconds: Option<Spanned<u64>>,
    pub(super) checkpoint_every_records: Option<Spanned<u64>>,
    pub(super) checkpoint_interval_seconds: Option<Spanned<u64>>,
    pub(super) ack_timeout_ms: Option<Spanned<u64>>,
    #[serde(default)]
    pub(super) postgres: Option<RawPostgres>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum RawFsync {
    EveryRecord,
    Batched,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum RawUserIdSource {
    None,
    Header,
    ClientCert,
    Jwt,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUserId {
    pub(super) source: Spanned<RawUserIdSource>,
    #[serde(default)]
    pub(super) header: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPostgres {
    pub(super) url: Spanned<String>,
    pub(super) batch_size: Option<Spanned<u64>>,
    pub(super) batch_interval_ms: Option<Spanned<u64>>,
    pub(super) queue_capacity: Option<Spanned<u64>>,
    pub(super) retry_initial_backoff_ms: Option<Spanned<u64>>,
    pub(super) retry_max_backoff_ms: Option<Spanned<u64>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRouteAudit {
    #[serde(default)]
    pub(super) resource_id: Option<ResourceIdMode>,
    #[serde(default)]
    pub(super) fail_closed: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRouteDefaults {
    #[serde(default)]
    pub(super) audit: Option<RawRouteAudit>,
    pub(super) mode: Option<Spanned<Mode>>,
    pub(super) max_body_bytes: Option<Spanned<u64>>,
    pub(super) audit_headers: Option<Vec<Spanned<String>>>,
    pub(super) audit_header_max_length: Option<Spanned<usize>>,
    pub(super) inspect: Option<RawInspect>,
    pub(super) allow_upgrade: Option<bool>,
    #[serde(default)]
    pub(super) access: Option<RawRouteAccess>,
    #[serde(default)]
    pub(super) response_guard: Option<super::response_guard::RawResponseGuard>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstream {
    pub(super) name: Spanned<String>,
    pub(super) address: Spanned<String>,
    #[serde(default)]
    pub(super) tls: Option<RawUpstreamTls>,
    #[serde(default)]
    pub(super) timeouts: RawTimeouts,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstreamTls {
    pub(super) sni: Spanned<String>,
    #[serde(default)]
    pub(super) ca_file: Option<Spanned<PathBuf>>,
    #[serde(default = "yes")]
    pub(super) verify_hostname: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTimeouts {
    pub(super) connect_ms: Option<Spanned<u64>>,
    pub(super) read_ms: Option<Spanned<u64>>,
    pub(super) write_ms: Option<Spanned<u64>>,
    pub(super) idle_ms: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub(super) name: Spanned<String>,
    #[serde(default)]
    pub(super) host: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) path_prefix: Option<Spanned<String>>,
    pub(super) upstream: Spanned<String>,
    pub(super) mode: Option<Spanned<Mode>>,
    pub(super) max_body_bytes: Option<Spanned<u64>>,
    pub(super) audit_headers: Option<Vec<Spanned<String>>>,
    pub(super) audit_header_max_length: Option<Spanned<usize>>,
    pub(super) inspect: Option<RawInspect>,
    #[serde(default)]
    pub(super) rule_overrides: BTreeMap<String, Spanned<Mode>>,
    #[serde(default)]
    pub(super) audit: Option<RawRouteAudit>,
    /// Relay `Upgrade` requests (WebSocket) as uninspected tunnels. Default: refuse them.
    pub(super) allow_upgrade: Option<bool>,
    /// Bearer-token requirement (`access.require`, `access.mode`). Default: off.
    #[serde(default)]
    pub(super) access: Option<RawRouteAccess>,
    /// The response leak guard. Default: enforce on every error status.
    #[serde(default)]
    pub(super) response_guard: Option<super::response_guard::RawResponseGuard>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInspect {
    #[serde(default = "yes")]
    pub(super) query: bool,
    #[serde(default = "yes")]
    pub(super) body: bool,
    /// Absent: every header but the built-in skip list (`["*"]`).
    #[serde(default)]
    pub(super) headers: Option<Vec<Spanned<String>>>,
    /// Site additions to the built-in skip list (names, a trailing `*` for a prefix).
    #[serde(default)]
    pub(super) skip_headers: Vec<Spanned<String>>,
}

/// The top-level `access:` section: token issuers and identity headers.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAccess {
    #[serde(default)]
    pub(super) issuers: Vec<RawIssuer>,
    /// Header name → claim name, set on the upstream request from a verified token.
    #[serde(default)]
    pub(super) claims_to_headers: BTreeMap<String, Spanned<String>>,
    /// Most verified tokens kept in the cache.
    pub(super) token_cache_entries: Option<Spanned<u64>>,
    /// Largest upstream response held back for the compartment check of a patient-bound read.
    pub(super) response_hold_bytes: Option<Spanned<u64>>,
    /// Access policy directories (`deploy/policy`, then site layers), loaded like rule packs.
    #[serde(default)]
    pub(super) policy: Option<Spanned<Vec<Spanned<PathBuf>>>>,
    /// Automatic logoff (`super::state`).
    #[serde(default)]
    pub(super) sessions: Option<super::state::RawSessions>,
    /// Break-glass (`super::access`). A bare `break_glass:` (YAML null) turns it on with the
    /// defaults, like any other present section.
    #[serde(default, deserialize_with = "present_section")]
    pub(super) break_glass: Option<RawBreakGlass>,
}

/// A section that is on when its key is present, even with no fields (null).
fn present_section<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Some(Option::<T>::deserialize(d)?.unwrap_or_default()))
}

/// `access.break_glass:` (issue 11 §4).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBreakGlass {
    pub(super) enabled: Option<Spanned<bool>>,
    pub(super) header: Option<Spanned<String>>,
    pub(super) min_justification_chars: Option<Spanned<u64>>,
    pub(super) duration_minutes: Option<Spanned<u64>>,
    pub(super) duration_seconds: Option<Spanned<u64>>,
}

/// One trusted token issuer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIssuer {
    pub(super) name: Spanned<String>,
    pub(super) issuer: Spanned<String>,
    pub(super) audiences: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    pub(super) algorithms: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub(super) jwks_file: Option<Spanned<PathBuf>>,
    #[serde(default)]
    pub(super) jwks_url: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) jwks_ca_file: Option<Spanned<PathBuf>>,
    pub(super) refresh_seconds: Option<Spanned<u64>>,
    pub(super) max_staleness_seconds: Option<Spanned<u64>>,
    pub(super) fetch_timeout_ms: Option<Spanned<u64>>,
    pub(super) refetch_cooldown_seconds: Option<Spanned<u64>>,
    pub(super) max_lifetime_seconds: Option<Spanned<u64>>,
    pub(super) clock_skew_seconds: Option<Spanned<u64>>,
    #[serde(default)]
    pub(super) user_claim: Option<Spanned<String>>,
    /// RFC 7662 introspection of opaque tokens, instead of a key set.
    #[serde(default)]
    pub(super) introspection: Option<Spanned<RawIntrospection>>,
}

/// An issuer's `introspection:` (RFC 7662).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIntrospection {
    pub(super) url: Spanned<String>,
    pub(super) client_id: Spanned<String>,
    pub(super) client_secret_file: Spanned<PathBuf>,
    #[serde(default)]
    pub(super) ca_file: Option<Spanned<PathBuf>>,
}

/// A route's `access:`: whether a bearer token is required, and in which mode.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRouteAccess {
    pub(super) require: Option<Spanned<String>>,
    pub(super) mode: Option<Spanned<Mode>>,
    /// Whether the access policy decides on this route (default: yes when one is configured).
    pub(super) policy: Option<Spanned<bool>>,
    /// The route's FHIR base path (default: `path_prefix` without its trailing `/`).
    pub(super) fhir_base: Option<Spanned<String>>,
}

fn yes() -> bool {
    true
}
