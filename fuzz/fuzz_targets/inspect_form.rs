//! The FORM inspector: a body declared `application/x-www-form-urlencoded`, scanned with the default rule pack
//! through `Engine::scan_with` (the proxy's entry point). Byte 0 switches explanations on.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [flags, body @ ..] = data else {
        return;
    };
    phi_gateway_fuzz::scan_body(
        Some("application/x-www-form-urlencoded"),
        None,
        body,
        flags & 1 == 1,
    );
});
