//! Scanner throughput with the full default rule pack, next to a plain single pass over the
//! same bytes (the memory-bandwidth floor). Run: `cargo bench --bench scan`.
//!
//! Documents are synthetic FHIR JSON built here (no PHI in the clean ones; the PHI-bearing one
//! carries one synthetic SSN near the end).

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use phi_gateway::engine::rules::RuleSet;
use phi_gateway::engine::{Engine, Limits, Part};

/// A clean FHIR Observation bundle of roughly `size` bytes: codes, dates, versions and ids —
/// the numbers and dates that make naive detectors fire.
fn clean_fhir(size: usize) -> Vec<u8> {
    let mut entries = Vec::new();
    let mut i = 0u64;
    let mut len = 0usize;
    while len < size {
        let e = format!(
            r#"{{"fullUrl":"urn:uuid:6b1f0c2e-{i:04}-4c1d-9a3e-0a6f5d2c{i:04}","resource":{{"resourceType":"Observation","id":"obs-{i}","meta":{{"versionId":"{v}","lastUpdated":"2024-03-{d:02}T10:{m:02}:00Z"}},"status":"final","code":{{"coding":[{{"system":"http://loinc.org","code":"8867-4","display":"Heart rate"}}]}},"effectiveDateTime":"2024-03-{d:02}","valueQuantity":{{"value":{val},"unit":"beats/minute","system":"http://unitsofmeasure.org","code":"/min"}}}}}}"#,
            v = 100_000_000 + i * 7,
            d = 1 + i % 28,
            m = i % 60,
            val = 60 + i % 40,
        );
        len += e.len() + 1;
        entries.push(e);
        i += 1;
    }
    format!(
        r#"{{"resourceType":"Bundle","type":"collection","entry":[{}]}}"#,
        entries.join(",")
    )
    .into_bytes()
}

fn with_ssn(mut doc: Vec<u8>) -> Vec<u8> {
    // Replace the closing `]}` with one more entry holding a synthetic SSN.
    doc.truncate(doc.len() - 2);
    doc.extend_from_slice(
        br#",{"resource":{"resourceType":"Patient","identifier":[{"system":"http://hl7.org/fhir/sid/us-ssn","value":"536-22-1234"}]}}]}"#,
    );
    doc
}

fn engine() -> Engine {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let rules = RuleSet::load_dir(&dir).expect("default rule pack loads");
    Engine::new(Arc::new(rules))
}

fn bench(c: &mut Criterion) {
    let engine = engine();
    let limits = Limits::default();
    let mut group = c.benchmark_group("scan");
    for (name, size) in [("4KiB", 4 << 10), ("64KiB", 64 << 10), ("1MiB", 1 << 20)] {
        let clean = clean_fhir(size);
        let phi = with_ssn(clean_fhir(size));
        group.throughput(Throughput::Bytes(clean.len() as u64));
        group.bench_with_input(
            BenchmarkId::new("floor_single_pass", name),
            &clean,
            |b, d| {
                // One pass that touches every byte: what reading the body costs at minimum.
                b.iter(|| black_box(d.iter().fold(0u64, |acc, &x| acc.wrapping_add(x as u64))))
            },
        );
        for (kind, doc) in [("clean_fhir_json", &clean), ("phi_fhir_json", &phi)] {
            group.bench_with_input(BenchmarkId::new(kind, name), doc, |b, d| {
                b.iter(|| {
                    let part = Part::Body {
                        content_type: Some("application/fhir+json"),
                        content_encoding: None,
                        bytes: d,
                    };
                    black_box(engine.scan(&part, &limits).map(|s| s.findings.len()))
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);

/// `SCAN_ITERS=N cargo bench --bench scan` scans the clean 64 KiB document N times and exits
/// without criterion: a fixed amount of work for `perf stat -e instructions` or valgrind's
/// callgrind, whose instruction counts are repeatable on a shared machine where wall-clock
/// throughput is not. `SCAN_DOC=phi` scans the PHI-bearing document instead.
fn main() {
    if let Some(iters) = std::env::var("SCAN_ITERS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        let engine = engine();
        let limits = Limits::default();
        let size = std::env::var("SCAN_SIZE")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(64 << 10);
        let doc = match std::env::var("SCAN_DOC").as_deref() {
            Ok("phi") => with_ssn(clean_fhir(size)),
            _ => clean_fhir(size),
        };
        let mut found = 0usize;
        for _ in 0..iters {
            let part = Part::Body {
                content_type: Some("application/fhir+json"),
                content_encoding: None,
                bytes: &doc,
            };
            found += engine.scan(&part, &limits).map_or(0, |s| s.findings.len());
        }
        println!("{iters} scans of {} bytes, {found} findings", doc.len());
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
