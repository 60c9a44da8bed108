//! The compiled form of a rule, shared with the engine: precompiled patterns, hotword automata,
//! scopes, exceptions, and the multi-pattern prefilter over the whole set.

use aho_corasick::AhoCorasick;
use regex::{Regex, RegexSet, RegexSetBuilder};
use serde::Deserialize;

use super::glob::glob_match;
use super::selftest::InlineTest;
use crate::engine::validate::Validator;

/// Which characters may not touch a matched value (checked in code, see `docs/rules.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Boundary {
    /// Neighbours must not be ASCII digits.
    Digit,
    /// As `Digit`, and the value must not continue a longer dot-separated numeric chain: not
    /// preceded by a digit and `.`, not followed by `.` and a digit (an OID such as
    /// `2.16.840.1.113883.3.464.1003.…` holds SSN-shaped `###.##.####` pieces).
    #[serde(rename = "digit-chain")]
    DigitChain,
    /// Neighbours must not be ASCII letters or digits.
    Alnum,
    /// No check.
    #[default]
    None,
}

#[derive(Debug)]
pub(crate) struct CompiledPattern {
    /// The pattern's `name`, or `patterns[i]`.
    pub(crate) name: String,
    pub(crate) regex: Regex,
    /// Index of the `value` capture group, if the pattern has one.
    pub(crate) value_group: Option<usize>,
    pub(crate) score: f32,
    pub(crate) boundary: Boundary,
    pub(crate) same_separators: bool,
    /// The regex can never consume `"` and has no assertions (`^`, `$`, `\b`, …), so a match
    /// starting inside a quote-delimited token stays inside it and is the same match as in the
    /// token alone (used by the whole-body clean check, see `Scanner::json_body_check`).
    pub(crate) quote_free: bool,
    /// [`quote_free`](Self::quote_free), and the regex can never consume `\`, a line feed, a
    /// carriage return or a tab either: what the JSON escapes the whole-body check takes
    /// decode to. In a body with such escapes the check splits a string at them, and only a
    /// pattern that cannot match across the decoded characters is proved dead piece by piece.
    pub(crate) escape_free: bool,
    /// The same regex without a literal prefilter, for the whole-body check: over text dense
    /// in digits a prefilter on the first digit reports a candidate at every byte, which is
    /// slower than the automaton alone. `None` if it does not build (then `regex` is used).
    pub(crate) scan: Option<regex_automata::meta::Regex>,
    /// Digits, upper-case letters and length bounds of every match, for the whole-body check.
    pub(crate) needs: crate::engine::fastpath::Needs,
}

#[derive(Debug)]
pub(crate) struct CompiledContext {
    /// Hotwords, ASCII case-insensitive, overlapping matches.
    pub(crate) words: AhoCorasick,
    /// The hotwords, in automaton pattern order (for explanations).
    pub(crate) word_list: Vec<String>,
    /// Indices into `word_list`, shortest word first: the order in which the whole-body clean
    /// check asks whether they occur, so that a short word found absent (`ssn`) answers for
    /// the longer ones that contain it (`us-ssn`, a system URL) without another pass.
    pub(crate) probe_order: Vec<usize>,
    /// Every space-separated part of every hotword, for the whole-body check to look for all
    /// at once (see `json_clean::no_hotword`).
    pub(crate) parts: crate::engine::fastpath::WordSet,
    pub(crate) window_before: usize,
    pub(crate) window_after: usize,
    pub(crate) boost: f32,
    pub(crate) required: bool,
    /// The first hotword, as written (lowercased); see
    /// [`RuleSet::context_probes`](crate::engine::rules::RuleSet::context_probes).
    pub(crate) first_word: String,
}

/// Where a rule looks (`where:`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Scope {
    /// The rule applies to requests (`where: request`, or no direction named).
    pub(crate) request: bool,
    /// The rule applies to upstream responses the leak guard scans (`where: response`, or no
    /// direction named). A response has only its body to scan.
    pub(crate) response: bool,
    /// `response` was named explicitly: the rule is a response signature (the error pack),
    /// which also runs on 2xx bodies the guard monitors (see [`crate::engine::Message`]).
    pub(crate) response_explicit: bool,
    pub(crate) query: bool,
    pub(crate) body: bool,
    pub(crate) all_headers: bool,
    pub(crate) headers: Vec<String>,
    /// Field selectors that narrow body scanning (`json:`, `fhir:`, `hl7:`, `form:`,
    /// `multipart:` globs); empty = the whole body.
    pub(crate) fields: Vec<String>,
    /// Whether some field selector needs the rendered location (`json:`, `form:`, …) rather
    /// than the structural address (`fhir:`, `hl7:`).
    pub(crate) needs_addr: bool,
    /// Content-type globs (lowercase essence) the body must have; empty = any.
    pub(crate) content_types: Vec<String>,
    /// Route-name globs; empty = every route.
    pub(crate) routes: Vec<String>,
    /// `fhir-limit:` globs, stored as structural addresses (`fhir:Patient.*`): inside FHIR
    /// resources the rule only looks at values whose address matches one of them. Values
    /// without a `fhir:` address (free text, forms, HL7 v2, non-FHIR JSON, headers, the query,
    /// JSON keys) are not limited. Empty = no limit.
    pub(crate) fhir_limits: Vec<String>,
    /// Per field selector (same order as `fields`), what a plain JSON body must contain for
    /// the selector to match anything in it (see [`SelectorProbe`]).
    pub(crate) probes: Vec<SelectorProbe>,
}

/// What the whole-body JSON clean check looks for to prove a field selector dead in a plain
/// JSON body (see `Scanner::json_body_check`). Built once when the rule compiles: the check
/// runs on every clean body, and splitting selectors there cost an allocation per selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SelectorProbe {
    /// `hl7:`, `form:`, `query:`, `header:`, `multipart:`: never matches a JSON body's segments.
    NeverJson,
    /// A `fhir:` or `json:` selector. It matches nothing in the body when the body holds no
    /// resource of type `resource`, or when one of `pieces` occurs nowhere in it.
    Keys {
        /// `fhir:` only: the literal resource type the address must start with, and whether
        /// it is the whole type (`fhir:Patient.name` → `Patient`, exact) or only its start
        /// (`fhir:MedicinalProduct*` → `MedicinalProduct`, prefix). `None`: no constraint
        /// (`fhir:*.identifier.value`, `json:` pointers).
        resource: Option<(String, bool)>,
        /// The other literal pieces (between `.`/`/` and `*`), longest first: a longer piece is
        /// less likely to occur, so it proves the selector dead sooner.
        pieces: Vec<String>,
    },
    /// Anything else: never provably dead.
    Unknown,
}

impl SelectorProbe {
    pub(crate) fn new(selector: &str) -> SelectorProbe {
        let (rest, sep, fhir) = if let Some(r) = selector.strip_prefix("fhir:") {
            (r, '.', true)
        } else if let Some(r) = selector.strip_prefix("json:") {
            (r, '/', false)
        } else if ["hl7:", "form:", "query:", "header:", "multipart:"]
            .iter()
            .any(|k| selector.starts_with(k))
        {
            return SelectorProbe::NeverJson;
        } else {
            return SelectorProbe::Unknown;
        };
        // A `fhir:` address is `fhir:<type>.<key>…` where the type is the innermost
        // `resourceType` (letters and digits only, so never holding `.`), and globs match the
        // whole address: the selector's literal run before the first `.` is the type itself,
        // before a first `*` only its start.
        let mut resource = None;
        let mut tail = rest;
        if fhir {
            let end = rest.find(['.', '*']).unwrap_or(rest.len());
            let lit = rest.get(..end).unwrap_or("");
            if !lit.is_empty() {
                let exact = !rest.get(end..).unwrap_or("").starts_with('*');
                resource = Some((lit.to_string(), exact));
                tail = rest.get(end..).unwrap_or("");
            }
        }
        let mut pieces: Vec<String> = tail
            .split([sep, '*'])
            .filter(|p| !(p.is_empty() || (sep == '/' && p.bytes().all(|b| b.is_ascii_digit()))))
            .map(str::to_string)
            .collect();
        pieces.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        pieces.dedup();
        SelectorProbe::Keys { resource, pieces }
    }
}

impl Scope {
    pub(super) fn everywhere() -> Scope {
        Scope {
            request: true,
            response: true,
            query: true,
            body: true,
            all_headers: true,
            ..Scope::default()
        }
    }

    /// Whether the rule applies to a part of this message.
    pub(crate) fn message(&self, message: crate::engine::Message) -> bool {
        use crate::engine::Message;
        match message {
            Message::Request => self.request,
            Message::Response => self.response,
            Message::ResponseSignatures => self.response_explicit,
        }
    }

    pub(crate) fn header(&self, name: &str) -> bool {
        self.all_headers || self.headers.iter().any(|h| h.eq_ignore_ascii_case(name))
    }

    pub(crate) fn route(&self, route: Option<&str>) -> bool {
        self.routes.is_empty()
            || route.is_some_and(|r| self.routes.iter().any(|g| glob_match(g, r)))
    }

    /// Whether a segment with this structural address is inside the rule's `fhir-limit:`
    /// scope (always true for segments that are not FHIR values, and for unlimited rules).
    pub(crate) fn fhir_allows(&self, sel: Option<&str>) -> bool {
        match sel {
            Some(s) if !self.fhir_limits.is_empty() && s.starts_with("fhir:") => {
                self.fhir_limits.iter().any(|g| glob_match(g, s))
            }
            _ => true,
        }
    }

    pub(crate) fn content_type(&self, ct: Option<&str>) -> bool {
        if self.content_types.is_empty() {
            return true;
        }
        let essence = ct
            .and_then(|c| c.split(';').next())
            .map(|e| e.trim().to_ascii_lowercase())
            .unwrap_or_default();
        self.content_types.iter().any(|g| glob_match(g, &essence))
    }
}

/// A structured exception (`exceptions:`): the finding is dropped when every listed condition
/// holds (any route of `routes`, any selector of `fields`, any fingerprint of `values`).
#[derive(Debug, Clone)]
pub(crate) struct Exception {
    pub(crate) name: String,
    pub(crate) routes: Vec<String>,
    pub(crate) fields: Vec<String>,
    pub(crate) values: Vec<ExceptionValue>,
}

/// One `exceptions.values` fingerprint, with where it was written (checked against the
/// deployment key by [`RuleSet::with_fingerprint_key`](super::RuleSet::with_fingerprint_key)).
#[derive(Debug, Clone)]
pub(crate) struct ExceptionValue {
    /// `hmac-sha256:<key id>:<hex>`, lowercase.
    pub(crate) fingerprint: String,
    /// The key id part.
    pub(crate) key_id: String,
    pub(crate) file: std::path::PathBuf,
    pub(crate) line: usize,
    pub(crate) column: usize,
    pub(crate) field: String,
}

#[derive(Debug)]
pub(crate) struct CompiledRule {
    pub(crate) patterns: Vec<CompiledPattern>,
    pub(crate) validators: Vec<Validator>,
    pub(crate) context: Option<CompiledContext>,
    pub(crate) min_score: f32,
    pub(crate) scope: Scope,
    pub(crate) has_keywords: bool,
    /// The first keyword, as written (lowercased); see
    /// [`RuleSet::context_probes`](crate::engine::rules::RuleSet::context_probes).
    pub(crate) first_keyword: Option<String>,
    /// No segment with fewer ASCII digits can produce a finding (derived from validators).
    pub(crate) min_digits: usize,
    pub(crate) exceptions: Vec<Exception>,
    /// `require_encrypted`: values at the rule's `where` fields must be ciphertext.
    pub(crate) encryption: Option<EncryptionReq>,
    pub(super) tests: Vec<InlineTest>,
}

/// What `require_encrypted` accepts.
#[derive(Debug, Clone)]
pub(crate) struct EncryptionReq {
    /// Accepted envelope formats (`jwe`, `pgp`, `age`, `vault`, `sops`, `aws-esdk`, `tink`);
    /// empty = any.
    pub(crate) formats: Vec<String>,
    /// Accepted JWE `enc` values; empty = any.
    pub(crate) enc: Vec<String>,
}

impl EncryptionReq {
    /// Whether a value of this envelope format and JWE `enc` satisfies the requirement.
    pub(crate) fn accepts(&self, format: &str, enc: Option<&str>) -> bool {
        (self.formats.is_empty() || self.formats.iter().any(|f| f == format))
            && (self.enc.is_empty() || enc.is_some_and(|e| self.enc.iter().any(|x| x == e)))
    }
}

/// The multi-pattern prefilter and, per rule, the indices of its patterns in the set.
pub(crate) struct Prefilter {
    pub(crate) set: RegexSet,
    /// `by_rule[r]` = set indices of rule `r`'s patterns, or `None` if the rule is not in the
    /// set (field-selector rules, which are gated by structure instead).
    pub(crate) by_rule: Vec<Option<Vec<usize>>>,
}

/// Builds the pattern prefilter. Patterns that would make the combined automaton too big are
/// left out (their rules then run unfiltered), so the set never changes what is found.
pub(crate) fn build_prefilter(rules: &[CompiledRule]) -> Option<Prefilter> {
    let mut sources = Vec::new();
    let mut by_rule = Vec::with_capacity(rules.len());
    for rule in rules {
        // Anchors and word boundaries depend on what surrounds a segment, so a rule using them
        // is never ruled out by a match over the whole body: keep it out of the set.
        let anchored = rule.patterns.iter().any(|p| {
            let r = p.regex.as_str();
            r.contains(['^', '$'])
                || ["\\A", "\\z", "\\b", "\\B", "\\<", "\\>"]
                    .iter()
                    .any(|a| r.contains(a))
        });
        if !rule.scope.fields.is_empty() || rule.patterns.is_empty() || anchored {
            by_rule.push(None);
            continue;
        }
        let idx: Vec<usize> = (sources.len()..sources.len() + rule.patterns.len()).collect();
        sources.extend(rule.patterns.iter().map(|p| p.regex.as_str().to_string()));
        by_rule.push(Some(idx));
    }
    if sources.is_empty() {
        return None;
    }
    let set = RegexSetBuilder::new(&sources)
        .size_limit(32 << 20)
        .dfa_size_limit(32 << 20)
        .build()
        .ok()?;
    Some(Prefilter { set, by_rule })
}
