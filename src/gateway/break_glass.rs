//! Break-glass (issue 11 §4, HIPAA 164.312(a)(2)(ii) emergency access): a subject whose role
//! the policy marks `break_glass_eligible` may go past a policy denial (scopes, patient
//! binding) for one patient's treatment, when the request says so and the gateway can prove
//! afterwards who did it, for whom and why.
//!
//! **Asking.** FHIR's break-the-glass security label on the request, `Category:
//! http://terminology.hl7.org/CodeSystem/v3-ActReason#BTG; scheme="…"; label="…"` (FHIR
//! security-labels), or an emergency `purpose_of_use` in the token (`EMER`, `ETREAT`, `BTG`,
//! also as `system|code`). A request that does not ask is decided by the policy alone.
//!
//! **Time box.** Per (issuer and subject, patient), `access.break_glass.duration_minutes`
//! (default 60). The first request needs a justification in `access.break_glass.header`
//! (at least `min_justification_chars`); it is scanned by the PHI engine and refused
//! (`break_glass_justification_phi`) when a rule fires, because it goes into the audit trail.
//! The box lives in [`crate::state`] (a set holding the box's principal with the box's expiry,
//! memory or Redis), so a fleet shares it; after it ends a new justification opens a new box.
//!
//! **Fails closed.** A new box's CRITICAL record (`access.break_glass.event: started`) is
//! written and acknowledged by the trail before the request is forwarded, and the box is
//! stored only after that: there is never a box without its record. A request under an open
//! box needs a trail that accepts records. Either failing answers 503 `audit_unavailable`,
//! whatever the route's `audit.fail_closed`. A state store that does not answer is read as
//! "no open box": the request then needs a justification and opens (and records) a new one.
//!
//! **Scope.** Break-glass is judged on the decision taken from the request head in enforce
//! mode; a body-dependent decision (creates, updates, Bundles) is not overridden, and monitor
//! routes forward anyway. The box overrides the policy; it does not skip the PHI inspection of
//! the request. The URL must name one patient (`Patient/{id}…`, `Patient/{id}/…` compartment,
//! or a search whose `patient`/`subject` values are one patient), else 403
//! `break_glass_patient_required`.

use pingora::proxy::Session;

use crate::access::fhir::{classify, Interaction, OpLevel, RequestParts};
use crate::access::policy::Decision;
use crate::audit::{BreakGlassInput, Redacted};
use crate::gateway::ctx::Ctx;
use crate::gateway::proxy::Gateway;
use crate::state::StateKey;
use crate::verdict::Reason;

/// The FHIR break-the-glass code (v3-ActReason), as a `Category` header term.
const BTG_TERM: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason#BTG";

/// `purpose_of_use` codes that ask for emergency access: the Swiss EPR / IUA `EMER`, and the
/// v3-ActReason `ETREAT` (FHIR's break-glass AuditEvent example) and `BTG`.
const EMERGENCY_PURPOSES: &[&str] = &["EMER", "ETREAT", "BTG"];

/// How the request asked for break-glass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Trigger {
    /// The `Category` header's BTG label.
    Category,
    /// An emergency `purpose_of_use` claim.
    PurposeOfUse,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Category => "category",
            Trigger::PurposeOfUse => "purpose_of_use",
        }
    }
}

/// What became of a break-glass request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Allowed under a box; `started` when this request opened it.
    Access { started: bool, expires_ms: u64 },
    /// Refused with this reason.
    Refused(Reason),
}

/// The break-glass part of a request, kept in the policy state for the audit record.
#[derive(Debug)]
pub(super) struct BreakGlassState {
    trigger: Trigger,
    outcome: Outcome,
    /// `Patient/{id}` (only ever recorded as a fingerprint).
    patient: Option<String>,
    /// The policy reason the box overrides.
    overridden: &'static str,
}

impl BreakGlassState {
    /// Whether the request is allowed by break-glass.
    pub(super) fn granted(&self) -> bool {
        matches!(self.outcome, Outcome::Access { .. })
    }

    /// The request record's `access.break_glass`.
    pub(super) fn input(&self) -> BreakGlassInput {
        let (event, time_box, expires_at, reason) = match self.outcome {
            Outcome::Access {
                started,
                expires_ms,
            } => (
                "access",
                Some(if started { "started" } else { "active" }),
                Some(rfc3339(expires_ms)),
                None,
            ),
            Outcome::Refused(r) => ("refused", None, None, Some(r.as_str())),
        };
        BreakGlassInput {
            event,
            time_box,
            expires_at,
            patient: self.patient.clone().map(Redacted::new),
            justification: None,
            trigger: self.trigger.as_str(),
            overridden: Some(self.overridden),
            reason,
        }
    }
}

/// Unix milliseconds as RFC 3339 UTC.
fn rfc3339(ms: u64) -> String {
    use time::format_description::well_known::Rfc3339;
    let nanos = i128::from(ms).saturating_mul(1_000_000);
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".into())
}

/// Whether the request asks for break-glass: a `Category` header value holding the BTG term
/// (comma-separated categories, each `term; param=…`), or an emergency purpose of use (the
/// space-joined codes of the claim, each a bare code or `system|code`).
pub(super) fn requested<'a>(
    categories: impl Iterator<Item = &'a [u8]>,
    purpose_of_use: Option<&str>,
) -> Option<Trigger> {
    let by_category = categories
        .filter_map(|v| std::str::from_utf8(v).ok())
        .flat_map(|v| v.split(','))
        .any(|c| c.split(';').next().is_some_and(|t| t.trim() == BTG_TERM));
    if by_category {
        return Some(Trigger::Category);
    }
    let by_purpose = purpose_of_use.is_some_and(|p| {
        p.split_whitespace().any(|c| {
            let code = c.rsplit(['|', '#']).next().unwrap_or(c);
            EMERGENCY_PURPOSES.contains(&code)
        })
    });
    by_purpose.then_some(Trigger::PurposeOfUse)
}

/// The one patient a request is about, as `Patient/{id}`, from its URL: `Patient/{id}`
/// interactions and operations, the `Patient/{id}/…` compartment, or a type search whose
/// `patient` / `subject` values all name the same patient. `None` when it names none or more
/// than one (a time box is per patient).
pub(super) fn patient_of(method: &str, target: &str, base: &str) -> Option<String> {
    let c = classify(&RequestParts {
        method,
        target,
        base,
        body: None,
        if_none_exist: false,
    })
    .ok()?;
    let patient = |t: &str, id: &str| (t == "Patient").then(|| format!("Patient/{id}"));
    match &c.interaction {
        Interaction::Read { resource_type, id }
        | Interaction::Vread {
            resource_type, id, ..
        }
        | Interaction::HistoryInstance { resource_type, id } => patient(resource_type, id),
        Interaction::SearchCompartment {
            compartment, id, ..
        } => patient(compartment, id),
        Interaction::Operation {
            level: OpLevel::Instance(t, id),
            ..
        } => patient(t, id),
        Interaction::SearchType { resource_type } => {
            let mut found: Option<String> = None;
            let names: &[&str] = if resource_type == "Patient" {
                &["_id"]
            } else {
                &["patient", "subject"]
            };
            for name in names {
                for v in c.params.values_of(name) {
                    let id = v.strip_prefix("Patient/").unwrap_or(v);
                    if id.is_empty() || id.contains('/') {
                        return None;
                    }
                    let p = format!("Patient/{id}");
                    match &found {
                        Some(f) if *f != p => return None,
                        _ => found = Some(p),
                    }
                }
            }
            found
        }
        _ => None,
    }
}

/// The justification, trimmed, when it has at least `min` characters.
fn justification(raw: Option<&[u8]>, min: usize) -> Option<String> {
    let v = String::from_utf8_lossy(raw?).trim().to_string();
    (v.chars().count() >= min).then_some(v)
}

impl Gateway {
    /// Break-glass for a policy denial taken from the request head. `None`: the request did
    /// not ask (or break-glass is off), the denial stands as it is. `Some(Ok)`: allowed under
    /// a time box. `Some(Err(reason))`: refused with that reason.
    pub(super) async fn break_glass(
        &self,
        session: &Session,
        ctx: &mut Ctx,
        d: &Decision,
    ) -> Option<Result<(), Reason>> {
        let settings = ctx.snapshot.config.access.break_glass.clone();
        let route = ctx.route()?;
        if !settings.enabled || d.allow || route.access.mode != crate::engine::Mode::Enforce {
            return None;
        }
        // A request the policy cannot read as FHIR is refused as such, whatever it asks.
        if d.reason.status() == 400 {
            return None;
        }
        let base = route.access.fhir_base.clone();
        let req = session.req_header();
        let purpose = ctx
            .policy
            .as_ref()
            .and_then(|p| p.purpose_of_use.as_deref());
        let trigger = requested(
            req.headers.get_all("category").iter().map(|v| v.as_bytes()),
            purpose,
        )?;
        let patient = std::str::from_utf8(req.raw_path())
            .ok()
            .and_then(|t| patient_of(req.method.as_str(), t, &base));
        let raw_justification = req
            .headers
            .get(settings.header.as_str())
            .map(|v| v.as_bytes());
        let mut state = BreakGlassState {
            trigger,
            outcome: Outcome::Refused(Reason::BreakGlassNotEligible),
            patient: patient.clone(),
            overridden: d.reason.as_str(),
        };
        let result = self
            .open_box(
                session,
                ctx,
                d,
                &settings,
                patient,
                raw_justification,
                &mut state,
            )
            .await;
        let event = match result {
            Ok(()) => "access",
            Err(r) => {
                state.outcome = Outcome::Refused(r);
                "refused"
            }
        };
        self.metrics.break_glass.with_label_values(&[event]).inc();
        tracing::warn!(
            target: "phi_gateway::access",
            request_id = %ctx.request_id,
            route = %ctx.route_name(),
            event,
            trigger = trigger.as_str(),
            reason = match state.outcome {
                Outcome::Refused(r) => r.as_str(),
                Outcome::Access { started: true, .. } => "started",
                Outcome::Access { .. } => "active",
            },
            "break-glass request"
        );
        if let Some(p) = ctx.policy.as_mut() {
            p.break_glass = Some(state);
        }
        Some(result)
    }

    /// Finds the open box of the subject and patient, or opens one (CRITICAL record first).
    #[allow(clippy::too_many_arguments)]
    async fn open_box(
        &self,
        session: &Session,
        ctx: &Ctx,
        d: &Decision,
        settings: &crate::config::BreakGlassSettings,
        patient: Option<String>,
        raw_justification: Option<&[u8]>,
        state: &mut BreakGlassState,
    ) -> Result<(), Reason> {
        if !d.break_glass_eligible {
            return Err(Reason::BreakGlassNotEligible);
        }
        let token = ctx
            .access
            .as_ref()
            .and_then(|a| a.token.clone())
            .ok_or(Reason::BreakGlassNotEligible)?;
        let (Some(iss), Some(sub)) = (token.str_claim("iss"), token.str_claim("sub")) else {
            // Nobody to hold to account.
            return Err(Reason::BreakGlassNotEligible);
        };
        let patient = patient.ok_or(Reason::BreakGlassPatientRequired)?;
        let audit = self.audit.as_ref().ok_or(Reason::AuditUnavailable)?;
        let now = crate::state::now_ms();
        let store = self.state.as_ref();
        let principal = store.map(|s| s.keyer().principal("break_glass", &[iss, sub, &patient]));
        let key = principal.as_ref().map(StateKey::break_glass);
        let open = match (store, &key, &principal) {
            (Some(s), Some(k), Some(p)) => match s.set_members(k).await {
                Ok(members) => members
                    .into_iter()
                    .find(|(m, until)| m == p.as_str() && *until > now)
                    .map(|(_, until)| until),
                // Read as "no open box": a justification opens (and records) a new one.
                Err(_) => None,
            },
            _ => None,
        };
        if let Some(expires_ms) = open {
            if !audit.accepting() {
                return Err(Reason::AuditUnavailable);
            }
            state.outcome = Outcome::Access {
                started: false,
                expires_ms,
            };
            return Ok(());
        }
        let text = justification(raw_justification, settings.min_justification_chars)
            .ok_or(Reason::BreakGlassJustificationRequired)?;
        let scan = ctx
            .snapshot
            .engine
            .scan(&crate::engine::Part::Text(&text), &ctx.snapshot.limits);
        if !scan.is_ok_and(|s| s.findings.is_empty()) {
            return Err(Reason::BreakGlassJustificationPhi);
        }
        let ttl = settings.duration;
        let expires_ms = now.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
        let started = BreakGlassInput {
            event: "started",
            time_box: None,
            expires_at: Some(rfc3339(expires_ms)),
            patient: Some(Redacted::new(patient)),
            justification: Some(Redacted::new(text)),
            trigger: state.trigger.as_str(),
            overridden: Some(state.overridden),
            reason: None,
        };
        if !self.audit_break_glass_start(session, ctx, started).await {
            return Err(Reason::AuditUnavailable);
        }
        self.metrics
            .break_glass
            .with_label_values(&["started"])
            .inc();
        if let (Some(s), Some(k), Some(p)) = (store, &key, &principal) {
            if s.set_add_from(k, p, ttl, now).await.is_err() {
                // Recorded but not stored: the next request needs a justification again,
                // which errs towards more records, never fewer.
                tracing::warn!(
                    request_id = %ctx.request_id,
                    "break-glass box recorded but not stored in the state backend"
                );
            }
        }
        state.outcome = Outcome::Access {
            started: true,
            expires_ms,
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asked_by_category_label_or_emergency_purpose() {
        let label = format!(
            "{BTG_TERM}; scheme=\"http://hl7.org/fhir/tag/security\"; label=\"break the glass\""
        );
        assert_eq!(
            requested([label.as_bytes()].into_iter(), None),
            Some(Trigger::Category)
        );
        let two = format!("http://example.org/x#Y, {BTG_TERM}");
        assert_eq!(
            requested([two.as_bytes()].into_iter(), None),
            Some(Trigger::Category)
        );
        // Another code of the same system, or the term inside a parameter, is no request.
        let other = "http://terminology.hl7.org/CodeSystem/v3-ActReason#TREAT";
        assert_eq!(requested([other.as_bytes()].into_iter(), None), None);
        let inside = format!("http://example.org/x#Y; label=\"{BTG_TERM}\"");
        assert_eq!(requested([inside.as_bytes()].into_iter(), None), None);
        for p in [
            "EMER",
            "TREAT ETREAT",
            "urn:oid:2.16.756.5.30.1.127.3.10.5|EMER",
            "BTG",
        ] {
            assert_eq!(
                requested(std::iter::empty(), Some(p)),
                Some(Trigger::PurposeOfUse),
                "{p}"
            );
        }
        for p in ["TREAT", "emer", "EMERGENCY"] {
            assert_eq!(requested(std::iter::empty(), Some(p)), None, "{p}");
        }
    }

    #[test]
    fn the_patient_comes_from_the_url() {
        let p = |m: &str, t: &str| patient_of(m, t, "/fhir");
        assert_eq!(
            p("GET", "/fhir/Patient/pat-2").as_deref(),
            Some("Patient/pat-2")
        );
        assert_eq!(
            p("GET", "/fhir/Patient/pat-2/Observation").as_deref(),
            Some("Patient/pat-2")
        );
        assert_eq!(
            p("GET", "/fhir/Observation?patient=pat-2").as_deref(),
            Some("Patient/pat-2")
        );
        assert_eq!(
            p(
                "GET",
                "/fhir/Observation?subject=Patient/pat-2&patient=pat-2"
            )
            .as_deref(),
            Some("Patient/pat-2")
        );
        // Two patients, none, or a non-Patient read by id: no single patient.
        assert_eq!(p("GET", "/fhir/Observation?patient=pat-1,pat-2"), None);
        assert_eq!(p("GET", "/fhir/Observation?patient=a&subject=b"), None);
        assert_eq!(p("GET", "/fhir/Observation"), None);
        assert_eq!(p("GET", "/fhir/Observation/obs-2"), None);
        assert_eq!(p("GET", "/fhir/Observation?subject=Group/g1"), None);
    }

    #[test]
    fn justification_has_a_minimum_length_in_characters() {
        assert_eq!(justification(None, 5), None);
        assert_eq!(justification(Some(b"   abc   "), 5), None);
        assert_eq!(
            justification(Some("  \u{e9}\u{e9}\u{e9}\u{e9}\u{e9} ".as_bytes()), 5).as_deref(),
            Some("\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}")
        );
    }

    #[test]
    fn expiry_is_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_500), "1970-01-01T00:00:01.5Z");
    }
}
