//! `Content-Encoding` decoding: gzip, deflate (zlib and raw), br, zstd and stacked codings.
//!
//! Input: `[mode, codings…, body…]`. Mode bit 0 chooses between
//! - raw: the body goes to the decoder as is, under a coding list picked by the next byte
//!   (corrupt, truncated and bomb-shaped data: must end in `Ok` or a typed error, bounded), and
//! - round trip: the body is encoded with 1–3 codings chosen by the fuzzer and must decode
//!   back to exactly itself, with one chain entry per coding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use phi_gateway::engine::fuzzing::decode_content;
use phi_gateway::engine::Limits;
use phi_gateway_fuzz::{Coding, ENCODINGS};

fuzz_target!(|data: &[u8]| {
    let [mode, pick, rest @ ..] = data else {
        return;
    };
    // Small limits so bombs hit the caps fast; the ratio floor (1 MiB) still applies.
    let limits = Limits {
        max_decoded_bytes: 2 * 1024 * 1024,
        ..Limits::default()
    };
    if mode & 1 == 0 {
        let enc = ENCODINGS[usize::from(*pick) % ENCODINGS.len()];
        if let Ok((out, chain)) = decode_content(rest, enc, &limits) {
            assert!(out.len() <= limits.max_decoded_bytes);
            assert!(chain.len() <= limits.max_decode_layers);
        }
        return;
    }
    let layers = 1 + usize::from(mode >> 1) % 3;
    let codings: Vec<Coding> = (0..layers)
        .map(|i| Coding::from_byte(pick.rotate_right(3 * i as u32)))
        .collect();
    let mut body = rest.to_vec();
    for c in &codings {
        body = c.encode(&body);
    }
    let header = codings
        .iter()
        .map(|c| c.token())
        .collect::<Vec<_>>()
        .join(", ");
    let (out, chain) = decode_content(&body, Some(&header), &limits)
        .unwrap_or_else(|e| panic!("round trip through `{header}` failed: {e}"));
    assert_eq!(out, rest, "round trip through `{header}`");
    assert_eq!(chain.len(), codings.len());
});
