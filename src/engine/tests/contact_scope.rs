//! Issue 14, classes 3 and 4: `fhir-limit:` scopes (contact data only in person resources and
//! free text) and the `digit-chain` boundary (an OID piece is not a dotted SSN).

use super::*;

const FHIR: Option<&str> = Some("application/fhir+json");

fn fhir(b: &str) -> Scan {
    ok(body(FHIR, None, b.as_bytes()))
}

/// A rule limited to Patient values and notes inside FHIR.
const LIMITED: &str = r#"rules:
  - id: limited-digits
    description: ten digits after a hotword
    category: D
    severity: low
    patterns:
      - regex: '(?P<value>[2-9][0-9]{9})'
        score: 0.6
        boundary: digit
    where: ['fhir-limit:Patient.*', 'fhir-limit:*.note.text']
"#;

fn limited_hits(e: &Engine, part: Part<'_>) -> usize {
    match e.scan(&part, &Limits::default()) {
        Ok(s) => s.findings.len(),
        Err(err) => panic!("scan failed: {err}"),
    }
}

/// `fhir-limit:` restricts FHIR values by their structural address (innermost resource type)
/// and leaves everything that is not a FHIR value alone.
#[test]
fn fhir_limit_restricts_fhir_values_only() {
    let e = custom(LIMITED);
    let fhir_body = |b: &'static str| Part::Body {
        content_type: FHIR,
        content_encoding: None,
        bytes: b.as_bytes(),
    };
    for (inside, doc) in [
        (
            true,
            r#"{"resourceType":"Patient","telecom":[{"value":"4043217788"}]}"#,
        ),
        (
            true,
            r#"{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Patient","id":"4043217788"}}]}"#,
        ),
        (
            true,
            r#"{"resourceType":"Claim","contained":[{"resourceType":"Patient","id":"4043217788"}]}"#,
        ),
        (
            true,
            r#"{"resourceType":"Observation","note":[{"text":"4043217788"}]}"#,
        ),
        (
            false,
            r#"{"resourceType":"Organization","telecom":[{"value":"4043217788"}]}"#,
        ),
        (
            false,
            r#"{"resourceType":"Observation","valueString":"4043217788"}"#,
        ),
        (
            false,
            r#"{"resourceType":"Patient","contained":[{"resourceType":"Organization","id":"4043217788"}]}"#,
        ),
        (
            false,
            r#"{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Location","id":"4043217788"}}]}"#,
        ),
    ] {
        assert_eq!(limited_hits(&e, fhir_body(doc)) > 0, inside, "{doc}");
    }
    // Not FHIR: plain JSON, text, form, HL7 v2, query and headers are not limited.
    let plain = Part::Body {
        content_type: Some("application/json"),
        content_encoding: None,
        bytes: br#"{"organization":{"phone":"4043217788"}}"#,
    };
    assert_eq!(limited_hits(&e, plain), 1);
    assert_eq!(limited_hits(&e, Part::Text("call 4043217788")), 1);
    let form = Part::Body {
        content_type: Some("application/x-www-form-urlencoded"),
        content_encoding: None,
        bytes: b"phone=4043217788",
    };
    assert_eq!(limited_hits(&e, form), 1);
    let hl7 = Part::Body {
        content_type: Some("x-application/hl7-v2+er7"),
        content_encoding: None,
        bytes: b"MSH|^~\\&|A|B\rPID|1||X||DOE^J||19610615|M|||||4043217788\r",
    };
    assert_eq!(limited_hits(&e, hl7), 1);
    assert_eq!(limited_hits(&e, Part::Query("phone=4043217788")), 1);
    assert_eq!(
        limited_hits(
            &e,
            Part::Header {
                name: "x-phone",
                value: b"4043217788"
            }
        ),
        1
    );
}

/// `scan --explain` says why a limited-out value did not fire.
#[test]
fn fhir_limit_is_explained_as_a_near_miss() {
    let e = custom(LIMITED);
    let doc = br#"{"resourceType":"Organization","telecom":[{"value":"4043217788"}]}"#;
    let s = match e.scan_with(
        &Part::Body {
            content_type: FHIR,
            content_encoding: None,
            bytes: doc,
        },
        &Limits::default(),
        &ScanOptions {
            explain: true,
            ..ScanOptions::default()
        },
    ) {
        Ok(s) => s,
        Err(err) => panic!("{err}"),
    };
    assert!(s.findings.is_empty());
    assert!(
        s.near_misses
            .iter()
            .any(|n| n.reason.contains("fhir-limit") && n.reason.contains("Organization")),
        "{:?}",
        s.near_misses
    );
}

#[test]
fn fhir_limit_needs_an_address() {
    let yaml = LIMITED.replace("'fhir-limit:*.note.text'", "'fhir-limit:'");
    match RuleSet::from_sources(&[(PathBuf::from("custom.yaml"), yaml)]) {
        Err(e) => assert!(e.to_string().contains("fhir-limit"), "{e}"),
        Ok(_) => panic!("an empty fhir-limit must not load"),
    }
}

/// Regression (issue 14): was: the phone and e-mail rules refused the business contacts of
/// provider and knowledge resources (half of the R4 examples' Practitioners, a third of its
/// Organizations).
#[test]
fn contact_rules_skip_business_contacts_in_fhir() {
    let telecom = r#"[{"system":"phone","value":"404-321-7788"},{"system":"email","value":"j.roe@synthetic-clinic.org"}]"#;
    for ty in [
        "Organization",
        "Practitioner",
        "PractitionerRole",
        "Location",
        "HealthcareService",
        "Endpoint",
    ] {
        let s = fhir(&format!(r#"{{"resourceType":"{ty}","telecom":{telecom}}}"#));
        assert_eq!(
            rule_hits(&s, "us-phone") + rule_hits(&s, "email"),
            0,
            "{ty}: {:?}",
            hits(&s)
        );
    }
    for ty in [
        "PlanDefinition",
        "ActivityDefinition",
        "TestScript",
        "CodeSystem",
        "Library",
    ] {
        let s = fhir(&format!(
            r#"{{"resourceType":"{ty}","publisher":"x","contact":[{{"telecom":{telecom}}}],"author":[{{"telecom":{telecom}}}]}}"#
        ));
        assert_eq!(
            rule_hits(&s, "us-phone") + rule_hits(&s, "email"),
            0,
            "{ty}: {:?}",
            hits(&s)
        );
    }
}

/// The other side: person resources (alone, in a Bundle, contained), free-text notes and
/// bodies that are not FHIR are still scanned for contact data.
#[test]
fn contact_rules_still_fire_for_people_and_free_text() {
    let telecom = r#"[{"system":"phone","value":"404-321-7788"},{"system":"email","value":"j.roe@synthetic-clinic.org"}]"#;
    for doc in [
        format!(r#"{{"resourceType":"Patient","telecom":{telecom}}}"#),
        format!(r#"{{"resourceType":"RelatedPerson","telecom":{telecom}}}"#),
        format!(r#"{{"resourceType":"Person","telecom":{telecom}}}"#),
        format!(
            r#"{{"resourceType":"Bundle","entry":[{{"resource":{{"resourceType":"Organization","telecom":[]}}}},{{"resource":{{"resourceType":"Patient","telecom":{telecom}}}}}]}}"#
        ),
        format!(
            r#"{{"resourceType":"Claim","contained":[{{"resourceType":"Patient","telecom":{telecom}}}]}}"#
        ),
        r#"{"resourceType":"Observation","note":[{"text":"phone 404-321-7788, email j.roe@synthetic-clinic.org"}]}"#.to_string(),
    ] {
        let s = fhir(&doc);
        assert!(rule_hits(&s, "us-phone") > 0 && rule_hits(&s, "email") > 0, "{doc}: {:?}", hits(&s));
    }
    let s = json(&format!(r#"{{"organization":{{"telecom":{telecom}}}}}"#));
    assert!(
        rule_hits(&s, "us-phone") > 0 && rule_hits(&s, "email") > 0,
        "{:?}",
        hits(&s)
    );
    let s = text("Dr. Roe, phone 404-321-7788, email j.roe@synthetic-clinic.org");
    assert!(
        rule_hits(&s, "us-phone") > 0 && rule_hits(&s, "email") > 0,
        "{:?}",
        hits(&s)
    );
}

/// Regression (issue 14): was: a FHIR Library or Measure with value-set OIDs
/// (`urn:oid:2.16.840.1.113883.3.464.1003.198.12.1012`) was refused as an SSN.
#[test]
fn oid_pieces_are_not_dotted_ssns() {
    for oid in [
        "urn:oid:2.16.840.1.113883.3.464.1003.198.12.1012",
        "2.16.840.1.113883.3.464.1003.101.12.1061",
        "1.536.22.1234",
        "536.22.1234.1",
        "2.16.840.1.536221234.7",
    ] {
        let s = fhir(&format!(
            r#"{{"resourceType":"Library","dataRequirement":[{{"codeFilter":[{{"valueSet":"{oid}"}}]}}]}}"#
        ));
        assert_eq!(rule_hits(&s, "us-ssn"), 0, "{oid}: {:?}", hits(&s));
        let s = text(&format!("SSN registry root {oid}"));
        assert_eq!(rule_hits(&s, "us-ssn"), 0, "{oid}: {:?}", hits(&s));
    }
    // CDA templateId / codeSystem roots in XML.
    let cda = r#"<templateId root="2.16.840.1.113883.10.20.22.4.536.22.1234"/><code codeSystem="2.16.840.1.113883.6.1"/>"#;
    assert_eq!(rule_hits(&text(cda), "us-ssn"), 0);
}

/// The other side of the chain boundary: a real dotted (or bare) SSN still fires, also at the
/// end of a sentence and next to an OID.
#[test]
fn dotted_ssns_still_fire() {
    for t in [
        "SSN 536.22.1234",
        "ref 536.22.1234.",
        "SSN: 536.22.1234, verified",
        "ssn 536221234.",
        "OID 2.16.840.1.113883.4.1 value 536.22.1234",
        "v1.2 ssn 536-22-1234",
    ] {
        assert_eq!(
            rule_hits(&text(t), "us-ssn"),
            1,
            "{t}: {:?}",
            hits(&text(t))
        );
    }
    let s = fhir(r#"{"resourceType":"Observation","note":[{"text":"SSN 536.22.1234."}]}"#);
    assert_eq!(rule_hits(&s, "us-ssn"), 1, "{:?}", hits(&s));
}
