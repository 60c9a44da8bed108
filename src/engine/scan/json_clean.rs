//! The whole-body JSON clean check: proving on the raw text of a plain JSON body, in a few
//! linear passes, that the structural walk would yield nothing, and the per-segment shortcut
//! for segments of such a body.

use std::sync::Arc;

use super::body_words::{special, Hotwords};
use super::matching::{boundary_ok, next_char, run_end, score, shape_fail, WORK_FACTOR};
use super::plan::Plan;
use super::segment::Segment;
use super::Scanner;
use crate::engine::fastpath::{self, WordSet};
use crate::engine::normalize::{base64_runs, MIN_BASE64_RUN};
use crate::engine::rules::{CompiledRule, RuleSet, SelectorProbe};

impl Scanner<'_> {
    /// Whether a top-level JSON body provably yields nothing at all ([`BodyCheck::Clean`]), so
    /// the structural walk can be skipped: no finding, no encrypted value, no nested payload,
    /// no error. Checked on the raw text in a few linear passes instead of per segment; when
    /// the check cannot prove anything it answers [`BodyCheck::Unknown`] and the caller takes
    /// the full path.
    ///
    /// When some rules may still yield findings, the answer names them ([`BodyCheck::Alive`]):
    /// every other rule was proved dead on its own, so the walk runs only those. Rules do not
    /// depend on each other (each has its own patterns, validators, context, scope and
    /// exceptions), so a rule proved dead here yields nothing in the walk whatever the others
    /// find.
    ///
    /// Soundness: the body is ASCII with no `\\`, so every key and string the walker would scan
    /// is a verbatim substring between two `"`; numbers are kept only when they print back
    /// verbatim. The check builds a copy in which everything outside those tokens is `"`, and
    /// runs each keyword-free, selector-free rule's patterns (quote-free patterns only, see
    /// [`CompiledPattern::quote_free`]) with boundaries and validators over it: a match
    /// starting inside a token cannot leave it, so every candidate a segment could produce is
    /// found here too. Context is over-approximated (a hotword anywhere in the body).
    ///
    /// [`CompiledPattern::quote_free`]: crate::engine::rules::CompiledPattern::quote_free
    pub(crate) fn json_body_check(&mut self, text: &str) -> BodyCheck {
        // Escapes: the proofs before the one pass read the raw text, where a `\u` escape could
        // hide a keyword, a hotword or a selector's piece (`us-\u0073sn`). The one pass, which
        // runs before any answer, refuses every escape but `\"`, `\\`, `\n`, `\r` and `\t`,
        // and those decode to characters no word is looked for with (see [`special`]): a word
        // without them occurs in a decoded string only where the raw text has it too.
        self.plain_only = None;
        if !self.narrowable || self.plan.any_encryption || self.explain || !text.is_ascii() {
            return BodyCheck::Unknown;
        }
        let rules = self.rules;
        let plan = Arc::clone(&self.plan);
        // Shared by every rule that needs a keyword or a hotword: the body lower-cased once,
        // and each word looked for once (several rules share words such as `date`). The
        // words asked before any token is read are looked for together, in a few passes for
        // all of them (see `fastpath::WordSet`); a plan built for one part only (inline tests)
        // asks them one by one instead of building searchers it would use once.
        let mut hot = Hotwords::default();
        if plan.shared {
            hot.prefetch(
                text,
                plan.upfront_words
                    .get_or_init(|| upfront_words(rules, &plan)),
            );
        }
        // Every selector rule must be provably dead: the body holds no resource of the type a
        // selector starts with, or a literal piece of it occurs nowhere in the body, or every
        // finding of the rule needs a hotword and none occurs in the body (the identifier
        // rules: `fhir:*.identifier.value` is in most FHIR traffic, their systems are not).
        // A rule still alive whose exceptions cover whole resource types (the NPI rules and
        // `fhir:Practitioner.*`) is checked like a plain rule below; for every rule, tokens
        // inside a resource type its exceptions cover are not candidates.
        let mut probe = BodyProbe::new(text);
        // Rules still to be checked over the tokens, and rules found alive.
        // `(rule, keywords still to look for, structural, rule)`.
        let mut live: Vec<(usize, bool, bool, &CompiledRule)> = Vec::new();
        let mut alive: Vec<usize> = Vec::new();
        for q in &plan.quick {
            if !q.structural {
                continue;
            }
            let Some(rule) = rules.compiled().get(q.rule) else {
                return BodyCheck::Unknown;
            };
            let dead = (rule.scope.probes.len() == rule.scope.fields.len()
                && rule.scope.probes.iter().all(|p| probe.dead(p)))
                || (rule
                    .patterns
                    .iter()
                    .all(|p| score(p, rule, false).is_none())
                    && no_hotword(rule, text, &mut hot));
            if !dead {
                if excepted_types(rule).is_empty() {
                    alive.push(q.rule);
                } else {
                    live.push((q.rule, q.keywords, true, rule));
                }
            }
        }
        // The fewest digits a token needs for one of a rule's patterns.
        let need = |r: &CompiledRule| {
            r.patterns
                .iter()
                .map(|p| p.needs.digits.max(r.min_digits))
                .min()
                .unwrap_or(usize::MAX)
        };
        // A keyword is a necessary condition, not a finding: a keyword rule whose keywords
        // occur nowhere is dead, the others are checked like plain rules. Keywords are looked
        // for before any token is: for a cached plan their words were found or ruled out
        // above, ten to a pass (`fastpath::WordSet`), while every live rule adds its needs to
        // the filter that runs over each candidate token (see `fastpath::TokenFilter`), which
        // costs more.
        for q in plan.quick.iter().filter(|q| !q.structural) {
            let Some(rule) = rules.compiled().get(q.rule) else {
                return BodyCheck::Unknown;
            };
            if q.keywords
                && !rules
                    .keyword_index()
                    .rule_present(q.rule, |w| hot.present(text, w))
            {
                continue;
            }
            // A rule with resource-wide exceptions (the NPI rules) makes the one pass track
            // every object; when each of its findings needs a hotword and none occurs, it is
            // dead before that, as a structural rule above.
            if excepts_types(rule)
                && rule
                    .patterns
                    .iter()
                    .all(|p| score(p, rule, false).is_none())
                && no_hotword(rule, text, &mut hot)
            {
                continue;
            }
            live.push((q.rule, false, false, rule));
        }
        let min_digits = live
            .iter()
            .map(|(_, _, _, r)| need(r))
            .min()
            .unwrap_or(usize::MAX);
        // One pass: grammar, escapes, envelopes, digit-bearing tokens.
        // It runs even when no rule is left to check over the tokens: the proofs above read the
        // raw text, and only this pass rules out the strings the walk decodes first (a
        // percent-encoded or base64 hotword inside a value).
        // Which object each value sits in, only when a live rule's exceptions cover whole
        // resource types (see below): tracking the objects costs a clean body 4 % of its scan.
        let objects = live.iter().any(|(_, _, _, r)| excepts_types(r));
        let Some(profile) =
            fastpath::profile(text, self.limits.max_json_depth, min_digits, objects)
        else {
            return BodyCheck::Unknown;
        };
        // Pieces of an escaped string stand for it only for patterns that cannot match what the
        // escapes decode to (see `fastpath::escapes`): a match of any other may span two
        // pieces, which neither the admission below nor the patterns over the buffer see.
        let escaped = profile.escaped;
        if escaped {
            live.retain(|&(r, _, _, rule)| {
                let free = rule.patterns.iter().all(|p| p.escape_free);
                if !free {
                    alive.push(r);
                }
                free
            });
        }
        if live.is_empty() {
            return BodyCheck::of(alive);
        }
        // Per live rule, the tokens one of its patterns could match inside, each between `"`;
        // then the rule's own patterns, validators and context over just those.
        let filter = fastpath::TokenFilter::new(
            live.iter()
                .map(|(_, _, _, r)| r.patterns.iter().map(|p| (p.needs, r.min_digits)).collect())
                .collect(),
        );
        // Per live rule, the indices of its candidate tokens (a rule's buffer is built only
        // once its keywords are known to occur).
        let mut cands: Vec<Vec<u32>> = vec![Vec::new(); live.len()];
        let mut scratch = fastpath::FilterScratch::for_filter(&filter);
        let b = text.as_bytes();
        // Past `REPEAT` tokens (a body of gigabytes) the check does not decide.
        if profile.tokens.len() > REPEAT as usize {
            return BodyCheck::Unknown;
        }
        for (t, ti) in profile.tokens.iter().zip(0u32..) {
            let (d, u) = (t.digits as usize, t.upper as usize);
            if d < filter.min_digits() {
                continue;
            }
            let Some(tok) = b.get(t.start as usize..t.end as usize) else {
                return BodyCheck::Unknown;
            };
            let met = filter.met(tok, d, u, &mut scratch);
            if met == 0 {
                continue;
            }
            // A repeat (see [`fastpath::Tok::repeat`]) is marked in `cands` with [`REPEAT`].
            let ti = if t.repeat { ti | REPEAT } else { ti };
            for (r, c) in cands.iter_mut().enumerate() {
                if filter.admits_rule(r, met) {
                    c.push(ti);
                }
            }
        }
        let token = |i: u32| profile.tokens.get((i & !REPEAT) as usize);
        let mut buf = Vec::new();
        // The tokens in which a plain rule left alive has a passing match, by content hash:
        // every other segment of the walk is skipped (see [`Scanner::plain_only`]). Not for
        // escaped bodies, whose segments are decoded strings rather than the raw tokens.
        let mut only = (!escaped).then(Vec::new);
        for ((r, keywords, structural, rule), cands) in live.iter().zip(&cands) {
            if cands.is_empty() {
                continue;
            }
            if *keywords
                && !rules
                    .keyword_index()
                    .rule_present(*r, |w| hot.present(text, w))
            {
                continue;
            }
            // A repeat yields what its first occurrence yields (the same bytes between `"`,
            // see [`rule_dead_in`]), so the rule's patterns run over each content once.
            let toks = cands
                .iter()
                .filter(|&&i| i & REPEAT == 0)
                .filter_map(|&i| token(i));
            // Structural rules are kept to their own fields by the walk's selectors, which the
            // restriction leaves alone; only plain rules add to it, and only while there is one.
            let mut passing = (!*structural && only.is_some()).then(Vec::new);
            match dead_over(rule, toks, text, &mut buf, &mut hot, &mut passing) {
                Some(true) => continue,
                None => return BodyCheck::Unknown,
                Some(false) => {}
            }
            // Looked up only here: most bodies never get this far, and this allocates.
            let except = excepted_types(rule);
            if except.is_empty() {
                alive.push(*r);
                merge(&mut only, passing, *structural);
                continue;
            }
            // Alive, but its exceptions cover whole resource types: again without the tokens
            // inside those (provider directories, bundles with Practitioners; the one pass
            // found each value's resource, see `fastpath::Objects`). Every occurrence here,
            // repeats too: the same bytes may sit once inside an excepted resource and once
            // outside it.
            let outside = cands.iter().filter_map(|&i| token(i)).filter(|t| {
                !profile
                    .objects
                    .resource_of(text, t.obj)
                    .is_some_and(|ty| except.contains(&ty))
            });
            // The first pass's passing tokens cover the second's.
            let mut unused = None;
            if dead_over(rule, outside, text, &mut buf, &mut hot, &mut unused) != Some(true) {
                alive.push(*r);
                merge(&mut only, passing, *structural);
            }
        }
        if !alive.is_empty() {
            self.plain_only = only.map(|mut o| {
                o.sort_unstable();
                o.dedup();
                o
            });
        }
        BodyCheck::of(alive)
    }

    /// Restricts this part to the rules `alive` (see [`BodyCheck::Alive`]): the walk that
    /// follows evaluates only those, and skips the decoded variants its segments cannot have.
    /// Returns the plan it replaced, for [`Scanner::widen`].
    pub(crate) fn narrow_to(&mut self, alive: &[usize]) -> Arc<Plan> {
        let narrowed = Arc::new(
            self.plan
                .restrict(self.rules.compiled(), |r| alive.contains(&r)),
        );
        self.set_plan(narrowed, true)
    }

    /// Puts back the plan [`Scanner::narrow_to`] replaced: every rule runs again.
    pub(crate) fn widen(&mut self, plan: Arc<Plan>) {
        self.set_plan(plan, false);
    }

    fn set_plan(&mut self, plan: Arc<Plan>, plain: bool) -> Arc<Plan> {
        self.plain_body = plain;
        if !plain {
            self.plain_only = None;
        }
        // Capture slots are kept per plan slot, and the slots move with the plan; selector
        // rows hold only the plan's rules; the body's keywords are counted for its rules.
        self.slots.clear();
        self.sel_cache.clear();
        self.sel_rows.clear();
        self.kw_in_body = None;
        self.kw_any_in_body = true;
        std::mem::replace(&mut self.plan, plan)
    }

    /// Whether a raw segment of a plain JSON body can be skipped outright: no structural rule
    /// applies, no keyword rule is in play, no escape or non-ASCII character that a decoding
    /// variant could turn into something else, no base64 candidate, and fewer digits than any
    /// rule still live for this body needs. One pass over the bytes.
    pub(super) fn trivially_clean(&mut self, seg: &Segment<'_>) -> bool {
        if self.kw_in_body.is_none()
            || self.kw_any_in_body
            || !seg
                .chain
                .iter()
                .all(|c| matches!(*c, "gzip" | "deflate" | "br" | "zstd" | "json"))
        {
            return false;
        }
        // A plain segment of the body is a verbatim token with no decoded variant: a rule's
        // match in it, structural or not, has at least the rule's fewest digits.
        let plain = self.plain_segment(seg);
        let digits = if plain {
            seg.text.bytes().filter(u8::is_ascii_digit).count()
        } else {
            0
        };
        if self.plan.any_structural
            && self.narrowable
            && !(plain && digits < self.plan.min_structural_digits)
            && ((self.plan.any_structural_addr && seg.loc_addressable()) || self.sel_any(seg.sel))
        {
            return false;
        }
        if plain {
            return digits < self.plan.min_plain_digits
                || self.plain_only.as_ref().is_some_and(|only| {
                    only.binary_search(&fastpath::content_hash(seg.text.as_bytes()))
                        .is_err()
                });
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
            if run >= MIN_BASE64_RUN && upper && other {
                maybe_b64 = true;
            }
        }
        // Possibly base64: only the runs that could decode to text need the full path.
        if maybe_b64 && !base64_runs(seg.text).is_empty() {
            return false;
        }
        digits < self.plan.min_plain_digits
    }
}

/// Adds a plain rule's passing tokens to the segment restriction, which is lost when they are
/// not known.
fn merge(only: &mut Option<Vec<u64>>, passing: Option<Vec<u64>>, structural: bool) {
    if structural {
        return;
    }
    match (only.as_mut(), passing) {
        (Some(o), Some(mut p)) => o.append(&mut p),
        _ => *only = None,
    }
}

/// What [`Scanner::json_body_check`] proved about a top-level JSON body.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum BodyCheck {
    /// Nothing at all (no finding, no encrypted value, no nested payload): the walk can be
    /// skipped.
    Clean,
    /// Only these rules (indices in load order) may yield a finding; each other rule of the
    /// plan provably yields none. Answered only once the one pass accepted the body: no key or
    /// string has an escape, a percent escape, an entity, an envelope or base64 that decodes
    /// to text, so the walk's segments of it have no variant to decode either.
    Alive(Vec<usize>),
    /// Nothing proved: the walk evaluates every rule of the plan.
    Unknown,
}

impl BodyCheck {
    fn of(alive: Vec<usize>) -> BodyCheck {
        if alive.is_empty() {
            BodyCheck::Clean
        } else {
            BodyCheck::Alive(alive)
        }
    }
}

/// Marks a candidate token (an index into the profile's tokens) that repeats an earlier string
/// of the body byte for byte (see [`fastpath::Tok::repeat`]); that earlier one has the same
/// counts, so it is a candidate of the same rules (see [`Scanner::json_body_check`]).
const REPEAT: u32 = 1 << 31;

/// What the selector check learns about a plain JSON body, each part computed on first need
/// and kept for every other selector (see [`Scanner::json_body_check`]).
///
/// Soundness: `fhir:` addresses are the innermost `resourceType` string and the keys below it
/// joined by `.`, `json:` pointers keys and indices joined by `/`; in a body the caller accepts
/// (ASCII, no escapes, valid JSON: the one-pass profile refuses anything else) every key and
/// every `resourceType` value is a verbatim string token. So a selector whose resource type is
/// not among the body's `resourceType` values, or one of whose literal pieces occurs nowhere
/// in the text, matches nothing. Both sets are over-approximations (a value of any key named
/// `resourceType`, a piece anywhere in the text), which can only keep a rule alive.
struct BodyProbe<'t> {
    text: &'t str,
    /// Every string value of a `resourceType` key, once the first `fhir:` selector with a
    /// resource type asks: one pass over the body for all of them, instead of one pass per
    /// type (`Patient`, `RelatedPerson`, `Person`, … are each absent from most bodies, and an
    /// absent piece costs a whole pass).
    /// `Some(None)`: too many distinct types to keep (see [`MAX_RESOURCE_TYPES`]).
    types: Option<Option<Vec<&'t str>>>,
    /// Pieces looked for so far, and whether they occur.
    pieces: Vec<(&'t str, bool)>,
}

impl<'t> BodyProbe<'t> {
    fn new(text: &'t str) -> BodyProbe<'t> {
        BodyProbe {
            text,
            types: None,
            pieces: Vec::new(),
        }
    }

    /// Whether the selector `p` provably matches nothing in the body.
    fn dead(&mut self, p: &'t SelectorProbe) -> bool {
        let (resource, pieces) = match p {
            SelectorProbe::NeverJson => return true,
            SelectorProbe::Unknown => return false,
            SelectorProbe::Keys { resource, pieces } => (resource, pieces),
        };
        if let Some((ty, exact)) = resource {
            let text = self.text;
            if let Some(types) = self.types.get_or_insert_with(|| resource_types(text)) {
                if !types.iter().any(|t| {
                    if *exact {
                        t == ty
                    } else {
                        t.starts_with(ty.as_str())
                    }
                }) {
                    return true;
                }
            }
        }
        pieces.iter().any(|p| !self.occurs(p))
    }

    fn occurs(&mut self, piece: &'t str) -> bool {
        if special(piece) {
            return true;
        }
        if let Some(&(_, v)) = self.pieces.iter().find(|(k, _)| *k == piece) {
            return v;
        }
        let v = memchr::memmem::find(self.text.as_bytes(), piece.as_bytes()).is_some();
        self.pieces.push((piece, v));
        v
    }
}

/// Distinct `resourceType` values [`resource_types`] keeps apart; a body with more (the R4
/// examples package has 146 types in all, a real Bundle a handful) is judged by pieces alone,
/// so a client cannot make the list, and each look-up in it, as long as its body.
const MAX_RESOURCE_TYPES: usize = 64;

/// Every string value of a key named `resourceType` in a plain JSON body (see [`BodyProbe`]),
/// or `None` past [`MAX_RESOURCE_TYPES`] distinct values.
fn resource_types(text: &str) -> Option<Vec<&str>> {
    let b = text.as_bytes();
    let mut out: Vec<&str> = Vec::new();
    for at in memchr::memmem::find_iter(b, b"\"resourceType\"") {
        let mut i = at + b"\"resourceType\"".len();
        let skip_ws = |i: &mut usize| {
            while matches!(b.get(*i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
                *i += 1;
            }
        };
        skip_ws(&mut i);
        if b.get(i) != Some(&b':') {
            continue;
        }
        i += 1;
        skip_ws(&mut i);
        if b.get(i) != Some(&b'"') {
            continue;
        }
        let start = i + 1;
        let Some(len) = b.get(start..).and_then(|r| memchr::memchr(b'"', r)) else {
            continue;
        };
        if let Some(v) = text.get(start..start + len) {
            if !out.contains(&v) {
                if out.len() == MAX_RESOURCE_TYPES {
                    return None;
                }
                out.push(v);
            }
        }
    }
    Some(out)
}

/// Whether a string token is certainly classified plain and not handled specially by the
/// walker (see [`mask_json`]).
pub(crate) fn plain_string(tok: &[u8]) -> bool {
    /// Prefixes (after leading white space) of the envelopes the walker classifies.
    const MARKERS: [&[u8]; 4] = [b"-----BEGIN", b"age-encryption", b"vault:v", b"ENC["];
    if matches!(
        tok,
        b"ciphertext" | b"data" | b"content" | b"valueBase64Binary"
    ) {
        return false;
    }
    // Every string of a body comes through here, and most are short and start with no
    // marker's first byte: nothing else to rule out.
    let first = tok.iter().find(|c| !c.is_ascii_whitespace());
    if tok.len() < 24 && !MARKERS.iter().any(|m| m.first() == first) {
        return true;
    }
    let t = tok.trim_ascii();
    if MARKERS.iter().any(|m| t.starts_with(m)) {
        return false;
    }
    // JOSE compact tokens and base64 envelopes are long runs of base64(url) characters: the
    // JOSE ones have dots (3 or 5 parts, see `classify`), the binary envelopes (AWS Encryption
    // SDK, Tink) are 40 or more bytes of standard base64. A FHIR key such as
    // `medicationCodeableConcept` (25 letters) is neither; counting it as a possible token sent
    // every MedicationRequest to the full walk.
    if t.len() >= 24
        && t.iter().all(|&c| {
            c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'=' | b'.' | b'+' | b'/')
        })
    {
        let jose = t.contains(&b'.');
        let envelope = t.len() >= 40
            && t.iter()
                .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'='));
        return !(jose || envelope);
    }
    true
}

/// [`rule_dead_in`] over the tokens `toks` of `body`, joined between `"` in `buf` so that no
/// match spans two of them. `None` when a token is out of range. Adds to `passing` the content
/// hash of every token in which a match passed its checks, or sets it to `None` when that is
/// not known for every such token (see [`Scanner::plain_only`]).
fn dead_over<'a, 'w>(
    rule: &'w CompiledRule,
    toks: impl Iterator<Item = &'a fastpath::Tok>,
    body: &str,
    buf: &mut Vec<u8>,
    hot: &mut Hotwords<'w>,
    passing: &mut Option<Vec<u64>>,
) -> Option<bool> {
    let b = body.as_bytes();
    buf.clear();
    buf.push(b'"');
    // Where each token starts in `buf`, to map a match back to its token.
    let mut starts = Vec::new();
    for t in toks {
        starts.push(buf.len());
        buf.extend_from_slice(b.get(t.start as usize..t.end as usize)?);
        buf.push(b'"');
    }
    let tokens = std::str::from_utf8(buf).ok()?;
    let mut seen = Vec::new();
    let mut record = |at: usize| {
        let i = starts.partition_point(|&s| s <= at).saturating_sub(1);
        let start = starts.get(i).copied().unwrap_or(0);
        let end = starts.get(i + 1).map_or(tokens.len(), |&e| e) - 1;
        seen.push(fastpath::content_hash(buf_slice(tokens, start, end)));
    };
    // The matches are collected only for a caller that keeps them (a plain rule, in a body
    // that gets the restriction); otherwise the first match that scores ends the search.
    let collect = passing
        .is_some()
        .then_some(&mut record as &mut dyn FnMut(usize));
    let dead = rule_dead_in(rule, tokens, body, hot, collect);
    match (dead, passing.as_mut()) {
        (Some(d), Some(p)) => {
            p.append(&mut seen);
            Some(d)
        }
        (Some(d), None) => Some(d),
        (None, _) => {
            *passing = None;
            Some(false)
        }
    }
}

/// `text[start..end]` as bytes, empty when out of range (never: the ranges are the tokens').
fn buf_slice(text: &str, start: usize, end: usize) -> &[u8] {
    text.as_bytes().get(start..end).unwrap_or_default()
}

/// Whether `rule` provably yields no finding in any of the quote-separated `tokens` of
/// `body` (see [`Scanner::json_body_check`]): no match passes boundary, separator and
/// validator checks, or every one that does needs a hotword and none occurs in the body.
/// `pass`, when given, gets the start of every match that passes those checks and could score;
/// `None` means alive without having seen every such match (a pattern it cannot reason about, or
/// the work budget spent).
fn rule_dead_in<'w>(
    rule: &'w CompiledRule,
    tokens: &str,
    body: &str,
    hot: &mut Hotwords<'w>,
    mut pass: Option<&mut dyn FnMut(usize)>,
) -> Option<bool> {
    let text = tokens;
    let (mut needs_ctx, mut alive) = (false, false);
    for pat in &rule.patterns {
        if !pat.quote_free {
            return None;
        }
        // Capture space for whichever engine runs (each is an allocation, per pattern and body).
        let mut caps = pat.scan.as_ref().map(|re| re.create_captures());
        let mut locs = caps.is_none().then(|| pat.regex.capture_locations());
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
            let locs = locs.as_mut()?;
            let m = pat.regex.captures_read_at(locs, text, pos)?;
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
                return None;
            }
            let after_start = next_char(text, ms);
            let bounded = boundary_ok(pat.boundary, text, vs, ve);
            if bounded && shape_fail(pat, rule, text, vs, ve).is_none() {
                let scores = score(pat, rule, false).is_some();
                if scores || score(pat, rule, true).is_some() {
                    match pass.as_mut() {
                        // Every such match is reported, so the search goes on after the first
                        // that makes the rule alive.
                        Some(pass) => pass(ms),
                        // Nobody asks for them: the first that scores without context decides.
                        None if scores => return Some(false),
                        None => {}
                    }
                    alive |= scores;
                    needs_ctx |= !scores;
                }
            }
            pos = if !bounded && vs == ms {
                run_end(text, vs, pat.boundary).max(after_start)
            } else {
                after_start
            };
        }
    }
    Some(!alive && (!needs_ctx || no_hotword(rule, body, hot)))
}

/// Whether none of `rule`'s hotwords can occur in a plain JSON body (see
/// [`Scanner::json_body_check`]). A hotword is found in the segment (a verbatim token) or in
/// the field context (keys and sibling values joined by spaces, key names also split into
/// lower-cased words, each a substring of the key), so a multi-word hotword may span two
/// pieces: it is ruled out only when one of its space-separated parts occurs nowhere in the
/// body (ASCII case-insensitive, as the hotword automaton matches). A rule without context
/// has no hotword to rule out.
fn no_hotword<'w>(rule: &'w CompiledRule, body: &str, hot: &mut Hotwords<'w>) -> bool {
    let Some(c) = &rule.context else {
        return false;
    };
    hot.prefetch(body, &c.parts);
    // Shortest first (see `CompiledContext::probe_order`).
    !c.probe_order
        .iter()
        .filter_map(|&i| c.word_list.get(i))
        .any(|w| {
            w.split(' ')
                .filter(|p| !p.is_empty())
                .all(|p| hot.present(body, p))
        })
}

/// The words [`Scanner::json_body_check`] asks about before it reads any token, for the rules
/// of `plan`: the words of the keywords of keyword rules without selectors, and the hotword
/// parts of the rules it may prove dead by an absent hotword up front (selector rules and
/// rules with resource-wide exceptions, each of whose findings needs a hotword).
fn upfront_words(rules: &RuleSet, plan: &Plan) -> WordSet {
    let mut words: Vec<&str> = Vec::new();
    for q in &plan.quick {
        let Some(rule) = rules.compiled().get(q.rule) else {
            continue;
        };
        if q.keywords && !q.structural {
            words.extend(rules.keyword_index().rule_parts(q.rule));
        }
        if (q.structural || excepts_types(rule))
            && rule
                .patterns
                .iter()
                .all(|p| score(p, rule, false).is_none())
        {
            if let Some(c) = &rule.context {
                words.extend(c.word_list.iter().flat_map(|w| w.split(' ')));
            }
        }
    }
    WordSet::new(words)
}

/// Whether [`excepted_types`] of `rule` is not empty, without building it.
fn excepts_types(rule: &CompiledRule) -> bool {
    type_exceptions(rule).next().is_some()
}

/// The resource types whose every value `rule` excepts unconditionally: exceptions without
/// routes or fingerprints whose field is `fhir:<Type>.*`. Such a value's address is
/// `fhir:<Type>.…` (see [`fastpath::Objects`]), which the glob matches.
fn excepted_types(rule: &CompiledRule) -> Vec<&str> {
    type_exceptions(rule).collect()
}

fn type_exceptions(rule: &CompiledRule) -> impl Iterator<Item = &str> {
    rule.exceptions
        .iter()
        .filter(|e| e.routes.is_empty() && e.values.is_empty())
        .flat_map(|e| &e.fields)
        .filter_map(|f| f.strip_prefix("fhir:")?.strip_suffix(".*"))
        .filter(|t| crate::engine::carrier::safe_name(t))
}
