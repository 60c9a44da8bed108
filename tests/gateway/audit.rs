//! The audit trail of the real binary: one record per decision, verifiable after SIGTERM and
//! after SIGKILL mid-load, fail-closed when the sink fails.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;

fn header(headers: &[(String, String)], name: &str) -> String {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("no {name} header in {headers:?}"))
}

fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn hmac_hex(key: &[u8], bytes: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    ring::hmac::sign(&key, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn every_decision_has_a_record_and_the_trail_verifies_after_sigterm() {
    let up = RecordingUpstream::start();
    let mut o = GatewayOpts::new(up.addr());
    o.audit_extra = vec![
        "  user_id:".into(),
        "    source: header".into(),
        "    header: x-authenticated-user".into(),
    ];
    o.fhir_route_extra = vec!["    audit:".into(), "      resource_id: clear".into()];
    let mut gw = Gateway::start(o);
    let c = gw.client(false);

    // allow
    let (status, headers, _, _) = read_response(
        c.get(gw.url("/fhir/Patient/example"))
            .header(AUDIT, "ticket-allow")
            .header("x-authenticated-user", "dr.alice@example.org")
            .header("user-agent", "ehr-client/1.0")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let allow_id = header(&headers, "x-request-id");
    // block (PHI in the body)
    let body = ssn_patient();
    let block = expect_refusal(
        c.post(gw.url("/fhir/Patient"))
            .header(AUDIT, "ticket-block")
            .header("content-type", "application/fhir+json")
            .body(body.clone()),
        403,
        "phi_detected",
    )
    .await;
    // block (no audit header)
    let missing = expect_refusal(
        c.get(gw.url("/fhir/Patient/1")),
        403,
        "missing_audit_header",
    )
    .await;
    // would_block (monitor route)
    let (status, headers, _, _) = read_response(
        c.post(gw.url("/monitor/Patient"))
            .header(AUDIT, "ticket-monitor")
            .header("content-type", "application/fhir+json")
            .body(ssn_patient())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let monitor_id = header(&headers, "x-request-id");
    // error (dead upstream)
    let down = expect_refusal(
        c.get(gw.url("/down/Patient/1"))
            .header(AUDIT, "ticket-down"),
        502,
        "upstream_unavailable",
    )
    .await;

    // SIGTERM: the queue is flushed and a final checkpoint is written before exit.
    assert!(
        gw.signal_and_wait(libc::SIGTERM, Duration::from_secs(10)),
        "{}",
        gw.logs()
    );
    let records = gw.audit_records();
    assert_eq!(records.len(), 5, "{records:#?}");

    let r = audit_record_of(&records, &allow_id);
    assert_eq!(r["decision"], "allow");
    assert_eq!(r["status"], 200);
    assert_eq!(r["user_id"], "dr.alice@example.org");
    assert_eq!(r["resource_id"], "Patient/example");
    assert_eq!(r["action_type"], "read");
    assert_eq!(r["fhir_interaction"], "read");
    assert_eq!(r["audit_header"], "ticket-allow");
    assert_eq!(r["user_agent"], "ehr-client/1.0");
    assert_eq!(r["ip_address"], "127.0.0.1");
    assert_eq!(r["tls_version"], "TLSv1_3");
    assert_eq!(r["route"], "fhir");
    assert_eq!(r["mode"], "enforce");
    assert!(uuid_like(r["log_id"].as_str().unwrap()), "{r}");
    let ts = r["timestamp"].as_str().unwrap();
    assert!(
        ts.ends_with('Z') && ts.contains('.'),
        "RFC 3339 UTC with sub-seconds: {ts}"
    );
    assert_eq!(r["config_version"].as_str().unwrap().len(), 16);

    let r = audit_record_of(&records, &block.request_id);
    assert_eq!(r["decision"], "block");
    assert_eq!(r["reason"], "phi_detected");
    assert_eq!(r["status"], 403);
    assert_eq!(r["action_type"], "create");
    assert_eq!(r["user_id"], "anonymous");
    let rule_ids = r["rule_ids"].as_array().unwrap();
    assert!(rule_ids.contains(&serde_json::json!("us-ssn")), "{r}");
    assert!(
        r["field_paths"][0].as_str().unwrap().starts_with("body:"),
        "{r}"
    );
    // Keyed since issue 14: an unkeyed SHA-256 of a small templated body is reversed by
    // hashing every value of its identifier (tests/gateway/fingerprints.rs).
    assert_eq!(
        r["body_hmac"],
        hmac_hex(&gw.fingerprint_secret(), body.as_bytes())
    );
    assert!(r.get("body_sha256").is_none(), "{r}");
    assert_ne!(r["body_hmac"], sha256_hex(body.as_bytes()));
    assert_eq!(r["bytes_in"], body.len());

    let r = audit_record_of(&records, &missing.request_id);
    assert_eq!(
        (r["decision"].as_str(), r["reason"].as_str()),
        (Some("block"), Some("missing_audit_header"))
    );
    let r = audit_record_of(&records, &monitor_id);
    assert_eq!(r["decision"], "would_block");
    assert_eq!(r["mode"], "monitor");
    assert_eq!(r["status"], 200);
    assert!(
        r["resource_id"]
            .as_str()
            .unwrap()
            .starts_with("hmac-sha256:"),
        "routes fingerprint resource ids by default: {r}"
    );
    let r = audit_record_of(&records, &down.request_id);
    assert_eq!(r["decision"], "error");
    assert_eq!(r["status"], 502);

    let (code, report) = audit_verify(&gw.audit_dir(), &gw.audit_pubkey());
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["records"], 5);
    assert!(
        report["issues"].as_array().unwrap().is_empty(),
        "a clean shutdown leaves nothing unsigned: {report:#}"
    );
    let last = last_checkpoint(&gw.audit_dir());
    assert!(last.contains("\"reason\":\"shutdown\""), "{last}");

    // The CLI on a tampered copy: exit 1, and the class is named.
    let seg = std::fs::read_dir(gw.audit_dir())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .unwrap();
    let text = std::fs::read_to_string(&seg).unwrap();
    std::fs::write(&seg, text.replacen("\"status\":403", "\"status\":200", 1)).unwrap();
    let (code, report) = audit_verify(&gw.audit_dir(), &gw.audit_pubkey());
    assert_eq!(code, 1, "{report:#}");
    assert!(report.to_string().contains("hash_mismatch"), "{report:#}");
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36 && s.chars().filter(|&c| c == '-').count() == 4
}

/// SIGKILL in the middle of a load with `fsync: every_record`: every response a client got has
/// its record on disk, and `audit verify` passes on what remains while naming the unsigned tail.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_mid_load_loses_no_answered_record() {
    let up = RecordingUpstream::start();
    let mut gw = Gateway::start(GatewayOpts::new(up.addr()));
    let answered = Arc::new(Mutex::new(Vec::<String>::new()));
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut tasks = Vec::new();
    for w in 0..8 {
        let c = gw.client(w % 2 == 0);
        let url = gw.url("/fhir/Patient/example");
        let answered = answered.clone();
        tasks.push(tokio::spawn(async move {
            // Bounded: at most 300 requests per worker, and stops at the first failure (the
            // gateway is gone).
            for i in 0..300 {
                if Instant::now() > deadline {
                    break;
                }
                let req = c.get(&url).header(AUDIT, format!("load-{w}-{i}"));
                match req.send().await {
                    Ok(resp) => {
                        let id = resp
                            .headers()
                            .get("x-request-id")
                            .and_then(|v| v.to_str().ok())
                            .map(String::from);
                        // Count a response only once its body has fully arrived.
                        if resp.bytes().await.is_ok() {
                            if let Some(id) = id {
                                answered.lock().unwrap().push(id);
                            }
                        }
                    }
                    Err(_) => break,
                }
            }
        }));
    }
    // Let the load run, then kill the gateway without warning.
    let started = Instant::now();
    while answered.lock().unwrap().len() < 100 && started.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(gw.signal_and_wait(libc::SIGKILL, Duration::from_secs(5)));
    for t in tasks {
        let _ = t.await;
    }
    let answered = answered.lock().unwrap().clone();
    assert!(
        answered.len() >= 100,
        "load never got going: {}",
        answered.len()
    );

    let records = gw.audit_records();
    let recorded: HashSet<&str> = records
        .iter()
        .filter_map(|r| r["request_id"].as_str())
        .collect();
    let lost: Vec<&String> = answered
        .iter()
        .filter(|id| !recorded.contains(id.as_str()))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} answered requests have no audit record: {lost:?}",
        lost.len(),
        answered.len()
    );
    let (code, report) = audit_verify(&gw.audit_dir(), &gw.audit_pubkey());
    assert_eq!(code, 0, "{report:#}");
    let classes: Vec<&str> = report["issues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["class"].as_str().unwrap())
        .collect();
    assert!(
        classes.contains(&"unsigned_tail"),
        "the cut tail must be reported: {report:#}"
    );
    assert!(
        report["issues"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["severity"] == "warning"),
        "{report:#}"
    );
}

/// When the sink fails, fail-closed routes answer 503 `audit_unavailable` with a request id,
/// `/readyz` says why, and the failure is counted. A route configured to fail open keeps
/// forwarding.
#[tokio::test]
async fn failing_sink_fails_closed_and_is_visible() {
    for fail_closed in [true, false] {
        let up = RecordingUpstream::start();
        let mut o = GatewayOpts::new(up.addr());
        // Tiny segments: the writer opens a new file every couple of records.
        o.audit_extra = vec!["  segment_max_bytes: 1024".into()];
        if !fail_closed {
            o.fhir_route_extra = vec!["    audit:".into(), "      fail_closed: false".into()];
        }
        let gw = Gateway::start(o);
        let c = gw.client(false);
        let ok = c
            .get(gw.url("/fhir/Patient/1"))
            .header(AUDIT, "before")
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 200);

        // Take the audit directory away (a file where the directory was).
        std::fs::remove_dir_all(gw.audit_dir()).unwrap();
        std::fs::write(gw.audit_dir(), b"not a directory").unwrap();

        let mut statuses = Vec::new();
        let mut refusal = None;
        for i in 0..6 {
            let resp = c
                .get(gw.url("/fhir/Patient/1"))
                .header(AUDIT, format!("after-{i}"))
                .send()
                .await
                .unwrap();
            let (status, headers, body, _) = read_response(resp).await;
            statuses.push(status);
            if status == 503 {
                refusal = Some(check_refusal(
                    status,
                    &headers,
                    &body,
                    503,
                    "audit_unavailable",
                ));
            }
        }
        let scrape = gw.scrape_metrics();
        let errors: f64 = parse_metrics(&scrape)
            .iter()
            .filter(|s| s.name == "phi_gateway_audit_write_errors_total")
            .map(|s| s.value)
            .sum();
        assert!(errors >= 1.0, "{scrape}");
        let ready = http_get(gw.files.admin_port, "/readyz").unwrap();
        assert_eq!(ready.0, 503, "{ready:?}");
        assert!(ready.1.contains("failing"), "{ready:?}");
        if fail_closed {
            let r = refusal.unwrap_or_else(|| panic!("no 503 in {statuses:?}\n{}", gw.logs()));
            assert!(!r.request_id.is_empty());
            // The first request after the failure passed the pre-check (the sink still looked
            // healthy) and reached the upstream; its record could not be written, so its
            // response was replaced by the 503. Every later one is refused up front.
            assert_eq!(statuses, vec![503; 6], "{}", gw.logs());
            let reached: Vec<String> = up
                .requests()
                .iter()
                .filter_map(|r| r.header(AUDIT))
                .collect();
            assert_eq!(reached, ["before", "after-0"], "{}", gw.logs());
            assert!(
                metric_value(
                    &scrape,
                    "phi_gateway_requests_total",
                    &[("decision", "fail_closed")]
                ) >= 1.0,
                "{scrape}"
            );
        } else {
            assert!(
                statuses.iter().all(|&s| s == 200),
                "fail-open route: {statuses:?}"
            );
        }
    }
}

/// The CLI: keygen writes private keys 0600 and never overwrites; verify exits 2 on usage and
/// I/O errors (not 1, which means "tampered").
#[test]
fn keygen_and_verify_cli_contract() {
    use std::os::unix::fs::PermissionsExt as _;
    use std::process::Command;
    let tmp = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_phi-gateway");
    let keygen = || {
        Command::new(bin)
            .args(["audit", "keygen", "--keys-dir", "k", "--pubkey", "pub.pem"])
            .current_dir(tmp.path())
            .output()
            .unwrap()
    };
    let out = keygen();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("key id") && text.contains("signing_key_file"),
        "{text}"
    );
    for f in ["k/audit-signing.key", "k/audit-fingerprint.key"] {
        let mode = std::fs::metadata(tmp.path().join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
    let before = std::fs::read(tmp.path().join("k/audit-signing.key")).unwrap();
    let again = keygen();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("refusing to overwrite"));
    assert_eq!(
        before,
        std::fs::read(tmp.path().join("k/audit-signing.key")).unwrap()
    );

    let verify = |args: &[&str]| {
        Command::new(bin)
            .args(["audit", "verify"])
            .args(args)
            .current_dir(tmp.path())
            .output()
            .unwrap()
    };
    let out = verify(&["--dir", "missing", "--pubkey", "pub.pem"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let out = verify(&["--dir", ".", "--pubkey", "k/audit-signing.key"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a private key is not a public key: {out:?}"
    );
    let out = verify(&["--dir", ".", "--pubkey", "pub.pem", "--from", "yesterday"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("RFC 3339"));
    // An empty directory is not an audit trail.
    std::fs::create_dir(tmp.path().join("empty")).unwrap();
    let out = verify(&["--dir", "empty", "--pubkey", "pub.pem"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}

/// Without an `audit:` section nothing is written, and the gateway says so loudly.
#[test]
fn no_audit_section_is_visible_not_silent() {
    let up = RecordingUpstream::start();
    let mut o = GatewayOpts::new(up.addr());
    o.audit = false;
    let gw = Gateway::start(o);
    let (code, body) = http_get(gw.files.admin_port, "/readyz").unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"audit\":\"disabled\""), "{body}");
    assert!(!gw.audit_dir().exists());
    assert!(
        gw.logs()
            .contains("decisions are NOT written to an audit trail"),
        "{}",
        gw.logs()
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_phi-gateway"))
        .args(["check", "--config"])
        .arg(&gw.files.config)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("NO audit trail"),
        "{out:?}"
    );
}
