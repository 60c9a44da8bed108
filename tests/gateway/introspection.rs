//! Opaque tokens through RFC 7662 introspection: the real binary, a real HTTPS (TLS 1.3)
//! introspection endpoint on loopback with its own dev CA, and the recording upstream.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;
use crate::identity::{get, header, loopback_tls13, now, record_of, AUDIENCE, ISSUER};

/// What the endpoint was asked, one entry per request.
#[derive(Debug, Clone)]
struct Asked {
    authorization: String,
    body: String,
}

/// A real HTTPS introspection endpoint: answers each token from `answers` (unknown tokens:
/// `{"active": false}`), or `status` without a body when it is not 0, after `delay`. Also
/// used by tests/gateway/deploy.rs, so the introspection counter has a sample.
pub(crate) struct Introspector {
    addr: SocketAddr,
    answers: Arc<Mutex<HashMap<String, Value>>>,
    status: Arc<Mutex<(u16, Duration)>>,
    asked: Arc<Mutex<Vec<Asked>>>,
    calls: Arc<AtomicUsize>,
    dir: tempfile::TempDir,
}

impl Introspector {
    pub(crate) fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = loopback_tls13(dir.path());
        std::fs::write(dir.path().join("secret"), "s3cret-of-the-gateway\n").unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let answers: Arc<Mutex<HashMap<String, Value>>> = Arc::default();
        let status = Arc::new(Mutex::new((0u16, Duration::ZERO)));
        let asked: Arc<Mutex<Vec<Asked>>> = Arc::default();
        let calls = Arc::new(AtomicUsize::new(0));
        let (a, st, ak, n) = (
            answers.clone(),
            status.clone(),
            asked.clone(),
            calls.clone(),
        );
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(tcp) = stream else { continue };
                let (config, a, st, ak, n) =
                    (config.clone(), a.clone(), st.clone(), ak.clone(), n.clone());
                thread::spawn(move || {
                    use std::io::{Read, Write};
                    let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
                    let Ok(conn) = rustls::ServerConnection::new(config) else {
                        return;
                    };
                    let mut tls = rustls::StreamOwned::new(conn, tcp);
                    let mut req = Vec::new();
                    let mut buf = [0u8; 4096];
                    let head_end = loop {
                        if let Some(p) = req.windows(4).position(|w| w == b"\r\n\r\n") {
                            break p + 4;
                        }
                        match tls.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(k) => req.extend_from_slice(&buf[..k]),
                        }
                    };
                    let head = String::from_utf8_lossy(&req[..head_end]).to_string();
                    let field = |name: &str| {
                        head.lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.trim()
                                    .eq_ignore_ascii_case(name)
                                    .then(|| v.trim().to_string())
                            })
                            .unwrap_or_default()
                    };
                    let len: usize = field("content-length").parse().unwrap_or(0);
                    while req.len() < head_end + len {
                        match tls.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(k) => req.extend_from_slice(&buf[..k]),
                        }
                    }
                    let body = String::from_utf8_lossy(&req[head_end..head_end + len]).to_string();
                    n.fetch_add(1, Ordering::SeqCst);
                    ak.lock().unwrap().push(Asked {
                        authorization: field("authorization"),
                        body: body.clone(),
                    });
                    let token = form_urlencoded::parse(body.as_bytes())
                        .find(|(k, _)| k == "token")
                        .map(|(_, v)| v.to_string())
                        .unwrap_or_default();
                    let (status, delay) = *st.lock().unwrap();
                    thread::sleep(delay);
                    let resp = if status == 0 {
                        let answer = a
                            .lock()
                            .unwrap()
                            .get(&token)
                            .cloned()
                            .unwrap_or_else(|| json!({"active": false}))
                            .to_string();
                        format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}", answer.len())
                    } else {
                        format!(
                            "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                        )
                    };
                    let _ = tls.write_all(resp.as_bytes());
                    let _ = tls.flush();
                    tls.conn.send_close_notify();
                    let _ = tls.flush();
                });
            }
        });
        Introspector {
            addr,
            answers,
            status,
            asked,
            calls,
            dir,
        }
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn answer(&self, token: &str, v: Value) {
        self.answers.lock().unwrap().insert(token.into(), v);
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn gateway(&self, up: &RecordingUpstream) -> Gateway {
        let mut o = GatewayOpts::new(up.addr());
        o.access = vec!["  issuers:".to_string()];
        o.access.extend(self.issuer_lines(ISSUER));
        o.access
            .extend(["  claims_to_headers:".into(), "    x-user-id: sub".into()]);
        o.fhir_route_extra = vec![
            "    access:".into(),
            "      require: token".into(),
            "      mode: enforce".into(),
        ];
        Gateway::start(o)
    }

    /// The `access.issuers[]` entry `opaque` (issuer `iss`) that introspects at this endpoint.
    pub(crate) fn issuer_lines(&self, iss: &str) -> Vec<String> {
        vec![
            "    - name: opaque".into(),
            format!("      issuer: {iss}"),
            format!("      audiences: [\"{AUDIENCE}\"]"),
            "      fetch_timeout_ms: 1500".into(),
            "      introspection:".into(),
            format!(
                "        url: https://localhost:{}/introspect",
                self.addr.port()
            ),
            "        client_id: phi-gateway".into(),
            format!(
                "        client_secret_file: \"{}\"",
                self.dir.path().join("secret").display()
            ),
            format!("        ca_file: \"{}\"", self.ca().display()),
        ]
    }
}

fn active(sub: &str) -> Value {
    json!({
        "active": true,
        "sub": sub,
        "aud": AUDIENCE,
        "scope": "user/Patient.rs",
        "client_id": "ward-app",
        "iat": now() - 10,
        "exp": now() + 600,
    })
}

/// An active opaque token reaches the upstream with the identity the endpoint gave, is asked
/// about once (then cached until its `exp`), and the endpoint got the gateway's client
/// credentials and the token in a form body.
#[tokio::test]
async fn an_active_opaque_token_is_introspected_once_and_cached() {
    let up = RecordingUpstream::start();
    let ix = Introspector::start();
    let token = "opaque-2YotnFZFEjr1zCsicMWpAA";
    ix.answer(token, active("nurse-17"));
    let gw = ix.gateway(&up);
    for _ in 0..3 {
        let (s, _, b) = get(&gw, "/fhir/Patient/a", Some(token)).await;
        assert_eq!(s, 200, "{b}");
    }
    assert_eq!(ix.calls(), 1, "cached after the first answer");
    let reqs = up.requests();
    assert_eq!(reqs.len(), 3);
    assert_eq!(
        reqs[0].header("x-user-id").as_deref(),
        Some("nurse-17"),
        "identity from the introspection answer"
    );
    let asked = ix.asked.lock().unwrap()[0].clone();
    use base64::Engine as _;
    let basic =
        base64::engine::general_purpose::STANDARD.encode("phi-gateway:s3cret-of-the-gateway");
    assert_eq!(asked.authorization, format!("Basic {basic}"));
    assert!(
        asked.body.contains(&format!("token={token}"))
            && asked.body.contains("token_type_hint=access_token"),
        "{}",
        asked.body
    );
    let (_, h, _) = get(&gw, "/fhir/Patient/a", Some(token)).await;
    let rec = record_of(&gw, header(&h, "x-request-id").unwrap());
    assert_eq!(rec["user_id"], "nurse-17");
    assert_eq!(rec["access"]["decision"], "allow");
    assert_eq!(rec["access"]["issuer"], "opaque");
    assert!(!gw.logs().contains(token), "the token is never logged");
    let m = scrape_when(&gw, |m| m.contains("phi_gateway_introspection_total"));
    assert!(
        m.contains(r#"phi_gateway_introspection_total{issuer="opaque",result="active"} 1"#),
        "{m}"
    );
}

/// Every answer that must not let a token through: inactive, unknown, `active` as a string,
/// expired, no `exp`, over the maximum lifetime, another audience, another issuer. Each is 401
/// with the invalid-token challenge and nothing reaches the upstream.
#[tokio::test]
async fn inactive_expired_and_foreign_tokens_are_refused() {
    let up = RecordingUpstream::start();
    let ix = Introspector::start();
    let mut cases: Vec<(&str, Option<Value>, &str)> = vec![
        (
            "t-inactive",
            Some(json!({"active": false, "sub": "x"})),
            "token_invalid",
        ),
        ("t-unknown", None, "token_invalid"),
    ];
    let mut string_active = active("x");
    string_active["active"] = json!("true");
    cases.push(("t-string-active", Some(string_active), "token_invalid"));
    let mut expired = active("x");
    expired["exp"] = json!(now() - 3600);
    expired["iat"] = json!(now() - 3700);
    cases.push(("t-expired", Some(expired), "token_expired"));
    let mut no_exp = active("x");
    no_exp.as_object_mut().unwrap().remove("exp");
    cases.push(("t-no-exp", Some(no_exp), "token_invalid"));
    let mut long = active("x");
    long["exp"] = json!(now() + 86_400);
    cases.push(("t-long", Some(long), "token_invalid"));
    let mut aud = active("x");
    aud["aud"] = json!("https://billing.example/api");
    cases.push(("t-aud", Some(aud), "token_invalid"));
    let mut iss = active("x");
    iss["iss"] = json!("https://other-idp.example");
    cases.push(("t-iss", Some(iss), "token_invalid"));
    for (token, answer, _) in &cases {
        if let Some(a) = answer {
            ix.answer(token, a.clone());
        }
    }
    let gw = ix.gateway(&up);
    for (token, _, reason) in &cases {
        let (s, h, b) = get(&gw, "/fhir/Patient/a", Some(token)).await;
        check_refusal(s, &h, &b, 401, reason);
        let challenge = header(&h, "www-authenticate").unwrap_or_default();
        assert!(challenge.contains("invalid_token"), "{token}: {challenge}");
        assert!(!b.contains(token), "{token} echoed: {b}");
    }
    assert!(up.requests().is_empty(), "nothing reached the upstream");
    // Refusals are not cached: each was asked about.
    assert_eq!(ix.calls(), cases.len());
    let m = scrape_when(&gw, |m| m.contains("phi_gateway_introspection_total"));
    for (result, n) in [("inactive", 3), ("refused", 5)] {
        assert!(
            m.contains(&format!(
                r#"phi_gateway_introspection_total{{issuer="opaque",result="{result}"}} {n}"#
            )),
            "{result}: {m}"
        );
    }
}

/// An endpoint that fails or is slower than `fetch_timeout_ms` cannot judge the token: 503
/// `introspection_unavailable`, nothing forwarded; once it answers again the token passes.
#[tokio::test]
async fn an_unavailable_endpoint_fails_closed_with_503() {
    let up = RecordingUpstream::start();
    let ix = Introspector::start();
    ix.answer("t-good", active("dr-4"));
    let gw = ix.gateway(&up);
    *ix.status.lock().unwrap() = (500, Duration::ZERO);
    let (s, h, b) = get(&gw, "/fhir/Patient/a", Some("t-good")).await;
    check_refusal(s, &h, &b, 503, "introspection_unavailable");
    *ix.status.lock().unwrap() = (0, Duration::from_millis(3000));
    let (s, h, b) = get(&gw, "/fhir/Patient/a", Some("t-good")).await;
    check_refusal(s, &h, &b, 503, "introspection_unavailable");
    assert!(up.requests().is_empty());
    *ix.status.lock().unwrap() = (0, Duration::ZERO);
    let (s, _, b) = get(&gw, "/fhir/Patient/a", Some("t-good")).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(up.requests().len(), 1);
}

/// `n` concurrent GETs with `token` (each on its own connection); their statuses.
async fn concurrent_gets(gw: &Gateway, token: &str, n: usize) -> Vec<u16> {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (client, url) = (gw.client(false), gw.url("/fhir/Patient/a"));
        let auth = format!("Bearer {token}");
        set.spawn(async move {
            client
                .get(url)
                .header(AUDIT, "identity-test")
                .header("authorization", auth)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        });
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        out.push(r.unwrap_or(0));
    }
    out
}

/// Concurrent first requests with one new opaque token share a single introspection (a slow
/// endpoint makes them overlap): the endpoint is asked once, every request gets the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_uses_of_a_token_share_one_introspection() {
    let up = RecordingUpstream::start();
    let ix = Introspector::start();
    let token = "opaque-concurrent-9Qx2LmT";
    ix.answer(token, active("nurse-23"));
    *ix.status.lock().unwrap() = (0, Duration::from_millis(400));
    let gw = ix.gateway(&up);
    let statuses = concurrent_gets(&gw, token, 12).await;
    assert_eq!(statuses, vec![200; 12]);
    assert_eq!(
        ix.calls(),
        1,
        "one introspection for 12 concurrent requests"
    );
    // A refusal is shared the same way, and not remembered after it.
    let unknown = "opaque-never-issued-4Kd8";
    assert_eq!(concurrent_gets(&gw, unknown, 6).await, vec![401; 6]);
    assert_eq!(ix.calls(), 2);
    assert_eq!(concurrent_gets(&gw, unknown, 1).await, vec![401]);
    assert_eq!(ix.calls(), 3, "an inactive answer is not cached");
}
