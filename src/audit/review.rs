//! `phi-gateway audit break-glass`: the list for the mandatory after-the-fact review of
//! break-glass access (issue 11 §4). The trail is verified first ([`super::verify::verify`]);
//! a trail that does not verify is not listed, because a reviewer must not sign off on
//! records that may have been edited.
//!
//! Each entry is one record with `access.break_glass` (`started`, `access`, `refused`), with
//! only what the record itself holds: the user id (clear only where the engine found it
//! clean), fingerprints of the patient, the justification as stored (clear only where no
//! detector fired on it, else its fingerprint). Nothing is re-derived from other fields, so
//! the listing can never show more than the trail does.

use std::path::Path;

use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::verify::{verify, Report, Window};
use super::writer::list_segments;
use super::{AuditError, AuditRecord};

/// One break-glass record.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Entry {
    /// The record's sequence number in the chain.
    pub seq: u64,
    /// When the record was built.
    pub timestamp: String,
    /// The gateway's request id.
    pub request_id: String,
    /// `started`, `access` or `refused`.
    pub event: String,
    /// `critical` on `started`.
    pub severity: Option<String>,
    /// Who (the record's `user_id`).
    pub user_id: String,
    /// `hmac-sha256:…` of the patient.
    pub patient: Option<String>,
    /// The box's end.
    pub expires_at: Option<String>,
    /// On `access`: `started` or `active`.
    pub time_box: Option<String>,
    /// The justification as stored (clear when clean, else a fingerprint).
    pub justification: Option<String>,
    /// `category` or `purpose_of_use`.
    pub trigger: Option<String>,
    /// The policy reason overridden.
    pub overridden: Option<String>,
    /// On `refused`: why.
    pub reason: Option<String>,
    /// The FHIR interaction, when one was derived.
    pub fhir_interaction: Option<String>,
    /// The status sent (0 on `started`: written before the request was forwarded).
    pub status: u16,
}

/// The verified trail and its break-glass records.
#[derive(Debug, Clone, Serialize)]
pub struct Review {
    /// The verification report (the listing is empty unless it is valid).
    pub report: Report,
    /// The break-glass records, in chain order.
    pub entries: Vec<Entry>,
}

/// Verifies the trail in `dir` and lists its break-glass records at or after `since`.
pub fn break_glass(
    dir: &Path,
    public_key: &[u8],
    since: Option<OffsetDateTime>,
) -> Result<Review, AuditError> {
    let report = verify(dir, public_key, &Window::default())?;
    let mut entries = Vec::new();
    if !report.valid {
        return Ok(Review { report, entries });
    }
    for (_, name) in list_segments(dir)? {
        let path = dir.join(&name);
        let bytes = std::fs::read(&path).map_err(|source| AuditError::Io { path, source })?;
        // Complete lines only: a torn tail is the verifier's warning, not a record.
        let end = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        for line in bytes[..end]
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
        {
            let Ok(r) = serde_json::from_slice::<AuditRecord>(line) else {
                continue;
            };
            if let Some(e) = entry(r, since) {
                entries.push(e);
            }
        }
    }
    Ok(Review { report, entries })
}

fn entry(r: AuditRecord, since: Option<OffsetDateTime>) -> Option<Entry> {
    let access = r.access?;
    let bg = access.break_glass?;
    if let Some(since) = since {
        // A record whose time cannot be read is listed: the review must not lose it.
        let at = OffsetDateTime::parse(&r.timestamp, &Rfc3339).ok();
        if at.is_some_and(|t| t < since) {
            return None;
        }
    }
    Some(Entry {
        seq: r.seq,
        timestamp: r.timestamp,
        request_id: r.request_id,
        event: bg.event,
        severity: bg.severity,
        user_id: r.user_id,
        patient: bg.patient,
        expires_at: bg.expires_at,
        time_box: bg.time_box,
        justification: bg.justification,
        trigger: bg.trigger,
        overridden: bg.overridden,
        reason: bg.reason,
        fhir_interaction: r.fhir_interaction,
        status: r.status,
    })
}

impl Review {
    /// One line per entry, for a terminal.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        for e in &self.entries {
            let _ = writeln!(
                out,
                "{} seq={} {}{} user={} patient={} expires={} trigger={} overridden={} {}{}",
                e.timestamp,
                e.seq,
                e.event,
                e.severity
                    .as_deref()
                    .map(|s| format!(" [{}]", s.to_uppercase()))
                    .unwrap_or_default(),
                e.user_id,
                dash(&e.patient),
                dash(&e.expires_at),
                dash(&e.trigger),
                dash(&e.overridden),
                match (&e.justification, &e.reason, &e.time_box) {
                    (Some(j), _, _) => format!("justification={j:?}"),
                    (_, Some(r), _) => format!("reason={r}"),
                    (_, _, Some(b)) => format!("box={b}"),
                    _ => String::new(),
                },
                format_args!(" request={}", e.request_id),
            );
        }
        let _ = writeln!(
            out,
            "{} break-glass record(s); trail verified ({} records, key {})",
            self.entries.len(),
            self.report.records,
            self.report.key_id
        );
        out
    }
}
