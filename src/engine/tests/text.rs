//! Free text: Unicode evasions, boundaries, XML character references and heuristic base64.

use super::*;

#[test]
fn unicode_evasions() {
    for t in [
        "SSN: ５３６－２２－１２３４",
        "SSN: ٥٣٦-٢٢-١٢٣٤",
        "SSN: ۵۳۶-۲۲-۱۲۳۴",
        "SSN: ५३६-२२-१२३४",
        "SSN: 𝟓𝟑𝟔-𝟐𝟐-𝟏𝟐𝟑𝟒",
        "SSN: 536\u{200B}-22-1234",
        "SSN: 5\u{200B}3\u{200C}6\u{FEFF}221234",
        "SSN: 536\u{2011}22\u{2011}1234",
        "SSN: 536\u{2212}22\u{2212}1234",
        "SSN: 536\u{00A0}22\u{00A0}1234",
    ] {
        let s = text(t);
        assert!(has(&s, "us-ssn", "text@5", ""), "{t}: {:?}", hits(&s));
    }
    // Offsets refer to the original text, after the multi-byte prefix.
    let s = text("ＳＳＮ: ５３６－２２－１２３４");
    assert!(has(&s, "us-ssn", "text@11", ""), "{:?}", hits(&s));
    assert!(text("order ５３６２２１２３４").findings.is_empty());
}

#[test]
fn glued_and_boundaries() {
    assert!(has(&text("SSN536221234"), "us-ssn", "text@3", ""));
    assert!(has(&text("id=536-22-1234&x"), "us-ssn", "text@3", ""));
    assert!(text("SSN 15362212345").findings.is_empty());
    assert!(text("SSN 536-22-12345").findings.is_empty());
    // One finding, not one per pattern.
    assert_eq!(rule_hits(&text("SSN 536-22-1234"), "us-ssn"), 1);
}

#[test]
fn xml_numeric_character_references() {
    let x = "<ssn>&#53;&#51;&#x36;-22-1234</ssn>";
    let s = ok(body(Some("application/fhir+xml"), None, x.as_bytes()));
    assert!(
        hits(&s)
            .iter()
            .any(|(r, _, c)| r == "us-ssn" && c.ends_with("xml-ncr")),
        "{:?}",
        hits(&s)
    );
    let s = ok(body(
        Some("application/fhir+xml"),
        None,
        b"<count value=\"&#49;&#50;\"/> &amp; more",
    ));
    assert!(s.findings.is_empty(), "{:?}", hits(&s));
}

#[test]
fn base64_in_free_text_from_twelve_characters() {
    // base64("536221234") is 12 characters.
    let enc = b64std(b"536221234");
    assert_eq!(enc.len(), 12);
    let s = json(&format!(r#"{{"ssn":"{enc}"}}"#));
    assert!(
        has(&s, "us-ssn", "body:/ssn", "json>base64"),
        "{:?}",
        hits(&s)
    );
    let s = text(&format!("note {} end", b64std(b"SSN 536-22-1234")));
    assert!(
        hits(&s)
            .iter()
            .any(|(r, l, c)| r == "us-ssn" && l == "text@5" && c == "base64"),
        "{:?}",
        hits(&s)
    );
    // base64url without padding.
    let s = text(&format!("t={}", b64(b"SSN 536-22-1234!?")));
    assert!(rule_hits(&s, "us-ssn") > 0, "{:?}", hits(&s));
    // Negative: base64 of clean text, identifiers and plain long words.
    let s = text(&format!(
        "{} StructureDefinition ObservationDefinition aGVsbG8gd29ybGQ=",
        b64std(b"order 536221234 shipped")
    ));
    assert!(s.findings.is_empty(), "{:?}", hits(&s));
}
