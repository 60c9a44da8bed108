//! Which tokens of a plain JSON body a rule's patterns could match inside.
//!
//! The whole-body check runs a live rule's patterns only over the tokens that pass this filter,
//! and every byte that reaches a regex costs a few cycles of dependent table look-ups. So the
//! filter reads from each pattern what any of its matches needs ([`Needs`]): how many digits,
//! capitals and other (non-alphanumeric) bytes, how long it can be, and which bytes it can
//! consist of at all. A match is a run of bytes of that alphabet, so it lies inside one maximal
//! run of them; a timestamp (`2024-03-01T10:00:00Z`) has no run of `[0-9 .()+-]` with the ten
//! digits a phone number needs, and a UUID has no run of `[A-Z0-9]` as long as an IBAN.
//!
//! Every answer here is a necessary condition: a token is dropped only when no match of any of
//! the rule's patterns fits in it. Wrong in the other direction, a token is kept, which costs
//! time only.

use regex_syntax::hir::{Class, Hir, HirKind};

/// What every match of a pattern needs, as far as a quick count can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Needs {
    /// ASCII digits in any match (in ASCII text).
    pub(crate) digits: usize,
    /// ASCII upper-case letters in any match (in ASCII text).
    pub(crate) upper: usize,
    /// ASCII bytes that are neither letters nor digits (separators, punctuation, space).
    pub(crate) other: usize,
    /// Shortest possible match in bytes.
    pub(crate) min_len: usize,
    /// Longest possible match in bytes; `None` when unbounded.
    pub(crate) max_len: Option<usize>,
    /// Bit `c` set when the ASCII byte `c` can be part of a match.
    pub(crate) alphabet: u128,
}

impl Needs {
    /// Needs nothing: every token is a candidate.
    pub(crate) const NONE: Needs = Needs {
        digits: 0,
        upper: 0,
        other: 0,
        min_len: 0,
        max_len: None,
        alphabet: u128::MAX,
    };

    /// The needs of a regex, parsed with the same defaults as the `regex` crate. A pattern the
    /// parser does not accept needs nothing (it never compiles as a rule anyway).
    pub(crate) fn of_regex(src: &str) -> Needs {
        let Ok(hir) = regex_syntax::Parser::new().parse(src) else {
            return Needs::NONE;
        };
        Needs {
            digits: min_count(&hir, |c| c.is_ascii_digit()),
            upper: min_count(&hir, |c| c.is_ascii_uppercase()),
            other: min_count(&hir, |c| !c.is_ascii_alphanumeric()),
            min_len: hir.properties().minimum_len().unwrap_or(0),
            max_len: hir.properties().maximum_len(),
            alphabet: alphabet(&hir),
        }
    }
}

/// Fewest bytes satisfying `pred` in any match of `h`, counting only the ASCII part of each
/// class (the text is ASCII): a class whose ASCII members all satisfy `pred` counts one.
fn min_count(h: &Hir, pred: fn(u8) -> bool) -> usize {
    match h.kind() {
        HirKind::Empty | HirKind::Look(_) => 0,
        HirKind::Literal(l) => l.0.iter().filter(|&&c| pred(c)).count(),
        HirKind::Class(Class::Unicode(c)) => class_count(
            c.ranges()
                .iter()
                .map(|r| (u32::from(r.start()), u32::from(r.end()))),
            pred,
        ),
        HirKind::Class(Class::Bytes(c)) => class_count(
            c.ranges()
                .iter()
                .map(|r| (u32::from(r.start()), u32::from(r.end()))),
            pred,
        ),
        HirKind::Repetition(r) => {
            let n = usize::try_from(r.min).unwrap_or(usize::MAX);
            n.saturating_mul(min_count(&r.sub, pred))
        }
        HirKind::Capture(c) => min_count(&c.sub, pred),
        HirKind::Concat(v) => v
            .iter()
            .fold(0usize, |a, s| a.saturating_add(min_count(s, pred))),
        HirKind::Alternation(v) => v.iter().map(|s| min_count(s, pred)).min().unwrap_or(0),
    }
}

/// 1 when the class has ASCII members and all of them satisfy `pred`, else 0.
fn class_count(ranges: impl Iterator<Item = (u32, u32)>, pred: fn(u8) -> bool) -> usize {
    let mut any = false;
    for (s, e) in ranges {
        for c in s..=e.min(0x7F) {
            any = true;
            if !u8::try_from(c).is_ok_and(pred) {
                return 0;
            }
        }
    }
    usize::from(any)
}

/// The ASCII bytes any match of `h` can consist of, as a bit set. Look-around assertions
/// consume nothing; bytes past 0x7F cannot occur in the ASCII text the check reads.
fn alphabet(h: &Hir) -> u128 {
    let ranges = |it: &mut dyn Iterator<Item = (u32, u32)>| {
        it.fold(0u128, |set, (s, e)| {
            (s..=e.min(0x7F)).fold(set, |set, c| set | (1u128 << c))
        })
    };
    match h.kind() {
        HirKind::Empty | HirKind::Look(_) => 0,
        HirKind::Literal(l) => {
            l.0.iter()
                .filter(|c| c.is_ascii())
                .fold(0, |set, &c| set | (1u128 << c))
        }
        HirKind::Class(Class::Unicode(c)) => ranges(
            &mut c
                .ranges()
                .iter()
                .map(|r| (u32::from(r.start()), u32::from(r.end()))),
        ),
        HirKind::Class(Class::Bytes(c)) => ranges(
            &mut c
                .ranges()
                .iter()
                .map(|r| (u32::from(r.start()), u32::from(r.end()))),
        ),
        HirKind::Repetition(r) => alphabet(&r.sub),
        HirKind::Capture(c) => alphabet(&c.sub),
        HirKind::Concat(v) | HirKind::Alternation(v) => {
            v.iter().fold(0, |set, s| set | alphabet(s))
        }
    }
}

/// One distinct need of a [`TokenFilter`], with its digit need raised to the rule's validators'.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Need {
    // Field order is sort order: by digits first (see [`TokenFilter::met`]).
    digits: usize,
    upper: usize,
    other: usize,
    min_len: usize,
    max_len: Option<usize>,
    /// Index into [`TokenFilter::alphabets`].
    alphabet: usize,
    /// Needs nothing at all: met by the empty window of any token.
    trivial: bool,
}

/// Decides, per live rule, which tokens one of its patterns could match inside (see the module
/// docs). The distinct needs of all rules are evaluated once per token into a bit set, and a
/// rule is admitted when one of its needs' bits is set: this runs for every digit-bearing token
/// of a clean body, and a per-rule walk over memoised needs was the largest single cost of a
/// clean FHIR scan.
#[derive(Debug)]
pub(crate) struct TokenFilter {
    /// Distinct needs, sorted; bit `i` of a [`TokenFilter::met`] set stands for `needs[i]`,
    /// except that needs past the 63rd share bit 63 (a token meeting one of them admits every
    /// rule with one of them: more, never less).
    needs: Vec<Need>,
    /// Distinct alphabets of the needs (a handful: digits and separators, capitals and
    /// digits, …), so that a token's run mask is computed once per alphabet.
    alphabets: Vec<Alphabet>,
    /// Per rule, the bits of its needs.
    rules: Vec<u64>,
    min_digits: usize,
    min_upper: usize,
}

/// The bit of need `i` (see [`TokenFilter::needs`]).
fn need_bit(i: usize) -> u64 {
    1u64 << i.min(63)
}

impl TokenFilter {
    /// `rules[r]`: rule `r`'s patterns' [`Needs`], each with the digit need raised to what the
    /// rule's validators need in the value (which lies inside the match).
    pub(crate) fn new(rules: Vec<Vec<(Needs, usize)>>) -> TokenFilter {
        let mut alphabets: Vec<u128> = rules.iter().flatten().map(|(n, _)| n.alphabet).collect();
        alphabets.sort_unstable();
        alphabets.dedup();
        let key = |(n, at_least): &(Needs, usize)| Need {
            digits: n.digits.max(*at_least),
            upper: n.upper,
            other: n.other,
            min_len: n.min_len,
            max_len: n.max_len,
            // Every alphabet is in the list; a miss (there is none) reads as "any byte".
            alphabet: alphabets.binary_search(&n.alphabet).unwrap_or(usize::MAX),
            trivial: n.min_len == 0 && n.digits.max(*at_least) == 0 && n.upper == 0 && n.other == 0,
        };
        let mut needs: Vec<Need> = rules.iter().flatten().map(key).collect();
        needs.sort_unstable();
        needs.dedup();
        let rules = rules
            .iter()
            .map(|pats| {
                pats.iter().fold(0u64, |mask, p| {
                    // Every key is in `needs`; a miss (there is none) admits on bit 63.
                    let i = needs.binary_search(&key(p)).unwrap_or(usize::MAX);
                    mask | need_bit(i)
                })
            })
            .collect();
        TokenFilter {
            min_digits: needs.iter().map(|n| n.digits).min().unwrap_or(usize::MAX),
            min_upper: needs.iter().map(|n| n.upper).min().unwrap_or(usize::MAX),
            needs,
            alphabets: alphabets.into_iter().map(Alphabet::new).collect(),
            rules,
        }
    }

    /// Fewest digits a token needs to be admitted for any rule.
    pub(crate) fn min_digits(&self) -> usize {
        self.min_digits
    }

    /// The needs `tok` meets, as a bit set for [`TokenFilter::admits_rule`]; `tok` holds
    /// `digits` digits and `upper` upper-case letters in all, and `scratch` is reused across
    /// tokens (an allocation here was once a tenth of a clean 64 KiB scan). `tok` is ASCII, as
    /// every token of a body the one pass accepts.
    #[inline]
    pub(crate) fn met(
        &self,
        tok: &[u8],
        digits: usize,
        upper: usize,
        scratch: &mut FilterScratch,
    ) -> u64 {
        if digits < self.min_digits || upper < self.min_upper {
            return 0;
        }
        // The token's byte classes as bit masks, computed on the first need that gets past the
        // counts (most tokens stop there); tokens past 64 bytes take the windowed counts alone.
        let mut masks: Option<Masks> = None;
        // Runs per coarse class set (see [`Alphabet::coarse`]) and per alphabet, valid where
        // `coarse` and `exact` have their bit; for a long token, whether its digit and capital
        // positions are in `scratch`.
        let (mut coarse, mut exact) = (0u16, 0u64);
        let mut positioned = false;
        let mut met = 0u64;
        for (i, n) in self.needs.iter().enumerate() {
            if digits < n.digits {
                break;
            }
            let bit = need_bit(i);
            if met & bit != 0 || upper < n.upper || tok.len() < n.min_len {
                continue;
            }
            let ok = if tok.len() <= 64 {
                let m = *masks.get_or_insert_with(|| Masks::of(tok));
                match self.alphabets.get(n.alphabet) {
                    // Every alphabet is in the list; a miss (there is none) admits.
                    None => true,
                    Some(a) => {
                        // First over the classes the alphabet touches at all, from the masks
                        // alone (most tokens are ruled out here), then over its very bytes.
                        let c = a.classes;
                        let slot = &mut scratch.coarse[c];
                        if coarse & (1 << c) == 0 {
                            *slot = Runs::of(a.coarse(&m));
                            coarse |= 1 << c;
                        }
                        if !m.admits(*slot, n) {
                            false
                        } else if a.coarse_is_exact {
                            true
                        } else {
                            let runs = match scratch.runs.get_mut(n.alphabet) {
                                Some(r) if n.alphabet < 64 && exact & (1 << n.alphabet) != 0 => *r,
                                slot => {
                                    let r = Runs::of(a.runs(tok, &m));
                                    if let (Some(s), true) = (slot, n.alphabet < 64) {
                                        *s = r;
                                        exact |= 1 << n.alphabet;
                                    }
                                    r
                                }
                            };
                            m.admits(runs, n)
                        }
                    }
                }
            } else {
                if !positioned {
                    positions(tok, u8::is_ascii_digit, &mut scratch.dpos);
                    positions(tok, u8::is_ascii_uppercase, &mut scratch.upos);
                    positioned = true;
                }
                windowed(tok.len(), n, scratch)
            };
            if ok {
                met |= bit;
            }
        }
        met
    }

    /// Whether some pattern of rule `r` could match inside a token that meets `met`.
    pub(crate) fn admits_rule(&self, r: usize, met: u64) -> bool {
        self.rules.get(r).is_none_or(|m| m & met != 0)
    }

    /// Sets `out[r]` to whether some pattern of rule `r` could match inside `tok` (see
    /// [`TokenFilter::met`]).
    #[cfg(test)]
    pub(crate) fn admits(
        &self,
        tok: &[u8],
        digits: usize,
        upper: usize,
        scratch: &mut FilterScratch,
        out: &mut [bool],
    ) {
        let met = self.met(tok, digits, upper, scratch);
        for (r, o) in out.iter_mut().enumerate() {
            *o = self.admits_rule(r, met);
        }
    }
}

/// Scratch space for [`TokenFilter::met`], kept across the tokens of a body.
#[derive(Debug, Default)]
pub(crate) struct FilterScratch {
    dpos: Vec<u32>,
    upos: Vec<u32>,
    /// Per class set and per alphabet, the current token's runs (see [`TokenFilter::met`]).
    coarse: [Runs; 16],
    runs: Vec<Runs>,
}

impl FilterScratch {
    /// Scratch for `filter`'s alphabets.
    pub(crate) fn for_filter(filter: &TokenFilter) -> FilterScratch {
        FilterScratch {
            runs: vec![Runs::default(); filter.alphabets.len().min(64)],
            ..FilterScratch::default()
        }
    }
}

/// How much of a byte class an alphabet holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cover {
    All,
    None,
    Some,
}

/// One alphabet of a [`TokenFilter`]: its bytes, and whether it holds all, none or some of the
/// digits, capitals and lower-case letters, so that a token's bytes of it are mostly found
/// from the token's class masks, and only the bytes of a partly held class one by one.
#[derive(Debug, Clone)]
struct Alphabet {
    set: u128,
    digit: Cover,
    upper: Cover,
    lower: Cover,
    /// Per class (digits, capitals, lower case, other), all ones when the alphabet holds any
    /// byte of it: the coarse run mask is the union of those classes' masks.
    touched: [u64; 4],
    /// The same classes as four bits, an index into [`FilterScratch::coarse`].
    classes: usize,
    /// Whether the alphabet is exactly the union of the classes it touches.
    coarse_is_exact: bool,
}

impl Alphabet {
    /// Built for every live rule's needs of every body the check reads, so by masks: a
    /// loop over the 128 bytes per alphabet was 1 % of a clean scan.
    fn new(set: u128) -> Alphabet {
        // The bits of `lo..=hi`.
        let bits = |lo: u8, hi: u8| (u128::MAX >> (127 - hi)) & (u128::MAX << lo);
        let cover = |class: u128| match (set & class).count_ones() {
            0 => Cover::None,
            n if n == class.count_ones() => Cover::All,
            _ => Cover::Some,
        };
        let (digits, capitals, small) = (bits(b'0', b'9'), bits(b'A', b'Z'), bits(b'a', b'z'));
        let (digit, upper, lower) = (cover(digits), cover(capitals), cover(small));
        let other = cover(!(digits | capitals | small));
        let any = |c: Cover| if c == Cover::None { 0 } else { u64::MAX };
        Alphabet {
            set,
            digit,
            upper,
            lower,
            touched: [any(digit), any(upper), any(lower), any(other)],
            classes: [digit, upper, lower, other]
                .iter()
                .enumerate()
                .filter(|(_, &c)| c != Cover::None)
                .fold(0, |set, (i, _)| set | (1 << i)),
            coarse_is_exact: [digit, upper, lower, other]
                .iter()
                .all(|&c| c != Cover::Some),
        }
    }

    /// The bytes of the classes the alphabet touches: a superset of [`Alphabet::runs`].
    fn coarse(&self, m: &Masks) -> u64 {
        let [d, u, l, o] = self.touched;
        (m.digit & d) | (m.upper & u) | (m.lower & l) | (m.other & o)
    }

    fn contains(&self, c: u8) -> bool {
        c.is_ascii() && (self.set >> c) & 1 == 1
    }

    /// Bit `i` set when byte `i` of `tok` (at most 64 bytes, with class masks `m`) is in the
    /// alphabet.
    fn runs(&self, tok: &[u8], m: &Masks) -> u64 {
        let mut runs = 0u64;
        let mut check = m.other;
        for (cover, mask) in [
            (self.digit, m.digit),
            (self.upper, m.upper),
            (self.lower, m.lower),
        ] {
            match cover {
                Cover::All => runs |= mask,
                Cover::None => {}
                Cover::Some => check |= mask,
            }
        }
        while check != 0 {
            let i = check.trailing_zeros() as usize;
            check &= check - 1;
            if tok.get(i).is_some_and(|&c| self.contains(c)) {
                runs |= 1 << i;
            }
        }
        runs
    }
}

/// The digits, capitals, lower-case letters and other bytes of a token of at most 64 bytes:
/// bit `i` stands for byte `i`.
#[derive(Debug, Clone, Copy)]
struct Masks {
    digit: u64,
    upper: u64,
    lower: u64,
    other: u64,
}

impl Masks {
    /// Eight bytes at a time (SWAR, as the portable `string_at`): this runs for every candidate
    /// token.
    /// The token is ASCII: the whole-body check reads ASCII bodies only (see
    /// [`TokenFilter::met`]).
    fn of(tok: &[u8]) -> Masks {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGH: u64 = 0x8080_8080_8080_8080;
        // High bit set where lo <= byte < hi (bytes < 0x80, 0 < lo < hi <= 0x80).
        let range = |x: u64, lo: u8, hi: u8| {
            (x + u64::from(0x80 - lo) * ONES) & !(x + u64::from(0x80 - hi) * ONES) & HIGH
        };
        // The high bits of the eight bytes gathered into one byte, bit `j` from byte `j`.
        let gather = |hi: u64| (hi >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56;
        let (mut digit, mut upper, mut lower) = (0u64, 0u64, 0u64);
        for (k, chunk) in tok.chunks(8).take(8).enumerate() {
            let mut w = [0u8; 8];
            if let Some(head) = w.get_mut(..chunk.len()) {
                head.copy_from_slice(chunk);
            }
            let x = u64::from_le_bytes(w) & !HIGH;
            digit |= gather(range(x, b'0', b'9' + 1)) << (8 * k);
            upper |= gather(range(x, b'A', b'Z' + 1)) << (8 * k);
            lower |= gather(range(x, b'a', b'z' + 1)) << (8 * k);
        }
        let all = span(0, tok.len().min(64));
        Masks {
            digit,
            upper,
            lower,
            other: all & !(digit | upper | lower),
        }
    }

    /// Whether the bytes under `window` hold what `n` counts.
    fn holds(&self, window: u64, n: &Need) -> bool {
        (self.digit & window).count_ones() as usize >= n.digits
            && (self.upper & window).count_ones() as usize >= n.upper
            && (self.other & window).count_ones() as usize >= n.other
    }

    /// Whether a match with needs `n` fits in the token whose bytes of `n`'s alphabet are
    /// `runs`: inside one maximal run, a window of the run's length capped at `n.max_len` that
    /// holds the counts. A match is such a window or lies inside one, so none is missed.
    fn admits(&self, runs: Runs, n: &Need) -> bool {
        if n.trivial {
            return true;
        }
        // Most tokens have no run as long as the shortest match.
        if !has_run(runs.mask, n.min_len) {
            return false;
        }
        let mut rest = runs.mask;
        while rest != 0 {
            let start = rest.trailing_zeros() as usize;
            let len = (!(rest >> start)).trailing_zeros() as usize;
            let run = span(start, len);
            rest &= !run;
            if len < n.min_len || !self.holds(run, n) {
                continue;
            }
            let l = n.max_len.map_or(len, |m| m.min(len));
            if l == len {
                return true;
            }
            if (start..=start + len - l).any(|s| self.holds(span(s, l), n)) {
                return true;
            }
        }
        false
    }
}

/// The bytes of one alphabet in a token of at most 64 bytes.
/// (Also keeping each run's counts here made the scan slower: most needs are ruled out by the
/// length alone. So did finding the longest run by walking the runs, one `trailing_zeros`
/// chain per run: a tenth of a clean scan. [`has_run`] answers each need's length in a few
/// shifts instead.)
#[derive(Debug, Clone, Copy, Default)]
struct Runs {
    mask: u64,
}

impl Runs {
    fn of(mask: u64) -> Runs {
        Runs { mask }
    }
}

/// Whether `x` has `k` set bits in a row.
fn has_run(x: u64, k: usize) -> bool {
    if k > 64 {
        return false;
    }
    // Bit `i` of `r` is set where bits `i..i + have` of `x` all are. Two such windows `s <=
    // have` apart cover `have + s` bits, so each step grows `have` by up to itself.
    let (mut r, mut have) = (x, 1usize);
    while have < k && r != 0 {
        let s = have.min(k - have);
        r &= r >> s;
        have += s;
    }
    k == 0 || r != 0
}

/// `len` set bits from bit `start` (`start + len <= 64`).
fn span(start: usize, len: usize) -> u64 {
    let ones = if len >= 64 {
        u64::MAX
    } else {
        (1u64 << len) - 1
    };
    ones.checked_shl(start as u32).unwrap_or(0)
}

/// The check for tokens past 64 bytes, whose digit and capital positions are in `scratch`:
/// `n.digits` digits and `n.upper` capitals each within some `n.max_len`-byte window (not
/// necessarily the same one), without the alphabet runs.
fn windowed(len: usize, n: &Need, scratch: &FilterScratch) -> bool {
    let Some(l) = n.max_len.filter(|&l| l < len) else {
        return true;
    };
    (n.digits == 0 || within(&scratch.dpos, n.digits, l))
        && (n.upper == 0 || within(&scratch.upos, n.upper, l))
}

/// Sets `out` to the offsets in `tok` of the bytes satisfying `pred`.
fn positions(tok: &[u8], pred: fn(&u8) -> bool, out: &mut Vec<u32>) {
    out.clear();
    out.extend(
        tok.iter()
            .zip(0u32..)
            .filter(|(c, _)| pred(c))
            .map(|(_, i)| i),
    );
}

/// Whether `n` (≥ 1) of the sorted `pos` fit in a window of `len` bytes.
fn within(pos: &[u32], n: usize, len: usize) -> bool {
    pos.iter()
        .zip(pos.iter().skip(n - 1))
        .any(|(a, b)| ((b - a) as usize) < len)
}

#[cfg(test)]
mod tests;
