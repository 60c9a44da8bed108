//! FHIR REST requests → typed interactions (R4 `http.html`, `restful-interaction`).
//!
//! [`classify`] takes a method, the request target (path and query, exactly as received), the
//! route's base path (`/fhir`) and, for `POST …/_search` and batch/transaction, the body. The
//! URL is normalised once ([`normalize`]) before it is classified, so a check made on the
//! result judges what the upstream will see:
//!
//! - percent-decoding happens exactly once, per path segment and per query key and value; a
//!   decoded path segment that still holds `%` (double encoding, `%252F`), or holds `/`, `\`,
//!   `;` or a control character, is refused, as is a decoded query key with `%`;
//! - empty (`//`), `.` and `..` segments are refused (not resolved); one trailing `/` is
//!   dropped;
//! - resource types are case-sensitive and must be R4 types: `patient` is refused, not read as
//!   `Patient`;
//! - query parameters keep their order; a repeated parameter stays two occurrences, and
//!   comma-separated values (unescaped `,`) become a list.
//!
//! Batch and transaction Bundles: [`bundle::parse_bundle`] returns each entry's interaction
//! with its index.

pub mod bundle;
mod normalize;

use std::collections::HashSet;
use std::sync::LazyLock;

pub use normalize::{normalize, NormalizedUrl};

/// The compartment table (one line per R4 resource type), shared with
/// [`crate::access::compartment`].
pub(crate) const COMPARTMENT_TSV: &str = include_str!("../compartment-patient-r4.tsv");

static TYPES: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    COMPARTMENT_TSV
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("type\t"))
        .filter_map(|l| l.split('\t').next())
        .filter(|t| !t.is_empty())
        .collect()
});

/// Whether `name` is an R4 resource type (case-sensitive).
pub fn is_resource_type(name: &str) -> bool {
    TYPES.contains(name)
}

/// Every R4 resource type, sorted.
pub fn resource_types() -> Vec<&'static str> {
    let mut v: Vec<&str> = TYPES.iter().copied().collect();
    v.sort_unstable();
    v
}

/// One query parameter occurrence: `name` (decoded, modifier kept: `subject:Patient`) and its
/// comma-separated values (decoded; `\,` stays a literal comma inside one value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// The name as sent, decoded, with any `:modifier` or `.chain`.
    pub name: String,
    /// The OR-list of values.
    pub values: Vec<String>,
}

impl Param {
    /// The name before any `:modifier` or `.chain`.
    pub fn base_name(&self) -> &str {
        let end = self.name.find([':', '.']).unwrap_or(self.name.len());
        &self.name[..end]
    }

    /// The `:modifier`, if any (`subject:Patient` → `Patient`).
    pub fn modifier(&self) -> Option<&str> {
        let (_, rest) = self.name.split_once(':')?;
        Some(rest.split('.').next().unwrap_or(rest))
    }

    /// Whether the name chains (`subject.name`, `subject:Patient.name`).
    pub fn is_chained(&self) -> bool {
        self.name.contains('.')
    }
}

/// The query (and `_search` form body) parameters, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(pub Vec<Param>);

impl Params {
    /// Every value of every occurrence named exactly `name`.
    pub fn values_of<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |p| p.name == name)
            .flat_map(|p| p.values.iter().map(String::as_str))
    }

    /// The occurrences.
    pub fn iter(&self) -> impl Iterator<Item = &Param> {
        self.0.iter()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Where an `$operation` is invoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpLevel {
    /// `[base]/$op`.
    System,
    /// `[base]/[type]/$op`.
    Type(String),
    /// `[base]/[type]/[id]/$op`.
    Instance(String, String),
}

/// A FHIR interaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interaction {
    /// `GET [type]/[id]`.
    Read {
        /// Type.
        resource_type: String,
        /// Id.
        id: String,
    },
    /// `GET [type]/[id]/_history/[vid]`.
    Vread {
        /// Type.
        resource_type: String,
        /// Id.
        id: String,
        /// Version id.
        vid: String,
    },
    /// `GET [type]/[id]/_history`.
    HistoryInstance {
        /// Type.
        resource_type: String,
        /// Id.
        id: String,
    },
    /// `GET [type]/_history`.
    HistoryType {
        /// Type.
        resource_type: String,
    },
    /// `GET [base]/_history`.
    HistorySystem,
    /// `GET [type]?…` or `POST [type]/_search`.
    SearchType {
        /// Type.
        resource_type: String,
    },
    /// `GET [base]?…` or `POST [base]/_search`.
    SearchSystem,
    /// `GET [compartment]/[id]/[type]?…` (`[type]` `None` for `*`).
    SearchCompartment {
        /// The compartment type (`Patient`, `Encounter`, …).
        compartment: String,
        /// The compartment's id.
        id: String,
        /// The searched type, `None` for `*`.
        resource_type: Option<String>,
    },
    /// `POST [type]` (conditional with `If-None-Exist`).
    Create {
        /// Type.
        resource_type: String,
        /// `If-None-Exist` was sent.
        conditional: bool,
    },
    /// `PUT [type]/[id]`.
    Update {
        /// Type.
        resource_type: String,
        /// Id.
        id: String,
    },
    /// `PUT [type]?…`.
    ConditionalUpdate {
        /// Type.
        resource_type: String,
    },
    /// `PATCH [type]/[id]`.
    Patch {
        /// Type.
        resource_type: String,
        /// Id.
        id: String,
    },
    /// `PATCH [type]?…`.
    ConditionalPatch {
        /// Type.
        resource_type: String,
    },
    /// `DELETE [type]/[id]`.
    Delete {
        /// Type.
        resource_type: String,
        /// Id.
        id: String,
    },
    /// `DELETE [type]?…`.
    ConditionalDelete {
        /// Type.
        resource_type: String,
    },
    /// `GET|POST …/$name`.
    Operation {
        /// The name without `$`.
        name: String,
        /// Where.
        level: OpLevel,
    },
    /// `GET [base]/metadata`.
    Capabilities,
    /// `POST [base]` with a Bundle of type `batch`.
    Batch,
    /// `POST [base]` with a Bundle of type `transaction`.
    Transaction,
}

impl Interaction {
    /// A stable snake_case name (for logs, audit and `policy test` output).
    pub fn name(&self) -> &'static str {
        match self {
            Interaction::Read { .. } => "read",
            Interaction::Vread { .. } => "vread",
            Interaction::HistoryInstance { .. } => "history_instance",
            Interaction::HistoryType { .. } => "history_type",
            Interaction::HistorySystem => "history_system",
            Interaction::SearchType { .. } => "search_type",
            Interaction::SearchSystem => "search_system",
            Interaction::SearchCompartment { .. } => "search_compartment",
            Interaction::Create { .. } => "create",
            Interaction::Update { .. } => "update",
            Interaction::ConditionalUpdate { .. } => "conditional_update",
            Interaction::Patch { .. } => "patch",
            Interaction::ConditionalPatch { .. } => "conditional_patch",
            Interaction::Delete { .. } => "delete",
            Interaction::ConditionalDelete { .. } => "conditional_delete",
            Interaction::Operation { .. } => "operation",
            Interaction::Capabilities => "capabilities",
            Interaction::Batch => "batch",
            Interaction::Transaction => "transaction",
        }
    }

    /// The resource type the interaction is about, if one.
    pub fn resource_type(&self) -> Option<&str> {
        match self {
            Interaction::Read { resource_type, .. }
            | Interaction::Vread { resource_type, .. }
            | Interaction::HistoryInstance { resource_type, .. }
            | Interaction::HistoryType { resource_type }
            | Interaction::SearchType { resource_type }
            | Interaction::Create { resource_type, .. }
            | Interaction::Update { resource_type, .. }
            | Interaction::ConditionalUpdate { resource_type }
            | Interaction::Patch { resource_type, .. }
            | Interaction::ConditionalPatch { resource_type }
            | Interaction::Delete { resource_type, .. }
            | Interaction::ConditionalDelete { resource_type } => Some(resource_type),
            Interaction::SearchCompartment { resource_type, .. } => resource_type.as_deref(),
            Interaction::Operation { level, .. } => match level {
                OpLevel::System => None,
                OpLevel::Type(t) | OpLevel::Instance(t, _) => Some(t),
            },
            _ => None,
        }
    }
}

/// A classified request: the interaction and its (search) parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    /// What the request does.
    pub interaction: Interaction,
    /// The query parameters, plus the form body's for `POST …/_search`.
    pub params: Params,
}

/// Why a request could not be classified. Messages never carry the URL (it can hold PHI).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FhirError {
    /// The target is not an origin-form path, or holds a fragment.
    #[error("the request target is not an origin-form path")]
    NotOriginForm,
    /// The path is not under the configured base path.
    #[error("the path is not under the FHIR base path")]
    OutsideBase,
    /// An empty, `.` or `..` segment.
    #[error("the path holds an empty, `.` or `..` segment")]
    DotOrEmptySegment,
    /// Percent-encoding that is invalid, decodes to a separator, or is double-encoded.
    #[error("the path or query holds ambiguous percent-encoding")]
    AmbiguousEncoding,
    /// A type that is not an R4 resource type (case-sensitive).
    #[error("unknown resource type")]
    UnknownType,
    /// An id, version id or operation name with characters FHIR does not allow.
    #[error("malformed id or operation name")]
    BadId,
    /// A path shape FHIR does not define.
    #[error("the path is not a FHIR interaction")]
    UnknownShape,
    /// The method is not defined for that path shape.
    #[error("the method is not defined for this FHIR interaction")]
    MethodNotAllowed,
    /// `POST [base]` whose body is not a batch or transaction Bundle.
    #[error("the body is not a batch or transaction Bundle: {0}")]
    BadBundle(String),
    /// Too many query parameters or Bundle entries.
    #[error("too many parameters or entries")]
    TooMany,
}

/// The most query parameters (occurrences) accepted.
pub const MAX_PARAMS: usize = 256;

/// One request to classify.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    /// `GET`, `POST`, … (`HEAD` is classified like `GET`).
    pub method: &'a str,
    /// Path and query as received.
    pub target: &'a str,
    /// The route's FHIR base path, e.g. `/fhir` (`/` or empty for the root).
    pub base: &'a str,
    /// The body, for `POST …/_search` (form-encoded) and `POST [base]` (Bundle).
    pub body: Option<&'a [u8]>,
    /// Whether `If-None-Exist` was sent (conditional create).
    pub if_none_exist: bool,
}

/// Classifies a request. `POST [base]` yields [`Interaction::Batch`] or
/// [`Interaction::Transaction`] from the body's `type`; the entries come from
/// [`bundle::parse_bundle`].
pub fn classify(parts: &RequestParts<'_>) -> Result<Classified, FhirError> {
    let url = normalize(parts.target, parts.base)?;
    classify_normalized(parts.method, &url, parts.body, parts.if_none_exist)
}

/// Classifies a relative URL (a Bundle entry's `request.url`), with no base.
pub fn classify_relative(
    method: &str,
    url: &str,
    body: Option<&[u8]>,
) -> Result<Classified, FhirError> {
    let target = format!("/{}", url.strip_prefix('/').unwrap_or(url));
    let url = normalize(&target, "")?;
    classify_normalized(method, &url, body, false)
}

fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

fn valid_op(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn ty(s: &str) -> Result<String, FhirError> {
    if is_resource_type(s) {
        Ok(s.to_string())
    } else if s.starts_with('_') || s.starts_with('$') || s == "metadata" {
        Err(FhirError::UnknownShape)
    } else {
        Err(FhirError::UnknownType)
    }
}

fn id(s: &str) -> Result<String, FhirError> {
    if valid_id(s) {
        Ok(s.to_string())
    } else {
        Err(FhirError::BadId)
    }
}

fn op(s: &str) -> Option<Result<String, FhirError>> {
    let name = s.strip_prefix('$')?;
    Some(if valid_op(name) {
        Ok(name.to_string())
    } else {
        Err(FhirError::BadId)
    })
}

fn classify_normalized(
    method: &str,
    url: &NormalizedUrl,
    body: Option<&[u8]>,
    if_none_exist: bool,
) -> Result<Classified, FhirError> {
    use Interaction as I;
    let m = match method {
        "HEAD" => "GET",
        m => m,
    };
    let segs: Vec<&str> = url.segments.iter().map(String::as_str).collect();
    let mut params = url.params.clone();
    let not_allowed = Err(FhirError::MethodNotAllowed);
    let interaction = match (segs.as_slice(), m) {
        ([], "GET") => I::SearchSystem,
        ([], "POST") => bundle::bundle_kind(body)?,
        ([], _) => return not_allowed,
        (["metadata"], "GET") => I::Capabilities,
        (["_history"], "GET") => I::HistorySystem,
        (["_search"], "POST") => {
            params.0.extend(normalize::form_params(body)?.0);
            I::SearchSystem
        }
        ([one], "GET" | "POST") if one.starts_with('$') => I::Operation {
            name: op(one).unwrap_or(Err(FhirError::BadId))?,
            level: OpLevel::System,
        },
        ([t], _) => {
            let resource_type = ty(t)?;
            match m {
                "GET" => I::SearchType { resource_type },
                "POST" => I::Create {
                    resource_type,
                    conditional: if_none_exist,
                },
                "PUT" => I::ConditionalUpdate { resource_type },
                "PATCH" => I::ConditionalPatch { resource_type },
                "DELETE" => I::ConditionalDelete { resource_type },
                _ => return not_allowed,
            }
        }
        ([t, "_search"], "POST") => {
            let resource_type = ty(t)?;
            params.0.extend(normalize::form_params(body)?.0);
            I::SearchType { resource_type }
        }
        ([t, "_history"], "GET") => I::HistoryType {
            resource_type: ty(t)?,
        },
        ([t, second], _) if second.starts_with('$') => {
            let resource_type = ty(t)?;
            if m != "GET" && m != "POST" {
                return not_allowed;
            }
            I::Operation {
                name: op(second).unwrap_or(Err(FhirError::BadId))?,
                level: OpLevel::Type(resource_type),
            }
        }
        ([_, "_search" | "_history"], _) => return not_allowed,
        ([t, i], _) => {
            let resource_type = ty(t)?;
            let id = id(i)?;
            match m {
                "GET" => I::Read { resource_type, id },
                "PUT" => I::Update { resource_type, id },
                "PATCH" => I::Patch { resource_type, id },
                "DELETE" => I::Delete { resource_type, id },
                _ => return not_allowed,
            }
        }
        ([t, i, "_history"], "GET") => I::HistoryInstance {
            resource_type: ty(t)?,
            id: id(i)?,
        },
        ([t, i, "_history", v], "GET") => I::Vread {
            resource_type: ty(t)?,
            id: id(i)?,
            vid: id(v)?,
        },
        ([t, i, third], "GET" | "POST") if third.starts_with('$') => {
            let resource_type = ty(t)?;
            let id = id(i)?;
            I::Operation {
                name: op(third).unwrap_or(Err(FhirError::BadId))?,
                level: OpLevel::Instance(resource_type, id),
            }
        }
        ([t, i, target], "GET") => compartment_search(t, i, target)?,
        ([t, i, target, "_search"], "POST") => {
            let c = compartment_search(t, i, target)?;
            params.0.extend(normalize::form_params(body)?.0);
            c
        }
        ([_, _, _], _) | ([_, _, _, _], _) => return not_allowed,
        _ => return Err(FhirError::UnknownShape),
    };
    if params.0.len() > MAX_PARAMS {
        return Err(FhirError::TooMany);
    }
    Ok(Classified {
        interaction,
        params,
    })
}

fn compartment_search(t: &str, i: &str, target: &str) -> Result<Interaction, FhirError> {
    let compartment = ty(t)?;
    let id = id(i)?;
    let resource_type = if target == "*" {
        None
    } else {
        Some(ty(target)?)
    };
    Ok(Interaction::SearchCompartment {
        compartment,
        id,
        resource_type,
    })
}

#[cfg(test)]
mod tests;
