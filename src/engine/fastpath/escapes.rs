//! Strings with JSON escapes in the one-pass profile. Narratives (`text.div`, XHTML whose
//! attribute quotes and line breaks are written `\"` and `\n`) are in most published FHIR. Such
//! a string is read again here, checked as the walker decodes it, and stands in the profile as
//! the raw pieces between its escapes (see [`escaped_string`] for why that is sound).

use super::{byte_flags, new_string, tok_at, Tok, SPECIAL};

/// The tokens of a string with escapes whose content starts at `start` (see
/// [`escaped_string`]): the decoded string is checked as the walker sees it, and each raw
/// piece between escapes with at least `min_digits` digits becomes a token (never interned,
/// never a repeat). Returns the index of the closing quote. Out of the profile's loop, which
/// it would otherwise slow down for every plain string.
#[cold]
#[inline(never)]
pub(super) fn escaped_tokens(
    b: &[u8],
    start: usize,
    min_digits: usize,
    (decoded, pieces): &mut (Vec<u8>, Vec<(usize, usize)>),
    tokens: &mut Vec<Tok>,
) -> Option<usize> {
    let end = escaped_string(b, start, decoded, pieces)?;
    let flags = decoded.iter().fold(0, |f, &c| f | byte_flags(c)) & SPECIAL;
    let upper = decoded.iter().filter(|c| c.is_ascii_uppercase()).count();
    new_string(decoded, flags, upper)?;
    for &(s, e) in pieces.iter() {
        let piece = b.get(s..e)?;
        let digits = piece.iter().filter(|c| c.is_ascii_digit()).count();
        if digits >= min_digits {
            let upper = piece.iter().filter(|c| c.is_ascii_uppercase()).count();
            tokens.push(tok_at(s, e, digits, upper, false)?);
        }
    }
    Some(end)
}

/// Reads a string whose content starts at `start` and may hold escapes: returns the index of
/// its closing quote, its content decoded into `decoded`, and in `pieces` each non-empty run
/// of raw bytes between escapes (verbatim in the body and in the decoded string alike). Only
/// `\"`, `\\`, `\n`, `\r` and `\t` are taken, the escapes narratives are written with (XHTML
/// attribute quotes, line breaks); any other escape (`\u`, `\/`, …), a control character or a
/// non-ASCII byte is `None`.
///
/// A match of a pattern that cannot consume what these decode to ([`ESCAPED`]) lies inside one
/// piece of the decoded string, and its neighbours there (a decoded escape, or the string's
/// end) pass the same boundary tests as the `"` around a token: so the pieces can stand for
/// the string.
///
/// [`ESCAPED`]: crate::engine::rules::ESCAPED
pub(super) fn escaped_string(
    b: &[u8],
    start: usize,
    decoded: &mut Vec<u8>,
    pieces: &mut Vec<(usize, usize)>,
) -> Option<usize> {
    decoded.clear();
    pieces.clear();
    let (mut i, mut piece) = (start, start);
    loop {
        let c = *b.get(i)?;
        match c {
            b'"' => {
                if i > piece {
                    pieces.push((piece, i));
                }
                return Some(i);
            }
            b'\\' => {
                let d = match *b.get(i + 1)? {
                    b'"' => b'"',
                    b'\\' => b'\\',
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    _ => return None,
                };
                if i > piece {
                    pieces.push((piece, i));
                }
                decoded.push(d);
                i += 2;
                piece = i;
            }
            0x00..=0x1f | 0x80..=0xff => return None,
            _ => {
                decoded.push(c);
                i += 1;
            }
        }
    }
}
