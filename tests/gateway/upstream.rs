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
    up.assert_untouched("the request");
}

/// Upstream TLS with a configured CA file and SNI: gateway A reaches gateway B over TLS 1.3,
/// verifying B's certificate against B's development CA; B forwards to the recording upstream.
#[tokio::test]
async fn tls_upstream_with_ca_file_and_sni_is_verified() {
    let up = RecordingUpstream::start();
    let b = Gateway::start(GatewayOpts::new(up.addr()));
    let b_addr: std::net::SocketAddr = format!("127.0.0.1:{}", b.port()).parse().unwrap();

    let mut opts = GatewayOpts::new(b_addr);
    opts.upstream_tls = Some(("localhost".into(), b.ca_pem_path()));
    let a = Gateway::start(opts);
    let body = clean_patient();
    let resp = a
        .client(false)
        .post(a.url("/fhir/Patient"))
        .header(AUDIT, "tls-upstream-1")
        .header("content-type", "application/fhir+json")
        .body(body.clone())
        .send()
        .await
        .expect("request through two gateways");
    let (status, _, text, _) = read_response(resp).await;
    assert_eq!(status, 200, "{text}\nA:\n{}\nB:\n{}", a.logs(), b.logs());
    let got = up.requests();
    assert_eq!(got.len(), 1, "{}", up.describe());
    assert_eq!(
        got[0].body,
        body.as_bytes(),
        "body changed across the TLS hop"
    );

    // The same upstream, but trusting the wrong CA (A's own): the handshake must fail.
    let mut opts = GatewayOpts::new(b_addr);
    opts.upstream_tls = Some(("localhost".into(), a.ca_pem_path()));
    let wrong_ca = Gateway::start(opts);
    let resp = wrong_ca
        .client(false)
        .get(wrong_ca.url("/fhir/Patient/example"))
        .header(AUDIT, "tls-upstream-2")
        .send()
        .await
        .expect("request");
    let (s, h, t, _) = read_response(resp).await;
    check_refusal(s, &h, &t, 502, "upstream_unavailable");

    // The right CA but an SNI the certificate does not cover: hostname verification fails.
    let mut opts = GatewayOpts::new(b_addr);
    opts.upstream_tls = Some(("ehr.invalid".into(), b.ca_pem_path()));
    let wrong_name = Gateway::start(opts);
    let resp = wrong_name
        .client(false)
        .get(wrong_name.url("/fhir/Patient/example"))
        .header(AUDIT, "tls-upstream-3")
        .send()
        .await
        .expect("request");
    let (s, h, t, _) = read_response(resp).await;
    check_refusal(s, &h, &t, 502, "upstream_unavailable");
    assert_eq!(
        up.requests().len(),
        1,
        "a failed TLS hop must not reach the EHR"
    );
}
