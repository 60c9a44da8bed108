//! How exceptions and reports name a value without writing it down: keyed fingerprints and
//! shape masks.
//!
//! A fingerprint is only as secret as its key: an HMAC of a 9-digit number under a known key
//! is reversed by trying 10⁹ values. So there is no built-in key. The deployment's secret
//! (`rules.fingerprint_key_file`, by default `audit.fingerprint_key_file`) is handed to the
//! rule set at load ([`RuleSet::with_fingerprint_key`](super::RuleSet::with_fingerprint_key));
//! without one no fingerprint is computed, printed or matched.

use std::fmt;

/// Label of the exception-fingerprint subkey: `HMAC-SHA256(deployment key, label)`. A subkey
/// keeps exception fingerprints apart from the audit trail's fingerprints under the same key.
const SUBKEY_LABEL: &[u8] = b"phi-gateway exception fingerprint v2";
/// Label of the key id: the first 4 bytes of `HMAC-SHA256(deployment key, label)`, in hex.
const KEY_ID_LABEL: &[u8] = b"phi-gateway fingerprint key id";

/// The deployment's fingerprint key, ready to sign. `Debug` shows only the key id.
#[derive(Clone)]
pub struct FingerprintKey {
    key: ring::hmac::Key,
    id: String,
}

impl FingerprintKey {
    /// Derives the exception-fingerprint key from the deployment secret's raw bytes (the
    /// contents of the audit fingerprint key file, at least 32 bytes in practice).
    pub fn new(secret: &[u8]) -> FingerprintKey {
        let root = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
        let sub = ring::hmac::sign(&root, SUBKEY_LABEL);
        let id = ring::hmac::sign(&root, KEY_ID_LABEL);
        FingerprintKey {
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, sub.as_ref()),
            id: hex(id.as_ref().iter().take(4)),
        }
    }

    /// The key id: 8 hex digits, the same for every fingerprint made with this key, so a rule
    /// file can be checked against the deployment key without revealing anything about it.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `hmac-sha256:<key id>:<32 hex>` over the value's letters and digits, uppercased, so
    /// that `536-22-1234` and `536221234` have the same fingerprint.
    pub fn fingerprint(&self, value: &str) -> String {
        let canon: String = value
            .chars()
            .filter(|c| c.is_alphanumeric())
            .flat_map(char::to_uppercase)
            .collect();
        let tag = ring::hmac::sign(&self.key, canon.as_bytes());
        format!(
            "hmac-sha256:{}:{}",
            self.id,
            hex(tag.as_ref().iter().take(16))
        )
    }
}

impl fmt::Debug for FingerprintKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FingerprintKey(id {})", self.id)
    }
}

/// What an `exceptions.values` entry is, checked at load.
pub(crate) enum ParsedFingerprint<'a> {
    /// `hmac-sha256:<8 hex key id>:<32 hex>`: the key id and the whole (lowercase) text.
    Keyed { key_id: &'a str },
    /// `hmac-sha256:<32 hex>`: the form made with the public key of earlier versions.
    Legacy,
    /// Anything else.
    Invalid,
}

/// Parses an `exceptions.values` entry.
pub(crate) fn parse_fingerprint(text: &str) -> ParsedFingerprint<'_> {
    let hex_of = |s: &str, n: usize| s.len() == n && s.bytes().all(|c| c.is_ascii_hexdigit());
    let Some(rest) = text.strip_prefix("hmac-sha256:") else {
        return ParsedFingerprint::Invalid;
    };
    match rest.split_once(':') {
        Some((id, tag)) if hex_of(id, 8) && hex_of(tag, 32) => {
            ParsedFingerprint::Keyed { key_id: id }
        }
        None if hex_of(rest, 32) => ParsedFingerprint::Legacy,
        _ => ParsedFingerprint::Invalid,
    }
}

fn hex<'a>(bytes: impl Iterator<Item = &'a u8>) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// A value's shape for reports: digits become `#`, letters `x`, at most 40 characters.
pub(crate) fn mask_value(value: &str) -> String {
    let mut out: String = value
        .chars()
        .take(40)
        .map(|c| {
            if c.is_numeric() {
                '#'
            } else if c.is_alphabetic() {
                'x'
            } else if c.is_control() {
                ' '
            } else {
                c
            }
        })
        .collect();
    if value.chars().count() > 40 {
        out.push('…');
    }
    out
}
