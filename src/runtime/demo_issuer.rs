//! The demo's built-in token issuer: one ES256 key made once per data directory, its public
//! JWKS, and the signing behind `phi-gateway dev-token`. Development only.
//!
//! `phi-gateway demo` calls [`ensure_issuer`]: it writes `DIR/keys/demo-issuer.key` (PKCS#8
//! PEM, 0600, in the same 0700 directory as the audit keys) the first time and reuses it on
//! later runs with the same `--data-dir`, so tokens printed earlier stay valid across
//! restarts; `DIR/jwks.json` is written from it on every run. The demo's gateway.yaml names
//! the issuer [`ISSUER_NAME`] with `jwks_file: jwks.json`; the gateway verifies the demo's
//! tokens exactly as it verifies a hospital IdP's, through the same JWKS loader and claim
//! checks.
//!
//! [`issue`] reads the issuer's `iss`, audience and maximum lifetime from `DIR/gateway.yaml`
//! (not from constants), so a token always matches the configuration the demo runs with, also
//! after a hand edit. The signature is ring's ECDSA P-256 (the crate that verifies it), no JWT
//! crate: the JWS compact form is three base64url parts.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use ring::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Map, Value};

use crate::config::{Algorithm, JwksSource};

/// The issuer's name in the demo's gateway.yaml (`access.issuers[].name`).
pub const ISSUER_NAME: &str = "demo";
/// The demo tokens' `iss`. `.invalid` (RFC 2606) never resolves: nothing real can claim it.
pub const ISSUER: &str = "https://issuer.demo.phi-gateway.invalid";
/// The demo tokens' `aud`.
pub const AUDIENCE: &str = "https://fhir.demo.phi-gateway.invalid/fhir";
/// The private key, inside the data directory's `keys/`.
pub const KEY_FILE: &str = "demo-issuer.key";
/// The public key set, in the data directory.
pub const JWKS_FILE: &str = "jwks.json";
/// The longest token the demo issuer's configuration accepts (SMART: at most one hour).
pub const MAX_LIFETIME_SECONDS: u64 = 3600;
/// `dev-token`'s default `--ttl`.
pub const DEFAULT_TTL: &str = "15m";

/// Claims `dev-token` sets itself (or through its own flags); `--claim` may not replace them.
const RESERVED: &[&str] = &[
    "iss",
    "aud",
    "iat",
    "exp",
    "jti",
    "sub",
    "scope",
    "patient",
    "roles",
    "purpose_of_use",
    "sid",
];

/// Why the demo issuer could not be set up or could not sign.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DemoIssuerError {
    /// The key has not been made yet.
    #[error(
        "{}: no demo issuer key; run `phi-gateway demo --data-dir {}` first (it makes the key \
         and the configuration)",
        path.display(),
        dir.display()
    )]
    KeyMissing {
        /// The key file looked for.
        path: PathBuf,
        /// The data directory.
        dir: PathBuf,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The key file is not a P-256 PKCS#8 key.
    #[error("{}: not an ES256 (P-256 PKCS#8 PEM) private key: {message}", path.display())]
    BadKey {
        /// The key file.
        path: PathBuf,
        /// What is wrong (no key material).
        message: String,
    },
    /// The demo's gateway.yaml does not load.
    #[error("{0}")]
    Config(#[from] crate::engine::source::SourceError),
    /// The demo's gateway.yaml has no usable demo issuer.
    #[error("{}: {message}", path.display())]
    NoIssuer {
        /// The configuration file.
        path: PathBuf,
        /// What is missing.
        message: String,
    },
    /// `--ttl` is longer than the issuer accepts.
    #[error(
        "--ttl {ttl}s is longer than the demo issuer's max_lifetime_seconds ({max}s): the \
         gateway would refuse the token (401 token_invalid)"
    )]
    TtlTooLong {
        /// The requested lifetime, seconds.
        ttl: u64,
        /// The issuer's maximum, seconds.
        max: u64,
    },
    /// A `--claim` is refused.
    #[error("--claim {name}: {message}")]
    Claim {
        /// The claim name.
        name: String,
        /// Why.
        message: String,
    },
    /// ring failed (no randomness, or a key it cannot use).
    #[error("cryptographic failure: {0}")]
    Crypto(&'static str),
}

impl DemoIssuerError {
    /// The exit code: 2 for a usage problem (the flags), 1 for the rest.
    pub fn exit_code(&self) -> u8 {
        match self {
            DemoIssuerError::TtlTooLong { .. } | DemoIssuerError::Claim { .. } => 2,
            _ => 1,
        }
    }
}

/// What goes into one token.
#[derive(Debug, Clone, Default)]
pub struct TokenRequest {
    /// `sub`.
    pub sub: String,
    /// `scope` (space-separated SMART scopes).
    pub scope: Option<String>,
    /// `patient`: the patient context of a patient app.
    pub patient: Option<String>,
    /// `roles`.
    pub roles: Vec<String>,
    /// `purpose_of_use`.
    pub purpose_of_use: Option<String>,
    /// `sid`.
    pub sid: Option<String>,
    /// Lifetime: `exp - iat`.
    pub ttl: Duration,
    /// Any other claims, in order (a later one of the same name is refused).
    pub claims: Vec<(String, Value)>,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DemoIssuerError + '_ {
    move |source| DemoIssuerError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The key file of data directory `dir`.
pub fn key_path(dir: &Path) -> PathBuf {
    dir.join(crate::runtime::demo::KEYS_DIR).join(KEY_FILE)
}

/// Makes the issuer key unless an earlier run did (never replacing one), then writes
/// `DIR/jwks.json` from it.
pub fn ensure_issuer(dir: &Path) -> Result<(), DemoIssuerError> {
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
    let key = key_path(dir);
    if !key.is_file() {
        let keys = dir.join(crate::runtime::demo::KEYS_DIR);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&keys)
            .map_err(io(&keys))?;
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| DemoIssuerError::Crypto("cannot generate a P-256 key"))?;
        // Created 0600 from the start (never readable by others, even for an instant), and
        // never over an existing file.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&key)
            .map_err(io(&key))?;
        f.write_all(crate::audit::keys::pem("PRIVATE KEY", pkcs8.as_ref()).as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(io(&key))?;
    }
    // The public set is derived from the key on every run, so the two can never disagree
    // (a JWKS left over from another key would make every demo token 401).
    let jwks = dir.join(JWKS_FILE);
    let pair = load_key(dir)?;
    let text = serde_json::to_string_pretty(&json!({"keys": [public_jwk(&pair)?]}))
        .map_err(|_| DemoIssuerError::Crypto("cannot encode the JWKS"))?;
    let text = format!("{text}\n");
    if std::fs::read_to_string(&jwks).ok().as_deref() != Some(text.as_str()) {
        std::fs::write(&jwks, text).map_err(io(&jwks))?;
    }
    Ok(())
}

/// The key's id: the first 16 hex digits of SHA-256 over its public point.
fn kid(pair: &EcdsaKeyPair) -> String {
    crate::audit::keys::key_id(pair.public_key().as_ref())
}

/// The public half as a JWK (the uncompressed point is 0x04 ‖ x ‖ y, 32 bytes each).
fn public_jwk(pair: &EcdsaKeyPair) -> Result<Value, DemoIssuerError> {
    let point = pair.public_key().as_ref();
    let (Some(0x04), Some(x), Some(y), 65) = (
        point.first(),
        point.get(1..33),
        point.get(33..65),
        point.len(),
    ) else {
        return Err(DemoIssuerError::Crypto(
            "not an uncompressed P-256 public key",
        ));
    };
    Ok(
        json!({"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid(pair),
              "x": b64(x), "y": b64(y)}),
    )
}

fn load_key(dir: &Path) -> Result<EcdsaKeyPair, DemoIssuerError> {
    use rustls_pki_types::pem::PemObject as _;
    let path = key_path(dir);
    if !path.is_file() {
        return Err(DemoIssuerError::KeyMissing {
            path,
            dir: dir.to_path_buf(),
        });
    }
    let bad = |message: String| DemoIssuerError::BadKey {
        path: path.clone(),
        message,
    };
    let der = rustls_pki_types::PrivatePkcs8KeyDer::from_pem_file(&path)
        .map_err(|e| bad(e.to_string()))?;
    EcdsaKeyPair::from_pkcs8(
        &ECDSA_P256_SHA256_FIXED_SIGNING,
        der.secret_pkcs8_der(),
        &ring::rand::SystemRandom::new(),
    )
    .map_err(|e| bad(e.to_string()))
}

/// What `DIR/gateway.yaml` says about the demo issuer: `iss`, one audience, the maximum
/// lifetime (`None`: off).
fn configured_issuer(dir: &Path) -> Result<(String, String, Option<u64>), DemoIssuerError> {
    let file = dir.join("gateway.yaml");
    if !file.is_file() {
        return Err(DemoIssuerError::NoIssuer {
            path: file,
            message: format!(
                "not found; run `phi-gateway demo --data-dir {}` first",
                dir.display()
            ),
        });
    }
    let cfg = crate::config::load_with(&file, crate::config::Dns::Skip)?;
    let none = |message: String| DemoIssuerError::NoIssuer {
        path: file.clone(),
        message,
    };
    let issuer = cfg
        .access
        .issuers
        .iter()
        .find(|i| i.name == ISSUER_NAME)
        .ok_or_else(|| none(format!("no issuer named `{ISSUER_NAME}` in access.issuers")))?;
    if !issuer.algorithms.contains(&Algorithm::Es256) {
        return Err(none(format!(
            "issuer `{ISSUER_NAME}` does not accept ES256"
        )));
    }
    let jwks = std::fs::canonicalize(dir.join(JWKS_FILE)).ok();
    match &issuer.jwks {
        JwksSource::File(f) if std::fs::canonicalize(f).ok() == jwks && jwks.is_some() => {}
        _ => {
            return Err(none(format!(
                "issuer `{ISSUER_NAME}` does not read its keys from {}",
                dir.join(JWKS_FILE).display()
            )))
        }
    }
    let audience = issuer
        .audiences
        .first()
        .cloned()
        .ok_or_else(|| none(format!("issuer `{ISSUER_NAME}` has no audience")))?;
    Ok((
        issuer.issuer.clone(),
        audience,
        issuer.max_lifetime.map(|d| d.as_secs()),
    ))
}

/// Signs a token for the demo issuer of data directory `dir`, issued at `now` (Unix seconds).
pub fn issue(dir: &Path, req: &TokenRequest, now: u64) -> Result<String, DemoIssuerError> {
    let pair = load_key(dir)?;
    let (iss, aud, max) = configured_issuer(dir)?;
    let ttl = req.ttl.as_secs();
    if let Some(max) = max.filter(|m| ttl > *m) {
        return Err(DemoIssuerError::TtlTooLong { ttl, max });
    }
    let mut claims = Map::new();
    let mut set = |k: &str, v: Value| {
        claims.insert(k.to_string(), v);
    };
    set("iss", Value::String(iss));
    set("aud", Value::String(aud));
    set("sub", Value::String(req.sub.clone()));
    set("iat", now.into());
    set("exp", now.saturating_add(ttl).into());
    set("jti", Value::String(uuid::Uuid::new_v4().to_string()));
    if let Some(s) = &req.scope {
        set("scope", Value::String(s.clone()));
    }
    if let Some(p) = &req.patient {
        set("patient", Value::String(p.clone()));
    }
    if !req.roles.is_empty() {
        set("roles", req.roles.clone().into());
    }
    if let Some(p) = &req.purpose_of_use {
        set("purpose_of_use", Value::String(p.clone()));
    }
    if let Some(s) = &req.sid {
        set("sid", Value::String(s.clone()));
    }
    for (name, value) in &req.claims {
        let refuse = |message: &str| DemoIssuerError::Claim {
            name: name.clone(),
            message: message.to_string(),
        };
        if RESERVED.contains(&name.as_str()) {
            return Err(refuse(
                "set by dev-token itself or by its own flag (--sub, --scope, --patient, --role, \
                 --purpose-of-use, --sid, --ttl)",
            ));
        }
        if claims.contains_key(name) {
            return Err(refuse("given twice"));
        }
        claims.insert(name.clone(), value.clone());
    }
    let header = json!({"alg": "ES256", "typ": "at+jwt", "kid": kid(&pair)});
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(Value::Object(claims).to_string().as_bytes())
    );
    let sig = pair
        .sign(&ring::rand::SystemRandom::new(), input.as_bytes())
        .map_err(|_| DemoIssuerError::Crypto("cannot sign"))?;
    Ok(format!("{input}.{}", b64(sig.as_ref())))
}

/// Parses a lifetime: `90s`, `15m`, `1h`, or bare seconds (`900`); at least one second.
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (digits, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => t.split_at(at),
        None => (t, "s"),
    };
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err("expected a number with s, m or h (e.g. 90s, 15m, 1h)".to_string()),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| "expected a number with s, m or h (e.g. 90s, 15m, 1h)".to_string())?;
    match n.checked_mul(scale) {
        Some(0) => Err("must be at least 1s".to_string()),
        Some(secs) => Ok(Duration::from_secs(secs)),
        None => Err("too long".to_string()),
    }
}

/// Parses `--claim name=JSON` (`fhirUser="Practitioner/p-1"`, `auth_time=1700000000`,
/// `permissions={"ehr_read":["patient.*"]}`).
pub fn parse_claim(text: &str) -> Result<(String, Value), String> {
    let (name, json) = text
        .split_once('=')
        .ok_or_else(|| "expected name=JSON, e.g. fhirUser='\"Practitioner/p-1\"'".to_string())?;
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err("the claim name must be letters, digits and _".to_string());
    }
    let value: Value = serde_json::from_str(json)
        .map_err(|e| format!("the value is not JSON ({e}); quote strings: {name}='\"text\"'"))?;
    Ok((name.to_string(), value))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A data directory as `phi-gateway demo` leaves it: issuer key, JWKS and gateway.yaml
    /// (with the repository's rules and policy).
    fn demo_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        ensure_issuer(dir.path()).unwrap();
        crate::runtime::demo::write_demo_config(
            dir.path(),
            "127.0.0.1:1",
            "127.0.0.1:2",
            "127.0.0.1:3",
            &repo.join("rules"),
            &repo.join("deploy/policy"),
        )
        .unwrap();
        dir
    }

    fn request(ttl: u64) -> TokenRequest {
        TokenRequest {
            sub: "app-user-1".into(),
            scope: Some("patient/*.rs".into()),
            patient: Some("pat-1".into()),
            roles: vec!["nurse".into(), "clinician".into()],
            purpose_of_use: Some("TREAT".into()),
            sid: Some("s-1".into()),
            ttl: Duration::from_secs(ttl),
            claims: vec![("fhirUser".into(), json!("Practitioner/p-1"))],
        }
    }

    #[test]
    fn the_key_is_made_once_with_mode_0600_and_the_jwks_is_public() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        ensure_issuer(dir.path()).unwrap();
        let key = std::fs::read(key_path(dir.path())).unwrap();
        let jwks = std::fs::read_to_string(dir.path().join(JWKS_FILE)).unwrap();
        let mode = std::fs::metadata(key_path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(String::from_utf8_lossy(&key).starts_with("-----BEGIN PRIVATE KEY-----"));
        let set: Value = serde_json::from_str(&jwks).unwrap();
        assert_eq!(set["keys"][0]["kty"], "EC");
        assert_eq!(set["keys"][0]["crv"], "P-256");
        assert!(
            set["keys"][0].get("d").is_none(),
            "private part in the JWKS: {jwks}"
        );
        // A second run keeps the key; a lost or stale JWKS is rebuilt from it.
        std::fs::remove_file(dir.path().join(JWKS_FILE)).unwrap();
        ensure_issuer(dir.path()).unwrap();
        std::fs::write(dir.path().join(JWKS_FILE), "{\"keys\":[]}").unwrap();
        ensure_issuer(dir.path()).unwrap();
        assert_eq!(std::fs::read(key_path(dir.path())).unwrap(), key);
        assert_eq!(
            std::fs::read_to_string(dir.path().join(JWKS_FILE)).unwrap(),
            jwks
        );
    }

    #[test]
    fn a_token_verifies_against_the_jwks_with_the_demo_config() {
        let dir = demo_dir();
        let now = crate::access::identity::now_unix();
        let token = issue(dir.path(), &request(900), now).unwrap();
        let cfg =
            crate::config::load_with(&dir.path().join("gateway.yaml"), crate::config::Dns::Skip)
                .unwrap();
        let verifier = crate::access::identity::Verifier::new(&cfg.access);
        let issuer = &cfg.access.issuers[0];
        let bytes = std::fs::read(dir.path().join(JWKS_FILE)).unwrap();
        let (set, dropped) =
            crate::access::identity::parse_jwks(&bytes, &issuer.algorithms).unwrap();
        assert!(dropped.is_empty(), "{dropped:?}");
        verifier.install(0, set, now);
        let t = verifier.verify_cached_or_now(&token, now).unwrap();
        let c = &t.claims;
        assert_eq!(c["iss"], ISSUER);
        assert_eq!(c["aud"], AUDIENCE);
        assert_eq!(c["sub"], "app-user-1");
        assert_eq!(c["patient"], "pat-1");
        assert_eq!(c["roles"], json!(["nurse", "clinician"]));
        assert_eq!(c["scope"], "patient/*.rs");
        assert_eq!(c["purpose_of_use"], "TREAT");
        assert_eq!(c["sid"], "s-1");
        assert_eq!(c["fhirUser"], "Practitioner/p-1");
        assert_eq!(c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap(), 900);
        assert!(c["jti"].as_str().is_some_and(|j| j.len() == 36));
        // Another data directory's key is a different issuer key: its token does not verify.
        let other = demo_dir();
        let foreign = issue(other.path(), &request(900), now).unwrap();
        assert!(verifier.verify_cached_or_now(&foreign, now).is_err());
    }

    #[test]
    fn errors_are_clear() {
        let empty = tempfile::tempdir().unwrap();
        let e = issue(empty.path(), &request(60), 0).unwrap_err();
        assert!(matches!(e, DemoIssuerError::KeyMissing { .. }), "{e}");
        assert!(
            e.to_string().contains("run `phi-gateway demo --data-dir"),
            "{e}"
        );
        assert_eq!(e.exit_code(), 1);

        // A key but no configuration yet.
        ensure_issuer(empty.path()).unwrap();
        let e = issue(empty.path(), &request(60), 0).unwrap_err();
        assert!(e.to_string().contains("gateway.yaml: not found"), "{e}");

        let dir = demo_dir();
        let e = issue(dir.path(), &request(MAX_LIFETIME_SECONDS + 1), 0).unwrap_err();
        assert!(
            matches!(e, DemoIssuerError::TtlTooLong { max: 3600, .. }),
            "{e}"
        );
        assert_eq!(e.exit_code(), 2);
        assert!(issue(dir.path(), &request(MAX_LIFETIME_SECONDS), 0).is_ok());

        for (claims, needle) in [
            (
                vec![("exp".to_string(), json!(1))],
                "set by dev-token itself",
            ),
            (
                vec![("patient".to_string(), json!("pat-2"))],
                "its own flag",
            ),
            (
                vec![("a".to_string(), json!(1)), ("a".to_string(), json!(2))],
                "given twice",
            ),
        ] {
            let mut r = request(60);
            r.claims = claims;
            let e = issue(dir.path(), &r, 0).unwrap_err();
            assert!(e.to_string().contains(needle), "{e}");
            assert_eq!(e.exit_code(), 2);
        }
    }

    #[test]
    fn ttl_and_claim_syntax() {
        assert_eq!(parse_ttl("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_ttl("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_ttl("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_ttl("600"), Ok(Duration::from_secs(600)));
        for bad in [
            "",
            "0",
            "0m",
            "15x",
            "m",
            "-5m",
            "1.5h",
            "15 m",
            "99999999999999999999h",
        ] {
            assert!(parse_ttl(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_claim(r#"permissions={"ehr_read":["patient.*"]}"#),
            Ok(("permissions".into(), json!({"ehr_read": ["patient.*"]})))
        );
        assert_eq!(
            parse_claim("auth_time=17"),
            Ok(("auth_time".into(), json!(17)))
        );
        let e = parse_claim("fhirUser=Practitioner/p-1").unwrap_err();
        assert!(e.contains("not JSON"), "{e}");
        assert!(parse_claim("no-equals").is_err());
        assert!(parse_claim("=1").is_err());
        assert!(parse_claim("bad name=1").is_err());
    }
}
