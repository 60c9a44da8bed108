//! Keywords and hotwords: the keyword prefilter that decides which keyword rules run on a
//! segment (once per body when it can), and the context search (hotwords near the value or in
//! the field context) that boosts a candidate's score.

use super::segment::{FieldCtx, PathElem};
use super::Scanner;
use crate::engine::rules::CompiledContext;

/// Longest key / value fragment copied into a field context, and the total cap: context is a
/// set of words, not a document.
const MAX_CTX_PIECE: usize = 128;
const MAX_CTX_TOTAL: usize = 2048;

impl Scanner<'_> {
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
        // Multi-word keywords by one word: field context splits key names into words. A plan
        // without keyword rules (a body narrowed to a few rules) reads nothing from it.
        if let Some((ac, owner)) = self
            .rules
            .body_keyword_automaton()
            .filter(|_| self.plan.any_keywords)
        {
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
            .plan
            .quick
            .iter()
            .any(|q| q.keywords && present.get(q.rule).copied().unwrap_or(true));
        self.kw_in_body = Some(present);
    }

    /// Whether [`Scanner::body_keywords`] already ran for this body.
    pub(crate) fn has_body_keywords(&self) -> bool {
        self.kw_in_body.is_some()
    }

    /// Marks in `kw_hit` every rule whose keyword occurs in the text or the field context.
    pub(super) fn keyword_prefilter(&mut self, text: &str, ctx: &FieldCtx<'_>) {
        let Some((ac, owner)) = self.rules.keyword_automaton() else {
            return;
        };
        self.kw_hit.clear();
        self.kw_hit.resize(self.rules.len(), false);
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
}

pub(super) fn field_ctx_hit(
    c: &CompiledContext,
    buf: &mut String,
    ready: &mut bool,
    ctx: &FieldCtx<'_>,
) -> Option<usize> {
    render_ctx(buf, ready, ctx);
    hotword_in(c, buf, 0, buf.len(), None)
}

pub(super) fn window_hit(c: &CompiledContext, text: &str, vs: usize, ve: usize) -> Option<usize> {
    let ws = chars_back(text, vs, c.window_before);
    let we = chars_forward(text, ve, c.window_after);
    hotword_in(c, text, ws, we, Some((vs, ve)))
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
        let piece = truncate(piece, MAX_CTX_PIECE);
        buf.push_str(piece);
        buf.push(' ');
        push_split(buf, piece);
    }
}

/// Appends the words of an identifier-like name (`SocialSecurityNumber`, `ptSSN`,
/// `patient_ssn`, `PATIENT-SSN`, `member.dateOfBirth`) lower-cased and joined by single spaces
/// (`social security number`, `pt ssn`, …), followed by a space, so that multi-word hotwords
/// and keywords (`social security`, `date of birth`, `medical record`) match key names as
/// legacy JSON APIs, form fields and custom headers write them. Nothing is appended when the
/// name is not identifier-like (prose, URLs: matched verbatim only) or has one word only.
///
/// Sound for the body-level keyword checks: splitting only lower-cases, drops `_`, `-`, `.`
/// and inserts spaces, so every word of the split form is a case-insensitive substring of the
/// name (see `RuleSet::body_keyword_words` and the fast path's `KeywordIndex`).
pub(super) fn push_split(buf: &mut String, piece: &str) {
    if piece.len() < 4
        || !piece
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return;
    }
    let start = buf.len();
    let mut words = 0usize;
    let b = piece.as_bytes();
    let mut prev: Option<u8> = None;
    for (i, &c) in b.iter().enumerate() {
        if !c.is_ascii_alphanumeric() {
            prev = None;
            continue;
        }
        let split = match prev {
            None => true,
            Some(p) => {
                (p.is_ascii_digit() != c.is_ascii_digit())
                    || (p.is_ascii_lowercase() && c.is_ascii_uppercase())
                    // `SSNumber`, `XMLHttp`: an upper-case run ends before its last letter
                    // when a lower-case letter follows.
                    || (p.is_ascii_uppercase()
                        && c.is_ascii_uppercase()
                        && b.get(i + 1).is_some_and(u8::is_ascii_lowercase))
            }
        };
        if split {
            if words > 0 {
                buf.push(' ');
            }
            words += 1;
        }
        buf.push(char::from(c.to_ascii_lowercase()));
        prev = Some(c);
    }
    if words < 2 {
        buf.truncate(start);
    } else {
        buf.push(' ');
    }
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

/// Whether `text[hs..he]` starts and ends on word breaks, so that `lic` does not match inside
/// `duplicate` while `ssn` still matches `patient_ssn`, `SSN:`, `SSN536…` and `patientSsn`.
pub(super) fn word_boundaries(text: &str, hs: usize, he: usize) -> bool {
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

/// Whether there is a word break between `a` and `b`: either is not alphanumeric, a letter
/// meets a digit, or a lowercase letter is followed by an uppercase one (camelCase).
fn is_break(a: char, b: char) -> bool {
    !a.is_alphanumeric()
        || !b.is_alphanumeric()
        || a.is_numeric() != b.is_numeric()
        || (a.is_lowercase() && b.is_uppercase())
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
