//! Is this field encrypted, signed or plain? (JOSE compact serialisation.)
//!
//! Field-level encryption is the legitimate way to send PHI through the gateway, so a JWE
//! compact token is exempt from scanning and reported as encrypted instead. The check is
//! structural and strict because "looks encrypted" must not become an evasion: the protected
//! header must be JSON with `alg` and `enc`, `enc` must be a registered content-encryption
//! algorithm, the IV and tag must have that algorithm's sizes, and the ciphertext must not decode
//! to printable text. A JWS/JWT is only *signed*: its payload is readable, so we decode it and
//! scan it like any other body.

use base64::alphabet;
use base64::engine::general_purpose::GeneralPurposeConfig;
use base64::engine::{DecodePaddingMode, GeneralPurpose};
use base64::Engine as _;

/// base64url as used by JOSE, tolerant of stray padding and non-zero trailing bits (we only
/// classify; a strict decoder would let a sloppy token slip through unscanned).
const B64URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Protected headers are small; refuse to decode anything bigger (bounded work per value).
const MAX_HEADER_B64: usize = 4096;

/// Shorter strings cannot hold a header, an IV and a tag.
const MIN_TOKEN_LEN: usize = 24;

/// What a string value turned out to be.
#[derive(Debug)]
pub(crate) enum Token {
    /// A JWE compact token that passed every structural check: do not scan.
    Encrypted,
    /// A JWS compact token: its decoded payload must be scanned.
    Signed { payload: Vec<u8> },
    /// A JWE-shaped token whose ciphertext decodes to printable text: scan that text.
    FakeEncrypted { ciphertext: Vec<u8> },
    /// Anything else.
    Plain,
}

/// IV and tag lengths (bytes) of the registered JWE `enc` algorithms (RFC 7518 §5, RFC 8439
/// drafts for ChaCha20).
fn enc_sizes(enc: &str) -> Option<(usize, usize)> {
    Some(match enc {
        "A128GCM" | "A192GCM" | "A256GCM" | "C20P" => (12, 16),
        "XC20P" => (24, 16),
        "A128CBC-HS256" => (16, 16),
        "A192CBC-HS384" => (16, 24),
        "A256CBC-HS512" => (16, 32),
        _ => return None,
    })
}

fn is_b64url(s: &str) -> bool {
    s.bytes().all(is_b64url_byte)
}

/// Decodes a protected header into a JSON object, if it is one.
fn header(seg: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    if seg.is_empty() || seg.len() > MAX_HEADER_B64 {
        return None;
    }
    let bytes = B64URL.decode(seg).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Whether decoded ciphertext is mostly printable text, i.e. not ciphertext at all.
fn looks_like_text(bytes: &[u8]) -> bool {
    if bytes.len() < 8 {
        return false;
    }
    let printable = bytes
        .iter()
        .filter(|b| matches!(b, 0x20..=0x7E | b'\t' | b'\r' | b'\n'))
        .count();
    printable * 10 > bytes.len() * 9
}

/// Classifies one string value. `max_payload` bounds the decoded JWS payload.
pub(crate) fn classify(value: &str, max_payload: usize) -> Token {
    let value = value.trim_matches(|c: char| c.is_ascii_whitespace());
    if value.len() < MIN_TOKEN_LEN || !value.bytes().all(|b| b == b'.' || is_b64url_byte(b)) {
        return Token::Plain;
    }
    let mut parts = [""; 5];
    let mut n = 0;
    for part in value.split('.') {
        match parts.get_mut(n) {
            Some(slot) => *slot = part,
            None => return Token::Plain,
        }
        n += 1;
    }
    match (n, parts) {
        (5, [h, _key, iv, ct, tag]) => classify_jwe(h, iv, ct, tag),
        (3, [h, payload, _sig, _, _]) => classify_jws(h, payload, max_payload),
        _ => Token::Plain,
    }
}

fn is_b64url_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'='
}

fn classify_jwe(h: &str, iv: &str, ct: &str, tag: &str) -> Token {
    let Some(hdr) = header(h) else {
        return Token::Plain;
    };
    let (Some(_alg), Some(enc)) = (
        hdr.get("alg").and_then(|v| v.as_str()),
        hdr.get("enc").and_then(|v| v.as_str()),
    ) else {
        return Token::Plain;
    };
    let ciphertext = match B64URL.decode(ct) {
        Ok(c) if !c.is_empty() => c,
        _ => return Token::Plain,
    };
    if looks_like_text(&ciphertext) {
        return Token::FakeEncrypted { ciphertext };
    }
    let decoded_len = |s: &str| B64URL.decode(s).map(|v| v.len()).ok();
    match enc_sizes(enc) {
        Some((iv_len, tag_len))
            if is_b64url(iv)
                && decoded_len(iv) == Some(iv_len)
                && decoded_len(tag) == Some(tag_len) =>
        {
            Token::Encrypted
        }
        // Header says JWE but the parts do not fit the algorithm: do not exempt it. The
        // ciphertext is random-looking, so there is nothing readable to scan beyond the value.
        _ => Token::Plain,
    }
}

fn classify_jws(h: &str, payload: &str, max_payload: usize) -> Token {
    let Some(hdr) = header(h) else {
        return Token::Plain;
    };
    if hdr.get("alg").and_then(|v| v.as_str()).is_none() || hdr.contains_key("enc") {
        return Token::Plain;
    }
    if payload.is_empty() || payload.len() / 4 * 3 > max_payload {
        return Token::Plain;
    }
    // RFC 7797 unencoded payloads (`"b64": false`) are already plain text.
    if hdr.get("b64").and_then(|v| v.as_bool()) == Some(false) {
        return Token::Signed {
            payload: payload.as_bytes().to_vec(),
        };
    }
    match B64URL.decode(payload) {
        Ok(p) => Token::Signed { payload: p },
        Err(_) => Token::Plain,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn b64(data: &[u8]) -> String {
        B64URL.encode(data)
    }

    /// A synthetic JWE compact token (random-looking bytes, correct sizes for A256GCM).
    pub(crate) fn jwe() -> String {
        let ct: Vec<u8> = (0u8..48)
            .map(|i| i.wrapping_mul(173).wrapping_add(91))
            .collect();
        format!(
            "{}.{}.{}.{}.{}",
            b64(br#"{"alg":"RSA-OAEP-256","enc":"A256GCM","kid":"k1"}"#),
            b64(&[7u8; 256]),
            b64(&[1u8; 12]),
            b64(&ct),
            b64(&[2u8; 16])
        )
    }

    pub(crate) fn jws(payload: &str) -> String {
        format!(
            "{}.{}.{}",
            b64(br#"{"alg":"HS256","typ":"JWT"}"#),
            b64(payload.as_bytes()),
            b64(&[3u8; 32])
        )
    }

    #[test]
    fn jwe_is_encrypted() {
        assert!(matches!(classify(&jwe(), 1 << 20), Token::Encrypted));
    }

    #[test]
    fn jwe_with_plaintext_ciphertext_is_not() {
        let fake = format!(
            "{}..{}.{}.{}",
            b64(br#"{"alg":"dir","enc":"A256GCM"}"#),
            b64(&[1u8; 12]),
            b64(b"SSN 536-22-1234 in the clear"),
            b64(&[2u8; 16])
        );
        assert!(matches!(
            classify(&fake, 1 << 20),
            Token::FakeEncrypted { .. }
        ));
    }

    #[test]
    fn jwe_needs_enc_and_sizes() {
        let no_enc = format!(
            "{}..{}.{}.{}",
            b64(br#"{"alg":"dir"}"#),
            b64(&[1u8; 12]),
            b64(&[200u8; 40]),
            b64(&[2u8; 16])
        );
        assert!(matches!(classify(&no_enc, 1 << 20), Token::Plain));
        let bad_tag = format!(
            "{}..{}.{}.{}",
            b64(br#"{"alg":"dir","enc":"A256GCM"}"#),
            b64(&[1u8; 12]),
            b64(&[200u8; 40]),
            b64(&[2u8; 3])
        );
        assert!(matches!(classify(&bad_tag, 1 << 20), Token::Plain));
    }

    #[test]
    fn jws_payload_is_decoded() {
        match classify(&jws(r#"{"ssn":"536-22-1234"}"#), 1 << 20) {
            Token::Signed { payload } => assert_eq!(payload, br#"{"ssn":"536-22-1234"}"#),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn random_strings_are_plain() {
        for s in [
            "",
            "a.b.c",
            "not a token at all, just text with spaces....",
            "aGVsbG8.d29ybGQ.Zm9v.YmFy.YmF6",
            "eyJhbGciOiJIUzI1NiJ9",
            "....................................",
        ] {
            assert!(matches!(classify(s, 1 << 20), Token::Plain), "{s}");
        }
    }
}
