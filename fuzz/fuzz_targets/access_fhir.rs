//! The FHIR URL / interaction parser and the patient-compartment checks: `[method index,
//! target line, "\n", body]`. The target is classified under two base paths, the body is
//! parsed as a batch/transaction Bundle, and every classified request (entries included) is
//! checked against a patient compartment; the body is also judged as a returned resource and
//! a returned Bundle. Nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use phi_gateway::access::compartment::{
    bundle_outside_entries, check_request, resource_in_compartment,
};
use phi_gateway::access::fhir::bundle::parse_bundle;
use phi_gateway::access::fhir::{classify, normalize, RequestParts};

const METHODS: [&str; 8] = [
    "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "X",
];

fuzz_target!(|data: &[u8]| {
    let [m, rest @ ..] = data else {
        return;
    };
    let method = METHODS[usize::from(*m) % METHODS.len()];
    let (target, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (rest, &b""[..]),
    };
    let target = String::from_utf8_lossy(target);
    let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    for base in ["/fhir", "/"] {
        let _ = normalize(&target, base);
        let parts = RequestParts {
            method,
            target: &target,
            base,
            body: Some(body),
            if_none_exist: m & 0x80 != 0,
        };
        if let Ok(c) = classify(&parts) {
            let _ = c.interaction.name();
            let _ = check_request(&c, "pat-1", json.as_ref());
        }
    }
    if let Ok(bundle) = parse_bundle(body) {
        for e in &bundle.entries {
            if let Ok(c) = &e.request {
                let _ = check_request(c, "pat-1", e.resource.as_ref());
            }
        }
    }
    if let Some(v) = &json {
        let _ = resource_in_compartment(v, "pat-1");
        let _ = bundle_outside_entries(v, "pat-1");
    }
});
