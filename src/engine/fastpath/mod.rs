//! The one-pass profile behind the whole-body clean check (`Scanner::json_body_check`).
//!
//! Most request bodies are clean, and proving a plain JSON body clean used to take about seven
//! linear passes (UTF-8, escapes, a keyword automaton, `serde_json`, a tokenizer, a multi-regex
//! and one rule regex), each at 0.5–2 GB/s. This module folds the per-byte work into one pass
//! that validates the JSON grammar, finds every key, string and number, and notes each
//! token's digit and upper-case counts (keywords are looked for once per body, before, see
//! [`KeywordIndex`]). What is left for the regexes is then only the handful of tokens that
//! *could* hold a match of a live rule: a match lies inside one run of its pattern's alphabet,
//! with the digits, capitals and separators the pattern needs within its length (see
//! [`TokenFilter`]). On FHIR JSON that keeps the `meta.versionId`s and drops the timestamps,
//! UUIDs, codes and prose.
//!
//! Everything here is conservative: when the pass meets anything it cannot reason about (an
//! escape other than `\"`, `\\`, `\n`, `\r` and `\t` (see the `escapes` module), non-ASCII, a
//! number that would not print back verbatim, a possible envelope or base64 payload, deep
//! nesting, invalid JSON) it returns `None` and the caller takes the full structural walk,
//! which is always correct. So a bug here can cost time, and the agreement test
//! (`whole_body_check_agrees_with_full_walk`) guards that it never costs a finding.
//!
//! Part of the pure engine: no I/O, no clocks, no shared state. Tests live in `tests.rs`.

use super::normalize::MIN_BASE64_RUN;
use super::normalize::{base64_runs, decode_base64_text, has_entity, has_percent_escape};

/// Every rule keyword split into the words the whole-body check looks for.
///
/// A keyword matches a segment or its field context (keys and sibling values joined by spaces,
/// key names also split into words), ASCII case-insensitively. In a plain JSON body every
/// segment is a key, a string or a number, and every word of a split key name is a
/// case-insensitive substring of the key, so a keyword counts as present when each of its
/// words occurs somewhere in the body (an over-approximation, which only keeps a rule alive).
/// Each word is looked for once per body, together with the other words the check asks before
/// any token (see [`WordSet`] and `Scanner::json_body_check`): looking for every fragment in
/// every new string was once most of what profiling a clean body cost.
///
/// A rule with a keyword that has no word (spaces only) always counts as present.
#[derive(Debug, Default)]
pub(crate) struct KeywordIndex {
    /// Lower-cased words of keywords, each once.
    parts: Vec<String>,
    /// Per rule: its keywords, each as the word indices that must all be present, or `None`
    /// when one of its keywords cannot be ruled out by words (see above).
    rules: Vec<Option<Vec<Vec<usize>>>>,
}

impl KeywordIndex {
    /// `keywords[r]` = rule `r`'s keywords as written.
    pub(crate) fn new(keywords: &[Vec<String>]) -> KeywordIndex {
        let mut ix = KeywordIndex::default();
        for kws in keywords {
            let mut rule = Vec::new();
            let mut usable = true;
            for k in kws {
                let mut frags = Vec::new();
                for w in k.split(' ').filter(|w| !w.is_empty()) {
                    let w = w.to_ascii_lowercase();
                    let id = match ix.parts.iter().position(|p| *p == w) {
                        Some(id) => id,
                        None => {
                            ix.parts.push(w);
                            ix.parts.len() - 1
                        }
                    };
                    frags.push(id);
                }
                // A keyword of spaces only matches a joined context: never provable absent.
                if frags.is_empty() {
                    usable = false;
                }
                rule.push(frags);
            }
            ix.rules.push(usable.then_some(rule));
        }
        ix
    }

    /// The words of rule `r`'s keywords, lower-cased (see [`KeywordIndex::rule_present`]).
    pub(crate) fn rule_parts(&self, r: usize) -> impl Iterator<Item = &str> {
        self.rules
            .get(r)
            .and_then(Option::as_ref)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|&f| self.parts.get(f).map(String::as_str))
    }

    /// Whether one of rule `r`'s keywords may occur, given `present(word)` (a lower-cased
    /// word, answered ASCII case-insensitively over the whole body). Rules without keywords
    /// answer false; unknown rules true.
    pub(crate) fn rule_present<'s>(
        &'s self,
        r: usize,
        mut present: impl FnMut(&'s str) -> bool,
    ) -> bool {
        let Some(kws) = self.rules.get(r) else {
            return true;
        };
        kws.as_ref().is_none_or(|kws| {
            kws.iter().any(|k| {
                k.iter()
                    .all(|&f| self.parts.get(f).is_none_or(|p| present(p)))
            })
        })
    }
}

/// One key, string or number of the body.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tok {
    pub(crate) start: u32,
    pub(crate) end: u32,
    pub(crate) digits: u32,
    pub(crate) upper: u32,
    /// A string equal to an earlier string of the body (known from the distinct-string set,
    /// so only for strings it records: not for short ones, numbers, or once the set is
    /// full). The earlier one is then a token with the same counts too.
    pub(crate) repeat: bool,
    /// The innermost object of a value token, for [`Objects::resource_of`]; `u32::MAX` for
    /// keys, for pieces of an escaped string after its first, and outside any object.
    pub(crate) obj: u32,
}

/// What the one pass learned about a plain JSON body.
#[derive(Debug)]
pub(crate) struct Profile {
    /// Tokens with at least the requested number of digits, in order.
    pub(crate) tokens: Vec<Tok>,
    /// Whether some string had escapes (see `escapes::escaped_string`): its tokens are then the
    /// raw pieces between the escapes, and only patterns that cannot match what the escapes
    /// decode to may be proved dead over them.
    pub(crate) escaped: bool,
    /// The body's objects and their resource types.
    pub(crate) objects: Objects,
}

// Flags from [`counts`].
/// Ends the quick string reader: control characters (invalid in JSON strings), `\` (read again
/// by `escapes::escaped_string`, which takes a few escapes) and non-ASCII (normalisation may
/// fold it).
const BAD: u8 = 1;
/// `%` and `&`: possibly a percent escape or an XML entity.
const SPECIAL: u8 = 2;

/// The string starting at `start` (just past its opening `"`): the index of its closing `"`,
/// its digits, upper-case letters and [`BAD`]/[`SPECIAL`] flags. Eight bytes at a time (SWAR):
/// every byte of every string goes through here. On x86-64, sixteen bytes at a time with
/// SSE2 (part of that target's baseline), see [`string_at_sse2`].
#[cfg(not(target_arch = "x86_64"))]
fn string_at(b: &[u8], start: usize) -> Option<(usize, usize, usize, u8)> {
    string_at_swar(b, start)
}

/// [`string_at`] eight bytes at a time in a `u64` (SWAR), where SSE2 is not at hand.
#[cfg(any(test, not(target_arch = "x86_64")))]
fn string_at_swar(b: &[u8], start: usize) -> Option<(usize, usize, usize, u8)> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // High bit of each byte of `y` (all bytes < 0x80) set where that byte is zero. Exact: no
    // carry crosses bytes, unlike the classic `(y - ONES) & !y` trick.
    let zero = |y: u64| !((y + 0x7F * ONES) | y) & HIGH;
    let eq = |x: u64, c: u8| zero(x ^ (u64::from(c) * ONES));
    // High bit set where lo <= byte < hi (bytes < 0x80, 0 < lo < hi <= 0x80).
    let range = |x: u64, lo: u8, hi: u8| {
        (x + u64::from(0x80 - lo) * ONES) & !(x + u64::from(0x80 - hi) * ONES) & HIGH
    };
    let rest = b.get(start..)?;
    let (mut digits, mut upper, mut flags) = (0usize, 0usize, 0u8);
    let mut k = 0usize;
    while let Some(chunk) = rest.get(k..k + 8) {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        let x = u64::from_le_bytes(w);
        if x & HIGH != 0 {
            return None;
        }
        let quote = eq(x, b'"');
        // Only the bytes before the closing quote count.
        let keep = if quote == 0 {
            HIGH
        } else {
            HIGH & ((quote & quote.wrapping_neg()) - 1)
        };
        digits += high_bits(range(x, b'0', b'9' + 1) & keep);
        upper += high_bits(range(x, b'A', b'Z' + 1) & keep);
        if (range(x, 0x01, 0x20) | eq(x, 0) | eq(x, b'\\')) & keep != 0 {
            flags |= BAD;
        }
        if (eq(x, b'%') | eq(x, b'&')) & keep != 0 {
            flags |= SPECIAL;
        }
        if quote != 0 {
            let n = (quote.trailing_zeros() / 8) as usize;
            return Some((start + k + n, digits, upper, flags));
        }
        k += 8;
    }
    string_tail(rest, start, k, (digits, upper, flags))
}

/// [`string_at`] sixteen bytes at a time with SSE2, which every x86-64 CPU has: the scan of
/// the one pass was a third of a clean FHIR scan with eight-byte SWAR, at about five
/// instructions per byte. The byte classes come from compares and one `movemask` each; the
/// digit and capital counts from `psadbw`, which sums the bytes of a 0/1 mask.
#[cfg(target_arch = "x86_64")]
fn string_at(b: &[u8], start: usize) -> Option<(usize, usize, usize, u8)> {
    use safe_arch::{
        add_i64_m128i, bitand_m128i, bitor_m128i, byte_shr_imm_u128_m128i, cmp_eq_mask_i8_m128i,
        cmp_gt_mask_i8_m128i, cmp_lt_mask_i8_m128i, get_i64_from_m128i_s, m128i,
        move_mask_i8_m128i, set_splat_i8_m128i, sum_of_u8_abs_diff_m128i, zeroed_m128i,
    };
    // Bytes are < 0x80 once the high bits are checked, so signed compares order them.
    let splat = |c: u8| set_splat_i8_m128i(c as i8);
    let within = |x: m128i, lo: u8, hi: u8| {
        bitand_m128i(
            cmp_gt_mask_i8_m128i(x, splat(lo - 1)),
            cmp_lt_mask_i8_m128i(x, splat(hi + 1)),
        )
    };
    let index = m128i::from([0u8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
    let sum = |v: m128i| {
        let lanes = add_i64_m128i(v, byte_shr_imm_u128_m128i::<8>(v));
        get_i64_from_m128i_s(lanes) as usize
    };
    let rest = b.get(start..)?;
    let (mut digits, mut upper) = (zeroed_m128i(), zeroed_m128i());
    let mut flags = 0u8;
    let mut k = 0usize;
    while let Some(chunk) = rest.get(k..k + 16) {
        let x = m128i::from(<[u8; 16]>::try_from(chunk).ok()?);
        if move_mask_i8_m128i(x) != 0 {
            return None;
        }
        let quote = move_mask_i8_m128i(cmp_eq_mask_i8_m128i(x, splat(b'"'))) as u32;
        // Only the bytes before the closing quote count.
        let n = if quote == 0 {
            16
        } else {
            quote.trailing_zeros()
        };
        let keep = cmp_lt_mask_i8_m128i(index, set_splat_i8_m128i(n as i8));
        let ones = |m: m128i| {
            sum_of_u8_abs_diff_m128i(
                bitand_m128i(bitand_m128i(m, keep), splat(1)),
                zeroed_m128i(),
            )
        };
        digits = add_i64_m128i(digits, ones(within(x, b'0', b'9')));
        upper = add_i64_m128i(upper, ones(within(x, b'A', b'Z')));
        let bad = bitor_m128i(
            cmp_lt_mask_i8_m128i(x, splat(0x20)),
            cmp_eq_mask_i8_m128i(x, splat(b'\\')),
        );
        if move_mask_i8_m128i(bitand_m128i(bad, keep)) != 0 {
            flags |= BAD;
        }
        let special = bitor_m128i(
            cmp_eq_mask_i8_m128i(x, splat(b'%')),
            cmp_eq_mask_i8_m128i(x, splat(b'&')),
        );
        if move_mask_i8_m128i(bitand_m128i(special, keep)) != 0 {
            flags |= SPECIAL;
        }
        if quote != 0 {
            return Some((start + k + n as usize, sum(digits), sum(upper), flags));
        }
        k += 16;
    }
    string_tail(rest, start, k, (sum(digits), sum(upper), flags))
}

/// The end of [`string_at`] a byte at a time, past the last whole chunk: `rest[k..]`, with
/// the counts and flags of `rest[..k]`.
fn string_tail(
    rest: &[u8],
    start: usize,
    k: usize,
    (mut digits, mut upper, mut flags): (usize, usize, u8),
) -> Option<(usize, usize, usize, u8)> {
    for (j, &c) in rest.get(k..)?.iter().enumerate() {
        if c == b'"' {
            return Some((start + k + j, digits, upper, flags));
        }
        digits += usize::from(c.is_ascii_digit());
        upper += usize::from(c.is_ascii_uppercase());
        flags |= byte_flags(c);
    }
    None
}

/// How many bytes of `m` have their high bit set, where only high bits are: one multiply sums
/// the eight 0/1 bytes into the top one. `count_ones` is a dozen instructions on the baseline
/// x86-64 target (no `popcnt`), and this runs twice for every eight bytes of every string.
#[cfg(any(test, not(target_arch = "x86_64")))]
fn high_bits(m: u64) -> usize {
    ((m >> 7).wrapping_mul(0x0101_0101_0101_0101) >> 56) as usize
}

/// [`BAD`] and [`SPECIAL`] of one byte.
fn byte_flags(c: u8) -> u8 {
    let bad = !(0x20..0x80).contains(&c) || c == b'\\';
    (u8::from(bad) * BAD) | (u8::from(c == b'%' || c == b'&') * SPECIAL)
}

/// The checks a string needs once per distinct content: escapes, envelopes and ciphertext
/// keys, base64 that decodes to text. `None` ends the fast path.
#[inline(always)]
fn new_string(tok: &[u8], flags: u8, upper: usize) -> Option<()> {
    if flags & SPECIAL != 0 {
        let t = std::str::from_utf8(tok).ok()?;
        if has_percent_escape(t) || has_entity(t) {
            return None;
        }
    }
    if !super::scan::plain_string(tok) {
        return None;
    }
    if tok.len() >= MIN_BASE64_RUN && upper > 0 {
        let t = std::str::from_utf8(tok).ok()?;
        if base64_runs(t)
            .into_iter()
            .any(|(s, e)| t.get(s..e).is_none_or(|r| decode_base64_text(r).is_some()))
        {
            return None;
        }
    }
    Some(())
}

/// The distinct strings of one body, by content: a small open-addressing set of byte ranges.
struct Interned {
    /// `(hash, start, end)`; `end == 0` marks a free slot (no string ends at 0: `"` is first).
    slots: Vec<(u64, u32, u32)>,
    len: usize,
}

impl Interned {
    /// Most slots: 16 KiB, enough for the distinct keys and short values of large bodies.
    const MAX_SLOTS: usize = 1 << 10;

    /// Sized to the body (about one slot per 16 bytes, 64 to [`Interned::MAX_SLOTS`]), so a
    /// small request does not clear 16 KiB for a handful of strings.
    fn new(body_len: usize) -> Interned {
        let slots = (body_len / 16)
            .clamp(64, Interned::MAX_SLOTS)
            .next_power_of_two();
        Interned {
            slots: vec![(0, 0, 0); slots],
            len: 0,
        }
    }

    /// Records `body[start..end]`; true when an equal string was recorded before. Once half
    /// full it stops recording (later strings then all count as new, which is only slower).
    fn insert(&mut self, body: &[u8], start: usize, end: usize) -> bool {
        let Some(tok) = body.get(start..end) else {
            return false;
        };
        let h = content_hash(tok);
        let cap = self.slots.len();
        let mask = cap - 1;
        let mut i = (h as usize) & mask;
        loop {
            let Some(slot) = self.slots.get_mut(i) else {
                return false;
            };
            let (sh, ss, se) = *slot;
            if se == 0 {
                if self.len < cap / 2 {
                    if let (Ok(s), Ok(e)) = (u32::try_from(start), u32::try_from(end)) {
                        *slot = (h, s, e);
                        self.len += 1;
                    }
                }
                return false;
            }
            if sh == h && body.get(ss as usize..se as usize) == Some(tok) {
                return true;
            }
            i = (i + 1) & mask;
        }
    }
}

/// FxHash-style hash of a short byte string, eight bytes at a time. The tail is read as the
/// last eight bytes (overlapping) or, under eight bytes, assembled in a register: copying it
/// into a stack buffer called `memcpy` and stalled on the reload, a sixth of a clean scan.
/// Also the key of the walk's segment restriction (`Scanner::plain_only`): equal contents
/// hash equal, so a segment whose hash is not in the set is none of the tokens in it.
pub(crate) fn content_hash(tok: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let word = |c: &[u8]| <[u8; 8]>::try_from(c).map_or(0, u64::from_le_bytes);
    let n = tok.len();
    let mut h = n as u64;
    if n < 8 {
        let w = tok.iter().rev().fold(0u64, |w, &c| (w << 8) | u64::from(c));
        return (h.rotate_left(5) ^ w).wrapping_mul(K);
    }
    let mut chunks = tok.chunks_exact(8);
    for c in &mut chunks {
        h = (h.rotate_left(5) ^ word(c)).wrapping_mul(K);
    }
    if !chunks.remainder().is_empty() {
        h = (h.rotate_left(5) ^ word(tok.get(n - 8..).unwrap_or_default())).wrapping_mul(K);
    }
    h
}

/// What the container stack expects next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// A value (top level, after `:`, after `,` in an array).
    Value,
    /// A value or `]` (just after `[`).
    ValueOrClose,
    /// A key or `}` (just after `{`).
    KeyOrClose,
    /// A key (after `,` in an object).
    Key,
    /// `:` after a key.
    Colon,
    /// `,` or the container's close, or the end at top level.
    Next,
}

/// Profiles an ASCII JSON text in one pass, or `None` when the text needs the full walk (see
/// the module docs). `max_depth` is the engine's JSON depth limit; `min_digits` the fewest
/// digits a token needs to be kept.
pub(crate) fn profile(
    text: &str,
    max_depth: usize,
    min_digits: usize,
    objects_wanted: bool,
) -> Option<Profile> {
    // `serde_json` refuses nesting past 128; stay well below so the walker always parses what
    // this pass accepts.
    let max_depth = max_depth.min(100);
    let b = text.as_bytes();
    let mut tokens = Vec::new();
    let mut known = Interned::new(b.len());
    // For strings with escapes: the decoded content and the raw pieces between escapes.
    let mut scratch = (Vec::new(), Vec::new());
    let mut escaped = false;
    // Container stack as bits (1 = object), deepest in bit 0.
    let (mut stack, mut depth) = (0u128, 0usize);
    // The objects, and per depth the innermost object (arrays are transparent); after the key
    // `resourceType`, the object whose member value comes next. Tracked only when asked: it
    // costs a clean body a few per cent of this pass.
    let mut objects = Objects::default();
    let mut inner = [u32::MAX; 101];
    let mut pending: Option<u32> = None;
    let mut expect = Expect::Value;
    let mut i = 0usize;
    while let Some(&c) = b.get(i) {
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'{' | b'[' => {
                if !matches!(expect, Expect::Value | Expect::ValueOrClose) {
                    return None;
                }
                depth += 1;
                if depth >= max_depth {
                    return None;
                }
                stack = (stack << 1) | u128::from(c == b'{');
                pending = None;
                if objects_wanted {
                    let outer = *inner.get(depth - 1)?;
                    *inner.get_mut(depth)? = if c == b'{' {
                        objects.open(outer)
                    } else {
                        outer
                    };
                }
                expect = if c == b'{' {
                    Expect::KeyOrClose
                } else {
                    Expect::ValueOrClose
                };
                i += 1;
            }
            b'}' | b']' => {
                let obj = c == b'}';
                let ok = match expect {
                    Expect::KeyOrClose => obj,
                    Expect::ValueOrClose => !obj,
                    Expect::Next => depth > 0 && (stack & 1 == 1) == obj,
                    _ => false,
                };
                if !ok {
                    return None;
                }
                stack >>= 1;
                depth -= 1;
                pending = None;
                expect = Expect::Next;
                i += 1;
            }
            b',' => {
                if expect != Expect::Next || depth == 0 {
                    return None;
                }
                expect = if stack & 1 == 1 {
                    Expect::Key
                } else {
                    Expect::Value
                };
                pending = None;
                i += 1;
            }
            b':' => {
                if expect != Expect::Colon {
                    return None;
                }
                expect = Expect::Value;
                i += 1;
            }
            b'"' => {
                let key = matches!(expect, Expect::Key | Expect::KeyOrClose);
                expect = match expect {
                    Expect::Key | Expect::KeyOrClose => Expect::Colon,
                    Expect::Value | Expect::ValueOrClose => Expect::Next,
                    _ => return None,
                };
                let start = i + 1;
                let obj = if objects_wanted {
                    *inner.get(depth)?
                } else {
                    u32::MAX
                };
                let (end, digits, upper, flags) = string_at(b, start)?;
                if flags & BAD != 0 {
                    // An escape, or a byte that ends the fast path: read it again, slowly.
                    let first = tokens.len();
                    let end = escaped_tokens(b, start, min_digits, &mut scratch, &mut tokens)?;
                    escaped = true;
                    // An escaped key is never `resourceType` as written, and an escaped type
                    // value is not one the walker takes as written.
                    if let Some(o) = pending.take().filter(|_| !key) {
                        objects.type_value(o, None);
                    }
                    if !key && objects_wanted {
                        // The value is known by where it starts: only a piece starting there.
                        for t in tokens.get_mut(first..).into_iter().flatten() {
                            if t.start as usize == start {
                                t.obj = obj;
                            }
                        }
                    }
                    i = end + 1;
                    continue;
                }
                let tok = b.get(start..end)?;
                // A string seen before already passed the checks; JSON repeats its keys (and
                // many values) in every element. A short one without `%` or `&` is checked
                // again instead: that is cheaper than hashing it.
                let short = tok.len() < MIN_BASE64_RUN && flags & SPECIAL == 0;
                let repeat = !short && known.insert(b, start, end);
                if !repeat {
                    new_string(tok, flags, upper)?;
                }
                if key {
                    if objects_wanted && tok == b"resourceType" {
                        pending = objects.type_key(obj);
                    }
                } else if let Some(o) = pending.take() {
                    objects.type_value(o, Some((start, end, tok)));
                }
                if digits >= min_digits {
                    let mut t = tok_at(start, end, digits, upper, repeat)?;
                    if !key {
                        t.obj = obj;
                    }
                    tokens.push(t);
                }
                i = end + 1;
            }
            b'-' | b'0'..=b'9' => {
                if !matches!(expect, Expect::Value | Expect::ValueOrClose) {
                    return None;
                }
                let start = i;
                let digits = number(b, &mut i)?;
                if let Some(o) = pending.take() {
                    objects.type_value(o, None);
                }
                if digits >= min_digits {
                    let mut t = tok_at(start, i, digits, 0, false)?;
                    if objects_wanted {
                        t.obj = *inner.get(depth)?;
                    }
                    tokens.push(t);
                }
                expect = Expect::Next;
            }
            b't' | b'f' | b'n' => {
                if !matches!(expect, Expect::Value | Expect::ValueOrClose) {
                    return None;
                }
                let lit: &[u8] = match c {
                    b't' => b"true",
                    b'f' => b"false",
                    _ => b"null",
                };
                if !b.get(i..)?.starts_with(lit) {
                    return None;
                }
                i += lit.len();
                if let Some(o) = pending.take() {
                    objects.type_value(o, None);
                }
                expect = Expect::Next;
            }
            _ => return None,
        }
    }
    if expect != Expect::Next || depth != 0 {
        return None;
    }
    Some(Profile {
        tokens,
        escaped,
        objects,
    })
}

fn tok_at(start: usize, end: usize, digits: usize, upper: usize, repeat: bool) -> Option<Tok> {
    Some(Tok {
        start: u32::try_from(start).ok()?,
        end: u32::try_from(end).ok()?,
        digits: u32::try_from(digits).ok()?,
        upper: u32::try_from(upper).ok()?,
        repeat,
        obj: u32::MAX,
    })
}

/// Parses a JSON number at `*i` (advancing past it) and returns its digit count, or `None`
/// when it is not valid JSON or would not print back verbatim through the walker: an
/// exponent, `-0`, an integer past 18 digits, a decimal past 15 digits or with a trailing zero.
fn number(b: &[u8], i: &mut usize) -> Option<usize> {
    let start = *i;
    let mut j = start;
    if b.get(j) == Some(&b'-') {
        j += 1;
    }
    let int_start = j;
    while b.get(j).is_some_and(u8::is_ascii_digit) {
        j += 1;
    }
    let int_len = j - int_start;
    if int_len == 0 || (int_len > 1 && b.get(int_start) == Some(&b'0')) {
        return None;
    }
    let mut digits = int_len;
    if b.get(j) == Some(&b'.') {
        j += 1;
        let frac_start = j;
        while b.get(j).is_some_and(u8::is_ascii_digit) {
            j += 1;
        }
        let frac = j - frac_start;
        if frac == 0 || b.get(j - 1) == Some(&b'0') {
            return None;
        }
        digits += frac;
        if digits > 15 {
            return None;
        }
    } else if digits > 18 || (b.get(start) == Some(&b'-') && b.get(int_start..j) == Some(b"0")) {
        return None;
    }
    if matches!(b.get(j), Some(b'e' | b'E' | b'+' | b'-' | b'.')) {
        return None;
    }
    *i = j;
    Some(digits)
}

mod escapes;
mod filter;
mod resources;
mod words;
use escapes::escaped_tokens;
pub(crate) use filter::{FilterScratch, Needs, TokenFilter};
pub(crate) use resources::Objects;
pub(crate) use words::WordSet;

#[cfg(test)]
mod tests;
