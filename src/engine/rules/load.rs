//! Loading and layering: rule directories (a base pack plus overlays that add, override or
//! disable rules) or in-memory sources into one [`RuleSet`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use aho_corasick::{AhoCorasickBuilder, MatchKind};

use super::compile::{compile_rule, location};
use super::compiled::build_prefilter;
use super::model::RawFile;
use super::set::RuleSet;
use crate::engine::source::{SourceError, YamlDirError};
use crate::engine::Mode;

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
            body_keywords: None,
            prefilter: None,
            keyword_index: Default::default(),
            digest: digest(&all),
            fingerprint_key: None,
            plans: Default::default(),
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
        let mut body_patterns: Vec<String> = Vec::new();
        let mut keyword_owner: Vec<usize> = Vec::new();
        for (idx, kws) in rule_keywords.into_iter().enumerate() {
            for k in kws {
                let longest = k
                    .split(' ')
                    .filter(|w| !w.is_empty())
                    .max_by_key(|w| w.len())
                    .unwrap_or(&k)
                    .to_string();
                body_patterns.push(longest);
                keyword_patterns.push(k);
                keyword_owner.push(idx);
            }
        }
        if !keyword_patterns.is_empty() {
            let build = |patterns: &[String]| {
                AhoCorasickBuilder::new()
                    .ascii_case_insensitive(true)
                    .match_kind(MatchKind::Standard)
                    .build(patterns)
                    .map_err(|e| {
                        SourceError::file_level(
                            all.first().map(|s| s.0.as_path()).unwrap_or(Path::new("")),
                            format!("cannot build keyword automaton: {e}"),
                        )
                    })
            };
            set.keywords = Some((build(&keyword_patterns)?, keyword_owner.clone()));
            set.body_keywords = Some((build(&body_patterns)?, keyword_owner));
        }
        set.prefilter = build_prefilter(&set.compiled);
        set.plans = crate::engine::scan::PlanCache::new(&set.compiled);
        Ok(set)
    }
}

/// Reads every `*.yaml` / `*.yml` file of `dir`, sorted by file name.
pub(crate) fn read_dir_sources(dir: &Path) -> Result<Vec<(PathBuf, String)>, RuleError> {
    crate::engine::source::read_yaml_dir(dir, "rule").map_err(|e| match e {
        YamlDirError::Dir(source) => RuleError::Dir {
            dir: dir.to_path_buf(),
            source,
        },
        YamlDirError::Empty => RuleError::Empty {
            dir: dir.to_path_buf(),
        },
        YamlDirError::File(e) => RuleError::Source(e),
    })
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
