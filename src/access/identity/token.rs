//! A strict parser for JWS compact serialisation (RFC 7515 §7.1): three base64url segments,
//! a JOSE header and a JSON claims object. Pure and allocation-bounded: the fuzz target
//! `token_parse` drives it with arbitrary bytes.
//!
//! Strict where libraries are lenient, because every leniency is a place where two parsers
//! (ours and the upstream's) can disagree about one token:
//! - at most [`MAX_TOKEN_BYTES`]; only the base64url alphabet and two dots; no padding, no
//!   non-canonical trailing bits;
//! - header and claims must be JSON objects without duplicate members (`{"alg":"RS256",
//!   "alg":"none"}` means different things to different parsers), with at most
//!   [`MAX_HEADER_MEMBERS`] / [`MAX_CLAIMS`] members;
//! - keys carried or pointed to by the token (`jwk`, `jku`, `x5u`, `x5c`) are refused, never
//!   used (CVE-2018-0114 trusted an embedded `jwk`; `jku`/`x5u` are an SSRF vector);
//! - `crit` is refused: this verifier implements no JWS extension, so RFC 7515 §4.1.11 says any
//!   listed one makes the token invalid; `b64`, `zip`, `enc` and `cty` (unencoded payloads,
//!   JWE, nested tokens) likewise.
//!
//! Nothing here checks a signature or a claim: see `keys` and `claims`.

use base64::Engine as _;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::TokenError;

/// Longest token accepted. Real access tokens are 0.5-2 KiB; 8 KiB leaves room for many
/// scopes while bounding the work an attacker can ask for.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Most members in the JOSE header.
pub const MAX_HEADER_MEMBERS: usize = 16;
/// Most members in the claims object.
pub const MAX_CLAIMS: usize = 128;
/// Longest `kid` accepted (it is only ever a lookup key, never a path or a query).
pub const MAX_KID_BYTES: usize = 256;

/// Header members that carry or point to a key. Never trusted: the key must come from the
/// issuer's configured key set.
const EMBEDDED_KEY_MEMBERS: &[&str] = &["jwk", "jku", "x5u", "x5c"];
/// Header members this verifier does not implement; a token that uses them is refused.
const UNSUPPORTED_MEMBERS: &[&str] = &["crit", "b64", "zip", "enc", "cty"];

/// A token split and decoded, not yet verified.
#[derive(Debug)]
pub struct Parsed<'a> {
    /// The header's `alg`, as written.
    pub alg: String,
    /// The header's `kid`, if any.
    pub kid: Option<String>,
    /// The header's `typ`, if any.
    pub typ: Option<String>,
    /// The claims object.
    pub claims: Map<String, Value>,
    /// `base64url(header) . base64url(payload)`: the bytes the signature covers.
    pub signing_input: &'a [u8],
    /// The decoded signature.
    pub signature: Vec<u8>,
}

/// A JSON object whose members are unique, with at most `N` of them.
struct UniqueObject<const N: usize>(Map<String, Value>);

impl<'de, const N: usize> Deserialize<'de> for UniqueObject<N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<const N: usize>;
        impl<'de, const N: usize> Visitor<'de> for V<N> {
            type Value = UniqueObject<N>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object with unique members")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
                let mut map = Map::new();
                while let Some((k, v)) = access.next_entry::<String, Value>()? {
                    if map.len() >= N {
                        return Err(serde::de::Error::custom("too many members"));
                    }
                    if map.insert(k, v).is_some() {
                        return Err(serde::de::Error::custom("duplicate member"));
                    }
                }
                Ok(UniqueObject(map))
            }
        }
        d.deserialize_map(V::<N>)
    }
}

fn b64(segment: &[u8]) -> Result<Vec<u8>, TokenError> {
    // URL_SAFE_NO_PAD refuses `=` and non-canonical trailing bits.
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| TokenError::Malformed)
}

fn object<const N: usize>(bytes: &[u8]) -> Result<Map<String, Value>, TokenError> {
    serde_json::from_slice::<UniqueObject<N>>(bytes)
        .map(|o| o.0)
        .map_err(|_| TokenError::Malformed)
}

/// Splits and decodes a compact JWS. Refuses every shape described in the module doc.
pub fn parse(token: &str) -> Result<Parsed<'_>, TokenError> {
    let bytes = token.as_bytes();
    if bytes.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::TooLong);
    }
    if !bytes
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(TokenError::Malformed);
    }
    let mut parts = bytes.split(|&b| b == b'.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    if h.is_empty() || p.is_empty() {
        return Err(TokenError::Malformed);
    }
    let mut header = object::<MAX_HEADER_MEMBERS>(&b64(h)?)?;
    if EMBEDDED_KEY_MEMBERS.iter().any(|m| header.contains_key(*m)) {
        return Err(TokenError::EmbeddedKey);
    }
    if UNSUPPORTED_MEMBERS.iter().any(|m| header.contains_key(*m)) {
        return Err(TokenError::UnsupportedHeader);
    }
    let alg = match header.remove("alg") {
        Some(Value::String(a)) => a,
        _ => return Err(TokenError::Malformed),
    };
    let kid = match header.remove("kid") {
        None => None,
        Some(Value::String(k)) if !k.is_empty() && k.len() <= MAX_KID_BYTES => Some(k),
        Some(_) => return Err(TokenError::Malformed),
    };
    let typ = match header.remove("typ") {
        None => None,
        Some(Value::String(t)) => Some(t),
        Some(_) => return Err(TokenError::Malformed),
    };
    if s.is_empty() {
        // An unsigned token (`alg: none` has an empty signature).
        return Err(TokenError::AlgorithmNotAllowed);
    }
    let claims = object::<MAX_CLAIMS>(&b64(p)?)?;
    let signature = b64(s)?;
    Ok(Parsed {
        alg,
        kid,
        typ,
        claims,
        signing_input: &bytes[..h.len() + 1 + p.len()],
        signature,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(v: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
    }

    fn token(header: &str, claims: &str, sig: &str) -> String {
        format!("{}.{}.{}", enc(header), enc(claims), sig)
    }

    #[test]
    fn parses_a_well_formed_token() {
        let t = token(
            r#"{"alg":"ES256","kid":"k1","typ":"at+jwt"}"#,
            r#"{"sub":"u1","exp":10}"#,
            "AAAA",
        );
        let p = parse(&t).unwrap();
        assert_eq!(p.alg, "ES256");
        assert_eq!(p.kid.as_deref(), Some("k1"));
        assert_eq!(p.typ.as_deref(), Some("at+jwt"));
        assert_eq!(p.claims["sub"], "u1");
        assert_eq!(p.signature, vec![0, 0, 0]);
        assert_eq!(
            p.signing_input,
            t.rsplit_once('.').unwrap().0.as_bytes(),
            "the signature covers header.payload exactly"
        );
    }

    #[test]
    fn refuses_malformed_shapes() {
        let good_h = enc(r#"{"alg":"ES256"}"#);
        let good_p = enc(r#"{"exp":1}"#);
        for bad in [
            String::new(),
            "a".into(),
            "a.b".into(),
            format!("{good_h}.{good_p}.AAAA.AAAA"),
            format!("{good_h}.{good_p}.AAAA="),
            format!("{good_h}.{good_p}.AA+A"),
            format!(".{good_p}.AAAA"),
            format!("{good_h}..AAAA"),
            format!("{good_h} .{good_p}.AAAA"),
            format!("{}.{good_p}.AAAA", enc("[1,2]")),
            format!("{}.{good_p}.AAAA", enc("not json")),
            format!("{good_h}.{}.AAAA", enc("\"string\"")),
            format!("{good_h}.{}.AAAA", enc(r#"{"exp":1,"exp":2}"#)),
            format!("{}.{good_p}.AAAA", enc(r#"{"alg":"ES256","alg":"none"}"#)),
            format!("{}.{good_p}.AAAA", enc(r#"{"alg":1}"#)),
            format!("{}.{good_p}.AAAA", enc(r#"{"kid":"x"}"#)),
            format!("{}.{good_p}.AAAA", enc(r#"{"alg":"ES256","kid":7}"#)),
            format!("{}.{good_p}.AAAA", enc(r#"{"alg":"ES256","kid":""}"#)),
            // Non-canonical trailing bits: "AAB" decodes leniently to the same bytes as "AAA".
            format!("{good_h}.{good_p}.AAB"),
        ] {
            assert!(parse(&bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn refuses_embedded_keys_crit_and_unsigned_tokens() {
        let p = enc(r#"{"exp":1}"#);
        for (h, want) in [
            (
                r#"{"alg":"RS256","jwk":{"kty":"RSA"}}"#,
                TokenError::EmbeddedKey,
            ),
            (
                r#"{"alg":"RS256","jku":"https://x/"}"#,
                TokenError::EmbeddedKey,
            ),
            (
                r#"{"alg":"RS256","x5u":"https://x/"}"#,
                TokenError::EmbeddedKey,
            ),
            (r#"{"alg":"RS256","x5c":["AAAA"]}"#, TokenError::EmbeddedKey),
            (
                r#"{"alg":"RS256","crit":["exp"]}"#,
                TokenError::UnsupportedHeader,
            ),
            (
                r#"{"alg":"RS256","b64":false}"#,
                TokenError::UnsupportedHeader,
            ),
            (
                r#"{"alg":"RS256","cty":"JWT"}"#,
                TokenError::UnsupportedHeader,
            ),
        ] {
            assert_eq!(
                parse(&format!("{}.{p}.AAAA", enc(h))).unwrap_err(),
                want,
                "{h}"
            );
        }
        let none = format!("{}.{p}.", enc(r#"{"alg":"none"}"#));
        assert_eq!(parse(&none).unwrap_err(), TokenError::AlgorithmNotAllowed);
    }

    #[test]
    fn bounds_length_members_and_kid() {
        let long = "a".repeat(MAX_TOKEN_BYTES + 1);
        assert_eq!(parse(&long).unwrap_err(), TokenError::TooLong);
        let many: String = (0..MAX_HEADER_MEMBERS + 1)
            .map(|i| format!("\"m{i}\":1,"))
            .collect();
        let h = format!("{{{many}\"alg\":\"ES256\"}}");
        assert!(parse(&token(&h, r#"{"exp":1}"#, "AAAA")).is_err());
        let kid = "k".repeat(MAX_KID_BYTES + 1);
        let h = format!("{{\"alg\":\"ES256\",\"kid\":\"{kid}\"}}");
        assert!(parse(&token(&h, r#"{"exp":1}"#, "AAAA")).is_err());
    }
}
