//! The multipart inspector: a body declared `multipart/form-data; boundary=XyZ` (parts with
//! their own content types, transfer encodings and nested boundaries), scanned with the default
//! rule pack through `Engine::scan_with`. Byte 0 switches explanations on.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [flags, body @ ..] = data else {
        return;
    };
    phi_gateway_fuzz::scan_body(
        Some("multipart/form-data; boundary=XyZ"),
        None,
        body,
        flags & 1 == 1,
    );
});
