//! The bearer-token path: an `Authorization` value and a query string → the token found (or
//! refused), the strict JWS compact parser, and a full verification against a fixed Ed25519
//! key set (issuer selection, algorithm pinning, key lookup by `kid`, signature, claims).
//! Byte 0 splits the input: the first `byte0` bytes are the query string, the rest the header
//! value. Nothing here may panic, and every refusal must be a typed `TokenError`.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use phi_gateway::access::identity::{parse_jwks, request, token, Verifier};
use phi_gateway::config::{AccessSettings, Algorithm, Issuer, JwksSource, UserClaim};

const JWKS: &str = r#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"k1","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},{"kty":"EC","crv":"P-256","kid":"k2","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;

fn verifier() -> Verifier {
    let settings = AccessSettings {
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
        token_cache_entries: 16,
        response_hold_bytes: phi_gateway::config::DEFAULT_RESPONSE_HOLD_BYTES,
        sessions: Default::default(),
        break_glass: Default::default(),
    };
    let v = Verifier::new(&settings);
    if let Ok((set, _)) = parse_jwks(JWKS.as_bytes(), &[Algorithm::EdDsa, Algorithm::Es256]) {
        v.install(0, set, 1_800_000_000);
    }
    v
}

fuzz_target!(|data: &[u8]| {
    let [split, rest @ ..] = data else {
        return;
    };
    let at = (*split as usize).min(rest.len());
    let (query, header) = rest.split_at(at);
    let query = String::from_utf8_lossy(query);
    let found = request::bearer(std::iter::once(header), Some(&query));
    let text = String::from_utf8_lossy(header);
    let _ = token::parse(&text);
    if let Ok(Some(t)) = found {
        let _ = token::parse(t);
        let v = verifier();
        // Twice: the second run goes through the cache when the first verified.
        for _ in 0..2 {
            let _ = v.verify_cached_or_now(t, 1_800_000_000);
        }
    }
    // The same bytes as a key set.
    let _ = parse_jwks(
        rest,
        &[
            Algorithm::EdDsa,
            Algorithm::Es256,
            Algorithm::Rs256,
            Algorithm::Ps256,
        ],
    );
});
