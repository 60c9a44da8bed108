//! The admin listener: `GET /metrics`, `GET /livez`, `GET /readyz`, `POST /reload`, and the
//! access-anomaly detector's `GET /principals/suspended` and `POST /principals/{key}/reinstate`.
//!
//! The principal endpoints change who may reach patient data, and the admin listener may not
//! stay on loopback (a Kubernetes probe port), so they require `Authorization: Bearer <token>`
//! with the token of `admin.token_file` (compared in constant time: an HMAC under a random
//! per-process key, verified with `ring::hmac::verify`); 401 without it or with another.
//! Without a configured token they are refused (403) with a message saying so.
//!
//! Served on its own address (loopback by default) and never on the TLS port, so scrapes,
//! probes and reloads can't be reached from the clients the gateway protects. `/livez` only
//! says that the process answers; it never depends on the upstream (a dead EHR must not get
//! the gateway restarted). `/readyz` says whether this instance should receive traffic: not
//! before the listener is up (rules compiled and certificate loaded happen before that), and
//! not once SIGTERM has started draining. While the shared-state backend (Redis) fails it
//! answers 200 `degraded`: the instance still serves, from its local session copy.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use http::{Method, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::runtime::reload::{Reloader, Trigger};
use crate::telemetry::Metrics;

/// Readiness as seen by `/readyz`.
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
    draining: AtomicBool,
    audit: std::sync::OnceLock<Arc<crate::audit::AuditLog>>,
    state: std::sync::OnceLock<Arc<crate::state::Store>>,
}

impl Health {
    /// Marks the instance as shutting down: `/readyz` answers 503 `draining` from now on.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Whether shutdown has started.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Lets `/readyz` report (and depend on) the audit sinks.
    pub fn set_audit(&self, audit: Option<Arc<crate::audit::AuditLog>>) {
        if let Some(a) = audit {
            let _ = self.audit.set(a);
        }
    }

    /// Lets `/readyz` report the shared-state backend (`degraded` while it fails).
    pub fn set_state(&self, state: Option<Arc<crate::state::Store>>) {
        if let Some(s) = state {
            let _ = self.state.set(s);
        }
    }

    /// Marks the instance ready (rules compiled, certificate loaded, listeners configured).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// Current readiness: up and not draining.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst) && !self.is_draining()
    }
}

/// The admin bearer token, held only as an HMAC tag under a random key: comparing a
/// presented token is `ring::hmac::verify`, constant time, and the token itself is not kept.
pub struct AdminToken {
    key: ring::hmac::Key,
    tag: ring::hmac::Tag,
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken([redacted])")
    }
}

impl AdminToken {
    /// Reads the token from `path` (surrounding whitespace trimmed; an empty file is refused).
    pub fn load(path: &std::path::Path) -> std::io::Result<AdminToken> {
        let text = std::fs::read_to_string(path)?;
        AdminToken::new(text.trim()).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "the file holds no token")
        })
    }

    /// From the token text; `None` when it is empty or no random key can be drawn.
    pub fn new(token: &str) -> Option<AdminToken> {
        if token.is_empty() {
            return None;
        }
        let rng = ring::rand::SystemRandom::new();
        let key = ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &rng).ok()?;
        let tag = ring::hmac::sign(&key, token.as_bytes());
        Some(AdminToken { key, tag })
    }

    /// Whether `presented` is the token (constant time).
    pub fn matches(&self, presented: &[u8]) -> bool {
        ring::hmac::verify(&self.key, presented, self.tag.as_ref()).is_ok()
    }
}

/// The admin HTTP application.
pub struct AdminApp {
    metrics: Metrics,
    health: Arc<Health>,
    reloader: Option<Arc<Reloader>>,
    defence: Option<Arc<crate::defence::Defence>>,
    token: Option<AdminToken>,
}

impl AdminApp {
    /// Creates the app. Without a reloader, `POST /reload` answers 404.
    pub fn new(metrics: Metrics, health: Arc<Health>, reloader: Option<Arc<Reloader>>) -> Self {
        Self {
            metrics,
            health,
            reloader,
            defence: None,
            token: None,
        }
    }

    /// Serves the principal endpoints of `defence`, behind `token`.
    pub fn with_principals(
        mut self,
        defence: Option<Arc<crate::defence::Defence>>,
        token: Option<AdminToken>,
    ) -> Self {
        self.defence = defence;
        self.token = token;
        self
    }

    /// `GET /principals/suspended`, `POST /principals/{key}/reinstate`.
    async fn principals(
        &self,
        method: &Method,
        path: &str,
        authorization: Option<&[u8]>,
    ) -> Response<Vec<u8>> {
        let Some(token) = &self.token else {
            return json(
                StatusCode::FORBIDDEN,
                r#"{"error":"the principal endpoints need admin.token_file in gateway.yaml; without an admin token they are refused"}"#,
            );
        };
        let presented = authorization.and_then(|v| {
            let (scheme, rest) = std::str::from_utf8(v).ok()?.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| rest.trim().as_bytes().to_vec())
        });
        if !presented.is_some_and(|p| token.matches(&p)) {
            let mut r = json(
                StatusCode::UNAUTHORIZED,
                r#"{"error":"a valid admin bearer token is required"}"#,
            );
            r.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer realm=\"phi-gateway-admin\""),
            );
            return r;
        }
        let Some(defence) = &self.defence else {
            return json(
                StatusCode::NOT_FOUND,
                r#"{"error":"defence.anomaly is not configured"}"#,
            );
        };
        if path == "/principals/suspended" {
            if method != Method::GET {
                return json(
                    StatusCode::METHOD_NOT_ALLOWED,
                    r#"{"error":"use GET /principals/suspended"}"#,
                );
            }
            let list: Vec<serde_json::Value> = defence
                .suspended()
                .into_iter()
                .map(|(key, until)| serde_json::json!({"principal": key, "until_ms": until}))
                .collect();
            return json(
                StatusCode::OK,
                &serde_json::json!({"suspended": list}).to_string(),
            );
        }
        let key = path
            .strip_prefix("/principals/")
            .and_then(|r| r.strip_suffix("/reinstate"));
        let Some(key) = key else {
            return json(StatusCode::NOT_FOUND, r#"{"error":"not found"}"#);
        };
        if method != Method::POST {
            return json(
                StatusCode::METHOD_NOT_ALLOWED,
                r#"{"error":"use POST /principals/{key}/reinstate"}"#,
            );
        }
        let Some(p) = crate::state::Principal::parse(key) else {
            return json(
                StatusCode::BAD_REQUEST,
                r#"{"error":"a principal key is 32 lowercase hex digits, as GET /principals/suspended lists them"}"#,
            );
        };
        match defence.reinstate(&p).await {
            Ok(true) => json(StatusCode::OK, r#"{"result":"reinstated"}"#),
            Ok(false) => json(StatusCode::NOT_FOUND, r#"{"result":"not_suspended"}"#),
            Err(e) => {
                tracing::error!(error = %e, "reinstate: the shared store failed");
                json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    r#"{"result":"reinstated_here_only","error":"the shared state store failed; other gateways still enforce the suspension"}"#,
                )
            }
        }
    }

    async fn reload(&self) -> Response<Vec<u8>> {
        let Some(reloader) = self.reloader.clone() else {
            return json(StatusCode::NOT_FOUND, r#"{"error":"reload not available"}"#);
        };
        // Compiling rules is CPU work: keep it off the admin runtime's threads.
        let outcome = tokio::task::spawn_blocking(move || reloader.reload(Trigger::Admin)).await;
        match outcome {
            Ok(Ok(done)) => json(
                StatusCode::OK,
                &serde_json::json!({
                    "result": "success",
                    "config_version": done.config_version,
                    "rules": done.rules,
                    "routes": done.routes,
                })
                .to_string(),
            ),
            // The message names a file, line and field of the operator's own configuration;
            // it never contains request data.
            Ok(Err(e)) => json(
                StatusCode::UNPROCESSABLE_ENTITY,
                &serde_json::json!({"result": "failure", "error": e.to_string()}).to_string(),
            ),
            Err(e) => {
                tracing::error!(error = %e, "reload task failed");
                json(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    r#"{"result":"failure","error":"reload task failed"}"#,
                )
            }
        }
    }
}

fn reply(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let len = r.body().len();
    let headers = r.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_str(content_type)
            .unwrap_or(http::HeaderValue::from_static("text/plain")),
    );
    headers.insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(len));
    headers.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    r
}

fn json(status: StatusCode, body: &str) -> Response<Vec<u8>> {
    reply(status, "application/json", format!("{body}\n").into_bytes())
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        // The admin endpoints take no body; drain anything sent so keep-alive stays sane.
        let _ = session.drain_request_body().await;
        let req = session.req_header();
        let path = req.uri.path().to_string();
        let path = path.as_str();
        let method = req.method.clone();
        if path.starts_with("/principals/") {
            let auth = req
                .headers
                .get(http::header::AUTHORIZATION)
                .map(|v| v.as_bytes().to_vec());
            return self.principals(&method, path, auth.as_deref()).await;
        }
        if path == "/reload" {
            if method != Method::POST {
                return json(
                    StatusCode::METHOD_NOT_ALLOWED,
                    r#"{"error":"use POST /reload"}"#,
                );
            }
            return self.reload().await;
        }
        if method != Method::GET && method != Method::HEAD {
            return json(
                StatusCode::METHOD_NOT_ALLOWED,
                r#"{"error":"method not allowed"}"#,
            );
        }
        match path {
            "/metrics" => match self.metrics.render() {
                Ok(body) => reply(
                    StatusCode::OK,
                    "text/plain; version=0.0.4; charset=utf-8",
                    body,
                ),
                Err(e) => {
                    tracing::error!(error = %e, "cannot render metrics");
                    json(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        r#"{"error":"metrics unavailable"}"#,
                    )
                }
            },
            "/livez" => json(StatusCode::OK, r#"{"status":"live"}"#),
            "/readyz" => {
                // Not ready while an audit sink fails (fail-closed routes would refuse
                // traffic) or once shutdown has begun.
                let audit = self.health.audit.get();
                let audit_ok = audit.is_none_or(|a| a.status().healthy());
                let ready = self.health.is_ready() && audit_ok;
                // A failing state backend degrades, it does not unready: every replica
                // shares one Redis, so pulling them all out would turn a Redis outage into a
                // gateway outage. Sessions meanwhile come from each replica's local copy.
                let state = self.health.state.get();
                let state_up = state.is_none_or(|s| s.is_up());
                let status = if self.health.is_draining() {
                    "draining"
                } else if !ready {
                    "not_ready"
                } else if !state_up {
                    "degraded"
                } else {
                    "ready"
                };
                let body = serde_json::json!({
                    "status": status,
                    "audit": match audit {
                        Some(a) => a.status().to_json(),
                        None => serde_json::json!("disabled"),
                    },
                    "state": match state {
                        Some(s) => serde_json::json!({"backend": s.backend(), "up": s.is_up()}),
                        None => serde_json::json!("disabled"),
                    },
                    // Counting fails open while the state backend fails: say so.
                    "anomaly": match &self.defence {
                        Some(d) => serde_json::json!({
                            "counting": if d.counting_up() { "ok" } else { "failing_open" },
                            "suspended": d.suspended().len(),
                        }),
                        None => serde_json::json!("disabled"),
                    },
                });
                let code = if ready {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                json(code, &body.to_string())
            }
            _ => json(
                StatusCode::NOT_FOUND,
                r#"{"error":"not found","endpoints":["GET /metrics","GET /livez","GET /readyz","POST /reload","GET /principals/suspended","POST /principals/{key}/reinstate"]}"#,
            ),
        }
    }
}
