//! Which words occur in a plain JSON body, for the whole-body clean check
//! (`Scanner::json_body_check`): keyword and hotword parts, each looked for once per body.

/// Whether `word` holds a character an escape the one pass takes decodes to
/// ([`crate::engine::rules::ESCAPED`]): such a word may occur in a decoded string and nowhere
/// in the raw text, so it counts as present.
pub(super) fn special(word: &str) -> bool {
    word.bytes()
        .any(|c| crate::engine::rules::ESCAPED.contains(&c))
}

/// Which hotword parts occur in a body (ASCII case-insensitive), computed lazily and once per
/// part for all the rules `json_clean::rule_dead_in` checks in one body.
#[derive(Default)]
pub(super) struct Hotwords {
    lower: Option<String>,
    seen: Vec<(String, bool)>,
}

impl Hotwords {
    pub(super) fn present(&mut self, body: &str, part: &str) -> bool {
        if special(part) {
            return true;
        }
        if let Some(&(_, v)) = self.seen.iter().find(|(k, _)| k.eq_ignore_ascii_case(part)) {
            return v;
        }
        let part = part.to_ascii_lowercase();
        // Answered from what is known, without a pass over the body: a part that contains one
        // found absent is absent, one contained in a part found present is present. Rules
        // share such words (`ssn` in `us-ssn` and in the SSN system's URL), and each pass for
        // an absent word reads the whole body.
        let known = self.seen.iter().find_map(|(k, v)| {
            if *v && k.contains(part.as_str()) {
                Some(true)
            } else if !*v && part.contains(k.as_str()) {
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
