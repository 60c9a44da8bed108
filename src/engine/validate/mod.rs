//! Built-in validators: checksum and format rules that turn "looks like" into "is".
//!
//! Regexes alone are weak for identifiers — nine digits are an SSN, an order number or a ZIP+4
//! without the dash. Every validator here comes from a public specification (SSA, CMS, NPPES,
//! DEA, ISO/IEC 7812, ABA, NANP, RFC 5322/6761) and rejects what the specification says cannot
//! be issued, so that the false-positive rate is driven by the issuing rules rather than by
//! regex luck. Validators are pure functions of the matched value; they never allocate and
//! never panic on arbitrary input.
//!
//! Part of the pure engine: no I/O, no clocks, no shared state. Tests live in `tests.rs`.

/// A named validator that a rule can list under `validators:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Validator {
    /// US Social Security number (SSA issuance rules).
    Ssn,
    /// US Individual Taxpayer Identification Number (IRS group ranges).
    Itin,
    /// Plain Luhn (ISO/IEC 7812) check digit.
    Luhn,
    /// Payment card number: length, Luhn, issuer prefix, not a published test PAN.
    Card,
    /// US National Provider Identifier (Luhn over `80840` + NPI).
    Npi,
    /// US DEA registration number (DEA checksum).
    Dea,
    /// CMS Medicare Beneficiary Identifier (format only; there is no check digit).
    Mbi,
    /// ABA routing transit number (3-7-1 weights).
    Aba,
    /// North American Numbering Plan telephone number.
    PhoneNanp,
    /// E-mail address (RFC-lite syntax, reserved example domains rejected).
    Email,
    /// International Bank Account Number (ISO 13616: country length, mod 97 == 1).
    Iban,
    /// Vehicle Identification Number (ISO 3779 / 49 CFR 565: North American check digit).
    Vin,
    /// The shape of a record number (MRN, member, account): 5–20 letters, digits and inner
    /// hyphens with at least 4 digits, not a date and not one repeated digit. Keeps labels
    /// followed by versions, counts and dates (`MRN: 1.0`, `MRN count 12`) from firing.
    RecordNumber,
}

/// Names accepted in YAML, in the order they are listed in error messages.
const NAMES: &[(&str, Validator)] = &[
    ("aba", Validator::Aba),
    ("card", Validator::Card),
    ("dea", Validator::Dea),
    ("email", Validator::Email),
    ("iban", Validator::Iban),
    ("itin", Validator::Itin),
    ("luhn", Validator::Luhn),
    ("mbi", Validator::Mbi),
    ("npi", Validator::Npi),
    ("phone_nanp", Validator::PhoneNanp),
    ("record_number", Validator::RecordNumber),
    ("ssn", Validator::Ssn),
    ("vin", Validator::Vin),
];

/// Well-known, publicly documented payment-gateway test card numbers (Stripe, Braintree,
/// PayPal, Adyen, …). They appear in every integration test suite and sample payload, never on
/// a real card, so flagging them only produces noise.
const TEST_PANS: &[&str] = &[
    "4111111111111111",
    "4012888888881881",
    "4222222222222",
    "4242424242424242",
    "4000056655665556",
    "5555555555554444",
    "5105105105105100",
    "5200828282828210",
    "2223003122003222",
    "378282246310005",
    "371449635398431",
    "378734493671000",
    "6011111111111117",
    "6011000990139424",
    "30569309025904",
    "38520000023237",
    "3530111333300000",
    "3566002020360505",
];

/// SSNs that are syntactically valid but were never (or must never be) issued to a person:
/// the Woolworth wallet card, SSA publicity examples and the classic placeholder.
const SSN_DENYLIST: &[&[u8; 9]] = &[b"078051120", b"219099999", b"457555462", b"123456789"];

/// Domains reserved for documentation by RFC 2606 / RFC 6761; mail there is never real.
const RESERVED_EMAIL_DOMAINS: &[&str] = &["example.com", "example.org", "example.net"];
const RESERVED_EMAIL_TLDS: &[&str] = &["example", "test", "invalid", "localhost"];

impl Validator {
    /// Looks a validator up by its YAML name.
    pub(crate) fn from_name(name: &str) -> Option<Validator> {
        NAMES.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }

    /// Comma-separated list of valid names, for error messages.
    /// The name used in YAML.
    pub(crate) fn name(self) -> &'static str {
        NAMES
            .iter()
            .find(|(_, v)| *v == self)
            .map_or("?", |(n, _)| n)
    }

    pub(crate) fn names() -> String {
        NAMES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
    }

    /// The fewest ASCII digits a segment must contain for this validator to ever pass. Rules
    /// inherit the maximum over their validators, which lets the scanner skip digit-hungry rules
    /// on the (vast majority of) short JSON strings that cannot hold an identifier.
    pub(crate) fn min_digits(self) -> usize {
        match self {
            Validator::Ssn | Validator::Itin | Validator::Aba => 9,
            Validator::Card => 13,
            Validator::Npi | Validator::PhoneNanp => 10,
            Validator::Dea => 7,
            Validator::Mbi => 5,
            Validator::Luhn => 2,
            Validator::Email => 0,
            Validator::Iban => 2,
            Validator::Vin => 1,
            Validator::RecordNumber => 4,
        }
    }

    /// Whether `value` (the matched text, separators included) passes this validator.
    pub(crate) fn check(self, value: &str) -> bool {
        match self {
            Validator::Ssn => Digits::of(value).is_some_and(|d| ssn(d.as_slice())),
            Validator::Itin => Digits::of(value).is_some_and(|d| itin(d.as_slice())),
            Validator::Luhn => Digits::of(value).is_some_and(|d| d.len >= 2 && luhn(d.as_slice())),
            Validator::Card => Digits::of(value).is_some_and(|d| card(d.as_slice())),
            Validator::Npi => Digits::of(value).is_some_and(|d| npi(d.as_slice())),
            Validator::Aba => Digits::of(value).is_some_and(|d| aba(d.as_slice())),
            Validator::PhoneNanp => Digits::of(value).is_some_and(|d| phone_nanp(d.as_slice())),
            Validator::Dea => dea(value),
            Validator::Mbi => mbi(value),
            Validator::Email => email(value),
            Validator::Iban => iban(value),
            Validator::Vin => vin(value),
            Validator::RecordNumber => record_number(value),
        }
    }
}

/// See [`Validator::RecordNumber`].
fn record_number(value: &str) -> bool {
    let b = value.as_bytes();
    let alnum = |c: &u8| c.is_ascii_alphanumeric();
    if !(5..=20).contains(&b.len())
        || !b.first().is_some_and(alnum)
        || !b.last().is_some_and(alnum)
        || !b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        || b.windows(2).any(|w| w == b"--")
    {
        return false;
    }
    let digits: Vec<u8> = b.iter().copied().filter(u8::is_ascii_digit).collect();
    if digits.len() < 4 || digits.iter().all(|d| Some(d) == digits.first()) {
        return false;
    }
    // Hyphenated dates: 2024-01-15, 01-15-2024.
    let groups: Vec<&[u8]> = b.split(|c| *c == b'-').collect();
    let all_digits = groups.iter().all(|g| g.iter().all(u8::is_ascii_digit));
    let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    !(all_digits && matches!(lens.as_slice(), [4, 2, 2] | [2, 2, 4] | [1 | 2, 1 | 2, 4]))
}

/// The ASCII digits of a value (separators dropped), kept on the stack. Values with more digits
/// than any identifier we validate are rejected outright.
struct Digits {
    buf: [u8; 24],
    len: usize,
}

impl Digits {
    /// Collects the digit values (0–9) of `value`; `None` if it holds more than 24 digits.
    fn of(value: &str) -> Option<Digits> {
        let mut d = Digits {
            buf: [0; 24],
            len: 0,
        };
        for b in value.bytes().filter(u8::is_ascii_digit) {
            let slot = d.buf.get_mut(d.len)?;
            *slot = b - b'0';
            d.len += 1;
        }
        Some(d)
    }

    fn as_slice(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }
}

/// Interprets a run of digit values as a number (callers pass at most 9 digits).
fn number(d: &[u8]) -> u32 {
    d.iter().fold(0u32, |acc, &x| acc * 10 + u32::from(x))
}

fn all_same(d: &[u8]) -> bool {
    d.windows(2).all(|w| w.first() == w.get(1))
}

/// ISO/IEC 7812 Luhn over digit values: from the right, double every second digit.
fn luhn(d: &[u8]) -> bool {
    luhn_sum(d, 0).is_multiple_of(10)
}

/// Luhn sum of `d` added to `start` (the NPI check folds its constant prefix in here).
fn luhn_sum(d: &[u8], start: u32) -> u32 {
    d.iter().rev().enumerate().fold(start, |sum, (i, &x)| {
        let x = u32::from(x);
        if i % 2 == 1 {
            let y = x * 2;
            sum + if y > 9 { y - 9 } else { y }
        } else {
            sum + x
        }
    })
}

fn ssn(d: &[u8]) -> bool {
    if d.len() != 9 {
        return false;
    }
    let (area, rest) = d.split_at(3);
    let (group, serial) = rest.split_at(2);
    let area = number(area);
    if area == 0 || area == 666 || area >= 900 {
        return false;
    }
    if number(group) == 0 || number(serial) == 0 || all_same(d) {
        return false;
    }
    !SSN_DENYLIST
        .iter()
        .any(|bad| bad.iter().zip(d).all(|(b, x)| b - b'0' == *x))
}

fn itin(d: &[u8]) -> bool {
    if d.len() != 9 || d.first() != Some(&9) {
        return false;
    }
    let group = number(d.get(3..5).unwrap_or(&[]));
    matches!(group, 50..=65 | 70..=88 | 90..=92 | 94..=99)
}

fn card(d: &[u8]) -> bool {
    let n = d.len();
    if !(13..=19).contains(&n) || all_same(d) || !luhn(d) {
        return false;
    }
    let prefix = |k: usize| number(d.get(..k).unwrap_or(&[]));
    let brand_ok = match d.first() {
        // Visa
        Some(4) => matches!(n, 13 | 16 | 19),
        // Mastercard 51–55 and 2221–2720
        Some(5) => n == 16 && (51..=55).contains(&prefix(2)),
        Some(2) => n == 16 && (2221..=2720).contains(&prefix(4)),
        // Amex 34/37, JCB 3528–3589, Diners 300–305/36/38
        Some(3) => {
            let p2 = prefix(2);
            (n == 15 && (p2 == 34 || p2 == 37))
                || ((16..=19).contains(&n) && (3528..=3589).contains(&prefix(4)))
                || ((14..=19).contains(&n)
                    && ((300..=305).contains(&prefix(3)) || p2 == 36 || p2 == 38))
        }
        // Discover 6011, 644–649, 65
        Some(6) => {
            (16..=19).contains(&n)
                && (prefix(4) == 6011 || (644..=649).contains(&prefix(3)) || prefix(2) == 65)
        }
        _ => false,
    };
    brand_ok
        && !TEST_PANS
            .iter()
            .any(|t| t.len() == n && t.bytes().zip(d).all(|(b, x)| b - b'0' == *x))
}

fn npi(d: &[u8]) -> bool {
    if d.len() != 10 || !matches!(d.first(), Some(1 | 2)) {
        return false;
    }
    if all_same(d.get(..9).unwrap_or(&[])) {
        return false;
    }
    // Luhn over "80840" + NPI. The prefix sits to the left of 10 digits, so its digits take
    // positions 10..14 from the right: 8 (pos 14, even → as is), 0, 8 (pos 12 → as is), 4
    // (pos 11, doubled → 8), 0. Their contribution is the documented constant 24.
    luhn_sum(d, 24).is_multiple_of(10)
}

fn aba(d: &[u8]) -> bool {
    if d.len() != 9 || all_same(d) {
        return false;
    }
    // Federal Reserve routing symbol: 00–12 (banks), 21–32 (thrifts), 61–72 (electronic),
    // 80 (traveller's cheques).
    let symbol = number(d.get(..2).unwrap_or(&[]));
    if !matches!(symbol, 0..=12 | 21..=32 | 61..=72 | 80) {
        return false;
    }
    let weights = [3u32, 7, 1];
    let sum: u32 = d
        .iter()
        .zip(weights.iter().cycle())
        .map(|(&x, &w)| u32::from(x) * w)
        .sum();
    sum.is_multiple_of(10)
}

/// IBAN lengths by country (ISO 13616 registry, SWIFT release 2024).
const IBAN_LENGTHS: &[(&[u8; 2], usize)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AT", 20),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BR", 29),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"GT", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"JO", 30),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MK", 19),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NL", 18),
    (b"NO", 15),
    (b"PK", 24),
    (b"PL", 28),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"SA", 24),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VG", 24),
    (b"XK", 20),
];

/// IBAN: known country and length, check digits 02–98, mod 97 of the rearranged number is 1.
fn iban(value: &str) -> bool {
    let mut buf = [0u8; 34];
    let mut n = 0;
    for b in value.bytes() {
        if b == b' ' || b == b'-' {
            continue;
        }
        match buf.get_mut(n) {
            Some(slot) if b.is_ascii_alphanumeric() => *slot = b.to_ascii_uppercase(),
            _ => return false,
        }
        n += 1;
    }
    let Some(code) = buf.get(..n) else {
        return false;
    };
    let (Some(cc), Some(check)) = (code.get(..2), code.get(2..4)) else {
        return false;
    };
    let len_ok = IBAN_LENGTHS
        .iter()
        .any(|(c, l)| c.as_slice() == cc && *l == n);
    if !len_ok || !check.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let check_value = check.iter().fold(0u32, |a, c| a * 10 + u32::from(c - b'0'));
    if !(2..=98).contains(&check_value) {
        return false;
    }
    let mut rem: u32 = 0;
    for &c in code
        .get(4..)
        .unwrap_or(&[])
        .iter()
        .chain(code.get(..4).unwrap_or(&[]))
    {
        let v = if c.is_ascii_digit() {
            u32::from(c - b'0')
        } else {
            u32::from(c - b'A') + 10
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

/// VIN: 17 characters without I, O, Q; position 9 is the check digit (49 CFR 565.15).
fn vin(value: &str) -> bool {
    let b = value.as_bytes();
    if b.len() != 17 {
        return false;
    }
    const WEIGHTS: [u32; 17] = [8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2];
    let translit = |c: u8| -> Option<u32> {
        Some(match c.to_ascii_uppercase() {
            d @ b'0'..=b'9' => u32::from(d - b'0'),
            b'A' | b'J' => 1,
            b'B' | b'K' | b'S' => 2,
            b'C' | b'L' | b'T' => 3,
            b'D' | b'M' | b'U' => 4,
            b'E' | b'N' | b'V' => 5,
            b'F' | b'W' => 6,
            b'G' | b'P' | b'X' => 7,
            b'H' | b'Y' => 8,
            b'R' | b'Z' => 9,
            _ => return None,
        })
    };
    let mut sum = 0;
    let mut digits = 0;
    for (&c, w) in b.iter().zip(WEIGHTS) {
        let Some(v) = translit(c) else {
            return false;
        };
        sum += v * w;
        digits += usize::from(c.is_ascii_digit());
    }
    // All-digit strings are numbers, not VINs; a VIN has letters.
    if digits == 17 {
        return false;
    }
    let check = match sum % 11 {
        10 => b'X',
        r => b'0' + r as u8,
    };
    b.get(8).map(u8::to_ascii_uppercase) == Some(check)
}

fn phone_nanp(d: &[u8]) -> bool {
    let d = match d.len() {
        11 if d.first() == Some(&1) => d.get(1..).unwrap_or(&[]),
        10 => d,
        _ => return false,
    };
    let area = number(d.get(..3).unwrap_or(&[]));
    let exchange = number(d.get(3..6).unwrap_or(&[]));
    let line = number(d.get(6..).unwrap_or(&[]));
    // Area code and exchange start with 2–9 and are not N11 service codes (211, 411, 911 …).
    let valid_nxx = |x: u32| x >= 200 && x % 100 != 11;
    if !valid_nxx(area) || !valid_nxx(exchange) || all_same(d) {
        return false;
    }
    // 555-0100 … 555-0199 are reserved for fiction.
    !(exchange == 555 && (100..=199).contains(&line))
}

/// DEA registrant-type letters (first character) per the DEA / VistA data dictionary.
fn dea_first_letter(c: u8) -> bool {
    matches!(
        c,
        b'A' | b'B' | b'C' | b'D' | b'E' | b'F' | b'G' | b'H' | b'J' | b'K' | b'L' | b'M' | b'P'
            ..=b'U' | b'X'
    )
}

fn dea(value: &str) -> bool {
    let mut chars = [0u8; 9];
    let mut n = 0;
    for b in value.bytes().filter(u8::is_ascii_alphanumeric) {
        match chars.get_mut(n) {
            Some(slot) => *slot = b.to_ascii_uppercase(),
            None => return false,
        }
        n += 1;
    }
    if n != 9 {
        return false;
    }
    let [c0, c1, rest @ ..] = chars;
    if !dea_first_letter(c0) || !(c1.is_ascii_uppercase() || c1 == b'9') {
        return false;
    }
    if !rest.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let [d1, d2, d3, d4, d5, d6, d7] = rest.map(|b| u32::from(b - b'0'));
    ((d1 + d3 + d5) + 2 * (d2 + d4 + d6)) % 10 == d7
}

/// CMS MBI alphabet: uppercase letters except S, L, O, I, B, Z (they look like digits).
fn mbi_alpha(c: u8) -> bool {
    c.is_ascii_uppercase() && !matches!(c, b'S' | b'L' | b'O' | b'I' | b'B' | b'Z')
}

fn mbi(value: &str) -> bool {
    let mut chars = [0u8; 11];
    let mut n = 0;
    for b in value.bytes().filter(|b| !matches!(b, b'-' | b' ' | b'.')) {
        match chars.get_mut(n) {
            Some(slot) => *slot = b,
            None => return false,
        }
        n += 1;
    }
    if n != 11 {
        return false;
    }
    let digit = |c: u8| c.is_ascii_digit();
    let alnum = |c: u8| digit(c) || mbi_alpha(c);
    let [c1, a2, an3, n4, a5, an6, n7, a8, a9, n10, n11] = chars;
    (b'1'..=b'9').contains(&c1)
        && mbi_alpha(a2)
        && alnum(an3)
        && digit(n4)
        && mbi_alpha(a5)
        && alnum(an6)
        && digit(n7)
        && mbi_alpha(a8)
        && mbi_alpha(a9)
        && digit(n10)
        && digit(n11)
}

fn email(value: &str) -> bool {
    let Some((local, domain)) = value.rsplit_once('@') else {
        return false;
    };
    if local.is_empty() || local.len() > 64 || domain.len() > 253 || local.contains('@') {
        return false;
    }
    let local_ok = local
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+/=?^_`{|}~.-".contains(&b))
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..");
    if !local_ok {
        return false;
    }
    let mut labels = 0;
    let mut last = "";
    for label in domain.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !ok {
            return false;
        }
        labels += 1;
        last = label;
    }
    let tld_ok = (last.len() >= 2 && last.bytes().all(|b| b.is_ascii_alphabetic()))
        || (last.len() > 4
            && last
                .get(..4)
                .is_some_and(|p| p.eq_ignore_ascii_case("xn--")));
    if labels < 2 || !tld_ok {
        return false;
    }
    let reserved_domain = RESERVED_EMAIL_DOMAINS.iter().any(|r| {
        domain.eq_ignore_ascii_case(r)
            || (domain.len() > r.len()
                && domain
                    .get(domain.len() - r.len() - 1..)
                    .and_then(|tail| tail.strip_prefix('.'))
                    .is_some_and(|tail| tail.eq_ignore_ascii_case(r)))
    });
    let reserved_tld = RESERVED_EMAIL_TLDS
        .iter()
        .any(|t| last.eq_ignore_ascii_case(t));
    !reserved_domain && !reserved_tld
}

#[cfg(test)]
mod tests;
