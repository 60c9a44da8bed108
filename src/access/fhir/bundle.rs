//! Batch and transaction Bundles: `POST [base]` with `{"resourceType":"Bundle","type":
//! "batch"|"transaction","entry":[{"request":{"method":…,"url":…},"resource":…}]}`.
//!
//! Each entry is classified on its own ([`super::classify_relative`]) and returned with its
//! index, so one entry out of scope can refuse the Bundle and the answer can list it. Entries
//! that cannot be judged are errors of that entry, not of the Bundle: an absolute `url`, a
//! nested Bundle, a `Parameters` resource outside PATCH and `$operation` entries (HAPI's
//! conservative rule), an entry with no `request`.

use serde_json::Value;

use super::{classify_relative, Classified, FhirError, Interaction};

/// The most entries a Bundle may carry.
pub const MAX_ENTRIES: usize = 10_000;

/// Batch or transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundleKind {
    /// `type: batch`.
    Batch,
    /// `type: transaction`.
    Transaction,
}

/// One entry: its index in `entry[]`, its interaction (or why it has none) and its resource.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The index in `entry[]`.
    pub index: usize,
    /// The classified `request.method` + `request.url`.
    pub request: Result<Classified, FhirError>,
    /// `entry[i].resource`, for create and update entries.
    pub resource: Option<Value>,
}

/// A parsed batch/transaction Bundle.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// Batch or transaction.
    pub kind: BundleKind,
    /// The entries in order.
    pub entries: Vec<Entry>,
}

/// `POST [base]`: the interaction named by the body's `type`.
pub(super) fn bundle_kind(body: Option<&[u8]>) -> Result<Interaction, FhirError> {
    let v = parse_json(body)?;
    Ok(match kind_of(&v)? {
        BundleKind::Batch => Interaction::Batch,
        BundleKind::Transaction => Interaction::Transaction,
    })
}

fn parse_json(body: Option<&[u8]>) -> Result<Value, FhirError> {
    let body = body.ok_or_else(|| FhirError::BadBundle("no body".into()))?;
    serde_json::from_slice(body).map_err(|_| FhirError::BadBundle("not JSON".into()))
}

fn kind_of(v: &Value) -> Result<BundleKind, FhirError> {
    if v.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(FhirError::BadBundle("resourceType is not Bundle".into()));
    }
    match v.get("type").and_then(Value::as_str) {
        Some("batch") => Ok(BundleKind::Batch),
        Some("transaction") => Ok(BundleKind::Transaction),
        _ => Err(FhirError::BadBundle(
            "type is not batch or transaction".into(),
        )),
    }
}

/// Parses a batch/transaction Bundle body and classifies every entry.
pub fn parse_bundle(body: &[u8]) -> Result<Bundle, FhirError> {
    let v = parse_json(Some(body))?;
    let kind = kind_of(&v)?;
    let entries = match v.get("entry") {
        None => &[][..],
        Some(Value::Array(a)) => a.as_slice(),
        Some(_) => return Err(FhirError::BadBundle("entry is not an array".into())),
    };
    if entries.len() > MAX_ENTRIES {
        return Err(FhirError::TooMany);
    }
    let entries = entries
        .iter()
        .enumerate()
        .map(|(index, e)| Entry {
            index,
            request: classify_entry(e),
            resource: e.get("resource").cloned(),
        })
        .collect();
    Ok(Bundle { kind, entries })
}

fn classify_entry(e: &Value) -> Result<Classified, FhirError> {
    let req = e
        .get("request")
        .ok_or_else(|| FhirError::BadBundle("entry without request".into()))?;
    let method = req
        .get("method")
        .and_then(Value::as_str)
        .ok_or_else(|| FhirError::BadBundle("entry request without method".into()))?;
    let url = req
        .get("url")
        .and_then(Value::as_str)
        .ok_or_else(|| FhirError::BadBundle("entry request without url".into()))?;
    if !matches!(method, "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE") {
        return Err(FhirError::MethodNotAllowed);
    }
    // Relative only: an absolute URL (`https://…`, `urn:uuid:…`) has a `:` before any `?`;
    // query values (`code=http://loinc.org|8867-4`) may hold one.
    let path = url.split('?').next().unwrap_or(url);
    if path.contains(':') || url.starts_with("//") {
        return Err(FhirError::NotOriginForm);
    }
    let resource_type = e
        .get("resource")
        .and_then(|r| r.get("resourceType"))
        .and_then(Value::as_str);
    if resource_type == Some("Bundle") {
        return Err(FhirError::BadBundle("nested Bundle".into()));
    }
    let mut classified = classify_relative(method, url, None)?;
    if let Interaction::Create { conditional, .. } = &mut classified.interaction {
        *conditional = req.get("ifNoneExist").is_some_and(|v| !v.is_null());
    }
    let is_patch_or_op = matches!(
        classified.interaction,
        Interaction::Patch { .. }
            | Interaction::ConditionalPatch { .. }
            | Interaction::Operation { .. }
    );
    if resource_type == Some("Parameters") && !is_patch_or_op {
        return Err(FhirError::BadBundle(
            "Parameters outside a PATCH or $operation entry".into(),
        ));
    }
    if matches!(
        classified.interaction,
        Interaction::Batch | Interaction::Transaction
    ) {
        return Err(FhirError::BadBundle("nested Bundle".into()));
    }
    Ok(classified)
}
