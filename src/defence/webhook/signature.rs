//! The signature scheme of signed deliveries, for both ends: [`sign`] is what the notifier
//! does, [`verify`] is what a receiver must do (a receiver written in Rust can call it; the
//! tests do, so sender and checker cannot drift apart).
//!
//! Like Stripe's `Stripe-Signature` and GitHub's `X-Hub-Signature-256`, and with the signed
//! content of Standard Webhooks 1.0 (`"{id}.{timestamp}.{body}"`, here timestamp first):
//!
//! - `X-Phi-Gateway-Timestamp`: unix seconds when this attempt was sent;
//! - `X-Phi-Gateway-Delivery`: a random UUID, new for every attempt (a nonce). The alert's
//!   own `id` in the body stays the same across retries: deduplicate alerts on that;
//! - `X-Phi-Gateway-Signature`: `sha256=` and the lowercase hex HMAC-SHA256, under the shared
//!   secret, of `"<timestamp>.<delivery>.<body>"` (the body byte for byte, as received).
//!
//! A receiver compares the signature in constant time, refuses a timestamp more than
//! [`TOLERANCE_SECONDS`] away from its clock, and refuses a delivery id it has seen. The
//! window bounds the memory the last check needs: an id older than the window can never pass
//! the timestamp check again, so [`SeenDeliveries`] forgets it.

use std::collections::HashMap;

use ring::hmac;

/// Unix seconds when the attempt was sent.
pub const TIMESTAMP_HEADER: &str = "x-phi-gateway-timestamp";
/// A nonce, new for every attempt.
pub const DELIVERY_HEADER: &str = "x-phi-gateway-delivery";
/// `sha256=<hex HMAC-SHA256 over "<timestamp>.<delivery>.<body>">`.
pub const SIGNATURE_HEADER: &str = "x-phi-gateway-signature";
/// How far a timestamp may be from the receiver's clock, either way (5 minutes, as Stripe).
pub const TOLERANCE_SECONDS: u64 = 300;
/// The shortest secret accepted: 256 bits, the HMAC-SHA256 block of security (Standard
/// Webhooks asks for at least 24 bytes).
pub const MIN_SECRET_BYTES: usize = 32;
/// The longest delivery id a receiver stores (ours are 36-character UUIDs).
const MAX_DELIVERY_ID: usize = 64;

/// Why [`verify`] refused a delivery. Carries no header value or body byte.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A required header is absent (or appears more than once).
    #[error("header `{0}` is missing or repeated")]
    Missing(&'static str),
    /// A header is not in its form (digits, a short token, `sha256=` and 64 hex digits).
    #[error("header `{0}` is malformed")]
    Malformed(&'static str),
    /// The signature does not match the secret, timestamp, delivery id and body.
    #[error("the signature does not match")]
    Signature,
    /// The timestamp is older than the tolerance.
    #[error("the timestamp is {0} s old (tolerance {TOLERANCE_SECONDS} s)")]
    Stale(u64),
    /// The timestamp is ahead of the receiver's clock by more than the tolerance.
    #[error("the timestamp is {0} s in the future (tolerance {TOLERANCE_SECONDS} s)")]
    Future(u64),
    /// This delivery id was accepted before: a replay.
    #[error("delivery id seen before (replay)")]
    Replay,
    /// The replay memory is full of ids still inside the window; refused rather than forgotten.
    #[error("too many deliveries inside the replay window")]
    ReplayCacheFull,
}

/// The delivery ids a receiver accepted inside the replay window, bounded.
#[derive(Debug)]
pub struct SeenDeliveries {
    ids: HashMap<String, u64>,
    capacity: usize,
}

impl SeenDeliveries {
    /// Remembers at most `capacity` ids at a time (at least one). Size it to the deliveries
    /// expected in `2 × TOLERANCE_SECONDS`; past that, new deliveries are refused
    /// ([`VerifyError::ReplayCacheFull`]) rather than an id forgotten early.
    pub fn new(capacity: usize) -> Self {
        SeenDeliveries {
            ids: HashMap::new(),
            capacity: capacity.max(1),
        }
    }

    /// Ids currently remembered.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Records `id` (sent at `timestamp`), or says it was seen.
    fn insert(&mut self, id: &str, timestamp: u64, now: u64) -> Result<(), VerifyError> {
        if self.ids.contains_key(id) {
            return Err(VerifyError::Replay);
        }
        if self.ids.len() >= self.capacity {
            // Past its timestamp + tolerance an id fails the timestamp check anyway.
            self.ids
                .retain(|_, t| t.saturating_add(TOLERANCE_SECONDS) >= now);
            if self.ids.len() >= self.capacity {
                return Err(VerifyError::ReplayCacheFull);
            }
        }
        self.ids.insert(id.to_string(), timestamp);
        Ok(())
    }
}

/// The `X-Phi-Gateway-Signature` value for one attempt.
pub fn sign(key: &hmac::Key, timestamp: u64, delivery: &str, body: &[u8]) -> String {
    let tag = hmac::sign(key, &signed_content(timestamp, delivery, body));
    format!("sha256={}", crate::audit::record::hex(tag.as_ref()))
}

/// Checks a signed delivery as a receiver must: the signature (constant time), then the
/// timestamp against `now` (unix seconds), then that the delivery id is new, which records
/// it in `seen`. Only a delivery that passes all three is recorded, so forged requests cannot
/// fill `seen`.
pub fn verify(
    secret: &[u8],
    headers: &http::HeaderMap,
    body: &[u8],
    now: u64,
    seen: &mut SeenDeliveries,
) -> Result<(), VerifyError> {
    let timestamp = one(headers, TIMESTAMP_HEADER)?;
    let delivery = one(headers, DELIVERY_HEADER)?;
    let signature = one(headers, SIGNATURE_HEADER)?;
    let ts: u64 = match timestamp.len() {
        1..=19 if timestamp.bytes().all(|b| b.is_ascii_digit()) => timestamp
            .parse()
            .map_err(|_| VerifyError::Malformed(TIMESTAMP_HEADER))?,
        _ => return Err(VerifyError::Malformed(TIMESTAMP_HEADER)),
    };
    let id_ok = (1..=MAX_DELIVERY_ID).contains(&delivery.len())
        && delivery
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !id_ok {
        return Err(VerifyError::Malformed(DELIVERY_HEADER));
    }
    let tag = signature
        .strip_prefix("sha256=")
        .and_then(unhex32)
        .ok_or(VerifyError::Malformed(SIGNATURE_HEADER))?;
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    hmac::verify(&key, &signed_content(ts, delivery, body), &tag)
        .map_err(|_| VerifyError::Signature)?;
    if now > ts.saturating_add(TOLERANCE_SECONDS) {
        return Err(VerifyError::Stale(now - ts));
    }
    if ts > now.saturating_add(TOLERANCE_SECONDS) {
        return Err(VerifyError::Future(ts - now));
    }
    seen.insert(delivery, ts, now)
}

/// `"<timestamp>.<delivery>.<body>"`: the bytes [`sign`] and [`verify`] both MAC.
fn signed_content(timestamp: u64, delivery: &str, body: &[u8]) -> Vec<u8> {
    let ts = timestamp.to_string();
    let mut out = Vec::with_capacity(ts.len() + delivery.len() + body.len() + 2);
    out.extend_from_slice(ts.as_bytes());
    out.push(b'.');
    out.extend_from_slice(delivery.as_bytes());
    out.push(b'.');
    out.extend_from_slice(body);
    out
}

/// The one value of header `name`, as text. Two values are refused: which one a proxy in
/// between would pick is not defined.
fn one<'h>(headers: &'h http::HeaderMap, name: &'static str) -> Result<&'h str, VerifyError> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (Some(v), None) => v.to_str().map_err(|_| VerifyError::Malformed(name)),
        _ => Err(VerifyError::Missing(name)),
    }
}

/// 64 hex digits (either case) as 32 bytes.
fn unhex32(s: &str) -> Option<[u8; 32]> {
    let digits = s.as_bytes();
    if digits.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        *byte = (hi * 16 + lo) as u8;
    }
    Some(out)
}
