//! Findings assembly: recording a finding per (location, rule) under the per-rule cap, near
//! misses, exceptions, explanations, and the final ordering of a part's findings.

use std::cmp::Ordering;

use super::matching::Candidate;
use super::segment::selector_matches;
use super::Scanner;
use crate::engine::rules::{glob_match, mask_value, CompiledRule, FingerprintKey};
use crate::engine::{Explanation, Finding, InspectError, NearMiss, Scan};

/// Most findings kept per rule and scan. One finding is enough to block and a thousand are
/// plenty for an audit record; without a cap a 16 MiB body of SSN-shaped strings would cost
/// hundreds of megabytes of findings. Once a rule reaches the cap it is not evaluated further
/// for this part, so the kept findings are the first ones in document order.
pub(crate) const MAX_FINDINGS_PER_RULE: usize = 1000;

/// Most near misses kept per scan (explain mode only).
pub(super) const MAX_NEAR_MISSES: usize = 200;

impl Scanner<'_> {
    /// The findings, ordered by location (numbers compared numerically) then rule load order,
    /// or the error that kept part of the input from being inspected.
    pub(crate) fn finish(self) -> Result<Scan, InspectError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let mut findings: Vec<((String, usize), Finding)> = self.findings.into_iter().collect();
        // Keys are unique, so an unstable sort is still deterministic.
        findings.sort_unstable_by(|a, b| natural_cmp(&a.0 .0, &b.0 .0).then(a.0 .1.cmp(&b.0 .1)));
        Ok(Scan {
            findings: findings.into_iter().map(|(_, f)| f).collect(),
            encrypted: self.encrypted,
            near_misses: self.near,
        })
    }

    pub(super) fn record(
        &mut self,
        ri: usize,
        location: String,
        chain: &[&'static str],
        score: f32,
        explain: Option<Box<Explanation>>,
    ) {
        let Some(info) = self.rules.infos().get(ri) else {
            return;
        };
        if self.per_rule.is_empty() {
            self.per_rule = vec![0; self.rules.len()];
        }
        let key = (location, ri);
        match self.findings.get(&key) {
            Some(prev) if prev.score >= score => return,
            Some(_) => {}
            None => match self.per_rule.get_mut(ri) {
                Some(n) if *n < MAX_FINDINGS_PER_RULE => *n += 1,
                _ => return,
            },
        }
        let finding = Finding {
            rule_id: info.id.clone(),
            category: info.category,
            severity: info.severity,
            mode: info.mode,
            location: key.0.clone(),
            decode_chain: chain.to_vec(),
            score,
            explain,
        };
        self.findings.insert(key, finding);
    }

    pub(super) fn near_miss(
        &mut self,
        ri: usize,
        location: &str,
        reason: String,
        value: &str,
        chain: &[&'static str],
    ) {
        if !self.explain || self.near.len() >= MAX_NEAR_MISSES {
            return;
        }
        let Some(info) = self.rules.infos().get(ri) else {
            return;
        };
        self.near.push(NearMiss {
            rule_id: info.id.clone(),
            location: location.to_string(),
            reason,
            masked: mask_value(value),
            decode_chain: chain.to_vec(),
        });
    }

    /// The name of the first of `rule`'s exceptions that covers this value, if any.
    pub(super) fn exception<'a>(
        &self,
        rule: &'a CompiledRule,
        value: &str,
        addr: Option<&str>,
        sel: Option<&str>,
    ) -> Option<&'a str> {
        if rule.exceptions.is_empty() {
            return None;
        }
        let mut fp: Option<String> = None;
        rule.exceptions.iter().find_map(|e| {
            let route_ok = e.routes.is_empty()
                || self
                    .route
                    .is_some_and(|r| e.routes.iter().any(|g| glob_match(g, r)));
            let field_ok =
                e.fields.is_empty() || e.fields.iter().any(|f| selector_matches(f, addr, sel));
            // Without the deployment key no fingerprint can be computed: the exception does
            // not apply, so the finding stands (fail closed).
            let value_ok = e.values.is_empty()
                || self.rules.fingerprint_key().is_some_and(|key| {
                    let fp = fp.get_or_insert_with(|| key.fingerprint(value));
                    e.values.iter().any(|v| v.fingerprint == *fp)
                });
            (route_ok && field_ok && value_ok).then_some(e.name.as_str())
        })
    }
}

/// Builds the explanation of an accepted candidate.
pub(super) fn explanation(
    rule: &CompiledRule,
    key: Option<&FingerprintKey>,
    cand: &Candidate,
    value: &str,
) -> Box<Explanation> {
    let pat = rule.patterns.get(cand.pattern);
    let context = cand.context.and_then(|(w, place)| {
        rule.context
            .as_ref()
            .and_then(|c| c.word_list.get(w))
            .map(|word| (word.clone(), place))
    });
    Box::new(Explanation {
        pattern: pat.map_or_else(|| format!("patterns[{}]", cand.pattern), |p| p.name.clone()),
        base_score: pat.map_or(0.0, |p| p.score),
        validators: rule
            .validators
            .iter()
            .map(|v| (v.name(), v.check(value)))
            .collect(),
        context,
        masked: mask_value(value),
        value_len: value.chars().count(),
        fingerprint: key.map(|k| k.fingerprint(value)),
    })
}

/// Compares strings with embedded numbers numerically (`body@9` < `body@10`, `/2` < `/10`).
pub(crate) fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut x, mut y) = (a.as_bytes(), b.as_bytes());
    loop {
        match (x.first(), y.first()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(p), Some(q)) if p.is_ascii_digit() && q.is_ascii_digit() => {
                let nx = x.iter().take_while(|c| c.is_ascii_digit()).count();
                let ny = y.iter().take_while(|c| c.is_ascii_digit()).count();
                let (dx, rx) = x.split_at(nx);
                let (dy, ry) = y.split_at(ny);
                let strip = |d: &'_ [u8]| -> usize { d.iter().take_while(|c| **c == b'0').count() };
                let (tx, ty) = (
                    dx.get(strip(dx)..).unwrap_or(&[]),
                    dy.get(strip(dy)..).unwrap_or(&[]),
                );
                let ord = tx.len().cmp(&ty.len()).then(tx.cmp(ty)).then(nx.cmp(&ny));
                if ord != Ordering::Equal {
                    return ord;
                }
                x = rx;
                y = ry;
            }
            (Some(p), Some(q)) => {
                if p != q {
                    return p.cmp(q);
                }
                x = x.get(1..).unwrap_or(&[]);
                y = y.get(1..).unwrap_or(&[]);
            }
        }
    }
}
