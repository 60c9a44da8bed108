//! The HL7 inspector: a body declared `x-application/hl7-v2+er7`, scanned with the default rule pack
//! through `Engine::scan_with` (the proxy's entry point). Byte 0 switches explanations on.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [flags, body @ ..] = data else {
        return;
    };
    phi_gateway_fuzz::scan_body(Some("x-application/hl7-v2+er7"), None, body, flags & 1 == 1);
});
