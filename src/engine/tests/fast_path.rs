//! The body-level shortcuts and the whole-body clean check, which must agree with the full
//! walk.

use super::*;

#[test]
fn body_level_shortcuts_keep_anchored_rules_and_exponents() {
    let e = custom(
        "rules:
  - id: whole-value
    description: d
    category: R
    severity: low
    where: [body]
    patterns:
      - regex: '^[0-9]{3}$'
        score: 0.9
    tests:
      match: [{ body: '{\"a\":\"123\"}', content_type: application/json }]
      no_match: [{ body: '{\"a\":\"1234\"}', content_type: application/json }]
",
    );
    let s = ok(e.scan(
        &Part::Body {
            content_type: Some("application/json"),
            content_encoding: None,
            bytes: br#"{"a":"123","b":"x"}"#,
        },
        &Limits::default(),
    ));
    assert_eq!(rule_hits(&s, "whole-value"), 1, "{:?}", hits(&s));
    // A number in exponent form renders with more digits than the body shows.
    let s = json(r#"{"ssn":5.36221234e8}"#);
    assert_eq!(rule_hits(&s, "us-ssn"), 1, "{:?}", hits(&s));
    // A clean body: nothing (the shortcut path).
    assert!(json(CLEAN_JSON).findings.is_empty());
}

/// A clean FHIR Observation bundle like the scan bench's: 9-digit versions, timestamps, UUIDs.
fn clean_bundle(entries: usize) -> String {
    let items: Vec<String> = (0..entries)
        .map(|i| {
            format!(
                r#"{{"fullUrl":"urn:uuid:6b1f0c2e-{i:04}-4c1d-9a3e-0a6f5d2c{i:04}","resource":{{"resourceType":"Observation","id":"obs-{i}","meta":{{"versionId":"{v}","lastUpdated":"2024-03-0{d}T10:00:00Z"}},"status":"final","code":{{"coding":[{{"system":"http://loinc.org","code":"8867-4","display":"Heart rate"}}]}},"valueQuantity":{{"value":{val},"unit":"beats/minute"}}}}}}"#,
                v = 100_000_000 + i * 7,
                d = 1 + i % 9,
                val = 60 + i % 40,
            )
        })
        .collect();
    format!(
        r#"{{"resourceType":"Bundle","type":"collection","entry":[{}]}}"#,
        items.join(",")
    )
}

/// What the whole-body check alone answers for `doc`, a `application/fhir+json` body.
fn body_check(doc: &str) -> scan::BodyCheck {
    let limits = Limits::default();
    let options = ScanOptions::default();
    let mut sc = scan::Scanner::new(
        engine().rules(),
        scan::PartKind::Body(Some("application/fhir+json")),
        None,
        &limits,
        &options,
    );
    sc.json_body_check(doc)
}

/// Whether the whole-body clean check alone accepts `doc` (so the walk is skipped).
fn fast_path_clean(doc: &str) -> bool {
    body_check(doc) == scan::BodyCheck::Clean
}

/// `scans_with` by the default pack on a FHIR body: the fast scan, and the (rule, location,
/// chain) triples and encrypted locations of the full walk.
fn fast_and_full(doc: &str) -> (Scan, Vec<(String, String, String)>, Vec<String>) {
    let (fast, full) = scans_with(engine(), "application/fhir+json", doc);
    (fast, hits(&full), full.encrypted)
}

#[test]
fn whole_body_check_skips_clean_fhir() {
    let doc = clean_bundle(40);
    assert!(fast_path_clean(&doc), "clean bundle takes the fast path");
    let (fast, full, enc) = fast_and_full(&doc);
    assert!(fast.findings.is_empty() && full.is_empty() && enc.is_empty());
}

/// `bundle` (a Bundle ending in `]}`) with one more `entry` element.
fn with_entry(bundle: &str, entry: &str) -> String {
    let mut d = bundle.to_string();
    d.truncate(d.len().saturating_sub(2));
    d.push(',');
    d.push_str(entry);
    d.push_str("]}");
    d
}

#[test]
fn whole_body_check_agrees_with_full_walk() {
    let clean = clean_bundle(3);
    let inject = |entry: &str| with_entry(&clean, entry);
    let jwe_token = jwe();
    let jws_token = jws(r#"{"ssn":"536-22-1234"}"#);
    let cases = [
        // PHI the plain rules find anywhere: strings, numbers, keys.
        inject(r#"{"note":"SSN 536-22-1234"}"#),
        inject(r#"{"n":536221234,"label":"ssn"}"#),
        // A multi-word hotword spanning two keys of the field context.
        inject(r#"{"security":{"social":536221234}}"#),
        // Legacy JSON: key names split into words (issue 14).
        inject(r#"{"member":{"SocialSecurityNumber":"536221234"}}"#),
        inject(r#"{"member":{"SocialSecurityNumber":536221234}}"#),
        inject(r#"{"patient_social_security_number":536221234}"#),
        inject(r#"{"medicalRecordNumber":"A7781234"}"#),
        inject(r#"{"mrn":4857211}"#),
        inject(r#"{"member":{"dateOfBirth":"1961-06-15"}}"#),
        inject(r#"{"field":"SocialSecurityNumber","value":"536221234"}"#),
        inject(r#"{"536-22-1234":true}"#),
        inject(r#"{"pan":"4526 0181 5908 3012"}"#),
        inject(r#"{"pan":4526018159083012}"#),
        // Numbers that do not print back verbatim must take the full path.
        inject(r#"{"ssn":5.36221234e8}"#),
        inject(r#"{"ssn":536221234.0}"#),
        // Keywords, context and structure.
        inject(r#"{"email":"jane.roe@synthetic-clinic.org"}"#),
        inject(r#"{"mrn":"MRN 12345678"}"#),
        inject(r#"{"resourceType":"Patient","birthDate":"1984-07-12"}"#),
        inject(
            r#"{"resourceType":"Patient","identifier":[{"system":"http://hl7.org/fhir/sid/us-ssn","value":"536221234"}]}"#,
        ),
        inject(r#"{"resourceType":"Patient","name":[{"family":"Roe","given":["Jane"]}]}"#),
        // Resource types found by the selector check's one pass: after the keys, spaced,
        // contained, and the person types the structural rules name.
        inject(r#"{"name":[{"family":"Roe","given":["Jane"]}],"resourceType":"Patient"}"#),
        inject(r#"{"resourceType" :  "RelatedPerson","name":[{"family":"Roe"}]}"#),
        inject(r#"{"resourceType":"Person","birthDate":"1984-07-12"}"#),
        inject(
            r#"{"resourceType":"Observation","contained":[{"resourceType":"Patient","name":[{"family":"Roe","given":["Jane"]}]}]}"#,
        ),
        // More distinct types than the check keeps apart: judged by pieces alone.
        inject(&format!(
            "{},{}",
            (0..70)
                .map(|i| format!(r#"{{"resourceType":"T{i}"}}"#))
                .collect::<Vec<_>>()
                .join(","),
            r#"{"resourceType":"Patient","name":[{"family":"Roe","given":["Jane"]}]}"#
        )),
        // Encodings the walker decodes.
        inject(r#"{"note":"536%2D22%2D1234"}"#),
        inject(r#"{"note":"\u0035\u0033\u0036-22-1234"}"#),
        inject(&format!(r#"{{"note":"{}"}}"#, b64(b"SSN 536-22-1234"))),
        inject(&format!(
            r#"{{"resourceType":"Binary","data":"{}"}}"#,
            b64(b"SSN 536-22-1234")
        )),
        inject(&format!(r#"{{"token":"{jws_token}"}}"#)),
        inject(&format!(r#"{{"secret":"{jwe_token}"}}"#)),
        inject(r#"{"x":"ｓｓｎ ５３６-２２-１２３４"}"#),
        // A string repeated (12 bytes or more, so the profile marks the repeat): each rule's
        // patterns run over its content once, but the same NPI inside an excepted
        // Practitioner and then outside it is still a finding (either order).
        inject(&format!(
            r#"{{"resourceType":"Practitioner","note":"npi {n}"}},{{"resourceType":"Coverage","note":"npi {n}"}}"#,
            n = crate::engine::synthetic::npi(4711)
        )),
        inject(&format!(
            r#"{{"resourceType":"Coverage","note":"npi {n}"}},{{"resourceType":"Practitioner","note":"npi {n}"}}"#,
            n = crate::engine::synthetic::npi(4711)
        )),
        // The same SSN in two entries.
        inject(r#"{"note":"SSN 536-22-1234"},{"note":"SSN 536-22-1234"}"#),
        // Deeper than the walker goes: also scanned as text.
        format!("{}\"536-22-1234\"{}", "[".repeat(70), "]".repeat(70)),
        // Not JSON after all: scanned as text.
        r#"{"note":"SSN 536-22-1234""#.to_string(),
    ];
    for doc in &cases {
        let (fast, full, enc) = fast_and_full(doc);
        assert_eq!(hits(&fast), full, "{doc}");
        assert_eq!(fast.encrypted, enc, "{doc}");
        if !full.is_empty() || !enc.is_empty() {
            assert!(!fast_path_clean(doc), "claimed clean: {doc}");
        }
    }
    assert!(!fast_and_full(&cases[0]).1.is_empty());
    assert!(
        !fast_and_full(&cases[2]).1.is_empty(),
        "social security across keys"
    );
    for doc in &cases[20..25] {
        assert!(!fast_and_full(doc).1.is_empty(), "person resource: {doc}");
    }
    for doc in &cases[32..35] {
        assert!(!fast_and_full(doc).1.is_empty(), "repeated value: {doc}");
    }
    for (i, what) in [
        (3, "split PascalCase key"),
        (4, "split key, number value"),
        (6, "medicalRecordNumber"),
    ] {
        assert!(!fast_and_full(&cases[i]).1.is_empty(), "{what}");
    }
}

/// The realistic EHR set of the scan bench (`engine::synthetic::ehr_bundle`): clean as a
/// whole, and every PHI variant injected into it found the same with and without the
/// whole-body check, which must not call it clean.
#[test]
fn whole_body_check_agrees_on_ehr_traffic() {
    let clean = crate::engine::synthetic::ehr_bundle(16 << 10);
    let (fast, full, enc) = fast_and_full(&clean);
    assert!(
        fast.findings.is_empty() && full.is_empty() && enc.is_empty(),
        "{:?}",
        hits(&fast)
    );
    // The NPIs sit in Practitioners and Organizations, which the NPI rule excepts.
    assert!(fast_path_clean(&clean), "EHR bundle takes the fast path");
    let inject = |entry: &str| with_entry(&clean, entry);
    let npi = crate::engine::synthetic::npi(424_242);
    let cases = [
        // Identifier systems that are PHI, in the resources the rules cover.
        inject(
            r#"{"resource":{"resourceType":"Patient","id":"pat-1","identifier":[{"system":"http://hl7.org/fhir/sid/us-ssn","value":"536221234"}]}}"#,
        ),
        inject(
            r#"{"resource":{"resourceType":"Patient","identifier":[{"system":"urn:oid:2.16.840.1.113883.4.1","value":"536221234"}]}}"#,
        ),
        inject(
            r#"{"resource":{"resourceType":"Coverage","identifier":[{"system":"http://hl7.org/fhir/sid/us-mbi","value":"1EG4TE5MK73"}]}}"#,
        ),
        inject(
            r#"{"resource":{"resourceType":"RelatedPerson","identifier":[{"system":"urn:oid:2.16.840.1.113883.4.3.25","value":"S99985931"}]}}"#,
        ),
        // An NPI is PHI outside a provider resource: the NPIs of the bundle's Practitioners
        // and Organizations must not hide it.
        inject(&format!(
            r#"{{"resource":{{"resourceType":"Encounter","identifier":[{{"system":"http://hl7.org/fhir/sid/us-npi","value":"{npi}"}}]}}}}"#
        )),
        inject(&format!(
            r#"{{"resource":{{"resourceType":"Patient","identifier":[{{"system":"urn:oid:2.16.840.1.113883.4.6","value":"{npi}"}}]}}}}"#
        )),
        // Inside a provider resource but in a resource of its own (`contained`), in an object
        // that names two types, or in a number: not excepted.
        inject(&format!(
            r#"{{"resource":{{"resourceType":"Practitioner","contained":[{{"resourceType":"Patient","identifier":[{{"system":"http://hl7.org/fhir/sid/us-npi","value":"{npi}"}}]}}]}}}}"#
        )),
        inject(&format!(
            r#"{{"resource":{{"resourceType":"Patient","resourceType":"Practitioner","identifier":[{{"system":"http://hl7.org/fhir/sid/us-npi","value":"{npi}"}}]}}}}"#
        )),
        inject(&format!(
            r#"{{"resource":{{"resourceType":"Encounter","identifier":[{{"system":"http://hl7.org/fhir/sid/us-npi","value":{npi}}}]}}}}"#
        )),
        // The type named after the values it covers, in a resource that is not a provider.
        inject(&format!(
            r#"{{"resource":{{"identifier":[{{"system":"http://hl7.org/fhir/sid/us-npi","value":"{npi}"}}],"resourceType":"Patient"}}}}"#
        )),
        // The system may come after the value, and the hotword only from a sibling.
        inject(
            r#"{"resource":{"resourceType":"Patient","identifier":[{"value":"536221234","system":"http://hl7.org/fhir/sid/us-ssn"}]}}"#,
        ),
        // Person data next to the references by logical id.
        inject(
            r#"{"resource":{"resourceType":"Patient","id":"pat-1000","birthDate":"1961-06-15"}}"#,
        ),
        inject(r#"{"resource":{"resourceType":"Condition","note":[{"text":"SSN 536-22-1234"}]}}"#),
    ];
    for doc in &cases {
        let (fast, full, enc) = fast_and_full(doc);
        assert_eq!(hits(&fast), full, "{doc}");
        assert_eq!(fast.encrypted, enc, "{doc}");
        assert!(!full.is_empty(), "PHI variant not found: {doc}");
        assert!(!fast_path_clean(doc), "claimed clean: {doc}");
    }
}

/// Identifier rules need their systems as hotwords: a body with `identifier` elements of
/// other systems and no person resource stays on the fast path.
#[test]
fn identifiers_of_other_systems_stay_on_the_fast_path() {
    let doc = r#"{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Encounter","id":"enc-1","identifier":[{"system":"http://hospital.example.org/fhir/sid/encounter-number","value":"E24-0040001"}],"subject":{"reference":"Patient/pat-1"}}},{"resource":{"resourceType":"MedicationRequest","id":"rx-1","identifier":[{"system":"http://hospital.example.org/fhir/sid/order-number","value":"ORD-7700013"}],"subject":{"reference":"Patient/pat-1"}}}]}"#;
    assert!(fast_path_clean(doc));
    let (fast, full, _) = fast_and_full(doc);
    assert!(fast.findings.is_empty() && full.is_empty());
}

/// A rule pack of structural rules only, whose every rule the selector and hotword checks
/// prove dead before the one pass runs: a `\u` escape in the system must not hide its hotword
/// (the walker decodes it, the raw text does not show it). Regression: the check answered
/// clean from the raw text without the pass that refuses escapes.
#[test]
fn escaped_hotword_is_not_proved_absent() {
    let e = custom(
        "rules:
  - id: ssn-system
    description: d
    category: G
    severity: high
    where: ['fhir:*.identifier.value']
    patterns:
      - regex: '(?P<value>[0-9]{9})'
        score: 0.5
        boundary: digit
    context:
      words: ['http://hl7.org/fhir/sid/us-ssn']
      window_before: 0
      window_after: 0
      required: true
    tests:
      match: [{ body: '{\"resourceType\":\"Patient\",\"identifier\":[{\"system\":\"http://hl7.org/fhir/sid/us-ssn\",\"value\":\"536221234\"}]}', content_type: application/fhir+json }]
",
    );
    for doc in [
        r#"{"resourceType":"Patient","identifier":[{"system":"http://hl7.org/fhir/sid/us-\u0073sn","value":"536221234"}]}"#,
        r#"{"resourceType":"Patient","identifier":[{"system":"http:\/\/hl7.org\/fhir\/sid\/us-ssn","value":"536221234"}]}"#,
    ] {
        let (fast, full) = scans_with(&e, "application/fhir+json", doc);
        assert_eq!(rule_hits(&full, "ssn-system"), 1, "{doc}");
        assert_eq!(hits(&fast), hits(&full), "{doc}");
    }
}

/// After a narrowing, the walk scans only the segments in which a plain rule left alive has a
/// passing match: here the note with an SSN and a SNOMED code that passes the SSN validator
/// (its context, which only the walk has, rejects it), not the hundreds of other tokens. An
/// escaped body's segments are decoded strings, not its raw tokens, so it gets no such
/// restriction.
#[test]
fn narrowed_walk_is_kept_to_the_passing_tokens() {
    let limits = Limits::default();
    let options = ScanOptions::default();
    let mut sc = scan::Scanner::new(
        engine().rules(),
        scan::PartKind::Body(Some("application/fhir+json")),
        None,
        &limits,
        &options,
    );
    let note = "SSN 536-22-1234";
    let entry =
        format!(r#"{{"resource":{{"resourceType":"Condition","note":[{{"text":"{note}"}}]}}}}"#);
    let doc = with_entry(&crate::engine::synthetic::ehr_bundle(16 << 10), &entry);
    assert!(matches!(
        sc.json_body_check(&doc),
        scan::BodyCheck::Alive(_)
    ));
    let hash = crate::engine::fastpath::content_hash;
    let only = sc.plain_only.clone().expect("restricted");
    assert!(only.contains(&hash(note.as_bytes())), "{only:?}");
    assert_eq!(only.len(), 2, "{only:?}");
    let escaped = with_entry(
        &doc,
        r#"{"resource":{"resourceType":"Basic","text":{"div":"<p class=\"x\">ok</p>"}}}"#,
    );
    let r = sc.json_body_check(&escaped);
    assert!(matches!(r, scan::BodyCheck::Alive(_)), "{r:?}");
    assert_eq!(sc.plain_only, None);
    // The findings are the full walk's (the agreement tests check this on many more bodies).
    let (fast, full, _) = fast_and_full(&doc);
    assert_eq!(hits(&fast), full);
    assert_eq!(full.len(), 1);
}

/// Which rules the whole-body check leaves to the walk for `doc` (`None`: clean or unknown).
fn alive_rules(doc: &str) -> Option<Vec<String>> {
    match body_check(doc) {
        scan::BodyCheck::Alive(a) => Some(
            a.iter()
                .filter_map(|&i| engine().rules().infos().get(i).map(|r| r.id.clone()))
                .collect(),
        ),
        _ => None,
    }
}

/// A PHI-bearing document walks with the rules the whole-body check could not prove dead, and
/// finds exactly what the walk with every rule finds: several kinds of PHI at once, PHI next to
/// values that other rules' patterns match but whose validators or context reject, and PHI
/// whose rule needs the field context only the walk has.
#[test]
fn narrowed_walk_finds_what_the_full_walk_finds() {
    let ehr = crate::engine::synthetic::ehr_bundle(16 << 10);
    let obs = clean_bundle(12);
    let npi = crate::engine::synthetic::npi(424_242);
    let entries = [
        r#"{"resource":{"resourceType":"Condition","note":[{"text":"SSN 536-22-1234"}]}}"#.to_string(),
        r#"{"resource":{"resourceType":"Patient","identifier":[{"system":"http://hl7.org/fhir/sid/us-ssn","value":"536221234"}],"birthDate":"1961-06-15","name":[{"family":"Roe","given":["Jane"]}]}}"#.to_string(),
        r#"{"resource":{"resourceType":"Communication","payload":[{"contentString":"call 617-555-0123 or mail jane.roe@synthetic-clinic.org, MRN 12345678"}]}}"#.to_string(),
        format!(r#"{{"resource":{{"resourceType":"Encounter","identifier":[{{"system":"http://hl7.org/fhir/sid/us-npi","value":"{npi}"}}],"note":"ssn 536221234"}}}}"#),
        r#"{"resource":{"resourceType":"Coverage","identifier":[{"system":"http://hl7.org/fhir/sid/us-mbi","value":"1EG4TE5MK73"}],"subscriberId":"SSN: 078-05-1120"}}"#.to_string(),
        r#"{"resource":{"resourceType":"Observation","valueString":"4526 0181 5908 3012"},"member":{"SocialSecurityNumber":536221234}}"#.to_string(),
        r#"{"resource":{"resourceType":"Observation","note":"SSN 536-22-1234"},"x":"SSN 536-22-1234","y":["SSN 536-22-1234"]}"#.to_string(),
    ];
    let mut narrowed = 0;
    for base in [&ehr, &obs] {
        for entry in &entries {
            let doc = with_entry(base, entry);
            let (fast, full, enc) = fast_and_full(&doc);
            assert!(!full.is_empty(), "PHI not found: {entry}");
            assert_eq!(hits(&fast), full, "{entry}");
            assert_eq!(fast.encrypted, enc, "{entry}");
            if let Some(alive) = alive_rules(&doc) {
                narrowed += 1;
                // Every rule with a finding was left to the walk.
                for (rule, _, _) in &full {
                    assert!(alive.contains(rule), "{rule} proved dead: {entry}");
                }
            }
        }
    }
    // Plain ASCII documents without escapes: every one is narrowed.
    assert_eq!(narrowed, 2 * entries.len());
}

/// The same kind of rule pack: a hotword percent-encoded or base64-encoded inside the value
/// itself is found by the walk, which decodes the value; the check must not rule it out from
/// the raw text. Regression: with no plain rule left the check answered before the one pass
/// that refuses such strings.
#[test]
fn encoded_hotword_in_the_value_is_not_proved_absent() {
    let e = custom(
        "rules:
  - id: ssn-value
    description: d
    category: G
    severity: high
    where: ['fhir:*.identifier.value']
    patterns:
      - regex: '(?P<value>[0-9]{9})'
        score: 0.5
        boundary: digit
    context:
      words: [ssn]
      window_before: 20
      window_after: 0
      required: true
    tests:
      match: [{ body: '{\"resourceType\":\"Patient\",\"identifier\":[{\"value\":\"ssn 536221234\"}]}', content_type: application/fhir+json }]
",
    );
    let b64 = b64std(b"ssn 536221234");
    for doc in [
        r#"{"resourceType":"Patient","identifier":[{"system":"urn:x","value":"%73%73%6E%20536221234"}]}"#.to_string(),
        format!(r#"{{"resourceType":"Patient","identifier":[{{"system":"urn:x","value":"{b64}"}}]}}"#),
    ] {
        let (fast, full) = scans_with(&e, "application/fhir+json", &doc);
        assert_eq!(rule_hits(&full, "ssn-value"), 1, "{doc}");
        assert_eq!(hits(&fast), hits(&full), "{doc}");
    }
}

/// Narratives: XHTML in `text.div` with escaped quotes and line breaks, the way most published
/// FHIR is written. A clean one stays on the fast path; PHI in it, or split by escapes, is
/// found exactly as the full walk finds it.
#[test]
fn escaped_narratives_are_checked_piece_by_piece() {
    let narrative = |div: &str| {
        format!(
            r#"{{"resource":{{"resourceType":"Observation","id":"obs-n","text":{{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">{div}</div>"}},"status":"final"}}}}"#
        )
    };
    let clean = with_entry(
        &clean_bundle(12),
        &narrative(r#"<p>Heart rate 72 \"beats\"/min\n\tat rest, 2024-03-01</p>\r\n"#),
    );
    assert!(
        fast_path_clean(&clean),
        "clean narrative takes the fast path"
    );
    let (fast, full, _) = fast_and_full(&clean);
    assert!(fast.findings.is_empty() && full.is_empty(), "{full:?}");
    let cases = [
        narrative(r#"<p>SSN 536-22-1234</p>"#),
        narrative(r#"<p>SSN\n536221234</p>"#),
        narrative(r#"<p>ssn \"536221234\"</p>"#),
        narrative(r#"<p>SSN 536-22-\n1234 and 536\t22 1234</p>"#),
        narrative(r#"<p>\\\"SSN 536-22-1234\\\"</p>"#),
        narrative(r#"<p>mail jane.roe@synthetic-clinic.org\n</p>"#),
        narrative(r#"<p>call 617-555-0123</p>"#),
        narrative(r#"<p>MRN\t12345678</p>"#),
        narrative(r#"<p>DOB\n1961-06-15</p>"#),
        // Escapes the check does not take: the full walk.
        narrative(r#"<p>SSN 536\u002D22-1234</p>"#),
        narrative(r#"<p>SSN 536-22-1234<\/p>"#),
        // An escaped quote in a key, and a resource type with an escape.
        r#"{"resource":{"resourceType":"Patient","identifier":[{"sys\"tem":"x","system":"http://hl7.org/fhir/sid/us-ssn","value":"536221234"}]}}"#.to_string(),
        r#"{"resource":{"resourceType":"Pat\"ient","name":[{"family":"Roe","given":["Jane"]}],"birthDate":"1961-06-15"}}"#.to_string(),
    ];
    for entry in &cases {
        for base in [
            clean_bundle(3),
            crate::engine::synthetic::ehr_bundle(8 << 10),
        ] {
            let doc = with_entry(&base, entry);
            let (fast, full, enc) = fast_and_full(&doc);
            assert_eq!(hits(&fast), full, "{entry}");
            assert_eq!(fast.encrypted, enc, "{entry}");
            if !full.is_empty() {
                assert!(!fast_path_clean(&doc), "claimed clean: {entry}");
            }
        }
    }
    for entry in &cases[..3] {
        let (_, full, _) = fast_and_full(&with_entry(&clean_bundle(3), entry));
        assert!(!full.is_empty(), "SSN not found: {entry}");
    }
}

/// A pattern that can match what an escape decodes to (`\s` matches the line feed of `\n`) is
/// not proved dead over the pieces of an escaped string: the walk sees the decoded string,
/// where the match spans the escape. (No pattern of the default pack is of this kind.)
#[test]
fn patterns_that_match_escaped_characters_keep_their_rule() {
    let e = custom(
        "rules:
  - id: spaced-number
    description: d
    category: G
    severity: high
    where: [body]
    patterns:
      - regex: '(?P<value>[0-9]{3}\\s[0-9]{2}\\s[0-9]{4})'
        score: 0.9
    tests:
      match: ['536 22 1234']
",
    );
    for doc in [
        r#"{"div":"<p>536\n22\t1234</p>"}"#,
        r#"{"a":"x","div":"536\r22 1234"}"#,
    ] {
        let (fast, full) = scans_with(&e, "application/json", doc);
        assert_eq!(rule_hits(&full, "spaced-number"), 1, "{doc}");
        assert_eq!(hits(&fast), hits(&full), "{doc}");
    }
}
