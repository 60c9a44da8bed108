//! The implementations behind `phi-gateway scan`, `phi-gateway rules test`,
//! `phi-gateway policy test` ([`policy`]), `phi-gateway dev-token` ([`dev_token`]),
//! `phi-gateway audit keygen` and `audit verify` ([`audit`]) and
//! `phi-gateway audit break-glass` ([`break_glass`]), so the
//! binary (`src/main.rs`) only parses arguments and maps results to exit codes.
//!
//! `scan` and `rules test` load rules the same way ([`load_rules`]): the given directories, else `./rules`, else
//! the built-in pack; and both take the deployment's fingerprint key by flag
//! (`--fingerprint-key FILE`). Without a key no fingerprint is printed and exceptions by
//! `values` do not apply.

pub mod audit;
pub mod break_glass;
pub mod dev_token;
pub mod lines;
pub mod policy;
pub mod scan;

use std::path::{Path, PathBuf};

use crate::engine::rules::{FingerprintKey, RuleError, RuleSet};

/// Why an `audit` command printed no result: the exit code (2: usage or unreadable input;
/// 1: the trail does not verify, or keys could not be written) and what goes to stderr.
#[derive(Debug)]
pub struct Refused {
    /// The process exit code.
    pub code: u8,
    /// The text for stderr, ending in a newline.
    pub message: String,
}

/// Why a command could not run (exit 2 for `scan`, 78 for `rules test`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// The rules do not load.
    #[error("{0}")]
    Rules(#[from] RuleError),
    /// The fingerprint key file is unusable.
    #[error("{0}")]
    Key(#[from] crate::audit::AuditError),
    /// An input could not be read.
    #[error("cannot read {what}: {source}")]
    Read {
        /// The file, or `standard input`.
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The output could not be written.
    #[error("cannot write output: {0}")]
    Write(std::io::Error),
    /// The input is not a raw HTTP request (`scan --http`).
    #[error("{file}: not a raw HTTP/1.1 request: {source}")]
    NotHttp {
        /// The input's name.
        file: String,
        /// Why.
        source: crate::engine::http::HttpParseError,
    },
    /// The engine could not inspect the input.
    #[error("{0}")]
    Inspect(#[from] crate::engine::InspectError),
}

/// Loads the rules: `dirs` layered when given, else `./rules` when present, else the built-in
/// pack; then hands them the fingerprint key read from `key_file`, when given.
pub fn load_rules(dirs: &[PathBuf], key_file: Option<&Path>) -> Result<RuleSet, CliError> {
    let rules = if !dirs.is_empty() {
        RuleSet::load_dirs(dirs)?
    } else if Path::new("rules").is_dir() {
        RuleSet::load_dir(Path::new("rules"))?
    } else {
        let sources: Vec<(PathBuf, String)> = crate::runtime::demo::DEFAULT_PACK
            .iter()
            .map(|(name, text)| {
                (
                    PathBuf::from(format!("<built-in>/{name}")),
                    text.to_string(),
                )
            })
            .collect();
        RuleSet::from_sources(&sources)?
    };
    Ok(match key_file {
        Some(file) => {
            let secret = crate::audit::keys::load_fingerprint_key(file)?;
            rules.with_fingerprint_key(FingerprintKey::new(&secret))?
        }
        None => rules,
    })
}

/// A note for stderr when the rules hold exceptions by value but no key was given.
pub fn missing_key_note(rules: &RuleSet) -> Option<String> {
    let n = rules.value_exceptions();
    (n > 0 && rules.fingerprint_key().is_none()).then(|| {
        format!(
            "note: {n} exception fingerprint(s) (`exceptions.values`) do not apply without \
             --fingerprint-key (the deployment's audit fingerprint key)"
        )
    })
}

/// The outcome of `rules test`.
#[derive(Debug)]
pub struct RulesTestReport {
    /// The printed report (FAIL and LINT lines and the summary).
    pub text: String,
    /// Whether every test passed and the lint found nothing.
    pub passed: bool,
}

/// Runs `rules test` over `dirs`: inline tests, fixture files in `DIR/tests/`, and the lint.
pub fn rules_test(dirs: &[PathBuf], key_file: Option<&Path>) -> Result<RulesTestReport, CliError> {
    use std::fmt::Write as _;
    let rules = load_rules(dirs, key_file)?;
    let mut failures = rules.run_inline_tests();
    let mut fixtures = 0;
    for dir in dirs {
        let fx_dir = dir.join("tests");
        if fx_dir.is_dir() {
            let (n, f) = rules.run_fixtures(&fx_dir)?;
            fixtures += n;
            failures.extend(f);
        }
    }
    let mut text = String::new();
    for f in &failures {
        let _ = writeln!(text, "FAIL {f}");
    }
    let lint = rules.lint();
    for l in &lint {
        let _ = writeln!(text, "LINT {l}");
    }
    if let Some(note) = missing_key_note(&rules) {
        let _ = writeln!(text, "{note}");
    }
    let names: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    let _ = writeln!(
        text,
        "{}: {} rules, {} fixture file(s), {} failed test(s), {} lint problem(s)",
        names.join(" + "),
        rules.len(),
        fixtures,
        failures.len(),
        lint.len()
    );
    Ok(RulesTestReport {
        text,
        passed: failures.is_empty() && lint.is_empty(),
    })
}
