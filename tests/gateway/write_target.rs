//! The read before a write by id (`post_check: target`, issue 11 §3) through the real
//! binary: a patient-bound `PUT`/`DELETE Observation/{id}` is forwarded only after the gateway
//! read the current version from the recording upstream and found it in the patient's
//! compartment, with an `If-Match` naming the version it read; another patient's resource is
//! refused with nothing but the read reaching the upstream; a read that fails refuses the
//! write. The judgement itself is unit-tested in `src/access/policy/target.rs`.

use serde_json::{json, Value};

use crate::common::*;
use crate::identity::{header, record_of, JwksServer, Keys};
use crate::response_check::{gateway, response};

fn observation(id: &str, patient: &str) -> String {
    json!({"resourceType": "Observation", "id": id, "status": "final",
           "meta": {"versionId": "7"},
           "code": {"text": "peak flow"}, "subject": {"reference": format!("Patient/{patient}")}})
    .to_string()
}

/// The EHR: current versions by path (`obs-1` is pat-1's with an ETag, `obs-2` pat-2's,
/// `obs-noetag` pat-1's with only `meta.versionId`, `obs-new` absent, `obs-broken` a 500),
/// and every write accepted.
fn ehr() -> RecordingUpstream {
    RecordingUpstream::start_answering(|r| {
        let line = r.request_line().to_string();
        let fhir = "application/fhir+json";
        let ok = |b: String, extra: &str| response("200 OK", fhir, extra, b.as_bytes(), false);
        match line.split(' ').take(2).collect::<Vec<_>>()[..] {
            ["GET", "/fhir/Observation/obs-1"] => {
                ok(observation("obs-1", "pat-1"), "etag: W/\"7\"\r\n")
            }
            ["GET", "/fhir/Observation/obs-2"] => ok(observation("obs-2", "pat-2"), ""),
            ["GET", "/fhir/Observation/obs-noetag"] => ok(observation("obs-noetag", "pat-1"), ""),
            ["GET", "/fhir/Observation/obs-new"] => response(
                "404 Not Found",
                fhir,
                "",
                br#"{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"not-found"}]}"#,
                false,
            ),
            ["PUT", _] => ok(String::from_utf8_lossy(&r.body).into_owned(), ""),
            ["DELETE", _] => response("204 No Content", fhir, "", b"", false),
            _ => response("500 Internal Server Error", "text/plain", "", b"boom", false),
        }
    })
}

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

async fn write(
    gw: &Gateway,
    method: &str,
    path: &str,
    token: &str,
    body: Option<String>,
) -> Answer {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = gw
        .client(false)
        .request(m, gw.url(path))
        .header(AUDIT, "write-target")
        .header("authorization", format!("Bearer {token}"));
    if let Some(b) = body {
        req = req.header("content-type", "application/fhir+json").body(b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let headers = header_pairs(&resp);
    let body = resp.text().await.unwrap_or_default();
    Answer {
        status,
        headers,
        body,
    }
}

/// The upstream's request lines since `before`, and the `If-Match` of each.
fn seen(up: &RecordingUpstream, before: usize) -> Vec<(String, Option<String>)> {
    up.requests()
        .into_iter()
        .skip(before)
        .map(|r| (r.request_line().to_string(), r.header("if-match")))
        .collect()
}

fn line(method: &str, path: &str) -> String {
    format!("{method} {path} HTTP/1.1")
}

fn access(gw: &Gateway, a: &Answer) -> Value {
    let id = header(&a.headers, "x-request-id").unwrap_or_default();
    record_of(gw, id)["access"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_by_id_is_forwarded_only_when_its_current_version_is_the_patients() {
    let up = ehr();
    let keys = Keys::new("t");
    let jwks = JwksServer::start(keys.jwks());
    let gw = gateway(&up, &jwks, "enforce");
    let app = keys.token(
        "ES256",
        json!({"scope": "patient/Observation.cruds", "patient": "pat-1"}),
    );

    // Own resource: read, then the write with the version read.
    let before = up.requests().len();
    let a = write(
        &gw,
        "PUT",
        "/fhir/Observation/obs-1",
        &app,
        Some(observation("obs-1", "pat-1")),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        seen(&up, before),
        vec![
            (line("GET", "/fhir/Observation/obs-1"), None),
            (
                line("PUT", "/fhir/Observation/obs-1"),
                Some("W/\"7\"".into())
            ),
        ]
    );
    assert_eq!(access(&gw, &a)["decision"], "allow");
    assert_eq!(access(&gw, &a)["post_check"], "target");

    // No ETag: the version id of the body read stands in for it. A delete, same rules.
    let before = up.requests().len();
    let a = write(&gw, "DELETE", "/fhir/Observation/obs-noetag", &app, None).await;
    assert_eq!(a.status, 204, "{}", a.body);
    assert_eq!(
        seen(&up, before),
        vec![
            (line("GET", "/fhir/Observation/obs-noetag"), None),
            (
                line("DELETE", "/fhir/Observation/obs-noetag"),
                Some("W/\"7\"".into())
            ),
        ]
    );

    // Another patient's Observation, overwritten with a body naming the app's own patient
    // (the record-hopping write), or deleted: refused, only the read reached the upstream.
    for (method, body) in [
        ("PUT", Some(observation("obs-2", "pat-1"))),
        ("DELETE", None),
    ] {
        let before = up.requests().len();
        let a = write(&gw, method, "/fhir/Observation/obs-2", &app, body).await;
        check_refusal(a.status, &a.headers, &a.body, 403, "insufficient_scope");
        assert_eq!(
            seen(&up, before),
            vec![(line("GET", "/fhir/Observation/obs-2"), None)],
            "{method}"
        );
        assert!(
            !a.body.contains("pat-2") && !a.body.contains("peak flow"),
            "{}",
            a.body
        );
        let rec = access(&gw, &a);
        assert_eq!(rec["decision"], "deny", "{rec}");
        assert_eq!(rec["reason"], "target_outside_compartment", "{rec}");
    }

    // Nothing there yet: an update creates it (its body is the patient's), no If-Match.
    let before = up.requests().len();
    let a = write(
        &gw,
        "PUT",
        "/fhir/Observation/obs-new",
        &app,
        Some(observation("obs-new", "pat-1")),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        seen(&up, before),
        vec![
            (line("GET", "/fhir/Observation/obs-new"), None),
            (line("PUT", "/fhir/Observation/obs-new"), None),
        ]
    );

    // The read fails: the write is not forwarded unchecked.
    let before = up.requests().len();
    let a = write(&gw, "DELETE", "/fhir/Observation/obs-broken", &app, None).await;
    check_refusal(
        a.status,
        &a.headers,
        &a.body,
        403,
        "compartment_check_unavailable",
    );
    assert_eq!(
        seen(&up, before),
        vec![(line("GET", "/fhir/Observation/obs-broken"), None)]
    );
    assert_eq!(access(&gw, &a)["reason"], "target_read_failed");

    // A body for another patient is refused on its own evidence, whatever the target holds.
    // (pingora has written the write's head upstream by the time the body decides,
    // pingora#343; not one byte of the body follows it.)
    let before = up.requests().len();
    let a = write(
        &gw,
        "PUT",
        "/fhir/Observation/obs-1",
        &app,
        Some(observation("obs-1", "pat-2")),
    )
    .await;
    check_refusal(a.status, &a.headers, &a.body, 403, "insufficient_scope");
    up.quiesce();
    let puts: Vec<_> = up
        .requests()
        .into_iter()
        .skip(before)
        .filter(|r| r.request_line().starts_with("PUT"))
        .collect();
    assert!(
        puts.iter().all(|r| r.raw_body.is_empty() && !r.complete),
        "{}",
        up.describe()
    );
    assert_eq!(access(&gw, &a)["reason"], "body_not_in_compartment");

    // `user/` scopes are not patient-bound: no read, the write goes straight on.
    let clinician = keys.token("ES256", json!({"scope": "user/Observation.cruds"}));
    let before = up.requests().len();
    let a = write(&gw, "DELETE", "/fhir/Observation/obs-2", &clinician, None).await;
    assert_eq!(a.status, 204, "{}", a.body);
    assert_eq!(
        seen(&up, before),
        vec![(line("DELETE", "/fhir/Observation/obs-2"), None)]
    );
}

/// Monitor mode reads the target too and records what enforce would have done, forwarding
/// the write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_mode_reads_the_target_and_records_would_deny() {
    let up = ehr();
    let keys = Keys::new("t");
    let jwks = JwksServer::start(keys.jwks());
    let gw = gateway(&up, &jwks, "monitor");
    let app = keys.token(
        "ES256",
        json!({"scope": "patient/Observation.cruds", "patient": "pat-1"}),
    );
    let before = up.requests().len();
    let a = write(&gw, "DELETE", "/fhir/Observation/obs-2", &app, None).await;
    assert_eq!(a.status, 204, "{}", a.body);
    assert_eq!(
        seen(&up, before)
            .into_iter()
            .map(|(l, _)| l)
            .collect::<Vec<_>>(),
        vec![
            line("GET", "/fhir/Observation/obs-2"),
            line("DELETE", "/fhir/Observation/obs-2")
        ]
    );
    let rec = access(&gw, &a);
    assert_eq!(rec["decision"], "would_deny", "{rec}");
    assert_eq!(rec["reason"], "target_outside_compartment", "{rec}");
}
