//! Envelopes: JWE (compact and JSON) counts as encrypted, JWS payloads are read, fake and
//! marked envelopes are scanned.

use super::*;

#[test]
fn jwe_is_encrypted_not_scanned() {
    let b = format!(
        r#"{{"resourceType":"Patient","identifier":[{{"system":"http://hl7.org/fhir/sid/us-ssn","value":"{}"}}]}}"#,
        jwe()
    );
    let s = json(&b);
    assert!(s.findings.is_empty(), "{:?}", hits(&s));
    assert_eq!(s.encrypted, vec!["body:/identifier/0/value".to_string()]);
    // Not exempt: a dotted value that merely looks like a token.
    let s = json(r#"{"value":"aGVsbG8.d29ybGQ.Zm9v.536-22-1234.YmF6"}"#);
    assert!(has(&s, "us-ssn", "body:/value", "json"), "{:?}", hits(&s));
    assert!(s.encrypted.is_empty());
}

#[test]
fn fake_jwe_with_plaintext_ciphertext_is_scanned() {
    let fake = format!(
        "{}..{}.{}.{}",
        b64(br#"{"alg":"dir","enc":"A256GCM"}"#),
        b64(&[1u8; 12]),
        b64(b"patient SSN 536-22-1234"),
        b64(&[2u8; 16])
    );
    let s = json(&format!(r#"{{"x":"{fake}"}}"#));
    assert!(s.encrypted.is_empty());
    assert!(
        has(&s, "us-ssn", "body:/x", "json>base64"),
        "{:?}",
        hits(&s)
    );
}

#[test]
fn jws_payload_is_scanned() {
    let token = jws(r#"{"sub":"p1","ssn":"536-22-1234"}"#);
    let s = json(&format!(r#"{{"token":"{token}"}}"#));
    assert!(
        has(&s, "us-ssn", "body:/token#jws/ssn", "json>jws>json"),
        "{:?}",
        hits(&s)
    );
    let token = jws("free text SSN 536221234");
    let s = json(&format!(r#"{{"token":"{token}"}}"#));
    assert!(
        has(&s, "us-ssn", "body:/token#jws@14", "json>jws>text"),
        "{:?}",
        hits(&s)
    );
    // Bearer tokens in headers.
    let value = format!("Bearer {}", jws(r#"{"ssn":"536-22-1234"}"#));
    let s = scan(Part::Header {
        name: "authorization",
        value: value.as_bytes(),
    });
    assert!(
        has(&s, "us-ssn", "header:authorization#jws/ssn", "jws>json"),
        "{:?}",
        hits(&s)
    );
    let value = format!("Bearer {}", jwe());
    let s = scan(Part::Header {
        name: "authorization",
        value: value.as_bytes(),
    });
    assert!(s.findings.is_empty());
    assert_eq!(s.encrypted, vec!["header:authorization".to_string()]);
    let token = jwe();
    let s = scan(Part::Header {
        name: "x-patient-token",
        value: token.as_bytes(),
    });
    assert_eq!(s.encrypted, vec!["header:x-patient-token".to_string()]);
    // Query parameters and form fields are classified too.
    let s = scan(Part::Query(&format!("ssn={token}&q=1")));
    assert!(s.findings.is_empty());
    assert_eq!(s.encrypted, vec!["query:ssn".to_string()]);
}

#[test]
fn nested_jws_beyond_the_layer_limit_fails_closed() {
    let mut token = jws(r#"{"ssn":"536-22-1234"}"#);
    for _ in 0..3 {
        token = jws(&format!(r#"{{"t":"{token}"}}"#));
    }
    // Four levels of JWS: within the default limit of 4.
    let s = json(&format!(r#"{{"t":"{token}"}}"#));
    assert!(
        has(
            &s,
            "us-ssn",
            "body:/t#jws/t#jws/t#jws/t#jws/ssn",
            "json>jws>json>jws>json>jws>json>jws>json"
        ),
        "{:?}",
        hits(&s)
    );
    let token = jws(&format!(r#"{{"t":"{token}"}}"#));
    let r = body(
        Some("application/json"),
        None,
        format!(r#"{{"t":"{token}"}}"#).as_bytes(),
    );
    assert!(matches!(r, Err(InspectError::TooManyLayers)), "{r:?}");
}

#[test]
fn jwe_json_serialisation_is_reported_encrypted() {
    let doc = r#"{"ssn":{"protected":"eyJlbmMiOiJBMjU2R0NNIn0","iv":"AAAAAAAAAAAAAAAA","ciphertext":"q83vEjRWeJA","tag":"AAAAAAAAAAAAAAAAAAAAAA"}}"#;
    let s = json(doc);
    assert_eq!(s.encrypted, vec!["body:/ssn".to_string()]);
    assert!(json(r#"{"ssn":{"iv":"x"}}"#).encrypted.is_empty());
}

#[test]
fn pgp_armor_is_reported_but_still_scanned() {
    let fake = "-----BEGIN PGP MESSAGE-----\n\nSSN 536-22-1234\n-----END PGP MESSAGE-----";
    let s = json(&format!(
        r#"{{"note":{}}}"#,
        serde_json::to_string(fake).expect("json")
    ));
    assert_eq!(s.encrypted, vec!["body:/note".to_string()]);
    assert!(
        rule_hits(&s, "us-ssn") > 0,
        "looking encrypted is no evasion"
    );
}
