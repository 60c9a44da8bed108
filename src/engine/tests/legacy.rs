//! Issue 14, engine part: legacy (non-FHIR) JSON key names as context, short labelled values,
//! base64 inside labelled fields, and inputs that used to cost super-linear work.

use super::*;

#[test]
fn split_key_names_carry_context() {
    for (doc, rule) in [
        (
            r#"{"member":{"SocialSecurityNumber":"536221234"}}"#,
            "us-ssn",
        ),
        (r#"{"member":{"SocialSecurityNumber":536221234}}"#, "us-ssn"),
        (
            r#"{"patient_social_security_number":"536221234"}"#,
            "us-ssn",
        ),
        (r#"{"PATIENT-SOCIAL-SECURITY":536221234}"#, "us-ssn"),
        (r#"{"member.SocialSecurityNumber":"536221234"}"#, "us-ssn"),
        (r#"{"ptSSN":536221234}"#, "us-ssn"),
        (r#"{"mrn":"00481234"}"#, "mrn-keyword"),
        (r#"{"medicalRecordNumber":"A7781234"}"#, "mrn-keyword"),
        (r#"{"MEDICAL_RECORD_NUMBER":4857211}"#, "mrn-keyword"),
        (r#"{"member":{"dateOfBirth":"1961-06-15"}}"#, "dob-keyword"),
        (r#"{"BirthDate":"06/15/1961"}"#, "dob-keyword"),
        (r#"{"medicareId":"1EG4TE5MK73"}"#, "us-mbi"),
        (r#"{"taxId":"911701234"}"#, "us-itin"),
        (
            r#"{"field":"SocialSecurityNumber","value":"536221234"}"#,
            "us-ssn",
        ),
    ] {
        let s = json(doc);
        assert_eq!(rule_hits(&s, rule), 1, "{doc}: {:?}", hits(&s));
    }
}

#[test]
fn split_keys_do_not_invent_context() {
    for doc in [
        r#"{"member":{"SecurityGroupId":"536221234"}}"#,
        r#"{"socialMediaHandle":"536221234"}"#,
        r#"{"orderNumber":536221234}"#,
        r#"{"mrnVersion":"1.0"}"#,
        r#"{"mrnCount":12}"#,
        r#"{"dateOfService":"2023-06-15"}"#,
        r#"{"resourceType":"Patient","birthDate":"1961-06-15"}"#,
        // A conformance resource named for an identifier is not that identifier.
        r#"{"resourceType":"SearchParameter","name":"birthdate","date":"2019-11-01"}"#,
        // Regression (issue 14): was flagged; a resource's own `type` is not its date's label.
        r#"{"resourceType":"StructureDefinition","type":"Patient.birthDate","date":"2019-11-01"}"#,
        r#"{"resourceType":"Patient","_birthDate":{"extension":[{"valueDateTime":"1961-06-15T10:00:00Z"}]}}"#,
    ] {
        let s = json(doc);
        let h: Vec<_> = hits(&s)
            .into_iter()
            .filter(|(r, _, _)| !r.starts_with("fhir-"))
            .collect();
        assert!(h.is_empty(), "{doc}: {h:?}");
    }
}

/// Regression (issue 14): was `mrn-keyword` firing on `MRN: 1.0` and other labels followed by
/// a version, a count or a date.
#[test]
fn labelled_values_need_a_record_number_shape() {
    for t in [
        "MRN: 1.0",
        "MRN v2.1 schema",
        "chart # 12",
        "MRN 2024-01-15",
        "MRN: 0000000",
    ] {
        assert_eq!(rule_hits(&text(t), "mrn-keyword"), 0, "{t}");
    }
    for t in [
        "MRN: 00481234",
        "chart # A-778123",
        "medical record number 4857211",
    ] {
        assert_eq!(rule_hits(&text(t), "mrn-keyword"), 1, "{t}");
    }
}

/// Class 6: a base64-wrapped bare identifier counts when the carrier labels it (the key, or a
/// sibling `type`/`system`/`name`), and not otherwise, exactly like the plain value.
#[test]
fn base64_bare_identifier_needs_a_label_from_the_carrier() {
    let v = b64std(b"536221234");
    for doc in [
        format!(r#"{{"ssn":"{v}"}}"#),
        format!(r#"{{"SocialSecurityNumber":"{v}"}}"#),
        format!(r#"{{"type":"SSN","value":"{v}"}}"#),
        format!(r#"{{"field":"patient_ssn","value":"{v}"}}"#),
    ] {
        let s = json(&doc);
        assert_eq!(rule_hits(&s, "us-ssn"), 1, "{doc}: {:?}", hits(&s));
    }
    for doc in [
        format!(r#"{{"x":"{v}"}}"#),
        format!(r#"{{"payload":"{v}"}}"#),
        format!(r#"{{"type":"order","value":"{v}"}}"#),
    ] {
        let s = json(&doc);
        assert_eq!(rule_hits(&s, "us-ssn"), 0, "{doc}: {:?}", hits(&s));
    }
    // A delimited SSN needs no label, wrapped or not.
    let s = json(&format!(r#"{{"x":"{}"}}"#, b64std(b"536-22-1234")));
    assert_eq!(rule_hits(&s, "us-ssn"), 1, "{:?}", hits(&s));
}

/// Regression (issue 14): was a `Vec::contains` per encrypted value (quadratic: 40,000 values
/// took 1.5 s). 20,000 distinct values must all be listed once, in order.
#[test]
fn many_encrypted_values_are_listed_once_each() {
    let n = 20_000;
    let mut doc = String::from("{\"v\":[");
    for i in 0..n {
        if i > 0 {
            doc.push(',');
        }
        doc.push_str(&format!(
            "\"vault:v1:{}\"",
            b64std(format!("ciphertext-{i:06}").as_bytes())
        ));
    }
    doc.push_str("]}");
    let s = ok(body(Some("application/json"), None, doc.as_bytes()));
    let unique: std::collections::HashSet<&String> = s.encrypted.iter().collect();
    assert_eq!(unique.len(), s.encrypted.len(), "duplicates listed");
    assert!(s.encrypted.len() >= n, "{}", s.encrypted.len());
}

/// Regression (issue 14): was a `windows().position()` boundary search, O(body × boundary):
/// a 60 KB boundary over a 4 MB body was 240 G byte comparisons in the worst case.
#[test]
fn long_multipart_boundary_is_searched_linearly() {
    let boundary = "b".repeat(60_000);
    // Near-misses of the delimiter everywhere: every position starts a long partial match.
    let filler = format!("--{}", "b".repeat(59_999)).repeat(60);
    let body_text = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\n{filler} SSN 536-22-1234\r\n--{boundary}--\r\n"
    );
    let ct = format!("multipart/form-data; boundary={boundary}");
    let s = ok(body(Some(&ct), None, body_text.as_bytes()));
    assert_eq!(rule_hits(&s, "us-ssn"), 1, "{:?}", hits(&s));
}

#[test]
fn many_parts_and_many_keys_are_scanned() {
    let mut b = String::new();
    for i in 0..10_000 {
        b.push_str(&format!(
            "--B\r\nContent-Disposition: form-data; name=\"f{i}\"\r\n\r\nx\r\n"
        ));
    }
    b.push_str("--B\r\nContent-Disposition: form-data; name=\"ssn\"\r\n\r\n536221234\r\n--B--\r\n");
    let s = ok(body(
        Some("multipart/form-data; boundary=B"),
        None,
        b.as_bytes(),
    ));
    assert_eq!(rule_hits(&s, "us-ssn"), 1, "{:?}", hits(&s));
    // 100k keys in one object, many of them repeated `type` siblings.
    let mut d = String::from("{");
    for i in 0..100_000 {
        d.push_str(&format!("\"type\":\"t\",\"k{i}\":\"v\","));
    }
    d.push_str("\"ssn\":536221234}");
    let s = json(&d);
    assert_eq!(rule_hits(&s, "us-ssn"), 1, "{:?}", hits(&s));
}
