//! Hot reload: SIGHUP, `POST /reload` and the file watch (including a kubelet-style symlink
//! swap) apply valid changes, keep the running configuration on invalid ones, rotate the
//! certificate for new handshakes, pin in-flight requests to the rules they started with,
//! and never fail or misclassify a request under steady load.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;

const RELOADS: &str = "phi_gateway_config_reloads_total";

/// A body no default rule can match: no digits, no names, no `@`.
fn clean_body() -> &'static str {
    r#"{"resourceType":"Observation","status":"final","code":{"text":"pulse"}}"#
}

fn opts(up: &RecordingUpstream) -> GatewayOpts {
    let mut o = GatewayOpts::new(up.addr());
    // Triggers are exercised one at a time; the watch gets its own tests.
    o.reload_watch = false;
    o
}

async fn post_status(gw: &Gateway, client: &reqwest::Client, body: String) -> u16 {
    client
        .post(gw.url("/fhir/Patient"))
        .header(AUDIT, "reload-test")
        .header("content-type", "application/fhir+json")
        .body(body)
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

/// The rules that fire on [`ssn_patient`]: the SSN pattern and the FHIR identifier-system
/// structural rule.
const SSN_RULES: [&str; 2] = ["us-ssn", "fhir-identifier-ssn"];

/// Rewrites the config so the `fhir` route turns the SSN rules off (a reloadable change).
fn config_with_ssn_off(gw: &Gateway) -> String {
    let yaml = &gw.files.yaml;
    let anchor = "    mode: enforce\n    max_body_bytes:";
    assert!(yaml.contains(anchor), "config layout changed:\n{yaml}");
    let overrides: String = SSN_RULES
        .iter()
        .map(|r| format!("      {r}: off\n"))
        .collect();
    yaml.replacen(
        anchor,
        &format!("    mode: enforce\n    rule_overrides:\n{overrides}    max_body_bytes:"),
        1,
    )
}

fn write_config(gw: &Gateway, yaml: &str) {
    std::fs::write(&gw.files.config, yaml).unwrap();
}

fn reloads(gw: &Gateway, result: &str) -> f64 {
    gw.metric(RELOADS, &[("result", result)])
}

#[tokio::test]
async fn sighup_applies_a_valid_change_and_keeps_the_old_config_on_an_invalid_one() {
    let up = RecordingUpstream::start();
    let gw = Gateway::start(opts(&up));
    let client = gw.client(false);
    assert_eq!(post_status(&gw, &client, ssn_patient()).await, 403);
    // Both result series exist before the first reload.
    assert_eq!(reloads(&gw, "success"), 0.0);
    assert!(gw.scrape_metrics().contains(r#"result="failure""#));

    write_config(&gw, &config_with_ssn_off(&gw));
    gw.signal(libc::SIGHUP);
    gw.wait_metric(RELOADS, &[("result", "success")], 1.0);
    assert_eq!(post_status(&gw, &client, ssn_patient()).await, 200);

    // A broken rule file: the reload fails, names the file and line, and nothing changes.
    let broken = gw.files.dir.path().join("rules").join("zz-broken.yaml");
    std::fs::write(&broken, "rules:\n  - id: broken\n    patternz: [\"x\"]\n").unwrap();
    gw.signal(libc::SIGHUP);
    gw.wait_metric(RELOADS, &[("result", "failure")], 1.0);
    assert_eq!(reloads(&gw, "success"), 1.0);
    assert_eq!(post_status(&gw, &client, ssn_patient()).await, 200);
    assert_eq!(post_status(&gw, &client, clean_body().into()).await, 200);
    let logs = gw.logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("reload failed") && l.contains("zz-broken.yaml:")),
        "the failure should name the rule file and line:\n{logs}"
    );
    assert!(matches!(
        http_get(gw.files.admin_port, "/readyz"),
        Some((200, _))
    ));
}

#[tokio::test]
async fn admin_reload_answers_with_the_outcome() {
    let up = RecordingUpstream::start();
    let gw = Gateway::start(opts(&up));

    let (status, body) = gw.admin_post("/reload").expect("POST /reload");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["result"], "success");
    assert!(v["rules"].as_u64().unwrap() > 0, "{body}");
    assert!(!v["config_version"].as_str().unwrap().is_empty());

    // A typo in a field name: 422 naming file, line and field; still serving the old config.
    let typo = gw
        .files
        .yaml
        .replacen("    mode: monitor", "    mood: monitor", 1);
    write_config(&gw, &typo);
    let line = GatewayFiles::line_of(&typo, "mood: monitor");
    let (status, body) = gw.admin_post("/reload").expect("POST /reload");
    assert_eq!(status, 422, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["result"], "failure");
    let err = v["error"].as_str().unwrap();
    assert!(
        err.contains(&format!("gateway.yaml:{line}:")) && err.contains("mood"),
        "{err}"
    );

    // Changing the listener needs a restart: refused by name, old listener keeps serving.
    let moved = gw.files.yaml.replacen(
        &format!("127.0.0.1:{}", gw.port()),
        &format!("127.0.0.1:{}", free_port()),
        1,
    );
    write_config(&gw, &moved);
    let (status, body) = gw.admin_post("/reload").expect("POST /reload");
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("listen.address"), "{body}");
    let client = gw.client(false);
    assert_eq!(post_status(&gw, &client, ssn_patient()).await, 403);
    assert_eq!(reloads(&gw, "failure"), 2.0);
    assert_eq!(reloads(&gw, "success"), 1.0);

    assert_eq!(
        http_get(gw.files.admin_port, "/reload").map(|r| r.0),
        Some(405)
    );
}

#[tokio::test]
async fn certificate_rotation_applies_to_new_handshakes() {
    let up = RecordingUpstream::start();
    let gw = Gateway::start(opts(&up));
    let old_ca = gw.ca_pem_path();
    let next = tempfile::tempdir().unwrap();
    phi_gateway::gateway::tls::generate_dev_ca(next.path()).unwrap();
    let new_ca = next.path().join("ca.pem");

    let status = |ca: PathBuf| {
        let gw = &gw;
        async move {
            client(&ca, false)
                .get(gw.url("/fhir/metadata"))
                .header(AUDIT, "rotation")
                .send()
                .await
                .map(|r| r.status().as_u16())
        }
    };
    assert_eq!(status(old_ca.clone()).await.unwrap(), 200);
    assert!(
        status(new_ca.clone()).await.is_err(),
        "new CA trusted too early"
    );

    // Write the key first, then the chain: a reload between the two would fail the
    // key/certificate match check and keep the old pair, never serve a mismatched one.
    let dir = gw.files.dir.path();
    std::fs::copy(next.path().join("server.key"), dir.join("server.key")).unwrap();
    std::fs::copy(next.path().join("server.pem"), dir.join("server.pem")).unwrap();
    let (code, body) = gw.admin_post("/reload").unwrap();
    assert_eq!(code, 200, "{body}");

    assert_eq!(status(new_ca).await.unwrap(), 200);
    assert!(
        status(old_ca).await.is_err(),
        "old certificate still served after rotation"
    );
}

#[test]
fn a_request_in_flight_finishes_on_the_rules_it_started_with() {
    let up = RecordingUpstream::start();
    let gw = Gateway::start(opts(&up));
    let body = ssn_patient();
    let (first, second) = body.as_bytes().split_at(body.len() / 2);

    let mut tls = tls_stream(&gw.ca_pem_path(), gw.port());
    write!(
        tls,
        "POST /fhir/Patient HTTP/1.1\r\nHost: localhost\r\n{AUDIT}: in-flight\r\ncontent-type: application/fhir+json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    tls.write_all(first).unwrap();
    tls.flush().unwrap();
    // The request has started (its header reached the upstream) on the enforcing rules.
    let deadline = Instant::now() + Duration::from_secs(10);
    while up.requests().is_empty() {
        assert!(Instant::now() < deadline, "request never started");
        std::thread::sleep(Duration::from_millis(20));
    }

    write_config(&gw, &config_with_ssn_off(&gw));
    let (code, out) = gw.admin_post("/reload").unwrap();
    assert_eq!(code, 200, "{out}");

    tls.write_all(second).unwrap();
    tls.flush().unwrap();
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response);
    assert!(
        response.starts_with("HTTP/1.1 403"),
        "the in-flight request must be judged by the rules it started with:\n{response}"
    );
    up.quiesce();
    assert!(
        up.requests().iter().all(|r| r.body.is_empty()),
        "{}",
        up.describe()
    );

    // A request that starts after the reload gets the new rules.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = gw.client(false);
    assert_eq!(rt.block_on(post_status(&gw, &client, body)), 200);
}

/// Builds a kubelet-style ConfigMap volume in `dir`: `name -> ..data/name`, `..data -> ..v1`.
fn kubelet_volume(dir: &Path, files: &[(String, Vec<u8>)]) {
    std::fs::create_dir_all(dir.join("..v1")).unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.join("..v1").join(name), bytes).unwrap();
        std::os::unix::fs::symlink(format!("..data/{name}"), dir.join(name)).unwrap();
    }
    std::os::unix::fs::symlink("..v1", dir.join("..data")).unwrap();
}

/// What kubelet does on a ConfigMap update: a new timestamped directory, then an atomic
/// rename of a fresh `..data` symlink over the old one. Names absent from the new version
/// keep their (now dangling) symlink until kubelet cleans up, as in a real volume.
fn kubelet_swap(dir: &Path, version: &str, files: &[(String, Vec<u8>)]) {
    let v = dir.join(version);
    std::fs::create_dir_all(&v).unwrap();
    for (name, bytes) in files {
        std::fs::write(v.join(name), bytes).unwrap();
        let link = dir.join(name);
        if link.symlink_metadata().is_err() {
            std::os::unix::fs::symlink(format!("..data/{name}"), link).unwrap();
        }
    }
    std::os::unix::fs::symlink(version, dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
}

fn rule_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn file_watch_follows_a_kubelet_configmap_swap() {
    let up = RecordingUpstream::start();
    let mut o = GatewayOpts::new(up.addr());
    o.reload_watch = true;
    let gw = Gateway::start(o);
    let client = gw.client(false);
    let root = gw.files.dir.path();

    // Move the rules into a ConfigMap-style volume and point the config at it: the watch
    // sees the config file change and reloads.
    let files = rule_files(&root.join("rules"));
    let volume = root.join("rules-volume");
    kubelet_volume(&volume, &files);
    let yaml = gw
        .files
        .yaml
        .replacen("  dir: rules\n", "  dir: rules-volume\n", 1);
    assert_ne!(yaml, gw.files.yaml);
    write_config(&gw, &yaml);
    gw.wait_metric(RELOADS, &[("result", "success")], 1.0);
    assert_eq!(post_status(&gw, &client, ssn_patient()).await, 403);
    let before = gw.metric("phi_gateway_rules_loaded", &[]);

    // A ConfigMap update that drops the files holding the SSN rules: the swap alone must
    // trigger the reload.
    let holds_ssn_rule = |b: &[u8]| {
        let text = String::from_utf8_lossy(b);
        SSN_RULES
            .iter()
            .any(|r| text.contains(&format!("id: {r}\n")))
    };
    let without_ssn: Vec<_> = files
        .iter()
        .filter(|(_, b)| !holds_ssn_rule(b))
        .cloned()
        .collect();
    assert!(
        without_ssn.len() < files.len(),
        "no rule file holds the SSN rules"
    );
    kubelet_swap(&volume, "..v2", &without_ssn);
    gw.wait_metric(RELOADS, &[("result", "success")], 2.0);
    assert!(gw.metric("phi_gateway_rules_loaded", &[]) < before);
    assert_eq!(post_status(&gw, &client, ssn_patient()).await, 200);
    assert_eq!(reloads(&gw, "failure"), 0.0, "{}", gw.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reloading_under_steady_load_fails_and_misclassifies_nothing() {
    let up = RecordingUpstream::start();
    let gw = Arc::new(Gateway::start(opts(&up)));
    let good = gw.files.yaml.clone();
    let bad = good.replacen("routes:\n", "routes:\n  - name: [\n", 1);

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for w in 0..4u32 {
        let (gw, stop, sent) = (gw.clone(), stop.clone(), sent.clone());
        workers.push(tokio::spawn(async move {
            let client = gw.client(w.is_multiple_of(2));
            let mut wrong = Vec::new();
            let mut i = 0usize;
            // Bounded: stops when the reload loop is done, and never runs past 2,000 requests.
            while !stop.load(Ordering::SeqCst) && i < 2_000 {
                let phi = i.is_multiple_of(2);
                let body = if phi {
                    ssn_patient()
                } else {
                    clean_body().to_string()
                };
                let want = if phi { 403 } else { 200 };
                let got = client
                    .post(gw.url("/fhir/Patient"))
                    .header(AUDIT, "load")
                    .header("content-type", "application/fhir+json")
                    .body(body)
                    .send()
                    .await
                    .map(|r| r.status().as_u16());
                match got {
                    Ok(s) if s == want => {}
                    other => wrong.push(format!(
                        "worker {w} request {i}: want {want}, got {other:?}"
                    )),
                }
                i += 1;
                sent.fetch_add(1, Ordering::SeqCst);
            }
            wrong
        }));
    }

    // 20 reloads, alternating a valid and an invalid configuration.
    for round in 0..20u32 {
        let valid = round.is_multiple_of(2);
        write_config(&gw, if valid { &good } else { &bad });
        let (code, body) = tokio::task::spawn_blocking({
            let gw = gw.clone();
            move || gw.admin_post("/reload").expect("POST /reload")
        })
        .await
        .unwrap();
        assert_eq!(code, if valid { 200 } else { 422 }, "round {round}: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let mut wrong = Vec::new();
    for w in workers {
        wrong.extend(w.await.unwrap());
    }
    let total = sent.load(Ordering::SeqCst);
    assert!(
        wrong.is_empty(),
        "{} of {total} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert!(total >= 40, "too little load to mean anything: {total}");
    assert_eq!(reloads(&gw, "success"), 10.0);
    assert_eq!(reloads(&gw, "failure"), 10.0);
}
