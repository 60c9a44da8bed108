//! Content encodings (gzip, deflate, br, zstd), decompression bombs, unknown and corrupt
//! encodings, and UTF-16 bodies.

use super::*;

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
