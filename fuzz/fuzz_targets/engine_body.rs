//! The whole engine on one body: `[ct, enc, flags, body…]` picks a content type and a
//! `Content-Encoding` from the tables in `src/lib.rs`. With flag bit 1 the body is first
//! encoded with that coding by us, so the carriers see fuzzer-chosen plaintext behind a valid
//! compressed stream; without it the raw bytes meet the decoders. Bit 0: explanations.
#![no_main]

use libfuzzer_sys::fuzz_target;
use phi_gateway_fuzz::{scan_body, Coding, CONTENT_TYPES, ENCODINGS};

fuzz_target!(|data: &[u8]| {
    let [ct, enc, flags, body @ ..] = data else {
        return;
    };
    let content_type = CONTENT_TYPES[usize::from(*ct) % CONTENT_TYPES.len()];
    let explain = flags & 1 == 1;
    if flags & 2 == 2 {
        let coding = Coding::from_byte(*enc);
        let encoded = coding.encode(body);
        scan_body(content_type, Some(coding.token()), &encoded, explain);
    } else {
        let encoding = ENCODINGS[usize::from(*enc) % ENCODINGS.len()];
        scan_body(content_type, encoding, body, explain);
    }
});
