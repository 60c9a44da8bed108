//! Which words occur in a plain JSON body, for the whole-body clean check
//! (`Scanner::json_body_check`): keyword and hotword parts, each looked for once per body.

use std::borrow::Cow;

use crate::engine::fastpath::WordSet;

/// Whether `word` holds a character an escape the one pass takes decodes to
/// ([`crate::engine::rules::ESCAPED`]): such a word may occur in a decoded string and nowhere
/// in the raw text, so it counts as present.
pub(super) fn special(word: &str) -> bool {
    word.bytes()
        .any(|c| crate::engine::rules::ESCAPED.contains(&c))
}

/// Which hotword parts occur in a body (ASCII case-insensitive), computed lazily and once per
/// part for all the rules `json_clean::rule_dead_in` checks in one body. The words are the
/// rules' own, so they are borrowed (`'w`) rather than copied.
#[derive(Default)]
pub(super) struct Hotwords<'w> {
    lower: Option<String>,
    seen: Vec<(Cow<'w, str>, bool)>,
}

impl<'w> Hotwords<'w> {
    pub(super) fn present(&mut self, body: &str, part: &'w str) -> bool {
        if special(part) {
            return true;
        }
        if let Some(v) = self.known(part) {
            return v;
        }
        let part: Cow<'w, str> = if part.bytes().any(|c| c.is_ascii_uppercase()) {
            Cow::Owned(part.to_ascii_lowercase())
        } else {
            Cow::Borrowed(part)
        };
        // Answered from what is known, without a pass over the body: a part that contains one
        // found absent is absent, one contained in a part found present is present. Rules
        // share such words (`ssn` in `us-ssn` and in the SSN system's URL), and each pass for
        // an absent word reads the whole body.
        let known = self.seen.iter().find_map(|(k, v)| {
            if *v && k.contains(&*part) {
                Some(true)
            } else if !*v && part.contains(&**k) {
                Some(false)
            } else {
                None
            }
        });
        if let Some(v) = known {
            self.seen.push((part, v));
            return v;
        }
        // A part without letters (`@`) is the same in the body as written.
        let v = if part.bytes().any(|c| c.is_ascii_alphabetic()) {
            let lower = self.lower.get_or_insert_with(|| body.to_ascii_lowercase());
            memchr::memmem::find(lower.as_bytes(), part.as_bytes()).is_some()
        } else {
            memchr::memmem::find(body.as_bytes(), part.as_bytes()).is_some()
        };
        self.seen.push((part, v));
        v
    }

    /// Answers every word of `set` not yet known, in a few passes over the body for all of
    /// them (see [`WordSet`]) instead of one per word.
    pub(super) fn prefetch(&mut self, body: &str, set: &'w WordSet) {
        let words = set.words();
        let known: Vec<bool> = words
            .iter()
            .map(|w| special(w) || self.known(w).is_some())
            .collect();
        if known.iter().all(|&k| k) {
            return;
        }
        let lower = self.lower.get_or_insert_with(|| body.to_ascii_lowercase());
        let found = set.find(lower.as_bytes(), |i| known.get(i).copied().unwrap_or(true));
        for ((w, f), k) in words.iter().zip(found).zip(known) {
            if !k {
                self.seen.push((Cow::Borrowed(w.as_str()), f));
            }
        }
    }

    /// What was found about `part`, if it was looked for.
    fn known(&self, part: &str) -> Option<bool> {
        self.seen
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(part))
            .map(|&(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::Hotwords;

    /// The cache answers a part from parts it contains or that contain it; every answer must
    /// equal a search of its own, whatever the order of the questions.
    #[test]
    fn hotword_answers_from_the_cache_equal_a_search() {
        let bodies = [
            r#"{"system":"http://hl7.org/fhir/sid/us-ssn","value":"x"}"#,
            r#"{"note":"SSN#","mail":"a@b.example","SocSec":1}"#,
            r#"{"npi":"x","ssns":[],"ip":"y"}"#,
            r#"{"a":"b"}"#,
        ];
        let parts = [
            "http://hl7.org/fhir/sid/us-ssn",
            "us-ssn",
            "ssn",
            "ssns",
            "ssn#",
            "ss#",
            "soc",
            "socsec",
            "@",
            "a@b",
            "b@",
            "npi",
            "us-npi",
            "ip",
            "system",
            "SYSTEM",
        ];
        for body in bodies {
            let lower = body.to_ascii_lowercase();
            let truth = |p: &str| lower.contains(p.to_ascii_lowercase().as_str());
            // Forwards, backwards, and shortest first.
            let mut orders = vec![parts.to_vec(), parts.iter().rev().copied().collect()];
            let mut by_len = parts.to_vec();
            by_len.sort_by_key(|p| p.len());
            orders.push(by_len);
            for order in orders {
                let mut hot = Hotwords::default();
                for p in order {
                    assert_eq!(hot.present(body, p), truth(p), "{p:?} in {body}");
                }
            }
        }
    }
}
