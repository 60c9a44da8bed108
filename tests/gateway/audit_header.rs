//! The audit header: required, well-formed, and nothing reaches the upstream without it.

use crate::common::*;

#[tokio::test]
async fn missing_audit_header_is_refused_before_any_upstream_connection() {
    let up = RecordingUpstream::start();
    let gw = Gateway::start(GatewayOpts::new(up.addr()));
    let c = gw.client(false);

    let r = expect_refusal(
        c.get(gw.url("/fhir/Patient/123")),
        403,
        "missing_audit_header",
    )
    .await;
    assert!(r.json.get("rules").is_none(), "{}", r.raw);

    // With a body (even a PHI body) the audit check still comes first.
    let r2 = expect_refusal(
        c.post(gw.url("/fhir/Patient"))
            .header("content-type", "application/fhir+json")
            .body(ssn_patient()),
        403,
        "missing_audit_header",
    )
    .await;
    assert_ne!(r.request_id, r2.request_id, "request ids must be unique");
    assert!(!r2.raw.contains(SSN));

    // Same over HTTP/2.
    expect_refusal(
        gw.client(true).get(gw.url("/fhir/Patient/123")),
        403,
        "missing_audit_header",
    )
    .await;

    up.assert_untouched("the request");
}

#[tokio::test]
async fn malformed_audit_headers_are_refused() {
    let up = RecordingUpstream::start();
    let gw = Gateway::start(GatewayOpts::new(up.addr()));
    let c = gw.client(false);
    let long = "a".repeat(200);
    for value in ["has space", long.as_str(), ""] {
        let r = expect_refusal(
            c.get(gw.url("/fhir/Patient/123")).header(AUDIT, value),
            403,
            "malformed_audit_header",
        )
        .await;
        assert!(
            !r.raw.contains(value) || value.is_empty(),
            "value echoed: {}",
            r.raw
        );
    }
    // Two values: ambiguous, refused.
    expect_refusal(
        c.get(gw.url("/fhir/Patient/123"))
            .header(AUDIT, "ticket-1")
            .header(AUDIT, "ticket-2"),
        403,
        "malformed_audit_header",
    )
    .await;
    up.assert_untouched("the request");
}

#[tokio::test]
async fn valid_audit_header_is_forwarded_with_request_id() {
    let up = RecordingUpstream::start();
    let gw = Gateway::start(GatewayOpts::new(up.addr()));
    let resp = gw
        .client(false)
        .get(gw.url("/fhir/Patient/abc?_format=json"))
        .header(AUDIT, "ticket-42:alice")
        .header("x-request-id", "client-chosen-id")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 200);
    let rid = resp
        .headers()
        .get("x-request-id")
        .expect("x-request-id on a forwarded response")
        .to_str()
        .unwrap()
        .to_string();
    let body = resp.text().await.unwrap();
    assert!(body.contains("\"upstream\":\"recording\""), "{body}");
    assert_ne!(
        rid, "client-chosen-id",
        "the gateway must mint its own request id"
    );

    let reqs = up.requests();
    assert_eq!(reqs.len(), 1, "{}", up.describe());
    let r = &reqs[0];
    assert_eq!(
        r.request_line(),
        "GET /fhir/Patient/abc?_format=json HTTP/1.1"
    );
    assert_eq!(
        r.header("x-request-id").as_deref(),
        Some(rid.as_str()),
        "{}",
        r.head
    );
    assert_eq!(
        r.head
            .to_ascii_lowercase()
            .matches("\r\nx-request-id:")
            .count(),
        1,
        "client copy of x-request-id must be replaced: {}",
        r.head
    );
    assert_eq!(r.header(AUDIT).as_deref(), Some("ticket-42:alice"));
    assert_eq!(r.header("x-forwarded-proto").as_deref(), Some("https"));
    assert!(r.complete);
}
