//! The pingora `ProxyHttp` implementation: thin by design.
//!
//! For each request it routes, checks the audit headers, asks the engine for findings in the
//! query and configured headers, holds the body back (bounded) until it is complete, asks the
//! engine again, asks [`crate::verdict`] for a verdict, then forwards or answers. Every outcome
//! ends in one `Outcome` that feeds both the access log and the metrics in `logging`.
//!
//! Hook order (pingora 0.9, no cache): `request_filter` → `upstream_peer` → connect →
//! `upstream_request_filter` → request header written upstream → `request_body_filter` per
//! chunk → `response_filter` → … → `logging`. Errors go through `fail_to_proxy`.
//!
//! Body semantics we rely on (pingora note §3.2): by the time `request_body_filter` runs, the
//! request *header* has already been written upstream. We hold back every body chunk by
//! replacing it with `Some(Bytes::new())` (never `None`, which would end the upstream body
//! early and forward a truncated request), scan the complete body at end of stream, and either
//! emit it in one piece or fail with an `HTTPStatus` error. On a block the upstream has seen
//! the (already inspected) header and zero body bytes, then the connection closes, so it
//! receives an incomplete request it must discard.
//!
//! The hooks are here, in the order pingora calls them; the per-request state is in `ctx`,
//! the checks they run in `checks`, the answers they give in `answer`, the audit record in
//! `record`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use pingora::http::ResponseHeader;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType};

use crate::audit::AuditLog;
use crate::engine::Mode;
use crate::gateway::answer::{
    classify_error, drain_bounded, refuse, DRAIN_AFTER_LIMIT, DRAIN_TIMEOUT,
};
pub use crate::gateway::ctx::Ctx;
use crate::gateway::ctx::Outcome;
use crate::gateway::snapshot::Snapshot;
use crate::telemetry::Metrics;
use crate::verdict::{Decision, Reason};

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = Ctx;

    /// Runs first, once per request, right after pingora has parsed the request head: the
    /// request's state, on the snapshot current at this moment.
    fn new_ctx(&self) -> Ctx {
        // pingora calls this right after parsing a request head: disarm the head deadline.
        crate::gateway::deadline::head_complete();
        self.metrics.in_flight.inc();
        Ctx {
            request_id: uuid::Uuid::new_v4().to_string(),
            started: Instant::now(),
            snapshot: self.snapshot.load_full(),
            route: None,
            body: BytesMut::new(),
            body_seen: 0,
            oversize: false,
            drain_started: None,
            skip_body: false,
            matches: Vec::new(),
            outcome: None,
            inspection: Duration::ZERO,
            inspected: false,
            body_digest: None,
            audit_done: false,
            body_pending: false,
            tunnel: false,
            access: None,
            policy: None,
            holdback: None,
            session: None,
            who: None,
            records: None,
            leak: None,
        }
    }

    /// Runs once the request header is read, before any upstream connection: TLS version,
    /// routing, declared size, audit headers, Content-Encoding, query and header inspection.
    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> pingora::Result<bool> {
        // pingora waits up to 60 s for each body read; a client that stalls mid-body gets
        // `limits.body_timeout` instead (request_body_filter bounds the total time too).
        session.set_read_timeout(Some(ctx.snapshot.config.limits.body_timeout));
        // HTTP/1.1 pipelining (RFC 9112 §9.3.2): a client may send the next request before it
        // has read this response. pingora's default answers the first, then closes and drops
        // the rest unanswered; with this on, each request on the connection is read, inspected
        // and answered in order, one after the other (every one passes through these hooks).
        // A refusal still closes the connection after its answer (`Connection: close`).
        session.set_pipelining_enabled(true);
        let head = match self.check_request_head(session, ctx) {
            Some(reason) => Some(reason),
            // Only a request the head checks let through is worth a signature verification.
            None => match self.check_identity(session, ctx).await {
                Some(reason) => Some(reason),
                // A suspended principal is refused before anything else is asked of it.
                None => match self.check_defence(session, ctx) {
                    Some(reason) => Some(reason),
                    None => match self.scan_unverified_authorization(session, ctx) {
                        Some(reason) => Some(reason),
                        None => self.check_policy(session, ctx).await,
                    },
                },
            },
        };
        let reason = match head {
            Some(reason) => reason,
            None if self.audit_refuses(ctx) => {
                ctx.fail_closed();
                Reason::AuditUnavailable
            }
            None => {
                // A body that will be held back is pending from the start: the upstream could
                // answer before the first body byte arrives (see `response_filter`).
                ctx.body_pending = !session.is_body_empty()
                    && (ctx.route().is_some_and(|r| r.inspect.body)
                        || crate::gateway::policy::policy_pending(ctx));
                return Ok(false);
            }
        };
        // Drain up to the route's cap plus the same allowance the streaming path gives, so an
        // oversize upload still reads our 413. Unrouted requests get no allowance.
        let limit = ctx
            .route()
            .map(|r| r.max_body_bytes.saturating_add(DRAIN_AFTER_LIMIT))
            .unwrap_or(0);
        drain_bounded(session, limit).await;
        self.answer(session, ctx, reason).await?;
        Ok(true)
    }

    /// Runs after `request_filter` let the request through, before connecting upstream.
    /// Chooses the upstream. Runs again on a retry, so the held-back body is reset here
    /// (pingora replays its retry buffer through `request_body_filter`).
    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut Ctx,
    ) -> pingora::Result<Box<HttpPeer>> {
        ctx.body.clear();
        ctx.body_seen = 0;
        ctx.body_digest = None;
        let upstream = ctx.route().map(|r| r.upstream);
        match upstream.and_then(|i| ctx.snapshot.peers.get(i)) {
            Some(peer) => Ok(Box::new(peer.clone())),
            None => Err(Error::explain(
                ErrorType::InternalError,
                "route has no upstream",
            )),
        }
    }

    /// Runs once the upstream connection is up, before the request header is written to it.
    /// Adds the request id and forwarding headers; replaces client-supplied copies so the
    /// upstream can trust them.
    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        req: &mut pingora::http::RequestHeader,
        ctx: &mut Ctx,
    ) -> pingora::Result<()> {
        req.insert_header("x-request-id", ctx.request_id.as_str())?;
        if let Some(addr) = session.client_addr().and_then(|a| a.as_inet()) {
            req.insert_header("x-forwarded-for", addr.ip().to_string())?;
        }
        req.insert_header("x-forwarded-proto", "https")?;
        crate::gateway::identity::identity_headers(ctx, req)?;
        if let Some(tag) = crate::gateway::policy::target_if_match(ctx) {
            // The version the target check read: a version written since makes the upstream
            // refuse the write (412) rather than apply it to a resource nobody checked.
            req.insert_header(http::header::IF_MATCH, tag)?;
        }
        // pingora accepts identical duplicate Content-Length values (two `2` lines, or
        // `2, 2`) and would forward them as received; strict servers refuse that with 400.
        // Forward exactly one. (Differing values never get here: pingora answers 400.)
        let mut lengths = req.headers.get_all(http::header::CONTENT_LENGTH).iter();
        let first = lengths.next().map(|v| v.as_bytes().to_vec());
        let repeated = lengths.next().is_some();
        if let Some(first) = first {
            if repeated || first.contains(&b',') {
                let n = std::str::from_utf8(&first)
                    .ok()
                    .and_then(|v| v.split(',').next())
                    .and_then(|v| v.trim().parse::<u64>().ok());
                if let Some(n) = n {
                    req.insert_header(http::header::CONTENT_LENGTH, n.to_string())?;
                }
            }
        }
        Ok(())
    }

    /// Runs per body chunk (and at end of stream), after the request header went upstream.
    /// Holds the body back until it is complete, enforces the cap while
    /// streaming, then inspects and releases (or refuses) it in one piece.
    async fn request_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> pingora::Result<()> {
        // Hold the snapshot, not a clone of the route: this runs once per body chunk.
        let snapshot = ctx.snapshot.clone();
        let Some(route) = ctx.route.and_then(|i| snapshot.config.routes.get(i)) else {
            return Err(Error::explain(
                ErrorType::InternalError,
                "body without route",
            ));
        };
        let chunk = body.take();
        let len = chunk.as_ref().map(|c| c.len() as u64).unwrap_or(0);
        ctx.body_seen = ctx.body_seen.saturating_add(len);
        if let (Some(c), Some(audit)) = (chunk.as_ref().filter(|c| !c.is_empty()), &self.audit) {
            ctx.body_digest
                .get_or_insert_with(|| audit.fingerprinter().body_context())
                .update(c);
        }

        if ctx.oversize || ctx.body_seen > route.max_body_bytes {
            if !ctx.oversize {
                ctx.oversize = true;
                ctx.drain_started = Some(Instant::now());
                ctx.body = BytesMut::new();
                ctx.block(Reason::BodyTooLarge);
            }
            let drained_enough = ctx.body_seen
                > route.max_body_bytes.saturating_add(DRAIN_AFTER_LIMIT)
                || ctx
                    .drain_started
                    .is_some_and(|t| t.elapsed() > DRAIN_TIMEOUT);
            if end_of_stream || drained_enough {
                return Err(refuse(Reason::BodyTooLarge));
            }
            *body = Some(Bytes::new()); // keep reading, forward nothing
            return Ok(());
        }

        if ctx.tunnel && session.was_upgraded() {
            // An allowed upgrade after the upstream's 101: these are tunnel bytes, relayed as
            // they come (uninspected, documented so); no hold-back and no whole-body deadline,
            // only the per-read idle timeout. A body sent *with* the upgrade request, before
            // any 101, is still held back and inspected below. pingora#935: never an empty
            // final chunk.
            ctx.body_pending = false;
            *body = chunk.filter(|c| !c.is_empty() || !end_of_stream);
            return Ok(());
        }

        // Slow bodies: a client that keeps trickling bytes never trips the per-read timeout,
        // so the whole body gets `limits.body_timeout` from the end of the request head.
        if !end_of_stream && ctx.started.elapsed() > snapshot.config.limits.body_timeout {
            ctx.body = BytesMut::new();
            ctx.block(Reason::ClientTimeout);
            return Err(refuse(Reason::ClientTimeout));
        }

        // The PHI scan holds bodies it inspects; the access policy holds the bodies its
        // decision waits for (creates, updates, Bundles), on every route it decides on.
        let scan = route.inspect.body && !ctx.skip_body;
        let hold = scan || crate::gateway::policy::policy_pending(ctx);
        if !hold {
            ctx.body_pending = false;
            // Not inspected: stream through. An empty final chunk becomes None so pingora does
            // not write a second terminating chunk upstream (pingora#935).
            *body = chunk.filter(|c| !c.is_empty() || !end_of_stream);
            return Ok(());
        }

        if let Some(c) = chunk {
            if ctx.body.capacity() == 0 {
                // Size the buffer once from Content-Length (already checked against the cap).
                let declared = session
                    .req_header()
                    .headers
                    .get(http::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(0)
                    .min(route.max_body_bytes);
                ctx.body.reserve((declared as usize).max(c.len()));
            }
            ctx.body.extend_from_slice(&c);
        }
        if !end_of_stream {
            ctx.body_pending = true;
            *body = Some(Bytes::new()); // hold back; `None` here would end the upstream body
            return Ok(());
        }
        ctx.body_pending = false;

        // The policy's decision on the complete body, before a byte of it is released.
        if let Some(reason) = self.check_policy_body(session, ctx) {
            ctx.body = BytesMut::new();
            return Err(refuse(reason));
        }
        if ctx.body.is_empty() {
            return Ok(()); // bodiless request: nothing to inspect, and `None` stays `None`
        }
        let headers = &session.req_header().headers;
        let content_type = headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        let content_encoding = headers
            .get(http::header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok());
        let token_in_body = self.check_body_token(ctx, content_type, content_encoding);
        if let Some(reason) = token_in_body.or_else(|| {
            scan.then(|| self.check_body(ctx, content_type, content_encoding))
                .flatten()
        }) {
            ctx.body = BytesMut::new();
            return Err(refuse(reason));
        }
        if !ctx.body.is_empty() {
            *body = Some(ctx.body.split().freeze());
        }
        Ok(())
    }

    /// Runs when the upstream's response header arrives, before it is sent to the client.
    /// Tags every proxied response with the request id, so a client can quote it.
    /// Also writes the audit record before the response is released: with
    /// `fsync: every_record` a client never holds a response whose record is not on disk, and
    /// a fail-closed route answers 503 instead when the record cannot be written.
    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> pingora::Result<()> {
        if ctx.body_pending {
            // The upstream answered from the head alone while the body is still held back
            // (e.g. a server that replies without reading). Passing that answer on would tell
            // the client its request went through, and the audit record would say `allow`,
            // for a body that may yet be refused: answer 502 instead (see `fail_to_proxy`).
            return Err(Error::explain(
                ErrorType::Custom(Reason::UpstreamEarlyResponse.as_str()),
                "upstream answered before the request body was inspected",
            ));
        }
        resp.insert_header("x-request-id", ctx.request_id.as_str())?;
        // The leak guard is armed here, once the status is known: an answer it does not scan
        // (every 2xx by default) costs nothing.
        crate::gateway::leak::arm_guard(ctx, resp.status.as_u16());
        self.arm_record_count(resp, ctx);
        // A response held back for a check is recorded when it is decided on.
        if ctx.holdback.is_some() && !self.hold_response_header(session, resp, ctx)? {
            return Ok(());
        }
        if ctx.tunnel && resp.status == http::StatusCode::SWITCHING_PROTOCOLS {
            // Allowed, and recorded as what it is: a tunnel nobody inspects from here on.
            ctx.outcome = Some(Outcome {
                decision: Decision::Allow,
                reason: Some(Reason::UpgradeTunnel),
            });
        }
        if self.audit.is_some() {
            let outcome = ctx.decision(None);
            let bytes_out = resp
                .headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            let recorded = self
                .audit(session, ctx, &outcome, resp.status.as_u16(), bytes_out)
                .await;
            if !recorded && ctx.route().is_some_and(|r| r.audit.fail_closed) {
                ctx.fail_closed();
                ctx.audit_done = false; // record the refusal itself, if the trail recovers
                return Err(refuse(Reason::AuditUnavailable));
            }
        }
        Ok(())
    }

    /// Runs per response body chunk (and at its end), after `response_filter`. Only a
    /// response held back for a check is touched (`gateway/holdback.rs`).
    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> pingora::Result<Option<Duration>> {
        if ctx.holdback.is_some() {
            self.hold_response_body(body, end_of_stream, ctx)?;
        }
        // What streams on to the client (a held answer's chunks are taken above).
        if let (Some(c), Some(b)) = (ctx.records.as_mut(), body.as_ref()) {
            c.feed(b);
        }
        Ok(None)
    }

    /// Runs when a request fails at any point (a refusal of ours, pingora's parser, the
    /// upstream), before `logging`.
    /// Answers every failure with our JSON body and request id. The body is built from fixed
    /// text only: nothing from the request or the upstream is echoed.
    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        // A held response ends here, released or refused.
        if let Some(done) = self.finish_held(session, e, ctx).await {
            return done;
        }
        if session
            .response_written()
            .is_some_and(|r| r.status == http::StatusCode::SWITCHING_PROTOCOLS)
        {
            // The connection is a tunnel now: whatever ended it (an idle timeout, a reset), no
            // HTTP answer of ours may be written into it. The tunnel's record stands.
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        }
        let (code, classified) = match classify_error(e) {
            // pingora's upstream read timer also runs while the client is still uploading.
            // The upstream cannot answer a request it has not fully received (and we hold the
            // body back until it is complete), so the slow party is the client: 408, and no
            // upstream error is counted for it.
            (_, Reason::UpstreamTimeout)
                if e.etype() == &ErrorType::ReadTimedout && !session.is_body_done() =>
            {
                (408, Reason::ClientTimeout)
            }
            other => other,
        };
        let reason = match (&ctx.outcome, e.etype()) {
            (
                Some(Outcome {
                    reason: Some(r),
                    decision: Decision::Block,
                }),
                ErrorType::HTTPStatus(_),
            ) => *r,
            _ => classified,
        };
        // Every 4xx is a refusal of the client's request (nothing, or no body byte, went
        // upstream), whether our filters or pingora's parser raised it.
        let is_block = matches!(e.etype(), ErrorType::HTTPStatus(_)) || (400..500).contains(&code);
        if reason == Reason::AuditUnavailable {
            ctx.fail_closed();
        } else if is_block {
            ctx.block(reason);
        } else {
            ctx.outcome = Some(Outcome {
                decision: Decision::Error,
                reason: Some(reason),
            });
            if matches!(
                reason,
                Reason::UpstreamTimeout
                    | Reason::UpstreamUnavailable
                    | Reason::UpstreamError
                    | Reason::UpstreamEarlyResponse
            ) {
                self.metrics
                    .upstream_errors
                    .with_label_values(&[ctx.route_name(), reason.as_str()])
                    .inc();
            }
        }
        if code > 0 {
            if let Err(err) = self.answer(session, ctx, reason).await {
                tracing::debug!(request_id = %ctx.request_id, error = %err, "could not send error response");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    /// Runs after `fail_to_proxy`: whether pingora logs the error.
    /// Our own refusals are logged by `logging` as decisions, not as errors.
    fn suppress_error_log(&self, _session: &Session, _ctx: &Ctx, error: &Error) -> bool {
        matches!(error.etype(), ErrorType::HTTPStatus(_))
            || crate::gateway::holdback::is_held(error)
    }

    /// Runs whenever pingora logs an error of its own (after `fail_to_proxy`, and on upstream
    /// I/O errors it retries or gives up on).
    /// What pingora prints next to its own error logs. The default includes the path and query
    /// string, which can hold PHI; ours holds only ids.
    fn request_summary(&self, _session: &Session, ctx: &Ctx) -> String {
        format!("request_id={} route={}", ctx.request_id, ctx.route_name())
    }

    /// Runs once per request at the very end: the one place logs and metrics are written.
    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        self.metrics.in_flight.dec();
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(0);
        let outcome = ctx.decision(e);
        // Requests that ended without a response from us or the upstream (client gone).
        if !ctx.audit_done {
            self.audit(session, ctx, &outcome, status, None).await;
        }
        // Counted on a task of its own: never waits on the state backend here.
        self.observe_defence(session, ctx, &outcome);
        let route = ctx.route_name();
        let decision = outcome.decision.as_str();
        let m = &self.metrics;
        // Handles resolved once per route and label value (telemetry::RouteHandles).
        let handles = ctx.route_handles();
        let elapsed = ctx.started.elapsed();
        match handles {
            Some(h) => h.request(m, decision, elapsed.as_secs_f64()),
            None => {
                m.requests.with_label_values(&[route, decision]).inc();
                m.request_duration
                    .with_label_values(&[route, decision])
                    .observe(elapsed.as_secs_f64());
            }
        }
        if outcome.reason == Some(Reason::ClientTimeout) {
            m.client_timeouts.with_label_values(&["body"]).inc();
        }
        if let (Some(reason), Decision::Block | Decision::WouldBlock) =
            (outcome.reason, outcome.decision)
        {
            match handles {
                Some(h) => h.rejection(m, reason.as_str()),
                None => m
                    .rejections
                    .with_label_values(&[route, reason.as_str()])
                    .inc(),
            }
        }
        let mut seen: Vec<(&str, Mode)> = ctx
            .matches
            .iter()
            .map(|x| (x.rule.as_str(), x.mode))
            .collect();
        seen.sort_unstable();
        seen.dedup();
        for (rule, mode) in &seen {
            m.rule_matches
                .with_label_values(&[rule, mode.as_str()])
                .inc();
        }
        if ctx.inspected {
            m.inspection_duration.observe(ctx.inspection.as_secs_f64());
        }
        let rules = ctx.rule_ids().join(",");
        let locations: Vec<&str> = ctx.matches.iter().map(|x| x.location.as_str()).collect();
        tracing::info!(
            target: "phi_gateway::access",
            // `&str`, not `%`: recorded as strings without a trip through `Display`.
            request_id = ctx.request_id.as_str(),
            route,
            method = session.req_header().method.as_str(),
            decision,
            reason = outcome.reason.map(Reason::as_str).unwrap_or(""),
            rules = rules.as_str(),
            locations = locations.join(",").as_str(),
            status,
            duration_us = elapsed.as_micros() as u64,
            inspection_us = ctx.inspection.as_micros() as u64,
            "request"
        );
    }

    /// Runs after `logging`, only when the HTTP/1 connection is kept alive for another request.
    /// Marks a connection kept alive after this request, so the head deadline of the next
    /// request on it allows for the keep-alive wait (see [`crate::gateway::deadline`]).
    fn persist_connection_context(
        &self,
        _session: &Session,
        _ctx: &Ctx,
    ) -> Option<Box<dyn std::any::Any + Send + Sync>> {
        Some(Box::new(crate::gateway::deadline::KeptAlive))
    }
}

/// The proxy application.
pub struct Gateway {
    /// The current snapshot. A reload stores a new one; each request loads it once in
    /// `new_ctx` and keeps that `Arc` to the end, so requests in flight finish on the
    /// configuration and rules they started with.
    pub(super) snapshot: Arc<ArcSwap<Snapshot>>,
    pub(super) metrics: Metrics,
    /// The process-global audit trail (not part of the reloadable snapshot).
    pub(super) audit: Option<Arc<AuditLog>>,
    /// The process-global token verifier (key sets and token cache), when issuers are
    /// configured.
    pub(super) identity: Option<Arc<crate::access::identity::Verifier>>,
    /// The process-global shared state (sessions), when tokens are checked.
    pub(super) state: Option<Arc<crate::state::Store>>,
    /// The process-global access-anomaly detector, when `defence.anomaly` is on.
    pub(super) defence: Option<Arc<crate::defence::Defence>>,
    /// The response bytes held back across all requests (`limits.response_hold_budget_bytes`).
    pub(super) hold_budget: Arc<crate::gateway::holdback::HoldBudget>,
    /// The gateway's own upstream connections: the read of a write's target
    /// (`gateway/target.rs`), apart from pingora's pool for the proxied requests.
    pub(super) connector: pingora::connectors::http::Connector,
}

impl Gateway {
    /// Creates the proxy over a swappable snapshot.
    pub fn new(snapshot: Arc<ArcSwap<Snapshot>>, metrics: Metrics) -> Self {
        let hold_budget = Arc::new(crate::gateway::holdback::HoldBudget::new(
            metrics.response_held_bytes.clone(),
        ));
        // The guarded routes' leak series exist from the start, so a leak alert has a
        // baseline of 0 (routes a reload adds appear with their first leak).
        for route in &snapshot.load().config.routes {
            if route.response_guard.mode != Mode::Off {
                for action in ["block", "would_block"] {
                    metrics
                        .response_leaks
                        .with_label_values(&[route.name.as_str(), action]);
                }
            }
        }
        Self {
            snapshot,
            hold_budget,
            metrics,
            audit: None,
            identity: None,
            state: None,
            defence: None,
            connector: pingora::connectors::http::Connector::new(None),
        }
    }

    /// Counts every finished request in `defence`, and refuses suspended principals.
    pub fn with_defence(mut self, defence: Option<Arc<crate::defence::Defence>>) -> Self {
        self.defence = defence;
        self
    }

    /// Keeps sessions (automatic logoff) in `state`.
    pub fn with_state(mut self, state: Option<Arc<crate::state::Store>>) -> Self {
        self.state = state;
        self
    }

    /// Verifies bearer tokens with `identity` on routes that require them.
    pub fn with_identity(
        mut self,
        identity: Option<Arc<crate::access::identity::Verifier>>,
    ) -> Self {
        self.identity = identity;
        self
    }

    /// Records every decision in `audit`.
    pub fn with_audit(mut self, audit: Option<Arc<AuditLog>>) -> Self {
        self.audit = audit;
        self
    }
}

#[cfg(test)]
mod tests;
