//! The `phi-gateway rules test` runner: inline tests, fixture files and lint, all run through
//! the real engine.

use std::fmt;
use std::path::{Path, PathBuf};

use super::load::RuleError;
use super::set::RuleSet;
use crate::engine::source::SourceError;
use crate::engine::{Limits, Message, Part};

/// One inline test (`tests.match` / `tests.no_match`) that did not behave as declared.
///
/// Carries a masked input only: test inputs look like PHI even when synthetic, and CI logs are
/// not the place to teach people to paste real identifiers.
#[derive(Debug)]
pub struct InlineTestFailure {
    /// The rule whose test failed.
    pub rule_id: String,
    /// Rule file.
    pub file: PathBuf,
    /// 1-based line of the test case.
    pub line: usize,
    /// What the test declared (`match` or `no match`).
    pub expected: String,
    /// What the engine did instead.
    pub actual: String,
    /// The input with every character of digit- or `@`-bearing words masked.
    pub input_masked: String,
}

impl fmt::Display for InlineTestFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: rule `{}`: expected {}, got {} (input: {})",
            self.file.display(),
            self.line,
            self.rule_id,
            self.expected,
            self.actual,
            self.input_masked
        )
    }
}

/// A lint finding of `phi-gateway rules test`.
#[derive(Debug, Clone)]
pub struct LintIssue {
    /// The rule.
    pub rule_id: String,
    /// Its file.
    pub file: PathBuf,
    /// Its line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for LintIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: rule `{}`: {}",
            self.file.display(),
            self.line,
            self.rule_id,
            self.message
        )
    }
}

impl RuleSet {
    /// Runs every rule's inline tests through the real engine; empty = all pass.
    ///
    /// Each test is scanned with only its own rule enabled (also when the rule is `off`, so
    /// that disabling a rule does not hide a broken one), using default [`Limits`].
    pub fn run_inline_tests(&self) -> Vec<InlineTestFailure> {
        let limits = Limits::default();
        let mut failures = Vec::new();
        for (idx, (info, rule)) in self.infos.iter().zip(&self.compiled).enumerate() {
            for test in &rule.tests {
                let expected = if test.expect_match {
                    "match"
                } else {
                    "no match"
                };
                // A `response:` test is scanned as a response body, and so is free text for
                // a rule that never sees a request (an error signature); `body:`, `query:`
                // and `header:` tests are request parts.
                let text = matches!(test.input, TestInput::Text(_));
                let message = if test.response || (text && !rule.scope.request) {
                    Message::Response
                } else {
                    Message::Request
                };
                let options =
                    crate::engine::ScanOptions::route(test.route.as_deref()).message(message);
                let part = test.input.part();
                let actual =
                    match crate::engine::scan_rules(self, &part, &limits, Some(idx), &options) {
                        Err(e) => Some(format!("error: {e}")),
                        Ok(scan) => {
                            let hit = scan.findings.iter().find(|f| f.rule_id == info.id);
                            match (test.expect_match, hit) {
                                (true, Some(_)) | (false, None) => None,
                                (true, None) => Some("no finding".to_string()),
                                (false, Some(f)) => Some(format!(
                                    "finding at {} (score {:.2}, chain {})",
                                    f.location,
                                    f.score,
                                    f.decode_chain.join(">")
                                )),
                            }
                        }
                    };
                if let Some(actual) = actual {
                    failures.push(InlineTestFailure {
                        rule_id: info.id.clone(),
                        file: info.file.clone(),
                        line: test.line,
                        expected: expected.to_string(),
                        actual,
                        input_masked: mask(test.input.raw()),
                    });
                }
            }
        }
        failures
    }

    /// Lints the rule set: every rule needs at least one `match` and one `no_match` example
    /// (a rule whose examples do not trigger it shows up in [`RuleSet::run_inline_tests`]).
    /// Duplicate ids never get this far: they are load errors naming both places.
    pub fn lint(&self) -> Vec<LintIssue> {
        let mut out = Vec::new();
        for (info, rule) in self.infos.iter().zip(&self.compiled) {
            let pos = rule.tests.iter().filter(|t| t.expect_match).count();
            let neg = rule.tests.len() - pos;
            let mut push = |message: &str| {
                out.push(LintIssue {
                    rule_id: info.id.clone(),
                    file: info.file.clone(),
                    line: info.line,
                    message: message.to_string(),
                })
            };
            if pos == 0 {
                push("no positive example (`tests.match`): nothing shows the rule works");
            }
            if neg == 0 {
                push("no negative example (`tests.no_match`): nothing guards against false positives");
            }
        }
        out
    }

    /// Runs the fixture files of `dir` (every file in it): whole requests (`*.http`) or bodies,
    /// annotated in leading `#` lines, Semgrep-style:
    ///
    /// ```text
    /// # ruleid: us-ssn, us-phone      (each must fire)
    /// # ok: us-npi                    (must not fire)
    /// # route: provider-api           (optional)
    /// # content-type: application/fhir+json   (bodies; default from the file extension)
    /// ```
    ///
    /// Returns the number of fixtures run and the failures.
    pub fn run_fixtures(&self, dir: &Path) -> Result<(usize, Vec<InlineTestFailure>), RuleError> {
        let dir_err = |source| RuleError::Dir {
            dir: dir.to_path_buf(),
            source,
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(dir_err)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        let limits = Limits::default();
        let mut failures = Vec::new();
        for file in &files {
            let bytes = std::fs::read(file)
                .map_err(|e| SourceError::file_level(file, format!("cannot read fixture: {e}")))?;
            let fx = Fixture::parse(&bytes);
            let fail = |expected: String, actual: String| InlineTestFailure {
                rule_id: fx.rules_label(),
                file: file.clone(),
                line: 1,
                expected,
                actual,
                input_masked: mask(&String::from_utf8_lossy(
                    fx.content.get(..fx.content.len().min(200)).unwrap_or(&[]),
                )),
            };
            for (line, id) in fx.ruleid.iter().chain(&fx.ok) {
                if self.get(id).is_none() {
                    return Err(SourceError::new(
                        file,
                        *line,
                        1,
                        "ruleid".to_string(),
                        format!("unknown rule id `{id}` in fixture annotation"),
                    )
                    .into());
                }
            }
            let options = crate::engine::ScanOptions::route(fx.route.as_deref());
            let is_http = file.extension().and_then(|e| e.to_str()) == Some("http");
            let result = if is_http {
                match crate::engine::http::parse_request(&fx.content) {
                    Ok(req) => crate::engine::scan_request_rules(self, &req, &limits, &options),
                    Err(e) => {
                        failures.push(fail("a parsable request".into(), e.to_string()));
                        continue;
                    }
                }
            } else {
                let ct = fx.content_type.clone().or_else(|| {
                    let ext = file.extension().and_then(|e| e.to_str()).unwrap_or("");
                    Some(
                        match ext {
                            "json" => "application/fhir+json",
                            "hl7" | "er7" => "x-application/hl7-v2+er7",
                            "xml" => "application/fhir+xml",
                            "form" => "application/x-www-form-urlencoded",
                            _ => "text/plain",
                        }
                        .to_string(),
                    )
                });
                crate::engine::scan_rules(
                    self,
                    &Part::Body {
                        content_type: ct.as_deref(),
                        content_encoding: None,
                        bytes: &fx.content,
                    },
                    &limits,
                    None,
                    &options,
                )
            };
            let scan = match result {
                Ok(s) => s,
                Err(e) => {
                    failures.push(fail("a scan".into(), format!("error: {e}")));
                    continue;
                }
            };
            for (_, id) in &fx.ruleid {
                if !scan.findings.iter().any(|f| &f.rule_id == id) {
                    failures.push(fail(format!("ruleid: {id}"), "no finding".into()));
                }
            }
            for (_, id) in &fx.ok {
                if let Some(f) = scan.findings.iter().find(|f| &f.rule_id == id) {
                    failures.push(fail(
                        format!("ok: {id}"),
                        format!(
                            "finding at {} (chain {})",
                            f.location,
                            f.decode_chain.join(">")
                        ),
                    ));
                }
            }
        }
        Ok((files.len(), failures))
    }
}

#[derive(Debug)]
pub(crate) struct InlineTest {
    pub(super) expect_match: bool,
    pub(super) line: usize,
    pub(super) input: TestInput,
    pub(super) route: Option<String>,
    /// A `response:` test: the body of an upstream response.
    pub(super) response: bool,
}

#[derive(Debug)]
pub(crate) enum TestInput {
    Text(String),
    Body {
        body: String,
        content_type: Option<String>,
    },
    Query(String),
    Header {
        name: String,
        value: String,
    },
}

impl TestInput {
    fn part(&self) -> Part<'_> {
        match self {
            TestInput::Text(t) => Part::Text(t),
            TestInput::Body { body, content_type } => Part::Body {
                content_type: content_type.as_deref(),
                content_encoding: None,
                bytes: body.as_bytes(),
            },
            TestInput::Query(q) => Part::Query(q),
            TestInput::Header { name, value } => Part::Header {
                name,
                value: value.as_bytes(),
            },
        }
    }

    fn raw(&self) -> &str {
        match self {
            TestInput::Text(t) | TestInput::Query(t) => t,
            TestInput::Body { body, .. } => body,
            TestInput::Header { value, .. } => value,
        }
    }
}

/// A fixture file: annotations and content.
struct Fixture {
    ruleid: Vec<(usize, String)>,
    ok: Vec<(usize, String)>,
    route: Option<String>,
    content_type: Option<String>,
    content: Vec<u8>,
}

impl Fixture {
    fn parse(bytes: &[u8]) -> Fixture {
        let mut fx = Fixture {
            ruleid: Vec::new(),
            ok: Vec::new(),
            route: None,
            content_type: None,
            content: Vec::new(),
        };
        let mut pos = 0;
        let mut line = 0;
        while bytes.get(pos) == Some(&b'#') {
            line += 1;
            let end = bytes
                .get(pos..)
                .and_then(|r| r.iter().position(|b| *b == b'\n'))
                .map_or(bytes.len(), |i| pos + i);
            let text = String::from_utf8_lossy(bytes.get(pos + 1..end).unwrap_or(&[]));
            if let Some((k, v)) = text.split_once(':') {
                let ids = || {
                    v.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| (line, s.to_string()))
                        .collect::<Vec<_>>()
                };
                match k.trim() {
                    "ruleid" => fx.ruleid.extend(ids()),
                    "ok" => fx.ok.extend(ids()),
                    "route" => fx.route = Some(v.trim().to_string()),
                    "content-type" => fx.content_type = Some(v.trim().to_string()),
                    _ => {}
                }
            }
            pos = end + 1;
        }
        fx.content = bytes.get(pos.min(bytes.len())..).unwrap_or(&[]).to_vec();
        fx
    }

    fn rules_label(&self) -> String {
        let ids: Vec<&str> = self
            .ruleid
            .iter()
            .chain(&self.ok)
            .map(|(_, s)| s.as_str())
            .collect();
        ids.join(",")
    }
}

/// Masks test inputs for reports: in every whitespace-separated word that contains a digit or
/// `@`, ASCII letters become `*` and digits `#`. Context words stay readable. At most 120 chars.
fn mask(input: &str) -> String {
    let mut out = String::new();
    for (i, word) in input.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let sensitive = word
            .chars()
            .any(|c| c.is_numeric() || c == '@' || c == '＠');
        for c in word.chars() {
            out.push(match c {
                c if sensitive && c.is_numeric() => '#',
                c if sensitive && c.is_alphabetic() => '*',
                c if c.is_control() => ' ',
                c => c,
            });
        }
    }
    if out.chars().count() > 120 {
        out = out.chars().take(117).collect::<String>() + "...";
    }
    out
}
