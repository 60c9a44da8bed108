//! Matching and scoring of one text segment against the compiled rules.
//!
//! A *segment* is one unit of text the carriers extracted (a JSON string, a key, a form value, a
//! header value, a whole text body) together with its *field context* (key path, parameter or
//! header name, FHIR `system`/`type` siblings) and a location that is safe to log. For each
//! segment we normalise (see `normalize.rs`), apply cheap pre-checks (digit count, keyword
//! prefilter), run each rule's regexes, enforce boundaries and validators in code, and score
//! with Presidio's context model. Findings are keyed by (location, rule) so repeated matches of
//! a rule at one location collapse into the best one.

use std::cmp::Ordering;
use std::collections::HashMap;

use regex::CaptureLocations;

use super::classify::Token;
use super::fastpath;
use super::normalize::{
    base64_runs, decode_base64_text, has_entity, has_percent_escape, normalize, percent_decode,
    xml_entity_decode, OffsetMap,
};
use super::{Explanation, Finding, InspectError, Limits, NearMiss, Scan, ScanOptions};
use crate::engine::rules::{
    fingerprint, glob_match, mask_value, Boundary, CompiledContext, CompiledPattern, CompiledRule,
    RuleSet, CONTEXT_FLOOR,
};
use crate::engine::Mode;

/// Most nested heuristic decodings (base64 inside base64 …) tried on one segment.
const MAX_VARIANT_DEPTH: usize = 2;
/// Most near misses kept per scan (explain mode only).
const MAX_NEAR_MISSES: usize = 200;

/// Longest key / value fragment copied into a field context, and the total cap: context is a
/// set of words, not a document.
const MAX_CTX_PIECE: usize = 128;
const MAX_CTX_TOTAL: usize = 2048;

/// Upper bound on regex work per (rule, pattern, segment), as a multiple of the segment length.
/// Resuming one character after a rejected candidate keeps overlapping candidates, but a
/// pathological pattern (long unbounded repetition that validators reject) could then go
/// quadratic; past this budget we fall back to non-overlapping search for that segment.
const WORK_FACTOR: usize = 16;

/// Most findings kept per rule and scan. One finding is enough to block and a thousand are
/// plenty for an audit record; without a cap a 16 MiB body of SSN-shaped strings would cost
/// hundreds of megabytes of findings. Once a rule reaches the cap it is not evaluated further
/// for this part, so the kept findings are the first ones in document order.
pub(crate) const MAX_FINDINGS_PER_RULE: usize = 1000;

/// Which part of the request is being scanned (matched against rules' `where:`).
#[derive(Debug, Clone, Copy)]
pub(crate) enum PartKind<'a> {
    Query,
    Header(&'a str),
    /// A body, with its `Content-Type`.
    Body(Option<&'a str>),
    Text,
}

/// One element of a JSON Pointer.
#[derive(Debug, Clone, Copy)]
pub(crate) enum PathElem<'s> {
    Key(&'s str),
    Index(usize),
}

/// Where a segment is, rendered into a log-safe string only when something is reported.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Loc<'s> {
    /// A query parameter, form field or header: `<prefix><name>`, an unsafe name as `*`.
    Named { prefix: &'s str, name: &'s str },
    /// Free text: rendered as `<base>@<byte offset>`.
    Offset(&'s str),
    /// JSON: `<prefix>` + JSON Pointer with unsafe segments replaced by `*`.
    Pointer {
        prefix: &'s str,
        path: &'s [PathElem<'s>],
    },
}

impl Loc<'_> {
    pub(crate) fn render(&self, offset: usize) -> String {
        match self {
            Loc::Named { prefix, name } => format!("{prefix}{}", safe_segment(name)),
            Loc::Offset(base) => format!("{base}@{offset}"),
            Loc::Pointer { prefix, path } => {
                let mut s = String::with_capacity(prefix.len() + path.len() * 8);
                s.push_str(prefix);
                for elem in path.iter() {
                    s.push('/');
                    match elem {
                        PathElem::Key(k) => s.push_str(safe_segment(k)),
                        PathElem::Index(i) => s.push_str(&i.to_string()),
                    }
                }
                s
            }
        }
    }

    /// The address `where` and `exceptions.fields` selectors are matched against:
    /// `json:/identifier/0/value`, `form:ssn`, `multipart:file`, `hl7:PID-19`, `query:ssn`,
    /// `header:x-patient`. Free text has none.
    pub(crate) fn address(&self) -> Option<String> {
        match self {
            Loc::Named { prefix, name } => {
                let p = prefix.strip_prefix("body:").unwrap_or(prefix);
                // Nested prefixes (`body:multipart:f:form:`) keep only the innermost kind.
                let kind = p.trim_end_matches(':').rsplit(':').next().unwrap_or(p);
                Some(format!("{kind}:{name}"))
            }
            Loc::Offset(_) => None,
            Loc::Pointer { path, .. } => {
                let mut s = String::from("json:");
                for elem in path.iter() {
                    s.push('/');
                    match elem {
                        PathElem::Key(k) => s.push_str(k),
                        PathElem::Index(i) => s.push_str(&i.to_string()),
                    }
                }
                Some(s)
            }
        }
    }
}

/// Returns `segment` if it is a plain identifier that cannot carry PHI, else `*`.
///
/// Locations go to logs and audit records. Keys, parameter and header names come from the
/// client, and a client can put an SSN into a JSON key; so only `^[A-Za-z_][A-Za-z0-9_.-]{0,63}$`
/// without a run of three or more digits is kept verbatim.
pub(crate) fn safe_segment(segment: &str) -> &str {
    let b = segment.as_bytes();
    let first_ok = b
        .first()
        .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_');
    let chars_ok = b
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
    let mut run = 0;
    let digit_run = b.iter().any(|c| {
        run = if c.is_ascii_digit() { run + 1 } else { 0 };
        run >= 3
    });
    if first_ok && chars_ok && b.len() <= 64 && !digit_run {
        segment
    } else {
        "*"
    }
}

/// The field context of a segment: key path plus extra words (parameter/header name, FHIR
/// `system` and `type` values). Not logged; only searched for hotwords.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FieldCtx<'s> {
    pub(crate) path: &'s [PathElem<'s>],
    pub(crate) extra: &'s [&'s str],
}

/// A unit of text to scan.
#[derive(Debug)]
pub(crate) struct Segment<'s> {
    pub(crate) text: &'s str,
    pub(crate) loc: Loc<'s>,
    pub(crate) ctx: FieldCtx<'s>,
    pub(crate) chain: &'s [&'static str],
    /// Structural address, if any: `fhir:Patient.name.family`, `hl7:PID-19`.
    pub(crate) sel: Option<&'s str>,
}

impl Segment<'_> {
    /// Whether the location has an address for `json:`/`form:`/… selectors (free text has
    /// none).
    fn loc_addressable(&self) -> bool {
        !matches!(self.loc, Loc::Offset(_))
    }
}

/// Whether a selector (`json:/a/*/b`, `fhir:Patient.name.*`, `hl7:PID-19`, `form:ssn`) matches
/// the segment.
fn selector_matches(selector: &str, addr: Option<&str>, sel: Option<&str>) -> bool {
    addr.is_some_and(|a| glob_match(selector, a)) || sel.is_some_and(|s| glob_match(selector, s))
}

/// An accepted candidate within one segment variant.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    start: usize,
    end: usize,
    score: f32,
    pattern: usize,
    /// Where the hotword was found (`window`/`field`), and which one (explain only).
    context: Option<(usize, &'static str)>,
}

/// Per-slot summary of an eligible rule.
#[derive(Debug, Clone, Copy)]
struct Quick {
    rule: usize,
    min_digits: usize,
    keywords: bool,
    structural: bool,
    /// Structural with `json:`/`form:`/… selectors (needs the rendered location).
    needs_addr: bool,
}

/// Per-request scanning state. Not shared between requests.
pub(crate) struct Scanner<'r> {
    rules: &'r RuleSet,
    pub(crate) limits: &'r Limits,
    route: Option<String>,
    explain: bool,
    /// Whether field selectors (`json:`, `fhir:`, `hl7:`, …) narrow rules for this part.
    narrowable: bool,
    depth: usize,
    near: Vec<NearMiss>,
    /// Whether any eligible rule has `require_encrypted`.
    any_encryption: bool,
    /// Per rule: whether one of its keywords occurs anywhere in the raw body. Only set when
    /// every plain segment is a verbatim substring of the body (see [`Scanner::body_keywords`]).
    kw_in_body: Option<Vec<bool>>,
    /// Whether any eligible keyword rule has a keyword in the body (when `kw_in_body` is set).
    kw_any_in_body: bool,

    /// Structural address → per rule, whether the rule's `fhir:`/`hl7:` selectors match it.
    /// FHIR paths repeat across entries, so this turns dozens of glob matches per value into
    /// one hash lookup.
    sel_cache: HashMap<String, usize>,
    /// Rows of `sel_cache`: per rule, whether its selectors match that address.
    sel_rows: Vec<Vec<bool>>,
    /// Rules evaluated for this part, in load order.
    eligible: Vec<usize>,
    /// Per eligible slot, the facts the per-segment loop checks first (kept contiguous so the
    /// common "nothing to do" case never touches the large compiled rules).
    quick: Vec<Quick>,
    /// Fewest digits any keyword-free, selector-free eligible rule needs (`usize::MAX`: none).
    min_plain_digits: usize,
    /// Whether some eligible rule has field selectors.
    any_structural: bool,
    /// Whether some eligible rule has `json:`/`form:`/… field selectors.
    any_structural_addr: bool,
    /// Reusable capture slots per eligible rule and pattern (same order as `eligible`).
    slots: Vec<Vec<CaptureLocations>>,
    any_keywords: bool,
    findings: HashMap<(String, usize), Finding>,
    /// Findings recorded so far, per rule index.
    per_rule: Vec<usize>,
    encrypted: Vec<String>,
    /// Set when a carrier could not be inspected completely; turns the scan into an error.
    error: Option<InspectError>,
    kw_hit: Vec<bool>,
    ctx_buf: String,
    ctx_ready: bool,
    cands: Vec<Candidate>,
}

impl<'r> Scanner<'r> {
    /// `only`: restrict to one rule and evaluate it even if its mode is `off` (inline tests).
    pub(crate) fn new(
        rules: &'r RuleSet,
        part: PartKind<'_>,
        only: Option<usize>,
        limits: &'r Limits,
        options: &ScanOptions<'_>,
    ) -> Scanner<'r> {
        let route = options.route;
        let eligible: Vec<usize> = rules
            .compiled()
            .iter()
            .zip(rules.infos())
            .enumerate()
            .filter(|(i, (rule, info))| {
                let wanted = match only {
                    Some(o) => o == *i,
                    None => info.mode != Mode::Off,
                };
                // Inline tests without a route exercise route-scoped rules too.
                let route_ok = (only.is_some() && route.is_none()) || rule.scope.route(route);
                wanted
                    && route_ok
                    && match part {
                        PartKind::Query => rule.scope.query,
                        PartKind::Body(ct) => rule.scope.body && rule.scope.content_type(ct),
                        PartKind::Header(name) => rule.scope.header(name),
                        // Field selectors need structure; free text has none.
                        PartKind::Text => rule.scope.fields.is_empty(),
                    }
            })
            .map(|(i, _)| i)
            .collect();
        let slots = eligible
            .iter()
            .filter_map(|&i| rules.compiled().get(i))
            .map(|r| {
                r.patterns
                    .iter()
                    .map(|p| p.regex.capture_locations())
                    .collect()
            })
            .collect();
        let any_keywords = eligible
            .iter()
            .filter_map(|&i| rules.compiled().get(i))
            .any(|r| r.has_keywords);
        let quick: Vec<Quick> = eligible
            .iter()
            .filter_map(|&i| {
                rules.compiled().get(i).map(|r| Quick {
                    rule: i,
                    min_digits: r.min_digits,
                    keywords: r.has_keywords,
                    structural: !r.scope.fields.is_empty(),
                    needs_addr: r.scope.needs_addr,
                })
            })
            .collect();
        let min_plain_digits = quick
            .iter()
            .filter(|q| !q.keywords && !q.structural)
            .map(|q| q.min_digits)
            .min()
            .unwrap_or(usize::MAX);
        let any_structural = quick.iter().any(|q| q.structural);
        let any_structural_addr = quick.iter().any(|q| q.structural && q.needs_addr);
        Scanner {
            any_structural_addr,
            quick,
            min_plain_digits,
            any_structural,
            rules,
            limits,
            route: route.map(str::to_string),
            explain: options.explain,
            narrowable: matches!(part, PartKind::Body(_)),
            any_encryption: eligible
                .iter()
                .filter_map(|&i| rules.compiled().get(i))
                .any(|r| r.encryption.is_some()),
            depth: 0,
            near: Vec::new(),
            kw_in_body: None,
            kw_any_in_body: true,

            sel_cache: HashMap::new(),
            sel_rows: Vec::new(),
            eligible,
            slots,
            any_keywords,
            findings: HashMap::new(),
            per_rule: vec![0; rules.len()],
            encrypted: Vec::new(),
            error: None,
            kw_hit: vec![false; rules.len()],
            ctx_buf: String::new(),
            ctx_ready: false,
            cands: Vec::new(),
        }
    }

    /// Whether any rule is evaluated at all (lets carriers skip work).
    pub(crate) fn active(&self) -> bool {
        !self.eligible.is_empty()
    }

    /// Records a location whose value is encrypted (JWE).
    pub(crate) fn encrypted(&mut self, location: String) {
        if !self.encrypted.contains(&location) {
            self.encrypted.push(location);
        }
    }

    /// Marks the scan as incomplete (first error wins).
    pub(crate) fn fail(&mut self, error: InspectError) {
        self.error.get_or_insert(error);
    }

    /// The findings, ordered by location (numbers compared numerically) then rule load order,
    /// or the error that kept part of the input from being inspected.
    pub(crate) fn finish(self) -> Result<Scan, InspectError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let mut findings: Vec<((String, usize), Finding)> = self.findings.into_iter().collect();
        // Keys are unique, so an unstable sort is still deterministic.
        findings.sort_unstable_by(|a, b| natural_cmp(&a.0 .0, &b.0 .0).then(a.0 .1.cmp(&b.0 .1)));
        Ok(Scan {
            findings: findings.into_iter().map(|(_, f)| f).collect(),
            encrypted: self.encrypted,
            near_misses: self.near,
        })
    }

    /// Scans a segment, and once more percent-decoded if it still contains `%XX` escapes
    /// (double encoding, or percent-encoding inside JSON / headers / text).
    pub(crate) fn segment(&mut self, seg: &Segment<'_>) {
        if !self.active() || self.trivially_clean(seg) {
            return;
        }
        self.ctx_ready = false;
        self.variant(seg, seg.text, None, seg.chain);
        if has_percent_escape(seg.text) {
            let (mut decoded, map) = percent_decode(seg.text);
            let mut chain = seg.chain.to_vec();
            chain.push("percent");
            self.variant(seg, &decoded, Some(&map), &chain);
            // Double (and triple) encoding: `%2535` → `%35` → `5`. Offsets of later rounds
            // are mapped through the first round only (approximate, never out of range).
            for _ in 0..2 {
                if !has_percent_escape(&decoded) {
                    break;
                }
                decoded = percent_decode(&decoded).0;
                chain.push("percent");
                self.variant(seg, &decoded, Some(&OffsetMap::constant(0)), &chain);
            }
        }
        if has_entity(seg.text) {
            let (decoded, map) = xml_entity_decode(seg.text);
            let mut chain = seg.chain.to_vec();
            chain.push("xml-ncr");
            self.variant(seg, &decoded, Some(&map), &chain);
        }
        if self.depth < MAX_VARIANT_DEPTH {
            self.base64_variants(seg);
        }
    }

    /// Whether any rule's `fhir:`/`hl7:` selectors match this structural address.
    fn sel_any(&mut self, sel: Option<&str>) -> bool {
        self.sel_row(sel)
            .and_then(|r| self.sel_rows.get(r))
            .is_some_and(|row| row.iter().any(|b| *b))
    }

    /// The row of `sel_rows` for a structural address (computed on first sight; at most 4096
    /// distinct addresses are cached per scan, beyond that rows are recomputed into slot 0 of a
    /// scratch row).
    fn sel_row(&mut self, sel: Option<&str>) -> Option<usize> {
        let s = sel?;
        if let Some(&i) = self.sel_cache.get(s) {
            return Some(i);
        }
        let row: Vec<bool> = self
            .rules
            .compiled()
            .iter()
            .map(|r| r.scope.fields.iter().any(|f| glob_match(f, s)))
            .collect();
        // Rows `0..sel_cache.len()` are cached; anything after is the scratch row.
        self.sel_rows.truncate(self.sel_cache.len());
        self.sel_rows.push(row);
        let i = self.sel_rows.len() - 1;
        // Only short paths are cached: keys are client-chosen, and caching long ones would let
        // one request pin memory proportional to path length times distinct paths.
        if self.sel_cache.len() < 4096 && s.len() <= 256 {
            self.sel_cache.insert(s.to_string(), i);
        }
        Some(i)
    }

    /// Reports a finding for every `require_encrypted` rule whose fields cover this value when
    /// the value is not in an accepted envelope. The value itself is still scanned elsewhere.
    pub(crate) fn check_encryption(
        &mut self,
        loc: &Loc<'_>,
        ctx: &FieldCtx<'_>,
        sel: Option<&str>,
        token: &Token,
        value: &str,
        chain: &[&'static str],
    ) {
        if !self.narrowable || !self.any_encryption {
            return;
        }
        let rules = self.rules;
        let mut addr: Option<Option<String>> = None;
        for slot in 0..self.eligible.len() {
            let Some(&ri) = self.eligible.get(slot) else {
                continue;
            };
            let Some(rule) = rules.compiled().get(ri) else {
                continue;
            };
            let Some(req) = &rule.encryption else {
                continue;
            };
            let a = addr.get_or_insert_with(|| loc.address());
            if !rule
                .scope
                .fields
                .iter()
                .any(|f| selector_matches(f, a.as_deref(), sel))
            {
                continue;
            }
            // Context words narrow to e.g. identifiers whose `system` is us-ssn.
            if let Some(c) = &rule.context {
                self.ctx_ready = false;
                if field_ctx_hit(c, &mut self.ctx_buf, &mut self.ctx_ready, ctx).is_none() {
                    continue;
                }
            }
            let (ok, why) = match token {
                Token::Encrypted { enc } => (
                    req.accepts("jwe", Some(enc)),
                    format!("jwe with enc {enc} not accepted"),
                ),
                Token::Marked { format } => {
                    (req.accepts(format, None), format!("{format} not accepted"))
                }
                _ => (false, "not encrypted".to_string()),
            };
            if ok {
                continue;
            }
            let location = loc.render(0);
            if let Some(name) = self.exception(rule, value, a.as_deref(), sel) {
                self.near_miss(
                    ri,
                    &location,
                    format!("exception `{name}` applied"),
                    value,
                    chain,
                );
                continue;
            }
            let explain = self.explain.then(|| {
                Box::new(Explanation {
                    pattern: format!("require_encrypted ({why})"),
                    base_score: 1.0,
                    validators: Vec::new(),
                    context: None,
                    masked: mask_value(value),
                    fingerprint: fingerprint(value),
                })
            });
            self.record(ri, location, chain, 1.0, explain);
        }
    }

    /// Decodes base64 runs of 12+ characters found in free text (a base64 SSN is 12) and
    /// scans the decoded text when it is readable; the run's offset is reported.
    fn base64_variants(&mut self, seg: &Segment<'_>) {
        for (start, end) in base64_runs(seg.text) {
            let Some(run) = seg.text.get(start..end) else {
                continue;
            };
            let Some(decoded) = decode_base64_text(run) else {
                continue;
            };
            let mut chain = seg.chain.to_vec();
            chain.push("base64");
            self.depth += 1;
            let inner = Segment {
                text: &decoded,
                loc: seg.loc,
                ctx: seg.ctx,
                chain: &chain,
                sel: seg.sel,
            };
            // Offsets inside decoded text point at the start of the run.
            let map = OffsetMap::constant(start);
            self.ctx_ready = false;
            self.variant(&inner, &decoded, Some(&map), &chain);
            if self.depth < MAX_VARIANT_DEPTH {
                self.base64_variants(&inner);
            }
            self.depth -= 1;
        }
    }

    /// One keyword pass over a whole JSON body. When the body is plain ASCII JSON without
    /// escapes, every segment the JSON carrier produces (keys, strings, numbers, field
    /// context) is a verbatim substring of it, so a rule whose keywords occur nowhere in the
    /// body cannot pass the keyword filter in any plain segment: the per-segment keyword pass is
    /// skipped for it. Decoded variants (percent, base64, …) still run the per-segment pass.
    pub(crate) fn body_keywords(&mut self, raw: &[u8]) {
        if !raw.is_ascii() || raw.contains(&b'\\') {
            return;
        }
        let mut present = vec![false; self.rules.len()];
        if let Some((ac, owner)) = self.rules.keyword_automaton() {
            let Ok(iter) = ac.try_find_overlapping_iter(raw) else {
                return;
            };
            for m in iter {
                if let Some(p) = owner
                    .get(m.pattern().as_usize())
                    .and_then(|&r| present.get_mut(r))
                {
                    *p = true;
                }
            }
        }
        self.kw_any_in_body = self
            .quick
            .iter()
            .any(|q| q.keywords && present.get(q.rule).copied().unwrap_or(true));
        self.kw_in_body = Some(present);
    }

    /// Whether [`Scanner::body_keywords`] already ran for this body.
    pub(crate) fn has_body_keywords(&self) -> bool {
        self.kw_in_body.is_some()
    }

    /// Whether a top-level JSON body provably yields nothing at all, so the structural walk can
    /// be skipped: no finding, no encrypted value, no nested payload, no error. Checked on the
    /// raw text in a few linear passes instead of per segment; anything the check cannot prove
    /// returns false and the caller takes the full path.
    ///
    /// Soundness: the body is ASCII with no `\\`, so every key and string the walker would scan
    /// is a verbatim substring between two `"`; numbers are kept only when they print back
    /// verbatim. The check builds a copy in which everything outside those tokens is `"`, and
    /// runs each keyword-free, selector-free rule's patterns (quote-free patterns only, see
    /// [`CompiledPattern::quote_free`]) with boundaries and validators over it: a match
    /// starting inside a token cannot leave it, so every candidate a segment could produce is
    /// found here too. Context is over-approximated (a hotword anywhere in the body).
    pub(crate) fn json_body_clean(&mut self, text: &str) -> bool {
        if !self.narrowable || self.any_encryption || self.explain || !text.is_ascii() {
            return false;
        }
        let rules = self.rules;
        // Every selector rule must be provably dead: a literal piece of each of its selectors
        // is absent from the body.
        let mut seen: Vec<(&str, bool)> = Vec::new();
        for q in &self.quick {
            if !q.structural {
                continue;
            }
            let Some(rule) = rules.compiled().get(q.rule) else {
                return false;
            };
            for f in &rule.scope.fields {
                if !selector_dead(f, text, &mut seen) {
                    return false;
                }
            }
        }
        // Fewest digits any token needs to be kept for some rule still in play.
        let min_digits = self
            .quick
            .iter()
            .filter(|q| !q.structural)
            .filter_map(|q| rules.compiled().get(q.rule))
            .flat_map(|r| r.patterns.iter().map(|p| p.needs.digits.max(r.min_digits)))
            .min()
            .unwrap_or(usize::MAX);
        // One pass: grammar, escapes, envelopes, keyword fragments, digit-bearing tokens.
        let Some(profile) = fastpath::profile(
            text,
            self.limits.max_json_depth,
            min_digits,
            rules.keyword_index(),
        ) else {
            return false;
        };
        // Keyword rules whose keywords occur nowhere are dead; the others are checked like
        // plain rules below (a keyword is a necessary condition, not a finding).
        let present = |r: usize| profile.keywords.get(r).copied().unwrap_or(true);
        if self.any_keywords {
            self.kw_any_in_body = self.quick.iter().any(|q| q.keywords && present(q.rule));
            self.kw_in_body = Some((0..rules.len()).map(present).collect());
        }
        let live: Vec<(usize, &CompiledRule)> = self
            .quick
            .iter()
            .filter(|q| !q.structural && (!q.keywords || present(q.rule)))
            .filter_map(|q| rules.compiled().get(q.rule).map(|r| (q.rule, r)))
            .collect();
        if live.is_empty() {
            return true;
        }
        // Per live rule, the tokens one of its patterns could match inside, each between `"`;
        // then the rule's own patterns, validators and context over just those.
        let filter = fastpath::TokenFilter::new(
            live.iter()
                .map(|(_, r)| r.patterns.iter().map(|p| (p.needs, r.min_digits)).collect())
                .collect(),
        );
        let b = text.as_bytes();
        let mut bufs: Vec<Vec<u8>> = vec![Vec::new(); live.len()];
        let (mut met, mut admitted) = (Vec::new(), vec![false; live.len()]);
        for t in &profile.tokens {
            let (d, u) = (t.digits as usize, t.upper as usize);
            if d < filter.min_digits() {
                continue;
            }
            let Some(tok) = b.get(t.start as usize..t.end as usize) else {
                return false;
            };
            filter.admits(tok, d, u, &mut met, &mut admitted);
            for (buf, _) in bufs.iter_mut().zip(&admitted).filter(|(_, a)| **a) {
                if buf.is_empty() {
                    buf.push(b'"');
                }
                buf.extend_from_slice(tok);
                buf.push(b'"');
            }
        }
        for ((_, rule), buf) in live.iter().zip(bufs) {
            if buf.is_empty() {
                continue;
            }
            let Ok(tokens) = String::from_utf8(buf) else {
                return false;
            };
            if !rule_dead_in(rule, &tokens, text) {
                return false;
            }
        }
        true
    }

    /// Whether a raw segment of a plain JSON body can be skipped outright: no structural rule
    /// applies, no keyword rule is in play, no escape or non-ASCII character that a decoding
    /// variant could turn into something else, no base64 candidate, and fewer digits than any
    /// rule still live for this body needs. One pass over the bytes.
    fn trivially_clean(&mut self, seg: &Segment<'_>) -> bool {
        if self.kw_in_body.is_none()
            || self.kw_any_in_body
            || !seg
                .chain
                .iter()
                .all(|c| matches!(*c, "gzip" | "deflate" | "br" | "zstd" | "json"))
        {
            return false;
        }
        if self.any_structural
            && self.narrowable
            && ((self.any_structural_addr && seg.loc_addressable()) || self.sel_any(seg.sel))
        {
            return false;
        }
        let (mut digits, mut run, mut upper, mut other) = (0usize, 0usize, false, false);
        let mut maybe_b64 = false;
        for &c in seg.text.as_bytes() {
            if c.is_ascii_digit() {
                digits += 1;
            }
            if c == b'%' || c == b'&' || c >= 0x80 {
                return false;
            }
            if c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'-' | b'_') {
                run += 1;
                upper |= c.is_ascii_uppercase();
                other |= c.is_ascii_lowercase() || c.is_ascii_digit();
            } else {
                run = 0;
                upper = false;
                other = false;
            }
            if run >= super::normalize::MIN_BASE64_RUN && upper && other {
                maybe_b64 = true;
            }
        }
        // Possibly base64: only the runs that could decode to text need the full path.
        if maybe_b64 && !super::normalize::base64_runs(seg.text).is_empty() {
            return false;
        }
        digits < self.min_plain_digits
    }

    /// Marks in `kw_hit` every rule whose keyword occurs in the text or the field context.
    fn keyword_prefilter(&mut self, text: &str, ctx: &FieldCtx<'_>) {
        let Some((ac, owner)) = self.rules.keyword_automaton() else {
            return;
        };
        self.kw_hit.iter_mut().for_each(|h| *h = false);
        // Owners are pushed in rule order, so counting changes counts distinct rules.
        let total = 1 + owner.windows(2).filter(|w| w.first() != w.get(1)).count();
        let mut marked = 0;
        // Returns true once every keyword rule is marked (no need to read further).
        let mut mark = |hay: &str, hits: &mut Vec<bool>| -> bool {
            let Ok(iter) = ac.try_find_overlapping_iter(hay) else {
                // Cannot happen with the automaton we build; fail towards scanning.
                hits.iter_mut().for_each(|h| *h = true);
                return true;
            };
            for m in iter {
                if let Some(h) = owner
                    .get(m.pattern().as_usize())
                    .and_then(|&r| hits.get_mut(r))
                {
                    if !*h {
                        *h = true;
                        marked += 1;
                        if marked >= total {
                            return true;
                        }
                    }
                }
            }
            false
        };
        if mark(text, &mut self.kw_hit) {
            return;
        }
        render_ctx(&mut self.ctx_buf, &mut self.ctx_ready, ctx);
        mark(&self.ctx_buf, &mut self.kw_hit);
    }

    fn variant(
        &mut self,
        seg: &Segment<'_>,
        raw: &str,
        pmap: Option<&OffsetMap>,
        chain: &[&'static str],
    ) {
        let (text, nmap) = normalize(raw);
        let text: &str = &text;
        let digits = text.bytes().filter(u8::is_ascii_digit).count();
        let rules = self.rules;
        // Plain JSON segments of a body whose keywords were counted once (body_keywords).
        let body_kw = match &self.kw_in_body {
            Some(present)
                if pmap.is_none()
                    && chain
                        .iter()
                        .all(|c| matches!(*c, "gzip" | "deflate" | "br" | "zstd" | "json")) =>
            {
                Some(present)
            }
            _ => None,
        };
        let needs_keywords = self.any_keywords
            && self.quick.iter().any(|q| {
                q.keywords
                    && digits >= q.min_digits
                    && body_kw.is_none_or(|p| p.get(q.rule).copied().unwrap_or(true))
            });
        // Fast exit for the common case: too few digits for any plain rule, no keyword rule in
        // play, and no structural rule that could apply here.
        let structural_possible = self.any_structural
            && self.narrowable
            && (seg.sel.is_some() || (self.any_structural_addr && seg.loc_addressable()));
        if digits < self.min_plain_digits && !needs_keywords && !structural_possible {
            return;
        }
        if needs_keywords {
            self.keyword_prefilter(text, &seg.ctx);
        } else if self.any_keywords {
            self.kw_hit.iter_mut().for_each(|h| *h = false);
        }
        let mut addr: Option<Option<String>> = None;
        // The structural address's row in `sel_rows`, looked up once per segment.
        let mut sel_row: Option<Option<usize>> = None;
        // One multi-pattern pass decides which rules' regexes can match at all.
        let mut set_hits: Option<regex::SetMatches> = None;
        let prefilter = rules.prefilter();
        for slot in 0..self.quick.len() {
            let Some(&q) = self.quick.get(slot) else {
                continue;
            };
            let ri = q.rule;
            if digits < q.min_digits
                || (q.keywords && !self.kw_hit.get(ri).copied().unwrap_or(false))
                || (q.structural
                    && self.narrowable
                    && seg.sel.is_none()
                    && !(q.needs_addr && seg.loc_addressable()))
            {
                continue;
            }
            let Some(rule) = rules.compiled().get(ri) else {
                continue;
            };
            if self.per_rule.get(ri).copied().unwrap_or(0) >= MAX_FINDINGS_PER_RULE {
                continue;
            }
            if let Some(pf) = prefilter {
                if let Some(Some(idx)) = pf.by_rule.get(ri) {
                    let hits = set_hits.get_or_insert_with(|| pf.set.matches(text));
                    if !idx.iter().any(|&k| hits.matched(k)) {
                        continue;
                    }
                }
            }
            if self.narrowable && !rule.scope.fields.is_empty() {
                // `fhir:`/`hl7:` selectors only need the borrowed structural address; the
                // rendered location (an allocation) only when `json:`/`form:`/… are used.
                let hit = if rule.scope.needs_addr {
                    let a = addr.get_or_insert_with(|| seg.loc.address());
                    rule.scope
                        .fields
                        .iter()
                        .any(|f| selector_matches(f, a.as_deref(), seg.sel))
                } else {
                    let row = *sel_row.get_or_insert_with(|| self.sel_row(seg.sel));
                    row.and_then(|r| self.sel_rows.get(r))
                        .and_then(|r| r.get(ri).copied())
                        .unwrap_or(false)
                };
                if !hit {
                    continue;
                }
            }
            self.match_rule(slot, rule, text, seg, chain, nmap.as_ref(), pmap);
            if self.cands.is_empty() {
                continue;
            }
            let best = best_per_cluster(&mut self.cands);
            for cand in best {
                let offset = source_offset(cand.start, nmap.as_ref(), pmap);
                let location = seg.loc.render(offset);
                let value = text.get(cand.start..cand.end).unwrap_or("");
                let a = addr.get_or_insert_with(|| seg.loc.address());
                if let Some(name) = self.exception(rule, value, a.as_deref(), seg.sel) {
                    self.near_miss(
                        ri,
                        &location,
                        format!("exception `{name}` applied"),
                        value,
                        chain,
                    );
                    continue;
                }
                let explain = self.explain.then(|| explanation(rule, &cand, value));
                self.record(ri, location, chain, cand.score, explain);
            }
        }
    }

    /// The name of the first of `rule`'s exceptions that covers this value, if any.
    fn exception<'a>(
        &self,
        rule: &'a CompiledRule,
        value: &str,
        addr: Option<&str>,
        sel: Option<&str>,
    ) -> Option<&'a str> {
        if rule.exceptions.is_empty() {
            return None;
        }
        let mut fp: Option<String> = None;
        rule.exceptions.iter().find_map(|e| {
            let route_ok = e.routes.is_empty()
                || self
                    .route
                    .as_deref()
                    .is_some_and(|r| e.routes.iter().any(|g| glob_match(g, r)));
            let field_ok =
                e.fields.is_empty() || e.fields.iter().any(|f| selector_matches(f, addr, sel));
            let value_ok = e.values.is_empty() || {
                let fp = fp.get_or_insert_with(|| fingerprint(value));
                e.values.iter().any(|v| v == fp)
            };
            (route_ok && field_ok && value_ok).then_some(e.name.as_str())
        })
    }

    fn near_miss(
        &mut self,
        ri: usize,
        location: &str,
        reason: String,
        value: &str,
        chain: &[&'static str],
    ) {
        if !self.explain || self.near.len() >= MAX_NEAR_MISSES {
            return;
        }
        let Some(info) = self.rules.infos().get(ri) else {
            return;
        };
        self.near.push(NearMiss {
            rule_id: info.id.clone(),
            location: location.to_string(),
            reason,
            masked: mask_value(value),
            decode_chain: chain.to_vec(),
        });
    }

    fn record(
        &mut self,
        ri: usize,
        location: String,
        chain: &[&'static str],
        score: f32,
        explain: Option<Box<Explanation>>,
    ) {
        let Some(info) = self.rules.infos().get(ri) else {
            return;
        };
        let key = (location, ri);
        match self.findings.get(&key) {
            Some(prev) if prev.score >= score => return,
            Some(_) => {}
            None => match self.per_rule.get_mut(ri) {
                Some(n) if *n < MAX_FINDINGS_PER_RULE => *n += 1,
                _ => return,
            },
        }
        let finding = Finding {
            rule_id: info.id.clone(),
            category: info.category,
            severity: info.severity,
            mode: info.mode,
            location: key.0.clone(),
            decode_chain: chain.to_vec(),
            score,
            explain,
        };
        self.findings.insert(key, finding);
    }

    /// Collects accepted candidates of `rule` in `text` into `self.cands` (and, when
    /// explaining, rejected ones into the near misses).
    #[allow(clippy::too_many_arguments)]
    fn match_rule(
        &mut self,
        slot: usize,
        rule: &CompiledRule,
        text: &str,
        seg: &Segment<'_>,
        chain: &[&'static str],
        nmap: Option<&OffsetMap>,
        pmap: Option<&OffsetMap>,
    ) {
        self.cands.clear();
        let ri = self.eligible.get(slot).copied().unwrap_or(0);
        let mut field_hit: Option<Option<usize>> = None;
        let budget = text.len().saturating_mul(WORK_FACTOR).saturating_add(4096);
        for (pi, pat) in rule.patterns.iter().enumerate() {
            let Some(locs) = self.slots.get_mut(slot).and_then(|s| s.get_mut(pi)) else {
                continue;
            };
            let mut pos = 0;
            let mut work = 0usize;
            while pos <= text.len() {
                let Some(m) = pat.regex.captures_read_at(locs, text, pos) else {
                    break;
                };
                let (ms, me) = (m.start(), m.end());
                let (vs, ve) = pat
                    .value_group
                    .and_then(|g| locs.get(g))
                    .unwrap_or((ms, me));
                work = work.saturating_add(me.saturating_sub(pos));
                let after_start = next_char(text, ms);
                let bounded = boundary_ok(pat.boundary, text, vs, ve);
                let mut rejected: Option<String> = None;
                let mut ctx_found: Option<(usize, &'static str)> = None;
                let score = if !bounded {
                    None
                } else if let Some(why) = shape_fail(pat, rule, text, vs, ve) {
                    rejected = Some(why);
                    None
                } else {
                    if let Some(c) = &rule.context {
                        ctx_found = window_hit(c, text, vs, ve).map(|w| (w, "window"));
                        if ctx_found.is_none() {
                            let f = *field_hit.get_or_insert_with(|| {
                                field_ctx_hit(c, &mut self.ctx_buf, &mut self.ctx_ready, &seg.ctx)
                            });
                            ctx_found = f.map(|w| (w, "field"));
                        }
                    }
                    let s = score(pat, rule, ctx_found.is_some());
                    if s.is_none() {
                        rejected = Some(below_reason(pat, rule, ctx_found.is_some()));
                    }
                    s
                };
                if let Some(reason) = rejected {
                    if self.explain && self.near.len() < MAX_NEAR_MISSES {
                        let offset = source_offset(vs, nmap, pmap);
                        let value = text.get(vs..ve).unwrap_or("");
                        if let Some(info) = self.rules.infos().get(ri) {
                            self.near.push(NearMiss {
                                rule_id: info.id.clone(),
                                location: seg.loc.render(offset),
                                reason,
                                masked: mask_value(value),
                                decode_chain: chain.to_vec(),
                            });
                        }
                    }
                }
                pos = match score {
                    Some(score) => {
                        self.cands.push(Candidate {
                            start: vs,
                            end: ve,
                            score,
                            pattern: pi,
                            context: ctx_found,
                        });
                        me.max(after_start)
                    }
                    // Every later start inside the same digit (alnum) run is preceded by a
                    // digit (alnum) and fails the boundary too: skip the run. This keeps long
                    // digit runs linear instead of one regex call per position. Only valid when
                    // the value starts where the match starts.
                    None if !bounded && vs == ms => {
                        run_end(text, vs, pat.boundary).max(after_start)
                    }
                    None if work > budget => me.max(after_start),
                    None => after_start,
                };
            }
        }
    }
}

/// Whether a field selector can match no JSON pointer and no FHIR path of a plain JSON body
/// `text` (see [`Scanner::json_body_clean`]). `fhir:` paths are a resource type and keys joined
/// by `.`, `json:` addresses keys and indices joined by `/`; all of them verbatim substrings of
/// such a body, so a selector one of whose literal pieces occurs nowhere in the body cannot
/// match. Other kinds (`hl7:`, `form:`, …) never match a JSON body's segments.
fn selector_dead<'a>(selector: &'a str, text: &str, seen: &mut Vec<(&'a str, bool)>) -> bool {
    let (rest, sep) = if let Some(r) = selector.strip_prefix("fhir:") {
        (r, '.')
    } else if let Some(r) = selector.strip_prefix("json:") {
        (r, '/')
    } else {
        return ["hl7:", "form:", "query:", "header:", "multipart:"]
            .iter()
            .any(|k| selector.starts_with(k));
    };
    let mut pieces: Vec<&str> = rest
        .split([sep, '*'])
        .filter(|p| !(p.is_empty() || (sep == '/' && p.bytes().all(|b| b.is_ascii_digit()))))
        .collect();
    pieces.sort_by_key(|p| std::cmp::Reverse(p.len()));
    pieces.into_iter().any(|p| {
        let present = match seen.iter().find(|(k, _)| *k == p) {
            Some(&(_, v)) => v,
            None => {
                let v = memchr::memmem::find(text.as_bytes(), p.as_bytes()).is_some();
                seen.push((p, v));
                v
            }
        };
        !present
    })
}

/// Whether a string token is certainly classified plain and not handled specially by the
/// walker (see [`mask_json`]).
pub(crate) fn plain_string(tok: &[u8]) -> bool {
    if matches!(
        tok,
        b"ciphertext" | b"data" | b"content" | b"valueBase64Binary"
    ) {
        return false;
    }
    let t = tok.trim_ascii();
    if [&b"-----BEGIN"[..], b"age-encryption", b"vault:v", b"ENC["]
        .iter()
        .any(|m| t.starts_with(m))
    {
        return false;
    }
    // JOSE compact tokens and base64 envelopes are long runs of base64(url) characters.
    !(t.len() >= 24
        && t.iter().all(|&c| {
            c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'=' | b'.' | b'+' | b'/')
        }))
}

/// Whether `rule` provably yields no finding in any of the quote-separated `tokens` of
/// `body` (see [`Scanner::json_body_clean`]): no match passes boundary, separator and
/// validator checks, or every one that does needs a hotword and none occurs in the body.
fn rule_dead_in(rule: &CompiledRule, tokens: &str, body: &str) -> bool {
    let text = tokens;
    let mut needs_ctx = false;
    for pat in &rule.patterns {
        if !pat.quote_free {
            return false;
        }
        let mut locs = pat.regex.capture_locations();
        let mut caps = pat.scan.as_ref().map(|re| re.create_captures());
        // Same leftmost-first match and `value` group from either engine.
        let mut next = |pos: usize| -> Option<(usize, usize, usize, usize)> {
            if let (Some(re), Some(caps)) = (&pat.scan, caps.as_mut()) {
                re.search_captures(
                    &regex_automata::Input::new(text).span(pos..text.len()),
                    caps,
                );
                let m = caps.get_match()?;
                let (ms, me) = (m.start(), m.end());
                let v = pat
                    .value_group
                    .and_then(|g| caps.get_group(g))
                    .map_or((ms, me), |s| (s.start, s.end));
                return Some((ms, me, v.0, v.1));
            }
            let m = pat.regex.captures_read_at(&mut locs, text, pos)?;
            let (ms, me) = (m.start(), m.end());
            let v = pat
                .value_group
                .and_then(|g| locs.get(g))
                .unwrap_or((ms, me));
            Some((ms, me, v.0, v.1))
        };
        let budget = text.len().saturating_mul(WORK_FACTOR).saturating_add(4096);
        let (mut pos, mut work) = (0usize, 0usize);
        while pos <= text.len() {
            let Some((ms, me, vs, ve)) = next(pos) else {
                break;
            };
            work = work.saturating_add(me.saturating_sub(pos));
            if work > budget {
                return false;
            }
            let after_start = next_char(text, ms);
            let bounded = boundary_ok(pat.boundary, text, vs, ve);
            if bounded && shape_fail(pat, rule, text, vs, ve).is_none() {
                if score(pat, rule, false).is_some() {
                    return false;
                }
                if score(pat, rule, true).is_some() {
                    needs_ctx = true;
                }
            }
            pos = if !bounded && vs == ms {
                run_end(text, vs, pat.boundary).max(after_start)
            } else {
                after_start
            };
        }
    }
    if !needs_ctx {
        return true;
    }
    // A hotword is found in the segment or in the field context (keys and sibling values
    // joined by spaces), so a multi-word hotword may span two pieces: it is ruled out only when
    // one of its space-separated parts occurs nowhere in the body (ASCII case-insensitive, as
    // the hotword automaton matches).
    let Some(c) = &rule.context else {
        return false;
    };
    let lower = body.to_ascii_lowercase();
    !c.word_list.iter().any(|w| {
        w.split(' ').filter(|p| !p.is_empty()).all(|p| {
            memchr::memmem::find(lower.as_bytes(), p.to_ascii_lowercase().as_bytes()).is_some()
        })
    })
}

/// Maps an offset in the normalised variant back to the segment text.
fn source_offset(at: usize, nmap: Option<&OffsetMap>, pmap: Option<&OffsetMap>) -> usize {
    let o = nmap.map_or(at, |m| m.to_source(at));
    pmap.map_or(o, |m| m.to_source(o))
}

/// Builds the explanation of an accepted candidate.
fn explanation(rule: &CompiledRule, cand: &Candidate, value: &str) -> Box<Explanation> {
    let pat = rule.patterns.get(cand.pattern);
    let context = cand.context.and_then(|(w, place)| {
        rule.context
            .as_ref()
            .and_then(|c| c.word_list.get(w))
            .map(|word| (word.clone(), place))
    });
    Box::new(Explanation {
        pattern: pat.map_or_else(|| format!("patterns[{}]", cand.pattern), |p| p.name.clone()),
        base_score: pat.map_or(0.0, |p| p.score),
        validators: rule
            .validators
            .iter()
            .map(|v| (v.name(), v.check(value)))
            .collect(),
        context,
        masked: mask_value(value),
        fingerprint: fingerprint(value),
    })
}

/// Why a validated candidate stayed below the rule's threshold.
fn below_reason(pat: &CompiledPattern, rule: &CompiledRule, ctx: bool) -> String {
    match &rule.context {
        Some(c) if c.required && !ctx => "context required but no hotword nearby".to_string(),
        _ => format!(
            "score {:.2} below min_score {:.2}{}",
            if ctx {
                rule.context
                    .as_ref()
                    .map_or(pat.score, |c| (pat.score + c.boost).max(CONTEXT_FLOOR))
            } else {
                pat.score
            },
            rule.min_score,
            if ctx { "" } else { " (no context word nearby)" }
        ),
    }
}

/// Whether the characters just outside `text[vs..ve]` respect the pattern's boundary.
fn boundary_ok(boundary: Boundary, text: &str, vs: usize, ve: usize) -> bool {
    let test: fn(&char) -> bool = match boundary {
        Boundary::Digit => char::is_ascii_digit,
        Boundary::Alnum => char::is_ascii_alphanumeric,
        Boundary::None => return true,
    };
    let before = text.get(..vs).and_then(|s| s.chars().next_back());
    let after = text.get(ve..).and_then(|s| s.chars().next());
    !before.as_ref().is_some_and(test) && !after.as_ref().is_some_and(test)
}

/// End of the run of boundary-class characters starting at `from`.
fn run_end(text: &str, from: usize, boundary: Boundary) -> usize {
    let test: fn(&u8) -> bool = match boundary {
        Boundary::Digit => u8::is_ascii_digit,
        Boundary::Alnum => u8::is_ascii_alphanumeric,
        Boundary::None => return from,
    };
    from + text
        .as_bytes()
        .get(from..)
        .map_or(0, |b| b.iter().take_while(|c| test(c)).count())
}

/// Separator and validator checks on the value `text[vs..ve]`: `None` when it passes, else
/// the reason.
fn shape_fail(
    pat: &CompiledPattern,
    rule: &CompiledRule,
    text: &str,
    vs: usize,
    ve: usize,
) -> Option<String> {
    let Some(value) = text.get(vs..ve) else {
        return Some("not on a character boundary".to_string());
    };
    if pat.same_separators {
        let mut seps = value.chars().filter(|c| !c.is_ascii_alphanumeric());
        if let Some(first) = seps.next() {
            if seps.any(|c| c != first) {
                return Some("mixed separators".to_string());
            }
        }
    }
    rule.validators
        .iter()
        .find(|v| !v.check(value))
        .map(|v| format!("validator `{}` failed", v.name()))
}

/// The candidate's score, or `None` if context is required and missing or it stays below
/// `min_score`.
fn score(pat: &CompiledPattern, rule: &CompiledRule, ctx_hit: bool) -> Option<f32> {
    let mut s = pat.score;
    if let Some(c) = &rule.context {
        if ctx_hit {
            s = (s + c.boost).max(CONTEXT_FLOOR);
        } else if c.required {
            return None;
        }
    }
    let s = s.min(1.0);
    (s + 1e-6 >= rule.min_score).then_some(s)
}

/// Renders the field context into `buf` once per segment (`ready` tracks that).
fn render_ctx(buf: &mut String, ready: &mut bool, ctx: &FieldCtx<'_>) {
    if *ready {
        return;
    }
    *ready = true;
    buf.clear();
    // Nearest keys first, so a very deep path loses its least specific keys to the cap.
    let keys = ctx.path.iter().rev().filter_map(|e| match e {
        PathElem::Key(k) => Some(*k),
        PathElem::Index(_) => None,
    });
    for piece in ctx.extra.iter().copied().chain(keys) {
        if buf.len() >= MAX_CTX_TOTAL {
            break;
        }
        buf.push_str(truncate(piece, MAX_CTX_PIECE));
        buf.push(' ');
    }
}

fn field_ctx_hit(
    c: &CompiledContext,
    buf: &mut String,
    ready: &mut bool,
    ctx: &FieldCtx<'_>,
) -> Option<usize> {
    render_ctx(buf, ready, ctx);
    hotword_in(c, buf, 0, buf.len(), None)
}

/// The first hotword (its index) occurring in `text[start..end]` on word boundaries, not
/// overlapping `exclude`.
fn hotword_in(
    c: &CompiledContext,
    text: &str,
    start: usize,
    end: usize,
    exclude: Option<(usize, usize)>,
) -> Option<usize> {
    let hay = text.get(start..end)?;
    let iter = c.words.try_find_overlapping_iter(hay).ok()?;
    for m in iter {
        let (hs, he) = (start + m.start(), start + m.end());
        if exclude.is_some_and(|(vs, ve)| hs < ve && he > vs) {
            continue;
        }
        if word_boundaries(text, hs, he) {
            return Some(m.pattern().as_usize());
        }
    }
    None
}

fn window_hit(c: &CompiledContext, text: &str, vs: usize, ve: usize) -> Option<usize> {
    let ws = chars_back(text, vs, c.window_before);
    let we = chars_forward(text, ve, c.window_after);
    hotword_in(c, text, ws, we, Some((vs, ve)))
}

/// Whether there is a word break between `a` and `b`: either is not alphanumeric, a letter
/// meets a digit, or a lowercase letter is followed by an uppercase one (camelCase).
fn is_break(a: char, b: char) -> bool {
    !a.is_alphanumeric()
        || !b.is_alphanumeric()
        || a.is_numeric() != b.is_numeric()
        || (a.is_lowercase() && b.is_uppercase())
}

/// Whether `text[hs..he]` starts and ends on word breaks, so that `lic` does not match inside
/// `duplicate` while `ssn` still matches `patient_ssn`, `SSN:`, `SSN536…` and `patientSsn`.
fn word_boundaries(text: &str, hs: usize, he: usize) -> bool {
    let Some(word) = text.get(hs..he) else {
        return false;
    };
    let (Some(first), Some(last)) = (word.chars().next(), word.chars().next_back()) else {
        return false;
    };
    let before = text.get(..hs).and_then(|s| s.chars().next_back());
    let after = text.get(he..).and_then(|s| s.chars().next());
    before.is_none_or(|b| is_break(b, first)) && after.is_none_or(|a| is_break(last, a))
}

fn chars_back(text: &str, from: usize, n: usize) -> usize {
    if n == 0 {
        return from;
    }
    text.get(..from)
        .and_then(|s| s.char_indices().rev().take(n).last())
        .map_or(from, |(i, _)| i)
}

fn chars_forward(text: &str, from: usize, n: usize) -> usize {
    text.get(from..)
        .and_then(|s| s.char_indices().nth(n))
        .map_or(text.len(), |(i, _)| from + i)
}

/// The byte offset just after the character starting at `i` (or `i + 1` past the end).
fn next_char(text: &str, i: usize) -> usize {
    text.get(i..)
        .and_then(|s| s.chars().next())
        .map_or(i + 1, |c| i + c.len_utf8())
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or("")
}

/// Keeps the best candidate of every cluster of overlapping candidates (several patterns of one
/// rule often match the same value, e.g. grouped and ungrouped card formats).
fn best_per_cluster(cands: &mut [Candidate]) -> Vec<Candidate> {
    cands.sort_by(|a, b| a.start.cmp(&b.start).then(b.end.cmp(&a.end)));
    let mut out: Vec<Candidate> = Vec::new();
    let mut cluster_end = 0;
    for c in cands.iter() {
        match out.last_mut() {
            Some(best) if c.start < cluster_end => {
                cluster_end = cluster_end.max(c.end);
                if c.score > best.score {
                    *best = *c;
                }
            }
            _ => {
                cluster_end = c.end;
                out.push(*c);
            }
        }
    }
    out
}

/// Compares strings with embedded numbers numerically (`body@9` < `body@10`, `/2` < `/10`).
pub(crate) fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut x, mut y) = (a.as_bytes(), b.as_bytes());
    loop {
        match (x.first(), y.first()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(p), Some(q)) if p.is_ascii_digit() && q.is_ascii_digit() => {
                let nx = x.iter().take_while(|c| c.is_ascii_digit()).count();
                let ny = y.iter().take_while(|c| c.is_ascii_digit()).count();
                let (dx, rx) = x.split_at(nx);
                let (dy, ry) = y.split_at(ny);
                let strip = |d: &'_ [u8]| -> usize { d.iter().take_while(|c| **c == b'0').count() };
                let (tx, ty) = (
                    dx.get(strip(dx)..).unwrap_or(&[]),
                    dy.get(strip(dy)..).unwrap_or(&[]),
                );
                let ord = tx.len().cmp(&ty.len()).then(tx.cmp(ty)).then(nx.cmp(&ny));
                if ord != Ordering::Equal {
                    return ord;
                }
                x = rx;
                y = ry;
            }
            (Some(p), Some(q)) => {
                if p != q {
                    return p.cmp(q);
                }
                x = x.get(1..).unwrap_or(&[]);
                y = y.get(1..).unwrap_or(&[]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_segments() {
        for ok in ["ssn", "identifier", "_x", "a.b-c", "v12", "value_1"] {
            assert_eq!(safe_segment(ok), ok);
        }
        for bad in [
            "536-22-1234",
            "",
            "1abc",
            "x123",
            "a b",
            "ключ",
            &"a".repeat(65),
        ] {
            assert_eq!(safe_segment(bad), "*", "{bad}");
        }
    }

    #[test]
    fn pointer_rendering_sanitizes() {
        let path = [
            PathElem::Key("identifier"),
            PathElem::Index(0),
            PathElem::Key("536-22-1234"),
        ];
        let loc = Loc::Pointer {
            prefix: "body:",
            path: &path,
        };
        assert_eq!(loc.render(0), "body:/identifier/0/*");
        assert_eq!(Loc::Offset("body").render(17), "body@17");
    }

    #[test]
    fn word_breaks() {
        let t = "duplicate patient_ssn SSN536221234 patientSsn x";
        let find = |w: &str| t.find(w).map(|i| word_boundaries(t, i, i + w.len()));
        assert_eq!(find("lic"), Some(false));
        assert_eq!(find("ssn"), Some(true));
        assert_eq!(find("SSN"), Some(true));
        assert_eq!(find("Ssn"), Some(true));
        assert_eq!(find("patient"), Some(true));
        assert_eq!(find("ati"), Some(false));
    }

    #[test]
    fn natural_order() {
        assert_eq!(natural_cmp("body@9", "body@10"), Ordering::Less);
        assert_eq!(natural_cmp("body:/a/10", "body:/a/2"), Ordering::Greater);
        assert_eq!(natural_cmp("a", "a"), Ordering::Equal);
        assert_eq!(natural_cmp("a01", "a1"), Ordering::Greater);
    }

    #[test]
    fn clusters() {
        let mut c = vec![
            Candidate {
                start: 0,
                end: 10,
                score: 0.5,
                pattern: 0,
                context: None,
            },
            Candidate {
                start: 2,
                end: 8,
                score: 0.9,
                pattern: 0,
                context: None,
            },
            Candidate {
                start: 20,
                end: 25,
                score: 0.6,
                pattern: 0,
                context: None,
            },
        ];
        let best = best_per_cluster(&mut c);
        assert_eq!(best.len(), 2);
        assert!((best.first().map_or(0.0, |c| c.score) - 0.9).abs() < 1e-6);
    }
}
