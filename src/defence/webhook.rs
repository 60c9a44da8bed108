//! Incident alerts by webhook (issue 12 §1, "Actions: alert ... a webhook"): the detector
//! builds an [`Alert`] and hands it to [`Notifier::notify`]; a delivery thread POSTs it to the
//! receiver configured at `defence.webhook` ([`WebhookSettings`]), as an Alertmanager webhook
//! version 4 message or as a generic JSON object signed per [`signature`].
//!
//! - **The caller never waits.** `notify` is a `try_send` on a bounded queue (`queue`). When
//!   it is full the *new* alert is dropped and counted (`result="dropped"`): the queued ones
//!   are the start of the incident, the first signal a responder needs, and evicting them for
//!   a later alert of the same burst would lose that.
//! - **A delivery is bounded.** Each attempt has `timeout_ms` from connect to the answer's
//!   head; 5xx, 408, 429 and transport errors are retried `retries` times after `backoff_ms`,
//!   doubling, each wait at most [`MAX_WEBHOOK_BACKOFF_MS`]. Any other answer outside 2xx is
//!   final (the receiver refused these bytes; sending them again cannot help), as is a
//!   redirect, which is never followed (a redirected alert is an SSRF and a leak of the
//!   principal's key to wherever it points). Alerts are delivered one at a time, in order.
//! - **Its own thread and runtime**, like the key set refresher (access/identity/fetch.rs):
//!   the HTTPS client and its pool never belong to a pingora worker runtime, and a slow
//!   receiver cannot occupy a request thread. The thread ends when every [`Notifier`] clone
//!   is dropped and the queue is drained.
//! - **TLS 1.3 only**, rustls over ring with `ca_file` or the system roots, no proxy from the
//!   environment; plain HTTP only to a loopback IP (checked in `config`).
//! - `phi_gateway_alert_deliveries_total{format, result}` counts every alert once:
//!   `delivered`, `failed` (last attempt failed, or a final refusal) or `dropped`. Logs name
//!   the alert's id, never its principal or the receiver's URL.
//!
//! - [`check`] builds everything [`Notifier::start`] needs (URL, secret, CA, TLS client)
//!   without starting it, so `phi-gateway check` can report a bad CA file before a deploy.
//!
//! No PHI: an [`Alert`] holds a keyed principal key, counts, fixed texts and gateway-made
//! request ids by construction, and the payloads are built from nothing else.

mod payload;
pub mod signature;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pingora_prometheus::prometheus::IntCounter;
use ring::hmac;
use tokio::sync::mpsc;

pub use signature::{verify, SeenDeliveries, VerifyError};

use crate::config::{WebhookFormat, WebhookSettings, MAX_WEBHOOK_BACKOFF_MS};
use crate::telemetry::Metrics;
use signature::{sign, DELIVERY_HEADER, MIN_SECRET_BYTES, SIGNATURE_HEADER, TIMESTAMP_HEADER};

/// One incident, as the detector raises it. Every field is safe to send to a chat room: no
/// field may hold a patient id, a user id, a path, a query or a matched value.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// Incident id, the same as in the audit incident record.
    pub id: String,
    /// Alert name, e.g. `PhiGatewayAccessAnomaly`.
    pub name: &'static str,
    /// `critical`, `warning`.
    pub severity: &'static str,
    /// Fixed text and numbers, never PHI.
    pub summary: String,
    /// The principal's keyed key (hex), never a user id.
    pub principal: String,
    /// `user` or `client_address`.
    pub principal_kind: &'static str,
    /// The signal that crossed its threshold, e.g. `distinct_patients`.
    pub signal: &'static str,
    /// The value observed.
    pub observed: u64,
    /// The threshold it crossed.
    pub threshold: f64,
    /// What the gateway did: `alert` or `suspend`.
    pub action: &'static str,
    /// When the incident started, unix milliseconds.
    pub starts_at_ms: u64,
    /// This gateway instance's name.
    pub gateway: String,
    /// Request ids of the audit records involved.
    pub audit_refs: Vec<String>,
}

/// Why the notifier cannot start. Carries no secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// The receiver URL does not parse (config validation checks its form already).
    #[error("defence.webhook.url: not a usable URL: {0}")]
    Url(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The secret file cannot be read.
    #[error("defence.webhook.secret_file {}: {source}", path.display())]
    Secret {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The secret is shorter than [`signature::MIN_SECRET_BYTES`].
    #[error("defence.webhook.secret_file {}: the secret has {len} bytes, at least {MIN_SECRET_BYTES} are needed", path.display())]
    SecretTooShort {
        /// The file.
        path: PathBuf,
        /// Its length after trimming.
        len: usize,
    },
    /// The CA file cannot be read or holds no usable certificate.
    #[error("defence.webhook.ca_file {}: {source}", path.display())]
    CaFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The system trust store cannot be read.
    #[error("defence.webhook: cannot read the system trust store: {0}")]
    TrustStore(#[source] std::io::Error),
    /// No CA to trust the receiver with.
    #[error("defence.webhook: no trusted CA certificate (set `ca_file`)")]
    NoRoots,
    /// The TLS configuration cannot be built.
    #[error("defence.webhook: TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// The HTTP client cannot be built.
    #[error("defence.webhook: HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    /// The delivery thread or its runtime cannot be started.
    #[error("defence.webhook: cannot start the delivery thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// The sending end: cheap to clone, never blocks.
#[derive(Clone)]
pub struct Notifier {
    tx: mpsc::Sender<Alert>,
    dropped: IntCounter,
    /// Unix seconds of the last "dropped" log line, so an overflow logs once a second.
    last_drop_log: Arc<AtomicU64>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("queued", &(self.tx.max_capacity() - self.tx.capacity()))
            .finish_non_exhaustive()
    }
}

impl Notifier {
    /// Reads the secret, builds the HTTPS client and starts the delivery thread. Every
    /// failure is here, before the gateway binds; nothing is sent until an alert arrives.
    pub fn start(settings: &WebhookSettings, metrics: &Metrics) -> Result<Notifier, WebhookError> {
        let Prepared { url, key, client } = Prepared::new(settings)?;
        let format = settings.format;
        let count = |result: &str| {
            metrics
                .alert_deliveries
                .with_label_values(&[format.as_str(), result])
        };
        // All three series exist from the start, so `increase(...{result="failed"}[5m])`
        // has a baseline of 0.
        let worker = Worker {
            client,
            url,
            key,
            format,
            timeout: settings.timeout,
            retries: settings.retries,
            backoff: settings.backoff,
            delivered: count("delivered"),
            failed: count("failed"),
        };
        let dropped = count("dropped");
        let (tx, rx) = mpsc::channel(settings.queue.max(1));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(WebhookError::Thread)?;
        std::thread::Builder::new()
            .name("phi-gateway-alerts".into())
            .spawn(move || rt.block_on(worker.run(rx)))
            .map_err(WebhookError::Thread)?;
        Ok(Notifier {
            tx,
            dropped,
            last_drop_log: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Queues `alert` for delivery and returns at once. A full queue (a receiver far behind)
    /// drops `alert` and counts it; so does a delivery thread that is gone.
    pub fn notify(&self, alert: Alert) {
        let Err(e) = self.tx.try_send(alert) else {
            return;
        };
        self.dropped.inc();
        let now = now_unix();
        let last = self.last_drop_log.swap(now, Ordering::Relaxed);
        if last != now {
            let (why, alert) = match &e {
                mpsc::error::TrySendError::Full(a) => ("the delivery queue is full", a),
                mpsc::error::TrySendError::Closed(a) => ("the delivery thread has stopped", a),
            };
            tracing::warn!(alert = %alert.id, name = alert.name, "incident alert dropped: {why}");
        }
    }
}

/// Everything [`Notifier::start`] can fail on (the URL, the secret, the CA file, the TLS
/// client), without starting anything: for `phi-gateway check` and a reload's dry run.
pub fn check(settings: &WebhookSettings) -> Result<(), WebhookError> {
    Prepared::new(settings).map(drop)
}

/// What a notifier needs that can fail to build.
struct Prepared {
    url: reqwest::Url,
    key: Option<hmac::Key>,
    client: reqwest::Client,
}

impl Prepared {
    fn new(settings: &WebhookSettings) -> Result<Self, WebhookError> {
        let url = reqwest::Url::parse(&settings.url).map_err(|e| WebhookError::Url(e.into()))?;
        let key = match &settings.secret_file {
            Some(path) => Some(hmac::Key::new(hmac::HMAC_SHA256, &read_secret(path)?)),
            None => None,
        };
        let https = url.scheme() == "https";
        let client = client(https, settings.ca_file.as_deref(), settings.timeout)?;
        Ok(Prepared { url, key, client })
    }
}

/// Reads a webhook secret as the notifier does: the file's bytes with surrounding ASCII
/// whitespace (a trailing newline) trimmed, at least [`signature::MIN_SECRET_BYTES`] long. A
/// receiver written in Rust reads its copy with this, so both ends agree on the key.
pub fn read_secret(path: &Path) -> Result<Vec<u8>, WebhookError> {
    let bytes = std::fs::read(path).map_err(|source| WebhookError::Secret {
        path: path.to_path_buf(),
        source,
    })?;
    let secret = bytes.trim_ascii();
    if secret.len() < MIN_SECRET_BYTES {
        return Err(WebhookError::SecretTooShort {
            path: path.to_path_buf(),
            len: secret.len(),
        });
    }
    Ok(secret.to_vec())
}

/// How one attempt ended.
enum Attempt {
    Delivered,
    /// Worth another try: 5xx, 408, 429, a timeout or a transport error.
    Retry(String),
    /// Final: any other answer.
    Refused(String),
}

/// The delivery side, owned by the delivery thread.
struct Worker {
    client: reqwest::Client,
    url: reqwest::Url,
    key: Option<hmac::Key>,
    format: WebhookFormat,
    timeout: Duration,
    retries: u32,
    backoff: Duration,
    delivered: IntCounter,
    failed: IntCounter,
}

impl Worker {
    async fn run(self, mut rx: mpsc::Receiver<Alert>) {
        while let Some(alert) = rx.recv().await {
            self.deliver(&alert).await;
        }
    }

    /// Sends one alert, retrying as configured, and counts the result.
    async fn deliver(&self, alert: &Alert) {
        let body = match payload::body(self.format, alert) {
            Ok(b) => Bytes::from(b),
            Err(e) => {
                self.failed.inc();
                tracing::error!(alert = %alert.id, error = %e, "incident alert cannot be encoded");
                return;
            }
        };
        let mut wait = self.backoff;
        let mut attempts = 0;
        let why = loop {
            attempts += 1;
            match self.attempt(body.clone()).await {
                Attempt::Delivered => {
                    self.delivered.inc();
                    return;
                }
                Attempt::Refused(why) => break why,
                Attempt::Retry(why) if attempts > self.retries => break why,
                Attempt::Retry(_) => {}
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_millis(MAX_WEBHOOK_BACKOFF_MS));
        };
        self.failed.inc();
        tracing::warn!(
            alert = %alert.id,
            name = alert.name,
            format = self.format.as_str(),
            attempts,
            error = %why,
            "incident alert not delivered"
        );
    }

    /// One POST, signed when a secret is set. Bounded by `timeout` twice over: the client's
    /// own timeout, and this future's, in case a layer below ignores it.
    async fn attempt(&self, body: Bytes) -> Attempt {
        let mut req = self
            .client
            .post(self.url.clone())
            .header(http::header::CONTENT_TYPE, "application/json");
        if let Some(key) = &self.key {
            let ts = now_unix();
            let delivery = uuid::Uuid::new_v4().to_string();
            req = req
                .header(TIMESTAMP_HEADER, ts.to_string())
                .header(SIGNATURE_HEADER, sign(key, ts, &delivery, &body))
                .header(DELIVERY_HEADER, delivery);
        }
        let sent = tokio::time::timeout(self.timeout, req.body(body).send()).await;
        let status = match sent {
            Err(_) => return Attempt::Retry(format!("no answer within {:?}", self.timeout)),
            Ok(Err(e)) => return Attempt::Retry(without_url(&e)),
            Ok(Ok(resp)) => resp.status(),
        };
        match status.as_u16() {
            200..=299 => Attempt::Delivered,
            408 | 429 | 500..=599 => Attempt::Retry(format!("answered {}", status.as_u16())),
            other => Attempt::Refused(format!("answered {other}")),
        }
    }
}

/// The HTTP client: TLS 1.3 only, no redirects, no environment proxy, `timeout` per request.
fn client(
    https: bool,
    ca_file: Option<&Path>,
    timeout: Duration,
) -> Result<reqwest::Client, WebhookError> {
    // A plain loopback receiver still needs a TLS configuration for the builder (this crate's
    // reqwest has no provider of its own); it is never used, so it trusts nothing.
    let roots = if https {
        roots(ca_file)?
    } else {
        rustls::RootCertStore::empty()
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .https_only(https)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("phi-gateway/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(WebhookError::Client)
}

/// `ca_file`'s certificates, or the system roots. The same choice as the key set client
/// (access/identity/fetch.rs), which `defence` may not use.
fn roots(ca_file: Option<&Path>) -> Result<rustls::RootCertStore, WebhookError> {
    use rustls_pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let fail = |source: Box<dyn std::error::Error + Send + Sync>| WebhookError::CaFile {
                path: path.to_path_buf(),
                source,
            };
            let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
                .map_err(|e| fail(e.into()))?;
            for c in certs {
                roots
                    .add(c.map_err(|e| fail(e.into()))?)
                    .map_err(|e| fail(e.into()))?;
            }
        }
        None => {
            for c in rustls_native_certs::load_native_certs().map_err(WebhookError::TrustStore)? {
                // One unparsable system certificate must not disable the others.
                let _ = roots.add(c);
            }
        }
    }
    if roots.is_empty() {
        return Err(WebhookError::NoRoots);
    }
    Ok(roots)
}

/// A reqwest error without the URL it names (log lines carry no URLs, as elsewhere).
fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(u) = e.url() {
        s = s.replace(u.as_str(), "<receiver>");
    }
    if e.is_timeout() {
        s.push_str(" (timeout)");
    }
    s
}

fn now_unix() -> u64 {
    crate::state::now_ms() / 1000
}

#[cfg(test)]
mod tests;
