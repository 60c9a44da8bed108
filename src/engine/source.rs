//! YAML loading with errors that name the file, the line, the column and the field.
//!
//! Every configuration and rule file goes through [`parse`]. We use `serde-saphyr` (not the
//! deprecated `serde_yaml`) because it is maintained, never panics on malformed input, enforces
//! budgets against alias bombs, reports line and column for every error, and offers
//! [`Spanned`] so that *semantic* errors found after parsing (an unknown upstream name, a regex
//! that does not compile) can point at the exact line too. `serde_path_to_error` adds the field
//! path (`routes[1].upstream`), so a typo never produces a bare "invalid type" message.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
pub use serde_saphyr::Spanned;

/// A problem in a YAML source file, located as precisely as we can.
///
/// `line` and `column` are 1-based; 0 means "unknown" (for example an I/O error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceError {
    /// The file the problem is in.
    pub file: PathBuf,
    /// 1-based line, 0 when unknown.
    pub line: usize,
    /// 1-based column, 0 when unknown.
    pub column: usize,
    /// Dotted field path such as `routes[1].upstream`; empty for the document root.
    pub field: String,
    /// What is wrong, in words a rule author understands.
    pub message: String,
}

impl SourceError {
    /// An error at a known position.
    pub fn new(
        file: &Path,
        line: usize,
        column: usize,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            file: file.to_path_buf(),
            line,
            column,
            field: field.into(),
            message: message.into(),
        }
    }

    /// An error located at a [`Spanned`] value.
    pub fn at<T>(
        file: &Path,
        spanned: &Spanned<T>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::new(
            file,
            spanned.referenced.line() as usize,
            spanned.referenced.column() as usize,
            field,
            message,
        )
    }

    /// An error about a whole file (I/O, encoding).
    pub fn file_level(file: &Path, message: impl Into<String>) -> Self {
        Self::new(file, 0, 0, "", message)
    }
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.field.is_empty() {
            write!(f, ": field `{}`", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for SourceError {}

/// Deserializes one YAML document from `text`, reporting errors against `file`.
///
/// Unknown keys are rejected by the target types (`#[serde(deny_unknown_fields)]`); this
/// function only makes sure the rejection names the line and the field.
pub fn parse<T: DeserializeOwned>(file: &Path, text: &str) -> Result<T, SourceError> {
    let mut path = String::new();
    let result =
        serde_saphyr::with_deserializer_from_str(
            text,
            |de| match serde_path_to_error::deserialize(de) {
                Ok(value) => Ok(value),
                Err(e) => {
                    path = e.path().to_string();
                    Err(e.into_inner())
                }
            },
        );
    result.map_err(|e| {
        let (line, column) = e
            .location()
            .map(|l| (l.line() as usize, l.column() as usize))
            .unwrap_or((0, 0));
        SourceError {
            file: file.to_path_buf(),
            line,
            column,
            field: if path == "." { String::new() } else { path },
            message: first_line_without_location(&e.to_string()),
        }
    })
}

/// Reads and parses a YAML file; I/O errors become a [`SourceError`] naming the file.
pub fn load<T: DeserializeOwned>(file: &Path) -> Result<T, SourceError> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| SourceError::file_level(file, format!("cannot read file: {e}")))?;
    parse(file, &text)
}

/// serde-saphyr renders `error: line L column C: message` followed by a source snippet. We
/// carry line and column separately, so keep only the message.
fn first_line_without_location(rendered: &str) -> String {
    let first = rendered.lines().next().unwrap_or(rendered);
    let first = first.strip_prefix("error: ").unwrap_or(first);
    if let Some(rest) = first.strip_prefix("line ") {
        if let Some(idx) = rest.find(": ") {
            return rest[idx + 2..].to_string();
        }
    }
    first.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Route {
        #[allow(dead_code)]
        name: String,
        #[serde(default)]
        #[allow(dead_code)]
        max_body_bytes: Option<u64>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Doc {
        #[allow(dead_code)]
        routes: Vec<Route>,
    }

    #[test]
    fn unknown_key_names_line_and_field() {
        let text = "routes:\n  - name: a\n  - name: b\n    max_body_bytse: 3\n";
        let err = parse::<Doc>(Path::new("gw.yaml"), text).unwrap_err();
        assert_eq!(err.line, 4);
        assert!(
            err.message.contains("unknown field `max_body_bytse`"),
            "{err}"
        );
        assert!(err.to_string().starts_with("gw.yaml:4:"), "{err}");
    }

    #[test]
    fn type_error_names_the_field_path() {
        let text = "routes:\n  - name: a\n    max_body_bytes: lots\n";
        let err = parse::<Doc>(Path::new("gw.yaml"), text).unwrap_err();
        assert_eq!(err.line, 3);
        assert_eq!(err.field, "routes[0].max_body_bytes");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for text in ["", ":", "routes: [", "\u{0}", "routes: *a", "- - - ["] {
            assert!(parse::<Doc>(Path::new("x.yaml"), text).is_err(), "{text:?}");
        }
    }
}

/// Why [`read_yaml_dir`] could not read a directory of YAML files.
#[derive(Debug)]
pub enum YamlDirError {
    /// The directory (or an entry of it) could not be listed.
    Dir(std::io::Error),
    /// It holds no `*.yaml` / `*.yml` file.
    Empty,
    /// A file could not be read.
    File(SourceError),
}

/// Reads every `*.yaml` / `*.yml` file of `dir`, sorted by file name: the one way rule packs
/// and access policies are read from disk. `what` names the kind of file in errors
/// (`cannot read rule file: …`).
pub fn read_yaml_dir(dir: &Path, what: &str) -> Result<Vec<(PathBuf, String)>, YamlDirError> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(YamlDirError::Dir)? {
        let path = entry.map_err(YamlDirError::Dir)?.path();
        let is_yaml = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"));
        if is_yaml && path.is_file() {
            files.push(path);
        }
    }
    if files.is_empty() {
        return Err(YamlDirError::Empty);
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    let mut sources = Vec::with_capacity(files.len());
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|e| {
            YamlDirError::File(SourceError::file_level(
                &file,
                format!("cannot read {what} file: {e}"),
            ))
        })?;
        sources.push((file, text));
    }
    Ok(sources)
}
