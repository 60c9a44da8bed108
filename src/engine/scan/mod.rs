//! Matching and scoring of one text segment against the compiled rules.
//!
//! A *segment* is one unit of text the carriers extracted (a JSON string, a key, a form value, a
//! header value, a whole text body) together with its *field context* (key path, parameter or
//! header name, FHIR `system`/`type` siblings) and a location that is safe to log. For each
//! segment we normalise (see `normalize.rs`), apply cheap pre-checks (digit count, keyword
//! prefilter), run each rule's regexes, enforce boundaries and validators in code, and score
//! with Presidio's context model. Findings are keyed by (location, rule) so repeated matches of
//! a rule at one location collapse into the best one.
//!
//! Split by job so each step can be read on its own: the [`Scanner`] and its per-part state
//! (`scanner`), what a segment is and where it sits (`segment`), keywords and hotwords
//! (`keywords`), regex matching and scoring of candidates (`matching`), the whole-body JSON
//! clean proof (`json_clean`) and the words it looks for (`body_words`), `require_encrypted` checks (`encryption`) and assembling the
//! findings (`findings`). Part of the pure engine: no I/O, no clocks, no shared state.

mod body_words;
mod encryption;
mod findings;
mod json_clean;
mod keywords;
mod matching;
mod plan;
mod scanner;
mod segment;

pub(crate) use json_clean::{plain_string, BodyCheck};
pub(crate) use plan::{Plan, PlanCache, PlanFor};
pub(crate) use scanner::Scanner;
pub(crate) use segment::{FieldCtx, Loc, PartKind, PathElem, Segment};

#[cfg(test)]
mod tests;
