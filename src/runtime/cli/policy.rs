//! `phi-gateway policy test`: load policy directories, run their inline tests, lint them.

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::access::policy::{Policy, PolicyError};

/// The outcome of `policy test`.
#[derive(Debug)]
pub struct PolicyTestReport {
    /// The printed report (FAIL and LINT lines and the summary).
    pub text: String,
    /// Whether every test passed and the lint found nothing.
    pub passed: bool,
}

/// Runs `policy test` over `dirs` (layered in order). Exit codes as `rules test`: 0 all pass,
/// 1 a test or the lint failed, 78 the policy does not load.
pub fn policy_test(dirs: &[PathBuf]) -> Result<PolicyTestReport, PolicyError> {
    let policy = Policy::load_dirs(dirs)?;
    let failures = policy.run_inline_tests();
    let lint = policy.lint();
    let mut text = String::new();
    for f in &failures {
        let _ = writeln!(text, "FAIL {f}");
    }
    for l in &lint {
        let _ = writeln!(text, "LINT {l}");
    }
    let names: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    let _ = writeln!(
        text,
        "{}: {} roles, {} permissions entries, {} tests, {} failed, {} lint problem(s)",
        names.join(" + "),
        policy.roles().len(),
        policy.permission_count(),
        policy.test_count(),
        failures.len(),
        lint.len()
    );
    Ok(PolicyTestReport {
        text,
        passed: failures.is_empty() && lint.is_empty(),
    })
}
