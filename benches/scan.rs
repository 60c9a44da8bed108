//! Scanner throughput with the full default rule pack, next to a plain single pass over the
//! same bytes (the memory-bandwidth floor). Run: `cargo bench --bench scan`.
//!
//! Documents are synthetic FHIR JSON (no PHI in the clean ones; the PHI-bearing ones carry one
//! synthetic SSN near the end): Observation bundles built here, and the realistic EHR bundles
//! of `phi_gateway::engine::synthetic` (Encounters, Conditions, MedicationRequests,
//! Observations with non-PHI identifiers, Practitioners with NPIs, Organizations), also with a
//! narrative (`text.div`, escaped XHTML) in every clinical resource.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use phi_gateway::engine::rules::RuleSet;
use phi_gateway::engine::{synthetic, Engine, Limits, Part};

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

/// The EHR bundle of about `size` bytes with a narrative in every Encounter, Condition,
/// MedicationRequest and Observation, as most published FHIR has one: XHTML in `text.div`,
/// its attribute quotes and line breaks written as JSON escapes.
fn with_narratives(size: usize) -> Vec<u8> {
    let mut doc = synthetic::ehr_bundle(size * 4 / 5);
    for ty in ["Encounter", "Condition", "MedicationRequest", "Observation"] {
        doc = doc.replace(
            &format!(r#""resourceType":"{ty}","id":"#),
            &format!(
                r#""resourceType":"{ty}","text":{{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">\n  <p><b>{ty}</b> recorded for the patient during the visit.</p>\n  <p class=\"status\">Status: final, reviewed by the attending clinician.</p>\n</div>"}},"id":"#
            ),
        );
    }
    doc.into_bytes()
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
        // EHR traffic: identifiers of non-PHI systems, NPIs in provider resources, patients by
        // logical id (see `ehr_bundle`).
        let ehr = synthetic::ehr_bundle(size).into_bytes();
        let ehr_phi = with_ssn(synthetic::ehr_bundle(size).into_bytes());
        // The same with narratives, the way most published FHIR is written.
        let narrative = with_narratives(size);
        let narrative_phi = with_ssn(with_narratives(size));
        for (kind, doc) in [
            ("clean_fhir_json", &clean),
            ("phi_fhir_json", &phi),
            ("ehr_clean_fhir_json", &ehr),
            ("ehr_phi_fhir_json", &ehr_phi),
            ("ehr_narrative_fhir_json", &narrative),
            ("ehr_narrative_phi_fhir_json", &narrative_phi),
        ] {
            // Each document's own length (the narrative ones are only about `size`).
            group.throughput(Throughput::Bytes(doc.len() as u64));
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

/// About `size` bytes of log lines as other systems write them: access-log lines, application
/// text lines with ids, durations and timestamps, and JSON Lines records; one synthetic SSN in
/// every 1,000 lines.
fn log_lines(size: usize) -> Vec<u8> {
    let mut out = String::with_capacity(size + 256);
    let mut i = 0u64;
    while out.len() < size {
        let line = match i % 4 {
            0 => format!(
                "10.0.{}.{} - - [02/Jan/2026:03:{:02}:{:02} +0000] \"GET /fhir/Observation?patient=obs-{i}&_count=50 HTTP/1.1\" 200 {} \"-\" \"ehr-client/2.{}\"",
                i % 250, (i * 7) % 250, i % 60, (i * 13) % 60, 1000 + i % 9000, i % 10
            ),
            1 => format!(
                "2026-01-02T03:04:{:02}.{:03}Z INFO  [worker-{}] request {i:08x} handled in {} ms (order {}, batch {})",
                i % 60, i % 1000, i % 16, i % 900, 100_000 + i * 3, i % 77
            ),
            2 => format!(
                r#"{{"ts":"2026-01-02T03:04:{:02}Z","level":"info","msg":"observation stored","resource":"Observation/obs-{i}","version":{},"latency_ms":{}}}"#,
                i % 60, 1 + i % 9, i % 500
            ),
            _ if i % 1000 == 3 => format!(
                r#"{{"ts":"2026-01-02T03:04:{:02}Z","level":"error","msg":"lookup failed","member":{{"ssn":"536-22-1234"}}}}"#,
                i % 60
            ),
            _ => format!(
                "2026-01-02T03:04:{:02}Z WARN  retrying upstream call {} of 3 after {} ms",
                i % 60, 1 + i % 3, 50 * (1 + i % 3)
            ),
        };
        out.push_str(&line);
        out.push('\n');
        i += 1;
    }
    out.into_bytes()
}

/// `scan --lines` over generated logs: MB/s of a log scan with the default pack.
fn bench_lines(c: &mut Criterion) {
    use phi_gateway::runtime::cli::lines::{scan_lines, LinesArgs, DEFAULT_MAX_LINE_BYTES};
    let engine = engine();
    let logs = log_lines(4 << 20);
    let args = LinesArgs {
        name: "bench.log".into(),
        route: None,
        json: false,
        max_line_bytes: DEFAULT_MAX_LINE_BYTES,
    };
    let mut group = c.benchmark_group("scan_lines");
    group.throughput(Throughput::Bytes(logs.len() as u64));
    group.sample_size(10);
    group.bench_function("mixed_logs_4MiB", |b| {
        b.iter(|| {
            let mut input = std::io::Cursor::new(&logs[..]);
            let summary = scan_lines(
                &engine,
                &mut input,
                &mut std::io::sink(),
                &mut std::io::sink(),
                &args,
            );
            black_box(summary.map(|s| s.findings))
        })
    });
    group.finish();
}

/// Adversarial inputs a client can send (issue 14): each must cost per byte within a small
/// factor of the clean FHIR reference of about the same size (docs/performance.md says the
/// factor). Each input is built here; none holds PHI.
fn adversarial_inputs() -> Vec<(&'static str, String, Vec<u8>)> {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    let json = "application/json".to_string();
    let mut out = Vec::new();
    // 40,000 distinct `vault:v1:` values (about 2 MB): was quadratic de-duplication.
    let mut d = String::from("{\"v\":[");
    for i in 0..40_000 {
        if i > 0 {
            d.push(',');
        }
        d.push_str(&format!(
            "\"vault:v1:{}\"",
            b64(&format!("synthetic-ciphertext-{i:08}"))
        ));
    }
    d.push_str("]}");
    out.push(("vault_values_40k", json.clone(), d.into_bytes()));
    // A 60 KB boundary over a 2 MB body of near-miss delimiters: was O(body × boundary).
    let boundary = "b".repeat(60_000);
    let filler = format!("--{}\r\n", "b".repeat(59_999)).repeat(33);
    let m = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\n{filler}\r\n--{boundary}--\r\n");
    out.push((
        "boundary_60KB",
        format!("multipart/form-data; boundary={boundary}"),
        m.into_bytes(),
    ));
    // 10,000 small parts.
    let mut m = String::new();
    for i in 0..10_000 {
        m.push_str(&format!(
            "--B\r\nContent-Disposition: form-data; name=\"field{i}\"\r\n\r\nvalue {i}\r\n"
        ));
    }
    m.push_str("--B--\r\n");
    out.push((
        "parts_10k",
        "multipart/form-data; boundary=B".to_string(),
        m.into_bytes(),
    ));
    // 100,000 keys in one object, with repeated `type` siblings (context copied per member).
    let mut d = String::from("{");
    for i in 0..100_000 {
        d.push_str(&format!("\"type\":\"t{}\",\"key{i}\":\"v\",", i % 7));
    }
    d.push_str("\"end\":1}");
    out.push(("keys_100k", json.clone(), d.into_bytes()));
    // 100,000 legacy keys whose split words are hotword-like (`memberSocialNote`), values with
    // digits: every key is split and searched.
    let mut d = String::from("{");
    for i in 0..50_000 {
        d.push_str(&format!(
            "\"memberSocialNote{i}\":\"ref {i:09}\",\"ptRecordCount{i}\":{i},"
        ));
    }
    d.push_str("\"end\":1}");
    out.push(("legacy_keys_100k", json, d.into_bytes()));
    out
}

fn adversarial(c: &mut Criterion) {
    let engine = engine();
    let limits = Limits::default();
    let mut group = c.benchmark_group("adversarial");
    group.sample_size(10);
    let reference = clean_fhir(2 << 20);
    group.throughput(Throughput::Bytes(reference.len() as u64));
    group.bench_function("reference_fhir_json_2MiB", |b| {
        b.iter(|| {
            let part = Part::Body {
                content_type: Some("application/fhir+json"),
                content_encoding: None,
                bytes: &reference,
            };
            black_box(engine.scan(&part, &limits).map(|s| s.findings.len()))
        })
    });
    for (name, ct, doc) in adversarial_inputs() {
        group.throughput(Throughput::Bytes(doc.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                let part = Part::Body {
                    content_type: Some(&ct),
                    content_encoding: None,
                    bytes: &doc,
                };
                black_box(engine.scan(&part, &limits).map(|s| s.findings.len()))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench, bench_lines, adversarial);

/// `SCAN_ITERS=N cargo bench --bench scan` scans the clean 64 KiB document N times and exits
/// without criterion: a fixed amount of work for `perf stat -e instructions` or valgrind's
/// callgrind, whose instruction counts are repeatable on a shared machine where wall-clock
/// throughput is not. `SCAN_DOC=phi` scans the PHI-bearing document instead, `ehr` and
/// `ehr-phi` the realistic EHR bundle and its PHI-bearing variant, `narrative` and
/// `narrative-phi` the EHR bundle with narratives, `adversarial/<name>` one of the adversarial
/// inputs (`adversarial/parts_10k`).
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
        // `SCAN_DOC=adversarial/<name>`: one of the adversarial inputs, with its own type.
        let which = std::env::var("SCAN_DOC").unwrap_or_default();
        if let Some(name) = which.strip_prefix("adversarial/") {
            let Some((_, ct, doc)) = adversarial_inputs()
                .into_iter()
                .find(|(n, _, _)| *n == name)
            else {
                eprintln!("no adversarial input {name:?}");
                std::process::exit(2);
            };
            let mut found = 0usize;
            for _ in 0..iters {
                let part = Part::Body {
                    content_type: Some(&ct),
                    content_encoding: None,
                    bytes: &doc,
                };
                found += engine.scan(&part, &limits).map_or(0, |s| s.findings.len());
            }
            println!("{iters} scans of {} bytes, {found} findings", doc.len());
            return;
        }
        let doc = match std::env::var("SCAN_DOC").as_deref() {
            Ok("phi") => with_ssn(clean_fhir(size)),
            Ok("ehr") => synthetic::ehr_bundle(size).into_bytes(),
            Ok("ehr-phi") => with_ssn(synthetic::ehr_bundle(size).into_bytes()),
            Ok("narrative") => with_narratives(size),
            Ok("narrative-phi") => with_ssn(with_narratives(size)),
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
