//! `phi-gateway audit verify`: walks the checkpoint chain and the record chain like
//! CloudTrail's `validate-logs`, and reports each class of problem separately.
//!
//! Errors (any makes the trail invalid): `invalid_signature`, `checkpoint_chain` (a
//! checkpoint missing, reordered or malformed), `hash_mismatch` (at seq N), `missing_segment`,
//! `truncated_tail` (a segment holds fewer records than a checkpoint vouches for).
//! Warnings (reported, not invalid): `gap` (no checkpoint for longer than the heartbeat
//! interval: the gateway was not running), `unsigned_tail` (records after the last checkpoint,
//! e.g. after a crash) and `torn_tail` (a partial last line left by a crash).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::chain::{line_hash, signed_message, CheckpointBody, CheckpointReason, GENESIS};
use super::writer::{list_checkpoints, list_segments, read_checkpoint};
use super::AuditError;

/// How serious an issue is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Severity {
    /// The trail is not intact.
    Error,
    /// Worth an auditor's attention; not proof of tampering.
    Warning,
}

/// One finding of the verifier.
#[derive(Debug, Clone, Serialize)]
pub struct Issue {
    /// `invalid_signature`, `checkpoint_chain`, `hash_mismatch`, `missing_segment`,
    /// `truncated_tail`, `gap`, `unsigned_tail`, `torn_tail`.
    pub class: &'static str,
    /// Error or warning.
    pub severity: Severity,
    /// Human-readable explanation.
    pub message: String,
    /// The record concerned, when there is one.
    pub seq: Option<u64>,
    /// The file concerned, when there is one.
    pub file: Option<String>,
    /// Start of the time range concerned.
    pub from: Option<String>,
    /// End of the time range concerned.
    pub to: Option<String>,
}

/// The verifier's result.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// No error-severity issue.
    pub valid: bool,
    /// Segments read.
    pub segments: usize,
    /// Complete records read.
    pub records: u64,
    /// Checkpoints read.
    pub checkpoints: usize,
    /// Checkpoints whose signature verified.
    pub checkpoints_valid: usize,
    /// First and last seq seen.
    pub seq_range: Option<(u64, u64)>,
    /// Time range of the checkpoints.
    pub time_range: Option<(String, String)>,
    /// Key id of the public key used.
    pub key_id: String,
    /// Everything found, in walk order.
    pub issues: Vec<Issue>,
}

/// Optional time window: issues dated outside it are not reported.
#[derive(Debug, Clone, Default)]
pub struct Window {
    /// Inclusive start.
    pub from: Option<OffsetDateTime>,
    /// Inclusive end.
    pub to: Option<OffsetDateTime>,
}

impl Window {
    fn contains(&self, from: Option<&str>, to: Option<&str>) -> bool {
        let parse = |s: Option<&str>| s.and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok());
        let (a, b) = (parse(from), parse(to.or(from)));
        let after_start = match (self.from, b.or(a)) {
            (Some(f), Some(t)) => t >= f,
            _ => true,
        };
        let before_end = match (self.to, a.or(b)) {
            (Some(e), Some(t)) => t <= e,
            _ => true,
        };
        after_start && before_end
    }
}

/// Parses an RFC 3339 time for `--from` / `--to`.
pub fn parse_time(s: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(s, &Rfc3339)
        .map_err(|e| format!("`{s}` is not an RFC 3339 time such as 2026-01-31T00:00:00Z: {e}"))
}

struct Line {
    seq: Option<u64>,
    prev_hash: Option<String>,
    timestamp: Option<String>,
    hash: String,
}

struct Segment {
    first: u64,
    lines: Vec<Line>,
    torn_bytes: u64,
}

fn read_segment(dir: &Path, first: u64, name: &str) -> Result<Segment, AuditError> {
    let path = dir.join(name);
    let bytes = std::fs::read(&path).map_err(|source| AuditError::Io { path, source })?;
    let complete_end = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let mut lines = Vec::new();
    if complete_end > 0 {
        for raw in bytes[..complete_end - 1].split(|&b| b == b'\n') {
            let v: Option<serde_json::Value> = serde_json::from_slice(raw).ok();
            let field = |k: &str| v.as_ref().and_then(|v| v.get(k));
            lines.push(Line {
                seq: field("seq").and_then(|s| s.as_u64()),
                prev_hash: field("prev_hash")
                    .and_then(|s| s.as_str())
                    .map(String::from),
                timestamp: field("timestamp")
                    .and_then(|s| s.as_str())
                    .map(String::from),
                hash: line_hash(raw),
            });
        }
    }
    Ok(Segment {
        first,
        lines,
        torn_bytes: (bytes.len() - complete_end) as u64,
    })
}

/// What step 3 needs of a segment once its lines were walked: memory stays bounded by one
/// segment, not by the whole trail.
struct Summary {
    first: u64,
    count: u64,
    /// Line hashes at the indices checkpoints vouch for.
    hashes: std::collections::HashMap<u64, String>,
}

struct Checkpoint {
    name: String,
    body: CheckpointBody,
}

/// Verifies the audit directory against a public key (32 raw Ed25519 bytes).
pub fn verify(dir: &Path, public_key: &[u8], window: &Window) -> Result<Report, AuditError> {
    if !dir.is_dir() {
        return Err(AuditError::Io {
            path: dir.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"),
        });
    }
    let key_id = super::keys::key_id(public_key);
    let key = ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public_key);
    let mut issues = Vec::new();
    let mut issue = |class,
                     severity,
                     message: String,
                     seq,
                     file: Option<&str>,
                     from: Option<&str>,
                     to: Option<&str>| {
        issues.push(Issue {
            class,
            severity,
            message,
            seq,
            file: file.map(String::from),
            from: from.map(String::from),
            to: to.map(String::from),
        })
    };

    // 1. Checkpoints: signatures and the signature chain.
    let mut checkpoints: Vec<Checkpoint> = Vec::new();
    let mut checkpoints_valid = 0;
    let mut prev: Option<(u64, String, String)> = None; // (n, signature, end_time)
    let listed = list_checkpoints(dir)?;
    for (n, name) in &listed {
        let (body, body_line, sig) = match read_checkpoint(&dir.join(name)) {
            Ok(x) => x,
            Err(m) => {
                issue(
                    "checkpoint_chain",
                    Severity::Error,
                    format!("checkpoint {name} is malformed: {m}"),
                    None,
                    Some(name),
                    None,
                    None,
                );
                prev = None;
                continue;
            }
        };
        let t = Some(body.end_time.as_str());
        let sig_ok = hex_decode(&sig.signature)
            .is_some_and(|s| key.verify(&signed_message(&body, &body_line), &s).is_ok());
        if sig_ok {
            checkpoints_valid += 1;
        } else {
            let why = if sig.key_id != key_id || body.key_id != key_id {
                format!(
                    " (signed by key {}, verifying with key {key_id})",
                    body.key_id
                )
            } else {
                String::new()
            };
            issue("invalid_signature", Severity::Error, format!("checkpoint {name}: signature does not verify{why}; the checkpoint was forged or altered"), body.last_seq, Some(name), t, t);
        }
        if body.checkpoint_seq != *n {
            issue(
                "checkpoint_chain",
                Severity::Error,
                format!(
                    "checkpoint {name} says it is number {} (renamed?)",
                    body.checkpoint_seq
                ),
                None,
                Some(name),
                t,
                t,
            );
        }
        match &prev {
            None if *n > 1
                && body.prev_checkpoint_signature.is_some()
                && checkpoints.is_empty()
                && window.from.is_none() =>
            {
                issue("checkpoint_chain", Severity::Error, format!("checkpoints before {name} are missing (it links to an earlier checkpoint that is not here)"), None, Some(name), None, t);
            }
            Some((pn, psig, pend)) => {
                if *pn + 1 != *n {
                    issue(
                        "checkpoint_chain",
                        Severity::Error,
                        format!("checkpoints {}..{} are missing", pn + 1, n - 1),
                        None,
                        Some(name),
                        Some(pend),
                        t,
                    );
                } else if body.prev_checkpoint_signature.as_deref() != Some(psig.as_str()) {
                    issue(
                        "checkpoint_chain",
                        Severity::Error,
                        format!(
                            "checkpoint {name} does not link to the signature of its predecessor"
                        ),
                        None,
                        Some(name),
                        Some(pend),
                        t,
                    );
                }
                if let (Ok(a), Ok(b)) = (
                    OffsetDateTime::parse(pend, &Rfc3339),
                    OffsetDateTime::parse(&body.end_time, &Rfc3339),
                ) {
                    let allowed = time::Duration::seconds((body.interval_seconds * 2 + 5) as i64);
                    if b - a > allowed {
                        let was_stopped = checkpoints
                            .last()
                            .is_some_and(|c| c.body.reason == CheckpointReason::Shutdown);
                        let note = if was_stopped {
                            "the gateway was stopped (orderly shutdown, then a restart)"
                        } else {
                            "no checkpoint was written: the gateway was down or hung"
                        };
                        issue(
                            "gap",
                            Severity::Warning,
                            format!(
                                "no audit checkpoints between {pend} and {}: {note}",
                                body.start_time
                            ),
                            None,
                            Some(name),
                            Some(pend),
                            Some(&body.start_time),
                        );
                    }
                }
            }
            None => {}
        }
        prev = Some((*n, sig.signature.clone(), body.end_time.clone()));
        checkpoints.push(Checkpoint {
            name: name.clone(),
            body,
        });
    }

    // 2. Segments: the record chain.
    let listed = list_segments(dir)?;
    let mut segments: BTreeMap<String, Summary> = BTreeMap::new();
    let mut wanted: std::collections::HashMap<&str, Vec<u64>> = std::collections::HashMap::new();
    for c in &checkpoints {
        if let (Some(seg), Some(last)) = (c.body.segment.as_deref(), c.body.last_seq) {
            wanted.entry(seg).or_default().push(last);
        }
    }
    let mut expected_seq: Option<u64> = None;
    let mut prev_hash: Option<String> = None;
    let mut records = 0u64;
    let mut seq_range: Option<(u64, u64)> = None;
    let acknowledged_torn: Vec<(String, u64)> = checkpoints
        .iter()
        .filter_map(|c| {
            c.body
                .torn_tail
                .as_ref()
                .map(|t| (t.segment.clone(), t.bytes))
        })
        .collect();
    let referenced: std::collections::HashSet<&str> = checkpoints
        .iter()
        .filter_map(|c| c.body.segment.as_deref())
        .collect();
    for (first, name) in &listed {
        let seg = read_segment(dir, *first, name)?;
        match expected_seq {
            None if *first != 1 && window.from.is_none() => {
                let to = seg.lines.first().and_then(|l| l.timestamp.clone());
                issue(
                    "missing_segment",
                    Severity::Error,
                    format!(
                        "records 1..{} are missing: the segment(s) before {name} were removed",
                        first - 1
                    ),
                    Some(1),
                    Some(name),
                    None,
                    to.as_deref(),
                );
            }
            Some(e) if *first > e => {
                let to = seg.lines.first().and_then(|l| l.timestamp.clone());
                let was_segment = checkpoints
                    .iter()
                    .any(|c| c.body.segment_first_seq == Some(e));
                if was_segment {
                    issue(
                        "missing_segment",
                        Severity::Error,
                        format!(
                            "records {e}..{} are missing: segment {} was removed",
                            first - 1,
                            super::chain::segment_name(e)
                        ),
                        Some(e),
                        Some(name),
                        None,
                        to.as_deref(),
                    );
                } else {
                    issue("hash_mismatch", Severity::Error, format!("hash mismatch at seq {e}: records {e}..{} were removed from the end of the previous segment", first - 1), Some(e), Some(name), None, to.as_deref());
                }
                prev_hash = None; // the link cannot be checked across the hole
            }
            _ => {}
        }
        let mut pos_seq = *first;
        for (i, l) in seg.lines.iter().enumerate() {
            records += 1;
            let ts = l.timestamp.as_deref();
            match l.seq {
                None => {
                    issue("hash_mismatch", Severity::Error, format!("hash mismatch at seq {pos_seq}: line {} of {name} is not a valid record (edited?)", i + 1), Some(pos_seq), Some(name), ts, ts);
                }
                Some(s) => {
                    if s != pos_seq {
                        issue("hash_mismatch", Severity::Error, format!("hash mismatch at seq {pos_seq}: line {} of {name} holds seq {s} (records deleted, inserted or reordered)", i + 1), Some(pos_seq), Some(name), ts, ts);
                    } else if let (Some(p), Some(h)) = (&prev_hash, &l.prev_hash) {
                        if p != h {
                            let edited = s.saturating_sub(1);
                            issue("hash_mismatch", Severity::Error, format!("hash mismatch at seq {edited}: record {edited} no longer hashes to the prev_hash stored in record {s} (it was edited, or the records around it were rewritten)"), Some(edited), Some(name), ts, ts);
                        }
                    } else if expected_seq.is_none()
                        && *first == 1
                        && i == 0
                        && l.prev_hash.as_deref() != Some(GENESIS)
                    {
                        issue("hash_mismatch", Severity::Error, format!("hash mismatch at seq {s}: the first record does not start the chain"), Some(s), Some(name), ts, ts);
                    }
                    seq_range = Some(match seq_range {
                        None => (s, s),
                        Some((a, b)) => (a.min(s), b.max(s)),
                    });
                }
            }
            prev_hash = Some(l.hash.clone());
            pos_seq = l.seq.unwrap_or(pos_seq).max(pos_seq) + 1;
        }
        if seg.torn_bytes > 0 {
            let acknowledged = acknowledged_torn
                .iter()
                .any(|(s, b)| s == name && *b == seg.torn_bytes);
            let newest = listed.last().map(|l| &l.1) == Some(name);
            if acknowledged || newest {
                issue("torn_tail", Severity::Warning, format!("{name} ends with a partial record of {} bytes: the gateway was killed while writing it (a crash, not an edit){}", seg.torn_bytes, if acknowledged { "; acknowledged by a signed checkpoint at restart" } else { "" }), None, Some(name), None, None);
            } else {
                issue("truncated_tail", Severity::Error, format!("{name} ends with a partial record of {} bytes that no checkpoint acknowledges", seg.torn_bytes), None, Some(name), None, None);
            }
        }
        if !referenced.contains(name.as_str())
            && !seg.lines.is_empty()
            && listed.last().map(|l| &l.1) != Some(name)
        {
            issue(
                "unsigned_tail",
                Severity::Warning,
                format!("{name} is not covered by any checkpoint"),
                None,
                Some(name),
                None,
                None,
            );
        }
        expected_seq = Some(pos_seq);
        let hashes = wanted
            .get(name.as_str())
            .map(|seqs| {
                seqs.iter()
                    .filter_map(|&q| {
                        let i = q.checked_sub(seg.first)?;
                        let line = seg.lines.get(usize::try_from(i).ok()?)?;
                        Some((i, line.hash.clone()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        segments.insert(
            name.clone(),
            Summary {
                first: seg.first,
                count: seg.lines.len() as u64,
                hashes,
            },
        );
    }

    // 3. Each checkpoint against the records it vouches for.
    for c in &checkpoints {
        let (Some(seg_name), Some(last)) = (&c.body.segment, c.body.last_seq) else {
            continue;
        };
        let t = Some(c.body.end_time.as_str());
        let Some(seg) = segments.get(seg_name) else {
            issue("missing_segment", Severity::Error, format!("{seg_name} is missing: checkpoint {} vouches for records up to seq {last} in it", c.name), Some(last), Some(seg_name), t, t);
            continue;
        };
        let idx = last.checked_sub(seg.first);
        match idx.and_then(|i| seg.hashes.get(&i)) {
            None => {
                let have = seg.first + seg.count;
                issue("truncated_tail", Severity::Error, format!("{seg_name} was truncated: checkpoint {} vouches for records up to seq {last}, the segment ends at seq {}", c.name, have.saturating_sub(1)), Some(last), Some(seg_name), t, t);
            }
            Some(hash) => {
                if c.body.last_record_hash.as_deref() != Some(hash.as_str()) {
                    issue("hash_mismatch", Severity::Error, format!("hash mismatch at seq {last}: the record differs from what checkpoint {} signed", c.name), Some(last), Some(seg_name), t, t);
                }
                if c.body.segment_closed && seg.count > last - seg.first + 1 {
                    issue("hash_mismatch", Severity::Error, format!("hash mismatch at seq {}: records were appended to {seg_name} after checkpoint {} closed it", last + 1, c.name), Some(last + 1), Some(seg_name), t, t);
                }
            }
        }
    }
    // 4. Records no checkpoint covers yet (normal after a crash; suspicious otherwise).
    let signed_up_to = checkpoints.iter().filter_map(|c| c.body.last_seq).max();
    if let (Some((_, last)), Some(signed)) = (seq_range, signed_up_to) {
        if last > signed {
            issue("unsigned_tail", Severity::Warning, format!("records {}..{last} come after the last checkpoint and are not covered by a signature (the gateway stopped without a final checkpoint, e.g. SIGKILL); their chain was checked", signed + 1), Some(signed + 1), None, None, None);
        }
    } else if seq_range.is_some() && signed_up_to.is_none() {
        issue(
            "unsigned_tail",
            Severity::Warning,
            "no checkpoint covers any record".into(),
            None,
            None,
            None,
            None,
        );
    }
    if checkpoints.is_empty() && segments.is_empty() {
        issue(
            "missing_segment",
            Severity::Error,
            "no segments and no checkpoints: this is not an audit directory".into(),
            None,
            None,
            None,
            None,
        );
    }

    let issues: Vec<Issue> = issues
        .into_iter()
        .filter(|i| window.contains(i.from.as_deref(), i.to.as_deref()))
        .collect();
    let time_range = match (checkpoints.first(), checkpoints.last()) {
        (Some(a), Some(b)) => Some((a.body.start_time.clone(), b.body.end_time.clone())),
        _ => None,
    };
    Ok(Report {
        valid: !issues.iter().any(|i| i.severity == Severity::Error),
        segments: segments.len(),
        records,
        checkpoints: checkpoints.len(),
        checkpoints_valid,
        seq_range,
        time_range,
        key_id,
        issues,
    })
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

impl Report {
    /// The human-readable report.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for i in &self.issues {
            let tag = match i.severity {
                Severity::Error => "INVALID",
                Severity::Warning => "WARNING",
            };
            out.push_str(&format!("{tag} [{}] {}\n", i.class, i.message));
        }
        let range = self
            .seq_range
            .map(|(a, b)| format!("seq {a}..{b}"))
            .unwrap_or_else(|| "no records".into());
        let time = self
            .time_range
            .as_ref()
            .map(|(a, b)| format!(" from {a} to {b}"))
            .unwrap_or_default();
        let errors = self
            .issues
            .iter()
            .filter(|i| i.severity == Severity::Error)
            .count();
        out.push_str(&format!(
            "{}/{} checkpoints valid (key {}), {} records ({range}) in {} segment(s){time}\n",
            self.checkpoints_valid, self.checkpoints, self.key_id, self.records, self.segments
        ));
        out.push_str(if self.valid {
            "RESULT: VALID\n"
        } else {
            "RESULT: INVALID\n"
        });
        if errors > 0 {
            out.push_str(&format!("{errors} error(s)\n"));
        }
        out
    }
}
