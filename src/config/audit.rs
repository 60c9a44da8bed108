//! The validated `audit:` section: what the audit trail is told to do. The trail itself
//! (`crate::audit`) consumes these settings; keeping them here lets the configuration be
//! validated without the trail's machinery.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::raw::{RawAudit, RawFsync, RawUserIdSource};
use super::validate::{bounded, check_header_name, Located};
use crate::engine::source::{SourceError, Spanned};

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
    /// Only the verified bearer token's user claim (`access.issuers[].user_claim`); requests
    /// without a verified token say `anonymous`. Whatever the source, a verified token's user
    /// claim is what `user_id` holds.
    Jwt,
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

/// Validates the `audit:` section (present and enabled); `mutual_tls` says whether
/// `listen.client_auth` is configured (needed for `user_id.source: client_cert`).
pub(super) fn validate_audit(
    file: &Path,
    resolve: &dyn Fn(&Path) -> PathBuf,
    a: &RawAudit,
    mutual_tls: bool,
    issuers: bool,
) -> Result<AuditSettings, SourceError> {
    let err = |s: &dyn Located, field: &str, msg: String| s.error(file, field, msg);
    let num = |v: &Option<Spanned<u64>>, default: u64, min: u64, max: u64, f: &str| {
        bounded(v.as_ref(), default, min, max).map_err(|(s, m)| err(s, &format!("audit.{f}"), m))
    };
    let dir = resolve(&a.dir.value);
    let fsync = match a.fsync.as_ref().map(|f| f.value) {
        None | Some(RawFsync::EveryRecord) => {
            if let Some(ms) = &a.fsync_interval_ms {
                return Err(err(
                    ms,
                    "audit.fsync_interval_ms",
                    "only applies with `fsync: batched`".into(),
                ));
            }
            FsyncPolicy::EveryRecord
        }
        Some(RawFsync::Batched) => FsyncPolicy::Batched(Duration::from_millis(num(
            &a.fsync_interval_ms,
            50,
            1,
            60_000,
            "fsync_interval_ms",
        )?)),
    };
    let user_id = match &a.user_id {
        None => UserIdSource::None,
        Some(u) => match u.source.value {
            RawUserIdSource::None => UserIdSource::None,
            RawUserIdSource::Header => {
                let Some(h) = &u.header else {
                    return Err(err(
                        &u.source,
                        "audit.user_id.header",
                        "`source: header` needs `header:` naming the header your identity proxy sets".into(),
                    ));
                };
                check_header_name(&h.value).map_err(|m| err(h, "audit.user_id.header", m))?;
                UserIdSource::Header(h.value.to_ascii_lowercase())
            }
            RawUserIdSource::ClientCert if !mutual_tls => {
                return Err(err(
                    &u.source,
                    "audit.user_id.source",
                    "`client_cert` needs mutual TLS: add `listen.client_auth.ca_file`".into(),
                ))
            }
            RawUserIdSource::ClientCert => UserIdSource::ClientCert,
            RawUserIdSource::Jwt if !issuers => {
                return Err(err(
                    &u.source,
                    "audit.user_id.source",
                    "`jwt` needs at least one issuer in `access.issuers`".into(),
                ))
            }
            RawUserIdSource::Jwt => UserIdSource::Jwt,
        },
    };
    let postgres = match &a.postgres {
        None => None,
        Some(p) => {
            if p.url.value.trim().is_empty() {
                return Err(err(
                    &p.url,
                    "audit.postgres.url",
                    "must not be empty".into(),
                ));
            }
            let pnum = |v: &Option<Spanned<u64>>, default, min, max, f: &str| {
                bounded(v.as_ref(), default, min, max)
                    .map_err(|(s, m)| err(s, &format!("audit.postgres.{f}"), m))
            };
            let initial = pnum(
                &p.retry_initial_backoff_ms,
                100,
                1,
                60_000,
                "retry_initial_backoff_ms",
            )?;
            let max = pnum(
                &p.retry_max_backoff_ms,
                10_000,
                1,
                600_000,
                "retry_max_backoff_ms",
            )?;
            if max < initial {
                if let Some(s) = &p.retry_max_backoff_ms {
                    return Err(err(
                        s,
                        "audit.postgres.retry_max_backoff_ms",
                        "must not be below retry_initial_backoff_ms".into(),
                    ));
                }
            }
            Some(PostgresSettings {
                url: p.url.value.clone(),
                batch_size: pnum(&p.batch_size, 100, 1, 10_000, "batch_size")? as usize,
                batch_interval: Duration::from_millis(pnum(
                    &p.batch_interval_ms,
                    200,
                    1,
                    60_000,
                    "batch_interval_ms",
                )?),
                queue_capacity: pnum(&p.queue_capacity, 10_000, 1, 1_000_000, "queue_capacity")?
                    as usize,
                retry_initial_backoff: Duration::from_millis(initial),
                retry_max_backoff: Duration::from_millis(max.max(initial)),
            })
        }
    };
    for (key, field) in [
        (&a.signing_key_file, "audit.signing_key_file"),
        (&a.fingerprint_key_file, "audit.fingerprint_key_file"),
    ] {
        if is_inside(&resolve(&key.value), &dir) {
            return Err(err(
                key,
                field,
                format!(
                    "is inside the audit directory {}; keep keys apart from the logs they protect",
                    dir.display()
                ),
            ));
        }
    }
    Ok(AuditSettings {
        file: FileSinkSettings {
            dir,
            fsync,
            segment_max_bytes: num(
                &a.segment_max_bytes,
                64 * 1024 * 1024,
                1024,
                1 << 40,
                "segment_max_bytes",
            )?,
            segment_max_age: Duration::from_secs(num(
                &a.segment_max_age_seconds,
                86_400,
                1,
                31 * 86_400,
                "segment_max_age_seconds",
            )?),
            checkpoint_every_records: num(
                &a.checkpoint_every_records,
                1000,
                1,
                10_000_000,
                "checkpoint_every_records",
            )?,
            checkpoint_interval: Duration::from_secs(num(
                &a.checkpoint_interval_seconds,
                60,
                1,
                86_400,
                "checkpoint_interval_seconds",
            )?),
            queue_capacity: num(&a.queue_capacity, 4096, 1, 1_000_000, "queue_capacity")? as usize,
        },
        signing_key_file: resolve(&a.signing_key_file.value),
        fingerprint_key_file: resolve(&a.fingerprint_key_file.value),
        user_id,
        postgres,
        ack_timeout: Duration::from_millis(num(
            &a.ack_timeout_ms,
            5_000,
            1,
            600_000,
            "ack_timeout_ms",
        )?),
    })
}
