//! [`RuleSet`]: the compiled, immutable rule set the engine scans with, and its accessors.

use std::collections::HashMap;
use std::fmt;

use aho_corasick::AhoCorasick;

use super::compiled::{CompiledRule, Prefilter};
use super::fingerprint::FingerprintKey;
use super::load::RuleError;
use super::model::RuleInfo;
use crate::engine::source::SourceError;

/// A compiled, immutable rule set. Cheap to share (`Arc<RuleSet>`), `Send + Sync`.
pub struct RuleSet {
    pub(super) infos: Vec<RuleInfo>,
    pub(super) compiled: Vec<CompiledRule>,
    pub(super) index: HashMap<String, usize>,
    /// One automaton over every rule's `keywords`, and the rule owning each pattern.
    pub(super) keywords: Option<(AhoCorasick, Vec<usize>)>,
    /// The automaton the whole-body keyword pass runs on raw JSON: every keyword, a multi-word
    /// one by its longest word only. Field context splits key names into words
    /// (`medicalRecordNumber` → `medical record number`), so a multi-word keyword can match a
    /// segment's context while the phrase occurs nowhere in the raw body; each of its words
    /// still does (case-insensitively), which is what this automaton checks.
    pub(super) body_keywords: Option<(AhoCorasick, Vec<usize>)>,
    /// The same keywords split into fragments for the whole-body one-pass profile.
    pub(super) keyword_index: crate::engine::fastpath::KeywordIndex,
    /// One multi-pattern matcher over every pattern of the rules that have no field selectors:
    /// a segment runs one set match, then only the rules with a pattern that matched.
    pub(super) prefilter: Option<Prefilter>,
    pub(super) digest: String,
    /// The deployment's fingerprint key, when one was given: without it no fingerprint is
    /// computed and exceptions by `values` never apply.
    pub(super) fingerprint_key: Option<FingerprintKey>,
    /// Which rules each kind of part evaluates, built on first use (see `engine::scan::plan`).
    pub(super) plans: crate::engine::scan::PlanCache,
}

impl RuleSet {
    /// Number of rules (including `off` rules).
    pub fn len(&self) -> usize {
        self.infos.len()
    }

    /// Whether the set holds no rules.
    pub fn is_empty(&self) -> bool {
        self.infos.is_empty()
    }

    /// Rules in load order.
    pub fn rules(&self) -> impl Iterator<Item = &RuleInfo> {
        self.infos.iter()
    }

    /// One word per rule that needs one nearby: the first `context.words` entry, or else the
    /// first of its `keywords`. The audit trail uses them to ask whether a value *could* be PHI
    /// under any rule's context before it stores that value in clear (an 8-digit resource id
    /// is an MRN next to `mrn`).
    pub fn context_probes(&self) -> Vec<&str> {
        self.compiled
            .iter()
            .filter_map(|r| {
                r.context
                    .as_ref()
                    .map(|c| c.first_word.as_str())
                    .or(r.first_keyword.as_deref())
            })
            .collect()
    }

    /// A rule by id.
    pub fn get(&self, id: &str) -> Option<&RuleInfo> {
        self.index.get(id).and_then(|&i| self.infos.get(i))
    }

    /// Hex SHA-256 over each source's file name and bytes, in load order (each length-prefixed,
    /// so moving bytes between name and content changes the digest). Feeds the config version.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Hands the deployment's fingerprint key to the rule set: `scan --explain` then prints
    /// fingerprints made with it and exceptions by `values` apply. Every `values` fingerprint
    /// must carry this key's id; one made with another key is an error naming its file, line
    /// and field (it would otherwise never match, silently).
    pub fn with_fingerprint_key(mut self, key: FingerprintKey) -> Result<RuleSet, RuleError> {
        for rule in &self.compiled {
            for v in rule.exceptions.iter().flat_map(|e| &e.values) {
                if v.key_id != key.id() {
                    return Err(SourceError::new(
                        &v.file,
                        v.line,
                        v.column,
                        v.field.clone(),
                        format!(
                            "this fingerprint was made with key {}, but the fingerprint key \
                             in use is {}; recompute it with `phi-gateway scan --explain \
                             --fingerprint-key KEY_FILE` using the deployment's key",
                            v.key_id,
                            key.id()
                        ),
                    )
                    .into());
                }
            }
        }
        self.fingerprint_key = Some(key);
        Ok(self)
    }

    /// The fingerprint key, when one was given.
    pub fn fingerprint_key(&self) -> Option<&FingerprintKey> {
        self.fingerprint_key.as_ref()
    }

    /// How many `exceptions.values` fingerprints the rules hold (none of them applies until
    /// a key is given).
    pub fn value_exceptions(&self) -> usize {
        self.compiled
            .iter()
            .flat_map(|r| &r.exceptions)
            .map(|e| e.values.len())
            .sum()
    }

    pub(crate) fn compiled(&self) -> &[CompiledRule] {
        &self.compiled
    }

    pub(crate) fn infos(&self) -> &[RuleInfo] {
        &self.infos
    }

    /// The rules `part` of `message` on `route` evaluates (`only`: that one rule, even when
    /// `off`, for inline tests).
    pub(crate) fn plan(
        &self,
        part: crate::engine::scan::PartKind<'_>,
        only: Option<usize>,
        route: Option<&str>,
        message: crate::engine::Message,
    ) -> std::sync::Arc<crate::engine::scan::Plan> {
        let modes = self.infos.iter().map(|i| i.mode);
        let q = crate::engine::scan::PlanFor {
            part,
            only,
            route,
            message,
        };
        self.plans.get(&self.compiled, modes, q)
    }

    /// How many plans are cached.
    #[cfg(test)]
    pub(crate) fn plan_count(&self) -> usize {
        self.plans.len()
    }

    pub(crate) fn prefilter(&self) -> Option<&Prefilter> {
        self.prefilter.as_ref()
    }

    pub(crate) fn keyword_index(&self) -> &crate::engine::fastpath::KeywordIndex {
        &self.keyword_index
    }

    pub(crate) fn keyword_automaton(&self) -> Option<&(AhoCorasick, Vec<usize>)> {
        self.keywords.as_ref()
    }

    /// See [`RuleSet::body_keywords`] (the field).
    pub(crate) fn body_keyword_automaton(&self) -> Option<&(AhoCorasick, Vec<usize>)> {
        self.body_keywords.as_ref()
    }
}

impl fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuleSet")
            .field(
                "rules",
                &self.infos.iter().map(|i| &i.id).collect::<Vec<_>>(),
            )
            .field("digest", &self.digest)
            .finish()
    }
}
