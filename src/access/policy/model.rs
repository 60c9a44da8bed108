//! The policy's YAML model (raw serde types, every one denying unknown fields) and the
//! compiled form the evaluator reads.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::Deserialize;

use crate::engine::source::Spanned;

// ---------------------------------------------------------------------------------------------
// YAML.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    #[serde(default)]
    pub(super) settings: Option<Spanned<RawSettings>>,
    #[serde(default)]
    pub(super) roles: Vec<Spanned<RawRole>>,
    #[serde(default)]
    pub(super) permissions: Vec<Spanned<RawPermission>>,
    /// Role names (from earlier policy directories) to remove.
    #[serde(default)]
    pub(super) disable: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) tests: Vec<Spanned<RawTest>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSettings {
    #[serde(default)]
    pub(super) without_roles: Option<WithoutRoles>,
    #[serde(default)]
    pub(super) require_scopes: Option<bool>,
    #[serde(default)]
    pub(super) shared_types: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub(super) capabilities: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRole {
    pub(super) name: Spanned<String>,
    #[serde(default)]
    #[allow(dead_code)]
    pub(super) description: Option<String>,
    #[serde(default)]
    pub(super) grants: Vec<RawGrant>,
    #[serde(default)]
    pub(super) operations: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) break_glass_eligible: bool,
    #[serde(default, rename = "override")]
    pub(super) override_role: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGrant {
    pub(super) types: Vec<Spanned<String>>,
    pub(super) interactions: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPermission {
    pub(super) claim: Spanned<String>,
    pub(super) value: Spanned<String>,
    #[serde(default)]
    #[allow(dead_code)]
    pub(super) description: Option<String>,
    #[serde(default)]
    pub(super) grants: Vec<RawGrant>,
    #[serde(default)]
    pub(super) operations: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTest {
    pub(super) name: Spanned<String>,
    #[serde(default)]
    pub(super) subject: RawSubject,
    pub(super) request: RawRequest,
    pub(super) expect: Spanned<Expect>,
    #[serde(default)]
    pub(super) reason: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) entries: Option<Vec<usize>>,
    #[serde(default)]
    pub(super) post_check: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSubject {
    #[serde(default)]
    pub(super) scope: String,
    #[serde(default)]
    pub(super) roles: Vec<String>,
    #[serde(default)]
    pub(super) permissions: Option<serde_json::Value>,
    #[serde(default)]
    pub(super) patient: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRequest {
    pub(super) method: String,
    pub(super) url: String,
    #[serde(default)]
    pub(super) body: Option<serde_json::Value>,
    #[serde(default)]
    pub(super) if_none_exist: bool,
}

/// A test's expected outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    /// The request is allowed.
    Allow,
    /// The request is denied.
    Deny,
}

/// What a subject with no `roles` and no `permissions` gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WithoutRoles {
    /// Denied (`no_matching_role`): the default.
    #[default]
    Deny,
    /// The scopes alone decide (SMART patient and backend apps).
    ScopesOnly,
}

// ---------------------------------------------------------------------------------------------
// Compiled.

/// An interaction name of the policy vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `read`: read and vread.
    Read,
    /// `history`: instance, type and system history.
    History,
    /// `search`: type, system and compartment search (and the search half of conditional
    /// interactions).
    Search,
    /// `create`.
    Create,
    /// `update`.
    Update,
    /// `patch`.
    Patch,
    /// `delete`.
    Delete,
}

impl Kind {
    /// Parses a policy interaction name.
    pub fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "read" => Kind::Read,
            "history" => Kind::History,
            "search" => Kind::Search,
            "create" => Kind::Create,
            "update" => Kind::Update,
            "patch" => Kind::Patch,
            "delete" => Kind::Delete,
            _ => return None,
        })
    }

    /// The names accepted in `interactions:`.
    pub const NAMES: &'static str = "read, history, search, create, update, patch, delete";
}

/// A set of resource types: every type, or the listed ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Types {
    /// `*`.
    Any,
    /// Named R4 types.
    Some(BTreeSet<String>),
}

impl Types {
    /// Whether the set covers `ty` (`None`: every type, which only `*` covers).
    pub fn covers(&self, ty: Option<&str>) -> bool {
        match (self, ty) {
            (Types::Any, _) => true,
            (Types::Some(s), Some(t)) => s.contains(t),
            (Types::Some(_), None) => false,
        }
    }
}

/// One grant: interactions on types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The types.
    pub types: Types,
    /// The interactions.
    pub kinds: BTreeSet<Kind>,
}

/// Where a listed `$operation` may be invoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpAt {
    /// `$name`.
    System,
    /// `Type/$name` (`*/$name`: any type).
    Type(Option<String>),
    /// `Type/[id]/$name` (`*/[id]/$name`: any type).
    Instance(Option<String>),
}

/// A listed `$operation`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpSpec {
    /// The name without `$`.
    pub name: String,
    /// The level.
    pub at: OpAt,
}

impl OpSpec {
    /// Parses `$name`, `Type/$name` or `Type/[id]/$name` (`*` for any type).
    pub fn parse(s: &str) -> Option<OpSpec> {
        let parts: Vec<&str> = s.split('/').collect();
        let name = |p: &str| {
            let n = p.strip_prefix('$')?;
            let ok = !n.is_empty()
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            ok.then(|| n.to_string())
        };
        let ty = |t: &str| match t {
            "*" => Some(None),
            t if crate::access::fhir::is_resource_type(t) => Some(Some(t.to_string())),
            _ => None,
        };
        Some(match parts.as_slice() {
            [op] => OpSpec {
                name: name(op)?,
                at: OpAt::System,
            },
            [t, op] => OpSpec {
                name: name(op)?,
                at: OpAt::Type(ty(t)?),
            },
            [t, "[id]", op] => OpSpec {
                name: name(op)?,
                at: OpAt::Instance(ty(t)?),
            },
            _ => return None,
        })
    }
}

/// A compiled role (or `permissions` entry).
#[derive(Debug, Clone)]
pub struct Role {
    /// The role name (for a permissions entry: `claim:value`).
    pub name: String,
    /// What it grants.
    pub grants: Vec<Grant>,
    /// The `$operations` it may invoke.
    pub operations: Vec<OpSpec>,
    /// Whether a principal holding it may break the glass.
    pub break_glass_eligible: bool,
    /// Where it is defined.
    pub file: PathBuf,
    /// The line.
    pub line: usize,
}

/// The policy-wide settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Subjects without roles or permissions.
    pub without_roles: WithoutRoles,
    /// Whether the token's SMART scopes must grant the interaction too (default true).
    pub require_scopes: bool,
    /// Types outside the patient compartment (Medication, Practitioner, …) that a
    /// patient-bound token may read and search.
    pub shared_types: BTreeSet<String>,
    /// Whether `GET metadata` is always allowed (default true).
    pub capabilities: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            without_roles: WithoutRoles::Deny,
            require_scopes: true,
            shared_types: BTreeSet::new(),
            capabilities: true,
        }
    }
}

/// One inline test.
#[derive(Debug, Clone)]
pub struct PolicyTest {
    /// Its name.
    pub name: String,
    /// Where.
    pub file: PathBuf,
    /// The line.
    pub line: usize,
    /// The subject.
    pub subject: super::Subject,
    /// Method.
    pub method: String,
    /// URL relative to the FHIR base.
    pub url: String,
    /// Body bytes (a YAML string as is, anything else as JSON).
    pub body: Option<Vec<u8>>,
    /// `If-None-Exist` sent.
    pub if_none_exist: bool,
    /// Expected.
    pub expect: Expect,
    /// Expected reason.
    pub reason: Option<String>,
    /// Expected denied entry indexes.
    pub entries: Option<Vec<usize>>,
    /// Expected post-check of an allow.
    pub post_check: Option<super::PostCheck>,
}
