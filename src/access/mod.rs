//! Access control at the gateway: who sends a request and whether they may.
//!
//! This folder owns identity (validated bearer JWTs: token parsing, JWKS, verification,
//! claims, the verified-token cache), and, built on it, SMART scopes, the FHIR interaction of a
//! request, the access policy, patient binding, break-glass and sessions.
//!
//! Below `gateway` and `runtime`, above `config`: it may use `engine`, `telemetry`, `verdict`
//! and `config`, never `audit`, `gateway` or `runtime` (the hooks call into it, not the other
//! way round). Nothing here knows pingora's types: the gateway hands it header values and
//! gets typed answers back.

pub mod identity;
