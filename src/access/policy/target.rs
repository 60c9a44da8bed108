//! The check of a write's target (issue 11 §3, `post_check: target`): an update or delete by
//! id of a non-Patient resource under `patient/` scopes (`PUT Observation/obs-1`,
//! `DELETE Observation/obs-1`) is judged from its body, but the resource it replaces or
//! removes must be in the context patient's compartment too — otherwise a patient app could
//! overwrite another patient's Observation with one naming its own patient, moving it into
//! its compartment. Only the current version can tell, so the gateway reads it from the
//! upstream first (`GET [base]/[type]/[id]`) and asks [`Policy::check_target`] about it.
//!
//! [`Policy::write_target`] names what to read, from the request alone (the same
//! normalisation as every other check, so the read names what the write names). Bundle
//! entries are not read: a batch or transaction with a write by id under patient binding
//! stays refused (`compartment_check_unavailable`). This file is pure: no I/O, unit-tested
//! below.

use serde_json::Value;

use super::{AccessRequest, Policy};
use crate::access::compartment;
use crate::access::fhir::{classify, Interaction, RequestParts};

/// The resource a write by id replaces or removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteTarget {
    /// Its type (never `Patient`: a Patient's own id is judged from the URL).
    pub resource_type: String,
    /// Its id (a FHIR id: `[A-Za-z0-9\-\.]{1,64}`, checked by the classifier).
    pub id: String,
}

impl WriteTarget {
    /// The path to read it at, under the route's FHIR base.
    pub fn read_path(&self, base: &str) -> String {
        format!(
            "{}/{}/{}",
            base.trim_end_matches('/'),
            self.resource_type,
            self.id
        )
    }
}

/// Why a write's target is not accepted. [`TargetEscape::as_str`] is the stable reason of
/// the audit record and the counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TargetEscape {
    /// The current version is not JSON, or not the resource asked for.
    #[error("target_unreadable")]
    Unreadable,
    /// The current version is not provably in the patient's compartment.
    #[error("target_outside_compartment")]
    Outside,
}

impl TargetEscape {
    /// The stable reason string.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetEscape::Unreadable => "target_unreadable",
            TargetEscape::Outside => "target_outside_compartment",
        }
    }
}

impl Policy {
    /// The resource a single (non-Bundle) update or delete by id of a non-Patient type
    /// replaces or removes; `None` for every other request.
    pub fn write_target(&self, request: &AccessRequest<'_>) -> Option<WriteTarget> {
        let c = classify(&RequestParts {
            method: request.method,
            target: request.target,
            base: request.base,
            body: None,
            if_none_exist: request.if_none_exist,
        })
        .ok()?;
        match c.interaction {
            Interaction::Update { resource_type, id }
            | Interaction::Delete { resource_type, id }
                if resource_type != "Patient" =>
            {
                Some(WriteTarget { resource_type, id })
            }
            _ => None,
        }
    }

    /// Judges the current version of `target` (the decoded body of a `200` to its read): it
    /// must be that very resource (type and id) and in `patient`'s compartment. Returns its
    /// `meta.versionId`, which the gateway turns into an `If-Match` when the read had no
    /// `ETag`.
    pub fn check_target(
        &self,
        target: &WriteTarget,
        patient: &str,
        body: &[u8],
    ) -> Result<Option<String>, TargetEscape> {
        let value: Value = serde_json::from_slice(body).map_err(|_| TargetEscape::Unreadable)?;
        let is_it = value.get("resourceType").and_then(Value::as_str)
            == Some(target.resource_type.as_str())
            && value.get("id").and_then(Value::as_str) == Some(target.id.as_str());
        if !is_it {
            return Err(TargetEscape::Unreadable);
        }
        if !compartment::resource_in_compartment(&value, patient) {
            return Err(TargetEscape::Outside);
        }
        Ok(value
            .pointer("/meta/versionId")
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_graphic() && b != b'"'))
            .map(str::to_string))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    use crate::access::policy::tests::default_policy as policy;

    fn target_of(method: &str, target: &str) -> Option<WriteTarget> {
        policy().write_target(&AccessRequest {
            method,
            target,
            base: "/fhir",
            body: None,
            if_none_exist: false,
        })
    }

    #[test]
    fn writes_by_id_of_non_patient_types_have_a_target() {
        let obs = Some(WriteTarget {
            resource_type: "Observation".into(),
            id: "obs-1".into(),
        });
        assert_eq!(target_of("PUT", "/fhir/Observation/obs-1"), obs);
        assert_eq!(target_of("DELETE", "/fhir/Observation/obs-1"), obs);
        // The read path is the normalised one, whatever spelling the write used.
        assert_eq!(
            target_of("PUT", "/fhir/Observation/obs%2D1")
                .map(|t| t.read_path("/fhir/"))
                .as_deref(),
            Some("/fhir/Observation/obs-1")
        );
        for (m, t) in [
            ("PUT", "/fhir/Patient/pat-1"),
            ("DELETE", "/fhir/Patient/pat-1"),
            ("GET", "/fhir/Observation/obs-1"),
            ("POST", "/fhir/Observation"),
            ("PUT", "/fhir/Observation?identifier=x"),
            ("DELETE", "/fhir/Observation?subject=Patient/pat-1"),
            ("PUT", "/fhir/Observation/../Patient/pat-2"),
            ("POST", "/fhir/"),
        ] {
            assert_eq!(target_of(m, t), None, "{m} {t}");
        }
    }

    #[test]
    fn the_current_version_must_be_that_resource_in_the_compartment() {
        let p = policy();
        let t = WriteTarget {
            resource_type: "Observation".into(),
            id: "obs-1".into(),
        };
        let obs = |id: &str, patient: &str, meta: Value| {
            json!({"resourceType": "Observation", "id": id, "status": "final", "meta": meta,
                   "code": {"text": "x"}, "subject": {"reference": format!("Patient/{patient}")}})
            .to_string()
        };
        assert_eq!(
            p.check_target(
                &t,
                "pat-1",
                obs("obs-1", "pat-1", json!({"versionId": "3"})).as_bytes()
            ),
            Ok(Some("3".into()))
        );
        assert_eq!(
            p.check_target(&t, "pat-1", obs("obs-1", "pat-1", json!({})).as_bytes()),
            Ok(None)
        );
        // A version id that could break out of the quoted ETag is not used.
        assert_eq!(
            p.check_target(
                &t,
                "pat-1",
                obs("obs-1", "pat-1", json!({"versionId": "3\", W/\"4"})).as_bytes()
            ),
            Ok(None)
        );
        assert_eq!(
            p.check_target(&t, "pat-1", obs("obs-1", "pat-2", json!({})).as_bytes()),
            Err(TargetEscape::Outside)
        );
        assert_eq!(
            p.check_target(&t, "pat-1", obs("obs-9", "pat-1", json!({})).as_bytes()),
            Err(TargetEscape::Unreadable)
        );
        for body in [
            "<Observation/>".to_string(),
            json!({"resourceType": "OperationOutcome", "issue": []}).to_string(),
            json!({"resourceType": "Bundle", "type": "searchset", "entry": []}).to_string(),
        ] {
            assert_eq!(
                p.check_target(&t, "pat-1", body.as_bytes()),
                Err(TargetEscape::Unreadable),
                "{body}"
            );
        }
    }
}
