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

/// Regression: routes used to match the raw path, so a dotted or encoded spelling of an
/// enforcing route's path could fall into a broader monitor route while the upstream
/// normalised it back. The gateway must route on the normalised path.
#[test]
fn dotted_or_encoded_paths_cannot_escape_into_the_monitor_route() {
    let up = RecordingUpstream::start();
    let gw = Gateway::start(GatewayOpts::new(up.addr()));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ssn.json");
    std::fs::write(&file, ssn_patient()).unwrap();
    let data = format!("@{}", file.display());
    for path in ["/monitor/../fhir/Patient", "/monitor/%2e%2e/fhir/Patient"] {
        let url = gw.url(path);
        let r = gw.curl(&[
            "--path-as-is",
            "-H",
            &format!("{AUDIT}: escape-1"),
            "-H",
            "content-type: application/fhir+json",
            "--data-binary",
            &data,
            &url,
        ]);
        assert_eq!(
            r.status, 403,
            "{path} routed around the enforce route: {r:?}"
        );
        assert!(r.body.contains("phi_detected"), "{}", r.body);
    }
    assert_eq!(up.total_body_bytes(), 0, "{}", up.describe());
}
