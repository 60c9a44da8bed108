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
fn needs_of_rule_patterns() {
    let n = Needs::of_regex("(?P<value>[0-9]{3}[- .][0-9]{2}[- .][0-9]{4})");
    assert_eq!((n.digits, n.upper, n.max_len), (9, 0, Some(11)));
    let n = Needs::of_regex("(?P<value>[A-Z][A-Z9][0-9]{7})");
    assert_eq!((n.digits, n.upper, n.max_len), (7, 1, Some(9)));
    // Case-insensitive letters are not upper case; unbounded repetitions have no length.
    let n = Needs::of_regex("(?i)mrn[ :]{0,3}[A-Z0-9-]*[0-9]");
    assert_eq!((n.digits, n.upper, n.max_len), (1, 0, None));
    // Alternation takes the weaker branch.
    let n = Needs::of_regex("[0-9]{9}|x[0-9]");
    assert_eq!(n.digits, 1);
    assert_eq!(Needs::of_regex("("), Needs::NONE);
}

fn admitted(f: &TokenFilter, tok: &[u8]) -> Vec<bool> {
    let d = tok.iter().filter(|c| c.is_ascii_digit()).count();
    let u = tok.iter().filter(|c| c.is_ascii_uppercase()).count();
    let mut out = vec![true; f.rules.len()];
    f.admits(tok, d, u, &mut FilterScratch::default(), &mut out);
    out
}

#[test]
fn window_admission() {
    let ssn = Needs::of_regex("[0-9]{3}-?[0-9]{2}-?[0-9]{4}");
    let f = TokenFilter::new(vec![vec![(ssn, 0)]]);
    // Nine digits in a window of eleven.
    assert_eq!(admitted(&f, b"id 123-45-6789 x"), [true]);
    // Twelve digits in all, but never nine within eleven bytes.
    assert_eq!(admitted(&f, b"2024-03-01T10:01:00Z"), [false]);
    assert_eq!(admitted(&f, b"20240301"), [false]);
    // The validator's need raises the digit count.
    let strict = TokenFilter::new(vec![vec![(Needs::of_regex("[0-9]{3,}"), 9)]]);
    assert_eq!(admitted(&strict, b"12345678"), [false]);
    assert_eq!(admitted(&strict, b"123456789"), [true]);
    // Upper-case needs are windowed too; each rule gets its own answer.
    let two = Needs::of_regex("[A-Z]{2}[0-9]{7}");
    let f = TokenFilter::new(vec![vec![(two, 0)], vec![(ssn, 0)], vec![(Needs::NONE, 0)]]);
    assert_eq!(admitted(&f, b"x AB1234567 y"), [true, false, true]);
    assert_eq!(admitted(&f, b"A 1234567 B"), [false, false, true]);
    assert_eq!(admitted(&f, b"123-45-6789"), [false, true, true]);
    let none = TokenFilter::new(vec![vec![]]);
    assert_eq!(admitted(&none, b"123"), [false]);
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
        assert!(profile(ok, 64, 0).is_some(), "{ok}");
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
        assert!(profile(bad, 64, 0).is_none(), "{bad:?}");
    }
    // Depth: the limit, and serde_json's own limit, are respected.
    let deep = format!("{}{}", "[".repeat(10), "]".repeat(10));
    assert!(profile(&deep, 64, 0).is_some());
    assert!(profile(&deep, 10, 0).is_none());
    let deeper = format!("{}{}", "[".repeat(120), "]".repeat(120));
    assert!(profile(&deeper, 1000, 0).is_none());
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
    ];
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
            let got = string_at(&b, lead);
            // Non-ASCII may end the scan early; otherwise the answers are identical.
            if got.is_none() && s.iter().any(|&c| c >= 0x80) {
                continue;
            }
            assert_eq!(got, want, "{:?} at {lead}", String::from_utf8_lossy(s));
        }
    }
}

#[test]
fn tokens_kept_by_digit_count() {
    let text = r#"{"id":"obs-1","v":"100000007","n":123456789,"d":"2024"}"#;
    let p = profile(text, 64, 4).expect("plain");
    let toks: Vec<&str> = p
        .tokens
        .iter()
        .map(|t| &text[t.start as usize..t.end as usize])
        .collect();
    assert_eq!(toks, vec!["100000007", "123456789", "2024"]);
}

/// A small deterministic generator for the properties below (xorshift64*).
fn rng(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

/// Admission equals its definition, need by need, on tokens of digits, capitals and letters
/// against needs that share counts with different windows (the bit set, the early stop at
/// the first need with too many digits, the positions found once per token).
#[test]
fn admission_equals_its_definition() {
    let mut s = 0x2545_f491_4f6c_dd1du64;
    let alphabet = b"0123456789ABCxyz-:";
    for _ in 0..300 {
        let needs: Vec<(Needs, usize)> = (0..1 + rng(&mut s) % 12)
            .map(|_| {
                let n = Needs {
                    digits: (rng(&mut s) % 6) as usize,
                    upper: (rng(&mut s) % 3) as usize,
                    max_len: (!rng(&mut s).is_multiple_of(4))
                        .then(|| 1 + (rng(&mut s) % 20) as usize),
                };
                (n, 0)
            })
            .collect();
        let f = TokenFilter::new(needs.iter().map(|n| vec![*n]).collect());
        for _ in 0..40 {
            let tok: Vec<u8> = (0..rng(&mut s) % 30)
                .map(|_| alphabet[(rng(&mut s) % alphabet.len() as u64) as usize])
                .collect();
            let dpos: Vec<u32> = (0u32..)
                .zip(&tok)
                .filter(|(_, c)| c.is_ascii_digit())
                .map(|(i, _)| i)
                .collect();
            let upos: Vec<u32> = (0u32..)
                .zip(&tok)
                .filter(|(_, c)| c.is_ascii_uppercase())
                .map(|(i, _)| i)
                .collect();
            let want: Vec<bool> = needs
                .iter()
                .map(|(n, _)| {
                    dpos.len() >= n.digits
                        && upos.len() >= n.upper
                        && match n.max_len.filter(|&l| l < tok.len()) {
                            None => true,
                            Some(l) => {
                                (n.digits == 0 || within(&dpos, n.digits, l))
                                    && (n.upper == 0 || within(&upos, n.upper, l))
                            }
                        }
                })
                .collect();
            assert_eq!(admitted(&f, &tok), want, "{:?} {needs:?}", tok);
        }
    }
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
    let p =
        super::profile(r#"{"div":"<p>SSN 536-22-1234\n</p>","n":"x"}"#, 100, 3).expect("accepted");
    assert!(p.escaped);
    assert_eq!(p.tokens.len(), 1);
}
