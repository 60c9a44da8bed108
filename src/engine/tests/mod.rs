//! End-to-end tests of the engine with the default rule pack (`rules/`). All data is synthetic
//! or a published specification example (see the detection note §4).
//!
//! One file per carrier or area; the shared helpers (the default-pack engine, scan shortcuts,
//! compressors, a custom-rule engine) are here.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use super::classify::tests::{b64, jwe, jws};
use super::*;

mod contact_scope;
mod encodings;
mod fast_path;
mod fhir;
mod hl7;
mod jose;
mod json;
mod legacy;
mod mechanics;
mod multipart;
mod request_parts;
mod structural;
mod text;

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
        match RuleSet::load_dir(&dir) {
            Ok(set) => Engine::new(Arc::new(set)),
            Err(e) => panic!("default pack: {e}"),
        }
    })
}

fn scan(part: Part<'_>) -> Scan {
    match engine().scan(&part, &Limits::default()) {
        Ok(s) => s,
        Err(e) => panic!("scan failed: {e}"),
    }
}

fn text(t: &str) -> Scan {
    scan(Part::Text(t))
}

fn body(ct: Option<&str>, enc: Option<&str>, bytes: &[u8]) -> Result<Scan, InspectError> {
    engine().scan(
        &Part::Body {
            content_type: ct,
            content_encoding: enc,
            bytes,
        },
        &Limits::default(),
    )
}

fn json(b: &str) -> Scan {
    match body(Some("application/json"), None, b.as_bytes()) {
        Ok(s) => s,
        Err(e) => panic!("scan failed: {e}"),
    }
}

/// (rule, location, chain) triples, for compact assertions.
fn hits(s: &Scan) -> Vec<(String, String, String)> {
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
}

fn has(s: &Scan, rule: &str, location: &str, chain: &str) -> bool {
    hits(s)
        .iter()
        .any(|(r, l, c)| r == rule && l == location && c == chain)
}

fn rule_hits(s: &Scan, rule: &str) -> usize {
    s.findings.iter().filter(|f| f.rule_id == rule).count()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).expect("write");
    e.finish().expect("finish")
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).expect("write");
    e.finish().expect("finish")
}

fn brotli(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
        w.write_all(data).expect("write");
    }
    out
}

fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(data, 3).expect("zstd")
}

const SSN_JSON: &str = r#"{"resourceType":"Patient","ssn":"536-22-1234"}"#;

const CLEAN_JSON: &str = r#"{"resourceType":"Patient","ssn":"redacted"}"#;

/// A small custom rule set for engine mechanics independent of the default pack.
fn custom(yaml: &str) -> Engine {
    match RuleSet::from_sources(&[(PathBuf::from("custom.yaml"), yaml.to_string())]) {
        Ok(set) => Engine::new(Arc::new(set)),
        Err(e) => panic!("{e}"),
    }
}

/// A body scan by `e` with the whole-body clean check (default options) and without it
/// (explain mode always walks the document).
fn scans_with(e: &Engine, content_type: &str, doc: &str) -> (Scan, Scan) {
    let part = Part::Body {
        content_type: Some(content_type),
        content_encoding: None,
        bytes: doc.as_bytes(),
    };
    let limits = Limits::default();
    let fast = ok(e.scan(&part, &limits));
    let full = ok(e.scan_with(&part, &limits, &ScanOptions::default().explained(true)));
    (fast, full)
}

// ---------------------------------------------------------------------------------------------
// Carriers added for issue 3: HL7 v2, multipart, XML references, heuristic base64, FHIR
// attachments, encrypted-field requirements, selectors, exceptions, explanations.

fn b64std(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn ok(r: Result<Scan, InspectError>) -> Scan {
    match r {
        Ok(s) => s,
        Err(e) => panic!("scan failed: {e}"),
    }
}

const ADT: &str = "MSH|^~\\&|ADT1|GOOD HEALTH HOSPITAL|GHH LAB|GHH|198808181126|SECURITY|ADT^A01^ADT_A01|MSG00001|P|2.5\r\
EVN|A01|200708181123\r\
PID|1||PATID1234^^^GHH^MR||EVERYMAN^ADAM^A^III||19610615|M||2106-3|2222 HOME STREET^^GREENSBORO^NC^27401-1020|GL|(555) 555-2004|(555)555-2004||S||PATID12345001^2^M10^ADT1^AN^A|536221234|987654^NC\r";
