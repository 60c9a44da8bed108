//! On-disk format shared by the writer and `audit verify`.
//!
//! ```text
//! DIR/segment-000000000001.jsonl     records, one JSON object per line, mode 0600
//! DIR/segment-000000004711.jsonl     the number is the segment's first seq
//! DIR/checkpoint-000000000001.json   line 1: checkpoint body (signed bytes), line 2: signature
//! ```
//!
//! Every record carries `prev_hash = hex(SHA-256(previous line bytes))` (without the newline);
//! the first record of a segment chains to the last record of the previous segment, and the
//! very first record to [`GENESIS`]. A checkpoint is modelled on CloudTrail's digest files: it
//! names the segment, the seq range and the hash of the last record, the time range, and the
//! previous checkpoint's signature. The Ed25519 signature covers
//! `end_time "\n" segment "\n" hex(sha256(body line)) "\n" (previous signature | "null")`.

use serde::{Deserialize, Serialize};

use super::record::sha256_hex;

/// `prev_hash` of the very first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Format tag in every checkpoint.
pub const CHECKPOINT_FORMAT: &str = "phi-gateway-audit-checkpoint/1";

/// File name of the segment starting at `first_seq`.
pub fn segment_name(first_seq: u64) -> String {
    format!("segment-{first_seq:012}.jsonl")
}

/// File name of checkpoint number `n`.
pub fn checkpoint_name(n: u64) -> String {
    format!("checkpoint-{n:012}.json")
}

/// Parses `segment-N.jsonl` → N.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    name.strip_prefix("segment-")?
        .strip_suffix(".jsonl")?
        .parse()
        .ok()
}

/// Parses `checkpoint-N.json` → N.
pub fn parse_checkpoint_name(name: &str) -> Option<u64> {
    name.strip_prefix("checkpoint-")?
        .strip_suffix(".json")?
        .parse()
        .ok()
}

/// Hash of one record line (bytes without the trailing newline).
pub fn line_hash(line: &[u8]) -> String {
    sha256_hex(line)
}

/// Why a checkpoint was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CheckpointReason {
    /// The gateway started (closes whatever an earlier run left open).
    Startup,
    /// `checkpoint_every_records` records since the last checkpoint.
    Records,
    /// `checkpoint_interval_seconds` elapsed and records were written.
    Interval,
    /// `checkpoint_interval_seconds` elapsed with no records: proves "no traffic".
    Heartbeat,
    /// The segment was rotated (by size or age); this closes it.
    Rotation,
    /// Orderly shutdown (SIGTERM / SIGINT); the last checkpoint of a run.
    Shutdown,
}

/// A segment left with a partial last line by a crash, acknowledged at the next start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TornTail {
    /// Segment file name.
    pub segment: String,
    /// Bytes after the last complete line.
    pub bytes: u64,
}

/// The signed body of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointBody {
    /// Always [`CHECKPOINT_FORMAT`].
    pub format: String,
    /// 1, 2, 3, … across restarts.
    pub checkpoint_seq: u64,
    /// Random id of the gateway run that wrote it.
    pub instance_id: String,
    /// Key id of the signing key (first 16 hex digits of SHA-256 of the public key).
    pub key_id: String,
    /// Why it was written.
    pub reason: CheckpointReason,
    /// The segment it covers (`null` before the first record was ever written).
    pub segment: Option<String>,
    /// First seq of that segment.
    pub segment_first_seq: Option<u64>,
    /// Last seq written to that segment so far.
    pub last_seq: Option<u64>,
    /// `hex(sha256(line))` of the record at `last_seq`.
    pub last_record_hash: Option<String>,
    /// Records written since the previous checkpoint (0 for a heartbeat).
    pub new_records: u64,
    /// The segment is complete: nothing more will be appended to it.
    pub segment_closed: bool,
    /// Start of the period covered (the previous checkpoint's end, or the start of the run).
    pub start_time: String,
    /// When this checkpoint was written.
    pub end_time: String,
    /// The writer's heartbeat interval: checkpoints further apart than this mean a gap.
    pub interval_seconds: u64,
    /// A crash-torn line an earlier run left behind, acknowledged here.
    pub torn_tail: Option<TornTail>,
    /// File name of the previous checkpoint.
    pub prev_checkpoint: Option<String>,
    /// Hex signature of the previous checkpoint (`null` for the first).
    pub prev_checkpoint_signature: Option<String>,
}

/// The signature line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointSignature {
    /// Always `Ed25519`.
    pub algorithm: String,
    /// Key id, as in the body.
    pub key_id: String,
    /// Hex Ed25519 signature over [`signed_message`].
    pub signature: String,
}

/// The exact bytes that are signed (CloudTrail's digest-signing string, adapted).
pub fn signed_message(body: &CheckpointBody, body_line: &[u8]) -> Vec<u8> {
    format!(
        "{}\n{}\n{}\n{}",
        body.end_time,
        body.segment.as_deref().unwrap_or("null"),
        sha256_hex(body_line),
        body.prev_checkpoint_signature.as_deref().unwrap_or("null")
    )
    .into_bytes()
}
