//! The response leak guard (issue 12 §2; docs/defence.md "Response leak guard"): an upstream
//! error answer (a route's `response_guard.statuses`, by default every status ≥ 400) is held
//! back ([`super::holdback`], [`Check::Leak`]) up to `response_guard.max_bytes`, its
//! Content-Encoding undone, and scanned with the route's engine as a response
//! ([`Message::Response`]): the PHI rules and the `where: [response]` error signatures
//! (rules/errors.yaml). A 2xx body is scanned only on a route that monitors them
//! (`include_2xx`), and only with the signatures ([`Message::ResponseSignatures`]): it is the
//! resource the client asked for, PHI by design.
//!
//! **On a hit** (enforce) the client gets the upstream's status with the gateway's own body:
//! a FHIR `OperationOutcome` on FHIR routes, RFC 9457 `application/problem+json` otherwise,
//! both naming only the request id and the fixed reason `response_leak_blocked`. Not one byte
//! of the upstream's body and none of its headers pass (`Server`, `X-Powered-By`, `Location`,
//! `Content-Location`, `Set-Cookie`, `Link`: any of them can name a framework version or a
//! record id). The audit record's `response_leak` and the log line name the rules, the
//! locations, the lengths and a keyed fingerprint of each matched text, never the text;
//! `phi_gateway_response_leaks_total{route,action}` counts it. Monitor passes the answer
//! untouched and records `would_block`.
//!
//! **Too large, streamed, undecodable.** A streamed (chunked) answer is held like any other
//! and scanned if it ends within the cap. Over the cap (declared or as it streams), over the
//! shared hold budget, or with a coding that cannot be undone, enforce cuts it: 502
//! `response_too_large` / `undecodable_response`, nothing of the body; monitor passes it
//! unscanned. An upstream that resets mid-body never had a byte forwarded: the client gets
//! the 502 `upstream_error` of any broken exchange.

use std::time::Instant;

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

use crate::audit::{LeakFinding, ResponseLeakRecord};
use crate::engine::{Message, Mode, Part, ScanOptions};
use crate::gateway::ctx::Ctx;
use crate::gateway::holdback::{arm, Check, Verdict};
use crate::gateway::proxy::Gateway;
use crate::verdict::{effective_matches, Reason};

/// Most findings one audit record lists (the first, in document order).
const MAX_RECORDED_FINDINGS: usize = 32;

/// The leak verdict's fine reason (audit, log).
const LEAK: Verdict = Verdict::Refuse {
    reason: Reason::ResponseLeakBlocked,
    why: "response_leak",
};

/// Arms the leak guard on an answer with a final `status` its route's guard scans (after a
/// compartment check armed by the policy, which goes first). Its mode is capped by the
/// route's mode (a monitor route never blocks, docs/operations.md).
pub(super) fn arm_guard(ctx: &mut Ctx, status: u16) {
    let Some(route) = ctx.route() else {
        return;
    };
    let guard = &route.response_guard;
    if !guard.scans(status) {
        return;
    }
    let mode = guard.mode.within(route.mode);
    if mode == Mode::Off {
        return;
    }
    let cap = guard.max_bytes;
    arm(&mut ctx.holdback, Check::Leak, mode, cap);
}

/// The replacement body: fixed text, the status and our request id, nothing else. `fhir`: an
/// `OperationOutcome` (FHIR R4 `http.html`: "In case of failure, servers SHOULD always return
/// a body that contains an OperationOutcome"), else RFC 9457 problem details.
pub(super) fn leak_body(fhir: bool, status: u16, request_id: &str) -> (Bytes, &'static str) {
    // The request id is a UUID we generated: no escaping needed.
    let detail = "the upstream's error response was withheld by the gateway";
    if fhir {
        // OperationOutcome issue codes: `exception` for a server failure, `processing` else.
        let code = if status >= 500 {
            "exception"
        } else {
            "processing"
        };
        let body = format!(
            "{{\"resourceType\":\"OperationOutcome\",\"issue\":[{{\"severity\":\"error\",\
             \"code\":\"{code}\",\"details\":{{\"text\":\"response_leak_blocked\"}},\
             \"diagnostics\":\"{detail}; request id {request_id}\"}}]}}\n"
        );
        return (Bytes::from(body), "application/fhir+json");
    }
    let title = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    let body = format!(
        "{{\"type\":\"about:blank\",\"title\":\"{title}\",\"status\":{status},\
         \"detail\":\"{detail}\",\"reason\":\"response_leak_blocked\",\
         \"request_id\":\"{request_id}\"}}\n"
    );
    (Bytes::from(body), "application/problem+json")
}

impl Gateway {
    /// The leak check of a held answer's decoded body ([`Check::Leak`]): the verdict, and the
    /// mode it applies in when weaker than the guard's (only monitor-mode rules fired).
    pub(super) fn check_response_leak(
        &self,
        ctx: &mut Ctx,
        raw: &[u8],
        decoded: &[u8],
    ) -> (Verdict, Option<Mode>) {
        let (Some(route), Some(hb)) = (ctx.route(), ctx.holdback.as_ref()) else {
            return (Verdict::Release, None);
        };
        let guard = &route.response_guard;
        let status = hb.status;
        let message = if guard.holds_error(status) {
            Message::Response
        } else {
            Message::ResponseSignatures
        };
        let options = ScanOptions::route(Some(&route.name))
            .explained(true)
            .message(message);
        let part = Part::Body {
            content_type: hb.content_type.as_deref(),
            content_encoding: None,
            bytes: decoded,
        };
        let started = Instant::now();
        let scan = ctx
            .snapshot
            .engine
            .scan_with(&part, &ctx.snapshot.limits, &options);
        let elapsed = started.elapsed();
        let findings = match scan {
            // Not inspectable (over the decoded-size limit): not releasable in enforce.
            Err(_) => {
                return (
                    Verdict::Refuse {
                        reason: Reason::UndecodableResponse,
                        why: "response_undecodable",
                    },
                    None,
                )
            }
            Ok(s) => s.findings,
        };
        let guard_mode = guard.mode.within(route.mode);
        let matches = effective_matches(
            findings
                .iter()
                .map(|f| (f.rule_id.as_str(), f.mode, f.location.as_str())),
            guard_mode,
            &route.rule_overrides,
        );
        ctx.inspection += elapsed;
        ctx.inspected = true;
        let Some(strongest) = matches.iter().map(|m| m.mode).min() else {
            return (Verdict::Release, None);
        };
        let recorded = findings
            .iter()
            .filter(|f| matches.iter().any(|m| m.rule == f.rule_id))
            .take(MAX_RECORDED_FINDINGS)
            .map(|f| LeakFinding {
                rule: f.rule_id.clone(),
                location: f.location.clone(),
                length: f.explain.as_ref().map_or(0, |x| x.value_len),
                fingerprint: f.explain.as_ref().and_then(|x| x.fingerprint.clone()),
            })
            .collect();
        let body_hmac = self.audit.as_ref().map(|a| {
            let mut d = a.fingerprinter().body_context();
            d.update(raw);
            crate::audit::record::hex(d.sign().as_ref())
        });
        ctx.leak = Some(ResponseLeakRecord {
            action: String::new(), // set when settled
            upstream_status: status,
            upstream_bytes: raw.len() as u64,
            body_hmac,
            findings: recorded,
        });
        (LEAK, Some(strongest))
    }

    /// Records the leak guard's verdict: the counter, the audit record's `response_leak` and
    /// the log line (rule ids, locations, lengths; never the text).
    pub(super) fn settle_leak(&self, ctx: &mut Ctx, mode: Mode, verdict: Verdict) {
        let enforce = mode == Mode::Enforce;
        let action = match verdict {
            Verdict::Release => return,
            Verdict::Refuse {
                reason: Reason::ResponseLeakBlocked,
                ..
            } if enforce => "block",
            Verdict::Refuse {
                reason: Reason::ResponseLeakBlocked,
                ..
            } => "would_block",
            Verdict::Refuse { .. } if enforce => "cut",
            Verdict::Refuse { .. } => "unscanned",
        };
        self.metrics
            .response_leaks
            .with_label_values(&[ctx.route_name(), action])
            .inc();
        let (status, seen) = ctx
            .holdback
            .as_ref()
            .map_or((0, 0), |h| (h.status, h.seen()));
        let record = ctx.leak.get_or_insert_with(|| ResponseLeakRecord {
            action: String::new(),
            upstream_status: status,
            upstream_bytes: seen,
            body_hmac: None,
            findings: Vec::new(),
        });
        record.action = action.to_string();
        let join = |f: &dyn Fn(&LeakFinding) -> String| {
            record.findings.iter().map(f).collect::<Vec<_>>().join(",")
        };
        let rules = join(&|f| f.rule.clone());
        let locations = join(&|f| f.location.clone());
        let lengths = join(&|f| f.length.to_string());
        let fingerprints = join(&|f| f.fingerprint.clone().unwrap_or_default());
        let why = match verdict {
            Verdict::Refuse { why, .. } => why,
            Verdict::Release => "",
        };
        tracing::info!(
            target: "phi_gateway::access",
            request_id = %ctx.request_id,
            route = %ctx.route_name(),
            action,
            why,
            upstream_status = status,
            rules = %rules,
            locations = %locations,
            lengths = %lengths,
            fingerprints = %fingerprints,
            "response leak guard"
        );
    }

    /// Answers a blocked leak: the upstream's `status`, our body (see [`leak_body`]), the
    /// audit record first (the refusal stands even if the trail fails, as for [`Self::answer`]).
    pub(super) async fn answer_leak(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        status: u16,
    ) -> pingora::Result<()> {
        let fhir = ctx.route().is_some_and(|r| r.response_guard.fhir);
        let (body, content_type) = leak_body(fhir, status, &ctx.request_id);
        let outcome = ctx.decision(None);
        self.audit(session, ctx, &outcome, status, Some(body.len() as u64))
            .await;
        let mut resp = ResponseHeader::build(status, Some(5))?;
        resp.insert_header("content-type", content_type)?;
        resp.insert_header("content-length", body.len().to_string())?;
        resp.insert_header("x-request-id", ctx.request_id.as_str())?;
        resp.insert_header("cache-control", "no-store")?;
        session.set_keepalive(None);
        session.write_response_header(Box::new(resp), false).await?;
        session.write_response_body(Some(body), true).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacement_bodies_are_fixed_text_and_the_request_id() {
        let id = "0b9a6f5e-1c2d-4e3f-8a9b-0c1d2e3f4a5b";
        let (b, ct) = leak_body(true, 500, id);
        assert_eq!(ct, "application/fhir+json");
        let v: serde_json::Value = serde_json::from_slice(&b).expect("JSON");
        assert_eq!(v["resourceType"], "OperationOutcome");
        assert_eq!(v["issue"][0]["code"], "exception");
        assert!(v["issue"][0]["diagnostics"]
            .as_str()
            .is_some_and(|d| d.contains(id)));
        let (b, _) = leak_body(true, 422, id);
        let v: serde_json::Value = serde_json::from_slice(&b).expect("JSON");
        assert_eq!(v["issue"][0]["code"], "processing");
        let (b, ct) = leak_body(false, 503, id);
        assert_eq!(ct, "application/problem+json");
        let v: serde_json::Value = serde_json::from_slice(&b).expect("JSON");
        assert_eq!(v["status"], 503);
        assert_eq!(v["title"], "Service Unavailable");
        assert_eq!(v["reason"], "response_leak_blocked");
        assert_eq!(v["request_id"], id);
        // A status without a canonical phrase still gets a title.
        let (b, _) = leak_body(false, 599, id);
        let v: serde_json::Value = serde_json::from_slice(&b).expect("JSON");
        assert_eq!(v["title"], "Error");
    }
}
