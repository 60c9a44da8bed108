//! FHIR resources with the default pack: identifiers by system and type, telecom, context
//! words, base64 attachments.

use super::*;

#[test]
fn fhir_npi_identifier() {
    let coverage = r#"{"resourceType":"Coverage","identifier":[{"system":"http://hl7.org/fhir/sid/us-npi","value":"1234567893"}]}"#;
    let s = body(Some("application/fhir+json"), None, coverage.as_bytes()).expect("scans");
    assert!(
        has(&s, "us-npi", "body:/identifier/0/value", "json"),
        "{:?}",
        hits(&s)
    );
    // A provider's own NPI in a Practitioner resource is excepted (business data).
    let practitioner = coverage.replace("Coverage", "Practitioner");
    let s = body(Some("application/fhir+json"), None, practitioner.as_bytes()).expect("scans");
    assert_eq!(rule_hits(&s, "us-npi"), 0, "{:?}", hits(&s));
    // Same number without provider context: not an NPI finding.
    let s = json(r#"{"resourceType":"Observation","id":"1234567893"}"#);
    assert_eq!(rule_hits(&s, "us-npi"), 0, "{:?}", hits(&s));
    // Fails Luhn (FHIR example data).
    let s = json(
        r#"{"identifier":[{"system":"http://hl7.org/fhir/sid/us-npi","value":"1122334499"}]}"#,
    );
    assert_eq!(rule_hits(&s, "us-npi"), 0);
}

#[test]
fn fhir_ssn_identifier_by_system_and_type() {
    let s =
        json(r#"{"identifier":[{"system":"http://hl7.org/fhir/sid/us-ssn","value":"536221234"}]}"#);
    assert!(
        has(&s, "us-ssn", "body:/identifier/0/value", "json"),
        "{:?}",
        hits(&s)
    );
    let s = json(
        r#"{"identifier":[{"type":{"coding":[{"code":"SS"}],"text":"Social Security number"},"value":"536221234"}]}"#,
    );
    assert!(
        has(&s, "us-ssn", "body:/identifier/0/value", "json"),
        "{:?}",
        hits(&s)
    );
    let s =
        json(r#"{"identifier":[{"system":"urn:oid:2.16.840.1.113883.4.1","value":"536221234"}]}"#);
    assert!(
        has(&s, "us-ssn", "body:/identifier/0/value", "json"),
        "{:?}",
        hits(&s)
    );
    let s =
        json(r#"{"identifier":[{"system":"http://hospital.example/mrn","value":"536221234"}]}"#);
    assert_eq!(rule_hits(&s, "us-ssn"), 0);
}

#[test]
fn email_in_telecom() {
    let s = json(r#"{"telecom":[{"system":"email","value":"jane.roe@synthetic-clinic.org"}]}"#);
    assert!(
        has(&s, "email", "body:/telecom/0/value", "json"),
        "{:?}",
        hits(&s)
    );
    let s = json(r#"{"telecom":[{"system":"email","value":"someone@example.com"}]}"#);
    assert!(s.findings.is_empty(), "{:?}", hits(&s));
    assert!(text("reply to jane.roe@synthetic-clinic.org")
        .findings
        .is_empty());
    assert!(has(
        &text("email jane.roe@synthetic-clinic.org"),
        "email",
        "text@6",
        ""
    ));
}

#[test]
fn phone_needs_context() {
    assert!(text("Reference 404-321-7788 was filed").findings.is_empty());
    let s = json(r#"{"telecom":[{"system":"phone","value":"(404) 321-7788"}]}"#);
    assert!(
        has(&s, "us-phone", "body:/telecom/0/value", "json"),
        "{:?}",
        hits(&s)
    );
    let s = json(r#"{"patient":{"homePhone":"404.321.7788"}}"#);
    assert!(
        has(&s, "us-phone", "body:/patient/homePhone", "json"),
        "{:?}",
        hits(&s)
    );
    let s = json(r#"{"telecom":[{"system":"phone","value":"212-555-0143"}]}"#);
    assert!(s.findings.is_empty());
}

#[test]
fn fhir_attachment_and_binary_data_are_decoded() {
    let note = b64std(b"Patient Jane Doe, SSN 536-22-1234, follow up in 2 weeks.");
    let doc = format!(
        r#"{{"resourceType":"DocumentReference","content":[{{"attachment":{{"contentType":"text/plain","data":"{note}"}}}}]}}"#
    );
    let s = json(&doc);
    assert!(
        has(
            &s,
            "us-ssn",
            "body:/content/0/attachment/data#base64@22",
            "json>base64>text"
        ),
        "{:?}",
        hits(&s)
    );
    let bin = format!(
        r#"{{"resourceType":"Binary","contentType":"application/json","data":"{}"}}"#,
        b64std(br#"{"ssn":"536-22-1234"}"#)
    );
    let s = json(&bin);
    assert!(
        has(&s, "us-ssn", "body:/data#base64/ssn", "json>base64>json"),
        "{:?}",
        hits(&s)
    );
    let clean = format!(
        r#"{{"resourceType":"Binary","contentType":"text/plain","data":"{}"}}"#,
        b64std(b"Follow up in 2 weeks. Order 536221234.")
    );
    assert!(json(&clean).findings.is_empty());
}

/// An identifier system whose OID only extends the SSN system's (`2.16.840.1.113883.4.1`) by
/// more digits (`…4.10`, `…4.14`: other registries) is not the SSN system: hotwords match on
/// word breaks, and a digit after the hotword's last digit is none. The fast path and the full
/// walk agree.
#[test]
fn longer_oids_are_not_the_ssn_system() {
    let doc = |sys: &str| {
        format!(
            r#"{{"resourceType":"Patient","identifier":[{{"system":"{sys}","value":"536221234"}}]}}"#
        )
    };
    for (sys, want) in [
        ("urn:oid:2.16.840.1.113883.4.10", 0),
        ("urn:oid:2.16.840.1.113883.4.14", 0),
        ("urn:oid:2.16.840.1.113883.4.1", 1),
    ] {
        let (fast, full) = scans_with(engine(), "application/fhir+json", &doc(sys));
        assert_eq!(rule_hits(&full, "fhir-identifier-ssn"), want, "{sys}");
        assert_eq!(rule_hits(&full, "us-ssn"), want, "{sys}");
        assert_eq!(hits(&fast), hits(&full), "{sys}");
    }
}
