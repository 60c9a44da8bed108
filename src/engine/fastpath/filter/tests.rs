use std::path::Path;

use super::*;

fn admitted(f: &TokenFilter, tok: &[u8]) -> Vec<bool> {
    let d = tok.iter().filter(|c| c.is_ascii_digit()).count();
    let u = tok.iter().filter(|c| c.is_ascii_uppercase()).count();
    let mut out = vec![true; f.rules.len()];
    f.admits(tok, d, u, &mut FilterScratch::for_filter(f), &mut out);
    out
}

fn set(bytes: &[u8]) -> u128 {
    bytes.iter().fold(0, |s, &c| s | (1u128 << c))
}

#[test]
fn needs_of_rule_patterns() {
    let n = Needs::of_regex("(?P<value>[0-9]{3}[- .][0-9]{2}[- .][0-9]{4})");
    assert_eq!((n.digits, n.upper, n.max_len), (9, 0, Some(11)));
    assert_eq!((n.other, n.min_len), (2, 11));
    assert_eq!(n.alphabet, set(b"0123456789- ."));
    let n = Needs::of_regex("(?P<value>[A-Z][A-Z9][0-9]{7})");
    assert_eq!((n.digits, n.upper, n.max_len), (7, 1, Some(9)));
    // Case-insensitive letters are not upper case, but both cases are in the alphabet;
    // unbounded repetitions have no length.
    let n = Needs::of_regex("(?i)mrn[ :]{0,3}[A-Z0-9-]*[0-9]");
    assert_eq!((n.digits, n.upper, n.max_len, n.min_len), (1, 0, None, 4));
    assert_eq!(n.alphabet & set(b"mMrRnN :-09aZ"), set(b"mMrRnN :-09aZ"));
    assert_eq!(n.alphabet & set(b"\"/_"), 0);
    // Alternation takes the weaker branch; look-arounds consume nothing.
    let n = Needs::of_regex("[0-9]{9}|x[0-9]");
    assert_eq!((n.digits, n.min_len), (1, 2));
    assert_eq!(
        Needs::of_regex(r"\b[0-9]{2}\b").alphabet,
        set(b"0123456789")
    );
    // A class with non-ASCII members counts by its ASCII part.
    assert_eq!(Needs::of_regex(r"\s[0-9]").other, 1);
    assert_eq!(Needs::of_regex(r"\w").other, 0);
    assert_eq!(Needs::of_regex("("), Needs::NONE);
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

/// The runs of a pattern's alphabet: what FHIR timestamps, UUIDs and version ids are not.
#[test]
fn matches_lie_inside_one_run_of_their_alphabet() {
    let phone = Needs::of_regex(
        r"(?:\+?1[ .-]?)?(?:\([2-9][0-9]{2}\)|[2-9][0-9]{2})[ .-]?[2-9][0-9]{2}[ .-]?[0-9]{4}",
    );
    let ssn = Needs::of_regex("[0-9]{3}[- .][0-9]{2}[- .][0-9]{4}");
    let iban = Needs::of_regex("[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}");
    let f = TokenFilter::new(vec![vec![(phone, 0)], vec![(ssn, 0)], vec![(iban, 0)]]);
    assert_eq!(admitted(&f, b"2024-03-01T10:00:00Z"), [false, false, false]);
    assert_eq!(
        admitted(&f, b"urn:uuid:6b1f0c2e-0001-4c1d-9a3e-0a6f5d2c0001"),
        [false, false, false]
    );
    // Nine digits but not the two separators the pattern needs.
    assert_eq!(admitted(&f, b"100000007"), [false, false, false]);
    assert_eq!(
        admitted(&f, b"call (555) 201-3344 now"),
        [true, false, false]
    );
    assert_eq!(admitted(&f, b"ssn 536-22-1234"), [false, true, false]);
    assert_eq!(admitted(&f, b"GB82WEST123456987"), [false, false, true]);
    // Past 64 bytes only the windowed counts apply.
    let long = format!("{}2024-03-01T10:00:00Z", "x".repeat(60));
    assert_eq!(admitted(&f, long.as_bytes()), [true, false, true]);
}

/// A small deterministic generator for the properties below (xorshift64*).
fn rng(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

/// What [`TokenFilter::met`] decides for one need, written out: some substring of the token
/// of an admissible length, of the need's alphabet, holding its counts (past 64 bytes:
/// the counts in windows, see [`windowed`]).
fn by_definition(n: &Needs, at_least: usize, tok: &[u8]) -> bool {
    let count = |w: &[u8], p: fn(&u8) -> bool| w.iter().filter(|c| p(c)).count();
    let digits = n.digits.max(at_least);
    if count(tok, u8::is_ascii_digit) < digits
        || count(tok, u8::is_ascii_uppercase) < n.upper
        || tok.len() < n.min_len
    {
        return false;
    }
    if tok.len() > 64 {
        let pos = |p: fn(&u8) -> bool| -> Vec<u32> {
            (0u32..)
                .zip(tok)
                .filter(|(_, c)| p(c))
                .map(|(i, _)| i)
                .collect()
        };
        return match n.max_len.filter(|&l| l < tok.len()) {
            None => true,
            Some(l) => {
                (digits == 0 || within(&pos(u8::is_ascii_digit), digits, l))
                    && (n.upper == 0 || within(&pos(u8::is_ascii_uppercase), n.upper, l))
            }
        };
    }
    (0..=tok.len()).any(|a| {
        (a..=tok.len()).any(|b| {
            let w = &tok[a..b];
            w.len() >= n.min_len
                && n.max_len.is_none_or(|m| w.len() <= m)
                && w.iter().all(|&c| (n.alphabet >> c) & 1 == 1)
                && count(w, u8::is_ascii_digit) >= digits
                && count(w, u8::is_ascii_uppercase) >= n.upper
                && count(w, |c| !c.is_ascii_alphanumeric()) >= n.other
        })
    })
}

/// Admission equals its definition, need by need, on tokens of digits, capitals, letters
/// and separators against needs that share counts with different windows and alphabets
/// (the bit set, the early stop at the first need with too many digits, the masks and run
/// masks found once per token, the long-token path).
#[test]
fn admission_equals_its_definition() {
    let mut s = 0x2545_f491_4f6c_dd1du64;
    let bytes = b"0123456789ABCxyz-: .";
    for _ in 0..400 {
        let needs: Vec<(Needs, usize)> = (0..1 + rng(&mut s) % 12)
            .map(|_| {
                let min_len = (rng(&mut s) % 8) as usize;
                let alphabet = bytes
                    .iter()
                    .filter(|_| !rng(&mut s).is_multiple_of(3))
                    .fold(0u128, |a, &c| a | (1u128 << c));
                let n = Needs {
                    digits: (rng(&mut s) % 6) as usize,
                    upper: (rng(&mut s) % 3) as usize,
                    other: (rng(&mut s) % 3) as usize,
                    min_len,
                    max_len: (!rng(&mut s).is_multiple_of(4))
                        .then(|| min_len + (rng(&mut s) % 20) as usize),
                    alphabet,
                };
                (n, (rng(&mut s) % 7) as usize)
            })
            .collect();
        let f = TokenFilter::new(needs.iter().map(|n| vec![*n]).collect());
        for _ in 0..40 {
            let len = if rng(&mut s).is_multiple_of(8) {
                90
            } else {
                40
            };
            let tok: Vec<u8> = (0..rng(&mut s) % len)
                .map(|_| bytes[(rng(&mut s) % bytes.len() as u64) as usize])
                .collect();
            let want: Vec<bool> = needs
                .iter()
                .map(|(n, at_least)| by_definition(n, *at_least, &tok))
                .collect();
            let got = admitted(&f, &tok);
            assert_eq!(got, want, "{:?} {needs:?}", String::from_utf8_lossy(&tok));
        }
    }
}

/// The property the filter exists for: a token in which a rule pattern of the default pack
/// finds a match is admitted for that pattern. Tokens are pieces of identifiers, dates,
/// phone numbers, codes and words strung together.
#[test]
fn every_token_a_default_pattern_matches_in_is_admitted() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let rules = crate::engine::rules::RuleSet::load_dir(&dir).expect("default pack");
    let pats: Vec<&crate::engine::rules::CompiledPattern> =
        rules.compiled().iter().flat_map(|r| &r.patterns).collect();
    let f = TokenFilter::new(pats.iter().map(|p| vec![(p.needs, 0)]).collect());
    let pieces = [
        "536",
        "22",
        "1234",
        "-",
        " ",
        ".",
        "(",
        ")",
        "+1",
        "555",
        "201",
        "3344",
        "9",
        "T",
        "10:00",
        "Z",
        "2024",
        "03",
        "1EG4",
        "TE5",
        "MK72",
        "GB82",
        "WEST",
        "1234569876",
        "@",
        "a",
        "mrn",
        "MRN",
        ":",
        "#",
        "1HGCM82633A004352",
        "A12345678",
        "4111",
        "1111",
        "192",
        "168",
        "0",
        "1",
        "x",
        "dob",
        "1980-01-31",
        "/",
        "_",
        "ID",
        "00",
        "7",
    ];
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    let mut matched = 0usize;
    for _ in 0..20_000 {
        let tok: String = (0..1 + rng(&mut s) % 9)
            .map(|_| pieces[(rng(&mut s) % pieces.len() as u64) as usize])
            .collect();
        let got = admitted(&f, tok.as_bytes());
        for (p, ok) in pats.iter().zip(got) {
            if p.regex.is_match(&tok) {
                matched += 1;
                assert!(ok, "{:?} matches {tok:?}", p.regex.as_str());
            }
        }
    }
    // The tokens do exercise the patterns.
    assert!(matched > 1000, "{matched}");
}

/// `has_run` against its definition: `k` consecutive set bits somewhere in the mask.
#[test]
fn has_run_finds_exactly_the_runs_of_its_length() {
    let longest = |x: u64| {
        (0..64)
            .map(|i| (x >> i).trailing_ones() as usize)
            .max()
            .unwrap_or(0)
    };
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut masks = vec![0, u64::MAX, 1, 1 << 63, u64::MAX >> 1, u64::MAX << 1];
    for _ in 0..2000 {
        // Sparse, dense and run-heavy masks alike.
        let (a, b) = (rng(&mut state), rng(&mut state));
        masks.extend([
            a,
            a & b,
            a | b,
            a & (a >> 1) & (a >> 2),
            !(a & b & rng(&mut state)),
        ]);
    }
    for x in masks {
        let l = longest(x);
        for k in 0..=66 {
            assert_eq!(super::has_run(x, k), k <= l, "{x:#066b}, k = {k}");
        }
    }
}
