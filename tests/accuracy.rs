//! Accuracy suite: recall over a generated positive matrix (valid synthetic identifiers ×
//! evasions × carriers) and the false-positive rate over PHI-free documents (curated CC0 FHIR
//! R4 conformance examples in tests/fixtures/fhir-r4-examples, plus synthetic clean EHR
//! traffic). Prints a report (`cargo test --test accuracy -- --nocapture`) that
//! docs/accuracy.md reproduces. Set PHI_GATEWAY_FHIR_EXAMPLES to the unpacked npm package
//! (tests/fetch-fhir-examples.sh) to run the negatives over the full set.
//!
//! Targets (issue 3): recall >= 99 %, false-positive rate <= 0.1 % of negative documents.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use phi_gateway::engine::rules::RuleSet;
use phi_gateway::engine::{Engine, Limits, Part};

fn engine() -> Engine {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    Engine::new(Arc::new(RuleSet::load_dir(&dir).expect("default pack")))
}

/// A tiny deterministic generator (no test depends on the system RNG).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn digits(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b'0' + self.below(10) as u8))
            .collect()
    }
}

fn luhn_check_digit(payload: &str, extra: u32) -> u32 {
    // Check digit for `payload` so that Luhn(payload + d) holds; `extra` adds a constant (24
    // for the NPI's 80840 prefix).
    let mut sum = extra;
    for (i, c) in payload.bytes().rev().enumerate() {
        let mut d = u32::from(c - b'0');
        if i % 2 == 0 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    (10 - sum % 10) % 10
}

fn gen_ssn(r: &mut Lcg) -> String {
    loop {
        let area = 1 + r.below(899);
        let group = 1 + r.below(99);
        let serial = 1 + r.below(9999);
        if area == 666
            || (area == 123 && group == 45 && serial == 6789)
            || (area == 78 && group == 5)
        {
            continue;
        }
        let all = format!("{area:03}{group:02}{serial:04}");
        if all.bytes().all(|b| b == all.as_bytes()[0]) {
            continue;
        }
        return format!("{area:03}-{group:02}-{serial:04}");
    }
}

fn gen_npi(r: &mut Lcg) -> String {
    loop {
        let body = format!("{}{}", 1 + r.below(2), r.digits(8));
        let npi = format!("{body}{}", luhn_check_digit(&body, 24));
        if npi != "1234567893" {
            return npi;
        }
    }
}

fn gen_card(r: &mut Lcg) -> String {
    loop {
        let body = format!("4{}", r.digits(14));
        let pan = format!("{body}{}", luhn_check_digit(&body, 0));
        if !pan.starts_with("4111") && !pan.starts_with("4012") && !pan.starts_with("4242") {
            return format!(
                "{}-{}-{}-{}",
                &pan[..4],
                &pan[4..8],
                &pan[8..12],
                &pan[12..]
            );
        }
    }
}

fn gen_mbi(r: &mut Lcg) -> String {
    const A: &[u8] = b"ACDEFGHJKMNPQRTUVWXY";
    let a = |r: &mut Lcg| char::from(A[r.below(A.len() as u64) as usize]);
    let n = |r: &mut Lcg| char::from(b'0' + r.below(10) as u8);
    let an = |r: &mut Lcg| if r.below(2) == 0 { a(r) } else { n(r) };
    let c = char::from(b'1' + r.below(9) as u8);
    format!(
        "{c}{}{}{}-{}{}{}-{}{}{}{}",
        a(r),
        an(r),
        n(r),
        a(r),
        an(r),
        n(r),
        a(r),
        a(r),
        n(r),
        n(r)
    )
}

fn gen_dea(r: &mut Lcg) -> String {
    const FIRST: &[u8] = b"ABCFGM";
    let first = char::from(FIRST[r.below(FIRST.len() as u64) as usize]);
    let second = char::from(b'A' + r.below(26) as u8);
    let d: Vec<u32> = (0..6).map(|_| r.below(10) as u32).collect();
    let check = (d[0] + d[2] + d[4] + 2 * (d[1] + d[3] + d[5])) % 10;
    format!(
        "{first}{second}{}{check}",
        d.iter().map(|x| x.to_string()).collect::<String>()
    )
}

fn gen_phone(r: &mut Lcg) -> String {
    let area = [617, 212, 415, 303, 206][r.below(5) as usize];
    let exchange = 200 + r.below(799);
    let exchange = if exchange == 555 || exchange % 100 == 11 {
        234
    } else {
        exchange
    };
    format!("{area}-{exchange:03}-{}", r.digits(4))
}

fn gen_itin(r: &mut Lcg) -> String {
    let groups = [50, 55, 60, 65, 70, 75, 80, 88, 90, 92, 94, 99];
    let g = groups[r.below(groups.len() as u64) as usize];
    format!("9{}-{g}-{}", r.digits(2), r.digits(4))
}

fn gen_email(r: &mut Lcg) -> String {
    let names = ["jane.roe", "a.patient", "jdoe", "m.smith", "kim.lee"];
    format!(
        "{}{}@synthetic-clinic.org",
        names[r.below(names.len() as u64) as usize],
        r.below(100)
    )
}

/// (rule id, context label, form field name, generator, separator-bearing).
type Gen = fn(&mut Lcg) -> String;
const DETECTORS: &[(&str, &str, &str, Gen, bool)] = &[
    ("us-ssn", "SSN", "ssn", gen_ssn, true),
    ("us-itin", "ITIN", "itin", gen_itin, true),
    ("us-npi", "NPI", "npi", gen_npi, false),
    ("us-mbi", "Medicare MBI", "mbi", gen_mbi, true),
    ("us-dea", "DEA", "dea", gen_dea, false),
    ("credit-card", "card", "card_number", gen_card, true),
    ("us-phone", "phone", "phone", gen_phone, true),
    ("email", "email", "email", gen_email, false),
];

/// Value-level evasions: (name, applies to separator-bearing values only, transform).
type Evasion = fn(&str) -> String;
fn fullwidth(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '0'..='9' | 'A'..='Z' | 'a'..='z' => {
                char::from_u32(c as u32 - 0x21 + 0xFF01).unwrap_or(c)
            }
            '-' => '\u{FF0D}',
            '@' => '\u{FF20}',
            '.' => '\u{FF0E}',
            c => c,
        })
        .collect()
}
fn arabic(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '0'..='9' => char::from_u32(0x660 + (c as u32 - '0' as u32)).unwrap_or(c),
            c => c,
        })
        .collect()
}
const EVASIONS: &[(&str, bool, Evasion)] = &[
    ("plain", false, |s| s.to_string()),
    ("sep-space", true, |s| s.replace('-', " ")),
    ("sep-dot", true, |s| s.replace('-', ".")),
    ("sep-none", true, |s| s.replace('-', "")),
    ("fullwidth", false, fullwidth),
    ("arabic-indic-digits", false, arabic),
    ("zero-width", false, |s| {
        let mut v: Vec<char> = s.chars().collect();
        v.insert(3.min(v.len()), '\u{200B}');
        v.into_iter().collect()
    }),
    ("nb-hyphen", true, |s| s.replace('-', "\u{2011}")),
    ("soft-hyphen", false, |s| {
        let mut v: Vec<char> = s.chars().collect();
        v.insert(2.min(v.len()), '\u{AD}');
        v.into_iter().collect()
    }),
];

/// Text-level encodings of "<label> <value>" (applied inside the carrier).
const ENCODINGS: &[&str] = &[
    "none",
    "percent",
    "double-percent",
    "base64",
    "xml-ncr",
    "json-u",
];

fn encode(kind: &str, text: &str) -> Option<String> {
    Some(match kind {
        "none" => text.to_string(),
        "percent" => text.bytes().map(|b| format!("%{b:02X}")).collect(),
        "double-percent" => text.bytes().map(|b| format!("%25{b:02X}")).collect(),
        "base64" => base64::engine::general_purpose::STANDARD.encode(text),
        "xml-ncr" => text
            .chars()
            .map(|c| {
                if c.is_ascii_digit() {
                    format!("&#{};", c as u32)
                } else {
                    c.to_string()
                }
            })
            .collect(),
        // JSON \u escapes of every character (JSON carrier only).
        "json-u" => text.encode_utf16().map(|u| format!("\\u{u:04x}")).collect(),
        _ => return None,
    })
}

/// Carriers: builds (content type, body) for a labelled value. `encoded` is already encoded
/// text; for JSON it is embedded raw (json-u escapes stay escapes).
fn carrier(kind: &str, field: &str, encoded: &str, enc: &str) -> Option<(String, Vec<u8>)> {
    let json_str = |s: &str| {
        if enc == "json-u" {
            s.to_string()
        } else {
            serde_json::to_string(s)
                .map(|q| q[1..q.len() - 1].to_string())
                .unwrap_or_default()
        }
    };
    match kind {
        "fhir-json" => Some((
            "application/fhir+json".into(),
            format!(
                r#"{{"resourceType":"Observation","status":"final","code":{{"text":"note"}},"note":[{{"text":"{}"}}]}}"#,
                json_str(encoded)
            )
            .into_bytes(),
        )),
        "hl7v2" if enc != "json-u" => Some((
            "x-application/hl7-v2+er7".into(),
            format!(
                "MSH|^~\\&|LAB|HOSP|EHR|HOSP|20240101120000||ORU^R01|MSG0001|P|2.5\rPID|1||X1^^^H^PI\rNTE|1||{}\r",
                encoded.replace('\\', "\\E\\").replace('|', "\\F\\").replace('^', "\\S\\").replace('&', "\\T\\").replace('~', "\\R\\")
            )
            .into_bytes(),
        )),
        "form" if enc != "json-u" => {
            // The value is the labelled text, form-encoded once more (so `percent` ends up
            // double-encoded on the wire, as a client that encodes twice would send it).
            let v: String = form_urlencoded::byte_serialize(encoded.as_bytes()).collect();
            Some((
                "application/x-www-form-urlencoded".into(),
                format!("visit=routine&{field}={v}&ok=1").into_bytes(),
            ))
        }
        "multipart" if enc != "json-u" => Some((
            "multipart/form-data; boundary=BOUNDARYx9".into(),
            format!(
                "--BOUNDARYx9\r\nContent-Disposition: form-data; name=\"visit\"\r\n\r\nroutine\r\n--BOUNDARYx9\r\nContent-Disposition: form-data; name=\"{field}\"\r\n\r\n{encoded}\r\n--BOUNDARYx9--\r\n"
            )
            .into_bytes(),
        )),
        _ => None,
    }
}

const CARRIERS: &[&str] = &["fhir-json", "hl7v2", "form", "multipart"];

/// Whole-body Content-Encodings applied on top.
fn content_encode(kind: &str, body: &[u8]) -> Vec<u8> {
    match kind {
        "gzip" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(body).expect("gzip");
            e.finish().expect("gzip")
        }
        "br" => {
            let mut out = Vec::new();
            {
                let mut w = brotli::CompressorWriter::new(&mut out, 4096, 4, 22);
                w.write_all(body).expect("br");
            }
            out
        }
        "zstd" => zstd::stream::encode_all(body, 1).expect("zstd"),
        "gzip, br" => content_encode("br", &content_encode("gzip", body)),
        _ => body.to_vec(),
    }
}

const CONTENT_ENCODINGS: &[&str] = &["identity", "gzip", "br", "zstd", "gzip, br"];

#[derive(Default)]
struct Tally {
    total: usize,
    hit: usize,
    misses: Vec<String>,
}

#[test]
fn positive_matrix_recall() {
    let e = engine();
    let limits = Limits::default();
    let mut rng = Lcg(0x05EE_D1D5);
    let mut by_detector: BTreeMap<&str, Tally> = BTreeMap::new();
    let mut by_evasion: BTreeMap<String, Tally> = BTreeMap::new();
    let mut by_carrier: BTreeMap<&str, Tally> = BTreeMap::new();
    let mut case = 0usize;
    for &(rule, label, field, generate, has_sep) in DETECTORS {
        for _ in 0..2 {
            let value = generate(&mut rng);
            for &(ev_name, needs_sep, ev) in EVASIONS {
                if needs_sep && !has_sep {
                    continue;
                }
                let v = ev(&value);
                for &enc in ENCODINGS {
                    for &carrier_kind in CARRIERS {
                        // The label stays readable ASCII; glue it to the value half the time.
                        let glue = if case.is_multiple_of(2) { " " } else { ": " };
                        let text = format!("{label}{glue}{v}");
                        let Some(encoded) = encode(enc, &text) else {
                            continue;
                        };
                        let Some((ct, body)) = carrier(carrier_kind, field, &encoded, enc) else {
                            continue;
                        };
                        let ce = CONTENT_ENCODINGS[case % CONTENT_ENCODINGS.len()];
                        case += 1;
                        let wire = content_encode(ce, &body);
                        let scan = e.scan(
                            &Part::Body {
                                content_type: Some(&ct),
                                content_encoding: (ce != "identity").then_some(ce),
                                bytes: &wire,
                            },
                            &limits,
                        );
                        let hit = scan
                            .as_ref()
                            .map(|s| s.findings.iter().any(|f| f.rule_id == rule))
                            .unwrap_or(false);
                        let evasion = format!("{ev_name}+{enc}");
                        for t in [
                            by_detector.entry(rule).or_default(),
                            by_carrier.entry(carrier_kind).or_default(),
                        ] {
                            t.total += 1;
                            t.hit += usize::from(hit);
                        }
                        let t = by_evasion.entry(evasion.clone()).or_default();
                        t.total += 1;
                        t.hit += usize::from(hit);
                        if !hit {
                            by_detector
                                .entry(rule)
                                .or_default()
                                .misses
                                .push(format!("{evasion} in {carrier_kind} ({ce})"));
                        }
                    }
                }
            }
        }
    }
    let total: usize = by_detector.values().map(|t| t.total).sum();
    let hit: usize = by_detector.values().map(|t| t.hit).sum();
    let recall = hit as f64 / total as f64;
    let mut report = String::new();
    report.push_str(&format!(
        "POSITIVES: {hit}/{total} detected, recall {:.2} %\n\n| Detector | Cases | Detected | Recall |\n|---|---:|---:|---:|\n",
        recall * 100.0
    ));
    for (d, t) in &by_detector {
        report.push_str(&format!(
            "| {d} | {} | {} | {:.1} % |\n",
            t.total,
            t.hit,
            100.0 * t.hit as f64 / t.total as f64
        ));
    }
    report.push_str("\n| Carrier | Cases | Detected | Recall |\n|---|---:|---:|---:|\n");
    for (c, t) in &by_carrier {
        report.push_str(&format!(
            "| {c} | {} | {} | {:.1} % |\n",
            t.total,
            t.hit,
            100.0 * t.hit as f64 / t.total as f64
        ));
    }
    report.push_str("\nEvasions below 100 %:\n\n| Evasion (value + text encoding) | Cases | Detected |\n|---|---:|---:|\n");
    for (ev, t) in &by_evasion {
        if t.hit < t.total {
            report.push_str(&format!("| {ev} | {} | {} |\n", t.total, t.hit));
        }
    }
    report.push_str("\nMisses (first 10 per detector):\n\n");
    for (d, t) in &by_detector {
        for m in t.misses.iter().take(10) {
            report.push_str(&format!("- {d}: {m}\n"));
        }
        if t.misses.len() > 10 {
            report.push_str(&format!("- {d}: … {} more\n", t.misses.len() - 10));
        }
    }
    write_report("positives", &report);
    println!("{report}");
    assert!(recall >= 0.99, "recall {:.4} below 99 %:\n{report}", recall);
}

/// Resource types that are PHI-free by design (conformance and terminology resources).
const NEGATIVE_TYPES: &[&str] = &[
    "ValueSet",
    "CodeSystem",
    "StructureDefinition",
    "SearchParameter",
    "ConceptMap",
    "OperationDefinition",
    "CapabilityStatement",
    "NamingSystem",
    "CompartmentDefinition",
    "ImplementationGuide",
    "StructureMap",
    "GraphDefinition",
    "MessageDefinition",
    "TerminologyCapabilities",
];

fn negative_files() -> Vec<PathBuf> {
    let dirs: Vec<PathBuf> = match std::env::var_os("PHI_GATEWAY_FHIR_EXAMPLES") {
        Some(d) => vec![PathBuf::from(d)],
        None => vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fhir-r4-examples")],
    };
    let mut out = Vec::new();
    for dir in dirs {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let ty = name.split('-').next().unwrap_or("");
            if name.ends_with(".json") && NEGATIVE_TYPES.contains(&ty) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Synthetic clean EHR traffic: the false-positive traps of the detection note (9-digit order
/// ids, ZIP+4, versionIds, timestamps, test card numbers, 555-01xx phones, example.com mail,
/// invalid-checksum numbers, UUIDs, LOINC/SNOMED codes, provider NPIs on provider routes).
fn synthetic_negatives() -> Vec<(String, String, Option<&'static str>)> {
    let mut r = Lcg(42);
    let mut out = Vec::new();
    for i in 0..300 {
        let order = format!("{}", 100_000_000 + r.below(899_999_999));
        let zip4 = format!("0{}-{}", r.digits(4), r.digits(4));
        let version = r.digits(9);
        let body = match i % 6 {
            0 => format!(
                r#"{{"resourceType":"ServiceRequest","id":"sr-{i}","meta":{{"versionId":"{version}","lastUpdated":"2024-03-0{}T10:15:00Z"}},"status":"active","intent":"order","identifier":[{{"system":"urn:oid:1.2.3.4.5","value":"{order}"}}],"code":{{"coding":[{{"system":"http://loinc.org","code":"{}-{}"}}]}}}}"#,
                1 + i % 9,
                r.digits(5),
                r.digits(1)
            ),
            1 => format!(
                r#"{{"resourceType":"Organization","id":"org-{i}","address":[{{"postalCode":"{zip4}","city":"Boston","state":"MA"}}],"telecom":[{{"system":"phone","value":"617-555-01{}"}}],"identifier":[{{"system":"http://hl7.org/fhir/sid/us-npi","value":"{}"}}]}}"#,
                r.digits(2),
                r.digits(10)
            ),
            2 => format!(
                r#"{{"resourceType":"Invoice","id":"inv-{i}","identifier":[{{"value":"INV-{order}"}}],"totalNet":{{"value":{}.{},"currency":"USD"}},"note":[{{"text":"test card 4111 1111 1111 1111 declined, contact billing@example.com"}}]}}"#,
                r.below(100_000),
                r.digits(2)
            ),
            3 => format!(
                r#"{{"resourceType":"Observation","id":"{}-{}-{}-{}-{}","status":"final","code":{{"coding":[{{"system":"http://snomed.info/sct","code":"{}"}}]}},"valueQuantity":{{"value":{}.{}}},"effectiveDateTime":"2023-11-{:02}"}}"#,
                r.digits(8),
                r.digits(4),
                r.digits(4),
                r.digits(4),
                r.digits(12),
                r.digits(9),
                r.below(300),
                r.digits(1),
                1 + r.below(28)
            ),
            4 => format!("order={order}&zip={zip4}&ts={}&qty={}", r.digits(10), r.below(50)),
            _ => format!(
                "MSH|^~\\&|LAB|HOSP|EHR|HOSP|{}||ORU^R01|{order}|P|2.5\rOBR|1|{order}||{}-{}^GLUCOSE^LN\rOBX|1|NM|{}-{}^GLUCOSE^LN||{}|mg/dL|70-99|N\r",
                r.digits(14),
                r.digits(4),
                r.digits(1),
                r.digits(4),
                r.digits(1),
                r.below(300)
            ),
        };
        let ct = match i % 6 {
            4 => "application/x-www-form-urlencoded",
            5 => "x-application/hl7-v2+er7",
            _ => "application/fhir+json",
        };
        out.push((format!("synthetic-{i}"), body, Some(ct)));
    }
    // Provider NPIs on a provider route are business data.
    for i in 0..20 {
        let body = format!(
            r#"{{"resourceType":"Patient","identifier":[{{"system":"http://hl7.org/fhir/sid/us-npi","value":"{}"}}]}}"#,
            gen_npi(&mut r)
        );
        out.push((format!("provider-route-{i}"), body, None));
    }
    out
}

#[test]
fn negative_documents_false_positive_rate() {
    let e = engine();
    let limits = Limits::default();
    let mut docs = 0usize;
    let mut fp_docs: Vec<String> = Vec::new();
    let mut by_rule: BTreeMap<String, usize> = BTreeMap::new();
    let mut bytes = 0usize;
    let files = negative_files();
    assert!(
        files.len() >= 50,
        "curated negatives missing: {}",
        files.len()
    );
    let mut run = |name: String, body: &[u8], ct: &str, route: Option<&str>| {
        docs += 1;
        bytes += body.len();
        let scan = e
            .scan_with(
                &Part::Body {
                    content_type: Some(ct),
                    content_encoding: None,
                    bytes: body,
                },
                &limits,
                &phi_gateway::engine::ScanOptions::route(route),
            )
            .expect("scan");
        if !scan.findings.is_empty() {
            let rules: Vec<String> = scan
                .findings
                .iter()
                .map(|f| format!("{} at {}", f.rule_id, f.location))
                .collect();
            for f in &scan.findings {
                *by_rule.entry(f.rule_id.clone()).or_default() += 1;
            }
            fp_docs.push(format!("{name}: {}", rules.join(", ")));
        }
    };
    let fhir_docs = files.len();
    for f in &files {
        let body = std::fs::read(f).expect("read fixture");
        let name = f
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string();
        run(name, &body, "application/fhir+json", None);
    }
    for (name, body, ct) in synthetic_negatives() {
        let route = if name.starts_with("provider-route") {
            Some("provider-directory")
        } else {
            None
        };
        run(
            name,
            body.as_bytes(),
            ct.unwrap_or("application/fhir+json"),
            route,
        );
    }
    let rate = fp_docs.len() as f64 / docs as f64;
    let mut report = format!(
        "NEGATIVES: {docs} documents ({fhir_docs} FHIR R4 conformance examples, {} synthetic), {} KiB; {} with a finding, false-positive rate {:.3} %\n\n",
        docs - fhir_docs,
        bytes / 1024,
        fp_docs.len(),
        rate * 100.0
    );
    report.push_str("| Rule | Findings on negative documents |\n|---|---:|\n");
    for (r, n) in &by_rule {
        report.push_str(&format!("| {r} | {n} |\n"));
    }
    report.push('\n');
    let mut full = report.clone();
    for d in &fp_docs {
        full.push_str(&format!("- FP {d}\n"));
    }
    for d in fp_docs.iter().take(40) {
        report.push_str(&format!("- FP {d}\n"));
    }
    write_report("negatives", &full);
    println!("{report}");
    assert!(
        rate <= 0.001,
        "false-positive rate {:.4} above 0.1 %:\n{report}",
        rate
    );
}

fn write_report(name: &str, text: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/accuracy");
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = std::fs::write(dir.join(format!("{name}.md")), text);
    }
}

/// Structural detectors: Synthea-style values that fail validation but sit in PHI fields, in
/// FHIR JSON (alone and inside a Bundle) and HL7 v2.
#[test]
fn structural_detectors_recall() {
    let e = engine();
    let limits = Limits::default();
    let mut r = Lcg(7);
    let mut total = 0;
    let mut hit = 0;
    let mut misses = Vec::new();
    let mut rows: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for i in 0..20 {
        let ssn999 = format!("999-{}-{}", r.digits(2), r.digits(4));
        let npi9999 = format!("9999{}", r.digits(6));
        let patient = format!(
            r#"{{"resourceType":"Patient","id":"p{i}","identifier":[{{"system":"http://hl7.org/fhir/sid/us-ssn","value":"{ssn999}"}},{{"system":"http://hl7.org/fhir/sid/us-npi","value":"{npi9999}"}},{{"type":{{"coding":[{{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"MR"}}]}},"value":"{}"}},{{"system":"urn:oid:2.16.840.1.113883.4.3.25","value":"S{}"}}],"name":[{{"family":"Synthetic{i}","given":["Pat"]}}],"telecom":[{{"system":"phone","value":"555-{}-{}"}}],"address":[{{"line":["{} Main St"],"city":"Springfield","postalCode":"0{}"}}],"birthDate":"19{}-0{}-1{}"}}"#,
            r.digits(8),
            r.digits(8),
            r.digits(3),
            r.digits(4),
            1 + r.below(999),
            r.digits(4),
            r.digits(2),
            1 + r.below(9),
            r.below(10)
        );
        let bundle = format!(
            r#"{{"resourceType":"Bundle","type":"collection","entry":[{{"resource":{patient}}}]}}"#
        );
        let hl7 = format!(
            "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|M{i}|P|2.5\rPID|1||{}^^^H^MR||SYNTHETIC{i}^PAT||19{}0{}1{}|F|||{} MAIN ST^^SPRINGFIELD^MA^0{}||555{}{}||||||{}|S{}\r",
            r.digits(8),
            r.digits(2),
            1 + r.below(9),
            r.below(10),
            1 + r.below(999),
            r.digits(4),
            r.digits(3),
            r.digits(4),
            ssn999.replace('-', ""),
            r.digits(8)
        );
        let cases: [(&str, &str, &[&str]); 3] = [
            (
                "fhir-json",
                &patient,
                &[
                    "fhir-identifier-ssn",
                    "fhir-identifier-npi",
                    "fhir-identifier-mrn",
                    "identifier-driver-license",
                    "fhir-patient-name",
                    "fhir-patient-telecom",
                    "fhir-patient-address",
                    "fhir-patient-birthdate",
                ],
            ),
            (
                "fhir-bundle",
                &bundle,
                &[
                    "fhir-identifier-ssn",
                    "fhir-patient-name",
                    "fhir-patient-birthdate",
                ],
            ),
            (
                "hl7v2",
                &hl7,
                &[
                    "fhir-identifier-ssn",
                    "fhir-identifier-mrn",
                    "identifier-driver-license",
                    "fhir-patient-name",
                    "fhir-patient-telecom",
                    "fhir-patient-address",
                    "fhir-patient-birthdate",
                ],
            ),
        ];
        for (carrier, body, want) in cases {
            let ct = if carrier == "hl7v2" {
                "x-application/hl7-v2+er7"
            } else {
                "application/fhir+json"
            };
            let s = e
                .scan(
                    &Part::Body {
                        content_type: Some(ct),
                        content_encoding: None,
                        bytes: body.as_bytes(),
                    },
                    &limits,
                )
                .expect("scan");
            for rule in want {
                total += 1;
                let row = rows.entry(rule).or_default();
                row.0 += 1;
                if s.findings.iter().any(|f| f.rule_id == *rule) {
                    hit += 1;
                    row.1 += 1;
                } else {
                    misses.push(format!("{rule} in {carrier}"));
                }
            }
        }
    }
    let mut report = format!(
        "STRUCTURAL: {hit}/{total} detected ({:.2} %)\n\n| Structural rule | Cases | Detected |\n|---|---:|---:|\n",
        100.0 * hit as f64 / total as f64
    );
    for (rule, (t, h)) in &rows {
        report.push_str(&format!("| {rule} | {t} | {h} |\n"));
    }
    for m in misses.iter().take(20) {
        report.push_str(&format!("- miss {m}\n"));
    }
    write_report("structural", &report);
    println!("{report}");
    assert!(hit as f64 >= 0.99 * total as f64, "{report}");
}

/// Evasions beyond the issue's list, reported (not asserted) so docs/accuracy.md can state
/// what the engine does not see through.
#[test]
fn known_hard_cases_report() {
    let e = engine();
    let limits = Limits::default();
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "spaced digits",
            "us-ssn",
            "text/plain",
            "SSN 5 3 6 2 2 1 2 3 4",
        ),
        (
            "mixed separators",
            "us-ssn",
            "text/plain",
            "SSN 536-22.1234",
        ),
        (
            "split across JSON strings",
            "us-ssn",
            "application/json",
            r#"{"ssn":["536","22","1234"]}"#,
        ),
        (
            "split across JSON keys",
            "us-ssn",
            "application/json",
            r#"{"536-22":"1234"}"#,
        ),
        (
            "hex-encoded",
            "us-ssn",
            "text/plain",
            "SSN 3533362d32322d31323334",
        ),
        (
            "words for digits",
            "us-ssn",
            "text/plain",
            "SSN five three six two two one two three four",
        ),
        (
            "bare 9 digits, no context",
            "us-ssn",
            "text/plain",
            "ref 536221234",
        ),
        ("glued both sides", "us-ssn", "text/plain", "SSN536221234X"),
        (
            "JSON number in exponent form",
            "us-ssn",
            "application/json",
            r#"{"ssn":5.36221234e8}"#,
        ),
        ("MBI lowercase", "us-mbi", "text/plain", "MBI 1eg4-te5-mk73"),
    ];
    let mut report = String::from("KNOWN-HARD (beyond the issue's evasion list; reported, not asserted)\n\n| Case | Detector | Detected |\n|---|---|---|\n");
    for (name, rule, ct, body) in cases {
        let s = e
            .scan(
                &Part::Body {
                    content_type: Some(ct),
                    content_encoding: None,
                    bytes: body.as_bytes(),
                },
                &limits,
            )
            .expect("scan");
        let found = s.findings.iter().any(|f| f.rule_id == *rule);
        report.push_str(&format!(
            "| {name} | {rule} | {} |\n",
            if found { "yes" } else { "**no**" }
        ));
    }
    write_report("known-hard", &report);
    println!("{report}");
}

// ---------------------------------------------------------------------------------------------
// Issue 14, engine classes 1-6 (legacy JSON key names, request headers and cookies, contact data
// out of a patient context, dotted numeric identifiers, short labelled values, base64 without a
// label). Generated positives and negatives in several carriers, reported per class to
// target/accuracy/issue14-engine.md (docs/accuracy.md reproduces it).
// ---------------------------------------------------------------------------------------------

/// One generated case: class, description of the carrier, content type, body, and the rule
/// expected (`None`: a negative, no finding of any rule other than the FHIR structural ones).
/// A case with a `header` name is scanned as that request header, `body` being its value.
struct ClassCase {
    class: &'static str,
    carrier: &'static str,
    header: Option<String>,
    content_type: String,
    body: Vec<u8>,
    expect: Option<&'static str>,
}

/// The words of a field name written in one of the styles legacy APIs use.
fn key_style(words: &[&str], style: usize) -> String {
    let cap = |w: &str| {
        let mut c = w.chars();
        c.next()
            .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
            .unwrap_or_default()
    };
    match style % 6 {
        0 => words
            .iter()
            .enumerate()
            .map(|(i, w)| if i == 0 { w.to_string() } else { cap(w) })
            .collect(),
        1 => words.iter().map(|w| cap(w)).collect(),
        2 => words.join("_"),
        3 => words.join("-"),
        4 => words.join("_").to_ascii_uppercase(),
        _ => format!(
            "member.{}",
            words.iter().map(|w| cap(w)).collect::<String>()
        ),
    }
}

/// Legacy carriers for a (field name, value): JSON string, JSON number (digits only), nested
/// object, name/value pair, form field, multipart field.
fn legacy_carriers(key: &str, value: &str, numeric: bool) -> Vec<(&'static str, String, Vec<u8>)> {
    let json = "application/json".to_string();
    let mut out = vec![
        ("json string", json.clone(), format!(r#"{{"{key}":"{value}"}}"#).into_bytes()),
        (
            "json nested",
            json.clone(),
            format!(r#"{{"member":{{"id":7,"{key}":"{value}"}}}}"#).into_bytes(),
        ),
        (
            "json name/value",
            json.clone(),
            format!(r#"{{"fields":[{{"field":"{key}","value":"{value}"}}]}}"#).into_bytes(),
        ),
        (
            "form",
            "application/x-www-form-urlencoded".to_string(),
            format!("a=1&{key}={value}").into_bytes(),
        ),
        (
            "multipart",
            "multipart/form-data; boundary=XB".to_string(),
            format!(
                "--XB\r\nContent-Disposition: form-data; name=\"{key}\"\r\n\r\n{value}\r\n--XB--\r\n"
            )
            .into_bytes(),
        ),
    ];
    if numeric && !value.starts_with('0') && value.bytes().all(|b| b.is_ascii_digit()) {
        out.push((
            "json number",
            json,
            format!(r#"{{"{key}":{value}}}"#).into_bytes(),
        ));
    }
    out
}

fn gen_mrn(r: &mut Lcg) -> String {
    match r.below(3) {
        0 => {
            let (first, len) = (1 + r.below(9), 6 + r.below(4) as usize);
            format!("{first}{}", r.digits(len))
        }
        1 => format!("A{}", r.digits(7)),
        _ => format!("{}-{}", r.digits(3), r.digits(5)),
    }
}

fn gen_dob(r: &mut Lcg) -> String {
    let (y, m, d) = (1930 + r.below(80), 1 + r.below(12), 1 + r.below(28));
    if r.below(2) == 0 {
        format!("{y}-{m:02}-{d:02}")
    } else {
        format!("{m:02}/{d:02}/{y}")
    }
}

fn class_cases() -> Vec<ClassCase> {
    let mut r = Lcg(0x1414_1414);
    let mut out = Vec::new();
    let push = |out: &mut Vec<ClassCase>, class, carrier, ct: String, body, expect| {
        out.push(ClassCase {
            class,
            carrier,
            header: None,
            content_type: ct,
            body,
            expect,
        })
    };
    // Class 1 positives: identifier field names in every style × carriers.
    let names: &[(&[&str], &str, Gen)] = &[
        (&["social", "security", "number"], "us-ssn", |r| {
            gen_ssn(r).replace('-', "")
        }),
        (&["patient", "ssn"], "us-ssn", |r| {
            gen_ssn(r).replace('-', "")
        }),
        (&["pt", "SSN"], "us-ssn", |r| gen_ssn(r).replace('-', "")),
        (&["medical", "record", "number"], "mrn-keyword", gen_mrn),
        (&["patient", "mrn"], "mrn-keyword", gen_mrn),
        (&["date", "of", "birth"], "dob-keyword", gen_dob),
        (&["dob"], "dob-keyword", gen_dob),
        (&["medicare", "id"], "us-mbi", |r| {
            gen_mbi(r).replace('-', "")
        }),
    ];
    for (words, rule, gen) in names {
        for style in 0..6 {
            for _ in 0..3 {
                let key = key_style(words, style);
                let value = gen(&mut r);
                for (carrier, ct, body) in legacy_carriers(&key, &value, true) {
                    push(
                        &mut out,
                        "1 legacy JSON keys",
                        carrier,
                        ct,
                        body,
                        Some(*rule),
                    );
                }
            }
        }
    }
    // Class 1 negatives: the same value shapes under business field names.
    let business: &[&[&str]] = &[
        &["order", "number"],
        &["invoice", "id"],
        &["security", "group", "id"],
        &["social", "media", "id"],
        &["record", "count"],
        &["date", "of", "service"],
        &["claim", "total", "cents"],
        &["tracking", "number"],
    ];
    for words in business {
        for style in 0..6 {
            for _ in 0..3 {
                let key = key_style(words, style);
                let value = match r.below(3) {
                    0 => gen_ssn(&mut r).replace('-', ""),
                    1 => gen_mrn(&mut r),
                    _ => gen_dob(&mut r),
                };
                for (carrier, ct, body) in legacy_carriers(&key, &value, true) {
                    push(&mut out, "1 legacy JSON keys", carrier, ct, body, None);
                }
            }
        }
    }
    // Class 5: labels followed by a record number (positive) or by a version, count or date.
    for _ in 0..40 {
        let mrn = gen_mrn(&mut r);
        let label =
            ["MRN:", "MRN", "mrn#", "Medical record number", "chart #"][r.below(5) as usize];
        let pos = format!("{label} {mrn}");
        let negs = [
            format!("{label} {}.{}", r.below(10), r.below(10)),
            format!("{label} v{}.{}.{}", r.below(10), r.below(20), r.below(10)),
            format!("{label} count {}", r.below(1000)),
            format!("{label} {}", gen_dob(&mut r).replace('/', "-")),
            format!("{label} {}", r.below(100)),
        ];
        for (text, expect) in
            std::iter::once((pos, Some("mrn-keyword"))).chain(negs.into_iter().map(|n| (n, None)))
        {
            push(
                &mut out,
                "5 short labelled values",
                "text",
                "text/plain".into(),
                text.clone().into_bytes(),
                expect,
            );
            push(
                &mut out,
                "5 short labelled values",
                "json note",
                "application/json".into(),
                format!(r#"{{"note":"{text}"}}"#).into_bytes(),
                expect,
            );
            let q = text
                .replace(' ', "+")
                .replace('#', "%23")
                .replace(':', "%3A")
                .replace('/', "%2F");
            push(
                &mut out,
                "5 short labelled values",
                "form",
                "application/x-www-form-urlencoded".into(),
                format!("comment={q}").into_bytes(),
                expect,
            );
        }
    }
    // Class 6: base64-wrapped bare identifiers, labelled by the carrier or not.
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    for _ in 0..40 {
        let ssn = gen_ssn(&mut r).replace('-', "");
        let v = b64(&ssn);
        let mrn_plain = gen_mrn(&mut r);
        let mrn = b64(&mrn_plain);
        let json = "application/json".to_string();
        let positives = [
            ("json key", format!(r#"{{"ssn":"{v}"}}"#), "us-ssn"),
            (
                "json split key",
                format!(r#"{{"SocialSecurityNumber":"{v}"}}"#),
                "us-ssn",
            ),
            (
                "json sibling type",
                format!(r#"{{"type":"SSN","value":"{v}"}}"#),
                "us-ssn",
            ),
            (
                "json name/value",
                format!(r#"{{"name":"patient_ssn","value":"{v}"}}"#),
                "us-ssn",
            ),
            (
                "json key (mrn)",
                format!(r#"{{"patientMrn":"{mrn}"}}"#),
                "mrn-keyword",
            ),
        ];
        for (carrier, body, rule) in positives {
            // Base64 runs under 12 characters (9 decoded bytes) are not decoded in free
            // fields (MIN_BASE64_RUN): reported as a known limit, not part of the target.
            let class = if rule == "mrn-keyword" && mrn_plain.len() < 9 {
                "known limit: base64 under 9 decoded bytes"
            } else {
                "6 base64 without a label"
            };
            push(
                &mut out,
                class,
                carrier,
                json.clone(),
                body.into_bytes(),
                Some(rule),
            );
        }
        push(
            &mut out,
            "6 base64 without a label",
            "form",
            "application/x-www-form-urlencoded".into(),
            format!("ssn={}", v.replace('=', "%3D").replace('+', "%2B")).into_bytes(),
            Some("us-ssn"),
        );
        let negatives = [
            ("json unlabelled", format!(r#"{{"payload":"{v}"}}"#)),
            ("json business key", format!(r#"{{"orderToken":"{v}"}}"#)),
            (
                "json sibling type",
                format!(r#"{{"type":"order","value":"{v}"}}"#),
            ),
            (
                "json unlabelled (mrn shape)",
                format!(r#"{{"blob":"{mrn}"}}"#),
            ),
        ];
        for (carrier, body) in negatives {
            push(
                &mut out,
                "6 base64 without a label",
                carrier,
                json.clone(),
                body.into_bytes(),
                None,
            );
        }
        push(
            &mut out,
            "6 base64 without a label",
            "form",
            "application/x-www-form-urlencoded".into(),
            format!("blob={}", v.replace('=', "%3D").replace('+', "%2B")).into_bytes(),
            None,
        );
    }
    // Class 2: identifiers in custom request headers and cookies (the cookie name is context);
    // negatives are the same value shapes in headers and cookies named for business data.
    let header = |out: &mut Vec<ClassCase>, carrier, name: &str, value: String, expect| {
        out.push(ClassCase {
            class: "2 request headers and cookies",
            carrier,
            header: Some(name.to_string()),
            content_type: String::new(),
            body: value.into_bytes(),
            expect,
        })
    };
    for _ in 0..40 {
        let ssn = gen_ssn(&mut r);
        let bare = ssn.replace('-', "");
        let (mrn, dob) = (gen_mrn(&mut r), gen_dob(&mut r));
        header(
            &mut out,
            "custom header",
            "x-patient-ssn",
            bare.clone(),
            Some("us-ssn"),
        );
        header(
            &mut out,
            "custom header",
            "x-member-ssn",
            ssn.clone(),
            Some("us-ssn"),
        );
        header(
            &mut out,
            "free-text header",
            "x-note",
            format!("SSN {ssn}"),
            Some("us-ssn"),
        );
        header(
            &mut out,
            "custom header",
            "x-patient-mrn",
            mrn,
            Some("mrn-keyword"),
        );
        header(
            &mut out,
            "custom header",
            "x-patient-dob",
            dob.clone(),
            Some("dob-keyword"),
        );
        header(
            &mut out,
            "cookie pair",
            "cookie",
            format!("theme=dark; patient_ssn={bare}; lang=en"),
            Some("us-ssn"),
        );
        header(
            &mut out,
            "cookie pair",
            "cookie",
            format!("memberDob={dob}"),
            Some("dob-keyword"),
        );
        let order = gen_ssn(&mut r).replace('-', "");
        header(
            &mut out,
            "business header",
            "x-order-number",
            order.clone(),
            None,
        );
        header(
            &mut out,
            "business header",
            "x-correlation-token",
            order.clone(),
            None,
        );
        header(
            &mut out,
            "business header",
            "x-service-date",
            dob.clone(),
            None,
        );
        header(
            &mut out,
            "cookie pair",
            "cookie",
            format!("session={order}; cart={}", r.digits(9)),
            None,
        );
        header(
            &mut out,
            "user agent",
            "user-agent",
            format!(
                "ehr-client/{}.{}.{} build {order}",
                r.below(10),
                r.below(30),
                r.below(10)
            ),
            None,
        );
    }
    // Class 3: phone numbers and e-mail addresses inside a patient's context (person resources,
    // also as Bundle entries or contained, and free-text notes) or in a business context
    // (workforce, places, endpoints, the contacts of knowledge artifacts).
    let fhir = "application/fhir+json".to_string();
    for _ in 0..30 {
        let (phone, email) = (gen_phone(&mut r), gen_email(&mut r));
        let telecom = format!(
            r#""telecom":[{{"system":"phone","value":"{phone}"}},{{"system":"email","value":"{email}"}}]"#
        );
        let person = [
            (
                "Patient",
                format!(r#"{{"resourceType":"Patient",{telecom}}}"#),
            ),
            (
                "RelatedPerson",
                format!(r#"{{"resourceType":"RelatedPerson",{telecom}}}"#),
            ),
            (
                "Bundle entry Patient",
                format!(
                    r#"{{"resourceType":"Bundle","entry":[{{"resource":{{"resourceType":"Patient",{telecom}}}}}]}}"#
                ),
            ),
            (
                "contained Patient",
                format!(
                    r#"{{"resourceType":"Observation","contained":[{{"resourceType":"Patient",{telecom}}}]}}"#
                ),
            ),
        ];
        for (carrier, body) in person {
            for rule in ["us-phone", "email"] {
                push(
                    &mut out,
                    "3 contact data in context",
                    carrier,
                    fhir.clone(),
                    body.clone().into_bytes(),
                    Some(rule),
                );
            }
        }
        push(
            &mut out,
            "3 contact data in context",
            "note text",
            fhir.clone(),
            format!(
                r#"{{"resourceType":"Observation","note":[{{"text":"daughter's phone {phone}"}}]}}"#
            )
            .into_bytes(),
            Some("us-phone"),
        );
        push(
            &mut out,
            "3 contact data in context",
            "note text",
            fhir.clone(),
            format!(
                r#"{{"resourceType":"Condition","note":[{{"text":"patient email {email}"}}]}}"#
            )
            .into_bytes(),
            Some("email"),
        );
        for ty in [
            "Organization",
            "Practitioner",
            "PractitionerRole",
            "Location",
            "HealthcareService",
        ] {
            push(
                &mut out,
                "3 contact data in context",
                "business resource",
                fhir.clone(),
                format!(r#"{{"resourceType":"{ty}",{telecom}}}"#).into_bytes(),
                None,
            );
        }
        for ty in [
            "PlanDefinition",
            "ActivityDefinition",
            "TestScript",
            "Library",
        ] {
            push(
                &mut out,
                "3 contact data in context",
                "knowledge artifact contact",
                fhir.clone(),
                format!(r#"{{"resourceType":"{ty}","publisher":"Synthetic Health","contact":[{{"name":"CDS team",{telecom}}}]}}"#).into_bytes(),
                None,
            );
        }
        push(
            &mut out,
            "3 contact data in context",
            "business resource",
            fhir.clone(),
            format!(r#"{{"resourceType":"Endpoint","address":"mailto:{email}","contact":[{{"system":"phone","value":"{phone}"}}]}}"#).into_bytes(),
            None,
        );
        push(
            &mut out,
            "3 contact data in context",
            "contained business resource",
            fhir.clone(),
            format!(r#"{{"resourceType":"Patient","contained":[{{"resourceType":"Organization",{telecom}}}]}}"#).into_bytes(),
            None,
        );
    }
    // Class 4: SSN-shaped `###.##.####` pieces of longer dotted numeric chains (OIDs in value
    // set URLs, CDA roots, coding systems) are not SSNs; a labelled dotted SSN still is.
    for _ in 0..40 {
        let dotted = gen_ssn(&mut r).replace('-', ".");
        let oids = [
            format!("2.16.840.1.113883.3.464.1003.{dotted}"),
            format!("{dotted}.1.{}", r.below(50)),
            format!("1.3.6.1.4.1.{dotted}.{}", r.below(9)),
        ];
        for oid in oids {
            push(
                &mut out,
                "4 dotted numeric identifiers",
                "value set url",
                fhir.clone(),
                format!(r#"{{"resourceType":"Library","relatedArtifact":[{{"type":"depends-on","resource":"urn:oid:{oid}"}}]}}"#).into_bytes(),
                None,
            );
            push(
                &mut out,
                "4 dotted numeric identifiers",
                "coding system",
                fhir.clone(),
                format!(r#"{{"resourceType":"Measure","useContext":[{{"valueCodeableConcept":{{"coding":[{{"system":"urn:oid:{oid}","code":"a"}}]}}}}]}}"#).into_bytes(),
                None,
            );
            push(
                &mut out,
                "4 dotted numeric identifiers",
                "CDA root",
                "application/xml".into(),
                format!(r#"<ClinicalDocument><templateId root="{oid}"/></ClinicalDocument>"#)
                    .into_bytes(),
                None,
            );
            push(
                &mut out,
                "4 dotted numeric identifiers",
                "text",
                "text/plain".into(),
                format!("value set {oid} (ssn list)").into_bytes(),
                None,
            );
        }
        for (carrier, ct, body) in [
            ("text", "text/plain", format!("SSN {dotted}.")),
            (
                "text",
                "text/plain",
                format!("patient ssn: {dotted}, admitted"),
            ),
            (
                "json note",
                "application/json",
                format!(r#"{{"note":"ssn {dotted}"}}"#),
            ),
            (
                "form",
                "application/x-www-form-urlencoded",
                format!("ssn={dotted}"),
            ),
            ("xml", "application/xml", format!("<ssn>{dotted}</ssn>")),
        ] {
            push(
                &mut out,
                "4 dotted numeric identifiers",
                carrier,
                ct.into(),
                body.into_bytes(),
                Some("us-ssn"),
            );
        }
    }
    out
}

#[test]
fn issue14_engine_classes() {
    let e = engine();
    let limits = Limits::default();
    // class → (positives, detected, negatives, false positives, misses)
    let mut per: BTreeMap<&str, (usize, usize, usize, usize, Vec<String>)> = BTreeMap::new();
    for c in class_cases() {
        let part = match &c.header {
            Some(name) => Part::Header {
                name,
                value: &c.body,
            },
            None => Part::Body {
                content_type: Some(&c.content_type),
                content_encoding: None,
                bytes: &c.body,
            },
        };
        let s = e.scan(&part, &limits).expect("scan");
        let row = per.entry(c.class).or_default();
        match c.expect {
            Some(rule) => {
                row.0 += 1;
                if s.findings.iter().any(|f| f.rule_id == rule) {
                    row.1 += 1;
                } else {
                    row.4.push(format!("miss: {rule} in {}", c.carrier));
                }
            }
            None => {
                row.2 += 1;
                let fp: Vec<&str> = s
                    .findings
                    .iter()
                    .map(|f| f.rule_id.as_str())
                    .filter(|r| !r.starts_with("fhir-"))
                    .collect();
                if !fp.is_empty() {
                    row.3 += 1;
                    row.4
                        .push(format!("false positive: {} in {}", fp.join(","), c.carrier));
                }
            }
        }
    }
    let mut report = String::from(
        "ISSUE 14 ENGINE CLASSES\n\n| Class | Positives | Recall | Negatives | False positives |\n|---|---|---|---|---|\n",
    );
    let mut ok = true;
    for (class, (p, d, n, fp, misses)) in &per {
        let recall = *d as f64 / (*p).max(1) as f64;
        let rate = *fp as f64 / (*n).max(1) as f64;
        ok &= class.starts_with("known limit") || (recall >= 0.99 && rate <= 0.001);
        report.push_str(&format!(
            "| {class} | {p} | {:.2} % | {n} | {fp} ({:.2} %) |\n",
            recall * 100.0,
            rate * 100.0
        ));
        let mut distinct: Vec<&String> = misses.iter().collect();
        distinct.sort();
        distinct.dedup();
        for m in distinct.iter().take(20) {
            report.push_str(&format!("|   {m} | | | | |\n"));
        }
    }
    write_report("issue14-engine", &report);
    println!("{report}");
    assert!(ok, "a class is below target:\n{report}");
}

// ---------------------------------------------------------------------------------------------
// Issue 14 (classes 3 and 4): the whole FHIR R4 examples package, every resource type.
//
// Person resources (Patient, RelatedPerson, Person), Bundles that contain one and resources
// with a contained one are positives; every other example is a negative unless it is listed
// in FHIR_PHI_EXCEPTIONS (an example that really carries patient PHI, with the reason, also
// in docs/accuracy.md). The package is read from PHI_GATEWAY_FHIR_EXAMPLES, else from
// target/fhir-examples/package (`.ci/setup test` fetches it there with npm); without it the
// test says so and passes, unless PHI_GATEWAY_REQUIRE_FHIR_EXAMPLES is set (`make test`).

/// The resource types whose data is about a person receiving care (or related to one).
const PERSON_TYPES: &[&str] = &["Patient", "RelatedPerson", "Person"];

/// Examples of other resource types that really carry patient PHI: (file, reason). They are
/// neither positives nor negatives.
const FHIR_PHI_EXCEPTIONS: &[(&str, &str)] = &[
    (
        "Bundle-101.json",
        "report narrative and PDF name the patient with an MRN (`COYOTE (MRN: 23453)`)",
    ),
    (
        "Bundle-bundle-search-warning.json",
        "a patient search by MRN (`patient.identifier=…mrn|123456`) echoed in the OperationOutcome",
    ),
    (
        "Bundle-dg2.json",
        "report narrative and subject name the patient with an MRN (`Chalmers (MRN: 12345)`)",
    ),
    (
        "Bundle-hla-1.json",
        "report narrative names the patient with an MRN (`Mary Chalmers (MRN:12345)`)",
    ),
    (
        "Bundle-lipids.json",
        "report narrative names the patient with an MRN (`COYOTE (MRN: 23453)`)",
    ),
    (
        "Bundle-report.json",
        "subject display and narrative: patient name with an MRN (`Everywoman, Eve A, MRN: …`)",
    ),
    (
        "DiagnosticReport-102.json",
        "report narrative carries the patient's date of birth (`DOB 10/02/1974`)",
    ),
    (
        "DiagnosticReport-pap.json",
        "report narrative: patient name, DOB and MRN",
    ),
    (
        "ImagingStudy-example-xr.json",
        "narrative names the patient with an MRN (`John Smith (MRN: 09236)`)",
    ),
    (
        "ImagingStudy-example.json",
        "narrative names the patient with an MRN (`John Smith (MRN: 09236)`)",
    ),
    (
        "List-current-allergies.json",
        "narrative: patient name, DOB and MRN (`Peter Chalmers, DOB = …, MRN = 12345`)",
    ),
    (
        "Media-sound.json",
        "narrative names the patient with an MRN (`Henry Levin (MRN 12345)`)",
    ),
    (
        "Media-xray.json",
        "narrative names the patient with an MRN (`Henry Levin (MRN 12345)`)",
    ),
    (
        "MessageHeader-1cbdfb97-5859-48a4-8301-d54eab818d68.json",
        "narrative names the patient with an MRN (`Peter James CHALMERS (Jim), MRN: 12345`)",
    ),
];

/// The package directory, or `None` (after saying so) when it is missing and not required:
/// with `PHI_GATEWAY_REQUIRE_FHIR_EXAMPLES` set (as `make test` sets it) a missing package fails.
fn fhir_package_or_skip() -> Option<PathBuf> {
    let dir = fhir_package_dir();
    if dir.is_none() {
        assert!(
            std::env::var_os("PHI_GATEWAY_REQUIRE_FHIR_EXAMPLES").is_none(),
            "FHIR R4 examples package missing: run tests/fetch-fhir-examples.sh"
        );
        println!("FHIR R4 examples package not found: run tests/fetch-fhir-examples.sh");
    }
    dir
}

/// The package's JSON files, sorted.
fn package_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("package dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
}

fn fhir_package_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("PHI_GATEWAY_FHIR_EXAMPLES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fhir-examples/package")
        });
    dir.is_dir().then_some(dir)
}

/// JSON Pointers of every person resource in `v` (the document itself, Bundle entries,
/// contained resources, at any depth).
fn person_pointers(v: &serde_json::Value, at: &str, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            if m.get("resourceType")
                .and_then(|t| t.as_str())
                .is_some_and(|t| PERSON_TYPES.contains(&t))
            {
                out.push(at.to_string());
            }
            for (k, x) in m {
                person_pointers(x, &format!("{at}/{k}"), out);
            }
        }
        serde_json::Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                person_pointers(x, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// Whether a person resource carries an identifier the default rules cover: a name, a
/// telecom value, an address line/city/postal code, a full birth date, or an identifier
/// under the SSN, NPI, DEA, MBI or driver's-licence systems or typed MR.
fn person_covered(p: &serde_json::Value) -> bool {
    let s = |v: &serde_json::Value| v.as_str().is_some_and(|x| !x.trim().is_empty());
    let arr = |k: &str| {
        p.get(k)
            .and_then(|x| x.as_array())
            .cloned()
            .unwrap_or_default()
    };
    let name = arr("name").iter().any(|n| {
        n.get("family").is_some_and(s)
            || n.get("text").is_some_and(s)
            || n.get("given")
                .and_then(|g| g.as_array())
                .is_some_and(|g| g.iter().any(s))
    });
    let telecom = arr("telecom").iter().any(|t| t.get("value").is_some_and(s));
    let address = arr("address").iter().any(|a| {
        a.get("city").is_some_and(s)
            || a.get("postalCode").is_some_and(s)
            || a.get("line")
                .and_then(|l| l.as_array())
                .is_some_and(|l| l.iter().any(s))
    });
    let birth = p
        .get("birthDate")
        .and_then(|b| b.as_str())
        .is_some_and(|b| b.len() >= 7);
    let ident = arr("identifier").iter().any(|i| {
        let text = i.to_string();
        [
            "sid/us-ssn",
            "113883.4.1\"",
            "sid/us-npi",
            "USDEANumber",
            "cmsMBI",
            "113883.4.3.",
            "\"MR\"",
        ]
        .iter()
        .any(|k| text.contains(k))
    });
    name || telecom || address || birth || ident
}

#[derive(Default)]
struct TypeRow {
    positives: usize,
    detected: usize,
    negatives: usize,
    flagged: usize,
    excepted: usize,
}

/// One scanned example: file name, resource type, the parsed document, (rule, location) of
/// every finding.
type ScannedExample = (String, String, serde_json::Value, Vec<(String, String)>);

/// Scans every example of the package.
fn scan_fhir_package(dir: &Path) -> Vec<ScannedExample> {
    let files = package_files(dir);
    let e = engine();
    // Four Bundles of conformance resources are 9-35 MB, over the default 16 MiB decoded-size
    // limit (a gateway refuses such a body with 413): raise it so their content is scanned.
    let limits = Limits {
        max_decoded_bytes: 64 << 20,
        ..Limits::default()
    };
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(4);
    let chunks: Vec<&[PathBuf]> = files.chunks(files.len().div_ceil(workers).max(1)).collect();
    std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                let (e, limits) = (&e, &limits);
                s.spawn(move || {
                    let mut out = Vec::new();
                    for f in chunk {
                        let body = std::fs::read(f).expect("read example");
                        let Ok(doc) = serde_json::from_slice::<serde_json::Value>(&body) else {
                            continue;
                        };
                        let ty = doc["resourceType"].as_str().unwrap_or("?").to_string();
                        let scan = e
                            .scan(
                                &Part::Body {
                                    content_type: Some("application/fhir+json"),
                                    content_encoding: None,
                                    bytes: &body,
                                },
                                limits,
                            )
                            .expect("scan");
                        let found = scan
                            .findings
                            .iter()
                            .map(|f| (f.rule_id.clone(), f.location.clone()))
                            .collect();
                        let name = f
                            .file_name()
                            .and_then(|n| n.to_str())
                            .unwrap_or("")
                            .to_string();
                        out.push((name, ty, doc, found));
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("worker"))
            .collect()
    })
}

#[test]
fn fhir_r4_package_every_resource_type() {
    let Some(dir) = fhir_package_or_skip() else {
        return;
    };
    let started = std::time::Instant::now();
    let results = scan_fhir_package(&dir);
    let elapsed = started.elapsed();
    assert!(
        results.len() >= 5000,
        "package incomplete: {}",
        results.len()
    );
    let mut rows: BTreeMap<String, TypeRow> = BTreeMap::new();
    let mut by_rule: BTreeMap<String, usize> = BTreeMap::new();
    let (mut pos, mut det, mut neg, mut fp, mut uncovered) = (0, 0, 0, 0, Vec::new());
    let (mut flagged, mut misses) = (Vec::new(), Vec::new());
    for (name, ty, doc, found) in &results {
        let row = rows.entry(ty.clone()).or_default();
        let mut people = Vec::new();
        person_pointers(doc, "", &mut people);
        if let Some((_, why)) = FHIR_PHI_EXCEPTIONS.iter().find(|(f, _)| f == name) {
            row.excepted += 1;
            flagged.push(format!("{name} (exception: {why})"));
            continue;
        }
        if !people.is_empty() {
            let covered: Vec<&String> = people
                .iter()
                .filter(|p| doc.pointer(p).is_some_and(person_covered))
                .collect();
            if covered.is_empty() {
                uncovered.push(name.clone());
                continue;
            }
            // Detected: at least one finding inside a covered person resource.
            let hit = found.iter().any(|(_, loc)| {
                covered.iter().any(|p| {
                    loc.strip_prefix("body:")
                        .is_some_and(|l| l.starts_with(&format!("{p}/")))
                })
            });
            row.positives += 1;
            pos += 1;
            if hit {
                row.detected += 1;
                det += 1;
            } else {
                misses.push(name.clone());
            }
            continue;
        }
        row.negatives += 1;
        neg += 1;
        if !found.is_empty() {
            row.flagged += 1;
            fp += 1;
            let mut rules: Vec<String> = found.iter().map(|(r, l)| format!("{r} at {l}")).collect();
            rules.dedup();
            for (r, _) in found {
                *by_rule.entry(r.clone()).or_default() += 1;
            }
            flagged.push(format!("{name}: {}", rules.join(", ")));
        }
    }
    let recall = det as f64 / pos.max(1) as f64;
    let rate = fp as f64 / neg.max(1) as f64;
    let mut report = format!(
        "FHIR R4 PACKAGE: {} examples, {} resource types, scanned in {:.1} s\n\
         positives (person resources / Bundles with one, carrying covered identifiers): {det}/{pos} detected, recall {:.2} %\n\
         negatives: {fp}/{neg} flagged, false-positive rate {:.3} %\n\
         excepted: {}; person resources without covered identifiers: {}\n\n",
        results.len(),
        rows.len(),
        elapsed.as_secs_f64(),
        recall * 100.0,
        rate * 100.0,
        FHIR_PHI_EXCEPTIONS.len(),
        uncovered.len()
    );
    report.push_str("| Resource type | Positives | Detected | Negatives | Flagged | Excepted |\n|---|---:|---:|---:|---:|---:|\n");
    for (ty, r) in &rows {
        report.push_str(&format!(
            "| {ty} | {} | {} | {} | {} | {} |\n",
            r.positives, r.detected, r.negatives, r.flagged, r.excepted
        ));
    }
    report.push_str("\n| Rule | Findings on negatives |\n|---|---:|\n");
    for (r, n) in &by_rule {
        report.push_str(&format!("| {r} | {n} |\n"));
    }
    report.push('\n');
    for f in &flagged {
        report.push_str(&format!("- flagged {f}\n"));
    }
    for m in &misses {
        report.push_str(&format!("- MISS {m}\n"));
    }
    for u in &uncovered {
        report.push_str(&format!("- not counted (no covered identifier) {u}\n"));
    }
    write_report("fhir-package", &report);
    println!("{report}");
    assert!(recall >= 0.99, "recall {recall:.4} below 99 %:\n{report}");
    assert!(
        rate <= 0.001,
        "false-positive rate {rate:.4} above 0.1 %:\n{report}"
    );
}

/// Every example of the FHIR R4 package, as published, made plain ASCII, and plain with one
/// synthetic SSN added as a last member: the default scan (whole-body check, then a walk
/// narrowed to the rules it could not prove dead) reports exactly what the full walk with
/// every rule reports (explain mode skips the check). Many published examples hold what the
/// check refuses (non-ASCII, XML entities, `\u` escapes in a narrative); the plain copies drop
/// those characters from every string, so that it runs on the package's real structures, and
/// the added SSN makes the walk that follows it a narrowed one in every document.
#[test]
fn fhir_r4_package_narrowed_walk_agrees_with_full_walk() {
    let Some(dir) = fhir_package_or_skip() else {
        return;
    };
    let mut files = package_files(&dir);
    // The 15 files over 1 MiB (112 MB of conformance Bundles, which `scan_fhir_package`
    // scans) would take most of this test's time, six scans each in a debug build, for a few
    // kinds of document the other 5,292 already cover.
    files.retain(|p| std::fs::metadata(p).is_ok_and(|m| m.len() <= 1 << 20));
    let e = engine();
    let limits = Limits::default();
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(4);
    let hits = |s: &phi_gateway::engine::Scan| -> Vec<(String, String, String)> {
        s.findings
            .iter()
            .map(|f| {
                (
                    f.rule_id.clone(),
                    f.location.clone(),
                    f.decode_chain.join(">"),
                )
            })
            .collect()
    };
    let (checked, disagree): (usize, Vec<String>) = std::thread::scope(|s| {
        let handles: Vec<_> = files
            .chunks(files.len().div_ceil(workers).max(1))
            .map(|chunk| {
                let (e, limits, hits) = (&e, &limits, &hits);
                s.spawn(move || {
                    let (mut checked, mut bad) = (0usize, Vec::new());
                    for f in chunk {
                        let body = std::fs::read(f).expect("read example");
                        let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(&body)
                        else {
                            continue;
                        };
                        plain_ascii(&mut value);
                        let plain = serde_json::to_vec_pretty(&value).expect("serialise");
                        let mut with_ssn = plain.clone();
                        if let Some(end) = with_ssn.iter().rposition(|&c| c == b'}') {
                            with_ssn.splice(end..end, *br#","_synthetic":"SSN 536-22-1234""#);
                        }
                        for (what, doc) in [
                            ("as published", &body),
                            ("plain ASCII", &plain),
                            ("plain ASCII with an SSN", &with_ssn),
                        ] {
                            let part = Part::Body {
                                content_type: Some("application/fhir+json"),
                                content_encoding: None,
                                bytes: doc,
                            };
                            let fast = e.scan(&part, limits).expect("scan");
                            let full = e
                                .scan_with(
                                    &part,
                                    limits,
                                    &phi_gateway::engine::ScanOptions::default().explained(true),
                                )
                                .expect("scan");
                            checked += 1;
                            if hits(&fast) != hits(&full) {
                                bad.push(format!("{} ({what})", f.display()));
                            }
                        }
                    }
                    (checked, bad)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("worker")).fold(
            (0, Vec::new()),
            |(n, mut bad), (c, b)| {
                bad.extend(b);
                (n + c, bad)
            },
        )
    });
    assert!(checked >= 15_000, "package incomplete: {checked} scans");
    assert!(
        disagree.is_empty(),
        "{} of {checked} scans disagree with the full walk: {:?}",
        disagree.len(),
        disagree.iter().take(10).collect::<Vec<_>>()
    );
}

/// Drops from every string of `v` what the whole-body check refuses (non-ASCII, `"` and `\`,
/// which serialise as escapes, control characters), keeping the structure.
fn plain_ascii(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::String(s) => {
            s.retain(|c| c.is_ascii() && !c.is_ascii_control() && c != '"' && c != '\\')
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(plain_ascii),
        serde_json::Value::Object(members) => members.values_mut().for_each(plain_ascii),
        _ => {}
    }
}
