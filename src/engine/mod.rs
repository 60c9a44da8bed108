//! The detection engine: finds PHI in one part of a request.
//!
//! Pure and synchronous — no I/O, no clocks, no shared mutable state — so the proxy can run it on
//! any thread, the CLI and the rule tests get exactly the proxy's behaviour, and a finding can be
//! reproduced from the request alone. The pipeline per part is
//!
//! 1. undo `Content-Encoding` under decompression-bomb limits (`decode`),
//! 2. pick a carrier (JSON, form, query, header, JOSE token, text) and split the input into
//!    segments with field context (`carrier/`),
//! 3. normalise Unicode look-alikes and percent-escapes (`normalize`),
//! 4. match, validate and score every enabled rule (`scan/`, `validate/`).
//!
//! Findings carry rule ids, log-safe locations and the decode chain — never the matched text.
//!
//! The rule language lives here too ([`rules`]: model, compiler, layering, the `rules test`
//! runner), with the YAML span parser it is written in ([`source`], which `config` reuses for
//! gateway.yaml). The engine is the bottom of the crate: it uses no other folder, and nothing
//! in it names pingora, tokio or `std::net` (`tests/layout.rs` fails the build otherwise), so
//! the proxy, `phi-gateway scan` and `rules test` all run exactly this code.

mod carrier;
mod classify;
mod decode;
pub(crate) mod fastpath;
#[doc(hidden)]
pub mod fuzzing;
mod hl7;
pub mod http;
mod mode;
mod normalize;
pub mod rules;
mod scan;
pub mod source;
#[doc(hidden)]
pub mod synthetic;
pub(crate) mod validate;

pub use classify::{classify_value, ValueClass};
pub use mode::Mode;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use crate::engine::rules::{Category, RuleSet, Severity};

use carrier::{ct_param, media_type, scan_form, scan_header, scan_payload, Base};
use scan::{FieldCtx, Loc, PartKind, Scanner, Segment};

/// Scans request parts against a shared, immutable [`RuleSet`].
#[derive(Debug, Clone)]
pub struct Engine {
    rules: Arc<RuleSet>,
}

impl Engine {
    /// An engine over `rules`. Cheap: all compilation happened when the rules were loaded.
    pub fn new(rules: Arc<RuleSet>) -> Engine {
        Engine { rules }
    }

    /// The rules this engine evaluates.
    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// Scans one part of a request. Findings come from `enforce` and `monitor` rules alike
    /// (each carries its rule's mode); `off` rules are never evaluated.
    ///
    /// Errors mean the part could not be inspected (unknown or corrupt encoding, limits); the
    /// caller must treat them as "not inspected", i.e. fail closed when enforcing.
    pub fn scan(&self, part: &Part<'_>, limits: &Limits) -> Result<Scan, InspectError> {
        scan_rules(&self.rules, part, limits, None, &ScanOptions::default())
    }

    /// Like [`Engine::scan`], with the request's route (for rules and exceptions scoped by
    /// `route:`) and optional explanations (validator results, context, near misses).
    pub fn scan_with(
        &self,
        part: &Part<'_>,
        limits: &Limits,
        options: &ScanOptions<'_>,
    ) -> Result<Scan, InspectError> {
        scan_rules(&self.rules, part, limits, None, options)
    }
}

impl Engine {
    /// Scans every part of a raw request the way the proxy does: the URL path, the query
    /// string, each header and the body (with its Content-Type and Content-Encoding). Findings
    /// of all parts are concatenated in that order.
    pub fn scan_request(
        &self,
        req: &http::RawRequest,
        limits: &Limits,
        options: &ScanOptions<'_>,
    ) -> Result<Scan, InspectError> {
        scan_request_rules(&self.rules, req, limits, options)
    }
}

/// [`Engine::scan_request`] over a rule set.
pub(crate) fn scan_request_rules(
    rules: &RuleSet,
    req: &http::RawRequest,
    limits: &Limits,
    options: &ScanOptions<'_>,
) -> Result<Scan, InspectError> {
    let mut out = Scan::default();
    let mut add = |s: Scan| {
        out.findings.extend(s.findings);
        out.encrypted.extend(s.encrypted);
        out.near_misses.extend(s.near_misses);
    };
    let scan = |part: &Part<'_>| scan_rules(rules, part, limits, None, options);
    add(scan(&Part::Path(&req.path))?);
    if let Some(q) = &req.query {
        add(scan(&Part::Query(q))?);
    }
    for (name, value) in &req.headers {
        add(scan(&Part::Header { name, value })?);
    }
    if !req.body.is_empty() {
        add(scan(&Part::Body {
            content_type: req.header("content-type"),
            content_encoding: req.header("content-encoding"),
            bytes: &req.body,
        })?);
    }
    Ok(out)
}

/// Per-request facts that narrow which rules apply.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct ScanOptions<'a> {
    /// The name of the route the request matched. Rules with `route:` selectors and
    /// exceptions with `routes:` only apply when this names one of their routes.
    pub route: Option<&'a str>,
    /// Record an [`Explanation`] on every finding and collect near misses.
    pub explain: bool,
    /// Whose message the part belongs to: rules apply by their `where` direction.
    pub message: Message,
}

/// Which message a scanned part belongs to; rules say where they apply with `where: request`
/// and `where: response` (neither named: both).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Message {
    /// A client's request (the proxy's request checks, `scan`, `rules test`).
    #[default]
    Request,
    /// An upstream response the leak guard holds (an error status): every rule that applies
    /// to responses, i.e. the PHI rules and the error signatures.
    Response,
    /// A 2xx response the leak guard monitors: its body is the resource asked for, PHI by
    /// design, so only the rules that name `response` explicitly (the error signatures) run.
    ResponseSignatures,
}

impl<'a> ScanOptions<'a> {
    /// Options for a request on `route`.
    pub fn route(route: Option<&'a str>) -> Self {
        ScanOptions {
            route,
            explain: false,
            message: Message::Request,
        }
    }

    /// The same options for a part of `message`.
    pub fn message(mut self, message: Message) -> Self {
        self.message = message;
        self
    }

    /// The same options with explanations switched on or off.
    pub fn explained(mut self, explain: bool) -> Self {
        self.explain = explain;
        self
    }
}

/// One part of an HTTP request.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Part<'a> {
    /// Raw query string without '?', still percent-encoded.
    Query(&'a str),
    /// Raw URL path, still percent-encoded. Scanned by rules whose `where` includes `query`
    /// (the URL is one place to a rule author), because REST APIs put identifiers in paths
    /// (`/patients/by-ssn/536-22-1234`).
    Path(&'a str),
    /// One request header (name lowercase), raw value bytes.
    Header {
        /// Lowercase header name.
        name: &'a str,
        /// Raw value bytes.
        value: &'a [u8],
    },
    /// The complete request body as received (possibly Content-Encoded).
    Body {
        /// The `Content-Type` header, if any.
        content_type: Option<&'a str>,
        /// The `Content-Encoding` header, if any.
        content_encoding: Option<&'a str>,
        /// The body bytes as received.
        bytes: &'a [u8],
    },
    /// Plain text with no carrier (used by rule inline tests and a future `scan` command).
    Text(&'a str),
}

/// Resource limits for one scan; exceeding one is an [`InspectError`], never a silent skip.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest body after decoding (bytes).
    pub max_decoded_bytes: usize,
    /// Largest decoded/compressed size ratio (applies beyond the first 1 MiB).
    pub max_expansion_ratio: u64,
    /// Deepest JSON nesting walked structurally; deeper documents are also scanned as text.
    pub max_json_depth: usize,
    /// Most stacked `Content-Encoding` layers (and nested JWS payloads).
    pub max_decode_layers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_decoded_bytes: 16 * 1024 * 1024,
            max_expansion_ratio: 100,
            max_json_depth: 64,
            max_decode_layers: 4,
        }
    }
}

/// The result of scanning one part.
#[derive(Debug, Default)]
pub struct Scan {
    /// Findings in stable order: by location (numbers compared numerically), then rule order.
    pub findings: Vec<Finding>,
    /// Locations of values classified as encrypted (JWE, PGP, age, …) and their format.
    pub encrypted: Vec<String>,
    /// Candidates that matched a pattern but did not become findings (only with
    /// [`ScanOptions::explain`]).
    pub near_misses: Vec<NearMiss>,
}

/// Why a finding fired: filled only when [`ScanOptions::explain`] is set.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Explanation {
    /// The pattern's name (or `patterns[i]`).
    pub pattern: String,
    /// The pattern's base score before context.
    pub base_score: f32,
    /// Each validator and whether the value passed it.
    pub validators: Vec<(&'static str, bool)>,
    /// The hotword that raised the score, and where it was found (`window` or `field`).
    pub context: Option<(String, &'static str)>,
    /// The value with letters as `x` and digits as `#` (shape only, never the value).
    pub masked: String,
    /// The value's length in characters (`masked` stops at 40).
    pub value_len: usize,
    /// Fingerprint of the value under the deployment key (`hmac-sha256:<key id>:<hex>`),
    /// usable in `exceptions.values`; `None` when the rule set has no fingerprint key.
    pub fingerprint: Option<String>,
}

/// A candidate that matched a rule's pattern but was rejected, with the reason.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NearMiss {
    /// The rule.
    pub rule_id: String,
    /// Log-safe location.
    pub location: String,
    /// Why it did not fire (`validator ssn failed`, `exception provider-npi applied`, …).
    pub reason: String,
    /// The value's shape (letters `x`, digits `#`).
    pub masked: String,
    /// Decodings applied to reach the text.
    pub decode_chain: Vec<&'static str>,
}

/// One rule that fired at one location. Never contains the matched value.
#[derive(Debug, Clone)]
pub struct Finding {
    /// The rule id.
    pub rule_id: String,
    /// The rule's Safe Harbor category (`None` for a response signature, see
    /// [`RuleInfo::category`](crate::engine::rules::RuleInfo::category)).
    pub category: Option<Category>,
    /// The rule's severity.
    pub severity: Severity,
    /// The rule's own mode (the caller combines it with the route's mode).
    pub mode: Mode,
    /// Log-safe location: `query:<name>`, `header:<name>`, `body:/json/pointer`,
    /// `body:form:<field>`, `body@<offset>`; key/name segments that could hold data are `*`.
    pub location: String,
    /// Decodings applied to reach the text, outermost first (`gzip`, `json`, `jws`, …).
    pub decode_chain: Vec<&'static str>,
    /// Score in `0..=1` after validation and context.
    pub score: f32,
    /// Details, only with [`ScanOptions::explain`].
    pub explain: Option<Box<Explanation>>,
}

/// Why a part could not be inspected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InspectError {
    /// Content-Encoding we cannot decode. Holds only a sanitized token (<= 32 chars of
    /// [a-z0-9-]); never echo raw header bytes.
    #[error("unsupported content-encoding")]
    UnsupportedEncoding {
        /// Sanitized coding token.
        encoding: String,
    },
    /// The decoded body is larger than [`Limits::max_decoded_bytes`].
    #[error("decoded body exceeds {limit} bytes")]
    DecodedTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The body expands more than [`Limits::max_expansion_ratio`] (a decompression bomb).
    #[error("compression ratio exceeds {limit}:1")]
    ExpansionRatio {
        /// The ratio limit.
        limit: u64,
    },
    /// The compressed data is invalid or truncated.
    #[error("corrupt {encoding} data")]
    Corrupt {
        /// The coding that failed (`gzip`, `deflate`, `br`, `zstd`).
        encoding: &'static str,
    },
    /// More stacked codings than [`Limits::max_decode_layers`].
    #[error("too many stacked content-encodings")]
    TooManyLayers,
}

/// Whether the engine can undo every coding in a `Content-Encoding` value. The proxy asks this
/// before connecting upstream, so it refuses (415) what [`Engine::scan`] could not inspect,
/// with one list of supported codings: the decoder's.
pub fn content_encoding_supported(value: &str) -> bool {
    decode::supported(value)
}

/// Undoes a request body's `Content-Encoding` within `limits`, with the decoder the scan uses,
/// so the access policy judges the same bytes the engine inspected (and the upstream decodes).
pub fn decode_content<'a>(
    body: &'a [u8],
    content_encoding: Option<&str>,
    limits: &Limits,
) -> Result<std::borrow::Cow<'a, [u8]>, InspectError> {
    decode::decode_body(body, content_encoding, limits, &mut Vec::new())
}

/// Runs the engine over `rules`; `only` restricts it to one rule, evaluated even when `off`
/// (used by inline tests, which must exercise disabled rules too).
pub(crate) fn scan_rules(
    rules: &RuleSet,
    part: &Part<'_>,
    limits: &Limits,
    only: Option<usize>,
    options: &ScanOptions<'_>,
) -> Result<Scan, InspectError> {
    let new = |kind| Scanner::new(rules, kind, only, limits, options);
    match *part {
        Part::Text(text) => {
            let mut sc = new(PartKind::Text);
            sc.segment(&Segment {
                text,
                loc: Loc::Offset("text"),
                ctx: FieldCtx::default(),
                chain: &[],
                sel: None,
            });
            sc.finish()
        }
        Part::Query(query) => {
            let mut sc = new(PartKind::Query);
            scan_form(&mut sc, query, "query:", &["query"], 0);
            sc.finish()
        }
        Part::Path(path) => {
            let mut sc = new(PartKind::Query);
            if sc.active() {
                // Decode twice at most: `%252D` is a double-encoded `-`.
                let once = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
                let text = if once.contains('%') {
                    percent_encoding::percent_decode_str(&once)
                        .decode_utf8_lossy()
                        .into_owned()
                } else {
                    once.into_owned()
                };
                sc.segment(&Segment {
                    text: &text,
                    loc: Loc::Offset("path"),
                    ctx: FieldCtx::default(),
                    chain: &["percent"],
                    sel: None,
                });
            }
            sc.finish()
        }
        Part::Header { name, value } => {
            let mut sc = new(PartKind::Header(name));
            if sc.active() {
                scan_header(&mut sc, name, value);
            }
            sc.finish()
        }
        Part::Body {
            content_type,
            content_encoding,
            bytes,
        } => {
            // Decode even when no rule applies: an undecodable body is an error either way.
            let mut chain = Vec::new();
            let decoded = decode::decode_body(bytes, content_encoding, limits, &mut chain)?;
            let mut sc = new(PartKind::Body(content_type));
            if sc.active() {
                let (media, charset) = media_type(content_type);
                let boundary = ct_param(content_type, "boundary");
                let base = Base {
                    json_prefix: "body:",
                    text_base: "body",
                    form_prefix: "body:form:",
                    boundary: boundary.as_deref(),
                };
                scan_payload(
                    &mut sc,
                    &decoded,
                    media,
                    charset.as_deref(),
                    &chain,
                    base,
                    0,
                );
            }
            sc.finish()
        }
    }
}
