//! The tamper-evident audit trail (HIPAA §164.312(b) audit controls, §164.312(c)(2) integrity).
//!
//! - [`record`]: the record (one per decision) and the [`record::Redacted`] /
//!   [`record::Fingerprinter`] pair that keeps raw request values out of it;
//! - [`chain`]: the on-disk format (segments, checkpoints, what is signed);
//! - `writer`: the dedicated writer thread behind a bounded queue (file sink);
//! - `handoff`: that queue, which wakes the writer once per batch, not per record;
//! - `incident`: the record of an incident the gateway raised (an access anomaly);
//! - [`postgres`]: the optional PostgreSQL sink beside the file sink;
//! - [`verify`]: `phi-gateway audit verify`;
//! - [`review`]: `phi-gateway audit break-glass` (the break-glass review list);
//! - [`keys`]: `phi-gateway audit keygen` and key loading.
//!
//! The writer is process-global: it is started once by `runtime::server::run` and is not part
//! of the reloadable request snapshot. Per-route choices (fingerprint or clear resource ids,
//! fail closed or open) live in the route configuration.
//!
//! May use `engine` (probing free-text fields for PHI), `telemetry`, `verdict` and `config`
//! (its settings are validated there); never `gateway` or `runtime`: the proxy hands records
//! in, the trail never reaches back.

pub mod chain;
mod handoff;
mod incident;
pub mod keys;
pub mod postgres;
pub mod record;
pub mod review;
pub mod verify;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use record::{
    AccessRecord, AuditRecord, BreakGlassRecord, Fingerprinter, IncidentRecord, IncidentSignal,
    LeakFinding, Redacted, ResponseLeakRecord,
};

use crate::config::{
    is_inside, AuditSettings, FileSinkSettings, FsyncPolicy, PostgresSettings, UserIdSource,
};
use crate::telemetry::Metrics;

/// Anything that goes wrong in the audit subsystem.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// A file or directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A key file is unusable.
    #[error("{}: {message}", path.display())]
    Key {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The system random generator or key generation failed.
    #[error("cryptographic operation failed")]
    Crypto,
    /// A record or checkpoint could not be encoded.
    #[error("cannot encode audit data: {0}")]
    Encode(String),
    /// The state an earlier run left cannot be continued safely.
    #[error("cannot resume the audit trail: {0}")]
    Resume(String),
    /// The audit configuration is unsafe (for example a key inside the log directory).
    #[error("{0}")]
    Unsafe(String),
    /// The writer thread could not be started.
    #[error("cannot start the audit writer: {0}")]
    Thread(String),
}

/// Keys and settings loaded and checked, nothing started (used by `check` and `run`).
pub struct Prepared {
    settings: AuditSettings,
    signing_key: ring::signature::Ed25519KeyPair,
    key_id: String,
    fingerprint_key: Vec<u8>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("dir", &self.settings.file.dir)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl Prepared {
    /// Loads both keys and refuses keys stored inside the audit directory.
    pub fn load(settings: AuditSettings) -> Result<Self, AuditError> {
        use ring::signature::KeyPair as _;
        for (what, p) in [
            ("signing_key_file", &settings.signing_key_file),
            ("fingerprint_key_file", &settings.fingerprint_key_file),
        ] {
            if is_inside(p, &settings.file.dir) {
                return Err(AuditError::Unsafe(format!(
                    "audit.{what} {} is inside the audit directory {}; keep keys apart from the logs they protect",
                    p.display(),
                    settings.file.dir.display()
                )));
            }
        }
        let signing_key = keys::load_signing_key(&settings.signing_key_file)?;
        let key_id = keys::key_id(signing_key.public_key().as_ref());
        let fingerprint_key = keys::load_fingerprint_key(&settings.fingerprint_key_file)?;
        Ok(Self {
            settings,
            signing_key,
            key_id,
            fingerprint_key,
        })
    }

    /// The audit directory.
    pub fn dir(&self) -> &Path {
        &self.settings.file.dir
    }

    /// Key id of the signing key.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }
}

/// Shared health of the sinks, read by `/readyz` and the fail-closed check.
#[derive(Debug)]
pub struct SinkStatus {
    file_error: Mutex<Option<String>>,
    file_ok: AtomicBool,
    pub(crate) queue_depth: AtomicUsize,
    queue_capacity: usize,
    pub(crate) postgres: Option<Arc<postgres::PgStatus>>,
}

impl SinkStatus {
    fn set_file_error(&self, e: Option<String>) {
        self.file_ok.store(e.is_none(), Ordering::Relaxed);
        if let Ok(mut g) = self.file_error.lock() {
            *g = e;
        }
    }

    /// Every sink accepts records.
    pub fn healthy(&self) -> bool {
        self.file_ok.load(Ordering::Relaxed) && self.postgres.as_ref().is_none_or(|p| p.ok())
    }

    /// `{"file":"ok",...}` for `/readyz`.
    pub fn to_json(&self) -> serde_json::Value {
        let file = match self.file_error.lock().ok().and_then(|g| g.clone()) {
            None => serde_json::json!({"state": "ok"}),
            Some(e) => serde_json::json!({"state": "failing", "error": e}),
        };
        let mut v = serde_json::json!({
            "file": file,
            "queue_depth": self.queue_depth.load(Ordering::Relaxed),
            "queue_capacity": self.queue_capacity,
        });
        if let Some(pg) = &self.postgres {
            v["postgres"] = pg.to_json();
        }
        v
    }
}

pub(crate) enum Msg {
    Record(Box<AuditRecord>, Option<tokio::sync::oneshot::Sender<bool>>),
    Shutdown(std::sync::mpsc::Sender<()>),
    /// Tests: stop like a SIGKILL would (no final checkpoint), releasing the lock.
    #[cfg(test)]
    Abort,
    /// Tests: the writer stalls (like a hung disk) until the sender is dropped.
    #[cfg(test)]
    Stall(std::sync::mpsc::Receiver<()>),
}

/// What happened to a submitted record.
#[derive(Debug)]
#[non_exhaustive]
pub enum Submission {
    /// Queued; with `fsync: every_record` the receiver says whether it became durable.
    Queued(Option<tokio::sync::oneshot::Receiver<bool>>),
    /// Not queued (queue full or writer gone): the record is lost and counted.
    Rejected,
}

/// The running audit trail: the request path's handle to the writer.
pub struct AuditLog {
    queue: Arc<handoff::Handoff>,
    status: Arc<SinkStatus>,
    fingerprinter: Fingerprinter,
    user_id: UserIdSource,
    every_record: bool,
    ack_timeout: Duration,
    metrics: Metrics,
    join: Mutex<Option<std::thread::JoinHandle<()>>>,
    dir: PathBuf,
    clean_cache: Mutex<CleanCache>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Resumes the chain in the audit directory, writes a startup checkpoint and starts the
    /// writer thread (and the PostgreSQL sink, if configured).
    pub fn start(prepared: Prepared, metrics: Metrics) -> Result<Arc<Self>, AuditError> {
        let Prepared {
            settings,
            signing_key,
            key_id,
            fingerprint_key,
        } = prepared;
        // Every error series exists from the start at 0, so `increase(...[5m]) > 0` alerts and
        // dashboards see a value before the first failure, not "no data".
        let mut kinds: Vec<(&str, &str)> = [
            "write",
            "fsync",
            "checkpoint",
            "queue_full",
            "ack_timeout",
            "writer_gone",
        ]
        .into_iter()
        .map(|k| ("file", k))
        .collect();
        if settings.postgres.is_some() {
            kinds.extend(["queue_full", "connect", "insert"].map(|k| ("postgres", k)));
        }
        for (sink, kind) in kinds {
            metrics.audit_write_errors.with_label_values(&[sink, kind]);
        }
        let (forward, pg_status) = match &settings.postgres {
            Some(pg) => {
                let (f, s) = postgres::start(pg.clone(), metrics.clone())?;
                (Some(f), Some(s))
            }
            None => (None, None),
        };
        let status = Arc::new(SinkStatus {
            file_error: Mutex::new(None),
            file_ok: AtomicBool::new(true),
            queue_depth: AtomicUsize::new(0),
            queue_capacity: settings.file.queue_capacity,
            postgres: pg_status,
        });
        let writer = writer::FileWriter::open(
            settings.file.clone(),
            signing_key,
            key_id,
            status.clone(),
            metrics.clone(),
            forward,
        )?;
        let interval = match settings.file.fsync {
            FsyncPolicy::Batched(every) => Some(every),
            FsyncPolicy::EveryRecord => None,
        };
        let queue = Arc::new(handoff::Handoff::new(
            settings.file.queue_capacity,
            interval,
        ));
        let rx = queue.clone();
        let join = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| AuditError::Thread(e.to_string()))?;
        Ok(Arc::new(Self {
            queue,
            status,
            fingerprinter: Fingerprinter::new(&fingerprint_key),
            user_id: settings.user_id.clone(),
            every_record: settings.file.fsync == FsyncPolicy::EveryRecord,
            ack_timeout: settings.ack_timeout,
            metrics,
            join: Mutex::new(Some(join)),
            dir: settings.file.dir.clone(),
            clean_cache: Mutex::new(CleanCache::default()),
        }))
    }

    /// The audit directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Sink health.
    pub fn status(&self) -> &SinkStatus {
        &self.status
    }

    /// Whether a new request can expect its record to be written: every sink healthy and the
    /// queue not full. Fail-closed routes refuse requests when this is false.
    pub fn accepting(&self) -> bool {
        self.status.healthy()
            && self.status.queue_depth.load(Ordering::Relaxed) < self.status.queue_capacity
    }

    /// The identity source.
    pub fn user_id_source(&self) -> &UserIdSource {
        &self.user_id
    }

    /// The fingerprint function.
    pub fn fingerprinter(&self) -> &Fingerprinter {
        &self.fingerprinter
    }

    /// Queues a record without blocking. With `fsync: batched` this wakes the writer only
    /// once per batch (see `handoff`), so the request path pays no thread switch for it.
    pub fn submit(&self, record: AuditRecord) -> Submission {
        let (ack, rx) = if self.every_record {
            let (t, r) = tokio::sync::oneshot::channel();
            (Some(t), Some(r))
        } else {
            (None, None)
        };
        self.status.queue_depth.fetch_add(1, Ordering::Relaxed);
        match self
            .queue
            .push_record(Msg::Record(Box::new(record), ack), self.every_record)
        {
            Ok(()) => {
                self.metrics
                    .audit_queue_depth
                    .set(self.status.queue_depth.load(Ordering::Relaxed) as i64);
                Submission::Queued(rx)
            }
            Err((refused, _)) => {
                self.status.queue_depth.fetch_sub(1, Ordering::Relaxed);
                let kind = match refused {
                    handoff::Refused::Full => "queue_full",
                    handoff::Refused::WriterGone => "writer_gone",
                };
                tracing::error!(sink = "file", kind, "audit record dropped");
                self.metrics
                    .audit_write_errors
                    .with_label_values(&["file", kind])
                    .inc();
                Submission::Rejected
            }
        }
    }

    /// Queues a record and, with `fsync: every_record`, waits (asynchronously) until it is
    /// durable. Returns whether the record is safe.
    pub async fn record(&self, record: AuditRecord) -> bool {
        match self.submit(record) {
            Submission::Rejected => false,
            Submission::Queued(None) => true,
            Submission::Queued(Some(rx)) => {
                match tokio::time::timeout(self.ack_timeout, rx).await {
                    Ok(Ok(ok)) => ok,
                    _ => {
                        self.metrics
                            .audit_write_errors
                            .with_label_values(&["file", "ack_timeout"])
                            .inc();
                        false
                    }
                }
            }
        }
    }

    /// Tests: how often a submitted record woke the writer.
    #[cfg(test)]
    pub(crate) fn writer_wakeups(&self) -> u64 {
        self.queue.wakeups()
    }

    /// Tests: stalls the writer until the returned sender is dropped.
    #[cfg(test)]
    pub(crate) fn stall(&self) -> std::sync::mpsc::Sender<()> {
        let (t, r) = std::sync::mpsc::channel();
        let _ = self.queue.push_control(Msg::Stall(r));
        t
    }

    /// Tests: stops the writer as abruptly as SIGKILL would (no final checkpoint).
    #[cfg(test)]
    pub(crate) fn abort(&self) {
        if let Some(join) = self.join.lock().ok().and_then(|mut g| g.take()) {
            let _ = self.queue.push_control(Msg::Abort);
            let _ = join.join();
        }
    }

    /// Flushes the queue, writes the final checkpoint and stops the writer. Idempotent.
    pub fn shutdown(&self) {
        let Some(join) = self.join.lock().ok().and_then(|mut g| g.take()) else {
            return;
        };
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        // The queue drains in front of the shutdown message. Bounded: a writer stuck on a dead
        // disk must not keep the process from exiting.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        if self.queue.push_control(Msg::Shutdown(done_tx)).is_err() {
            tracing::error!(
                "audit writer did not accept the shutdown; exiting without a final checkpoint"
            );
            return;
        }
        if done_rx
            .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
            .is_ok()
        {
            let _ = join.join();
        } else {
            tracing::error!("audit writer did not finish within 30 s; exiting without waiting");
        }
    }
}

impl Drop for AuditLog {
    /// Dropped without [`AuditLog::shutdown`]: the writer writes what is queued, its final
    /// checkpoint, and stops (what a dropped channel sender used to signal).
    fn drop(&mut self) {
        self.queue.close_senders();
    }
}

/// Everything the proxy knows about a request when it writes its record. Raw values that
/// could carry PHI arrive as [`Redacted`] and are released only through [`AuditLog::build`].
#[derive(Debug)]
pub struct RecordInput<'a> {
    /// Request id.
    pub request_id: &'a str,
    /// Route name or `unmatched`.
    pub route: &'a str,
    /// Route mode.
    pub mode: Option<crate::engine::Mode>,
    /// HTTP method.
    pub method: &'a str,
    /// Raw path (percent-encoded).
    pub path: &'a str,
    /// Store the resource id in clear (true) or as a fingerprint.
    pub resource_in_clear: bool,
    /// Decision.
    pub decision: crate::verdict::Decision,
    /// Reason.
    pub reason: Option<crate::verdict::Reason>,
    /// Rule ids (sorted, unique).
    pub rule_ids: Vec<String>,
    /// Finding locations.
    pub field_paths: Vec<String>,
    /// Status sent.
    pub status: u16,
    /// Body bytes in.
    pub bytes_in: u64,
    /// Body bytes out.
    pub bytes_out: Option<u64>,
    /// TLS version.
    pub tls_version: Option<String>,
    /// Config version hash.
    pub config_version: &'a str,
    /// Hex HMAC-SHA256 of the body under the fingerprint key ([`Fingerprinter::body_context`]).
    pub body_hmac: Option<String>,
    /// Client IP.
    pub ip_address: Option<String>,
    /// Raw `User-Agent`.
    pub user_agent: Option<Redacted<String>>,
    /// Raw audit header value.
    pub audit_header: Option<Redacted<String>>,
    /// Raw identity header value.
    pub user_header: Option<Redacted<String>>,
    /// The bearer-token check, on routes that check tokens.
    pub access: Option<AccessInput>,
    /// The access policy's decision, on routes where it applies (merged into `access`).
    pub policy: Option<PolicyInput>,
    /// What the response leak guard did, when it acted.
    pub response_leak: Option<ResponseLeakRecord>,
}

/// What the access policy decided for a request. Values from the token arrive [`Redacted`].
#[derive(Debug)]
pub struct PolicyInput {
    /// The policy's reason (`allowed`, `patient_mismatch`, …, `compartment_check_unavailable`,
    /// or the response check's `response_*` reason);
    /// none when the request ended before the decision was taken (a body never completed).
    pub reason: Option<&'static str>,
    /// `response` or `target` when the policy asked for a check after the allow.
    pub post_check: Option<&'static str>,
    /// Denied Bundle entries.
    pub denied_entries: Vec<usize>,
    /// Their reasons.
    pub entry_reasons: Vec<&'static str>,
    /// `Patient/{id}` of the token's patient claim: only ever stored as a fingerprint.
    pub patient: Option<Redacted<String>>,
    /// The token's `purpose_of_use` claim.
    pub purpose_of_use: Option<Redacted<String>>,
    /// Break-glass, when the request asked for it.
    pub break_glass: Option<BreakGlassInput>,
}

/// What the gateway knows of a break-glass request ([`BreakGlassRecord`]).
#[derive(Debug)]
pub struct BreakGlassInput {
    /// `started`, `access` or `refused`.
    pub event: &'static str,
    /// On `access`: `started` or `active`.
    pub time_box: Option<&'static str>,
    /// RFC 3339 expiry of the box.
    pub expires_at: Option<String>,
    /// `Patient/{id}`: only ever stored as a fingerprint.
    pub patient: Option<Redacted<String>>,
    /// The justification header's value: stored in clear only if the engine finds it clean.
    pub justification: Option<Redacted<String>>,
    /// `category` or `purpose_of_use`.
    pub trigger: &'static str,
    /// The policy reason overridden.
    pub overridden: Option<&'static str>,
    /// Why it was refused.
    pub reason: Option<&'static str>,
}

/// What the access check knows about a request. Values from the token arrive [`Redacted`].
#[derive(Debug)]
pub struct AccessInput {
    /// `allow`, `anonymous`, `deny` or `would_deny`.
    pub decision: &'static str,
    /// Which check failed, when one did.
    pub error: Option<&'static str>,
    /// The issuer's configured name.
    pub issuer: Option<String>,
    /// The verified token's user claim: becomes `user_id` (whatever `audit.user_id` says).
    pub user: Option<Redacted<String>>,
    /// Granted scopes.
    pub scopes: Vec<Redacted<String>>,
    /// `client_id` / `azp`.
    pub client_id: Option<Redacted<String>>,
    /// `jti`.
    pub token_id: Option<Redacted<String>>,
    /// `sid`.
    pub session_id: Option<Redacted<String>>,
    /// The session check's outcome (`active`, `started`, `idle_timeout`, `expired`).
    pub session: Option<&'static str>,
}

/// Verdicts of [`AuditLog::clear_or_fingerprint`], keyed by fingerprint (never by value) and
/// valid for one rule set: user agents, user ids and resource ids repeat, and scanning them
/// again on every request would dominate the cost of a record.
#[derive(Debug, Default)]
struct CleanCache {
    rules_digest: String,
    clean: std::collections::HashMap<String, bool>,
}

/// Most verdicts kept; the cache is simply emptied when full.
const CLEAN_CACHE_MAX: usize = 4096;

impl AuditLog {
    /// A value is safe to store in clear when it matches `grammar` and no detector fires on
    /// it, neither alone nor next to any rule's context hotword (a bare NPI or DEA number
    /// needs context to fire; a record must not store it in clear either way), nor after
    /// percent-decoding. Otherwise only its fingerprint is stored.
    fn clear_or_fingerprint(
        &self,
        engine: &crate::engine::Engine,
        limits: &crate::engine::Limits,
        value: Redacted<String>,
        grammar: fn(&str) -> bool,
        reference: bool,
    ) -> String {
        let fingerprint = self.fingerprinter.fingerprint(&value);
        let raw = value.expose();
        if !grammar(raw) {
            return fingerprint;
        }
        let digest = engine.rules().digest();
        let cached = self.clean_cache.lock().ok().and_then(|c| {
            (c.rules_digest == digest)
                .then(|| c.clean.get(&fingerprint).copied())
                .flatten()
        });
        let clean = match cached {
            Some(c) => c,
            None => {
                // A FHIR reference `Patient/00481234` is probed whole and as its bare id: a
                // pattern anchored on its hotword (`MRN: 00481234`) would not see through the
                // `Patient/` in between.
                let id = if reference {
                    raw.rsplit('/').next().unwrap_or(raw)
                } else {
                    raw
                };
                let probed: String = engine
                    .rules()
                    .context_probes()
                    .iter()
                    .map(|w| format!("{w}: {raw} ; {w}: {id} ; "))
                    .collect();
                let mut parts = vec![crate::engine::Part::Text(&probed)];
                if raw.contains('%') {
                    parts.push(crate::engine::Part::Path(raw));
                }
                let clean = parts
                    .iter()
                    .all(|p| engine.scan(p, limits).is_ok_and(|s| s.findings.is_empty()));
                if let Ok(mut c) = self.clean_cache.lock() {
                    if c.rules_digest != digest || c.clean.len() >= CLEAN_CACHE_MAX {
                        c.clean.clear();
                        c.rules_digest = digest.to_string();
                    }
                    c.clean.insert(fingerprint.clone(), clean);
                }
                clean
            }
        };
        match value.into_clear_checked(clean) {
            Some(v) => v,
            None => fingerprint,
        }
    }
}

fn token_grammar(s: &str) -> bool {
    !s.is_empty() && s.len() <= 256 && s.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
}

/// FHIR `Type/id` with the id grammar `[A-Za-z0-9\-\.]{1,64}` (no percent-encoding).
fn fhir_reference_grammar(s: &str) -> bool {
    let mut parts = s.splitn(2, '/');
    let ty_ok = parts
        .next()
        .is_some_and(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric()));
    let id_ok = parts.next().is_none_or(|id| {
        !id.is_empty()
            && id.len() <= 64
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    });
    ty_ok && id_ok
}

impl AuditLog {
    /// Builds the record for one decision. Free-text values (user agent, audit header, user
    /// id, resource id) are scanned with the same engine the route uses; any finding (or a
    /// value outside a strict grammar) stores only the keyed fingerprint.
    pub fn build(
        &self,
        engine: &crate::engine::Engine,
        limits: &crate::engine::Limits,
        input: RecordInput<'_>,
    ) -> AuditRecord {
        let safe = |v: Redacted<String>| {
            self.clear_or_fingerprint(engine, limits, v, token_grammar, false)
        };
        let target = record::fhir_target(input.method, input.path);
        let resource_id = target.resource.map(|r| {
            if input.resource_in_clear {
                self.clear_or_fingerprint(engine, limits, r, fhir_reference_grammar, true)
            } else {
                self.fingerprinter.fingerprint(&r)
            }
        });
        let mut access_input = input.access;
        // A verified token names the user; otherwise the configured source does.
        let token_user = access_input.as_mut().and_then(|a| a.user.take());
        let user_id = match token_user.or(input.user_header) {
            Some(v) => safe(v),
            None => "anonymous".to_string(),
        };
        let policy = input.policy;
        let access = access_input.map(|a| {
            let mut r = record::AccessRecord {
                decision: a.decision.to_string(),
                error: a.error.map(str::to_string),
                issuer: a.issuer,
                scopes: a.scopes.into_iter().map(safe).collect(),
                client_id: a.client_id.map(|v| self.fingerprinter.fingerprint(&v)),
                token_id: a.token_id.map(|v| self.fingerprinter.fingerprint(&v)),
                session_id: a.session_id.map(|v| self.fingerprinter.fingerprint(&v)),
                session: a.session.map(str::to_string),
                reason: None,
                post_check: None,
                denied_entries: Vec::new(),
                entry_reasons: Vec::new(),
                patient: None,
                purpose_of_use: None,
                break_glass: None,
            };
            if let Some(p) = policy {
                r.reason = p.reason.map(str::to_string);
                r.post_check = p.post_check.map(str::to_string);
                r.denied_entries = p.denied_entries;
                r.entry_reasons = p.entry_reasons.into_iter().map(str::to_string).collect();
                // Never in clear, whatever the route's resource_id mode: the patient context
                // is the identifier the whole binding is about.
                r.patient = p.patient.map(|v| self.fingerprinter.fingerprint(&v));
                r.purpose_of_use = p.purpose_of_use.map(safe);
                r.break_glass = p.break_glass.map(|b| record::BreakGlassRecord {
                    event: b.event.to_string(),
                    severity: (b.event == "started").then(|| "critical".to_string()),
                    time_box: b.time_box.map(str::to_string),
                    expires_at: b.expires_at,
                    patient: b.patient.map(|v| self.fingerprinter.fingerprint(&v)),
                    justification: b.justification.map(safe),
                    trigger: Some(b.trigger.to_string()),
                    overridden: b.overridden.map(str::to_string),
                    reason: b.reason.map(str::to_string),
                });
            }
            r
        });
        AuditRecord {
            log_id: uuid::Uuid::new_v4().to_string(),
            user_id,
            action_type: target
                .interaction
                .map(str::to_string)
                .unwrap_or_else(|| input.method.to_ascii_lowercase()),
            resource_id,
            timestamp: writer::now_rfc3339(),
            ip_address: input.ip_address,
            user_agent: input.user_agent.map(safe),
            request_id: input.request_id.to_string(),
            audit_header: input.audit_header.map(safe),
            route: input.route.to_string(),
            method: input.method.to_string(),
            fhir_interaction: target.interaction.map(str::to_string),
            decision: input.decision.as_str().to_string(),
            reason: input.reason.map(|r| r.as_str().to_string()),
            mode: input.mode.map(|m| m.as_str().to_string()),
            rule_ids: input.rule_ids,
            field_paths: input.field_paths,
            status: input.status,
            bytes_in: input.bytes_in,
            bytes_out: input.bytes_out,
            tls_version: input.tls_version,
            config_version: input.config_version.to_string(),
            body_hmac: input.body_hmac,
            access,
            incident: None,
            response_leak: input.response_leak,
            seq: 0,
            prev_hash: String::new(),
        }
    }
}

#[cfg(test)]
mod tests;
