//! The whole-body check against the full walk: a body declared `application/fhir+json`,
//! scanned as the proxy scans it and in explain mode (which always walks with every rule);
//! any difference in findings, encrypted locations or the error is a crash.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    phi_gateway_fuzz::fast_path_agrees(data);
});
