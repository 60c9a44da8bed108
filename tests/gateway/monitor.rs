//! Monitor mode: PHI is recorded as would_block and the request is forwarded untouched.

use crate::common::*;

#[tokio::test]
async fn monitor_route_forwards_phi_and_counts_would_block() {
    let up = RecordingUpstream::start();
    let gw = Gateway::start(GatewayOpts::new(up.addr()));
    let body = ssn_patient();
    let resp = gw
        .client(false)
        .post(gw.url("/monitor/Patient"))
        .header(AUDIT, "monitor-1")
        .header("content-type", "application/fhir+json")
        .body(body.clone())
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.headers().get("x-request-id").is_some());
    let text = resp.text().await.unwrap();
    assert!(
        text.starts_with("{\"upstream\":\"recording\""),
        "upstream answer not passed through: {text}"
    );

    let reqs = up.requests();
    assert_eq!(reqs.len(), 1, "{}", up.describe());
    assert!(reqs[0].request_line().starts_with("POST /monitor/Patient "));
    assert!(reqs[0].complete);
    assert!(reqs[0].body == body.as_bytes(), "monitor body altered");

    let want = [("route", "monitor"), ("decision", "would_block")];
    let matches = [("rule", "us-ssn"), ("mode", "monitor")];
    let scrape = scrape_when(&gw, |s| {
        metric_value(s, "phi_gateway_requests_total", &want) >= 1.0
            && metric_value(s, "phi_gateway_rule_matches_total", &matches) >= 1.0
    });
    assert!(
        metric_value(&scrape, "phi_gateway_requests_total", &want) >= 1.0,
        "{scrape}"
    );
    assert!(
        metric_value(&scrape, "phi_gateway_rule_matches_total", &matches) >= 1.0,
        "{scrape}"
    );
    assert_eq!(
        metric_value(
            &scrape,
            "phi_gateway_requests_total",
            &[("route", "monitor"), ("decision", "block")]
        ),
        0.0,
        "{scrape}"
    );
}
