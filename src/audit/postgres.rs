//! The PostgreSQL sink: the fleet's queryable store, beside the file sink (never instead).
//!
//! The file writer forwards every record it has written to this sink through a bounded
//! queue. A dedicated thread with its own small tokio runtime batches them into one
//! `INSERT … SELECT FROM jsonb_array_elements($1)` per batch, retries a failed batch with
//! exponential backoff (reconnecting as needed) and never drops a batch it holds. While it
//! cannot insert, or when its queue is full, the sink reports itself failing, which makes
//! fail-closed routes refuse new requests exactly as a failing file sink does.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::{AuditError, AuditRecord, PostgresSettings};
use crate::telemetry::Metrics;

/// Schema and indexes, applied idempotently when the sink connects (also in docs/audit.md).
pub const SCHEMA: &str = "\
CREATE TABLE IF NOT EXISTS hipaa_audit_log (
    log_id      UUID PRIMARY KEY,
    user_id     TEXT NOT NULL,
    action_type TEXT NOT NULL,
    resource_id TEXT,
    timestamp   TIMESTAMPTZ NOT NULL,
    ip_address  INET,
    user_agent  TEXT,
    details     JSONB NOT NULL
);
CREATE INDEX IF NOT EXISTS hipaa_audit_log_user_time ON hipaa_audit_log (user_id, timestamp);
CREATE INDEX IF NOT EXISTS hipaa_audit_log_resource_time ON hipaa_audit_log (resource_id, timestamp);
CREATE INDEX IF NOT EXISTS hipaa_audit_log_time ON hipaa_audit_log (timestamp);
CREATE INDEX IF NOT EXISTS hipaa_audit_log_details ON hipaa_audit_log USING GIN (details jsonb_path_ops);
";

const INSERT: &str = "\
INSERT INTO hipaa_audit_log (log_id, user_id, action_type, resource_id, timestamp, ip_address, user_agent, details)
SELECT (r->>'log_id')::uuid, r->>'user_id', r->>'action_type', r->>'resource_id',
       (r->>'timestamp')::timestamptz, (r->>'ip_address')::inet, r->>'user_agent', r->'details'
FROM jsonb_array_elements($1::text::jsonb) AS r
ON CONFLICT (log_id) DO NOTHING";

/// The columns stored outside `details`.
const COLUMNS: [&str; 7] = [
    "log_id",
    "user_id",
    "action_type",
    "resource_id",
    "timestamp",
    "ip_address",
    "user_agent",
];

/// Health of the PostgreSQL sink.
#[derive(Debug)]
pub struct PgStatus {
    ok: AtomicBool,
    error: Mutex<Option<String>>,
    pending: AtomicU64,
}

impl PgStatus {
    /// Inserting works and the queue has room.
    pub fn ok(&self) -> bool {
        self.ok.load(Ordering::Relaxed)
    }

    fn set(&self, error: Option<String>) {
        self.ok.store(error.is_none(), Ordering::Relaxed);
        if let Ok(mut g) = self.error.lock() {
            *g = error;
        }
    }

    pub(crate) fn to_json(&self) -> serde_json::Value {
        let pending = self.pending.load(Ordering::Relaxed);
        match self.error.lock().ok().and_then(|g| g.clone()) {
            None => serde_json::json!({"state": "ok", "pending": pending}),
            Some(e) => serde_json::json!({"state": "failing", "error": e, "pending": pending}),
        }
    }
}

enum Item {
    Row(serde_json::Value),
    Close(std::sync::mpsc::Sender<()>),
}

/// The file writer's handle to the PostgreSQL sink.
pub struct Forwarder {
    tx: mpsc::Sender<Item>,
    status: Arc<PgStatus>,
    metrics: Metrics,
    join: Option<std::thread::JoinHandle<()>>,
}

/// Splits a record into the table's columns and `details` (everything else).
pub fn row(record: &AuditRecord) -> serde_json::Value {
    let mut all = match serde_json::to_value(record) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    let mut out = serde_json::Map::new();
    for c in COLUMNS {
        if let Some(v) = all.remove(c) {
            out.insert(c.to_string(), v);
        }
    }
    out.insert("details".into(), serde_json::Value::Object(all));
    serde_json::Value::Object(out)
}

impl Forwarder {
    /// Hands a written record to the sink without blocking.
    pub(crate) fn send(&self, record: &AuditRecord) {
        match self.tx.try_send(Item::Row(row(record))) {
            Ok(()) => {
                self.status.pending.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                self.metrics
                    .audit_write_errors
                    .with_label_values(&["postgres", "queue_full"])
                    .inc();
                self.status
                    .set(Some("queue full: PostgreSQL is not keeping up".into()));
                tracing::error!(
                    sink = "postgres",
                    "audit queue full; record kept in the file sink only"
                );
            }
        }
    }

    /// Flushes what is queued (bounded by 10 s) and stops the sink.
    pub(crate) fn shutdown(mut self) {
        let (t, r) = std::sync::mpsc::channel();
        if self.tx.try_send(Item::Close(t)).is_ok() {
            let _ = r.recv_timeout(Duration::from_secs(10));
        }
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}

/// Starts the sink thread. The first connection is attempted in the background; until it
/// succeeds the sink reports itself failing (and fail-closed routes refuse requests).
pub(crate) fn start(
    settings: PostgresSettings,
    metrics: Metrics,
) -> Result<(Forwarder, Arc<PgStatus>), AuditError> {
    let status = Arc::new(PgStatus {
        ok: AtomicBool::new(false),
        error: Mutex::new(Some("connecting".into())),
        pending: AtomicU64::new(0),
    });
    let (tx, rx) = mpsc::channel(settings.queue_capacity.max(1));
    let worker_status = status.clone();
    let worker_metrics = metrics.clone();
    let join = std::thread::Builder::new()
        .name("audit-postgres".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    worker_status.set(Some(format!("cannot start runtime: {e}")));
                    return;
                }
            };
            rt.block_on(worker(settings, rx, worker_status, worker_metrics));
        })
        .map_err(|e| AuditError::Thread(e.to_string()))?;
    let forwarder = Forwarder {
        tx,
        status: status.clone(),
        metrics,
        join: Some(join),
    };
    Ok((forwarder, status))
}

/// Connects and applies the schema.
async fn connect(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(sink = "postgres", error = %e, "connection closed");
        }
    });
    client.batch_execute(SCHEMA).await?;
    Ok(client)
}

/// Error text without the connection string (which may hold a password).
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}

async fn worker(
    settings: PostgresSettings,
    mut rx: mpsc::Receiver<Item>,
    status: Arc<PgStatus>,
    metrics: Metrics,
) {
    let mut client: Option<tokio_postgres::Client> = None;
    let mut batch: Vec<serde_json::Value> = Vec::new();
    let mut backoff = settings.retry_initial_backoff;
    let mut closing: Option<std::sync::mpsc::Sender<()>> = None;
    let mut open = true;
    loop {
        // Fill the batch: wait for the first row, then up to `batch_interval` for more.
        if open && batch.len() < settings.batch_size && closing.is_none() {
            let wait = if batch.is_empty() {
                Duration::from_secs(1)
            } else {
                settings.batch_interval
            };
            let deadline = Instant::now() + wait;
            while batch.len() < settings.batch_size {
                let left = deadline.saturating_duration_since(Instant::now());
                match tokio::time::timeout(left, rx.recv()).await {
                    Ok(Some(Item::Row(r))) => batch.push(r),
                    Ok(Some(Item::Close(done))) => {
                        closing = Some(done);
                        break;
                    }
                    Ok(None) => {
                        open = false;
                        break;
                    }
                    Err(_) => break,
                }
            }
        }
        if client.is_none() || client.as_ref().is_some_and(|c| c.is_closed()) {
            match connect(&settings.url).await {
                Ok(c) => {
                    tracing::info!(sink = "postgres", "connected; schema ready");
                    client = Some(c);
                    if batch.is_empty() {
                        status.set(None);
                    }
                }
                Err(e) => {
                    client = None;
                    let msg = format!("cannot connect: {}", describe(&e));
                    tracing::error!(sink = "postgres", error = %msg, retry_in_ms = backoff.as_millis() as u64, "audit sink unavailable");
                    metrics
                        .audit_write_errors
                        .with_label_values(&["postgres", "connect"])
                        .inc();
                    status.set(Some(msg));
                    if closing.is_some() || !open {
                        break;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(settings.retry_max_backoff);
                    continue;
                }
            }
        }
        if !batch.is_empty() {
            let Some(c) = client.as_ref() else { continue };
            let payload = serde_json::Value::Array(batch.clone()).to_string();
            match c.execute(INSERT, &[&payload]).await {
                Ok(_) => {
                    let n = batch.len() as u64;
                    metrics
                        .audit_records
                        .with_label_values(&["postgres"])
                        .inc_by(n);
                    status.pending.fetch_sub(n, Ordering::Relaxed);
                    batch.clear();
                    backoff = settings.retry_initial_backoff;
                    status.set(None);
                }
                Err(e) => {
                    let msg = format!("insert failed: {}", describe(&e));
                    tracing::error!(sink = "postgres", error = %msg, rows = batch.len(), retry_in_ms = backoff.as_millis() as u64, "audit batch not stored; will retry");
                    metrics
                        .audit_write_errors
                        .with_label_values(&["postgres", "insert"])
                        .inc();
                    status.set(Some(msg));
                    if closing.is_some() || !open {
                        break;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(settings.retry_max_backoff);
                    // Reconnect if the connection died; otherwise just retry the batch.
                    continue;
                }
            }
        }
        if let Some(done) = closing.take() {
            // Drain whatever is still queued, then stop.
            while let Ok(Item::Row(r)) = rx.try_recv() {
                batch.push(r);
            }
            if batch.is_empty() {
                let _ = done.send(());
                return;
            }
            closing = Some(done);
            continue;
        }
        if !open && batch.is_empty() {
            return;
        }
    }
    if !batch.is_empty() {
        tracing::error!(
            sink = "postgres",
            rows = batch.len(),
            "stopping with records not stored in PostgreSQL (they are in the file sink)"
        );
    }
    if let Some(done) = closing {
        let _ = done.send(());
    }
}
