//! Metrics: exact decision counts, the documented families, and a clean `promtool` lint.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::*;

const PROMTOOL: &str = "/usr/bin/promtool";

#[tokio::test]
async fn decisions_are_counted_exactly_and_scrape_passes_promtool() {
    let up = RecordingUpstream::start();
    let gw = Gateway::start(GatewayOpts::new(up.addr()));
    let c = gw.client(false);
    const N: usize = 3;
    const M: usize = 2;
    for i in 0..N {
        let resp = c
            .get(gw.url(&format!("/fhir/Patient/p{i}")))
            .header(AUDIT, format!("metrics-{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
    }
    // M blocks: one missing audit header, one PHI body.
    expect_refusal(
        c.get(gw.url("/fhir/Patient/x")),
        403,
        "missing_audit_header",
    )
    .await;
    expect_refusal(
        c.post(gw.url("/fhir/Patient"))
            .header(AUDIT, "metrics-phi")
            .header("content-type", "application/fhir+json")
            .body(ssn_patient()),
        403,
        "phi_detected",
    )
    .await;
    // One upstream failure on the `down` route.
    expect_refusal(
        c.get(gw.url("/down/Patient/x"))
            .header(AUDIT, "metrics-down"),
        502,
        "upstream_unavailable",
    )
    .await;

    let allow = [("route", "fhir"), ("decision", "allow")];
    let block = [("route", "fhir"), ("decision", "block")];
    let scrape = scrape_when(&gw, |s| {
        metric_value(s, "phi_gateway_requests_total", &allow) >= N as f64
            && metric_value(s, "phi_gateway_requests_total", &block) >= M as f64
            && metric_value(s, "phi_gateway_upstream_errors_total", &[("route", "down")]) >= 1.0
            && metric_value(s, "phi_gateway_requests_total", &[("route", "down")]) >= 1.0
            && metric_value(s, "phi_gateway_requests_in_flight", &[]) == 0.0
    });
    assert_eq!(
        metric_value(&scrape, "phi_gateway_requests_total", &allow),
        N as f64,
        "{scrape}"
    );
    assert_eq!(
        metric_value(&scrape, "phi_gateway_requests_total", &block),
        M as f64,
        "{scrape}"
    );
    assert_eq!(
        metric_value(&scrape, "phi_gateway_requests_total", &[("route", "fhir")]),
        (N + M) as f64,
        "no other decisions on the fhir route: {scrape}"
    );
    assert_eq!(
        metric_value(
            &scrape,
            "phi_gateway_rejections_total",
            &[("route", "fhir"), ("reason", "missing_audit_header")]
        ),
        1.0,
        "{scrape}"
    );
    assert_eq!(
        metric_value(
            &scrape,
            "phi_gateway_rejections_total",
            &[("route", "fhir"), ("reason", "phi_detected")]
        ),
        1.0,
        "{scrape}"
    );
    assert_eq!(
        metric_value(
            &scrape,
            "phi_gateway_upstream_errors_total",
            &[("route", "down"), ("reason", "upstream_unavailable")]
        ),
        1.0,
        "{scrape}"
    );
    assert_eq!(
        metric_value(
            &scrape,
            "phi_gateway_requests_total",
            &[("route", "down"), ("decision", "error")]
        ),
        1.0,
        "{scrape}"
    );
    assert_eq!(
        metric_value(&scrape, "phi_gateway_build_info", &[]),
        1.0,
        "{scrape}"
    );
    assert_eq!(
        metric_value(&scrape, "phi_gateway_requests_in_flight", &[]),
        0.0,
        "every finished request must leave the in-flight gauge: {scrape}"
    );
    assert!(
        metric_value(&scrape, "phi_gateway_rules_loaded", &[]) >= 7.0,
        "{scrape}"
    );
    for family in [
        "phi_gateway_request_duration_seconds_bucket",
        "phi_gateway_request_duration_seconds_count",
        "phi_gateway_inspection_duration_seconds_bucket",
        "phi_gateway_upstream_errors_total",
        "phi_gateway_rules_loaded",
        "phi_gateway_requests_in_flight",
    ] {
        assert!(has_metric(&scrape, family), "{family} missing:\n{scrape}");
    }
    assert_eq!(
        metric_value(
            &scrape,
            "phi_gateway_request_duration_seconds_count",
            &[("route", "fhir"), ("decision", "allow")]
        ),
        N as f64,
        "{scrape}"
    );

    assert!(
        Path::new(PROMTOOL).is_file(),
        "{PROMTOOL} not found: run `.ci/setup` (installs prometheus' promtool) first"
    );
    let mut child = Command::new("timeout")
        .args(["10", PROMTOOL, "check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(scrape.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
