//! The gateway configuration file (`gateway.yaml`): parsing and validation.
//!
//! Parse, don't validate: [`load`] turns YAML into [`GatewayConfig`], a fully checked value in
//! which every route points at an existing upstream, every address is resolved to a
//! `SocketAddr` and every limit is in range. Nothing downstream of this module needs to
//! re-check anything, and nothing binds a port before this has succeeded (the linkerd2-proxy
//! rule). Unknown keys are errors: a typo must never silently disable a check.
//!
//! Every error names the file, the line and the field (see [`crate::engine::source::SourceError`]).

use std::collections::{BTreeMap, HashSet};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

mod audit;

pub use audit::{
    is_inside, AuditSettings, FileSinkSettings, FsyncPolicy, PostgresSettings, UserIdSource,
};

use crate::engine::rules::RuleSet;
use crate::engine::source::{SourceError, Spanned};
use crate::engine::Mode;

/// Default header every route requires unless configured otherwise.
pub const DEFAULT_AUDIT_HEADER: &str = "x-hipaa-audit-id";
/// Default cap on a request body (1 MiB).
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;
/// Default maximum length of an audit header value.
pub const DEFAULT_AUDIT_HEADER_MAX_LENGTH: usize = 128;
/// Default for `listen.http2_idle_timeout_ms`: the same 60 s pingora gives an idle HTTP/1.1
/// keep-alive connection.
pub const DEFAULT_HTTP2_IDLE_TIMEOUT_MS: u64 = 60_000;

// === raw, as written in YAML ===

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: RawListen,
    #[serde(default)]
    admin: Option<RawAdmin>,
    rules: RawRules,
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    logging: RawLogging,
    #[serde(default)]
    reload: RawReload,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    defaults: RawRouteDefaults,
    #[serde(default)]
    audit: Option<RawAudit>,
    upstreams: Vec<RawUpstream>,
    routes: Vec<RawRoute>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListen {
    address: Spanned<String>,
    cert_file: Spanned<PathBuf>,
    key_file: Spanned<PathBuf>,
    #[serde(default = "yes")]
    http2: bool,
    http2_idle_timeout_ms: Option<Spanned<u64>>,
    #[serde(default)]
    client_auth: Option<RawClientAuth>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClientAuth {
    ca_file: Spanned<PathBuf>,
    #[serde(default = "yes")]
    required: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    address: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRules {
    dir: Spanned<PathBuf>,
    /// Site rule directories layered over `dir`, in order (override or disable by id).
    #[serde(default)]
    overlays: Vec<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    threads: Option<Spanned<usize>>,
    grace_period_seconds: Option<Spanned<u64>>,
    graceful_shutdown_timeout_seconds: Option<Spanned<u64>>,
    shutdown_delay_seconds: Option<Spanned<u64>>,
    pid_file: Option<PathBuf>,
    upgrade_sock: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLogging {
    #[serde(default)]
    format: LogFormat,
    level: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReload {
    watch: Option<bool>,
    watch_interval_ms: Option<Spanned<u64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_decoded_bytes: Option<Spanned<u64>>,
    max_expansion_ratio: Option<Spanned<u64>>,
    max_json_depth: Option<Spanned<usize>>,
    max_uri_bytes: Option<Spanned<u64>>,
    max_header_bytes: Option<Spanned<u64>>,
    header_timeout_ms: Option<Spanned<u64>>,
    body_timeout_ms: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    #[serde(default = "yes")]
    enabled: bool,
    dir: Spanned<PathBuf>,
    signing_key_file: Spanned<PathBuf>,
    fingerprint_key_file: Spanned<PathBuf>,
    #[serde(default)]
    user_id: Option<RawUserId>,
    #[serde(default)]
    fsync: Option<Spanned<RawFsync>>,
    fsync_interval_ms: Option<Spanned<u64>>,
    queue_capacity: Option<Spanned<u64>>,
    segment_max_bytes: Option<Spanned<u64>>,
    segment_max_age_seconds: Option<Spanned<u64>>,
    checkpoint_every_records: Option<Spanned<u64>>,
    checkpoint_interval_seconds: Option<Spanned<u64>>,
    ack_timeout_ms: Option<Spanned<u64>>,
    #[serde(default)]
    postgres: Option<RawPostgres>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum RawFsync {
    EveryRecord,
    Batched,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum RawUserIdSource {
    None,
    Header,
    ClientCert,
    Jwt,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUserId {
    source: Spanned<RawUserIdSource>,
    #[serde(default)]
    header: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPostgres {
    url: Spanned<String>,
    batch_size: Option<Spanned<u64>>,
    batch_interval_ms: Option<Spanned<u64>>,
    queue_capacity: Option<Spanned<u64>>,
    retry_initial_backoff_ms: Option<Spanned<u64>>,
    retry_max_backoff_ms: Option<Spanned<u64>>,
}

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

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRouteAudit {
    #[serde(default)]
    resource_id: Option<ResourceIdMode>,
    #[serde(default)]
    fail_closed: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRouteDefaults {
    #[serde(default)]
    audit: Option<RawRouteAudit>,
    mode: Option<Spanned<Mode>>,
    max_body_bytes: Option<Spanned<u64>>,
    audit_headers: Option<Vec<Spanned<String>>>,
    audit_header_max_length: Option<Spanned<usize>>,
    inspect: Option<RawInspect>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    name: Spanned<String>,
    address: Spanned<String>,
    #[serde(default)]
    tls: Option<RawUpstreamTls>,
    #[serde(default)]
    timeouts: RawTimeouts,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstreamTls {
    sni: Spanned<String>,
    #[serde(default)]
    ca_file: Option<Spanned<PathBuf>>,
    #[serde(default = "yes")]
    verify_hostname: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTimeouts {
    connect_ms: Option<Spanned<u64>>,
    read_ms: Option<Spanned<u64>>,
    write_ms: Option<Spanned<u64>>,
    idle_ms: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    name: Spanned<String>,
    #[serde(default)]
    host: Option<Spanned<String>>,
    #[serde(default)]
    path_prefix: Option<Spanned<String>>,
    upstream: Spanned<String>,
    mode: Option<Spanned<Mode>>,
    max_body_bytes: Option<Spanned<u64>>,
    audit_headers: Option<Vec<Spanned<String>>>,
    audit_header_max_length: Option<Spanned<usize>>,
    inspect: Option<RawInspect>,
    #[serde(default)]
    rule_overrides: BTreeMap<String, Spanned<Mode>>,
    #[serde(default)]
    audit: Option<RawRouteAudit>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInspect {
    #[serde(default = "yes")]
    query: bool,
    #[serde(default = "yes")]
    body: bool,
    #[serde(default)]
    headers: Vec<Spanned<String>>,
}

fn yes() -> bool {
    true
}

// === validated ===

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
    /// Directory holding the rule files.
    pub rules_dir: PathBuf,
    /// Site rule directories layered over `rules_dir` (`rules.overlays`).
    pub rules_overlays: Vec<PathBuf>,
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

/// What a route inspects.
#[derive(Debug, Clone)]
pub struct Inspect {
    /// Scan the query string.
    pub query: bool,
    /// Scan the body.
    pub body: bool,
    /// Request headers to scan (lowercase). A trailing `*` matches a prefix.
    pub headers: Vec<String>,
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
        let checks: [(&'static str, bool); 14] = [
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
        ];
        checks
            .into_iter()
            .find(|(_, changed)| *changed)
            .map(|(f, _)| f)
    }

    /// The rule directories in load order: `rules.dir`, then each of `rules.overlays`.
    pub fn rule_dirs(&self) -> Vec<PathBuf> {
        std::iter::once(self.rules_dir.clone())
            .chain(self.rules_overlays.iter().cloned())
            .collect()
    }

    /// The first route matching `host` (any case, port ignored) and `path`.
    ///
    /// `path` is the raw request path; matching uses [`routing_path`], so an encoded or
    /// dotted spelling (`/public/%70atients`, `/public/./patients`) cannot slip past a
    /// more specific route into a broader one while the upstream normalises it back.
    pub fn route_for(&self, host: Option<&str>, path: &str) -> Option<(usize, &Route)> {
        let path = routing_path(path);
        let path = path.as_ref();
        let host = host.map(strip_port);
        self.routes.iter().enumerate().find(|(_, r)| {
            let host_ok = match (&r.host, host) {
                (None, _) => true,
                (Some(want), Some(got)) => want.eq_ignore_ascii_case(got),
                (Some(_), None) => false,
            };
            host_ok && path.starts_with(&r.path_prefix)
        })
    }
}

/// The path as an upstream would most likely interpret it: percent-decoded, dot segments
/// removed (RFC 3986 §5.2.4), repeated slashes merged. Used only to choose a route; the
/// request is forwarded with its original path.
pub fn routing_path(raw: &str) -> std::borrow::Cow<'_, str> {
    let suspicious =
        raw.contains('%') || raw.contains("//") || raw.contains("/.") || raw.contains('\\');
    if !suspicious {
        return std::borrow::Cow::Borrowed(raw);
    }
    let decoded = percent_encoding::percent_decode_str(raw).decode_utf8_lossy();
    let decoded = decoded.replace('\\', "/");
    let mut out: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut path = String::with_capacity(decoded.len() + 1);
    for seg in &out {
        path.push('/');
        path.push_str(seg);
    }
    // Keep a trailing slash (`/fhir/` must still match the prefix `/fhir/`).
    if decoded.ends_with('/')
        || decoded.ends_with("/.")
        || decoded.ends_with("/..")
        || path.is_empty()
    {
        path.push('/');
    }
    std::borrow::Cow::Owned(path)
}

fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        // [::1]:8443
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

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

fn validate(
    file: &Path,
    base: &Path,
    raw: RawConfig,
    dns: Dns,
) -> Result<GatewayConfig, SourceError> {
    let err = |s: &dyn Located, field: &str, msg: String| s.error(file, field, msg);
    let resolve = |p: &Path| -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }
    };

    let listen = Listen {
        address: parse_socket_addr(&raw.listen.address.value)
            .map_err(|m| err(&raw.listen.address, "listen.address", m))?,
        cert_file: resolve(&raw.listen.cert_file.value),
        key_file: resolve(&raw.listen.key_file.value),
        http2: raw.listen.http2,
        http2_idle_timeout: Duration::from_millis(
            bounded(
                raw.listen.http2_idle_timeout_ms.as_ref(),
                DEFAULT_HTTP2_IDLE_TIMEOUT_MS,
                100,
                3_600_000,
            )
            .map_err(|(s, m)| err(s, "listen.http2_idle_timeout_ms", m))?,
        ),
        client_auth: match &raw.listen.client_auth {
            Some(c) => {
                let ca_file = resolve(&c.ca_file.value);
                if !ca_file.is_file() {
                    return Err(err(
                        &c.ca_file,
                        "listen.client_auth.ca_file",
                        format!("{} is not a readable file", ca_file.display()),
                    ));
                }
                Some(ClientAuth {
                    ca_file,
                    required: c.required,
                })
            }
            None => None,
        },
    };
    let admin = match &raw.admin {
        Some(a) => Some(
            parse_socket_addr(&a.address.value).map_err(|m| err(&a.address, "admin.address", m))?,
        ),
        None => None,
    };
    if admin == Some(listen.address) {
        if let Some(a) = &raw.admin {
            return Err(err(
                &a.address,
                "admin.address",
                "must differ from listen.address".into(),
            ));
        }
    }

    let threads = match &raw.server.threads {
        Some(t) if t.value == 0 || t.value > 256 => {
            return Err(err(t, "server.threads", "must be between 1 and 256".into()))
        }
        Some(t) => t.value,
        None => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2),
    };
    let server = Server {
        threads,
        grace_period_seconds: bounded(raw.server.grace_period_seconds.as_ref(), 10, 0, 3600)
            .map_err(|(s, m)| err(s, "server.grace_period_seconds", m))?,
        graceful_shutdown_timeout_seconds: bounded(
            raw.server.graceful_shutdown_timeout_seconds.as_ref(),
            5,
            0,
            600,
        )
        .map_err(|(s, m)| err(s, "server.graceful_shutdown_timeout_seconds", m))?,
        shutdown_delay_seconds: bounded(raw.server.shutdown_delay_seconds.as_ref(), 0, 0, 600)
            .map_err(|(s, m)| err(s, "server.shutdown_delay_seconds", m))?,
        pid_file: raw
            .server
            .pid_file
            .map(|p| resolve(&p))
            .unwrap_or_else(|| std::env::temp_dir().join("phi-gateway.pid")),
        upgrade_sock: raw
            .server
            .upgrade_sock
            .map(|p| resolve(&p))
            .unwrap_or_else(|| std::env::temp_dir().join("phi-gateway-upgrade.sock")),
    };

    let logging = Logging {
        format: raw.logging.format,
        level: raw.logging.level.unwrap_or_else(|| "info".to_string()),
    };

    let reload = Reload {
        watch: raw.reload.watch.unwrap_or(true),
        watch_interval: Duration::from_millis(
            bounded(raw.reload.watch_interval_ms.as_ref(), 1000, 100, 600_000)
                .map_err(|(s, m)| err(s, "reload.watch_interval_ms", m))?,
        ),
    };

    let limits = Limits {
        max_decoded_bytes: bounded(
            raw.limits.max_decoded_bytes.as_ref(),
            16 * 1024 * 1024,
            1024,
            1 << 32,
        )
        .map_err(|(s, m)| err(s, "limits.max_decoded_bytes", m))?
            as usize,
        max_expansion_ratio: bounded(raw.limits.max_expansion_ratio.as_ref(), 100, 1, 100_000)
            .map_err(|(s, m)| err(s, "limits.max_expansion_ratio", m))?,
        max_json_depth: bounded(
            raw.limits.max_json_depth.as_ref().map(widen).as_ref(),
            64,
            1,
            128,
        )
        .map_err(|(s, m)| err(s, "limits.max_json_depth", m))? as usize,
        // 8 KiB is what nginx (`large_client_header_buffers`) and most EHR servers accept in a
        // request line; 64 KiB is as far as pingora's URI type goes (longer ones get its 400).
        max_uri_bytes: bounded(raw.limits.max_uri_bytes.as_ref(), 8 * 1024, 256, 64 * 1024)
            .map_err(|(s, m)| err(s, "limits.max_uri_bytes", m))? as usize,
        // pingora stops reading a head at about 1 MiB (and 256 headers) with its own 400.
        max_header_bytes: bounded(
            raw.limits.max_header_bytes.as_ref(),
            64 * 1024,
            1024,
            1024 * 1024,
        )
        .map_err(|(s, m)| err(s, "limits.max_header_bytes", m))? as usize,
        header_timeout: Duration::from_millis(
            bounded(raw.limits.header_timeout_ms.as_ref(), 30_000, 100, 600_000)
                .map_err(|(s, m)| err(s, "limits.header_timeout_ms", m))?,
        ),
        body_timeout: Duration::from_millis(
            bounded(raw.limits.body_timeout_ms.as_ref(), 60_000, 100, 3_600_000)
                .map_err(|(s, m)| err(s, "limits.body_timeout_ms", m))?,
        ),
    };

    let mut upstreams = Vec::new();
    let mut upstream_names = HashSet::new();
    for (i, u) in raw.upstreams.iter().enumerate() {
        let at = |f: &str| format!("upstreams[{i}].{f}");
        check_name(&u.name.value).map_err(|m| err(&u.name, &at("name"), m))?;
        if !upstream_names.insert(u.name.value.clone()) {
            return Err(err(&u.name, &at("name"), "duplicate upstream name".into()));
        }
        let address = resolve_upstream(&u.address.value, dns)
            .map_err(|m| err(&u.address, &at("address"), m))?;
        let tls = match &u.tls {
            Some(t) => {
                if t.sni.value.trim().is_empty() {
                    return Err(err(
                        &t.sni,
                        &at("tls.sni"),
                        "must not be empty (rustls needs a server name to verify)".into(),
                    ));
                }
                if let Some(ca) = &t.ca_file {
                    let path = resolve(&ca.value);
                    if !path.is_file() {
                        return Err(err(
                            ca,
                            &at("tls.ca_file"),
                            format!("{} is not a readable file", path.display()),
                        ));
                    }
                }
                Some(UpstreamTls {
                    sni: t.sni.value.clone(),
                    ca_file: t.ca_file.as_ref().map(|c| resolve(&c.value)),
                    verify_hostname: t.verify_hostname,
                })
            }
            None => None,
        };
        let ms =
            |v: &Option<Spanned<u64>>, default: u64, f: &str| -> Result<Duration, SourceError> {
                let v = bounded(v.as_ref(), default, 1, 3_600_000)
                    .map_err(|(s, m)| err(s, &at(f), m))?;
                Ok(Duration::from_millis(v))
            };
        upstreams.push(Upstream {
            name: u.name.value.clone(),
            address,
            tls,
            timeouts: Timeouts {
                connect: ms(&u.timeouts.connect_ms, 2_000, "timeouts.connect_ms")?,
                read: ms(&u.timeouts.read_ms, 30_000, "timeouts.read_ms")?,
                write: ms(&u.timeouts.write_ms, 30_000, "timeouts.write_ms")?,
                idle: ms(&u.timeouts.idle_ms, 60_000, "timeouts.idle_ms")?,
            },
        });
    }
    if upstreams.is_empty() {
        return Err(SourceError::new(
            file,
            0,
            0,
            "upstreams",
            "at least one upstream is required",
        ));
    }

    let d = &raw.defaults;
    let mut routes = Vec::new();
    let mut route_names = HashSet::new();
    for (i, r) in raw.routes.iter().enumerate() {
        let at = |f: &str| format!("routes[{i}].{f}");
        check_name(&r.name.value).map_err(|m| err(&r.name, &at("name"), m))?;
        if !route_names.insert(r.name.value.clone()) {
            return Err(err(&r.name, &at("name"), "duplicate route name".into()));
        }
        let upstream = upstreams
            .iter()
            .position(|u| u.name == r.upstream.value)
            .ok_or_else(|| {
                let known: Vec<_> = upstreams.iter().map(|u| u.name.as_str()).collect();
                err(
                    &r.upstream,
                    &at("upstream"),
                    format!(
                        "unknown upstream `{}` (known: {})",
                        r.upstream.value,
                        known.join(", ")
                    ),
                )
            })?;
        let mode_spanned = r.mode.as_ref().or(d.mode.as_ref());
        let mode = mode_spanned.map(|m| m.value).unwrap_or(Mode::Enforce);
        if mode == Mode::Off {
            if let Some(s) = mode_spanned {
                return Err(err(
                    s,
                    &at("mode"),
                    "a route's mode is `enforce` or `monitor`; to skip a rule use `rule_overrides`"
                        .into(),
                ));
            }
        }
        let path_prefix = match &r.path_prefix {
            Some(p) if !p.value.starts_with('/') => {
                return Err(err(p, &at("path_prefix"), "must start with `/`".into()))
            }
            Some(p) => p.value.clone(),
            None => "/".to_string(),
        };
        let host = match &r.host {
            Some(h) if h.value.is_empty() || h.value.contains(['/', ' ']) => {
                return Err(err(
                    h,
                    &at("host"),
                    "must be a bare host name such as `ehr.example.org`".into(),
                ))
            }
            Some(h) => Some(h.value.to_ascii_lowercase()),
            None => None,
        };
        let max_body_bytes = bounded(
            r.max_body_bytes.as_ref().or(d.max_body_bytes.as_ref()),
            DEFAULT_MAX_BODY_BYTES,
            0,
            1 << 30,
        )
        .map_err(|(s, m)| err(s, &at("max_body_bytes"), m))?;
        let audit_headers = match r.audit_headers.as_ref().or(d.audit_headers.as_ref()) {
            Some(list) => {
                let mut out = Vec::new();
                for (j, h) in list.iter().enumerate() {
                    check_header_name(&h.value)
                        .map_err(|m| err(h, &format!("{}[{j}]", at("audit_headers")), m))?;
                    out.push(h.value.to_ascii_lowercase());
                }
                out
            }
            None => vec![DEFAULT_AUDIT_HEADER.to_string()],
        };
        let audit_header_max_length = bounded(
            r.audit_header_max_length
                .as_ref()
                .or(d.audit_header_max_length.as_ref())
                .map(widen)
                .as_ref(),
            DEFAULT_AUDIT_HEADER_MAX_LENGTH as u64,
            1,
            4096,
        )
        .map_err(|(s, m)| err(s, &at("audit_header_max_length"), m))?
            as usize;
        let inspect = match r.inspect.as_ref().or(d.inspect.as_ref()) {
            Some(ins) => {
                let mut headers = Vec::new();
                for (j, h) in ins.headers.iter().enumerate() {
                    let name = h.value.strip_suffix('*').unwrap_or(&h.value);
                    check_header_name(name)
                        .map_err(|m| err(h, &format!("{}[{j}]", at("inspect.headers")), m))?;
                    headers.push(h.value.to_ascii_lowercase());
                }
                Inspect {
                    query: ins.query,
                    body: ins.body,
                    headers,
                }
            }
            None => Inspect {
                query: true,
                body: true,
                headers: Vec::new(),
            },
        };
        let rule_overrides = r
            .rule_overrides
            .iter()
            .map(|(k, v)| (k.clone(), v.value))
            .collect();
        if let Some(earlier) = routes.iter().find(|e: &&Route| {
            e.path_prefix.len() <= path_prefix.len()
                && path_prefix.starts_with(&e.path_prefix)
                && (e.host.is_none() || e.host == host)
        }) {
            return Err(err(
                &r.name,
                &at("name"),
                format!(
                    "route can never match: route `{}` comes first and matches every request this one would; list the more specific route first",
                    earlier.name
                ),
            ));
        }
        let route_audit = r.audit.as_ref().or(d.audit.as_ref());
        let audit = RouteAudit {
            resource_id: route_audit.and_then(|a| a.resource_id).unwrap_or_default(),
            fail_closed: route_audit.and_then(|a| a.fail_closed).unwrap_or(true),
        };
        routes.push(Route {
            name: r.name.value.clone(),
            host,
            path_prefix,
            upstream,
            mode,
            max_body_bytes,
            audit_headers,
            audit_header_max_length,
            inspect,
            rule_overrides,
            audit,
        });
    }
    if routes.is_empty() {
        return Err(SourceError::new(
            file,
            0,
            0,
            "routes",
            "at least one route is required",
        ));
    }

    let audit = match &raw.audit {
        Some(a) if a.enabled => Some(validate_audit(
            file,
            &resolve,
            a,
            listen.client_auth.is_some(),
        )?),
        _ => None,
    };

    Ok(GatewayConfig {
        audit,
        source: file.to_path_buf(),
        listen,
        admin,
        rules_dir: resolve(&raw.rules.dir.value),
        rules_overlays: raw.rules.overlays.iter().map(|p| resolve(p)).collect(),
        server,
        logging,
        reload,
        limits,
        upstreams,
        routes,
    })
}

fn validate_audit(
    file: &Path,
    resolve: &dyn Fn(&Path) -> PathBuf,
    a: &RawAudit,
    mutual_tls: bool,
) -> Result<crate::config::AuditSettings, SourceError> {
    use crate::config::{FileSinkSettings, FsyncPolicy, PostgresSettings, UserIdSource};
    let err = |s: &dyn Located, field: &str, msg: String| s.error(file, field, msg);
    let num = |v: &Option<Spanned<u64>>, default: u64, min: u64, max: u64, f: &str| {
        bounded(v.as_ref(), default, min, max).map_err(|(s, m)| err(s, &format!("audit.{f}"), m))
    };
    let dir = resolve(&a.dir.value);
    let fsync = match a.fsync.as_ref().map(|f| f.value) {
        None | Some(RawFsync::EveryRecord) => {
            if let Some(ms) = &a.fsync_interval_ms {
                return Err(err(
                    ms,
                    "audit.fsync_interval_ms",
                    "only applies with `fsync: batched`".into(),
                ));
            }
            FsyncPolicy::EveryRecord
        }
        Some(RawFsync::Batched) => FsyncPolicy::Batched(Duration::from_millis(num(
            &a.fsync_interval_ms,
            50,
            1,
            60_000,
            "fsync_interval_ms",
        )?)),
    };
    let user_id = match &a.user_id {
        None => UserIdSource::None,
        Some(u) => match u.source.value {
            RawUserIdSource::None => UserIdSource::None,
            RawUserIdSource::Header => {
                let Some(h) = &u.header else {
                    return Err(err(
                        &u.source,
                        "audit.user_id.header",
                        "`source: header` needs `header:` naming the header your identity proxy sets".into(),
                    ));
                };
                check_header_name(&h.value).map_err(|m| err(h, "audit.user_id.header", m))?;
                UserIdSource::Header(h.value.to_ascii_lowercase())
            }
            RawUserIdSource::ClientCert if !mutual_tls => {
                return Err(err(
                    &u.source,
                    "audit.user_id.source",
                    "`client_cert` needs mutual TLS: add `listen.client_auth.ca_file`".into(),
                ))
            }
            RawUserIdSource::ClientCert => UserIdSource::ClientCert,
            RawUserIdSource::Jwt => {
                return Err(err(
                    &u.source,
                    "audit.user_id.source",
                    "`jwt` needs access control, which this version does not have yet; use `header` behind an identity proxy".into(),
                ))
            }
        },
    };
    let postgres = match &a.postgres {
        None => None,
        Some(p) => {
            if p.url.value.trim().is_empty() {
                return Err(err(
                    &p.url,
                    "audit.postgres.url",
                    "must not be empty".into(),
                ));
            }
            let pnum = |v: &Option<Spanned<u64>>, default, min, max, f: &str| {
                bounded(v.as_ref(), default, min, max)
                    .map_err(|(s, m)| err(s, &format!("audit.postgres.{f}"), m))
            };
            let initial = pnum(
                &p.retry_initial_backoff_ms,
                100,
                1,
                60_000,
                "retry_initial_backoff_ms",
            )?;
            let max = pnum(
                &p.retry_max_backoff_ms,
                10_000,
                1,
                600_000,
                "retry_max_backoff_ms",
            )?;
            if max < initial {
                if let Some(s) = &p.retry_max_backoff_ms {
                    return Err(err(
                        s,
                        "audit.postgres.retry_max_backoff_ms",
                        "must not be below retry_initial_backoff_ms".into(),
                    ));
                }
            }
            Some(PostgresSettings {
                url: p.url.value.clone(),
                batch_size: pnum(&p.batch_size, 100, 1, 10_000, "batch_size")? as usize,
                batch_interval: Duration::from_millis(pnum(
                    &p.batch_interval_ms,
                    200,
                    1,
                    60_000,
                    "batch_interval_ms",
                )?),
                queue_capacity: pnum(&p.queue_capacity, 10_000, 1, 1_000_000, "queue_capacity")?
                    as usize,
                retry_initial_backoff: Duration::from_millis(initial),
                retry_max_backoff: Duration::from_millis(max.max(initial)),
            })
        }
    };
    for (key, field) in [
        (&a.signing_key_file, "audit.signing_key_file"),
        (&a.fingerprint_key_file, "audit.fingerprint_key_file"),
    ] {
        if crate::config::is_inside(&resolve(&key.value), &dir) {
            return Err(err(
                key,
                field,
                format!(
                    "is inside the audit directory {}; keep keys apart from the logs they protect",
                    dir.display()
                ),
            ));
        }
    }
    Ok(crate::config::AuditSettings {
        file: FileSinkSettings {
            dir,
            fsync,
            segment_max_bytes: num(
                &a.segment_max_bytes,
                64 * 1024 * 1024,
                1024,
                1 << 40,
                "segment_max_bytes",
            )?,
            segment_max_age: Duration::from_secs(num(
                &a.segment_max_age_seconds,
                86_400,
                1,
                31 * 86_400,
                "segment_max_age_seconds",
            )?),
            checkpoint_every_records: num(
                &a.checkpoint_every_records,
                1000,
                1,
                10_000_000,
                "checkpoint_every_records",
            )?,
            checkpoint_interval: Duration::from_secs(num(
                &a.checkpoint_interval_seconds,
                60,
                1,
                86_400,
                "checkpoint_interval_seconds",
            )?),
            queue_capacity: num(&a.queue_capacity, 4096, 1, 1_000_000, "queue_capacity")? as usize,
        },
        signing_key_file: resolve(&a.signing_key_file.value),
        fingerprint_key_file: resolve(&a.fingerprint_key_file.value),
        user_id,
        postgres,
        ack_timeout: Duration::from_millis(num(
            &a.ack_timeout_ms,
            5_000,
            1,
            600_000,
            "ack_timeout_ms",
        )?),
    })
}

/// Checks rule ids named in `rule_overrides` against the loaded rule set, so a typo in an
/// override cannot silently leave a rule enforcing (or, worse, think it is disabled).
pub fn check_rule_overrides(
    cfg: &GatewayConfig,
    known: &dyn Fn(&str) -> bool,
) -> Result<(), SourceError> {
    // Re-read the file to locate the offending key: overrides are rare, so this costs nothing
    // on the happy path and keeps `Route` free of span bookkeeping.
    let raw: RawConfig = crate::engine::source::load(&cfg.source)?;
    for (i, r) in raw.routes.iter().enumerate() {
        for (id, mode) in &r.rule_overrides {
            if !known(id) {
                return Err(SourceError::at(
                    &cfg.source,
                    mode,
                    format!("routes[{i}].rule_overrides.{id}"),
                    format!("unknown rule id `{id}`"),
                ));
            }
        }
    }
    Ok(())
}

/// Anything with a source position, so one error helper serves every `Spanned<T>`.
trait Located {
    fn error(&self, file: &Path, field: &str, msg: String) -> SourceError;
}

impl<T> Located for Spanned<T> {
    fn error(&self, file: &Path, field: &str, msg: String) -> SourceError {
        SourceError::at(file, self, field, msg)
    }
}

fn widen(s: &Spanned<usize>) -> Spanned<u64> {
    Spanned {
        value: s.value as u64,
        referenced: s.referenced,
        defined: s.defined,
    }
}

fn bounded(
    v: Option<&Spanned<u64>>,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, (&Spanned<u64>, String)> {
    match v {
        None => Ok(default),
        Some(s) if s.value < min || s.value > max => Err((
            s,
            format!("must be between {min} and {max}, got {}", s.value),
        )),
        Some(s) => Ok(s.value),
    }
}

fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        // Names become metric labels, so they must be short and plain.
        Err("must be 1-64 characters of letters, digits, `-` and `_`".into())
    }
}

fn check_header_name(name: &str) -> Result<(), String> {
    if !name.is_empty() && http::HeaderName::from_bytes(name.as_bytes()).is_ok() {
        Ok(())
    } else {
        Err(format!("`{name}` is not a valid HTTP header name"))
    }
}

fn parse_socket_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| format!("`{s}` is not an IP:port address such as 127.0.0.1:8443"))
}

/// Resolves `host:port` once. pingora's `HttpPeer::new` resolves at request time and panics
/// on failure, so we never hand it a name. With [`Dns::Skip`] a host name is only checked for
/// form and stands in as `0.0.0.0:port`.
fn resolve_upstream(s: &str, dns: Dns) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if dns == Dns::Skip {
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("`{s}` has no port (expected host:port)"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| format!("`{s}`: `{port}` is not a port number (expected host:port)"))?;
        check_host_name(host).map_err(|m| format!("`{s}`: {m}"))?;
        return Ok(SocketAddr::from(([0, 0, 0, 0], port)));
    }
    let mut addrs = s
        .to_socket_addrs()
        .map_err(|e| {
            format!(
                "cannot resolve `{s}`: {e} (expected host:port; `check --no-resolve` validates without DNS)"
            )
        })?;
    addrs
        .next()
        .ok_or_else(|| format!("`{s}` resolved to no address"))
}

/// A DNS host name (RFC 1123 labels: letters, digits and `-`, 1-63 characters each, no
/// leading or trailing `-`, at most 253 characters in all).
fn check_host_name(host: &str) -> Result<(), String> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if !host.is_empty() && host.len() <= 253 && host.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(format!("`{host}` is not a valid host name"))
    }
}

#[cfg(test)]
mod tests;
