//! Engine mechanics with custom rule sets: thread safety, ordering, overlapping candidates,
//! `where`, modes and keywords, layering, hostile inputs.

use super::*;

#[test]
fn engine_is_send_sync_and_cheap_to_clone() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Engine>();
    assert_send_sync::<RuleSet>();
    let e = engine().clone();
    assert_eq!(e.rules().len(), engine().rules().len());
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
