//! The process: building everything from a validated configuration, running the pingora
//! server until a signal, hot reload, the admin listener (health, metrics, reload), logging,
//! the built-in demo (its sample EHR in `demo`, its token issuer in `demo_issuer`), and the
//! implementations of the `scan`, `rules test`, `policy test` and `dev-token` commands (`cli`).
//!
//! The top of the crate: it may use every other folder, and none of them may use it. Its
//! modules are public because the binary (`src/main.rs`) drives each of them.

pub mod admin;
pub mod cli;
pub mod demo;
pub mod demo_issuer;
pub mod logging;
pub mod reload;
pub mod server;
