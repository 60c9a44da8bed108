//! Detection rules: the YAML model, validation and compilation into an immutable [`RuleSet`].
//!
//! Rule files are written by compliance engineers and may come from anywhere, so loading is
//! strict: unknown keys, unknown validators, regexes the linear-time engine cannot run, scores
//! outside `0..=1`, duplicate ids and rules that can never fire are all errors that name the
//! file, the line and the field (`rules[2].patterns[0].regex`). Everything expensive — regex
//! compilation, the keyword and hotword automata — happens once here, so the per-request engine
//! only runs precompiled matchers. See `docs/rules.md` for the language reference.

mod compile;
mod compiled;
mod fingerprint;
mod glob;
mod model;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

use crate::engine::source::SourceError;
pub use crate::engine::Mode;
use crate::engine::{Limits, Part};
pub(crate) use compile::CONTEXT_FLOOR;
use compile::{compile_rule, location};
use compiled::{build_prefilter, Prefilter};
pub(crate) use compiled::{Boundary, CompiledContext, CompiledPattern, CompiledRule};
pub use fingerprint::value_fingerprint;
pub(crate) use fingerprint::{fingerprint, mask_value};
pub(crate) use glob::glob_match;
use model::RawFile;
pub use model::{Category, RuleInfo, Severity};

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

/// Why a rule set could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuleError {
    /// A parse or validation error located in a rule file (`file:line:col: field: message`).
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The rules directory could not be listed.
    #[error("{dir}: cannot read rules directory: {source}", dir = dir.display())]
    Dir {
        /// The directory.
        dir: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The rules directory holds no `*.yaml` / `*.yml` file.
    #[error("{dir}: no rule files (*.yaml, *.yml) found", dir = dir.display())]
    Empty {
        /// The directory.
        dir: PathBuf,
    },
}

#[derive(Debug)]
pub(crate) struct InlineTest {
    pub(crate) expect_match: bool,
    pub(crate) line: usize,
    pub(crate) input: TestInput,
    pub(crate) route: Option<String>,
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

/// A compiled, immutable rule set. Cheap to share (`Arc<RuleSet>`), `Send + Sync`.
pub struct RuleSet {
    pub(crate) infos: Vec<RuleInfo>,
    pub(crate) compiled: Vec<CompiledRule>,
    pub(crate) index: HashMap<String, usize>,
    /// One automaton over every rule's `keywords`, and the rule owning each pattern.
    pub(crate) keywords: Option<(AhoCorasick, Vec<usize>)>,
    /// The same keywords split into fragments for the whole-body one-pass profile.
    pub(crate) keyword_index: crate::engine::fastpath::KeywordIndex,
    /// One multi-pattern matcher over every pattern of the rules that have no field selectors:
    /// a segment runs one set match, then only the rules with a pattern that matched.
    pub(crate) prefilter: Option<Prefilter>,
    pub(crate) digest: String,
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

impl RuleSet {
    /// Loads every `*.yaml` / `*.yml` file in `dir` (non-recursive), sorted by file name.
    pub fn load_dir(dir: &Path) -> Result<RuleSet, RuleError> {
        RuleSet::load_dirs(&[dir.to_path_buf()])
    }

    /// Loads layered rule directories: the first is the base (usually the default pack), each
    /// later directory may add rules, replace a rule by id (`override: true`) or switch rules
    /// off (`disable: [id, …]` at the top of a file). A later rule with an existing id and no
    /// `override: true` is an error, so a site cannot shadow a default rule by accident.
    pub fn load_dirs(dirs: &[PathBuf]) -> Result<RuleSet, RuleError> {
        let mut layers = Vec::with_capacity(dirs.len());
        for dir in dirs {
            layers.push(read_dir_sources(dir)?);
        }
        RuleSet::from_layers(&layers)
    }

    /// Loads from in-memory sources: (file name used in errors, YAML text), in load order.
    pub fn from_sources(sources: &[(PathBuf, String)]) -> Result<RuleSet, RuleError> {
        RuleSet::from_layers(&[sources.to_vec()])
    }

    /// Loads layered in-memory sources (see [`RuleSet::load_dirs`]).
    pub fn from_layers(layers: &[Vec<(PathBuf, String)>]) -> Result<RuleSet, RuleError> {
        let all: Vec<(PathBuf, String)> = layers.iter().flatten().cloned().collect();
        let mut set = RuleSet {
            infos: Vec::new(),
            compiled: Vec::new(),
            index: HashMap::new(),
            keywords: None,
            prefilter: None,
            keyword_index: Default::default(),
            digest: digest(&all),
        };
        let mut rule_keywords: Vec<Vec<String>> = Vec::new();
        let mut disabled: Vec<(PathBuf, usize, usize, String, String)> = Vec::new();
        for (layer_no, layer) in layers.iter().enumerate() {
            // Ids defined in this layer: duplicates within one layer are always errors.
            let mut this_layer: HashMap<String, (PathBuf, usize)> = HashMap::new();
            for (file, text) in layer {
                let raw: RawFile =
                    crate::engine::source::parse(file, text).map_err(without_span_segments)?;
                if raw.rules.is_empty() && raw.disable.is_empty() {
                    return Err(SourceError::file_level(
                        file,
                        "the file defines no `rules:` and no `disable:` list",
                    )
                    .into());
                }
                for (k, d) in raw.disable.iter().enumerate() {
                    let (line, column) = location(d);
                    disabled.push((
                        file.clone(),
                        line,
                        column,
                        format!("disable[{k}]"),
                        d.value.trim().to_string(),
                    ));
                }
                for (i, rule) in raw.rules.into_iter().enumerate() {
                    let (line, column) = location(&rule.value.id);
                    let wants_override = rule.value.override_rule;
                    let (info, compiled, keywords) = compile_rule(file, i, rule)?;
                    let dup = |what: &str, prev_file: &Path, prev_line: usize| {
                        SourceError::new(
                            file,
                            line,
                            column,
                            format!("rules[{i}].id"),
                            format!(
                                "duplicate rule id `{}`; first defined at {}:{}{what}",
                                info.id,
                                prev_file.display(),
                                prev_line
                            ),
                        )
                    };
                    if let Some((pf, pl)) = this_layer.get(&info.id) {
                        return Err(dup("", pf, *pl).into());
                    }
                    this_layer.insert(info.id.clone(), (file.clone(), line));
                    match set.index.get(&info.id).copied() {
                        Some(idx) if layer_no > 0 && wants_override => {
                            if let Some(slot) = set.infos.get_mut(idx) {
                                *slot = info;
                            }
                            if let Some(slot) = set.compiled.get_mut(idx) {
                                *slot = compiled;
                            }
                            if let Some(slot) = rule_keywords.get_mut(idx) {
                                *slot = keywords;
                            }
                        }
                        Some(idx) => {
                            let prev = set.infos.get(idx);
                            let hint = if layer_no > 0 {
                                " (set `override: true` to replace it)"
                            } else {
                                ""
                            };
                            return Err(dup(
                                hint,
                                prev.map_or(Path::new(""), |p| p.file.as_path()),
                                prev.map_or(0, |p| p.line),
                            )
                            .into());
                        }
                        None if wants_override => {
                            return Err(SourceError::new(
                                file,
                                line,
                                column,
                                format!("rules[{i}].override"),
                                format!(
                                    "`override: true` but no earlier rule directory defines `{}`",
                                    info.id
                                ),
                            )
                            .into());
                        }
                        None => {
                            set.index.insert(info.id.clone(), set.infos.len());
                            set.infos.push(info);
                            set.compiled.push(compiled);
                            rule_keywords.push(keywords);
                        }
                    }
                }
            }
        }
        for (file, line, column, field, id) in disabled {
            match set.index.get(&id).and_then(|&i| set.infos.get_mut(i)) {
                Some(info) => info.mode = Mode::Off,
                None => {
                    return Err(SourceError::new(
                        &file,
                        line,
                        column,
                        field,
                        format!("cannot disable `{id}`: no rule has this id"),
                    )
                    .into())
                }
            }
        }
        set.keyword_index = crate::engine::fastpath::KeywordIndex::new(&rule_keywords);
        let mut keyword_patterns: Vec<String> = Vec::new();
        let mut keyword_owner: Vec<usize> = Vec::new();
        for (idx, kws) in rule_keywords.into_iter().enumerate() {
            for k in kws {
                keyword_patterns.push(k);
                keyword_owner.push(idx);
            }
        }
        if !keyword_patterns.is_empty() {
            let ac = AhoCorasickBuilder::new()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::Standard)
                .build(&keyword_patterns)
                .map_err(|e| {
                    SourceError::file_level(
                        all.first().map(|s| s.0.as_path()).unwrap_or(Path::new("")),
                        format!("cannot build keyword automaton: {e}"),
                    )
                })?;
            set.keywords = Some((ac, keyword_owner));
        }
        set.prefilter = build_prefilter(&set.compiled);
        Ok(set)
    }
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
                let options = crate::engine::ScanOptions::route(test.route.as_deref());
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
    pub(crate) fn compiled(&self) -> &[CompiledRule] {
        &self.compiled
    }

    pub(crate) fn infos(&self) -> &[RuleInfo] {
        &self.infos
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
}

/// Reads every `*.yaml` / `*.yml` file of `dir`, sorted by file name.
pub(crate) fn read_dir_sources(dir: &Path) -> Result<Vec<(PathBuf, String)>, RuleError> {
    let dir_err = |source| RuleError::Dir {
        dir: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(dir_err)? {
        let path = entry.map_err(dir_err)?.path();
        let is_yaml = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"));
        if is_yaml && path.is_file() {
            files.push(path);
        }
    }
    if files.is_empty() {
        return Err(RuleError::Empty {
            dir: dir.to_path_buf(),
        });
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    let mut sources = Vec::with_capacity(files.len());
    for file in files {
        let text = std::fs::read_to_string(&file)
            .map_err(|e| SourceError::file_level(&file, format!("cannot read rule file: {e}")))?;
        sources.push((file, text));
    }
    Ok(sources)
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

/// `Spanned<T>` shows up in serde paths as a `value` segment (`rules[0].value.patterns`). No
/// field of the rule schema is called `value`, so dropping those segments gives the path the
/// author wrote.
fn without_span_segments(mut e: SourceError) -> SourceError {
    if e.field.split('.').any(|s| s == "value") {
        e.field = e
            .field
            .split('.')
            .filter(|s| *s != "value")
            .collect::<Vec<_>>()
            .join(".");
    }
    e
}

fn digest(sources: &[(PathBuf, String)]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for (file, text) in sources {
        let name = file.to_string_lossy();
        ctx.update(&(name.len() as u64).to_le_bytes());
        ctx.update(name.as_bytes());
        ctx.update(&(text.len() as u64).to_le_bytes());
        ctx.update(text.as_bytes());
    }
    ctx.finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
