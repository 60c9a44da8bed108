//! The text decoders every segment goes through: percent-encoding (`%XX`, `%uXXXX`), XML
//! character references and entities, Unicode normalisation, quoted-printable and HL7 v2
//! escapes (with delimiters from a fuzzed `MSH` line). Each must terminate, stay within a
//! small multiple of the input and map offsets back into the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use phi_gateway::engine::fuzzing;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let text: &str = &text;

    // One round never grows the text: every escape is at least as long as what it encodes
    // (a lossy U+FFFD is 3 bytes, as is the shortest escape `%XX`).
    let p = fuzzing::percent_decode(text);
    assert!(p.text.len() <= text.len());
    let _ = p.to_source(p.text.len());

    let x = fuzzing::xml_entity_decode(text);
    assert!(x.text.len() <= text.len());
    for i in 0..=x.text.len() {
        assert!(x.to_source(i) <= text.len(), "xml offset {i} out of range");
    }

    // NFKC expands at most 18 characters per character (U+FDFA); bytes at most ×11.
    let n = fuzzing::normalize(text);
    assert!(n.text.len() <= text.len() * 11);
    for i in 0..=n.text.len() {
        assert!(
            n.to_source(i) <= text.len(),
            "normalize offset {i} out of range"
        );
    }

    let q = fuzzing::quoted_printable(data);
    assert!(q.len() <= data.len());

    // HL7: the first line is the MSH header that declares the delimiters.
    let (msh, value) = text.split_once('\r').unwrap_or(("MSH|^~\\&|", text));
    let _ = fuzzing::hl7_unescape(msh, value);
});
