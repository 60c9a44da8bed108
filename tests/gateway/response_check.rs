//! The response hold-back and the compartment check of responses (issue 11 §3, last bullet)
//! through the real binary: a patient-bound read by id is forwarded, the recording upstream
//! answers it (`RecordingUpstream::start_answering`), and the gateway releases the answer byte
//! for byte or replaces it by its own error. The "no byte of it" cases read the raw HTTP/1.1
//! response over a blocking TLS 1.3 stream to the end, so a leaked header or body byte of the
//! upstream's answer cannot hide behind a client library. The check itself is unit-tested in
//! `src/access/policy/response.rs`.

use std::io::Write;

use serde_json::{json, Value};

use crate::access_policy::shipped_policy;
use crate::common::*;
use crate::identity::{access_lines, header, record_of, JwksServer, Keys};

/// A string only the foreign (another patient's) answers carry: it must never reach a client
/// the check refused.
const FOREIGN: &str = "FOREIGN-MARKER-7d1c";

/// `response_hold_bytes` of the test gateways.
const CAP: usize = 64 * 1024;

fn observation(patient: &str) -> String {
    let note = if patient == "pat-1" { "own" } else { FOREIGN };
    json!({"resourceType": "Observation", "id": "obs", "status": "final",
           "code": {"text": note}, "subject": {"reference": format!("Patient/{patient}")}})
    .to_string()
}

fn history(entries: &[&str], next: Option<&str>) -> String {
    let mut b = json!({
        "resourceType": "Bundle", "type": "history",
        "link": [{"relation": "self", "url": "https://ehr.example/fhir/Observation/obs-1/_history"}],
        "entry": entries.iter().map(|p| json!({"resource": serde_json::from_str::<Value>(&observation(p)).unwrap()})).collect::<Vec<_>>(),
    });
    if let Some(url) = next {
        b["link"]
            .as_array_mut()
            .unwrap()
            .push(json!({"relation": "next", "url": url}));
    }
    b.to_string()
}

pub(crate) fn gzip(data: &[u8]) -> Vec<u8> {
    use flate2::write::GzEncoder;
    let mut e = GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A raw HTTP/1.1 response: `Content-Length` framing, or chunked in two chunks.
pub(crate) fn response(
    status: &str,
    ctype: &str,
    extra: &str,
    body: &[u8],
    chunked: bool,
) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\n{extra}").into_bytes();
    if chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n");
        let (a, b) = body.split_at(body.len() / 2);
        for part in [a, b] {
            out.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
            out.extend_from_slice(part);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n\r\n");
    } else {
        out.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
        out.extend_from_slice(body);
    }
    out
}

/// What the EHR answers, by request path.
fn answer(path: &str) -> Vec<u8> {
    let fhir = "application/fhir+json";
    let json = |b: String| response("200 OK", fhir, "", b.as_bytes(), false);
    match path {
        "/fhir/Observation/obs-1" => json(observation("pat-1")),
        "/fhir/Observation/obs-2" => json(observation("pat-2")),
        "/fhir/Observation/obs-chunked" => {
            response("200 OK", fhir, "", observation("pat-1").as_bytes(), true)
        }
        "/fhir/Observation/obs-gz" => response(
            "200 OK",
            fhir,
            "content-encoding: gzip\r\n",
            &gzip(observation("pat-1").as_bytes()),
            true,
        ),
        "/fhir/Observation/obs-gz-foreign" => response(
            "200 OK",
            fhir,
            "content-encoding: gzip\r\n",
            &gzip(observation("pat-2").as_bytes()),
            false,
        ),
        "/fhir/Observation/obs-1/_history" => json(history(&["pat-1", "pat-1"], None)),
        "/fhir/Observation/obs-3/_history" => json(history(&["pat-1", "pat-2"], None)),
        "/fhir/Observation/obs-4/_history" => json(history(
            &["pat-1"],
            Some("https://ehr.example/fhir/Observation?_page=2"),
        )),
        "/fhir/Observation/obs-big" => {
            let pad = "x".repeat(CAP * 2);
            let body = json!({"resourceType": "Observation", "id": "big", "status": "final",
                "code": {"text": pad}, "subject": {"reference": "Patient/pat-1"}});
            json(body.to_string())
        }
        "/fhir/Observation/obs-xml" => response(
            "200 OK",
            "application/fhir+xml",
            "",
            b"<Observation xmlns=\"http://hl7.org/fhir\"><subject><reference value=\"Patient/pat-1\"/></subject></Observation>",
            false,
        ),
        "/fhir/Observation/obs-missing" => response(
            "404 Not Found",
            fhir,
            "",
            br#"{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"not-found"}]}"#,
            false,
        ),
        // No length at all: the body ends when the upstream closes.
        "/fhir/Observation/obs-close" => {
            let mut out =
                format!("HTTP/1.1 200 OK\r\ncontent-type: {fhir}\r\nconnection: close\r\n\r\n")
                    .into_bytes();
            out.extend_from_slice(observation("pat-1").as_bytes());
            out
        }
        // Declares more than it sends, then closes: the answer breaks mid-body.
        "/fhir/Observation/obs-truncated" => {
            let body = observation("pat-2");
            let mut out = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: {fhir}\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
                body.len() + 100
            )
            .into_bytes();
            out.extend_from_slice(body.as_bytes());
            out
        }
        _ => response("500 Internal Server Error", "text/plain", "", b"no such case", false),
    }
}

/// A batch-response Bundle whose entry is `patient`'s Observation.
fn batch_response(patient: &str) -> String {
    json!({"resourceType": "Bundle", "type": "batch-response", "entry": [{
        "resource": serde_json::from_str::<Value>(&observation(patient)).unwrap(),
        "response": {"status": "200 OK"}
    }]})
    .to_string()
}

fn ehr() -> RecordingUpstream {
    RecordingUpstream::start_answering(|r| {
        let path = r.request_line().split(' ').nth(1).unwrap_or("").to_string();
        if r.request_line().starts_with("POST /fhir/ ") {
            // A batch: its one entry reads the Observation the body names.
            let foreign = String::from_utf8_lossy(&r.body).contains("obs-2");
            let body = batch_response(if foreign { "pat-2" } else { "pat-1" });
            return response(
                "200 OK",
                "application/fhir+json",
                "",
                body.as_bytes(),
                false,
            );
        }
        answer(&path)
    })
}

pub(crate) fn gateway(up: &RecordingUpstream, jwks: &JwksServer, mode: &str) -> Gateway {
    let mut o = GatewayOpts::new(up.addr());
    o.access = access_lines(jwks, &[]);
    o.access
        .push(format!("  policy: [\"{}\"]", shipped_policy().display()));
    o.access.push(format!("  response_hold_bytes: {CAP}"));
    o.fhir_route_extra = vec![
        "    access:".into(),
        "      require: token".into(),
        format!("      mode: {mode}"),
    ];
    Gateway::start(o)
}

fn patient_app(keys: &Keys) -> String {
    keys.token(
        "ES256",
        json!({"scope": "patient/*.rs", "patient": "pat-1"}),
    )
}

async fn get(
    gw: &Gateway,
    h2: bool,
    path: &str,
    token: &str,
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let resp = gw
        .client(h2)
        .get(gw.url(path))
        .header(AUDIT, "response-check")
        .header("authorization", format!("Bearer {token}"))
        .header("accept-encoding", "identity")
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    let headers = header_pairs(&resp);
    let body = resp.bytes().await.expect("body").to_vec();
    (status, headers, body)
}

/// Everything the gateway writes for one HTTP/1.1 GET with `token`.
fn raw_get(gw: &Gateway, path: &str, token: &str) -> String {
    raw_get_http1(gw, path, &format!("Authorization: Bearer {token}\r\n"))
}

/// A raw refusal: our status line first, our JSON body with `reason`, nothing of the
/// upstream's answer anywhere (no foreign marker, no upstream header).
fn assert_raw_refusal(raw: &str, status: u16, reason: &str, what: &str) {
    assert!(
        raw.starts_with(&format!("HTTP/1.1 {status} ")),
        "{what}: {raw}"
    );
    assert_eq!(
        raw.matches("HTTP/1.1 ").count(),
        1,
        "{what}: more than one response head: {raw}"
    );
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
    let lower = head.to_ascii_lowercase();
    assert!(
        lower.contains("content-type: application/json"),
        "{what}: {head}"
    );
    assert!(
        !lower.contains("fhir+json") && !lower.contains("content-encoding"),
        "{what}: {head}"
    );
    let json: Value = serde_json::from_str(body.trim())
        .unwrap_or_else(|e| panic!("{what}: body is not our JSON ({e}): {raw}"));
    assert_eq!(json["reason"], reason, "{what}: {raw}");
    assert!(
        !raw.contains(FOREIGN) && !raw.contains("pat-2"),
        "{what}: {raw}"
    );
    assert!(!raw.contains("resourceType"), "{what}: {raw}");
}

/// The access fields of a request's audit record.
fn access_of(gw: &Gateway, id: &str) -> Value {
    record_of(gw, id)["access"].clone()
}

/// The patient's own Observation is released byte for byte (Content-Length, chunked and
/// close-delimited framing, HTTP/1.1 and HTTP/2); another patient's, over the raw stream, is 403 without a byte of it;
/// each is audited with its decision and counted once.
#[tokio::test]
async fn a_read_by_id_is_released_only_when_it_is_the_patients() {
    let up = ehr();
    let keys = Keys::new("h");
    let jwks = JwksServer::start(keys.jwks());
    let gw = gateway(&up, &jwks, "enforce");
    let app = patient_app(&keys);

    for h2 in [false, true] {
        for path in [
            "/fhir/Observation/obs-1",
            "/fhir/Observation/obs-chunked",
            "/fhir/Observation/obs-close",
        ] {
            let (s, h, b) = get(&gw, h2, path, &app).await;
            assert_eq!(s, 200, "{path} h2={h2}: {}", String::from_utf8_lossy(&b));
            assert_eq!(b, observation("pat-1").as_bytes(), "{path} h2={h2}");
            assert_eq!(header(&h, "content-type"), Some("application/fhir+json"));
            let id = header(&h, "x-request-id").expect("request id");
            let a = access_of(&gw, id);
            assert_eq!(a["decision"], "allow", "{a}");
            assert_eq!(a["reason"], "allowed", "{a}");
            assert_eq!(a["post_check"], "response", "{a}");
        }
    }

    let before = up.requests().len();
    let raw = raw_get(&gw, "/fhir/Observation/obs-2", &app);
    assert_raw_refusal(
        &raw,
        403,
        "insufficient_scope",
        "another patient's Observation",
    );
    assert!(
        raw.to_ascii_lowercase().contains(
            "www-authenticate: bearer realm=\"phi-gateway\", error=\"insufficient_scope\""
        ),
        "{raw}"
    );
    // The upstream was asked (only its answer can tell) and its answer withheld.
    up.quiesce();
    assert_eq!(up.requests().len(), before + 1, "{}", up.describe());
    let id = raw
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .expect("request id header")
        .trim()
        .to_string();
    let rec = record_of(&gw, &id);
    assert_eq!(rec["decision"], "block", "{rec}");
    assert_eq!(rec["reason"], "insufficient_scope", "{rec}");
    assert_eq!(rec["access"]["decision"], "deny", "{rec}");
    assert_eq!(
        rec["access"]["reason"], "response_outside_compartment",
        "{rec}"
    );
    assert!(!rec.to_string().contains("pat-2"), "{rec}");
    // And over HTTP/2.
    let (s, h, b) = get(&gw, true, "/fhir/Observation/obs-2", &app).await;
    let b = String::from_utf8_lossy(&b).into_owned();
    check_refusal(s, &h, &b, 403, "insufficient_scope");
    assert!(!b.contains(FOREIGN), "{b}");

    gw.wait_metric(
        "phi_gateway_access_decisions_total",
        &[
            ("decision", "deny"),
            ("reason", "response_outside_compartment"),
        ],
        2.0,
    );
    gw.wait_metric(
        "phi_gateway_access_decisions_total",
        &[("decision", "allow"), ("reason", "allowed")],
        6.0,
    );
    assert!(
        !gw.logs().contains(FOREIGN),
        "the upstream's answer reached the log"
    );
}

/// The check reads through the Content-Encoding (the client gets the gzip bytes as sent),
/// judges Bundles entry by entry and their paging links as requests, lets an
/// OperationOutcome through, and refuses with a typed reason what it cannot read: a body
/// over the cap, FHIR XML, an answer broken mid-body. A batch Bundle with a read by id is
/// decided on its body first, then on its held answer.
#[tokio::test]
async fn encodings_bundles_links_the_cap_and_formats() {
    let up = ehr();
    let keys = Keys::new("b");
    let jwks = JwksServer::start(keys.jwks());
    let gw = gateway(&up, &jwks, "enforce");
    let app = patient_app(&keys);

    // gzip: released as the upstream sent it, still encoded.
    let (s, h, b) = get(&gw, false, "/fhir/Observation/obs-gz", &app).await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    assert_eq!(header(&h, "content-encoding"), Some("gzip"));
    assert_eq!(b, gzip(observation("pat-1").as_bytes()));
    // A foreign Observation behind gzip is seen through.
    let raw = raw_get(&gw, "/fhir/Observation/obs-gz-foreign", &app);
    assert_raw_refusal(
        &raw,
        403,
        "insufficient_scope",
        "gzip-encoded foreign Observation",
    );

    // Bundles.
    let (s, _, b) = get(&gw, false, "/fhir/Observation/obs-1/_history", &app).await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    assert_eq!(b, history(&["pat-1", "pat-1"], None).as_bytes());
    for (path, why) in [
        (
            "/fhir/Observation/obs-3/_history",
            "response_outside_compartment",
        ),
        (
            "/fhir/Observation/obs-4/_history",
            "response_link_outside_compartment",
        ),
    ] {
        let raw = raw_get(&gw, path, &app);
        assert_raw_refusal(&raw, 403, "insufficient_scope", path);
        assert!(!raw.contains("_page"), "{path}: {raw}");
        let id = raw
            .lines()
            .find_map(|l| l.strip_prefix("x-request-id: "))
            .unwrap()
            .trim()
            .to_string();
        assert_eq!(access_of(&gw, &id)["reason"], why, "{path}");
    }

    // An OperationOutcome passes with the upstream's status.
    let (s, _, b) = get(&gw, false, "/fhir/Observation/obs-missing", &app).await;
    assert_eq!(s, 404, "{}", String::from_utf8_lossy(&b));
    assert!(String::from_utf8_lossy(&b).contains("OperationOutcome"));

    // Over the cap: a typed 502, none of the body.
    let raw = raw_get(&gw, "/fhir/Observation/obs-big", &app);
    assert_raw_refusal(&raw, 502, "response_too_large", "over the cap");
    assert!(raw.len() < 2048, "{} bytes", raw.len());

    // FHIR XML: a typed 406, none of the body.
    let raw = raw_get(&gw, "/fhir/Observation/obs-xml", &app);
    assert_raw_refusal(&raw, 406, "unsupported_response_format", "FHIR XML");
    assert!(!raw.contains("<Observation"), "{raw}");
    let id = raw
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(access_of(&gw, &id)["reason"], "response_not_json");

    // An answer that breaks mid-body: the upstream's failure, none of what it sent.
    let raw = raw_get(&gw, "/fhir/Observation/obs-truncated", &app);
    assert!(raw.starts_with("HTTP/1.1 502 "), "{raw}");
    assert!(
        !raw.contains(FOREIGN) && !raw.contains("resourceType"),
        "{raw}"
    );

    // A batch with a read by id: decided on the request body, then on the held answer.
    for (obs, status) in [("obs-1", 200), ("obs-2", 403)] {
        let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
            {"request": {"method": "GET", "url": format!("Observation/{obs}")}}
        ]})
        .to_string();
        let resp = gw
            .client(false)
            .post(gw.url("/fhir/"))
            .header(AUDIT, "response-check")
            .header("authorization", format!("Bearer {app}"))
            .header("content-type", "application/fhir+json")
            .body(batch)
            .send()
            .await
            .expect("request");
        let (s, h, b, _) = read_response(resp).await;
        if status == 200 {
            assert_eq!(s, 200, "{b}");
            assert_eq!(b, batch_response("pat-1"));
        } else {
            check_refusal(s, &h, &b, 403, "insufficient_scope");
            assert!(!b.contains(FOREIGN), "{b}");
        }
    }

    // Plain clients see the same typed answers.
    let (s, h, b) = get(&gw, true, "/fhir/Observation/obs-big", &app).await;
    check_refusal(
        s,
        &h,
        &String::from_utf8_lossy(&b),
        502,
        "response_too_large",
    );
}

/// Monitor mode holds nothing: another patient's Observation is forwarded as sent, and
/// audited and counted as `would_deny` with the response check's reason.
#[tokio::test]
async fn monitor_mode_forwards_and_records_would_deny() {
    let up = ehr();
    let keys = Keys::new("w");
    let jwks = JwksServer::start(keys.jwks());
    let gw = gateway(&up, &jwks, "monitor");
    let app = patient_app(&keys);
    let (s, h, b) = get(&gw, false, "/fhir/Observation/obs-2", &app).await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    assert_eq!(b, observation("pat-2").as_bytes());
    let id = header(&h, "x-request-id").unwrap().to_string();
    let rec = record_of(&gw, &id);
    assert_eq!(rec["decision"], "would_block", "{rec}");
    assert_eq!(rec["access"]["decision"], "would_deny", "{rec}");
    assert_eq!(
        rec["access"]["reason"], "response_outside_compartment",
        "{rec}"
    );
    gw.wait_metric(
        "phi_gateway_access_decisions_total",
        &[
            ("decision", "would_deny"),
            ("reason", "response_outside_compartment"),
        ],
        1.0,
    );
    // Its own Observation is a plain allow.
    let (s, h, _) = get(&gw, false, "/fhir/Observation/obs-1", &app).await;
    assert_eq!(s, 200);
    let a = access_of(&gw, header(&h, "x-request-id").unwrap());
    assert_eq!(a["decision"], "allow", "{a}");
}
