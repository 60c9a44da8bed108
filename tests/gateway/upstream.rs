//! Upstream failures: refused → 502, hanging → 504, never echoing the request.

use std::time::{Duration, Instant};

use crate::common::*;

#[tokio::test]
async fn refused_upstream_gives_502_without_echoing_the_request() {
    let up = RecordingUpstream::start();
    let gw = Gateway::start(GatewayOpts::new(up.addr()));
    let resp = gw
        .client(false)
        .get(gw.url("/down/Patient/ZzPathMarker?q=ZzQueryMarker"))
        .header(AUDIT, "ZzAuditMarker")
        .header("x-custom", "ZzHeaderMarker")
        .send()
        .await
        .expect("request");
    let (s, h, b, _) = read_response(resp).await;
    let r = check_refusal(s, &h, &b, 502, "upstream_unavailable");
    let lower = r.raw.to_ascii_lowercase();
    for marker in [
        "zzpathmarker",
        "zzquerymarker",
        "zzauditmarker",
        "zzheadermarker",
    ] {
        assert!(!lower.contains(marker), "request data echoed: {}", r.raw);
    }
    let down = gw.files.down_port.to_string();
    assert!(!r.raw.contains(&down), "upstream address leaked: {}", r.raw);
    assert!(
        !lower.contains("refused"),
        "internal error leaked: {}",
        r.raw
    );
}

#[tokio::test]
async fn hanging_upstream_gives_504_quickly() {
    let up = RecordingUpstream::start_hanging();
    let mut o = GatewayOpts::new(up.addr());
    o.read_ms = 500;
    let gw = Gateway::start(o);
    let started = Instant::now();
    let r = expect_refusal(
        gw.client(false)
            .get(gw.url("/fhir/Patient/slow"))
            .header(AUDIT, "hang-1"),
        504,
        "upstream_timeout",
    )
    .await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "504 took {took:?}");
    assert!(
        took >= Duration::from_millis(400),
        "504 before the read timeout: {took:?}"
    );
    assert!(!r.raw.contains("slow"), "{}", r.raw);
    assert!(!up.requests().is_empty(), "{}", up.describe());
}

#[tokio::test]
async fn unmatched_path_gets_404_no_route() {
    let up = RecordingUpstream::start();
    let gw = Gateway::start(GatewayOpts::new(up.addr()));
    expect_refusal(
        gw.client(false)
            .get(gw.url("/elsewhere/x"))
            .header(AUDIT, "no-route"),
        404,
        "no_route",
    )
    .await;
    up.quiesce();
    assert_eq!(up.connections(), 0, "{}", up.describe());
}
