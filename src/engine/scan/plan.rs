//! Which rules a part evaluates ([`Plan`]), computed once per kind of part and kept with the
//! rule set ([`PlanCache`]).
//!
//! Filtering every rule by mode, route, direction, part and header name, and summarising the
//! survivors for the per-segment loop, used to happen in `Scanner::new` for every part: three
//! or more times per request, a few thousand instructions and four allocations each, for an
//! answer that only changes with the rule set. The answer depends on the part only through a
//! few facts, and those fit a small `Copy` key ([`PlanKey`]): which of the route-scoped rules
//! accept the route, which of the content-type-scoped rules accept the body's type, and which
//! header name a rule names (all other names are alike). So a client can vary its header names
//! and content types at will without growing the cache; the key space is bounded by the rules.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;

use super::segment::PartKind;
use crate::engine::fastpath::WordSet;
use crate::engine::rules::CompiledRule;
use crate::engine::{Message, Mode};

/// Most plans kept per rule set (give or take a few threads racing to add one). The key space
/// is bounded by the rules already; this is a guard for rule sets with many route- or
/// type-scoped rules, whose keys are bit sets.
const MAX_PLANS: usize = 1024;

/// The rules a part evaluates and what the per-segment loop checks first.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// Rules evaluated for this part, in load order.
    pub(crate) eligible: Vec<usize>,
    /// Per eligible slot, the facts the per-segment loop checks first (kept contiguous so the
    /// common "nothing to do" case never touches the large compiled rules).
    pub(crate) quick: Vec<Quick>,
    /// Fewest digits any keyword-free, selector-free eligible rule needs (`usize::MAX`: none).
    pub(crate) min_plain_digits: usize,
    /// Fewest digits any match of an eligible rule with field selectors has (its patterns'
    /// digit needs, raised to its validators'); `usize::MAX`: none.
    pub(crate) min_structural_digits: usize,
    /// Whether some eligible rule has field selectors.
    pub(crate) any_structural: bool,
    /// Whether some eligible rule has `json:`/`form:`/… field selectors.
    pub(crate) any_structural_addr: bool,
    /// Whether some eligible rule has keywords.
    pub(crate) any_keywords: bool,
    /// Whether any eligible rule has `require_encrypted`.
    pub(crate) any_encryption: bool,
    /// Whether the per-segment loop asks the rule set's prefilter (one `RegexSet` pass over
    /// every rule's patterns) before running a rule's own regexes. Off for a plan narrowed to
    /// a few rules (see [`Plan::restrict`]): there the set's pass over all patterns costs
    /// more than the few rules' own regexes it would spare.
    pub(crate) prefilter: bool,
    /// Kept in the [`PlanCache`] and shared by every part of its kind: worth what is built
    /// for it on first use ([`Plan::upfront_words`]).
    pub(crate) shared: bool,
    /// The words the whole-body check looks for before any token (see
    /// `Scanner::json_body_check`), built the first time a body asks.
    pub(crate) upfront_words: OnceLock<WordSet>,
}

/// Fewest rules a narrowed plan keeps for it still to use the prefilter (see
/// [`Plan::prefilter`]).
const PREFILTER_MIN_RULES: usize = 4;

/// Per-slot summary of an eligible rule.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Quick {
    pub(crate) rule: usize,
    pub(crate) min_digits: usize,
    pub(crate) keywords: bool,
    pub(crate) structural: bool,
    /// Structural with `json:`/`form:`/… selectors (needs the rendered location).
    pub(crate) needs_addr: bool,
}

/// What a plan is asked for: `part` of `message` on `route`. `only`: restrict to one rule and
/// evaluate it even if its mode is `off` (inline tests, which also exercise route-scoped rules
/// when they name no route).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PlanFor<'a> {
    pub(crate) part: PartKind<'a>,
    pub(crate) only: Option<usize>,
    pub(crate) route: Option<&'a str>,
    pub(crate) message: Message,
}

impl Plan {
    /// The plan for `q`, built afresh; `modes` are the rules' modes in load order.
    pub(crate) fn build(
        rules: &[CompiledRule],
        modes: impl Iterator<Item = Mode>,
        q: PlanFor<'_>,
    ) -> Plan {
        let PlanFor {
            part,
            only,
            route,
            message,
        } = q;
        let eligible: Vec<usize> = rules
            .iter()
            .zip(modes)
            .enumerate()
            .filter(|(i, (rule, mode))| {
                let wanted = match only {
                    Some(o) => o == *i,
                    None => *mode != Mode::Off,
                };
                let route_ok = (only.is_some() && route.is_none()) || rule.scope.route(route);
                wanted
                    && route_ok
                    && rule.scope.message(message)
                    && match part {
                        PartKind::Query => rule.scope.query,
                        PartKind::Body(ct) => rule.scope.body && rule.scope.content_type(ct),
                        PartKind::Header(name) => rule.scope.header(name),
                        // Field selectors need structure; free text has none.
                        PartKind::Text => rule.scope.fields.is_empty(),
                    }
            })
            .map(|(i, _)| i)
            .collect();
        Plan::of(rules, eligible)
    }

    /// This plan without the rules `keep` rejects: for a body in which the whole-body check
    /// proved those rules yield nothing (see [`Scanner::json_body_check`]), so the walk runs
    /// the others only.
    ///
    /// [`Scanner::json_body_check`]: super::Scanner::json_body_check
    pub(crate) fn restrict(&self, rules: &[CompiledRule], keep: impl Fn(usize) -> bool) -> Plan {
        let mut plan = Plan::of(
            rules,
            self.eligible.iter().copied().filter(|&r| keep(r)).collect(),
        );
        plan.prefilter = plan.eligible.len() >= PREFILTER_MIN_RULES;
        plan
    }

    /// The plan that evaluates `eligible` (rule indices in load order).
    fn of(rules: &[CompiledRule], eligible: Vec<usize>) -> Plan {
        let quick: Vec<Quick> = eligible
            .iter()
            .filter_map(|&i| {
                rules.get(i).map(|r| Quick {
                    rule: i,
                    min_digits: r.min_digits,
                    keywords: r.has_keywords,
                    structural: !r.scope.fields.is_empty(),
                    needs_addr: r.scope.needs_addr,
                })
            })
            .collect();
        let rule = |q: &Quick| rules.get(q.rule);
        Plan {
            min_plain_digits: quick
                .iter()
                .filter(|q| !q.keywords && !q.structural)
                .map(|q| q.min_digits)
                .min()
                .unwrap_or(usize::MAX),
            min_structural_digits: quick
                .iter()
                .filter(|q| q.structural)
                .filter_map(rule)
                .map(|r| {
                    r.patterns
                        .iter()
                        .map(|p| p.needs.digits.max(r.min_digits))
                        .min()
                        .unwrap_or(usize::MAX)
                })
                .min()
                .unwrap_or(usize::MAX),
            any_structural: quick.iter().any(|q| q.structural),
            any_structural_addr: quick.iter().any(|q| q.structural && q.needs_addr),
            any_keywords: quick.iter().any(|q| q.keywords),
            any_encryption: quick
                .iter()
                .filter_map(rule)
                .any(|r| r.encryption.is_some()),
            eligible,
            quick,
            prefilter: true,
            shared: false,
            upfront_words: OnceLock::new(),
        }
    }
}

/// What a plan depends on, reduced to a bounded, allocation-free key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct PlanKey {
    message: Message,
    part: PartKey,
    /// Bit `i`: the `i`-th route-scoped rule accepts the route.
    routes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum PartKey {
    Query,
    Text,
    /// Bit `i`: the `i`-th content-type-scoped rule accepts the body's type.
    Body(u64),
    /// The header's position among the names rules list (`None`: a name no rule lists).
    Header(Option<u16>),
}

/// The plans of one rule set, filled on first use. Every part of every request reads it, from
/// every worker thread, so a read takes no lock and writes no shared memory (an [`ArcSwap`]
/// load); a miss builds the plan and publishes a copy of the map with it added. Misses happen
/// once per key, so copying the map then costs nothing that matters.
#[derive(Debug, Default)]
pub(crate) struct PlanCache {
    /// Rules with `route:` selectors (bit positions of [`PlanKey::routes`]).
    routed: Vec<usize>,
    /// Rules with content-type selectors (bit positions of [`PartKey::Body`]).
    typed: Vec<usize>,
    /// Every header name some rule lists, lowercase, distinct.
    header_names: Vec<String>,
    /// False when the rules have more scoped rules than a key's bit sets hold: every part then
    /// builds its plan afresh, as before the cache.
    usable: bool,
    plans: ArcSwap<HashMap<PlanKey, Arc<Plan>>>,
}

impl PlanCache {
    /// The index for `rules` (the plans themselves are built on first use).
    pub(crate) fn new(rules: &[CompiledRule]) -> PlanCache {
        let pick = |f: fn(&CompiledRule) -> bool| -> Vec<usize> {
            rules
                .iter()
                .enumerate()
                .filter(|(_, r)| f(r))
                .map(|(i, _)| i)
                .collect()
        };
        let routed = pick(|r| !r.scope.routes.is_empty());
        let typed = pick(|r| !r.scope.content_types.is_empty());
        let mut header_names: Vec<String> = rules
            .iter()
            .flat_map(|r| &r.scope.headers)
            .map(|h| h.to_ascii_lowercase())
            .collect();
        header_names.sort();
        header_names.dedup();
        PlanCache {
            usable: routed.len() <= 64 && typed.len() <= 64 && header_names.len() < 1 << 15,
            routed,
            typed,
            header_names,
            plans: ArcSwap::default(),
        }
    }

    /// The plan for `q`, from the cache when it can be (`only` never is: inline tests).
    pub(crate) fn get(
        &self,
        rules: &[CompiledRule],
        modes: impl Iterator<Item = Mode>,
        q: PlanFor<'_>,
    ) -> Arc<Plan> {
        let build = |modes, shared| {
            let mut plan = Plan::build(rules, modes, q);
            plan.shared = shared;
            Arc::new(plan)
        };
        if q.only.is_some() || !self.usable {
            return build(modes, false);
        }
        let key = self.key(rules, q);
        if let Some(plan) = self.plans.load().get(&key) {
            return Arc::clone(plan);
        }
        let plan = build(modes, true);
        // A full cache is left alone rather than copied for nothing. Threads missing at once
        // may each add their key, so it can end a few entries past the limit; two threads
        // missing the same key both build it, and the second insert replaces an equal plan.
        if self.plans.load().len() < MAX_PLANS {
            self.plans.rcu(|plans| {
                let mut plans = HashMap::clone(plans);
                plans.insert(key, Arc::clone(&plan));
                plans
            });
        }
        plan
    }

    /// How many plans are cached.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.plans.load().len()
    }

    fn key(&self, rules: &[CompiledRule], q: PlanFor<'_>) -> PlanKey {
        let bits = |which: &[usize], ok: &dyn Fn(&CompiledRule) -> bool| -> u64 {
            which
                .iter()
                .enumerate()
                .filter(|(_, &r)| rules.get(r).is_some_and(ok))
                .fold(0, |acc, (bit, _)| acc | 1 << bit)
        };
        let part = match q.part {
            PartKind::Query => PartKey::Query,
            PartKind::Text => PartKey::Text,
            PartKind::Body(ct) => PartKey::Body(bits(&self.typed, &|r| r.scope.content_type(ct))),
            PartKind::Header(name) => PartKey::Header(
                self.header_names
                    .iter()
                    .position(|h| h.eq_ignore_ascii_case(name))
                    .and_then(|i| u16::try_from(i).ok()),
            ),
        };
        PlanKey {
            message: q.message,
            part,
            routes: bits(&self.routed, &|r| r.scope.route(q.route)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::rules::RuleSet;
    use std::path::PathBuf;

    fn set(yaml: &str) -> RuleSet {
        match RuleSet::from_sources(&[(PathBuf::from("t.yaml"), yaml.to_string())]) {
            Ok(s) => s,
            Err(e) => panic!("rules: {e}"),
        }
    }

    const RULES: &str = r#"
rules:
  - id: everywhere
    description: d
    category: G
    severity: low
    patterns:
      - regex: '[0-9]{3}-[0-9]{2}-[0-9]{4}'
        score: 0.9
  - id: x-patient-header
    description: d
    category: G
    severity: low
    where: ['header:X-Patient']
    patterns:
      - regex: 'MRN[0-9]{6}'
        score: 0.9
  - id: billing-only
    description: d
    category: G
    severity: low
    where: ['route:billing-*']
    patterns:
      - regex: 'ACCT[0-9]{6}'
        score: 0.9
"#;

    fn rules_for(set: &RuleSet, part: PartKind<'_>, route: Option<&str>) -> Vec<String> {
        let plan = set.plan(part, None, route, Message::Request);
        plan.eligible
            .iter()
            .filter_map(|&i| set.infos().get(i))
            .map(|r| r.id.clone())
            .collect()
    }

    #[test]
    fn cached_plans_answer_like_fresh_ones_per_route_and_header() {
        let set = set(RULES);
        for _ in 0..2 {
            // The second round is served from the cache and must not differ.
            assert_eq!(
                rules_for(&set, PartKind::Header("x-patient"), None),
                ["everywhere", "x-patient-header"]
            );
            assert_eq!(
                rules_for(&set, PartKind::Header("X-PATIENT"), Some("billing-eu")),
                ["everywhere", "x-patient-header", "billing-only"]
            );
            assert_eq!(
                rules_for(&set, PartKind::Header("x-other"), Some("clinical")),
                ["everywhere"]
            );
            assert_eq!(
                rules_for(&set, PartKind::Query, Some("billing-us")),
                ["everywhere", "billing-only"]
            );
        }
    }

    #[test]
    fn a_part_kind_seen_before_reuses_its_plan() {
        let set = set(RULES);
        let first = set.plan(PartKind::Query, None, Some("billing-eu"), Message::Request);
        let again = set.plan(PartKind::Query, None, Some("billing-us"), Message::Request);
        assert!(Arc::ptr_eq(&first, &again), "same rules apply: one plan");
        let other = set.plan(PartKind::Query, None, Some("clinical"), Message::Request);
        assert!(!Arc::ptr_eq(&first, &other));
        // Inline tests (`only`) always get a plan of their own.
        let only = set.plan(
            PartKind::Query,
            Some(0),
            Some("billing-eu"),
            Message::Request,
        );
        assert!(!Arc::ptr_eq(&first, &only));
        assert_eq!(only.eligible, [0]);
    }

    /// Past [`MAX_PLANS`] keys (here: 11 route-scoped rules, every subset of them accepting
    /// some route) plans are still right, just no longer kept.
    #[test]
    fn past_the_limit_plans_are_built_but_not_kept() {
        let mut yaml = String::from("rules:\n");
        for i in 0..11 {
            yaml.push_str(&format!(
                "  - id: r{i}\n    description: d\n    category: G\n    severity: low\n    \
                 where: ['route:*#{i}#*']\n    patterns:\n      - regex: 'x{i}y'\n        \
                 score: 0.9\n"
            ));
        }
        let set = set(&yaml);
        for subset in 0u32..(1 << 11) {
            let route: String = (0..11)
                .filter(|i| subset & (1 << i) != 0)
                .map(|i| format!("#{i}#"))
                .collect();
            let plan = set.plan(PartKind::Query, None, Some(&route), Message::Request);
            let want: Vec<usize> = (0..11).filter(|i| subset & (1 << i) != 0).collect();
            assert_eq!(plan.eligible, want, "route {route:?}");
        }
        assert!(set.plan_count() <= MAX_PLANS, "{} plans", set.plan_count());
        assert!(set.plan_count() >= MAX_PLANS / 2, "the cache was used");
    }

    #[test]
    fn client_chosen_header_names_do_not_grow_the_cache() {
        let set = set(RULES);
        for i in 0..5000 {
            let name = format!("x-random-{i}");
            let _ = set.plan(PartKind::Header(&name), None, None, Message::Request);
        }
        assert!(set.plan_count() <= 2, "{} plans", set.plan_count());
    }
}
