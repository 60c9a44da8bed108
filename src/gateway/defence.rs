//! The access-anomaly detector at the hooks ([`crate::defence`]): thin glue.
//!
//! - `request_filter`, right after the token check: who the principal is (the verified
//!   token's user; else the configured `audit.user_id` source, a trusted header or the
//!   client certificate's subject; else the client address, and it says so), then 403
//!   `principal_suspended` if this replica's copy of the suspension list holds it
//!   (`enforce`), or 503 `anomaly_detection_unavailable` on a route listed in
//!   `defence.anomaly.fail_closed_routes` while counting fails. Neither waits on Redis.
//! - `logging`, after the audit record: what the request showed (patient data forwarded,
//!   which patient, a PHI/scope/compartment refusal) as an [`Observation`] of keyed
//!   fingerprints, counted on a spawned task, so neither this response nor the next request
//!   on the connection waits for the count.

use pingora::proxy::Session;

use crate::config::{AnomalyMode, UserIdSource};
use crate::defence::{Observation, PrincipalKind};
use crate::gateway::ctx::{Ctx, Outcome};
use crate::gateway::proxy::Gateway;
use crate::state::Principal;
use crate::verdict::{Decision, Reason};

/// The principal of a request, once known.
#[derive(Debug, Clone)]
pub(super) struct Who {
    principal: Principal,
    kind: PrincipalKind,
}

/// Refusals the `blocked` signal counts: PHI, scope and compartment (IDOR) denials.
fn counts_as_blocked(reason: Option<Reason>) -> bool {
    matches!(
        reason,
        Some(
            Reason::PhiDetected
                | Reason::InsufficientScope
                | Reason::CompartmentCheckUnavailable
                | Reason::BreakGlassNotEligible
        )
    )
}

/// The patient a request names in its URL: `Patient/{id}`, or a `patient=` / `subject=`
/// search parameter that names one (`Patient/{id}` or a bare id for `patient`).
fn url_patient(method: &str, path: &str, query: Option<&str>) -> Option<String> {
    let target = crate::audit::record::fhir_target(method, path);
    if let Some(r) = target.resource {
        if let Some(id) = r.expose().strip_prefix("Patient/") {
            return Some(id.to_string());
        }
    }
    let q = query?;
    form_urlencoded::parse(q.as_bytes()).find_map(|(k, v)| {
        let base = k.split(':').next().unwrap_or("");
        let id = match base {
            "patient" => v.strip_prefix("Patient/").unwrap_or(&v).to_string(),
            "subject" => v.strip_prefix("Patient/")?.to_string(),
            _ => return None,
        };
        (!id.is_empty() && !id.contains(',')).then_some(id)
    })
}

/// Whether the URL addresses patient data: a resource type in the patient compartment
/// (`Patient` included).
fn patient_data_url(method: &str, path: &str) -> bool {
    let target = crate::audit::record::fhir_target(method, path);
    target.resource.is_some_and(|r| {
        let ty = r.expose().split('/').next().unwrap_or("");
        crate::access::compartment::in_compartment_type(ty)
    })
}

/// The first role of the verified token (`roles`, an array or one string): the peer group.
fn peer_role(ctx: &Ctx) -> Option<&str> {
    let t = ctx.access.as_ref()?.token.as_deref()?;
    match t.claims.get("roles")? {
        serde_json::Value::String(s) => Some(s.as_str()),
        serde_json::Value::Array(a) => a.first()?.as_str(),
        _ => None,
    }
    .filter(|r| !r.is_empty())
}

impl Gateway {
    /// The request's principal (computed once, kept in the ctx).
    fn who(&self, session: &Session, ctx: &mut Ctx) -> Option<Who> {
        let d = self.defence.as_ref()?;
        if let Some(w) = &ctx.who {
            return Some(w.clone());
        }
        let keyer = d.store().keyer();
        let token = ctx.access.as_ref().and_then(|a| a.token.as_deref());
        let who = if let Some((iss, user)) = token.and_then(|t| Some((&t.issuer_name, t.user()?))) {
            Who {
                principal: keyer.principal("user", &["token", iss, user]),
                kind: PrincipalKind::User,
            }
        } else {
            let configured = self.audit.as_ref().and_then(|a| match a.user_id_source() {
                UserIdSource::Header(h) => session
                    .req_header()
                    .headers
                    .get(h.as_str())
                    .and_then(|v| v.to_str().ok())
                    .filter(|v| !v.is_empty())
                    .map(|v| keyer.principal("user", &["header", v])),
                UserIdSource::ClientCert => session
                    .digest()
                    .and_then(|d| d.ssl_digest.as_ref())
                    .and_then(|t| t.extension.get::<crate::gateway::tls::ClientIdentity>())
                    .map(|id| keyer.principal("user", &["client_cert", &id.subject])),
                _ => None,
            });
            match configured {
                Some(principal) => Who {
                    principal,
                    kind: PrincipalKind::User,
                },
                None => {
                    let ip = session
                        .client_addr()
                        .and_then(|a| a.as_inet())
                        .map(|a| a.ip().to_string())
                        .unwrap_or_default();
                    Who {
                        principal: keyer.principal("client_address", &[&ip]),
                        kind: PrincipalKind::ClientAddress,
                    }
                }
            }
        };
        ctx.who = Some(who.clone());
        Some(who)
    }

    /// The suspension check and the fail-closed check, before any upstream connection.
    /// Returns the reason to refuse, if any.
    pub(super) fn check_defence(&self, session: &Session, ctx: &mut Ctx) -> Option<Reason> {
        let d = self.defence.clone()?;
        let who = self.who(session, ctx)?;
        if d.settings().mode == AnomalyMode::Enforce && d.suspended_until(&who.principal).is_some()
        {
            tracing::warn!(
                target: "phi_gateway::defence",
                request_id = %ctx.request_id,
                principal = who.principal.as_str(),
                principal_kind = who.kind.as_str(),
                "request of a suspended principal refused"
            );
            ctx.block(Reason::PrincipalSuspended);
            return Some(Reason::PrincipalSuspended);
        }
        let fail_closed = ctx
            .route
            .is_some_and(|r| d.settings().fail_closed_routes.contains(&r));
        if fail_closed && !d.counting_up() {
            ctx.outcome = Some(Outcome {
                decision: Decision::FailClosed,
                reason: Some(Reason::AnomalyDetectionUnavailable),
            });
            return Some(Reason::AnomalyDetectionUnavailable);
        }
        None
    }

    /// `response_filter`'s part: counts the records of a 2xx FHIR JSON answer as it streams,
    /// when the detector counts `records_returned`. A compressed answer is not counted (its
    /// bytes are not JSON's, and inflating every answer to count it would cost what the
    /// hold-back costs).
    pub(super) fn arm_record_count(&self, resp: &pingora::http::ResponseHeader, ctx: &mut Ctx) {
        let Some(d) = self.defence.as_ref() else {
            return;
        };
        let counts = d
            .settings()
            .signals
            .iter()
            .any(|s| s.enabled && s.signal == crate::config::Signal::RecordsReturned);
        let header = |n| resp.headers.get(n).and_then(|v| v.to_str().ok());
        let json = header(http::header::CONTENT_TYPE).is_some_and(|t| {
            // No lowercased copy per answer: compare the media type's bytes in place.
            let t = t.split(';').next().unwrap_or("").trim().as_bytes();
            t.eq_ignore_ascii_case(b"application/json")
                || (t.len() > 5 && t[t.len() - 5..].eq_ignore_ascii_case(b"+json"))
        });
        let plain = header(http::header::CONTENT_ENCODING)
            .is_none_or(|e| e.trim().eq_ignore_ascii_case("identity"));
        if counts && ctx.route.is_some() && resp.status.is_success() && json && plain {
            ctx.records = Some(crate::defence::records::RecordCounter::new());
        }
    }

    /// Hands what the finished request showed to the detector, on a task of its own.
    pub(super) fn observe_defence(&self, session: &Session, ctx: &mut Ctx, outcome: &Outcome) {
        let Some(d) = self.defence.clone() else {
            return;
        };
        if outcome.reason == Some(Reason::PrincipalSuspended) || ctx.route.is_none() {
            return;
        }
        let Some(who) = self.who(session, ctx) else {
            return;
        };
        let req = session.req_header();
        let (method, path) = (req.method.as_str(), req.uri.path());
        let forwarded = matches!(outcome.decision, Decision::Allow | Decision::WouldBlock);
        let patient_id = crate::gateway::policy::policy_patient(ctx)
            .map(str::to_string)
            .or_else(|| url_patient(method, path, req.uri.query()));
        let patient_data = forwarded && (patient_id.is_some() || patient_data_url(method, path));
        let keyer = d.store().keyer();
        let obs = Observation {
            principal: who.principal,
            kind: who.kind,
            patient_data,
            patient: patient_id
                .filter(|_| forwarded)
                .map(|id| keyer.principal("patient", &[&format!("Patient/{id}")])),
            blocked: counts_as_blocked(outcome.reason)
                && matches!(outcome.decision, Decision::Block | Decision::WouldBlock),
            records: ctx
                .records
                .as_ref()
                .filter(|_| patient_data)
                .map_or(0, |c| c.count()),
            peer: peer_role(ctx).map(|role| keyer.principal("role", &[role])),
            request_id: ctx.request_id.clone(),
        };
        if !(obs.patient_data || obs.patient.is_some() || obs.blocked) {
            return; // nothing to count: no task
        }
        tokio::spawn(async move { d.observe(obs).await });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patients_come_from_the_path_or_a_search_parameter() {
        let p = |m, path, q| url_patient(m, path, q);
        assert_eq!(p("GET", "/fhir/Patient/123", None).as_deref(), Some("123"));
        assert_eq!(
            p("GET", "/fhir/Observation", Some("patient=Patient/9&code=x")).as_deref(),
            Some("9")
        );
        assert_eq!(
            p("GET", "/fhir/Observation", Some("patient=9")).as_deref(),
            Some("9")
        );
        assert_eq!(
            p("GET", "/fhir/Observation", Some("subject=Patient/7")).as_deref(),
            Some("7")
        );
        assert_eq!(p("GET", "/fhir/Observation", Some("subject=Group/7")), None);
        assert_eq!(p("GET", "/fhir/Observation", Some("patient=1,2")), None);
        assert_eq!(p("GET", "/fhir/Observation", None), None);
        assert!(patient_data_url("GET", "/fhir/Observation"));
        assert!(patient_data_url("GET", "/fhir/Patient/1"));
        assert!(!patient_data_url("GET", "/fhir/metadata"));
        assert!(!patient_data_url("GET", "/fhir/Organization/1"));
    }
}
