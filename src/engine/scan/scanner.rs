//! The per-part scanning state ([`Scanner`]) and the per-segment loop: which rules are
//! eligible for the part, the decoded variants of a segment (percent, XML entities, base64),
//! and narrowing rules by field selectors.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use regex::CaptureLocations;

use super::findings::{explanation, MAX_FINDINGS_PER_RULE};
use super::matching::{best_per_cluster, source_offset, Candidate};
use super::plan::Plan;
use super::segment::{safe_segment, selector_matches, PartKind, Segment};
use crate::engine::normalize::{
    base64_runs, decode_base64_text, has_entity, has_percent_escape, normalize, percent_decode,
    xml_entity_decode, OffsetMap,
};
use crate::engine::rules::{glob_match, RuleSet};
use crate::engine::{Finding, InspectError, Limits, NearMiss, ScanOptions};

/// Most nested heuristic decodings (base64 inside base64 …) tried on one segment.
const MAX_VARIANT_DEPTH: usize = 2;

/// Per-part scanning state. Not shared between requests; what only depends on the rule set
/// and the kind of part (the eligible rules) is a shared [`Plan`].
pub(crate) struct Scanner<'r> {
    pub(super) rules: &'r RuleSet,
    pub(crate) limits: &'r Limits,
    pub(super) route: Option<&'r str>,
    pub(super) explain: bool,
    /// Whether field selectors (`json:`, `fhir:`, `hl7:`, …) narrow rules for this part.
    pub(super) narrowable: bool,
    pub(super) depth: usize,
    pub(super) near: Vec<NearMiss>,
    /// The rules this part evaluates, and their summaries.
    pub(super) plan: Arc<Plan>,
    /// Per rule: whether one of its keywords occurs anywhere in the raw body. Only set when
    /// every plain segment is a verbatim substring of the body (see [`Scanner::body_keywords`]).
    pub(super) kw_in_body: Option<Vec<bool>>,
    /// Whether any eligible keyword rule has a keyword in the body (when `kw_in_body` is set).
    pub(super) kw_any_in_body: bool,

    /// Structural address → per rule, whether the rule's `fhir:`/`hl7:` selectors match it.
    /// FHIR paths repeat across entries, so this turns dozens of glob matches per value into
    /// one hash lookup.
    pub(super) sel_cache: HashMap<String, usize, foldhash::fast::RandomState>,
    /// Rows of `sel_cache`: per rule, whether its selectors match that address.
    pub(super) sel_rows: Vec<Vec<bool>>,
    /// Reusable capture slots per eligible rule and pattern (same order as `plan.eligible`);
    /// empty until a rule first runs its regexes. Most parts (a header, a clean segment) never
    /// run most rules, and allocating every pattern's capture slots up front was a large share
    /// of what scanning a short header costs.
    pub(super) slots: Vec<Vec<CaptureLocations>>,
    pub(super) findings: HashMap<(String, usize), Finding>,
    /// Findings recorded so far, per rule index (empty until the first finding).
    pub(super) per_rule: Vec<usize>,
    pub(super) encrypted: Vec<String>,
    /// The locations in `encrypted`, for constant-time de-duplication: a body can hold tens of
    /// thousands of encrypted values, and a list search per value made that quadratic.
    pub(super) encrypted_seen: HashSet<String>,
    /// Set when a carrier could not be inspected completely; turns the scan into an error.
    pub(super) error: Option<InspectError>,
    /// Per rule, whether a keyword occurs in the segment (empty until the first keyword pass).
    pub(super) kw_hit: Vec<bool>,
    pub(super) ctx_buf: String,
    pub(super) ctx_ready: bool,
    pub(super) cands: Vec<Candidate>,
    /// Set by [`Scanner::narrow_to`] when the whole-body check's one pass accepted every
    /// string of the top-level JSON body as plain: its segments have no decoded variants.
    pub(super) plain_body: bool,
    /// Set with `plain_body` when every plain rule the check left alive has its passing
    /// tokens known: their content hashes ([`crate::engine::fastpath::content_hash`]),
    /// sorted. A plain segment of the body (a verbatim token) whose hash is not among them
    /// has no match that passes a plain rule's checks, and structural rules are kept to
    /// their fields before this is asked (see [`Scanner::trivially_clean`]).
    pub(crate) plain_only: Option<Vec<u64>>,
}

impl<'r> Scanner<'r> {
    /// `only`: restrict to one rule and evaluate it even if its mode is `off` (inline tests).
    pub(crate) fn new(
        rules: &'r RuleSet,
        part: PartKind<'_>,
        only: Option<usize>,
        limits: &'r Limits,
        options: &ScanOptions<'r>,
    ) -> Scanner<'r> {
        Scanner {
            plan: rules.plan(part, only, options.route, options.message),
            rules,
            limits,
            route: options.route,
            explain: options.explain,
            narrowable: matches!(part, PartKind::Body(_)),
            depth: 0,
            near: Vec::new(),
            kw_in_body: None,
            kw_any_in_body: true,
            sel_cache: HashMap::default(),
            sel_rows: Vec::new(),
            slots: Vec::new(),
            findings: HashMap::new(),
            per_rule: Vec::new(),
            encrypted: Vec::new(),
            encrypted_seen: HashSet::new(),
            error: None,
            kw_hit: Vec::new(),
            ctx_buf: String::new(),
            ctx_ready: false,
            cands: Vec::new(),
            plain_body: false,
            plain_only: None,
        }
    }

    /// Whether any rule is evaluated at all (lets carriers skip work).
    pub(crate) fn active(&self) -> bool {
        !self.plan.eligible.is_empty()
    }

    /// Records a location whose value is encrypted (JWE).
    pub(crate) fn encrypted(&mut self, location: String) {
        if !self.encrypted_seen.contains(&location) {
            self.encrypted_seen.insert(location.clone());
            self.encrypted.push(location);
        }
    }

    /// Marks the scan as incomplete (first error wins).
    pub(crate) fn fail(&mut self, error: InspectError) {
        self.error.get_or_insert(error);
    }

    /// Scans a segment, and once more percent-decoded if it still contains `%XX` escapes
    /// (double encoding, or percent-encoding inside JSON / headers / text).
    pub(crate) fn segment(&mut self, seg: &Segment<'_>) {
        if !self.active() || self.trivially_clean(seg) {
            return;
        }
        self.ctx_ready = false;
        self.variant(seg, seg.text, None, seg.chain);
        if self.plain_segment(seg) {
            return;
        }
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

    /// Whether `seg` is a key, string or number of a top-level JSON body whose strings the
    /// whole-body check proved plain (see [`Scanner::narrow_to`]): no percent escape, entity
    /// or base64 that decodes to text, nothing outside ASCII.
    pub(super) fn plain_segment(&self, seg: &Segment<'_>) -> bool {
        self.plain_body
            && self.depth == 0
            && seg
                .chain
                .iter()
                .all(|c| matches!(*c, "gzip" | "deflate" | "br" | "zstd" | "json"))
    }

    pub(super) fn variant(
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
        let needs_keywords = self.plan.any_keywords
            && self.plan.quick.iter().any(|q| {
                q.keywords
                    && digits >= q.min_digits
                    && body_kw.is_none_or(|p| p.get(q.rule).copied().unwrap_or(true))
            });
        // Fast exit for the common case: too few digits for any plain rule, no keyword rule in
        // play, and no structural rule that could apply here.
        let structural_possible = self.plan.any_structural
            && self.narrowable
            && (seg.sel.is_some() || (self.plan.any_structural_addr && seg.loc_addressable()));
        if digits < self.plan.min_plain_digits && !needs_keywords && !structural_possible {
            return;
        }
        if needs_keywords {
            self.keyword_prefilter(text, &seg.ctx);
        } else if self.plan.any_keywords {
            self.kw_hit.iter_mut().for_each(|h| *h = false);
        }
        let mut addr: Option<Option<String>> = None;
        // The structural address's row in `sel_rows`, looked up once per segment.
        let mut sel_row: Option<Option<usize>> = None;
        // One multi-pattern pass decides which rules' regexes can match at all.
        let mut set_hits: Option<regex::SetMatches> = None;
        let prefilter = rules.prefilter().filter(|_| self.plan.prefilter);
        for slot in 0..self.plan.quick.len() {
            let Some(&q) = self.plan.quick.get(slot) else {
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
            // `fhir-limit:` scopes: a FHIR value outside the listed resources and elements is
            // not looked at (explained as a near miss).
            let limited_out = self.narrowable && !rule.scope.fhir_allows(seg.sel);
            if limited_out && !self.explain {
                continue;
            }
            self.match_rule(slot, rule, text, seg, chain, nmap.as_ref(), pmap);
            if self.cands.is_empty() {
                continue;
            }
            if limited_out {
                self.limited_near_misses(ri, text, seg, chain, nmap.as_ref(), pmap);
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
                let key = self.rules.fingerprint_key();
                let explain = self.explain.then(|| explanation(rule, key, &cand, value));
                self.record(ri, location, chain, cand.score, explain);
            }
        }
    }

    /// Near misses for candidates of a rule whose `fhir-limit:` scope excludes the segment's
    /// FHIR address (explain mode only).
    fn limited_near_misses(
        &mut self,
        ri: usize,
        text: &str,
        seg: &Segment<'_>,
        chain: &[&'static str],
        nmap: Option<&OffsetMap>,
        pmap: Option<&OffsetMap>,
    ) {
        let resource = seg
            .sel
            .and_then(|s| s.strip_prefix("fhir:"))
            .and_then(|s| s.split('.').next())
            .map_or("?", safe_segment);
        let reason = format!("outside the rule's `fhir-limit:` scope (in a FHIR {resource})");
        for cand in best_per_cluster(&mut std::mem::take(&mut self.cands)) {
            let location = seg.loc.render(source_offset(cand.start, nmap, pmap));
            let value = text.get(cand.start..cand.end).unwrap_or("");
            self.near_miss(ri, &location, reason.clone(), value, chain);
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

    /// Whether the `fhir:`/`hl7:` selectors of a rule this part evaluates match this
    /// structural address (rules outside the plan, or narrowed out of it, do not count).
    pub(super) fn sel_any(&mut self, sel: Option<&str>) -> bool {
        let Some(row) = self.sel_row(sel).and_then(|r| self.sel_rows.get(r)) else {
            return false;
        };
        self.plan
            .quick
            .iter()
            .any(|q| q.structural && row.get(q.rule).copied().unwrap_or(false))
    }

    /// The row of `sel_rows` for a structural address: per rule, whether it is a structural
    /// rule of the plan whose selectors match (computed on first sight; at most 4096
    /// distinct addresses are cached per scan, beyond that rows are recomputed into slot 0 of a
    /// scratch row).
    fn sel_row(&mut self, sel: Option<&str>) -> Option<usize> {
        let s = sel?;
        if let Some(&i) = self.sel_cache.get(s) {
            return Some(i);
        }
        // Only the structural rules this part evaluates are matched (a narrowed body has few);
        // the others' entries stay false and are never read.
        let compiled = self.rules.compiled();
        let mut row = vec![false; compiled.len()];
        for q in self.plan.quick.iter().filter(|q| q.structural) {
            if let (Some(r), Some(hit)) = (compiled.get(q.rule), row.get_mut(q.rule)) {
                *hit = r.scope.fields.iter().any(|f| glob_match(f, s));
            }
        }
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
}
