//! The access policy at the hooks (issue 11 §2–§3): once the bearer token has verified (or, on
//! a `require: optional` route, none was sent), the request is decided by
//! [`crate::access::policy::Policy::evaluate`] with a [`Subject`] built from the verified
//! claims and an [`AccessRequest`] built from the request. This file only moves values between
//! pingora and that pure function, and turns its [`Decision`] into an answer, an audit field
//! and a counter.
//!
//! **When.** pingora writes the request head upstream before the first body chunk reaches a
//! hook (pingora#343), so everything the URL alone decides is decided in `request_filter`,
//! before any upstream connection: such a refusal sends nothing upstream. Creates, updates and
//! `POST [base]` (Bundles, `_search` forms) carry part of what is decided in the body, which
//! is complete only at the end of the held-back body (held for the PHI scan anyway, and held
//! for the policy on routes that do not scan bodies): their decision is taken again there,
//! with the body, before a byte of it is released. For those, an allow without the body is
//! never final, while a denial no body could change (scopes, roles, another patient in the
//! URL) is answered at once — only the reasons that need positive evidence from the body
//! (`body_not_in_compartment`, `compartment_param_missing`, a Bundle) wait for it.
//!
//! **Who.** An anonymous request (no token on an `optional` route) is decided as a subject
//! without claims: no scopes, no roles, no patient. The policy is default deny, so it gets
//! only what the policy grants without any claim — `GET metadata` when `capabilities` is on —
//! and never patient data.
//!
//! **What the client sees.** 403 `insufficient_scope` with
//! `WWW-Authenticate: Bearer realm="phi-gateway", error="insufficient_scope"` (RFC 6750 §3.1;
//! the fixed realm of the 401s), or 400 `bad_request` for a request the policy cannot read as
//! a FHIR interaction; a refused Bundle lists the denied entry indexes. The fine reason
//! (`patient_mismatch`, …) goes to the audit record, the log and the counter, never to the
//! client.
//!
//! **After the allow.** A read by id of a non-Patient resource under patient binding
//! (`post_check: response`) is forwarded with its answer held back ([`super::holdback`]):
//! [`Gateway::check_response_compartment`] asks
//! [`crate::access::policy::Policy::check_response`] about the complete body, and a refusal
//! is answered 403 `insufficient_scope` (`access.reason` `response_outside_compartment`,
//! `response_link_outside_compartment`), 406 `unsupported_response_format` for a body that
//! is not JSON, 502 for one over `access.response_hold_bytes` or undecodable. Such a request
//! is counted once, when its response is judged. The check the gateway cannot make yet (the
//! current version of a resource updated or deleted by id, `post_check: target`) is refused
//! with 403 `compartment_check_unavailable` instead of being forwarded unchecked.

use pingora::proxy::Session;

use crate::access::compartment::Escape;
use crate::access::policy::{
    AccessRequest, Decision, PostCheck, Reason as PolicyReason, ResponseEscape, Subject,
};
use crate::audit::{PolicyInput, Redacted};
use crate::engine::Mode;
use crate::gateway::break_glass::BreakGlassState;
use crate::gateway::ctx::Ctx;
use crate::gateway::holdback::{arm, Check, Verdict};
use crate::gateway::identity::AccessDecision;
use crate::gateway::proxy::Gateway;
use crate::gateway::target::TargetCheck;
use crate::verdict::Reason;

/// The challenge of a policy refusal (RFC 6750 §3.1). The realm is the fixed one of the 401s:
/// a FHIR URL can carry PHI and is never echoed.
const INSUFFICIENT_SCOPE: &str = "Bearer realm=\"phi-gateway\", error=\"insufficient_scope\"";

/// The counter's reason for an allow the gateway refused because it cannot make the check.
const CHECK_UNAVAILABLE: &str = "compartment_check_unavailable";

/// The policy's part of one request, kept in the [`Ctx`].
#[derive(Debug)]
pub(super) struct PolicyState {
    /// From the verified claims (empty for an anonymous request).
    subject: Subject,
    /// The token's `purpose_of_use` claim, for the audit record (and break-glass).
    pub(super) purpose_of_use: Option<String>,
    /// `If-None-Exist` was sent (a conditional create).
    if_none_exist: bool,
    /// The decision waits for the end of the body.
    pending: bool,
    /// The final decision, once taken.
    decision: Option<Decision>,
    /// The gateway's refusal (enforce) or would-be refusal (monitor), if any.
    refusal: Option<Reason>,
    /// The held response's check refused it (enforce) or would have (monitor): its stable
    /// reason, which the audit record's `access.reason` carries instead of `allowed`.
    response_reason: Option<&'static str>,
    /// Break-glass, when the request asked for it ([`super::break_glass`]).
    pub(super) break_glass: Option<BreakGlassState>,
    /// What the read of a write's target found ([`super::target`]), when one was made.
    target: Option<TargetCheck>,
}

/// The policy reason of a request allowed by break-glass (audit record and counter).
const BREAK_GLASS: &str = "break_glass";

/// Whether the request was allowed by break-glass.
fn by_break_glass(ctx: &Ctx) -> bool {
    ctx.policy
        .as_ref()
        .and_then(|p| p.break_glass.as_ref())
        .is_some_and(BreakGlassState::granted)
}

/// Whether a denial taken without the body stands whatever the body holds. The body can only
/// add needs (an `_include` in a `_search` form) or supply the evidence some checks require;
/// these four reasons are the ones that evidence can lift.
fn final_without_body(reason: PolicyReason) -> bool {
    !matches!(
        reason,
        PolicyReason::MalformedBundle
            | PolicyReason::BundleEntryDenied
            | PolicyReason::Compartment(Escape::BodyOutside | Escape::ParamMissing)
    )
}

/// `purpose_of_use`: a code (`TREAT`, `EMER`, …), or several in an array (joined by spaces).
fn purpose_of_use(claims: &serde_json::Map<String, serde_json::Value>) -> Option<String> {
    use serde_json::Value;
    match claims.get("purpose_of_use")? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Array(a) => {
            let codes: Vec<&str> = a.iter().filter_map(Value::as_str).collect();
            (!codes.is_empty()).then(|| codes.join(" "))
        }
        _ => None,
    }
}

/// The gateway's answer to a decision, if it refuses (in enforce) or would (in monitor).
/// `target` is what the read of a write's target found, if it was made.
fn refusal(d: &Decision, target: Option<&TargetCheck>) -> Option<Reason> {
    if !d.allow {
        // `Reason::answer()`: `bad_request` for a request that is no FHIR interaction,
        // `insufficient_scope` for every access denial.
        return Some(match d.reason.status() {
            400 => Reason::BadRequest,
            _ => Reason::InsufficientScope,
        });
    }
    // A response check is made on the held-back answer (`super::holdback`); a write's
    // target was read in `check_policy` (`super::target`), or could not be: such a write is
    // not forwarded unchecked.
    if d.post_check != PostCheck::Target {
        return None;
    }
    match target {
        Some(t) if t.passes() => None,
        Some(TargetCheck::Outside) => Some(Reason::InsufficientScope),
        _ => Some(Reason::CompartmentCheckUnavailable),
    }
}

/// The policy reason of a write refused by its target check, if it was.
fn target_label(s: &PolicyState) -> Option<&'static str> {
    let d = s.decision.as_ref()?;
    if d.post_check != PostCheck::Target || s.refusal.is_none() {
        return None;
    }
    Some(match &s.target {
        Some(t) => t.reason(),
        None => CHECK_UNAVAILABLE,
    })
}

/// The `If-Match` a forwarded write carries: the version its target check read.
pub(super) fn target_if_match(ctx: &Ctx) -> Option<&str> {
    let s = ctx.policy.as_ref()?;
    if s.refusal.is_some() {
        return None;
    }
    match &s.target {
        Some(TargetCheck::Inside { if_match }) => if_match.as_deref(),
        _ => None,
    }
}

/// Whether the request's body still has to be held back for the policy.
pub(super) fn policy_pending(ctx: &Ctx) -> bool {
    ctx.policy.as_ref().is_some_and(|p| p.pending)
}

/// The patient the policy bound the request to, else the token's patient context: what the
/// anomaly detector counts as the patient touched (`gateway/defence.rs`).
pub(super) fn policy_patient(ctx: &Ctx) -> Option<&str> {
    let s = ctx.policy.as_ref()?;
    s.decision
        .as_ref()
        .and_then(|d| d.bound_patient.as_deref())
        .or(s.subject.patient.as_deref())
}

/// The `WWW-Authenticate` value of a policy refusal.
pub(super) fn www_authenticate(reason: Reason) -> Option<&'static str> {
    (reason == Reason::InsufficientScope).then_some(INSUFFICIENT_SCOPE)
}

/// The denied Bundle entries the answer lists (only when the refusal is for them).
pub(super) fn denied_entries(ctx: &Ctx, reason: Reason) -> &[usize] {
    match ctx.policy.as_ref().and_then(|p| p.decision.as_ref()) {
        Some(d) if reason == Reason::InsufficientScope => &d.denied_entries,
        _ => &[],
    }
}

/// The policy's part of the audit record (merged into its `access` object).
pub(super) fn policy_input(ctx: &Ctx) -> Option<PolicyInput> {
    let s = ctx.policy.as_ref()?;
    let d = s.decision.as_ref();
    Some(PolicyInput {
        reason: d.map(|d| {
            let granted = s.break_glass.as_ref().is_some_and(BreakGlassState::granted);
            match (target_label(s), s.response_reason) {
                _ if granted => BREAK_GLASS,
                (Some(why), _) | (None, Some(why)) => why,
                (None, None) => d.reason.as_str(),
            }
        }),
        post_check: d
            .filter(|d| d.post_check != PostCheck::None)
            .map(|d| d.post_check.as_str()),
        denied_entries: d.map(|d| d.denied_entries.clone()).unwrap_or_default(),
        entry_reasons: d
            .map(|d| d.entry_reasons.iter().map(|r| r.as_str()).collect())
            .unwrap_or_default(),
        // `Patient/{id}`, so the fingerprint equals the `resource_id` of a record of a read
        // of that patient: an auditor can join the two without ever seeing the id.
        patient: s
            .subject
            .patient
            .as_ref()
            .map(|p| Redacted::new(format!("Patient/{p}"))),
        purpose_of_use: s.purpose_of_use.clone().map(Redacted::new),
        break_glass: s.break_glass.as_ref().map(BreakGlassState::input),
    })
}

impl Gateway {
    /// The policy check of a request whose token check passed (or was anonymous), before any
    /// upstream connection. Returns the reason to refuse now, if any; a body-dependent
    /// decision is left pending for [`Gateway::check_policy_body`].
    pub(super) async fn check_policy(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
    ) -> Option<Reason> {
        let snapshot = ctx.snapshot.clone();
        let route = ctx.route.and_then(|i| snapshot.config.routes.get(i))?;
        if !route.access.policy {
            return None;
        }
        let token = match ctx.access.as_ref() {
            Some(a)
                if matches!(
                    a.decision,
                    AccessDecision::Allow | AccessDecision::Anonymous
                ) =>
            {
                a.token.clone()
            }
            // A token fault was answered already, or (monitor) recorded as `would_deny`.
            _ => return None,
        };
        let has_body = !session.is_body_empty();
        let req = session.req_header();
        let subject = token
            .as_deref()
            .map(|t| Subject::from_claim_map(&t.claims))
            .unwrap_or_default();
        let mut state = PolicyState {
            subject,
            purpose_of_use: token.as_deref().and_then(|t| purpose_of_use(&t.claims)),
            if_none_exist: req.headers.contains_key("if-none-exist"),
            pending: false,
            decision: None,
            refusal: None,
            response_reason: None,
            break_glass: None,
            target: None,
        };
        let mode = route.access.mode;
        let Some(policy) = snapshot.policy.as_deref() else {
            // Configuration guarantees a policy for such a route; without one nothing can
            // be granted (default deny).
            ctx.policy = Some(state);
            return self.settle(ctx, mode, Decision::deny(PolicyReason::NoMatchingRole));
        };
        let method = req.method.as_str();
        // The raw target, as the upstream receives it: the policy normalises it once itself,
        // so an encoding cannot split the check from what the upstream sees.
        let d = match std::str::from_utf8(req.raw_path()) {
            Ok(target) => policy.evaluate(
                &state.subject,
                &AccessRequest {
                    method,
                    target,
                    base: &route.access.fhir_base,
                    body: None,
                    if_none_exist: state.if_none_exist,
                },
            ),
            Err(_) => Decision::deny(PolicyReason::MalformedRequest),
        };
        let body_decides = has_body && matches!(method, "POST" | "PUT");
        let pending = body_decides && (d.allow || !final_without_body(d.reason));
        // A write by id under patient binding: read its target now, before the write's own
        // upstream connection (`super::target`). A PUT's binding shows only with its body,
        // but its URL-only decision already says whether one is possible (a denial waiting
        // for body evidence; a `user/` scope allows at once and needs no read).
        if d.post_check == PostCheck::Target || (pending && !d.allow) {
            let target = std::str::from_utf8(req.raw_path()).ok().and_then(|t| {
                policy.write_target(&AccessRequest {
                    method,
                    target: t,
                    base: &route.access.fhir_base,
                    body: None,
                    if_none_exist: state.if_none_exist,
                })
            });
            if let (Some(target), Some(patient)) = (target, state.subject.patient.clone()) {
                state.target = Some(
                    self.check_write_target(session, ctx, policy, &target, &patient)
                        .await,
                );
            }
        }
        // A target that refuses the write refuses it whatever the body holds: decide now,
        // before pingora writes the request head upstream (pingora#343).
        let (d, pending) = match &state.target {
            Some(t) if pending && !d.allow && !t.passes() => (
                Decision::allow(PostCheck::Target, state.subject.patient.clone()),
                false,
            ),
            _ => (d, pending),
        };
        if pending {
            state.pending = true;
            ctx.policy = Some(state);
            return None;
        }
        ctx.policy = Some(state);
        match self.break_glass(session, ctx, &d).await {
            None => self.settle(ctx, mode, d),
            Some(Ok(())) => {
                // The box overrides scopes and binding: nothing is left to check after it.
                let mut allow = Decision::allow(PostCheck::None, None);
                allow.break_glass_eligible = true;
                self.settle(ctx, mode, allow)
            }
            Some(Err(reason)) => {
                // The policy's denial is counted and recorded as such; the client learns the
                // break-glass reason, which says what to do about it.
                let _ = self.settle(ctx, mode, d);
                if let Some(s) = ctx.policy.as_mut() {
                    s.refusal = Some(reason);
                }
                if reason == Reason::AuditUnavailable {
                    ctx.fail_closed();
                } else {
                    ctx.block(reason);
                }
                Some(reason)
            }
        }
    }

    /// The body-dependent decision, at the end of the held-back body and before it is
    /// released. Returns the reason to refuse, if any.
    pub(super) fn check_policy_body(&self, session: &Session, ctx: &mut Ctx) -> Option<Reason> {
        if !policy_pending(ctx) {
            return None;
        }
        let snapshot = ctx.snapshot.clone();
        let route = ctx.route.and_then(|i| snapshot.config.routes.get(i))?;
        let mode = route.access.mode;
        let Some(policy) = snapshot.policy.as_deref() else {
            return self.settle(ctx, mode, Decision::deny(PolicyReason::NoMatchingRole));
        };
        let req = session.req_header();
        let content_encoding = req
            .headers
            .get(http::header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok());
        let d = {
            let state = ctx.policy.as_ref()?;
            // The policy reads what the scan read: the body with its Content-Encoding undone.
            // A body that cannot be decoded is judged without one, which denies every
            // decision that needs it.
            let body =
                crate::engine::decode_content(&ctx.body, content_encoding, &snapshot.limits).ok();
            match std::str::from_utf8(req.raw_path()) {
                Ok(target) => policy.evaluate(
                    &state.subject,
                    &AccessRequest {
                        method: req.method.as_str(),
                        target,
                        base: &route.access.fhir_base,
                        body: body.as_deref(),
                        if_none_exist: state.if_none_exist,
                    },
                ),
                Err(_) => Decision::deny(PolicyReason::MalformedRequest),
            }
        };
        self.settle(ctx, mode, d)
    }

    /// Records a final decision: counter, audit fields, the access decision and the request's
    /// outcome by the route's access mode. Returns the reason when the request must be
    /// refused now (enforce).
    fn settle(&self, ctx: &mut Ctx, mode: Mode, d: Decision) -> Option<Reason> {
        let target = ctx.policy.as_ref().and_then(|p| p.target.as_ref());
        let refused = refusal(&d, target);
        let enforce = mode == Mode::Enforce;
        let label = match refused {
            Some(_) if d.allow && d.post_check == PostCheck::Target => {
                target.map_or(CHECK_UNAVAILABLE, TargetCheck::reason)
            }
            None if by_break_glass(ctx) => BREAK_GLASS,
            _ => d.reason.as_str(),
        };
        let decision = match (refused, enforce) {
            (None, _) => "allow",
            (Some(_), true) => "deny",
            (Some(_), false) => "would_deny",
        };
        let held = refused.is_none() && d.post_check == PostCheck::Response;
        if held {
            // Decided (and counted) when the answer is judged.
            let cap = ctx.snapshot.config.access.response_hold_bytes;
            arm(&mut ctx.holdback, Check::Compartment, mode, cap);
        } else {
            self.metrics
                .access_decisions
                .with_label_values(&[decision, label])
                .inc();
        }
        if let Some(s) = ctx.policy.as_mut() {
            s.pending = false;
            s.decision = Some(d);
            s.refusal = refused;
        }
        let reason = refused?;
        mark_refused(
            ctx,
            enforce,
            decision,
            label,
            "access policy refused the request",
        );
        if enforce {
            ctx.block(reason);
            Some(reason)
        } else {
            ctx.would_block(reason);
            None
        }
    }

    /// The compartment check of a held response's decoded body ([`Check::Compartment`]).
    pub(super) fn check_response_compartment(
        &self,
        ctx: &Ctx,
        status: u16,
        body: &[u8],
    ) -> Verdict {
        let outside = |why| Verdict::Refuse {
            reason: Reason::InsufficientScope,
            why,
        };
        let (Some(policy), Some(route), Some(state)) = (
            ctx.snapshot.policy.as_deref(),
            ctx.route(),
            ctx.policy.as_ref(),
        ) else {
            // The hold-back is armed only by a policy decision on a policy route.
            return outside("response_outside_compartment");
        };
        let Some(patient) = state
            .decision
            .as_ref()
            .and_then(|d| d.bound_patient.as_deref())
        else {
            return outside("response_outside_compartment");
        };
        match policy.check_response(&state.subject, patient, &route.access.fhir_base, body) {
            Ok(()) => Verdict::Release,
            // An error page is the upstream's failure, not the client's format.
            Err(e @ ResponseEscape::NotJson) if status >= 400 => Verdict::Refuse {
                reason: Reason::UpstreamError,
                why: e.as_str(),
            },
            Err(e @ ResponseEscape::NotJson) => Verdict::Refuse {
                reason: Reason::UnsupportedResponseFormat,
                why: e.as_str(),
            },
            Err(e) => outside(e.as_str()),
        }
    }

    /// Records the verdict on a held response of a policy decision: the counter (this
    /// request's only access decision count), the audit fields and the log line.
    pub(super) fn settle_response_check(&self, ctx: &mut Ctx, mode: Mode, verdict: Verdict) {
        let enforce = mode == Mode::Enforce;
        let (decision, label) = match verdict {
            Verdict::Release => ("allow", PolicyReason::Allowed.as_str()),
            Verdict::Refuse { why, .. } if enforce => ("deny", why),
            Verdict::Refuse { why, .. } => ("would_deny", why),
        };
        self.metrics
            .access_decisions
            .with_label_values(&[decision, label])
            .inc();
        if verdict == Verdict::Release {
            return;
        }
        if let Some(s) = ctx.policy.as_mut() {
            s.response_reason = Some(label);
        }
        mark_refused(
            ctx,
            enforce,
            decision,
            label,
            "response check refused the upstream's answer",
        );
    }
}

/// A refusal by the policy or the response check: the request's access decision (`deny`, or
/// `would_deny` in monitor mode) and the one log line, with the policy's reason.
fn mark_refused(ctx: &mut Ctx, enforce: bool, decision: &str, label: &str, what: &str) {
    if let Some(a) = ctx.access.as_mut() {
        a.decision = if enforce {
            AccessDecision::Deny
        } else {
            AccessDecision::WouldDeny
        };
    }
    tracing::info!(
        target: "phi_gateway::access",
        request_id = %ctx.request_id,
        route = %ctx.route_name(),
        decision,
        policy_reason = label,
        "{what}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_reasons_that_need_the_body_wait_for_it() {
        for r in [
            PolicyReason::MalformedBundle,
            PolicyReason::BundleEntryDenied,
            PolicyReason::Compartment(Escape::BodyOutside),
            PolicyReason::Compartment(Escape::ParamMissing),
        ] {
            assert!(!final_without_body(r), "{}", r.as_str());
        }
        for r in [
            PolicyReason::InsufficientScope,
            PolicyReason::NoMatchingRole,
            PolicyReason::InvalidScope,
            PolicyReason::MalformedRequest,
            PolicyReason::Compartment(Escape::OtherPatient),
            PolicyReason::Compartment(Escape::EscapeParam),
            PolicyReason::Compartment(Escape::ValueMismatch),
        ] {
            assert!(final_without_body(r), "{}", r.as_str());
        }
    }

    #[test]
    fn refusals_map_to_the_clients_reason() {
        let deny = |r| Decision::deny(r);
        assert_eq!(
            refusal(&deny(PolicyReason::Compartment(Escape::OtherPatient)), None),
            Some(Reason::InsufficientScope)
        );
        assert_eq!(
            refusal(&deny(PolicyReason::UnknownResourceType), None),
            Some(Reason::BadRequest)
        );
        assert_eq!(
            refusal(&Decision::allow(PostCheck::None, None), None),
            None,
            "a plain allow is forwarded"
        );
        assert_eq!(
            refusal(
                &Decision::allow(PostCheck::Response, Some("p".into())),
                None
            ),
            None,
            "forwarded with its response held back for the check"
        );
        let target = Decision::allow(PostCheck::Target, Some("p".into()));
        assert_eq!(
            refusal(&target, None),
            Some(Reason::CompartmentCheckUnavailable),
            "a target check that was not made is never skipped"
        );
        for (found, refused) in [
            (TargetCheck::Inside { if_match: None }, None),
            (TargetCheck::Absent, None),
            (TargetCheck::Outside, Some(Reason::InsufficientScope)),
            (
                TargetCheck::Unavailable("target_read_failed"),
                Some(Reason::CompartmentCheckUnavailable),
            ),
        ] {
            assert_eq!(refusal(&target, Some(&found)), refused, "{found:?}");
        }
    }

    #[test]
    fn purpose_of_use_is_a_code_or_codes() {
        let m = |v: serde_json::Value| v.as_object().cloned().unwrap();
        assert_eq!(
            purpose_of_use(&m(serde_json::json!({"purpose_of_use": "TREAT"}))).as_deref(),
            Some("TREAT")
        );
        assert_eq!(
            purpose_of_use(&m(
                serde_json::json!({"purpose_of_use": ["EMER", 3, "BTG"]})
            ))
            .as_deref(),
            Some("EMER BTG")
        );
        assert_eq!(
            purpose_of_use(&m(serde_json::json!({"purpose_of_use": 7}))),
            None
        );
        assert_eq!(purpose_of_use(&m(serde_json::json!({}))), None);
    }
}
