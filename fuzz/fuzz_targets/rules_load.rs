//! The rule loader: YAML text → compiled `RuleSet` (schema, regexes, validators, context,
//! exceptions, selectors, inline tests). Byte 0 bit 0 loads the text as a second layer over a
//! small base file (exercising `override:` and `disable:`). A set that loads is linted, runs
//! its own inline tests and scans a sample body, so compiled rules are exercised too.
#![no_main]

use std::path::PathBuf;
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use phi_gateway::engine::rules::RuleSet;
use phi_gateway::engine::{Engine, Limits, Part, ScanOptions};

const BASE: &str = r#"rules:
  - id: base-ssn
    category: G
    severity: high
    patterns:
      - regex: '(?P<value>[0-9]{3}-[0-9]{2}-[0-9]{4})'
        score: 0.6
        boundary: digit
    validators: [ssn]
"#;

const SAMPLE: &[u8] = br#"{"resourceType":"Patient","identifier":[{"system":"http://hl7.org/fhir/sid/us-ssn","value":"536-22-1234"}],"note":"ssn 536221234 mrn A12345 dob 1950-02-03 call 617-555-0123"}"#;

fuzz_target!(|data: &[u8]| {
    let [flags, yaml @ ..] = data else {
        return;
    };
    let text = String::from_utf8_lossy(yaml).into_owned();
    let file = (PathBuf::from("fuzz.yaml"), text);
    let loaded = if flags & 1 == 1 {
        let base = vec![(PathBuf::from("base.yaml"), BASE.to_string())];
        RuleSet::from_layers(&[base, vec![file]])
    } else {
        RuleSet::from_sources(&[file])
    };
    let Ok(rules) = loaded else {
        return;
    };
    let _ = rules.lint();
    let _ = rules.run_inline_tests();
    let engine = Engine::new(Arc::new(rules));
    let part = Part::Body {
        content_type: Some("application/fhir+json"),
        content_encoding: None,
        bytes: SAMPLE,
    };
    let _ = engine.scan_with(
        &part,
        &Limits::default(),
        &ScanOptions::default().explained(true),
    );
});
