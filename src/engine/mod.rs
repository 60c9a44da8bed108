//! TEMPORARY STUB — replaced by the real engine (helper). Same public API.
use crate::rules::{Category, Mode, RuleSet, Severity};
use std::sync::Arc;
pub struct Engine {
    rules: Arc<RuleSet>,
}
pub enum Part<'a> {
    Query(&'a str),
    Header {
        name: &'a str,
        value: &'a [u8],
    },
    Body {
        content_type: Option<&'a str>,
        content_encoding: Option<&'a str>,
        bytes: &'a [u8],
    },
    Text(&'a str),
}
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_decoded_bytes: usize,
    pub max_expansion_ratio: u64,
    pub max_json_depth: usize,
    pub max_decode_layers: usize,
}
impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_decoded_bytes: 16 << 20,
            max_expansion_ratio: 100,
            max_json_depth: 64,
            max_decode_layers: 4,
        }
    }
}
#[derive(Debug, Default)]
pub struct Scan {
    pub findings: Vec<Finding>,
    pub encrypted: Vec<String>,
}
#[derive(Debug, Clone)]
pub struct Finding {
    pub rule_id: String,
    pub category: Category,
    pub severity: Severity,
    pub mode: Mode,
    pub location: String,
    pub decode_chain: Vec<&'static str>,
    pub score: f32,
}
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InspectError {
    #[error("unsupported content-encoding")]
    UnsupportedEncoding { encoding: String },
    #[error("decoded body exceeds {limit} bytes")]
    DecodedTooLarge { limit: usize },
    #[error("compression ratio exceeds {limit}:1")]
    ExpansionRatio { limit: u64 },
    #[error("corrupt {encoding} data")]
    Corrupt { encoding: &'static str },
    #[error("too many stacked content-encodings")]
    TooManyLayers,
}
impl Engine {
    pub fn new(rules: Arc<RuleSet>) -> Engine {
        Engine { rules }
    }
    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }
    pub fn scan(&self, part: &Part<'_>, _limits: &Limits) -> Result<Scan, InspectError> {
        let text = match part {
            Part::Query(q) => q.as_bytes(),
            Part::Header { value, .. } => value,
            Part::Body {
                bytes,
                content_encoding,
                ..
            } => {
                if let Some(e) = content_encoding {
                    if !e.is_empty() && *e != "identity" {
                        return Err(InspectError::UnsupportedEncoding {
                            encoding: "x".into(),
                        });
                    }
                }
                bytes
            }
            Part::Text(t) => t.as_bytes(),
        };
        let re = regex::bytes::Regex::new(r"[0-9]{3}-[0-9]{2}-[0-9]{4}").expect("stub");
        let mut s = Scan::default();
        if re.is_match(text) {
            s.findings.push(Finding {
                rule_id: "us-ssn".into(),
                category: Category::G,
                severity: Severity::High,
                mode: Mode::Enforce,
                location: "body".into(),
                decode_chain: vec![],
                score: 1.0,
            });
        }
        Ok(s)
    }
}
