//! Audit keys: the Ed25519 checkpoint signing key, its public key for the compliance team, and
//! the HMAC key for fingerprints. All PEM files; private ones are written with mode 0600.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use ring::signature::{Ed25519KeyPair, KeyPair as _};

use super::AuditError;

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410), followed by the 32 key bytes.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];
const FP_LABEL: &str = "PHI GATEWAY AUDIT FINGERPRINT KEY";

/// What `audit keygen` wrote.
#[derive(Debug, Clone)]
pub struct GeneratedKeys {
    /// Ed25519 signing key (PKCS#8 PEM, 0600).
    pub signing_key: PathBuf,
    /// Fingerprint HMAC key (PEM, 0600).
    pub fingerprint_key: PathBuf,
    /// Public key (SPKI PEM) for the compliance team.
    pub public_key: PathBuf,
    /// Key id: first 16 hex digits of SHA-256 over the public key bytes.
    pub key_id: String,
}

pub(crate) fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        s.push_str(&String::from_utf8_lossy(chunk));
        s.push('\n');
    }
    s.push_str(&format!("-----END {label}-----\n"));
    s
}

fn unpem(path: &Path, label: &str) -> Result<Vec<u8>, AuditError> {
    let text = std::fs::read_to_string(path).map_err(|source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let bad = |m: &str| AuditError::Key {
        path: path.to_path_buf(),
        message: m.to_string(),
    };
    let start = text
        .find(&begin)
        .ok_or_else(|| bad(&format!("no `{begin}` block")))?;
    let body = &text[start + begin.len()..];
    let stop = body
        .find(&end)
        .ok_or_else(|| bad(&format!("no `{end}` line")))?;
    let b64: String = body[..stop].split_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| bad(&format!("invalid base64: {e}")))
}

/// Key id of a public key: first 16 hex digits of its SHA-256.
pub fn key_id(public: &[u8]) -> String {
    super::record::sha256_hex(public)[..16].to_string()
}

/// Writes `bytes` to a new file (never overwrites) with the given mode.
pub(crate) fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), AuditError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let io = |source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)
}

/// Generates the three key files. `signing_dir` receives the two private keys (created 0700
/// if missing); `public_key` is where the public key goes. Refuses to overwrite anything.
pub fn generate(signing_dir: &Path, public_key: &Path) -> Result<GeneratedKeys, AuditError> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(signing_dir)
        .map_err(|source| AuditError::Io {
            path: signing_dir.to_path_buf(),
            source,
        })?;
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| AuditError::Crypto)?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| AuditError::Crypto)?;
    let mut spki = ED25519_SPKI_PREFIX.to_vec();
    spki.extend_from_slice(pair.public_key().as_ref());
    let mut hmac = [0u8; 32];
    ring::rand::SecureRandom::fill(&rng, &mut hmac).map_err(|_| AuditError::Crypto)?;

    let keys = GeneratedKeys {
        signing_key: signing_dir.join("audit-signing.key"),
        fingerprint_key: signing_dir.join("audit-fingerprint.key"),
        public_key: public_key.to_path_buf(),
        key_id: key_id(pair.public_key().as_ref()),
    };
    for p in [&keys.signing_key, &keys.fingerprint_key, &keys.public_key] {
        if p.exists() {
            return Err(AuditError::Key {
                path: p.clone(),
                message: "already exists; refusing to overwrite a key".into(),
            });
        }
    }
    write_new(
        &keys.signing_key,
        pem("PRIVATE KEY", pkcs8.as_ref()).as_bytes(),
        0o600,
    )?;
    write_new(
        &keys.fingerprint_key,
        pem(FP_LABEL, &hmac).as_bytes(),
        0o600,
    )?;
    write_new(&keys.public_key, pem("PUBLIC KEY", &spki).as_bytes(), 0o644)?;
    Ok(keys)
}

/// Loads the Ed25519 signing key (PKCS#8 PEM).
pub fn load_signing_key(path: &Path) -> Result<Ed25519KeyPair, AuditError> {
    let der = unpem(path, "PRIVATE KEY")?;
    Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der).map_err(|e| AuditError::Key {
        path: path.to_path_buf(),
        message: format!("not an Ed25519 PKCS#8 key: {e}"),
    })
}

/// Loads the public key (SPKI PEM); returns the 32 raw key bytes.
pub fn load_public_key(path: &Path) -> Result<Vec<u8>, AuditError> {
    let der = unpem(path, "PUBLIC KEY")?;
    match der.strip_prefix(&ED25519_SPKI_PREFIX[..]) {
        Some(raw) if raw.len() == 32 => Ok(raw.to_vec()),
        _ => Err(AuditError::Key {
            path: path.to_path_buf(),
            message: "not an Ed25519 public key".into(),
        }),
    }
}

/// Loads the fingerprint HMAC key (at least 32 bytes).
pub fn load_fingerprint_key(path: &Path) -> Result<Vec<u8>, AuditError> {
    let key = unpem(path, FP_LABEL)?;
    if key.len() < 32 {
        return Err(AuditError::Key {
            path: path.to_path_buf(),
            message: "fingerprint key must hold at least 32 bytes".into(),
        });
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_load_and_are_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let d = tempfile::tempdir().unwrap();
        let k = generate(&d.path().join("keys"), &d.path().join("pub.pem")).unwrap();
        let pair = load_signing_key(&k.signing_key).unwrap();
        let public = load_public_key(&k.public_key).unwrap();
        assert_eq!(pair.public_key().as_ref(), &public[..]);
        assert_eq!(load_fingerprint_key(&k.fingerprint_key).unwrap().len(), 32);
        for p in [&k.signing_key, &k.fingerprint_key] {
            let mode = std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", p.display());
        }
        assert!(generate(&d.path().join("keys"), &d.path().join("pub.pem")).is_err());
    }
}
