//! Our answers: the JSON error body, refusing a request, reading an unread body away so the
//! client gets the answer instead of a reset, and turning pingora's errors into a status and a
//! reason.

use std::time::Duration;

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::{Error, ErrorSource, ErrorType};

use crate::gateway::ctx::Ctx;
use crate::gateway::proxy::Gateway;
use crate::verdict::Reason;

/// Extra body bytes we read and discard after the cap is exceeded, so the client can finish
/// sending and read our 413 instead of seeing a connection reset. Past this we answer anyway.
pub(super) const DRAIN_AFTER_LIMIT: u64 = 4 * 1024 * 1024;
/// How long we wait for a client to finish sending a body we already decided to refuse.
pub(super) const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The JSON error body. Built by hand from fixed strings and ids we generated or loaded, so
/// it can never echo anything the client sent. `entries` are the denied entry indexes of a
/// Bundle the access policy refused.
pub(super) fn error_body(
    reason: Reason,
    request_id: &str,
    rules: &[&str],
    entries: &[usize],
) -> Bytes {
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
    if !entries.is_empty() {
        let list: Vec<String> = entries.iter().map(usize::to_string).collect();
        s.push_str(",\"denied_entries\":[");
        s.push_str(&list.join(","));
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
    // A 101 is informational too, but after it the connection is an upgraded tunnel: the
    // same holds (no HTTP bytes of ours inside someone else's protocol).
    if session.response_written().is_some_and(|r| {
        !r.status.is_informational() || r.status == http::StatusCode::SWITCHING_PROTOCOLS
    }) {
        session.set_keepalive(None);
        return Ok(());
    }
    let rules = if reason == Reason::PhiDetected {
        ctx.rule_ids()
    } else {
        Vec::new()
    };
    let entries = crate::gateway::policy::denied_entries(ctx, reason);
    let body = error_body(reason, &ctx.request_id, &rules, entries);
    let mut resp = ResponseHeader::build(reason.status(), Some(5))?;
    resp.insert_header("content-type", "application/json")?;
    resp.insert_header("content-length", body.len().to_string())?;
    resp.insert_header("x-request-id", ctx.request_id.as_str())?;
    resp.insert_header("cache-control", "no-store")?;
    if let Some(challenge) = crate::gateway::identity::www_authenticate(reason)
        .or_else(|| crate::gateway::policy::www_authenticate(reason))
    {
        resp.insert_header("www-authenticate", challenge)?;
    }
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
pub(super) async fn drain_bounded(session: &mut Session, limit: u64) {
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

pub(super) fn classify_error(e: &Error) -> (u16, Reason) {
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

pub(super) fn refuse(reason: Reason) -> pingora::BError {
    Error::explain(ErrorType::HTTPStatus(reason.status()), reason.as_str())
}

impl Gateway {
    /// Answers with our JSON error, after recording the decision. The refusal stands even if
    /// the audit trail fails to take the record (nothing was forwarded); the failure is
    /// counted in `phi_gateway_audit_write_errors_total`.
    pub(super) async fn answer(
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
        let entries = crate::gateway::policy::denied_entries(ctx, reason);
        let len = error_body(reason, &ctx.request_id, &rules, entries).len() as u64;
        self.audit(session, ctx, &outcome, reason.status(), Some(len))
            .await;
        write_error(session, ctx, reason).await
    }
}
