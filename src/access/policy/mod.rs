//! The access policy: YAML files that map claims (`roles`, the `permissions` object) to FHIR
//! resource types and interactions, combined with the token's SMART scopes and the patient
//! binding. Default deny. See docs/access.md "Policy" for the file format.
//!
//! The interface the gateway uses:
//!
//! ```text
//! let policy = Policy::load_dirs(&[dir])?;              // at start-up and on reload
//! let subject = Subject { scope, roles, permissions, patient };   // from verified claims
//! let request = AccessRequest { method, target, base, body, if_none_exist };
//! let decision = policy.evaluate(&subject, &request);
//! // decision.allow, decision.reason.as_str() (audit), decision.reason.answer() (client),
//! // decision.denied_entries (Bundles), decision.post_check (hold the response back / check
//! // the target), decision.break_glass_eligible (for the break-glass override).
//! ```
//!
//! A decision is, in order: the scopes parse (else `invalid_scope`); the request classifies
//! (else `malformed_request` / `unknown_resource_type`); `metadata` is allowed; a Bundle is
//! decided entry by entry; a role or `permissions` entry of the subject grants the interaction
//! on the type (else `no_matching_role`, or `operation_not_allowed` for an unlisted
//! `$operation`); the scopes grant it in one context (else `insufficient_scope`); and when only
//! `patient/` scopes grant it, the request must stay in the patient's compartment
//! ([`crate::access::compartment`]).
//!
//! One file per job: `model` (YAML and compiled types), `load` (directories, layering,
//! validation), `eval` (decisions), `response` (the compartment check of a held-back
//! response, [`Policy::check_response`]), `selftest` (inline tests and lint).

mod eval;
mod load;
mod model;
mod response;
mod selftest;
mod target;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use load::PolicyError;
pub use model::{
    Expect, Grant, Kind, OpAt, OpSpec, PolicyTest, Role, Settings, Types, WithoutRoles,
};
pub use response::ResponseEscape;
pub use selftest::{PolicyLint, PolicyTestFailure};
pub use target::{TargetEscape, WriteTarget};

use crate::access::compartment::Escape;

/// Who sends the request: filled by the identity side from verified claims.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subject {
    /// The `scope` claim (space-separated; a `scp` array joined with spaces).
    pub scope: String,
    /// The `roles` claim.
    pub roles: Vec<String>,
    /// The `permissions` claim (an object of arrays of strings), or `Null`.
    pub permissions: serde_json::Value,
    /// The patient in context (`patient` claim or introspection), if any.
    pub patient: Option<String>,
}

impl Subject {
    /// Builds a subject from a verified claims object (JWT payload or introspection answer):
    /// `scope` (a space-separated string) or else `scp` (a string or an array of strings),
    /// `roles` (an array of strings, or one string), `permissions` (kept as is) and `patient`
    /// (a string). Claims of any other type are ignored, which only ever takes access away.
    pub fn from_claims(claims: &serde_json::Value) -> Subject {
        match claims.as_object() {
            Some(map) => Subject::from_claim_map(map),
            None => Subject::default(),
        }
    }

    /// [`Subject::from_claims`] over the claims object itself (a verified token keeps its
    /// claims as a map; no copy of the whole payload per request).
    pub fn from_claim_map(claims: &serde_json::Map<String, serde_json::Value>) -> Subject {
        use serde_json::Value;
        let strings = |v: Option<&Value>| -> Vec<String> {
            match v {
                Some(Value::String(s)) => vec![s.clone()],
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect(),
                _ => Vec::new(),
            }
        };
        let scope = match claims.get("scope") {
            Some(Value::String(s)) => s.clone(),
            _ => strings(claims.get("scp")).join(" "),
        };
        Subject {
            scope,
            roles: strings(claims.get("roles")),
            permissions: claims.get("permissions").cloned().unwrap_or(Value::Null),
            patient: claims
                .get("patient")
                .and_then(Value::as_str)
                .filter(|p| !p.is_empty())
                .map(str::to_string),
        }
    }
}

/// The request to decide on.
#[derive(Debug, Clone, Copy)]
pub struct AccessRequest<'a> {
    /// The method.
    pub method: &'a str,
    /// Path and query as received.
    pub target: &'a str,
    /// The route's FHIR base path (`/fhir`).
    pub base: &'a str,
    /// The body, for `_search` forms, creates, updates and Bundles (`None` if not read yet:
    /// then those are decided without it, which for writes under patient binding is a deny).
    pub body: Option<&'a [u8]>,
    /// Whether `If-None-Exist` was sent.
    pub if_none_exist: bool,
}

/// What the gateway must still check after an allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PostCheck {
    /// Nothing: the URL (and body) decided.
    #[default]
    None,
    /// Hold the response back and check every returned resource is in the patient's
    /// compartment (`compartment::resource_in_compartment` / `bundle_outside_entries`).
    Response,
    /// The write replaces or deletes a resource by id: its current version must be in the
    /// patient's compartment (read it first), else refuse.
    Target,
}

impl PostCheck {
    /// `none`, `response` or `target`.
    pub fn as_str(self) -> &'static str {
        match self {
            PostCheck::None => "none",
            PostCheck::Response => "response",
            PostCheck::Target => "target",
        }
    }
}

/// Why a decision came out as it did. [`Reason::as_str`] is stable snake_case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// Allowed.
    Allowed,
    /// The scope claim does not parse (strict SMART grammar).
    InvalidScope,
    /// The URL cannot be classified (normalisation refused it, unknown shape, bad id, method).
    MalformedRequest,
    /// An unknown (or wrongly cased) resource type.
    UnknownResourceType,
    /// `POST [base]` whose body is not a readable batch/transaction Bundle.
    MalformedBundle,
    /// One or more Bundle entries were denied (`denied_entries` lists them).
    BundleEntryDenied,
    /// No role or `permissions` entry of the subject grants the interaction on the type.
    NoMatchingRole,
    /// An `$operation` no role of the subject lists.
    OperationNotAllowed,
    /// The scopes do not grant the interaction (in any single context).
    InsufficientScope,
    /// Only `patient/` scopes grant it and the token has no patient context.
    NoPatientContext,
    /// Patient binding: the request leaves the patient's compartment.
    Compartment(Escape),
}

impl Reason {
    /// The stable reason string (audit, logs, `policy test`).
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Allowed => "allowed",
            Reason::InvalidScope => "invalid_scope",
            Reason::MalformedRequest => "malformed_request",
            Reason::UnknownResourceType => "unknown_resource_type",
            Reason::MalformedBundle => "malformed_bundle",
            Reason::BundleEntryDenied => "bundle_entry_denied",
            Reason::NoMatchingRole => "no_matching_role",
            Reason::OperationNotAllowed => "operation_not_allowed",
            Reason::InsufficientScope => "insufficient_scope",
            Reason::NoPatientContext => "no_patient_context",
            Reason::Compartment(e) => e.as_str(),
        }
    }

    /// Every reason string, for validation of `reason:` in tests and for the docs.
    pub fn all() -> Vec<&'static str> {
        use Escape as E;
        let mut v: Vec<&'static str> = [
            Reason::Allowed,
            Reason::InvalidScope,
            Reason::MalformedRequest,
            Reason::UnknownResourceType,
            Reason::MalformedBundle,
            Reason::BundleEntryDenied,
            Reason::NoMatchingRole,
            Reason::OperationNotAllowed,
            Reason::InsufficientScope,
            Reason::NoPatientContext,
        ]
        .iter()
        .map(|r| r.as_str())
        .collect();
        for e in [
            E::OtherPatient,
            E::ParamMissing,
            E::ValueMismatch,
            E::EscapeParam,
            E::SystemLevel,
            E::TypeOutside,
            E::ForeignCompartment,
            E::BodyOutside,
            E::Unjudgeable,
            E::Operation,
        ] {
            v.push(e.as_str());
        }
        v
    }

    /// The HTTP status a denial answers with: 400 for a request that is not a FHIR
    /// interaction, 403 for every access denial.
    pub fn status(self) -> u16 {
        match self {
            Reason::Allowed => 200,
            Reason::MalformedRequest | Reason::UnknownResourceType | Reason::MalformedBundle => 400,
            _ => 403,
        }
    }

    /// The reason the client is told: `insufficient_scope` for every 403 (RFC 6750), the
    /// gateway's `bad_request` for 400; the fine reason goes to the audit record.
    pub fn answer(self) -> &'static str {
        match self.status() {
            200 => "allowed",
            400 => "bad_request",
            _ => "insufficient_scope",
        }
    }
}

/// A decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may go on.
    pub allow: bool,
    /// Why.
    pub reason: Reason,
    /// For a Bundle: the indexes of the denied entries.
    pub denied_entries: Vec<usize>,
    /// For a Bundle: each denied entry's reason, in the order of `denied_entries`.
    pub entry_reasons: Vec<Reason>,
    /// What must still be checked after an allow.
    pub post_check: PostCheck,
    /// The patient the request is bound to (patient-context scopes), if any.
    pub bound_patient: Option<String>,
    /// Whether any of the subject's roles is `break_glass_eligible`.
    pub break_glass_eligible: bool,
}

impl Decision {
    pub(crate) fn deny(reason: Reason) -> Decision {
        Decision {
            allow: false,
            reason,
            denied_entries: Vec::new(),
            entry_reasons: Vec::new(),
            post_check: PostCheck::None,
            bound_patient: None,
            break_glass_eligible: false,
        }
    }

    pub(crate) fn allow(post_check: PostCheck, bound_patient: Option<String>) -> Decision {
        Decision {
            allow: true,
            reason: Reason::Allowed,
            denied_entries: Vec::new(),
            entry_reasons: Vec::new(),
            post_check,
            bound_patient,
            break_glass_eligible: false,
        }
    }
}

/// A loaded policy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub(crate) settings: Settings,
    pub(crate) roles: Vec<Role>,
    /// `permissions` entries: (claim key, value, compiled grants).
    pub(crate) permissions: Vec<(String, String, Role)>,
    pub(crate) tests: Vec<PolicyTest>,
    pub(crate) digest: String,
    pub(crate) sources: Vec<PathBuf>,
}

impl Policy {
    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The roles, in load order.
    pub fn roles(&self) -> &[Role] {
        &self.roles
    }

    /// The number of `permissions` entries.
    pub fn permission_count(&self) -> usize {
        self.permissions.len()
    }

    /// The number of inline tests.
    pub fn test_count(&self) -> usize {
        self.tests.len()
    }

    /// SHA-256 over every source file (name and text), for the audit record and reload.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The files it was loaded from.
    pub fn sources(&self) -> &[PathBuf] {
        &self.sources
    }
}
