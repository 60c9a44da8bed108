//! What inspecting every request header costs per request (issue 14): the header loop of
//! `gateway::checks` (select by `inspect.headers`, scan each selected header with the full
//! default rule pack) over realistic header sets, with the old demo default (`referer` only)
//! next to the new one (`"*"` minus the skip list). Run: `cargo bench --bench headers`.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use criterion::{criterion_group, Criterion};
use phi_gateway::config::Inspect;
use phi_gateway::engine::rules::RuleSet;
use phi_gateway::engine::{Engine, Limits, Part, ScanOptions};

/// A browser hitting a patient portal: 14 headers, about 1.1 KB.
const BROWSER: &[(&str, &str)] = &[
    ("host", "portal.example.org"),
    ("user-agent", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"),
    ("accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
    ("accept-language", "en-US,en;q=0.5"),
    ("accept-encoding", "gzip, deflate, br, zstd"),
    ("referer", "https://portal.example.org/patients?page=2&sort=name"),
    ("cookie", "session=8f2a9c1e77d04b1c9e0f3a6b5d4c2e1f; csrftoken=Zq3v9xK2mN8pL4rT; theme=dark; _ga=GA1.2.1234567890.1700000000"),
    ("connection", "keep-alive"),
    ("upgrade-insecure-requests", "1"),
    ("sec-fetch-dest", "document"),
    ("sec-fetch-mode", "navigate"),
    ("sec-fetch-site", "same-origin"),
    ("x-hipaa-audit-id", "ticket-4711:dr.alice"),
    ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
];

/// An EHR API client: a JWS bearer token, FHIR content negotiation, correlation ids.
const API: &[(&str, &str)] = &[
    ("host", "ehr.hospital.example"),
    ("authorization", "Bearer eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJjbGllbnQtNDIiLCJzY29wZSI6InBhdGllbnQvKi5yZWFkIiwiaWF0IjoxNzAwMDAwMDAwLCJleHAiOjE3MDAwMDM2MDB9.c2lnbmF0dXJlLWJ5dGVzLW5vdC1yZWFs"),
    ("accept", "application/fhir+json"),
    ("content-type", "application/fhir+json; charset=utf-8"),
    ("content-length", "1834"),
    ("user-agent", "ehr-sync/4.2.1 (java 21)"),
    ("x-hipaa-audit-id", "job-20240301-0042"),
    ("x-correlation-id", "6b1f0c2e-0042-4c1d-9a3e-0a6f5d2c0042"),
    ("x-request-id", "0f6c2d9e-1a2b-4c3d-8e9f-0a1b2c3d4e5f"),
    ("prefer", "return=representation"),
    ("if-match", "W/\"17\""),
];

fn engine() -> Engine {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    Engine::new(Arc::new(
        RuleSet::load_dir(&dir).expect("default rule pack loads"),
    ))
}

/// The gateway's header loop: audit headers always, the rest as `inspect` selects.
fn inspect_headers(
    engine: &Engine,
    limits: &Limits,
    inspect: &Inspect,
    headers: &[(&str, &str)],
) -> usize {
    let options = ScanOptions::route(Some("fhir"));
    let mut findings = 0;
    for (name, value) in headers {
        if *name != "x-hipaa-audit-id" && !inspect.header_selected(name) {
            continue;
        }
        let part = Part::Header {
            name,
            value: value.as_bytes(),
        };
        if let Ok(s) = engine.scan_with(&part, limits, &options) {
            findings += s.findings.len();
        }
    }
    findings
}

fn bench(c: &mut Criterion) {
    let engine = engine();
    let limits = Limits::default();
    let mut referer_only = Inspect::everything();
    referer_only.headers = vec!["referer".into()];
    let every = Inspect::everything();
    let mut group = c.benchmark_group("headers");
    for (set, headers) in [("browser", BROWSER), ("api", API)] {
        assert_eq!(
            inspect_headers(&engine, &limits, &every, headers),
            0,
            "{set} is clean"
        );
        group.bench_function(format!("{set}/referer_only"), |b| {
            b.iter(|| inspect_headers(&engine, &limits, &referer_only, black_box(headers)))
        });
        group.bench_function(format!("{set}/every_header"), |b| {
            b.iter(|| inspect_headers(&engine, &limits, &every, black_box(headers)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
