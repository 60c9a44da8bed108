//! The writer and the verifier together: a clean trail verifies; each kind of tampering is
//! caught and named.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::verify::{verify, Report, Window};
use super::*;

struct Trail {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    public: Vec<u8>,
    settings: AuditSettings,
}

fn settings(root: &Path, segment_max_bytes: u64) -> AuditSettings {
    AuditSettings {
        file: FileSinkSettings {
            dir: root.join("audit"),
            fsync: FsyncPolicy::EveryRecord,
            segment_max_bytes,
            segment_max_age: Duration::from_secs(3600),
            checkpoint_every_records: 4,
            checkpoint_interval: Duration::from_secs(60),
            queue_capacity: 64,
        },
        signing_key_file: root.join("keys/audit-signing.key"),
        fingerprint_key_file: root.join("keys/audit-fingerprint.key"),
        user_id: UserIdSource::None,
        postgres: None,
        ack_timeout: Duration::from_secs(5),
    }
}

fn sample(i: u64) -> AuditRecord {
    AuditRecord {
        log_id: uuid::Uuid::new_v4().to_string(),
        user_id: "anonymous".into(),
        action_type: "read".into(),
        resource_id: Some(format!("Patient/p{i}")),
        timestamp: writer::now_rfc3339(),
        ip_address: Some("127.0.0.1".into()),
        user_agent: None,
        request_id: format!("req-{i}"),
        audit_header: Some("ticket".into()),
        route: "fhir".into(),
        method: "GET".into(),
        fhir_interaction: Some("read".into()),
        decision: "allow".into(),
        reason: None,
        mode: Some("enforce".into()),
        rule_ids: vec![],
        field_paths: vec![],
        status: 200,
        bytes_in: 0,
        bytes_out: Some(2),
        tls_version: Some("TLSv1_3".into()),
        config_version: "abc".into(),
        body_hmac: None,
        access: None,
        incident: None,
        response_leak: None,
        seq: 0,
        prev_hash: String::new(),
    }
}

/// Writes `n` records (segments of ~3 records), with a clean shutdown.
fn trail(n: u64) -> Trail {
    let tmp = tempfile::tempdir().unwrap();
    let keys = keys::generate(&tmp.path().join("keys"), &tmp.path().join("pub.pem")).unwrap();
    let public = keys::load_public_key(&keys.public_key).unwrap();
    let settings = settings(tmp.path(), 2000);
    run(&settings, n);
    Trail {
        dir: tmp.path().join("audit"),
        _tmp: tmp,
        public,
        settings,
    }
}

fn run(settings: &AuditSettings, n: u64) {
    let metrics = crate::telemetry::Metrics::new().unwrap();
    let log = AuditLog::start(Prepared::load(settings.clone()).unwrap(), metrics).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for i in 0..n {
        assert!(rt.block_on(log.record(sample(i))));
    }
    log.shutdown();
}

impl Trail {
    fn verify(&self) -> Report {
        verify(&self.dir, &self.public, &Window::default()).unwrap()
    }

    fn segments(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().ends_with(".jsonl"))
            .collect();
        v.sort();
        v
    }

    fn lines(&self, seg: &Path) -> Vec<String> {
        std::fs::read_to_string(seg)
            .unwrap()
            .lines()
            .map(String::from)
            .collect()
    }

    fn write_lines(&self, seg: &Path, lines: &[String]) {
        let mut s = lines.join("\n");
        if !s.is_empty() {
            s.push('\n');
        }
        std::fs::write(seg, s).unwrap();
    }
}

fn classes(r: &Report) -> Vec<&'static str> {
    r.issues
        .iter()
        .filter(|i| i.severity == verify::Severity::Error)
        .map(|i| i.class)
        .collect()
}

#[test]
fn clean_trail_verifies_and_files_are_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let t = trail(10);
    let r = t.verify();
    assert!(r.valid, "{}", r.render());
    assert_eq!(r.records, 10);
    assert_eq!(r.seq_range, Some((1, 10)));
    assert!(r.segments >= 3, "{}", r.render());
    for e in std::fs::read_dir(&t.dir).unwrap() {
        let p = e.unwrap().path();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", p.display());
    }
    // Records chain across segments: the second segment's first record links to the first's
    // last line.
    let segs = t.segments();
    let last_of_first = t.lines(&segs[0]).last().unwrap().clone();
    let first_of_second: AuditRecord = serde_json::from_str(&t.lines(&segs[1])[0]).unwrap();
    assert_eq!(
        first_of_second.prev_hash,
        chain::line_hash(last_of_first.as_bytes())
    );
}

#[test]
fn restart_continues_the_chain() {
    let t = trail(5);
    run(&t.settings, 3);
    let r = t.verify();
    assert!(r.valid, "{}", r.render());
    assert_eq!(r.seq_range, Some((1, 8)));
}

#[test]
fn edited_byte_is_a_hash_mismatch() {
    let t = trail(10);
    let seg = &t.segments()[1];
    let mut lines = t.lines(seg);
    let edited: AuditRecord = serde_json::from_str(&lines[0]).unwrap();
    lines[0] = lines[0].replace("\"status\":200", "\"status\":201");
    t.write_lines(seg, &lines);
    let r = t.verify();
    assert!(!r.valid);
    let i = r
        .issues
        .iter()
        .find(|i| i.class == "hash_mismatch")
        .unwrap();
    assert_eq!(i.seq, Some(edited.seq), "{}", r.render());
    assert!(r
        .render()
        .contains(&format!("hash mismatch at seq {}", edited.seq)));
}

#[test]
fn deleted_record_is_a_hash_mismatch_at_its_seq() {
    let t = trail(10);
    let seg = &t.segments()[0];
    let mut lines = t.lines(seg);
    lines.remove(1);
    t.write_lines(seg, &lines);
    let r = t.verify();
    assert!(!r.valid);
    let i = r
        .issues
        .iter()
        .find(|i| i.class == "hash_mismatch")
        .unwrap();
    assert_eq!(i.seq, Some(2), "{}", r.render());
}

#[test]
fn reordered_pair_is_caught() {
    let t = trail(10);
    let seg = &t.segments()[0];
    let mut lines = t.lines(seg);
    lines.swap(0, 1);
    t.write_lines(seg, &lines);
    let r = t.verify();
    assert!(!r.valid);
    assert!(classes(&r).contains(&"hash_mismatch"), "{}", r.render());
}

#[test]
fn removed_segment_is_a_missing_segment() {
    let t = trail(10);
    std::fs::remove_file(&t.segments()[1]).unwrap();
    let r = t.verify();
    assert!(!r.valid);
    assert!(classes(&r).contains(&"missing_segment"), "{}", r.render());
}

#[test]
fn truncated_tail_is_caught() {
    let t = trail(10);
    let segs = t.segments();
    let seg = segs.last().unwrap();
    let mut lines = t.lines(seg);
    lines.pop();
    t.write_lines(seg, &lines);
    let r = t.verify();
    assert!(!r.valid);
    assert!(classes(&r).contains(&"truncated_tail"), "{}", r.render());
}

#[test]
fn forged_checkpoint_is_an_invalid_signature() {
    let t = trail(10);
    let ck = t.dir.join(chain::checkpoint_name(2));
    let text = std::fs::read_to_string(&ck).unwrap();
    let forged = text.replacen("\"new_records\":", "\"new_records\":1", 1);
    assert_ne!(text, forged);
    std::fs::write(&ck, forged).unwrap();
    let r = t.verify();
    assert!(!r.valid);
    assert!(classes(&r).contains(&"invalid_signature"), "{}", r.render());

    // A checkpoint signed with another key is no better.
    let other = tempfile::tempdir().unwrap();
    let k = keys::generate(other.path(), &other.path().join("p.pem")).unwrap();
    let t2 = trail(3);
    let r = verify(
        &t2.dir,
        &keys::load_public_key(&k.public_key).unwrap(),
        &Window::default(),
    )
    .unwrap();
    assert!(!r.valid);
    assert!(classes(&r).contains(&"invalid_signature"), "{}", r.render());
}

#[test]
fn deleted_checkpoint_breaks_the_chain() {
    let t = trail(10);
    std::fs::remove_file(t.dir.join(chain::checkpoint_name(2))).unwrap();
    let r = t.verify();
    assert!(!r.valid);
    assert!(classes(&r).contains(&"checkpoint_chain"), "{}", r.render());
}

#[test]
fn crash_tail_is_reported_but_not_invalid() {
    // Simulate SIGKILL: records written, no final checkpoint, then a torn line.
    let tmp = tempfile::tempdir().unwrap();
    let keys = keys::generate(&tmp.path().join("keys"), &tmp.path().join("pub.pem")).unwrap();
    let public = keys::load_public_key(&keys.public_key).unwrap();
    let settings = settings(tmp.path(), 1 << 20);
    let log = AuditLog::start(
        Prepared::load(settings.clone()).unwrap(),
        crate::telemetry::Metrics::new().unwrap(),
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for i in 0..10 {
        assert!(rt.block_on(log.record(sample(i))));
    }
    // The writer dies without its shutdown checkpoint.
    log.abort();
    let t = Trail {
        dir: tmp.path().join("audit"),
        _tmp: tmp,
        public,
        settings,
    };
    let segs = t.segments();
    let seg = segs.last().unwrap();
    let mut text = std::fs::read_to_string(seg).unwrap();
    text.push_str("{\"log_id\":\"torn");
    std::fs::write(seg, text).unwrap();
    let r = t.verify();
    assert!(r.valid, "{}", r.render());
    let warned: Vec<_> = r.issues.iter().map(|i| i.class).collect();
    assert!(
        warned.contains(&"unsigned_tail") && warned.contains(&"torn_tail"),
        "{}",
        r.render()
    );

    // The next start acknowledges the torn line in a signed checkpoint and continues.
    run(&t.settings, 2);
    let r = t.verify();
    assert!(r.valid, "{}", r.render());
    assert!(r.render().contains("acknowledged"), "{}", r.render());
    assert_eq!(r.seq_range, Some((1, 12)));
}

#[test]
fn heartbeats_are_written_without_traffic() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = keys::generate(&tmp.path().join("keys"), &tmp.path().join("pub.pem")).unwrap();
    let mut s = settings(tmp.path(), 1 << 20);
    s.file.checkpoint_interval = Duration::from_millis(200);
    let log = AuditLog::start(
        Prepared::load(s.clone()).unwrap(),
        crate::telemetry::Metrics::new().unwrap(),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(900));
    log.shutdown();
    let n = writer::list_checkpoints(&s.file.dir).unwrap().len();
    assert!(n >= 4, "startup + heartbeats + shutdown, got {n}");
    let text = std::fs::read_to_string(s.file.dir.join(chain::checkpoint_name(2))).unwrap();
    assert!(text.contains("\"reason\":\"heartbeat\""), "{text}");
    let r = verify(
        &s.file.dir,
        &keys::load_public_key(&keys.public_key).unwrap(),
        &Window::default(),
    )
    .unwrap();
    assert!(r.valid, "{}", r.render());
}

#[test]
fn one_writer_per_directory() {
    let tmp = tempfile::tempdir().unwrap();
    keys::generate(&tmp.path().join("keys"), &tmp.path().join("pub.pem")).unwrap();
    let s = settings(tmp.path(), 1 << 20);
    let m = crate::telemetry::Metrics::new().unwrap();
    let first = AuditLog::start(Prepared::load(s.clone()).unwrap(), m.clone()).unwrap();
    let e = AuditLog::start(Prepared::load(s.clone()).unwrap(), m.clone()).unwrap_err();
    assert!(e.to_string().contains("another process is writing"), "{e}");
    first.shutdown();
    AuditLog::start(Prepared::load(s).unwrap(), m)
        .unwrap()
        .shutdown();
}

#[test]
fn keys_inside_the_audit_dir_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = settings(tmp.path(), 1 << 20);
    std::fs::create_dir_all(&s.file.dir).unwrap();
    keys::generate(&s.file.dir.join("k"), &tmp.path().join("pub.pem")).unwrap();
    s.signing_key_file = s.file.dir.join("k/audit-signing.key");
    let e = Prepared::load(s).unwrap_err();
    assert!(e.to_string().contains("inside the audit directory"), "{e}");
}

#[test]
fn postgres_row_keeps_the_schema_columns_apart() {
    let r = postgres::row(&sample(1));
    assert_eq!(r["user_id"], "anonymous");
    assert_eq!(r["details"]["route"], "fhir");
    assert!(r["details"].get("log_id").is_none());
}

#[test]
fn time_window_limits_what_is_reported() {
    let t = trail(10);
    let seg = &t.segments()[1];
    let mut lines = t.lines(seg);
    lines[0] = lines[0].replace("\"status\":200", "\"status\":201");
    t.write_lines(seg, &lines);
    let later = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    let earlier = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    let outside = Window {
        from: Some(later),
        to: None,
    };
    let r = verify(&t.dir, &t.public, &outside).unwrap();
    assert!(r.valid, "{}", r.render());
    let inside = Window {
        from: Some(earlier),
        to: Some(later),
    };
    let r = verify(&t.dir, &t.public, &inside).unwrap();
    assert!(!r.valid, "{}", r.render());
}

/// Checkpoints an hour apart (a stop and a restart) are a `gap` warning, not an error.
#[test]
fn downtime_is_reported_as_a_gap() {
    use chain::{CheckpointBody, CheckpointReason, CheckpointSignature, CHECKPOINT_FORMAT};
    let tmp = tempfile::tempdir().unwrap();
    let k = keys::generate(&tmp.path().join("keys"), &tmp.path().join("pub.pem")).unwrap();
    let pair = keys::load_signing_key(&k.signing_key).unwrap();
    let dir = tmp.path().join("audit");
    std::fs::create_dir(&dir).unwrap();
    let times = [
        (CheckpointReason::Startup, "2026-01-01T00:00:00Z"),
        (CheckpointReason::Shutdown, "2026-01-01T00:00:30Z"),
        (CheckpointReason::Startup, "2026-01-01T01:00:00Z"),
    ];
    let mut prev_sig: Option<String> = None;
    let mut prev_end = "2026-01-01T00:00:00Z".to_string();
    for (i, (reason, end)) in times.iter().enumerate() {
        let n = i as u64 + 1;
        let body = CheckpointBody {
            format: CHECKPOINT_FORMAT.into(),
            checkpoint_seq: n,
            instance_id: "test".into(),
            key_id: k.key_id.clone(),
            reason: *reason,
            segment: None,
            segment_first_seq: None,
            last_seq: None,
            last_record_hash: None,
            new_records: 0,
            segment_closed: true,
            start_time: if *reason == CheckpointReason::Startup {
                end.to_string()
            } else {
                prev_end.clone()
            },
            end_time: end.to_string(),
            interval_seconds: 60,
            torn_tail: None,
            prev_checkpoint: (n > 1).then(|| chain::checkpoint_name(n - 1)),
            prev_checkpoint_signature: prev_sig.clone(),
        };
        let line = serde_json::to_vec(&body).unwrap();
        let sig = record::hex(pair.sign(&chain::signed_message(&body, &line)).as_ref());
        let sig_line = serde_json::to_vec(&CheckpointSignature {
            algorithm: "Ed25519".into(),
            key_id: k.key_id.clone(),
            signature: sig.clone(),
        })
        .unwrap();
        let mut content = line;
        content.push(b'\n');
        content.extend(sig_line);
        content.push(b'\n');
        std::fs::write(dir.join(chain::checkpoint_name(n)), content).unwrap();
        prev_sig = Some(sig);
        prev_end = end.to_string();
    }
    let public = keys::load_public_key(&k.public_key).unwrap();
    let r = verify(&dir, &public, &Window::default()).unwrap();
    assert!(r.valid, "{}", r.render());
    let gap = r.issues.iter().find(|i| i.class == "gap").unwrap();
    assert_eq!(gap.from.as_deref(), Some("2026-01-01T00:00:30Z"));
    assert_eq!(gap.to.as_deref(), Some("2026-01-01T01:00:00Z"));
    assert!(gap.message.contains("stopped"), "{}", gap.message);
}

/// A stalled writer (hung disk) fills the bounded queue: the request path is never blocked,
/// the overflow is refused and counted, and `accepting()` turns false so fail-closed routes
/// refuse new requests.
#[test]
fn full_queue_is_refused_and_counted_never_blocks() {
    let tmp = tempfile::tempdir().unwrap();
    keys::generate(&tmp.path().join("keys"), &tmp.path().join("pub.pem")).unwrap();
    let mut s = settings(tmp.path(), 1 << 20);
    s.file.queue_capacity = 2;
    s.file.fsync = FsyncPolicy::Batched(Duration::from_millis(10));
    let metrics = crate::telemetry::Metrics::new().unwrap();
    let log = AuditLog::start(Prepared::load(s).unwrap(), metrics.clone()).unwrap();
    let release = log.stall();
    // Let the writer pick up the stall message so the queue is empty again.
    std::thread::sleep(Duration::from_millis(50));
    assert!(log.accepting());
    assert!(matches!(log.submit(sample(1)), Submission::Queued(_)));
    assert!(matches!(log.submit(sample(2)), Submission::Queued(_)));
    assert!(
        !log.accepting(),
        "a full queue must make fail-closed routes refuse"
    );
    let started = std::time::Instant::now();
    assert!(matches!(log.submit(sample(3)), Submission::Rejected));
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "submit never blocks"
    );
    let text = String::from_utf8(metrics.render().unwrap()).unwrap();
    assert!(
        text.contains("phi_gateway_audit_write_errors_total{kind=\"queue_full\",sink=\"file\"} 1"),
        "{text}"
    );
    drop(release);
    log.shutdown();
    let records =
        std::fs::read_to_string(tmp.path().join("audit").join(chain::segment_name(1))).unwrap();
    assert_eq!(records.lines().count(), 2);
}

#[test]
fn segments_rotate_by_age_and_stay_chained() {
    let tmp = tempfile::tempdir().unwrap();
    let k = keys::generate(&tmp.path().join("keys"), &tmp.path().join("pub.pem")).unwrap();
    let mut s = settings(tmp.path(), 1 << 20);
    s.file.segment_max_age = Duration::from_millis(100);
    let log = AuditLog::start(
        Prepared::load(s.clone()).unwrap(),
        crate::telemetry::Metrics::new().unwrap(),
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for i in 0..3 {
        assert!(rt.block_on(log.record(sample(i))));
        std::thread::sleep(Duration::from_millis(150));
    }
    log.shutdown();
    let segs = writer::list_segments(&s.file.dir).unwrap();
    assert_eq!(segs.len(), 3, "{segs:?}");
    let rotations = writer::list_checkpoints(&s.file.dir)
        .unwrap()
        .iter()
        .filter(|(_, n)| {
            std::fs::read_to_string(s.file.dir.join(n))
                .unwrap()
                .contains("\"reason\":\"rotation\"")
        })
        .count();
    assert_eq!(rotations, 2);
    let r = verify(
        &s.file.dir,
        &keys::load_public_key(&k.public_key).unwrap(),
        &Window::default(),
    )
    .unwrap();
    assert!(r.valid && r.issues.is_empty(), "{}", r.render());
}

/// A crash right after a new segment was started leaves a segment with only a torn first
/// record; the next run cuts it (signed in its startup checkpoint) and writes a clean chain.
#[test]
fn torn_first_record_of_a_segment_is_cut_at_restart() {
    let t = trail(4);
    let next = t.settings.file.dir.join(chain::segment_name(5));
    std::fs::write(&next, b"{\"log_id\":\"tor").unwrap();
    let r = t.verify();
    assert!(r.valid, "{}", r.render());
    assert!(
        r.issues.iter().any(|i| i.class == "torn_tail"),
        "{}",
        r.render()
    );
    run(&t.settings, 3);
    let r = t.verify();
    assert!(r.valid, "{}", r.render());
    assert_eq!(r.seq_range, Some((1, 7)));
    assert!(r.issues.is_empty(), "{}", r.render());
    let last_startup = writer::list_checkpoints(&t.dir)
        .unwrap()
        .iter()
        .map(|(_, n)| std::fs::read_to_string(t.dir.join(n)).unwrap())
        .rfind(|c| c.contains("\"reason\":\"startup\""))
        .unwrap();
    assert!(
        last_startup
            .contains("\"torn_tail\":{\"segment\":\"segment-000000000005.jsonl\",\"bytes\":14}"),
        "{last_startup}"
    );
}

/// Regression (issue 13): was one writer wake-up (two thread switches) per record even with
/// `fsync: batched`, where nobody waits for the record. A steady stream of records now wakes
/// the writer about once per batch, and every record still lands in the chain, in order.
#[test]
fn batched_records_wake_the_writer_per_batch_not_per_record() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = keys::generate(&tmp.path().join("keys"), &tmp.path().join("pub.pem")).unwrap();
    let public = keys::load_public_key(&keys.public_key).unwrap();
    let mut s = settings(tmp.path(), 1 << 20);
    s.file.fsync = FsyncPolicy::Batched(Duration::from_millis(50));
    s.file.checkpoint_every_records = 1000;
    s.file.queue_capacity = 4096;
    let log = AuditLog::start(
        Prepared::load(s.clone()).unwrap(),
        crate::telemetry::Metrics::new().unwrap(),
    )
    .unwrap();
    // About 20 records per millisecond for 100 ms: a request stream, not one burst.
    let n = 2000u64;
    for i in 0..n {
        assert!(matches!(log.submit(sample(i)), Submission::Queued(None)));
        if i % 20 == 19 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let wakeups = log.writer_wakeups();
    log.shutdown();
    assert!(
        wakeups * 10 < n,
        "{wakeups} wake-ups for {n} records: the writer is woken per record"
    );
    let t = Trail {
        dir: tmp.path().join("audit"),
        _tmp: tmp,
        public,
        settings: s,
    };
    let r = t.verify();
    assert!(r.valid, "{}", r.render());
    assert_eq!(r.seq_range, Some((1, n)));
    let ids: Vec<String> = t
        .segments()
        .iter()
        .flat_map(|seg| t.lines(seg))
        .map(|l| serde_json::from_str::<serde_json::Value>(&l).unwrap()["request_id"].to_string())
        .collect();
    let want: Vec<String> = (0..n).map(|i| format!("\"req-{i}\"")).collect();
    assert_eq!(ids, want, "records out of order or missing");
}

/// Regression (issue 13): `fsync: every_record` is group commit with one wake-up per group:
/// records that arrive while the writer is busy are written under one fdatasync and each is
/// acknowledged (true) only after it, without a wake-up of their own.
#[test]
fn every_record_acks_a_group_after_one_wakeup() {
    let tmp = tempfile::tempdir().unwrap();
    keys::generate(&tmp.path().join("keys"), &tmp.path().join("pub.pem")).unwrap();
    let mut s = settings(tmp.path(), 1 << 20);
    s.file.checkpoint_every_records = 1000;
    let log = AuditLog::start(
        Prepared::load(s).unwrap(),
        crate::telemetry::Metrics::new().unwrap(),
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // The writer is busy (stalled) while 32 requests hand in their records.
    let release = log.stall();
    std::thread::sleep(Duration::from_millis(50));
    let before = log.writer_wakeups();
    let rxs: Vec<_> = (0..32)
        .map(|i| match log.submit(sample(i)) {
            Submission::Queued(Some(rx)) => rx,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(log.writer_wakeups(), before, "a busy writer is not woken");
    drop(release);
    let acks: Vec<bool> = rt.block_on(async {
        let mut v = Vec::new();
        for rx in rxs {
            v.push(rx.await.unwrap_or(false));
        }
        v
    });
    assert!(acks.iter().all(|&a| a), "{acks:?}");
    // Each acknowledged record is in the file.
    let text =
        std::fs::read_to_string(tmp.path().join("audit").join(chain::segment_name(1))).unwrap();
    assert_eq!(text.lines().count(), 32);
    log.shutdown();
}
