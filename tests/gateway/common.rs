//! Test harness: a recording raw-TCP upstream, a real `phi-gateway` child process with its own
//! config, certificates and ports, TLS 1.3 clients, curl/openssl runners and a Prometheus
//! text parser. Everything binds 127.0.0.1 only and every wait is bounded.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// The SSN every PHI test injects.
pub const SSN: &str = "536-22-1234";
/// The same SSN without separators (must not leak either).
pub const SSN_DIGITS: &str = "536221234";
/// The audit header the gateway requires by default.
pub const AUDIT: &str = "x-hipaa-audit-id";
/// Client-side timeout for every request and external command.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// How long a gateway gets to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// A FHIR Patient whose identifier carries a plaintext SSN.
pub fn ssn_patient() -> String {
    format!(
        r#"{{"resourceType":"Patient","identifier":[{{"system":"http://hl7.org/fhir/sid/us-ssn","value":"{SSN}"}}]}}"#
    )
}

/// A clean FHIR Patient: no digits, no `@`, nothing any default rule could match.
pub fn clean_patient() -> String {
    r#"{"resourceType":"Patient","active":true,"name":[{"family":"Example","given":["Alex","Jordan"]}],"gender":"unknown","text":{"status":"generated","div":"<div>Alex Example</div>"}}"#.to_string()
}

/// A clean JSON document of roughly `size` bytes (letters and spaces only in the filler).
pub fn clean_large_json(size: usize) -> String {
    let words = [
        "patient",
        "reports",
        "mild",
        "headache",
        "since",
        "yesterday",
        "afternoon",
        "no",
        "fever",
        "advised",
        "rest",
        "and",
        "fluids",
        "follow",
        "up",
        "as",
        "needed",
    ];
    let mut filler = String::with_capacity(size);
    let mut i = 0;
    while filler.len() + 120 < size {
        filler.push_str(words[i % words.len()]);
        filler.push(' ');
        i += 1;
    }
    format!(
        r#"{{"resourceType":"Observation","status":"final","note":[{{"text":"{}"}}]}}"#,
        filler.trim_end()
    )
}

/// A ~`size`-byte JSON document whose only PHI is an SSN in its very last bytes.
pub fn large_json_with_trailing_ssn(size: usize) -> String {
    let mut filler = String::with_capacity(size);
    while filler.len() + 160 < size {
        filler.push_str("lorem ipsum dolor sit amet consectetur ");
    }
    format!(
        r#"{{"resourceType":"Patient","text":{{"status":"generated","div":"{}"}},"identifier":[{{"system":"http://hl7.org/fhir/sid/us-ssn","value":"{SSN}"}}]}}"#,
        filler.trim_end()
    )
}

// === ports ===

/// A currently free loopback port (bind :0, read the port, drop the socket).
pub fn free_port() -> u16 {
    // Ports from the kernel's ephemeral range (`bind :0`) are also what every outgoing
    // connection uses, and two tests starting at once could be handed the same one between
    // its release and the gateway's bind. Instead, hand out each port once per test process,
    // from below the ephemeral range (32768+ on Linux), starting at a per-process offset.
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    let start = std::process::id().wrapping_mul(7919) % SPAN;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let port = (LOW + (start + n) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {LOW}..{}", LOW + SPAN);
}

fn wait_connectable(port: u16, deadline: Instant) -> bool {
    while Instant::now() < deadline {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        thread::sleep(Duration::from_millis(25));
    }
    false
}

// === recording upstream ===

/// One request as it arrived at the upstream.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Index of the connection it came on (0-based, in accept order).
    pub conn: usize,
    /// The header block, request line included, up to and including the blank line.
    pub head: String,
    /// The body payload (de-chunked when chunked).
    pub body: Vec<u8>,
    /// The body bytes exactly as they arrived after the header block (chunk framing included).
    pub raw_body: Vec<u8>,
    /// The body framing completed (all Content-Length bytes, or the last chunk).
    pub complete: bool,
}

impl Recorded {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.split("\r\n").skip(1).find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }

    /// The request line, e.g. `POST /fhir/Patient HTTP/1.1`.
    pub fn request_line(&self) -> &str {
        self.head.split("\r\n").next().unwrap_or("")
    }
}

/// How a [`RecordingUpstream`] answers each complete request it recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamMode {
    /// Answer 200 to every complete request, keep-alive.
    Answer,
    /// Record, never answer.
    Hang,
    /// Like `Answer`, but wait this long before answering each request.
    Slow(Duration),
    /// Write the status line and half the headers, then reset the connection (RST).
    ResetInHeaders,
    /// Write a complete 200 header (`content-length: 64`) and 10 body bytes, then reset.
    ResetInBody,
    /// Write a complete 500 header (`content-length: 512`) and the start of a Java stack
    /// trace quoting an SSN ([`PARTIAL_ERROR_BODY`]), then reset: the leak guard's case.
    ResetInErrorBody,
    /// Write bytes that are not HTTP at all, then close.
    Garbage,
    /// Write the status line and part of a header line, then close cleanly (FIN).
    TruncatedHeaders,
    /// Write a complete 200 header (`content-length: 64`) and 10 body bytes, then close (FIN).
    TruncatedBody,
    /// Answer a complete 200 as soon as the request head arrives, before reading the body
    /// (then keep recording what arrives), like nginx `return 200`.
    AnswerBeforeBody,
}

/// The 10 body bytes the misbehaving modes send before they break the response.
pub const PARTIAL_BODY: &str = "{\"partial\":";

/// What [`UpstreamMode::ResetInErrorBody`] sends of its body before the reset.
pub const PARTIAL_ERROR_BODY: &str =
    "java.lang.IllegalStateException: patient SSN 536-22-1234\n\tat org.example.ehr.Dao.load(";

/// What an answering upstream ([`RecordingUpstream::start_answering`]) writes back for a
/// complete request: the whole raw HTTP/1.1 response, status line to last body byte.
pub type Answer = Arc<dyn Fn(&Recorded) -> Vec<u8> + Send + Sync>;

#[derive(Default)]
struct UpstreamState {
    connections: usize,
    requests: Vec<Recorded>,
    last_activity: Option<Instant>,
}

/// A raw HTTP/1.1 server that records exactly what reached it.
pub struct RecordingUpstream {
    addr: SocketAddr,
    state: Arc<Mutex<UpstreamState>>,
    stop: Arc<AtomicBool>,
}

impl RecordingUpstream {
    /// Answers `200 OK` with a small JSON body to every complete request.
    pub fn start() -> Self {
        Self::start_mode(UpstreamMode::Answer)
    }

    /// Accepts and records, never answers.
    pub fn start_hanging() -> Self {
        Self::start_mode(UpstreamMode::Hang)
    }

    /// Answers like [`RecordingUpstream::start`], each response `delay` after its request.
    pub fn start_slow(delay: Duration) -> Self {
        Self::start_mode(UpstreamMode::Slow(delay))
    }

    /// Records like [`RecordingUpstream::start`] and answers according to `mode`.
    pub fn start_with(mode: UpstreamMode) -> Self {
        Self::start_mode(mode)
    }

    /// Records like [`RecordingUpstream::start`] and answers each complete request with the
    /// raw bytes `answer` returns for it (keep-alive unless they say `connection: close`):
    /// first the head, then, 100 ms later, the body, so the gateway sees them apart.
    pub fn start_answering(answer: impl Fn(&Recorded) -> Vec<u8> + Send + Sync + 'static) -> Self {
        Self::start_full(UpstreamMode::Answer, Some(Arc::new(answer)))
    }

    fn start_mode(mode: UpstreamMode) -> Self {
        Self::start_full(mode, None)
    }

    fn start_full(mode: UpstreamMode, answer: Option<Answer>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let state = Arc::new(Mutex::new(UpstreamState::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        thread::spawn(move || {
            while !sp.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let conn = {
                            let mut s = st.lock().unwrap();
                            s.connections += 1;
                            s.last_activity = Some(Instant::now());
                            s.connections - 1
                        };
                        let (st2, sp2, an2) = (st.clone(), sp.clone(), answer.clone());
                        thread::spawn(move || serve_connection(stream, conn, mode, an2, st2, sp2));
                    }
                    Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(5));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Self { addr, state, stop }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request seen so far (complete or not), in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    /// The request line of every request so far, in arrival order.
    pub fn request_lines(&self) -> Vec<String> {
        self.requests()
            .iter()
            .map(|r| r.request_line().to_string())
            .collect()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.lock().unwrap().connections
    }

    /// Body bytes (raw, framing included) that arrived after any header block.
    pub fn total_body_bytes(&self) -> usize {
        self.state
            .lock()
            .unwrap()
            .requests
            .iter()
            .map(|r| r.raw_body.len())
            .sum()
    }

    /// Waits (≤ 3 s) until nothing arrived for 300 ms, so absence checks are not racing
    /// bytes still in flight.
    pub fn quiesce(&self) {
        let deadline = Instant::now() + Duration::from_secs(3);
        thread::sleep(Duration::from_millis(100));
        while Instant::now() < deadline {
            let last = self.state.lock().unwrap().last_activity;
            match last {
                Some(t) if t.elapsed() < Duration::from_millis(300) => {
                    thread::sleep(Duration::from_millis(50))
                }
                _ => return,
            }
        }
    }

    /// A readable summary for assertion messages.
    /// Waits for in-flight connections to settle, then asserts nothing reached the upstream.
    pub fn assert_untouched(&self, what: &str) {
        self.quiesce();
        assert_eq!(
            self.connections(),
            0,
            "{what} reached the upstream:\n{}",
            self.describe()
        );
    }

    pub fn describe(&self) -> String {
        let s = self.state.lock().unwrap();
        let mut out = format!("{} connection(s)\n", s.connections);
        for r in &s.requests {
            out.push_str(&format!(
                "--- conn {} complete={} raw_body={}B\n{}{}\n",
                r.conn,
                r.complete,
                r.raw_body.len(),
                r.head,
                String::from_utf8_lossy(&r.raw_body[..r.raw_body.len().min(200)])
            ));
        }
        out
    }
}

impl Drop for RecordingUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Asserts that exactly one complete `POST <path>` reached `up` and that its body is `body`,
/// byte for byte (and its Content-Length, if any, says so).
pub fn assert_forwarded_exactly(up: &RecordingUpstream, path: &str, body: &[u8]) {
    let reqs = up.requests();
    let matching: Vec<_> = reqs
        .iter()
        .filter(|r| r.request_line().starts_with(&format!("POST {path} ")))
        .collect();
    assert_eq!(matching.len(), 1, "{}", up.describe());
    let r = matching[0];
    assert!(r.complete, "{}", up.describe());
    assert_eq!(r.body.len(), body.len(), "forwarded body length differs");
    assert!(r.body == body, "forwarded body differs from what was sent");
    if let Some(cl) = r.header("content-length") {
        assert_eq!(cl, body.len().to_string());
    }
}

/// Reads more bytes into `buf`. `Ok(0)` = peer closed; `Err` = stop requested or I/O error.
fn read_more(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    stop: &AtomicBool,
    state: &Mutex<UpstreamState>,
) -> std::io::Result<usize> {
    let mut chunk = [0u8; 16 * 1024];
    let idle_limit = Instant::now() + Duration::from_secs(60);
    loop {
        if stop.load(Ordering::SeqCst) || Instant::now() > idle_limit {
            return Err(std::io::Error::other("stopped"));
        }
        match stream.read(&mut chunk) {
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                state.lock().unwrap().last_activity = Some(Instant::now());
                return Ok(n);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(e) => return Err(e),
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Decodes as much of a chunked body as has arrived. Returns the payload so far and, once the
/// terminating chunk and trailers are complete, the number of raw bytes the body occupied.
pub fn dechunk(raw: &[u8]) -> (Vec<u8>, Option<usize>) {
    let mut out = Vec::new();
    let mut pos = 0;
    loop {
        let Some(eol) = find(&raw[pos..], b"\r\n") else {
            return (out, None);
        };
        let line = String::from_utf8_lossy(&raw[pos..pos + eol]).to_string();
        let size_str = line.split(';').next().unwrap_or("").trim();
        let Ok(size) = usize::from_str_radix(size_str, 16) else {
            return (out, None);
        };
        pos += eol + 2;
        if size == 0 {
            // trailers until an empty line
            loop {
                let Some(eol) = find(&raw[pos..], b"\r\n") else {
                    return (out, None);
                };
                pos += eol + 2;
                if eol == 0 {
                    return (out, Some(pos));
                }
            }
        }
        let avail = raw.len().saturating_sub(pos);
        if avail < size {
            out.extend_from_slice(&raw[pos..]);
            return (out, None);
        }
        out.extend_from_slice(&raw[pos..pos + size]);
        pos += size;
        if raw.len() < pos + 2 {
            return (out, None);
        }
        pos += 2; // CRLF after the chunk data
    }
}

fn serve_connection(
    mut stream: TcpStream,
    conn: usize,
    mode: UpstreamMode,
    answer: Option<Answer>,
    state: Arc<Mutex<UpstreamState>>,
    stop: Arc<AtomicBool>,
) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
    let mut buf: Vec<u8> = Vec::new();
    let mut served = 0usize;
    loop {
        // Header block.
        let head_end = loop {
            if let Some(p) = find(&buf, b"\r\n\r\n") {
                break p + 4;
            }
            match read_more(&mut stream, &mut buf, &stop, &state) {
                Ok(0) | Err(_) => {
                    if !buf.is_empty() {
                        // A partial header block: record it as an incomplete request.
                        state.lock().unwrap().requests.push(Recorded {
                            conn,
                            head: String::from_utf8_lossy(&buf).into_owned(),
                            body: Vec::new(),
                            raw_body: Vec::new(),
                            complete: false,
                        });
                    }
                    return;
                }
                Ok(_) => {}
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        buf.drain(..head_end);
        let mut rec = Recorded {
            conn,
            head,
            body: Vec::new(),
            raw_body: Vec::new(),
            complete: false,
        };
        let chunked = rec
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let content_length = rec
            .header("content-length")
            .and_then(|v| v.parse::<usize>().ok());
        let expect_continue = rec
            .header("expect")
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
        let close_after = rec
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let idx = {
            let mut s = state.lock().unwrap();
            s.requests.push(rec.clone());
            s.requests.len() - 1
        };
        let update = |rec: &Recorded| {
            state.lock().unwrap().requests[idx] = rec.clone();
        };
        if expect_continue && mode != UpstreamMode::Hang {
            let _ = stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        if mode == UpstreamMode::AnswerBeforeBody {
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 15\r\n\r\n{\"early\":true}\n",
            );
            let _ = stream.flush();
        }
        // Body.
        loop {
            let used;
            if chunked {
                let (payload, done) = dechunk(&buf);
                rec.body = payload;
                used = done;
            } else {
                let want = content_length.unwrap_or(0);
                let have = buf.len().min(want);
                rec.body = buf[..have].to_vec();
                used = (have == want).then_some(want);
            }
            match used {
                Some(n) => {
                    rec.raw_body = buf[..n].to_vec();
                    buf.drain(..n);
                    rec.complete = true;
                    update(&rec);
                    break;
                }
                None => {
                    rec.raw_body = buf.clone();
                    update(&rec);
                }
            }
            match read_more(&mut stream, &mut buf, &stop, &state) {
                Ok(0) | Err(_) => {
                    // Closed mid-body: record exactly what arrived.
                    rec.body = if chunked {
                        dechunk(&buf).0
                    } else {
                        buf[..buf.len().min(content_length.unwrap_or(0))].to_vec()
                    };
                    rec.raw_body = buf.clone();
                    update(&rec);
                    return;
                }
                Ok(_) => {}
            }
        }
        served += 1;
        if mode == UpstreamMode::Hang {
            // Never answer; hold the connection until the peer closes or the test ends.
            while let Ok(n) = read_more(&mut stream, &mut buf, &stop, &state) {
                if n == 0 {
                    return;
                }
            }
            return;
        }
        if let UpstreamMode::Slow(delay) = mode {
            thread::sleep(delay);
        }
        if mode == UpstreamMode::AnswerBeforeBody {
            continue; // answered already, from the head alone
        }
        if misbehave(&mut stream, mode) {
            return;
        }
        if let Some(answer) = &answer {
            let bytes = answer(&rec);
            let close = String::from_utf8_lossy(&bytes)
                .split("\r\n\r\n")
                .next()
                .is_some_and(|h| h.to_ascii_lowercase().contains("connection: close"));
            // The head goes out on its own and the body a moment later, as from a server that
            // streams its answer: the gateway sees the response head before any body byte.
            let split = find(&bytes, b"\r\n\r\n").map_or(bytes.len(), |p| p + 4);
            let (head, body) = bytes.split_at(split);
            if stream.write_all(head).and_then(|_| stream.flush()).is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(100));
            if stream.write_all(body).is_err() || close || close_after {
                return;
            }
            continue;
        }
        let body = format!("{{\"upstream\":\"recording\",\"request\":{served}}}");
        let resp = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{}\r\n{}",
            body.len(),
            if close_after {
                "connection: close\r\n"
            } else {
                ""
            },
            body
        );
        if stream.write_all(resp.as_bytes()).is_err() || close_after {
            return;
        }
    }
}

/// Answers the way a broken upstream would for the misbehaving modes; returns true when it
/// did (the connection is finished then).
fn misbehave(stream: &mut TcpStream, mode: UpstreamMode) -> bool {
    let head_200 =
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 64\r\n\r\n";
    let (bytes, reset) = match mode {
        UpstreamMode::ResetInHeaders => ("HTTP/1.1 200 OK\r\ncontent-type: appl".to_string(), true),
        UpstreamMode::ResetInBody => (format!("{head_200}{PARTIAL_BODY}"), true),
        UpstreamMode::ResetInErrorBody => (
            format!(
                "HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain\r\ncontent-length: 512\r\n\r\n{PARTIAL_ERROR_BODY}"
            ),
            true,
        ),
        UpstreamMode::Garbage => (
            "\u{0}\u{1}SSH-2.0-not-http garbage \u{7f}\r\n\r\n\r\n".to_string(),
            false,
        ),
        UpstreamMode::TruncatedHeaders => ("HTTP/1.1 200 OK\r\ncontent-ty".to_string(), false),
        UpstreamMode::TruncatedBody => (format!("{head_200}{PARTIAL_BODY}"), false),
        UpstreamMode::Answer
        | UpstreamMode::Hang
        | UpstreamMode::Slow(_)
        | UpstreamMode::AnswerBeforeBody => return false,
    };
    let _ = stream.write_all(bytes.as_bytes());
    let _ = stream.flush();
    // Let the gateway read what was written before the connection breaks, so the test
    // exercises "broke after N bytes", not "refused".
    thread::sleep(Duration::from_millis(100));
    if reset {
        // The caller drops the stream next: close(2) with linger 0 sends RST.
        set_linger_zero(stream);
    } else {
        let _ = stream.shutdown(std::net::Shutdown::Both);
    }
    true
}

/// SO_LINGER {on, 0}: closing the socket then sends RST instead of FIN.
fn set_linger_zero(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a socket we own, with a pointer to a live, correctly sized
    // `linger` value.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            std::ptr::addr_of!(linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

// === gateway process ===

/// Knobs for one gateway instance.
#[derive(Debug, Clone)]
pub struct GatewayOpts {
    /// Where the `ehr` upstream (routes `fhir` and `monitor`) points.
    pub upstream: SocketAddr,
    /// `max_body_bytes` on the `fhir` (enforce) route.
    pub max_body_bytes: u64,
    /// `read_ms` for the `ehr` upstream.
    pub read_ms: u64,
    /// Extra request headers the `fhir` route inspects (`inspect.headers`).
    pub inspect_headers: Vec<String>,
    /// When set, the `ehr` upstream is reached over TLS with this (SNI, CA file).
    pub upstream_tls: Option<(String, PathBuf)>,
    /// `server.grace_period_seconds`.
    pub grace_period_seconds: u64,
    /// `server.shutdown_delay_seconds`.
    pub shutdown_delay_seconds: u64,
    /// `reload.watch` (polled every 200 ms when on).
    pub reload_watch: bool,
    /// Write an audit trail (default: yes, in `<tempdir>/audit`, fsync every record).
    pub audit: bool,
    /// Extra lines inside the `audit:` section, e.g. `"  fsync: batched"`.
    pub audit_extra: Vec<String>,
    /// Extra lines inside the `fhir` route, e.g. `"    audit:\n      resource_id: clear"`.
    pub fhir_route_extra: Vec<String>,
    /// Extra lines inside `listen:`, e.g. `"  client_auth:"`.
    pub listen_extra: Vec<String>,
    /// Lines of a `limits:` section, e.g. `"  header_timeout_ms: 1000"` (none: no section).
    pub limits: Vec<String>,
    /// Lines of an `access:` section, e.g. `"  issuers:"` (none: no section).
    pub access: Vec<String>,
    /// Lines of a `state:` section, e.g. `"  backend: redis"` (none: no section).
    pub state: Vec<String>,
    /// Lines of a `defence:` section, e.g. `"  anomaly:"` (none: no section).
    pub defence: Vec<String>,
    /// Extra lines inside `admin:`, e.g. `"  token_file: admin.token"`.
    pub admin_extra: Vec<String>,
}

impl GatewayOpts {
    /// Defaults: 1 MiB body cap, 5 s upstream read timeout, no inspected headers.
    pub fn new(upstream: SocketAddr) -> Self {
        Self {
            upstream,
            max_body_bytes: 1024 * 1024,
            read_ms: 5_000,
            inspect_headers: Vec::new(),
            upstream_tls: None,
            grace_period_seconds: 0,
            shutdown_delay_seconds: 0,
            reload_watch: true,
            audit: true,
            audit_extra: Vec::new(),
            fhir_route_extra: Vec::new(),
            listen_extra: Vec::new(),
            limits: Vec::new(),
            access: Vec::new(),
            state: Vec::new(),
            defence: Vec::new(),
            admin_extra: Vec::new(),
        }
    }
}

/// A tempdir holding certificates, rules and a `gateway.yaml`, not (yet) running.
pub struct GatewayFiles {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub yaml: String,
    pub port: u16,
    pub admin_port: u16,
    /// The port of the `down` upstream (nothing listens there).
    pub down_port: u16,
}

/// Copies the repository's rule pack into `dest`; when it has no rule files, writes the
/// embedded default pack instead.
fn install_rules(dest: &Path) {
    std::fs::create_dir_all(dest).unwrap();
    let repo_rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let mut copied = 0;
    if let Ok(entries) = std::fs::read_dir(&repo_rules) {
        for e in entries.flatten() {
            let p = e.path();
            let is_rule = p.extension().is_some_and(|x| x == "yaml" || x == "yml");
            if p.is_file() && is_rule {
                std::fs::copy(&p, dest.join(e.file_name())).unwrap();
                copied += 1;
            }
        }
    }
    if copied == 0 {
        phi_gateway::runtime::demo::write_default_pack(dest).unwrap();
    }
}

impl GatewayFiles {
    pub fn new(opts: &GatewayOpts) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("phi-gw-test-")
            .tempdir()
            .unwrap();
        phi_gateway::gateway::tls::generate_dev_ca(dir.path()).expect("dev CA");
        install_rules(&dir.path().join("rules"));
        let port = free_port();
        let mut admin_port = free_port();
        while admin_port == port {
            admin_port = free_port();
        }
        let down_port = free_port();
        let headers = if opts.inspect_headers.is_empty() {
            String::new()
        } else {
            format!("\n      headers: [{}]", opts.inspect_headers.join(", "))
        };
        let tls = match &opts.upstream_tls {
            Some((sni, ca)) => format!(
                "\n    tls:\n      sni: {sni}\n      ca_file: \"{}\"",
                ca.display()
            ),
            None => String::new(),
        };
        let audit = if opts.audit {
            let dir = dir.path();
            phi_gateway::audit::keys::generate(&dir.join("keys"), &dir.join("audit-signing.pub"))
                .expect("audit keys");
            let mut a = String::from(
                "audit:\n  dir: audit\n  signing_key_file: keys/audit-signing.key\n  fingerprint_key_file: keys/audit-fingerprint.key\n",
            );
            for l in &opts.audit_extra {
                a.push_str(l);
                a.push('\n');
            }
            a
        } else {
            String::new()
        };
        let listen_extra: String = opts.listen_extra.iter().map(|l| format!("\n{l}")).collect();
        let limits = if opts.limits.is_empty() {
            String::new()
        } else {
            format!("limits:\n{}\n", opts.limits.join("\n"))
        };
        let access = if opts.access.is_empty() {
            String::new()
        } else {
            format!("access:\n{}\n", opts.access.join("\n"))
        };
        let state = if opts.state.is_empty() {
            String::new()
        } else {
            format!("state:\n{}\n", opts.state.join("\n"))
        };
        let defence = if opts.defence.is_empty() {
            String::new()
        } else {
            format!("defence:\n{}\n", opts.defence.join("\n"))
        };
        let admin_extra: String = opts.admin_extra.iter().map(|l| format!("\n{l}")).collect();
        let fhir_extra: String = opts
            .fhir_route_extra
            .iter()
            .map(|l| format!("\n{l}"))
            .collect();
        let yaml = format!(
            "\
{audit}listen:
  address: \"127.0.0.1:{port}\"
  cert_file: server.pem
  key_file: server.key
  http2: true{listen_extra}
admin:
  address: \"127.0.0.1:{admin_port}\"{admin_extra}
rules:
  dir: rules
server:
  threads: 2
  grace_period_seconds: {grace}
  graceful_shutdown_timeout_seconds: 1
  shutdown_delay_seconds: {delay}
  pid_file: gateway.pid
  upgrade_sock: gateway-upgrade.sock
logging:
  format: json
  level: info
reload:
  watch: {watch}
  watch_interval_ms: 200
{limits}{access}{state}{defence}upstreams:
  - name: ehr
    address: \"{upstream}\"{tls}
    timeouts:
      connect_ms: 1000
      read_ms: {read_ms}
  - name: down
    address: \"127.0.0.1:{down_port}\"
    timeouts:
      connect_ms: 1000
      read_ms: 2000
routes:
  - name: fhir
    path_prefix: /fhir/
    upstream: ehr
    mode: enforce
    max_body_bytes: {max}
    inspect:
      query: true
      body: true{headers}{fhir_extra}
  - name: monitor
    path_prefix: /monitor/
    upstream: ehr
    mode: monitor
  - name: down
    path_prefix: /down/
    upstream: down
    mode: enforce
",
            upstream = opts.upstream,
            read_ms = opts.read_ms,
            max = opts.max_body_bytes,
            grace = opts.grace_period_seconds,
            delay = opts.shutdown_delay_seconds,
            watch = opts.reload_watch,
        );
        let config = dir.path().join("gateway.yaml");
        std::fs::write(&config, &yaml).unwrap();
        Self {
            dir,
            config,
            yaml,
            port,
            admin_port,
            down_port,
        }
    }

    pub fn ca_pem_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// 1-based line number of the first line containing `needle`.
    pub fn line_of(text: &str, needle: &str) -> usize {
        text.lines()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("`{needle}` not in config"))
            + 1
    }
}

/// Spawns `phi-gateway run` on `files`' config, in its directory, with no `RUST_LOG`, and
/// returns at once (no readiness wait).
pub fn spawn_run(files: &GatewayFiles, stdout: std::fs::File, stderr: std::fs::File) -> Child {
    Command::new(env!("CARGO_BIN_EXE_phi-gateway"))
        .arg("run")
        .arg("--config")
        .arg(&files.config)
        .current_dir(files.dir.path())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .expect("spawn phi-gateway")
}

/// A running `phi-gateway run` child process.
pub struct Gateway {
    pub files: GatewayFiles,
    child: Option<Child>,
}

impl Gateway {
    /// Starts the real binary and waits until `/readyz` answers 200 and the TLS port accepts.
    pub fn start(opts: GatewayOpts) -> Self {
        Self::start_files(GatewayFiles::new(&opts))
    }

    /// Starts the real binary on files prepared (and perhaps added to) by the caller, and
    /// waits until it is ready.
    pub fn start_files(files: GatewayFiles) -> Self {
        let stdout = std::fs::File::create(files.dir.path().join("stdout.log")).unwrap();
        let stderr = std::fs::File::create(files.dir.path().join("stderr.log")).unwrap();
        let child = spawn_run(&files, stdout, stderr);
        let mut gw = Gateway {
            files,
            child: Some(child),
        };
        gw.wait_ready();
        gw
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "phi-gateway exited during start-up with {status}\n{}",
                    self.logs()
                );
            }
            if let Some((200, _)) = http_get(self.files.admin_port, "/readyz") {
                break;
            }
            if Instant::now() > deadline {
                panic!(
                    "phi-gateway not ready within {READY_TIMEOUT:?}\n{}",
                    self.logs()
                );
            }
            thread::sleep(Duration::from_millis(30));
        }
        if !wait_connectable(self.files.port, deadline) {
            panic!(
                "TLS port {} never accepted\n{}",
                self.files.port,
                self.logs()
            );
        }
    }

    pub fn port(&self) -> u16 {
        self.files.port
    }

    pub fn ca_pem_path(&self) -> PathBuf {
        self.files.ca_pem_path()
    }

    pub fn base_url(&self) -> String {
        format!("https://localhost:{}", self.files.port)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url(), path)
    }

    pub fn admin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.files.admin_port)
    }

    /// stderr followed by stdout of the gateway process so far.
    pub fn logs(&self) -> String {
        let read =
            |n: &str| std::fs::read_to_string(self.files.dir.path().join(n)).unwrap_or_default();
        format!("{}{}", read("stderr.log"), read("stdout.log"))
    }

    /// `GET /metrics` on the admin listener.
    pub fn scrape_metrics(&self) -> String {
        match http_get(self.files.admin_port, "/metrics") {
            Some((200, body)) => body,
            other => panic!("metrics scrape failed: {other:?}"),
        }
    }

    /// A TLS 1.3 client trusting this gateway's dev CA.
    pub fn client(&self, h2: bool) -> reqwest::Client {
        client(&self.ca_pem_path(), h2)
    }

    /// Runs curl against this gateway with `--cacert` and a 10 s cap.
    pub fn curl(&self, args: &[&str]) -> CurlResult {
        curl(&self.ca_pem_path(), args)
    }

    /// The gateway's PID.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Whether the child process (the same PID it started with) is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Sends `signal` (a `libc::SIG*` number) to the gateway.
    pub fn signal(&self, signal: i32) {
        let pid = libc::pid_t::try_from(self.pid()).unwrap();
        // SAFETY: kill(2) on a child we spawned and have not reaped; touches no memory.
        unsafe {
            libc::kill(pid, signal);
        }
    }

    /// Waits up to `timeout` for the process to exit; returns its status if it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut()?;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// `POST {path}` on the admin listener: status and body.
    pub fn admin_post(&self, path: &str) -> Option<(u16, String)> {
        http_request(self.files.admin_port, "POST", path)
    }

    /// The current value of one metric (summed over matching samples; 0 when absent).
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_value(&self.scrape_metrics(), name, labels)
    }

    /// Waits (≤ 10 s) until `metric(name, labels) >= at_least`; panics with the logs otherwise.
    pub fn wait_metric(&self, name: &str, labels: &[(&str, &str)], at_least: f64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.metric(name, labels) < at_least {
            if Instant::now() > deadline {
                panic!(
                    "{name}{labels:?} never reached {at_least} (now {})\n{}",
                    self.metric(name, labels),
                    self.logs()
                );
            }
            thread::sleep(Duration::from_millis(25));
        }
    }
    /// The audit directory.
    pub fn audit_dir(&self) -> PathBuf {
        self.files.dir.path().join("audit")
    }

    /// The raw bytes of the audit fingerprint key (for tests that recompute a keyed value).
    pub fn fingerprint_secret(&self) -> Vec<u8> {
        phi_gateway::audit::keys::load_fingerprint_key(
            &self.files.dir.path().join("keys/audit-fingerprint.key"),
        )
        .expect("fingerprint key")
    }

    /// The audit public key.
    pub fn audit_pubkey(&self) -> PathBuf {
        self.files.dir.path().join("audit-signing.pub")
    }

    /// Every complete audit record written so far, in seq order.
    pub fn audit_records(&self) -> Vec<serde_json::Value> {
        audit_records(&self.audit_dir())
    }

    /// Sends `signal` and waits (bounded) for the process to exit.
    pub fn signal_and_wait(&mut self, signal: libc::c_int, grace: Duration) -> bool {
        let Some(child) = self.child.as_mut() else {
            return true;
        };
        if let Ok(pid) = libc::pid_t::try_from(child.id()) {
            // SAFETY: kill(2) on a child we spawned and have not reaped; touches no memory.
            unsafe {
                libc::kill(pid, signal);
            }
        }
        let start = Instant::now();
        while start.elapsed() < grace {
            if let Ok(Some(_)) = child.try_wait() {
                return true;
            }
            thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

/// Every complete record in an audit directory's segments, in file and line order.
pub fn audit_records(dir: &Path) -> Vec<serde_json::Value> {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|r| r.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    segs.retain(|p| p.extension().is_some_and(|x| x == "jsonl"));
    segs.sort();
    let mut out = Vec::new();
    for p in segs {
        let text = std::fs::read(&p).unwrap();
        let end = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        for line in text[..end].split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            out.push(serde_json::from_slice(line).expect("audit line is JSON"));
        }
    }
    out
}

/// The text of the newest checkpoint (`*.json`, names sort by time) in an audit directory.
pub fn last_checkpoint(dir: &Path) -> String {
    let mut ckpts: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    ckpts.sort();
    let last = ckpts
        .last()
        .unwrap_or_else(|| panic!("no checkpoint in {}", dir.display()));
    std::fs::read_to_string(last).unwrap()
}

/// Runs `phi-gateway audit verify --json`; returns the exit code and the parsed report.
pub fn audit_verify(dir: &Path, pubkey: &Path) -> (i32, serde_json::Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_phi-gateway"))
        .args(["audit", "verify", "--json", "--dir"])
        .arg(dir)
        .arg("--pubkey")
        .arg(pubkey)
        .output()
        .expect("run audit verify");
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "verify printed no JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), report)
}

/// The audit record of request `id` (panics with the records when absent).
pub fn audit_record_of<'a>(records: &'a [serde_json::Value], id: &str) -> &'a serde_json::Value {
    records
        .iter()
        .find(|r| r["request_id"] == id)
        .unwrap_or_else(|| panic!("no audit record for request {id}: {records:#?}"))
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child, Duration::from_secs(5));
        }
    }
}

/// SIGINT, wait up to `grace`, then SIGKILL. Returns how long the exit took, if it exited
/// on SIGINT within `grace`.
pub fn stop_child(child: &mut Child, grace: Duration) -> Option<Duration> {
    if let Ok(Some(_)) = child.try_wait() {
        return Some(Duration::ZERO);
    }
    let started = Instant::now();
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) with a pid we spawned and still own (not yet reaped, so it cannot
        // have been reused) and a valid signal number; it touches no memory.
        unsafe {
            libc::kill(pid, libc::SIGINT);
        }
    }
    while started.elapsed() < grace {
        if let Ok(Some(_)) = child.try_wait() {
            return Some(started.elapsed());
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// A minimal blocking HTTP/1.1 GET over plain TCP (the admin listener). Returns status and body.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    http_request(port, "GET", path)
}

/// A minimal blocking HTTP/1.1 request without a body over plain TCP. Returns status and body.
pub fn http_request(port: u16, method: &str, path: &str) -> Option<(u16, String)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        String::from_utf8_lossy(&dechunk(body.as_bytes()).0).into_owned()
    } else {
        body.to_string()
    };
    Some((status, body))
}

// === redis ===

/// A throwaway `redis-server` (Debian's package, installed by `.ci/setup test`) on a free
/// loopback port in a temp dir, no persistence; killed on drop. [`RedisServer::stop`] and
/// [`RedisServer::start_again`] take it down and bring it back on the same port mid-test.
pub struct RedisServer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// Extra `redis-server` arguments (TLS).
    args: Vec<String>,
}

impl RedisServer {
    /// Starts a plain-TCP server on a free loopback port and waits until it answers `PING`.
    pub fn start() -> Self {
        Self::start_with(Vec::new())
    }

    /// Starts with extra arguments (for TLS: `--port 0 --tls-port N …`); the readiness wait
    /// connects to `port` in clear unless the arguments disable it.
    pub fn start_with(args: Vec<String>) -> Self {
        let mut r = RedisServer {
            port: free_port(),
            dir: tempfile::Builder::new()
                .prefix("phi-gw-redis-")
                .tempdir()
                .unwrap(),
            child: None,
            args,
        };
        r.start_again();
        r
    }

    /// The temp dir (for certificates).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// (Re)starts the server on its port and waits (bounded) until it answers.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "redis-server already running");
        let exe = which("redis-server").unwrap_or_else(|| {
            panic!("redis-server not found; run `.ci/setup test` to install Debian's redis-server")
        });
        let mut cmd = Command::new(exe);
        cmd.arg("--bind")
            .arg("127.0.0.1")
            .arg("--save")
            .arg("")
            .arg("--appendonly")
            .arg("no")
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--daemonize")
            .arg("no");
        if self.args.is_empty() {
            cmd.arg("--port").arg(self.port.to_string());
        } else {
            cmd.args(&self.args);
        }
        let log = std::fs::File::create(self.dir.path().join("redis.log")).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.args.is_empty() && self.ping() {
                return;
            }
            let tls = SocketAddr::from(([127, 0, 0, 1], self.tls_port()));
            if !self.args.is_empty()
                && TcpStream::connect_timeout(&tls, Duration::from_millis(200)).is_ok()
            {
                return;
            }
            if let Some(Ok(Some(st))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("redis-server exited with {st}: {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer within 10 s: {}",
                self.log()
            );
            thread::sleep(Duration::from_millis(25));
        }
    }

    /// The `--tls-port` of a TLS server.
    pub fn tls_port(&self) -> u16 {
        self.args
            .windows(2)
            .find(|w| w[0] == "--tls-port")
            .and_then(|w| w[1].parse().ok())
            .unwrap_or(self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    /// Whether it answers `PING` in clear now.
    pub fn ping(&self) -> bool {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        if s.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut buf = [0u8; 16];
        matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
    }

    /// Every key, by `KEYS *` (a test server holds a handful).
    pub fn keys(&self) -> Vec<String> {
        let client = redis::Client::open(self.url()).unwrap();
        let mut c = client
            .get_connection_with_timeout(Duration::from_secs(2))
            .unwrap();
        let mut keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut c).unwrap();
        keys.sort();
        keys
    }

    /// Kills the server (SIGKILL: an outage, not a shutdown) and reaps it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The first `name` on `PATH`.
fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

// === clients ===

/// Everything the gateway writes for one HTTP/1.1 `GET path` (with the audit header and
/// `extra` header lines, each ending in `\r\n`), read to the end of the connection: for tests
/// that must see every byte of an answer, which a client library would hide. A refusal or a
/// held answer closes the connection; `read_to_end` stops there (the stream has a timeout).
pub fn raw_get_http1(gw: &Gateway, path: &str, extra: &str) -> String {
    let mut s = tls_stream(&gw.ca_pem_path(), gw.port());
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\n{AUDIT}: raw-get\r\n{extra}Connection: close\r\n\r\n"
    )
    .unwrap();
    s.flush().unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    String::from_utf8_lossy(&raw).into_owned()
}

/// A blocking TLS 1.3 stream to `127.0.0.1:port` (SNI `localhost`) trusting only `ca`, for
/// tests that must control exactly when each byte of a request is sent.
pub fn tls_stream(
    ca: &Path,
    port: u16,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("read CA") {
        roots.add(cert.expect("CA PEM")).expect("add CA");
    }
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).expect("client conn");
    let tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
    tcp.set_write_timeout(Some(TIMEOUT)).unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

/// A reqwest client: TLS 1.3 only (explicit ring provider, nothing process-global), trusting
/// only `ca`, ALPN `h2,http/1.1` when `h2` else `http/1.1`, 10 s timeout, no proxy.
pub fn client(ca: &Path, h2: bool) -> reqwest::Client {
    client_with_identity(ca, h2, None)
}

/// Like [`client`], presenting `identity` (certificate chain PEM, private key PEM) when the
/// server asks for a client certificate.
pub fn client_with_identity(
    ca: &Path,
    h2: bool,
    identity: Option<(&str, &str)>,
) -> reqwest::Client {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("read CA") {
        roots.add(cert.expect("CA PEM")).expect("add CA");
    }
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_root_certificates(roots);
    let mut cfg = match identity {
        Some((chain, key)) => {
            let chain: Vec<CertificateDer<'static>> =
                CertificateDer::pem_slice_iter(chain.as_bytes())
                    .map(|c| c.expect("client chain PEM"))
                    .collect();
            let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes())
                .expect("client key PEM");
            cfg.with_client_auth_cert(chain, key)
                .expect("client identity")
        }
        None => cfg.with_no_client_auth(),
    };
    cfg.alpn_protocols = if h2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    let mut b = reqwest::Client::builder()
        .use_preconfigured_tls(cfg)
        .timeout(TIMEOUT)
        .no_proxy();
    if !h2 {
        b = b.http1_only();
    }
    b.build().expect("reqwest client")
}

/// A parsed gateway refusal.
#[derive(Debug)]
pub struct Refusal {
    pub status: u16,
    pub json: serde_json::Value,
    pub raw: String,
    pub request_id: String,
}

impl Refusal {
    pub fn reason(&self) -> &str {
        self.json["reason"].as_str().unwrap_or("")
    }

    pub fn rules(&self) -> Vec<String> {
        self.json["rules"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Asserts a gateway refusal: `status`, JSON body with `reason`, an `error` string, and a
/// `request_id` equal to the `x-request-id` response header.
pub fn check_refusal(
    status: u16,
    headers: &[(String, String)],
    body: &str,
    want_status: u16,
    want_reason: &str,
) -> Refusal {
    assert_eq!(status, want_status, "status; body: {body}");
    let json: serde_json::Value = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("refusal body is not JSON ({e}): {body:?}"));
    assert_eq!(json["reason"], want_reason, "reason; body: {body}");
    assert!(
        json["error"].as_str().is_some_and(|s| !s.is_empty()),
        "error message missing: {body}"
    );
    let rid = json["request_id"]
        .as_str()
        .unwrap_or_else(|| panic!("request_id missing: {body}"))
        .to_string();
    assert!(!rid.is_empty(), "empty request_id: {body}");
    let header = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("x-request-id"))
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("x-request-id header missing; headers: {headers:?}"));
    assert_eq!(header, rid, "x-request-id header vs body request_id");
    let ct = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    assert!(ct.starts_with("application/json"), "content-type {ct:?}");
    Refusal {
        status,
        json,
        raw: body.to_string(),
        request_id: rid,
    }
}

/// Reads a reqwest response into (status, headers, body text, version).
pub async fn read_response(
    resp: reqwest::Response,
) -> (u16, Vec<(String, String)>, String, reqwest::Version) {
    let status = resp.status().as_u16();
    let version = resp.version();
    let headers = header_pairs(&resp);
    let body = resp.text().await.expect("read response body");
    (status, headers, body, version)
}

/// A response's headers as (name, value) pairs, values decoded lossily.
pub fn header_pairs(resp: &reqwest::Response) -> Vec<(String, String)> {
    resp.headers()
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// Sends a request and asserts it was refused with `status`/`reason`.
pub async fn expect_refusal(req: reqwest::RequestBuilder, status: u16, reason: &str) -> Refusal {
    let resp = req.send().await.expect("request failed at transport level");
    let (s, h, b, _) = read_response(resp).await;
    check_refusal(s, &h, &b, status, reason)
}

// === curl / openssl ===

/// What a curl run produced.
#[derive(Debug)]
pub struct CurlResult {
    pub exit: Option<i32>,
    pub status: u16,
    pub http_version: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub stderr: String,
}

/// Runs `curl -sS -m 10 --noproxy '*' --cacert CA … ARGS` and captures status, version,
/// headers and body.
pub fn curl(ca: &Path, args: &[&str]) -> CurlResult {
    let dir = tempfile::tempdir().unwrap();
    let body_file = dir.path().join("body");
    let head_file = dir.path().join("head");
    let out = Command::new("curl")
        .args(["-sS", "-m", "10", "--noproxy", "*", "--cacert"])
        .arg(ca)
        .arg("-o")
        .arg(&body_file)
        .arg("-D")
        .arg(&head_file)
        .args(["-w", "%{http_code} %{http_version}"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run curl");
    let w = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut parts = w.split_whitespace();
    let status = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let http_version = parts.next().unwrap_or("").to_string();
    let head = std::fs::read_to_string(&head_file).unwrap_or_default();
    // With 100 Continue there can be several header blocks; keep the last one.
    let last_block = head
        .split("\r\n\r\n")
        .filter(|b| !b.trim().is_empty())
        .last()
        .unwrap_or("");
    let headers = last_block
        .lines()
        .skip(1)
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    CurlResult {
        exit: out.status.code(),
        status,
        http_version,
        headers,
        body: std::fs::read_to_string(&body_file).unwrap_or_default(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `timeout 10 openssl s_client -connect 127.0.0.1:PORT -servername localhost ARGS`
/// with empty stdin.
pub fn openssl_s_client(port: u16, args: &[&str]) -> Output {
    Command::new("timeout")
        .arg("10")
        .arg("openssl")
        .arg("s_client")
        .arg("-connect")
        .arg(format!("127.0.0.1:{port}"))
        .args(["-servername", "localhost"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run openssl")
}

// === Prometheus text ===

/// One sample: metric name, labels, value.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// Parses the Prometheus text exposition format (comments skipped).
pub fn parse_metrics(scrape: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in scrape.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, labels, rest) = match line.find('{') {
            Some(open) => {
                let close = line.rfind('}').expect("closing brace");
                (
                    &line[..open],
                    parse_labels(&line[open + 1..close]),
                    &line[close + 1..],
                )
            }
            None => {
                let (n, r) = line.split_once(' ').unwrap_or((line, ""));
                (n, Vec::new(), r)
            }
        };
        let value = rest.split_whitespace().next().unwrap_or("");
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or(f64::NAN),
        };
        out.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    out
}

fn parse_labels(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let mut key = String::new();
        for c in chars.by_ref() {
            if c == '=' {
                break;
            }
            key.push(c);
        }
        if key.is_empty() {
            break;
        }
        if chars.next() != Some('"') {
            break;
        }
        let mut val = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => val.push('\n'),
                    Some(o) => val.push(o),
                    None => break,
                },
                '"' => break,
                o => val.push(o),
            }
        }
        out.push((key.trim().to_string(), val));
    }
    out
}

/// Sum of the samples named `name` whose labels include every pair in `labels` (0 if none).
pub fn metric_value(scrape: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    parse_metrics(scrape)
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.iter().any(|(sk, sv)| sk == k && sv == v))
        })
        .map(|s| s.value)
        .sum()
}

/// True when at least one sample named `name` exists.
pub fn has_metric(scrape: &str, name: &str) -> bool {
    parse_metrics(scrape).iter().any(|s| s.name == name)
}

// === misc ===

/// Deterministic pseudo-random bytes (xorshift64*), so generated tokens are reproducible.
pub fn pseudo_random_bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.max(1);
    (0..n)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

/// Writes `bytes` to a fresh file inside `dir` and returns its path.
pub fn write_temp(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// Asserts that a blocked body never reached the upstream: zero body bytes, no request the
/// upstream could consider complete, and no PHI in any header block it received.
pub fn assert_no_body_reached(up: &RecordingUpstream) {
    up.quiesce();
    assert_eq!(
        up.total_body_bytes(),
        0,
        "body bytes reached the upstream:\n{}",
        up.describe()
    );
    for r in up.requests() {
        assert!(
            !r.complete,
            "the upstream received a complete request for a blocked body:\n{}",
            up.describe()
        );
        assert!(
            !r.head.contains(SSN),
            "PHI in forwarded headers:\n{}",
            r.head
        );
    }
}

/// curl arguments for a chunked HTTP/1.1 POST of `file` (no Content-Length, no Expect).
pub fn chunked_post_args<'a>(file: &'a str, audit: &'a str, content_type: &'a str) -> Vec<String> {
    vec![
        "--http1.1".into(),
        "-X".into(),
        "POST".into(),
        "-H".into(),
        "Transfer-Encoding: chunked".into(),
        "-H".into(),
        "Expect:".into(),
        "-H".into(),
        format!("content-type: {content_type}"),
        "-H".into(),
        format!("{AUDIT}: {audit}"),
        "--data-binary".into(),
        format!("@{file}"),
    ]
}

/// Scrapes until `ready(scrape)` holds (metrics are written after the response is sent), at
/// most 3 s; returns the last scrape either way so the caller's assertions report it.
pub fn scrape_when(gw: &Gateway, ready: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let s = gw.scrape_metrics();
        if ready(&s) || Instant::now() > deadline {
            return s;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `phi-gateway scan ARGS` from the repository root with `stdin` as its input and waits
/// for it. The input is written from its own thread: the child may answer (or fail) before
/// it has read everything, and a large input must not dead-lock against a full stdout pipe.
pub fn run_scan(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_phi-gateway"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("scan")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn phi-gateway scan");
    let mut pipe = child.stdin.take().expect("stdin");
    let input = stdin.to_vec();
    let writer = thread::spawn(move || {
        let _ = pipe.write_all(&input);
    });
    let out = child.wait_with_output().expect("wait");
    let _ = writer.join();
    out
}
