//! Hostile input at the TLS and HTTP/2 layers: random bytes and plain HTTP on the TLS port,
//! sslscan / testssl.sh scans (only TLS 1.3 offered), and HTTP/2 abuse written as raw frames
//! over a TLS 1.3 stream with ALPN h2: rapid reset (CVE-2023-44487), CONTINUATION flood
//! (CVE-2024-27316), HPACK bomb, hostile SETTINGS and window updates, a SETTINGS flood
//! (CVE-2019-9515), too many streams, an oversized header list, idle connections and a
//! missing preface, and an SSN split across one-byte DATA frames.
//!
//! Every case asserts the exact protocol outcome (alert, GOAWAY code, RST_STREAM code,
//! status), that the gateway process is still alive and serving a normal client, what reached
//! the upstream, and for the floods that the gateway's CPU time and peak RSS stayed under a
//! stated bound. docs/hostile-tls-h2.md lists each case and its answer. TLS 1.0/1.1/1.2
//! refusal by a real client is in tls.rs; this file does not repeat it.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use crate::common::*;

// === process accounting ===

/// CPU time and memory of a process, from /proc.
#[derive(Debug, Clone, Copy)]
struct ProcStats {
    /// utime + stime.
    cpu: Duration,
    /// Resident set size now (VmRSS), KiB.
    rss_kib: u64,
    /// Peak resident set size so far (VmHWM), KiB.
    hwm_kib: u64,
}

fn proc_stats(pid: u32) -> ProcStats {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/pid/stat");
    // Fields after the `(comm)`: state is field 3, utime 14, stime 15 (proc(5)).
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    // SAFETY: sysconf reads a constant; no memory is touched.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/pid/status");
    let kib = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{key} missing in /proc/{pid}/status"))
    };
    ProcStats {
        cpu: Duration::from_millis(ticks * 1000 / hz),
        rss_kib: kib("VmRSS:"),
        hwm_kib: kib("VmHWM:"),
    }
}

/// The gateway process exists and is not a zombie (a crashed child stays a zombie until it
/// is reaped, so `kill(pid, 0)` would still succeed).
fn assert_process_alive(gw: &Gateway) {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", gw.pid()))
        .unwrap_or_else(|e| panic!("gateway process gone: {e}\n{}", gw.logs()));
    let state = stat[stat.rfind(')').expect("comm") + 2..]
        .chars()
        .next()
        .unwrap_or('?');
    assert!(
        !matches!(state, 'Z' | 'X'),
        "gateway process died (state {state})\n{}",
        gw.logs()
    );
}

/// The gateway is alive and answers a normal TLS 1.3 client over HTTP/1.1 and HTTP/2 with a
/// proxied 200; the upstream sees each of these two requests (ids `{tag}-h1`, `{tag}-h2`)
/// exactly once.
async fn assert_serves_normally(gw: &Gateway, up: &RecordingUpstream, tag: &str) {
    assert_process_alive(gw);
    for h2 in [false, true] {
        let id = format!("{tag}-{}", if h2 { "h2" } else { "h1" });
        let resp = gw
            .client(h2)
            .get(gw.url(&format!("/fhir/Patient/{id}")))
            .header(AUDIT, &id)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{id}: a normal client was not served: {e}\n{}", gw.logs()));
        assert_eq!(resp.status().as_u16(), 200, "{id}");
        let want = if h2 {
            reqwest::Version::HTTP_2
        } else {
            reqwest::Version::HTTP_11
        };
        assert_eq!(resp.version(), want, "{id}");
    }
    up.quiesce();
    // Only these two requests carry this tag (the attack's own requests are checked by each
    // test).
    let mine: Vec<String> = up
        .request_lines()
        .into_iter()
        .filter(|l| l.contains(&format!("/fhir/Patient/{tag}-")))
        .collect();
    assert_eq!(
        mine,
        [
            format!("GET /fhir/Patient/{tag}-h1 HTTP/1.1"),
            format!("GET /fhir/Patient/{tag}-h2 HTTP/1.1"),
        ],
        "{}",
        up.describe()
    );
}

// === raw bytes on the TLS port ===

/// Writes `bytes` to the TLS port on a plain TCP connection and reads whatever comes back
/// until the server closes (≤ 10 s). Returns the bytes read and whether the server closed.
fn raw_exchange(port: u16, bytes: &[u8]) -> (Vec<u8>, bool) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.set_write_timeout(Some(TIMEOUT)).unwrap();
    // The server may close after the first record it cannot parse; a failed write of the
    // rest is part of the expected outcome, not an error.
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let start = Instant::now();
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (out, true),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            // A reset after unread input counts as a close.
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return (out, true),
            Err(_) => return (out, false),
        }
        if start.elapsed() > TIMEOUT {
            return (out, false);
        }
    }
}

/// A TLS 1.2-framed fatal alert record (content type 21, legacy version 3.3, length 2,
/// level fatal) with `description`, as rustls sends it before any handshake.
fn fatal_alert(description: u8) -> Vec<u8> {
    vec![0x15, 0x03, 0x03, 0x00, 0x02, 0x02, description]
}

/// TLS alert `decode_error` (RFC 8446 §6.2).
const ALERT_DECODE_ERROR: u8 = 50;

#[tokio::test]
async fn random_bytes_on_the_tls_port_get_an_alert_and_close() {
    let up = RecordingUpstream::start();
    let gw = Gateway::start(GatewayOpts::new(up.addr()));
    // Three shapes of garbage: random bytes (first byte forced away from the handshake
    // content type), random bytes behind a plausible handshake record header, and a
    // handshake record with an absurd length.
    let mut random = pseudo_random_bytes(0x5eed, 64 * 1024);
    random[0] = 0x99;
    let mut framed = vec![0x16, 0x03, 0x01, 0x40, 0x00];
    framed.extend(pseudo_random_bytes(0xbad, 16 * 1024));
    let huge_record = vec![0x16, 0x03, 0x01, 0xff, 0xff, 0x01, 0x00, 0x00];
    // What rustls (0.23, pinned by Cargo.lock) answers each with, before closing:
    // random → `InvalidContentType` → fatal decode_error alert; a handshake record whose
    // inner message claims more than rustls accepts → `HandshakePayloadTooLarge` → close
    // without an alert; an oversized record → `MessageTooLarge` → decode_error alert.
    for (name, bytes, want) in [
        ("random", random, fatal_alert(ALERT_DECODE_ERROR)),
        ("handshake header + random", framed, Vec::new()),
        (
            "65535-byte handshake record",
            huge_record,
            fatal_alert(ALERT_DECODE_ERROR),
        ),
    ] {
        let (reply, closed) = raw_exchange(gw.port(), &bytes);
        assert!(closed, "{name}: the gateway did not close the connection");
        assert_eq!(reply, want, "{name}: got {reply:02x?}");
    }
    up.assert_untouched("garbage on the TLS port");
    assert_serves_normally(&gw, &up, "after-garbage").await;
}

#[tokio::test]
async fn plain_http_on_the_tls_port_gets_an_alert_and_is_not_logged() {
    let up = RecordingUpstream::start();
    let gw = Gateway::start(GatewayOpts::new(up.addr()));
    // A plain HTTP/1.1 request with an audit id and PHI in the path: it must get no HTTP
    // answer, reach nothing, and its bytes must not show up in the gateway's logs.
    let req = format!(
        "GET /fhir/Patient?ssn={SSN} HTTP/1.1\r\nHost: localhost\r\n{AUDIT}: plain-http\r\n\r\n"
    );
    let (reply, closed) = raw_exchange(gw.port(), req.as_bytes());
    assert!(closed, "the gateway did not close the connection");
    assert_eq!(
        reply,
        fatal_alert(ALERT_DECODE_ERROR),
        "expected a fatal decode_error alert, got {:?}",
        String::from_utf8_lossy(&reply)
    );
    // Nothing HTTP-shaped comes back (no "400 plain HTTP sent to HTTPS port" echo page).
    assert!(!String::from_utf8_lossy(&reply).contains("HTTP/"));
    up.assert_untouched("plain HTTP on the TLS port");
    assert_serves_normally(&gw, &up, "after-plain-http").await;
    let logs = gw.logs();
    assert!(
        !logs.contains(SSN) && !logs.contains("plain-http"),
        "request bytes in the logs:\n{logs}"
    );
}

// === sslscan / testssl.sh ===

/// Runs `program args` with a hard time limit (coreutils `timeout`), panicking when the
/// program is missing: .ci/setup installs it, so its absence is a broken setup, not a skip.
fn run_scanner(program: &str, limit_s: u32, args: &[&str]) -> String {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "`{program}` is not installed: run `.ci/setup test` (it installs sslscan and testssl.sh)"
    );
    let out = Command::new("timeout")
        .arg(limit_s.to_string())
        .arg(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert_ne!(
        out.status.code(),
        Some(124),
        "{program} exceeded its {limit_s} s limit"
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A reference server that offers TLS 1.2 and 1.3 (`openssl s_server`, certificate from
/// `dir`), so each scanner is shown to detect TLS 1.2 when it is there: without that, "TLS
/// 1.2 not offered" could also mean a scanner that cannot see it.
struct ReferenceServer {
    child: std::process::Child,
    port: u16,
}

impl ReferenceServer {
    fn start(dir: &Path) -> Self {
        let port = free_port();
        let child = Command::new("openssl")
            .args(["s_server", "-quiet", "-www", "-tls1_2"])
            .arg("-accept")
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(dir.join("server.pem"))
            .arg("-key")
            .arg(dir.join("server.key"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("openssl s_server");
        let deadline = Instant::now() + TIMEOUT;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "openssl s_server never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, port }
    }
}

impl Drop for ReferenceServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `sslscan --xml=-` of 127.0.0.1:`port`, protocols and cipher suites only.
fn sslscan(port: u16) -> String {
    let target = format!("127.0.0.1:{port}");
    run_scanner(
        "sslscan",
        60,
        &[
            "--no-colour",
            "--no-heartbleed",
            "--no-compression",
            "--no-fallback",
            "--no-renegotiation",
            "--no-groups",
            "--no-check-certificate",
            "--timeout=5",
            "--xml=-",
            &target,
        ],
    )
}

/// `(type version, enabled)` of every `<protocol .../>` in sslscan's XML.
fn sslscan_protocols(xml: &str) -> Vec<(String, bool)> {
    xml_elements(xml, "protocol")
        .iter()
        .map(|attrs| {
            (
                format!("{} {}", attr(attrs, "type"), attr(attrs, "version")),
                attr(attrs, "enabled") == "1",
            )
        })
        .collect()
}

/// `(sslversion, cipher)` of every accepted `<cipher .../>` in sslscan's XML.
fn sslscan_ciphers(xml: &str) -> Vec<(String, String)> {
    xml_elements(xml, "cipher")
        .iter()
        .map(|a| (attr(a, "sslversion"), attr(a, "cipher")))
        .collect()
}

/// The attribute text of every `<name ...>` element (sslscan's flat XML needs no more).
fn xml_elements<'a>(xml: &'a str, name: &str) -> Vec<&'a str> {
    let open = format!("<{name} ");
    xml.match_indices(&open)
        .map(|(i, _)| {
            let rest = &xml[i + open.len()..];
            &rest[..rest.find('>').unwrap_or(rest.len())]
        })
        .collect()
}

fn attr(attrs: &str, key: &str) -> String {
    let pat = format!("{key}=\"");
    attrs
        .find(&pat)
        .map(|i| {
            let v = &attrs[i + pat.len()..];
            v[..v.find('"').unwrap_or(v.len())].to_string()
        })
        .unwrap_or_default()
}

/// What every scan of the gateway must show: TLS 1.3 and nothing else.
const EXPECTED_PROTOCOLS: [(&str, bool); 6] = [
    ("ssl 2", false),
    ("ssl 3", false),
    ("tls 1.0", false),
    ("tls 1.1", false),
    ("tls 1.2", false),
    ("tls 1.3", true),
];

/// The TLS 1.3 suites of rustls' ring provider, all of which the gateway offers.
const TLS13_SUITES: [&str; 3] = [
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
];

#[tokio::test]
async fn sslscan_reports_only_tls13_offered() {
    let up = RecordingUpstream::start();
    let gw = Gateway::start(GatewayOpts::new(up.addr()));

    // Control: sslscan sees TLS 1.2 where it is offered.
    let reference = ReferenceServer::start(gw.files.dir.path());
    let xml = sslscan(reference.port);
    let protos = sslscan_protocols(&xml);
    assert!(
        protos.contains(&("tls 1.2".to_string(), true)),
        "sslscan did not detect TLS 1.2 on the reference server:\n{xml}"
    );
    drop(reference);

    let xml = sslscan(gw.port());
    let protos = sslscan_protocols(&xml);
    let want: Vec<(String, bool)> = EXPECTED_PROTOCOLS
        .iter()
        .map(|(p, e)| (p.to_string(), *e))
        .collect();
    assert_eq!(protos, want, "sslscan protocols:\n{xml}");
    let mut ciphers = sslscan_ciphers(&xml);
    ciphers.sort();
    let want: Vec<(String, String)> = TLS13_SUITES
        .iter()
        .map(|c| ("TLSv1.3".to_string(), c.to_string()))
        .collect();
    assert_eq!(ciphers, want, "sslscan cipher suites:\n{xml}");

    up.assert_untouched("an sslscan scan");
    assert_serves_normally(&gw, &up, "after-sslscan").await;
}

/// `testssl -p -E` (protocols via its own sockets, then ciphers per protocol), JSON findings.
fn testssl(port: u16, with_ciphers: bool) -> Vec<serde_json::Value> {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("testssl.json");
    let target = format!("127.0.0.1:{port}");
    let json_arg = json.to_str().unwrap().to_string();
    let mut args = vec![
        "--quiet",
        "--color",
        "0",
        "--warnings",
        "batch",
        "--nodns",
        "none",
        "--connect-timeout",
        "5",
        "--openssl-timeout",
        "5",
        "--jsonfile",
        &json_arg,
        "-p",
    ];
    if with_ciphers {
        args.push("-E");
    }
    args.push(&target);
    let text = run_scanner("testssl", 180, &args);
    let findings =
        std::fs::read(&json).unwrap_or_else(|e| panic!("testssl wrote no JSON ({e}):\n{text}"));
    serde_json::from_slice(&findings)
        .unwrap_or_else(|e| panic!("testssl JSON unreadable ({e}):\n{text}"))
}

/// The `finding` of the testssl result with `id`.
fn finding<'a>(findings: &'a [serde_json::Value], id: &str) -> &'a str {
    findings
        .iter()
        .find(|f| f["id"] == id)
        .and_then(|f| f["finding"].as_str())
        .unwrap_or_else(|| panic!("testssl has no `{id}` finding: {findings:#?}"))
}

#[tokio::test]
async fn testssl_reports_only_tls13_offered() {
    let up = RecordingUpstream::start();
    let gw = Gateway::start(GatewayOpts::new(up.addr()));

    // Control: testssl sees TLS 1.2 where it is offered.
    let reference = ReferenceServer::start(gw.files.dir.path());
    let findings = testssl(reference.port, false);
    assert_eq!(
        finding(&findings, "TLS1_2"),
        "offered",
        "testssl did not detect TLS 1.2 on the reference server"
    );
    drop(reference);

    let findings = testssl(gw.port(), true);
    for (id, want) in [
        ("SSLv2", "not offered"),
        ("SSLv3", "not offered"),
        ("TLS1", "not offered"),
        ("TLS1_1", "not offered"),
        ("TLS1_2", "not offered"),
    ] {
        assert_eq!(finding(&findings, id), want, "testssl {id}");
    }
    assert!(
        finding(&findings, "TLS1_3").starts_with("offered"),
        "testssl TLS1_3: {findings:#?}"
    );
    // Cipher suites per protocol: only TLS 1.3 entries, exactly rustls' three suites.
    let mut suites: Vec<String> = findings
        .iter()
        .filter_map(|f| {
            let id = f["id"].as_str()?;
            let rest = id.strip_prefix("cipher-")?;
            assert!(
                rest.starts_with("tls1_3_"),
                "testssl lists a non-TLS 1.3 cipher: {f}"
            );
            f["finding"]
                .as_str()?
                .split_whitespace()
                .last()
                .map(str::to_string)
        })
        .collect();
    suites.sort();
    assert_eq!(suites, TLS13_SUITES, "testssl cipher suites: {findings:#?}");
    // ALPN offers h2 and http/1.1.
    assert_eq!(finding(&findings, "ALPN_HTTP2"), "h2");

    // testssl also sends an HTTP GET without an audit id: refused, nothing upstream.
    up.assert_untouched("a testssl scan");
    assert_serves_normally(&gw, &up, "after-testssl").await;
}

// === raw HTTP/2 over TLS 1.3 ===

/// HTTP/2 frame types (RFC 9113 §6).
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;
/// Frame flags.
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
/// Error codes (RFC 9113 §7).
const PROTOCOL_ERROR: u32 = 0x1;
const FLOW_CONTROL_ERROR: u32 = 0x3;
const CANCEL: u32 = 0x8;
const ENHANCE_YOUR_CALM: u32 = 0xb;
/// SETTINGS identifiers.
const SETTINGS_ENABLE_PUSH: u16 = 0x2;
const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;
const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
const SETTINGS_MAX_FRAME_SIZE: u16 = 0x5;
const SETTINGS_MAX_HEADER_LIST_SIZE: u16 = 0x6;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    assert!(len < 1 << 24);
    let mut f = Vec::with_capacity(9 + len);
    f.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
    f.push(kind);
    f.push(flags);
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn settings_frame(values: &[(u16, u32)]) -> Vec<u8> {
    let mut p = Vec::new();
    for (id, v) in values {
        p.extend_from_slice(&id.to_be_bytes());
        p.extend_from_slice(&v.to_be_bytes());
    }
    frame(SETTINGS, 0, 0, &p)
}

fn rst_frame(stream: u32, code: u32) -> Vec<u8> {
    frame(RST_STREAM, 0, stream, &code.to_be_bytes())
}

fn window_update_frame(stream: u32, increment: u32) -> Vec<u8> {
    frame(WINDOW_UPDATE, 0, stream, &increment.to_be_bytes())
}

/// HPACK integer with an `n`-bit prefix, `flags` in the bits above it (RFC 7541 §5.1).
fn hpack_int(dst: &mut Vec<u8>, n: u8, flags: u8, mut v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        dst.push(flags | v as u8);
        return;
    }
    dst.push(flags | max as u8);
    v -= max;
    while v >= 128 {
        dst.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    dst.push(v as u8);
}

/// Literal header field without indexing, new name, no Huffman (RFC 7541 §6.2.2): the
/// simplest encoding, and it leaves the server's dynamic table untouched.
fn hpack_literal(dst: &mut Vec<u8>, name: &str, value: &[u8]) {
    dst.push(0x00);
    hpack_int(dst, 7, 0, name.len());
    dst.extend_from_slice(name.as_bytes());
    hpack_int(dst, 7, 0, value.len());
    dst.extend_from_slice(value);
}

/// The header block of a request to `path` carrying the audit header `audit`.
fn request_block(method: &str, path: &str, audit: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut b = Vec::new();
    for (n, v) in [
        (":method", method),
        (":scheme", "https"),
        (":authority", "localhost"),
        (":path", path),
        (AUDIT, audit),
    ]
    .into_iter()
    .chain(extra.iter().copied())
    {
        hpack_literal(&mut b, n, v.as_bytes());
    }
    b
}

/// HPACK Huffman codes of the ten digits (RFC 7541 Appendix B): (code, bit length).
const HUFFMAN_DIGITS: [(u32, u32); 10] = [
    (0x0, 5),
    (0x1, 5),
    (0x2, 5),
    (0x19, 6),
    (0x1a, 6),
    (0x1b, 6),
    (0x1c, 6),
    (0x1d, 6),
    (0x1e, 6),
    (0x1f, 6),
];

/// Decodes a Huffman-coded string of digits (a `:status` value); `None` for anything else.
fn huffman_digits(bytes: &[u8]) -> Option<String> {
    let total = bytes.len() as u32 * 8;
    let bit = |i: u32| (bytes[(i / 8) as usize] >> (7 - i % 8)) & 1;
    let (mut out, mut pos) = (String::new(), 0u32);
    'next: while pos < total {
        for (digit, (code, len)) in HUFFMAN_DIGITS.iter().enumerate() {
            if pos + len > total {
                continue;
            }
            let v = (0..*len).fold(0u32, |acc, k| acc << 1 | bit(pos + k) as u32);
            if v == *code {
                out.push(char::from(b'0' + digit as u8));
                pos += len;
                continue 'next;
            }
        }
        // What is left must be EOS padding: fewer than 8 one-bits.
        let rest = total - pos;
        return (rest < 8 && (pos..total).all(|i| bit(i) == 1)).then_some(out);
    }
    Some(out)
}

/// The `:status` of the first response on a connection: h2 puts it first and, with an empty
/// dynamic table, either indexes a static entry (RFC 7541 Appendix A, 8..=14) or writes a
/// literal value (Huffman-coded) under the static `:status` name.
fn response_status(block: &[u8]) -> Option<u16> {
    const STATIC: [(u8, u16); 7] = [
        (8, 200),
        (9, 204),
        (10, 206),
        (11, 304),
        (12, 400),
        (13, 404),
        (14, 500),
    ];
    let first = *block.first()?;
    if first & 0x80 != 0 {
        return STATIC.iter().find(|(i, _)| *i == first & 0x7f).map(|x| x.1);
    }
    let name_index = if first & 0xc0 == 0x40 {
        first & 0x3f
    } else {
        first & 0x0f
    };
    if !(8..=14).contains(&name_index) {
        return None;
    }
    let len_byte = *block.get(1)?;
    let len = (len_byte & 0x7f) as usize;
    let raw = block.get(2..2 + len)?;
    let text = if len_byte & 0x80 != 0 {
        huffman_digits(raw)?
    } else {
        String::from_utf8(raw.to_vec()).ok()?
    };
    text.parse().ok()
}

/// One received frame.
#[derive(Debug, Clone)]
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

/// A GOAWAY as received.
#[derive(Debug, Clone, PartialEq, Eq)]
struct GoAway {
    last_stream: u32,
    code: u32,
    debug: String,
}

/// A hand-driven HTTP/2 client connection over rustls TLS 1.3 (ALPN h2) on a non-blocking
/// socket, so a test can keep writing a flood while it watches for the server's GOAWAY, and
/// see exactly which frames came back.
struct RawH2 {
    tls: rustls::ClientConnection,
    tcp: TcpStream,
    inbuf: Vec<u8>,
    frames: Vec<Frame>,
    /// The peer closed (EOF, reset, TLS close_notify or a fatal TLS error): nothing more
    /// can be read.
    closed: bool,
    /// A write failed (the peer closed or reset): nothing more can be sent, but what the
    /// peer sent before closing (its GOAWAY) may still be waiting to be read.
    write_failed: bool,
    /// Application bytes accepted by the TLS layer so far.
    sent: usize,
    /// Answer the server's SETTINGS with an ACK.
    auto_ack: bool,
    /// Control frames (SETTINGS ACKs) waiting to be sent. They go out only at the start of
    /// the next `send`/`wait_for`, never inside a frame the test is still writing.
    ctrl: Vec<u8>,
    /// Do not read from the socket (a client that never reads what the server sends).
    read_paused: bool,
}

impl RawH2 {
    /// Connects, completes the TLS 1.3 handshake with ALPN `h2` only, sends the client
    /// preface with `settings`, and waits until the server's SETTINGS arrived and were
    /// acknowledged, so nothing the client still owes interleaves with what a test sends.
    fn connect(gw: &Gateway, settings: &[(u16, u32)]) -> Self {
        Self::connect_settled(&gw.ca_pem_path(), gw.port(), settings)
    }

    fn connect_settled(ca: &Path, port: u16, settings: &[(u16, u32)]) -> Self {
        let mut h2 = Self::connect_tls(ca, port);
        let mut hello = PREFACE.to_vec();
        hello.extend(settings_frame(settings));
        assert!(h2.send(&hello, TIMEOUT), "preface not sent");
        let settled = h2.wait_for(TIMEOUT, |c| {
            c.frames
                .iter()
                .any(|f| f.kind == SETTINGS && f.flags & ACK == 0)
                && c.ctrl.is_empty()
        });
        assert!(settled, "no SETTINGS from the server: {}", h2.describe());
        h2
    }

    fn connect_tls(ca: &Path, port: u16) -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca).expect("read CA") {
            roots.add(cert.expect("CA PEM")).expect("add CA");
        }
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("TLS 1.3")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = rustls::ClientConnection::new(Arc::new(config), name).expect("client");
        let mut tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
        tcp.set_write_timeout(Some(TIMEOUT)).unwrap();
        while tls.is_handshaking() {
            tls.complete_io(&mut tcp).expect("TLS handshake");
        }
        assert_eq!(
            tls.alpn_protocol(),
            Some(&b"h2"[..]),
            "the gateway did not select h2"
        );
        tcp.set_nonblocking(true).unwrap();
        Self {
            tls,
            tcp,
            inbuf: Vec::new(),
            frames: Vec::new(),
            closed: false,
            write_failed: false,
            sent: 0,
            auto_ack: true,
            ctrl: Vec::new(),
            read_paused: false,
        }
    }

    /// Moves bytes both ways without blocking; returns whether anything moved.
    fn pump(&mut self) -> bool {
        let mut moved = false;
        while !self.write_failed && self.tls.wants_write() {
            match self.tls.write_tls(&mut self.tcp) {
                Ok(0) => break,
                Ok(_) => moved = true,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => self.write_failed = true,
            }
        }
        while !self.closed && !self.read_paused {
            match self.tls.read_tls(&mut self.tcp) {
                Ok(0) => self.closed = true,
                Ok(_) => {
                    moved = true;
                    match self.tls.process_new_packets() {
                        Ok(state) => {
                            let _ = self.tls.reader().read_to_end(&mut self.inbuf);
                            if state.peer_has_closed() {
                                self.closed = true;
                            }
                        }
                        Err(_) => self.closed = true,
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => self.closed = true,
            }
        }
        self.parse();
        moved
    }

    fn parse(&mut self) {
        let mut at = 0;
        while self.inbuf.len() - at >= 9 {
            let b = &self.inbuf[at..];
            let len = u32::from_be_bytes([0, b[0], b[1], b[2]]) as usize;
            if b.len() < 9 + len {
                break;
            }
            let f = Frame {
                kind: b[3],
                flags: b[4],
                stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
                payload: b[9..9 + len].to_vec(),
            };
            at += 9 + len;
            if self.auto_ack && f.kind == SETTINGS && f.flags & ACK == 0 {
                self.ctrl.extend(frame(SETTINGS, ACK, 0, &[]));
            }
            self.frames.push(f);
        }
        self.inbuf.drain(..at);
    }

    /// Queues `bytes` and pumps until all were accepted by the TLS layer, the peer closed,
    /// or `limit` passed. Returns whether everything was accepted.
    fn send(&mut self, bytes: &[u8], limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut all = std::mem::take(&mut self.ctrl);
        all.extend_from_slice(bytes);
        let bytes = &all[..];
        let mut off = 0;
        while off < bytes.len() && !self.closed && !self.write_failed {
            let n = self.tls.writer().write(&bytes[off..]).unwrap_or(0);
            off += n;
            self.sent += n;
            if !self.pump() && n == 0 {
                if Instant::now() > deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        self.pump();
        off == bytes.len()
    }

    /// Pumps until `done(self)` or the peer closed or `limit` passed; returns `done(self)`.
    fn wait_for(&mut self, limit: Duration, done: impl Fn(&Self) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if self.ctrl.is_empty() {
                self.pump();
            } else {
                self.send(&[], limit);
            }
            if done(self) {
                return true;
            }
            if self.closed || Instant::now() > deadline {
                return done(self);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Pumps until the peer closes (≤ `limit`); returns whether it did.
    fn wait_closed(&mut self, limit: Duration) -> bool {
        self.wait_for(limit, |c| c.closed)
    }

    fn goaway(&self) -> Option<GoAway> {
        self.frames
            .iter()
            .find(|f| f.kind == GOAWAY)
            .map(|f| GoAway {
                last_stream: u32::from_be_bytes(f.payload[0..4].try_into().unwrap()) & 0x7fff_ffff,
                code: u32::from_be_bytes(f.payload[4..8].try_into().unwrap()),
                debug: String::from_utf8_lossy(&f.payload[8..]).into_owned(),
            })
    }

    /// `(stream, error code)` of every RST_STREAM received.
    fn resets(&self) -> Vec<(u32, u32)> {
        self.frames
            .iter()
            .filter(|f| f.kind == RST_STREAM)
            .map(|f| {
                (
                    f.stream,
                    u32::from_be_bytes([f.payload[0], f.payload[1], f.payload[2], f.payload[3]]),
                )
            })
            .collect()
    }

    /// The `:status` of the first HEADERS frame on `stream`, if one arrived.
    fn status(&self, stream: u32) -> Option<u16> {
        self.frames
            .iter()
            .find(|f| f.kind == HEADERS && f.stream == stream)
            .and_then(|f| response_status(&f.payload))
    }

    /// The concatenated DATA payload received on `stream`.
    fn body(&self, stream: u32) -> Vec<u8> {
        self.frames
            .iter()
            .filter(|f| f.kind == DATA && f.stream == stream)
            .flat_map(|f| f.payload.clone())
            .collect()
    }

    /// The values of the server's first (non-ACK) SETTINGS frame.
    fn server_settings(&self) -> Vec<(u16, u32)> {
        let f = self
            .frames
            .iter()
            .find(|f| f.kind == SETTINGS && f.flags & ACK == 0)
            .expect("the server sent no SETTINGS");
        f.payload
            .chunks(6)
            .map(|c| {
                (
                    u16::from_be_bytes([c[0], c[1]]),
                    u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
                )
            })
            .collect()
    }

    /// Sends a GET on `stream` and waits (≤ 10 s) for the end of its response.
    fn get(&mut self, stream: u32, path: &str, audit: &str) {
        let block = request_block("GET", path, audit, &[]);
        assert!(
            self.send(
                &frame(HEADERS, END_STREAM | END_HEADERS, stream, &block),
                TIMEOUT
            ),
            "request not sent: {}",
            self.describe()
        );
        self.wait_response(stream);
    }

    /// Waits (≤ 10 s) until a frame with END_STREAM (or a reset) arrives on `stream`.
    fn wait_response(&mut self, stream: u32) {
        let done = self.wait_for(TIMEOUT, |c| {
            c.frames.iter().any(|f| {
                f.stream == stream
                    && (f.kind == RST_STREAM
                        || (f.kind == DATA || f.kind == HEADERS) && f.flags & END_STREAM != 0)
            })
        });
        assert!(
            done,
            "no complete response on stream {stream}: {}",
            self.describe()
        );
    }

    fn describe(&self) -> String {
        let mut kinds = std::collections::BTreeMap::new();
        for f in &self.frames {
            *kinds.entry(f.kind).or_insert(0usize) += 1;
        }
        format!(
            "closed={} write_failed={} sent={}B frames by type={kinds:?} goaway={:?}",
            self.closed,
            self.write_failed,
            self.sent,
            self.goaway()
        )
    }
}

/// A normal GET over a fresh raw connection gets a 200 (the raw client itself works), and
/// the gateway advertises the HTTP/2 limits src/runtime/server.rs sets.
#[tokio::test]
async fn raw_h2_client_gets_200_and_sees_the_advertised_limits() {
    let up = RecordingUpstream::start();
    let gw = Gateway::start(GatewayOpts::new(up.addr()));
    let mut c = RawH2::connect(&gw, &[]);
    c.get(1, "/fhir/Patient/raw", "raw-h2");
    assert_eq!(c.status(1), Some(200), "{}", c.describe());
    assert!(c.body(1).starts_with(b"{\"upstream\":\"recording\""));
    let settings = c.server_settings();
    assert!(
        settings.contains(&(SETTINGS_MAX_CONCURRENT_STREAMS, 100)),
        "{settings:?}"
    );
    assert!(
        settings.contains(&(SETTINGS_MAX_HEADER_LIST_SIZE, 64 * 1024)),
        "{settings:?}"
    );
    up.quiesce();
    let lines = up.request_lines();
    assert_eq!(
        lines,
        ["GET /fhir/Patient/raw HTTP/1.1"],
        "{}",
        up.describe()
    );
}

/// Bounds for one attack connection, on top of what the gateway used before it (debug build,
/// 2 worker threads). Observed: at most ~0.35 s of CPU (the SETTINGS flood; the others under
/// 0.1 s) and ~1 MiB of peak RSS per attack; the bounds leave room for a slow CI machine while
/// still catching unbounded work.
const ATTACK_CPU_BOUND: Duration = Duration::from_secs(5);
const ATTACK_RSS_BOUND_KIB: u64 = 32 * 1024;

/// Asserts the CPU time the gateway spent since `before` and its peak RSS growth stayed
/// under the attack bounds.
fn assert_bounded(gw: &Gateway, before: ProcStats, what: &str) -> ProcStats {
    let after = proc_stats(gw.pid());
    let cpu = after.cpu.saturating_sub(before.cpu);
    let grew = after.hwm_kib.saturating_sub(before.hwm_kib);
    eprintln!(
        "{what}: gateway CPU {cpu:?}, peak RSS {} KiB -> {} KiB (now {} KiB)",
        before.hwm_kib, after.hwm_kib, after.rss_kib
    );
    assert!(
        cpu < ATTACK_CPU_BOUND,
        "{what}: the gateway spent {cpu:?} of CPU (bound {ATTACK_CPU_BOUND:?})"
    );
    assert!(
        grew < ATTACK_RSS_BOUND_KIB,
        "{what}: peak RSS grew by {grew} KiB (bound {ATTACK_RSS_BOUND_KIB} KiB)"
    );
    after
}

/// Result of one flood connection.
struct Flood {
    conn: RawH2,
    /// Units (stream pairs, frames) fully handed to the socket before the server stopped
    /// the connection, `max_units` were written, or the time limit passed.
    units: usize,
}

/// Writes `unit(i)` for i = 0.. in batches of `batch` until the server closes the
/// connection or sends GOAWAY, `max_units` were written, or `limit` passed; then waits
/// (≤ 10 s) for the server to close.
fn flood(
    mut conn: RawH2,
    max_units: usize,
    batch: usize,
    limit: Duration,
    unit: impl Fn(usize) -> Vec<u8>,
) -> Flood {
    let start = Instant::now();
    let mut units = 0;
    while units < max_units
        && !conn.closed
        && !conn.write_failed
        && conn.goaway().is_none()
        && start.elapsed() < limit
    {
        let n = batch.min(max_units - units);
        let bytes: Vec<u8> = (units..units + n).flat_map(&unit).collect();
        if !conn.send(&bytes, Duration::from_secs(2)) {
            break;
        }
        units += n;
    }
    conn.wait_closed(TIMEOUT);
    Flood { conn, units }
}

/// The request ids the upstream saw whose audit header is `audit`.
fn upstream_requests_tagged(up: &RecordingUpstream, audit: &str) -> usize {
    up.requests()
        .iter()
        .filter(|r| r.header(AUDIT).as_deref() == Some(audit))
        .count()
}

/// CVE-2023-44487: HEADERS (a complete GET that would be proxied) immediately followed by
/// RST_STREAM(CANCEL), 10,000 times per connection, on 10 connections one after another while
/// a normal client keeps sending requests. h2 counts streams the client reset before the
/// gateway accepted them; past 20 (`max_pending_accept_reset_streams`) the connection gets
/// GOAWAY(ENHANCE_YOUR_CALM, "too_many_resets") and is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_flood_is_cut_off_with_enhance_your_calm() {
    const PAIRS: usize = 10_000;
    const CONNECTIONS: usize = 10;
    let up = RecordingUpstream::start();
    let gw = Gateway::start(GatewayOpts::new(up.addr()));
    assert_serves_normally(&gw, &up, "before-rapid-reset").await;
    let before = proc_stats(gw.pid());
    let (ca, port) = (gw.ca_pem_path(), gw.port());
    let attack = tokio::task::spawn_blocking(move || {
        (0..CONNECTIONS)
            .map(|_| {
                let conn = RawH2::connect_settled(&ca, port, &[]);
                flood(conn, PAIRS, 100, Duration::from_secs(20), |i| {
                    let id = 2 * i as u32 + 1;
                    let path = format!("/fhir/Patient/rr-{i}");
                    let mut b = frame(
                        HEADERS,
                        END_STREAM | END_HEADERS,
                        id,
                        &request_block("GET", &path, "rapid-reset", &[]),
                    );
                    b.extend(rst_frame(id, CANCEL));
                    b
                })
            })
            .collect::<Vec<Flood>>()
    });
    // A normal client keeps being served while the floods run.
    let client = gw.client(true);
    let mut served = 0;
    while !attack.is_finished() || served == 0 {
        let id = format!("during-rapid-reset-{served}");
        let resp = client
            .get(gw.url(&format!("/fhir/Patient/{id}")))
            .header(AUDIT, &id)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{id}: not served during the flood: {e}"));
        assert_eq!(resp.status().as_u16(), 200, "{id}");
        served += 1;
    }
    let floods = attack.await.unwrap();
    for (n, f) in floods.iter().enumerate() {
        let g = f
            .conn
            .goaway()
            .unwrap_or_else(|| panic!("connection {n}: no GOAWAY: {}", f.conn.describe()));
        assert_eq!(
            (g.code, g.debug.as_str()),
            (ENHANCE_YOUR_CALM, "too_many_resets"),
            "connection {n}: {}",
            f.conn.describe()
        );
        assert!(
            f.conn.closed,
            "connection {n} left open: {}",
            f.conn.describe()
        );
        // Cut off early: far fewer streams than the attacker had queued.
        assert!(
            f.units < PAIRS && g.last_stream < 2_000,
            "connection {n} ran {} pairs, last stream {}",
            f.units,
            g.last_stream
        );
    }
    assert_bounded(&gw, before, "rapid reset");
    up.quiesce();
    // Streams the gateway accepted before it saw their reset are proxied like any cancelled
    // request; at most the 100 concurrent streams of each connection (observed: 0-3).
    let leaked = upstream_requests_tagged(&up, "rapid-reset");
    assert!(
        leaked <= CONNECTIONS * 100,
        "{leaked} reset requests reached the upstream"
    );
    eprintln!("rapid reset: {leaked} of {CONNECTIONS} x {PAIRS} streams reached the upstream; {served} normal requests served meanwhile");
    assert_serves_normally(&gw, &up, "after-rapid-reset").await;
}

/// A HEADERS frame without END_HEADERS (a complete GET otherwise) followed by `frames`
/// CONTINUATION frames of `payload`.
fn continuation_flood(gw: &Gateway, payload: Vec<u8>, frames: usize) -> Flood {
    let mut conn = RawH2::connect(gw, &[]);
    let block = request_block("GET", "/fhir/Patient/cont", "continuation", &[]);
    assert!(conn.send(&frame(HEADERS, END_STREAM, 1, &block), TIMEOUT));
    flood(conn, frames, 16, Duration::from_secs(20), move |_| {
        frame(CONTINUATION, 0, 1, &payload)
    })
}

/// Complete literal header fields (`x-flood-N: aaa…`) filling at most `max` bytes.
fn header_fields(max: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for k in 0.. {
        let mut f = Vec::new();
        hpack_literal(&mut f, &format!("x-flood-{k}"), &[b'a'; 100]);
        if out.len() + f.len() > max {
            break;
        }
        out.extend(f);
    }
    out
}

/// CVE-2024-27316: HEADERS without END_HEADERS, then CONTINUATION frames without end, (a)
/// each a full 16 KiB frame of complete header fields, (b) one byte each. h2 allows 5
/// CONTINUATION frames for a 64 KiB header list (64 KiB / 16 KiB + 25 %); the 6th gets
/// GOAWAY(ENHANCE_YOUR_CALM, "too_many_continuations") and the connection is closed, having
/// buffered less than 100 KiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuation_flood_is_cut_off_with_enhance_your_calm() {
    const FRAMES: usize = 100_000;
    let up = RecordingUpstream::start();
    let gw = Gateway::start(GatewayOpts::new(up.addr()));
    let before = proc_stats(gw.pid());
    for (name, payload) in [
        ("16 KiB frames", header_fields(16_384)),
        ("1-byte frames", vec![0x00]),
    ] {
        assert!(payload.len() <= 16_384);
        let f = continuation_flood(&gw, payload, FRAMES);
        assert_eq!(
            f.conn.goaway(),
            Some(GoAway {
                last_stream: 0,
                code: ENHANCE_YOUR_CALM,
                debug: "too_many_continuations".into()
            }),
            "{name}: {}",
            f.conn.describe()
        );
        assert!(f.conn.closed, "{name}: {}", f.conn.describe());
        // The server ended it, not the flood's own cap (what was written after the 6th frame
        // sat in socket buffers and was discarded with the connection).
        assert!(f.units < FRAMES, "{name}: all {FRAMES} frames accepted");
        assert!(
            f.conn.status(1).is_none(),
            "{name}: the request was answered"
        );
    }
    assert_bounded(&gw, before, "CONTINUATION flood");
    up.assert_untouched("a CONTINUATION flood");
    assert_serves_normally(&gw, &up, "after-continuation").await;
}

/// Sends the preface with `settings` plus `extra` frames and returns the connection once
/// the server has closed it (≤ 10 s).
fn hostile_hello(gw: &Gateway, settings: &[(u16, u32)], extra: &[u8]) -> RawH2 {
    let mut c = RawH2::connect_tls(&gw.ca_pem_path(), gw.port());
    let mut hello = PREFACE.to_vec();
    hello.extend(settings_frame(settings));
    hello.extend_from_slice(extra);
    c.send(&hello, TIMEOUT);
    c.wait_closed(TIMEOUT);
    c
}

/// Out-of-range SETTINGS and flow-control abuse are connection errors (RFC 9113 §6.5.2,
/// §6.9): GOAWAY with last stream 0 and the code below, then close. Two codes differ from
/// what RFC 9113 asks, because h2 0.4.20 maps every SETTINGS decoding error to
/// PROTOCOL_ERROR (src/codec/framed_read.rs, `Kind::Settings`): INITIAL_WINDOW_SIZE above
/// 2^31-1 (RFC: FLOW_CONTROL_ERROR) and a SETTINGS length that is not a multiple of 6 (RFC:
/// FRAME_SIZE_ERROR). Either way the connection is refused, which is what matters here; the
/// gateway cannot change h2's choice of code.
#[tokio::test]
async fn hostile_settings_are_connection_errors() {
    let up = RecordingUpstream::start();
    let gw = Gateway::start(GatewayOpts::new(up.addr()));
    let before = proc_stats(gw.pid());
    // (case, SETTINGS values, extra frames after the preface, expected GOAWAY code)
    type Case = (&'static str, Vec<(u16, u32)>, Vec<u8>, u32);
    let cases: Vec<Case> = vec![
        (
            "INITIAL_WINDOW_SIZE = 2^31",
            vec![(SETTINGS_INITIAL_WINDOW_SIZE, 0x8000_0000)],
            vec![],
            PROTOCOL_ERROR,
        ),
        (
            "INITIAL_WINDOW_SIZE = 2^32-1",
            vec![(SETTINGS_INITIAL_WINDOW_SIZE, u32::MAX)],
            vec![],
            PROTOCOL_ERROR,
        ),
        (
            "MAX_FRAME_SIZE = 2^24",
            vec![(SETTINGS_MAX_FRAME_SIZE, 1 << 24)],
            vec![],
            PROTOCOL_ERROR,
        ),
        (
            "MAX_FRAME_SIZE = 2^32-1",
            vec![(SETTINGS_MAX_FRAME_SIZE, u32::MAX)],
            vec![],
            PROTOCOL_ERROR,
        ),
        (
            "MAX_FRAME_SIZE = 16383",
            vec![(SETTINGS_MAX_FRAME_SIZE, 16_383)],
            vec![],
            PROTOCOL_ERROR,
        ),
        (
            "ENABLE_PUSH = 2",
            vec![(SETTINGS_ENABLE_PUSH, 2)],
            vec![],
            PROTOCOL_ERROR,
        ),
        (
            "SETTINGS payload of 5 bytes",
            vec![],
            frame(SETTINGS, 0, 0, &[0, 4, 0, 0, 1]),
            PROTOCOL_ERROR,
        ),
        (
            "connection window beyond 2^31-1",
            vec![],
            [
                window_update_frame(0, 0x7fff_ffff),
                window_update_frame(0, 0x7fff_ffff),
            ]
            .concat(),
            FLOW_CONTROL_ERROR,
        ),
        (
            "WINDOW_UPDATE of 0 on the connection",
            vec![],
            window_update_frame(0, 0),
            PROTOCOL_ERROR,
        ),
    ];
    for (name, settings, extra, code) in cases {
        let c = hostile_hello(&gw, &settings, &extra);
        assert!(c.closed, "{name}: connection left open: {}", c.describe());
        assert_eq!(
            c.goaway().map(|g| (g.last_stream, g.code)),
            Some((0, code)),
            "{name}: {}",
            c.describe()
        );
    }

    // The largest legal values are accepted, and the connection serves a request.
    let mut c = RawH2::connect(
        &gw,
        &[
            (SETTINGS_MAX_FRAME_SIZE, (1 << 24) - 1),
            (SETTINGS_INITIAL_WINDOW_SIZE, 0x7fff_ffff),
        ],
    );
    c.get(1, "/fhir/Patient/max-settings", "max-settings");
    assert_eq!(c.status(1), Some(200), "{}", c.describe());
    assert!(c.goaway().is_none(), "{}", c.describe());

    assert_bounded(&gw, before, "hostile SETTINGS");
    up.quiesce();
    let lines = up.request_lines();
    assert_eq!(
        lines,
        ["GET /fhir/Patient/max-settings HTTP/1.1"],
        "{}",
        up.describe()
    );
    assert_serves_normally(&gw, &up, "after-settings").await;
}

/// CVE-2019-9515 style: 200,000 SETTINGS frames from a client that does not read the ACKs.
/// h2 writes each ACK before it reads the next frame, so once the socket buffers are full
/// it stops reading (TCP backpressure) instead of queueing ACKs in memory. When the client
/// reads again, every SETTINGS frame has been acknowledged exactly once, in order, and the
/// connection still serves a request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_flood_is_acknowledged_once_each_with_bounded_memory() {
    const FRAMES: usize = 200_000;
    let up = RecordingUpstream::start();
    let gw = Gateway::start(GatewayOpts::new(up.addr()));
    let before = proc_stats(gw.pid());
    let (ca, port) = (gw.ca_pem_path(), gw.port());
    let mut conn = tokio::task::spawn_blocking(move || {
        let mut conn = RawH2::connect_settled(&ca, port, &[]);
        conn.read_paused = true;
        let unit = settings_frame(&[(SETTINGS_INITIAL_WINDOW_SIZE, 65_535)]);
        let batch: Vec<u8> = (0..1_000).flat_map(|_| unit.clone()).collect();
        for _ in 0..FRAMES / 1_000 {
            assert!(
                conn.send(&batch, Duration::from_secs(30)),
                "the flood stalled for good: {}",
                conn.describe()
            );
        }
        conn
    })
    .await
    .unwrap();
    let during = assert_bounded(&gw, before, "SETTINGS flood (unread)");
    // Read again: one ACK per SETTINGS frame (plus the one for the preface's SETTINGS).
    conn.read_paused = false;
    let acks = |c: &RawH2| {
        c.frames
            .iter()
            .filter(|f| f.kind == SETTINGS && f.flags & ACK != 0)
            .count()
    };
    conn.wait_for(Duration::from_secs(60), |c| acks(c) > FRAMES);
    assert_eq!(acks(&conn), FRAMES + 1, "{}", conn.describe());
    assert!(conn.goaway().is_none(), "{}", conn.describe());
    conn.get(1, "/fhir/Patient/after-settings-flood", "settings-flood");
    assert_eq!(conn.status(1), Some(200), "{}", conn.describe());
    assert_bounded(&gw, during, "SETTINGS flood (drained)");
    assert_eq!(upstream_requests_tagged(&up, "settings-flood"), 1);
    assert_serves_normally(&gw, &up, "after-settings-flood").await;
}

/// An SSN whose JSON body arrives in one-byte DATA frames (so every byte of it, and every
/// boundary inside `536-22-1234`, is a frame boundary) is still found: 403 phi_detected
/// naming us-ssn, nothing echoed, no body byte upstream. (phi.rs covers the SSN at the end
/// of a 100 KB body over HTTP/2 in 16 KiB frames.)
#[tokio::test]
async fn ssn_in_one_byte_data_frames_is_blocked() {
    let up = RecordingUpstream::start();
    let gw = Gateway::start(GatewayOpts::new(up.addr()));
    let body = ssn_patient();
    let mut c = RawH2::connect(&gw, &[]);
    let block = request_block(
        "POST",
        "/fhir/Patient",
        "phi-one-byte-frames",
        &[("content-type", "application/fhir+json")],
    );
    let mut bytes = frame(HEADERS, END_HEADERS, 1, &block);
    for (i, b) in body.bytes().enumerate() {
        let flags = if i + 1 == body.len() { END_STREAM } else { 0 };
        bytes.extend(frame(DATA, flags, 1, &[b]));
    }
    assert!(c.send(&bytes, TIMEOUT), "{}", c.describe());
    c.wait_response(1);
    assert_eq!(c.status(1), Some(403), "{}", c.describe());
    let body = String::from_utf8_lossy(&c.body(1)).into_owned();
    let json: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    assert_eq!(json["reason"], "phi_detected", "{body}");
    assert!(body.contains("us-ssn"), "{body}");
    assert!(
        json["request_id"].as_str().is_some_and(|s| !s.is_empty()),
        "{body}"
    );
    assert!(!body.contains(SSN) && !body.contains(SSN_DIGITS), "{body}");
    assert_no_body_reached(&up);
}

/// pingora closes an HTTP/2 connection only when told to (`h2_idle_timeout`, default none);
/// the gateway sets `listen.http2_idle_timeout_ms` (default 60 s, here 1.5 s). A connection
/// that served a request and then sits idle is closed after the timeout, not before.
#[tokio::test]
async fn idle_http2_connection_is_closed_after_the_idle_timeout() {
    let up = RecordingUpstream::start();
    let mut opts = GatewayOpts::new(up.addr());
    opts.listen_extra
        .push("  http2_idle_timeout_ms: 1500".into());
    let gw = Gateway::start(opts);
    let mut c = RawH2::connect(&gw, &[]);
    c.get(1, "/fhir/Patient/idle", "idle-h2");
    assert_eq!(c.status(1), Some(200), "{}", c.describe());
    let idle_since = Instant::now();
    assert!(
        !c.wait_for(Duration::from_millis(1_000), |c| c.closed),
        "closed before the idle timeout: {}",
        c.describe()
    );
    assert!(
        c.wait_closed(Duration::from_secs(10)),
        "idle connection still open after {:?}: {}",
        idle_since.elapsed(),
        c.describe()
    );
    let idle = idle_since.elapsed();
    assert!(
        idle >= Duration::from_millis(1_400),
        "closed after {idle:?}"
    );
    assert_serves_normally(&gw, &up, "after-idle").await;
}

/// pingora runs the h2 handshake without a timeout, so a client that negotiates h2 and never
/// sends the 24-byte preface would hold its connection forever (observed: still open after
/// 75 s before the fix). The gateway's preface deadline (src/gateway/preface.rs, the same
/// `listen.http2_idle_timeout_ms`) closes it: a silent client and one that trickles the
/// preface a byte every 250 ms are both cut off after the timeout, never answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_trickled_http2_preface_is_cut_off_at_the_idle_timeout() {
    let up = RecordingUpstream::start();
    let mut opts = GatewayOpts::new(up.addr());
    opts.listen_extra
        .push("  http2_idle_timeout_ms: 1500".into());
    let gw = Gateway::start(opts);
    let (ca, port) = (gw.ca_pem_path(), gw.port());
    let silent = {
        let (ca, port) = (ca.clone(), port);
        tokio::task::spawn_blocking(move || {
            let mut c = RawH2::connect_tls(&ca, port);
            // Not even a SETTINGS ACK: that would be read as a (bad) preface.
            c.auto_ack = false;
            let start = Instant::now();
            let early = c.wait_for(Duration::from_millis(1_000), |c| c.closed);
            let closed = c.wait_closed(Duration::from_secs(10));
            (c, early, closed, start.elapsed())
        })
    };
    let trickle = tokio::task::spawn_blocking(move || {
        let mut c = RawH2::connect_tls(&ca, port);
        c.auto_ack = false;
        let start = Instant::now();
        for b in PREFACE {
            if !c.send(&[*b], TIMEOUT) || c.closed {
                break;
            }
            c.wait_for(Duration::from_millis(250), |c| c.closed);
        }
        let closed = c.wait_closed(Duration::from_secs(10));
        (c, closed, start.elapsed())
    });
    let (c, early, closed, took) = silent.await.unwrap();
    assert!(
        !early,
        "silent client closed before the timeout: {}",
        c.describe()
    );
    assert!(
        closed,
        "silent client still open after {took:?}: {}",
        c.describe()
    );
    assert!(
        took < Duration::from_secs(6),
        "silent client closed only after {took:?}"
    );
    // The server's SETTINGS (sent first in the handshake) and nothing after it.
    assert!(
        c.frames.iter().all(|f| f.kind == SETTINGS),
        "{}",
        c.describe()
    );
    let (c, closed, took) = trickle.await.unwrap();
    assert!(
        closed,
        "trickling client still open after {took:?}: {}",
        c.describe()
    );
    assert!(
        c.sent < PREFACE.len(),
        "the whole preface got through: {}",
        c.describe()
    );
    assert!(
        took < Duration::from_secs(6),
        "trickling client closed only after {took:?}"
    );
    up.assert_untouched("a connection without an HTTP/2 preface");
    assert_serves_normally(&gw, &up, "after-no-preface").await;
}

const REFUSED_STREAM: u32 = 0x7;

/// With 100 streams open (POSTs whose bodies never come), the 101st HEADERS is refused with
/// RST_STREAM(REFUSED_STREAM) (RFC 9113 §5.1.2); the 100 stay open and the connection too.
#[tokio::test]
async fn stream_beyond_the_concurrency_limit_is_refused() {
    let up = RecordingUpstream::start();
    let gw = Gateway::start(GatewayOpts::new(up.addr()));
    let mut c = RawH2::connect(&gw, &[]);
    let mut bytes = Vec::new();
    for i in 0..101u32 {
        let block = request_block(
            "POST",
            &format!("/fhir/Patient/open-{i}"),
            "concurrency",
            &[("content-type", "application/fhir+json")],
        );
        bytes.extend(frame(HEADERS, END_HEADERS, 2 * i + 1, &block));
    }
    assert!(c.send(&bytes, TIMEOUT), "{}", c.describe());
    c.wait_for(Duration::from_secs(3), |c| !c.resets().is_empty());
    assert_eq!(c.resets(), [(201, REFUSED_STREAM)], "{}", c.describe());
    assert!(!c.closed && c.goaway().is_none(), "{}", c.describe());
    drop(c);
    assert_serves_normally(&gw, &up, "after-concurrency").await;
}

/// A header list over the advertised 64 KiB (70 KiB of fields over HEADERS + CONTINUATION)
/// gets h2's 431 on that stream; the connection stays usable and nothing is forwarded.
#[tokio::test]
async fn header_list_over_64_kib_gets_431() {
    let up = RecordingUpstream::start();
    let gw = Gateway::start(GatewayOpts::new(up.addr()));
    let mut c = RawH2::connect(&gw, &[]);
    let mut block = request_block("GET", "/fhir/Patient/big-headers", "big-headers", &[]);
    for k in 0..70 {
        hpack_literal(&mut block, &format!("x-big-{k}"), &[b'a'; 1_000]);
    }
    let pieces: Vec<&[u8]> = block.chunks(16_384).collect();
    assert!(pieces.len() <= 5, "must stay under the CONTINUATION limit");
    let mut bytes = Vec::new();
    for (i, p) in pieces.iter().enumerate() {
        let last = i + 1 == pieces.len();
        let (kind, flags) = match (i, last) {
            (0, true) => (HEADERS, END_STREAM | END_HEADERS),
            (0, false) => (HEADERS, END_STREAM),
            (_, true) => (CONTINUATION, END_HEADERS),
            (_, false) => (CONTINUATION, 0),
        };
        bytes.extend(frame(kind, flags, 1, p));
    }
    assert!(c.send(&bytes, TIMEOUT));
    c.wait_response(1);
    assert_eq!(c.status(1), Some(431), "{}", c.describe());
    c.get(3, "/fhir/Patient/small-headers", "small-headers");
    assert!(
        c.frames.iter().any(|f| f.kind == HEADERS && f.stream == 3),
        "{}",
        c.describe()
    );
    assert!(c.goaway().is_none(), "{}", c.describe());
    up.quiesce();
    assert_eq!(
        upstream_requests_tagged(&up, "big-headers"),
        0,
        "{}",
        up.describe()
    );
    assert_eq!(
        upstream_requests_tagged(&up, "small-headers"),
        1,
        "{}",
        up.describe()
    );
}

/// HPACK bomb: one ~4 KB header inserted into the dynamic table, then referenced 12,000
/// times by one-byte indexed fields in a single 16 KiB HEADERS frame (≈ 48 MB decoded). h2
/// stops decoding at 4× the header list limit (256 KiB) and answers
/// GOAWAY(ENHANCE_YOUR_CALM, "header_list_way_too_large").
#[tokio::test]
async fn hpack_bomb_is_cut_off_with_enhance_your_calm() {
    let up = RecordingUpstream::start();
    let gw = Gateway::start(GatewayOpts::new(up.addr()));
    let before = proc_stats(gw.pid());
    let mut c = RawH2::connect(&gw, &[]);
    let mut block = request_block("GET", "/fhir/Patient/bomb", "hpack-bomb", &[]);
    // Literal with incremental indexing, new name: becomes dynamic table entry 62.
    block.push(0x40);
    hpack_int(&mut block, 7, 0, 6);
    block.extend_from_slice(b"x-bomb");
    hpack_int(&mut block, 7, 0, 4_000);
    block.extend_from_slice(&[b'b'; 4_000]);
    while block.len() < 16_384 {
        block.push(0x80 | 62);
    }
    assert!(c.send(
        &frame(HEADERS, END_STREAM | END_HEADERS, 1, &block),
        TIMEOUT
    ));
    assert!(c.wait_closed(TIMEOUT), "{}", c.describe());
    assert_eq!(
        c.goaway(),
        Some(GoAway {
            last_stream: 0,
            code: ENHANCE_YOUR_CALM,
            debug: "header_list_way_too_large".into()
        }),
        "{}",
        c.describe()
    );
    assert_bounded(&gw, before, "HPACK bomb");
    up.assert_untouched("an HPACK bomb");
    assert_serves_normally(&gw, &up, "after-hpack-bomb").await;
}

/// Regression (issue 14): was "HTTP/2 request trailers are not inspected: an SSN in a trailing
/// HEADERS frame passes". pingora never reads an HTTP/2 request's trailers, so the gateway
/// refuses a request that declares them (`trailer` header: 400 `trailers_not_allowed`, nothing
/// upstream) and an undeclared trailing HEADERS frame is dropped: the recording upstream gets
/// the body and never the trailer's value.
#[test]
fn http2_request_trailers_are_refused_when_declared_and_never_forwarded() {
    let up = RecordingUpstream::start();
    let gw = Gateway::start(GatewayOpts::new(up.addr()));
    let body = clean_patient();
    let send = |stream: u32, declare: bool, h2: &mut RawH2| {
        let mut extra = vec![("content-type", "application/fhir+json")];
        if declare {
            extra.push(("trailer", "x-patient-ssn"));
        }
        let audit = format!("h2-trailer-{stream}");
        let block = request_block("POST", "/fhir/Patient", &audit, &extra);
        let mut trailer = Vec::new();
        hpack_literal(&mut trailer, "x-patient-ssn", SSN.as_bytes());
        let mut bytes = frame(HEADERS, END_HEADERS, stream, &block);
        bytes.extend(frame(DATA, 0, stream, body.as_bytes()));
        bytes.extend(frame(HEADERS, END_STREAM | END_HEADERS, stream, &trailer));
        assert!(h2.send(&bytes, TIMEOUT), "not sent: {}", h2.describe());
        h2.wait_response(stream);
    };

    let mut h2 = RawH2::connect(&gw, &[]);
    send(1, true, &mut h2);
    assert_eq!(h2.status(1), Some(400), "{}", h2.describe());
    let text = String::from_utf8_lossy(&h2.body(1)).into_owned();
    assert!(text.contains("\"trailers_not_allowed\""), "{text}");
    up.assert_untouched("a request declaring trailers");

    let mut h2 = RawH2::connect(&gw, &[]);
    send(1, false, &mut h2);
    assert_eq!(h2.status(1), Some(200), "{}", h2.describe());
    up.quiesce();
    let reqs = up.requests();
    assert_eq!(reqs.len(), 1, "{}", up.describe());
    assert_eq!(reqs[0].body, body.as_bytes(), "{}", up.describe());
    let seen = format!(
        "{}{}",
        reqs[0].head,
        String::from_utf8_lossy(&reqs[0].raw_body)
    );
    assert!(
        !seen.contains(SSN) && !seen.to_ascii_lowercase().contains("x-patient-ssn"),
        "the trailer reached the upstream:\n{seen}"
    );
}
