//! The state a request runs on: a validated configuration, the compiled rules and the
//! upstream peers, built in one place ([`build`]) that start-up, `check`, reload and the admin
//! listener all use. Requests hold an `Arc` to the snapshot they started with.

use std::sync::Arc;

use pingora::upstreams::peer::HttpPeer;

use crate::access::policy::Policy;
use crate::config::GatewayConfig;
use crate::engine::rules::{FingerprintKey, RuleError, RuleSet};
use crate::engine::source::SourceError;
use crate::engine::Engine;
use crate::gateway::tls::{LoadedCert, TlsError};

/// Why a configuration cannot become a [`Snapshot`]. Each variant names what to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The configuration file is invalid.
    #[error("{0}")]
    Config(#[from] SourceError),
    /// The rules are invalid.
    #[error("{0}")]
    Rules(#[from] RuleError),
    /// A certificate or key is unusable.
    #[error("{0}")]
    Tls(#[from] TlsError),
    /// The fingerprint key file is unusable.
    #[error("{0}")]
    FingerprintKey(#[from] crate::audit::AuditError),
    /// A token issuer's `jwks_file` cannot be used (a `jwks_url` is only fetched by `run`).
    #[error("{config}: access.issuers `{issuer}`: jwks_file {file}: {cause}", config = config.display(), file = file.display())]
    Jwks {
        /// The configuration file.
        config: std::path::PathBuf,
        /// The issuer's name.
        issuer: String,
        /// The key set file.
        file: std::path::PathBuf,
        /// What is wrong with it (never key material).
        cause: String,
    },
    /// The access policy (`access.policy`) does not load; the error names the policy file,
    /// line, column and field.
    #[error("{config}: access.policy: {source}", config = config.display())]
    Policy {
        /// The configuration file.
        config: std::path::PathBuf,
        /// What is wrong.
        source: crate::access::policy::PolicyError,
    },
    /// The rules hold exceptions by value but no fingerprint key is configured.
    #[error(
        "{config}: the rules hold {count} exception fingerprint(s) (`exceptions.values`) but no \
         fingerprint key is configured: set `rules.fingerprint_key_file` or \
         `audit.fingerprint_key_file`",
        config = config.display()
    )]
    NoFingerprintKey {
        /// The configuration file.
        config: std::path::PathBuf,
        /// How many fingerprints.
        count: usize,
    },
}

/// Loads rules (the base directory and its overlays), certificate and upstream CAs for
/// `config` without binding anything. Start-up and every reload go through here, so both
/// accept and reject exactly the same files.
pub fn build(config: GatewayConfig) -> Result<(Snapshot, LoadedCert), BuildError> {
    let mut rules = RuleSet::load_dirs(&config.rule_dirs())?;
    match config.fingerprint_key_file() {
        Some(file) => {
            let secret = crate::audit::keys::load_fingerprint_key(file)?;
            rules = rules.with_fingerprint_key(FingerprintKey::new(&secret))?;
        }
        None if rules.value_exceptions() > 0 => {
            return Err(BuildError::NoFingerprintKey {
                config: config.source.clone(),
                count: rules.value_exceptions(),
            })
        }
        None => {}
    }
    crate::config::check_rule_overrides(&config, &|id| rules.get(id).is_some())?;
    // Key set files are checked here so `check` refuses a broken one too; `run` loads them
    // again (with every `jwks_url`) when the verifier starts.
    for issuer in &config.access.issuers {
        if let crate::config::JwksSource::File(file) = &issuer.jwks {
            let bad = |cause: String| BuildError::Jwks {
                config: config.source.clone(),
                issuer: issuer.name.clone(),
                file: file.clone(),
                cause,
            };
            let bytes = std::fs::read(file).map_err(|e| bad(e.to_string()))?;
            crate::access::identity::parse_jwks(&bytes, &issuer.algorithms)
                .map_err(|e| bad(e.to_string()))?;
        }
    }
    let cert = crate::gateway::tls::load_cert(&config.listen.cert_file, &config.listen.key_file)?;
    if let Some(c) = &config.listen.client_auth {
        // Parsed here so `check` and a reload reject a bad CA file too; `run` builds the
        // verifier it installs from the same file.
        crate::gateway::tls::client_verifier(&c.ca_file, c.required)?;
    }
    // The policy is part of the snapshot: a reload that cannot load it keeps the running one
    // (and says why), exactly like the rules.
    let policy = if config.policy_dirs.is_empty() {
        None
    } else {
        let p = Policy::load_dirs(&config.policy_dirs).map_err(|source| BuildError::Policy {
            config: config.source.clone(),
            source,
        })?;
        Some(Arc::new(p))
    };
    let engine = Engine::new(Arc::new(rules));
    let snapshot = Snapshot::new(config, engine, policy)?;
    Ok((snapshot, cert))
}

/// Everything a request needs, immutable once built. Requests hold an `Arc` to the snapshot
/// they started with, so a reload can swap it without affecting requests in flight.
pub struct Snapshot {
    /// Validated configuration.
    pub config: GatewayConfig,
    /// Compiled rules.
    pub engine: Engine,
    /// Engine limits derived from the configuration.
    pub limits: crate::engine::Limits,
    /// The access policy (`access.policy`), when one is configured.
    pub policy: Option<Arc<Policy>>,
    /// Per-upstream peer templates (resolved addresses, TLS, timeouts).
    pub(crate) peers: Vec<HttpPeer>,
    /// Per-request metric handles, one per route and a last one for `unmatched`.
    pub(crate) route_metrics: Vec<crate::telemetry::RouteHandles>,
    /// Hash of the configuration file and rules (`config_version` in logs and audit records),
    /// logged at start and on every reload.
    pub config_version: String,
}

impl Snapshot {
    /// Builds peers from the configuration. Fails only on unreadable upstream CA files.
    pub fn new(
        config: GatewayConfig,
        engine: Engine,
        policy: Option<Arc<Policy>>,
    ) -> Result<Self, crate::gateway::tls::TlsError> {
        let mut peers = Vec::with_capacity(config.upstreams.len());
        for u in &config.upstreams {
            let (tls, sni) = match &u.tls {
                Some(t) => (true, t.sni.clone()),
                None => (false, String::new()),
            };
            // A SocketAddr never triggers DNS, so `HttpPeer::new` cannot panic here (pingora#570).
            let mut peer = HttpPeer::new(u.address, tls, sni);
            peer.options.connection_timeout = Some(u.timeouts.connect);
            peer.options.total_connection_timeout = Some(u.timeouts.connect.saturating_mul(2));
            peer.options.read_timeout = Some(u.timeouts.read);
            peer.options.write_timeout = Some(u.timeouts.write);
            peer.options.idle_timeout = Some(u.timeouts.idle);
            if let Some(t) = &u.tls {
                peer.options.verify_cert = true;
                peer.options.verify_hostname = t.verify_hostname;
                if let Some(ca) = &t.ca_file {
                    peer.options.ca = Some(load_ca(ca)?);
                }
            }
            peers.push(peer);
        }
        let limits = crate::engine::Limits {
            max_decoded_bytes: config.limits.max_decoded_bytes,
            max_expansion_ratio: config.limits.max_expansion_ratio,
            max_json_depth: config.limits.max_json_depth,
            ..crate::engine::Limits::default()
        };
        let mut config_version = crate::config::config_hash(&config, engine.rules());
        if let Some(p) = &policy {
            // A policy change is a new configuration version too (audit records name it).
            let mixed = crate::audit::record::sha256_hex(
                format!("{config_version}\n{}", p.digest()).as_bytes(),
            );
            config_version = mixed.chars().take(16).collect();
        }
        let route_metrics = (config.routes.iter().map(|r| r.name.as_str()))
            .chain(["unmatched"])
            .map(crate::telemetry::RouteHandles::new)
            .collect();
        Ok(Self {
            config,
            engine,
            limits,
            policy,
            peers,
            route_metrics,
            config_version,
        })
    }
}

/// Loads a CA bundle for an upstream. Each certificate is parsed before pingora wraps it,
/// because pingora's wrapper panics on DER it cannot parse.
fn load_ca(
    path: &std::path::Path,
) -> Result<Arc<[pingora::utils::tls::WrappedX509]>, crate::gateway::tls::TlsError> {
    Ok(crate::gateway::tls::read_ca_certs(path)?
        .into_iter()
        .map(|der| {
            pingora::utils::tls::WrappedX509::new(
                der.as_ref().to_vec(),
                pingora::utils::tls::parse_x509,
            )
        })
        .collect())
}
