//! The rule language: the YAML model, its validation and compilation into an immutable
//! [`RuleSet`], layering of rule directories, and the `phi-gateway rules test` runner.
//!
//! Rule files are written by compliance engineers and may come from anywhere, so loading is
//! strict: unknown keys, unknown validators, regexes the linear-time engine cannot run, scores
//! outside `0..=1`, duplicate ids and rules that can never fire are all errors that name the
//! file, the line and the field (`rules[2].patterns[0].regex`). Everything expensive — regex
//! compilation, the keyword and hotword automata — happens once here, so the per-request engine
//! only runs precompiled matchers. See `docs/rules.md` for the language reference.
//!
//! One file per job: `model` (the YAML types), `compile` (validation, and compilation into the
//! `compiled` form the scanner reads), `set` ([`RuleSet`] and its accessors),
//! `load` (directories and layering), `selftest` (inline tests, fixtures, lint), and the
//! helpers `glob` and `fingerprint`.
//!
//! Part of the pure engine: no pingora, no tokio, no sockets, no clocks. The only I/O is
//! reading rule and fixture files at load time and in `rules test`, never per request.

mod compile;
mod compiled;
mod fingerprint;
mod glob;
mod load;
mod model;
mod selftest;
mod set;
#[cfg(test)]
mod tests;

pub use fingerprint::FingerprintKey;
pub use load::RuleError;
pub use model::{Category, RuleInfo, Severity};
pub use selftest::{InlineTestFailure, LintIssue};
pub use set::RuleSet;

pub(crate) use compile::{CONTEXT_FLOOR, ESCAPED};
pub(crate) use compiled::{
    Boundary, CompiledContext, CompiledPattern, CompiledRule, SelectorProbe,
};
pub(crate) use fingerprint::mask_value;
pub(crate) use glob::glob_match;
