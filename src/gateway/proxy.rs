//! The pingora `ProxyHttp` implementation: thin by design.
//!
//! For each request it routes, checks the audit headers, asks the engine for findings in the
//! query and configured headers, holds the body back (bounded) until it is complete, asks the
//! engine again, asks [`crate::verdict`] for a verdict, then forwards or answers. Every outcome
//! ends in one [`Outcome`] that feeds both the access log and the metrics in `logging`.
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

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorSource, ErrorType};

use crate::audit::{AuditLog, RecordInput, Redacted};
use crate::config::{ResourceIdMode, Route};
use crate::engine::Mode;
use crate::engine::{InspectError, Part, ScanOptions};
use crate::gateway::snapshot::Snapshot;
use crate::telemetry::Metrics;
use crate::verdict::{effective_matches, Decision, Match, Reason};

/// Extra body bytes we read and discard after the cap is exceeded, so the client can finish
/// sending and read our 413 instead of seeing a connection reset. Past this we answer anyway.
const DRAIN_AFTER_LIMIT: u64 = 4 * 1024 * 1024;
/// How long we wait for a client to finish sending a body we already decided to refuse.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The proxy application.
pub struct Gateway {
    /// The current snapshot. A reload stores a new one; each request loads it once in
    /// `new_ctx` and keeps that `Arc` to the end, so requests in flight finish on the
    /// configuration and rules they started with.
    snapshot: Arc<ArcSwap<Snapshot>>,
    metrics: Metrics,
    /// The process-global audit trail (not part of the reloadable snapshot).
    audit: Option<Arc<AuditLog>>,
}

impl Gateway {
    /// Creates the proxy over a swappable snapshot.
    pub fn new(snapshot: Arc<ArcSwap<Snapshot>>, metrics: Metrics) -> Self {
        Self {
            snapshot,
            metrics,
            audit: None,
        }
    }

    /// Records every decision in `audit`.
    pub fn with_audit(mut self, audit: Option<Arc<AuditLog>>) -> Self {
        self.audit = audit;
        self
    }
}

/// What happened to one request; the single source for logs and metrics.
#[derive(Debug, Clone)]
struct Outcome {
    decision: Decision,
    reason: Option<Reason>,
}

/// Per-request state.
pub struct Ctx {
    request_id: String,
    started: Instant,
    snapshot: Arc<Snapshot>,
    route: Option<usize>,
    /// Held-back body.
    body: BytesMut,
    /// Body bytes seen so far (including discarded ones after the cap).
    body_seen: u64,
    /// The body exceeded the cap; we are draining it before answering 413.
    oversize: bool,
    drain_started: Option<Instant>,
    /// Body inspection was skipped (monitor route with an undecodable body).
    skip_body: bool,
    matches: Vec<Match>,
    outcome: Option<Outcome>,
    inspection: Duration,
    inspected: bool,
    /// SHA-256 over the request body bytes received (for the audit record).
    body_digest: Option<ring::digest::Context>,
    /// The audit record was written (or attempted) already.
    audit_done: bool,
    /// Body bytes are held back and the verdict is not in yet.
    body_pending: bool,
}

impl Ctx {
    fn route(&self) -> Option<&Route> {
        self.route.and_then(|i| self.snapshot.config.routes.get(i))
    }

    fn route_name(&self) -> &str {
        self.route().map(|r| r.name.as_str()).unwrap_or("unmatched")
    }

    /// Records a would-block (monitor) reason; the first reason is kept for the log.
    fn would_block(&mut self, reason: Reason) {
        if self.outcome.is_none() {
            self.outcome = Some(Outcome {
                decision: Decision::WouldBlock,
                reason: Some(reason),
            });
        }
    }

    fn block(&mut self, reason: Reason) {
        self.outcome = Some(Outcome {
            decision: Decision::Block,
            reason: Some(reason),
        });
    }

    /// Applies a violation according to the route mode: enforce blocks, monitor records.
    /// Returns true when the request must be answered now.
    fn violation(&mut self, reason: Reason, mode: Mode) -> bool {
        if mode == Mode::Enforce {
            self.block(reason);
            true
        } else {
            self.would_block(reason);
            false
        }
    }

    /// Folds engine findings into the request's matches; returns the strongest mode seen.
    fn absorb(&mut self, scan: crate::engine::Scan) -> Option<Mode> {
        let route = self.route()?;
        let new = effective_matches(
            scan.findings
                .iter()
                .map(|f| (f.rule_id.as_str(), f.mode, f.location.as_str())),
            route.mode,
            &route.rule_overrides,
        );
        let strongest = new.iter().map(|m| m.mode).min();
        self.matches.extend(new);
        strongest
    }

    /// The decision so far; `e` is the error pingora ended the request with, if any.
    fn decision(&self, e: Option<&Error>) -> Outcome {
        match (&self.outcome, e) {
            (Some(o), _) => o.clone(),
            (None, Some(err)) => Outcome {
                decision: Decision::Error,
                reason: Some(classify_error(err).1),
            },
            (None, None) => Outcome {
                decision: Decision::Allow,
                reason: None,
            },
        }
    }

    fn fail_closed(&mut self) {
        self.outcome = Some(Outcome {
            decision: Decision::FailClosed,
            reason: Some(Reason::AuditUnavailable),
        });
    }

    fn rule_ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self.matches.iter().map(|m| m.rule.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

/// The JSON error body. Built by hand from fixed strings and ids we generated or loaded, so
/// it can never echo anything the client sent.
fn error_body(reason: Reason, request_id: &str, rules: &[&str]) -> Bytes {
    let mut s = format!(
        "{{\"error\":\"{}\",\"reason\":\"{}\",\"request_id\":\"{}\"",
        reason.message(),
        reason.as_str(),
        request_id
    );
    if !rules.is_empty() {
        s.push_str(",\"rules\":[");
        for (i, r) in rules.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            // Rule ids are validated at load ([a-z0-9-]), so they need no escaping.
            s.push('"');
            s.push_str(r);
            s.push('"');
        }
        s.push(']');
    }
    s.push_str("}\n");
    Bytes::from(s)
}

async fn write_error(session: &mut Session, ctx: &Ctx, reason: Reason) -> pingora::Result<()> {
    // A proxied response whose head already went out (the upstream broke mid-body) cannot be
    // turned into an error any more: writing one would splice our JSON into that body, inside
    // its declared length. Closing the connection short of that length is the only honest
    // signal left, and pingora does that once we return.
    if session
        .response_written()
        .is_some_and(|r| !r.status.is_informational())
    {
        session.set_keepalive(None);
        return Ok(());
    }
    let rules = if reason == Reason::PhiDetected {
        ctx.rule_ids()
    } else {
        Vec::new()
    };
    let body = error_body(reason, &ctx.request_id, &rules);
    let mut resp = ResponseHeader::build(reason.status(), Some(5))?;
    resp.insert_header("content-type", "application/json")?;
    resp.insert_header("content-length", body.len().to_string())?;
    resp.insert_header("x-request-id", ctx.request_id.as_str())?;
    resp.insert_header("cache-control", "no-store")?;
    session.set_keepalive(None);
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await
}

/// Reads and discards a request body we are refusing before it was read, bounded in bytes and
/// time, so the client receives our answer instead of a reset: closing a socket with unread
/// data makes the kernel send RST, which can destroy the response in flight (nginx's
/// "lingering close" solves the same problem). Bodies declared larger than `limit` are not
/// drained; neither are bodies behind `Expect: 100-continue`, whose client waits for our answer
/// before sending anything.
async fn drain_bounded(session: &mut Session, limit: u64) {
    let headers = &session.req_header().headers;
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let expects_continue = headers
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects_continue || declared.is_some_and(|n| n > limit) || declared == Some(0) {
        return;
    }
    let drain = async {
        let mut seen = 0u64;
        while let Ok(Some(chunk)) = session.read_request_body().await {
            seen = seen.saturating_add(chunk.len() as u64);
            if seen > limit {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, drain).await;
}

/// Why an audit header value is unacceptable, if it is.
fn audit_header_problem<'a>(
    values: &mut impl Iterator<Item = &'a http::HeaderValue>,
    max_len: usize,
) -> Option<Reason> {
    let first = values.next();
    let Some(v) = first else {
        return Some(Reason::MissingAuditHeader);
    };
    if values.next().is_some() {
        // Two values: which one would the auditor trust? Refuse the ambiguity.
        return Some(Reason::MalformedAuditHeader);
    }
    let b = v.as_bytes();
    let token_ok = !b.is_empty()
        && b.len() <= max_len
        && b.iter().all(|&c| {
            c.is_ascii_alphanumeric()
                || matches!(
                    c,
                    b'-' | b'_' | b'.' | b':' | b'/' | b'@' | b'+' | b'=' | b'~' | b'#'
                )
        });
    (!token_ok).then_some(Reason::MalformedAuditHeader)
}

/// The stronger of two optional modes (`enforce` beats `monitor`).
fn stronger(a: Option<Mode>, b: Option<Mode>) -> Option<Mode> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

fn header_selected(selectors: &[String], name: &str) -> bool {
    selectors.iter().any(|s| match s.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => s == name,
    })
}

fn classify_error(e: &Error) -> (u16, Reason) {
    use ErrorType::*;
    match e.etype() {
        Custom(c) if *c == Reason::UpstreamEarlyResponse.as_str() => {
            (502, Reason::UpstreamEarlyResponse)
        }
        HTTPStatus(code) => {
            let reason = match code {
                403 => Reason::PhiDetected,
                413 => Reason::BodyTooLarge,
                503 => Reason::AuditUnavailable,
                415 => Reason::UnsupportedContentEncoding,
                400 => Reason::UndecodableBody,
                408 => Reason::ClientTimeout,
                _ => Reason::InternalError,
            };
            (*code, reason)
        }
        _ => match e.esource() {
            ErrorSource::Upstream => match e.etype() {
                ConnectTimedout | ReadTimedout | WriteTimedout | TLSHandshakeTimedout => {
                    (504, Reason::UpstreamTimeout)
                }
                ConnectRefused | ConnectNoRoute | ConnectError | TLSHandshakeFailure
                | InvalidCert | HandshakeError | BindError | SocketError => {
                    (502, Reason::UpstreamUnavailable)
                }
                _ => (502, Reason::UpstreamError),
            },
            ErrorSource::Downstream => match e.etype() {
                WriteError | ReadError | ConnectionClosed => (0, Reason::BadRequest),
                // A body read that waited `limits.body_timeout` for the next byte.
                ReadTimedout => (408, Reason::ClientTimeout),
                _ => (400, Reason::BadRequest),
            },
            ErrorSource::Internal | ErrorSource::Unset => (500, Reason::InternalError),
        },
    }
}

/// Whether the raw HTTP/1 head carried a `Content-Length` line. pingora drops Content-Length
/// when Transfer-Encoding is present (RFC 9112 §6.3) before any hook runs, so only the raw
/// bytes still show that the client sent both.
fn raw_head_has_content_length(session: &Session) -> bool {
    let Some(h1) = session.as_http1() else {
        return false;
    };
    let raw = h1.get_headers_raw_bytes();
    // httparse accepts bare LF line ends too, so split on LF; the request line never matches.
    raw.split(|&b| b == b'\n').any(|line| {
        line.get(..15)
            .is_some_and(|name| name.eq_ignore_ascii_case(b"content-length:"))
    })
}

/// The first value of a header, as a [`Redacted`] string (lossy for non-UTF-8 bytes).
fn header_value(session: &Session, name: &str) -> Option<Redacted<String>> {
    session
        .req_header()
        .headers
        .get(name)
        .map(|v| Redacted::new(String::from_utf8_lossy(v.as_bytes()).into_owned()))
}

impl Gateway {
    /// A fail-closed route must not go on when the audit trail cannot take its record.
    fn audit_refuses(&self, ctx: &Ctx) -> bool {
        match (&self.audit, ctx.route()) {
            (Some(a), Some(r)) => r.audit.fail_closed && !a.accepting(),
            _ => false,
        }
    }

    /// Writes the request's audit record, once, from the same decision that feeds the access
    /// log and metrics. With `fsync: every_record` this waits until the record is durable.
    /// Returns false when the trail could not take it.
    async fn audit(
        &self,
        session: &Session,
        ctx: &mut Ctx,
        outcome: &Outcome,
        status: u16,
        bytes_out: Option<u64>,
    ) -> bool {
        let Some(audit) = &self.audit else {
            return true;
        };
        if ctx.audit_done {
            return true;
        }
        ctx.audit_done = true;
        let route = ctx.route();
        let req = session.req_header();
        let user_header = match audit.user_id_source() {
            crate::config::UserIdSource::Header(h) => header_value(session, h),
            crate::config::UserIdSource::ClientCert => session
                .digest()
                .and_then(|d| d.ssl_digest.as_ref())
                .and_then(|t| t.extension.get::<crate::gateway::tls::ClientIdentity>())
                .map(|id| Redacted::new(id.subject.clone())),
            _ => None,
        };
        let input = RecordInput {
            request_id: &ctx.request_id,
            route: ctx.route_name(),
            mode: route.map(|r| r.mode),
            method: req.method.as_str(),
            path: req.uri.path(),
            resource_in_clear: route.is_some_and(|r| r.audit.resource_id == ResourceIdMode::Clear),
            decision: outcome.decision,
            reason: outcome.reason,
            rule_ids: ctx.rule_ids().into_iter().map(String::from).collect(),
            field_paths: {
                let mut l: Vec<String> = ctx.matches.iter().map(|m| m.location.clone()).collect();
                l.sort_unstable();
                l.dedup();
                l
            },
            status,
            bytes_in: ctx.body_seen,
            bytes_out,
            tls_version: session
                .digest()
                .and_then(|d| d.ssl_digest.as_ref())
                .map(|d| d.version.to_string()),
            config_version: &ctx.snapshot.config_version,
            body_sha256: ctx
                .body_digest
                .clone()
                .map(|d| crate::audit::record::hex(d.finish().as_ref())),
            ip_address: session
                .client_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.ip().to_string()),
            user_agent: header_value(session, http::header::USER_AGENT.as_str()),
            audit_header: route
                .and_then(|r| r.audit_headers.first())
                .and_then(|h| header_value(session, h)),
            user_header,
        };
        let record = audit.build(&ctx.snapshot.engine, &ctx.snapshot.limits, input);
        audit.record(record).await
    }

    /// Answers with our JSON error, after recording the decision. The refusal stands even if
    /// the audit trail fails to take the record (nothing was forwarded); the failure is
    /// counted in `phi_gateway_audit_write_errors_total`.
    async fn answer(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        reason: Reason,
    ) -> pingora::Result<()> {
        let outcome = ctx.decision(None);
        let rules = if reason == Reason::PhiDetected {
            ctx.rule_ids()
        } else {
            Vec::new()
        };
        let len = error_body(reason, &ctx.request_id, &rules).len() as u64;
        self.audit(session, ctx, &outcome, reason.status(), Some(len))
            .await;
        write_error(session, ctx, reason).await
    }

    /// Scans one request part and folds the findings into `ctx`, timing the engine.
    fn inspect(&self, ctx: &mut Ctx, part: &Part<'_>) -> Result<Option<Mode>, InspectError> {
        let start = Instant::now();
        // The route name scopes `route:` rules and exceptions.
        let options = ScanOptions::route(ctx.route().map(|r| r.name.as_str()));
        let result = ctx
            .snapshot
            .engine
            .scan_with(part, &ctx.snapshot.limits, &options);
        ctx.inspection += start.elapsed();
        ctx.inspected = true;
        Ok(ctx.absorb(result?))
    }

    /// Runs the header-time checks. Returns `Some(reason)` when the request must be refused now.
    fn check_request_head(&self, session: &Session, ctx: &mut Ctx) -> Option<Reason> {
        // Defence in depth: the listener's crypto provider cannot negotiate anything but
        // TLS 1.3, but if that ever regressed this refuses the request anyway.
        let version = session
            .digest()
            .and_then(|d| d.ssl_digest.as_ref())
            .map(|d| d.version.to_string());
        if version.as_deref() != Some(crate::gateway::tls::TLS13) {
            ctx.block(Reason::TlsVersionNotAllowed);
            return Some(Reason::TlsVersionNotAllowed);
        }

        let req = session.req_header();
        let host = req.uri.host().or_else(|| {
            req.headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
        });
        let snapshot = ctx.snapshot.clone();
        let Some((idx, route)) = snapshot.config.route_for(host, req.uri.path()) else {
            ctx.block(Reason::NoRoute);
            return Some(Reason::NoRoute);
        };
        ctx.route = Some(idx);

        // Transfer codings other than `chunked` (`gzip, chunked`, `identity, chunked` on two
        // lines, ...): pingora de-chunks such a body but leaves the other coding on it, so the
        // engine would scan gzip bytes as text (a PHI bypass), and it rewrites the header to
        // plain `chunked` upstream, which then gets coded bytes it was not told about.
        let mut codings = req
            .headers
            .get_all(http::header::TRANSFER_ENCODING)
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .map(|t| t.trim_ascii())
            .filter(|t| !t.is_empty());
        let first = codings.next();
        if first.is_some()
            && (!first.is_some_and(|t| t.eq_ignore_ascii_case(b"chunked"))
                || codings.next().is_some())
        {
            ctx.block(Reason::UnsupportedTransferEncoding);
            return Some(Reason::UnsupportedTransferEncoding);
        }
        // RFC 9112 §6.3: a request with both Transfer-Encoding and Content-Length "ought to be
        // handled as an error" — it is the CL.TE / TE.CL smuggling shape. pingora would frame
        // it by Transfer-Encoding and close afterwards; we refuse it outright, so the upstream
        // never sees a request whose length two parsers could disagree about.
        if req.headers.contains_key(http::header::TRANSFER_ENCODING)
            && raw_head_has_content_length(session)
        {
            ctx.block(Reason::BadRequest);
            return Some(Reason::BadRequest);
        }
        // Size limits on the head, checked before the engine scans any of it. pingora alone
        // would accept a request line up to 64 KiB and headers up to about 1 MiB.
        let limits = &snapshot.config.limits;
        if req.raw_path().len() > limits.max_uri_bytes {
            ctx.block(Reason::UriTooLong);
            return Some(Reason::UriTooLong);
        }
        let header_bytes: usize = req
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum();
        if header_bytes > limits.max_header_bytes {
            ctx.block(Reason::HeadersTooLarge);
            return Some(Reason::HeadersTooLarge);
        }

        // Declared body size: refuse before connecting upstream. Monitor routes too: the cap
        // protects memory, it is not a policy choice.
        let declared = req
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > route.max_body_bytes) {
            ctx.block(Reason::BodyTooLarge);
            return Some(Reason::BodyTooLarge);
        }

        for name in &route.audit_headers {
            let mut values = req.headers.get_all(name.as_str()).iter();
            if let Some(reason) = audit_header_problem(&mut values, route.audit_header_max_length) {
                if ctx.violation(reason, route.mode) {
                    return Some(reason);
                }
            }
        }

        if route.inspect.body {
            if let Some(ce) = req.headers.get(http::header::CONTENT_ENCODING) {
                let ok = ce
                    .to_str()
                    .map(crate::engine::content_encoding_supported)
                    .unwrap_or(false);
                if !ok {
                    ctx.skip_body = true;
                    if ctx.violation(Reason::UnsupportedContentEncoding, route.mode) {
                        return Some(Reason::UnsupportedContentEncoding);
                    }
                }
            }
        }

        let mut strongest: Option<Mode> = None;
        if route.inspect.query {
            if let Ok(m) = self.inspect(ctx, &Part::Path(req.uri.path())) {
                strongest = stronger(strongest, m);
            }
            if let Some(q) = req.uri.query() {
                match self.inspect(ctx, &Part::Query(q)) {
                    Ok(m) => strongest = stronger(strongest, m),
                    Err(_) => {
                        if ctx.violation(Reason::UndecodableBody, route.mode) {
                            return Some(Reason::UndecodableBody);
                        }
                    }
                }
            }
        }
        for (name, value) in req.headers.iter() {
            let name = name.as_str();
            let wanted = route.audit_headers.iter().any(|a| a == name)
                || header_selected(&route.inspect.headers, name);
            if !wanted {
                continue;
            }
            if let Ok(m) = self.inspect(
                ctx,
                &Part::Header {
                    name,
                    value: value.as_bytes(),
                },
            ) {
                strongest = stronger(strongest, m);
            }
        }
        match strongest {
            Some(Mode::Enforce) => {
                ctx.block(Reason::PhiDetected);
                Some(Reason::PhiDetected)
            }
            Some(_) => {
                ctx.would_block(Reason::PhiDetected);
                None
            }
            None => None,
        }
    }

    /// Scans the complete body. Returns the reason to refuse, if any.
    fn check_body(
        &self,
        ctx: &mut Ctx,
        content_type: Option<&str>,
        content_encoding: Option<&str>,
    ) -> Option<Reason> {
        let snapshot = ctx.snapshot.clone();
        let route = ctx.route.and_then(|i| snapshot.config.routes.get(i))?;
        let body = std::mem::take(&mut ctx.body);
        let result = self.inspect(
            ctx,
            &Part::Body {
                content_type,
                content_encoding,
                bytes: &body,
            },
        );
        ctx.body = body;
        let reason = match result {
            Ok(Some(Mode::Enforce)) => Reason::PhiDetected,
            Ok(Some(_)) => {
                ctx.would_block(Reason::PhiDetected);
                return None;
            }
            Ok(None) => return None,
            Err(InspectError::UnsupportedEncoding { .. } | InspectError::TooManyLayers) => {
                Reason::UnsupportedContentEncoding
            }
            Err(InspectError::DecodedTooLarge { .. } | InspectError::ExpansionRatio { .. }) => {
                Reason::DecodedBodyTooLarge
            }
            Err(InspectError::Corrupt { .. }) => Reason::UndecodableBody,
        };
        // Decoding limits protect memory and the upstream, so they hold in monitor mode too;
        // everything else follows the route's mode.
        if reason == Reason::DecodedBodyTooLarge || route.mode == Mode::Enforce {
            ctx.block(reason);
            Some(reason)
        } else {
            ctx.would_block(reason);
            None
        }
    }
}

fn refuse(reason: Reason) -> pingora::BError {
    Error::explain(ErrorType::HTTPStatus(reason.status()), reason.as_str())
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = Ctx;

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
        }
    }

    /// Runs once the request header is read, before any upstream connection: TLS version,
    /// routing, declared size, audit headers, Content-Encoding, query and header inspection.
    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> pingora::Result<bool> {
        // pingora waits up to 60 s for each body read; a client that stalls mid-body gets
        // `limits.body_timeout` instead (request_body_filter bounds the total time too).
        session.set_read_timeout(Some(ctx.snapshot.config.limits.body_timeout));
        let reason = match self.check_request_head(session, ctx) {
            Some(reason) => reason,
            None if self.audit_refuses(ctx) => {
                ctx.fail_closed();
                Reason::AuditUnavailable
            }
            None => {
                // A body that will be held back is pending from the start: the upstream could
                // answer before the first body byte arrives (see `response_filter`).
                ctx.body_pending =
                    !session.is_body_empty() && ctx.route().is_some_and(|r| r.inspect.body);
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

    /// Called per body chunk. Holds the body back until it is complete, enforces the cap while
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
        if let Some(c) = chunk.as_ref().filter(|c| !c.is_empty()) {
            ctx.body_digest
                .get_or_insert_with(|| ring::digest::Context::new(&ring::digest::SHA256))
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

        // Slow bodies: a client that keeps trickling bytes never trips the per-read timeout,
        // so the whole body gets `limits.body_timeout` from the end of the request head.
        if !end_of_stream && ctx.started.elapsed() > snapshot.config.limits.body_timeout {
            ctx.body = BytesMut::new();
            ctx.block(Reason::ClientTimeout);
            return Err(refuse(Reason::ClientTimeout));
        }

        let hold = route.inspect.body && !ctx.skip_body;
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
        if let Some(reason) = self.check_body(ctx, content_type, content_encoding) {
            ctx.body = BytesMut::new();
            return Err(refuse(reason));
        }
        if !ctx.body.is_empty() {
            *body = Some(ctx.body.split().freeze());
        }
        Ok(())
    }

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

    /// Answers every failure with our JSON body and request id. The body is built from fixed
    /// text only: nothing from the request or the upstream is echoed.
    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
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
        let route = ctx.route_name();
        let decision = outcome.decision.as_str();
        let m = &self.metrics;
        m.requests.with_label_values(&[route, decision]).inc();
        if outcome.reason == Some(Reason::ClientTimeout) {
            m.client_timeouts.with_label_values(&["body"]).inc();
        }
        if let (Some(reason), Decision::Block | Decision::WouldBlock) =
            (outcome.reason, outcome.decision)
        {
            m.rejections
                .with_label_values(&[route, reason.as_str()])
                .inc();
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
        let elapsed = ctx.started.elapsed();
        m.request_duration
            .with_label_values(&[route, decision])
            .observe(elapsed.as_secs_f64());
        if ctx.inspected {
            m.inspection_duration.observe(ctx.inspection.as_secs_f64());
        }
        let rules = ctx.rule_ids().join(",");
        let locations: Vec<&str> = ctx.matches.iter().map(|x| x.location.as_str()).collect();
        tracing::info!(
            target: "phi_gateway::access",
            request_id = %ctx.request_id,
            route = %route,
            method = %session.req_header().method,
            decision,
            reason = outcome.reason.map(Reason::as_str).unwrap_or(""),
            rules = %rules,
            locations = %locations.join(","),
            status,
            duration_us = elapsed.as_micros() as u64,
            inspection_us = ctx.inspection.as_micros() as u64,
            "request"
        );
    }

    /// Marks a connection kept alive after this request, so the head deadline of the next
    /// request on it allows for the keep-alive wait (see [`crate::deadline`]).
    fn persist_connection_context(
        &self,
        _session: &Session,
        _ctx: &Ctx,
    ) -> Option<Box<dyn std::any::Any + Send + Sync>> {
        Some(Box::new(crate::gateway::deadline::KeptAlive))
    }

    /// Our own refusals are logged by `logging` as decisions, not as errors.
    fn suppress_error_log(&self, _session: &Session, _ctx: &Ctx, error: &Error) -> bool {
        matches!(error.etype(), ErrorType::HTTPStatus(_))
    }

    /// What pingora prints next to its own error logs. The default includes the path and query
    /// string, which can hold PHI; ours holds only ids.
    fn request_summary(&self, _session: &Session, ctx: &Ctx) -> String {
        format!("request_id={} route={}", ctx.request_id, ctx.route_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_is_valid_json_without_request_data() {
        let b = error_body(Reason::PhiDetected, "abc", &["us-ssn", "email"]);
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["reason"], "phi_detected");
        assert_eq!(v["rules"][1], "email");
        let b = error_body(Reason::MissingAuditHeader, "abc", &[]);
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert!(v.get("rules").is_none());
    }

    #[test]
    fn audit_header_format() {
        let mut h = http::HeaderMap::new();
        let check = |h: &http::HeaderMap| audit_header_problem(&mut h.get_all("x-a").iter(), 16);
        assert_eq!(check(&h), Some(Reason::MissingAuditHeader));
        h.insert("x-a", http::HeaderValue::from_static("ticket-42:alice"));
        assert_eq!(check(&h), None);
        h.insert("x-a", http::HeaderValue::from_static(""));
        assert_eq!(check(&h), Some(Reason::MalformedAuditHeader));
        h.insert("x-a", http::HeaderValue::from_static("has space"));
        assert_eq!(check(&h), Some(Reason::MalformedAuditHeader));
        h.insert("x-a", http::HeaderValue::from_static("aaaaaaaaaaaaaaaaa"));
        assert_eq!(check(&h), Some(Reason::MalformedAuditHeader));
        h.insert("x-a", http::HeaderValue::from_static("one"));
        h.append("x-a", http::HeaderValue::from_static("two"));
        assert_eq!(check(&h), Some(Reason::MalformedAuditHeader));
    }

    #[test]
    fn encodings_and_header_selectors() {
        use crate::engine::content_encoding_supported as ok;
        assert!(ok("gzip") && ok("gzip, br") && ok("GZIP") && ok("x-gzip, zstd, identity"));
        assert!(!ok("compress") && !ok("gzip, lzma"));
        let sel = vec!["referer".to_string(), "x-patient-*".to_string()];
        assert!(header_selected(&sel, "x-patient-name"));
        assert!(header_selected(&sel, "referer"));
        assert!(!header_selected(&sel, "x-other"));
    }
}
