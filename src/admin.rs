//! The admin listener: `/metrics`, `/livez`, `/readyz`.
//!
//! Served on its own address (loopback by default) and never on the TLS port, so scrapes and
//! probes can't be reached from the clients the gateway protects. `/livez` only says that the
//! process answers; it never depends on the upstream (a dead EHR must not get the gateway
//! restarted). `/readyz` says whether this instance should receive traffic.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use http::{Method, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::metrics::Metrics;

/// Readiness as seen by `/readyz`.
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
    audit: std::sync::OnceLock<Arc<crate::audit::AuditLog>>,
}

impl Health {
    /// Lets `/readyz` report (and depend on) the audit sinks.
    pub fn set_audit(&self, audit: Option<Arc<crate::audit::AuditLog>>) {
        if let Some(a) = audit {
            let _ = self.audit.set(a);
        }
    }

    /// Marks the instance ready (rules compiled, certificate loaded, listeners configured).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// Current readiness.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}

/// The admin HTTP application.
pub struct AdminApp {
    metrics: Metrics,
    health: Arc<Health>,
}

impl AdminApp {
    /// Creates the app.
    pub fn new(metrics: Metrics, health: Arc<Health>) -> Self {
        Self { metrics, health }
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
        let path = req.uri.path();
        let method = req.method.clone();
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
                // Not ready while an audit sink fails: fail-closed routes would refuse traffic.
                let audit = self.health.audit.get();
                let audit_ok = audit.is_none_or(|a| a.status().healthy());
                let ready = self.health.is_ready() && audit_ok;
                let body = serde_json::json!({
                    "status": if ready { "ready" } else { "not_ready" },
                    "audit": match audit {
                        Some(a) => a.status().to_json(),
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
                r#"{"error":"not found","endpoints":["/metrics","/livez","/readyz"]}"#,
            ),
        }
    }
}
