//! SMART on FHIR scopes (App Launch 2.2): v1 (`patient/Observation.read`, `user/*.*`,
//! `.write`) and v2 (`patient/Observation.rs`, `user/*.cruds`, `?category=…` qualifiers),
//! parsed strictly, and the one question a decision asks of them: [`ScopeSet::permits`].
//!
//! The grammar accepted (docs/access.md "Scopes"):
//!
//! ```text
//! scope     = context "/" type "." perms [ "?" qualifier *( "&" qualifier ) ]
//! context   = "patient" | "user" | "system"
//! type      = an R4 resource type (case-sensitive) | "*"
//! perms     = v1: "read" | "write" | "*"      v2: a non-empty in-order subset of "cruds"
//! qualifier = param "=" value                 (v2 only; restricts, never widens)
//! ```
//!
//! `openid`, `fhirUser`, `profile`, `launch`, `launch/patient`, `launch/encounter`,
//! `offline_access` and `online_access` are recognised and grant no resource access. Any other
//! scope string without a `/` (an IdP's own scopes) is kept as [`Scope::Other`] and grants
//! nothing. A string that starts with `patient/`, `user/` or `system/` must parse completely:
//! `patient/Observation.sr` (out of order), `.rw`, `.read-only`, `patient/observation.rs`
//! (unknown type) are errors, never "the best guess".

use std::fmt;

use crate::access::fhir::is_resource_type;

/// A launch context: whose data the scope is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Context {
    /// `patient/`: only the data of the patient in context (patient binding applies).
    Patient,
    /// `user/`: whatever the user may see.
    User,
    /// `system/`: a backend service, no user.
    System,
}

impl Context {
    /// The scope prefix without its slash.
    pub fn as_str(self) -> &'static str {
        match self {
            Context::Patient => "patient",
            Context::User => "user",
            Context::System => "system",
        }
    }
}

/// One SMART v2 permission letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Letter {
    /// `c`: type-level create.
    Create,
    /// `r`: read, vread, instance history.
    Read,
    /// `u`: update (and update-as-create) and patch.
    Update,
    /// `d`: delete.
    Delete,
    /// `s`: type-level search and history, system-level search and history.
    Search,
}

impl Letter {
    /// The v2 letter.
    pub fn as_char(self) -> char {
        match self {
            Letter::Create => 'c',
            Letter::Read => 'r',
            Letter::Update => 'u',
            Letter::Delete => 'd',
            Letter::Search => 's',
        }
    }

    fn bit(self) -> u8 {
        match self {
            Letter::Create => 1,
            Letter::Read => 2,
            Letter::Update => 4,
            Letter::Delete => 8,
            Letter::Search => 16,
        }
    }

    const ALL: [Letter; 5] = [
        Letter::Create,
        Letter::Read,
        Letter::Update,
        Letter::Delete,
        Letter::Search,
    ];
}

/// A set of v2 letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Perms(u8);

impl Perms {
    /// All of `cruds`.
    pub const ALL: Perms = Perms(31);

    /// Whether `letter` is in the set.
    pub fn has(self, letter: Letter) -> bool {
        self.0 & letter.bit() != 0
    }

    /// The set as v2 letters in spec order (`cruds`).
    pub fn letters(self) -> String {
        Letter::ALL
            .iter()
            .filter(|l| self.has(**l))
            .map(|l| l.as_char())
            .collect()
    }
}

/// Which SMART version a resource scope was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// `.read`, `.write`, `.*`.
    V1,
    /// `.cruds` letters.
    V2,
}

/// A resource scope: context, type (or any), letters, qualifiers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceScope {
    /// `patient`, `user` or `system`.
    pub context: Context,
    /// The resource type, `None` for `*`.
    pub resource_type: Option<String>,
    /// The permissions granted (v1 mapped to v2: read ⇒ rs, write ⇒ cud, * ⇒ cruds).
    pub perms: Perms,
    /// Search-parameter qualifiers (`?category=…`): each must hold for the scope to apply.
    pub qualifiers: Vec<(String, String)>,
    /// How it was written.
    pub version: Version,
}

/// One parsed scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// A SMART resource scope.
    Resource(ResourceScope),
    /// `openid`.
    OpenId,
    /// `fhirUser`.
    FhirUser,
    /// `profile` (SMART v1 identity scope).
    Profile,
    /// `launch`, `launch/patient`, `launch/encounter` (the launch-context requests).
    Launch(String),
    /// `offline_access`.
    OfflineAccess,
    /// `online_access`.
    OnlineAccess,
    /// Another scope without a `/`: kept, grants nothing.
    Other(String),
}

/// Why a scope string was refused. Messages carry the scope's shape, never claim values other
/// than the scope text itself (scopes are not PHI).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScopeError {
    /// No `.` between type and permissions.
    #[error("scope `{0}`: no `.permissions` after the resource type")]
    NoPermissions(String),
    /// The context is not patient, user or system (a `*` context included).
    #[error("scope `{0}`: the context must be `patient`, `user` or `system`")]
    BadContext(String),
    /// The type is neither `*` nor an R4 resource type (they are case-sensitive).
    #[error("scope `{0}`: unknown resource type (FHIR types are case-sensitive)")]
    UnknownType(String),
    /// The permissions are neither v1 (`read`, `write`, `*`) nor an in-order subset of `cruds`.
    #[error(
        "scope `{0}`: permissions must be `read`, `write`, `*` or an in-order subset of `cruds`"
    )]
    BadPermissions(String),
    /// A `?` qualifier on a v1 scope, or a qualifier that is not `param=value`.
    #[error("scope `{0}`: qualifiers must be `?param=value(&param=value)*` on a v2 scope")]
    BadQualifier(String),
    /// A `launch/…` scope that is not `launch/<lowercase type>`.
    #[error("scope `{0}`: unknown launch context")]
    BadLaunch(String),
    /// Too many scopes or too long a scope string.
    #[error("scope string too long ({0} bytes)")]
    TooLong(usize),
}

/// The longest scope string accepted (a token's `scope` claim).
pub const MAX_SCOPE_BYTES: usize = 16 * 1024;

impl Scope {
    /// Parses one scope.
    pub fn parse(text: &str) -> Result<Scope, ScopeError> {
        let err = || text.to_string();
        match text {
            "openid" => return Ok(Scope::OpenId),
            "fhirUser" => return Ok(Scope::FhirUser),
            "profile" => return Ok(Scope::Profile),
            "launch" => return Ok(Scope::Launch(String::new())),
            "offline_access" => return Ok(Scope::OfflineAccess),
            "online_access" => return Ok(Scope::OnlineAccess),
            _ => {}
        }
        let Some((context, rest)) = text.split_once('/') else {
            return Ok(Scope::Other(text.to_string()));
        };
        if context == "launch" {
            let ok = !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_lowercase());
            return if ok {
                Ok(Scope::Launch(rest.to_string()))
            } else {
                Err(ScopeError::BadLaunch(err()))
            };
        }
        let context = match context {
            "patient" => Context::Patient,
            "user" => Context::User,
            "system" => Context::System,
            _ => return Err(ScopeError::BadContext(err())),
        };
        let (body, query) = match rest.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (rest, None),
        };
        let Some((ty, perms)) = body.split_once('.') else {
            return Err(ScopeError::NoPermissions(err()));
        };
        let resource_type = match ty {
            "*" => None,
            t if is_resource_type(t) => Some(t.to_string()),
            _ => return Err(ScopeError::UnknownType(err())),
        };
        let (perms, version) = match perms {
            "read" => (
                Perms(Letter::Read.bit() | Letter::Search.bit()),
                Version::V1,
            ),
            "write" => (
                Perms(Letter::Create.bit() | Letter::Update.bit() | Letter::Delete.bit()),
                Version::V1,
            ),
            "*" => (Perms::ALL, Version::V1),
            p => (
                v2_perms(p).ok_or_else(|| ScopeError::BadPermissions(err()))?,
                Version::V2,
            ),
        };
        let mut qualifiers = Vec::new();
        if let Some(q) = query {
            if version == Version::V1 || q.is_empty() {
                return Err(ScopeError::BadQualifier(err()));
            }
            for pair in q.split('&') {
                let Some((k, v)) = pair.split_once('=') else {
                    return Err(ScopeError::BadQualifier(err()));
                };
                let key_ok = !k.is_empty()
                    && k.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if !key_ok || v.is_empty() || k.starts_with('_') {
                    return Err(ScopeError::BadQualifier(err()));
                }
                let v = percent_encoding::percent_decode_str(v)
                    .decode_utf8()
                    .map_err(|_| ScopeError::BadQualifier(err()))?;
                qualifiers.push((k.to_string(), v.into_owned()));
            }
        }
        Ok(Scope::Resource(ResourceScope {
            context,
            resource_type,
            perms,
            qualifiers,
            version,
        }))
    }
}

/// `cruds` letters, in order, each at most once, at least one.
fn v2_perms(p: &str) -> Option<Perms> {
    if p.is_empty() {
        return None;
    }
    let order = "cruds";
    let mut last: Option<usize> = None;
    let mut bits = 0u8;
    for ch in p.chars() {
        let at = order.find(ch)?;
        if last.is_some_and(|l| at <= l) {
            return None;
        }
        last = Some(at);
        bits |= Letter::ALL[at].bit();
    }
    Some(Perms(bits))
}

/// A token's scopes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeSet {
    scopes: Vec<Scope>,
}

/// One need of a request: a letter on a type (`None`: on every type, which only a `*` scope
/// grants), with the request's search parameters for qualified scopes.
#[derive(Debug, Clone, Copy)]
pub struct Need<'a> {
    /// The letter.
    pub letter: Letter,
    /// The type, `None` for "every type" (system-level search, `Patient/X/*`).
    pub resource_type: Option<&'a str>,
    /// The request's search parameters (name → every value of every occurrence), for
    /// qualified scopes. `None` when the interaction is not a search.
    pub params: Option<&'a crate::access::fhir::Params>,
}

impl ScopeSet {
    /// Parses a space-separated `scope` claim (RFC 6749 §3.3). Strict: one malformed SMART
    /// scope refuses the whole set.
    pub fn parse(claim: &str) -> Result<ScopeSet, ScopeError> {
        if claim.len() > MAX_SCOPE_BYTES {
            return Err(ScopeError::TooLong(claim.len()));
        }
        let scopes = claim
            .split([' ', '\t', '\n', '\r'])
            .filter(|s| !s.is_empty())
            .map(Scope::parse)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ScopeSet { scopes })
    }

    /// Parses a list (a `scp` array claim).
    pub fn from_list<S: AsRef<str>>(list: &[S]) -> Result<ScopeSet, ScopeError> {
        let total: usize = list.iter().map(|s| s.as_ref().len() + 1).sum();
        if total > MAX_SCOPE_BYTES {
            return Err(ScopeError::TooLong(total));
        }
        let mut scopes = Vec::with_capacity(list.len());
        for s in list {
            scopes.extend(ScopeSet::parse(s.as_ref())?.scopes);
        }
        Ok(ScopeSet { scopes })
    }

    /// The scopes, in claim order.
    pub fn scopes(&self) -> &[Scope] {
        &self.scopes
    }

    /// The resource scopes.
    pub fn resource_scopes(&self) -> impl Iterator<Item = &ResourceScope> {
        self.scopes.iter().filter_map(|s| match s {
            Scope::Resource(r) => Some(r),
            _ => None,
        })
    }

    /// Whether both v1 and v2 resource scopes occur (allowed: each grants what it grants on its
    /// own; the policy lint and the audit can point it out).
    pub fn mixes_versions(&self) -> bool {
        let mut v = self.resource_scopes().map(|r| r.version);
        match v.next() {
            Some(first) => v.any(|x| x != first),
            None => false,
        }
    }

    /// Whether any scope grants `need` in exactly `context`. A `*` type grants any type, but a
    /// scope never grants outside its own context: `patient/*.cruds` answers nothing about
    /// `user` or `system`. A qualified scope grants only searches whose parameters carry each
    /// qualifier with exactly that value (every value of every occurrence equal), so a
    /// qualifier can only narrow the scope.
    pub fn permits(&self, context: Context, need: &Need<'_>) -> bool {
        self.resource_scopes()
            .any(|s| s.context == context && scope_grants(s, need))
    }

    /// The first context (in the order `system`, `user`, `patient`) in which every need is
    /// granted by some scope of that context; `None` when no single context grants them all.
    /// Needs are not combined across contexts: a `user/` letter and a `patient/` letter do not
    /// add up to a grant neither gives.
    pub fn granting_context(&self, needs: &[Need<'_>]) -> Option<Context> {
        [Context::System, Context::User, Context::Patient]
            .into_iter()
            .find(|c| needs.iter().all(|n| self.permits(*c, n)))
    }
}

fn scope_grants(s: &ResourceScope, need: &Need<'_>) -> bool {
    if !s.perms.has(need.letter) {
        return false;
    }
    let type_ok = match (&s.resource_type, need.resource_type) {
        (None, _) => true,
        (Some(t), Some(n)) => t == n,
        (Some(_), None) => false,
    };
    if !type_ok {
        return false;
    }
    if s.qualifiers.is_empty() {
        return true;
    }
    // A qualified scope applies to searches only, and only when the request narrows itself
    // to exactly the qualifier's value.
    let Some(params) = need.params else {
        return false;
    };
    if need.letter != Letter::Search {
        return false;
    }
    s.qualifiers.iter().all(|(k, v)| {
        let values: Vec<&str> = params.values_of(k).collect();
        !values.is_empty() && values.iter().all(|x| x == v)
    })
}

impl fmt::Display for ResourceScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}.{}",
            self.context.as_str(),
            self.resource_type.as_deref().unwrap_or("*"),
            self.perms.letters()
        )
    }
}

#[cfg(test)]
mod tests;
