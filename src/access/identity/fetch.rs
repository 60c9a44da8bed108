//! The key-set refresher: one thread with its own single-threaded tokio runtime, so the
//! HTTPS client and its connection pool never belong to a pingora worker runtime.
//!
//! - At start every issuer's set is fetched (or read) before [`spawn`] returns; a failure
//!   names the issuer and start-up stops, so the listener never accepts a request it cannot
//!   judge.
//! - Every `refresh_seconds` the set is fetched again (after a failure: again within 30 s).
//!   A failed fetch keeps the last good set; [`super::Verifier`] serves it for known kids until
//!   it is `max_staleness_seconds` old (stale-if-error, so an IdP outage is not an outage of
//!   every EHR behind the gateway; pyjwt#1162 shows the opposite failure).
//! - An unknown `kid` sends a [`Refetch`]; requests are served one at a time (single
//!   flight), and at most one fetch per `refetch_cooldown_seconds` per issuer is triggered this
//!   way, so fabricated kids cannot drive outbound fetches (garden-co/jazz PR #340). The
//!   channel is bounded; a request that finds it full does not wait.
//! - HTTPS only, TLS 1.3 only (rustls with ring, like the listener), no redirects (a
//!   redirected key set is an SSRF and pinning hazard), no proxy from the environment, a
//!   timeout per fetch, at most `keys::MAX_JWKS_BYTES` read.
//! - `phi_gateway_jwks_refresh_total{issuer, result}` counts fetches; the
//!   `phi_gateway_jwks_age_seconds{issuer}` gauge is the age of the set in use, updated every
//!   second. The label is the issuer's configured name.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::keys::parse_jwks;
use super::{now_unix, Verifier};
use crate::config::JwksSource;
use crate::telemetry::Metrics;

/// A request from the request path: fetch issuer `issuer` again, then say whether a new set
/// was installed.
pub(super) struct Refetch {
    pub(super) issuer: usize,
    pub(super) done: tokio::sync::oneshot::Sender<bool>,
}

/// Pending refetch requests before request paths stop waiting for one.
const REFETCH_QUEUE: usize = 64;
/// Retry interval after a failed periodic refresh (or the refresh interval, if shorter).
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);

/// Why the verifier cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// An issuer's first key set could not be fetched or used.
    #[error("access.issuers `{issuer}`: cannot load its key set at start: {cause}")]
    FirstFetch {
        /// The issuer's name.
        issuer: String,
        /// What went wrong (no key material).
        cause: String,
    },
    /// The HTTPS client for an issuer cannot be built (CA file, TLS settings).
    #[error("access.issuers `{issuer}`: {cause}")]
    Client {
        /// The issuer's name.
        issuer: String,
        /// What went wrong.
        cause: String,
    },
    /// The refresher thread did not report in time.
    #[error("the key set refresher did not finish its first fetch within {0:?}")]
    Timeout(Duration),
    /// The refresher thread cannot be started.
    #[error("cannot start the key set refresher: {0}")]
    Thread(#[from] std::io::Error),
}

/// A TLS 1.3-only rustls client configuration over ring, trusting `ca_file` or the system
/// roots. Built here (not from `gateway::tls`, which `access` may not use) with the same
/// choices as the listener: an explicit provider, TLS 1.3 only.
fn tls_config(ca_file: Option<&std::path::Path>) -> Result<rustls::ClientConfig, String> {
    use rustls_pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            for c in certs {
                let c = c.map_err(|e| format!("{}: {e}", path.display()))?;
                roots
                    .add(c)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs()
                .map_err(|e| format!("cannot read the system trust store: {e}"))?;
            for c in native {
                let _ = roots.add(c);
            }
        }
    }
    if roots.is_empty() {
        return Err("no trusted CA certificate (set `jwks_ca_file`)".into());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

fn client(ca_file: Option<&std::path::Path>, timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .use_preconfigured_tls(tls_config(ca_file)?)
        .https_only(true)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("phi-gateway/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| e.to_string())
}

/// Reads one key set: the file, or the URL's body (status 200, bounded size).
async fn load(source: &JwksSource, client: Option<&reqwest::Client>) -> Result<Vec<u8>, String> {
    let max = super::keys::MAX_JWKS_BYTES;
    match (source, client) {
        (JwksSource::File(path), _) => {
            let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
            if meta.len() > max as u64 {
                return Err(format!("{}: larger than {max} bytes", path.display()));
            }
            std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
        }
        (JwksSource::Url { url, .. }, Some(client)) => {
            let mut resp = client
                .get(url)
                .header("accept", "application/json, application/jwk-set+json")
                .send()
                .await
                .map_err(|e| format!("GET {url}: {e}"))?;
            if resp.status().is_redirection() {
                return Err(format!(
                    "GET {url}: answered {} (redirects are not followed)",
                    resp.status()
                ));
            }
            if resp.status() != reqwest::StatusCode::OK {
                return Err(format!("GET {url}: answered {}", resp.status()));
            }
            if resp.content_length().is_some_and(|n| n > max as u64) {
                return Err(format!("GET {url}: larger than {max} bytes"));
            }
            let mut body = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(|e| format!("GET {url}: {e}"))? {
                if body.len() + chunk.len() > max {
                    return Err(format!("GET {url}: larger than {max} bytes"));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(body)
        }
        (JwksSource::Url { url, .. }, None) => Err(format!("GET {url}: no client")),
        (JwksSource::Introspection(_), _) => Err("an introspection issuer has no key set".into()),
    }
}

struct Refresher {
    verifier: Arc<Verifier>,
    metrics: Metrics,
    clients: Vec<Option<reqwest::Client>>,
}

impl Refresher {
    /// Fetches issuer `i` once and installs the set; counts the result.
    async fn fetch(&self, i: usize) -> Result<(), String> {
        let Some(iss) = self.verifier.issuers.get(i) else {
            return Err("no such issuer".into());
        };
        let cfg = &iss.config;
        if matches!(cfg.jwks, JwksSource::Introspection(_)) {
            // Nothing to fetch: each opaque token is asked about when it first arrives.
            return Ok(());
        }
        let client = self.clients.get(i).and_then(Option::as_ref);
        let result = match tokio::time::timeout(cfg.fetch_timeout, load(&cfg.jwks, client)).await {
            Ok(Ok(bytes)) => parse_jwks(&bytes, &cfg.algorithms).map_err(|e| e.to_string()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(format!("no answer within {:?}", cfg.fetch_timeout)),
        };
        let label = if result.is_ok() { "success" } else { "failure" };
        self.metrics
            .jwks_refresh
            .with_label_values(&[cfg.name.as_str(), label])
            .inc();
        match result {
            Ok((set, dropped)) => {
                let changed = **iss.keys.load() != set;
                if changed {
                    tracing::info!(
                        issuer = %cfg.name,
                        keys = set.keys.len(),
                        dropped = %dropped.join("; "),
                        "installed a new key set"
                    );
                }
                self.verifier.install(i, set, now_unix());
                self.gauge(i);
                Ok(())
            }
            Err(e) => {
                tracing::warn!(issuer = %cfg.name, error = %e, "key set refresh failed; the last good set stays in use");
                Err(e)
            }
        }
    }

    fn gauge(&self, i: usize) {
        if let Some(iss) = self.verifier.issuers.get(i) {
            let at = iss.last_success.load(Ordering::SeqCst);
            if at != 0 {
                self.metrics
                    .jwks_age
                    .with_label_values(&[iss.config.name.as_str()])
                    .set(now_unix().saturating_sub(at) as i64);
            }
        }
    }

    async fn run(self, mut rx: tokio::sync::mpsc::Receiver<Refetch>) {
        let n = self.verifier.issuers.len();
        let refresh = |i: usize| self.verifier.issuers[i].config.refresh;
        let mut next: Vec<Instant> = (0..n).map(|i| Instant::now() + refresh(i)).collect();
        let mut last_kid_fetch: Vec<Option<Instant>> = vec![None; n];
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    for (i, due) in next.iter_mut().enumerate() {
                        if Instant::now() >= *due {
                            let ok = self.fetch(i).await.is_ok();
                            let wait = if ok { refresh(i) } else { refresh(i).min(RETRY_AFTER_FAILURE) };
                            *due = Instant::now() + wait;
                        }
                        self.gauge(i);
                    }
                }
                msg = rx.recv() => {
                    let Some(Refetch { issuer, done }) = msg else { return };
                    let cooldown = self.verifier.issuers.get(issuer).map(|k| k.config.refetch_cooldown);
                    let allowed = match (cooldown, last_kid_fetch.get(issuer)) {
                        (Some(c), Some(last)) => last.is_none_or(|t| t.elapsed() >= c),
                        _ => false,
                    };
                    let fetched = if allowed {
                        last_kid_fetch[issuer] = Some(Instant::now());
                        self.fetch(issuer).await.is_ok()
                    } else {
                        false
                    };
                    let _ = done.send(fetched);
                }
            }
        }
    }
}

/// Starts the refresher thread for `verifier` and waits for every issuer's first set.
pub(super) fn spawn(verifier: Arc<Verifier>, metrics: Metrics) -> Result<(), IdentityError> {
    let mut clients = Vec::new();
    let mut first_wait = Duration::from_secs(5);
    for iss in &verifier.issuers {
        let cfg = &iss.config;
        first_wait += cfg.fetch_timeout;
        clients.push(match &cfg.jwks {
            JwksSource::File(_) => None,
            JwksSource::Url { ca_file, .. } => Some(
                client(ca_file.as_deref(), cfg.fetch_timeout).map_err(|cause| {
                    IdentityError::Client {
                        issuer: cfg.name.clone(),
                        cause,
                    }
                })?,
            ),
            JwksSource::Introspection(ix) => {
                let fail = |cause| IdentityError::Client {
                    issuer: cfg.name.clone(),
                    cause,
                };
                let c = client(ix.ca_file.as_deref(), cfg.fetch_timeout).map_err(fail)?;
                let intro = super::introspect::Introspector::new(c, &ix.client_secret_file)
                    .map_err(fail)?;
                let _ = iss.introspector.set(intro);
                None
            }
        });
    }
    let (tx, rx) = tokio::sync::mpsc::channel(REFETCH_QUEUE);
    let _ = verifier.refetch.set(tx);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), IdentityError>>();
    let refresher = Refresher {
        verifier,
        metrics,
        clients,
    };
    std::thread::Builder::new()
        .name("phi-gateway-jwks".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(IdentityError::Thread(e)));
                    return;
                }
            };
            rt.block_on(async move {
                for i in 0..refresher.verifier.issuers.len() {
                    if let Err(cause) = refresher.fetch(i).await {
                        let issuer = refresher.verifier.issuers[i].config.name.clone();
                        let _ = ready_tx.send(Err(IdentityError::FirstFetch { issuer, cause }));
                        return;
                    }
                }
                let _ = ready_tx.send(Ok(()));
                refresher.run(rx).await;
            });
        })?;
    match ready_rx.recv_timeout(first_wait) {
        Ok(r) => r,
        Err(_) => Err(IdentityError::Timeout(first_wait)),
    }
}
