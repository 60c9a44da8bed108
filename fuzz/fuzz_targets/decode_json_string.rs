//! JSON strings: `\uXXXX` escapes (surrogate pairs, lone surrogates, escaped digits) through
//! the JSON carrier's own parser (duplicate keys kept, strings borrowed), checked against
//! serde_json. Input used twice: as a whole document, and as the inside of one string literal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use phi_gateway::engine::fuzzing::json_strings;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Whole document: parses exactly when serde_json parses it.
    let ours = json_strings(text);
    let theirs = serde_json::from_str::<serde_json::Value>(text);
    assert_eq!(ours.is_some(), theirs.is_ok(), "parser disagreement");

    // One string literal: our decoded value equals serde_json's.
    let literal = format!("\"{text}\"");
    let ours = json_strings(&literal);
    let theirs = serde_json::from_str::<String>(&literal).ok();
    assert_eq!(ours, theirs.map(|s| vec![s]));
});
