//! A deadline for the request head, wrapped around pingora's HTTP proxy app (slowloris).
//!
//! pingora reads a request head with a per-read timeout only (60 s on a fresh connection), so
//! a client that sends one byte every few seconds holds a connection, a task and a growing
//! buffer for as long as it likes: up to about 1 MiB of head at any pace. No `ProxyHttp` hook
//! runs before the head is complete, so the deadline wraps the app instead: the first request
//! on a connection gets `limits.header_timeout` from the end of the TLS handshake to arrive in
//! full; a later request on a keep-alive connection gets pingora's keep-alive idle time plus
//! `limits.header_timeout` from the end of the previous response (we cannot see when its
//! first byte arrives, and an idle keep-alive connection is closed by pingora itself at 60 s,
//! which is not a slow client). The proxy's `new_ctx`, the first thing pingora calls once a
//! head is parsed, disarms the deadline through a task-local flag. Past the deadline the
//! connection is dropped without an answer, as nginx does when `client_header_timeout`
//! expires: there is no request yet to answer or audit.
//!
//! HTTP/2 streams reach the app with their head already complete (the h2 codec assembles it),
//! so for them the deadline is disarmed at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::apps::{HttpServerApp, HttpServerOptions, ReusedHttpStream};
use pingora::protocols::http::v2::server::H2Options;
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;

use crate::gateway::snapshot::Snapshot;
use crate::telemetry::Metrics;

/// pingora's HTTP/1 keep-alive idle time: `apps/mod.rs` calls `set_keepalive(Some(60))` on
/// every fresh connection and a reused one inherits it.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);

/// What the proxy leaves on a connection it keeps alive (`persist_connection_context`), so
/// the next request on it is known to follow a keep-alive wait.
#[derive(Debug)]
pub(crate) struct KeptAlive;

tokio::task_local! {
    /// Set once the current request's head has been parsed.
    static HEAD_SEEN: Arc<AtomicBool>;
}

/// Marks the current request's head as complete. Called by the proxy from `new_ctx`; a no-op
/// outside a [`HeadDeadline`] (e.g. in unit tests).
pub(crate) fn head_complete() {
    let _ = HEAD_SEEN.try_with(|seen| seen.store(true, Ordering::Release));
}

/// An [`HttpServerApp`] that gives every request head a deadline, then hands the session to
/// `inner` (the pingora proxy) unchanged.
pub struct HeadDeadline<A> {
    inner: Arc<A>,
    /// Read per request, so a reload of `limits.header_timeout_ms` applies to new requests.
    snapshot: Arc<ArcSwap<Snapshot>>,
    metrics: Metrics,
}

impl<A> HeadDeadline<A> {
    /// Wraps `inner`.
    pub fn new(inner: A, snapshot: Arc<ArcSwap<Snapshot>>, metrics: Metrics) -> Self {
        Self {
            inner: Arc::new(inner),
            snapshot,
            metrics,
        }
    }
}

#[async_trait]
impl<A> HttpServerApp for HeadDeadline<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        let timeout = self.snapshot.load().config.limits.header_timeout;
        let deadline = match session.take_connection_user_context() {
            Some(ctx) => {
                // Put it back untouched: pingora hands it to `on_connection_reuse`.
                session.set_connection_user_context(Some(ctx));
                KEEPALIVE_IDLE + timeout
            }
            None => timeout,
        };
        let seen = Arc::new(AtomicBool::new(false));
        let work = HEAD_SEEN.scope(seen.clone(), self.inner.process_new_http(session, shutdown));
        tokio::pin!(work);
        tokio::select! {
            done = &mut work => done,
            () = tokio::time::sleep(deadline) => {
                if seen.load(Ordering::Acquire) {
                    // The head arrived in time; the request runs to its own end.
                    work.await
                } else {
                    // Dropping the future drops the session and closes the connection.
                    self.metrics.client_timeouts.with_label_values(&["header"]).inc();
                    tracing::info!(
                        deadline_ms = deadline.as_millis() as u64,
                        "request head not complete within limits.header_timeout_ms; connection closed"
                    );
                    None
                }
            }
        }
    }

    fn h2_options(&self) -> Option<H2Options> {
        self.inner.h2_options()
    }

    fn server_options(&self) -> Option<&HttpServerOptions> {
        self.inner.server_options()
    }

    async fn http_cleanup(&self) {
        self.inner.http_cleanup().await;
    }
}
