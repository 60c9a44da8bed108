//! Encrypted-value handling: `require_encrypted` rules report a value their fields cover unless
//! it sits in an accepted envelope (JWE with an accepted `enc`, or a marked format).

use super::keywords::field_ctx_hit;
use super::segment::{selector_matches, FieldCtx, Loc};
use super::Scanner;
use crate::engine::classify::Token;
use crate::engine::rules::mask_value;
use crate::engine::Explanation;

impl Scanner<'_> {
    /// Reports a finding for every `require_encrypted` rule whose fields cover this value when
    /// the value is not in an accepted envelope. The value itself is still scanned elsewhere.
    pub(crate) fn check_encryption(
        &mut self,
        loc: &Loc<'_>,
        ctx: &FieldCtx<'_>,
        sel: Option<&str>,
        token: &Token,
        value: &str,
        chain: &[&'static str],
    ) {
        if !self.narrowable || !self.plan.any_encryption {
            return;
        }
        let rules = self.rules;
        let mut addr: Option<Option<String>> = None;
        for slot in 0..self.plan.eligible.len() {
            let Some(&ri) = self.plan.eligible.get(slot) else {
                continue;
            };
            let Some(rule) = rules.compiled().get(ri) else {
                continue;
            };
            let Some(req) = &rule.encryption else {
                continue;
            };
            let a = addr.get_or_insert_with(|| loc.address());
            if !rule
                .scope
                .fields
                .iter()
                .any(|f| selector_matches(f, a.as_deref(), sel))
            {
                continue;
            }
            // Context words narrow to e.g. identifiers whose `system` is us-ssn.
            if let Some(c) = &rule.context {
                self.ctx_ready = false;
                if field_ctx_hit(c, &mut self.ctx_buf, &mut self.ctx_ready, ctx).is_none() {
                    continue;
                }
            }
            let (ok, why) = match token {
                Token::Encrypted { enc } => (
                    req.accepts("jwe", Some(enc)),
                    format!("jwe with enc {enc} not accepted"),
                ),
                Token::Marked { format } => {
                    (req.accepts(format, None), format!("{format} not accepted"))
                }
                _ => (false, "not encrypted".to_string()),
            };
            if ok {
                continue;
            }
            let location = loc.render(0);
            if let Some(name) = self.exception(rule, value, a.as_deref(), sel) {
                self.near_miss(
                    ri,
                    &location,
                    format!("exception `{name}` applied"),
                    value,
                    chain,
                );
                continue;
            }
            let explain = self.explain.then(|| {
                Box::new(Explanation {
                    pattern: format!("require_encrypted ({why})"),
                    base_score: 1.0,
                    validators: Vec::new(),
                    context: None,
                    masked: mask_value(value),
                    value_len: value.chars().count(),
                    fingerprint: self.rules.fingerprint_key().map(|k| k.fingerprint(value)),
                })
            });
            self.record(ri, location, chain, 1.0, explain);
        }
    }
}
