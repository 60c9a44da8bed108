//! Charsets: UTF-16 bodies (by BOM, declared charset or NUL pattern) are transcoded so their
//! ASCII digits are visible to the patterns.

/// Decodes UTF-16 bodies (by BOM, declared charset, or the NUL-byte pattern RFC 4627 used to
/// sniff JSON) so that `5\03\06\0…` is not invisible to the ASCII patterns.
pub(super) fn transcode_utf16(bytes: &[u8], charset: Option<&str>) -> Option<String> {
    let (le, body) = match bytes {
        [0xFF, 0xFE, rest @ ..] => (true, rest),
        [0xFE, 0xFF, rest @ ..] => (false, rest),
        _ => match charset {
            Some("utf-16le") => (true, bytes),
            Some("utf-16be") => (false, bytes),
            _ => match utf16_by_nuls(bytes) {
                Some(le) => (le, bytes),
                None if charset == Some("utf-16") => (false, bytes),
                None => return None,
            },
        },
    };
    let units = body.chunks_exact(2).map(|c| match c {
        [a, b] if le => u16::from_le_bytes([*a, *b]),
        [a, b] => u16::from_be_bytes([*a, *b]),
        _ => 0xFFFD,
    });
    Some(
        char::decode_utf16(units)
            .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
            .collect(),
    )
}

/// Whether the bytes themselves look like UTF-16 by their NUL pattern (ASCII text in UTF-16
/// has a zero in every other byte): `Some(true)` little-endian, `Some(false)` big-endian.
pub(super) fn utf16_by_nuls(bytes: &[u8]) -> Option<bool> {
    let sample = bytes.get(..4096).unwrap_or(bytes);
    // Most bodies have no NUL byte at all, and then neither count can reach its threshold; one
    // vectorised search answers that instead of the two strided counts below (about 6
    // instructions per byte of the sample, on every UTF-8 request body).
    if sample.len() < 4 || memchr::memchr(0, sample).is_none() {
        return None;
    }
    let pairs = sample.len() / 2;
    let even = sample.iter().step_by(2).filter(|b| **b == 0).count();
    let odd = sample
        .iter()
        .skip(1)
        .step_by(2)
        .filter(|b| **b == 0)
        .count();
    if odd * 10 >= pairs * 4 && even * 20 < pairs {
        Some(true)
    } else if even * 10 >= pairs * 4 && odd * 20 < pairs {
        Some(false)
    } else {
        None
    }
}
