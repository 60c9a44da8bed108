//! `phi-gateway policy test`: the inline tests of a policy and its lint.

use std::fmt;
use std::path::PathBuf;

use super::model::Expect;
use super::{AccessRequest, Policy};

/// A failed inline test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyTestFailure {
    /// The test's name.
    pub name: String,
    /// Its file.
    pub file: PathBuf,
    /// Its line.
    pub line: usize,
    /// Expected, in words (`deny patient_mismatch entries [1]`).
    pub expected: String,
    /// What came out.
    pub actual: String,
}

impl fmt::Display for PolicyTestFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: test `{}`: expected {}, got {}",
            self.file.display(),
            self.line,
            self.name,
            self.expected,
            self.actual
        )
    }
}

/// A lint finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyLint {
    /// The file.
    pub file: PathBuf,
    /// The line (0: the whole policy).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for PolicyLint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
        } else {
            write!(f, "{}: {}", self.file.display(), self.message)
        }
    }
}

fn describe(allow: bool, reason: &str, entries: &[usize]) -> String {
    let mut s = if allow {
        "allow".to_string()
    } else {
        format!("deny {reason}")
    };
    if !entries.is_empty() {
        s.push_str(&format!(" entries {entries:?}"));
    }
    s
}

impl Policy {
    /// Runs every inline test through [`Policy::evaluate`]; the URLs are relative to the FHIR
    /// base.
    pub fn run_inline_tests(&self) -> Vec<PolicyTestFailure> {
        let mut failures = Vec::new();
        for t in &self.tests {
            let target = format!("/{}", t.url.strip_prefix('/').unwrap_or(&t.url));
            let d = self.evaluate(
                &t.subject,
                &AccessRequest {
                    method: &t.method,
                    target: &target,
                    base: "/",
                    body: t.body.as_deref(),
                    if_none_exist: t.if_none_exist,
                },
            );
            let want_allow = t.expect == Expect::Allow;
            let reason_ok = t.reason.as_deref().is_none_or(|r| r == d.reason.as_str());
            let entries_ok = t.entries.as_ref().is_none_or(|e| *e == d.denied_entries);
            let check_ok = t.post_check.is_none_or(|c| c == d.post_check);
            if d.allow != want_allow || !reason_ok || !entries_ok || !check_ok {
                failures.push(PolicyTestFailure {
                    name: t.name.clone(),
                    file: t.file.clone(),
                    line: t.line,
                    expected: format!(
                        "{}{}",
                        describe(
                            want_allow,
                            t.reason.as_deref().unwrap_or("(any reason)"),
                            t.entries.as_deref().unwrap_or_default(),
                        ),
                        t.post_check
                            .map(|c| format!(" post_check {}", c.as_str()))
                            .unwrap_or_default()
                    ),
                    actual: format!(
                        "{} post_check {}",
                        describe(d.allow, d.reason.as_str(), &d.denied_entries),
                        d.post_check.as_str()
                    ),
                });
            }
        }
        failures
    }

    /// The lint: roles and `permissions` entries that grant nothing, or that no inline test
    /// exercises (a role nobody tests is a role nobody knows works); a policy without tests.
    pub fn lint(&self) -> Vec<PolicyLint> {
        let mut out = Vec::new();
        let first = self.sources.first().cloned().unwrap_or_default();
        if self.tests.is_empty() {
            out.push(PolicyLint {
                file: first,
                line: 0,
                message: "the policy has no inline `tests:`".into(),
            });
        }
        for r in &self.roles {
            if r.grants.is_empty() && r.operations.is_empty() {
                out.push(PolicyLint {
                    file: r.file.clone(),
                    line: r.line,
                    message: format!(
                        "role `{}` is unreachable: it grants no interaction and no operation",
                        r.name
                    ),
                });
            }
            if !self.tests.iter().any(|t| t.subject.roles.contains(&r.name)) {
                out.push(PolicyLint {
                    file: r.file.clone(),
                    line: r.line,
                    message: format!("no test exercises role `{}`", r.name),
                });
            }
        }
        for (claim, value, r) in &self.permissions {
            if r.grants.is_empty() && r.operations.is_empty() {
                out.push(PolicyLint {
                    file: r.file.clone(),
                    line: r.line,
                    message: format!("permissions entry `{claim}: {value}` grants nothing"),
                });
            }
            let tested = self
                .tests
                .iter()
                .any(|t| match t.subject.permissions.get(claim) {
                    Some(serde_json::Value::Array(a)) => {
                        a.iter().any(|v| v.as_str() == Some(value))
                    }
                    Some(serde_json::Value::String(s)) => s == value,
                    _ => false,
                });
            if !tested {
                out.push(PolicyLint {
                    file: r.file.clone(),
                    line: r.line,
                    message: format!("no test exercises permissions entry `{claim}: {value}`"),
                });
            }
        }
        out
    }
}
