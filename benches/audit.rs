//! Audit-trail cost per request: building a record (free-text fields scanned, resource id
//! fingerprinted or checked for clear release) and handing it to the writer. Run:
//! `cargo bench --bench audit`. Verdicts on repeated values (user agents, user ids) are
//! cached by fingerprint, so `unique-audit-header` shows the cost of one uncached value.
//!
//! All values are synthetic. The writer uses `fsync: batched`, so the numbers show the request
//! path's cost, not the disk's (with `every_record` the request also waits for one fdatasync).

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use phi_gateway::audit::{keys, AuditLog, Prepared, RecordInput, Redacted, Submission};
use phi_gateway::config::{AuditSettings, FileSinkSettings, FsyncPolicy, UserIdSource};
use phi_gateway::engine::rules::RuleSet;
use phi_gateway::engine::{Engine, Limits, Mode};
use phi_gateway::verdict::Decision;

fn input<'a>(clear: bool, path: &'a str) -> RecordInput<'a> {
    RecordInput {
        request_id: "0f8d7f3e-2b7a-4c1e-9d2a-3c4b5a6f7e8d",
        route: "fhir",
        mode: Some(Mode::Enforce),
        method: "GET",
        path,
        resource_in_clear: clear,
        decision: Decision::Allow,
        reason: None,
        rule_ids: Vec::new(),
        field_paths: Vec::new(),
        status: 200,
        bytes_in: 0,
        bytes_out: Some(512),
        tls_version: Some("TLSv1_3".into()),
        config_version: "0123456789abcdef",
        body_hmac: None,
        ip_address: Some("10.1.2.3".into()),
        user_agent: Some(Redacted::new(
            "Mozilla/5.0 (X11; Linux x86_64) ehr-portal/4.2.1".into(),
        )),
        audit_header: Some(Redacted::new("ticket-20260124-0042".into())),
        user_header: Some(Redacted::new("dr.alice@hospital.example".into())),
        access: None,
        policy: None,
        response_leak: None,
    }
}

fn bench(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let engine = Engine::new(Arc::new(RuleSet::load_dir(&dir).expect("rules load")));
    let limits = Limits::default();
    let tmp = tempfile::tempdir().expect("tempdir");
    keys::generate(&tmp.path().join("keys"), &tmp.path().join("pub.pem")).expect("keys");
    let settings = AuditSettings {
        file: FileSinkSettings {
            dir: tmp.path().join("audit"),
            fsync: FsyncPolicy::Batched(Duration::from_millis(50)),
            segment_max_bytes: 64 << 20,
            segment_max_age: Duration::from_secs(3600),
            checkpoint_every_records: 10_000,
            checkpoint_interval: Duration::from_secs(60),
            queue_capacity: 1 << 16,
        },
        signing_key_file: tmp.path().join("keys/audit-signing.key"),
        fingerprint_key_file: tmp.path().join("keys/audit-fingerprint.key"),
        user_id: UserIdSource::Header("x-authenticated-user".into()),
        postgres: None,
        ack_timeout: Duration::from_secs(5),
    };
    let metrics = phi_gateway::telemetry::Metrics::new().expect("metrics");
    let log =
        AuditLog::start(Prepared::load(settings).expect("prepared"), metrics).expect("audit log");

    let mut g = c.benchmark_group("audit");
    g.bench_function("build/fingerprint-resource", |b| {
        b.iter(|| black_box(log.build(&engine, &limits, input(false, "/fhir/Patient/pat-000123"))))
    });
    g.bench_function("build/clear-resource", |b| {
        b.iter(|| black_box(log.build(&engine, &limits, input(true, "/fhir/Patient/pat-000123"))))
    });
    // A fresh audit-header value every time (tickets are often unique): one engine scan.
    let mut n = 0u64;
    g.bench_function("build/unique-audit-header", |b| {
        b.iter(|| {
            n += 1;
            let mut i = input(false, "/fhir/Patient/pat-000123");
            i.audit_header = Some(Redacted::new(format!("ticket-{n}")));
            black_box(log.build(&engine, &limits, i))
        })
    });
    g.bench_function("build+submit", |b| {
        b.iter(|| {
            let r = log.build(&engine, &limits, input(false, "/fhir/Patient/pat-000123"));
            // A full queue would be counted as an error; wait instead, so only the request
            // path's own work is measured.
            while !log.accepting() {
                std::thread::sleep(Duration::from_micros(50));
            }
            black_box(matches!(log.submit(r), Submission::Queued(_)))
        })
    });
    g.finish();
    log.shutdown();
}

criterion_group!(benches, bench);
criterion_main!(benches);
