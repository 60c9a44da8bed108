//! Raw YAML ([`super::raw`]) → validated [`GatewayConfig`]: defaults, bounds, cross-references
//! (routes → upstreams), and the helpers every section's checks share. Every error names the
//! file, the line and the field.

use std::collections::HashSet;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::access::{validate_access, validate_policy_dirs, validate_route_access};
use super::audit::validate_audit;
use super::raw::{
    RawAdmin, RawConfig, RawLimits, RawListen, RawLogging, RawReload, RawRoute, RawRouteDefaults,
    RawServer, RawUpstream,
};
use super::response_guard::validate_response_guard;
use super::{
    ClientAuth, Dns, GatewayConfig, Inspect, Limits, Listen, Logging, Reload, Route, RouteAudit,
    Server, Timeouts, Upstream, UpstreamTls, DEFAULT_AUDIT_HEADER, DEFAULT_AUDIT_HEADER_MAX_LENGTH,
    DEFAULT_HTTP2_IDLE_TIMEOUT_MS, DEFAULT_MAX_BODY_BYTES, DEFAULT_RESPONSE_HOLD_BUDGET_BYTES,
};
use crate::engine::source::{SourceError, Spanned};
use crate::engine::Mode;

/// Raw → validated, one section at a time in this order; the first error is returned.
/// Relative paths are resolved against `base` (the file's directory).
pub(super) fn validate(
    file: &Path,
    base: &Path,
    raw: RawConfig,
    dns: Dns,
) -> Result<GatewayConfig, SourceError> {
    let resolve = |p: &Path| -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }
    };

    let listen = validate_listen(file, &resolve, &raw.listen)?;
    let admin = validate_admin(file, &raw.admin, &listen)?;
    let server = validate_server(file, &resolve, raw.server)?;
    let logging = validate_logging(raw.logging);
    let reload = validate_reload(file, &raw.reload)?;
    let limits = validate_limits(file, &raw.limits)?;
    let upstreams = validate_upstreams(file, &resolve, &raw.upstreams, dns)?;
    let access = match &raw.access {
        Some(a) => validate_access(file, &resolve, a)?,
        None => super::AccessSettings {
            token_cache_entries: super::DEFAULT_TOKEN_CACHE_ENTRIES as usize,
            response_hold_bytes: super::DEFAULT_RESPONSE_HOLD_BYTES,
            ..Default::default()
        },
    };
    let policy_dirs = validate_policy_dirs(file, &resolve, raw.access.as_ref())?;
    let routes = validate_routes(
        file,
        &raw.defaults,
        &raw.routes,
        &upstreams,
        !access.issuers.is_empty(),
        !policy_dirs.is_empty(),
    )?;

    let audit = match &raw.audit {
        Some(a) if a.enabled => Some(validate_audit(
            file,
            &resolve,
            a,
            listen.client_auth.is_some(),
            !access.issuers.is_empty(),
        )?),
        _ => None,
    };

    let rules_fingerprint_key_file = raw.rules.fingerprint_key_file.as_deref().map(&resolve);
    let state = super::state::validate_state(
        file,
        &resolve,
        raw.state.as_ref(),
        rules_fingerprint_key_file
            .as_deref()
            .or(audit.as_ref().map(|a| a.fingerprint_key_file.as_path())),
    )?;

    let anomaly = super::defence::validate_defence(file, raw.defence.as_ref(), &routes)?;
    let webhook = match raw.defence.as_ref().and_then(|d| d.webhook.as_ref()) {
        Some(w) => Some(super::webhook::validate(file, &resolve, w)?),
        None => None,
    };
    let admin_token_file = match raw.admin.as_ref().and_then(|a| a.token_file.as_ref()) {
        Some(t) => Some(readable_file(file, &resolve, t, "admin.token_file")?),
        None => None,
    };

    Ok(GatewayConfig {
        anomaly,
        webhook,
        admin_token_file,
        audit,
        access,
        policy_dirs,
        state,
        source: file.to_path_buf(),
        listen,
        admin,
        rules_dir: resolve(&raw.rules.dir.value),
        rules_overlays: raw.rules.overlays.iter().map(|p| resolve(p)).collect(),
        rules_fingerprint_key_file,
        server,
        logging,
        reload,
        limits,
        upstreams,
        routes,
    })
}

/// `listen:`: the TLS listener, its HTTP/2 idle timeout and mutual TLS.
fn validate_listen(
    file: &Path,
    resolve: &dyn Fn(&Path) -> PathBuf,
    raw: &RawListen,
) -> Result<Listen, SourceError> {
    let err = |s: &dyn Located, field: &str, msg: String| s.error(file, field, msg);
    let listen = Listen {
        address: parse_socket_addr(&raw.address.value)
            .map_err(|m| err(&raw.address, "listen.address", m))?,
        cert_file: resolve(&raw.cert_file.value),
        key_file: resolve(&raw.key_file.value),
        http2: raw.http2,
        http2_idle_timeout: Duration::from_millis(
            bounded(
                raw.http2_idle_timeout_ms.as_ref(),
                DEFAULT_HTTP2_IDLE_TIMEOUT_MS,
                100,
                3_600_000,
            )
            .map_err(|(s, m)| err(s, "listen.http2_idle_timeout_ms", m))?,
        ),
        client_auth: match &raw.client_auth {
            Some(c) => {
                let ca_file =
                    readable_file(file, &resolve, &c.ca_file, "listen.client_auth.ca_file")?;
                Some(ClientAuth {
                    ca_file,
                    required: c.required,
                })
            }
            None => None,
        },
    };
    Ok(listen)
}

/// `admin:`: the admin listener, on an address of its own.
fn validate_admin(
    file: &Path,
    raw: &Option<RawAdmin>,
    listen: &Listen,
) -> Result<Option<SocketAddr>, SourceError> {
    let err = |s: &dyn Located, field: &str, msg: String| s.error(file, field, msg);
    let admin = match raw {
        Some(a) => Some(
            parse_socket_addr(&a.address.value).map_err(|m| err(&a.address, "admin.address", m))?,
        ),
        None => None,
    };
    if admin == Some(listen.address) {
        if let Some(a) = raw {
            return Err(err(
                &a.address,
                "admin.address",
                "must differ from listen.address".into(),
            ));
        }
    }
    Ok(admin)
}

/// `server:`: process settings handed to pingora.
fn validate_server(
    file: &Path,
    resolve: &dyn Fn(&Path) -> PathBuf,
    raw: RawServer,
) -> Result<Server, SourceError> {
    let err = |s: &dyn Located, field: &str, msg: String| s.error(file, field, msg);
    let threads = match &raw.threads {
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
        grace_period_seconds: bounded(raw.grace_period_seconds.as_ref(), 10, 0, 3600)
            .map_err(|(s, m)| err(s, "server.grace_period_seconds", m))?,
        graceful_shutdown_timeout_seconds: bounded(
            raw.graceful_shutdown_timeout_seconds.as_ref(),
            5,
            0,
            600,
        )
        .map_err(|(s, m)| err(s, "server.graceful_shutdown_timeout_seconds", m))?,
        shutdown_delay_seconds: bounded(raw.shutdown_delay_seconds.as_ref(), 0, 0, 600)
            .map_err(|(s, m)| err(s, "server.shutdown_delay_seconds", m))?,
        pid_file: raw
            .pid_file
            .map(|p| resolve(&p))
            .unwrap_or_else(|| std::env::temp_dir().join("phi-gateway.pid")),
        upgrade_sock: raw
            .upgrade_sock
            .map(|p| resolve(&p))
            .unwrap_or_else(|| std::env::temp_dir().join("phi-gateway-upgrade.sock")),
    };
    Ok(server)
}

/// `logging:`: format and filter (nothing to reject beyond what serde refuses).
fn validate_logging(raw: RawLogging) -> Logging {
    Logging {
        format: raw.format,
        level: raw.level.unwrap_or_else(|| "info".to_string()),
    }
}

/// `reload:`: the file watch.
fn validate_reload(file: &Path, raw: &RawReload) -> Result<Reload, SourceError> {
    let err = |s: &dyn Located, field: &str, msg: String| s.error(file, field, msg);
    let reload = Reload {
        watch: raw.watch.unwrap_or(true),
        watch_interval: Duration::from_millis(
            bounded(raw.watch_interval_ms.as_ref(), 1000, 100, 600_000)
                .map_err(|(s, m)| err(s, "reload.watch_interval_ms", m))?,
        ),
    };
    Ok(reload)
}

/// `limits:`: engine decoding limits and request size and time limits.
fn validate_limits(file: &Path, raw: &RawLimits) -> Result<Limits, SourceError> {
    let err = |s: &dyn Located, field: &str, msg: String| s.error(file, field, msg);
    let limits = Limits {
        max_decoded_bytes: bounded(
            raw.max_decoded_bytes.as_ref(),
            16 * 1024 * 1024,
            1024,
            1 << 32,
        )
        .map_err(|(s, m)| err(s, "limits.max_decoded_bytes", m))?
            as usize,
        max_expansion_ratio: bounded(raw.max_expansion_ratio.as_ref(), 100, 1, 100_000)
            .map_err(|(s, m)| err(s, "limits.max_expansion_ratio", m))?,
        max_json_depth: bounded(raw.max_json_depth.as_ref().map(widen).as_ref(), 64, 1, 128)
            .map_err(|(s, m)| err(s, "limits.max_json_depth", m))? as usize,
        // 8 KiB is what nginx (`large_client_header_buffers`) and most EHR servers accept in a
        // request line; 64 KiB is as far as pingora's URI type goes (longer ones get its 400).
        max_uri_bytes: bounded(raw.max_uri_bytes.as_ref(), 8 * 1024, 256, 64 * 1024)
            .map_err(|(s, m)| err(s, "limits.max_uri_bytes", m))? as usize,
        // pingora stops reading a head at about 1 MiB (and 256 headers) with its own 400.
        max_header_bytes: bounded(raw.max_header_bytes.as_ref(), 64 * 1024, 1024, 1024 * 1024)
            .map_err(|(s, m)| err(s, "limits.max_header_bytes", m))?
            as usize,
        header_timeout: Duration::from_millis(
            bounded(raw.header_timeout_ms.as_ref(), 30_000, 100, 600_000)
                .map_err(|(s, m)| err(s, "limits.header_timeout_ms", m))?,
        ),
        body_timeout: Duration::from_millis(
            bounded(raw.body_timeout_ms.as_ref(), 60_000, 100, 3_600_000)
                .map_err(|(s, m)| err(s, "limits.body_timeout_ms", m))?,
        ),
        response_hold_budget_bytes: bounded(
            raw.response_hold_budget_bytes.as_ref(),
            DEFAULT_RESPONSE_HOLD_BUDGET_BYTES,
            64 * 1024,
            1 << 34,
        )
        .map_err(|(s, m)| err(s, "limits.response_hold_budget_bytes", m))?,
    };
    Ok(limits)
}

/// `upstreams:`: names, addresses (resolved per `dns`), TLS and timeouts; at least one.
fn validate_upstreams(
    file: &Path,
    resolve: &dyn Fn(&Path) -> PathBuf,
    raw: &[RawUpstream],
    dns: Dns,
) -> Result<Vec<Upstream>, SourceError> {
    let err = |s: &dyn Located, field: &str, msg: String| s.error(file, field, msg);
    let mut upstreams = Vec::new();
    let mut upstream_names = HashSet::new();
    for (i, u) in raw.iter().enumerate() {
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
                    readable_file(file, &resolve, ca, &at("tls.ca_file"))?;
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
    Ok(upstreams)
}

/// `routes:` (over `defaults:`): each route's upstream, mode, limits, audit headers and
/// inspection; a route that an earlier one shadows is an error; at least one.
fn validate_routes(
    file: &Path,
    d: &RawRouteDefaults,
    raw: &[RawRoute],
    upstreams: &[Upstream],
    issuers: bool,
    policy: bool,
) -> Result<Vec<Route>, SourceError> {
    let err = |s: &dyn Located, field: &str, msg: String| s.error(file, field, msg);
    let mut routes = Vec::new();
    let mut route_names = HashSet::new();
    for (i, r) in raw.iter().enumerate() {
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
                let mut inspect = Inspect::everything();
                inspect.query = ins.query;
                inspect.body = ins.body;
                if let Some(list) = &ins.headers {
                    inspect.headers = header_selectors(list, &at("inspect.headers"))
                        .map_err(|(h, f, m)| err(h, &f, m))?;
                }
                inspect.skip_headers.extend(
                    header_selectors(&ins.skip_headers, &at("inspect.skip_headers"))
                        .map_err(|(h, f, m)| err(h, &f, m))?,
                );
                inspect
            }
            None => Inspect::everything(),
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
        let raw_access = r.access.as_ref().or(d.access.as_ref());
        let access = validate_route_access(
            file,
            &at("access"),
            raw_access,
            issuers,
            policy,
            &path_prefix,
        )?;
        let fhir_route = access.policy || raw_access.is_some_and(|a| a.fhir_base.is_some());
        let response_guard = validate_response_guard(
            file,
            &at("response_guard"),
            r.response_guard.as_ref().or(d.response_guard.as_ref()),
            fhir_route,
        )?;
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
            allow_upgrade: r.allow_upgrade.or(d.allow_upgrade).unwrap_or(false),
            access,
            response_guard,
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
    Ok(routes)
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
pub(super) trait Located {
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

pub(super) fn bounded(
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

/// A list of header selectors (a name, `prefix*`, or `*` for every header), lowercased.
fn header_selectors<'a>(
    list: &'a [Spanned<String>],
    field: &str,
) -> Result<Vec<String>, (&'a Spanned<String>, String, String)> {
    let mut out = Vec::new();
    for (j, h) in list.iter().enumerate() {
        let name = h.value.strip_suffix('*').unwrap_or(&h.value);
        if !(name.is_empty() && h.value == "*") {
            check_header_name(name).map_err(|m| (h, format!("{field}[{j}]"), m))?;
        }
        out.push(h.value.to_ascii_lowercase());
    }
    Ok(out)
}

/// `p` resolved against the configuration file's directory, if it names a regular file
/// (checked before anything binds: a key, secret or CA file that is missing is a
/// configuration error with its line and `field`, not a failure at first use).
pub(super) fn readable_file(
    file: &Path,
    resolve: &dyn Fn(&Path) -> PathBuf,
    p: &Spanned<PathBuf>,
    field: &str,
) -> Result<PathBuf, SourceError> {
    let path = resolve(&p.value);
    if path.is_file() {
        Ok(path)
    } else {
        Err(p.error(
            file,
            field,
            format!("{} is not a readable file", path.display()),
        ))
    }
}

pub(super) fn check_header_name(name: &str) -> Result<(), String> {
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
