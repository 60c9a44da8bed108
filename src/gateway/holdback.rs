//! The response hold-back: the upstream's answer to a request that needs it is kept from the
//! client until a check has decided on the complete body, then released byte for byte or
//! replaced by the gateway's own error. Today's one check is the patient compartment check of
//! a patient-bound read by id ([`Check::Compartment`], issue 11 §3; the decision is
//! [`crate::access::policy::Policy::check_response`], called from `gateway/policy.rs`).
//! Issue 12's response leak guard (scan error bodies with status ≥ 400) plugs in as another
//! [`Check`] variant: arm a [`Holdback`] for the request in `request_filter`, say in
//! `Check::holds` which final statuses it holds (the others stream untouched; the header is
//! the first moment the status is known), and add its arm to [`Gateway::decide_held`], which
//! already hands every check the decoded body and records its [`Verdict`]. A request that
//! needs both checks would carry both (a list instead of one `check`); not needed yet.
//!
//! **Why the header is delayed, and how.** pingora writes the response header to the client
//! right after `response_filter`, before the first body byte arrives, and a status sent is a
//! status kept. So in enforce mode the upstream's header is kept in the [`Holdback`] and the
//! header pingora goes on to write is replaced by an informational `103`, which the downstream
//! session is told to drop (`set_ignore_info_resp`; HTTP/2 drops every 1xx anyway): the client
//! receives nothing, and pingora still considers no response written. Body chunks are taken
//! out of the pipeline (`None`), collected up to `access.response_hold_bytes`, and at the end
//! of the body the check decides. Either way `response_body_filter` then ends the proxying
//! with an error of the [`HELD`] type, and `fail_to_proxy` — the one place pingora lets a
//! filter write a response of its own after the upstream answered — writes the kept header
//! with the body (Content-Length set to what is released, chunked framing dropped) or our
//! JSON error. The audit record is written at that moment, with the decision and the status
//! the client gets. Costs: the whole body in memory (capped), the first byte only after the
//! last one arrived, and the client connection closes after a held response (pingora's error
//! path does not hand it back for keep-alive).
//!
//! **Monitor mode** holds nothing: the response streams as usual and a copy (up to the cap)
//! is judged at its end, recorded as `would_deny` with the reason; the audit record is then
//! written when the request ends (not before the response is released, as elsewhere).
//!
//! **Bodyless answers** (HEAD, 204, 304, `Content-Length: 0`) are decided from the header: a
//! 2xx without a body proves nothing about whose resource it is and is refused; a 304 or an
//! error without a body carries no resource and passes. An upgrade (101) is refused: a tunnel
//! cannot be checked.

use bytes::{Bytes, BytesMut};
use pingora::http::ResponseHeader;
use pingora::proxy::{FailToProxy, Session};
use pingora::{Error, ErrorType};

use crate::engine::Mode;
use crate::gateway::ctx::{Ctx, Outcome};
use crate::gateway::proxy::Gateway;
use crate::verdict::{Decision, Reason};

/// The `ErrorType::Custom` tag that ends the proxying of a held response (released or
/// refused); `fail_to_proxy` finishes it.
pub(super) const HELD: &str = "response_held";

/// What decides on a held response's complete (decoded) body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Check {
    /// Every returned resource must be in the context patient's compartment.
    Compartment,
}

impl Check {
    /// Whether an answer with this final status is held at all. The compartment check holds
    /// every answer (an error body can carry a resource too); the leak guard will hold only
    /// `status >= 400` here and let the others stream.
    fn holds(self, _status: u16) -> bool {
        match self {
            Check::Compartment => true,
        }
    }
}

/// The outcome of a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Release the upstream's answer unchanged.
    Release,
    /// Replace it by the gateway's error `reason`; `why` is the stable fine reason the audit
    /// record, the log and the counter carry (the client sees only `reason`).
    Refuse { reason: Reason, why: &'static str },
}

impl Verdict {
    /// A held body over the cap.
    const TOO_LARGE: Verdict = Verdict::Refuse {
        reason: Reason::ResponseTooLarge,
        why: "response_too_large",
    };
}

/// One request's hold-back state, in the [`Ctx`].
#[derive(Debug)]
pub(super) struct Holdback {
    check: Check,
    /// `enforce` holds and decides before release; `monitor` tees and records.
    mode: Mode,
    /// Most body bytes (as received, before decoding) held or copied.
    cap: u64,
    /// The upstream's final response header, kept from the client (enforce).
    header: Option<Box<ResponseHeader>>,
    /// Its status and Content-Encoding (both modes), for the decoder and the checks.
    status: u16,
    content_encoding: Option<String>,
    /// A final header arrived and the body is being collected.
    collecting: bool,
    body: BytesMut,
    /// The complete body as received, once decided on (what a release writes).
    complete: Bytes,
    seen: u64,
    /// Monitor: the copy stopped at the cap.
    truncated: bool,
    verdict: Option<Verdict>,
}

impl Holdback {
    pub(super) fn new(check: Check, mode: Mode, cap: u64) -> Self {
        Holdback {
            check,
            mode,
            cap,
            header: None,
            status: 0,
            content_encoding: None,
            collecting: false,
            body: BytesMut::new(),
            complete: Bytes::new(),
            seen: 0,
            truncated: false,
            verdict: None,
        }
    }
}

fn held() -> pingora::BError {
    Error::explain(ErrorType::Custom(HELD), "held response decided")
}

/// Whether `e` ends a held response.
pub(super) fn is_held(e: &Error) -> bool {
    matches!(e.etype(), ErrorType::Custom(c) if *c == HELD)
}

/// Whether a final response has no body to check (RFC 9110 §6.4.1: HEAD, 204, 304; or an
/// explicit zero length).
fn bodyless(method_head: bool, resp: &ResponseHeader) -> bool {
    method_head
        || matches!(resp.status.as_u16(), 204 | 304)
        || resp
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() == "0")
}

/// The verdict on a final response without a body.
fn bodyless_verdict(status: u16) -> Verdict {
    if (200..300).contains(&status) {
        Verdict::Refuse {
            reason: Reason::InsufficientScope,
            why: "response_outside_compartment",
        }
    } else {
        Verdict::Release
    }
}

impl Gateway {
    /// `response_filter`'s part: keeps (enforce) or notes (monitor) the upstream's header.
    /// Returns whether `response_filter` goes on as for any response (audit record now), which
    /// is only the case for an answer that passes from its header alone.
    pub(super) fn hold_response_header(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> pingora::Result<bool> {
        let method_head = session.req_header().method == http::Method::HEAD;
        let Some(hb) = ctx.holdback.as_mut() else {
            return Ok(true);
        };
        let status = resp.status.as_u16();
        if resp.status.is_informational() && status != 101 {
            // `100 Continue` and friends carry no resource; the final header follows.
            return Ok(false);
        }
        if !hb.check.holds(status) {
            ctx.holdback = None;
            return Ok(true);
        }
        hb.status = status;
        hb.content_encoding = resp
            .headers
            .get(http::header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let early = if status == 101 {
            Some(Verdict::Refuse {
                reason: Reason::InsufficientScope,
                why: "response_outside_compartment",
            })
        } else if bodyless(method_head, resp) {
            Some(bodyless_verdict(status))
        } else {
            None
        };
        let mode = hb.mode;
        if let Some(v) = early {
            self.settle_held(ctx, mode, v);
            return match (v, mode) {
                (Verdict::Refuse { .. }, Mode::Enforce) => {
                    if let Some(hb) = ctx.holdback.as_mut() {
                        hb.verdict = Some(v);
                    }
                    Err(held())
                }
                // Passes (or monitor): an ordinary response from here on, recorded as usual.
                _ => {
                    ctx.holdback = None;
                    Ok(true)
                }
            };
        }
        hb.collecting = true;
        // A retry after a reused upstream connection broke (pingora retries idempotent
        // requests) starts a new answer: nothing of the broken one may mix into it.
        hb.body.clear();
        hb.seen = 0;
        hb.truncated = false;
        if mode == Mode::Enforce {
            // The placeholder pingora writes in place of the kept header, and drops: see the
            // module doc. `Some(0)`: no headers; the client never sees it.
            let kept = std::mem::replace(resp, ResponseHeader::build(103, Some(0))?);
            hb.header = Some(Box::new(kept));
            session.set_ignore_info_resp(true);
        }
        // The audit record waits for the verdict (enforce) or the end of the request
        // (monitor).
        Ok(false)
    }

    /// `response_body_filter`'s part: collects the body (enforce: instead of passing it on)
    /// and decides at its end.
    pub(super) fn hold_response_body(
        &self,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> pingora::Result<()> {
        let Some(hb) = ctx.holdback.as_mut().filter(|h| h.collecting) else {
            return Ok(());
        };
        let mode = hb.mode;
        let enforce = mode == Mode::Enforce;
        // Enforce takes every chunk out of the pipeline: not one byte reaches the client
        // before the verdict.
        let chunk = if enforce { body.take() } else { body.clone() };
        if let Some(c) = chunk {
            hb.seen = hb.seen.saturating_add(c.len() as u64);
            if hb.seen > hb.cap {
                hb.body = BytesMut::new();
                hb.truncated = true;
            } else if !hb.truncated {
                hb.body.extend_from_slice(&c);
            }
        }
        let truncated = hb.truncated;
        if enforce && truncated {
            // Stop reading: nothing of it can be released any more.
            hb.collecting = false;
            hb.verdict = Some(Verdict::TOO_LARGE);
            self.settle_held(ctx, mode, Verdict::TOO_LARGE);
            return Err(held());
        }
        if !end_of_stream {
            return Ok(());
        }
        hb.collecting = false;
        let verdict = if truncated {
            Verdict::TOO_LARGE
        } else {
            self.decide_held(ctx)
        };
        self.settle_held(ctx, mode, verdict);
        if !enforce {
            ctx.holdback = None;
            return Ok(());
        }
        if let Some(hb) = ctx.holdback.as_mut() {
            hb.verdict = Some(verdict);
        }
        Err(held())
    }

    /// Runs the request's check on the complete body, its Content-Encoding undone with the
    /// engine's decoder (under the engine's decoded-size and ratio limits).
    fn decide_held(&self, ctx: &mut Ctx) -> Verdict {
        let Some(hb) = ctx.holdback.as_mut() else {
            return Verdict::Release;
        };
        let body = std::mem::take(&mut hb.body).freeze();
        let (check, status) = (hb.check, hb.status);
        let decoded = crate::engine::decode_content(
            &body,
            hb.content_encoding.as_deref(),
            &ctx.snapshot.limits,
        );
        let verdict = match decoded {
            Err(_) => Verdict::Refuse {
                reason: Reason::UndecodableResponse,
                why: "response_undecodable",
            },
            Ok(decoded) => match check {
                Check::Compartment => self.check_response_compartment(ctx, status, &decoded),
            },
        };
        // Kept for the release: the bytes as the upstream sent them.
        if let Some(hb) = ctx.holdback.as_mut() {
            hb.complete = body;
        }
        verdict
    }

    /// Records a verdict: the check's own bookkeeping (audit fields, counter, log), then the
    /// request's outcome by mode.
    fn settle_held(&self, ctx: &mut Ctx, mode: Mode, verdict: Verdict) {
        let check = ctx.holdback.as_ref().map(|h| h.check);
        match check {
            Some(Check::Compartment) | None => self.settle_response_check(ctx, mode, verdict),
        }
        if let Verdict::Refuse { reason, .. } = verdict {
            if mode == Mode::Enforce {
                ctx.block(reason);
            } else {
                ctx.would_block(reason);
            }
        }
    }

    /// `fail_to_proxy`'s part: finishes a held response — writes the kept header and body, or
    /// the gateway's error — once its verdict is in. `None` for every other failure.
    pub(super) async fn finish_held(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut Ctx,
    ) -> Option<FailToProxy> {
        if !is_held(e) {
            return None;
        }
        let closed = |code| FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        };
        let (verdict, header, body) = match ctx.holdback.as_mut() {
            Some(hb) => (
                hb.verdict,
                hb.header.take(),
                std::mem::take(&mut hb.complete),
            ),
            None => (None, None, Bytes::new()),
        };
        let reason = match (verdict, header) {
            (Some(Verdict::Release), Some(header)) => {
                return Some(match self.release(session, ctx, header, body).await {
                    Ok(code) => closed(code),
                    Err(reason) => {
                        if let Err(err) = self.answer(session, ctx, reason).await {
                            tracing::debug!(request_id = %ctx.request_id, error = %err, "could not send error response");
                        }
                        closed(reason.status())
                    }
                });
            }
            (Some(Verdict::Refuse { reason, .. }), _) => reason,
            // A release without a kept header cannot happen (the header is kept before any
            // body is collected); refuse rather than guess.
            _ => {
                ctx.block(Reason::InternalError);
                Reason::InternalError
            }
        };
        if let Err(err) = self.answer(session, ctx, reason).await {
            tracing::debug!(request_id = %ctx.request_id, error = %err, "could not send error response");
        }
        Some(closed(reason.status()))
    }

    /// Writes a released response: the audit record first (a fail-closed route refuses when
    /// the trail cannot take it, as for any response), then the kept header and the body.
    /// Returns the status written, or the reason to answer instead.
    async fn release(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        mut header: Box<ResponseHeader>,
        body: Bytes,
    ) -> Result<u16, Reason> {
        if ctx.outcome.is_none() {
            // pingora ends this request with an error; its outcome is the allow.
            ctx.outcome = Some(Outcome {
                decision: Decision::Allow,
                reason: None,
            });
        }
        let status = header.status.as_u16();
        let outcome = ctx.decision(None);
        let recorded = self
            .audit(session, ctx, &outcome, status, Some(body.len() as u64))
            .await;
        if !recorded && ctx.route().is_some_and(|r| r.audit.fail_closed) {
            ctx.fail_closed();
            ctx.audit_done = false; // record the refusal itself, if the trail recovers
            return Err(Reason::AuditUnavailable);
        }
        // The body goes out in one piece: its exact length replaces the upstream's framing.
        let _ = header.remove_header(&http::header::TRANSFER_ENCODING);
        let framed = header
            .insert_header(http::header::CONTENT_LENGTH, body.len().to_string())
            .is_ok();
        if !framed {
            return Err(Reason::InternalError);
        }
        session.set_keepalive(None);
        if let Err(err) = session.write_response_header(header, false).await {
            tracing::debug!(request_id = %ctx.request_id, error = %err, "could not send held response");
            return Ok(0);
        }
        if let Err(err) = session.write_response_body(Some(body), true).await {
            tracing::debug!(request_id = %ctx.request_id, error = %err, "could not send held response");
        }
        Ok(status)
    }
}
