//! Bearer-token verification cost per request: a token verified from scratch (parse, issuer,
//! key lookup, signature, claims) next to the same token found in the verified-token cache
//! (SHA-256 of the token and one map lookup), per algorithm. Run:
//! `cargo bench --bench identity`. The RSA key is made with `openssl genpkey` (ring cannot
//! generate RSA keys); the others with ring. All tokens are synthetic.

use std::hint::black_box;
use std::time::Duration;

use base64::Engine as _;
use criterion::{criterion_group, criterion_main, Criterion};
use phi_gateway::access::identity::{parse_jwks, Verifier};
use phi_gateway::config::{AccessSettings, Algorithm, Issuer, JwksSource, UserClaim};
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
    RSA_PKCS1_SHA256, RSA_PSS_SHA256,
};
use serde_json::json;

const NOW: u64 = 1_800_000_000;

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn rsa_key() -> RsaKeyPair {
    let dir = tempfile::tempdir().expect("tempdir");
    let pem = dir.path().join("k.pem");
    let der = dir.path().join("k.der");
    for args in [
        vec![
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            pem.to_str().unwrap(),
        ],
        vec![
            "pkcs8",
            "-topk8",
            "-nocrypt",
            "-in",
            pem.to_str().unwrap(),
            "-outform",
            "DER",
            "-out",
            der.to_str().unwrap(),
        ],
    ] {
        let ok = std::process::Command::new("openssl")
            .args(&args)
            .status()
            .expect("openssl");
        assert!(ok.success(), "openssl {args:?}");
    }
    RsaKeyPair::from_pkcs8(&std::fs::read(der).expect("key")).expect("RSA key")
}

fn settings(cache: usize) -> AccessSettings {
    AccessSettings {
        issuers: vec![Issuer {
            name: "idp".into(),
            issuer: "https://idp.example".into(),
            audiences: vec!["ehr".into()],
            algorithms: vec![
                Algorithm::Rs256,
                Algorithm::Ps256,
                Algorithm::Es256,
                Algorithm::EdDsa,
            ],
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
        token_cache_entries: cache,
        response_hold_bytes: phi_gateway::config::DEFAULT_RESPONSE_HOLD_BYTES,
        sessions: Default::default(),
        break_glass: Default::default(),
    }
}

fn bench(c: &mut Criterion) {
    let rng = SystemRandom::new();
    let rsa = rsa_key();
    let ec_pk = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let ec =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, ec_pk.as_ref(), &rng).unwrap();
    let ed =
        Ed25519KeyPair::from_pkcs8(Ed25519KeyPair::generate_pkcs8(&rng).unwrap().as_ref()).unwrap();
    let rc: ring::rsa::PublicKeyComponents<Vec<u8>> = rsa.public().into();
    let p = ec.public_key().as_ref();
    let jwks = json!({"keys": [
        {"kty": "RSA", "kid": "rs", "n": b64(&rc.n), "e": b64(&rc.e)},
        {"kty": "EC", "crv": "P-256", "kid": "ec", "x": b64(&p[1..33]), "y": b64(&p[33..65])},
        {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": b64(ed.public_key().as_ref())},
    ]})
    .to_string();
    // A realistic access token: ~700 bytes of claims.
    let claims = json!({
        "iss": "https://idp.example", "aud": "ehr", "sub": "clinician-7", "iat": NOW - 60,
        "exp": NOW + 900, "jti": "7c0d4c7e-0b7a-4f0e-9f6e-2d1f1f8a9b10", "sid": "session-1234",
        "client_id": "ehr-portal", "fhirUser": "Practitioner/7",
        "scope": "openid fhirUser launch/patient patient/Observation.rs patient/Patient.r user/Practitioner.r",
    })
    .to_string();
    let sign = |alg: &str, kid: &str| {
        let input = format!(
            "{}.{}",
            b64(json!({"alg": alg, "kid": kid, "typ": "at+jwt"})
                .to_string()
                .as_bytes()),
            b64(claims.as_bytes())
        );
        let sig = match alg {
            "RS256" | "PS256" => {
                let mut s = vec![0u8; rsa.public().modulus_len()];
                let pad: &'static dyn ring::signature::RsaEncoding = if alg == "RS256" {
                    &RSA_PKCS1_SHA256
                } else {
                    &RSA_PSS_SHA256
                };
                rsa.sign(pad, &rng, input.as_bytes(), &mut s).unwrap();
                s
            }
            "ES256" => ec.sign(&rng, input.as_bytes()).unwrap().as_ref().to_vec(),
            _ => ed.sign(input.as_bytes()).as_ref().to_vec(),
        };
        format!("{input}.{}", b64(&sig))
    };
    let algs = [
        Algorithm::Rs256,
        Algorithm::Ps256,
        Algorithm::Es256,
        Algorithm::EdDsa,
    ];
    let make = |cache| {
        let v = Verifier::new(&settings(cache));
        v.install(0, parse_jwks(jwks.as_bytes(), &algs).unwrap().0, NOW);
        v
    };
    let uncached = make(0);
    let cached = make(1000);
    let mut g = c.benchmark_group("identity");
    for (alg, kid) in [
        ("RS256", "rs"),
        ("PS256", "rs"),
        ("ES256", "ec"),
        ("EdDSA", "ed"),
    ] {
        let token = sign(alg, kid);
        assert!(uncached.verify_cached_or_now(&token, NOW).is_ok(), "{alg}");
        assert!(cached.verify_cached_or_now(&token, NOW).is_ok(), "{alg}");
        g.bench_function(format!("{alg}/uncached"), |b| {
            b.iter(|| {
                uncached
                    .verify_cached_or_now(black_box(&token), NOW)
                    .is_ok()
            })
        });
        g.bench_function(format!("{alg}/cached"), |b| {
            b.iter(|| cached.verify_cached_or_now(black_box(&token), NOW).is_ok())
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
