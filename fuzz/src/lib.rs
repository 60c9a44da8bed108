//! Shared helpers of the fuzz targets: the default rule pack compiled once, the scan the proxy
//! runs, and encoders for the round-trip targets.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use phi_gateway::engine::rules::RuleSet;
use phi_gateway::engine::{Engine, Limits, Part, ScanOptions};

/// The engine over the built-in default rule pack (the same text as `rules/`), compiled on
/// first use: compiling it per input would cost more than the scan.
pub fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let sources: Vec<(PathBuf, String)> = phi_gateway::runtime::demo::DEFAULT_PACK
            .iter()
            .map(|(name, text)| (PathBuf::from(*name), (*text).to_string()))
            .collect();
        let rules = RuleSet::from_sources(&sources).expect("the default rule pack compiles");
        Engine::new(Arc::new(rules))
    })
}

/// The engine limits of a default configuration (what `scan` and the proxy use).
pub fn limits() -> Limits {
    Limits::default()
}

/// Scans a body the way the proxy does (`Engine::scan_with`), optionally with explanations
/// (`scan --explain`) and a route name. Errors are fine (they become 413/415/400 answers);
/// only panics, hangs and runaway memory are bugs.
pub fn scan_body(
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    body: &[u8],
    explain: bool,
) {
    let part = Part::Body {
        content_type,
        content_encoding,
        bytes: body,
    };
    let options = ScanOptions::route(Some("fhir")).explained(explain);
    let _ = engine().scan_with(&part, &limits(), &options);
}

/// Scans a JSON body twice, as the proxy does (the whole-body check first, then a walk with
/// the rules it could not prove dead, or none) and in explain mode (which always walks with
/// every rule), and panics when they disagree on a finding (rule, location, decode chain), an
/// encrypted location or the error. A disagreement is a finding the fast path lost, or one it
/// made up.
pub fn fast_path_agrees(body: &[u8]) {
    let part = Part::Body {
        content_type: Some("application/fhir+json"),
        content_encoding: None,
        bytes: body,
    };
    let summary = |explain: bool| {
        let options = ScanOptions::default().explained(explain);
        engine()
            .scan_with(&part, &limits(), &options)
            .map(|s| {
                let hits: Vec<(String, String, String)> = s
                    .findings
                    .iter()
                    .map(|f| {
                        (
                            f.rule_id.clone(),
                            f.location.clone(),
                            f.decode_chain.join(">"),
                        )
                    })
                    .collect();
                (hits, s.encrypted)
            })
            .map_err(|e| e.to_string())
    };
    let (fast, full) = (summary(false), summary(true));
    assert_eq!(fast, full, "the fast path and the full walk disagree");
}

/// A `Content-Encoding` coding the gateway decodes.
#[derive(Debug, Clone, Copy)]
pub enum Coding {
    /// gzip
    Gzip,
    /// zlib-wrapped deflate
    Zlib,
    /// raw deflate (also sent as `deflate`)
    RawDeflate,
    /// brotli
    Br,
    /// zstd
    Zstd,
}

impl Coding {
    /// The token for `Content-Encoding`.
    pub fn token(self) -> &'static str {
        match self {
            Coding::Gzip => "gzip",
            Coding::Zlib | Coding::RawDeflate => "deflate",
            Coding::Br => "br",
            Coding::Zstd => "zstd",
        }
    }

    /// Picks a coding from a byte.
    pub fn from_byte(b: u8) -> Coding {
        match b % 5 {
            0 => Coding::Gzip,
            1 => Coding::Zlib,
            2 => Coding::RawDeflate,
            3 => Coding::Br,
            _ => Coding::Zstd,
        }
    }

    /// Encodes `data` (fast settings: the fuzzer wants executions, not ratios).
    pub fn encode(self, data: &[u8]) -> Vec<u8> {
        let level = flate2::Compression::fast();
        match self {
            Coding::Gzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), level);
                e.write_all(data).expect("in-memory write");
                e.finish().expect("in-memory finish")
            }
            Coding::Zlib => {
                let mut e = flate2::write::ZlibEncoder::new(Vec::new(), level);
                e.write_all(data).expect("in-memory write");
                e.finish().expect("in-memory finish")
            }
            Coding::RawDeflate => {
                let mut e = flate2::write::DeflateEncoder::new(Vec::new(), level);
                e.write_all(data).expect("in-memory write");
                e.finish().expect("in-memory finish")
            }
            Coding::Br => {
                let mut out = Vec::new();
                {
                    let mut w = brotli::CompressorWriter::new(&mut out, 4096, 1, 22);
                    w.write_all(data).expect("in-memory write");
                }
                out
            }
            Coding::Zstd => zstd::encode_all(data, 1).expect("in-memory zstd"),
        }
    }
}

/// Content types the carriers distinguish, plus a few that only sniffing handles.
pub const CONTENT_TYPES: &[Option<&str>] = &[
    None,
    Some("application/json"),
    Some("application/fhir+json; charset=utf-8"),
    Some("application/x-www-form-urlencoded"),
    Some("x-application/hl7-v2+er7"),
    Some("multipart/form-data; boundary=XyZ"),
    Some("multipart/mixed; boundary=\"XyZ\""),
    Some("text/plain"),
    Some("text/plain; charset=utf-16"),
    Some("application/json; charset=utf-16le"),
    Some("application/fhir+xml"),
    Some("application/octet-stream"),
    Some("application/jose"),
    Some("multipart/form-data"),
];

/// Raw `Content-Encoding` values, including stacked, unknown and odd spellings.
pub const ENCODINGS: &[Option<&str>] = &[
    None,
    Some("gzip"),
    Some("deflate"),
    Some("br"),
    Some("zstd"),
    Some("x-gzip"),
    Some("identity"),
    Some("gzip, br"),
    Some("br, gzip, deflate, zstd"),
    Some("gzip, gzip, gzip, gzip, gzip"),
    Some(" GZIP ,, identity "),
    Some("compress"),
];

#[cfg(test)]
mod tests {
    /// The committed seeds of `fast_path_agrees` pass it (`cargo test --manifest-path
    /// fuzz/Cargo.toml --no-default-features --lib`, which needs no libFuzzer).
    #[test]
    fn fast_path_agrees_on_its_seeds() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds/fast_path_agrees");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).expect("seeds") {
            let body = std::fs::read(entry.expect("seed").path()).expect("read");
            super::fast_path_agrees(&body);
            n += 1;
        }
        assert!(n >= 4);
    }
}
