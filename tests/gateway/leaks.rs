//! PHI never leaks into logs or metrics, and query/header PHI is refused before the upstream
//! sees anything.

use std::time::Duration;

use crate::common::*;

const INSPECTED_HEADER: &str = "x-patient-ssn";

#[tokio::test]
async fn phi_never_reaches_logs_metrics_or_upstream() {
    let up = RecordingUpstream::start();
    let mut o = GatewayOpts::new(up.addr());
    o.inspect_headers = vec![INSPECTED_HEADER.to_string()];
    let gw = Gateway::start(o);
    let c = gw.client(false);
    let mut ids = Vec::new();

    // Query string: refused before any upstream connection.
    let r = expect_refusal(
        c.get(gw.url(&format!("/fhir/Patient?ssn={SSN}")))
            .header(AUDIT, "leak-q"),
        403,
        "phi_detected",
    )
    .await;
    assert!(!r.raw.contains(SSN), "{}", r.raw);
    ids.push(r.request_id);
    up.assert_untouched("query PHI");

    // An inspected header: same.
    let r = expect_refusal(
        c.get(gw.url("/fhir/Patient"))
            .header(AUDIT, "leak-h")
            .header(INSPECTED_HEADER, SSN),
        403,
        "phi_detected",
    )
    .await;
    ids.push(r.request_id);
    up.assert_untouched("header PHI");

    // The URL path: same.
    let r = expect_refusal(
        c.get(gw.url(&format!("/fhir/Patient/{SSN}")))
            .header(AUDIT, "leak-p"),
        403,
        "phi_detected",
    )
    .await;
    ids.push(r.request_id);
    up.assert_untouched("path PHI");

    // Body.
    let r = expect_refusal(
        c.post(gw.url("/fhir/Patient"))
            .header(AUDIT, "leak-b")
            .header("content-type", "application/fhir+json")
            .body(ssn_patient()),
        403,
        "phi_detected",
    )
    .await;
    ids.push(r.request_id);
    assert_no_body_reached(&up);

    // Undashed variants and monitor-mode traffic (forwarded, logged as would_block). Their
    // status depends on the rule pack; only the absence of the values below matters.
    let undashed = ssn_patient().replace(SSN, SSN_DIGITS);
    let sends = [
        c.post(gw.url("/fhir/Patient"))
            .header(AUDIT, "leak-b2")
            .header("content-type", "application/fhir+json")
            .body(undashed.clone()),
        c.get(gw.url(&format!("/fhir/Patient?ssn={SSN_DIGITS}")))
            .header(AUDIT, "leak-q2"),
        c.post(gw.url(&format!("/monitor/Patient?ssn={SSN}")))
            .header(AUDIT, "leak-m")
            .header("content-type", "application/fhir+json")
            .body(ssn_patient()),
        c.post(gw.url("/monitor/Patient"))
            .header(AUDIT, "leak-m2")
            .header("content-type", "application/fhir+json")
            .body(undashed),
        // A path with PHI to a dead upstream: pingora's own error log must not print it.
        c.get(gw.url(&format!("/down/Patient/{SSN}")))
            .header(AUDIT, "leak-d"),
        c.get(gw.url(&format!("/down/Patient/{SSN_DIGITS}")))
            .header(AUDIT, "leak-d2"),
    ];
    for req in sends {
        let resp = req.send().await.expect("request");
        let (_, _, body, _) = read_response(resp).await;
        assert!(
            !body.contains(SSN) || body.contains("\"upstream\""),
            "{body}"
        );
    }

    // Let the access log and metrics catch up, then look everywhere.
    up.quiesce();
    let scrape = scrape_when(&gw, |s| {
        metric_value(s, "phi_gateway_requests_total", &[("route", "down")]) >= 1.0
    });
    std::thread::sleep(Duration::from_millis(200));
    let logs = gw.logs();
    for id in &ids {
        assert!(
            logs.contains(id.as_str()),
            "access log lacks request {id}:\n{logs}"
        );
    }
    assert!(logs.contains("phi_detected"), "{logs}");
    for value in [SSN, SSN_DIGITS] {
        assert!(
            !logs.contains(value),
            "{value} found in the gateway logs:\n{logs}"
        );
        assert!(
            !scrape.contains(value),
            "{value} found in metrics:\n{scrape}"
        );
    }
}
