//! Hostile HTTP/1.1 input over TLS 1.3 and broken upstreams.
//!
//! Each case asserts the exact answer, that nothing unintended reached the upstream, and that
//! the same gateway process is still up and serving a clean request afterwards. Requests are
//! hand-written bytes on a raw TLS stream, so the framing is exactly what an attacker would
//! send (no client library normalises it first). docs/hostile-input.md lists every case.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use crate::common::*;

pub(crate) type Tls = rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>;

// === raw HTTP/1.1 exchanges ===

/// One HTTP/1.1 response as the client received it.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Response {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts one of the gateway's JSON refusals (request id in body and header).
    pub(crate) fn refusal(&self, status: u16, reason: &str) -> Refusal {
        check_refusal(self.status, &self.headers, &self.text(), status, reason)
    }
}

/// Everything one connection returned.
#[derive(Debug)]
pub(crate) struct Exchange {
    pub(crate) raw: Vec<u8>,
    pub(crate) responses: Vec<Response>,
    /// The gateway closed the connection (FIN, close_notify or reset).
    pub(crate) closed: bool,
}

impl Exchange {
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.raw).into_owned()
    }

    /// The single response on this connection.
    pub(crate) fn only(&self) -> &Response {
        assert_eq!(
            self.responses.len(),
            1,
            "expected exactly one response, got:\n{}",
            self.text()
        );
        &self.responses[0]
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Parses consecutive responses; stops at the first incomplete one.
fn parse_responses(raw: &[u8]) -> Vec<Response> {
    let mut out = Vec::new();
    let mut rest = raw;
    while let Some(end) = find(rest, b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&rest[..end]).into_owned();
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let headers: Vec<(String, String)> = head
            .split("\r\n")
            .skip(1)
            .filter_map(|l| {
                let (k, v) = l.split_once(':')?;
                Some((k.trim().to_string(), v.trim().to_string()))
            })
            .collect();
        let after = &rest[end + 4..];
        let get = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.to_ascii_lowercase())
        };
        let (body, used) = if get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            match dechunk(after) {
                (b, Some(n)) => (b, n),
                _ => break,
            }
        } else {
            let len = get("content-length")
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if after.len() < len {
                break;
            }
            (after[..len].to_vec(), len)
        };
        out.push(Response {
            status,
            headers,
            body,
        });
        rest = &after[used..];
    }
    out
}

/// Opens a TLS 1.3 connection to the gateway.
pub(crate) fn connect(gw: &Gateway) -> Tls {
    tls_stream(&gw.ca_pem_path(), gw.port())
}

/// Reads until the gateway closes the connection, or until `idle` passes without a byte once
/// at least one complete response arrived; at most [`TIMEOUT`].
pub(crate) fn read_exchange(tls: &mut Tls, idle: Duration) -> Exchange {
    tls.sock
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let deadline = Instant::now() + TIMEOUT;
    let mut raw = Vec::new();
    let mut last = Instant::now();
    let mut buf = [0u8; 16 * 1024];
    let closed = loop {
        match tls.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => {
                raw.extend_from_slice(&buf[..n]);
                last = Instant::now();
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                let complete = !parse_responses(&raw).is_empty();
                if (complete && last.elapsed() > idle) || Instant::now() > deadline {
                    break false;
                }
            }
            // Unexpected EOF (no close_notify), reset: closed either way.
            Err(_) => break true,
        }
    };
    Exchange {
        responses: parse_responses(&raw),
        raw,
        closed,
    }
}

/// Sends `request` on a fresh connection and reads what comes back.
pub(crate) fn send(gw: &Gateway, request: &[u8]) -> Exchange {
    let mut tls = connect(gw);
    tls.write_all(request).expect("write request");
    tls.flush().unwrap();
    read_exchange(&mut tls, Duration::from_millis(1500))
}

/// The head of a request on the enforcing `fhir` route, up to (not including) the blank line.
pub(crate) fn head(method: &str, path: &str, audit: &str, extra: &str) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{AUDIT}: {audit}\r\ncontent-type: application/fhir+json\r\n{extra}"
    )
}

/// The answer pingora itself gives to a request it cannot parse, before any gateway code
/// runs: `400 Bad Request`, `Content-Length: 0`, no request id, connection closed.
fn assert_pingora_400(x: &Exchange) {
    let r = x.only();
    assert_eq!(r.status, 400, "{}", x.text());
    assert_eq!(r.header("content-length"), Some("0"), "{}", x.text());
    assert!(r.body.is_empty(), "{}", x.text());
    assert!(
        x.closed,
        "the connection must close after a 400:\n{}",
        x.text()
    );
}

/// The gateway process is the one we started, still running, and a clean request on a new
/// connection gets a prompt 200 from the upstream.
fn assert_serving(gw: &mut Gateway, up: &RecordingUpstream, label: &str) {
    assert!(gw.is_running(), "gateway process died\n{}", gw.logs());
    let path = format!("/fhir/Patient/alive-{label}");
    let before = up.requests().len();
    let started = Instant::now();
    let x = send(
        gw,
        format!(
            "{}connection: close\r\n\r\n",
            head("GET", &path, "alive", "")
        )
        .as_bytes(),
    );
    let r = x.only();
    assert_eq!(
        r.status,
        200,
        "clean request after `{label}`:\n{}",
        x.text()
    );
    assert!(
        started.elapsed() < TIMEOUT,
        "clean request took {:?}",
        started.elapsed()
    );
    let got = up.requests();
    assert!(
        got[before..]
            .iter()
            .any(|q| q.request_line() == format!("GET {path} HTTP/1.1")),
        "the clean request did not reach the upstream:\n{}",
        up.describe()
    );
}

/// Requests the upstream saw whose request line mentions `marker`.
fn upstream_lines_with(up: &RecordingUpstream, marker: &str) -> Vec<String> {
    up.requests()
        .iter()
        .filter(|r| r.head.contains(marker))
        .map(|r| r.request_line().to_string())
        .collect()
}

/// The gateway process is alive and answers a request it handles itself (404 `no_route`), for
/// cases whose upstream is broken on purpose.
fn assert_answers(gw: &mut Gateway) {
    assert!(gw.is_running(), "gateway process died\n{}", gw.logs());
    let x = send(
        gw,
        format!(
            "{}connection: close\r\n\r\n",
            head("GET", "/elsewhere/x", "alive", "")
        )
        .as_bytes(),
    );
    x.only().refusal(404, "no_route");
}

/// A `/proc/<pid>/status` field in KiB (`VmHWM`: peak resident set so far; `VmRSS`: now).
fn vm_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .strip_prefix(':')?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("{field} not in /proc/{pid}/status"))
}

/// Asserts the gateway's peak resident set grew by less than `bound_kib` since `hwm_before`.
fn assert_memory_bounded(gw: &Gateway, hwm_before: u64, bound_kib: u64, what: &str) {
    let hwm = vm_kib(gw.pid(), "VmHWM");
    let rss = vm_kib(gw.pid(), "VmRSS");
    assert!(
        hwm.saturating_sub(hwm_before) < bound_kib,
        "{what}: peak RSS grew {} KiB (from {hwm_before} to {hwm} KiB, now {rss} KiB), bound {bound_kib} KiB",
        hwm - hwm_before
    );
}

/// A request on the `fhir` route with `content-type` and a Content-Length body.
fn post(path: &str, audit: &str, content_type: &str, extra: &str, body: &[u8]) -> Vec<u8> {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\n{AUDIT}: {audit}\r\ncontent-type: {content_type}\r\n{extra}content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    req
}

/// Asserts the upstream received exactly one request for `path`, complete and byte for byte
/// `body`.
fn assert_forwarded_once(up: &RecordingUpstream, path: &str, body: &[u8]) {
    up.quiesce();
    let got: Vec<Recorded> = up
        .requests()
        .into_iter()
        .filter(|r| r.request_line() == format!("POST {path} HTTP/1.1"))
        .collect();
    assert_eq!(got.len(), 1, "{}", up.describe());
    assert!(got[0].complete, "{}", up.describe());
    assert!(
        got[0].body == body,
        "the forwarded body differs from the one sent"
    );
}

/// Asserts that no request the upstream received after the first `skip` carried a body byte
/// or could be taken as complete (a blocked request leaves at most its head upstream).
fn assert_no_body_after(up: &RecordingUpstream, skip: usize) {
    up.quiesce();
    for r in up.requests().iter().skip(skip) {
        assert!(
            r.raw_body.is_empty() && !r.complete,
            "a blocked body reached the upstream:\n{}",
            up.describe()
        );
    }
}

// === request smuggling ===

/// The request every smuggling case hides behind the first one.
const SMUGGLED: &str =
    "GET /fhir/smuggled HTTP/1.1\r\nHost: localhost\r\nx-hipaa-audit-id: smuggled\r\n\r\n";

/// CL.TE and TE.CL: pingora alone would frame by Transfer-Encoding and close afterwards; the
/// gateway refuses the ambiguity before connecting upstream.
#[test]
fn content_length_with_transfer_encoding_gets_400_and_nothing_upstream() {
    let up = RecordingUpstream::start();
    let mut gw = Gateway::start(GatewayOpts::new(up.addr()));
    for (name, framing, body) in [
        (
            "cl-te",
            "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n",
            "0\r\n\r\n",
        ),
        (
            "te-cl",
            "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n",
            "8\r\nSMUGGLED\r\n0\r\n\r\n",
        ),
        (
            "te-cl-same-length",
            "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
            "0\r\n\r\n",
        ),
    ] {
        let req = format!(
            "{}{framing}\r\n{body}{SMUGGLED}",
            head("POST", "/fhir/Patient", name, "")
        );
        let x = send(&gw, req.as_bytes());
        // Exactly one response: the smuggled GET was never parsed as a request.
        x.only().refusal(400, "bad_request");
        assert!(x.closed, "{name}: connection left open:\n{}", x.text());
    }
    up.assert_untouched("a request with both Content-Length and Transfer-Encoding");
    assert_serving(&mut gw, &up, "cl-te");
}

/// Content-Length values two parsers could read differently: pingora refuses them with its
/// own bare 400 before any gateway code runs (so no request id, no audit record).
#[test]
fn conflicting_or_malformed_content_length_gets_pingoras_400() {
    let up = RecordingUpstream::start();
    let mut gw = Gateway::start(GatewayOpts::new(up.addr()));
    for (name, framing) in [
        ("two-lines", "Content-Length: 2\r\nContent-Length: 80\r\n"),
        ("list", "Content-Length: 2, 80\r\n"),
        ("plus-sign", "Content-Length: +2\r\n"),
        ("negative", "Content-Length: -2\r\n"),
        ("trailing-junk", "Content-Length: 2x\r\n"),
    ] {
        let req = format!(
            "{}{framing}\r\n{{}}{SMUGGLED}",
            head("POST", "/fhir/Patient", name, "")
        );
        let x = send(&gw, req.as_bytes());
        assert_pingora_400(&x);
    }
    up.assert_untouched("a request with conflicting Content-Length");
    assert_serving(&mut gw, &up, "conflicting-cl");
}

/// Identical duplicates are legal (RFC 9110 §8.6) and pingora accepts them; the upstream gets
/// exactly one Content-Length, so a strict upstream cannot disagree about the framing.
#[test]
fn identical_duplicate_content_length_is_forwarded_with_one_header() {
    let up = RecordingUpstream::start();
    let mut gw = Gateway::start(GatewayOpts::new(up.addr()));
    for (name, framing) in [
        ("dup-lines", "Content-Length: 2\r\nContent-Length: 2\r\n"),
        ("dup-list", "Content-Length: 2, 2\r\n"),
    ] {
        let path = format!("/fhir/Patient/{name}");
        let req = format!(
            "{}{framing}connection: close\r\n\r\n{{}}",
            head("POST", &path, name, "")
        );
        let x = send(&gw, req.as_bytes());
        assert_eq!(x.only().status, 200, "{}", x.text());
        assert_forwarded_once(&up, &path, b"{}");
        let got = up
            .requests()
            .into_iter()
            .find(|r| r.request_line().contains(&path))
            .unwrap();
        let lines: Vec<&str> = got
            .head
            .split("\r\n")
            .filter(|l| l.to_ascii_lowercase().starts_with("content-length:"))
            .collect();
        assert_eq!(lines.len(), 1, "{}", got.head);
        assert_eq!(lines[0].split(':').nth(1).map(str::trim), Some("2"));
    }
    assert_serving(&mut gw, &up, "dup-cl");
}

/// Transfer-Encoding must end in `chunked` (pingora's 400 otherwise) and, at the gateway, be
/// nothing but `chunked` (501): `gzip, chunked` would reach the engine still gzip-coded, a
/// PHI bypass, and pingora would forward it labelled plain `chunked`.
#[test]
fn transfer_encoding_other_than_plain_chunked_is_refused() {
    use std::io::Write as _;
    let up = RecordingUpstream::start();
    let mut gw = Gateway::start(GatewayOpts::new(up.addr()));
    for (name, framing) in [
        (
            "chunked-identity",
            "Transfer-Encoding: chunked, identity\r\n",
        ),
        ("identity", "Transfer-Encoding: identity\r\n"),
        (
            "two-lines-chunked-first",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
        ),
    ] {
        let req = format!(
            "{}{framing}\r\n2\r\n{{}}\r\n0\r\n\r\n{SMUGGLED}",
            head("POST", "/fhir/Patient", name, "")
        );
        assert_pingora_400(&send(&gw, req.as_bytes()));
    }
    let http10 = format!(
        "POST /fhir/Patient HTTP/1.0\r\nHost: localhost\r\n{AUDIT}: h10\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n"
    );
    assert_pingora_400(&send(&gw, http10.as_bytes()));

    // Gzip as a transfer coding, carrying an SSN patient.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(ssn_patient().as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    for (name, framing) in [
        ("gzip-chunked", "Transfer-Encoding: gzip, chunked\r\n"),
        (
            "identity-then-chunked",
            "Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n",
        ),
        ("chunked-twice", "Transfer-Encoding: chunked, chunked\r\n"),
    ] {
        let mut req = format!(
            "{}{framing}\r\n{:x}\r\n",
            head("POST", "/fhir/Patient", name, ""),
            gz.len()
        )
        .into_bytes();
        req.extend_from_slice(&gz);
        req.extend_from_slice(b"\r\n0\r\n\r\n");
        let x = send(&gw, &req);
        x.only().refusal(501, "unsupported_transfer_encoding");
        assert!(x.closed, "{}", x.text());
    }
    up.assert_untouched("a request with an unsupported Transfer-Encoding");
    assert_serving(&mut gw, &up, "te");
}

/// Obsolete line folding is not accepted in requests (httparse), so a folded
/// `Transfer-Encoding` cannot be read one way here and another way upstream.
#[test]
fn obs_fold_header_lines_get_pingoras_400() {
    let up = RecordingUpstream::start();
    let mut gw = Gateway::start(GatewayOpts::new(up.addr()));
    for (name, framing) in [
        (
            "folded-te",
            "Transfer-Encoding: identity\r\n chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        ),
        (
            "folded-header",
            "x-note: first\r\n\tsecond\r\nContent-Length: 2\r\n\r\n{}",
        ),
    ] {
        let req = format!(
            "{}{framing}{SMUGGLED}",
            head("POST", "/fhir/Patient", name, "")
        );
        assert_pingora_400(&send(&gw, req.as_bytes()));
    }
    up.assert_untouched("an obs-fold request");
    assert_serving(&mut gw, &up, "obs-fold");
}

/// Bare LF line ends are accepted (httparse, as RFC 9112 §2.2 allows) and normalised: the
/// upstream gets a CRLF head built by pingora, so it cannot split the head differently. The
/// same checks apply: an SSN body is blocked, CL+TE refused. A bare CR is refused.
#[test]
fn bare_lf_line_endings_are_normalised_and_checked() {
    let up = RecordingUpstream::start();
    let mut gw = Gateway::start(GatewayOpts::new(up.addr()));
    let lf = |audit: &str, framing: &str, body: &str| {
        format!(
            "POST /fhir/Patient/{audit} HTTP/1.1\nHost: localhost\n{AUDIT}: {audit}\ncontent-type: application/fhir+json\n{framing}\n{body}"
        )
    };
    let x = send(
        &gw,
        lf("bare-lf", "Content-Length: 2\nconnection: close\n", "{}").as_bytes(),
    );
    assert_eq!(x.only().status, 200, "{}", x.text());
    assert_forwarded_once(&up, "/fhir/Patient/bare-lf", b"{}");
    let got = up.requests().into_iter().last().unwrap();
    assert!(
        got.head.matches('\n').count() == got.head.matches("\r\n").count(),
        "bare LF forwarded upstream:\n{:?}",
        got.head
    );

    let before = up.connections();
    let ssn = ssn_patient();
    let x = send(
        &gw,
        lf(
            "bare-lf-ssn",
            &format!("Content-Length: {}\n", ssn.len()),
            &ssn,
        )
        .as_bytes(),
    );
    x.only().refusal(403, "phi_detected");
    let x = send(
        &gw,
        lf(
            "bare-lf-clte",
            "Content-Length: 5\nTransfer-Encoding: chunked\n",
            &format!("0\r\n\r\n{SMUGGLED}"),
        )
        .as_bytes(),
    );
    x.only().refusal(400, "bad_request");
    let x = send(
        &gw,
        format!(
            "{}x-a: a\rContent-Length: 80\r\nContent-Length: 2\r\n\r\n{{}}",
            head("POST", "/fhir/Patient", "bare-cr", "")
        )
        .as_bytes(),
    );
    assert_pingora_400(&x);
    up.quiesce();
    // The SSN request's head went upstream before its body was judged (zero body bytes);
    // nothing else did.
    let after: Vec<Recorded> = up.requests().into_iter().skip(1).collect();
    assert!(
        after.len() <= 1 && up.connections() <= before + 1,
        "{}",
        up.describe()
    );
    for r in &after {
        assert!(
            r.request_line().contains("bare-lf-ssn"),
            "{}",
            up.describe()
        );
        assert!(r.raw_body.is_empty() && !r.complete, "{}", up.describe());
    }
    assert!(
        upstream_lines_with(&up, "smuggled").is_empty(),
        "{}",
        up.describe()
    );
    assert_serving(&mut gw, &up, "bare-lf");
}

/// A chunk size that overflows 64 bits: the gateway's 400 with a request id. The upstream got
/// the head (already inspected) and zero body bytes; the smuggled request never arrives.
#[test]
fn overflowing_chunk_size_gets_400_and_no_body_upstream() {
    let up = RecordingUpstream::start();
    let mut gw = Gateway::start(GatewayOpts::new(up.addr()));
    let req = format!(
        "{}Transfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n{{}}\r\n0\r\n\r\n{SMUGGLED}",
        head("POST", "/fhir/Patient", "overflow", "")
    );
    let x = send(&gw, req.as_bytes());
    x.only().refusal(400, "bad_request");
    assert!(x.closed, "{}", x.text());
    assert_no_body_reached(&up);
    assert_eq!(up.requests().len(), 1, "{}", up.describe());
    assert!(
        upstream_lines_with(&up, "smuggled").is_empty(),
        "{}",
        up.describe()
    );
    assert_serving(&mut gw, &up, "overflow");
}

// === malformed chunked bodies ===

/// Bad hex, a missing CRLF after chunk data, more data than the size said, a negative size, an
/// 80 KB chunk extension: 400 with a request id, zero body bytes upstream.
#[test]
fn malformed_chunked_bodies_get_400_and_no_body_upstream() {
    let up = RecordingUpstream::start();
    let mut gw = Gateway::start(GatewayOpts::new(up.addr()));
    let ext = "e=x;".repeat(20_000);
    let cases = [
        ("bad-hex", "zz\r\n{}\r\n0\r\n\r\n".to_string()),
        ("missing-crlf", "2\r\n{}XX0\r\n\r\n".to_string()),
        ("data-longer-than-size", "1\r\n{}\r\n0\r\n\r\n".to_string()),
        ("negative-size", "-2\r\n{}\r\n0\r\n\r\n".to_string()),
        ("extension-flood", format!("2;{ext}\r\n{{}}\r\n0\r\n\r\n")),
    ];
    for (name, body) in &cases {
        let req = format!(
            "{}Transfer-Encoding: chunked\r\n\r\n{body}{SMUGGLED}",
            head("POST", "/fhir/Patient", name, "")
        );
        let x = send(&gw, req.as_bytes());
        let r = x.only().refusal(400, "bad_request");
        assert!(!r.raw.contains("{}X"), "{}", r.raw);
        assert!(x.closed, "{name}:\n{}", x.text());
    }
    assert_no_body_reached(&up);
    assert!(up.requests().len() <= cases.len(), "{}", up.describe());
    assert!(
        upstream_lines_with(&up, "smuggled").is_empty(),
        "{}",
        up.describe()
    );
    assert_serving(&mut gw, &up, "bad-chunks");
}

/// A chunked body cut short by the client (close_notify after one chunk): nothing to answer
/// (the client is gone), the upstream got the head and zero body bytes, never a request it
/// could consider complete.
#[test]
fn truncated_chunked_body_forwards_no_body() {
    let up = RecordingUpstream::start();
    let mut gw = Gateway::start(GatewayOpts::new(up.addr()));
    let mut tls = connect(&gw);
    let req = format!(
        "{}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        head("POST", "/fhir/Patient", "truncated", "")
    );
    tls.write_all(req.as_bytes()).unwrap();
    tls.flush().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    tls.conn.send_close_notify();
    tls.flush().unwrap();
    tls.sock.shutdown(std::net::Shutdown::Write).unwrap();
    let x = read_exchange(&mut tls, Duration::from_millis(500));
    assert!(x.closed, "{}", x.text());
    assert!(x.responses.is_empty(), "{}", x.text());
    assert_no_body_reached(&up);
    assert_serving(&mut gw, &up, "truncated");
}

/// 20,000 one-byte chunks are reassembled, inspected and forwarded as one body.
#[test]
fn chunk_flood_is_reassembled_and_forwarded_exactly() {
    let up = RecordingUpstream::start();
    let mut gw = Gateway::start(GatewayOpts::new(up.addr()));
    let body = clean_large_json(20_000);
    let mut req = head(
        "POST",
        "/fhir/Observation/chunks",
        "chunk-flood",
        "Transfer-Encoding: chunked\r\nconnection: close\r\n",
    ) + "\r\n";
    for b in body.chars() {
        req.push_str(&format!("1\r\n{b}\r\n"));
    }
    req.push_str("0\r\n\r\n");
    let x = send(&gw, req.as_bytes());
    assert_eq!(x.only().status, 200, "{}", x.text());
    assert_forwarded_once(&up, "/fhir/Observation/chunks", body.as_bytes());
    assert_serving(&mut gw, &up, "chunk-flood");
}

// === header floods, long URIs, invalid UTF-8 ===

/// pingora caps a head at 256 headers and about 1 MiB (its bare 400); the gateway's own
/// `limits.max_header_bytes` (64 KiB) answers 431 below that. Nothing reaches the upstream.
#[test]
fn header_floods_get_431_or_pingoras_400() {
    let up = RecordingUpstream::start();
    let mut gw = Gateway::start(GatewayOpts::new(up.addr()));
    let with_headers = |audit: &str, headers: &str| {
        format!(
            "{}{headers}\r\n",
            head("GET", "/fhir/Patient/flood", audit, "")
        )
    };
    // 300 headers: over pingora's 256.
    let many: String = (0..300).map(|i| format!("x-h{i}: v\r\n")).collect();
    assert_pingora_400(&send(&gw, with_headers("count", &many).as_bytes()));
    // 200 × 6,000 bytes = 1.2 MB: over pingora's 1 MiB head.
    let total: String = (0..200)
        .map(|i| format!("x-h{i}: {}\r\n", "b".repeat(6000)))
        .collect();
    assert_pingora_400(&send(&gw, with_headers("total", &total).as_bytes()));
    // One 100 KiB header, and 80 × 1 KiB: pingora accepts both, the gateway's 64 KiB does not.
    let one = format!("x-big: {}\r\n", "a".repeat(100 * 1024));
    let x = send(&gw, with_headers("one-huge", &one).as_bytes());
    x.only().refusal(431, "headers_too_large");
    let spread: String = (0..80)
        .map(|i| format!("x-h{i}: {}\r\n", "c".repeat(1024)))
        .collect();
    let x = send(&gw, with_headers("spread", &spread).as_bytes());
    x.only().refusal(431, "headers_too_large");
    up.assert_untouched("a header flood");
    // Just under the limit is forwarded.
    let under: String = (0..50)
        .map(|i| format!("x-h{i}: {}\r\n", "d".repeat(1024)))
        .collect();
    let x = send(
        &gw,
        with_headers("under", &format!("{under}connection: close\r\n")).as_bytes(),
    );
    assert_eq!(x.only().status, 200, "{}", x.text());
    assert_serving(&mut gw, &up, "header-flood");
}

/// `limits.max_uri_bytes` (8 KiB) answers 414; beyond 64 KiB pingora's URI type refuses the
/// request line itself (bare 400). Nothing reaches the upstream.
#[test]
fn uris_over_the_limit_get_414_or_pingoras_400() {
    let up = RecordingUpstream::start();
    let mut gw = Gateway::start(GatewayOpts::new(up.addr()));
    let get = |audit: &str, query_len: usize| {
        let path = format!("/fhir/Patient?q={}", "c".repeat(query_len));
        format!("{}connection: close\r\n\r\n", head("GET", &path, audit, ""))
    };
    let x = send(&gw, get("uri-16k", 16 * 1024).as_bytes());
    x.only().refusal(414, "uri_too_long");
    assert_pingora_400(&send(&gw, get("uri-100k", 100 * 1024).as_bytes()));
    up.assert_untouched("an over-long URI");
    let x = send(&gw, get("uri-8000", 8000).as_bytes());
    assert_eq!(x.only().status, 200, "{}", x.text());
    assert_serving(&mut gw, &up, "long-uri");
}

/// Invalid UTF-8 never hides PHI: inspected header values and bodies are scanned through it
/// (lossy decoding keeps the ASCII digits), a malformed audit header is refused, and a clean
/// body with invalid UTF-8 is forwarded byte for byte.
#[test]
fn invalid_utf8_in_headers_and_bodies_does_not_hide_phi() {
    let up = RecordingUpstream::start();
    let mut o = GatewayOpts::new(up.addr());
    o.inspect_headers = vec!["x-patient-note".into()];
    let mut gw = Gateway::start(o);

    let mut req = head("GET", "/fhir/Patient/utf8-header", "utf8-header", "").into_bytes();
    req.extend_from_slice(b"x-patient-note: \xff\xfe ");
    req.extend_from_slice(SSN.as_bytes());
    req.extend_from_slice(b" \xc3\x28\r\n\r\n");
    send(&gw, &req).only().refusal(403, "phi_detected");

    let req = b"GET /fhir/Patient/utf8-audit HTTP/1.1\r\nHost: localhost\r\nx-hipaa-audit-id: ab\xffcd\r\n\r\n";
    send(&gw, req).only().refusal(403, "malformed_audit_header");
    up.assert_untouched("a request with PHI or a bad audit header");

    let wrap = |prefix: &[u8], suffix: &[u8]| {
        let mut b = prefix.to_vec();
        b.extend_from_slice(SSN.as_bytes());
        b.extend_from_slice(suffix);
        b
    };
    for (name, ct, body) in [
        (
            "json",
            "application/fhir+json",
            wrap(
                b"{\"note\":\"\xff\xfe\",\"identifier\":[{\"system\":\"http://hl7.org/fhir/sid/us-ssn\",\"value\":\"",
                b"\"}],\"x\":\"\xc3\x28\"}",
            ),
        ),
        (
            "json-raw-bytes-in-value",
            "application/json",
            wrap(b"{\"ssn\":\"\xe2\x82", b"\xf0\x28\"}"),
        ),
        (
            "form",
            "application/x-www-form-urlencoded",
            wrap(b"note=%ff%fe\xff&ssn=", b"&x=\xc3"),
        ),
        ("text", "text/plain", wrap(b"\xfe\xff SSN: ", b" \xc0\xaf")),
    ] {
        let x = send(&gw, &post("/fhir/Patient", name, ct, "", &body));
        x.only().refusal(403, "phi_detected");
    }
    assert_no_body_reached(&up);

    let clean = b"{\"resourceType\":\"Basic\",\"note\":\"\xff\xfe\xc3\x28 caf\xc3\xa9\"}".to_vec();
    let x = send(
        &gw,
        &post(
            "/fhir/Basic/utf8",
            "utf8-clean",
            "application/fhir+json",
            "",
            &clean,
        ),
    );
    assert_eq!(x.only().status, 200, "{}", x.text());
    assert_forwarded_once(&up, "/fhir/Basic/utf8", &clean);
    assert_serving(&mut gw, &up, "utf8");
}

// === slowloris ===

/// The head deadline the slowloris tests configure (`limits.header_timeout_ms`).
const HEAD_TIMEOUT: Duration = Duration::from_millis(1500);
/// The body deadline the slowloris tests configure (`limits.body_timeout_ms`).
const BODY_TIMEOUT: Duration = Duration::from_millis(1500);

/// Sends clean requests on fresh connections until `stop` is set; returns how many got a 200
/// and the slowest one's time.
fn clean_traffic(
    ca: std::path::PathBuf,
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<(usize, Duration)> {
    std::thread::spawn(move || {
        let mut ok = 0;
        let mut slowest = Duration::ZERO;
        let mut i = 0;
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            i += 1;
            let started = Instant::now();
            let mut tls = tls_stream(&ca, port);
            let req = format!(
                "{}connection: close\r\n\r\n",
                head(
                    "GET",
                    &format!("/fhir/Patient/bystander-{i}"),
                    "bystander",
                    ""
                )
            );
            tls.write_all(req.as_bytes()).unwrap();
            tls.flush().unwrap();
            let x = read_exchange(&mut tls, Duration::from_millis(200));
            assert_eq!(x.only().status, 200, "bystander {i}:\n{}", x.text());
            ok += 1;
            slowest = slowest.max(started.elapsed());
            std::thread::sleep(Duration::from_millis(100));
        }
        (ok, slowest)
    })
}

/// Writes `bytes` one at a time, `pause` apart, until the gateway closes the connection or
/// answers; returns when that happened (from the first byte) and what was answered.
fn trickle(tls: &mut Tls, bytes: &[u8], pause: Duration) -> (Duration, Vec<u8>) {
    tls.sock
        .set_read_timeout(Some(Duration::from_millis(10)))
        .unwrap();
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    for b in bytes {
        if tls.write_all(&[*b]).and_then(|()| tls.flush()).is_err() {
            break;
        }
        let deadline = Instant::now() + pause;
        while Instant::now() < deadline {
            match tls.read(&mut buf) {
                Ok(0) => return (started.elapsed(), got),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return (started.elapsed(), got),
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the slow client was never cut"
        );
    }
    // Everything sent (or the write failed): collect the rest of the answer.
    let x = read_exchange(tls, Duration::from_millis(500));
    got.extend_from_slice(&x.raw);
    (started.elapsed(), got)
}

/// Three clients trickle request heads one byte per 200 ms: each connection is closed when
/// `limits.header_timeout_ms` runs out, with no answer and nothing upstream, while clean
/// clients on other connections keep getting 200s. A keep-alive connection that sits idle
/// longer than the head timeout between two requests is not a slow client and is not cut.
#[test]
fn slowloris_on_request_heads_is_cut_while_other_clients_are_served() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let up = RecordingUpstream::start();
    let mut o = GatewayOpts::new(up.addr());
    o.limits = vec![format!("  header_timeout_ms: {}", HEAD_TIMEOUT.as_millis())];
    let mut gw = Gateway::start(o);
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let bystanders = clean_traffic(gw.ca_pem_path(), gw.port(), stop.clone());
    let slow: Vec<_> = (0..3)
        .map(|i| {
            let (ca, port) = (gw.ca_pem_path(), gw.port());
            std::thread::spawn(move || {
                let mut tls = tls_stream(&ca, port);
                let head = format!(
                    "GET /fhir/Patient/slowloris-{i} HTTP/1.1\r\nHost: localhost\r\n{AUDIT}: slow\r\nx-pad: {}\r\n\r\n",
                    "p".repeat(64)
                );
                trickle(&mut tls, head.as_bytes(), Duration::from_millis(200))
            })
        })
        .collect();
    for (i, t) in slow.into_iter().enumerate() {
        let (cut_after, answer) = t.join().unwrap();
        assert!(
            answer.is_empty(),
            "slow client {i} got an answer: {:?}",
            String::from_utf8_lossy(&answer)
        );
        // The head needs ~30 s at this pace; it must be cut at the deadline, not before.
        assert!(
            cut_after >= HEAD_TIMEOUT - Duration::from_millis(100)
                && cut_after < HEAD_TIMEOUT + Duration::from_secs(3),
            "slow client {i} cut after {cut_after:?}"
        );
    }
    stop.store(true, Ordering::SeqCst);
    let (ok, slowest) = bystanders.join().unwrap();
    assert!(
        ok >= 3,
        "only {ok} clean requests while the slow clients ran"
    );
    // A bound that proves no clean request waited for the slow ones (not a speed claim).
    assert!(
        slowest < Duration::from_secs(3),
        "slowest clean request {slowest:?}"
    );
    assert!(
        upstream_lines_with(&up, "slowloris").is_empty(),
        "{}",
        up.describe()
    );
    let scrape = scrape_when(&gw, |s| {
        metric_value(
            s,
            "phi_gateway_client_timeouts_total",
            &[("phase", "header")],
        ) >= 3.0
    });
    assert_eq!(
        metric_value(
            &scrape,
            "phi_gateway_client_timeouts_total",
            &[("phase", "header")]
        ),
        3.0,
        "{scrape}"
    );

    // Keep-alive: idle past the head timeout between two requests, then a second request.
    let mut tls = connect(&gw);
    let req = |n: u32| {
        format!(
            "{}\r\n",
            head("GET", &format!("/fhir/Patient/keepalive-{n}"), "ka", "")
        )
    };
    tls.write_all(req(1).as_bytes()).unwrap();
    tls.flush().unwrap();
    let x = read_exchange(&mut tls, Duration::from_millis(200));
    assert_eq!(x.only().status, 200, "{}", x.text());
    assert!(!x.closed, "{}", x.text());
    std::thread::sleep(HEAD_TIMEOUT + Duration::from_millis(700));
    tls.write_all(req(2).as_bytes()).unwrap();
    tls.flush().unwrap();
    let x = read_exchange(&mut tls, Duration::from_millis(200));
    assert_eq!(
        x.only().status,
        200,
        "idle keep-alive connection was cut:\n{}",
        x.text()
    );
    assert_serving(&mut gw, &up, "slowloris-head");
}

/// A client that trickles its body one byte per 200 ms gets 408 `client_timeout` once
/// `limits.body_timeout_ms` has passed since its head, another that stops mid-body gets the
/// same after one body timeout of silence; neither body (an SSN patient) reaches the
/// upstream, and clean clients keep getting 200s meanwhile.
#[test]
fn slowloris_on_request_bodies_gets_408_while_other_clients_are_served() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let up = RecordingUpstream::start();
    let mut o = GatewayOpts::new(up.addr());
    // The upstream read timer also runs during an upload; keep it out of the way here.
    o.read_ms = 20_000;
    o.limits = vec![format!("  body_timeout_ms: {}", BODY_TIMEOUT.as_millis())];
    let mut gw = Gateway::start(o);
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let bystanders = clean_traffic(gw.ca_pem_path(), gw.port(), stop.clone());
    let body = ssn_patient();
    let head_of = |name: &str| {
        format!(
            "{}content-length: {}\r\n\r\n",
            head("POST", "/fhir/Patient", name, ""),
            body.len()
        )
    };

    let mut tls = connect(&gw);
    tls.write_all(head_of("slow-body").as_bytes()).unwrap();
    tls.flush().unwrap();
    let (cut_after, answer) = trickle(&mut tls, body.as_bytes(), Duration::from_millis(200));
    let x = parse_responses(&answer);
    assert_eq!(x.len(), 1, "{}", String::from_utf8_lossy(&answer));
    x[0].refusal(408, "client_timeout");
    assert!(
        cut_after >= BODY_TIMEOUT - Duration::from_millis(300)
            && cut_after < BODY_TIMEOUT + Duration::from_secs(3),
        "trickling body cut after {cut_after:?}"
    );

    let mut tls = connect(&gw);
    tls.write_all(head_of("stalled-body").as_bytes()).unwrap();
    tls.write_all(&body.as_bytes()[..body.len() / 2]).unwrap();
    tls.flush().unwrap();
    let started = Instant::now();
    let x = read_exchange(&mut tls, Duration::from_millis(300));
    x.only().refusal(408, "client_timeout");
    assert!(
        started.elapsed() < BODY_TIMEOUT + Duration::from_secs(3),
        "stalled body answered after {:?}",
        started.elapsed()
    );

    stop.store(true, Ordering::SeqCst);
    let (ok, slowest) = bystanders.join().unwrap();
    assert!(
        ok >= 3,
        "only {ok} clean requests while the slow clients ran"
    );
    assert!(
        slowest < Duration::from_secs(3),
        "slowest clean request {slowest:?}"
    );
    let bodies: Vec<Recorded> = up
        .requests()
        .into_iter()
        .filter(|r| r.request_line().starts_with("POST"))
        .collect();
    assert!(
        bodies.iter().all(|r| r.raw_body.is_empty() && !r.complete),
        "{}",
        up.describe()
    );
    let scrape = scrape_when(&gw, |s| {
        metric_value(s, "phi_gateway_client_timeouts_total", &[("phase", "body")]) >= 2.0
    });
    assert_eq!(
        metric_value(
            &scrape,
            "phi_gateway_client_timeouts_total",
            &[("phase", "body")]
        ),
        2.0,
        "{scrape}"
    );
    assert_serving(&mut gw, &up, "slowloris-body");
}

/// When the upstream read timeout is shorter than the body timeout, pingora's upstream timer
/// fires first while the client is still uploading. The upstream has not received the request
/// yet, so the slow party is the client: 408 `client_timeout`, not 504, and no upstream error
/// is counted.
#[test]
fn slow_body_behind_a_short_upstream_read_timeout_is_408_not_504() {
    let up = RecordingUpstream::start();
    let mut o = GatewayOpts::new(up.addr());
    o.read_ms = 1000;
    o.limits = vec!["  body_timeout_ms: 20000".into()];
    let mut gw = Gateway::start(o);
    let body = clean_patient();
    let mut tls = connect(&gw);
    let h = format!(
        "{}content-length: {}\r\n\r\n",
        head("POST", "/fhir/Patient", "slow-vs-upstream", ""),
        body.len()
    );
    tls.write_all(h.as_bytes()).unwrap();
    tls.flush().unwrap();
    let (_, answer) = trickle(&mut tls, body.as_bytes(), Duration::from_millis(200));
    let x = parse_responses(&answer);
    assert_eq!(x.len(), 1, "{}", String::from_utf8_lossy(&answer));
    x[0].refusal(408, "client_timeout");
    assert_no_body_reached(&up);
    assert_eq!(
        gw.metric("phi_gateway_upstream_errors_total", &[("route", "fhir")]),
        0.0
    );
    assert_serving(&mut gw, &up, "slow-vs-upstream");
}

// === decompression bombs ===

/// Peak-RSS growth allowed while the gateway refuses every bomb below. The decoder stops at
/// its budget: `limits.max_decoded_bytes` (16 MiB) for a ~1 MiB body, 100 × the body size
/// (with a 1 MiB floor) for smaller ones. 40 MiB covers one 16 MiB output buffer with its
/// doubling slack, the 1 MiB body held back and allocator arenas (about 20 MiB was measured);
/// it is 1/25 of the 1 GiB the gzip, deflate, zstd and nested bombs expand to, and below the
/// 64 MiB of the br bomb (the slowest to build with a debug-build encoder).
const BOMB_MEMORY_BOUND_KIB: u64 = 40 * 1024;

/// `count` concatenated gzip members of `member` zero bytes each (a valid multi-member gzip;
/// compressing one member is enough).
fn gzip_members(member: usize, count: usize) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(&vec![0u8; member]).unwrap();
    enc.finish().unwrap().repeat(count)
}

/// A raw deflate stream of `count` MiB of zeros built from one compressed MiB: after a full
/// flush the compressor starts afresh, so the bytes for each further MiB repeat exactly.
fn deflate_repeated(count: usize) -> Vec<u8> {
    use flate2::{Compress, Compression, FlushCompress};
    let zeros = vec![0u8; 1 << 20];
    let mut c = Compress::new(Compression::best(), false);
    let mut segment = |input: &[u8], flush| {
        let mut out = Vec::with_capacity(64 * 1024);
        let mut consumed = 0;
        loop {
            let before_in = c.total_in();
            out.reserve(64 * 1024);
            c.compress_vec(&input[consumed..], &mut out, flush).unwrap();
            consumed += (c.total_in() - before_in) as usize;
            if consumed == input.len() && out.len() < out.capacity() {
                return out;
            }
        }
    };
    let first = segment(&zeros, FlushCompress::Full);
    let unit = segment(&zeros, FlushCompress::Full);
    assert_eq!(
        unit,
        segment(&zeros, FlushCompress::Full),
        "segments repeat"
    );
    let end = segment(&[], FlushCompress::Finish);
    let mut out = first;
    for _ in 1..count {
        out.extend_from_slice(&unit);
    }
    out.extend_from_slice(&end);
    out
}

/// `count` concatenated zstd frames of `frame` zero bytes each.
fn zstd_frames(frame: usize, count: usize) -> Vec<u8> {
    zstd::stream::encode_all(&vec![0u8; frame][..], 19)
        .unwrap()
        .repeat(count)
}

fn brotli(data: &[u8], quality: u32) -> Vec<u8> {
    let mut w = brotli::CompressorWriter::new(Vec::new(), 64 * 1024, quality, 24);
    for chunk in data.chunks(1 << 20) {
        w.write_all(chunk).unwrap();
    }
    w.into_inner()
}

/// gzip, deflate, zstd and br bombs, and two nested ones (`gzip, gzip` and gzip inside br):
/// each gets a clean 413 `decoded_body_too_large`, no body byte reaches the upstream, and the
/// gateway's peak RSS stays within [`BOMB_MEMORY_BOUND_KIB`].
#[test]
fn decompression_bombs_get_413_with_memory_bounded() {
    const GIB: u64 = 1 << 30;
    let up = RecordingUpstream::start();
    let mut o = GatewayOpts::new(up.addr());
    o.max_body_bytes = 4 * 1024 * 1024;
    let mut gw = Gateway::start(o);
    // Warm up: the first request allocates TLS and worker state that is not the bomb's doing.
    assert_serving(&mut gw, &up, "warm-up");
    let hwm_before = vm_kib(gw.pid(), "VmHWM");

    let gzip_gib = gzip_members(1 << 20, 1024);
    let zeros_br = {
        // 64 MiB of zeros (the brotli encoder is the slow part of this test in a debug build).
        let mut w = brotli::CompressorWriter::new(Vec::new(), 64 * 1024, 1, 24);
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..64 {
            w.write_all(&zeros).unwrap();
        }
        w.into_inner()
    };
    let nested_gzip = {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&gzip_gib).unwrap();
        enc.finish().unwrap()
    };
    let bombs: Vec<(&str, &str, Vec<u8>, u64)> = vec![
        ("gzip", "gzip", gzip_gib.clone(), GIB),
        ("deflate", "deflate", deflate_repeated(1024), GIB),
        ("zstd", "zstd", zstd_frames(1 << 20, 1024), GIB),
        ("br", "br", zeros_br, 64 << 20),
        ("gzip-in-gzip", "gzip, gzip", nested_gzip, GIB),
        ("gzip-in-br", "gzip, br", brotli(&gzip_gib, 5), GIB),
    ];
    let before = up.requests().len();
    for (name, ce, bomb, expands_to) in &bombs {
        assert!(
            BOMB_MEMORY_BOUND_KIB * 1024 < *expands_to,
            "{name} must expand beyond the memory bound"
        );
        assert!(
            (bomb.len() as u64) < 4 * 1024 * 1024,
            "{name}: {} bytes",
            bomb.len()
        );
        let x = send(
            &gw,
            &post(
                "/fhir/Binary",
                name,
                "application/octet-stream",
                &format!("content-encoding: {ce}\r\n"),
                bomb,
            ),
        );
        x.only().refusal(413, "decoded_body_too_large");

        assert_memory_bounded(&gw, hwm_before, BOMB_MEMORY_BOUND_KIB, name);
    }
    assert_no_body_after(&up, before);
    assert_serving(&mut gw, &up, "bombs");
}

// === huge structures ===

/// Peak-RSS growth allowed while the gateway inspects one of the documents below (each under
/// 1 MiB on the wire). It holds the body once, the parser's tree or the part list, and the
/// findings; 32 MiB is over 30 times the body and still catches anything quadratic.
const STRUCTURE_MEMORY_BOUND_KIB: u64 = 32 * 1024;

/// JSON nested 100,000 deep is deeper than the parser's recursion limit (128), so the engine
/// scans it as text: clean, it is forwarded byte for byte; with an SSN at the bottom, 403.
#[test]
fn json_nested_100k_deep_is_scanned_as_text() {
    let up = RecordingUpstream::start();
    let mut gw = Gateway::start(GatewayOpts::new(up.addr()));
    assert_serving(&mut gw, &up, "warm-up");
    let hwm_before = vm_kib(gw.pid(), "VmHWM");
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let x = send(
        &gw,
        &post(
            "/fhir/Basic/deep",
            "deep",
            "application/json",
            "",
            deep.as_bytes(),
        ),
    );
    assert_eq!(x.only().status, 200, "{}", x.text());
    assert_forwarded_once(&up, "/fhir/Basic/deep", deep.as_bytes());
    let before = up.requests().len();
    let deep_phi = format!("{}\"{SSN}\"{}", "[".repeat(100_000), "]".repeat(100_000));
    let x = send(
        &gw,
        &post(
            "/fhir/Basic/deep-phi",
            "deep-phi",
            "application/json",
            "",
            deep_phi.as_bytes(),
        ),
    );
    x.only().refusal(403, "phi_detected");
    assert_no_body_after(&up, before);
    assert_memory_bounded(&gw, hwm_before, STRUCTURE_MEMORY_BOUND_KIB, "deep JSON");
    assert_serving(&mut gw, &up, "deep-json");
}

/// 100,000 form parameters: clean, forwarded byte for byte; with an SSN in the last one, 403.
#[test]
fn form_with_100k_parameters_is_inspected_whole() {
    let up = RecordingUpstream::start();
    let mut gw = Gateway::start(GatewayOpts::new(up.addr()));
    assert_serving(&mut gw, &up, "warm-up");
    let hwm_before = vm_kib(gw.pid(), "VmHWM");
    let form: String = (0..100_000).map(|i| format!("f{i}=v&")).collect();
    let ct = "application/x-www-form-urlencoded";
    let x = send(
        &gw,
        &post("/fhir/Basic/form", "form", ct, "", form.as_bytes()),
    );
    assert_eq!(x.only().status, 200, "{}", x.text());
    assert_forwarded_once(&up, "/fhir/Basic/form", form.as_bytes());
    let before = up.requests().len();
    let form_phi = format!("{form}ssn={SSN}");
    let x = send(
        &gw,
        &post(
            "/fhir/Basic/form-phi",
            "form-phi",
            ct,
            "",
            form_phi.as_bytes(),
        ),
    );
    x.only().refusal(403, "phi_detected");
    assert_no_body_after(&up, before);
    assert_memory_bounded(
        &gw,
        hwm_before,
        STRUCTURE_MEMORY_BOUND_KIB,
        "100k form fields",
    );
    assert_serving(&mut gw, &up, "form");
}

/// multipart/form-data with 10,000 parts: clean, forwarded byte for byte; with an SSN in the
/// last part, 403.
#[test]
fn multipart_with_10k_parts_is_inspected_whole() {
    let up = RecordingUpstream::start();
    let mut gw = Gateway::start(GatewayOpts::new(up.addr()));
    assert_serving(&mut gw, &up, "warm-up");
    let hwm_before = vm_kib(gw.pid(), "VmHWM");
    let part = |name: &str, value: &str| {
        format!("--BND\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
    };
    let parts: String = (0..10_000)
        .map(|i| part(&format!("f{i}"), "value"))
        .collect();
    let ct = "multipart/form-data; boundary=BND";
    let clean = format!("{parts}--BND--\r\n");
    let x = send(&gw, &post("/fhir/Basic/mp", "mp", ct, "", clean.as_bytes()));
    assert_eq!(x.only().status, 200, "{}", x.text());
    assert_forwarded_once(&up, "/fhir/Basic/mp", clean.as_bytes());
    let before = up.requests().len();
    let phi = format!("{parts}{}--BND--\r\n", part("ssn", SSN));
    let x = send(
        &gw,
        &post("/fhir/Basic/mp-phi", "mp-phi", ct, "", phi.as_bytes()),
    );
    x.only().refusal(403, "phi_detected");
    assert_no_body_after(&up, before);
    assert_memory_bounded(
        &gw,
        hwm_before,
        STRUCTURE_MEMORY_BOUND_KIB,
        "10k multipart parts",
    );
    assert_serving(&mut gw, &up, "multipart");
}

// === broken upstreams ===

/// An upstream that resets, answers garbage or closes inside the response head: 502
/// `upstream_error` with a request id, promptly, echoing nothing of the request. (A refusing
/// upstream gets 502 `upstream_unavailable` and a hanging one 504: tests/gateway/upstream.rs.)
#[test]
fn upstream_breaking_before_its_response_head_gives_502() {
    for mode in [
        UpstreamMode::ResetInHeaders,
        UpstreamMode::Garbage,
        UpstreamMode::TruncatedHeaders,
    ] {
        let up = RecordingUpstream::start_with(mode);
        let mut gw = Gateway::start(GatewayOpts::new(up.addr()));
        let body = br#"{"resourceType":"Basic","note":"ZzBodyMarker"}"#;
        let started = Instant::now();
        let x = send(
            &gw,
            &post(
                "/fhir/Basic/ZzPathMarker",
                "ZzAuditMarker",
                "application/json",
                "",
                body,
            ),
        );
        let r = x.only().refusal(502, "upstream_error");
        assert!(
            started.elapsed() < TIMEOUT,
            "{mode:?}: {:?}",
            started.elapsed()
        );
        let lower = r.raw.to_ascii_lowercase();
        for marker in [
            "zzbodymarker",
            "zzpathmarker",
            "zzauditmarker",
            "ssh-2.0",
            "partial",
        ] {
            assert!(
                !lower.contains(marker),
                "{mode:?} echoed {marker}: {}",
                r.raw
            );
        }
        assert!(x.closed, "{mode:?}: {}", x.text());
        assert_eq!(up.requests().len(), 1, "{mode:?}: {}", up.describe());
        assert_answers(&mut gw);
    }
}

/// An upstream that sends a complete 200 head and then resets or closes inside the body: the
/// status is already on the wire, so the client gets exactly the bytes the upstream sent and
/// then the connection closes short of the declared length — never a gateway error spliced
/// into the body (a bug this test caught: the 502 JSON was appended to the partial body,
/// which then looked complete).
#[test]
fn upstream_breaking_inside_its_response_body_truncates_the_response() {
    for mode in [UpstreamMode::ResetInBody, UpstreamMode::TruncatedBody] {
        let up = RecordingUpstream::start_with(mode);
        let mut gw = Gateway::start(GatewayOpts::new(up.addr()));
        let x = send(
            &gw,
            &post(
                "/fhir/Basic/cut",
                "cut",
                "application/json",
                "",
                br#"{"a":"ZzBodyMarker"}"#,
            ),
        );
        assert!(x.closed, "{mode:?}: {}", x.text());
        assert!(
            x.responses.is_empty(),
            "{mode:?}: a truncated response parsed as complete:\n{}",
            x.text()
        );
        let text = x.text();
        let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
        assert!(head.starts_with("HTTP/1.1 200"), "{mode:?}: {text}");
        assert!(
            head.to_ascii_lowercase().contains("content-length: 64"),
            "{text}"
        );
        assert_eq!(body, PARTIAL_BODY, "{mode:?}: body bytes after the head");
        assert_answers(&mut gw);
    }
}

/// Regression: an upstream that answers from the request head alone (nginx `return 200`)
/// while the gateway still holds the body back used to have its 200 passed on, and the audit
/// record said `allow`, for a body that carried an SSN. The answer must be a 502 with our
/// body, the record an `error`, and the held body must never reach the upstream.
#[test]
fn upstream_answering_before_the_body_is_inspected_gets_502() {
    let up = RecordingUpstream::start_with(UpstreamMode::AnswerBeforeBody);
    let mut gw = Gateway::start(GatewayOpts::new(up.addr()));
    for (body, what) in [
        (ssn_patient().into_bytes(), "ssn"),
        (clean_patient().into_bytes(), "clean"),
    ] {
        let req = post(
            "/fhir/Patient",
            &format!("early-{what}"),
            "application/fhir+json",
            "",
            &body,
        );
        let split = req.len() - body.len();
        let mut tls = connect(&gw);
        tls.write_all(&req[..split]).expect("write head");
        tls.flush().unwrap();
        // Let the upstream see the head and answer before any body byte is sent.
        std::thread::sleep(Duration::from_millis(400));
        let _ = tls.write_all(&req[split..]);
        let _ = tls.flush();
        let x = read_exchange(&mut tls, Duration::from_millis(1500));
        let r = x.only().refusal(502, "upstream_early_response");
        assert!(
            !r.raw.contains("\"early\":true"),
            "{what}: upstream answer leaked: {}",
            r.raw
        );
    }
    up.quiesce();
    for rec in up.requests() {
        assert!(
            rec.body.is_empty(),
            "a held body reached the upstream: {}",
            up.describe()
        );
    }
    let records = gw.audit_records();
    for id in ["early-ssn", "early-clean"] {
        let rec = records
            .iter()
            .find(|r| r.to_string().contains(id))
            .unwrap_or_else(|| panic!("no audit record for {id}"));
        assert_eq!(rec["decision"], "error", "{id}: {rec}");
        assert_eq!(rec["reason"], "upstream_early_response", "{id}: {rec}");
    }
    assert_answers(&mut gw);
}
