//! How exceptions and reports name a value without writing it down: keyed fingerprints and
//! shape masks.

/// Key for value fingerprints. Fingerprints let an exception name one value without writing
/// it down; the key is public, so a fingerprint of a short number can be brute-forced — treat
/// rule files with `values:` as sensitive (docs/rules.md).
const FINGERPRINT_KEY: &[u8] = b"phi-gateway exception fingerprint v1";

/// `hmac-sha256:<32 hex>` over the value's letters and digits, uppercased, so that
/// `536-22-1234` and `536221234` have the same fingerprint.
pub(crate) fn fingerprint(value: &str) -> String {
    let canon: String = value
        .chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_uppercase)
        .collect();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, FINGERPRINT_KEY);
    let tag = ring::hmac::sign(&key, canon.as_bytes());
    let hex: String = tag
        .as_ref()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("hmac-sha256:{hex}")
}

/// The fingerprint `exceptions.values` expects for `value` (after the engine's
/// normalisation: letters and digits only, uppercased).
pub fn value_fingerprint(value: &str) -> String {
    fingerprint(value)
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
