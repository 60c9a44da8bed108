//! Access control at the gateway: who sends a request and whether they may.
//!
//! - [`identity`]: validated bearer JWTs (token parsing, JWKS, verification, claims, the
//!   verified-token cache);
//! - [`scope`]: SMART on FHIR v1 and v2 scopes, parsed strictly, and the question "does this
//!   scope set permit interaction X on type T in context patient|user|system?";
//! - [`fhir`]: method + URL (+ a batch/transaction Bundle's entries) → a typed FHIR
//!   interaction, after one normalisation of the URL;
//! - [`compartment`]: patient binding against record hopping: the FHIR R4 patient compartment
//!   as data, and the checks of a request (URL and body) and of a returned resource;
//! - [`policy`]: the YAML policy (roles, the `permissions` claim, scopes, `$operations`,
//!   break-glass eligibility), default deny, with inline tests run by `phi-gateway policy test`;
//! - break-glass and sessions: to be built on top of these (docs/access.md).
//!
//! Below `gateway` and `runtime`, above `config`: it may use `engine`, `telemetry`, `verdict`
//! and `config`, never `audit`, `gateway` or `runtime` (the hooks call into it, not the other
//! way round). Nothing here knows pingora's types: the gateway hands it header values and
//! gets typed answers back. `scope`, `fhir`, `compartment` and `policy` are pure: no I/O per
//! request. The gateway (`gateway/policy.rs`) calls [`policy::Policy::evaluate`] with a
//! [`policy::Subject`] (from verified claims) and an [`policy::AccessRequest`] (from the
//! request head and, for writes and Bundles, the body), and gets a [`policy::Decision`].

pub mod compartment;
pub mod fhir;
pub mod identity;
pub mod policy;
pub mod scope;
