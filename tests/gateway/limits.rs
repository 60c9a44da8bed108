//! Body size caps and undecodable encodings.

use crate::common::*;

const CAP: u64 = 65536;

fn capped_gateway(up: &RecordingUpstream) -> Gateway {
    let mut o = GatewayOpts::new(up.addr());
    o.max_body_bytes = CAP;
    Gateway::start(o)
}

#[tokio::test]
async fn oversize_body_with_content_length_gets_413() {
    let up = RecordingUpstream::start();
    let gw = capped_gateway(&up);
    let body = clean_large_json(100 * 1024);
    assert!(body.len() as u64 > CAP);
    let resp = gw
        .client(false)
        .post(gw.url("/fhir/Observation"))
        .header(AUDIT, "limits-cl")
        .header("content-type", "application/fhir+json")
        .body(body)
        .send()
        .await
        .expect("the 413 must reach the client (not a reset)");
    let (s, h, b, _) = read_response(resp).await;
    check_refusal(s, &h, &b, 413, "body_too_large");
    assert_no_body_reached(&up);
    // A declared oversize body is refused before connecting upstream at all.
    assert_eq!(up.connections(), 0, "{}", up.describe());
}

/// A client that declares a body the gateway will refuse must still read the 413: the gateway
/// answers from `request_filter` and closes, and unless it drains what the client is still
/// sending, the kernel resets the connection and the 413 is lost ("broken pipe"). 3 MiB is
/// more than loopback socket buffers hold and still inside the gateway's own 4 MiB drain
/// allowance for streamed bodies (`DRAIN_AFTER_LIMIT`).
#[tokio::test]
async fn oversize_3mib_body_with_content_length_gets_413_not_a_reset() {
    let up = RecordingUpstream::start();
    let gw = capped_gateway(&up);
    let c = gw.client(false);
    for i in 0..3 {
        let resp = c
            .post(gw.url("/fhir/Observation"))
            .header(AUDIT, format!("limits-3mib-{i}"))
            .header("content-type", "application/fhir+json")
            .body(clean_large_json(3 * 1024 * 1024))
            .send()
            .await
            .unwrap_or_else(|e| panic!("attempt {i}: the 413 was lost: {e:?}"));
        let (s, h, b, _) = read_response(resp).await;
        check_refusal(s, &h, &b, 413, "body_too_large");
    }
    assert_eq!(up.connections(), 0, "{}", up.describe());
}

#[test]
fn oversize_chunked_body_without_content_length_gets_413() {
    let up = RecordingUpstream::start();
    let gw = capped_gateway(&up);
    let dir = tempfile::tempdir().unwrap();
    let body = clean_large_json(100 * 1024);
    let file = write_temp(dir.path(), "big.json", body.as_bytes());
    let mut args = chunked_post_args(
        file.to_str().unwrap(),
        "limits-chunked",
        "application/fhir+json",
    );
    args.push(gw.url("/fhir/Observation"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = gw.curl(&args);
    assert_eq!(r.exit, Some(0), "{r:?}");
    check_refusal(r.status, &r.headers, &r.body, 413, "body_too_large");
    up.quiesce();
    for rec in up.requests() {
        assert!(
            !rec.complete,
            "full body reached the upstream:\n{}",
            up.describe()
        );
    }
    assert_eq!(up.total_body_bytes(), 0, "{}", up.describe());
}

#[tokio::test]
async fn unknown_content_encoding_gets_415_and_nothing_upstream() {
    let up = RecordingUpstream::start();
    let gw = Gateway::start(GatewayOpts::new(up.addr()));
    let r = expect_refusal(
        gw.client(false)
            .post(gw.url("/fhir/Patient"))
            .header(AUDIT, "limits-compress")
            .header("content-type", "application/fhir+json")
            .header("content-encoding", "compress")
            .body(vec![0x1f, 0x9d, 0x90, 0x7b, 0x22, 0x61, 0x00, 0x01, 0x02]),
        415,
        "unsupported_content_encoding",
    )
    .await;
    assert!(r.json.get("rules").is_none(), "{}", r.raw);
    up.assert_untouched("the 415 request");
}

#[tokio::test]
async fn gzip_bomb_gets_413_decoded_body_too_large() {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(&vec![b' '; 20 * 1024 * 1024]).unwrap();
    let bomb = enc.finish().unwrap();
    assert!(bomb.len() < 64 * 1024);
    let up = RecordingUpstream::start();
    let gw = Gateway::start(GatewayOpts::new(up.addr()));
    expect_refusal(
        gw.client(false)
            .post(gw.url("/fhir/Patient"))
            .header(AUDIT, "limits-bomb")
            .header("content-type", "application/fhir+json")
            .header("content-encoding", "gzip")
            .body(bomb),
        413,
        "decoded_body_too_large",
    )
    .await;
    assert_no_body_reached(&up);
}

#[tokio::test]
async fn body_that_is_not_gzip_gets_400_undecodable_body() {
    let up = RecordingUpstream::start();
    let gw = Gateway::start(GatewayOpts::new(up.addr()));
    expect_refusal(
        gw.client(false)
            .post(gw.url("/fhir/Patient"))
            .header(AUDIT, "limits-corrupt")
            .header("content-type", "application/fhir+json")
            .header("content-encoding", "gzip")
            .body(clean_patient()),
        400,
        "undecodable_body",
    )
    .await;
    assert_no_body_reached(&up);
}
