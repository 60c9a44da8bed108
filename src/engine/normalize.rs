//! Unicode and percent-escape normalisation, with offset maps back to the input.
//!
//! Attackers (and careless clients) write `５３６－２２－１２３４`, `٥٣٦-٢٢-١٢٣٤`,
//! `536\u{2011}22\u{2011}1234` or put a zero-width space between digits. Rules are written
//! against ASCII, so before matching we fold every such variant to the plain form. NFKC alone is
//! not enough (it leaves Arabic-Indic and Devanagari digits alone, keeps format characters and
//! maps U+2011 to U+2010 rather than `-`), hence the extra tables below.
//!
//! Normalisation is per character, so we can keep a piecewise-linear [`OffsetMap`] from the
//! normalised text back to the original and report byte offsets of the decoded body, not of
//! some internal buffer. Pure-ASCII text (the common case) is returned borrowed without any
//! allocation.

use std::borrow::Cow;

use unicode_normalization::{is_nfkc_quick, IsNormalized, UnicodeNormalization};

/// Maps byte offsets in a transformed text back to the text it was derived from.
///
/// Stored as anchors `(out, src)`: an offset `x` maps to `src + (x - out)` for the last anchor
/// with `out <= x`. Anchors are only recorded where the transformation changed lengths, so the
/// map stays small for mostly-unchanged text.
#[derive(Debug, Default)]
pub(crate) struct OffsetMap {
    anchors: Vec<(usize, usize)>,
}

impl OffsetMap {
    /// A map that sends every offset to `at` (text decoded from one opaque run).
    /// Marked by a single sentinel anchor `(usize::MAX, at)`, which no real map contains.
    pub(crate) fn constant(at: usize) -> OffsetMap {
        OffsetMap {
            anchors: vec![(usize::MAX, at)],
        }
    }

    fn push(&mut self, out: usize, src: usize) {
        if self.anchors.last() != Some(&(out, src)) {
            self.anchors.push((out, src));
        }
    }

    /// The source offset for an output offset.
    pub(crate) fn to_source(&self, out: usize) -> usize {
        if let [(usize::MAX, at)] = self.anchors.as_slice() {
            return *at;
        }
        let idx = self.anchors.partition_point(|(o, _)| *o <= out);
        match idx.checked_sub(1).and_then(|i| self.anchors.get(i)) {
            Some((o, s)) => {
                let linear = s + (out - o);
                // Between two anchors lies either unchanged text (same length on both sides,
                // so this is exact) or one replaced character. A character that expanded
                // (NFKC turns the 3-byte U+FDFA into 33 bytes) must not map past its own end,
                // which for the last character is past the end of the input.
                match self.anchors.get(idx) {
                    Some((_, next)) => linear.min(*next),
                    None => linear,
                }
            }
            None => out,
        }
    }
}

/// Zero code points of the Unicode `Nd` (decimal digit) ranges outside ASCII: every `Nd` digit
/// is `zero + value` for one of these. Generated from the Unicode 14 database, plus Kawi and
/// Nag Mundari (Unicode 15).
const ND_ZEROS: &[u32] = &[
    0x660, 0x6F0, 0x7C0, 0x966, 0x9E6, 0xA66, 0xAE6, 0xB66, 0xBE6, 0xC66, 0xCE6, 0xD66, 0xDE6,
    0xE50, 0xED0, 0xF20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0, 0x1A80, 0x1A90, 0x1B50,
    0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0, 0xFF10,
    0x104A0, 0x10D30, 0x11066, 0x110F0, 0x11136, 0x111D0, 0x112F0, 0x11450, 0x114D0, 0x11650,
    0x116C0, 0x11730, 0x118E0, 0x11950, 0x11C50, 0x11D50, 0x11DA0, 0x11F50, 0x16A60, 0x16AC0,
    0x16B50, 0x1D7CE, 0x1D7D8, 0x1D7E2, 0x1D7EC, 0x1D7F6, 0x1E140, 0x1E2F0, 0x1E4F0, 0x1E950,
    0x1FBF0,
];

/// The ASCII digit for any Unicode decimal digit (`char::to_digit` only knows ASCII).
pub(crate) fn decimal_digit(c: char) -> Option<char> {
    let cp = u32::from(c);
    if c.is_ascii_digit() {
        return Some(c);
    }
    let idx = ND_ZEROS.partition_point(|z| *z <= cp);
    let zero = *ND_ZEROS.get(idx.checked_sub(1)?)?;
    let value = cp - zero;
    if value < 10 {
        char::from_digit(value, 10)
    } else {
        None
    }
}

/// Invisible format characters (category `Cf` and friends) that must not split a number:
/// soft hyphen, zero-width space/joiners, bidi controls, word joiner, invisible operators,
/// BOM, variation selectors and tag characters.
fn is_invisible(c: char) -> bool {
    matches!(u32::from(c),
        0x00AD | 0x034F | 0x061C | 0x180B..=0x180F | 0x200B..=0x200F | 0x202A..=0x202E
        | 0x2060..=0x2064 | 0x2066..=0x206F | 0xFE00..=0xFE0F | 0xFEFF | 0xFFF9..=0xFFFB
        | 0x1D173..=0x1D17A | 0xE0000..=0xE007F)
}

/// Dash punctuation (`Pd`), minus signs and hyphen look-alikes, all folded to `-`.
fn is_dash(c: char) -> bool {
    matches!(
        u32::from(c),
        0x02D7 | 0x058A | 0x05BE | 0x1400 | 0x1806 | 0x2010
            ..=0x2015
                | 0x2043
                | 0x2212
                | 0x2E17
                | 0x2E1A
                | 0x2E3A
                | 0x2E3B
                | 0x2E40
                | 0x2E5D
                | 0x301C
                | 0x3030
                | 0x30A0
                | 0xFE31
                | 0xFE32
                | 0xFE58
                | 0xFE63
                | 0xFF0D
                | 0x10EAD
    )
}

/// Space separators other than U+0020 (`Zs`), folded to a plain space.
fn is_space(c: char) -> bool {
    matches!(
        u32::from(c),
        0x00A0 | 0x1680 | 0x2000..=0x200A | 0x202F | 0x205F | 0x3000
    )
}

/// The direct replacement for one character, if the fold tables know it.
fn fold(c: char) -> Option<Option<char>> {
    if is_invisible(c) {
        Some(None)
    } else if is_dash(c) {
        Some(Some('-'))
    } else if is_space(c) {
        Some(Some(' '))
    } else {
        decimal_digit(c).filter(|_| !c.is_ascii()).map(Some)
    }
}

/// Whether `c` passes through normalisation unchanged.
fn unchanged(c: char) -> bool {
    c.is_ascii() || (fold(c).is_none() && is_nfkc_quick(std::iter::once(c)) == IsNormalized::Yes)
}

/// Normalises `text` for matching (see the module docs). Returns the text borrowed when nothing
/// changes, else the new text and a map back to `text`'s byte offsets.
pub(crate) fn normalize(text: &str) -> (Cow<'_, str>, Option<OffsetMap>) {
    if text.is_ascii() {
        return (Cow::Borrowed(text), None);
    }
    let Some(first) = text
        .char_indices()
        .find(|(_, c)| !unchanged(*c))
        .map(|(i, _)| i)
    else {
        return (Cow::Borrowed(text), None);
    };
    let (head, tail) = text.split_at(first);
    let mut out = String::with_capacity(text.len());
    let mut map = OffsetMap::default();
    out.push_str(head);
    for (i, c) in tail.char_indices() {
        let src = first + i;
        if unchanged(c) {
            out.push(c);
            continue;
        }
        map.push(out.len(), src);
        match fold(c) {
            Some(Some(r)) => out.push(r),
            Some(None) => {}
            None => {
                for n in std::iter::once(c).nfkc() {
                    match fold(n) {
                        Some(Some(r)) => out.push(r),
                        Some(None) => {}
                        None => out.push(n),
                    }
                }
            }
        }
        map.push(out.len(), src + c.len_utf8());
    }
    (Cow::Owned(out), Some(map))
}

/// Whether `text` contains at least one `%XX` (hex) or `%uXXXX` escape.
pub(crate) fn has_percent_escape(text: &str) -> bool {
    let b = text.as_bytes();
    memchr_iter(b, b'%').any(|i| decode_escape(b, i).is_some())
}

fn memchr_iter(b: &[u8], needle: u8) -> impl Iterator<Item = usize> + '_ {
    b.iter()
        .enumerate()
        .filter(move |(_, x)| **x == needle)
        .map(|(i, _)| i)
}

fn hex(b: u8) -> Option<u32> {
    char::from(b).to_digit(16)
}

/// An escape at `i` (which holds `%`): the decoded bytes and the escape's length.
fn decode_escape(b: &[u8], i: usize) -> Option<(Escaped, usize)> {
    let h = |k: usize| b.get(i + k).copied().and_then(hex);
    if let (Some(x), Some(y)) = (h(1), h(2)) {
        // Both nibbles are < 16, so this always fits in a byte.
        return Some((Escaped::Byte(u8::try_from(x * 16 + y).ok()?), 3));
    }
    // IIS-style %uXXXX.
    if matches!(b.get(i + 1), Some(b'u' | b'U')) {
        let v = (h(2)? << 12) | (h(3)? << 8) | (h(4)? << 4) | h(5)?;
        return Some((Escaped::Char(char::from_u32(v)?), 6));
    }
    None
}

enum Escaped {
    Byte(u8),
    Char(char),
}

/// Decodes `%XX` and `%uXXXX` escapes once (no `+` handling: that belongs to the form layer,
/// which has already run when this is used for double encoding). Invalid UTF-8 produced by
/// the escapes is replaced lossily; offsets then stay approximate.
pub(crate) fn percent_decode(text: &str) -> (String, OffsetMap) {
    let b = text.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(b.len());
    let mut map = OffsetMap::default();
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            if let Some((esc, len)) = decode_escape(b, i) {
                map.push(out.len(), i);
                match esc {
                    Escaped::Byte(x) => out.push(x),
                    Escaped::Char(ch) => {
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                    }
                }
                i += len;
                map.push(out.len(), i);
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    let s = match String::from_utf8(out) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    };
    (s, map)
}

/// Whether `text` may contain an XML/HTML character reference or entity (`&#53;`, `&#x35;`,
/// `&amp;`).
pub(crate) fn has_entity(text: &str) -> bool {
    let b = text.as_bytes();
    memchr_iter(b, b'&').any(|i| entity_at(b, i).is_some())
}

/// An entity at `i` (which holds `&`): the character and the entity's length.
fn entity_at(b: &[u8], i: usize) -> Option<(char, usize)> {
    let rest = b.get(i + 1..)?;
    let semi = rest.iter().take(12).position(|c| *c == b';')?;
    let name = rest.get(..semi)?;
    let c = match name {
        b"amp" => '&',
        b"lt" => '<',
        b"gt" => '>',
        b"quot" => '"',
        b"apos" => '\'',
        b"nbsp" => '\u{a0}',
        [b'#', b'x' | b'X', hexd @ ..] if !hexd.is_empty() => {
            let s = std::str::from_utf8(hexd).ok()?;
            char::from_u32(u32::from_str_radix(s, 16).ok()?)?
        }
        [b'#', dec @ ..] if !dec.is_empty() => {
            let s = std::str::from_utf8(dec).ok()?;
            if !s.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            char::from_u32(s.parse().ok()?)?
        }
        _ => return None,
    };
    Some((c, semi + 2))
}

/// Decodes XML numeric character references and the five XML entities (plus `&nbsp;`).
pub(crate) fn xml_entity_decode(text: &str) -> (String, OffsetMap) {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut map = OffsetMap::default();
    let mut i = 0;
    while i < b.len() {
        if b.get(i) == Some(&b'&') {
            if let Some((c, len)) = entity_at(b, i) {
                map.push(out.len(), i);
                out.push(c);
                i += len;
                map.push(out.len(), i);
                continue;
            }
        }
        // Copy up to the next `&` in one go (always a char boundary: `&` is ASCII).
        let next = b
            .get(i + 1..)
            .and_then(|r| r.iter().position(|c| *c == b'&'))
            .map_or(b.len(), |p| i + 1 + p);
        out.push_str(text.get(i..next).unwrap_or(""));
        i = next;
    }
    (out, map)
}

/// Shortest base64 run decoded heuristically: `123456789` is `MTIzNDU2Nzg5`, 12 characters.
pub(crate) const MIN_BASE64_RUN: usize = 12;
/// Longest run decoded heuristically from free text (bigger blobs are attachments, decoded by
/// the carriers by schema).
const MAX_BASE64_RUN: usize = 1 << 20;

fn is_b64(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'-' | b'_')
}

/// Candidate base64/base64url runs in `text`: at least [`MIN_BASE64_RUN`] alphabet characters
/// (plus `=` padding), containing a digit or both cases — plain words are not worth decoding.
pub(crate) fn base64_runs(text: &str) -> Vec<(usize, usize)> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if !b.get(i).copied().is_some_and(is_b64) {
            i += 1;
            continue;
        }
        let start = i;
        let (mut upper, mut lower, mut digit) = (false, false, false);
        while let Some(&c) = b.get(i) {
            if !is_b64(c) {
                break;
            }
            upper |= c.is_ascii_uppercase();
            lower |= c.is_ascii_lowercase();
            digit |= c.is_ascii_digit();
            i += 1;
        }
        let mut end = i;
        while b.get(end) == Some(&b'=') && end - i < 2 {
            end += 1;
        }
        let len = i - start;
        if (MIN_BASE64_RUN..=MAX_BASE64_RUN).contains(&len)
            && upper
            && (lower || digit)
            // One character past a 4-group is never valid base64 (e.g. `2024-03-05T10`).
            && len % 4 != 1
        {
            out.push((start, end));
        }
        i = end.max(i);
    }
    out
}

/// Decodes a base64 or base64url run (padding optional) and returns it when it reads as text:
/// valid UTF-8, at least 6 characters, at least 90% printable. Binary (random words decoded by
/// accident, ciphertext, images) returns `None`.
pub(crate) fn decode_base64_text(run: &str) -> Option<String> {
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    use base64::Engine as _;
    let trimmed = run.trim_end_matches('=');
    let bytes = if trimmed.contains(['-', '_']) {
        URL_SAFE_NO_PAD.decode(trimmed).ok()?
    } else {
        STANDARD_NO_PAD.decode(trimmed).ok()?
    };
    readable(&bytes)
}

/// `bytes` as text if it is UTF-8 with at least 90% printable characters and 6+ chars.
pub(crate) fn readable(bytes: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(bytes).ok()?;
    let total = text.chars().count();
    if total < 6 {
        return None;
    }
    let printable = text
        .chars()
        .filter(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'))
        .count();
    (printable * 10 >= total * 9).then(|| text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        normalize(s).0.into_owned()
    }

    #[test]
    fn ascii_is_borrowed() {
        assert!(matches!(normalize("SSN 536-22-1234").0, Cow::Borrowed(_)));
        assert!(matches!(normalize("café").0, Cow::Borrowed(_)));
    }

    #[test]
    fn folds_digits_dashes_spaces_and_invisibles() {
        assert_eq!(norm("５３６－２２－１２３４"), "536-22-1234");
        assert_eq!(norm("٥٣٦-٢٢-١٢٣٤"), "536-22-1234");
        assert_eq!(norm("۵۳۶۲۲۱۲۳۴"), "536221234");
        assert_eq!(norm("५३६२२१२३४"), "536221234");
        assert_eq!(norm("৫৩৬২২১২৩৪"), "536221234");
        assert_eq!(norm("𝟓𝟑𝟔\u{2011}𝟐𝟐\u{2011}𝟏𝟐𝟑𝟒"), "536-22-1234");
        assert_eq!(norm("536\u{200B}-22-12\u{00AD}34"), "536-22-1234");
        assert_eq!(norm("536\u{2212}22\u{2013}1234"), "536-22-1234");
        assert_eq!(norm("536\u{00A0}22\u{202F}1234"), "536 22 1234");
        assert_eq!(norm("\u{FEFF}①"), "1");
        assert_eq!(norm("no change: é ü 中"), "no change: é ü 中");
    }

    #[test]
    fn offsets_inside_an_expanded_character_stay_inside_it() {
        // Found by the `decode_text` fuzz target: offsets inside the 33-byte NFKC expansion of
        // U+FDFA (3 bytes) mapped up to 30 bytes past the end of the input.
        for input in ["\u{FDFA}", "a \u{FDFA}", "\u{FDFA} b", "５\u{FDFA}６"] {
            let (out, map) = normalize(input);
            let map = map.expect("the text changed");
            for i in 0..=out.len() {
                assert!(map.to_source(i) <= input.len(), "{input:?}: offset {i}");
            }
            assert_eq!(map.to_source(out.len()), input.len(), "{input:?}");
        }
    }

    #[test]
    fn digit_table_is_sound() {
        for zero in ND_ZEROS {
            for v in 0..10 {
                let c = char::from_u32(zero + v).expect("valid scalar");
                assert!(c.is_numeric(), "{c:?}");
                assert_eq!(decimal_digit(c), char::from_digit(v, 10));
            }
        }
        assert_eq!(decimal_digit('a'), None);
        assert_eq!(decimal_digit('\u{65F}'), None);
    }

    #[test]
    fn offsets_map_back() {
        let src = "x: ５３６";
        let (out, map) = normalize(src);
        assert_eq!(out, "x: 536");
        let map = map.expect("changed");
        assert_eq!(map.to_source(3), 3);
        assert_eq!(map.to_source(4), 6);
        assert_eq!(map.to_source(6), 12);
    }

    #[test]
    fn percent() {
        assert!(has_percent_escape("536%2D22"));
        assert!(has_percent_escape("%u0035"));
        assert!(!has_percent_escape("100% sure %zz %"));
        let (s, map) = percent_decode("a%2D%u0035b%");
        assert_eq!(s, "a-5b%");
        assert_eq!(map.to_source(1), 1);
        assert_eq!(map.to_source(3), 10);
        let (s, _) = percent_decode("%FF%2D");
        assert_eq!(s, "\u{FFFD}-");
    }
}
