//! The validated `audit:` section: what the audit trail is told to do. The trail itself
//! (`crate::audit`) consumes these settings; keeping them here lets the configuration be
//! validated without the trail's machinery.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// When the writer calls `fdatasync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FsyncPolicy {
    /// After every record; the proxy releases a response only once its record is durable.
    EveryRecord,
    /// At most this long after a record was written.
    Batched(Duration),
}

/// File sink settings.
#[derive(Debug, Clone, PartialEq)]
pub struct FileSinkSettings {
    /// Audit directory (segments and checkpoints).
    pub dir: PathBuf,
    /// fsync policy.
    pub fsync: FsyncPolicy,
    /// Rotate a segment before it would exceed this size.
    pub segment_max_bytes: u64,
    /// Rotate a segment older than this.
    pub segment_max_age: Duration,
    /// Checkpoint after this many records.
    pub checkpoint_every_records: u64,
    /// Checkpoint (or heartbeat) at least this often.
    pub checkpoint_interval: Duration,
    /// Bounded queue between the request path and the writer.
    pub queue_capacity: usize,
}

/// Where `user_id` comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UserIdSource {
    /// No identity source: every record says `anonymous`.
    None,
    /// A header set by a trusted identity proxy in front of the gateway.
    Header(String),
    /// The subject of the client certificate (mutual TLS, `listen.client_auth`).
    ClientCert,
}

/// PostgreSQL sink settings.
#[derive(Debug, Clone, PartialEq)]
pub struct PostgresSettings {
    /// libpq-style connection string (`host=/run/postgresql dbname=audit user=gateway`).
    pub url: String,
    /// Most records per INSERT.
    pub batch_size: usize,
    /// Longest a record waits for its batch.
    pub batch_interval: Duration,
    /// Records buffered for PostgreSQL before the sink counts as failed.
    pub queue_capacity: usize,
    /// Backoff after a failed insert: starts here, doubles up to `retry_max_backoff`.
    pub retry_initial_backoff: Duration,
    /// Backoff ceiling.
    pub retry_max_backoff: Duration,
}

/// The validated `audit:` section.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditSettings {
    /// File sink (always on when the audit trail is enabled).
    pub file: FileSinkSettings,
    /// Ed25519 checkpoint signing key (outside `file.dir`).
    pub signing_key_file: PathBuf,
    /// HMAC key for fingerprints (outside `file.dir`).
    pub fingerprint_key_file: PathBuf,
    /// Identity source.
    pub user_id: UserIdSource,
    /// Optional PostgreSQL sink.
    pub postgres: Option<PostgresSettings>,
    /// How long a request waits for its record's durability ack (`fsync: every_record`).
    pub ack_timeout: Duration,
}

/// Whether `path` is (or would be) inside `dir`, after resolving symlinks where possible.
pub fn is_inside(path: &Path, dir: &Path) -> bool {
    let canon = |p: &Path| {
        std::fs::canonicalize(p).unwrap_or_else(|_| {
            // Not created yet: canonicalise the parent.
            match (p.parent(), p.file_name()) {
                (Some(parent), Some(name)) => std::fs::canonicalize(parent)
                    .map(|c| c.join(name))
                    .unwrap_or_else(|_| p.to_path_buf()),
                _ => p.to_path_buf(),
            }
        })
    };
    canon(path).starts_with(canon(dir))
}
