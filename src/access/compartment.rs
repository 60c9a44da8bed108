//! Patient binding: the FHIR R4 patient compartment (CompartmentDefinition/patient 4.0.0, as
//! data in `compartment-patient-r4.tsv`) and the checks that keep a patient-bound token inside
//! its patient's compartment.
//!
//! - [`check_request`]: is a classified request (and its body, for writes) provably inside
//!   the compartment of patient X, does it need its response checked, or does it leave?
//! - [`resource_in_compartment`] and [`bundle_outside_entries`]: does a returned resource (or
//!   every entry of a returned Bundle) belong to X's compartment (for the response hold-back).
//!
//! The rules (docs/access.md "Patient binding"):
//! - a reference names X when it is `Patient/X`; a bare `X` counts only for the `patient`
//!   parameter, for `_id` on Patient, and with the `:Patient` modifier; absolute URLs,
//!   `_history` references, `:identifier` and every other modifier are refused;
//! - a type search must carry at least one compartment parameter of its type (or the
//!   `patient` alias of R4's clinical-patient) and **every** value of **every** occurrence of
//!   every compartment parameter must name X (an OR list with one other patient leaves);
//! - `_has`, chained parameters, `_include`/`_revinclude` (any), `_query` and `_filter` are
//!   refused: each can reach resources outside the compartment;
//! - a write body names X when one of its compartment elements (per type: `subject`,
//!   `patient`, `performer`, …) holds a `reference` to `Patient/X` and none holds a reference
//!   to another Patient.

use std::collections::HashMap;
use std::sync::LazyLock;

use serde_json::Value;

use crate::access::fhir::{Classified, Interaction, OpLevel, Param, Params, COMPARTMENT_TSV};

struct Row {
    params: Vec<&'static str>,
    alias: bool,
}

static TABLE: LazyLock<HashMap<&'static str, Row>> = LazyLock::new(|| {
    let mut map = HashMap::new();
    for line in COMPARTMENT_TSV.lines() {
        if line.starts_with('#') || line.starts_with("type\t") || line.is_empty() {
            continue;
        }
        let mut cols = line.split('\t');
        let (Some(ty), Some(params), Some(alias)) = (cols.next(), cols.next(), cols.next()) else {
            continue;
        };
        let params = if params == "-" {
            Vec::new()
        } else {
            params.split(',').collect()
        };
        map.insert(
            ty,
            Row {
                params,
                alias: alias == "patient",
            },
        );
    }
    map
});

/// The search parameters that put a `resource_type` into the patient compartment (empty: the
/// type is never in it; `None`: not an R4 type).
pub fn compartment_params(resource_type: &str) -> Option<&'static [&'static str]> {
    TABLE.get(resource_type).map(|r| r.params.as_slice())
}

/// Whether resources of this type can be in a patient's compartment (`Patient` included).
pub fn in_compartment_type(resource_type: &str) -> bool {
    compartment_params(resource_type).is_some_and(|p| !p.is_empty())
}

/// The parameters accepted as binding a search of `resource_type` to a patient: the
/// compartment parameters plus the `patient` alias where R4 defines one.
fn binding_params(resource_type: &str) -> Vec<&'static str> {
    match TABLE.get(resource_type) {
        Some(row) if resource_type != "Patient" => {
            let mut v = row.params.clone();
            if row.alias {
                v.push("patient");
            }
            v
        }
        _ => Vec::new(),
    }
}

/// A request the URL shows to stay inside the compartment, or what else must be checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inside {
    /// Provably inside from the URL (and body).
    Yes,
    /// A read by id of a non-Patient type: only the response can tell. Hold it back and check
    /// it with [`resource_in_compartment`] (or [`bundle_outside_entries`]).
    IfResponseIs,
    /// A write or delete by id of a non-Patient type: the body is for X, but the resource it
    /// replaces or removes must be in X's compartment too, which only a read of the current
    /// version can tell.
    IfTargetIs,
}

/// Why a request leaves the compartment. `as_str` is a stable snake_case reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Escape {
    /// `Patient/Y`, `Patient/Y/…` or `Patient/Y/$op` for another patient.
    #[error("patient_mismatch")]
    OtherPatient,
    /// A type search without any compartment parameter.
    #[error("compartment_param_missing")]
    ParamMissing,
    /// A compartment parameter value that does not name the context patient.
    #[error("compartment_value_mismatch")]
    ValueMismatch,
    /// `_has`, a chain, `_include`/`_revinclude`, `_query` or `_filter`.
    #[error("compartment_escape_param")]
    EscapeParam,
    /// System-level search or history, or type-level history.
    #[error("system_level_not_allowed")]
    SystemLevel,
    /// A type that is never in a patient compartment (Practitioner, Medication, …).
    #[error("type_outside_compartment")]
    TypeOutside,
    /// A compartment other than Patient (`Encounter/E/Observation`).
    #[error("foreign_compartment")]
    ForeignCompartment,
    /// A create or update body that does not reference the context patient.
    #[error("body_not_in_compartment")]
    BodyOutside,
    /// A write the gateway cannot judge: patch, conditional update/patch/delete, conditional
    /// create.
    #[error("write_not_judgeable")]
    Unjudgeable,
    /// An `$operation` other than on `Patient/X`.
    #[error("operation_outside_compartment")]
    Operation,
}

impl Escape {
    /// The stable reason string.
    pub fn as_str(self) -> &'static str {
        match self {
            Escape::OtherPatient => "patient_mismatch",
            Escape::ParamMissing => "compartment_param_missing",
            Escape::ValueMismatch => "compartment_value_mismatch",
            Escape::EscapeParam => "compartment_escape_param",
            Escape::SystemLevel => "system_level_not_allowed",
            Escape::TypeOutside => "type_outside_compartment",
            Escape::ForeignCompartment => "foreign_compartment",
            Escape::BodyOutside => "body_not_in_compartment",
            Escape::Unjudgeable => "write_not_judgeable",
            Escape::Operation => "operation_outside_compartment",
        }
    }
}

/// Checks a classified request against the compartment of `patient`. `body` is the parsed
/// request body for create and update. Batch and transaction Bundles are checked entry by
/// entry by the caller; here they answer [`Inside::Yes`].
pub fn check_request(
    c: &Classified,
    patient: &str,
    body: Option<&Value>,
) -> Result<Inside, Escape> {
    use Interaction as I;
    let same = |id: &str| {
        if id == patient {
            Ok(Inside::Yes)
        } else {
            Err(Escape::OtherPatient)
        }
    };
    match &c.interaction {
        I::Capabilities | I::Batch | I::Transaction => Ok(Inside::Yes),
        I::Read { resource_type, id }
        | I::Vread {
            resource_type, id, ..
        }
        | I::HistoryInstance { resource_type, id } => {
            if resource_type == "Patient" {
                same(id)
            } else if in_compartment_type(resource_type) {
                Ok(Inside::IfResponseIs)
            } else {
                Err(Escape::TypeOutside)
            }
        }
        I::SearchType { resource_type } => search_inside(resource_type, &c.params, patient),
        I::SearchCompartment {
            compartment,
            id,
            resource_type,
        } => {
            if compartment != "Patient" {
                return Err(Escape::ForeignCompartment);
            }
            same(id)?;
            if resource_type
                .as_deref()
                .is_some_and(|t| !in_compartment_type(t))
            {
                return Err(Escape::TypeOutside);
            }
            no_escape_params(&c.params)?;
            Ok(Inside::Yes)
        }
        I::SearchSystem | I::HistorySystem | I::HistoryType { .. } => Err(Escape::SystemLevel),
        I::Create {
            resource_type,
            conditional,
        } => {
            if *conditional {
                return Err(Escape::Unjudgeable);
            }
            if resource_type == "Patient" || !body_names_patient(resource_type, body, patient) {
                return Err(Escape::BodyOutside);
            }
            Ok(Inside::Yes)
        }
        I::Update { resource_type, id } => {
            if resource_type == "Patient" {
                same(id)?;
                let body_ok = body.is_some_and(|b| {
                    b.get("resourceType").and_then(Value::as_str) == Some("Patient")
                        && b.get("id").and_then(Value::as_str) == Some(patient)
                });
                return if body_ok {
                    Ok(Inside::Yes)
                } else {
                    Err(Escape::BodyOutside)
                };
            }
            if !body_names_patient(resource_type, body, patient) {
                return Err(Escape::BodyOutside);
            }
            let id_ok = body
                .and_then(|b| b.get("id"))
                .is_none_or(|v| v.as_str() == Some(id));
            if !id_ok {
                return Err(Escape::BodyOutside);
            }
            Ok(Inside::IfTargetIs)
        }
        I::Delete { resource_type, id } => {
            if resource_type == "Patient" {
                same(id)
            } else if in_compartment_type(resource_type) {
                Ok(Inside::IfTargetIs)
            } else {
                Err(Escape::TypeOutside)
            }
        }
        I::Patch { .. }
        | I::ConditionalPatch { .. }
        | I::ConditionalUpdate { .. }
        | I::ConditionalDelete { .. } => Err(Escape::Unjudgeable),
        I::Operation { level, .. } => match level {
            OpLevel::Instance(t, id) if t == "Patient" => {
                same(id)?;
                no_escape_params(&c.params)?;
                Ok(Inside::Yes)
            }
            _ => Err(Escape::Operation),
        },
    }
}

fn no_escape_params(params: &Params) -> Result<(), Escape> {
    for p in params.iter() {
        let n = p.base_name();
        if n.starts_with("_has")
            || p.is_chained()
            || matches!(n, "_include" | "_revinclude" | "_query" | "_filter")
        {
            return Err(Escape::EscapeParam);
        }
    }
    Ok(())
}

fn search_inside(resource_type: &str, params: &Params, patient: &str) -> Result<Inside, Escape> {
    no_escape_params(params)?;
    if resource_type == "Patient" {
        let ids: Vec<&Param> = params.iter().filter(|p| p.base_name() == "_id").collect();
        if ids.is_empty() {
            return Err(Escape::ParamMissing);
        }
        let ok = ids.iter().all(|p| {
            p.name == "_id" && !p.values.is_empty() && p.values.iter().all(|v| v == patient)
        });
        // `link` would reach the linked patients' records: refused like any other parameter
        // naming another Patient.
        if !ok || params.iter().any(|p| p.base_name() == "link") {
            return Err(Escape::ValueMismatch);
        }
        return Ok(Inside::Yes);
    }
    if !in_compartment_type(resource_type) {
        return Err(Escape::TypeOutside);
    }
    let binding = binding_params(resource_type);
    let occurrences: Vec<&Param> = params
        .iter()
        .filter(|p| binding.contains(&p.base_name()))
        .collect();
    if occurrences.is_empty() {
        return Err(Escape::ParamMissing);
    }
    for p in occurrences {
        let modifier = p.modifier();
        if !matches!(modifier, None | Some("Patient")) || p.values.is_empty() {
            return Err(Escape::ValueMismatch);
        }
        let bare_ok = p.base_name() == "patient" || modifier == Some("Patient");
        let all = p
            .values
            .iter()
            .all(|v| v.strip_prefix("Patient/") == Some(patient) || (bare_ok && v == patient));
        if !all {
            return Err(Escape::ValueMismatch);
        }
    }
    Ok(Inside::Yes)
}

/// The elements of `resource_type` a compartment parameter searches (best effort by
/// reference fields; docs/access.md lists the rule). `patient` looks at both `patient` and
/// `subject`: R4 types differ in which element their `patient` parameter searches.
fn elements_of(resource_type: &str, param: &str) -> Vec<String> {
    let one = |s: &str| vec![s.to_string()];
    match (resource_type, param) {
        ("Appointment", "actor") | ("CareTeam", "participant") => one("participant"),
        ("RequestGroup", "participant") => one("action"),
        ("AuditEvent", "patient") => one("entity"),
        ("Provenance", "patient") => one("target"),
        ("Person", "patient") => one("link"),
        ("Group", "member") => one("member"),
        (_, "patient") => vec!["patient".into(), "subject".into()],
        (_, "policy-holder") => one("policyHolder"),
        _ => one(param),
    }
}

fn collect_references<'a>(v: &'a Value, depth: usize, out: &mut Vec<&'a str>) {
    if depth > 8 {
        return;
    }
    match v {
        Value::Object(map) => {
            for (k, x) in map {
                if k == "reference" {
                    if let Some(s) = x.as_str() {
                        out.push(s);
                    }
                } else {
                    collect_references(x, depth + 1, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_references(x, depth + 1, out)),
        _ => {}
    }
}

/// The Patient id a reference names (`Patient/X`, `…/Patient/X`, `Patient/X/_history/1`).
fn patient_of(reference: &str) -> Option<&str> {
    let at = if reference.starts_with("Patient/") {
        0
    } else {
        reference.rfind("/Patient/")? + 1
    };
    let id = &reference[at + "Patient/".len()..];
    Some(id.split('/').next().unwrap_or(id))
}

/// The references found in `resource`'s compartment elements.
fn compartment_references<'a>(resource_type: &str, resource: &'a Value) -> Vec<&'a str> {
    let mut refs = Vec::new();
    let mut params = binding_params(resource_type);
    params.sort_unstable();
    params.dedup();
    for p in params {
        for element in elements_of(resource_type, p) {
            if let Some(v) = resource.get(element.as_str()) {
                collect_references(v, 0, &mut refs);
            }
        }
    }
    refs
}

/// Whether a write body for `resource_type` names `patient` (and no other patient) through
/// its compartment elements.
fn body_names_patient(resource_type: &str, body: Option<&Value>, patient: &str) -> bool {
    let Some(body) = body else {
        return false;
    };
    if body.get("resourceType").and_then(Value::as_str) != Some(resource_type) {
        return false;
    }
    let refs = compartment_references(resource_type, body);
    let mut named = false;
    for r in refs {
        match patient_of(r) {
            Some(id) if id == patient && r == format!("Patient/{patient}") => named = true,
            Some(_) => return false,
            None => {}
        }
    }
    named
}

/// Whether a returned resource belongs to the compartment of `patient`: a Patient whose `id`
/// is `patient`, or a resource of a compartment type one of whose compartment elements
/// references `Patient/{patient}`. Resources of types outside the compartment answer `false`
/// (the policy decides whether such shared types may be read at all).
pub fn resource_in_compartment(resource: &Value, patient: &str) -> bool {
    let Some(ty) = resource.get("resourceType").and_then(Value::as_str) else {
        return false;
    };
    if ty == "Patient" {
        return resource.get("id").and_then(Value::as_str) == Some(patient);
    }
    if !in_compartment_type(ty) {
        return false;
    }
    compartment_references(ty, resource)
        .into_iter()
        .any(|r| patient_of(r) == Some(patient))
}

/// The indexes of a returned Bundle's entries whose `resource` is outside the compartment of
/// `patient`. Entries without a resource (transaction responses, deleted history entries) and
/// `OperationOutcome` entries carry no patient data and pass. Paging `link` URLs are not
/// judged here: [`crate::access::policy::Policy::check_response`], what the gateway's
/// response hold-back calls, judges them as requests (and lets the policy's shared types
/// through).
pub fn bundle_outside_entries(bundle: &Value, patient: &str) -> Vec<usize> {
    let Some(entries) = bundle.get("entry").and_then(Value::as_array) else {
        return Vec::new();
    };
    entries
        .iter()
        .enumerate()
        .filter(|(_, e)| match e.get("resource") {
            None => false,
            Some(r)
                if r.get("resourceType").and_then(Value::as_str) == Some("OperationOutcome") =>
            {
                false
            }
            Some(r) if r.get("resourceType").and_then(Value::as_str) == Some("Bundle") => true,
            Some(r) => !resource_in_compartment(r, patient),
        })
        .map(|(i, _)| i)
        .collect()
}

#[cfg(test)]
mod tests;
