//! The response leak guard (issue 12 §2) through the real binary: the recording upstream answers
//! with error pages (`RecordingUpstream::start_answering`, by the last path segment), and the
//! gateway replaces the ones that carry a stack trace, an SQL error or PHI (enforce) or passes
//! them and records `would_block` (monitor). The "no byte of it" cases read the raw HTTP/1.1
//! response over a blocking TLS 1.3 stream to the end, so an upstream byte or header cannot hide
//! behind a client library. The scan itself is the engine's (`where: response`, rules/errors.yaml
//! with its inline tests); the hold-back's budget is unit-tested in `src/gateway/holdback.rs`.

use std::time::Duration;

use serde_json::Value;

use crate::common::*;
use crate::identity::{header, record_of};

/// The synthetic SSN the error pages quote (one `us-ssn` accepts).
const PAGE_SSN: &str = "536-22-1234";
/// A string of the stack trace that must never reach a client the guard refused.
const TRACE_MARK: &str = "PatientService";
/// `response_guard.max_bytes` of the test gateways.
const CAP: usize = 8 * 1024;

fn java_trace() -> String {
    format!(
        "java.lang.NullPointerException: lookup failed for patient SSN {PAGE_SSN}\n\
         \tat org.example.ehr.{TRACE_MARK}.load({TRACE_MARK}.java:87)\n\
         \tat org.example.ehr.PatientController.get(PatientController.java:41)\n"
    )
}

use crate::response_check::gzip;

/// A raw HTTP/1.1 response (`Content-Length` framing, or chunked in two chunks) with the
/// identifying headers of a servlet container, which a replaced answer must not carry.
fn response(status: &str, ctype: &str, extra: &str, body: &[u8], chunked: bool) -> Vec<u8> {
    let extra = format!("server: Apache-Tomcat/9.0.1\r\nx-powered-by: Servlet/4.0\r\n{extra}");
    crate::response_check::response(status, ctype, &extra, body, chunked)
}

const CLEAN_404: &str = r#"{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"not-found","diagnostics":"Resource Patient/pat-9 is not known"}]}"#;
const CLEAN_500: &str =
    r#"{"error":"internal_error","message":"the service is temporarily unavailable"}"#;

/// What the EHR answers, by the last segment of the request path.
fn answer(path: &str) -> Vec<u8> {
    let case = path.rsplit('/').next().unwrap_or("");
    let trace = java_trace();
    match case {
        "java" => response(
            "500 Internal Server Error",
            "text/html",
            "",
            format!("<html><body><pre>{trace}</pre></body></html>").as_bytes(),
            false,
        ),
        "phi" => response(
            "422 Unprocessable Entity",
            "application/json",
            "location: /fhir/Patient/pat-1\r\n",
            format!(r#"{{"error":"duplicate","detail":"a patient with SSN {PAGE_SSN} exists"}}"#)
                .as_bytes(),
            false,
        ),
        "chunked" => response(
            "500 Internal Server Error",
            "text/plain",
            "",
            trace.as_bytes(),
            true,
        ),
        "gzip" => response(
            "503 Service Unavailable",
            "text/plain",
            "content-encoding: gzip\r\n",
            &gzip(trace.as_bytes()),
            true,
        ),
        "big" => {
            let mut body = "x".repeat(CAP * 2);
            body.push_str(&trace);
            response(
                "500 Internal Server Error",
                "text/plain",
                "",
                body.as_bytes(),
                false,
            )
        }
        "clean404" => response(
            "404 Not Found",
            "application/fhir+json",
            "",
            CLEAN_404.as_bytes(),
            false,
        ),
        "clean500" => response(
            "500 Internal Server Error",
            "application/json",
            "",
            CLEAN_500.as_bytes(),
            false,
        ),
        "ok" => response("200 OK", "text/plain", "", trace.as_bytes(), false),
        _ => response("404 Not Found", "text/plain", "", b"no such case", false),
    }
}

fn ehr() -> RecordingUpstream {
    RecordingUpstream::start_answering(|r| {
        let path = r.request_line().split(' ').nth(1).unwrap_or("").to_string();
        answer(&path)
    })
}

/// A gateway whose `fhir` route (enforce) guards with `guard` lines and whose `monitor` route
/// monitors (its mode caps the guard's).
fn gateway(up: &RecordingUpstream, guard: &[&str]) -> Gateway {
    let mut o = GatewayOpts::new(up.addr());
    o.fhir_route_extra = vec![
        "    response_guard:".into(),
        format!("      max_bytes: {CAP}"),
    ];
    o.fhir_route_extra
        .extend(guard.iter().map(|l| format!("      {l}")));
    Gateway::start(o)
}

async fn get(gw: &Gateway, h2: bool, path: &str) -> (u16, Vec<(String, String)>, String) {
    let resp = gw
        .client(h2)
        .get(gw.url(path))
        .header(AUDIT, "leak-guard")
        .header("accept-encoding", "identity")
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    let headers = header_pairs(&resp);
    let body = resp.text().await.expect("body");
    (status, headers, body)
}

fn raw_get(gw: &Gateway, path: &str) -> String {
    raw_get_http1(gw, path, "")
}

/// Nothing of the upstream's answer: no trace text, no SSN, no upstream header.
fn assert_nothing_of_upstream(raw: &str, what: &str) {
    let lower = raw.to_ascii_lowercase();
    for leak in [
        TRACE_MARK,
        PAGE_SSN,
        "NullPointerException",
        "IllegalStateException",
    ] {
        assert!(!raw.contains(leak), "{what}: `{leak}` leaked: {raw}");
    }
    for h in ["server:", "x-powered-by:", "location:", "content-encoding:"] {
        assert!(!lower.contains(h), "{what}: upstream header `{h}`: {raw}");
    }
}

fn request_id(raw: &str) -> String {
    raw.lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .expect("request id header")
        .trim()
        .to_string()
}

/// A 500 with a Java stack trace quoting an SSN is replaced (status kept, problem+json with
/// the request id, no upstream byte or header); an error body with PHI only, and chunked and
/// gzip-compressed traces, are replaced the same way, over HTTP/1.1 and HTTP/2. The audit
/// record lists the rules with lengths and keyed fingerprints, never the text; the counter
/// counts each.
#[tokio::test]
async fn error_bodies_with_traces_or_phi_are_replaced_in_enforce() {
    let up = ehr();
    let gw = gateway(&up, &[]);
    for (path, status) in [
        ("/fhir/err/java", 500),
        ("/fhir/err/phi", 422),
        ("/fhir/err/chunked", 500),
        ("/fhir/err/gzip", 503),
    ] {
        let raw = raw_get(&gw, path);
        assert!(
            raw.starts_with(&format!("HTTP/1.1 {status} ")),
            "{path}: {raw}"
        );
        assert_eq!(raw.matches("HTTP/1.1 ").count(), 1, "{path}: {raw}");
        assert_nothing_of_upstream(&raw, path);
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/problem+json"),
            "{path}: {head}"
        );
        let json: Value =
            serde_json::from_str(body.trim()).unwrap_or_else(|e| panic!("{path}: {e}: {raw}"));
        let id = request_id(&raw);
        assert_eq!(json["reason"], "response_leak_blocked", "{path}: {json}");
        assert_eq!(json["status"], status, "{path}: {json}");
        assert_eq!(json["request_id"], id.as_str(), "{path}: {json}");

        let rec = record_of(&gw, &id);
        let text = rec.to_string();
        assert!(
            !text.contains(PAGE_SSN) && !text.contains(TRACE_MARK),
            "{path}: {rec}"
        );
        assert_eq!(rec["decision"], "block", "{path}: {rec}");
        assert_eq!(rec["reason"], "response_leak_blocked", "{path}: {rec}");
        assert_eq!(rec["status"], status, "{path}: {rec}");
        let leak = &rec["response_leak"];
        assert_eq!(leak["action"], "block", "{path}: {rec}");
        assert_eq!(leak["upstream_status"], status, "{path}: {rec}");
        assert!(
            leak["body_hmac"].as_str().is_some_and(|h| h.len() == 64),
            "{path}: {rec}"
        );
        let findings = leak["findings"].as_array().expect("findings");
        let rules: Vec<&str> = findings.iter().filter_map(|f| f["rule"].as_str()).collect();
        assert!(rules.contains(&"us-ssn"), "{path}: {rules:?}");
        if path != "/fhir/err/phi" {
            assert!(rules.contains(&"java-stack-trace"), "{path}: {rules:?}");
        }
        for f in findings {
            assert!(f["length"].as_u64().is_some_and(|n| n > 0), "{path}: {f}");
            assert!(
                f["fingerprint"]
                    .as_str()
                    .is_some_and(|h| h.starts_with("hmac-sha256:")),
                "{path}: {f}"
            );
        }
    }
    // HTTP/2: the same replacement.
    let (s, h, body) = get(&gw, true, "/fhir/err/java").await;
    assert_eq!(s, 500, "{body}");
    assert_eq!(header(&h, "content-type"), Some("application/problem+json"));
    assert!(
        header(&h, "server").is_none() && header(&h, "x-powered-by").is_none(),
        "{h:?}"
    );
    assert!(
        !body.contains(TRACE_MARK) && !body.contains(PAGE_SSN),
        "{body}"
    );
    let m = gw.metric(
        "phi_gateway_response_leaks_total",
        &[("route", "fhir"), ("action", "block")],
    );
    assert_eq!(m, 5.0);
    // The log line names the rules, not the text.
    let logs = gw.logs();
    assert!(logs.contains("response leak guard") && logs.contains("java-stack-trace"));
    assert!(
        !logs.contains(PAGE_SSN) && !logs.contains(TRACE_MARK),
        "the log leaked"
    );
}

/// Monitor (the `monitor` route caps the guard) passes the trace unchanged and records
/// `would_block` with the rules.
#[tokio::test]
async fn monitor_passes_the_body_and_records_would_block() {
    let up = ehr();
    let gw = gateway(&up, &[]);
    for h2 in [false, true] {
        let (s, h, body) = get(&gw, h2, "/monitor/err/java").await;
        assert_eq!(s, 500);
        assert!(
            body.contains(TRACE_MARK),
            "monitor passes the body unchanged: {body}"
        );
        let id = header(&h, "x-request-id").expect("request id").to_string();
        let rec = record_of(&gw, &id);
        assert_eq!(rec["decision"], "would_block", "{rec}");
        assert_eq!(rec["reason"], "response_leak_blocked", "{rec}");
        assert_eq!(rec["response_leak"]["action"], "would_block", "{rec}");
        assert!(!rec.to_string().contains(PAGE_SSN), "{rec}");
    }
    gw.wait_metric(
        "phi_gateway_response_leaks_total",
        &[("route", "monitor"), ("action", "would_block")],
        2.0,
    );

    // `include_2xx` (monitor only): a 200 is scanned with the error signatures alone, never
    // the PHI rules (its body is the resource asked for), and passes unchanged.
    let gw = gateway(&up, &["mode: monitor", "include_2xx: true"]);
    let (s, h, body) = get(&gw, false, "/fhir/ok/ok").await;
    assert_eq!((s, body), (200, java_trace()));
    let id = header(&h, "x-request-id").expect("request id").to_string();
    let rec = record_of(&gw, &id);
    assert_eq!(rec["decision"], "would_block", "{rec}");
    let rules = rec["response_leak"]["findings"].to_string();
    assert!(rules.contains("java-stack-trace"), "{rec}");
    assert!(
        !rules.contains("us-ssn"),
        "PHI rules do not run on a 2xx: {rec}"
    );
}

/// Clean error bodies and 2xx answers pass unchanged: a FHIR 404 OperationOutcome, a plain
/// JSON 500, and (by default) a 200 whatever it holds; none is recorded as a leak.
#[tokio::test]
async fn clean_errors_and_2xx_pass_unchanged() {
    let up = ehr();
    let gw = gateway(&up, &[]);
    for h2 in [false, true] {
        for (path, status, want) in [
            ("/fhir/err/clean404", 404, CLEAN_404.to_string()),
            ("/fhir/err/clean500", 500, CLEAN_500.to_string()),
            ("/fhir/ok/ok", 200, java_trace()),
        ] {
            let (s, h, body) = get(&gw, h2, path).await;
            assert_eq!(s, status, "{path} h2={h2}: {body}");
            assert_eq!(body, want, "{path} h2={h2}");
            let id = header(&h, "x-request-id").expect("request id").to_string();
            let rec = record_of(&gw, &id);
            assert_eq!(rec["decision"], "allow", "{path}: {rec}");
            assert!(rec.get("response_leak").is_none(), "{path}: {rec}");
        }
    }
    assert_eq!(
        gw.metric(
            "phi_gateway_response_leaks_total",
            &[("route", "fhir"), ("action", "block")]
        ),
        0.0
    );
}

/// On a FHIR route (`answer: fhir`) the replacement is an OperationOutcome.
#[tokio::test]
async fn fhir_routes_answer_with_an_operation_outcome() {
    let up = ehr();
    let gw = gateway(&up, &["answer: fhir"]);
    let (s, h, body) = get(&gw, false, "/fhir/err/java").await;
    assert_eq!(s, 500, "{body}");
    assert_eq!(header(&h, "content-type"), Some("application/fhir+json"));
    let v: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(v["resourceType"], "OperationOutcome", "{v}");
    assert_eq!(v["issue"][0]["code"], "exception", "{v}");
    let id = header(&h, "x-request-id").expect("request id");
    assert!(
        v["issue"][0]["diagnostics"]
            .as_str()
            .is_some_and(|d| d.contains(id)),
        "{v}"
    );
    assert!(
        !body.contains(TRACE_MARK) && !body.contains(PAGE_SSN),
        "{body}"
    );
}

/// An answer over `max_bytes` is cut in enforce (502 `response_too_large`, nothing of it) and
/// passed unscanned in monitor; an upstream that resets mid-body leaves the client a clean 502
/// with nothing of what it had sent.
#[tokio::test]
async fn over_the_cap_and_mid_body_resets() {
    let up = ehr();
    let gw = gateway(&up, &[]);
    let raw = raw_get(&gw, "/fhir/err/big");
    assert!(raw.starts_with("HTTP/1.1 502 "), "{raw}");
    assert!(raw.contains("response_too_large"), "{raw}");
    assert!(!raw.contains("xxxxxxxx"), "no byte of the body");
    assert_nothing_of_upstream(&raw, "over the cap");
    let rec = record_of(&gw, &request_id(&raw));
    assert_eq!(rec["response_leak"]["action"], "cut", "{rec}");

    let monitor = gateway(&up, &["mode: monitor"]);
    let (s, _, body) = get(&monitor, false, "/fhir/err/big").await;
    assert_eq!(s, 500);
    assert_eq!(
        body.len(),
        CAP * 2 + java_trace().len(),
        "monitor passes it whole"
    );
    monitor.wait_metric(
        "phi_gateway_response_leaks_total",
        &[("route", "fhir"), ("action", "unscanned")],
        1.0,
    );

    let reset = RecordingUpstream::start_with(UpstreamMode::ResetInErrorBody);
    let gw = gateway(&reset, &[]);
    for _ in 0..2 {
        let raw = raw_get(&gw, "/fhir/err/reset");
        assert!(raw.starts_with("HTTP/1.1 502 "), "{raw}");
        assert!(
            !raw.contains("IllegalStateException") && !raw.contains(PAGE_SSN),
            "{raw}"
        );
        assert!(!raw.contains(PARTIAL_ERROR_BODY), "{raw}");
    }
    let (s, _, body) = get(&gw, true, "/fhir/err/reset").await;
    assert_eq!(s, 502, "{body}");
    assert!(!body.contains(PAGE_SSN), "{body}");
}

/// Many concurrent error answers share `limits.response_hold_budget_bytes`: with room for two
/// bodies, some of 120 concurrent 500s are cut (502 `response_too_large`), none is released
/// partly, and the held bytes return to zero.
#[tokio::test]
async fn concurrent_error_answers_stay_within_the_hold_budget() {
    let body = format!("{{\"error\":\"{}\"}}", "y".repeat(30 * 1024));
    let expected = body.clone();
    let up = RecordingUpstream::start_answering(move |_| {
        response(
            "500 Internal Server Error",
            "application/json",
            "",
            body.as_bytes(),
            false,
        )
    });
    let mut o = GatewayOpts::new(up.addr());
    o.limits = vec!["  response_hold_budget_bytes: 65536".into()];
    o.fhir_route_extra = vec![
        "    response_guard:".into(),
        "      max_bytes: 49152".into(),
    ];
    let gw = Gateway::start(o);
    let client = gw.client(true);
    let mut tasks = Vec::new();
    for i in 0..120 {
        let req = client
            .get(gw.url(&format!("/fhir/err/budget-{i}")))
            .header(AUDIT, "leak-guard")
            .timeout(Duration::from_secs(30));
        tasks.push(tokio::spawn(async move {
            let resp = req.send().await.expect("request");
            let status = resp.status().as_u16();
            (status, resp.text().await.unwrap_or_default())
        }));
    }
    let (mut whole, mut cut) = (0, 0);
    for t in tasks {
        let (status, text) = t.await.expect("task");
        match status {
            500 => {
                assert_eq!(text, expected, "a released body is whole");
                whole += 1;
            }
            502 => {
                assert!(text.contains("response_too_large"), "{text}");
                cut += 1;
            }
            other => panic!("unexpected status {other}: {text}"),
        }
    }
    assert!(
        whole > 0 && cut > 0,
        "whole {whole}, cut {cut}: the budget did not bind"
    );
    let scrape = scrape_when(&gw, |s| {
        metric_value(s, "phi_gateway_response_held_bytes", &[]) == 0.0
    });
    assert_eq!(
        metric_value(&scrape, "phi_gateway_response_held_bytes", &[]),
        0.0
    );
}
