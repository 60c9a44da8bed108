//! A route's `response_guard:` (issue 12 §2, the response leak guard; the check itself is
//! `gateway/leak.rs`, the hold-back it rides on `gateway/holdback.rs`): which upstream answers
//! are held and scanned, in which mode, up to which size, and what the client gets instead.
//!
//! **On by default, for error statuses, in enforce.** An EHR's error page is where stack
//! traces, SQL and the record a handler failed on end up (docs/defence.md), and a clean error
//! body is released byte for byte, so the guard costs an error response only its latency
//! (the body is held until complete) and a closed connection. 2xx bodies are the resources
//! asked for, PHI by design: they are never held, only monitored when a route asks for it
//! (`include_2xx`), and then only with the `where: [response]` signatures.

use std::path::Path;

use serde::Deserialize;

use super::validate::{bounded, Located};
use crate::engine::source::{SourceError, Spanned};
use crate::engine::Mode;

/// Default `response_guard.max_bytes`: the largest error body held and scanned. Error pages
/// are small (a Tomcat or IIS page with a full trace is 10–60 KiB); ModSecurity's recommended
/// `SecResponseBodyLimit` is 512 KiB.
pub const DEFAULT_GUARD_MAX_BYTES: u64 = 512 * 1024;
/// Bounds of `max_bytes` (1 KiB … 16 MiB, the engine's default decoded-size limit).
const GUARD_MAX_BYTES_RANGE: (u64, u64) = (1024, 16 * 1024 * 1024);
/// The statuses held by default: every error.
const DEFAULT_STATUSES: (u16, u16) = (400, 599);

/// The raw `response_guard:` of a route (or of `defaults:`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawResponseGuard {
    #[serde(default)]
    mode: Option<Spanned<Mode>>,
    #[serde(default)]
    statuses: Option<Spanned<Vec<Spanned<RawStatus>>>>,
    #[serde(default)]
    include_2xx: Option<Spanned<bool>>,
    #[serde(default)]
    max_bytes: Option<Spanned<u64>>,
    #[serde(default)]
    answer: Option<Spanned<GuardAnswer>>,
}

/// One `statuses:` entry: a code (`500`) or a string (`">=400"`, `"5xx"`, `"500-504"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum RawStatus {
    Code(u16),
    Text(String),
}

/// The body of the gateway's replacement answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GuardAnswer {
    /// FHIR `OperationOutcome` on FHIR routes (`access.policy` applies or `access.fhir_base`
    /// is set), `application/problem+json` elsewhere.
    #[default]
    Auto,
    /// Always a FHIR `OperationOutcome` (`application/fhir+json`).
    Fhir,
    /// Always RFC 9457 `application/problem+json`.
    Problem,
}

/// A route's validated leak guard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseGuard {
    /// `enforce` (hold, scan, replace), `monitor` (pass, scan a copy, record `would_block`)
    /// or `off`.
    pub mode: Mode,
    /// Inclusive status ranges held (all within 400–599).
    pub statuses: Vec<(u16, u16)>,
    /// Also scan 2xx bodies, with the response signatures only (monitor only).
    pub include_2xx: bool,
    /// Most body bytes (as received) held or copied; larger answers are cut (enforce) or
    /// passed unscanned (monitor).
    pub max_bytes: u64,
    /// The replacement answer is a FHIR `OperationOutcome` (else problem+json).
    pub fhir: bool,
}

impl ResponseGuard {
    /// Whether an answer with this status is scanned at all.
    pub fn scans(&self, status: u16) -> bool {
        self.mode != Mode::Off
            && (self.holds_error(status) || (self.include_2xx && (200..300).contains(&status)))
    }

    /// Whether `status` is one of the configured error statuses (scanned with every rule that
    /// applies to responses).
    pub fn holds_error(&self, status: u16) -> bool {
        self.statuses
            .iter()
            .any(|(lo, hi)| (*lo..=*hi).contains(&status))
    }
}

/// Validates a route's `response_guard:` (the route's own, else `defaults:`'s). `fhir_route`:
/// the route reads FHIR (its policy applies or it names `access.fhir_base`).
pub(super) fn validate_response_guard(
    file: &Path,
    field: &str,
    raw: Option<&RawResponseGuard>,
    fhir_route: bool,
) -> Result<ResponseGuard, SourceError> {
    let raw = raw.cloned().unwrap_or_default();
    let at = |f: &str| format!("{field}.{f}");
    let mode = raw.mode.as_ref().map_or(Mode::Enforce, |m| m.value);
    let statuses = match &raw.statuses {
        None => vec![DEFAULT_STATUSES],
        Some(list) if list.value.is_empty() => {
            return Err(list.error(
                file,
                &at("statuses"),
                "lists at least one status; to switch the guard off use `mode: off`".into(),
            ))
        }
        Some(list) => {
            let mut out = Vec::with_capacity(list.value.len());
            for (i, s) in list.value.iter().enumerate() {
                let range = parse_status(&s.value)
                    .map_err(|m| s.error(file, &format!("{}[{i}]", at("statuses")), m))?;
                out.push(range);
            }
            out
        }
    };
    let include_2xx = match &raw.include_2xx {
        Some(b) if b.value && mode == Mode::Enforce => {
            return Err(b.error(
                file,
                &at("include_2xx"),
                "needs `mode: monitor`: a 2xx body is the resource asked for (PHI by design), \
                 so the guard only records what the error signatures find in it"
                    .into(),
            ))
        }
        Some(b) => b.value,
        None => false,
    };
    let (min, max) = GUARD_MAX_BYTES_RANGE;
    let max_bytes = bounded(raw.max_bytes.as_ref(), DEFAULT_GUARD_MAX_BYTES, min, max)
        .map_err(|(s, m)| s.error(file, &at("max_bytes"), m))?;
    let fhir = match raw.answer.map(|a| a.value).unwrap_or_default() {
        GuardAnswer::Auto => fhir_route,
        GuardAnswer::Fhir => true,
        GuardAnswer::Problem => false,
    };
    Ok(ResponseGuard {
        mode,
        statuses,
        include_2xx,
        max_bytes,
        fhir,
    })
}

/// `500`, `"500"`, `">=400"`, `"5xx"`, `"500-504"` → an inclusive range inside 400–599.
fn parse_status(raw: &RawStatus) -> Result<(u16, u16), String> {
    let code = |s: &str| s.trim().parse::<u16>().ok();
    let range = match raw {
        RawStatus::Code(c) => Some((*c, *c)),
        RawStatus::Text(t) => {
            let t = t.trim();
            if let Some(n) = t.strip_prefix(">=") {
                code(n).map(|n| (n, 599))
            } else if let Some(class) = t.strip_suffix("xx").or_else(|| t.strip_suffix("XX")) {
                code(class)
                    .filter(|c| (1..=5).contains(c))
                    .map(|c| (c * 100, c * 100 + 99))
            } else if let Some((a, b)) = t.split_once('-') {
                code(a).zip(code(b)).filter(|(a, b)| a <= b)
            } else {
                code(t).map(|c| (c, c))
            }
        }
    };
    match range {
        Some((lo, hi)) if lo >= 400 && hi <= 599 => Ok((lo, hi)),
        Some(_) => Err(
            "statuses held are error statuses (400-599); 2xx bodies are only monitored, with \
             `include_2xx: true`"
                .into(),
        ),
        None => Err(
            "is a status (`500`), `\">=400\"`, a class (`\"5xx\"`) or a range \
                     (`\"500-504\"`)"
                .into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_entries() {
        let t = |s: &str| parse_status(&RawStatus::Text(s.into()));
        assert_eq!(t(">=400"), Ok((400, 599)));
        assert_eq!(t("5xx"), Ok((500, 599)));
        assert_eq!(t("500-504"), Ok((500, 504)));
        assert_eq!(t("404"), Ok((404, 404)));
        assert_eq!(parse_status(&RawStatus::Code(502)), Ok((502, 502)));
        assert!(t("2xx").is_err(), "2xx is never held");
        assert!(t(">=200").is_err());
        assert!(t("504-500").is_err());
        assert!(t("server errors").is_err());
    }

    #[test]
    fn scans_errors_and_optionally_2xx() {
        let g = ResponseGuard {
            mode: Mode::Monitor,
            statuses: vec![(500, 599)],
            include_2xx: true,
            max_bytes: DEFAULT_GUARD_MAX_BYTES,
            fhir: false,
        };
        assert!(g.scans(500) && g.scans(200) && !g.scans(404) && !g.scans(304));
        assert!(!ResponseGuard {
            mode: Mode::Off,
            ..g
        }
        .scans(500));
    }
}
