use super::*;

fn kw(list: &[&[&str]]) -> KeywordIndex {
    KeywordIndex::new(
        &list
            .iter()
            .map(|r| r.iter().map(|s| s.to_string()).collect())
            .collect::<Vec<_>>(),
    )
}

#[test]
fn keywords_present_by_words() {
    let ix = kw(&[
        &["ip"],
        &["medical record", "mrn"],
        &["@"],
        &["vehicle"],
        &[".java:"],
        &[" "],
        &[],
    ]);
    let body = r#"{"Note":"The MEDICAL team","x":["Record","a@b","Main.java:12"]}"#.to_lowercase();
    let present: Vec<bool> = (0..8)
        .map(|r| ix.rule_present(r, |w| body.contains(w)))
        .collect();
    // `medical record` by its words, case-insensitively; a keyword of spaces only is never
    // ruled out, nor is a rule the index does not know; a rule without keywords never matches.
    assert_eq!(present, [false, true, true, false, true, true, false, true]);
    let body = r#"{"zip":"x"}"#;
    assert!(ix.rule_present(0, |w| body.contains(w)));
}

#[test]
fn grammar_is_validated() {
    for ok in [
        r#"{}"#,
        r#"[]"#,
        r#" {"a" : [1, -2.5, true, false, null, {"b":[]}]} "#,
        r#""s""#,
        "12",
    ] {
        assert!(profile(ok, 64, 0, true).is_some(), "{ok}");
    }
    for bad in [
        "",
        "{",
        "}",
        r#"{"a"}"#,
        r#"{"a":}"#,
        r#"{"a":1,}"#,
        r#"[1,]"#,
        r#"[1 2]"#,
        r#"{"a":1]"#,
        r#"[1}"#,
        r#"{1:2}"#,
        r#"{"a":1} x"#,
        r#"{"a":1}{}"#,
        "[tru]",
        "[nul]",
        "[01]",
        "[1.]",
        "[-]",
        "[1e5]",
        "[-0]",
        "[1.50]",
        "[1234567890123456789]",
        "[\"a\u{1}\"]",
        // Escapes other than the five the pass takes (`["a\"b"]` is accepted).
        r#"["a\u0041b"]"#,
        r#"["a\/b"]"#,
        r#"["\u0000"]"#,
        // What an accepted escape decodes to is checked as the walker sees it.
        r#"["100\n%41"]"#,
        r#"["\n-----BEGIN PGP MESSAGE-----"]"#,
        "[\"caf\u{e9}\"]",
        r#"["100%41"]"#,
        r#"["&#65;"]"#,
        r#"{"ciphertext":"x"}"#,
        r#"["eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln"]"#,
        r#"["am9obiBzbWl0aA=="]"#,
    ] {
        assert!(profile(bad, 64, 0, true).is_none(), "{bad:?}");
    }
    // Depth: the limit, and serde_json's own limit, are respected.
    let deep = format!("{}{}", "[".repeat(10), "]".repeat(10));
    assert!(profile(&deep, 64, 0, true).is_some());
    assert!(profile(&deep, 10, 0, true).is_none());
    let deeper = format!("{}{}", "[".repeat(120), "]".repeat(120));
    assert!(profile(&deeper, 1000, 0, true).is_none());
}

#[test]
fn string_scan_agrees_with_a_byte_loop() {
    let samples: Vec<Vec<u8>> = vec![
        b"abc\"".to_vec(),
        b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ abcxyz@#%&\"tail".to_vec(),
        b"12345678\"".to_vec(),
        b"1234567\"89\"".to_vec(),
        b"AZ09az/:-[]{}`@~\x7f\x1f rest\"".to_vec(),
        b"tab\there and more bytes\"".to_vec(),
        b"back\\slash\"".to_vec(),
        b"no closing quote at all".to_vec(),
        b"\"".to_vec(),
        "caf\u{e9} cr\u{e8}me\"".as_bytes().to_vec(),
        // Past sixteen bytes, a quote in each position of the second and third chunk.
        b"0123456789ABCDEF0123456789abcdef0123456789ABCDEF\"".to_vec(),
        b"A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8\"tail".to_vec(),
        b"%&%&%&%&%&%&%&%&1\"".to_vec(),
        b"0123456789012345\x01\"".to_vec(),
        b"0123456789012345\"\x01".to_vec(),
    ];
    let mut samples = samples;
    // Every length up to 40 with the quote last, of digits, capitals and a flagged byte.
    for len in 0..40usize {
        for fill in [b'7', b'Q', b'x', b'%', b'\\', 0x1f] {
            let mut v: Vec<u8> = (0..len)
                .map(|i| {
                    if i % 3 == 0 {
                        fill
                    } else {
                        b'a' + (i % 26) as u8
                    }
                })
                .collect();
            v.push(b'"');
            v.extend_from_slice(b"0123456789ABCDEF");
            samples.push(v);
        }
    }
    for s in &samples {
        for lead in 0..3 {
            let mut b = vec![b'x'; lead];
            b.extend_from_slice(s);
            let want = b.iter().position(|&c| c == b'"').map(|end| {
                let t = &b[lead..end];
                let flags = t.iter().fold(0u8, |f, &c| f | byte_flags(c));
                (
                    end,
                    t.iter().filter(|c| c.is_ascii_digit()).count(),
                    t.iter().filter(|c| c.is_ascii_uppercase()).count(),
                    flags,
                )
            });
            // Both scans: the one this target runs and the portable one.
            for got in [string_at(&b, lead), string_at_swar(&b, lead)] {
                // Non-ASCII may end the scan early; otherwise the answers are identical.
                if got.is_none() && s.iter().any(|&c| c >= 0x80) {
                    continue;
                }
                assert_eq!(got, want, "{:?} at {lead}", String::from_utf8_lossy(s));
            }
        }
    }
}

#[test]
fn tokens_kept_by_digit_count() {
    let text = r#"{"id":"obs-1","v":"100000007","n":123456789,"d":"2024"}"#;
    let p = profile(text, 64, 4, true).expect("plain");
    let toks: Vec<&str> = p
        .tokens
        .iter()
        .map(|t| &text[t.start as usize..t.end as usize])
        .collect();
    assert_eq!(toks, vec!["100000007", "123456789", "2024"]);
}

/// The escape reader: the closing quote after escaped ones, the decoded content, and the raw
/// pieces between escapes; escapes it does not take end the fast path.
#[test]
fn escaped_strings_split_into_verbatim_pieces() {
    let (mut decoded, mut pieces) = (Vec::new(), Vec::new());
    let body = br#"a\"b\\\"\nc" tail"#;
    let end = super::escapes::escaped_string(body, 0, &mut decoded, &mut pieces);
    assert_eq!(end, Some(11));
    assert_eq!(decoded, b"a\"b\\\"\nc");
    assert_eq!(pieces, vec![(0, 1), (3, 4), (10, 11)]);
    let piece = |&(s, e): &(usize, usize)| &body[s..e];
    assert_eq!(
        pieces.iter().map(piece).collect::<Vec<_>>(),
        [b"a", b"b", b"c"]
    );
    for bad in [
        &br#"a\u0041""#[..],
        br#"a\/b""#,
        b"a\x01b\"",
        br#"a\""#,
        "a\u{e9}\"".as_bytes(),
    ] {
        assert_eq!(
            super::escapes::escaped_string(bad, 0, &mut decoded, &mut pieces),
            None,
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    // A whole body: the narrative's pieces are tokens, and the body is marked escaped.
    let p = super::profile(
        r#"{"div":"<p>SSN 536-22-1234\n</p>","n":"x"}"#,
        100,
        3,
        true,
    )
    .expect("accepted");
    assert!(p.escaped);
    assert_eq!(p.tokens.len(), 1);
}
