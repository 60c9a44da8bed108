//! Access control: who sends a request and whether they may.
//!
//! - identity: verified bearer tokens (JWT, introspection) → the claims a decision needs
//!   (built separately; see docs/access.md "Identity");
//! - [`scope`]: SMART on FHIR v1 and v2 scopes, parsed strictly, and the question "does this
//!   scope set permit interaction X on type T in context patient|user|system?";
//! - [`fhir`]: method + URL (+ a batch/transaction Bundle's entries) → a typed FHIR
//!   interaction, after one normalisation of the URL;
//! - [`compartment`]: patient binding against record hopping: the FHIR R4 patient compartment
//!   as data, and the checks of a request (URL and body) and of a returned resource;
//! - [`policy`]: the YAML policy (roles, the `permissions` claim, scopes, `$operations`,
//!   break-glass eligibility), default deny, with inline tests run by `phi-gateway policy test`;
//! - break-glass and sessions: built on top of these by the gateway (docs/access.md).
//!
//! `scope`, `fhir`, `compartment` and `policy` are pure: no pingora, tokio or sockets, no I/O
//! per request. The gateway calls
//! [`policy::Policy::evaluate`] with a [`policy::Subject`] (from verified claims) and an
//! [`policy::AccessRequest`] (from the request head and, for writes and Bundles, the body), and
//! gets a [`policy::Decision`].

pub mod compartment;
pub mod fhir;
pub mod policy;
pub mod scope;
