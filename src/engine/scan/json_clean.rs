//! The whole-body JSON clean check: proving on the raw text of a plain JSON body, in a few
//! linear passes, that the structural walk would yield nothing, and the per-segment shortcut
//! for segments of such a body.

use super::matching::{boundary_ok, next_char, run_end, score, shape_fail, WORK_FACTOR};
use super::segment::Segment;
use super::Scanner;
use crate::engine::fastpath;
use crate::engine::normalize::{base64_runs, MIN_BASE64_RUN};
use crate::engine::rules::CompiledRule;

impl Scanner<'_> {
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
    ///
    /// [`CompiledPattern::quote_free`]: crate::engine::rules::CompiledPattern::quote_free
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
        // Shared by every rule whose candidates need a hotword: the body lower-cased once, and
        // each hotword part looked for once (several rules share parts such as `date`).
        let mut hot = Hotwords::default();
        for ((_, rule), buf) in live.iter().zip(bufs) {
            if buf.is_empty() {
                continue;
            }
            let Ok(tokens) = String::from_utf8(buf) else {
                return false;
            };
            if !rule_dead_in(rule, &tokens, text, &mut hot) {
                return false;
            }
        }
        true
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
            if run >= MIN_BASE64_RUN && upper && other {
                maybe_b64 = true;
            }
        }
        // Possibly base64: only the runs that could decode to text need the full path.
        if maybe_b64 && !base64_runs(seg.text).is_empty() {
            return false;
        }
        digits < self.min_plain_digits
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
fn rule_dead_in(rule: &CompiledRule, tokens: &str, body: &str, hot: &mut Hotwords) -> bool {
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
    !c.word_list.iter().any(|w| {
        w.split(' ')
            .filter(|p| !p.is_empty())
            .all(|p| hot.present(body, p))
    })
}

/// Which hotword parts occur in a body (ASCII case-insensitive), computed lazily and once per
/// part for all the rules [`rule_dead_in`] checks in one body.
#[derive(Default)]
struct Hotwords {
    lower: Option<String>,
    seen: Vec<(String, bool)>,
}

impl Hotwords {
    fn present(&mut self, body: &str, part: &str) -> bool {
        if let Some(&(_, v)) = self.seen.iter().find(|(k, _)| k.eq_ignore_ascii_case(part)) {
            return v;
        }
        let part = part.to_ascii_lowercase();
        let lower = self.lower.get_or_insert_with(|| body.to_ascii_lowercase());
        let v = memchr::memmem::find(lower.as_bytes(), part.as_bytes()).is_some();
        self.seen.push((part, v));
        v
    }
}
