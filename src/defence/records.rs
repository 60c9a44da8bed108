//! The `records_returned` signal's counter: how many resources a FHIR JSON answer carried,
//! counted while the answer streams to the client, without holding or parsing it.
//!
//! A Bundle's `entry[]` items each carry a `fullUrl` (required for search results, R4
//! `Bundle.entry.fullUrl`; HAPI and Microsoft's FHIR server write it for every entry, includes
//! too), so the number of `"fullUrl"` keys in the body is the number of records returned.
//! `Bundle.total` would be the number of matches, not of records returned, and servers leave
//! it out unless asked (`_total=accurate`). The count runs on the bytes as they pass, chunk
//! by chunk, keeping the last few bytes of each chunk so a key split across two chunks counts
//! once: no allocation per chunk, no copy of the body.
//!
//! What it cannot see: a compressed answer (the bytes are gzip's, not JSON's; not counted,
//! see [`RecordCounter::new`]'s caller), an answer held back for a check (written by the
//! gateway itself), and XML. A resource whose own text holds the string `"fullUrl"` in
//! quotes counts once more: an overcount by a client's own data, never an undercount of
//! what left.

/// The key counted, with its quotes.
const KEY: &[u8] = b"\"fullUrl\"";

/// The bytes kept from one chunk for the next: a key straddling the boundary starts in them.
const KEEP: usize = KEY.len() - 1;

/// Counts `"fullUrl"` keys across the chunks of one answer. No allocation: the boundary is
/// checked in a fixed buffer on the stack.
#[derive(Debug, Clone, Default)]
pub struct RecordCounter {
    /// The last bytes of the previous chunks (at most [`KEEP`]), `tail[..tail_len]`.
    tail: [u8; KEEP],
    tail_len: usize,
    count: u64,
}

impl RecordCounter {
    /// A counter for one answer.
    pub fn new() -> Self {
        RecordCounter::default()
    }

    /// Counts the keys in `chunk` (and any that began in the previous one).
    pub fn feed(&mut self, chunk: &[u8]) {
        if chunk.is_empty() {
            return;
        }
        // A key that straddles the boundary: the tail plus the chunk's first bytes.
        if self.tail_len > 0 {
            let head = &chunk[..chunk.len().min(KEEP)];
            let mut joint = [0u8; 2 * KEEP];
            joint[..self.tail_len].copy_from_slice(&self.tail[..self.tail_len]);
            joint[self.tail_len..self.tail_len + head.len()].copy_from_slice(head);
            let joint = &joint[..self.tail_len + head.len()];
            // Only keys that start in the tail: those wholly in the chunk are counted below.
            self.count += memchr::memmem::find_iter(joint, KEY)
                .filter(|&at| at < self.tail_len)
                .count() as u64;
        }
        self.count += memchr::memmem::find_iter(chunk, KEY).count() as u64;
        if chunk.len() >= KEEP {
            self.tail.copy_from_slice(&chunk[chunk.len() - KEEP..]);
            self.tail_len = KEEP;
        } else {
            // A short chunk: keep the newest KEEP bytes of the old tail and the chunk.
            let mut both = [0u8; 2 * KEEP];
            both[..self.tail_len].copy_from_slice(&self.tail[..self.tail_len]);
            both[self.tail_len..self.tail_len + chunk.len()].copy_from_slice(chunk);
            let len = self.tail_len + chunk.len();
            let from = len.saturating_sub(KEEP);
            self.tail_len = len - from;
            self.tail[..self.tail_len].copy_from_slice(&both[from..len]);
        }
    }

    /// The records counted so far.
    pub fn count(&self) -> u64 {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(n: usize) -> String {
        let entries: Vec<String> = (0..n)
            .map(|i| {
                format!(
                    r#"{{"fullUrl":"https://ehr.example/fhir/Observation/o{i}","resource":{{"resourceType":"Observation","id":"o{i}"}}}}"#
                )
            })
            .collect();
        format!(
            r#"{{"resourceType":"Bundle","type":"searchset","total":{n},"entry":[{}]}}"#,
            entries.join(",")
        )
    }

    #[test]
    fn counts_entries_whatever_the_chunking() {
        let body = bundle(37);
        for size in [1, 2, 3, 5, 8, 9, 10, 64, 1000, body.len()] {
            let mut c = RecordCounter::new();
            for chunk in body.as_bytes().chunks(size) {
                c.feed(chunk);
            }
            assert_eq!(c.count(), 37, "chunks of {size}");
        }
    }

    #[test]
    fn a_single_resource_or_an_error_counts_nothing() {
        let mut c = RecordCounter::new();
        c.feed(br#"{"resourceType":"Observation","id":"o1","status":"final"}"#);
        c.feed(br#"{"resourceType":"OperationOutcome","issue":[]}"#);
        c.feed(b"");
        assert_eq!(c.count(), 0);
        // The bare word (not a key) is not counted.
        c.feed(br#"{"text":"the fullUrl element"}"#);
        assert_eq!(c.count(), 0);
    }
}
