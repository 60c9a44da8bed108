//! Many words looked for in a body at once ([`WordSet`]), for the whole-body clean check:
//! which keyword and hotword parts occur anywhere in a plain JSON body.
//!
//! The check used to ask `memmem` once per word. Each absent word costs a whole pass over the
//! body (about 2.5 µs per 64 KiB), and a clean FHIR bundle asks twenty to thirty of them, most
//! absent: a sixth of its scan. A packed (Teddy) searcher finds ten words in one pass of about
//! the same speed (measured on the bench's 64 KiB Observation bundle: 22 words one by one
//! 56 µs; the 20 of three or more bytes in two searchers 10.6 µs, in one 22 µs, in three
//! 14 µs).

use std::borrow::Cow;
use std::sync::{Arc, Mutex};

use aho_corasick::packed::{Config, MatchKind, Searcher};
use aho_corasick::Span;

/// Most words in one packed searcher. Teddy sorts its words into 8 buckets (16 in its wide
/// form) by their first bytes; past about ten words the buckets mix and false candidates
/// grow (see the module docs).
const PER_SEARCHER: usize = 10;

/// Shorter words are looked for on their own: Teddy's fingerprint is as long as the shortest
/// word of the searcher (up to four bytes), and one or two bytes match nearly everywhere
/// (the 22 words with `ip` in them: 59 µs).
const MIN_PACKED: usize = 3;

/// Matches of words already found that one searcher reports before it is rebuilt without
/// them: a body that repeats a word (`care` holds `car`, a Bundle of Practitioners names the
/// NPI system once per resource) pays a restart per occurrence, each a call into the
/// searcher, and rebuilding costs about as much as a hundred of them (4 µs for ten words).
const MAX_WASTED: usize = 32;

/// Rebuilt searchers a [`WordSet`] keeps.
const MAX_REBUILT: usize = 32;

/// Rebuilds per searcher and body before its words still unknown get a pass each.
const MAX_REBUILDS: usize = 2;

/// Words (lower-cased, distinct) with the searchers that find them; see the module docs.
#[derive(Debug, Default)]
pub(crate) struct WordSet {
    words: Vec<String>,
    /// Per word, the other words it contains: found wherever it is found.
    inside: Vec<Vec<usize>>,
    /// Packed searchers, each with the word of each of its patterns, in pattern order.
    packed: Vec<(Arc<Searcher>, Vec<usize>)>,
    /// Searchers rebuilt without words found already (see [`MAX_WASTED`]), by packed
    /// searcher and the words left: traffic of one kind repeats the same words, and a
    /// rebuild costs as much as a hundred restarts. At most [`MAX_REBUILT`] are kept.
    rebuilt: Mutex<Vec<Rebuilt>>,
    /// Words each looked for with a pass of their own.
    single: Vec<usize>,
}

impl WordSet {
    /// The set of `words`, lower-cased; empty and repeated words are dropped.
    pub(crate) fn new<'a>(words: impl IntoIterator<Item = &'a str>) -> WordSet {
        let mut list: Vec<String> = Vec::new();
        for w in words {
            let w = w.to_ascii_lowercase();
            if !w.is_empty() && !list.contains(&w) {
                list.push(w);
            }
        }
        let inside = list
            .iter()
            .enumerate()
            .map(|(i, w)| {
                (0..list.len())
                    .filter(|&j| j != i && list.get(j).is_some_and(|v| w.contains(v.as_str())))
                    .collect()
            })
            .collect();
        let (mut long, mut single): (Vec<usize>, Vec<usize>) =
            (0..list.len()).partition(|&i| list.get(i).is_some_and(|w| w.len() >= MIN_PACKED));
        // Three-byte words together, so that the searchers of the others fingerprint four
        // bytes (Teddy takes as many as the shortest word has, up to four: fewer false
        // candidates); and the longer ones by their first bytes, so that words sharing a
        // prefix (`urn:oid:2.16.840.1.113883.4.…`, one system URL after another) share a
        // searcher and its candidates rather than each costing one in another searcher.
        long.sort_by_key(|&i| {
            let w = list.get(i).map_or("", String::as_str);
            (w.len() > MIN_PACKED, w.get(..4).unwrap_or(w).to_owned())
        });
        let mut packed = Vec::new();
        for ids in long.chunks(PER_SEARCHER) {
            match searcher(&list, ids) {
                Some(s) => packed.push((Arc::new(s), ids.to_vec())),
                // No packed searcher on this CPU: one pass per word.
                None => single.extend_from_slice(ids),
            }
        }
        WordSet {
            words: list,
            inside,
            packed,
            rebuilt: Mutex::new(Vec::new()),
            single,
        }
    }

    /// The words, lower-cased, in the order [`WordSet::find`] answers them.
    pub(crate) fn words(&self) -> &[String] {
        &self.words
    }

    /// Whether each word occurs in `lower` (a body lower-cased), by index into
    /// [`WordSet::words`]. `skip(i)` marks words already known, which are not looked for (their
    /// answer here is then false unless a word containing them was found); a searcher runs
    /// only while one of its words is not known.
    pub(crate) fn find(&self, lower: &[u8], skip: impl Fn(usize) -> bool) -> Vec<bool> {
        let mut found = vec![false; self.words.len()];
        let mark = |found: &mut Vec<bool>, w: usize| {
            for &i in std::iter::once(&w).chain(self.inside.get(w).into_iter().flatten()) {
                if let Some(f) = found.get_mut(i) {
                    *f = true;
                }
            }
        };
        let unknown = |found: &[bool], i: usize| !skip(i) && !found.get(i).copied().unwrap_or(true);
        for (p, (first, ids)) in self.packed.iter().enumerate() {
            if !ids.iter().any(|&i| unknown(&found, i)) {
                continue;
            }
            // Every start of a match of any of its words, one after another: the search
            // restarts one byte past each match's start, so a word overlapping a reported one
            // is found too, and a word that starts where a longer one does is its prefix. So
            // when the search ends, a word it has not reported occurs nowhere past `at`, and
            // nowhere before it either.
            let (mut current, mut words) = (Arc::clone(first), Cow::Borrowed(ids.as_slice()));
            let (mut at, mut wasted, mut rebuilds) = (0usize, 0usize, 0usize);
            let mut complete = true;
            while let Some(m) = current.find_in(lower, Span::from(at..lower.len())) {
                match words.get(m.pattern().as_usize()) {
                    Some(&w) if unknown(&found, w) => mark(&mut found, w),
                    _ => wasted += 1,
                }
                if !ids.iter().any(|&i| unknown(&found, i)) {
                    break;
                }
                at = m.start() + 1;
                if wasted > MAX_WASTED {
                    // A word found already keeps coming back: search on without it.
                    let rest: Vec<usize> = ids
                        .iter()
                        .copied()
                        .filter(|&i| unknown(&found, i))
                        .collect();
                    let rebuilt = (rebuilds < MAX_REBUILDS)
                        .then(|| self.rebuilt(p, &rest))
                        .flatten();
                    let Some(s) = rebuilt else {
                        complete = false;
                        break;
                    };
                    (current, words) = (s, Cow::Owned(rest));
                    (wasted, rebuilds) = (0, rebuilds + 1);
                }
            }
            if !complete {
                // None of them starts before `at` (see above).
                let tail = lower.get(at..).unwrap_or_default();
                for &i in ids {
                    if unknown(&found, i) {
                        if let Some(w) = self.words.get(i) {
                            if memchr::memmem::find(tail, w.as_bytes()).is_some() {
                                mark(&mut found, i);
                            }
                        }
                    }
                }
            }
        }
        for &i in &self.single {
            if skip(i) || found.get(i).copied().unwrap_or(true) {
                continue;
            }
            if let Some(w) = self.words.get(i) {
                if memchr::memmem::find(lower, w.as_bytes()).is_some() {
                    mark(&mut found, i);
                }
            }
        }
        found
    }
}

/// A rebuilt searcher: of which packed searcher, for which of its words.
type Rebuilt = (usize, Vec<usize>, Arc<Searcher>);

impl WordSet {
    /// The searcher for the words `rest` of packed searcher `p`, from those kept or built now.
    fn rebuilt(&self, p: usize, rest: &[usize]) -> Option<Arc<Searcher>> {
        // A poisoned lock (a panic elsewhere while holding it) only loses the cache.
        if let Ok(kept) = self.rebuilt.lock() {
            if let Some((_, _, s)) = kept.iter().find(|(q, r, _)| *q == p && r == rest) {
                return Some(Arc::clone(s));
            }
        }
        let s = Arc::new(searcher(&self.words, rest)?);
        if let Ok(mut kept) = self.rebuilt.lock() {
            if kept.len() < MAX_REBUILT {
                kept.push((p, rest.to_vec(), Arc::clone(&s)));
            }
        }
        Some(s)
    }
}

/// A packed searcher for the words `ids` of `list`; `None` where this CPU has none.
fn searcher(list: &[String], ids: &[usize]) -> Option<Searcher> {
    // Leftmost-longest: of the words that start where a match starts, the longest is
    // reported, and the others are its prefixes (see `WordSet::find`).
    let mut b = Config::new()
        .match_kind(MatchKind::LeftmostLongest)
        .builder();
    for &i in ids {
        b.add(list.get(i)?);
    }
    b.build()
}

#[cfg(test)]
mod tests {
    use super::WordSet;

    /// Every answer equals a search of its own: overlapping words, words that are prefixes
    /// and suffixes of others, short words, more words than one searcher takes, bodies that
    /// repeat a word past the restart cap, and bodies shorter than a packed searcher reads.
    #[test]
    fn every_answer_equals_a_search_of_its_own() {
        let words = [
            "routing",
            "aba",
            "rtn",
            "transit",
            "npi",
            "provider",
            "national",
            "mrn",
            "medical",
            "chart",
            "dob",
            "birth",
            "born",
            "hic",
            "medicare",
            "medic",
            "claim",
            "vin",
            "car",
            "care",
            "auto",
            "ip",
            "@",
            "ssn",
            "us-ssn",
            "ss#",
            "socsec",
            "soc",
            "2.16.840.1",
            "2.16.840.1.113883.4.1",
            "MRN",
        ];
        let set = WordSet::new(words);
        let mut bodies: Vec<String> = vec![
            String::new(),
            "car".into(),
            "medicare".into(),
            r#"{"system":"http://hl7.org/fhir/sid/us-ssn","value":"x"}"#.into(),
            r#"{"note":"born in the care of a national provider","oid":"2.16.840.1.113883.4.1"}"#
                .into(),
            "careplan ".repeat(100) + "socsec",
            "medicaremedicaremedicare".repeat(40) + "ip",
            "xx".repeat(5000) + "routin" + "transit",
            // Three words of one searcher found one after another, each repeated past the
            // rebuild threshold: two rebuilds, then a pass each for the rest.
            "dob ".repeat(50) + &"hic ".repeat(50) + &"vin ".repeat(50) + "claim",
            "dob ".repeat(50) + &"hic ".repeat(50) + &"vin ".repeat(50),
        ];
        // Every word alone, and each with one byte changed (near misses).
        for w in words {
            bodies.push(format!("..{w}.."));
            let mut near = w.to_ascii_lowercase().into_bytes();
            if let Some(last) = near.last_mut() {
                *last = b'~';
            }
            bodies.push(String::from_utf8_lossy(&near).into_owned());
        }
        for body in &bodies {
            let lower = body.to_ascii_lowercase();
            let found = set.find(lower.as_bytes(), |_| false);
            for (w, f) in set.words().iter().zip(&found) {
                assert_eq!(*f, lower.contains(w.as_str()), "{w:?} in {body:?}");
            }
            // Skipped words are not looked for; the rest are answered all the same.
            let found = set.find(lower.as_bytes(), |i| i % 3 == 0);
            for (i, (w, f)) in set.words().iter().zip(&found).enumerate() {
                if i % 3 != 0 {
                    assert_eq!(*f, lower.contains(w.as_str()), "{w:?} in {body:?}");
                }
            }
        }
    }
}
