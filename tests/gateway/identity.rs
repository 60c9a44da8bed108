//! Bearer-token identity (issue 11 §1) through the real binary: real RSA, P-256 and Ed25519
//! keys made here, a real HTTPS JWKS server on loopback (its own dev CA), real TLS 1.3
//! clients, and the recording upstream proving that nothing reached it for each refusal.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
    RSA_PKCS1_SHA256, RSA_PSS_SHA256,
};
use serde_json::{json, Value};

use crate::common::*;

pub const ISSUER: &str = "https://idp.test.example/realms/ehr";
pub const AUDIENCE: &str = "https://ehr.test.example/fhir";

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// One RSA key pair per test binary (openssl makes it; ring cannot generate RSA keys):
/// PKCS#8 DER and the public key PEM (for the HS256 key-confusion case).
fn rsa_material() -> &'static (Vec<u8>, Vec<u8>) {
    static KEY: OnceLock<(Vec<u8>, Vec<u8>)> = OnceLock::new();
    KEY.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let pem = dir.path().join("rsa.pem");
        let run = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .output()
                .expect("openssl");
            assert!(out.status.success(), "openssl {args:?}: {out:?}");
        };
        let p = pem.to_str().unwrap();
        run(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            p,
        ]);
        let der = dir.path().join("rsa.der");
        run(&[
            "pkcs8",
            "-topk8",
            "-nocrypt",
            "-in",
            p,
            "-outform",
            "DER",
            "-out",
            der.to_str().unwrap(),
        ]);
        let public = dir.path().join("rsa.pub.pem");
        run(&[
            "pkey",
            "-in",
            p,
            "-pubout",
            "-out",
            public.to_str().unwrap(),
        ]);
        (std::fs::read(der).unwrap(), std::fs::read(public).unwrap())
    })
}

/// The test issuer's signing keys.
pub struct Keys {
    rsa: RsaKeyPair,
    ec: EcdsaKeyPair,
    ed: Ed25519KeyPair,
    /// Suffix of every kid, so two `Keys` never share one.
    tag: String,
}

impl Keys {
    pub fn new(tag: &str) -> Self {
        let rng = SystemRandom::new();
        let rsa = RsaKeyPair::from_pkcs8(&rsa_material().0).unwrap();
        let pk = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let ec =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pk.as_ref(), &rng).unwrap();
        let ed = Ed25519KeyPair::from_pkcs8(Ed25519KeyPair::generate_pkcs8(&rng).unwrap().as_ref())
            .unwrap();
        Keys {
            rsa,
            ec,
            ed,
            tag: tag.to_string(),
        }
    }

    pub fn kid(&self, alg: &str) -> String {
        format!("{}-{}", alg.to_ascii_lowercase(), self.tag)
    }

    /// The public keys as JWKs (RS256 and PS256 share the RSA key under two kids).
    pub fn jwks(&self) -> Vec<Value> {
        let c: ring::rsa::PublicKeyComponents<Vec<u8>> = self.rsa.public().into();
        let (n, e) = (&c.n, &c.e);
        let ec = self.ec.public_key().as_ref();
        vec![
            json!({"kty": "RSA", "kid": self.kid("RS256"), "alg": "RS256", "use": "sig", "n": b64(n), "e": b64(e)}),
            json!({"kty": "RSA", "kid": self.kid("PS256"), "alg": "PS256", "n": b64(n), "e": b64(e)}),
            json!({"kty": "EC", "crv": "P-256", "kid": self.kid("ES256"), "x": b64(&ec[1..33]), "y": b64(&ec[33..65])}),
            json!({"kty": "OKP", "crv": "Ed25519", "kid": self.kid("EdDSA"), "x": b64(self.ed.public_key().as_ref())}),
        ]
    }

    /// Signs `header.claims` with the key `header.alg` names (HS256: the RSA public key PEM
    /// as the HMAC secret, the key-confusion attack).
    pub fn sign_raw(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let rng = SystemRandom::new();
        let sig = match header["alg"].as_str().unwrap_or("") {
            "RS256" | "PS256" => {
                let mut sig = vec![0u8; self.rsa.public().modulus_len()];
                let pad = if header["alg"] == "RS256" {
                    &RSA_PKCS1_SHA256 as &dyn ring::signature::RsaEncoding
                } else {
                    &RSA_PSS_SHA256
                };
                self.rsa
                    .sign(pad, &rng, input.as_bytes(), &mut sig)
                    .unwrap();
                sig
            }
            "ES256" => self
                .ec
                .sign(&rng, input.as_bytes())
                .unwrap()
                .as_ref()
                .to_vec(),
            "EdDSA" => self.ed.sign(input.as_bytes()).as_ref().to_vec(),
            "HS256" => {
                let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &rsa_material().1);
                ring::hmac::sign(&key, input.as_bytes()).as_ref().to_vec()
            }
            _ => Vec::new(),
        };
        format!("{input}.{}", b64(&sig))
    }

    /// A good token for `alg`, with `extra` claims merged over the defaults (null removes).
    pub fn token(&self, alg: &str, extra: Value) -> String {
        let t = now();
        let mut claims = json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": "clinician-7", "iat": t - 5, "exp": t + 600,
            "jti": "token-id-1234", "sid": "session-99", "client_id": "ehr-portal",
            "scope": "user/Observation.rs",
        });
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                claims.as_object_mut().unwrap().remove(k);
            } else {
                claims[k] = v.clone();
            }
        }
        self.sign_raw(
            &json!({"alg": alg, "kid": self.kid(alg), "typ": "at+jwt"}),
            &claims,
        )
    }
}

/// What the JWKS server answers.
pub struct JwksState {
    pub keys: Vec<Value>,
    /// 0: answer 200 with the set; any other: answer that status without a body.
    pub status: u16,
    pub delay: Duration,
}

/// A TLS 1.3-only rustls server configuration for a test server on loopback, with a dev CA
/// generated in `dir` (`dir/ca.pem` is what the gateway trusts).
pub fn loopback_tls13(dir: &std::path::Path) -> Arc<rustls::ServerConfig> {
    phi_gateway::gateway::tls::generate_dev_ca(dir).expect("test server CA");
    use rustls_pki_types::pem::PemObject as _;
    let certs: Vec<_> = rustls_pki_types::CertificateDer::pem_file_iter(dir.join("server.pem"))
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap(),
    )
}

/// A real HTTPS (TLS 1.3) JWKS server on loopback, certificate from its own dev CA.
pub struct JwksServer {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<JwksState>>,
    pub fetches: Arc<AtomicUsize>,
    pub dir: tempfile::TempDir,
}

impl JwksServer {
    pub fn start(keys: Vec<Value>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = loopback_tls13(dir.path());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(JwksState {
            keys,
            status: 0,
            delay: Duration::ZERO,
        }));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (st, n) = (state.clone(), fetches.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(tcp) = stream else { continue };
                let (config, st, n) = (config.clone(), st.clone(), n.clone());
                thread::spawn(move || {
                    use std::io::{Read, Write};
                    let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
                    let Ok(conn) = rustls::ServerConnection::new(config) else {
                        return;
                    };
                    let mut tls = rustls::StreamOwned::new(conn, tcp);
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(k) => head.extend_from_slice(&buf[..k]),
                        }
                    }
                    n.fetch_add(1, Ordering::SeqCst);
                    let (status, body, delay) = {
                        let s = st.lock().unwrap();
                        (s.status, json!({"keys": s.keys}).to_string(), s.delay)
                    };
                    thread::sleep(delay);
                    let resp = if status == 0 {
                        format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len())
                    } else {
                        format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nlocation: https://127.0.0.1:1/elsewhere\r\nconnection: close\r\n\r\n")
                    };
                    let _ = tls.write_all(resp.as_bytes());
                    let _ = tls.flush();
                    tls.conn.send_close_notify();
                    let _ = tls.flush();
                });
            }
        });
        JwksServer {
            addr,
            state,
            fetches,
            dir,
        }
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    pub fn url(&self) -> String {
        format!("https://localhost:{}/certs", self.addr.port())
    }

    pub fn set(&self, f: impl FnOnce(&mut JwksState)) {
        f(&mut self.state.lock().unwrap());
    }

    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

/// `access:` lines for one issuer at `jwks`, with `extra` issuer fields.
pub fn access_lines(jwks: &JwksServer, extra: &[&str]) -> Vec<String> {
    let mut l = vec![
        "  issuers:".to_string(),
        "    - name: idp".into(),
        format!("      issuer: {ISSUER}"),
        format!("      audiences: [\"{AUDIENCE}\"]"),
        "      algorithms: [RS256, PS256, ES256, EdDSA]".into(),
        format!("      jwks_url: {}", jwks.url()),
        format!("      jwks_ca_file: \"{}\"", jwks.ca().display()),
    ];
    l.extend(extra.iter().map(|s| format!("      {s}")));
    l.push("  claims_to_headers:".into());
    l.push("    x-user-id: sub".into());
    l.push("    x-user-scopes: scope".into());
    l
}

/// A gateway whose `fhir` route requires a token (`mode` for access), keys from `jwks`.
pub fn token_gateway(
    up: &RecordingUpstream,
    jwks: &JwksServer,
    mode: &str,
    extra: &[&str],
) -> Gateway {
    let mut o = GatewayOpts::new(up.addr());
    o.access = access_lines(jwks, extra);
    o.fhir_route_extra = vec![
        "    access:".into(),
        "      require: token".into(),
        format!("      mode: {mode}"),
    ];
    Gateway::start(o)
}

pub async fn get(
    gw: &Gateway,
    path: &str,
    token: Option<&str>,
) -> (u16, Vec<(String, String)>, String) {
    let mut r = gw
        .client(false)
        .get(gw.url(path))
        .header(AUDIT, "identity-test");
    if let Some(t) = token {
        r = r.header("authorization", format!("Bearer {t}"));
    }
    let (s, h, b, _) = read_response(r.send().await.expect("request")).await;
    (s, h, b)
}

pub fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

pub fn record_of(gw: &Gateway, id: &str) -> Value {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let records = gw.audit_records();
        if let Some(r) = records.iter().find(|r| r["request_id"] == id) {
            return r.clone();
        }
        assert!(Instant::now() < deadline, "no audit record for {id}");
        thread::sleep(Duration::from_millis(50));
    }
}

/// Every algorithm verifies, the identity headers are set from the token (spoofed copies
/// stripped), `Authorization` is not scanned as PHI, and the audit record names the user
/// with its identifiers fingerprinted.
#[tokio::test]
async fn valid_tokens_of_each_algorithm_reach_the_upstream_with_identity_headers() {
    let up = RecordingUpstream::start();
    let keys = Keys::new("a");
    let jwks = JwksServer::start(keys.jwks());
    let gw = token_gateway(&up, &jwks, "enforce", &[]);
    for alg in ["RS256", "PS256", "ES256", "EdDSA"] {
        // The engine sees through JWS: a claim with an SSN shape would read as PHI in the
        // header if a verified token were scanned as free text.
        let t = keys.token(
            alg,
            json!({"employee_ssn": "536-22-1234", "email": "pat.doe@example.org"}),
        );
        let resp = gw
            .client(false)
            .get(gw.url("/fhir/Observation?code=1234-5"))
            .header(AUDIT, "identity-test")
            .header("authorization", format!("Bearer {t}"))
            .header("x-user-id", "admin")
            .send()
            .await
            .unwrap();
        let (s, h, b, _) = read_response(resp).await;
        assert_eq!(s, 200, "{alg}: {b}\n{}", gw.logs());
        let id = header(&h, "x-request-id").unwrap().to_string();
        let r = up.requests().into_iter().last().unwrap();
        assert_eq!(
            r.header("x-user-id").as_deref(),
            Some("clinician-7"),
            "{alg}: spoofed header replaced"
        );
        assert_eq!(
            r.header("x-user-scopes").as_deref(),
            Some("user/Observation.rs")
        );
        assert_eq!(r.head.matches("x-user-id").count(), 1, "{}", r.head);
        assert!(
            r.header("authorization").is_some(),
            "the token is forwarded"
        );
        let rec = record_of(&gw, &id);
        assert_eq!(rec["user_id"], "clinician-7");
        assert_eq!(rec["decision"], "allow");
        assert_eq!(rec["access"]["decision"], "allow");
        assert_eq!(rec["access"]["issuer"], "idp");
        assert_eq!(rec["access"]["scopes"], json!(["user/Observation.rs"]));
        for f in ["client_id", "token_id", "session_id"] {
            assert!(
                rec["access"][f]
                    .as_str()
                    .unwrap()
                    .starts_with("hmac-sha256:"),
                "{f}: {rec}"
            );
        }
    }
    // On a route without token checks the identity headers are stripped too.
    let resp = gw
        .client(false)
        .get(gw.url("/monitor/Patient"))
        .header(AUDIT, "identity-test")
        .header("x-user-id", "admin")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let r = up.requests().into_iter().last().unwrap();
    assert_eq!(
        r.header("x-user-id"),
        None,
        "spoofed identity header reached the upstream"
    );
    // No raw identifier from any token is in the trail.
    let trail = gw
        .audit_records()
        .iter()
        .map(|r| r.to_string())
        .collect::<String>();
    for raw in [
        "token-id-1234",
        "session-99",
        "ehr-portal",
        "pat.doe",
        "536-22",
    ] {
        assert!(!trail.contains(raw), "{raw} in the audit trail");
    }
    assert_eq!(
        jwks.fetches(),
        1,
        "one fetch at start, every token after that verified locally"
    );
}

/// Every token fault: 401 with a fixed-realm `WWW-Authenticate`, the typed reason, nothing
/// from the token echoed, and not one request at the upstream.
#[tokio::test]
async fn every_token_attack_is_refused_and_nothing_reaches_the_upstream() {
    let up = RecordingUpstream::start();
    let keys = Keys::new("a");
    let attacker = Keys::new("evil");
    let jwks = JwksServer::start(keys.jwks());
    let gw = token_gateway(&up, &jwks, "enforce", &[]);
    let t = now();
    let claims = |extra: Value| {
        let mut c =
            json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "u", "iat": t - 5, "exp": t + 600});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let es = keys.kid("ES256");
    let rs = keys.kid("RS256");
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(claims(json!({})).to_string().as_bytes())
    );
    let embedded_jwk = attacker.sign_raw(
        &json!({"alg": "ES256", "kid": attacker.kid("ES256"), "jwk": attacker.jwks()[2]}),
        &claims(json!({})),
    );
    let cases: Vec<(&str, String, &str, &str)> = vec![
        ("alg none", none, "token_invalid", "algorithm_not_allowed"),
        (
            "HS256 with the RSA public key as secret",
            keys.sign_raw(&json!({"alg": "HS256", "kid": rs}), &claims(json!({}))),
            "token_invalid",
            "algorithm_not_allowed",
        ),
        (
            "embedded jwk",
            embedded_jwk,
            "token_invalid",
            "embedded_key",
        ),
        (
            "jku",
            attacker.sign_raw(
                &json!({"alg": "ES256", "kid": es, "jku": "https://evil.example/jwks"}),
                &claims(json!({})),
            ),
            "token_invalid",
            "embedded_key",
        ),
        (
            "signed by another key under a known kid",
            attacker.sign_raw(&json!({"alg": "ES256", "kid": es}), &claims(json!({}))),
            "token_invalid",
            "bad_signature",
        ),
        (
            "unknown kid",
            attacker.token("ES256", json!({})),
            "token_invalid",
            "unknown_kid",
        ),
        (
            "path-like kid",
            keys.sign_raw(
                &json!({"alg": "ES256", "kid": "../../../../etc/passwd"}),
                &claims(json!({})),
            ),
            "token_invalid",
            "unknown_kid",
        ),
        (
            "crit",
            keys.sign_raw(
                &json!({"alg": "ES256", "kid": es, "crit": ["exp"]}),
                &claims(json!({})),
            ),
            "token_invalid",
            "unsupported_header",
        ),
        (
            "expired",
            keys.token("ES256", json!({"iat": t - 700, "exp": t - 100})),
            "token_expired",
            "expired",
        ),
        (
            "not yet valid",
            keys.token("ES256", json!({"nbf": t + 600})),
            "token_invalid",
            "not_yet_valid",
        ),
        (
            "issued in the future",
            keys.token("ES256", json!({"iat": t + 300, "exp": t + 900})),
            "token_invalid",
            "issued_in_future",
        ),
        (
            "over the maximum lifetime",
            keys.token("ES256", json!({"exp": t + 7200})),
            "token_invalid",
            "lifetime_too_long",
        ),
        (
            "no iat",
            keys.token("ES256", json!({"iat": null})),
            "token_invalid",
            "missing_iat",
        ),
        (
            "wrong issuer",
            keys.token("ES256", json!({"iss": "https://evil.example"})),
            "token_invalid",
            "unknown_issuer",
        ),
        (
            "wrong audience",
            keys.token("ES256", json!({"aud": ["billing"]})),
            "token_invalid",
            "wrong_audience",
        ),
        (
            "string exp",
            keys.token("ES256", json!({"exp": (t + 600).to_string()})),
            "token_invalid",
            "bad_claim_type",
        ),
        (
            "malformed",
            "eyJhbGciOiJFUzI1NiJ9.not-json.AAAA".into(),
            "token_invalid",
            "malformed",
        ),
        (
            "oversized",
            format!("{}.{}", keys.token("ES256", json!({})), "A".repeat(9000)),
            "token_invalid",
            "too_long",
        ),
    ];
    for (name, token, reason, kind) in &cases {
        let before = up.requests().len();
        let (s, h, b) = get(&gw, "/fhir/Patient/example", Some(token)).await;
        let refusal = check_refusal(s, &h, &b, 401, reason);
        assert_eq!(
            header(&h, "www-authenticate"),
            Some("Bearer realm=\"phi-gateway\", error=\"invalid_token\""),
            "{name}"
        );
        let sig = token.rsplit('.').next().unwrap_or("");
        assert!(
            sig.len() < 8 || !b.contains(sig),
            "{name}: token echoed: {b}"
        );
        assert!(!b.contains("passwd") && !b.contains("evil"), "{name}: {b}");
        up.quiesce();
        assert_eq!(
            up.requests().len(),
            before,
            "{name} reached the upstream:\n{}",
            up.describe()
        );
        let rec = record_of(&gw, &refusal.request_id);
        assert_eq!(rec["access"]["error"], *kind, "{name}: {rec}");
        assert_eq!(rec["access"]["decision"], "deny");
        assert_eq!(rec["user_id"], "anonymous");
    }

    // No token: 401 without an error code (RFC 6750 §3.1).
    let (s, h, b) = get(&gw, "/fhir/Patient/example", None).await;
    check_refusal(s, &h, &b, 401, "token_missing");
    assert_eq!(
        header(&h, "www-authenticate"),
        Some("Bearer realm=\"phi-gateway\"")
    );

    // In the query string, alone and next to a header token; two Authorization headers.
    let good = keys.token("ES256", json!({}));
    let c = gw.client(false);
    let url = |q: &str| gw.url(&format!("/fhir/Patient?name=x&{q}"));
    let cases = [
        (
            c.get(url(&format!("access_token={good}"))),
            "token_in_query",
        ),
        (c.get(url("access%5Ftoken=abc")), "token_in_query"),
        (
            c.get(url("access_token=abc"))
                .header("authorization", format!("Bearer {good}")),
            "token_multiple",
        ),
        (
            c.get(gw.url("/fhir/Patient"))
                .header("authorization", format!("Bearer {good}"))
                .header("authorization", format!("Bearer {good}")),
            "token_multiple",
        ),
    ];
    for (req, reason) in cases {
        let before = up.requests().len();
        let r = expect_refusal(req.header(AUDIT, "identity-test"), 401, reason).await;
        assert!(
            !r.raw.contains(&good[good.len() - 20..]),
            "token echoed: {}",
            r.raw
        );
        up.quiesce();
        assert_eq!(up.requests().len(), before, "{reason} reached the upstream");
    }
    // The good token still works: the refusals above left nothing behind.
    let (s, _, b) = get(&gw, "/fhir/Patient/example", Some(&good)).await;
    assert_eq!(s, 200, "{b}");
    let scrape = gw.scrape_metrics();
    assert!(
        metric_value(
            &scrape,
            "phi_gateway_rejections_total",
            &[("route", "fhir"), ("reason", "token_invalid")]
        ) >= 15.0
    );
}

/// A token in a form body (RFC 6750 §2.2) is refused at the end of the body: the upstream
/// gets the head and not one body byte.
#[tokio::test]
async fn a_token_in_a_form_body_is_refused() {
    let up = RecordingUpstream::start();
    let keys = Keys::new("a");
    let jwks = JwksServer::start(keys.jwks());
    let gw = token_gateway(&up, &jwks, "enforce", &[]);
    let good = keys.token("EdDSA", json!({}));
    let req = gw
        .client(false)
        .post(gw.url("/fhir/Patient/_search"))
        .header(AUDIT, "identity-test")
        .header("authorization", format!("Bearer {good}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("name=smith&access_token=abc");
    let r = expect_refusal(req, 401, "token_multiple").await;
    assert!(r.json["error"]
        .as_str()
        .unwrap()
        .contains("more than one token"));
    assert_no_body_reached(&up);
}

/// Monitor mode: a bad token is forwarded, counted and audited as `would_deny`.
#[tokio::test]
async fn monitor_mode_forwards_and_audits_would_deny() {
    let up = RecordingUpstream::start();
    let keys = Keys::new("a");
    let jwks = JwksServer::start(keys.jwks());
    let gw = token_gateway(&up, &jwks, "monitor", &[]);
    // A refused token that goes on (monitor) is scanned like any other header: on this
    // enforcing route its SSN-shaped claim blocks it.
    let with_ssn = keys.token(
        "ES256",
        json!({"aud": "billing", "employee_ssn": "536-22-1234"}),
    );
    let (s, h, b) = get(&gw, "/fhir/Patient/example", Some(&with_ssn)).await;
    let r = check_refusal(s, &h, &b, 403, "phi_detected");
    assert_eq!(r.rules(), ["us-ssn"]);
    up.assert_untouched("a monitored token carrying PHI");

    let bad = keys.token("ES256", json!({"aud": "billing"}));
    let (s, h, b) = get(&gw, "/fhir/Patient/example", Some(&bad)).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(up.requests().len(), 1);
    assert_eq!(
        up.requests()[0].header("x-user-id"),
        None,
        "no identity from a refused token"
    );
    let rec = record_of(&gw, header(&h, "x-request-id").unwrap());
    assert_eq!(rec["decision"], "would_block");
    assert_eq!(rec["reason"], "token_invalid");
    assert_eq!(rec["access"]["decision"], "would_deny");
    assert_eq!(rec["access"]["error"], "wrong_audience");
    let (s, _, _) = get(&gw, "/fhir/Patient/example", None).await;
    assert_eq!(s, 200);
    gw.wait_metric(
        "phi_gateway_rejections_total",
        &[("route", "fhir"), ("reason", "token_missing")],
        1.0,
    );
}

/// Rotation: a token signed with a key published after start triggers one refetch; ten
/// concurrent requests with a new kid share one fetch; fabricated kids inside the cooldown
/// trigger none.
#[tokio::test]
async fn unknown_kid_refetches_once_and_fabricated_kids_do_not_flood() {
    let up = RecordingUpstream::start();
    let old = Keys::new("old");
    let jwks = JwksServer::start(old.jwks());
    let gw = token_gateway(
        &up,
        &jwks,
        "enforce",
        &["refresh_seconds: 3600", "refetch_cooldown_seconds: 60"],
    );
    assert_eq!(jwks.fetches(), 1);
    let (s, _, _) = get(&gw, "/fhir/Patient/a", Some(&old.token("RS256", json!({})))).await;
    assert_eq!(s, 200);

    let new = Keys::new("new");
    jwks.set(|s| s.keys = [old.jwks(), new.jwks()].concat());
    let mut tasks = Vec::new();
    for i in 0..10 {
        let (client, url) = (gw.client(false), gw.url(&format!("/fhir/Patient/{i}")));
        let token = new.token("ES256", json!({"jti": format!("t{i}")}));
        tasks.push(tokio::spawn(async move {
            client
                .get(url)
                .header(AUDIT, "identity-test")
                .header("authorization", format!("Bearer {token}"))
                .send()
                .await
                .map(|r| r.status().as_u16())
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), 200, "{}", gw.logs());
    }
    assert_eq!(
        jwks.fetches(),
        2,
        "ten requests with a new kid, one refetch"
    );

    let evil = Keys::new("fabricated");
    for _ in 0..5 {
        let (s, _, _) = get(
            &gw,
            "/fhir/Patient/a",
            Some(&evil.token("EdDSA", json!({}))),
        )
        .await;
        assert_eq!(s, 401);
    }
    assert_eq!(
        jwks.fetches(),
        2,
        "unknown kids inside the cooldown fetch nothing"
    );
    let scrape = gw.scrape_metrics();
    assert_eq!(
        metric_value(
            &scrape,
            "phi_gateway_jwks_refresh_total",
            &[("issuer", "idp"), ("result", "success")]
        ),
        2.0
    );
}

/// Outage: the last good set is served (new tokens of known kids verify) until it is
/// `max_staleness_seconds` old; then 503 `jwks_unavailable`; when the server is back, the next
/// refresh recovers. A slow server is cut off by `fetch_timeout_ms`, and a refetch waiting
/// on it does not hold a request past that bound.
#[tokio::test]
async fn outage_serves_the_last_good_set_until_max_staleness_then_fails_closed() {
    let up = RecordingUpstream::start();
    let keys = Keys::new("a");
    let jwks = JwksServer::start(keys.jwks());
    let gw = token_gateway(
        &up,
        &jwks,
        "enforce",
        &[
            "refresh_seconds: 1",
            "max_staleness_seconds: 4",
            "fetch_timeout_ms: 500",
            "refetch_cooldown_seconds: 0",
        ],
    );
    jwks.set(|s| s.status = 500);
    gw.wait_metric(
        "phi_gateway_jwks_refresh_total",
        &[("issuer", "idp"), ("result", "failure")],
        1.0,
    );
    let (s, _, b) = get(
        &gw,
        "/fhir/Patient/a",
        Some(&keys.token("PS256", json!({}))),
    )
    .await;
    assert_eq!(s, 200, "the last good set still serves known kids: {b}");

    // A slow server: the unknown-kid refetch gives up after fetch_timeout_ms.
    jwks.set(|s| {
        s.status = 0;
        s.delay = Duration::from_secs(3)
    });
    let start = Instant::now();
    let (s, _, _) = get(
        &gw,
        "/fhir/Patient/a",
        Some(&Keys::new("x").token("EdDSA", json!({}))),
    )
    .await;
    assert_eq!(s, 401);
    assert!(
        start.elapsed() < Duration::from_millis(2500),
        "waited {:?}",
        start.elapsed()
    );

    jwks.set(|s| {
        s.status = 503;
        s.delay = Duration::ZERO
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (s, h, b) = get(
            &gw,
            "/fhir/Patient/a",
            Some(&keys.token("ES256", json!({}))),
        )
        .await;
        if s == 503 {
            check_refusal(s, &h, &b, 503, "jwks_unavailable");
            assert_eq!(header(&h, "www-authenticate"), None);
            break;
        }
        assert_eq!(s, 200, "{b}");
        assert!(
            Instant::now() < deadline,
            "the stale set was served past max_staleness"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let age = metric_value(
        &gw.scrape_metrics(),
        "phi_gateway_jwks_age_seconds",
        &[("issuer", "idp")],
    );
    assert!(age >= 4.0, "age {age}");

    jwks.set(|s| s.status = 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (s, _, _) = get(
            &gw,
            "/fhir/Patient/a",
            Some(&keys.token("ES256", json!({}))),
        )
        .await;
        if s == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never recovered after the outage"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A redirect from the JWKS URL is not followed, and a first fetch that fails stops
/// start-up with the issuer's name (before the listener accepts anything).
#[test]
fn start_up_fails_naming_the_issuer_when_its_keys_cannot_be_loaded() {
    let up = RecordingUpstream::start();
    let jwks = JwksServer::start(Keys::new("a").jwks());
    jwks.set(|s| s.status = 302);
    let mut o = GatewayOpts::new(up.addr());
    o.access = access_lines(&jwks, &[]);
    let files = GatewayFiles::new(&o);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_phi-gateway"))
        .args(["run", "--config"])
        .arg(&files.config)
        .current_dir(files.dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("access.issuers `idp`") && err.contains("redirects are not followed"),
        "{err}"
    );
    assert!(std::net::TcpStream::connect(("127.0.0.1", files.port)).is_err());
    up.assert_untouched("a failed start");
}

/// `require: optional`: no token passes anonymously; a bad one is still refused.
#[tokio::test]
async fn optional_routes_pass_anonymous_requests_but_refuse_bad_tokens() {
    let up = RecordingUpstream::start();
    let keys = Keys::new("a");
    let jwks = JwksServer::start(keys.jwks());
    let mut o = GatewayOpts::new(up.addr());
    o.access = access_lines(&jwks, &[]);
    o.fhir_route_extra = vec!["    access: {require: optional}".into()];
    let gw = Gateway::start(o);
    let (s, h, _) = get(&gw, "/fhir/Patient/a", None).await;
    assert_eq!(s, 200);
    let rec = record_of(&gw, header(&h, "x-request-id").unwrap());
    assert_eq!(rec["access"]["decision"], "anonymous");
    let (s, h, b) = get(
        &gw,
        "/fhir/Patient/a",
        Some(&keys.token("EdDSA", json!({"exp": now() - 3600, "iat": now() - 3700}))),
    )
    .await;
    check_refusal(s, &h, &b, 401, "token_expired");
    assert_eq!(up.requests().len(), 1);
}

/// `check` loads `jwks_file` key sets like `run` does: a set with only keys the gateway must
/// never use (a shared secret) is refused with the issuer's name, file and reason, exit 78.
#[test]
fn check_refuses_a_jwks_file_without_usable_keys() {
    let up = RecordingUpstream::start();
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(
        &jwks,
        r#"{"keys":[{"kty":"oct","kid":"h","k":"c2VjcmV0LXNlY3JldA"}]}"#,
    )
    .unwrap();
    let mut o = GatewayOpts::new(up.addr());
    o.access = vec![
        "  issuers:".into(),
        "    - name: file-idp".into(),
        format!("      issuer: {ISSUER}"),
        format!("      audiences: [\"{AUDIENCE}\"]"),
        "      algorithms: [ES256]".into(),
        format!("      jwks_file: \"{}\"", jwks.display()),
    ];
    let files = GatewayFiles::new(&o);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_phi-gateway"))
        .args(["check", "--config"])
        .arg(&files.config)
        .current_dir(files.dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains("access.issuers `file-idp`") && err.contains("kty: oct"),
        "{err}"
    );
    assert!(
        !err.contains("c2VjcmV0"),
        "key material in the message: {err}"
    );
}
