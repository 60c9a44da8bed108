//! Is this field encrypted, signed or plain? JOSE (JWE compact, JWS), OpenPGP armor, age,
//! Vault transit, SOPS, the AWS Encryption SDK and Tink.
//!
//! Only a JWE compact token that passes every structural check is exempt from scanning; every
//! other recognised format is *reported* as encrypted (for `require_encrypted` rules) and still
//! scanned, because its markers are trivial to fake.
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
    Encrypted {
        /// The protected header's `enc`.
        enc: String,
    },
    /// Another recognised ciphertext format (scanned anyway: its markers are cheap to fake).
    Marked {
        /// The format (`pgp`, `age`, `vault`, `sops`, `aws-esdk`, `tink`).
        format: &'static str,
    },
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
    if let Some(format) = marked_format(value) {
        return Token::Marked { format };
    }
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
            Token::Encrypted {
                enc: enc.to_string(),
            }
        }
        // Header says JWE but the parts do not fit the algorithm: do not exempt it. The
        // ciphertext is random-looking, so there is nothing readable to scan beyond the value.
        _ => Token::Plain,
    }
}

/// Standard base64 (padding optional) for binary envelopes.
const B64STD: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Recognises the ciphertext envelopes that carry a marker: OpenPGP armor (only `PGP MESSAGE`,
/// not clear-signed text), age (armored and binary header), Vault transit `vault:vN:`, SOPS
/// `ENC[…]`, and base64 AWS Encryption SDK / Tink messages (checked on the decoded header).
fn marked_format(value: &str) -> Option<&'static str> {
    if value.starts_with("-----BEGIN PGP MESSAGE-----") && value.contains("-----END PGP MESSAGE") {
        return Some("pgp");
    }
    if value.starts_with("-----BEGIN AGE ENCRYPTED FILE-----")
        || (value.starts_with("age-encryption.org/v1") && value.contains("\n-> "))
    {
        return Some("age");
    }
    if let Some(rest) = value.strip_prefix("vault:v") {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && rest.as_bytes().get(digits) == Some(&b':') && rest.len() > digits + 16 {
            return Some("vault");
        }
    }
    if value.starts_with("ENC[") && value.ends_with(']') && value.contains("data:") {
        return Some("sops");
    }
    if value.len() >= 40
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
    {
        let head = B64STD
            .decode(value.get(..48.min(value.len() / 4 * 4))?)
            .ok()?;
        match head.as_slice() {
            // v1: version 1, type 0x80, a known algorithm suite id.
            [0x01, 0x80, a, b, ..] if esdk_suite(u16::from_be_bytes([*a, *b])) => {
                return Some("aws-esdk")
            }
            // v2: version 2, committing suites 0x0478 / 0x0578.
            [0x02, 0x04 | 0x05, 0x78, ..] => return Some("aws-esdk"),
            _ => {}
        }
        // Tink: 0x01 + 4-byte key id (TINK) or 0x00 + key id (LEGACY), then random bytes.
        let full = B64STD.decode(value).ok()?;
        if matches!(full.first(), Some(0x00 | 0x01))
            && full.len() >= 5 + 28
            && !looks_like_text(&full)
        {
            return Some("tink");
        }
    }
    None
}

/// AWS Encryption SDK v1 algorithm suite ids.
fn esdk_suite(id: u16) -> bool {
    matches!(
        id,
        0x0014 | 0x0046 | 0x0078 | 0x0114 | 0x0146 | 0x0178 | 0x0214 | 0x0346 | 0x0378
    )
}

/// What a value is, for reports and `require_encrypted` rules.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ValueClass {
    /// A recognised ciphertext envelope (`jwe`, `pgp`, `age`, `vault`, `sops`, `aws-esdk`,
    /// `tink`), with the JWE content-encryption algorithm when known.
    Encrypted {
        /// Envelope format.
        format: &'static str,
        /// JWE `enc` (e.g. `A256GCM`).
        enc: Option<String>,
    },
    /// An encoding of readable text (base64, a JWS payload, a JWE-shaped token with readable
    /// ciphertext).
    EncodedPlaintext {
        /// The encoding.
        encoding: &'static str,
    },
    /// Long, unreadable and in no known envelope (possibly encrypted, possibly random).
    Opaque,
    /// Anything else.
    Plaintext,
}

/// Classifies one value: encrypted, encoded plaintext, opaque or plaintext.
pub fn classify_value(value: &str) -> ValueClass {
    match classify(value, 1 << 20) {
        Token::Encrypted { enc } => ValueClass::Encrypted {
            format: "jwe",
            enc: Some(enc),
        },
        Token::Marked { format } => ValueClass::Encrypted { format, enc: None },
        Token::Signed { .. } => ValueClass::EncodedPlaintext { encoding: "jws" },
        Token::FakeEncrypted { .. } => ValueClass::EncodedPlaintext {
            encoding: "jwe-plaintext",
        },
        Token::Plain => {
            let v = value.trim();
            if super::normalize::decode_base64_text(v).is_some() {
                ValueClass::EncodedPlaintext { encoding: "base64" }
            } else if v.len() >= 24
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+/=-_".contains(&b))
            {
                ValueClass::Opaque
            } else {
                ValueClass::Plaintext
            }
        }
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
    use base64::engine::general_purpose::STANDARD as STD;

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
        assert!(matches!(classify(&jwe(), 1 << 20), Token::Encrypted { .. }));
        assert_eq!(
            classify_value(&jwe()),
            ValueClass::Encrypted {
                format: "jwe",
                enc: Some("A256GCM".into())
            }
        );
    }

    #[test]
    fn marked_formats_are_recognised() {
        let random: Vec<u8> = (0u8..64)
            .map(|i| i.wrapping_mul(151).wrapping_add(7))
            .collect();
        let mut esdk = vec![0x01, 0x80, 0x03, 0x78];
        esdk.extend_from_slice(&random);
        let mut esdk2 = vec![0x02, 0x05, 0x78];
        esdk2.extend_from_slice(&random);
        let mut tink = vec![0x01, 0xde, 0xad, 0xbe, 0xef];
        tink.extend_from_slice(&random);
        let cases = [
            (
                "-----BEGIN PGP MESSAGE-----\n\nhQEMA8x\n=abcd\n-----END PGP MESSAGE-----",
                "pgp",
            ),
            (
                "-----BEGIN AGE ENCRYPTED FILE-----\nYWdl\n-----END AGE ENCRYPTED FILE-----",
                "age",
            ),
            (
                "age-encryption.org/v1\n-> X25519 abc\n--- mac\nbinary",
                "age",
            ),
            (
                "vault:v1:8SDd3WHDOjf7mq69CyCqYjBXAiQQAVZRkFM13ok481zoCmHnSeDX9vyf7w==",
                "vault",
            ),
            ("ENC[AES256_GCM,data:Tr7o=,iv:1=,tag:2=,type:str]", "sops"),
            (&*STD.encode(&esdk), "aws-esdk"),
            (&*STD.encode(&esdk2), "aws-esdk"),
            (&*STD.encode(&tink), "tink"),
        ];
        for (v, f) in cases {
            match classify_value(v) {
                ValueClass::Encrypted { format, .. } => assert_eq!(format, f, "{v}"),
                other => panic!("{v}: {other:?}"),
            }
        }
    }

    #[test]
    fn look_alikes_are_not_encrypted() {
        for v in [
            "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nSSN 536-22-1234",
            "vault:v1:",
            "ENC[not sops",
            "age-encryption.org is a website",
        ] {
            assert!(
                !matches!(classify_value(v), ValueClass::Encrypted { .. }),
                "{v}"
            );
        }
        // base64 of readable text is encoded plaintext, whatever its first byte.
        let plain = STD.encode(b"\x01 SSN 536-22-1234 and more readable text here");
        assert!(!matches!(
            classify_value(&plain),
            ValueClass::Encrypted { .. }
        ));
        assert_eq!(
            classify_value(&STD.encode(b"Patient SSN 536-22-1234")),
            ValueClass::EncodedPlaintext { encoding: "base64" }
        );
        assert_eq!(classify_value("hello"), ValueClass::Plaintext);
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
