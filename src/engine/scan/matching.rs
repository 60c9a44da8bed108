//! Matching one rule in one segment variant: regex candidates, boundaries, separator and
//! validator checks, context and score, and keeping the best of overlapping candidates.

use super::findings::MAX_NEAR_MISSES;
use super::keywords::{field_ctx_hit, window_hit};
use super::segment::Segment;
use super::Scanner;
use crate::engine::normalize::OffsetMap;
use crate::engine::rules::{mask_value, Boundary, CompiledPattern, CompiledRule, CONTEXT_FLOOR};
use crate::engine::NearMiss;

/// Upper bound on regex work per (rule, pattern, segment), as a multiple of the segment length.
/// Resuming one character after a rejected candidate keeps overlapping candidates, but a
/// pathological pattern (long unbounded repetition that validators reject) could then go
/// quadratic; past this budget we fall back to non-overlapping search for that segment.
pub(super) const WORK_FACTOR: usize = 16;

impl Scanner<'_> {
    /// Collects accepted candidates of `rule` in `text` into `self.cands` (and, when
    /// explaining, rejected ones into the near misses).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn match_rule(
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
        let ri = self.plan.eligible.get(slot).copied().unwrap_or(0);
        let mut field_hit: Option<Option<usize>> = None;
        let budget = text.len().saturating_mul(WORK_FACTOR).saturating_add(4096);
        if self.slots.len() <= slot {
            let n = self.plan.eligible.len().max(slot + 1);
            self.slots.resize_with(n, Vec::new);
        }
        if let Some(s) = self.slots.get_mut(slot) {
            if s.len() < rule.patterns.len() {
                *s = rule
                    .patterns
                    .iter()
                    .map(|p| p.regex.capture_locations())
                    .collect();
            }
        }
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

/// An accepted candidate within one segment variant.
#[derive(Debug, Clone, Copy)]
pub(super) struct Candidate {
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) score: f32,
    pub(super) pattern: usize,
    /// Where the hotword was found (`window`/`field`), and which one (explain only).
    pub(super) context: Option<(usize, &'static str)>,
}

/// Keeps the best candidate of every cluster of overlapping candidates (several patterns of one
/// rule often match the same value, e.g. grouped and ungrouped card formats).
pub(super) fn best_per_cluster(cands: &mut [Candidate]) -> Vec<Candidate> {
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

/// The candidate's score, or `None` if context is required and missing or it stays below
/// `min_score`.
pub(super) fn score(pat: &CompiledPattern, rule: &CompiledRule, ctx_hit: bool) -> Option<f32> {
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

/// Separator and validator checks on the value `text[vs..ve]`: `None` when it passes, else
/// the reason.
pub(super) fn shape_fail(
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

/// Whether the characters just outside `text[vs..ve]` respect the pattern's boundary.
pub(super) fn boundary_ok(boundary: Boundary, text: &str, vs: usize, ve: usize) -> bool {
    let test: fn(&char) -> bool = match boundary {
        Boundary::DigitChain => {
            return boundary_ok(Boundary::Digit, text, vs, ve) && !in_chain(text, vs, ve)
        }
        Boundary::Digit => char::is_ascii_digit,
        Boundary::Alnum => char::is_ascii_alphanumeric,
        Boundary::None => return true,
    };
    let before = text.get(..vs).and_then(|s| s.chars().next_back());
    let after = text.get(ve..).and_then(|s| s.chars().next());
    !before.as_ref().is_some_and(test) && !after.as_ref().is_some_and(test)
}

/// Whether `text[vs..ve]` continues a dot-separated numeric chain: `<digit>.` just before it
/// or `.<digit>` just after it (`Boundary::DigitChain`).
fn in_chain(text: &str, vs: usize, ve: usize) -> bool {
    let b = text.as_bytes();
    let before =
        vs >= 2 && b.get(vs - 1) == Some(&b'.') && b.get(vs - 2).is_some_and(u8::is_ascii_digit);
    let after = b.get(ve) == Some(&b'.') && b.get(ve + 1).is_some_and(u8::is_ascii_digit);
    before || after
}

/// End of the run of boundary-class characters starting at `from`.
pub(super) fn run_end(text: &str, from: usize, boundary: Boundary) -> usize {
    let test: fn(&u8) -> bool = match boundary {
        Boundary::Digit | Boundary::DigitChain => u8::is_ascii_digit,
        Boundary::Alnum => u8::is_ascii_alphanumeric,
        Boundary::None => return from,
    };
    from + text
        .as_bytes()
        .get(from..)
        .map_or(0, |b| b.iter().take_while(|c| test(c)).count())
}

/// The byte offset just after the character starting at `i` (or `i + 1` past the end).
pub(super) fn next_char(text: &str, i: usize) -> usize {
    text.get(i..)
        .and_then(|s| s.chars().next())
        .map_or(i + 1, |c| i + c.len_utf8())
}

/// Maps an offset in the normalised variant back to the segment text.
pub(super) fn source_offset(
    at: usize,
    nmap: Option<&OffsetMap>,
    pmap: Option<&OffsetMap>,
) -> usize {
    let o = nmap.map_or(at, |m| m.to_source(at));
    pmap.map_or(o, |m| m.to_source(o))
}
