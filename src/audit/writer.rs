//! The file sink: a dedicated thread that appends records to JSON Lines segments, chains them,
//! rotates segments and writes signed checkpoints.
//!
//! The request path only ever pushes onto a bounded queue (`handoff`, woken once per batch);
//! it never touches the disk. The writer takes the queue in batches, chains and serialises the
//! batch's records into one buffer and appends it with one write. With `fsync: every_record`
//! the writer answers each record with a durability ack after the batch's one `fdatasync`
//! (group commit), which the proxy awaits (asynchronously) before it releases the response, so
//! a client never holds a response whose record is not on disk.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ring::signature::Ed25519KeyPair;

use super::chain::{
    checkpoint_name, line_hash, parse_checkpoint_name, parse_segment_name, segment_name,
    signed_message, CheckpointBody, CheckpointReason, CheckpointSignature, TornTail,
    CHECKPOINT_FORMAT, GENESIS,
};
use super::handoff::{Handoff, Taken};
use super::record::{hex, AuditRecord};
use super::{AuditError, FileSinkSettings, FsyncPolicy, Msg, SinkStatus};
use crate::telemetry::Metrics;

struct OpenSegment {
    name: String,
    file: File,
    bytes: u64,
    opened: Instant,
}

/// Where the chain stands.
#[derive(Clone)]
struct ChainState {
    /// Last seq written (0 before the first record ever).
    seq: u64,
    /// Hash of the last line written (or [`GENESIS`]).
    last_hash: String,
    /// Name and first seq of the segment the last record went to.
    segment: Option<(String, u64)>,
    /// That segment will receive no more records.
    segment_closed: bool,
}

pub(super) struct FileWriter {
    dir: PathBuf,
    settings: FileSinkSettings,
    key: Ed25519KeyPair,
    key_id: String,
    instance_id: String,
    chain: ChainState,
    open: Option<OpenSegment>,
    ckpt_n: u64,
    prev_sig: Option<String>,
    prev_ckpt: Option<String>,
    last_ckpt_end: String,
    last_ckpt_at: Instant,
    since_ckpt: u64,
    dirty: bool,
    last_sync: Instant,
    status: Arc<SinkStatus>,
    metrics: Metrics,
    /// Records go on to the PostgreSQL sink after the file has them.
    forward: Option<super::postgres::Forwarder>,
    /// Exclusive lock on `DIR/.lock` for the writer's lifetime: two processes appending to
    /// one chain would fork it.
    _lock: File,
    /// An fdatasync failed during the current group: none of its records is acknowledged.
    sync_failed: bool,
    /// Lines chained and serialised but not yet written (see [`Pending`]).
    pending: Pending,
}

/// Records of the current batch that are chained and serialised into `buf` but not yet
/// appended: one write per batch instead of one per record. Flushed before anything that
/// needs them on disk (rotation, a checkpoint) and at the end of the batch; if the write
/// fails, the chain goes back to where it stood before them and none of them is acknowledged.
#[derive(Default)]
struct Pending {
    buf: Vec<u8>,
    /// Batch positions of the records in `buf`, with the records (for the PostgreSQL sink).
    records: Vec<(usize, AuditRecord)>,
    /// The chain and `since_ckpt` before the first of them.
    before: Option<(ChainState, u64)>,
}

type Ack = tokio::sync::oneshot::Sender<bool>;

pub(crate) fn now_rfc3339() -> String {
    use time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> AuditError + '_ {
    move |source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn sync_dir(dir: &Path) -> Result<(), AuditError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Creates the audit directory (0700) if needed.
pub(super) fn ensure_dir(dir: &Path) -> Result<(), AuditError> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err(dir))
}

/// Sorted `(first_seq, name)` of the segments in `dir`.
pub(super) fn list_segments(dir: &Path) -> Result<Vec<(u64, String)>, AuditError> {
    list(dir, parse_segment_name)
}

/// Sorted `(n, name)` of the checkpoints in `dir`.
pub(super) fn list_checkpoints(dir: &Path) -> Result<Vec<(u64, String)>, AuditError> {
    list(dir, parse_checkpoint_name)
}

fn list(dir: &Path, parse: fn(&str) -> Option<u64>) -> Result<Vec<(u64, String)>, AuditError> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let e = e.map_err(io_err(dir))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(n) = parse(&name) {
            out.push((n, name));
        }
    }
    out.sort();
    Ok(out)
}

/// Reads a checkpoint file: (body, body line bytes, signature).
pub(super) fn read_checkpoint(
    path: &Path,
) -> Result<(CheckpointBody, Vec<u8>, CheckpointSignature), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    let mut lines = bytes.split(|&b| b == b'\n');
    let body_line = lines.next().unwrap_or_default().to_vec();
    let sig_line = lines.next().unwrap_or_default();
    let body: CheckpointBody =
        serde_json::from_slice(&body_line).map_err(|e| format!("invalid body: {e}"))?;
    let sig: CheckpointSignature =
        serde_json::from_slice(sig_line).map_err(|e| format!("invalid signature line: {e}"))?;
    Ok((body, body_line, sig))
}

/// The last complete line of a segment and the bytes after it.
struct SegmentTail {
    last: Option<(u64, String)>,
    torn_bytes: u64,
}

fn segment_tail(path: &Path) -> Result<SegmentTail, AuditError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(io_err(path))?;
    let complete_end = bytes.iter().rposition(|&b| b == b'\n').map(|i| i + 1);
    let torn_bytes = (bytes.len() - complete_end.unwrap_or(0)) as u64;
    let last = complete_end.and_then(|end| {
        let body = &bytes[..end - 1];
        let start = body.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let line = &body[start..];
        let seq = serde_json::from_slice::<serde_json::Value>(line)
            .ok()?
            .get("seq")?
            .as_u64()?;
        Some((seq, line_hash(line)))
    });
    Ok(SegmentTail { last, torn_bytes })
}

impl FileWriter {
    /// Opens the directory, resumes the chain an earlier run left and writes a startup
    /// checkpoint (which also acknowledges a crash-torn tail, if any).
    pub(super) fn open(
        settings: FileSinkSettings,
        key: Ed25519KeyPair,
        key_id: String,
        status: Arc<SinkStatus>,
        metrics: Metrics,
        forward: Option<super::postgres::Forwarder>,
    ) -> Result<Self, AuditError> {
        let dir = settings.dir.clone();
        ensure_dir(&dir)?;
        let lock = {
            use std::os::unix::fs::OpenOptionsExt as _;
            let path = dir.join(".lock");
            let f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&path)
                .map_err(io_err(&path))?;
            match f.try_lock() {
                Ok(()) => f,
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(AuditError::Resume(format!(
                        "another process is writing {} (it holds {}); give each gateway its own audit directory",
                        dir.display(),
                        path.display()
                    )))
                }
                Err(std::fs::TryLockError::Error(source)) => {
                    return Err(AuditError::Io { path, source })
                }
            }
        };
        let segments = list_segments(&dir)?;
        let mut chain = ChainState {
            seq: 0,
            last_hash: GENESIS.to_string(),
            segment: None,
            segment_closed: true,
        };
        let mut torn = None;
        for (i, (first, name)) in segments.iter().enumerate().rev() {
            let path = dir.join(name);
            let tail = segment_tail(&path)?;
            if i + 1 == segments.len() && tail.torn_bytes > 0 {
                torn = Some(TornTail {
                    segment: name.clone(),
                    bytes: tail.torn_bytes,
                });
                if tail.last.is_none() {
                    // A segment holding nothing but a torn first record has the very name the
                    // next record's segment needs. Those bytes never became a record (no ack
                    // was given for them); cut them, which the signed startup checkpoint
                    // records as `torn_tail`.
                    std::fs::OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .and_then(|f| f.set_len(0).and_then(|()| f.sync_all()))
                        .map_err(io_err(&path))?;
                    tracing::warn!(segment = %name, bytes = tail.torn_bytes, "discarded a torn record left by a crash");
                }
            }
            if let Some((seq, hash)) = tail.last {
                chain.seq = seq;
                chain.last_hash = hash;
                chain.segment = Some((name.clone(), *first));
                break;
            }
        }
        let (mut ckpt_n, mut prev_sig, mut prev_ckpt) = (0, None, None);
        if let Some((n, name)) = list_checkpoints(&dir)?.pop() {
            let (body, _, sig) = read_checkpoint(&dir.join(&name)).map_err(|m| {
                AuditError::Resume(format!(
                    "checkpoint {} is unreadable ({m}); run `phi-gateway audit verify` and move it aside only after review",
                    dir.join(&name).display()
                ))
            })?;
            if body.key_id != key_id {
                tracing::warn!(previous = %body.key_id, current = %key_id, "audit signing key changed; verification needs both public keys");
            }
            ckpt_n = n;
            prev_sig = Some(sig.signature);
            prev_ckpt = Some(name);
        }
        let now = now_rfc3339();
        let mut w = FileWriter {
            dir,
            settings,
            key,
            key_id,
            instance_id: uuid::Uuid::new_v4().to_string(),
            chain,
            open: None,
            ckpt_n,
            prev_sig,
            prev_ckpt,
            last_ckpt_end: now,
            last_ckpt_at: Instant::now(),
            since_ckpt: 0,
            dirty: false,
            last_sync: Instant::now(),
            status,
            metrics,
            forward,
            _lock: lock,
            sync_failed: false,
            pending: Pending::default(),
        };
        w.checkpoint(CheckpointReason::Startup, torn)?;
        Ok(w)
    }

    /// The writer loop: runs until a shutdown message or until every sender is gone.
    pub(super) fn run(mut self, queue: Arc<Handoff>) {
        // However the loop ends (even by a panic), later records are refused, not queued for
        // nobody.
        struct Gone(Arc<Handoff>);
        impl Drop for Gone {
            fn drop(&mut self) {
                self.0.writer_gone();
            }
        }
        let _gone = Gone(queue.clone());
        let batched = matches!(self.settings.fsync, FsyncPolicy::Batched(_));
        let mut msgs: Vec<Msg> = Vec::new();
        let mut batch: Vec<(Box<AuditRecord>, Option<Ack>)> = Vec::new();
        let mut linger = false;
        loop {
            let mut timeout = self.next_deadline();
            if linger {
                timeout = timeout.min(queue.linger());
            }
            let (taken, records) = queue.take(&mut msgs, timeout, linger);
            match taken {
                Taken::Timeout => {
                    linger = false;
                    self.tick();
                    continue;
                }
                Taken::Disconnected => {
                    self.close(CheckpointReason::Shutdown);
                    if let Some(f) = self.forward.take() {
                        f.shutdown();
                    }
                    return;
                }
                Taken::Messages => {}
            }
            // Traffic is flowing: with `fsync: batched` nobody waits for these records, so the
            // next ones may accumulate for a moment before the writer takes them.
            linger = batched && records > 0;
            for msg in msgs.drain(..) {
                if let Msg::Record(record, ack) = msg {
                    batch.push((record, ack));
                    continue;
                }
                // Everything queued before a control message is written first.
                if !batch.is_empty() {
                    self.write_batch(&mut batch);
                }
                match msg {
                    Msg::Record(..) => {}
                    Msg::Shutdown(done) => {
                        self.close(CheckpointReason::Shutdown);
                        if let Some(f) = self.forward.take() {
                            f.shutdown();
                        }
                        let _ = done.send(());
                        return;
                    }
                    #[cfg(test)]
                    Msg::Abort => return,
                    #[cfg(test)]
                    Msg::Stall(until) => {
                        let _ = until.recv();
                    }
                }
            }
            if !batch.is_empty() {
                self.write_batch(&mut batch);
            }
            // Under steady load the wait above may never time out: keep the periodic work
            // (batched fsync, checkpoints, age rotation) on schedule anyway.
            self.tick();
        }
    }

    /// Writes a group of records (at most the queue's capacity): chained and serialised into
    /// one buffer, appended with one write (more only around a rotation or checkpoint), one
    /// fdatasync with `fsync: every_record`, then every ack.
    fn write_batch(&mut self, batch: &mut Vec<(Box<AuditRecord>, Option<Ack>)>) {
        self.status
            .queue_depth
            .fetch_sub(batch.len(), Ordering::Relaxed);
        self.metrics
            .audit_queue_depth
            .set(self.status.queue_depth.load(Ordering::Relaxed) as i64);
        self.sync_failed = false;
        let mut ok = vec![false; batch.len()];
        let mut acks = Vec::with_capacity(batch.len());
        for (i, (record, ack)) in batch.drain(..).enumerate() {
            self.write_record(i, *record, &mut ok);
            acks.push(ack);
        }
        self.flush(&mut ok);
        if self.settings.fsync == FsyncPolicy::EveryRecord && self.dirty {
            self.sync();
        }
        let durable = !self.sync_failed;
        for (ok, ack) in ok.into_iter().zip(acks) {
            if let Some(ack) = ack {
                let _ = ack.send(ok && durable);
            }
        }
    }

    fn next_deadline(&self) -> Duration {
        let mut d = self
            .settings
            .checkpoint_interval
            .saturating_sub(self.last_ckpt_at.elapsed());
        if let (true, FsyncPolicy::Batched(every)) = (self.dirty, self.settings.fsync) {
            d = d.min(every.saturating_sub(self.last_sync.elapsed()));
        }
        d.max(Duration::from_millis(1))
    }

    /// Periodic work: batched fsync, age rotation, interval checkpoints and heartbeats.
    fn tick(&mut self) {
        if let FsyncPolicy::Batched(every) = self.settings.fsync {
            if self.dirty && self.last_sync.elapsed() >= every {
                self.sync();
            }
        }
        if self.last_ckpt_at.elapsed() >= self.settings.checkpoint_interval {
            let aged = self
                .open
                .as_ref()
                .is_some_and(|s| s.opened.elapsed() >= self.settings.segment_max_age);
            let result = if aged {
                self.rotate()
            } else if self.since_ckpt > 0 {
                self.checkpoint(CheckpointReason::Interval, None)
            } else {
                self.checkpoint(CheckpointReason::Heartbeat, None)
            };
            if let Err(e) = result {
                self.fail("checkpoint", &e);
                // Try again after another interval rather than spinning.
                self.last_ckpt_at = Instant::now();
            }
        }
    }

    fn fail(&self, kind: &str, e: &AuditError) {
        self.fail_n(kind, e, 1);
    }

    /// A failure that cost `records` records (a failed write of a batch costs all of them).
    fn fail_n(&self, kind: &str, e: &AuditError, records: u64) {
        tracing::error!(sink = "file", kind, error = %e, "audit write failed");
        self.metrics
            .audit_write_errors
            .with_label_values(&["file", kind])
            .inc_by(records);
        self.status.set_file_error(Some(format!("{kind}: {e}")));
    }

    fn sync(&mut self) {
        if let Some(seg) = &self.open {
            match seg.file.sync_data() {
                Ok(()) => {
                    self.dirty = false;
                    self.last_sync = Instant::now();
                }
                Err(source) => {
                    let e = AuditError::Io {
                        path: self.dir.join(&seg.name),
                        source,
                    };
                    self.sync_failed = true;
                    self.fail("fsync", &e);
                }
            }
        }
    }

    /// Chains and serialises one record of the batch (position `i`) into the pending buffer.
    /// `ok[i]` turns true once its line is written.
    fn write_record(&mut self, i: usize, mut record: AuditRecord, ok: &mut [bool]) {
        match self.try_write(&mut record, ok) {
            Ok(()) => {
                self.pending.records.push((i, record));
                if self.since_ckpt >= self.settings.checkpoint_every_records {
                    // A checkpoint vouches only for records on disk: write them first.
                    if self.flush(ok) {
                        if let Err(e) = self.checkpoint(CheckpointReason::Records, None) {
                            self.fail("checkpoint", &e);
                        }
                    }
                }
            }
            Err(e) => self.fail("write", &e),
        }
    }

    fn try_write(&mut self, record: &mut AuditRecord, ok: &mut [bool]) -> Result<(), AuditError> {
        record.seq = self.chain.seq + 1;
        record.prev_hash = self.chain.last_hash.clone();
        let line = serde_json::to_vec(&*record).map_err(|e| AuditError::Encode(e.to_string()))?;
        let pending = self.pending.buf.len() as u64;
        let needs_rotation = self.open.as_ref().is_some_and(|s| {
            let used = s.bytes + pending;
            (used > 0 && used + line.len() as u64 + 1 > self.settings.segment_max_bytes)
                || s.opened.elapsed() >= self.settings.segment_max_age
        });
        if needs_rotation {
            // The lines before this one belong to the segment being closed.
            if !self.flush(ok) {
                return Err(AuditError::Resume(
                    "the batch before could not be written".into(),
                ));
            }
            self.rotate()?;
        }
        if self.open.is_none() {
            self.open_segment(record.seq)?;
        }
        let Some(seg) = self.open.as_ref() else {
            return Err(AuditError::Resume("no open segment".into()));
        };
        if self.pending.before.is_none() {
            self.pending.before = Some((self.chain.clone(), self.since_ckpt));
        }
        self.pending.buf.extend_from_slice(&line);
        self.pending.buf.push(b'\n');
        self.chain.seq = record.seq;
        self.chain.last_hash = line_hash(&line);
        if self
            .chain
            .segment
            .as_ref()
            .is_none_or(|(name, _)| *name != seg.name)
        {
            self.chain.segment = Some((seg.name.clone(), segment_first(&seg.name)));
        }
        self.chain.segment_closed = false;
        self.since_ckpt += 1;
        Ok(())
    }

    /// Appends the pending lines with one write. On failure the partial write is cut off
    /// again (so the chain stays parseable), the chain goes back to where it stood before
    /// them, and none of them counts as written. Returns whether the write succeeded.
    fn flush(&mut self, ok: &mut [bool]) -> bool {
        let Some((before, since_before)) = self.pending.before.take() else {
            return true;
        };
        let buf = std::mem::take(&mut self.pending.buf);
        let records = std::mem::take(&mut self.pending.records);
        let result = match self.open.as_mut() {
            Some(seg) => match seg.file.write_all(&buf) {
                Ok(()) => {
                    seg.bytes += buf.len() as u64;
                    Ok(())
                }
                Err(source) => {
                    let _ = seg.file.set_len(seg.bytes);
                    Err(AuditError::Io {
                        path: self.dir.join(&seg.name),
                        source,
                    })
                }
            },
            None => Err(AuditError::Resume("no open segment".into())),
        };
        // Keep the buffer's allocation for the next batch.
        self.pending.buf = buf;
        self.pending.buf.clear();
        match result {
            Ok(()) => {
                // fdatasync happens once per group (`write_batch`) or per interval (`tick`).
                self.dirty = true;
                self.status.set_file_error(None);
                self.metrics
                    .audit_records
                    .with_label_values(&["file"])
                    .inc_by(records.len() as u64);
                for (i, record) in &records {
                    if let Some(ok) = ok.get_mut(*i) {
                        *ok = true;
                    }
                    if let Some(f) = &self.forward {
                        f.send(record);
                    }
                }
                true
            }
            Err(e) => {
                self.chain = before;
                self.since_ckpt = since_before;
                self.fail_n("write", &e, records.len() as u64);
                false
            }
        }
    }

    fn open_segment(&mut self, first_seq: u64) -> Result<(), AuditError> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let name = segment_name(first_seq);
        let path = self.dir.join(&name);
        let file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_err(&path))?;
        // A failed earlier attempt may have left the file: start from its real length.
        let bytes = file.metadata().map_err(io_err(&path))?.len();
        sync_dir(&self.dir)?;
        self.open = Some(OpenSegment {
            name,
            file,
            bytes,
            opened: Instant::now(),
        });
        Ok(())
    }

    /// Closes the open segment with a rotation checkpoint.
    fn rotate(&mut self) -> Result<(), AuditError> {
        self.sync();
        self.chain.segment_closed = true;
        let r = self.checkpoint(CheckpointReason::Rotation, None);
        self.open = None;
        r
    }

    fn close(&mut self, reason: CheckpointReason) {
        self.sync();
        self.chain.segment_closed = true;
        if let Err(e) = self.checkpoint(reason, None) {
            self.fail("checkpoint", &e);
        }
        self.open = None;
    }

    fn checkpoint(
        &mut self,
        reason: CheckpointReason,
        torn_tail: Option<TornTail>,
    ) -> Result<(), AuditError> {
        use std::os::unix::fs::OpenOptionsExt as _;
        // Every caller writes the pending lines first; a checkpoint must not vouch for lines
        // that are not in the file.
        debug_assert!(self.pending.before.is_none());
        // Records a checkpoint vouches for must be on disk before it is.
        if self.dirty {
            self.sync();
        }
        let end_time = now_rfc3339();
        let n = self.ckpt_n + 1;
        let body = CheckpointBody {
            format: CHECKPOINT_FORMAT.to_string(),
            checkpoint_seq: n,
            instance_id: self.instance_id.clone(),
            key_id: self.key_id.clone(),
            reason,
            segment: self.chain.segment.as_ref().map(|s| s.0.clone()),
            segment_first_seq: self.chain.segment.as_ref().map(|s| s.1),
            last_seq: self.chain.segment.as_ref().map(|_| self.chain.seq),
            last_record_hash: self
                .chain
                .segment
                .as_ref()
                .map(|_| self.chain.last_hash.clone()),
            new_records: self.since_ckpt,
            segment_closed: self.chain.segment_closed,
            start_time: self.last_ckpt_end.clone(),
            end_time: end_time.clone(),
            interval_seconds: self.settings.checkpoint_interval.as_secs().max(1),
            torn_tail,
            prev_checkpoint: self.prev_ckpt.clone(),
            prev_checkpoint_signature: self.prev_sig.clone(),
        };
        let body_line = serde_json::to_vec(&body).map_err(|e| AuditError::Encode(e.to_string()))?;
        let signature = hex(self.key.sign(&signed_message(&body, &body_line)).as_ref());
        let sig_line = serde_json::to_vec(&CheckpointSignature {
            algorithm: "Ed25519".into(),
            key_id: self.key_id.clone(),
            signature: signature.clone(),
        })
        .map_err(|e| AuditError::Encode(e.to_string()))?;
        let name = checkpoint_name(n);
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let dest = self.dir.join(&name);
        let mut content = body_line;
        content.push(b'\n');
        content.extend_from_slice(&sig_line);
        content.push(b'\n');
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&content)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &dest)
        };
        write().map_err(io_err(&dest))?;
        sync_dir(&self.dir)?;
        self.ckpt_n = n;
        self.prev_sig = Some(signature);
        self.prev_ckpt = Some(name);
        self.last_ckpt_end = end_time;
        self.last_ckpt_at = Instant::now();
        self.since_ckpt = 0;
        self.status.set_file_error(None);
        self.metrics.audit_checkpoints.inc();
        self.metrics.audit_last_checkpoint.set(now_unix());
        Ok(())
    }
}

fn segment_first(name: &str) -> u64 {
    parse_segment_name(name).unwrap_or(0)
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
