//! Runtime defence (issue 12): what the gateway does when a principal's access pattern turns
//! anomalous. Today: [`webhook`], delivery of incident alerts to an Alertmanager-compatible or
//! a generic signed receiver.
//!
//! The one design reason: nothing here may slow down or fail a request. Alerts leave through a
//! bounded queue drained by a thread of its own; a dead receiver costs dropped alerts (counted
//! in `phi_gateway_alert_deliveries_total`), never request latency.
//!
//! May use `engine`, `telemetry`, `verdict`, `config`, `audit` and `state`; never `access`,
//! `gateway` or `runtime` (tests/layout.rs). Nothing here carries PHI: an alert holds keyed
//! fingerprints, counts and gateway-made request ids only.

pub mod webhook;
