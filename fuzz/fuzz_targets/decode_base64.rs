//! Heuristic base64 in free text (runs of 12+ alphabet characters decoded when readable) and
//! the value classifier (JWE / JWS / PGP / age / … recognisers, which decode base64url
//! segments and parse JOSE headers).
#![no_main]

use libfuzzer_sys::fuzz_target;
use phi_gateway::engine::{classify_value, fuzzing};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut last_end = 0;
    for (start, end, decoded) in fuzzing::base64_runs(&text) {
        // Runs are ordered, disjoint and inside the text.
        assert!(start >= last_end && start < end && end <= text.len());
        last_end = end;
        if let Some(d) = decoded {
            // Decoding shrinks by 3/4.
            assert!(d.len() * 4 <= (end - start) * 3 + 3);
        }
    }
    let _ = classify_value(&text);
});
