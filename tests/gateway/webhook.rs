//! Incident alert delivery (issue 12 §1, `defence::webhook`) to a real receiver on loopback:
//! HTTPS with TLS 1.3 and its own dev CA (or plain HTTP to 127.0.0.1), settings built from
//! YAML through the config validator, and the receiver's side checked with the public
//! `verify`. The notifier runs in this process here; the binary's own delivery of an incident
//! is in tests/gateway/anomaly.rs (`an_incident_reaches_the_webhook_receiver_signed`).

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use phi_gateway::config::{validate_webhook, RawWebhook, WebhookSettings};
use phi_gateway::defence::webhook::signature::{
    DELIVERY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, TOLERANCE_SECONDS,
};
use phi_gateway::defence::webhook::{
    read_secret, verify, Alert, Notifier, SeenDeliveries, VerifyError,
};
use phi_gateway::telemetry::Metrics;
use serde_json::Value;

use crate::identity::{loopback_tls13, now};

/// How the receiver answers the next request.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Reply {
    Status(u16),
    /// Read the request, answer nothing, wait for the sender to give up.
    Hang,
}

/// One request as it reached the receiver.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    request_line: String,
    pub(crate) headers: http::HeaderMap,
    pub(crate) body: Vec<u8>,
}

/// A webhook receiver: answers from `script` in order (then 200), records every request, and
/// for [`Reply::Hang`] records how long the sender kept the connection open.
pub(crate) struct Receiver {
    addr: SocketAddr,
    tls: bool,
    script: Arc<Mutex<VecDeque<Reply>>>,
    received: Arc<Mutex<Vec<Received>>>,
    held_open: Arc<Mutex<Vec<Duration>>>,
    pub(crate) dir: tempfile::TempDir,
}

impl Receiver {
    pub(crate) fn start(tls: bool, script: &[Reply]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = loopback_tls13(dir.path());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let script = Arc::new(Mutex::new(script.iter().copied().collect::<VecDeque<_>>()));
        let received = Arc::new(Mutex::new(Vec::new()));
        let held_open = Arc::new(Mutex::new(Vec::new()));
        let (s, r, h) = (script.clone(), received.clone(), held_open.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(tcp) = stream else { continue };
                let (config, s, r, h) = (config.clone(), s.clone(), r.clone(), h.clone());
                thread::spawn(move || {
                    // Longer than any sender timeout here, so a hang is ended by the sender.
                    let _ = tcp.set_read_timeout(Some(Duration::from_secs(30)));
                    if tls {
                        let Ok(conn) = rustls::ServerConnection::new(config) else {
                            return;
                        };
                        serve(rustls::StreamOwned::new(conn, tcp), &s, &r, &h);
                    } else {
                        serve(tcp, &s, &r, &h);
                    }
                });
            }
        });
        Receiver {
            addr,
            tls,
            script,
            received,
            held_open,
            dir,
        }
    }

    pub(crate) fn url(&self) -> String {
        if self.tls {
            format!("https://localhost:{}/hook", self.addr.port())
        } else {
            format!("http://127.0.0.1:{}/hook", self.addr.port())
        }
    }

    pub(crate) fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    fn held_open(&self) -> Vec<Duration> {
        self.held_open.lock().unwrap().clone()
    }
}

fn serve<S: Read + Write>(
    mut stream: S,
    script: &Mutex<VecDeque<Reply>>,
    received: &Mutex<Vec<Received>>,
    held_open: &Mutex<Vec<Duration>>,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_string();
    let mut headers = http::HeaderMap::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').expect("header line");
        headers.append(
            http::HeaderName::from_bytes(name.trim().as_bytes()).unwrap(),
            http::HeaderValue::from_str(value.trim()).unwrap(),
        );
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    received.lock().unwrap().push(Received {
        request_line,
        headers,
        body: buf[head_end..head_end + length].to_vec(),
    });
    let reply = script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or(Reply::Status(200));
    match reply {
        Reply::Hang => {
            let since = Instant::now();
            // Until the sender closes (0 or an error) or our own 30 s read timeout.
            while matches!(stream.read(&mut chunk), Ok(n) if n > 0) {}
            held_open.lock().unwrap().push(since.elapsed());
        }
        Reply::Status(code) => {
            let resp = format!(
                "HTTP/1.1 {code} X\r\ncontent-length: 0\r\nlocation: /elsewhere\r\nconnection: close\r\n\r\n"
            );
            let _ = stream.write_all(resp.as_bytes());
            let _ = stream.flush();
        }
    }
}

/// The settings from `defence.webhook` YAML (the lines under `webhook:`), through the same
/// validator the gateway uses; `dir` holds the files it names.
fn settings(dir: &Path, body: &str) -> WebhookSettings {
    #[derive(serde::Deserialize)]
    struct Doc {
        defence: Defence,
    }
    #[derive(serde::Deserialize)]
    struct Defence {
        webhook: RawWebhook,
    }
    let file = dir.join("gateway.yaml");
    let text = format!("defence:\n  webhook:\n{body}");
    let doc: Doc = phi_gateway::engine::source::parse(&file, &text).expect("yaml");
    let resolve = |p: &Path| dir.join(p);
    validate_webhook(&file, &resolve, &doc.defence.webhook).expect("valid settings")
}

/// A secret file in `dir` (40 bytes and a newline, as an operator would write it).
pub(crate) fn secret_in(dir: &Path) -> PathBuf {
    let p = dir.join("hook.key");
    std::fs::write(&p, "webhook-secret-0123456789-abcdefghijklmn\n").unwrap();
    p
}

fn alert(id: &str) -> Alert {
    Alert {
        id: id.into(),
        name: "PhiGatewayAccessAnomaly",
        severity: "critical",
        summary: "distinct patients far above this principal's baseline".into(),
        principal: "4f0c2e9a7b1d3c5e".into(),
        principal_kind: "user",
        signal: "distinct_patients",
        observed: 212,
        threshold: 40.0,
        action: "alert",
        starts_at_ms: now() * 1000,
        gateway: "gw-test".into(),
        audit_refs: vec!["0f8b8a52-4b1e-4d36-9d7e-1c2f3a4b5c6d".into()],
    }
}

fn count(m: &Metrics, format: &str, result: &str) -> u64 {
    m.alert_deliveries
        .with_label_values(&[format, result])
        .get()
}

/// Waits up to `limit` for `done`, failing with `what` did not happen.
fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "within {limit:?}: {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

const WAIT: Duration = Duration::from_secs(15);

#[test]
fn alertmanager_v4_message_reaches_an_https_receiver() {
    let rx = Receiver::start(true, &[]);
    let s = settings(
        rx.dir.path(),
        &format!(
            "    format: alertmanager\n    url: {}\n    ca_file: ca.pem\n",
            rx.url()
        ),
    );
    let m = Metrics::new().unwrap();
    let n = Notifier::start(&s, &m).unwrap();
    n.notify(alert("inc-am-1"));
    wait_until("the alert was delivered", WAIT, || {
        count(&m, "alertmanager", "delivered") == 1
    });
    let got = rx.received();
    assert_eq!(got.len(), 1);
    let req = &got[0];
    assert_eq!(req.request_line, "POST /hook HTTP/1.1");
    assert_eq!(req.headers["content-type"], "application/json");
    // No secret_file: nothing is signed.
    assert!(req.headers.get(SIGNATURE_HEADER).is_none());
    let v: Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(v["version"], "4");
    assert_eq!(v["status"], "firing");
    assert_eq!(v["truncatedAlerts"], 0);
    for key in [
        "groupKey",
        "receiver",
        "groupLabels",
        "commonLabels",
        "commonAnnotations",
        "externalURL",
    ] {
        assert!(v.get(key).is_some(), "{key} missing: {v}");
    }
    let a = &v["alerts"][0];
    assert_eq!(a["status"], "firing");
    assert_eq!(a["labels"]["alertname"], "PhiGatewayAccessAnomaly");
    assert_eq!(a["labels"]["severity"], "critical");
    assert_eq!(a["labels"]["principal"], "4f0c2e9a7b1d3c5e");
    assert_eq!(a["labels"]["signal"], "distinct_patients");
    assert_eq!(a["labels"]["action"], "alert");
    assert_eq!(a["labels"]["gateway"], "gw-test");
    assert_eq!(a["annotations"]["incident_id"], "inc-am-1");
    assert!(a["annotations"]["summary"].is_string());
    for key in ["startsAt", "endsAt", "generatorURL", "fingerprint"] {
        assert!(a[key].is_string(), "{key}: {a}");
    }
    assert_eq!(count(&m, "alertmanager", "failed"), 0);
    assert_eq!(count(&m, "alertmanager", "dropped"), 0);
    let scrape = String::from_utf8(m.render().unwrap()).unwrap();
    assert!(
        scrape.contains(
            "phi_gateway_alert_deliveries_total{format=\"alertmanager\",result=\"delivered\"} 1"
        ),
        "{scrape}"
    );
}

#[test]
fn generic_delivery_is_signed_and_verify_refuses_replay_age_and_tampering() {
    let rx = Receiver::start(true, &[]);
    let secret_file = secret_in(rx.dir.path());
    let s = settings(
        rx.dir.path(),
        &format!(
            "    format: generic\n    url: {}\n    ca_file: ca.pem\n    secret_file: hook.key\n",
            rx.url()
        ),
    );
    let m = Metrics::new().unwrap();
    let n = Notifier::start(&s, &m).unwrap();
    n.notify(alert("inc-gen-1"));
    wait_until("the alert was delivered", WAIT, || {
        count(&m, "generic", "delivered") == 1
    });
    let req = rx.received().remove(0);
    let body: Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(body["id"], "inc-gen-1");
    assert_eq!(body["principal"], "4f0c2e9a7b1d3c5e");
    assert_eq!(body["observed"], 212);
    let delivery = req.headers[DELIVERY_HEADER].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(delivery).is_ok(), "{delivery}");
    assert!(req.headers[SIGNATURE_HEADER]
        .to_str()
        .unwrap()
        .starts_with("sha256="));
    let ts: u64 = req.headers[TIMESTAMP_HEADER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();

    // The receiver's side, with the secret read the way the gateway reads it.
    let secret = read_secret(&secret_file).unwrap();
    let mut seen = SeenDeliveries::new(1024);
    assert_eq!(
        verify(&secret, &req.headers, &req.body, now(), &mut seen),
        Ok(())
    );
    assert_eq!(
        verify(&secret, &req.headers, &req.body, now(), &mut seen),
        Err(VerifyError::Replay)
    );
    let mut fresh = SeenDeliveries::new(1024);
    let late = ts + TOLERANCE_SECONDS + 1;
    assert_eq!(
        verify(&secret, &req.headers, &req.body, late, &mut fresh),
        Err(VerifyError::Stale(TOLERANCE_SECONDS + 1))
    );
    let tampered = String::from_utf8(req.body.clone())
        .unwrap()
        .replace("\"observed\":212", "\"observed\":2");
    assert_ne!(tampered.as_bytes(), req.body.as_slice());
    assert_eq!(
        verify(
            &secret,
            &req.headers,
            tampered.as_bytes(),
            now(),
            &mut fresh
        ),
        Err(VerifyError::Signature)
    );
    assert!(fresh.is_empty(), "refused deliveries are not remembered");
}

#[test]
fn server_errors_are_retried_until_delivered() {
    let rx = Receiver::start(
        true,
        &[Reply::Status(500), Reply::Status(503), Reply::Status(200)],
    );
    secret_in(rx.dir.path());
    let s = settings(
        rx.dir.path(),
        &format!(
            "    format: generic\n    url: {}\n    ca_file: ca.pem\n    secret_file: hook.key\n    retries: 3\n    backoff_ms: 10\n",
            rx.url()
        ),
    );
    let m = Metrics::new().unwrap();
    let n = Notifier::start(&s, &m).unwrap();
    n.notify(alert("inc-retry-1"));
    wait_until("the third attempt was delivered", WAIT, || {
        count(&m, "generic", "delivered") == 1
    });
    let got = rx.received();
    assert_eq!(got.len(), 3, "two failures, then the delivery");
    assert_eq!(count(&m, "generic", "failed"), 0);
    // Each attempt is a new delivery (nonce) of the same alert, and each one verifies.
    let secret = read_secret(&rx.dir.path().join("hook.key")).unwrap();
    let mut seen = SeenDeliveries::new(16);
    for r in &got {
        assert_eq!(r.body, got[0].body, "same alert each time");
        assert_eq!(
            verify(&secret, &r.headers, &r.body, now(), &mut seen),
            Ok(())
        );
    }
    assert_eq!(seen.len(), 3);
}

#[test]
fn refusals_and_redirects_are_final_and_retries_are_bounded() {
    // Plain HTTP to 127.0.0.1 (allowed to a loopback IP only): a 400 is not retried, a 302 is
    // not followed, and five 500s with two retries are three attempts, then `failed`.
    let rx = Receiver::start(
        false,
        &[
            Reply::Status(400),
            Reply::Status(302),
            Reply::Status(500),
            Reply::Status(500),
            Reply::Status(500),
            Reply::Status(500),
            Reply::Status(500),
        ],
    );
    let s = settings(
        rx.dir.path(),
        &format!(
            "    format: alertmanager\n    url: {}\n    retries: 2\n    backoff_ms: 10\n",
            rx.url()
        ),
    );
    let m = Metrics::new().unwrap();
    let n = Notifier::start(&s, &m).unwrap();
    for id in ["inc-400", "inc-302", "inc-500"] {
        n.notify(alert(id));
    }
    wait_until("three alerts failed", WAIT, || {
        count(&m, "alertmanager", "failed") == 3
    });
    // Nothing is still in flight: a fourth attempt at the 500 alert would have shown by now.
    thread::sleep(Duration::from_millis(300));
    let got = rx.received();
    let ids: Vec<String> = got
        .iter()
        .map(|r| {
            let v: Value = serde_json::from_slice(&r.body).unwrap();
            v["alerts"][0]["annotations"]["incident_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        ids,
        ["inc-400", "inc-302", "inc-500", "inc-500", "inc-500"],
        "{:?}",
        got.iter().map(|r| &r.request_line).collect::<Vec<_>>()
    );
    assert!(got.iter().all(|r| r.request_line == "POST /hook HTTP/1.1"));
    assert_eq!(count(&m, "alertmanager", "delivered"), 0);
}

#[test]
fn an_untrusted_receiver_gets_nothing() {
    // The receiver's CA is not trusted (no ca_file: the system roots): the TLS handshake fails
    // and no request is ever sent.
    let rx = Receiver::start(true, &[]);
    let s = settings(
        rx.dir.path(),
        &format!(
            "    format: alertmanager\n    url: {}\n    retries: 1\n    backoff_ms: 10\n",
            rx.url()
        ),
    );
    let m = Metrics::new().unwrap();
    let n = match Notifier::start(&s, &m) {
        Ok(n) => n,
        // A machine without a system trust store cannot start this notifier at all, which
        // is the same outcome: nothing reaches an untrusted receiver.
        Err(e) => {
            assert!(e.to_string().contains("trust"), "{e}");
            return;
        }
    };
    n.notify(alert("inc-untrusted"));
    wait_until("the alert failed", WAIT, || {
        count(&m, "alertmanager", "failed") == 1
    });
    assert!(rx.received().is_empty());
}

#[test]
fn a_hanging_receiver_costs_the_timeout_and_the_queue_stays_bounded() {
    let rx = Receiver::start(true, &[Reply::Hang; 64]);
    let s = settings(
        rx.dir.path(),
        &format!(
            "    format: alertmanager\n    url: {}\n    ca_file: ca.pem\n    timeout_ms: 1000\n    retries: 0\n    queue: 2\n",
            rx.url()
        ),
    );
    let m = Metrics::new().unwrap();
    let n = Notifier::start(&s, &m).unwrap();
    let sent = 40;
    let started = Instant::now();
    for i in 0..sent {
        n.notify(alert(&format!("inc-hang-{i}")));
    }
    // Generous: 40 queue operations take microseconds; a blocking notify would take 40 × 1 s.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "notify blocked: {:?}",
        started.elapsed()
    );
    wait_until("every alert failed or was dropped", WAIT, || {
        count(&m, "alertmanager", "failed") + count(&m, "alertmanager", "dropped") == sent
    });
    let failed = count(&m, "alertmanager", "failed");
    // The queue (2) and the one being delivered; everything else was dropped at notify (the
    // first attempt lasts 1 s, the 40 calls microseconds).
    assert!((1..=3).contains(&failed), "failed {failed}");
    assert_eq!(count(&m, "alertmanager", "delivered"), 0);
    wait_until("the receiver saw each failed attempt end", WAIT, || {
        rx.held_open().len() as u64 == failed
    });
    for held in rx.held_open() {
        // The sender gave up after its 1 s timeout, not the receiver's 30 s read timeout.
        assert!(held < Duration::from_secs(5), "connection held {held:?}");
    }
    // The notifier still works once the receiver answers again.
    rx.script.lock().unwrap().clear();
    n.notify(alert("inc-after"));
    wait_until("the next alert was delivered", WAIT, || {
        count(&m, "alertmanager", "delivered") == 1
    });
}

/// The Python receiver of docs/defence.md, run as written, on a free loopback port.
struct PythonReceiver {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl PythonReceiver {
    fn start(secret_file: &Path) -> Self {
        let doc =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/defence.md"))
                .unwrap();
        let section = &doc[doc.find("## Alert delivery").expect("the section")..];
        let start = section.find("```python\n").expect("a python block") + "```python\n".len();
        let code = &section[start..start + section[start..].find("\n```").unwrap()];
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("receiver.py");
        std::fs::write(&script, code).unwrap();
        let port = crate::common::free_port();
        let child = std::process::Command::new("python3")
            .arg(&script)
            .arg(secret_file)
            .arg(port.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 (installed by .ci/setup test) runs the docs' receiver");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        wait_until("the Python receiver listens", WAIT, || {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        });
        PythonReceiver {
            child,
            port,
            _dir: dir,
        }
    }

    /// POSTs `body` with the given signature headers; returns the status code.
    fn post(&self, ts: u64, delivery: &str, signature: &str, body: &[u8]) -> u16 {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let head = format!(
            "POST /hook HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{TIMESTAMP_HEADER}: {ts}\r\n{DELIVERY_HEADER}: {delivery}\r\n{SIGNATURE_HEADER}: {signature}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(body).unwrap();
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        answer
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no status line: {answer:?}"))
    }
}

impl Drop for PythonReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_python_receiver_in_the_docs_accepts_ours_and_refuses_the_rest() {
    use phi_gateway::defence::webhook::signature::sign;
    let dir = tempfile::tempdir().unwrap();
    let secret_file = secret_in(dir.path());
    let py = PythonReceiver::start(&secret_file);
    let url = format!("http://127.0.0.1:{}/hook", py.port);
    let m = Metrics::new().unwrap();
    let s = settings(
        dir.path(),
        &format!("    format: generic\n    url: {url}\n    secret_file: hook.key\n"),
    );
    let n = Notifier::start(&s, &m).unwrap();
    n.notify(alert("inc-py-1"));
    wait_until("the Python receiver accepted the alert", WAIT, || {
        count(&m, "generic", "delivered") == 1
    });

    // Another secret: the receiver answers 401, which is final.
    std::fs::write(
        dir.path().join("other.key"),
        "a-different-secret-of-more-than-32-bytes\n",
    )
    .unwrap();
    let s = settings(
        dir.path(),
        &format!(
            "    format: generic\n    url: {url}\n    secret_file: other.key\n    backoff_ms: 10\n"
        ),
    );
    let wrong = Metrics::new().unwrap();
    let n = Notifier::start(&s, &wrong).unwrap();
    n.notify(alert("inc-py-2"));
    wait_until("the wrong signature was refused", WAIT, || {
        count(&wrong, "generic", "failed") == 1
    });
    assert_eq!(count(&wrong, "generic", "delivered"), 0);

    // By hand: a good delivery once, its replay, a stale one, a tampered body.
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &read_secret(&secret_file).unwrap());
    let body = br#"{"id":"inc-py-3","observed":9}"#;
    let ts = now();
    let sig = sign(&key, ts, "d-py-1", body);
    assert_eq!(py.post(ts, "d-py-1", &sig, body), 204);
    assert_eq!(py.post(ts, "d-py-1", &sig, body), 401, "replay");
    let old = ts - TOLERANCE_SECONDS - 5;
    assert_eq!(
        py.post(old, "d-py-2", &sign(&key, old, "d-py-2", body), body),
        401,
        "stale"
    );
    let sig = sign(&key, ts, "d-py-3", body);
    assert_eq!(
        py.post(ts, "d-py-3", &sig, br#"{"id":"inc-py-3","observed":0}"#),
        401,
        "tampered"
    );
    assert_eq!(py.post(ts, "d-py-3", &sig, body), 204, "the untampered one");
}
