//! The response hold-back: the upstream's answer to a request that needs it is kept from the
//! client until its checks have decided on the complete body, then released byte for byte or
//! replaced by the gateway's own answer. Two checks use it: the patient compartment check of
//! a patient-bound read by id ([`Check::Compartment`], issue 11 §3; the decision is
//! [`crate::access::policy::Policy::check_response`], called from `gateway/policy.rs`), and
//! the response leak guard ([`Check::Leak`], issue 12 §2, `gateway/leak.rs`), which scans
//! error bodies for PHI and error signatures. A request can carry both; the compartment check
//! comes first ([`arm`]: the policy arms it with the request, the leak guard is armed at the
//! response header, `leak::arm_guard`) and the first refusal of a check in enforce mode
//! decides. Each check says at the header which final statuses it holds (the compartment check
//! every one, the leak guard its route's `response_guard.statuses`): an answer no check holds
//! streams untouched, and the header is the first moment the status is known.
//!
//! **Memory.** Each check has a cap (`access.response_hold_bytes`, `response_guard.max_bytes`)
//! and all held bodies together share one budget (`limits.response_hold_budget_bytes`,
//! [`HoldBudget`]): a body that would take the budget over is treated as over its cap (cut in
//! enforce, passed unchecked in monitor), so 1,000 concurrent error responses cost at most the
//! budget, not 1,000 caps.
//!
//! **Why the header is delayed, and how.** pingora writes the response header to the client
//! right after `response_filter`, before the first body byte arrives, and a status sent is a
//! status kept. So in enforce mode the upstream's header is kept in the [`Holdback`] and the
//! header pingora goes on to write is replaced by an informational `103`, which the downstream
//! session is told to drop (`set_ignore_info_resp`; HTTP/2 drops every 1xx anyway): the client
//! receives nothing, and pingora still considers no response written. Body chunks are taken
//! out of the pipeline (`None`), collected up to the checks' caps, and at the end of the body
//! the checks decide. Either way `response_body_filter` then ends the proxying
//! with an error of the [`HELD`] type, and `fail_to_proxy` — the one place pingora lets a
//! filter write a response of its own after the upstream answered — writes the kept header
//! with the body (Content-Length set to what is released, chunked framing dropped) or our
//! JSON error. The audit record is written at that moment, with the decision and the status
//! the client gets. Costs: the whole body in memory (capped), the first byte only after the
//! last one arrived, and the client connection closes after a held response (pingora's error
//! path does not hand it back for keep-alive).
//!
//! **Monitor mode** (every armed check in monitor) holds nothing: the response streams as
//! usual and a copy (up to the cap) is judged at its end, recorded with the reason; the audit record is then
//! written when the request ends (not before the response is released, as elsewhere).
//!
//! **Bodyless answers** (HEAD, 204, 304, `Content-Length: 0`) are decided from the header: a
//! 2xx without a body proves nothing about whose resource it is and is refused; a 304 or an
//! error without a body carries no resource and passes. An upgrade (101) is refused: a tunnel
//! cannot be checked.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

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
    /// The body of an error answer must hold no PHI and no error signature.
    Leak,
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
    /// A held body over the cap (or the shared budget).
    pub(super) const TOO_LARGE: Verdict = Verdict::Refuse {
        reason: Reason::ResponseTooLarge,
        why: "response_too_large",
    };
}

/// The bytes held by every request at once, against `limits.response_hold_budget_bytes`.
/// Process-wide (in the [`Gateway`]), so a reload that changes the limit applies it to the
/// bytes already held.
#[derive(Debug, Default)]
pub(super) struct HoldBudget {
    held: AtomicU64,
    /// `phi_gateway_response_held_bytes`.
    gauge: Option<pingora_prometheus::prometheus::IntGauge>,
}

impl HoldBudget {
    pub(super) fn new(gauge: pingora_prometheus::prometheus::IntGauge) -> Self {
        HoldBudget {
            held: AtomicU64::new(0),
            gauge: Some(gauge),
        }
    }

    /// Takes `n` bytes if the total stays within `limit`.
    pub(super) fn try_reserve(&self, n: u64, limit: u64) -> bool {
        let r = self
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |h| {
                h.checked_add(n).filter(|t| *t <= limit)
            });
        self.show();
        r.is_ok()
    }

    /// Gives back `n` bytes taken with [`HoldBudget::try_reserve`].
    pub(super) fn release(&self, n: u64) {
        if n == 0 {
            return;
        }
        let _ = self
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |h| {
                Some(h.saturating_sub(n))
            });
        self.show();
    }

    fn show(&self) {
        if let Some(g) = &self.gauge {
            g.set(i64::try_from(self.held()).unwrap_or(i64::MAX));
        }
    }

    /// Bytes held right now.
    pub(super) fn held(&self) -> u64 {
        self.held.load(Ordering::Acquire)
    }
}

/// One check armed on a request, with its own mode, cap and verdict.
#[derive(Debug)]
struct Armed {
    check: Check,
    mode: Mode,
    cap: u64,
    verdict: Option<Verdict>,
    /// The verdict was recorded (counter, audit fields, outcome).
    settled: bool,
}

/// One request's hold-back state, in the [`Ctx`].
#[derive(Debug)]
pub(super) struct Holdback {
    /// In order: the compartment check first.
    checks: Vec<Armed>,
    /// The upstream's final response header, kept from the client (enforce).
    header: Option<Box<ResponseHeader>>,
    /// Its status, Content-Encoding and Content-Type, for the decoder and the checks.
    pub(super) status: u16,
    content_encoding: Option<String>,
    pub(super) content_type: Option<String>,
    /// A final header arrived and the body is being collected.
    collecting: bool,
    body: BytesMut,
    /// The complete body as received, once decided on (what a release writes).
    complete: Bytes,
    seen: u64,
    /// The copy stopped: over every cap, or over the shared budget.
    truncated: bool,
    /// The final verdict (enforce), once in.
    verdict: Option<Verdict>,
    /// Bytes taken from the shared budget, given back on drop.
    reserved: u64,
    budget: Option<Arc<HoldBudget>>,
}

impl Drop for Holdback {
    fn drop(&mut self) {
        if let Some(b) = &self.budget {
            b.release(self.reserved);
        }
    }
}

impl Holdback {
    fn new() -> Self {
        Holdback {
            checks: Vec::new(),
            header: None,
            status: 0,
            content_encoding: None,
            content_type: None,
            collecting: false,
            body: BytesMut::new(),
            complete: Bytes::new(),
            seen: 0,
            truncated: false,
            verdict: None,
            reserved: 0,
            budget: None,
        }
    }

    /// Holds (enforce) when any check enforces; tees a copy (monitor) otherwise.
    fn mode(&self) -> Mode {
        if self.checks.iter().any(|a| a.mode == Mode::Enforce) {
            Mode::Enforce
        } else {
            Mode::Monitor
        }
    }

    /// Drops the copy and gives its bytes back to the budget.
    fn truncate(&mut self) {
        self.truncated = true;
        self.body = BytesMut::new();
        if let Some(b) = &self.budget {
            b.release(self.reserved);
        }
        self.reserved = 0;
    }

    /// Every check that is still undecided gets `v`.
    fn decide_rest(&mut self, v: Verdict) {
        for a in self.checks.iter_mut().filter(|a| a.verdict.is_none()) {
            a.verdict = Some(v);
        }
    }

    /// Whether an enforcing check refused already (nothing can be released then).
    fn refused(&self) -> bool {
        self.checks
            .iter()
            .any(|a| a.mode == Mode::Enforce && matches!(a.verdict, Some(Verdict::Refuse { .. })))
    }

    /// Body bytes received so far (as sent, before decoding).
    pub(super) fn seen(&self) -> u64 {
        self.seen
    }

    fn all_decided(&self) -> bool {
        self.checks.iter().all(|a| a.verdict.is_some())
    }
}

/// Arms `check` on a request (creating its hold-back); the compartment check goes first, and
/// a check armed twice keeps its first arming.
pub(super) fn arm(slot: &mut Option<Holdback>, check: Check, mode: Mode, cap: u64) {
    let hb = slot.get_or_insert_with(Holdback::new);
    if hb.checks.iter().any(|a| a.check == check) {
        return;
    }
    let armed = Armed {
        check,
        mode,
        cap,
        verdict: None,
        settled: false,
    };
    match check {
        Check::Compartment => hb.checks.insert(0, armed),
        Check::Leak => hb.checks.push(armed),
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
    method_head || matches!(resp.status.as_u16(), 204 | 304) || declared_length(resp) == Some(0)
}

fn declared_length(resp: &ResponseHeader) -> Option<u64> {
    resp.headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// A check's verdict from the header alone, if the header settles it: a 101 (a tunnel cannot
/// be checked), an answer without a body, or a declared length over the check's cap.
fn header_verdict(check: Check, status: u16, bodyless: bool, over_cap: bool) -> Option<Verdict> {
    let outside = Verdict::Refuse {
        reason: Reason::InsufficientScope,
        why: "response_outside_compartment",
    };
    match check {
        Check::Compartment if status == 101 => Some(outside),
        // A 2xx without a body proves nothing about whose resource it is; a 304 or an error
        // without a body carries no resource and passes.
        Check::Compartment if bodyless && (200..300).contains(&status) => Some(outside),
        Check::Leak if status == 101 => Some(Verdict::Release),
        _ if bodyless => Some(Verdict::Release),
        _ if over_cap => Some(Verdict::TOO_LARGE),
        _ => None,
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
        let status = resp.status.as_u16();
        if resp.status.is_informational() && status != 101 {
            // `100 Continue` and friends carry no resource; the final header follows.
            return Ok(false);
        }
        let leak_holds = ctx.route().is_some_and(|r| r.response_guard.scans(status));
        let Some(hb) = ctx.holdback.as_mut() else {
            return Ok(true);
        };
        hb.checks.retain(|a| match a.check {
            Check::Compartment => true,
            Check::Leak => leak_holds,
        });
        if hb.checks.is_empty() {
            ctx.holdback = None;
            return Ok(true);
        }
        hb.status = status;
        let header = |name| {
            resp.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        hb.content_encoding = header(http::header::CONTENT_ENCODING);
        hb.content_type = header(http::header::CONTENT_TYPE);
        let bodyless = bodyless(method_head, resp);
        let declared = declared_length(resp);
        for a in hb.checks.iter_mut() {
            let over = declared.is_some_and(|n| n > a.cap);
            a.verdict = header_verdict(a.check, status, bodyless, over);
        }
        if hb.refused() || hb.all_decided() {
            let v = self.conclude(ctx);
            return match (v, ctx.holdback.as_ref().map(Holdback::mode)) {
                (Verdict::Refuse { .. }, Some(Mode::Enforce)) => {
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
        hb.truncate();
        hb.truncated = false;
        hb.seen = 0;
        hb.budget = Some(self.hold_budget.clone());
        if hb.mode() == Mode::Enforce {
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
        let budget_limit = ctx.snapshot.config.limits.response_hold_budget_bytes;
        let Some(hb) = ctx.holdback.as_mut().filter(|h| h.collecting) else {
            return Ok(());
        };
        let enforce = hb.mode() == Mode::Enforce;
        // Enforce takes every chunk out of the pipeline: not one byte reaches the client
        // before the verdict.
        let chunk = if enforce { body.take() } else { body.clone() };
        if let Some(c) = chunk {
            let n = c.len() as u64;
            hb.seen = hb.seen.saturating_add(n);
            let seen = hb.seen;
            for a in hb.checks.iter_mut() {
                if a.verdict.is_none() && seen > a.cap {
                    a.verdict = Some(Verdict::TOO_LARGE);
                }
            }
            if !hb.truncated {
                let over_budget = !self.hold_budget.try_reserve(n, budget_limit);
                if over_budget || hb.all_decided() {
                    if over_budget {
                        // Over the shared budget is over the cap: see the module doc.
                        hb.decide_rest(Verdict::TOO_LARGE);
                    }
                    hb.truncate();
                } else {
                    hb.reserved = hb.reserved.saturating_add(n);
                    hb.body.extend_from_slice(&c);
                }
            }
        }
        let refused = hb.refused();
        let done = end_of_stream || refused || (hb.truncated && hb.all_decided());
        if !done {
            return Ok(());
        }
        hb.collecting = false;
        // Stop reading at a refusal: nothing of it can be released any more.
        if !refused && !hb.all_decided() {
            self.decide_held(ctx);
        }
        let verdict = self.conclude(ctx);
        if !enforce {
            ctx.holdback = None;
            return Ok(());
        }
        let verdict = if !end_of_stream && verdict == Verdict::Release {
            // Cannot happen: an enforcing check decided before the end of the body is one over
            // its cap, which refuses. Refuse rather than release part of a body.
            ctx.block(Reason::InternalError);
            Verdict::Refuse {
                reason: Reason::InternalError,
                why: "response_incomplete",
            }
        } else {
            verdict
        };
        if let Some(hb) = ctx.holdback.as_mut() {
            hb.verdict = Some(verdict);
        }
        Err(held())
    }

    /// Runs the undecided checks on the complete body, its Content-Encoding undone with the
    /// engine's decoder (under the engine's decoded-size and ratio limits).
    fn decide_held(&self, ctx: &mut Ctx) {
        let Some(hb) = ctx.holdback.as_mut() else {
            return;
        };
        let body = std::mem::take(&mut hb.body).freeze();
        let status = hb.status;
        let pending: Vec<Check> = hb
            .checks
            .iter()
            .filter(|a| a.verdict.is_none())
            .map(|a| a.check)
            .collect();
        let encoding = hb.content_encoding.clone();
        let decoded =
            crate::engine::decode_content(&body, encoding.as_deref(), &ctx.snapshot.limits);
        let mut verdicts = Vec::with_capacity(pending.len());
        for check in pending {
            let v = match &decoded {
                Err(_) => (
                    Verdict::Refuse {
                        reason: Reason::UndecodableResponse,
                        why: "response_undecodable",
                    },
                    None,
                ),
                Ok(decoded) => match check {
                    Check::Compartment => {
                        (self.check_response_compartment(ctx, status, decoded), None)
                    }
                    Check::Leak => self.check_response_leak(ctx, &body, decoded),
                },
            };
            verdicts.push((check, v));
        }
        if let Some(hb) = ctx.holdback.as_mut() {
            for (check, (v, mode)) in verdicts {
                if let Some(a) = hb.checks.iter_mut().find(|a| a.check == check) {
                    a.verdict = Some(v);
                    // A finding of a monitor-mode rule on an enforcing guard only records.
                    if let Some(m) = mode {
                        a.mode = m;
                    }
                }
            }
            // Kept for the release: the bytes as the upstream sent them.
            hb.complete = body;
        }
    }

    /// Records every decided check's verdict (the check's own bookkeeping: audit fields,
    /// counter, log; then the request's outcome by the check's mode) and returns the final
    /// verdict: the first refusal of an enforcing check, else release.
    fn conclude(&self, ctx: &mut Ctx) -> Verdict {
        let decided: Vec<(Check, Mode, Verdict)> = match ctx.holdback.as_mut() {
            Some(hb) => hb
                .checks
                .iter_mut()
                .filter(|a| !a.settled)
                .filter_map(|a| {
                    let v = a.verdict?;
                    a.settled = true;
                    Some((a.check, a.mode, v))
                })
                .collect(),
            None => Vec::new(),
        };
        for &(check, mode, verdict) in &decided {
            match check {
                Check::Compartment => self.settle_response_check(ctx, mode, verdict),
                Check::Leak => self.settle_leak(ctx, mode, verdict),
            }
            if let Verdict::Refuse { reason, .. } = verdict {
                if mode == Mode::Enforce {
                    // The first enforcing refusal is the answer; later ones only record.
                    if !matches!(&ctx.outcome, Some(o) if o.decision == Decision::Block) {
                        ctx.block(reason);
                    }
                } else {
                    ctx.would_block(reason);
                }
            }
        }
        ctx.holdback
            .as_ref()
            .and_then(|hb| {
                hb.checks
                    .iter()
                    .filter(|a| a.mode == Mode::Enforce)
                    .find_map(|a| a.verdict.filter(|v| *v != Verdict::Release))
            })
            .unwrap_or(Verdict::Release)
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
            (
                Some(Verdict::Refuse {
                    reason: Reason::ResponseLeakBlocked,
                    ..
                }),
                header,
            ) => {
                // The upstream's status, the gateway's body: see `gateway/leak.rs`.
                let status = header.map_or(502, |h| h.status.as_u16());
                let code = match self.answer_leak(session, ctx, status).await {
                    Ok(()) => status,
                    Err(err) => {
                        tracing::debug!(request_id = %ctx.request_id, error = %err, "could not send error response");
                        status
                    }
                };
                return Some(closed(code));
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

#[cfg(test)]
mod tests {
    use super::*;

    /// 1,000 concurrent error answers at the leak guard's default cap (512 KiB) against the
    /// default budget (64 MiB): only 128 are held at once, the others are treated as over the
    /// cap, and every byte comes back.
    #[test]
    fn the_budget_bounds_the_bytes_held_across_requests() {
        let budget = Arc::new(HoldBudget::default());
        let (cap, limit) = (512 * 1024, 64 * 1024 * 1024);
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let b = budget.clone();
                std::thread::spawn(move || (0..125).filter(|_| b.try_reserve(cap, limit)).count())
            })
            .collect();
        let held: usize = threads.into_iter().map(|t| t.join().unwrap_or(0)).sum();
        assert_eq!(held, 128);
        assert_eq!(budget.held(), limit);
        assert!(!budget.try_reserve(1, limit));
        for _ in 0..held {
            budget.release(cap);
        }
        assert_eq!(budget.held(), 0);
    }

    /// Dropping a hold-back (the request ended, however) gives its bytes back.
    #[test]
    fn a_dropped_holdback_returns_its_bytes() {
        let budget = Arc::new(HoldBudget::default());
        let mut slot = None;
        arm(&mut slot, Check::Leak, Mode::Enforce, 1024);
        arm(&mut slot, Check::Compartment, Mode::Monitor, 4096);
        let mut hb = slot.expect("armed");
        assert_eq!(
            hb.checks[0].check,
            Check::Compartment,
            "the compartment check first"
        );
        assert_eq!(hb.mode(), Mode::Enforce, "held when any check enforces");
        assert!(budget.try_reserve(700, 1 << 20));
        hb.reserved = 700;
        hb.budget = Some(budget.clone());
        drop(hb);
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn header_verdicts() {
        let v = |c, s, bodyless, over| header_verdict(c, s, bodyless, over);
        assert_eq!(v(Check::Leak, 500, true, false), Some(Verdict::Release));
        assert_eq!(v(Check::Leak, 500, false, true), Some(Verdict::TOO_LARGE));
        assert_eq!(v(Check::Leak, 500, false, false), None);
        assert!(matches!(
            v(Check::Compartment, 200, true, false),
            Some(Verdict::Refuse { .. })
        ));
        assert_eq!(
            v(Check::Compartment, 304, true, false),
            Some(Verdict::Release)
        );
    }
}
