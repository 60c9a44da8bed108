//! TLS: the TLS 1.3-only crypto provider, certificate loading, and the development CA.
//!
//! # Why a process-wide provider
//!
//! pingora 0.9's rustls `TlsSettings::build()` hard-codes `[TLS12, TLS13]` and offers no setter.
//! rustls only enables a protocol version when the crypto provider has a cipher suite for it, so
//! installing a default provider that contains **only TLS 1.3 suites** before pingora builds
//! its config makes TLS 1.2 and older impossible. A TLS 1.2 ClientHello gets a
//! `protocol_version` alert (70); TLS 1.0/1.1 ClientHellos carry no `signature_algorithms`
//! extension, which rustls checks first, so they get `handshake_failure` (40). Either way the
//! handshake fails before any application data.
//! This is workaround A of the pingora note. Its consequence, stated in the README: pingora's
//! upstream connector uses the same process-default provider, so **TLS towards upstreams is
//! TLS 1.3-only as well**. A TLS 1.2-only EHR upstream has to be reached over plain HTTP on a
//! protected network segment or through a local TLS 1.3 terminator.
//!
//! # Why our own certificate resolver
//!
//! `TlsSettings::build()` panics when it cannot load the cert or key files. We load and check
//! them ourselves (clear errors from `check` and at start-up) and hand pingora a resolver. The
//! resolver holds the certificate behind a lock so a reload can swap it without a restart.

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The only protocol version string we accept per request (defence in depth; see the proxy).
pub const TLS13: &str = "TLSv1_3";

/// A TLS problem, always naming the file involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The file holds no usable PEM object of the expected kind.
    #[error("{path}: {message}")]
    Pem {
        /// File.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The key does not fit the certificate, or rustls rejects the pair.
    #[error("{cert} / {key}: {message}")]
    Pair {
        /// Certificate file.
        cert: PathBuf,
        /// Key file.
        key: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Another crypto provider was installed first.
    #[error("a different rustls crypto provider is already installed; TLS 1.3-only cannot be guaranteed")]
    ProviderConflict,
    /// Writing generated files failed.
    #[error("{path}: cannot write: {source}")]
    Write {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Certificate generation failed.
    #[error("cannot generate certificate: {0}")]
    Generate(String),
}

/// The ring provider with every TLS 1.2 cipher suite removed.
pub fn tls13_only_provider() -> CryptoProvider {
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites
        .retain(|cs| matches!(cs, rustls::SupportedCipherSuite::Tls13(_)));
    p
}

/// Installs [`tls13_only_provider`] as the process default. Must run before anything builds a
/// rustls config (pingora's listeners and connectors included). Idempotent; fails if some
/// other provider got there first, because then we could not promise TLS 1.3-only.
pub fn install_tls13_only_provider() -> Result<(), TlsError> {
    if CryptoProvider::install_default(tls13_only_provider()).is_ok() {
        return Ok(());
    }
    let installed = CryptoProvider::get_default().ok_or(TlsError::ProviderConflict)?;
    let only13 = installed
        .cipher_suites
        .iter()
        .all(|cs| matches!(cs, rustls::SupportedCipherSuite::Tls13(_)));
    if only13 {
        Ok(())
    } else {
        Err(TlsError::ProviderConflict)
    }
}

/// A loaded, checked certificate chain and key.
#[derive(Clone)]
pub struct LoadedCert {
    /// What rustls serves.
    pub certified: Arc<CertifiedKey>,
    /// Leaf expiry as a Unix timestamp, for the `check` output and metrics.
    pub not_after_unix: i64,
}

impl fmt::Debug for LoadedCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedCert")
            .field("chain_len", &self.certified.cert.len())
            .field("not_after_unix", &self.not_after_unix)
            .finish()
    }
}

/// Loads a PEM certificate chain and private key and checks that they belong together.
pub fn load_cert(cert: &Path, key: &Path) -> Result<LoadedCert, TlsError> {
    let cert_pem = fs::read(cert).map_err(|source| TlsError::Read {
        path: cert.to_path_buf(),
        source,
    })?;
    let key_pem = fs::read(key).map_err(|source| TlsError::Read {
        path: key.to_path_buf(),
        source,
    })?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem {
            path: cert.to_path_buf(),
            message: format!("invalid PEM: {e}"),
        })?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError::Pem {
            path: cert.to_path_buf(),
            message: "no CERTIFICATE block found".into(),
        });
    };
    let not_after_unix = match x509_parser::parse_x509_certificate(leaf.as_ref()) {
        Ok((_, parsed)) => parsed.validity().not_after.timestamp(),
        Err(e) => {
            return Err(TlsError::Pem {
                path: cert.to_path_buf(),
                message: format!("first certificate is not valid X.509: {e}"),
            })
        }
    };
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Pem {
        path: key.to_path_buf(),
        message: format!("no usable private key (PKCS#8, PKCS#1 or SEC1 PEM): {e}"),
    })?;
    let pair_err = |message: String| TlsError::Pair {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        message,
    };
    let signing = rustls::crypto::ring::sign::any_supported_type(&private)
        .map_err(|e| pair_err(format!("unsupported key: {e}")))?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|e| pair_err(format!("key does not match the certificate: {e}")))?;
    Ok(LoadedCert {
        certified: Arc::new(certified),
        not_after_unix,
    })
}

/// Serves one certificate for every SNI name; swappable at run time.
#[derive(Debug)]
pub struct SwappableCert {
    current: RwLock<Arc<CertifiedKey>>,
}

impl SwappableCert {
    /// Starts with `cert`.
    pub fn new(cert: &LoadedCert) -> Arc<Self> {
        Arc::new(Self {
            current: RwLock::new(cert.certified.clone()),
        })
    }

    /// Replaces the certificate for the next handshakes; existing connections keep theirs.
    pub fn swap(&self, cert: &LoadedCert) {
        // A poisoned lock only means a panic elsewhere while holding it; the value is an Arc
        // and always consistent, so recover it.
        let mut guard = self.current.write().unwrap_or_else(|p| p.into_inner());
        *guard = cert.certified.clone();
    }
}

impl ResolvesServerCert for SwappableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let guard = self.current.read().unwrap_or_else(|p| p.into_inner());
        Some(guard.clone())
    }
}

/// Reads a PEM CA bundle: every block must be a parseable X.509 certificate, and there must be
/// at least one. Used for upstream CAs and the mutual-TLS client CA, so both fail with the same
/// clear message naming the file (pingora's own wrappers panic on DER they cannot parse).
pub fn read_ca_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let pem_err = |message: String| TlsError::Pem {
        path: path.to_path_buf(),
        message,
    };
    let mut out = Vec::new();
    for der in CertificateDer::pem_slice_iter(&bytes) {
        let der = der.map_err(|e| pem_err(format!("invalid PEM: {e}")))?;
        x509_parser::parse_x509_certificate(der.as_ref())
            .map_err(|e| pem_err(format!("not a valid X.509 certificate: {e}")))?;
        out.push(der);
    }
    if out.is_empty() {
        return Err(pem_err("no CERTIFICATE block found".into()));
    }
    Ok(out)
}

/// Builds the client-certificate verifier for `listen.client_auth` (mutual TLS) from a PEM CA
/// bundle, on the TLS 1.3-only provider.
pub fn client_verifier(
    ca_file: &Path,
    required: bool,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let pem_err = |message: String| TlsError::Pem {
        path: ca_file.to_path_buf(),
        message,
    };
    let mut roots = rustls::RootCertStore::empty();
    for der in read_ca_certs(ca_file)? {
        roots
            .add(der)
            .map_err(|e| pem_err(format!("not a usable CA certificate: {e}")))?;
    }
    let builder = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(tls13_only_provider()),
    );
    let builder = if required {
        builder
    } else {
        builder.allow_unauthenticated()
    };
    builder
        .build()
        .map_err(|e| pem_err(format!("cannot build a client verifier: {e}")))
}

/// The verified client certificate's subject, attached to the connection after the handshake
/// (pingora `SslDigest::extension`) for the audit record's `user_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// Subject distinguished name in RFC 4514 order, e.g. `CN=dr.alice,O=Clinic A`.
    pub subject: String,
}

/// pingora post-handshake callback: extracts [`ClientIdentity`] when the client presented a
/// certificate. rustls has already verified the chain against `listen.client_auth.ca_file`
/// by then; this only reads it.
#[derive(Debug, Default)]
pub struct PeerIdentity;

#[async_trait::async_trait]
impl pingora::listeners::TlsAccept for PeerIdentity {
    async fn handshake_complete_callback(
        &self,
        tls: &pingora::protocols::tls::TlsRef,
    ) -> Option<Arc<dyn std::any::Any + Send + Sync>> {
        let der = tls.peer_certificate_der()?;
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let subject = cert.subject().to_string();
        if subject.is_empty() {
            return None;
        }
        Some(Arc::new(ClientIdentity { subject }))
    }
}

/// Files written by [`generate_dev_ca`].
#[derive(Debug, Clone)]
pub struct DevCerts {
    /// CA certificate clients trust (`curl --cacert`).
    pub ca_cert: PathBuf,
    /// Server certificate chain (leaf, then CA).
    pub server_cert: PathBuf,
    /// Server private key (mode 0600).
    pub server_key: PathBuf,
}

/// Generates a throw-away development CA and a server certificate for `localhost` and
/// `127.0.0.1` into `dir`. The CA key is never written to disk: it signs once and is dropped,
/// so the dev CA cannot be abused to mint further certificates.
pub fn generate_dev_ca(dir: &Path) -> Result<DevCerts, TlsError> {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
        ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
    };
    let gen = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let now = time::OffsetDateTime::now_utc();

    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(gen)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "phi-gateway development CA");
    dn.push(
        DnType::OrganizationName,
        "phi-gateway demo (not for production)",
    );
    ca_params.distinguished_name = dn;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.not_before = now - time::Duration::hours(1);
    ca_params.not_after = now + time::Duration::days(30);
    let ca_key = KeyPair::generate().map_err(gen)?;
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).map_err(gen)?;

    let mut params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .map_err(gen)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "localhost");
    params.distinguished_name = dn;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(30);
    let key = KeyPair::generate().map_err(gen)?;
    let cert = params.signed_by(&key, &ca).map_err(gen)?;

    fs::create_dir_all(dir).map_err(|source| TlsError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let out = DevCerts {
        ca_cert: dir.join("ca.pem"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server.key"),
    };
    write_file(&out.ca_cert, ca.pem().as_bytes(), 0o644)?;
    write_file(
        &out.server_cert,
        format!("{}{}", cert.pem(), ca.pem()).as_bytes(),
        0o644,
    )?;
    write_file(&out.server_key, key.serialize_pem().as_bytes(), 0o600)?;
    Ok(out)
}

/// Writes a file with the given Unix mode, created with that mode from the start so a key is
/// never readable by others even for an instant.
pub fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TlsError> {
    use std::os::unix::fs::OpenOptionsExt;
    let werr = |source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(werr)?;
    f.write_all(bytes).map_err(werr)?;
    f.sync_all().map_err(werr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_has_only_tls13_suites() {
        let p = tls13_only_provider();
        assert!(!p.cipher_suites.is_empty());
        assert!(p
            .cipher_suites
            .iter()
            .all(|cs| cs.version() == &rustls::version::TLS13));
    }

    #[test]
    fn dev_ca_round_trips_and_key_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let certs = generate_dev_ca(dir.path()).unwrap();
        let loaded = load_cert(&certs.server_cert, &certs.server_key).unwrap();
        assert_eq!(loaded.certified.cert.len(), 2);
        let mode = fs::metadata(&certs.server_key)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn mismatched_key_and_garbage_are_clear_errors() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let ca = generate_dev_ca(a.path()).unwrap();
        let cb = generate_dev_ca(b.path()).unwrap();
        let e = load_cert(&ca.server_cert, &cb.server_key).unwrap_err();
        assert!(e.to_string().contains("does not match"), "{e}");
        let junk = a.path().join("junk.pem");
        fs::write(&junk, "hello").unwrap();
        let e = load_cert(&junk, &ca.server_key).unwrap_err();
        assert!(e.to_string().contains("no CERTIFICATE"), "{e}");
        let e = load_cert(&a.path().join("missing.pem"), &ca.server_key).unwrap_err();
        assert!(e.to_string().contains("cannot read"), "{e}");
    }
}
