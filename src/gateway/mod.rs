//! The gateway: pingora's hooks and the checks and verdict they call (the PHI checks, the
//! bearer token, the access policy, break-glass, the response hold-back and the leak guard on
//! it, the anomaly detector's suspension check and counting), the request snapshot,
//! and the listener wrappers (TLS 1.3-only provider, request-head deadline, HTTP/2 preface
//! deadline).
//!
//! The hooks stay thin: each asks the engine, the verdict and the audit trail, and turns the
//! answer into bytes on the wire. May use `engine`, `telemetry`, `verdict`, `config`, `audit`,
//! `access`, `state`, `defence` (the anomaly detector: suspension check and counting);
//! never `runtime` (the process wiring builds the gateway, not the other way round).

mod answer;
mod break_glass;
mod checks;
mod ctx;
mod deadline;
mod defence;
mod holdback;
mod identity;
mod leak;
mod policy;
mod preface;
mod proxy;
mod record;
mod session;
mod snapshot;
mod target;
pub mod tls;

pub use deadline::HeadDeadline;
pub use preface::PrefaceGuard;
pub use proxy::Gateway;
pub use snapshot::{build, BuildError, Snapshot};
