//! End-to-end tests of the engine with the default rule pack (`rules/`). All data is synthetic
//! or a published specification example (see the detection note §4).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use super::classify::tests::{b64, jwe, jws};
use super::*;

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
        match RuleSet::load_dir(&dir) {
            Ok(set) => Engine::new(Arc::new(set)),
            Err(e) => panic!("default pack: {e}"),
        }
    })
}

fn scan(part: Part<'_>) -> Scan {
    match engine().scan(&part, &Limits::default()) {
        Ok(s) => s,
        Err(e) => panic!("scan failed: {e}"),
    }
}

fn text(t: &str) -> Scan {
    scan(Part::Text(t))
}

fn body(ct: Option<&str>, enc: Option<&str>, bytes: &[u8]) -> Result<Scan, InspectError> {
    engine().scan(
        &Part::Body {
            content_type: ct,
            content_encoding: enc,
            bytes,
        },
        &Limits::default(),
    )
}

fn json(b: &str) -> Scan {
    match body(Some("application/json"), None, b.as_bytes()) {
        Ok(s) => s,
        Err(e) => panic!("scan failed: {e}"),
    }
}

/// (rule, location, chain) triples, for compact assertions.
fn hits(s: &Scan) -> Vec<(String, String, String)> {
    s.findings
        .iter()
        .map(|f| {
            (
                f.rule_id.clone(),
                f.location.clone(),
                f.decode_chain.join(">"),
            )
        })
        .collect()
}

fn has(s: &Scan, rule: &str, location: &str, chain: &str) -> bool {
    hits(s)
        .iter()
        .any(|(r, l, c)| r == rule && l == location && c == chain)
}

fn rule_hits(s: &Scan, rule: &str) -> usize {
    s.findings.iter().filter(|f| f.rule_id == rule).count()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).expect("write");
    e.finish().expect("finish")
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).expect("write");
    e.finish().expect("finish")
}

fn brotli(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
        w.write_all(data).expect("write");
    }
    out
}

fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(data, 3).expect("zstd")
}

const SSN_JSON: &str = r#"{"resourceType":"Patient","ssn":"536-22-1234"}"#;
const CLEAN_JSON: &str = r#"{"resourceType":"Patient","ssn":"redacted"}"#;

#[test]
fn engine_is_send_sync_and_cheap_to_clone() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Engine>();
    assert_send_sync::<RuleSet>();
    let e = engine().clone();
    assert_eq!(e.rules().len(), engine().rules().len());
}

#[test]
fn json_ssn_at_pointer() {
    let s = json(r#"{"ssn":"536-22-1234"}"#);
    assert!(has(&s, "us-ssn", "body:/ssn", "json"), "{:?}", hits(&s));
    assert_eq!(s.findings.len(), 1, "one finding per (rule, location)");
    let f = s.findings.first().expect("finding");
    assert_eq!(f.category, Category::G);
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
fn content_encodings() {
    let raw = SSN_JSON.as_bytes();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("gzip", gzip(raw), "gzip>json"),
        ("x-gzip", gzip(raw), "gzip>json"),
        ("deflate", zlib(raw), "deflate>json"),
        ("br", brotli(raw), "br>json"),
        ("zstd", zstd(raw), "zstd>json"),
        ("gzip, br", brotli(&gzip(raw)), "br>gzip>json"),
        ("identity, zstd,gzip", gzip(&zstd(raw)), "gzip>zstd>json"),
    ];
    for (enc, bytes, chain) in cases {
        let s = body(Some("application/json"), Some(enc), &bytes).expect(enc);
        assert!(
            has(&s, "us-ssn", "body:/ssn", chain),
            "{enc}: {:?}",
            hits(&s)
        );
        let clean = gzip(CLEAN_JSON.as_bytes());
        let s = body(Some("application/json"), Some("gzip"), &clean).expect("clean");
        assert!(s.findings.is_empty());
    }
}

#[test]
fn decompression_bomb_is_refused_without_allocating_it() {
    // 50 MB of zeros, compressed in a streaming fashion (the test never holds 50 MB either).
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..50 {
        enc.write_all(&chunk).expect("write");
    }
    let bomb = enc.finish().expect("finish");
    assert!(bomb.len() < 200_000);
    let r = body(Some("application/json"), Some("gzip"), &bomb);
    assert!(
        matches!(
            r,
            Err(InspectError::ExpansionRatio { limit: 100 } | InspectError::DecodedTooLarge { .. })
        ),
        "{r:?}"
    );
    // With a generous ratio the absolute cap stops it.
    let limits = Limits {
        max_expansion_ratio: 1_000_000,
        ..Limits::default()
    };
    let r = engine().scan(
        &Part::Body {
            content_type: None,
            content_encoding: Some("gzip"),
            bytes: &bomb,
        },
        &limits,
    );
    assert!(
        matches!(r, Err(InspectError::DecodedTooLarge { limit }) if limit == 16 << 20),
        "{r:?}"
    );
    // Small, highly compressible bodies are fine (below the 1 MiB floor).
    let small = gzip(&vec![b' '; 500_000]);
    assert!(body(None, Some("gzip"), &small).is_ok());
}

#[test]
fn unknown_and_corrupt_encodings() {
    match body(None, Some("gzip, compress"), b"x") {
        Err(InspectError::UnsupportedEncoding { encoding }) => assert_eq!(encoding, "compress"),
        other => panic!("{other:?}"),
    }
    let mut g = gzip(SSN_JSON.as_bytes());
    if let Some(b) = g.get_mut(12) {
        *b ^= 0xFF;
    }
    g.truncate(g.len() - 4);
    assert!(matches!(
        body(None, Some("gzip"), &g),
        Err(InspectError::Corrupt { encoding: "gzip" })
    ));
    assert!(matches!(
        body(None, Some("br"), b"definitely not brotli \x00\x01"),
        Err(InspectError::Corrupt { encoding: "br" })
    ));
    // The error message never echoes the header.
    let e = body(None, Some("536-22-1234"), b"x").expect_err("unsupported");
    assert_eq!(e.to_string(), "unsupported content-encoding");
}

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
fn form_bodies_and_queries() {
    let form = Some("application/x-www-form-urlencoded");
    let s = body(form, None, b"a=1&ssn=536%2D22%2D1234").expect("scans");
    assert!(has(&s, "us-ssn", "body:form:ssn", "form"), "{:?}", hits(&s));
    let s = body(form, None, b"note=SSN+536+22+1234").expect("scans");
    assert!(
        has(&s, "us-ssn", "body:form:note", "form"),
        "{:?}",
        hits(&s)
    );
    let s = body(form, None, b"ssn=536%252D22%252D1234").expect("scans");
    assert!(
        has(&s, "us-ssn", "body:form:ssn", "form>percent"),
        "{:?}",
        hits(&s)
    );
    assert!(body(form, None, b"order=536221234&x=y")
        .expect("scans")
        .findings
        .is_empty());

    let s = scan(Part::Query("ssn=536%2D22%2D1234"));
    assert!(has(&s, "us-ssn", "query:ssn", "query"), "{:?}", hits(&s));
    let s = scan(Part::Query("q=SSN+536+22+1234&page=2"));
    assert!(has(&s, "us-ssn", "query:q", "query"), "{:?}", hits(&s));
    let s = scan(Part::Query("ssn=536%252D22%252D1234"));
    assert!(
        has(&s, "us-ssn", "query:ssn", "query>percent"),
        "{:?}",
        hits(&s)
    );
    // `%3D` before the digits must not defeat boundaries.
    let s = scan(Part::Query("filter=ssn%253D536%252D22%252D1234"));
    assert!(
        has(&s, "us-ssn", "query:filter", "query>percent"),
        "{:?}",
        hits(&s)
    );
    assert!(scan(Part::Query("order=536221234&page=2"))
        .findings
        .is_empty());
}

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
fn headers_use_their_name_as_context() {
    let s = scan(Part::Header {
        name: "x-patient-ssn",
        value: b"536221234",
    });
    assert!(
        has(&s, "us-ssn", "header:x-patient-ssn", ""),
        "{:?}",
        hits(&s)
    );
    let s = scan(Part::Header {
        name: "x-request-id",
        value: b"536221234",
    });
    assert!(s.findings.is_empty());
    let s = scan(Part::Header {
        name: "referer",
        value: b"https://portal/search?ssn=536%2D22%2D1234",
    });
    assert!(
        has(&s, "us-ssn", "header:referer", "percent"),
        "{:?}",
        hits(&s)
    );
}

#[test]
fn utf16_bodies() {
    let le: Vec<u8> =
        r#"{"ssn":"536-22-1234"}"#.encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
    let s = body(Some("application/json"), None, &le).expect("scans");
    assert!(
        has(&s, "us-ssn", "body:/ssn", "utf16>json"),
        "{:?}",
        hits(&s)
    );
}

/// A UTF-16 byte-order mark (or a UTF-16 charset) in front of plain ASCII must not hide it:
/// decoded as UTF-16 it is noise, but an upstream that ignores the mark reads the SSN.
#[test]
fn utf16_claims_on_ascii_bodies_do_not_hide_phi() {
    for bom in [&b"\xFF\xFE"[..], b"\xFE\xFF"] {
        let mut b = bom.to_vec();
        b.extend_from_slice(br#"{"ssn":"536-22-1234"}"#);
        let s = body(Some("application/json"), None, &b).expect("scans");
        assert!(has(&s, "us-ssn", "body:/ssn", "json"), "{:?}", hits(&s));
        let s = body(Some("text/plain"), None, &b).expect("scans");
        assert_eq!(rule_hits(&s, "us-ssn"), 1, "{:?}", hits(&s));
    }
    let s = body(
        Some("text/plain; charset=utf-16le"),
        None,
        b"patient SSN 536-22-1234 on file",
    )
    .expect("scans");
    assert_eq!(rule_hits(&s, "us-ssn"), 1, "{:?}", hits(&s));
    // A real UTF-16 body with a BOM is read once, as UTF-16 (no duplicate findings).
    let mut le = b"\xFF\xFE".to_vec();
    le.extend(r#"{"ssn":"536-22-1234"}"#.encode_utf16().flat_map(|u| u.to_le_bytes()));
    let s = body(Some("application/json"), None, &le).expect("scans");
    assert!(
        has(&s, "us-ssn", "body:/ssn", "utf16>json"),
        "{:?}",
        hits(&s)
    );
    assert_eq!(rule_hits(&s, "us-ssn"), 1, "{:?}", hits(&s));
}

#[test]
fn findings_are_ordered_and_deterministic() {
    let t = "SSN 536-22-1234 and ssn 536-22-1235; card 4526 0181 5908 3012";
    let a = hits(&text(t));
    let b = hits(&text(t));
    assert_eq!(a, b);
    let locs: Vec<&str> = a.iter().map(|(_, l, _)| l.as_str()).collect();
    assert_eq!(locs, ["text@4", "text@24", "text@42"], "{a:?}");
    let s = json(
        r#"{"a":[{"ssn":"536-22-1234"},{"x":1},{"x":2},{"x":3},{"x":4},{"x":5},{"x":6},{"x":7},{"x":8},{"x":9},{"ssn":"536-22-1235"}]}"#,
    );
    let locs: Vec<String> = s.findings.iter().map(|f| f.location.clone()).collect();
    assert_eq!(locs, ["body:/a/0/ssn", "body:/a/10/ssn"]);
}

/// A small custom rule set for engine mechanics independent of the default pack.
fn custom(yaml: &str) -> Engine {
    match RuleSet::from_sources(&[(PathBuf::from("custom.yaml"), yaml.to_string())]) {
        Ok(set) => Engine::new(Arc::new(set)),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn rejected_candidates_resume_one_character_later() {
    let e = custom(
        "rules:
  - id: overlap
    description: d
    category: G
    severity: low
    patterns:
      - regex: '[0-9]{9}'
        score: 0.9
    validators: [ssn]
",
    );
    // '000536221' fails (area 000); the overlapping '005362212' is valid.
    let s = e
        .scan(&Part::Text("x0005362212"), &Limits::default())
        .expect("scans");
    assert_eq!(s.findings.len(), 1, "{:?}", hits(&s));
}

#[test]
fn where_mode_and_keywords() {
    let e = custom(
        "rules:
  - id: body-only
    description: d
    category: R
    severity: low
    mode: monitor
    where: [body, 'header:x-ssn']
    patterns:
      - regex: '(?P<value>[0-9]{3}-[0-9]{2}-[0-9]{4})'
        score: 0.9
        boundary: digit
    validators: [ssn]
  - id: needs-keyword
    description: d
    category: R
    severity: low
    keywords: [chart]
    patterns:
      - regex: 'MRN[0-9]{6}'
        score: 0.9
",
    );
    let l = Limits::default();
    let s = e.scan(&Part::Query("x=536-22-1234"), &l).expect("scans");
    assert!(s.findings.is_empty());
    let s = e
        .scan(
            &Part::Body {
                content_type: None,
                content_encoding: None,
                bytes: b"536-22-1234",
            },
            &l,
        )
        .expect("scans");
    assert_eq!(s.findings.first().map(|f| f.mode), Some(Mode::Monitor));
    let header = |name| {
        e.scan(
            &Part::Header {
                name,
                value: b"536-22-1234",
            },
            &l,
        )
        .expect("scans")
        .findings
        .len()
    };
    assert_eq!(header("x-ssn"), 1);
    assert_eq!(header("x-other"), 0);
    assert_eq!(
        e.scan(&Part::Text("MRN123456"), &l)
            .expect("scans")
            .findings
            .len(),
        0
    );
    assert_eq!(
        e.scan(&Part::Text("Chart MRN123456"), &l)
            .expect("scans")
            .findings
            .len(),
        1
    );
    // The keyword also counts when it is only in the field context.
    let s = e
        .scan(
            &Part::Body {
                content_type: Some("application/json"),
                content_encoding: None,
                bytes: br#"{"chart":"MRN123456"}"#,
            },
            &l,
        )
        .expect("scans");
    assert_eq!(s.findings.len(), 1);
}

#[test]
fn hostile_inputs_do_not_panic() {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        usize::try_from(x % 1_000_003).unwrap_or(0)
    };
    let alphabet: &[u8] =
        b"0123456789-. %2D+@{}[]\":,\\u5a=&#eyJ.\xef\xbc\x95\xd9\xa5\xe2\x80\x8b\xff\x00\x1f\x8b";
    let l = Limits::default();
    for len in [0usize, 1, 2, 3, 7, 31, 100, 1000] {
        for _ in 0..40 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    alphabet
                        .get(next() % alphabet.len())
                        .copied()
                        .unwrap_or(b'x')
                })
                .collect();
            for ct in [
                None,
                Some("application/json"),
                Some("application/x-www-form-urlencoded"),
                Some("text/plain; charset=utf-16le"),
            ] {
                for enc in [
                    None,
                    Some("gzip"),
                    Some("deflate"),
                    Some("br"),
                    Some("zstd"),
                ] {
                    let _ = body(ct, enc, &bytes);
                }
            }
            let s = String::from_utf8_lossy(&bytes);
            let _ = engine().scan(&Part::Query(&s), &l);
            let _ = engine().scan(&Part::Text(&s), &l);
            let _ = engine().scan(
                &Part::Header {
                    name: "authorization",
                    value: &bytes,
                },
                &l,
            );
        }
    }
    // Garbage rule files are errors, not panics.
    for text in [
        "",
        "rules:",
        "rules: [1]",
        "rules:\n  - id: [",
        "\u{0}",
        "rules: {a: b}",
    ] {
        assert!(RuleSet::from_sources(&[(PathBuf::from("g.yaml"), text.to_string())]).is_err());
    }
}

#[test]
fn ssn_in_the_url_path_is_found_and_plain_paths_are_not() {
    let s = scan(Part::Path("/patients/by-ssn/536-22-1234"));
    assert!(s.findings.iter().any(|f| f.rule_id == "us-ssn"), "{s:?}");
    assert!(s.findings.iter().all(|f| f.location.starts_with("path")));
    let s = scan(Part::Path("/patients/by-ssn/536%252D22%252D1234"));
    assert!(s.findings.iter().any(|f| f.rule_id == "us-ssn"), "{s:?}");
    let s = scan(Part::Path("/fhir/Observation/100000007/_history/2"));
    assert!(s.findings.is_empty(), "{s:?}");
}

// ---------------------------------------------------------------------------------------------
// Carriers added for issue 3: HL7 v2, multipart, XML references, heuristic base64, FHIR
// attachments, encrypted-field requirements, selectors, exceptions, explanations.

fn b64std(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn ok(r: Result<Scan, InspectError>) -> Scan {
    match r {
        Ok(s) => s,
        Err(e) => panic!("scan failed: {e}"),
    }
}

const ADT: &str = "MSH|^~\\&|ADT1|GOOD HEALTH HOSPITAL|GHH LAB|GHH|198808181126|SECURITY|ADT^A01^ADT_A01|MSG00001|P|2.5\r\
EVN|A01|200708181123\r\
PID|1||PATID1234^^^GHH^MR||EVERYMAN^ADAM^A^III||19610615|M||2106-3|2222 HOME STREET^^GREENSBORO^NC^27401-1020|GL|(555) 555-2004|(555)555-2004||S||PATID12345001^2^M10^ADT1^AN^A|536221234|987654^NC\r";

#[test]
fn hl7_pid19_is_found_with_its_field_label() {
    let s = ok(body(Some("x-application/hl7-v2+er7"), None, ADT.as_bytes()));
    assert!(
        has(&s, "us-ssn", "body:hl7:PID-19", "hl7"),
        "{:?}",
        hits(&s)
    );
    // Sniffed without a content type too.
    let s = ok(body(None, None, ADT.as_bytes()));
    assert!(
        has(&s, "us-ssn", "body:hl7:PID-19", "hl7"),
        "{:?}",
        hits(&s)
    );
    // Negative: the same message without PID-19 has no SSN finding (the 12-digit timestamps
    // and the message control id are not SSNs).
    let clean = ADT.replace("|536221234|", "||");
    let s = ok(body(
        Some("x-application/hl7-v2+er7"),
        None,
        clean.as_bytes(),
    ));
    assert_eq!(rule_hits(&s, "us-ssn"), 0, "{:?}", hits(&s));
}

#[test]
fn hl7_custom_delimiters_and_escapes() {
    // `#` as field separator, `$` as escape: declared in MSH, honoured.
    let msg =
        "MSH#*!$%#APP#FAC\rPID#1##X*^^^*MR##DOE*JANE##############$X3533362D32322D31323334$\r";
    let s = ok(body(Some("x-application/hl7-v2+er7"), None, msg.as_bytes()));
    assert!(
        has(&s, "us-ssn", "body:hl7:PID-19", "hl7>hl7-escape"),
        "{:?}",
        hits(&s)
    );
    // Negative: the escape decodes to something that is not an SSN.
    let msg = "MSH#*!$%#APP#FAC\rPID#1##X*^^^*MR##DOE*JANE##############$X414243$\r";
    let s = ok(body(Some("x-application/hl7-v2+er7"), None, msg.as_bytes()));
    assert_eq!(rule_hits(&s, "us-ssn"), 0, "{:?}", hits(&s));
    // `\F\` inside a field is the field separator, not a split.
    let msg = "MSH|^~\\&|A\rNTE|1||SSN 536\\F\\22\\F\\1234\r";
    let s = ok(body(Some("x-application/hl7-v2+er7"), None, msg.as_bytes()));
    assert_eq!(
        rule_hits(&s, "us-ssn"),
        0,
        "536|22|1234 is not an SSN shape"
    );
}

fn multipart(parts: &[(&str, &str)], preamble: &str) -> (String, Vec<u8>) {
    let boundary = "XyZ123boundary";
    let mut b = String::from(preamble);
    for (head, content) in parts {
        b.push_str(&format!("--{boundary}\r\n{head}\r\n\r\n{content}\r\n"));
    }
    b.push_str(&format!("--{boundary}--\r\n"));
    (
        format!("multipart/form-data; boundary=\"{boundary}\""),
        b.into_bytes(),
    )
}

#[test]
fn multipart_fields_and_transfer_encodings() {
    let (ct, b) = multipart(
        &[("Content-Disposition: form-data; name=\"ssn\"", "536221234")],
        "",
    );
    let s = ok(body(Some(&ct), None, &b));
    assert!(
        has(&s, "us-ssn", "body:multipart:ssn", "multipart"),
        "{:?}",
        hits(&s)
    );
    let note = b64std(b"Patient SSN 536-22-1234, seen today.");
    let (ct, b) = multipart(
        &[(
            "Content-Disposition: form-data; name=\"note\"; filename=\"n.txt\"\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64",
            &note,
        )],
        "",
    );
    let s = ok(body(Some(&ct), None, &b));
    assert!(
        hits(&s)
            .iter()
            .any(|(r, _, c)| r == "us-ssn" && c == "multipart>base64>text"),
        "{:?}",
        hits(&s)
    );
    let (ct, b) = multipart(
        &[(
            "Content-Disposition: form-data; name=\"q\"\r\nContent-Transfer-Encoding: quoted-printable",
            "SSN 536=2D22=2D=\r\n1234",
        )],
        "",
    );
    let s = ok(body(Some(&ct), None, &b));
    assert!(
        has(
            &s,
            "us-ssn",
            "body:multipart:q",
            "multipart>quoted-printable"
        ),
        "{:?}",
        hits(&s)
    );
    // Smuggled before the first boundary.
    let (ct, b) = multipart(
        &[("Content-Disposition: form-data; name=\"a\"", "x")],
        "SSN 536-22-1234\r\n",
    );
    let s = ok(body(Some(&ct), None, &b));
    assert!(rule_hits(&s, "us-ssn") > 0, "{:?}", hits(&s));
    // JSON part parsed as JSON.
    let (ct, b) = multipart(
        &[(
            "Content-Disposition: form-data; name=\"doc\"; filename=\"p.json\"\r\nContent-Type: application/fhir+json",
            r#"{"ssn":"536-22-1234"}"#,
        )],
        "",
    );
    let s = ok(body(Some(&ct), None, &b));
    assert!(
        has(&s, "us-ssn", "body:multipart:doc:/ssn", "multipart>json"),
        "{:?}",
        hits(&s)
    );
    // Negative: a clean multipart upload with order numbers.
    let (ct, b) = multipart(
        &[
            ("Content-Disposition: form-data; name=\"order\"", "536221234"),
            (
                "Content-Disposition: form-data; name=\"f\"; filename=\"a.txt\"\r\nContent-Transfer-Encoding: base64",
                &b64std(b"order 536221234 shipped"),
            ),
        ],
        "",
    );
    let s = ok(body(Some(&ct), None, &b));
    assert!(s.findings.is_empty(), "{:?}", hits(&s));
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

fn struct_engine() -> Engine {
    let fp = crate::engine::rules::value_fingerprint("1245-319-599");
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
    assert!(x.fingerprint.starts_with("hmac-sha256:"));
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
fn layering_overrides_and_disables_by_id() {
    let base = (
        PathBuf::from("default/a.yaml"),
        "rules:\n  - id: r1\n    description: d\n    category: G\n    severity: low\n    patterns:\n      - regex: 'abc'\n        score: 0.9\n  - id: r2\n    description: d\n    category: G\n    severity: low\n    patterns:\n      - regex: 'xyz'\n        score: 0.9\n".to_string(),
    );
    let site = (
        PathBuf::from("site/b.yaml"),
        "disable: [r2]\nrules:\n  - id: r1\n    override: true\n    description: site\n    category: G\n    severity: high\n    patterns:\n      - regex: 'def'\n        score: 0.9\n".to_string(),
    );
    let set = RuleSet::from_layers(&[vec![base.clone()], vec![site]]).expect("layers");
    assert_eq!(set.len(), 2);
    assert_eq!(set.get("r1").map(|r| r.severity), Some(Severity::High));
    assert_eq!(set.get("r2").map(|r| r.mode), Some(Mode::Off));
    let e = Engine::new(Arc::new(set));
    let s = ok(e.scan(&Part::Text("abc def xyz"), &Limits::default()));
    let ids: Vec<&str> = s.findings.iter().map(|f| f.rule_id.as_str()).collect();
    assert_eq!(ids, vec!["r1"]);
    // Shadowing without `override: true` is an error naming both places.
    let sneaky = (
        PathBuf::from("site/c.yaml"),
        "rules:\n  - id: r1\n    description: d\n    category: G\n    severity: low\n    patterns:\n      - regex: 'q'\n        score: 0.9\n".to_string(),
    );
    let err = RuleSet::from_layers(&[vec![base.clone()], vec![sneaky]])
        .expect_err("shadowing")
        .to_string();
    assert!(
        err.contains("site/c.yaml:2") && err.contains("override: true"),
        "{err}"
    );
    let bad = (
        PathBuf::from("site/d.yaml"),
        "disable: [nope]\n".to_string(),
    );
    let err = RuleSet::from_layers(&[vec![base], vec![bad]])
        .expect_err("unknown id")
        .to_string();
    assert!(
        err.contains("site/d.yaml:1") && err.contains("nope"),
        "{err}"
    );
}

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

/// Whether the whole-body clean check alone accepts `doc` (so the walk is skipped).
fn fast_path_clean(doc: &str) -> bool {
    let rules = engine().rules();
    let limits = Limits::default();
    let options = ScanOptions::default();
    let mut sc = scan::Scanner::new(
        rules,
        scan::PartKind::Body(Some("application/fhir+json")),
        None,
        &limits,
        &options,
    );
    sc.json_body_clean(doc)
}

/// (rule, location, chain) of a body scan with the whole-body clean check (default options) and
/// without it (explain mode always walks the document).
fn fast_and_full(doc: &str) -> (Scan, Vec<(String, String, String)>, Vec<String>) {
    let part = Part::Body {
        content_type: Some("application/fhir+json"),
        content_encoding: None,
        bytes: doc.as_bytes(),
    };
    let limits = Limits::default();
    let fast = match engine().scan(&part, &limits) {
        Ok(s) => s,
        Err(e) => panic!("scan failed: {e}"),
    };
    let full = match engine().scan_with(&part, &limits, &ScanOptions::default().explained(true)) {
        Ok(s) => s,
        Err(e) => panic!("scan failed: {e}"),
    };
    (fast, hits(&full), full.encrypted)
}

#[test]
fn whole_body_check_skips_clean_fhir() {
    let doc = clean_bundle(40);
    assert!(fast_path_clean(&doc), "clean bundle takes the fast path");
    let (fast, full, enc) = fast_and_full(&doc);
    assert!(fast.findings.is_empty() && full.is_empty() && enc.is_empty());
}

#[test]
fn whole_body_check_agrees_with_full_walk() {
    let clean = clean_bundle(3);
    let inject = |entry: &str| {
        let mut d = clean.clone();
        d.truncate(d.len() - 2);
        d.push(',');
        d.push_str(entry);
        d.push_str("]}");
        d
    };
    let jwe_token = jwe();
    let jws_token = jws(r#"{"ssn":"536-22-1234"}"#);
    let cases = [
        // PHI the plain rules find anywhere: strings, numbers, keys.
        inject(r#"{"note":"SSN 536-22-1234"}"#),
        inject(r#"{"n":536221234,"label":"ssn"}"#),
        // A multi-word hotword spanning two keys of the field context.
        inject(r#"{"security":{"social":536221234}}"#),
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
}
