//! JSON bodies: pointers, escapes, numbers, sniffing, invalid and deep documents, keys and
//! log-safe locations.

use super::*;

#[test]
fn json_ssn_at_pointer() {
    let s = json(r#"{"ssn":"536-22-1234"}"#);
    assert!(has(&s, "us-ssn", "body:/ssn", "json"), "{:?}", hits(&s));
    assert_eq!(s.findings.len(), 1, "one finding per (rule, location)");
    let f = s.findings.first().expect("finding");
    assert_eq!(f.category, Some(Category::G));
    assert_eq!(f.mode, Mode::Enforce);
    assert!(f.score >= 0.6 && f.score <= 1.0);
    assert!(json(CLEAN_JSON).findings.is_empty());
}

#[test]
fn json_unicode_escapes_are_decoded() {
    let s = json(r#"{"note":"pt \u0035\u0033\u0036-22-1234 seen"}"#);
    assert!(has(&s, "us-ssn", "body:/note", "json"), "{:?}", hits(&s));
    // Escaped slash and escaped key.
    let s = json(r#"{"s\u0073n":"536221234"}"#);
    assert!(has(&s, "us-ssn", "body:/ssn", "json"), "{:?}", hits(&s));
}

#[test]
fn json_numbers_with_context_key() {
    let s = json(r#"{"patient":{"ssn":536221234}}"#);
    assert!(
        has(&s, "us-ssn", "body:/patient/ssn", "json"),
        "{:?}",
        hits(&s)
    );
    // Exponent notation is read as the number it denotes.
    let s = json(r#"{"ssn":5.36221234e8}"#);
    assert!(has(&s, "us-ssn", "body:/ssn", "json"), "{:?}", hits(&s));
    assert!(json(r#"{"orderId":536221234}"#).findings.is_empty());
}

#[test]
fn json_sniffed_without_content_type() {
    let s = body(Some("text/plain"), None, br#"  {"ssn":"536221234"}"#).expect("scans");
    assert!(has(&s, "us-ssn", "body:/ssn", "json"), "{:?}", hits(&s));
    let s = body(None, None, b"plain SSN 536-22-1234 here").expect("scans");
    assert!(has(&s, "us-ssn", "body@10", "text"), "{:?}", hits(&s));
}

#[test]
fn invalid_json_is_scanned_as_text() {
    let s = body(
        Some("application/json"),
        None,
        br#"{"ssn": "536-22-1234", oops"#,
    )
    .expect("scans");
    assert!(has(&s, "us-ssn", "body@9", "text"), "{:?}", hits(&s));
}

#[test]
fn duplicate_keys_do_not_hide_values() {
    let s = json(r#"{"ssn":"536-22-1234","ssn":"none"}"#);
    assert_eq!(rule_hits(&s, "us-ssn"), 1, "{:?}", hits(&s));
}

#[test]
fn large_json_with_ssn_at_the_end() {
    let pad = "a".repeat(100 * 1024);
    let b = format!(r#"{{"pad":"{pad}","items":[1,2,3],"ssn":"536-22-1234"}}"#);
    assert!(b.len() > 100 * 1024);
    let s = json(&b);
    assert!(has(&s, "us-ssn", "body:/ssn", "json"), "{:?}", hits(&s));
}

#[test]
fn deep_nesting_does_not_crash() {
    let deep = "[".repeat(100_000);
    let s = body(Some("application/json"), None, deep.as_bytes()).expect("scans");
    assert!(s.findings.is_empty());
    let deep = format!("{}{}", "{\"a\":".repeat(100_000), "1");
    assert!(body(None, None, deep.as_bytes()).is_ok());
    // Deeper than max_json_depth (64) but parseable: also scanned as text.
    let b = format!("{}\"SSN 536-22-1234\"{}", "[".repeat(100), "]".repeat(100));
    let s = json(&b);
    assert!(has(&s, "us-ssn", "body@105", "text"), "{:?}", hits(&s));
}

#[test]
fn keys_are_scanned_and_locations_sanitized() {
    let s = json(r#"{"patients":{"536-22-1234":{"name":"x"}}}"#);
    assert!(
        has(&s, "us-ssn", "body:/patients/*", "json"),
        "{:?}",
        hits(&s)
    );
    let s = scan(Part::Query("536-22-1234=1"));
    assert!(has(&s, "us-ssn", "query:*", "query"), "{:?}", hits(&s));
    let s = scan(Part::Header {
        name: "x-536-22-1234",
        value: b"1",
    });
    assert!(has(&s, "us-ssn", "header:*", ""), "{:?}", hits(&s));
}

#[test]
fn locations_never_contain_the_value() {
    let inputs = [
        r#"{"536221234":{"ssn":"536-22-1234"}}"#,
        r#"{"a":[{"b536-22-1234":"SSN 536221234"}]}"#,
        r#"{"x":{"ssn 536 22 1234":"ssn"}}"#,
    ];
    for i in inputs {
        let s = json(i);
        assert!(!s.findings.is_empty(), "{i}");
        for f in &s.findings {
            assert!(!f.location.contains("536"), "{i}: {}", f.location);
            assert!(!f.location.contains("1234"), "{i}: {}", f.location);
        }
    }
}
