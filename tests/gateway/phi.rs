//! PHI in request bodies: blocked with zero body bytes upstream (Content-Length, chunked,
//! HTTP/2, large bodies, gzip, JWS); clean and encrypted (JWE) bodies forwarded unchanged.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use crate::common::*;

fn assert_phi_refusal(r: &Refusal) {
    assert!(
        r.rules().iter().any(|x| x == "us-ssn"),
        "rules should name us-ssn: {}",
        r.raw
    );
    assert!(
        !r.raw.contains(SSN) && !r.raw.contains(SSN_DIGITS),
        "PHI echoed: {}",
        r.raw
    );
}

/// Posts `body` (with an optional Content-Encoding) to a fresh gateway over HTTP/1.1 or
/// HTTP/2 and asserts a 403 `phi_detected` that echoes nothing, with zero body bytes upstream.
async fn assert_body_blocked(h2: bool, body: Vec<u8>, content_encoding: Option<&str>) {
    let up = RecordingUpstream::start();
    let gw = Gateway::start(GatewayOpts::new(up.addr()));
    let mut req = gw
        .client(h2)
        .post(gw.url("/fhir/Patient"))
        .header(AUDIT, "phi-body")
        .header("content-type", "application/fhir+json");
    if let Some(ce) = content_encoding {
        req = req.header("content-encoding", ce);
    }
    let resp = req
        .body(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("h2={h2}: {e}"));
    let want = if h2 {
        reqwest::Version::HTTP_2
    } else {
        reqwest::Version::HTTP_11
    };
    assert_eq!(resp.version(), want);
    let (s, h, b, _) = read_response(resp).await;
    assert_phi_refusal(&check_refusal(s, &h, &b, 403, "phi_detected"));
    assert_no_body_reached(&up);
}

#[tokio::test]
async fn ssn_body_with_content_length_is_blocked() {
    assert_body_blocked(false, ssn_patient().into_bytes(), None).await;
}

#[test]
fn ssn_body_chunked_is_blocked() {
    let up = RecordingUpstream::start();
    let gw = Gateway::start(GatewayOpts::new(up.addr()));
    let dir = tempfile::tempdir().unwrap();
    let file = write_temp(dir.path(), "patient.json", ssn_patient().as_bytes());
    let file = file.to_str().unwrap();
    let mut args = chunked_post_args(file, "phi-chunked", "application/fhir+json");
    args.push(gw.url("/fhir/Patient"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = gw.curl(&args);
    assert_eq!(r.exit, Some(0), "{r:?}");
    assert_eq!(r.http_version, "1.1", "{r:?}");
    assert_phi_refusal(&check_refusal(
        r.status,
        &r.headers,
        &r.body,
        403,
        "phi_detected",
    ));
    assert_no_body_reached(&up);
    // The request did use chunked framing (it is what reached the upstream, if anything).
    for rec in up.requests() {
        assert!(rec.header("content-length").is_none(), "{}", rec.head);
    }
}

#[tokio::test]
async fn ssn_body_over_http2_is_blocked() {
    assert_body_blocked(true, ssn_patient().into_bytes(), None).await;
}

#[tokio::test]
async fn ssn_at_the_end_of_a_100kb_body_is_blocked() {
    let body = large_json_with_trailing_ssn(100 * 1024);
    assert!(body.len() > 100_000);
    assert!(body[body.len() - 40..].contains(SSN));
    for h2 in [false, true] {
        assert_body_blocked(h2, body.clone().into_bytes(), None).await;
    }
}

#[tokio::test]
async fn gzip_body_with_ssn_is_blocked() {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(ssn_patient().as_bytes()).unwrap();
    let gz = enc.finish().unwrap();
    assert!(!gz.windows(SSN.len()).any(|w| w == SSN.as_bytes()));
    assert_body_blocked(false, gz, Some("gzip")).await;
}

/// Sends a small and a 100 KB clean body with Content-Length over HTTP/1.1 or HTTP/2 and
/// checks the upstream received each one byte for byte.
async fn clean_bodies_are_forwarded_exactly(h2: bool) {
    let up = RecordingUpstream::start();
    let gw = Gateway::start(GatewayOpts::new(up.addr()));
    let c = gw.client(h2);
    let tag = if h2 { "h2" } else { "h1" };
    for (path, body) in [
        (format!("/fhir/Patient/{tag}small"), clean_patient()),
        (
            format!("/fhir/Observation/{tag}large"),
            clean_large_json(100 * 1024),
        ),
    ] {
        let resp = c
            .post(gw.url(&path))
            .header(AUDIT, "clean-body")
            .header("content-type", "application/fhir+json")
            .body(body.clone())
            .send()
            .await
            .expect("request");
        let want = if h2 {
            reqwest::Version::HTTP_2
        } else {
            reqwest::Version::HTTP_11
        };
        assert_eq!(resp.version(), want);
        assert_eq!(resp.status().as_u16(), 200, "{path}");
        let text = resp.text().await.unwrap();
        assert!(text.starts_with("{\"upstream\":\"recording\""), "{text}");
        assert_forwarded_exactly(&up, &path, body.as_bytes());
    }
}

#[tokio::test]
async fn clean_bodies_with_content_length_are_forwarded_byte_for_byte() {
    clean_bodies_are_forwarded_exactly(false).await;
}

#[tokio::test]
async fn clean_body_over_http2_is_forwarded_byte_for_byte() {
    clean_bodies_are_forwarded_exactly(true).await;
}

#[test]
fn clean_chunked_body_is_forwarded_byte_for_byte() {
    let up = RecordingUpstream::start();
    let gw = Gateway::start(GatewayOpts::new(up.addr()));
    let dir = tempfile::tempdir().unwrap();
    for (name, body) in [
        ("small", clean_patient()),
        ("large", clean_large_json(100 * 1024)),
    ] {
        let file = write_temp(dir.path(), name, body.as_bytes());
        let mut args = chunked_post_args(
            file.to_str().unwrap(),
            "clean-chunked",
            "application/fhir+json",
        );
        let path = format!("/fhir/Observation/{name}");
        args.push(gw.url(&path));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = gw.curl(&args);
        assert_eq!((r.exit, r.status), (Some(0), 200), "{r:?}");
        assert_forwarded_exactly(&up, &path, body.as_bytes());
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A JWE compact token with realistic segment sizes: RSA-OAEP-256 key (256 bytes → 342
/// chars), 96-bit IV (16 chars), 30-byte ciphertext (40 chars), 128-bit tag (22 chars).
fn jwe_token() -> String {
    let header = b64(br#"{"alg":"RSA-OAEP-256","enc":"A256GCM"}"#);
    let key = b64(&pseudo_random_bytes(0x5eed_0001, 256));
    let iv = b64(&pseudo_random_bytes(0x5eed_0002, 12));
    let ct = b64(&pseudo_random_bytes(0x5eed_0003, 30));
    let tag = b64(&pseudo_random_bytes(0x5eed_0004, 16));
    assert_eq!(
        (key.len(), iv.len(), ct.len(), tag.len()),
        (342, 16, 40, 22)
    );
    format!("{header}.{key}.{iv}.{ct}.{tag}")
}

fn patient_with_identifier(value: &str) -> String {
    format!(
        r#"{{"resourceType":"Patient","identifier":[{{"system":"http://hl7.org/fhir/sid/us-ssn","value":"{value}"}}]}}"#
    )
}

/// Needs the real engine: an encrypted (JWE) SSN is not PHI in the clear.
#[tokio::test]
async fn jwe_encrypted_ssn_is_forwarded_byte_for_byte() {
    let token = jwe_token();
    assert_eq!(token.split('.').count(), 5);
    let body = patient_with_identifier(&token);
    let up = RecordingUpstream::start();
    let gw = Gateway::start(GatewayOpts::new(up.addr()));
    let resp = gw
        .client(false)
        .post(gw.url("/fhir/Patient"))
        .header(AUDIT, "jwe-1")
        .header("content-type", "application/fhir+json")
        .body(body.clone())
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    assert_eq!(status, 200, "JWE body refused: {text}");
    assert_forwarded_exactly(&up, "/fhir/Patient", body.as_bytes());
}

/// Needs the real engine: a JWS is signed, not encrypted; its payload is readable PHI.
#[tokio::test]
async fn jws_with_ssn_in_payload_is_blocked() {
    let header = b64(br#"{"alg":"RS256","typ":"JWT"}"#);
    let payload = b64(format!(r#"{{"sub":"patient-example","ssn":"{SSN}"}}"#).as_bytes());
    let sig = b64(&pseudo_random_bytes(0x5eed_0005, 256));
    let token = format!("{header}.{payload}.{sig}");
    assert!(!token.contains(SSN));
    let up = RecordingUpstream::start();
    let gw = Gateway::start(GatewayOpts::new(up.addr()));
    let resp = gw
        .client(false)
        .post(gw.url("/fhir/Patient"))
        .header(AUDIT, "jws-1")
        .header("content-type", "application/fhir+json")
        .body(patient_with_identifier(&token))
        .send()
        .await
        .expect("request");
    let (s, h, b, _) = read_response(resp).await;
    assert_phi_refusal(&check_refusal(s, &h, &b, 403, "phi_detected"));
    assert_no_body_reached(&up);
}

/// HTTP/2 upload without Content-Length (curl `-T -`): the upstream gets a chunked body,
/// exactly once, with a single terminating chunk, and the pooled upstream connection stays
/// usable for the next request (pingora#935 wrote `0\r\n\r\n` twice).
#[test]
fn clean_h2_body_without_length_is_forwarded_once_and_connection_reused() {
    use std::process::{Command, Stdio};
    let up = RecordingUpstream::start();
    let gw = Gateway::start(GatewayOpts::new(up.addr()));
    let dir = tempfile::tempdir().unwrap();
    let body = clean_patient();
    let file = write_temp(dir.path(), "patient.json", body.as_bytes());
    for i in 0..3 {
        let out = Command::new("curl")
            .args(["-sS", "-m", "10", "--noproxy", "*", "--http2", "--cacert"])
            .arg(gw.ca_pem_path())
            .args([
                "-X",
                "POST",
                "-T",
                "-",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{http_version}",
            ])
            .args([
                "-H",
                "x-hipaa-audit-id: h2-stream",
                "-H",
                "content-type: application/fhir+json",
            ])
            .arg(gw.url(&format!("/fhir/Patient/s{i}")))
            .stdin(Stdio::from(std::fs::File::open(&file).unwrap()))
            .output()
            .expect("run curl");
        let w = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            w,
            "200 2",
            "request {i}: {w} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    up.quiesce();
    let reqs = up.requests();
    assert_eq!(reqs.len(), 3, "{}", up.describe());
    for (i, r) in reqs.iter().enumerate() {
        assert!(
            r.request_line()
                .starts_with(&format!("POST /fhir/Patient/s{i} ")),
            "garbage on the upstream connection:\n{}",
            up.describe()
        );
        assert!(r.complete && r.body == body.as_bytes(), "{}", up.describe());
        let raw = String::from_utf8_lossy(&r.raw_body);
        assert_eq!(raw.matches("0\r\n\r\n").count(), 1, "{raw:?}");
    }
}

/// Writes a chunked HTTP/1.1 request through `openssl s_client` in separate TLS writes, with
/// pauses, so the SSN straddles chunk (and read) boundaries: `536-2` | `2-12` | `34`.
#[test]
fn ssn_split_across_chunk_writes_is_blocked() {
    use std::io::{Read, Write};
    use std::process::{Command, Stdio};
    let up = RecordingUpstream::start();
    let gw = Gateway::start(GatewayOpts::new(up.addr()));
    let pieces = [
        r#"{"resourceType":"Patient","identifier":[{"system":"http://hl7.org/fhir/sid/us-ssn","value":"536-2"#,
        "2-12",
        r#"34"}]}"#,
    ];
    assert_eq!(
        pieces.concat(),
        ssn_patient(),
        "the pieces form the SSN patient"
    );
    let mut child = Command::new("timeout")
        .arg("20")
        .arg("openssl")
        .args(["s_client", "-quiet", "-connect"])
        .arg(format!("127.0.0.1:{}", gw.port()))
        .args(["-servername", "localhost", "-CAfile"])
        .arg(gw.ca_pem_path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_client");
    let mut stdin = child.stdin.take().expect("stdin");
    let head = format!(
        "POST /fhir/Patient HTTP/1.1\r\nHost: localhost\r\n{AUDIT}: split-ssn\r\nContent-Type: application/fhir+json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    stdin.write_all(head.as_bytes()).expect("head");
    stdin.flush().expect("flush");
    for piece in pieces {
        std::thread::sleep(std::time::Duration::from_millis(150));
        stdin
            .write_all(format!("{:x}\r\n{piece}\r\n", piece.len()).as_bytes())
            .expect("chunk");
        stdin.flush().expect("flush");
    }
    std::thread::sleep(std::time::Duration::from_millis(150));
    stdin.write_all(b"0\r\n\r\n").expect("last chunk");
    stdin.flush().expect("flush");
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read");
    drop(stdin);
    let _ = child.wait();
    assert!(out.starts_with("HTTP/1.1 403"), "{out}");
    assert!(
        out.contains("phi_detected") && out.contains("us-ssn"),
        "{out}"
    );
    assert!(!out.contains("536-22-1234"), "{out}");
    assert_no_body_reached(&up);
}
