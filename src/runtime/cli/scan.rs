//! `phi-gateway scan FILE`: one body or raw HTTP request, scanned as the gateway would, one
//! line (or JSON object) per finding. Values never appear: only their shape, and with
//! `--explain --fingerprint-key` their keyed fingerprint.

use std::io::Read as _;
use std::path::Path;

use super::CliError;
use crate::engine::{http, Engine, Explanation, Finding, Limits, Message, Part, Scan, ScanOptions};

/// Options of `scan` besides the rules and the input.
#[derive(Debug, Default, Clone)]
pub struct ScanArgs {
    /// Content-Type of the body.
    pub content_type: Option<String>,
    /// Content-Encoding of the body.
    pub content_encoding: Option<String>,
    /// Route name, for route-scoped rules and exceptions.
    pub route: Option<String>,
    /// One JSON object per line.
    pub json: bool,
    /// Explanations and near misses.
    pub explain: bool,
    /// The input is a raw HTTP/1.1 request.
    pub http: bool,
    /// The input is an upstream response body (`where: response` rules apply).
    pub response: bool,
}

/// Reads `file` (`-` for standard input) whole.
pub fn read_input(file: &Path) -> Result<Vec<u8>, CliError> {
    let mut input = Vec::new();
    if file == Path::new("-") {
        std::io::stdin()
            .read_to_end(&mut input)
            .map_err(|source| CliError::Read {
                what: "standard input".into(),
                source,
            })?;
    } else {
        input = std::fs::read(file).map_err(|source| CliError::Read {
            what: file.display().to_string(),
            source,
        })?;
    }
    Ok(input)
}

/// Scans `input` and renders the report; `.1` is whether there were findings.
pub fn scan(
    engine: &Engine,
    input: &[u8],
    name: &Path,
    o: &ScanArgs,
) -> Result<(String, bool), CliError> {
    let limits = Limits::default();
    let message = if o.response {
        Message::Response
    } else {
        Message::Request
    };
    let options = ScanOptions::route(o.route.as_deref())
        .explained(o.explain)
        .message(message);
    let scan = if o.http {
        let req = http::parse_request(input).map_err(|source| CliError::NotHttp {
            file: name.display().to_string(),
            source,
        })?;
        engine.scan_request(&req, &limits, &options)?
    } else {
        let part = Part::Body {
            content_type: o.content_type.as_deref(),
            content_encoding: o.content_encoding.as_deref(),
            bytes: input,
        };
        engine.scan_with(&part, &limits, &options)?
    };
    Ok((render(&scan, o), !scan.findings.is_empty()))
}

/// The JSON object of one finding (with its explanation, when there is one).
pub fn finding_json(f: &Finding) -> serde_json::Value {
    let mut obj = serde_json::json!({
        "rule": f.rule_id,
        "category": f.category.map(|c| c.as_str()),
        "severity": f.severity.as_str(),
        "mode": f.mode.to_string(),
        "location": f.location,
        "decode_chain": f.decode_chain,
        "score": (f64::from(f.score) * 100.0).round() / 100.0,
    });
    if let (Some(x), Some(map)) = (&f.explain, obj.as_object_mut()) {
        map.insert("value".into(), x.masked.clone().into());
        map.insert("pattern".into(), x.pattern.clone().into());
        map.insert(
            "base_score".into(),
            ((f64::from(x.base_score) * 100.0).round() / 100.0).into(),
        );
        map.insert(
            "validators".into(),
            serde_json::Value::Object(
                x.validators
                    .iter()
                    .map(|(n, ok)| (n.to_string(), (*ok).into()))
                    .collect(),
            ),
        );
        map.insert(
            "context".into(),
            match &x.context {
                Some((w, place)) => serde_json::json!({"word": w, "found_in": place}),
                None => serde_json::Value::Null,
            },
        );
        // No key, no fingerprint: the field is left out rather than null, so nothing that
        // looks like one is ever printed.
        if let Some(fp) = &x.fingerprint {
            map.insert("fingerprint".into(), fp.clone().into());
        }
    }
    obj
}

/// The indented explanation line of the text report.
fn explanation_line(x: &Explanation) -> String {
    let validators: Vec<String> = x
        .validators
        .iter()
        .map(|(n, ok)| format!("{n} {}", if *ok { "passed" } else { "failed" }))
        .collect();
    format!(
        "    value {}  pattern {} (base {:.2})  validators: {}  context: {}{}\n",
        x.masked,
        x.pattern,
        x.base_score,
        if validators.is_empty() {
            "none".to_string()
        } else {
            validators.join(", ")
        },
        match &x.context {
            Some((w, place)) => format!("`{w}` in {place}"),
            None => "none".to_string(),
        },
        match &x.fingerprint {
            Some(fp) => format!("  fingerprint {fp}"),
            None => String::new(),
        }
    )
}

fn render(scan: &Scan, o: &ScanArgs) -> String {
    let mut out = String::new();
    for f in &scan.findings {
        if o.json {
            out.push_str(&finding_json(f).to_string());
            out.push('\n');
        } else {
            out.push_str(&format!(
                "{}\t{}\t{} ({})\tscore {:.2}\tchain {}\n",
                f.location,
                f.rule_id,
                f.category.map_or("-", |c| c.as_str()),
                f.severity,
                f.score,
                if f.decode_chain.is_empty() {
                    "-".to_string()
                } else {
                    f.decode_chain.join(">")
                }
            ));
            if let Some(x) = &f.explain {
                out.push_str(&explanation_line(x));
            }
        }
    }
    for n in &scan.near_misses {
        if o.json {
            let obj = serde_json::json!({
                "near_miss": true,
                "rule": n.rule_id,
                "location": n.location,
                "decode_chain": n.decode_chain,
                "value": n.masked,
                "reason": n.reason,
            });
            out.push_str(&obj.to_string());
            out.push('\n');
        } else {
            out.push_str(&format!(
                "near miss\t{}\t{}\t{}: {}\n",
                n.location, n.rule_id, n.masked, n.reason
            ));
        }
    }
    if !o.json {
        for loc in &scan.encrypted {
            out.push_str(&format!("encrypted\t{loc}\n"));
        }
        out.push_str(&format!(
            "{} finding(s){}\n",
            scan.findings.len(),
            if o.explain {
                format!(", {} near miss(es)", scan.near_misses.len())
            } else {
                String::new()
            }
        ));
    }
    out
}
