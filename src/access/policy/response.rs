//! The compartment check of a held-back response (issue 11 §3, last bullet): a read by id of a
//! non-Patient resource under `patient/` scopes ([`super::PostCheck::Response`]) cannot be
//! judged from its URL, so the gateway holds the upstream's answer back and asks
//! [`Policy::check_response`] whether everything in it belongs to the context patient's
//! compartment before releasing a byte of it.
//!
//! What passes, on the decoded body (the gateway undoes the Content-Encoding first):
//! - an `OperationOutcome` (it carries no resource of a patient; the leak guard of issue 12 is
//!   what judges its free text);
//! - a single resource in the compartment ([`compartment::resource_in_compartment`]: a Patient
//!   must be the context patient itself, any other type must reference `Patient/{id}` through
//!   one of its R4 compartment elements), or of one of the policy's `shared_types`;
//! - a Bundle whose every `entry.resource` passes the same test (entries without a resource
//!   pass; a nested Bundle does not: it is refused rather than walked) and whose every `link`
//!   URL, judged as a `GET` by the same subject with [`Policy::evaluate`], is allowed: a
//!   paging `next` link that drops the patient parameter, or points at another patient, is
//!   refused like the request it would become. Links that are not under the route's FHIR
//!   base (HAPI's `?_getpages=` on the server root) are therefore refused too: the gateway
//!   cannot tell which patient's page they name.
//!
//! Everything else is refused: a body that is not JSON (FHIR XML included: the check reads
//! JSON only, so a patient-bound read must ask for `application/fhir+json`), JSON that is not a
//! FHIR resource, a resource of another patient or of no patient. This file is pure: no I/O,
//! unit-tested below.

use serde_json::Value;

use super::{AccessRequest, Policy, Subject};
use crate::access::compartment;

/// Why a held response is not released. [`ResponseEscape::as_str`] is the stable reason the
/// audit record (`access.reason`), the log and the counter carry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResponseEscape {
    /// The body is not JSON (FHIR XML, HTML, text, or broken JSON).
    #[error("response_not_json")]
    NotJson,
    /// The resource, or the Bundle entries listed (0-based), are not provably in the
    /// compartment (another patient's, no patient's, not a FHIR resource, a nested Bundle).
    #[error("response_outside_compartment")]
    Outside(Vec<usize>),
    /// A Bundle `link` URL (paging) the subject could not request itself.
    #[error("response_link_outside_compartment")]
    LinkOutside,
}

impl ResponseEscape {
    /// The stable reason string.
    pub fn as_str(&self) -> &'static str {
        match self {
            ResponseEscape::NotJson => "response_not_json",
            ResponseEscape::Outside(_) => "response_outside_compartment",
            ResponseEscape::LinkOutside => "response_link_outside_compartment",
        }
    }

    /// Every reason string, for the docs and the counter's label set.
    pub fn all() -> [&'static str; 3] {
        [
            "response_not_json",
            "response_outside_compartment",
            "response_link_outside_compartment",
        ]
    }
}

impl Policy {
    /// Whether a held-back response `body` (Content-Encoding already undone) may be released
    /// to `subject`, whose request was allowed bound to `patient` below the FHIR `base`
    /// (`/fhir`). See the module doc for what passes.
    pub fn check_response(
        &self,
        subject: &Subject,
        patient: &str,
        base: &str,
        body: &[u8],
    ) -> Result<(), ResponseEscape> {
        let value: Value = serde_json::from_slice(body).map_err(|_| ResponseEscape::NotJson)?;
        match value.get("resourceType").and_then(Value::as_str) {
            Some("OperationOutcome") => Ok(()),
            Some("Bundle") => self.check_bundle(subject, patient, base, &value),
            _ if self.resource_passes(&value, patient) => Ok(()),
            _ => Err(ResponseEscape::Outside(Vec::new())),
        }
    }

    /// A returned resource (not a Bundle) that may be released to a patient-bound subject.
    fn resource_passes(&self, resource: &Value, patient: &str) -> bool {
        match resource.get("resourceType").and_then(Value::as_str) {
            Some("OperationOutcome") => true,
            // Walking nested Bundles would let a server hide entries one level down.
            Some("Bundle") | None => false,
            Some(ty) if self.settings.shared_types.contains(ty) => true,
            Some(_) => compartment::resource_in_compartment(resource, patient),
        }
    }

    fn check_bundle(
        &self,
        subject: &Subject,
        patient: &str,
        base: &str,
        bundle: &Value,
    ) -> Result<(), ResponseEscape> {
        let entries = match bundle.get("entry") {
            None => &[][..],
            Some(Value::Array(a)) => a.as_slice(),
            // `entry` of another JSON type is no Bundle the check can read.
            Some(_) => return Err(ResponseEscape::Outside(Vec::new())),
        };
        let outside: Vec<usize> = entries
            .iter()
            .enumerate()
            .filter(|(_, e)| match e.get("resource") {
                None => false,
                Some(r) => !self.resource_passes(r, patient),
            })
            .map(|(i, _)| i)
            .collect();
        if !outside.is_empty() {
            return Err(ResponseEscape::Outside(outside));
        }
        let links = match bundle.get("link") {
            None => &[][..],
            Some(Value::Array(a)) => a.as_slice(),
            Some(_) => return Err(ResponseEscape::LinkOutside),
        };
        for link in links {
            match link.get("url") {
                None => {}
                Some(Value::String(url)) if self.link_allowed(subject, base, url) => {}
                Some(_) => return Err(ResponseEscape::LinkOutside),
            }
        }
        Ok(())
    }

    /// Whether `subject` may `GET` the paging link `url` itself: the link is what the client
    /// requests next, so it is judged like that request (and a read by id it names is checked
    /// again when it is followed).
    fn link_allowed(&self, subject: &Subject, base: &str, url: &str) -> bool {
        let Some(target) = link_target(base, url) else {
            return false;
        };
        self.evaluate(
            subject,
            &AccessRequest {
                method: "GET",
                target: &target,
                base,
                body: None,
                if_none_exist: false,
            },
        )
        .allow
    }
}

/// The request target (path and query) of a Bundle link: an absolute `http(s)` URL loses its
/// scheme and authority, an absolute path stays, a relative reference is resolved against
/// `base` (FHIR references are relative to the service base). Anything else (another scheme,
/// an empty URL, a fragment-only or protocol-relative reference) has none.
fn link_target(base: &str, url: &str) -> Option<String> {
    let lower = url
        .get(..8)
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let rest = if lower.starts_with("https://") {
        &url[8..]
    } else if lower.starts_with("http://") {
        &url[7..]
    } else if url.starts_with("//") {
        return None;
    } else if url.starts_with('/') {
        return Some(url.to_string());
    } else if url.is_empty()
        || url.starts_with('#')
        || url
            .split(['?', '#'])
            .next()
            .is_some_and(|path| path.contains(':'))
    {
        return None;
    } else {
        return Some(format!("{}/{url}", base.trim_end_matches('/')));
    };
    // The authority ends at the first `/`; a link without a path names the server root.
    match rest.find('/') {
        Some(at) => Some(rest[at..].split('#').next().unwrap_or("").to_string()),
        None => Some("/".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    use crate::access::policy::tests::default_policy as policy;

    fn app() -> Subject {
        Subject {
            scope: "patient/*.rs".into(),
            patient: Some("pat-1".into()),
            ..Subject::default()
        }
    }

    fn check(body: Value) -> Result<(), ResponseEscape> {
        policy().check_response(&app(), "pat-1", "/fhir", body.to_string().as_bytes())
    }

    fn obs(patient: &str) -> Value {
        json!({"resourceType": "Observation", "id": "obs-1", "status": "final",
               "code": {"text": "x"}, "subject": {"reference": format!("Patient/{patient}")}})
    }

    fn bundle(entries: Vec<Value>, links: Vec<(&str, &str)>) -> Value {
        json!({
            "resourceType": "Bundle", "type": "history",
            "link": links.iter().map(|(r, u)| json!({"relation": r, "url": u})).collect::<Vec<_>>(),
            "entry": entries.into_iter().map(|r| json!({"resource": r})).collect::<Vec<_>>(),
        })
    }

    #[test]
    fn a_resource_of_the_context_patient_passes_and_of_another_is_refused() {
        assert_eq!(check(obs("pat-1")), Ok(()));
        assert_eq!(check(obs("pat-2")), Err(ResponseEscape::Outside(vec![])));
        // Absolute references to the patient count, like in requests' bodies.
        let mut abs = obs("pat-1");
        abs["subject"]["reference"] = json!("https://ehr.example/fhir/Patient/pat-1");
        assert_eq!(check(abs), Ok(()));
        // No compartment element at all: not provably the patient's.
        let mut orphan = obs("pat-1");
        orphan.as_object_mut().unwrap().remove("subject");
        assert_eq!(check(orphan), Err(ResponseEscape::Outside(vec![])));
        // A performer is a compartment element of Observation too.
        let mut perf = obs("pat-2");
        perf.as_object_mut().unwrap().remove("subject");
        perf["performer"] = json!([{"reference": "Patient/pat-1"}]);
        assert_eq!(check(perf), Ok(()));
    }

    #[test]
    fn a_patient_must_be_the_context_patient_itself() {
        assert_eq!(
            check(json!({"resourceType": "Patient", "id": "pat-1"})),
            Ok(())
        );
        assert_eq!(
            check(json!({"resourceType": "Patient", "id": "pat-2"})),
            Err(ResponseEscape::Outside(vec![]))
        );
    }

    #[test]
    fn operation_outcomes_and_shared_types_pass() {
        assert_eq!(
            check(json!({"resourceType": "OperationOutcome", "issue": []})),
            Ok(())
        );
        assert_eq!(
            check(json!({"resourceType": "Medication", "id": "m"})),
            Ok(())
        );
        // A type outside the compartment that the policy does not share.
        assert_eq!(
            check(json!({"resourceType": "Group", "id": "g"})),
            Err(ResponseEscape::Outside(vec![]))
        );
    }

    #[test]
    fn what_is_not_a_fhir_resource_in_json_is_refused() {
        let p = policy();
        let raw = |b: &[u8]| p.check_response(&app(), "pat-1", "/fhir", b);
        assert_eq!(
            raw(b"<Observation xmlns=\"http://hl7.org/fhir\"/>"),
            Err(ResponseEscape::NotJson)
        );
        assert_eq!(raw(b"{\"resourceType\":"), Err(ResponseEscape::NotJson));
        assert_eq!(raw(b""), Err(ResponseEscape::NotJson));
        assert_eq!(
            raw(b"{\"upstream\":\"recording\"}"),
            Err(ResponseEscape::Outside(vec![]))
        );
        assert_eq!(raw(b"[1,2]"), Err(ResponseEscape::Outside(vec![])));
    }

    #[test]
    fn a_bundle_is_judged_entry_by_entry() {
        assert_eq!(
            check(bundle(vec![obs("pat-1"), obs("pat-1")], vec![])),
            Ok(())
        );
        assert_eq!(
            check(bundle(
                vec![obs("pat-1"), obs("pat-2"), obs("pat-1")],
                vec![]
            )),
            Err(ResponseEscape::Outside(vec![1]))
        );
        // Entries without a resource (a deleted version in a history) and outcomes pass.
        let mut b = bundle(
            vec![
                obs("pat-1"),
                json!({"resourceType": "OperationOutcome", "issue": []}),
            ],
            vec![],
        );
        b["entry"]
            .as_array_mut()
            .unwrap()
            .push(json!({"request": {"method": "DELETE"}}));
        assert_eq!(check(b), Ok(()));
        // A nested Bundle is refused, not walked.
        assert_eq!(
            check(bundle(vec![bundle(vec![obs("pat-2")], vec![])], vec![])),
            Err(ResponseEscape::Outside(vec![0]))
        );
        assert_eq!(
            check(json!({"resourceType": "Bundle", "entry": {"resource": obs("pat-2")}})),
            Err(ResponseEscape::Outside(vec![]))
        );
    }

    #[test]
    fn paging_links_are_judged_like_the_requests_they_become() {
        let ok = |url: &'static str| bundle(vec![obs("pat-1")], vec![("next", url)]);
        for url in [
            "https://ehr.example/fhir/Observation?patient=pat-1&_page=2",
            "http://ehr.example:8080/fhir/Observation/obs-1/_history?_page=2",
            "/fhir/Patient/pat-1/Observation?_page=3",
            "Observation?subject=Patient/pat-1&_page=2",
        ] {
            assert_eq!(check(ok(url)), Ok(()), "{url}");
        }
        for url in [
            // The patient parameter dropped, or another patient's.
            "https://ehr.example/fhir/Observation?_page=2",
            "https://ehr.example/fhir/Observation?patient=pat-2&_page=2",
            "https://ehr.example/fhir/Patient/pat-2/Observation",
            // A server-root paging link names no compartment the gateway can judge.
            "https://ehr.example/fhir?_getpages=abc&_getpagesoffset=20",
            "https://ehr.example",
            // Not a URL the client could send to the gateway.
            "//ehr.example/fhir/Observation?patient=pat-1",
            "urn:uuid:1",
            "",
        ] {
            assert_eq!(check(ok(url)), Err(ResponseEscape::LinkOutside), "{url:?}");
        }
        let mut bad = ok("/fhir/Observation?patient=pat-1");
        bad["link"][0]["url"] = json!(7);
        assert_eq!(check(bad), Err(ResponseEscape::LinkOutside));
    }

    #[test]
    fn reasons_are_stable() {
        assert_eq!(
            ResponseEscape::all(),
            [
                ResponseEscape::NotJson.as_str(),
                ResponseEscape::Outside(vec![]).as_str(),
                ResponseEscape::LinkOutside.as_str()
            ]
        );
    }
}
