//! The validated configuration: what the rest of the gateway reads. Every value here has
//! passed [`super::validate`], so nothing downstream re-checks it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::engine::Mode;

/// Default header every route requires unless configured otherwise.
pub const DEFAULT_AUDIT_HEADER: &str = "x-hipaa-audit-id";
/// Default cap on a request body (1 MiB).
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;
/// Default `limits.response_hold_budget_bytes`: 64 MiB of held responses at once, e.g. 1,000
/// concurrent error pages of 64 KiB, or 128 at the leak guard's 512 KiB cap.
pub const DEFAULT_RESPONSE_HOLD_BUDGET_BYTES: u64 = 64 * 1024 * 1024;
/// Default maximum length of an audit header value.
pub const DEFAULT_AUDIT_HEADER_MAX_LENGTH: usize = 128;
/// Default for `listen.http2_idle_timeout_ms`: the same 60 s pingora gives an idle HTTP/1.1
/// keep-alive connection.
pub const DEFAULT_HTTP2_IDLE_TIMEOUT_MS: u64 = 60_000;

/// How a route stores the FHIR resource id in audit records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ResourceIdMode {
    /// HMAC-SHA256 fingerprint (the default).
    #[default]
    Fingerprint,
    /// In clear (`Patient/123`), unless a detector fires on it or it is not a plain FHIR id.
    Clear,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum LogFormat {
    /// One JSON object per line (for log shippers).
    Json,
    /// Human-readable lines.
    #[default]
    Text,
}

/// The whole, validated configuration.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// File this was loaded from (for messages).
    pub source: PathBuf,
    /// Downstream TLS listener.
    pub listen: Listen,
    /// Admin listener (`/metrics`, `/livez`, `/readyz`), if any.
    pub admin: Option<SocketAddr>,
    /// `admin.token_file`: the bearer token `GET /principals/suspended` and
    /// `POST /principals/{key}/reinstate` require; without one they are refused.
    pub admin_token_file: Option<PathBuf>,
    /// Directory holding the rule files.
    pub rules_dir: PathBuf,
    /// Site rule directories layered over `rules_dir` (`rules.overlays`).
    pub rules_overlays: Vec<PathBuf>,
    /// `rules.fingerprint_key_file`, when set (see [`GatewayConfig::fingerprint_key_file`]).
    pub rules_fingerprint_key_file: Option<PathBuf>,
    /// Process settings handed to pingora.
    pub server: Server,
    /// Operational logging.
    pub logging: Logging,
    /// Hot reload settings.
    pub reload: Reload,
    /// Engine limits (decompression and parsing) and request limits (size, time).
    pub limits: Limits,
    /// Upstreams by name.
    pub upstreams: Vec<Upstream>,
    /// Routes in match order (first match wins).
    pub routes: Vec<Route>,
    /// The audit trail; `None` when the `audit:` section is absent or `enabled: false`.
    pub audit: Option<crate::config::AuditSettings>,
    /// Token issuers and identity headers (`access:`); empty when the section is absent.
    pub access: crate::config::AccessSettings,
    /// The access policy's directories (`access.policy`), in load order; empty: no policy.
    /// Kept apart from [`Self::access`] because a policy change is hot-reloaded while the
    /// issuers need a restart.
    pub policy_dirs: Vec<PathBuf>,
    /// Where shared state lives (`state:`); memory when the section is absent.
    pub state: crate::config::StateSettings,
    /// Access-anomaly detection (`defence.anomaly`); `None` when off.
    pub anomaly: Option<crate::config::AnomalySettings>,
    /// Where incident alerts are delivered (`defence.webhook`); `None`: nowhere.
    pub webhook: Option<crate::config::WebhookSettings>,
}

/// Downstream TLS listener settings.
#[derive(Debug, Clone)]
pub struct Listen {
    /// Address to bind.
    pub address: SocketAddr,
    /// PEM certificate chain (leaf first).
    pub cert_file: PathBuf,
    /// PEM private key.
    pub key_file: PathBuf,
    /// Offer HTTP/2 via ALPN.
    pub http2: bool,
    /// An HTTP/2 connection with no stream in flight for this long is closed. pingora's
    /// default is never, so an idle HTTP/2 connection would hold its socket and task forever.
    pub http2_idle_timeout: Duration,
    /// Mutual TLS: client certificates checked against a CA.
    pub client_auth: Option<ClientAuth>,
}

/// Mutual TLS on the listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAuth {
    /// PEM bundle of the CAs that issue client certificates.
    pub ca_file: PathBuf,
    /// Refuse the handshake without a valid client certificate (otherwise it is optional,
    /// and a presented one must still be valid).
    pub required: bool,
}

/// Process settings.
#[derive(Debug, Clone)]
pub struct Server {
    /// Worker threads for the proxy service.
    pub threads: usize,
    /// Longest time SIGTERM waits for in-flight requests to finish. The gateway exits as soon
    /// as none are left, so this is an upper bound, not a sleep.
    pub grace_period_seconds: u64,
    /// Seconds the runtime gets to stop after the grace period.
    pub graceful_shutdown_timeout_seconds: u64,
    /// Seconds after SIGTERM during which the listeners keep accepting while `/readyz` already
    /// answers `draining`, so load balancers stop sending traffic before the port closes.
    pub shutdown_delay_seconds: u64,
    /// pingora pid file.
    pub pid_file: PathBuf,
    /// pingora upgrade socket.
    pub upgrade_sock: PathBuf,
}

/// Logging settings.
#[derive(Debug, Clone)]
pub struct Logging {
    /// Line format.
    pub format: LogFormat,
    /// `tracing` filter directive, e.g. `info` or `phi_gateway=debug`.
    pub level: String,
}

/// Hot reload settings. SIGHUP and `POST /reload` on the admin listener always work; the
/// file watch is the optional third trigger.
#[derive(Debug, Clone)]
pub struct Reload {
    /// Poll the configuration file, the rule directory and the certificate files for changes.
    pub watch: bool,
    /// How often the watch looks.
    pub watch_interval: Duration,
}

/// Decoding limits handed to the engine, and limits on the request itself.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Maximum size of a decompressed body.
    pub max_decoded_bytes: usize,
    /// Maximum decompression ratio.
    pub max_expansion_ratio: u64,
    /// Maximum JSON nesting the engine walks.
    pub max_json_depth: usize,
    /// Longest request target (path and query) accepted; longer ones get 414.
    pub max_uri_bytes: usize,
    /// Largest sum of header name and value bytes accepted; more gets 431.
    pub max_header_bytes: usize,
    /// Time a connection gets to deliver a complete request head (counted from the accept,
    /// or from the end of the previous response on a keep-alive connection). Past it the
    /// connection is closed without an answer, as nginx does for `client_header_timeout`.
    pub header_timeout: Duration,
    /// Time a client gets to deliver the whole request body after its head, and the longest
    /// pause between two body reads; past it the request is answered 408.
    pub body_timeout: Duration,
    /// Most response bytes held back at once across all requests (the leak guard and the
    /// compartment check); an answer that would go over it is treated as over its cap.
    pub response_hold_budget_bytes: u64,
}

/// A validated upstream.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// Name routes refer to; also the `upstream` metric label.
    pub name: String,
    /// Resolved once at load, so no DNS lookup (and no pingora panic) happens per request.
    pub address: SocketAddr,
    /// TLS towards the upstream, if any.
    pub tls: Option<UpstreamTls>,
    /// Timeouts.
    pub timeouts: Timeouts,
}

/// TLS settings towards an upstream.
#[derive(Debug, Clone)]
pub struct UpstreamTls {
    /// Server name sent in SNI and verified in the certificate.
    pub sni: String,
    /// CA bundle to trust instead of the system roots.
    pub ca_file: Option<PathBuf>,
    /// Check that the certificate matches `sni`.
    pub verify_hostname: bool,
}

/// Upstream timeouts.
#[derive(Debug, Clone)]
pub struct Timeouts {
    /// TCP (and TLS) connect.
    pub connect: Duration,
    /// Each read from the upstream.
    pub read: Duration,
    /// Each write to the upstream.
    pub write: Duration,
    /// How long an idle pooled connection is kept.
    pub idle: Duration,
}

/// Request headers never scanned when a wildcard selects them (`inspect.headers: ["*"]`, the
/// default): framing and routing headers pingora or the gateway consume (`content-length`,
/// `transfer-encoding`, `host`, `connection` and the other hop-by-hop ones), headers the
/// gateway replaces before forwarding (`x-request-id`, `x-forwarded-for`,
/// `x-forwarded-proto`), and W3C trace context (`traceparent`, `tracestate`: fixed-format ids).
/// A header named exactly in `inspect.headers` is scanned anyway, and the route's audit
/// headers always are (their value goes into the audit record).
pub const SKIPPED_HEADERS: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "upgrade",
    "expect",
    "x-request-id",
    "x-forwarded-for",
    "x-forwarded-proto",
    "traceparent",
    "tracestate",
];

/// What a route inspects.
#[derive(Debug, Clone)]
pub struct Inspect {
    /// Scan the query string.
    pub query: bool,
    /// Scan the body.
    pub body: bool,
    /// Request headers to scan (lowercase). A trailing `*` matches a prefix; `*` alone (the
    /// default) selects every header.
    pub headers: Vec<String>,
    /// Headers a wildcard selector does not select: [`SKIPPED_HEADERS`] plus the route's
    /// `skip_headers` (lowercase, a trailing `*` matches a prefix).
    pub skip_headers: Vec<String>,
}

impl Inspect {
    /// The default: query, body and every header but [`SKIPPED_HEADERS`].
    pub fn everything() -> Self {
        Inspect {
            query: true,
            body: true,
            headers: vec!["*".to_string()],
            skip_headers: SKIPPED_HEADERS.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Whether the (lowercase) request header `name` is scanned. An exact selector always
    /// selects; a wildcard selects unless a skip entry matches.
    pub fn header_selected(&self, name: &str) -> bool {
        let matches = |s: &String, name: &str| match s.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => s == name,
        };
        if self.headers.iter().any(|s| s == name) {
            return true;
        }
        self.headers.iter().any(|s| matches(s, name))
            && !self.skip_headers.iter().any(|s| matches(s, name))
    }
}

/// A validated route.
#[derive(Debug, Clone)]
pub struct Route {
    /// Name used in logs and as the `route` metric label.
    pub name: String,
    /// Lowercase host to match (port ignored), if any.
    pub host: Option<String>,
    /// Path prefix to match; `/` when absent.
    pub path_prefix: String,
    /// Index into [`GatewayConfig::upstreams`].
    pub upstream: usize,
    /// enforce or monitor.
    pub mode: Mode,
    /// Body cap; larger bodies get 413.
    pub max_body_bytes: u64,
    /// Headers that must be present and well-formed (lowercase).
    pub audit_headers: Vec<String>,
    /// Maximum length of an audit header value.
    pub audit_header_max_length: usize,
    /// Parts to inspect.
    pub inspect: Inspect,
    /// Per-rule mode overrides on this route (e.g. `us-npi: off` on a provider directory).
    pub rule_overrides: BTreeMap<String, Mode>,
    /// Audit choices for this route.
    pub audit: RouteAudit,
    /// Relay `Upgrade` requests (WebSocket) as uninspected tunnels; refused with 403
    /// `upgrade_not_allowed` otherwise.
    pub allow_upgrade: bool,
    /// Bearer-token requirement on this route.
    pub access: crate::config::RouteAccess,
    /// The response leak guard on this route.
    pub response_guard: crate::config::ResponseGuard,
}

/// A route's audit choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteAudit {
    /// How the FHIR resource id is stored.
    pub resource_id: ResourceIdMode,
    /// Refuse requests (503) when the audit trail cannot record them.
    pub fail_closed: bool,
}

impl GatewayConfig {
    /// The first setting that differs from `running` and can only change with a restart (or a
    /// SIGQUIT upgrade): listeners, process settings, logging and the audit trail. Everything else (routes,
    /// upstreams, limits, rules, certificate files) is applied by a hot reload.
    pub fn restart_required_change(&self, running: &GatewayConfig) -> Option<&'static str> {
        let (a, b) = (self, running);
        let checks: [(&'static str, bool); 19] = [
            ("listen.address", a.listen.address != b.listen.address),
            ("listen.http2", a.listen.http2 != b.listen.http2),
            (
                "listen.http2_idle_timeout_ms",
                a.listen.http2_idle_timeout != b.listen.http2_idle_timeout,
            ),
            (
                "listen.client_auth",
                a.listen.client_auth != b.listen.client_auth,
            ),
            ("admin.address", a.admin != b.admin),
            ("server.threads", a.server.threads != b.server.threads),
            (
                "server.grace_period_seconds",
                a.server.grace_period_seconds != b.server.grace_period_seconds,
            ),
            (
                "server.graceful_shutdown_timeout_seconds",
                a.server.graceful_shutdown_timeout_seconds
                    != b.server.graceful_shutdown_timeout_seconds,
            ),
            (
                "server.shutdown_delay_seconds",
                a.server.shutdown_delay_seconds != b.server.shutdown_delay_seconds,
            ),
            ("server.pid_file", a.server.pid_file != b.server.pid_file),
            (
                "server.upgrade_sock",
                a.server.upgrade_sock != b.server.upgrade_sock,
            ),
            (
                "logging",
                a.logging.format != b.logging.format || a.logging.level != b.logging.level,
            ),
            (
                "reload",
                a.reload.watch != b.reload.watch
                    || a.reload.watch_interval != b.reload.watch_interval,
            ),
            // The audit trail is process-wide: its writer, keys and sinks start once.
            ("audit", a.audit != b.audit),
            // The verifier (key sets, their refresher, the token cache) starts once.
            ("access", a.access != b.access),
            // The state store (its backend, connection and local copy) starts once.
            ("state", a.state != b.state),
            // The detector and its suspension cache start once.
            ("defence", a.anomaly != b.anomaly),
            // The notifier (its thread, TLS client and secret) starts once.
            ("defence.webhook", a.webhook != b.webhook),
            ("admin.token_file", a.admin_token_file != b.admin_token_file),
        ];
        checks
            .into_iter()
            .find(|(_, changed)| *changed)
            .map(|(f, _)| f)
    }

    /// The secret key for rule-exception fingerprints: `rules.fingerprint_key_file`, else
    /// `audit.fingerprint_key_file`, else none (then exceptions by `values` never apply and
    /// a rule set that has any is refused).
    pub fn fingerprint_key_file(&self) -> Option<&std::path::Path> {
        self.rules_fingerprint_key_file.as_deref().or_else(|| {
            self.audit
                .as_ref()
                .map(|a| a.fingerprint_key_file.as_path())
        })
    }

    /// The rule directories in load order: `rules.dir`, then each of `rules.overlays`.
    pub fn rule_dirs(&self) -> Vec<PathBuf> {
        std::iter::once(self.rules_dir.clone())
            .chain(self.rules_overlays.iter().cloned())
            .collect()
    }
}
