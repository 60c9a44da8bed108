//! Operational logging through `tracing`, as text or one JSON object per line.
//!
//! pingora logs through the `log` crate; the `tracing-log` bridge routes those records into
//! the same subscriber. `RUST_LOG` overrides the configured level. Nothing here ever formats a
//! request body, path, query string or header value: call sites log ids and decisions only.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. Calling it twice is harmless (the second call is ignored).
pub fn init(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(true);
    let _ = match format {
        LogFormat::Json => builder.event_format(JsonLine).try_init(),
        _ => builder.try_init(),
    };
}

/// One JSON object per event, in the shape of tracing-subscriber's flattened JSON format
/// (`timestamp`, `level`, the event's fields in order, `target`), written straight into the
/// line buffer.
///
/// Why not `.json().flatten_event(true)`: that format builds a `serde_json` serializer per
/// event, formats every value through `Debug` into a fresh `String` and the timestamp through
/// `Display`; on the access line of every request it was ~44,000 instructions, about a seventh
/// of the gateway's own cost of a GET (BENCHMARKS.md, "Profile of the hot path"). This one
/// escapes each value once into the buffer tracing-subscriber already reuses per thread.
pub struct JsonLine;

impl<S, N> FormatEvent<S, N> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // Records bridged from the `log` crate carry their real target in `log.*` fields.
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let mut line = Line {
            out: &mut writer,
            failed: false,
        };
        line.out.write_str("{\"timestamp\":\"")?;
        write_timestamp(line.out, time::OffsetDateTime::now_utc())?;
        line.out.write_str("\",\"level\":\"")?;
        line.out.write_str(meta.level().as_str())?;
        line.out.write_char('"')?;
        event.record(&mut line);
        if line.failed {
            return Err(fmt::Error);
        }
        writer.write_str(",\"target\":")?;
        write_json_str(&mut writer, meta.target())?;
        writer.write_str("}\n")
    }
}

/// The field visitor of [`JsonLine`]: `,"name":value` per field, values typed as
/// `tracing_serde` types them (integers, floats and booleans bare, everything else a string).
struct Line<'w, 'a> {
    out: &'w mut Writer<'a>,
    failed: bool,
}

impl Line<'_, '_> {
    fn key(&mut self, field: &Field) -> fmt::Result {
        self.out.write_char(',')?;
        write_json_str(self.out, field.name())?;
        self.out.write_char(':')
    }

    fn put(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.failed {
            return;
        }
        if self.key(field).and_then(|()| value(self.out)).is_err() {
            self.failed = true;
        }
    }
}

impl Visit for Line<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, |w| write_json_str(w, value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, |w| write!(w, "{value}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, |w| write!(w, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, |w| w.write_str(if value { "true" } else { "false" }));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // serde_json writes non-finite floats as null.
        self.put(field, |w| {
            if value.is_finite() {
                write!(w, "{value}")
            } else {
                w.write_str("null")
            }
        });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, |w| {
            w.write_char('"')?;
            write!(Escaped(w), "{value:?}")?;
            w.write_char('"')
        });
    }
}

/// A JSON string literal.
fn write_json_str(w: &mut dyn fmt::Write, s: &str) -> fmt::Result {
    w.write_char('"')?;
    Escaped(w).write_str(s)?;
    w.write_char('"')
}

/// Escapes what it is given as the inside of a JSON string (as serde_json does: `"`, `\`, and
/// control characters; everything else verbatim).
struct Escaped<'w>(&'w mut dyn fmt::Write);

impl fmt::Write for Escaped<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Ids, names and decisions, the usual content, need no escape: one scan, one copy.
        if !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
            return self.0.write_str(s);
        }
        let mut start = 0;
        for (i, b) in s.bytes().enumerate() {
            let esc: &str = match b {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0x08 => "\\b",
                0x0c => "\\f",
                0x00..=0x1f => "",
                _ => continue,
            };
            self.0.write_str(&s[start..i])?;
            if esc.is_empty() {
                write!(self.0, "\\u{b:04x}")?;
            } else {
                self.0.write_str(esc)?;
            }
            start = i + 1;
        }
        self.0.write_str(&s[start..])
    }
}

/// `2026-12-02T19:15:29.123456Z`: RFC 3339 in UTC with microseconds, as tracing-subscriber's
/// default timer prints it.
fn write_timestamp(w: &mut dyn fmt::Write, t: time::OffsetDateTime) -> fmt::Result {
    let (year, month, day) = t.to_calendar_date();
    let (h, m, s, micro) = t.to_hms_micro();
    write!(
        w,
        "{year:04}-{:02}-{day:02}T{h:02}:{m:02}:{s:02}.{micro:06}Z",
        u8::from(month)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_as_json() {
        let mut s = String::new();
        write_json_str(&mut s, "a\"b\\c\nd\u{1}é").unwrap();
        assert_eq!(s, r#""a\"b\\c\nd\u0001é""#);
        let v: String = serde_json::from_str(&s).unwrap();
        assert_eq!(v, "a\"b\\c\nd\u{1}é");
    }

    #[test]
    fn timestamps_have_microseconds_in_utc() {
        let t = time::OffsetDateTime::from_unix_timestamp_nanos(1_796_239_003_690_123_456).unwrap();
        let mut s = String::new();
        write_timestamp(&mut s, t).unwrap();
        assert_eq!(s, "2026-12-02T19:16:43.690123Z");
    }

    /// One event through the real subscriber stack: the line parses as JSON with every field
    /// typed as before.
    #[test]
    fn an_event_is_one_json_object_per_line() {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let out = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || out.clone())
            .event_format(JsonLine)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let rules = "ssn,\"x\"";
            tracing::info!(
                target: "phi_gateway::access",
                request_id = %"r-1",
                decision = "block",
                rules = %rules,
                status = 403u16,
                duration_us = 12u64,
                ok = true,
                "request"
            );
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert!(text.ends_with("}\n") && text.lines().count() == 1, "{text}");
        let v: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["target"], "phi_gateway::access");
        assert_eq!(v["message"], "request");
        assert_eq!(v["request_id"], "r-1");
        assert_eq!(v["decision"], "block");
        assert_eq!(v["rules"], "ssn,\"x\"");
        assert_eq!(v["status"], 403);
        assert_eq!(v["duration_us"], 12);
        assert_eq!(v["ok"], true);
        assert!(v["timestamp"].as_str().unwrap().ends_with('Z'));
        assert!(text.starts_with("{\"timestamp\":\""), "{text}");
    }
}
