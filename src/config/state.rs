//! The `state:` section (where shared state lives: memory or Redis; see `crate::state` and
//! docs/state.md) and `access.sessions` (automatic logoff: idle and absolute session limits,
//! issue 11 §5). The raw YAML types live here too, so the section is one file.
//!
//! Both sections are process-wide: a change needs a restart (the store is started once).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::validate::{bounded, readable_file, Located};
use crate::engine::source::{SourceError, Spanned};

/// Default `state.timeout_ms`: the longest one request waits on Redis. Envoy's rate-limit
/// filter uses 20 ms; a session check that waits longer is answered from the local copy.
pub const DEFAULT_STATE_TIMEOUT_MS: u64 = 25;
/// Upper bound of `state.timeout_ms`.
pub const MAX_STATE_TIMEOUT_MS: u64 = 1_000;
/// Default `state.max_entries`: keys held in memory (the memory backend, or the Redis
/// backend's local session copy).
pub const DEFAULT_STATE_MAX_ENTRIES: u64 = 100_000;
/// Default `access.sessions.idle_timeout_seconds`: 15 minutes (the seed's "15 minutes max for
/// inactivity"; HIPAA 164.312(a)(2)(iii) automatic logoff).
pub const DEFAULT_IDLE_TIMEOUT_SECONDS: u64 = 900;
/// Default `access.sessions.max_session_seconds`: 12 hours from `auth_time` (a long shift).
pub const DEFAULT_MAX_SESSION_SECONDS: u64 = 43_200;
/// Shortest time a timed-out session is remembered (so a fresh token of the same `sid` does
/// not restart it): at least this, and at least the absolute limit.
pub const MIN_SESSION_RETAIN_SECONDS: u64 = 43_200;

/// `state:` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawState {
    pub(super) backend: Option<Spanned<String>>,
    pub(super) url: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) password_file: Option<Spanned<PathBuf>>,
    #[serde(default)]
    pub(super) ca_file: Option<Spanned<PathBuf>>,
    pub(super) timeout_ms: Option<Spanned<u64>>,
    pub(super) max_entries: Option<Spanned<u64>>,
    #[serde(default)]
    pub(super) key_file: Option<Spanned<PathBuf>>,
}

/// `access.sessions:` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSessions {
    pub(super) idle_timeout_seconds: Option<Spanned<u64>>,
    pub(super) max_session_seconds: Option<Spanned<u64>>,
}

/// Where shared state lives.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum StateBackend {
    /// In this process, bounded by `max_entries` (one instance).
    #[default]
    Memory,
    /// A Redis (or Valkey) server shared by the fleet.
    Redis {
        /// `redis://host:port[/db]` or `rediss://…` (TLS 1.3, rustls).
        url: String,
        /// File holding the `AUTH` password (never in gateway.yaml).
        password_file: Option<PathBuf>,
        /// CA bundle for `rediss://` instead of the system roots.
        ca_file: Option<PathBuf>,
    },
}

/// The validated `state:` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateSettings {
    /// The backend.
    pub backend: StateBackend,
    /// Longest one call may take (the request path never waits longer).
    pub timeout: Duration,
    /// Most keys held in memory.
    pub max_entries: usize,
    /// The secret state keys are fingerprinted under: `state.key_file`, else the deployment's
    /// fingerprint key (`rules.fingerprint_key_file`, `audit.fingerprint_key_file`). Required
    /// for Redis (every gateway of the fleet must derive the same keys); without one the
    /// memory backend uses a random per-process key.
    pub key_file: Option<PathBuf>,
}

impl Default for StateSettings {
    fn default() -> Self {
        StateSettings {
            backend: StateBackend::Memory,
            timeout: Duration::from_millis(DEFAULT_STATE_TIMEOUT_MS),
            max_entries: DEFAULT_STATE_MAX_ENTRIES as usize,
            key_file: None,
        }
    }
}

/// The validated `access.sessions` (automatic logoff).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionSettings {
    /// Idle limit; `None` (`idle_timeout_seconds: 0`) turns it off.
    pub idle_timeout: Option<Duration>,
    /// Absolute limit from `auth_time` (else from the session's first sighting); `None`
    /// (`max_session_seconds: 0`) turns it off.
    pub max_session: Option<Duration>,
}

impl SessionSettings {
    /// Whether any limit is on.
    pub fn enabled(&self) -> bool {
        self.idle_timeout.is_some() || self.max_session.is_some()
    }

    /// How long a session's entry is kept after its last activity.
    pub fn retain(&self) -> Duration {
        let idle = self.idle_timeout.unwrap_or_default();
        let max = self.max_session.unwrap_or_default();
        Duration::from_secs(MIN_SESSION_RETAIN_SECONDS).max(max) + idle
    }
}

impl Default for SessionSettings {
    fn default() -> Self {
        SessionSettings {
            idle_timeout: Some(Duration::from_secs(DEFAULT_IDLE_TIMEOUT_SECONDS)),
            max_session: Some(Duration::from_secs(DEFAULT_MAX_SESSION_SECONDS)),
        }
    }
}

/// Validates `access.sessions`.
pub(super) fn validate_sessions(
    file: &Path,
    raw: Option<&RawSessions>,
) -> Result<SessionSettings, SourceError> {
    let Some(raw) = raw else {
        return Ok(SessionSettings::default());
    };
    let secs = |v: &Option<Spanned<u64>>, default: u64, f: &str| {
        bounded(v.as_ref(), default, 0, 30 * 86_400)
            .map_err(|(s, m)| s.error(file, &format!("access.sessions.{f}"), m))
    };
    let idle = secs(
        &raw.idle_timeout_seconds,
        DEFAULT_IDLE_TIMEOUT_SECONDS,
        "idle_timeout_seconds",
    )?;
    let max = secs(
        &raw.max_session_seconds,
        DEFAULT_MAX_SESSION_SECONDS,
        "max_session_seconds",
    )?;
    if idle > 0 && max > 0 && max < idle {
        if let Some(s) = &raw.max_session_seconds {
            return Err(s.error(
                file,
                "access.sessions.max_session_seconds",
                "must not be below idle_timeout_seconds (or 0 to turn it off)".into(),
            ));
        }
    }
    Ok(SessionSettings {
        idle_timeout: (idle > 0).then(|| Duration::from_secs(idle)),
        max_session: (max > 0).then(|| Duration::from_secs(max)),
    })
}

/// Validates `state:`. `fingerprint_key` is the deployment's fingerprint key file, the
/// default of `key_file`.
pub(super) fn validate_state(
    file: &Path,
    resolve: &dyn Fn(&Path) -> PathBuf,
    raw: Option<&RawState>,
    fingerprint_key: Option<&Path>,
) -> Result<StateSettings, SourceError> {
    let default = RawState::default();
    let raw = raw.unwrap_or(&default);
    let err = |s: &dyn Located, f: &str, msg: String| s.error(file, &format!("state.{f}"), msg);
    let readable =
        |p: &Spanned<PathBuf>, f: &str| readable_file(file, resolve, p, &format!("state.{f}"));
    let backend = match raw.backend.as_ref().map(|b| (b, b.value.as_str())) {
        None | Some((_, "memory")) => {
            for (name, set) in [
                ("url", raw.url.as_ref().map(|u| u as &dyn Located)),
                (
                    "password_file",
                    raw.password_file.as_ref().map(|u| u as &dyn Located),
                ),
                ("ca_file", raw.ca_file.as_ref().map(|u| u as &dyn Located)),
            ] {
                if let Some(s) = set {
                    return Err(err(s, name, "only applies with `backend: redis`".into()));
                }
            }
            StateBackend::Memory
        }
        Some((b, "redis")) => {
            let Some(url) = &raw.url else {
                return Err(err(b, "url", "`backend: redis` needs a `url` such as `redis://127.0.0.1:6379` or `rediss://redis.internal:6380`".into()));
            };
            check_redis_url(&url.value).map_err(|m| err(url, "url", m))?;
            let tls = url.value.starts_with("rediss://");
            let ca_file = match &raw.ca_file {
                Some(ca) if !tls => {
                    return Err(err(
                        ca,
                        "ca_file",
                        "only applies to a `rediss://` url".into(),
                    ))
                }
                Some(ca) => Some(readable(ca, "ca_file")?),
                None => None,
            };
            let password_file = match &raw.password_file {
                Some(p) => Some(readable(p, "password_file")?),
                None => None,
            };
            StateBackend::Redis {
                url: url.value.clone(),
                password_file,
                ca_file,
            }
        }
        Some((b, other)) => {
            return Err(err(
                b,
                "backend",
                format!("unknown backend `{other}` (expected `memory` or `redis`)"),
            ))
        }
    };
    let timeout = bounded(
        raw.timeout_ms.as_ref(),
        DEFAULT_STATE_TIMEOUT_MS,
        1,
        MAX_STATE_TIMEOUT_MS,
    )
    .map_err(|(s, m)| err(s, "timeout_ms", m))?;
    let max_entries = bounded(
        raw.max_entries.as_ref(),
        DEFAULT_STATE_MAX_ENTRIES,
        1,
        100_000_000,
    )
    .map_err(|(s, m)| err(s, "max_entries", m))?;
    let key_file = match &raw.key_file {
        Some(k) => Some(readable(k, "key_file")?),
        None => fingerprint_key.map(Path::to_path_buf),
    };
    if key_file.is_none() {
        if let (StateBackend::Redis { .. }, Some(b)) = (&backend, &raw.backend) {
            return Err(err(
                b,
                "key_file",
                "`backend: redis` needs a secret to fingerprint keys with, the same on every gateway of the fleet: set `state.key_file` (or `audit.fingerprint_key_file`)".into(),
            ));
        }
    }
    Ok(StateSettings {
        backend,
        timeout: Duration::from_millis(timeout),
        max_entries: max_entries as usize,
        key_file,
    })
}

/// `redis://host[:port][/db]` or `rediss://…`: a host, no password in the URL (it belongs in
/// `password_file`, out of gateway.yaml), no Unix socket path.
fn check_redis_url(url: &str) -> Result<(), String> {
    let uri: http::Uri = url.parse().map_err(|_| format!("`{url}` is not a URL"))?;
    match uri.scheme_str() {
        Some("redis") | Some("rediss") => {}
        _ => return Err("must be a `redis://` or `rediss://` (TLS) URL".into()),
    }
    match uri.authority() {
        Some(a) if a.as_str().contains('@') => {
            Err("must not carry credentials: put the password in `state.password_file`".into())
        }
        Some(a) if !a.host().is_empty() => Ok(()),
        _ => Err(format!("`{url}` has no host")),
    }
}
