//! The layout rules of `src/` (README "Repository layout"), checked on the source text so a
//! change that breaks them fails `cargo test` instead of a review.
//!
//! - the engine is pure: no file under `src/engine/` names pingora, tokio or `std::net`;
//! - the capability folders form a stack with no import circles: each folder uses only the
//!   folders below it ([`ALLOWED`]);
//! - no source file is longer than [`MAX_LINES`] lines, tests in their own files excepted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Each folder and the folders it may use. The order is the stack, bottom first.
const ALLOWED: &[(&str, &[&str])] = &[
    ("engine", &[]),
    ("telemetry", &[]),
    ("verdict", &["engine"]),
    ("config", &["engine"]),
    ("state", &["telemetry", "config"]),
    ("audit", &["engine", "telemetry", "verdict", "config"]),
    (
        "access",
        &["engine", "telemetry", "verdict", "config", "state"],
    ),
    (
        "defence",
        &["engine", "telemetry", "verdict", "config", "audit", "state"],
    ),
    (
        "gateway",
        &[
            "engine",
            "telemetry",
            "verdict",
            "config",
            "audit",
            "access",
            "state",
            "defence",
        ],
    ),
    (
        "runtime",
        &[
            "engine",
            "telemetry",
            "verdict",
            "config",
            "audit",
            "access",
            "state",
            "defence",
            "gateway",
        ],
    ),
];

/// The longest a source file may be, not counting a trailing `#[cfg(test)] mod tests { … }`.
const MAX_LINES: usize = 820;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The lines of `file` that are code: line comments and doc comments dropped, so a doc that
/// says "no pingora here" does not count as using pingora.
fn code_lines(file: &Path) -> Vec<(usize, String)> {
    let text = std::fs::read_to_string(file).expect("source file");
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| {
            let code = match l.find("//") {
                Some(at) => &l[..at],
                None => l,
            };
            (!code.trim().is_empty()).then(|| (i + 1, code.to_string()))
        })
        .collect()
}

/// Whether `word` occurs in `line` as a whole identifier.
fn names(line: &str, word: &str) -> bool {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    line.match_indices(word).any(|(at, _)| {
        let before = line[..at].chars().next_back();
        let after = line[at + word.len()..].chars().next();
        !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
    })
}

fn is_test_file(p: &Path) -> bool {
    p.file_name().is_some_and(|n| n == "tests.rs")
        || p.components().any(|c| c.as_os_str() == "tests")
}

#[test]
fn engine_names_no_pingora_tokio_or_sockets() {
    let mut files = Vec::new();
    rust_files(&src().join("engine"), &mut files);
    assert!(files.len() > 5, "src/engine/ has too few files: {files:?}");
    let mut bad = Vec::new();
    for f in &files {
        for (n, line) in code_lines(f) {
            for word in ["pingora", "tokio", "pingora_prometheus"] {
                if names(&line, word) {
                    bad.push(format!("{}:{n}: names `{word}`", f.display()));
                }
            }
            if line.contains("std::net") {
                bad.push(format!("{}:{n}: uses std::net", f.display()));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "the engine must stay pure:\n{}",
        bad.join("\n")
    );
}

#[test]
fn folders_use_only_the_folders_below_them() {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut bad = Vec::new();
    for (folder, may) in ALLOWED {
        let mut files = Vec::new();
        rust_files(&src().join(folder), &mut files);
        assert!(!files.is_empty(), "src/{folder}/ is missing");
        for f in &files {
            for (n, line) in code_lines(f) {
                for other in allowed.keys().filter(|o| *o != folder) {
                    let path = format!("crate::{other}");
                    if names(&line, &path) && !may.contains(other) {
                        bad.push(format!("{}:{n}: {folder} uses {other}", f.display()));
                    }
                }
            }
        }
    }
    assert!(
        bad.is_empty(),
        "import across the stack:\n{}",
        bad.join("\n")
    );
}

#[test]
fn every_folder_is_in_the_stack() {
    let known: Vec<&str> = ALLOWED.iter().map(|(f, _)| *f).collect();
    for entry in std::fs::read_dir(src()).expect("src") {
        let p = entry.expect("entry").path();
        if p.is_dir() {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            assert!(
                known.contains(&name),
                "src/{name}/ is not in tests/layout.rs ALLOWED: say which folders it may use"
            );
        }
    }
}

#[test]
fn no_source_file_is_longer_than_the_limit() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut bad = Vec::new();
    for f in files.iter().filter(|f| !is_test_file(f)) {
        let text = std::fs::read_to_string(f).expect("source file");
        let lines: Vec<&str> = text.lines().collect();
        // A trailing in-file test module does not count.
        let end = lines
            .windows(2)
            .position(|w| w[0].trim() == "#[cfg(test)]" && w[1].starts_with("mod tests"))
            .unwrap_or(lines.len());
        if end > MAX_LINES {
            bad.push(format!("{}: {end} lines", f.display()));
        }
    }
    assert!(
        bad.is_empty(),
        "split these by responsibility (limit {MAX_LINES}):\n{}",
        bad.join("\n")
    );
}
