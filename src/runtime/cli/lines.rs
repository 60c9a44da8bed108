//! `phi-gateway scan --lines FILE|-`: PHI in the logs of other systems.
//!
//! The file is read as a stream, one line at a time, so memory stays bounded whatever its
//! size. Each line is scanned on its own, as the gateway scans a body without a Content-Type:
//! a line that is a JSON document (JSON Lines logs) is walked as JSON, so its keys give the
//! context (`{"patient_ssn": 536221234}`); any other line is text. A line longer than
//! [`LinesArgs::max_line_bytes`] is not dropped: it is scanned as text in pieces of that size,
//! each overlapping the previous one by [`OVERLAP`] bytes so a value across a cut is still
//! seen, and reported once on stderr.
//!
//! Each finding is one line, `FILE:LINE<TAB>rule<TAB>category (severity)<TAB>location<TAB>shape`
//! (or one JSON object per line with `--json`); the value itself never appears, only its shape
//! (`###-##-####`). A summary (lines, bytes, findings, MB/s) goes to stderr, so standard output
//! is only the findings.

use std::io::{BufRead, Write};
use std::time::Instant;

use super::CliError;
use crate::engine::{Engine, Finding, Limits, Part, ScanOptions};

/// How much of the previous piece of an over-long line the next piece repeats.
pub const OVERLAP: usize = 256;

/// The default cap on the bytes of one line scanned in one piece (1 MiB).
pub const DEFAULT_MAX_LINE_BYTES: usize = 1 << 20;

/// Options of `scan --lines`.
#[derive(Debug, Clone)]
pub struct LinesArgs {
    /// The name printed before `:LINE` (the file name, or `-`).
    pub name: String,
    /// Route name, for route-scoped rules and exceptions.
    pub route: Option<String>,
    /// One JSON object per finding.
    pub json: bool,
    /// Longest piece of a line scanned at once; longer lines are scanned in pieces.
    pub max_line_bytes: usize,
}

/// What a run saw.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct LinesSummary {
    /// Lines read.
    pub lines: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Findings reported.
    pub findings: u64,
    /// Lines with at least one finding.
    pub lines_with_findings: u64,
    /// Lines longer than the cap (scanned in pieces).
    pub long_lines: u64,
    /// Lines the engine could not inspect (reported on stderr; none in practice, as lines
    /// carry no Content-Encoding).
    pub errors: u64,
    /// Wall-clock seconds.
    pub seconds: f64,
}

impl LinesSummary {
    /// `N line(s), B bytes, F finding(s) on L line(s), X MB/s` (MB = 10⁶ bytes).
    pub fn render(&self, name: &str) -> String {
        let mbps = if self.seconds > 0.0 {
            self.bytes as f64 / 1e6 / self.seconds
        } else {
            0.0
        };
        let mut s = format!(
            "{name}: {} line(s), {} bytes, {} finding(s) on {} line(s), {:.1} MB/s",
            self.lines, self.bytes, self.findings, self.lines_with_findings, mbps
        );
        if self.long_lines > 0 {
            s.push_str(&format!(
                ", {} line(s) over the line cap scanned in pieces",
                self.long_lines
            ));
        }
        if self.errors > 0 {
            s.push_str(&format!(", {} line(s) not inspected", self.errors));
        }
        s
    }
}

/// Scans `input` line by line, writing findings to `out` and notes to `notes`.
pub fn scan_lines(
    engine: &Engine,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
    notes: &mut dyn Write,
    args: &LinesArgs,
) -> Result<LinesSummary, CliError> {
    let started = Instant::now();
    let cap = args.max_line_bytes.max(OVERLAP * 2);
    let mut run = Run {
        engine,
        limits: Limits::default(),
        out,
        notes,
        args,
        summary: LinesSummary::default(),
        counted: 0,
    };
    let mut line: Vec<u8> = Vec::with_capacity(4096.min(cap));
    // Pieces already scanned of the current line (it is over the cap).
    let mut pieces = 0usize;
    let read_err = |source| CliError::Read {
        what: args.name.clone(),
        source,
    };
    loop {
        let buf = match input.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_err(e)),
        };
        if buf.is_empty() {
            break;
        }
        let (take, end_of_line) = match memchr::memchr(b'\n', buf) {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        let mut chunk = buf.get(..take).unwrap_or_default();
        run.summary.bytes += take as u64;
        if end_of_line {
            chunk = chunk.strip_suffix(b"\n").unwrap_or(chunk);
        }
        // Fill the line up to the cap; a full buffer is scanned as one piece and all but its
        // last OVERLAP bytes are dropped.
        while !chunk.is_empty() {
            let room = cap.saturating_sub(line.len());
            let (head, rest) = chunk.split_at(room.min(chunk.len()));
            line.extend_from_slice(head);
            chunk = rest;
            if line.len() >= cap {
                if pieces == 0 {
                    run.summary.long_lines += 1;
                    let _ = writeln!(
                        run.notes,
                        "{}:{}: longer than {cap} bytes; scanned as text in pieces of {cap} \
                         bytes (--max-line-bytes)",
                        args.name,
                        run.summary.lines + 1
                    );
                }
                run.piece(&line, pieces)?;
                pieces += 1;
                let keep = line.len() - OVERLAP;
                line.drain(..keep);
            }
        }
        input.consume(take);
        if end_of_line {
            run.end_line(&mut line, &mut pieces)?;
        }
    }
    if !line.is_empty() || pieces > 0 {
        run.end_line(&mut line, &mut pieces)?;
    }
    run.summary.seconds = started.elapsed().as_secs_f64();
    Ok(run.summary)
}

struct Run<'a> {
    engine: &'a Engine,
    limits: Limits,
    out: &'a mut dyn Write,
    notes: &'a mut dyn Write,
    args: &'a LinesArgs,
    summary: LinesSummary,
    /// The last line counted in `lines_with_findings`.
    counted: u64,
}

/// Whether a finding of a later piece lies wholly in the bytes it shares with the piece
/// before (which saw the same value whole).
fn in_overlap(f: &Finding) -> bool {
    let start = f
        .location
        .strip_prefix("text@")
        .and_then(|n| n.parse::<usize>().ok());
    let len = f.explain.as_ref().map_or(0, |x| x.masked.len());
    start.is_some_and(|s| s + len <= OVERLAP)
}

impl Run<'_> {
    /// Finishes the current line: scans what is left of it (a whole line, or the last piece
    /// of a long one) and resets.
    fn end_line(&mut self, line: &mut Vec<u8>, pieces: &mut usize) -> Result<(), CliError> {
        let text = line.strip_suffix(b"\r").unwrap_or(line);
        if *pieces == 0 {
            self.whole(text)?;
        } else if text.len() > OVERLAP {
            self.piece(text, *pieces)?;
        }
        self.summary.lines += 1;
        line.clear();
        *pieces = 0;
        Ok(())
    }

    /// A whole line: JSON when it is a JSON document, else text (the engine decides, as for
    /// a body without a Content-Type).
    fn whole(&mut self, text: &[u8]) -> Result<(), CliError> {
        if text.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let part = Part::Body {
            content_type: None,
            content_encoding: None,
            bytes: text,
        };
        self.scan(&part, None)
    }

    /// One piece of an over-long line, as text; `n` is its index (for the byte offset).
    fn piece(&mut self, bytes: &[u8], n: usize) -> Result<(), CliError> {
        let text = String::from_utf8_lossy(bytes);
        let start = n * (self.args.max_line_bytes.max(OVERLAP * 2) - OVERLAP);
        self.scan(&Part::Text(&text), Some(start))
    }

    fn scan(&mut self, part: &Part<'_>, piece_at: Option<usize>) -> Result<(), CliError> {
        let route = self.args.route.as_deref();
        let quick = match self
            .engine
            .scan_with(part, &self.limits, &ScanOptions::route(route))
        {
            Ok(s) => s,
            Err(e) => {
                self.summary.errors += 1;
                let _ = writeln!(
                    self.notes,
                    "{}:{}: not inspected: {e}",
                    self.args.name,
                    self.summary.lines + 1
                );
                return Ok(());
            }
        };
        if quick.findings.is_empty() {
            return Ok(());
        }
        // Findings are rare in logs: only their lines pay for explanations (the shapes).
        let explained = self
            .engine
            .scan_with(
                part,
                &self.limits,
                &ScanOptions::route(route).explained(true),
            )
            .map(|s| s.findings)
            .unwrap_or(quick.findings);
        // `lines` counts finished lines: the one being scanned is the next.
        let line_no = self.summary.lines + 1;
        for f in &explained {
            if piece_at.is_some_and(|at| at > 0) && in_overlap(f) {
                continue; // the previous piece ended with these bytes and reported it
            }
            if self.counted != line_no {
                self.counted = line_no;
                self.summary.lines_with_findings += 1;
            }
            self.summary.findings += 1;
            self.report(line_no, f, piece_at)?;
        }
        Ok(())
    }

    fn report(&mut self, line: u64, f: &Finding, piece_at: Option<usize>) -> Result<(), CliError> {
        let location = log_location(&f.location, piece_at);
        let shape = f.explain.as_ref().map_or("-", |x| x.masked.as_str());
        let text = if self.args.json {
            let mut obj = serde_json::json!({
                "file": self.args.name,
                "line": line,
                "rule": f.rule_id,
                "category": f.category.map(|c| c.as_str()),
                "severity": f.severity.as_str(),
                "mode": f.mode.to_string(),
                "location": location,
                "value": shape,
                "decode_chain": f.decode_chain,
            });
            if let (Some(fp), Some(map)) = (
                f.explain.as_ref().and_then(|x| x.fingerprint.as_ref()),
                obj.as_object_mut(),
            ) {
                map.insert("fingerprint".into(), fp.clone().into());
            }
            obj.to_string()
        } else {
            format!(
                "{}:{line}\t{}\t{} ({})\t{location}\t{shape}",
                self.args.name,
                f.rule_id,
                f.category.map_or("-", |c| c.as_str()),
                f.severity
            )
        };
        writeln!(self.out, "{text}").map_err(CliError::Write)
    }
}

/// A finding's location in log terms: `json:/a/b` for a JSON line, `col N` (1-based byte
/// column) for text; inside a piece of a long line the column counts from the line's start.
fn log_location(location: &str, piece_at: Option<usize>) -> String {
    if let Some(rest) = location.strip_prefix("body:") {
        return format!("json:{rest}");
    }
    let offset = location
        .strip_prefix("body@")
        .or_else(|| location.strip_prefix("text@"))
        .and_then(|n| n.parse::<usize>().ok());
    match offset {
        Some(n) => format!("col {}", n + piece_at.unwrap_or(0) + 1),
        None => location.to_string(),
    }
}
