//! The verifier end to end, without sockets: real Ed25519 and P-256 keys from ring, tokens
//! signed here, each attack shape refused for its own reason.

use std::time::Duration;

use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::json;

use super::*;
use crate::config::{JwksSource, UserClaim};

const NOW: u64 = 1_800_000_000;

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

struct Keys {
    ed: Ed25519KeyPair,
    ec: EcdsaKeyPair,
}

impl Keys {
    fn new() -> Self {
        let rng = SystemRandom::new();
        let ed = Ed25519KeyPair::from_pkcs8(Ed25519KeyPair::generate_pkcs8(&rng).unwrap().as_ref())
            .unwrap();
        let pk = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let ec =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pk.as_ref(), &rng).unwrap();
        Keys { ed, ec }
    }

    fn jwks(&self) -> String {
        let ec = self.ec.public_key().as_ref();
        json!({"keys": [
            {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": b64(self.ed.public_key().as_ref())},
            {"kty": "EC", "crv": "P-256", "kid": "ec", "use": "sig", "alg": "ES256",
             "x": b64(&ec[1..33]), "y": b64(&ec[33..65])},
        ]})
        .to_string()
    }

    fn sign(&self, header: serde_json::Value, claims: serde_json::Value) -> String {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = match header["alg"].as_str() {
            Some("EdDSA") => self.ed.sign(input.as_bytes()).as_ref().to_vec(),
            Some("ES256") => self
                .ec
                .sign(&SystemRandom::new(), input.as_bytes())
                .unwrap()
                .as_ref()
                .to_vec(),
            _ => vec![1, 2, 3],
        };
        format!("{input}.{}", b64(&sig))
    }
}

fn settings() -> AccessSettings {
    AccessSettings {
        issuers: vec![Issuer {
            name: "idp".into(),
            issuer: "https://idp.example".into(),
            audiences: vec!["ehr".into()],
            algorithms: vec![Algorithm::EdDsa, Algorithm::Es256],
            jwks: JwksSource::File("unused".into()),
            refresh: Duration::from_secs(300),
            max_staleness: Duration::from_secs(3600),
            fetch_timeout: Duration::from_secs(1),
            refetch_cooldown: Duration::from_secs(10),
            max_lifetime: Some(Duration::from_secs(3600)),
            clock_skew: Duration::from_secs(60),
            user_claim: UserClaim::Sub,
        }],
        claims_to_headers: Vec::new(),
        token_cache_entries: 100,
        response_hold_bytes: crate::config::DEFAULT_RESPONSE_HOLD_BYTES,
        sessions: Default::default(),
        break_glass: Default::default(),
    }
}

fn good_claims() -> serde_json::Value {
    json!({"iss": "https://idp.example", "aud": "ehr", "sub": "user-1",
           "iat": NOW - 10, "exp": NOW + 600, "scope": "patient/*.rs"})
}

fn verifier(keys: &Keys) -> Verifier {
    let v = Verifier::new(&settings());
    let (set, _) = parse_jwks(
        keys.jwks().as_bytes(),
        &[Algorithm::EdDsa, Algorithm::Es256],
    )
    .unwrap();
    v.install(0, set, NOW);
    v
}

#[test]
fn verifies_ed25519_and_es256_and_caches() {
    let keys = Keys::new();
    let v = verifier(&keys);
    for (alg, kid) in [("EdDSA", "ed"), ("ES256", "ec")] {
        let t = keys.sign(
            json!({"alg": alg, "kid": kid, "typ": "at+jwt"}),
            good_claims(),
        );
        let ok = v
            .verify_cached_or_now(&t, NOW)
            .unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(ok.user(), Some("user-1"));
        assert_eq!(ok.scopes(), ["patient/*.rs"]);
        assert_eq!(ok.issuer_name, "idp");
    }
    assert_eq!(v.cached(), 2);
    // No kid: every key that fits the algorithm is tried.
    let t = keys.sign(json!({"alg": "EdDSA"}), good_claims());
    assert!(v.verify_cached_or_now(&t, NOW).is_ok());
}

#[test]
fn refuses_every_attack_shape() {
    let keys = Keys::new();
    let v = verifier(&keys);
    let c = good_claims;
    let with = |extra: serde_json::Value| {
        let mut c = good_claims();
        for (k, val) in extra.as_object().unwrap() {
            c[k] = val.clone();
        }
        c
    };
    let cases: Vec<(String, TokenError)> = vec![
        (
            keys.sign(json!({"alg": "none"}), c()),
            TokenError::AlgorithmNotAllowed,
        ),
        (
            format!(
                "{}.{}.",
                b64(br#"{"alg":"none"}"#),
                b64(c().to_string().as_bytes())
            ),
            TokenError::AlgorithmNotAllowed,
        ),
        (
            keys.sign(json!({"alg": "HS256", "kid": "ed"}), c()),
            TokenError::AlgorithmNotAllowed,
        ),
        (
            keys.sign(json!({"alg": "RS256", "kid": "ed"}), c()),
            TokenError::AlgorithmNotAllowed,
        ),
        // The EdDSA key under ES256: key type binds the algorithm.
        (
            keys.sign(json!({"alg": "ES256", "kid": "ed"}), c()),
            TokenError::NoMatchingKey,
        ),
        (
            keys.sign(
                json!({"alg": "EdDSA", "kid": "ed", "jwk": {"kty": "OKP"}}),
                c(),
            ),
            TokenError::EmbeddedKey,
        ),
        (
            keys.sign(
                json!({"alg": "EdDSA", "kid": "ed", "jku": "https://evil/"}),
                c(),
            ),
            TokenError::EmbeddedKey,
        ),
        (
            keys.sign(
                json!({"alg": "EdDSA", "kid": "ed", "crit": ["x"], "x": 1}),
                c(),
            ),
            TokenError::UnsupportedHeader,
        ),
        (
            keys.sign(json!({"alg": "EdDSA", "kid": "../../etc/passwd"}), c()),
            TokenError::UnknownKid,
        ),
        (
            keys.sign(
                json!({"alg": "EdDSA", "kid": "ed"}),
                with(json!({"exp": NOW - 61})),
            ),
            TokenError::Expired,
        ),
        (
            keys.sign(
                json!({"alg": "EdDSA", "kid": "ed"}),
                with(json!({"nbf": NOW + 120})),
            ),
            TokenError::NotYetValid,
        ),
        (
            keys.sign(
                json!({"alg": "EdDSA", "kid": "ed"}),
                with(json!({"iat": NOW + 120, "exp": NOW + 600})),
            ),
            TokenError::IssuedInFuture,
        ),
        (
            keys.sign(
                json!({"alg": "EdDSA", "kid": "ed"}),
                with(json!({"exp": NOW + 3600})),
            ),
            TokenError::LifetimeTooLong,
        ),
        (
            keys.sign(
                json!({"alg": "EdDSA", "kid": "ed"}),
                with(json!({"exp": (NOW + 600).to_string()})),
            ),
            TokenError::BadClaimType,
        ),
        (
            keys.sign(
                json!({"alg": "EdDSA", "kid": "ed"}),
                with(json!({"iss": "https://other.example"})),
            ),
            TokenError::UnknownIssuer,
        ),
        (
            keys.sign(
                json!({"alg": "EdDSA", "kid": "ed"}),
                with(json!({"aud": ["billing"]})),
            ),
            TokenError::WrongAudience,
        ),
        ("not-a-token".to_string(), TokenError::Malformed),
        ("a".repeat(9000), TokenError::TooLong),
    ];
    for (t, want) in cases {
        assert_eq!(
            v.verify_cached_or_now(&t, NOW).map(|_| ()),
            Err(want),
            "{want:?}"
        );
    }
    // A valid token with one flipped signature byte.
    let t = keys.sign(json!({"alg": "EdDSA", "kid": "ed"}), c());
    let (input, sig) = t.rsplit_once('.').unwrap();
    let mut sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(sig)
        .unwrap();
    sig[0] ^= 1;
    let forged = format!("{input}.{}", b64(&sig));
    assert_eq!(
        v.verify_cached_or_now(&forged, NOW).map(|_| ()),
        Err(TokenError::BadSignature)
    );
    assert_eq!(v.cached(), 0, "nothing refused is cached");
}

#[test]
fn stale_keys_and_removed_keys_stop_cached_tokens() {
    let keys = Keys::new();
    let v = verifier(&keys);
    let t = keys.sign(json!({"alg": "EdDSA", "kid": "ed"}), good_claims());
    assert!(v.verify_cached_or_now(&t, NOW).is_ok());
    // The set is older than max_staleness (3600 s): even the cached token is refused.
    assert_eq!(
        v.verify_cached_or_now(&t, NOW + 3601).map(|_| ()),
        Err(TokenError::JwksUnavailable)
    );
    // A new set without the Ed25519 key: its cached tokens are dropped with it.
    let other = Keys::new();
    let (set, _) = parse_jwks(other.jwks().as_bytes(), &[Algorithm::EdDsa]).unwrap();
    v.install(0, set, NOW);
    assert_eq!(v.cached(), 0);
    assert_eq!(
        v.verify_cached_or_now(&t, NOW).map(|_| ()),
        Err(TokenError::BadSignature)
    );
    // A verifier that never loaded keys refuses with jwks_unavailable, not a 401 reason.
    let empty = Verifier::new(&settings());
    assert_eq!(
        empty.verify_cached_or_now(&t, NOW).map(|_| ()),
        Err(TokenError::JwksUnavailable)
    );
    assert_eq!(TokenError::JwksUnavailable.reason().status(), 503);
    assert_eq!(TokenError::BadSignature.reason().status(), 401);
}
