//! Integration tests for phi-gateway: each test starts the real binary on its own ports with
//! its own certificates, config and recording upstream, and drives it over TLS 1.3 with
//! reqwest, curl and openssl. One test target keeps link time down.

mod common;

mod access_policy;
mod anomaly;
mod audit;
mod audit_header;
mod audit_leaks;
mod break_glass;
mod check;
mod deploy;
mod fingerprints;
mod hostile;
mod hostile_tls;
mod identity;
mod introspection;
mod leak_guard;
mod leaks;
mod lifecycle;
mod limits;
mod metrics;
mod monitor;
mod mtls;
mod phi;
mod policy;
mod postgres;
mod properties;
mod protocol;
mod reload;
mod response_check;
mod scan;
mod scan_lines;
mod sessions;
mod state;
mod tls;
mod upstream;
mod webhook;
mod write_target;
