//! Decisions: roles and `permissions` × SMART scopes × patient binding, default deny.

use serde_json::Value;

use super::model::{Kind, OpAt, Role, WithoutRoles};
use super::{AccessRequest, Decision, Policy, PostCheck, Reason, Subject};
use crate::access::compartment::{self, Escape, Inside};
use crate::access::fhir::bundle::parse_bundle;
use crate::access::fhir::{classify, Classified, FhirError, Interaction, OpLevel, Param};
use crate::access::scope::{Context, Letter, Need, ScopeSet};

/// What the role side needs: interaction kinds on a type (`None`: every type), or a listed
/// operation.
enum RoleNeed<'a> {
    Kinds(Vec<(Kind, Option<&'a str>)>),
    Operation(&'a str, &'a OpLevel),
    Nothing,
}

fn fhir_reason(e: &FhirError) -> Reason {
    match e {
        FhirError::UnknownType => Reason::UnknownResourceType,
        FhirError::BadBundle(_) => Reason::MalformedBundle,
        _ => Reason::MalformedRequest,
    }
}

/// The types `_include` / `_revinclude` reach (`None`: any type).
fn include_targets(c: &Classified) -> Vec<Option<&str>> {
    let mut out = Vec::new();
    for p in c.params.iter() {
        let base = p.base_name();
        if base != "_include" && base != "_revinclude" {
            continue;
        }
        for v in &p.values {
            let parts: Vec<&str> = v.split(':').collect();
            let target = match (base, parts.as_slice()) {
                ("_include", [_, _, t]) if *t != "*" => Some(*t),
                ("_revinclude", [src, _, ..]) if *src != "*" => Some(*src),
                _ => None,
            };
            out.push(target);
        }
    }
    out
}

fn role_needs(c: &Classified) -> RoleNeed<'_> {
    use Interaction as I;
    use Kind as K;
    let t = c.interaction.resource_type();
    let mut kinds = match &c.interaction {
        I::Read { .. } | I::Vread { .. } => vec![(K::Read, t)],
        I::HistoryInstance { .. } | I::HistoryType { .. } => vec![(K::History, t)],
        I::HistorySystem => vec![(K::History, None)],
        I::SearchType { .. } | I::SearchCompartment { .. } => vec![(K::Search, t)],
        I::SearchSystem => vec![(K::Search, None)],
        I::Create { conditional, .. } => {
            let mut v = vec![(K::Create, t)];
            if *conditional {
                v.push((K::Search, t));
            }
            v
        }
        I::Update { .. } => vec![(K::Update, t)],
        I::ConditionalUpdate { .. } => vec![(K::Update, t), (K::Search, t)],
        I::Patch { .. } => vec![(K::Patch, t)],
        I::ConditionalPatch { .. } => vec![(K::Patch, t), (K::Search, t)],
        I::Delete { .. } => vec![(K::Delete, t)],
        I::ConditionalDelete { .. } => vec![(K::Delete, t), (K::Search, t)],
        I::Operation { name, level } => return RoleNeed::Operation(name, level),
        I::Capabilities | I::Batch | I::Transaction => return RoleNeed::Nothing,
    };
    // `Patient/X/*` searches every type.
    if let I::SearchCompartment {
        resource_type: None,
        ..
    } = &c.interaction
    {
        kinds = vec![(K::Search, None)];
    }
    for target in include_targets(c) {
        kinds.push((K::Search, target));
    }
    RoleNeed::Kinds(kinds)
}

fn scope_needs(c: &Classified) -> Vec<Need<'_>> {
    use Interaction as I;
    use Letter as L;
    let t = c.interaction.resource_type();
    let search = |ty| Need {
        letter: L::Search,
        resource_type: ty,
        params: Some(&c.params),
    };
    let plain = |letter, ty| Need {
        letter,
        resource_type: ty,
        params: None,
    };
    let mut needs = match &c.interaction {
        I::Read { .. } | I::Vread { .. } | I::HistoryInstance { .. } => vec![plain(L::Read, t)],
        I::HistoryType { .. } | I::SearchType { .. } | I::SearchCompartment { .. } => {
            vec![search(t)]
        }
        I::HistorySystem | I::SearchSystem => vec![search(None)],
        I::Create { conditional, .. } => {
            let mut v = vec![plain(L::Create, t)];
            if *conditional {
                v.push(search(t));
            }
            v
        }
        I::Update { .. } | I::Patch { .. } => vec![plain(L::Update, t)],
        I::ConditionalUpdate { .. } | I::ConditionalPatch { .. } => {
            vec![plain(L::Update, t), search(t)]
        }
        I::Delete { .. } => vec![plain(L::Delete, t)],
        I::ConditionalDelete { .. } => vec![plain(L::Delete, t), search(t)],
        I::Operation { level, .. } => match level {
            OpLevel::Instance(ty, _) => vec![plain(L::Read, Some(ty))],
            OpLevel::Type(ty) => vec![plain(L::Search, Some(ty))],
            OpLevel::System => vec![plain(L::Search, None)],
        },
        I::Capabilities | I::Batch | I::Transaction => Vec::new(),
    };
    for target in include_targets(c) {
        needs.push(plain(L::Search, target));
    }
    needs
}

fn op_listed(role: &Role, name: &str, level: &OpLevel) -> bool {
    role.operations.iter().any(|o| {
        o.name == name
            && match (&o.at, level) {
                (OpAt::System, OpLevel::System) => true,
                (OpAt::Type(t), OpLevel::Type(ty))
                | (OpAt::Instance(t), OpLevel::Instance(ty, _)) => {
                    t.as_deref().is_none_or(|t| t == ty)
                }
                _ => false,
            }
    })
}

fn role_grants(role: &Role, need: &RoleNeed<'_>) -> bool {
    match need {
        RoleNeed::Nothing => true,
        RoleNeed::Operation(name, level) => op_listed(role, name, level),
        RoleNeed::Kinds(kinds) => kinds.iter().all(|(k, t)| {
            role.grants
                .iter()
                .any(|g| g.kinds.contains(k) && g.types.covers(*t))
        }),
    }
}

/// Whether `permissions` (`{"ehr_read": ["patient.*"]}`) holds `claim: value`.
fn holds_permission(permissions: &Value, claim: &str, value: &str) -> bool {
    match permissions.get(claim) {
        Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(value)),
        Some(Value::String(s)) => s == value,
        _ => false,
    }
}

fn has_any_permission(permissions: &Value) -> bool {
    permissions.as_object().is_some_and(|o| !o.is_empty())
}

impl Policy {
    /// The subject's roles and `permissions` entries known to the policy.
    fn subject_roles<'p>(&'p self, subject: &Subject) -> Vec<&'p Role> {
        let mut out: Vec<&Role> = self
            .roles
            .iter()
            .filter(|r| subject.roles.contains(&r.name))
            .collect();
        out.extend(
            self.permissions
                .iter()
                .filter(|(c, v, _)| holds_permission(&subject.permissions, c, v))
                .map(|(_, _, r)| r),
        );
        out
    }

    /// Decides on one request. Never panics on any input.
    pub fn evaluate(&self, subject: &Subject, request: &AccessRequest<'_>) -> Decision {
        let eligible = self
            .roles
            .iter()
            .any(|r| r.break_glass_eligible && subject.roles.contains(&r.name));
        let mut d = self.decide(subject, request);
        d.break_glass_eligible = eligible;
        d
    }

    fn decide(&self, subject: &Subject, request: &AccessRequest<'_>) -> Decision {
        let Ok(scopes) = ScopeSet::parse(&subject.scope) else {
            return Decision::deny(Reason::InvalidScope);
        };
        let c = match classify(&crate::access::fhir::RequestParts {
            method: request.method,
            target: request.target,
            base: request.base,
            body: request.body,
            if_none_exist: request.if_none_exist,
        }) {
            Ok(c) => c,
            Err(e) => return Decision::deny(fhir_reason(&e)),
        };
        match c.interaction {
            Interaction::Batch | Interaction::Transaction => {
                self.decide_bundle(subject, &scopes, request.body.unwrap_or_default())
            }
            _ => {
                let body = match c.interaction {
                    Interaction::Create { .. } | Interaction::Update { .. } => request
                        .body
                        .and_then(|b| serde_json::from_slice::<Value>(b).ok()),
                    _ => None,
                };
                self.decide_one(subject, &scopes, &c, body.as_ref())
            }
        }
    }

    fn decide_bundle(&self, subject: &Subject, scopes: &ScopeSet, body: &[u8]) -> Decision {
        let bundle = match parse_bundle(body) {
            Ok(b) => b,
            Err(e) => return Decision::deny(fhir_reason(&e)),
        };
        let mut denied = Vec::new();
        let mut reasons = Vec::new();
        let mut post = PostCheck::None;
        let mut bound = None;
        for e in &bundle.entries {
            let d = match &e.request {
                Ok(c) => self.decide_one(subject, scopes, c, e.resource.as_ref()),
                Err(err) => Decision::deny(fhir_reason(err)),
            };
            if d.allow {
                if d.post_check != PostCheck::None {
                    post = match (post, d.post_check) {
                        (PostCheck::Target, _) | (_, PostCheck::Target) => PostCheck::Target,
                        _ => PostCheck::Response,
                    };
                }
                bound = bound.or(d.bound_patient);
            } else {
                denied.push(e.index);
                reasons.push(d.reason);
            }
        }
        if denied.is_empty() {
            Decision::allow(post, bound)
        } else {
            let mut d = Decision::deny(Reason::BundleEntryDenied);
            d.denied_entries = denied;
            d.entry_reasons = reasons;
            d
        }
    }

    fn decide_one(
        &self,
        subject: &Subject,
        scopes: &ScopeSet,
        c: &Classified,
        body: Option<&Value>,
    ) -> Decision {
        if c.interaction == Interaction::Capabilities {
            return if self.settings.capabilities {
                Decision::allow(PostCheck::None, None)
            } else {
                Decision::deny(Reason::NoMatchingRole)
            };
        }
        // Roles and permissions.
        let held = self.subject_roles(subject);
        let need = role_needs(c);
        let no_claims = subject.roles.is_empty() && !has_any_permission(&subject.permissions);
        let scopes_only = no_claims && self.settings.without_roles == WithoutRoles::ScopesOnly;
        if !scopes_only && !held.iter().any(|r| role_grants(r, &need)) {
            return Decision::deny(match need {
                RoleNeed::Operation(..) => Reason::OperationNotAllowed,
                _ => Reason::NoMatchingRole,
            });
        }
        if scopes_only {
            if let RoleNeed::Operation(..) = need {
                // `$operations` are denied unless a role lists them.
                return Decision::deny(Reason::OperationNotAllowed);
            }
        }
        // Scopes: one context must grant every need.
        let needs = scope_needs(c);
        let context = scopes.granting_context(&needs);
        let bound = match context {
            Some(Context::System | Context::User) => false,
            Some(Context::Patient) => true,
            None if !self.settings.require_scopes => subject.patient.is_some(),
            None => return Decision::deny(Reason::InsufficientScope),
        };
        if !bound {
            return Decision::allow(PostCheck::None, None);
        }
        let Some(patient) = subject.patient.as_deref().filter(|p| !p.is_empty()) else {
            return Decision::deny(Reason::NoPatientContext);
        };
        match compartment::check_request(c, patient, body) {
            Ok(Inside::Yes) => Decision::allow(PostCheck::None, Some(patient.to_string())),
            Ok(Inside::IfResponseIs) => {
                Decision::allow(PostCheck::Response, Some(patient.to_string()))
            }
            Ok(Inside::IfTargetIs) => Decision::allow(PostCheck::Target, Some(patient.to_string())),
            Err(Escape::TypeOutside) if self.shared_read(c) => {
                Decision::allow(PostCheck::None, Some(patient.to_string()))
            }
            Err(e) => Decision::deny(Reason::Compartment(e)),
        }
    }

    /// A read or search of a `shared_types` type (Medication, Practitioner, …) by a
    /// patient-bound token: allowed without binding, it holds no patient's data.
    fn shared_read(&self, c: &Classified) -> bool {
        let reading = matches!(
            c.interaction,
            Interaction::Read { .. } | Interaction::Vread { .. } | Interaction::SearchType { .. }
        );
        let no_escape = !c.params.iter().any(|p: &Param| {
            let n = p.base_name();
            n.starts_with("_has")
                || p.is_chained()
                || matches!(n, "_include" | "_revinclude" | "_query" | "_filter")
        });
        reading
            && no_escape
            && c.interaction
                .resource_type()
                .is_some_and(|t| self.settings.shared_types.contains(t))
    }
}
