//! JSON Web Key Sets (RFC 7517) and signature verification with ring.
//!
//! Confusion safety comes from the key, not from the token header (RFC 8725 §3.1, the design
//! of Envoy's jwt_verify_lib): an RSA key only ever verifies RS256/PS256, a P-256 key only
//! ES256, an Ed25519 key only EdDSA, and a key that names its `alg` only that one. Keys this
//! gateway must never use are dropped when the set is loaded, each with a reason for the log:
//! `kty: oct` (a shared secret has no place in a published set: it would turn HS256 on),
//! `use` other than `sig`, an `alg` outside RS256/PS256/ES256/EdDSA, RSA moduli under 2048
//! bits, curves other than P-256 and Ed25519, and anything carrying private key material.
//!
//! ring treats "each combination of parameters as a separate algorithm", so the verification
//! below is one match over (pinned algorithm, key type) with no fallthrough.

use base64::Engine as _;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde_json::Value;

use crate::config::Algorithm;

/// Largest JWKS document read (a set of a dozen RSA keys is ~10 KiB).
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// Most keys kept from one set.
pub const MAX_KEYS: usize = 64;

/// Why a key set cannot be used at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwksError {
    /// Not a JSON object with a `keys` array.
    #[error("not a JWKS document (a JSON object with a `keys` array)")]
    NotJwks,
    /// Larger than [`MAX_JWKS_BYTES`].
    #[error("larger than {MAX_JWKS_BYTES} bytes")]
    TooLarge,
    /// No key in the set can verify anything this issuer accepts.
    #[error("no usable signing key ({0})")]
    NoUsableKey(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Material {
    /// Modulus and exponent, big-endian without leading zeros.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// Uncompressed SEC1 point `04 || x || y`.
    P256 { point: Vec<u8> },
    /// The 32-byte public key.
    Ed25519 { x: Vec<u8> },
}

/// One usable public signing key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jwk {
    /// `kid`, if the set gives one.
    pub kid: Option<String>,
    /// `alg`, if the set pins one.
    pub alg: Option<Algorithm>,
    material: Material,
    /// SHA-256 over the key type and material: identifies the key across fetches, so cached
    /// tokens can be dropped when their key leaves the set.
    pub thumb: [u8; 32],
}

/// The usable keys of one set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySet {
    /// Keys in document order.
    pub keys: Vec<Jwk>,
}

fn b64(v: Option<&Value>) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(v?.as_str()?)
        .ok()
}

fn strip_zeros(mut v: Vec<u8>) -> Vec<u8> {
    let lead = v.iter().take_while(|&&b| b == 0).count();
    v.drain(..lead);
    v
}

fn thumb(kty: &str, parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(kty.as_bytes());
    for p in parts {
        ctx.update(&(p.len() as u32).to_be_bytes());
        ctx.update(p);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// One JWK → a usable key, or why not.
fn parse_key(k: &Value) -> Result<Jwk, String> {
    let k = k.as_object().ok_or("a key is not a JSON object")?;
    let kty = k.get("kty").and_then(Value::as_str).unwrap_or("");
    if kty == "oct" {
        return Err("`kty: oct` (a shared secret) is never used".into());
    }
    let kid = match k.get("kid") {
        None => None,
        Some(Value::String(s)) if !s.is_empty() && s.len() <= super::token::MAX_KID_BYTES => {
            Some(s.clone())
        }
        Some(_) => return Err("`kid` is not a short string".into()),
    };
    match k.get("use") {
        None => {}
        Some(Value::String(u)) if u == "sig" => {}
        Some(_) => return Err("`use` is not `sig`".into()),
    }
    let alg = match k.get("alg") {
        None => None,
        Some(Value::String(a)) => {
            Some(Algorithm::from_jws(a).ok_or_else(|| format!("algorithm `{a}` is not accepted"))?)
        }
        Some(_) => return Err("`alg` is not a string".into()),
    };
    if ["d", "p", "q", "dp", "dq", "qi", "k"]
        .iter()
        .any(|m| k.contains_key(*m))
    {
        return Err(format!("a `{kty}` key carries secret or private material"));
    }
    let material = match kty {
        "RSA" => {
            let n = strip_zeros(b64(k.get("n")).ok_or("RSA key without a valid `n`")?);
            let e = strip_zeros(b64(k.get("e")).ok_or("RSA key without a valid `e`")?);
            if n.len() < 256 || n.len() > 1024 {
                return Err(format!(
                    "RSA modulus of {} bits (2048-8192 accepted)",
                    n.len() * 8
                ));
            }
            if alg.is_some_and(|a| !matches!(a, Algorithm::Rs256 | Algorithm::Ps256)) {
                return Err("RSA key with a non-RSA `alg`".into());
            }
            Material::Rsa { n, e }
        }
        "EC" => {
            if k.get("crv").and_then(Value::as_str) != Some("P-256") {
                return Err("EC key on a curve other than P-256".into());
            }
            let x = b64(k.get("x")).ok_or("EC key without a valid `x`")?;
            let y = b64(k.get("y")).ok_or("EC key without a valid `y`")?;
            if x.len() != 32 || y.len() != 32 {
                return Err("P-256 coordinates are not 32 bytes".into());
            }
            if alg.is_some_and(|a| a != Algorithm::Es256) {
                return Err("P-256 key with an `alg` other than ES256".into());
            }
            let mut point = Vec::with_capacity(65);
            point.push(4);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            Material::P256 { point }
        }
        "OKP" => {
            if k.get("crv").and_then(Value::as_str) != Some("Ed25519") {
                return Err("OKP key on a curve other than Ed25519".into());
            }
            let x = b64(k.get("x")).ok_or("Ed25519 key without a valid `x`")?;
            if x.len() != 32 {
                return Err("Ed25519 key is not 32 bytes".into());
            }
            if alg.is_some_and(|a| a != Algorithm::EdDsa) {
                return Err("Ed25519 key with an `alg` other than EdDSA".into());
            }
            Material::Ed25519 { x }
        }
        other => return Err(format!("key type `{other}` is not supported")),
    };
    let thumb = match &material {
        Material::Rsa { n, e } => thumb("RSA", &[n, e]),
        Material::P256 { point } => thumb("EC", &[point]),
        Material::Ed25519 { x } => thumb("OKP", &[x]),
    };
    Ok(Jwk {
        kid,
        alg,
        material,
        thumb,
    })
}

/// Parses a JWKS document, keeping the keys that can verify one of `algorithms`. Returns the
/// set and the reasons keys were dropped (for the log; they hold no key material).
pub fn parse_jwks(
    bytes: &[u8],
    algorithms: &[Algorithm],
) -> Result<(KeySet, Vec<String>), JwksError> {
    if bytes.len() > MAX_JWKS_BYTES {
        return Err(JwksError::TooLarge);
    }
    let doc: Value = serde_json::from_slice(bytes).map_err(|_| JwksError::NotJwks)?;
    let list = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or(JwksError::NotJwks)?;
    let mut keys = Vec::new();
    let mut dropped = Vec::new();
    for (i, k) in list.iter().enumerate() {
        match parse_key(k) {
            Ok(key) if !algorithms.iter().any(|a| key.accepts(*a)) => {
                dropped.push(format!("key {i}: fits none of the issuer's algorithms"))
            }
            Ok(key) if keys.len() >= MAX_KEYS => {
                dropped.push(format!("key {i}: more than {MAX_KEYS} keys"));
                let _ = key;
            }
            Ok(key) => keys.push(key),
            Err(why) => dropped.push(format!("key {i}: {why}")),
        }
    }
    if keys.is_empty() {
        return Err(JwksError::NoUsableKey(if dropped.is_empty() {
            "the set is empty".into()
        } else {
            dropped.join("; ")
        }));
    }
    Ok((KeySet { keys }, dropped))
}

impl Jwk {
    /// Whether this key may verify `alg`: its type fits, and its own `alg`, if any, is `alg`.
    pub fn accepts(&self, alg: Algorithm) -> bool {
        let type_fits = matches!(
            (alg, &self.material),
            (Algorithm::Rs256 | Algorithm::Ps256, Material::Rsa { .. })
                | (Algorithm::Es256, Material::P256 { .. })
                | (Algorithm::EdDsa, Material::Ed25519 { .. })
        );
        type_fits && self.alg.is_none_or(|a| a == alg)
    }

    /// Verifies `signature` over `message` with `alg`. False for any mismatch of algorithm
    /// and key type, so a header cannot choose how a key is used.
    pub fn verify(&self, alg: Algorithm, message: &[u8], sig: &[u8]) -> bool {
        if !self.accepts(alg) {
            return false;
        }
        match (alg, &self.material) {
            (Algorithm::Rs256, Material::Rsa { n, e }) => RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, sig)
                .is_ok(),
            (Algorithm::Ps256, Material::Rsa { n, e }) => RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PSS_2048_8192_SHA256, message, sig)
                .is_ok(),
            // FIXED: the JWS r||s encoding (RFC 7518 §3.4), 64 bytes; r = s = 0 and other
            // out-of-range values are refused by ring (CVE-2022-21449 shape).
            (Algorithm::Es256, Material::P256 { point }) => {
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, sig)
                    .is_ok()
            }
            (Algorithm::EdDsa, Material::Ed25519 { x }) => {
                UnparsedPublicKey::new(&signature::ED25519, x)
                    .verify(message, sig)
                    .is_ok()
            }
            _ => false,
        }
    }
}

impl KeySet {
    /// The keys a token with this `kid` and `alg` may be verified with: the keys with that
    /// `kid` (none if it is unknown), or every key when the token has none; only keys that
    /// accept `alg`.
    pub fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
        alg: Algorithm,
    ) -> impl Iterator<Item = &'a Jwk> + 'a {
        self.keys
            .iter()
            .filter(move |k| kid.is_none_or(|kid| k.kid.as_deref() == Some(kid)))
            .filter(move |k| k.accepts(alg))
    }

    /// Whether any key has this `kid`.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    /// Whether the key with this thumbprint is in the set.
    pub fn has_thumb(&self, thumb: &[u8; 32]) -> bool {
        self.keys.iter().any(|k| &k.thumb == thumb)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ed_key(kid: &str) -> String {
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([7u8; 32]);
        format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{x}","kid":"{kid}"}}"#)
    }

    #[test]
    fn drops_keys_it_must_never_use() {
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([7u8; 32]);
        let small_n = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([0xffu8; 128]);
        let doc = format!(
            r#"{{"keys":[
              {{"kty":"oct","k":"c2VjcmV0","kid":"hmac"}},
              {{"kty":"OKP","crv":"Ed25519","x":"{x}","use":"enc"}},
              {{"kty":"OKP","crv":"Ed25519","x":"{x}","alg":"HS256"}},
              {{"kty":"OKP","crv":"Ed25519","x":"{x}","d":"{x}"}},
              {{"kty":"RSA","n":"{small_n}","e":"AQAB"}},
              {{"kty":"EC","crv":"P-384","x":"{x}","y":"{x}"}},
              {}
            ]}}"#,
            ed_key("good")
        );
        let (set, dropped) =
            parse_jwks(doc.as_bytes(), &[Algorithm::EdDsa, Algorithm::Rs256]).unwrap();
        assert_eq!(set.keys.len(), 1, "{dropped:?}");
        assert_eq!(set.keys[0].kid.as_deref(), Some("good"));
        assert_eq!(dropped.len(), 6, "{dropped:?}");
        assert!(dropped.iter().any(|d| d.contains("oct")));
        assert!(
            !dropped.iter().any(|d| d.contains("c2VjcmV0")),
            "no key material in reasons"
        );
    }

    #[test]
    fn key_type_binds_the_algorithm() {
        let (set, _) = parse_jwks(
            format!(r#"{{"keys":[{}]}}"#, ed_key("a")).as_bytes(),
            &[Algorithm::EdDsa],
        )
        .unwrap();
        let k = &set.keys[0];
        assert!(k.accepts(Algorithm::EdDsa));
        for alg in [Algorithm::Rs256, Algorithm::Ps256, Algorithm::Es256] {
            assert!(!k.accepts(alg));
            assert!(!k.verify(alg, b"m", &[0u8; 64]));
        }
        assert_eq!(set.candidates(Some("a"), Algorithm::EdDsa).count(), 1);
        assert_eq!(set.candidates(Some("b"), Algorithm::EdDsa).count(), 0);
        assert_eq!(set.candidates(None, Algorithm::EdDsa).count(), 1);
        assert_eq!(set.candidates(None, Algorithm::Es256).count(), 0);
    }

    #[test]
    fn refuses_documents_without_usable_keys() {
        assert_eq!(
            parse_jwks(b"[]", &[Algorithm::EdDsa]),
            Err(JwksError::NotJwks)
        );
        assert_eq!(
            parse_jwks(b"{\"keys\":1}", &[Algorithm::EdDsa]),
            Err(JwksError::NotJwks)
        );
        assert!(matches!(
            parse_jwks(b"{\"keys\":[]}", &[Algorithm::EdDsa]),
            Err(JwksError::NoUsableKey(_))
        ));
        // An Ed25519-only set for an issuer pinned to RS256.
        let doc = format!(r#"{{"keys":[{}]}}"#, ed_key("a"));
        assert!(matches!(
            parse_jwks(doc.as_bytes(), &[Algorithm::Rs256]),
            Err(JwksError::NoUsableKey(_))
        ));
    }
}
