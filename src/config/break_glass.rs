//! The validated `access.break_glass:` section (issue 11 §4; the check itself is
//! `gateway/break_glass.rs`): which header carries the justification, how long it must be,
//! and how long one time box lasts. Kept apart from `access.rs`, which holds identity and
//! the policy's per-route settings.

use std::path::Path;
use std::time::Duration;

use super::access::RESERVED_HEADERS;
use super::raw::RawBreakGlass;
use super::validate::{bounded, check_header_name, Located};
use crate::engine::source::SourceError;

/// Default `break_glass.header`: where the client puts the break-glass justification.
pub const DEFAULT_BREAK_GLASS_HEADER: &str = "x-break-glass-justification";
/// Default `break_glass.min_justification_chars`: long enough that "emergency" alone is not a
/// justification a reviewer can judge.
pub const DEFAULT_BREAK_GLASS_MIN_CHARS: u64 = 20;
/// Most characters of a justification (it is stored in the audit record).
pub const BREAK_GLASS_MAX_CHARS: u64 = 256;
/// Default `break_glass.duration_minutes`: one time box per principal and patient.
pub const DEFAULT_BREAK_GLASS_MINUTES: u64 = 60;
/// Longest time box (`duration_minutes` 1 … 1440, `duration_seconds` 1 … 86 400).
const BREAK_GLASS_MAX_SECONDS: u64 = 86_400;

/// The validated `access.break_glass:` section. Absent, break-glass is off: a request asking
/// for it is decided by the policy alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakGlassSettings {
    /// Whether an eligible subject may override a policy denial.
    pub enabled: bool,
    /// The justification header (lowercase).
    pub header: String,
    /// Shortest justification accepted, in characters.
    pub min_justification_chars: usize,
    /// How long one time box (per principal and patient) lasts.
    pub duration: Duration,
}

impl Default for BreakGlassSettings {
    fn default() -> Self {
        BreakGlassSettings {
            enabled: false,
            header: DEFAULT_BREAK_GLASS_HEADER.to_string(),
            min_justification_chars: DEFAULT_BREAK_GLASS_MIN_CHARS as usize,
            duration: Duration::from_secs(DEFAULT_BREAK_GLASS_MINUTES * 60),
        }
    }
}

/// Validates `access.break_glass:`. `duration_seconds` replaces `duration_minutes` (for
/// short boxes, and for tests that must see a box expire); setting both is an error.
pub(super) fn validate_break_glass(
    file: &Path,
    raw: Option<&RawBreakGlass>,
) -> Result<BreakGlassSettings, SourceError> {
    let Some(raw) = raw else {
        return Ok(BreakGlassSettings::default());
    };
    let at = |f: &str| format!("access.break_glass.{f}");
    let header = match &raw.header {
        Some(h) => {
            check_header_name(&h.value).map_err(|m| h.error(file, &at("header"), m))?;
            let lower = h.value.to_ascii_lowercase();
            if RESERVED_HEADERS.contains(&lower.as_str()) {
                return Err(h.error(
                    file,
                    &at("header"),
                    format!("`{lower}` is a header the gateway or HTTP framing owns"),
                ));
            }
            lower
        }
        None => DEFAULT_BREAK_GLASS_HEADER.to_string(),
    };
    let min = bounded(
        raw.min_justification_chars.as_ref(),
        DEFAULT_BREAK_GLASS_MIN_CHARS,
        1,
        BREAK_GLASS_MAX_CHARS,
    )
    .map_err(|(s, m)| s.error(file, &at("min_justification_chars"), m))?;
    let seconds = match (&raw.duration_minutes, &raw.duration_seconds) {
        (Some(_), Some(s)) => {
            return Err(s.error(
                file,
                &at("duration_seconds"),
                "set either `duration_minutes` or `duration_seconds`, not both".into(),
            ))
        }
        (_, Some(_)) => bounded(raw.duration_seconds.as_ref(), 0, 1, BREAK_GLASS_MAX_SECONDS)
            .map_err(|(s, m)| s.error(file, &at("duration_seconds"), m))?,
        _ => {
            bounded(
                raw.duration_minutes.as_ref(),
                DEFAULT_BREAK_GLASS_MINUTES,
                1,
                BREAK_GLASS_MAX_SECONDS / 60,
            )
            .map_err(|(s, m)| s.error(file, &at("duration_minutes"), m))?
                * 60
        }
    };
    Ok(BreakGlassSettings {
        enabled: raw.enabled.as_ref().is_none_or(|e| e.value),
        header,
        min_justification_chars: min as usize,
        duration: Duration::from_secs(seconds),
    })
}
