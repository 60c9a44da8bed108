//! The YAML rule model: the public vocabulary of a rule ([`Category`], [`Severity`],
//! [`RuleInfo`]) and the raw serde types a rule file deserialises into before validation.

use std::fmt;
use std::path::PathBuf;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::compiled::Boundary;
use crate::engine::source::Spanned;
use crate::engine::Mode;

/// HIPAA Safe Harbor identifier categories, 45 CFR 164.514(b)(2)(i)(A)–(R).
///
/// Rules carry the letter so audit records and reports speak the regulation's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[non_exhaustive]
pub enum Category {
    /// Names.
    A,
    /// Geographic subdivisions smaller than a state.
    B,
    /// Dates (except year) related to an individual; ages over 89.
    C,
    /// Telephone numbers.
    D,
    /// Fax numbers.
    E,
    /// E-mail addresses.
    F,
    /// Social Security numbers.
    G,
    /// Medical record numbers.
    H,
    /// Health plan beneficiary numbers.
    I,
    /// Account numbers.
    J,
    /// Certificate/license numbers.
    K,
    /// Vehicle identifiers and serial numbers.
    L,
    /// Device identifiers and serial numbers.
    M,
    /// URLs.
    N,
    /// IP addresses.
    O,
    /// Biometric identifiers.
    P,
    /// Full-face photographs and comparable images.
    Q,
    /// Any other unique identifying number, characteristic or code.
    R,
}

impl Category {
    /// The Safe Harbor letter.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::A => "A",
            Category::B => "B",
            Category::C => "C",
            Category::D => "D",
            Category::E => "E",
            Category::F => "F",
            Category::G => "G",
            Category::H => "H",
            Category::I => "I",
            Category::J => "J",
            Category::K => "K",
            Category::L => "L",
            Category::M => "M",
            Category::N => "N",
            Category::O => "O",
            Category::P => "P",
            Category::Q => "Q",
            Category::R => "R",
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How bad a finding of this rule is; drives alerting, not blocking (that is [`Mode`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Severity {
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// Critical.
    Critical,
}

impl Severity {
    /// The lowercase name used in YAML, logs and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The descriptive part of a rule, as shown in findings, listings and audit records.
#[derive(Debug, Clone)]
pub struct RuleInfo {
    /// Unique id, `^[a-z0-9][a-z0-9-]{1,63}$`.
    pub id: String,
    /// One-line description for humans.
    pub description: String,
    /// Safe Harbor category; `None` only for a response signature (`where: [response]`, the
    /// error pack), which finds system internals rather than one of the 18 identifiers.
    pub category: Option<Category>,
    /// Severity.
    pub severity: Severity,
    /// The rule's own mode; `off` rules are never evaluated.
    pub mode: Mode,
    /// The file the rule was loaded from.
    pub file: PathBuf,
    /// 1-based line of the rule in `file`.
    pub line: usize,
}

// ---------------------------------------------------------------------------------------------
// YAML model. Everything denies unknown fields: a typo must fail the load, not silently disable
// a detector.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFile {
    #[serde(default)]
    pub(crate) rules: Vec<Spanned<RawRule>>,
    /// Rule ids (from earlier rule directories) to switch off.
    #[serde(default)]
    pub(crate) disable: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRule {
    pub(crate) id: Spanned<String>,
    pub(crate) description: String,
    #[serde(default)]
    pub(crate) category: Option<Spanned<Category>>,
    pub(crate) severity: Severity,
    #[serde(default)]
    pub(crate) mode: Mode,
    #[serde(default)]
    pub(crate) keywords: Vec<Spanned<String>>,
    #[serde(default)]
    pub(crate) patterns: Option<Spanned<Vec<Spanned<RawPattern>>>>,
    #[serde(default)]
    pub(crate) validators: Vec<Spanned<String>>,
    #[serde(default)]
    pub(crate) context: Option<Spanned<RawContext>>,
    #[serde(default)]
    pub(crate) min_score: Option<Spanned<f64>>,
    #[serde(default, rename = "where")]
    pub(crate) scope: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub(crate) exceptions: Vec<Spanned<RawException>>,
    #[serde(default)]
    pub(crate) require_encrypted: Option<Spanned<RawEncryption>>,
    /// Replace the rule with the same id from an earlier rule directory.
    #[serde(default, rename = "override")]
    pub(crate) override_rule: bool,
    #[serde(default)]
    pub(crate) tests: Option<RawTests>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEncryption {
    #[serde(default)]
    pub(crate) formats: Vec<Spanned<String>>,
    #[serde(default)]
    pub(crate) enc: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawException {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) routes: Vec<String>,
    #[serde(default)]
    pub(crate) fields: Vec<Spanned<String>>,
    #[serde(default)]
    pub(crate) values: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPattern {
    #[serde(default)]
    pub(crate) name: Option<String>,
    pub(crate) regex: Spanned<String>,
    pub(crate) score: Spanned<f64>,
    #[serde(default)]
    pub(crate) boundary: Boundary,
    #[serde(default)]
    pub(crate) same_separators: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawContext {
    pub(crate) words: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    pub(crate) window_before: Option<Spanned<u64>>,
    #[serde(default)]
    pub(crate) window_after: Option<Spanned<u64>>,
    #[serde(default)]
    pub(crate) boost: Option<Spanned<f64>>,
    #[serde(default)]
    pub(crate) required: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTests {
    #[serde(default, rename = "match")]
    pub(crate) should_match: Vec<Spanned<RawTestCase>>,
    #[serde(default)]
    pub(crate) no_match: Vec<Spanned<RawTestCase>>,
}

/// A test case: a plain string (scanned as [`Part::Text`](crate::engine::Part::Text)) or an
/// object naming the part.
#[derive(Debug)]
pub(crate) enum RawTestCase {
    Text(String),
    Object(RawTestObject),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTestObject {
    #[serde(default)]
    pub(crate) text: Option<String>,
    #[serde(default)]
    pub(crate) body: Option<String>,
    /// An upstream response body (scanned as the leak guard scans it).
    #[serde(default)]
    pub(crate) response: Option<String>,
    #[serde(default)]
    pub(crate) content_type: Option<String>,
    #[serde(default)]
    pub(crate) query: Option<String>,
    /// A header line, `name: value`.
    #[serde(default)]
    pub(crate) header: Option<String>,
    /// The route the request is on (for `route:` scopes and exceptions).
    #[serde(default)]
    pub(crate) route: Option<String>,
}

impl<'de> Deserialize<'de> for RawTestCase {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CaseVisitor;
        impl<'de> Visitor<'de> for CaseVisitor {
            type Value = RawTestCase;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a string or a map with text, body or response (+ content_type), query or header",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawTestCase, E> {
                Ok(RawTestCase::Text(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<RawTestCase, E> {
                Ok(RawTestCase::Text(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawTestCase, A::Error> {
                RawTestObject::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RawTestCase::Object)
            }
        }
        deserializer.deserialize_any(CaseVisitor)
    }
}
