//! TLS: only TLS 1.3 is negotiated; HTTP/1.1 and HTTP/2 both work over it.

use crate::common::*;

fn combined(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// True when openssl itself refused to offer the version (option unknown or no protocol
/// left at this security level), so the server was never asked.
fn client_cannot_offer(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    t.contains("unknown option")
        || t.contains("no protocols available")
        || t.contains("unsupported protocol")
        || t.contains("option not supported")
}

#[test]
fn tls12_handshake_is_refused_with_protocol_version_alert() {
    let up = RecordingUpstream::start();
    let gw = Gateway::start(GatewayOpts::new(up.addr()));

    // Positive control: the same openssl negotiates TLS 1.3 with ALPN h2.
    let ok = openssl_s_client(gw.port(), &["-tls1_3", "-alpn", "h2,http/1.1"]);
    let ok_text = combined(&ok);
    assert!(
        ok_text.contains("TLSv1.3"),
        "TLS 1.3 control handshake failed:\n{ok_text}"
    );
    assert!(ok_text.contains("ALPN protocol: h2"), "{ok_text}");

    let out = openssl_s_client(gw.port(), &["-tls1_2"]);
    let text = combined(&out);
    assert_ne!(
        out.status.code(),
        Some(0),
        "TLS 1.2 handshake succeeded:\n{text}"
    );
    assert!(
        text.contains("alert protocol version") || text.contains("SSL alert number 70"),
        "expected a protocol_version alert (70):\n{text}"
    );
    assert!(!text.contains("Cipher is ECDHE"), "{text}");
    assert!(text.contains("no peer certificate available"), "{text}");
    assert_eq!(up.connections(), 0);
}

/// TLS 1.0 and 1.1 must be refused too. rustls answers a pre-1.2 ClientHello with
/// `handshake_failure` (40), not `protocol_version` (70): such hellos carry no
/// `signature_algorithms` extension, which rustls checks before the version. Either fatal
/// alert proves the handshake was refused by the server.
#[test]
fn tls10_and_tls11_handshakes_are_refused() {
    let up = RecordingUpstream::start();
    let gw = Gateway::start(GatewayOpts::new(up.addr()));
    for opt in ["-tls1_1", "-tls1"] {
        // SECLEVEL=0 lets OpenSSL 3 actually offer these old versions.
        let out = openssl_s_client(gw.port(), &[opt, "-cipher", "DEFAULT@SECLEVEL=0"]);
        let text = combined(&out);
        if client_cannot_offer(&text) {
            eprintln!("skipping {opt}: local openssl cannot offer it:\n{text}");
            continue;
        }
        assert_ne!(
            out.status.code(),
            Some(0),
            "{opt} handshake succeeded:\n{text}"
        );
        assert!(
            text.contains("alert protocol version")
                || text.contains("SSL alert number 70")
                || text.contains("SSL alert number 40"),
            "{opt}: expected a fatal alert from the server:\n{text}"
        );
        assert!(
            text.contains("no peer certificate available"),
            "{opt}: {text}"
        );
    }
}

#[test]
fn curl_with_tls_max_12_fails() {
    let up = RecordingUpstream::start();
    let gw = Gateway::start(GatewayOpts::new(up.addr()));
    let r = gw.curl(&[
        "--tlsv1.2",
        "--tls-max",
        "1.2",
        "-H",
        "x-hipaa-audit-id: tls-test",
        &gw.url("/fhir/Patient"),
    ]);
    assert_eq!(
        r.exit,
        Some(35),
        "curl should fail the TLS handshake: {r:?}"
    );
    assert_eq!(r.status, 0, "{r:?}");
    assert!(
        r.stderr.contains("protocol version"),
        "expected a protocol_version alert: {}",
        r.stderr
    );
    assert_eq!(up.connections(), 0);
}

#[tokio::test]
async fn tls13_serves_http11() {
    let up = RecordingUpstream::start();
    let gw = Gateway::start(GatewayOpts::new(up.addr()));
    let resp = gw
        .client(false)
        .get(gw.url("/fhir/Patient/tls"))
        .header(AUDIT, "tls-h1")
        .send()
        .await
        .expect("h1 request");
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(up.requests().len(), 1, "{}", up.describe());
}

#[tokio::test]
async fn tls13_serves_http2() {
    let up = RecordingUpstream::start();
    let gw = Gateway::start(GatewayOpts::new(up.addr()));
    let resp = gw
        .client(true)
        .get(gw.url("/fhir/Patient/tls"))
        .header(AUDIT, "tls-h2")
        .send()
        .await
        .expect("h2 request");
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status().as_u16(), 200);

    let r = gw.curl(&[
        "--http2",
        "-H",
        "x-hipaa-audit-id: tls-curl",
        &gw.url("/fhir/Patient/tls"),
    ]);
    assert_eq!(r.exit, Some(0), "{r:?}");
    assert_eq!(r.http_version, "2", "{r:?}");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(up.requests().len(), 2, "{}", up.describe());
}
