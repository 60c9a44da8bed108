//! Structural rules: field selectors, `require_encrypted`, exceptions, explanations and near
//! misses, and the selector cache.

use super::*;
use crate::engine::rules::FingerprintKey;

const STRUCT_RULES: &str = r#"rules:
  - id: birthdate
    description: d
    category: C
    severity: high
    where: ['fhir:Patient.birthDate', 'hl7:PID-7']
    patterns:
      - regex: '[0-9]{4}-?[0-9]{2}-?[0-9]{2}'
        score: 0.9
  - id: ssn-must-be-jwe
    description: d
    category: G
    severity: high
    where: ['fhir:*.identifier.value']
    context: { words: ['http://hl7.org/fhir/sid/us-ssn'], window_before: 0, window_after: 0 }
    require_encrypted: { formats: [jwe], enc: [A256GCM] }
  - id: npi-any
    description: d
    category: R
    severity: low
    patterns:
      - regex: '(?P<value>[12][0-9]{9})'
        score: 0.9
        boundary: digit
    validators: [npi]
    exceptions:
      - name: provider-directory
        routes: ['provider-*']
      - name: practitioner-records
        fields: ['fhir:Practitioner.*']
      - name: known-test-npi
        values: ['FP_TEST']
"#;

/// A test deployment key (never a real one).
const TEST_KEY: &[u8] = b"structural-tests fingerprint key, 32+ bytes long";

fn struct_engine() -> Engine {
    let key = FingerprintKey::new(TEST_KEY);
    let fp = key.fingerprint("1245-319-599");
    let yaml = STRUCT_RULES.replace("FP_TEST", &fp);
    let set = RuleSet::from_sources(&[(PathBuf::from("custom.yaml"), yaml)])
        .and_then(|s| s.with_fingerprint_key(key))
        .unwrap_or_else(|e| panic!("{e}"));
    Engine::new(Arc::new(set))
}

/// The same rules without the key: exceptions by value never apply (fail closed).
fn struct_engine_without_key() -> Engine {
    let fp = FingerprintKey::new(TEST_KEY).fingerprint("1245-319-599");
    custom(&STRUCT_RULES.replace("FP_TEST", &fp))
}

#[test]
fn fhir_selectors_narrow_to_patient_fields() {
    let e = struct_engine();
    let scan = |b: &str| {
        ok(e.scan(
            &Part::Body {
                content_type: Some("application/fhir+json"),
                content_encoding: None,
                bytes: b.as_bytes(),
            },
            &Limits::default(),
        ))
    };
    let s = scan(r#"{"resourceType":"Patient","birthDate":"1961-06-15"}"#);
    assert!(
        has(&s, "birthdate", "body:/birthDate", "json"),
        "{:?}",
        hits(&s)
    );
    let s = scan(
        r#"{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Patient","birthDate":"1961-06-15"}}]}"#,
    );
    assert!(rule_hits(&s, "birthdate") == 1, "{:?}", hits(&s));
    // Negative: dates elsewhere (meta.lastUpdated, Observation dates) are not birth dates.
    let s = scan(
        r#"{"resourceType":"Observation","effectiveDateTime":"1961-06-15","meta":{"lastUpdated":"2019-01-01"}}"#,
    );
    assert_eq!(rule_hits(&s, "birthdate"), 0, "{:?}", hits(&s));
    let s = scan(r#"{"resourceType":"Practitioner","birthDate":"1961-06-15"}"#);
    assert_eq!(rule_hits(&s, "birthdate"), 0);
    // HL7 selector.
    let s = ok(e.scan(
        &Part::Body {
            content_type: Some("x-application/hl7-v2+er7"),
            content_encoding: None,
            bytes: ADT.as_bytes(),
        },
        &Limits::default(),
    ));
    assert!(
        has(&s, "birthdate", "body:hl7:PID-7", "hl7"),
        "{:?}",
        hits(&s)
    );
}

#[test]
fn require_encrypted_field() {
    let e = struct_engine();
    let scan = |b: String| {
        ok(e.scan(
            &Part::Body {
                content_type: Some("application/fhir+json"),
                content_encoding: None,
                bytes: b.as_bytes(),
            },
            &Limits::default(),
        ))
    };
    let doc = |v: &str| {
        format!(
            r#"{{"resourceType":"Patient","identifier":[{{"system":"http://hl7.org/fhir/sid/us-ssn","value":{v}}},{{"system":"urn:mrn","value":"12345"}}]}}"#
        )
    };
    let s = scan(doc(&format!("\"{}\"", jwe())));
    assert_eq!(rule_hits(&s, "ssn-must-be-jwe"), 0, "{:?}", hits(&s));
    let s = scan(doc("\"999-12-3456\""));
    assert!(
        has(&s, "ssn-must-be-jwe", "body:/identifier/0/value", "json"),
        "{:?}",
        hits(&s)
    );
    let s = scan(doc("999123456"));
    assert_eq!(rule_hits(&s, "ssn-must-be-jwe"), 1, "numbers too");
    // A JWE with another `enc` does not satisfy the requirement.
    let other = jwe().replacen(
        &b64(br#"{"alg":"RSA-OAEP-256","enc":"A256GCM","kid":"k1"}"#),
        &b64(br#"{"alg":"RSA-OAEP-256","enc":"A128GCM","kid":"k1"}"#),
        1,
    );
    let s = scan(doc(&format!("\"{other}\"")));
    assert_eq!(rule_hits(&s, "ssn-must-be-jwe"), 1, "{:?}", hits(&s));
}

#[test]
fn exceptions_by_route_field_and_fingerprint() {
    let e = struct_engine();
    let run = |route: Option<&str>, b: &str| {
        ok(e.scan_with(
            &Part::Body {
                content_type: Some("application/fhir+json"),
                content_encoding: None,
                bytes: b.as_bytes(),
            },
            &Limits::default(),
            &ScanOptions::route(route).explained(true),
        ))
    };
    let pat = r#"{"resourceType":"Patient","note":"npi 1234567893"}"#;
    let s = run(Some("ehr"), pat);
    assert_eq!(rule_hits(&s, "npi-any"), 1, "{:?}", hits(&s));
    let s = run(Some("provider-directory"), pat);
    assert_eq!(rule_hits(&s, "npi-any"), 0);
    assert!(
        s.near_misses
            .iter()
            .any(|n| n.reason.contains("provider-directory") && n.masked == "##########"),
        "{:?}",
        s.near_misses
    );
    let prac = r#"{"resourceType":"Practitioner","identifier":[{"value":"1234567893"}]}"#;
    assert_eq!(rule_hits(&run(Some("ehr"), prac), "npi-any"), 0);
    let known = r#"{"resourceType":"Patient","note":"npi 1245319599"}"#;
    let s = run(Some("ehr"), known);
    assert_eq!(
        rule_hits(&s, "npi-any"),
        0,
        "fingerprint ignores separators"
    );
    assert!(s
        .near_misses
        .iter()
        .any(|n| n.reason.contains("known-test-npi")));
    let s = ok(struct_engine_without_key().scan_with(
        &Part::Body {
            content_type: Some("application/fhir+json"),
            content_encoding: None,
            bytes: known.as_bytes(),
        },
        &Limits::default(),
        &ScanOptions::route(Some("ehr")),
    ));
    assert_eq!(
        rule_hits(&s, "npi-any"),
        1,
        "without the key a value exception cannot apply"
    );
}

/// Regression (issue 14): was a fingerprint under a fixed public key, so a rule file (or a
/// `scan --explain` log) named the value to anyone who tried every value of its shape.
#[test]
fn fingerprints_need_the_deployment_key() {
    let key = FingerprintKey::new(TEST_KEY);
    let fp = key.fingerprint("1245319599");
    assert!(
        fp.starts_with(&format!("hmac-sha256:{}:", key.id())),
        "{fp}"
    );
    assert_eq!(fp, key.fingerprint("1245-319-599"));
    assert_ne!(
        fp,
        FingerprintKey::new(b"another deployment's key").fingerprint("1245319599")
    );
    // Another key's fingerprint, and the keyless legacy form, are load errors.
    let other = FingerprintKey::new(b"another deployment's key").fingerprint("1245319599");
    let yaml = STRUCT_RULES.replace("FP_TEST", &other);
    let err = RuleSet::from_sources(&[(PathBuf::from("custom.yaml"), yaml)])
        .and_then(|s| s.with_fingerprint_key(FingerprintKey::new(TEST_KEY)))
        .expect_err("a fingerprint of another key must not load");
    assert!(err.to_string().contains("values[0]"), "{err}");
    let legacy = STRUCT_RULES.replace("FP_TEST", "hmac-sha256:92ba17bf44cb1b74a0adf32bc04e4929");
    let err = RuleSet::from_sources(&[(PathBuf::from("custom.yaml"), legacy)])
        .expect_err("the keyless legacy form must not load");
    assert!(err.to_string().contains("no key id"), "{err}");
}

#[test]
fn explanations_and_near_misses() {
    let s = ok(engine().scan_with(
        &Part::Text(
            "536221234 is an order number for the shop. SSN: 536-22-1234, SSN: 078-05-1120",
        ),
        &Limits::default(),
        &ScanOptions::default().explained(true),
    ));
    let f = s
        .findings
        .iter()
        .find(|f| f.rule_id == "us-ssn")
        .expect("finding");
    let x = f.explain.as_ref().expect("explained");
    assert_eq!(x.masked, "###-##-####");
    assert_eq!(x.validators, vec![("ssn", true)]);
    assert_eq!(x.context.as_ref().map(|c| c.0.as_str()), Some("ssn"));
    assert!(x.fingerprint.is_none(), "no key, no fingerprint");
    assert!(
        s.near_misses
            .iter()
            .any(|n| n.rule_id == "us-ssn" && n.reason.contains("validator `ssn` failed")),
        "{:?}",
        s.near_misses
    );
    assert!(
        s.near_misses
            .iter()
            .any(|n| n.rule_id == "us-ssn" && n.reason.contains("below min_score")),
        "{:?}",
        s.near_misses
    );
    // Without explain: nothing extra.
    let s = text("SSN: 536-22-1234 and SSN: 078-05-1120");
    assert!(s.near_misses.is_empty() && s.findings.iter().all(|f| f.explain.is_none()));
}

#[test]
fn structural_cache_survives_long_and_many_paths() {
    // A long (uncached) path between cached ones must not disturb the cached rows.
    let long_key = "k".repeat(300);
    let doc = format!(
        r#"{{"resourceType":"Bundle","entry":[{{"resource":{{"resourceType":"Patient","birthDate":"1961-06-15"}}}},{{"resource":{{"resourceType":"Observation","{long_key}":"x"}}}},{{"resource":{{"resourceType":"Patient","birthDate":"1962-07-16","identifier":[{{"system":"http://hl7.org/fhir/sid/us-ssn","value":"999-12-3456"}}]}}}}]}}"#
    );
    let s = json(&doc);
    assert_eq!(rule_hits(&s, "fhir-patient-birthdate"), 2, "{:?}", hits(&s));
    assert_eq!(rule_hits(&s, "fhir-identifier-ssn"), 1, "{:?}", hits(&s));
}
