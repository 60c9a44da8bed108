//! Detection rules: the YAML model, validation and compilation into an immutable [`RuleSet`].
//!
//! Rule files are written by compliance engineers and may come from anywhere, so loading is
//! strict: unknown keys, unknown validators, regexes the linear-time engine cannot run, scores
//! outside `0..=1`, duplicate ids and rules that can never fire are all errors that name the
//! file, the line and the field (`rules[2].patterns[0].regex`). Everything expensive — regex
//! compilation, the keyword and hotword automata — happens once here, so the per-request engine
//! only runs precompiled matchers. See `docs/rules.md` for the language reference.

mod fingerprint;
mod glob;
mod model;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};
use serde::Deserialize;

use crate::engine::source::{SourceError, Spanned};
use crate::engine::validate::Validator;
pub use crate::engine::Mode;
use crate::engine::{Limits, Part};
pub use fingerprint::value_fingerprint;
pub(crate) use fingerprint::{fingerprint, mask_value};
pub(crate) use glob::glob_match;
pub use model::{Category, RuleInfo, Severity};
use model::{RawContext, RawException, RawFile, RawPattern, RawRule, RawTestCase};

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

// ---------------------------------------------------------------------------------------------
// Compiled form, shared with the engine.

/// Which characters may not touch a matched value (checked in code, see `docs/rules.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Boundary {
    /// Neighbours must not be ASCII digits.
    Digit,
    /// Neighbours must not be ASCII letters or digits.
    Alnum,
    /// No check.
    #[default]
    None,
}

#[derive(Debug)]
pub(crate) struct CompiledPattern {
    /// The pattern's `name`, or `patterns[i]`.
    pub(crate) name: String,
    pub(crate) regex: Regex,
    /// Index of the `value` capture group, if the pattern has one.
    pub(crate) value_group: Option<usize>,
    pub(crate) score: f32,
    pub(crate) boundary: Boundary,
    pub(crate) same_separators: bool,
    /// The regex can never consume `"` and has no assertions (`^`, `$`, `\b`, …), so a match
    /// starting inside a quote-delimited token stays inside it and is the same match as in the
    /// token alone (used by the whole-body clean check, see `Scanner::json_body_clean`).
    pub(crate) quote_free: bool,
    /// The same regex without a literal prefilter, for the whole-body check: over text dense
    /// in digits a prefilter on the first digit reports a candidate at every byte, which is
    /// slower than the automaton alone. `None` if it does not build (then `regex` is used).
    pub(crate) scan: Option<regex_automata::meta::Regex>,
    /// Digits, upper-case letters and length bounds of every match, for the whole-body check.
    pub(crate) needs: crate::engine::fastpath::Needs,
}

#[derive(Debug)]
pub(crate) struct CompiledContext {
    /// Hotwords, ASCII case-insensitive, overlapping matches.
    pub(crate) words: AhoCorasick,
    /// The hotwords, in automaton pattern order (for explanations).
    pub(crate) word_list: Vec<String>,
    pub(crate) window_before: usize,
    pub(crate) window_after: usize,
    pub(crate) boost: f32,
    pub(crate) required: bool,
    /// The first hotword, as written (lowercased); see
    /// [`RuleSet::context_probes`](crate::engine::rules::RuleSet::context_probes).
    pub(crate) first_word: String,
}

/// Where a rule looks (`where:`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Scope {
    pub(crate) query: bool,
    pub(crate) body: bool,
    pub(crate) all_headers: bool,
    pub(crate) headers: Vec<String>,
    /// Field selectors that narrow body scanning (`json:`, `fhir:`, `hl7:`, `form:`,
    /// `multipart:` globs); empty = the whole body.
    pub(crate) fields: Vec<String>,
    /// Whether some field selector needs the rendered location (`json:`, `form:`, …) rather
    /// than the structural address (`fhir:`, `hl7:`).
    pub(crate) needs_addr: bool,
    /// Content-type globs (lowercase essence) the body must have; empty = any.
    pub(crate) content_types: Vec<String>,
    /// Route-name globs; empty = every route.
    pub(crate) routes: Vec<String>,
}

impl Scope {
    pub(crate) fn everywhere() -> Scope {
        Scope {
            query: true,
            body: true,
            all_headers: true,
            ..Scope::default()
        }
    }

    pub(crate) fn header(&self, name: &str) -> bool {
        self.all_headers || self.headers.iter().any(|h| h.eq_ignore_ascii_case(name))
    }

    pub(crate) fn route(&self, route: Option<&str>) -> bool {
        self.routes.is_empty()
            || route.is_some_and(|r| self.routes.iter().any(|g| glob_match(g, r)))
    }

    pub(crate) fn content_type(&self, ct: Option<&str>) -> bool {
        if self.content_types.is_empty() {
            return true;
        }
        let essence = ct
            .and_then(|c| c.split(';').next())
            .map(|e| e.trim().to_ascii_lowercase())
            .unwrap_or_default();
        self.content_types.iter().any(|g| glob_match(g, &essence))
    }
}

/// A structured exception (`exceptions:`): the finding is dropped when every listed condition
/// holds (any route of `routes`, any selector of `fields`, any fingerprint of `values`).
#[derive(Debug, Clone)]
pub(crate) struct Exception {
    pub(crate) name: String,
    pub(crate) routes: Vec<String>,
    pub(crate) fields: Vec<String>,
    pub(crate) values: Vec<String>,
}

#[derive(Debug)]
pub(crate) struct CompiledRule {
    pub(crate) patterns: Vec<CompiledPattern>,
    pub(crate) validators: Vec<Validator>,
    pub(crate) context: Option<CompiledContext>,
    pub(crate) min_score: f32,
    pub(crate) scope: Scope,
    pub(crate) has_keywords: bool,
    /// The first keyword, as written (lowercased); see
    /// [`RuleSet::context_probes`](crate::engine::rules::RuleSet::context_probes).
    pub(crate) first_keyword: Option<String>,
    /// No segment with fewer ASCII digits can produce a finding (derived from validators).
    pub(crate) min_digits: usize,
    pub(crate) exceptions: Vec<Exception>,
    /// `require_encrypted`: values at the rule's `where` fields must be ciphertext.
    pub(crate) encryption: Option<EncryptionReq>,
    pub(crate) tests: Vec<InlineTest>,
}

/// What `require_encrypted` accepts.
#[derive(Debug, Clone)]
pub(crate) struct EncryptionReq {
    /// Accepted envelope formats (`jwe`, `pgp`, `age`, `vault`, `sops`, `aws-esdk`, `tink`);
    /// empty = any.
    pub(crate) formats: Vec<String>,
    /// Accepted JWE `enc` values; empty = any.
    pub(crate) enc: Vec<String>,
}

impl EncryptionReq {
    /// Whether a value of this envelope format and JWE `enc` satisfies the requirement.
    pub(crate) fn accepts(&self, format: &str, enc: Option<&str>) -> bool {
        (self.formats.is_empty() || self.formats.iter().any(|f| f == format))
            && (self.enc.is_empty() || enc.is_some_and(|e| self.enc.iter().any(|x| x == e)))
    }
}

/// Envelope formats the classifier recognises.
pub(crate) const ENCRYPTION_FORMATS: &[&str] =
    &["jwe", "pgp", "age", "vault", "sops", "aws-esdk", "tink"];

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

/// The multi-pattern prefilter and, per rule, the indices of its patterns in the set.
pub(crate) struct Prefilter {
    pub(crate) set: RegexSet,
    /// `by_rule[r]` = set indices of rule `r`'s patterns, or `None` if the rule is not in the
    /// set (field-selector rules, which are gated by structure instead).
    pub(crate) by_rule: Vec<Option<Vec<usize>>>,
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

/// Builds the pattern prefilter. Patterns that would make the combined automaton too big are
/// left out (their rules then run unfiltered), so the set never changes what is found.
pub(crate) fn build_prefilter(rules: &[CompiledRule]) -> Option<Prefilter> {
    let mut sources = Vec::new();
    let mut by_rule = Vec::with_capacity(rules.len());
    for rule in rules {
        // Anchors and word boundaries depend on what surrounds a segment, so a rule using them
        // is never ruled out by a match over the whole body: keep it out of the set.
        let anchored = rule.patterns.iter().any(|p| {
            let r = p.regex.as_str();
            r.contains(['^', '$'])
                || ["\\A", "\\z", "\\b", "\\B", "\\<", "\\>"]
                    .iter()
                    .any(|a| r.contains(a))
        });
        if !rule.scope.fields.is_empty() || rule.patterns.is_empty() || anchored {
            by_rule.push(None);
            continue;
        }
        let idx: Vec<usize> = (sources.len()..sources.len() + rule.patterns.len()).collect();
        sources.extend(rule.patterns.iter().map(|p| p.regex.as_str().to_string()));
        by_rule.push(Some(idx));
    }
    if sources.is_empty() {
        return None;
    }
    let set = RegexSetBuilder::new(&sources)
        .size_limit(32 << 20)
        .dfa_size_limit(32 << 20)
        .build()
        .ok()?;
    Some(Prefilter { set, by_rule })
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

// ---------------------------------------------------------------------------------------------
// Validation and compilation.

/// Default characters of text before a match searched for hotwords.
const DEFAULT_WINDOW_BEFORE: usize = 50;
/// Default characters of text after a match searched for hotwords.
const DEFAULT_WINDOW_AFTER: usize = 20;
/// Google DLP caps hotword proximity at 1000 characters; larger windows are a config mistake.
const MAX_WINDOW: u64 = 1000;
/// Presidio's context enhancement: +0.35, floored at 0.4.
const DEFAULT_BOOST: f64 = 0.35;
pub(crate) const CONTEXT_FLOOR: f32 = 0.4;
const DEFAULT_MIN_SCORE: f64 = 0.5;

pub(crate) fn location<T>(s: &Spanned<T>) -> (usize, usize) {
    (s.referenced.line() as usize, s.referenced.column() as usize)
}

/// Column placeholder for errors that are about a whole rule.
fn location_col(line: usize) -> usize {
    usize::from(line > 0)
}

fn err_at<T>(file: &Path, s: &Spanned<T>, field: String, msg: impl Into<String>) -> SourceError {
    SourceError::at(file, s, field, msg)
}

fn valid_id(id: &str) -> bool {
    let b = id.as_bytes();
    let ok_char = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-';
    (2..=64).contains(&b.len())
        && b.first()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && b.iter().all(ok_char)
}

/// On a regex compile failure, explain the two unsupported features rule authors reach for.
fn uses_lookaround_or_backref(re: &str) -> bool {
    let b = re.as_bytes();
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b'\\' => {
                if matches!(b.get(i + 1), Some(b'1'..=b'9' | b'k')) {
                    return true;
                }
                i += 2;
                continue;
            }
            b'(' => {
                let rest = b.get(i + 1..i + 4).unwrap_or(b.get(i + 1..).unwrap_or(&[]));
                if rest.starts_with(b"?=")
                    || rest.starts_with(b"?!")
                    || rest.starts_with(b"?<=")
                    || rest.starts_with(b"?<!")
                {
                    return true;
                }
            }
            _ => {}
        }
        i += 1;
    }
    false
}

/// The last line of a regex error (the crate renders the pattern and a caret above it).
fn regex_message(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid regex")
        .trim()
        .trim_start_matches("error: ")
        .to_string()
}

fn compile_pattern(
    file: &Path,
    field: &str,
    raw: &Spanned<RawPattern>,
) -> Result<CompiledPattern, SourceError> {
    let p = &raw.value;
    let re_field = format!("{field}.regex");
    // Messages name the pattern when it has a name: easier to find than an index.
    let named = |msg: &str| match &p.name {
        Some(n) => format!("pattern `{n}`: {msg}"),
        None => msg.to_string(),
    };
    let regex = RegexBuilder::new(&p.regex.value)
        .size_limit(4 << 20)
        .build()
        .map_err(|e| {
            if uses_lookaround_or_backref(&p.regex.value) {
                err_at(
                    file,
                    &p.regex,
                    re_field.clone(),
                    "lookaround ((?=, (?!, (?<=, (?<!) and backreferences (\\1, \\k<name>) are \
                     unsupported: patterns run on a linear-time engine. Use `boundary: digit` or \
                     `boundary: alnum` for edges, `same_separators: true` for repeated \
                     delimiters, or a validator",
                )
            } else {
                err_at(
                    file,
                    &p.regex,
                    re_field.clone(),
                    named(&format!("invalid regex: {}", regex_message(&e))),
                )
            }
        })?;
    if regex.is_match("") {
        return Err(err_at(
            file,
            &p.regex,
            re_field,
            named("the regex matches the empty string, so it would match everywhere"),
        ));
    }
    if !(0.0..=1.0).contains(&p.score.value) {
        return Err(err_at(
            file,
            &p.score,
            format!("{field}.score"),
            named("score must be between 0 and 1"),
        ));
    }
    let value_group = regex.capture_names().position(|n| n == Some("value"));
    Ok(CompiledPattern {
        name: p
            .name
            .clone()
            .unwrap_or_else(|| field.rsplit('.').next().unwrap_or("pattern").to_string()),
        regex,
        value_group,
        score: p.score.value as f32,
        boundary: p.boundary,
        same_separators: p.same_separators,
        quote_free: quote_free(&p.regex.value),
        needs: crate::engine::fastpath::Needs::of_regex(&p.regex.value),
        scan: regex_automata::meta::Regex::builder()
            .configure(
                regex_automata::meta::Config::new()
                    .auto_prefilter(false)
                    .nfa_size_limit(Some(4 << 20)),
            )
            .build(&p.regex.value)
            .ok(),
    })
}

/// Whether a regex can never consume `"` and has no look-around assertions (see
/// [`CompiledPattern::quote_free`]). Anything the parser does not accept counts as not
/// quote-free.
pub(crate) fn quote_free(src: &str) -> bool {
    use regex_syntax::hir::{Class, Hir, HirKind};
    fn ok(h: &Hir) -> bool {
        match h.kind() {
            HirKind::Empty => true,
            HirKind::Literal(l) => !l.0.contains(&b'"'),
            HirKind::Class(Class::Unicode(c)) => !c
                .ranges()
                .iter()
                .any(|r| r.start() <= '"' && '"' <= r.end()),
            HirKind::Class(Class::Bytes(c)) => !c
                .ranges()
                .iter()
                .any(|r| r.start() <= b'"' && b'"' <= r.end()),
            HirKind::Look(_) => false,
            HirKind::Repetition(r) => ok(&r.sub),
            HirKind::Capture(c) => ok(&c.sub),
            HirKind::Concat(v) | HirKind::Alternation(v) => v.iter().all(ok),
        }
    }
    regex_syntax::Parser::new().parse(src).is_ok_and(|h| ok(&h))
}

fn compile_context(
    file: &Path,
    field: &str,
    raw: &Spanned<RawContext>,
) -> Result<CompiledContext, SourceError> {
    let c = &raw.value;
    let mut words = Vec::new();
    for (k, w) in c.words.value.iter().enumerate() {
        let word = w.value.trim();
        if word.is_empty() {
            return Err(err_at(
                file,
                w,
                format!("{field}.words[{k}]"),
                "context word must not be empty",
            ));
        }
        words.push(word.to_ascii_lowercase());
    }
    if words.is_empty() {
        return Err(err_at(
            file,
            &c.words,
            format!("{field}.words"),
            "context needs at least one word",
        ));
    }
    let window = |w: &Option<Spanned<u64>>, name: &str, default: usize| match w {
        None => Ok(default),
        Some(s) if s.value <= MAX_WINDOW => Ok(usize::try_from(s.value).unwrap_or(default)),
        Some(s) => Err(err_at(
            file,
            s,
            format!("{field}.{name}"),
            format!("{name} must be at most {MAX_WINDOW} characters"),
        )),
    };
    let window_before = window(&c.window_before, "window_before", DEFAULT_WINDOW_BEFORE)?;
    let window_after = window(&c.window_after, "window_after", DEFAULT_WINDOW_AFTER)?;
    let boost = match &c.boost {
        None => DEFAULT_BOOST,
        Some(b) if (0.0..=1.0).contains(&b.value) => b.value,
        Some(b) => {
            return Err(err_at(
                file,
                b,
                format!("{field}.boost"),
                "boost must be between 0 and 1",
            ))
        }
    };
    let first_word = words[0].clone();
    let automaton = AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::Standard)
        .build(&words)
        .map_err(|e| err_at(file, &c.words, format!("{field}.words"), e.to_string()))?;
    Ok(CompiledContext {
        words: automaton,
        word_list: words,
        window_before,
        window_after,
        boost: boost as f32,
        required: c.required,
        first_word,
    })
}

/// Field selector kinds accepted in `where` and `exceptions.fields`.
const FIELD_KINDS: &[&str] = &[
    "json:",
    "fhir:",
    "hl7:",
    "form:",
    "multipart:",
    "query:",
    "header:",
];

fn valid_selector(v: &str) -> bool {
    FIELD_KINDS
        .iter()
        .any(|k| v.strip_prefix(k).is_some_and(|rest| !rest.is_empty()))
}

fn compile_scope(
    file: &Path,
    field: &str,
    raw: &Option<Spanned<Vec<Spanned<String>>>>,
) -> Result<Scope, SourceError> {
    let Some(spanned) = raw else {
        return Ok(Scope::everywhere());
    };
    if spanned.value.is_empty() {
        return Err(err_at(
            file,
            spanned,
            field.to_string(),
            "`where` must list at least one part (or be omitted for all parts)",
        ));
    }
    let mut scope = Scope::default();
    let mut parts = false;
    for (k, s) in spanned.value.iter().enumerate() {
        let v = s.value.trim();
        let bad = |msg: String| err_at(file, s, format!("{field}[{k}]"), msg);
        match v {
            "query" => scope.query = true,
            "body" => scope.body = true,
            "header" => scope.all_headers = true,
            _ => {
                if let Some(name) = v.strip_prefix("header:") {
                    if name.is_empty()
                        || !name
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-_.!#$%&'*+^`|~".contains(&b))
                    {
                        return Err(bad(format!("invalid header name in `{v}`")));
                    }
                    scope.headers.push(name.to_ascii_lowercase());
                } else if let Some(ct) = v.strip_prefix("content-type:") {
                    if ct.trim().is_empty() {
                        return Err(bad("`content-type:` needs a media type glob".into()));
                    }
                    scope.content_types.push(ct.trim().to_ascii_lowercase());
                    continue;
                } else if let Some(r) = v.strip_prefix("route:") {
                    if r.trim().is_empty() {
                        return Err(bad("`route:` needs a route name glob".into()));
                    }
                    scope.routes.push(r.trim().to_string());
                    continue;
                } else if valid_selector(v) && !v.starts_with("query:") {
                    scope.fields.push(v.to_string());
                    continue;
                } else {
                    return Err(bad(format!(
                        "unknown part `{v}`; expected one of: query, body, header, \
                         header:<name>, json:<pointer>, fhir:<Resource.path>, hl7:<SEG-n>, \
                         form:<field>, multipart:<part>, content-type:<type>, route:<name> \
                         (`*` is a wildcard)"
                    )));
                }
            }
        }
        parts = true;
    }
    scope.needs_addr = scope
        .fields
        .iter()
        .any(|f| !f.starts_with("fhir:") && !f.starts_with("hl7:"));
    if !scope.fields.is_empty() {
        // Field selectors address the body.
        scope.body = true;
    } else if !parts {
        // Only content types / routes: every part.
        scope.query = true;
        scope.body = true;
        scope.all_headers = true;
    }
    Ok(scope)
}

fn compile_exception(
    file: &Path,
    field: &str,
    raw: &Spanned<RawException>,
) -> Result<Exception, SourceError> {
    let e = &raw.value;
    if e.name.trim().is_empty() {
        return Err(err_at(
            file,
            raw,
            format!("{field}.name"),
            "an exception needs a name",
        ));
    }
    if e.routes.is_empty() && e.fields.is_empty() && e.values.is_empty() {
        return Err(err_at(
            file,
            raw,
            field.to_string(),
            "an exception needs at least one of `routes`, `fields`, `values` (it would \
             otherwise switch the rule off; use `mode: off` for that)",
        ));
    }
    for (k, f) in e.fields.iter().enumerate() {
        if !valid_selector(f.value.trim()) {
            return Err(err_at(
                file,
                f,
                format!("{field}.fields[{k}]"),
                format!(
                    "`{}` is not a field selector; use json:<pointer>, fhir:<Resource.path>, \
                     hl7:<SEG-n>, form:<field>, multipart:<part>, query:<param> or \
                     header:<name>",
                    f.value
                ),
            ));
        }
    }
    for (k, v) in e.values.iter().enumerate() {
        let ok = v
            .value
            .strip_prefix("hmac-sha256:")
            .is_some_and(|h| h.len() == 32 && h.bytes().all(|c| c.is_ascii_hexdigit()));
        if !ok {
            return Err(err_at(
                file,
                v,
                format!("{field}.values[{k}]"),
                "values are fingerprints `hmac-sha256:<32 hex digits>` as printed by \
                 `phi-gateway scan --explain`, never the value itself",
            ));
        }
    }
    Ok(Exception {
        name: e.name.trim().to_string(),
        routes: e.routes.iter().map(|r| r.trim().to_string()).collect(),
        fields: e
            .fields
            .iter()
            .map(|f| f.value.trim().to_string())
            .collect(),
        values: e
            .values
            .iter()
            .map(|v| v.value.to_ascii_lowercase())
            .collect(),
    })
}

fn compile_test(
    file: &Path,
    field: String,
    raw: Spanned<RawTestCase>,
    expect_match: bool,
) -> Result<InlineTest, SourceError> {
    let line = location(&raw).0;
    let mut route = None;
    let input = match raw.value {
        RawTestCase::Text(t) => TestInput::Text(t),
        RawTestCase::Object(o) => {
            route = o.route.clone();
            let kinds = [
                o.text.is_some(),
                o.body.is_some(),
                o.query.is_some(),
                o.header.is_some(),
            ]
            .iter()
            .filter(|x| **x)
            .count();
            let bad = |msg: &str| SourceError::new(file, line, 0, field.clone(), msg);
            if kinds != 1 {
                return Err(bad(
                    "a test object needs exactly one of: text, body, query, header",
                ));
            }
            if o.content_type.is_some() && o.body.is_none() {
                return Err(bad("`content_type` only applies to `body` tests"));
            }
            match (o.text, o.body, o.query, o.header) {
                (Some(t), ..) => TestInput::Text(t),
                (_, Some(body), ..) => TestInput::Body {
                    body,
                    content_type: o.content_type,
                },
                (_, _, Some(q), ..) => TestInput::Query(q),
                (_, _, _, Some(line)) => match line.split_once(':') {
                    Some((name, value)) if !name.trim().is_empty() => TestInput::Header {
                        name: name.trim().to_ascii_lowercase(),
                        value: value.trim_start().to_string(),
                    },
                    _ => return Err(bad("a `header` test is a header line, `name: value`")),
                },
                _ => {
                    return Err(bad(
                        "a test object needs exactly one of: text, body, query, header",
                    ))
                }
            }
        }
    };
    Ok(InlineTest {
        expect_match,
        line,
        input,
        route,
    })
}

pub(crate) fn compile_rule(
    file: &Path,
    i: usize,
    spanned: Spanned<RawRule>,
) -> Result<(RuleInfo, CompiledRule, Vec<String>), SourceError> {
    let (line, _) = location(&spanned);
    let raw = spanned.value;
    let f = |name: &str| format!("rules[{i}].{name}");
    if !valid_id(&raw.id.value) {
        return Err(err_at(
            file,
            &raw.id,
            f("id"),
            "id must match ^[a-z0-9][a-z0-9-]{1,63}$ (lowercase letters, digits, hyphens)",
        ));
    }
    let raw_patterns: &[Spanned<RawPattern>] = raw.patterns.as_ref().map_or(&[], |p| &p.value);
    if raw_patterns.is_empty() && raw.require_encrypted.is_none() {
        let msg = "a rule needs at least one pattern (or `require_encrypted`)";
        return Err(match &raw.patterns {
            Some(p) => err_at(file, p, f("patterns"), msg),
            None => SourceError::new(file, line, location_col(line), f("patterns"), msg),
        });
    }
    let mut patterns = Vec::with_capacity(raw_patterns.len());
    for (j, p) in raw_patterns.iter().enumerate() {
        patterns.push(compile_pattern(file, &f(&format!("patterns[{j}]")), p)?);
    }
    let mut validators = Vec::new();
    for (j, v) in raw.validators.iter().enumerate() {
        match Validator::from_name(v.value.trim()) {
            Some(val) => validators.push(val),
            None => {
                return Err(err_at(
                    file,
                    v,
                    f(&format!("validators[{j}]")),
                    format!(
                        "unknown validator `{}`; valid validators: {}",
                        v.value,
                        Validator::names()
                    ),
                ))
            }
        }
    }
    let context = match &raw.context {
        Some(c) => Some(compile_context(file, &f("context"), c)?),
        None => None,
    };
    let min_score = match &raw.min_score {
        None => DEFAULT_MIN_SCORE,
        Some(m) if (0.0..=1.0).contains(&m.value) => m.value,
        Some(m) => {
            return Err(err_at(
                file,
                m,
                f("min_score"),
                "min_score must be between 0 and 1",
            ))
        }
    } as f32;
    // A rule that cannot reach min_score even with context is dead weight and almost always a
    // mistake (e.g. a 0.1 pattern and no context words).
    let best = patterns
        .iter()
        .map(|p| match &context {
            Some(c) => (p.score + c.boost).clamp(CONTEXT_FLOOR, 1.0),
            None => p.score,
        })
        .fold(0.0f32, f32::max);
    if !patterns.is_empty() && best + 1e-6 < min_score {
        return Err(SourceError::new(
            file,
            line,
            location_col(line),
            f("min_score"),
            format!(
                "no pattern can reach min_score {min_score} (best possible score {best:.2}); \
                 raise a pattern score or add context"
            ),
        ));
    }
    let mut keywords = Vec::new();
    for (j, k) in raw.keywords.iter().enumerate() {
        let kw = k.value.trim();
        if kw.is_empty() {
            return Err(err_at(
                file,
                k,
                f(&format!("keywords[{j}]")),
                "keyword must not be empty",
            ));
        }
        keywords.push(kw.to_ascii_lowercase());
    }
    let scope = compile_scope(file, &f("where"), &raw.scope)?;
    let encryption = match &raw.require_encrypted {
        None => None,
        Some(req) => {
            if scope.fields.is_empty() {
                return Err(err_at(
                    file,
                    req,
                    f("require_encrypted"),
                    "`require_encrypted` needs field selectors in `where` (json:, fhir:, hl7:, \
                     form:, multipart:) naming the fields that must be encrypted",
                ));
            }
            let mut formats = Vec::new();
            for (k, fm) in req.value.formats.iter().enumerate() {
                let v = fm.value.trim().to_ascii_lowercase();
                if !ENCRYPTION_FORMATS.contains(&v.as_str()) {
                    return Err(err_at(
                        file,
                        fm,
                        f(&format!("require_encrypted.formats[{k}]")),
                        format!(
                            "unknown format `{v}`; known formats: {}",
                            ENCRYPTION_FORMATS.join(", ")
                        ),
                    ));
                }
                formats.push(v);
            }
            Some(EncryptionReq {
                formats,
                enc: req.value.enc.iter().map(|e| e.trim().to_string()).collect(),
            })
        }
    };
    let mut exceptions = Vec::new();
    for (j, e) in raw.exceptions.iter().enumerate() {
        exceptions.push(compile_exception(file, &f(&format!("exceptions[{j}]")), e)?);
    }
    let mut tests = Vec::new();
    if let Some(t) = raw.tests {
        for (j, case) in t.should_match.into_iter().enumerate() {
            tests.push(compile_test(
                file,
                f(&format!("tests.match[{j}]")),
                case,
                true,
            )?);
        }
        for (j, case) in t.no_match.into_iter().enumerate() {
            tests.push(compile_test(
                file,
                f(&format!("tests.no_match[{j}]")),
                case,
                false,
            )?);
        }
    }
    let min_digits = validators.iter().map(|v| v.min_digits()).max().unwrap_or(0);
    let info = RuleInfo {
        id: raw.id.value,
        description: raw.description,
        category: raw.category,
        severity: raw.severity,
        mode: raw.mode,
        file: file.to_path_buf(),
        line,
    };
    let compiled = CompiledRule {
        patterns,
        validators,
        context,
        min_score,
        scope,
        has_keywords: !keywords.is_empty(),
        first_keyword: keywords.first().map(|k| k.to_lowercase()),
        min_digits,
        exceptions,
        encryption,
        tests,
    };
    Ok((info, compiled, keywords))
}
