//! No fingerprint that can be reversed without the deployment's secret: not in `scan` output,
//! not in rule files, not in audit records. Each test brute-forces a 4-digit space itself,
//! to show the value cannot be recovered without the key and can be with it (so the test
//! really sees the fingerprint it checks).

use crate::common::*;

/// The public key of the fingerprints before issue 14.
const OLD_PUBLIC_KEY: &[u8] = b"phi-gateway exception fingerprint v1";
/// The documented subkey label (docs/rules.md, "Exceptions").
const SUBKEY_LABEL: &[u8] = b"phi-gateway exception fingerprint v2";

fn hmac(key: &[u8], bytes: &[u8]) -> Vec<u8> {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    ring::hmac::sign(&key, bytes).as_ref().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .to_vec()
}

/// Every way to compute a digest of `value` that needs no secret: the old public key, no key,
/// the documented derivation with an empty secret or the label as the secret.
fn keyless_digests(value: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    for key in [
        OLD_PUBLIC_KEY,
        b"".as_slice(),
        SUBKEY_LABEL,
        &hmac(b"", SUBKEY_LABEL),
        &hmac(OLD_PUBLIC_KEY, SUBKEY_LABEL),
    ] {
        out.push(hex(&hmac(key, value)));
    }
    out.push(hex(&sha256(value)));
    out
}

const PIN_RULE: &str = "rules:
  - id: test-pin
    description: a synthetic 4-digit PIN, for the brute-force tests
    category: R
    severity: low
    patterns:
      - regex: 'PIN (?P<value>[0-9]{4})'
        score: 0.9
";

/// Regression (issue 14): was an HMAC under a fixed public key in `scan --explain`, so a CI
/// log of `scan` named every value it matched.
#[test]
fn scan_fingerprints_are_not_computable_without_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).expect("mkdir");
    std::fs::write(rules.join("pin.yaml"), PIN_RULE).expect("write rule");
    let keys =
        phi_gateway::audit::keys::generate(&dir.path().join("keys"), &dir.path().join("pub"))
            .expect("keys");
    let secret =
        phi_gateway::audit::keys::load_fingerprint_key(&keys.fingerprint_key).expect("key");
    let rules = rules.to_str().expect("utf-8 path");
    let input = b"door code: PIN 4821";

    // Without a key: the finding, and no fingerprint at all.
    for json in [false, true] {
        let mut args = vec!["--rules", rules, "--explain"];
        if json {
            args.push("--json");
        }
        args.push("-");
        let o = run_scan(&args, input);
        let out = String::from_utf8_lossy(&o.stdout);
        assert_eq!(o.status.code(), Some(1), "{out}");
        assert!(out.contains("test-pin"), "{out}");
        assert!(
            !out.contains("hmac") && !out.contains("fingerprint"),
            "{out}"
        );
        assert!(!out.contains("4821"), "{out}");
    }

    // With the deployment key: a fingerprint, which only the key recovers.
    let key_file = keys.fingerprint_key.to_str().expect("utf-8 path");
    let o = run_scan(
        &[
            "--rules",
            rules,
            "--explain",
            "--json",
            "--fingerprint-key",
            key_file,
            "-",
        ],
        input,
    );
    assert_eq!(o.status.code(), Some(1));
    let line: serde_json::Value =
        serde_json::from_slice(o.stdout.split(|b| *b == b'\n').next().expect("a line"))
            .expect("json");
    let fp = line["fingerprint"]
        .as_str()
        .expect("fingerprint")
        .to_string();
    let (key_id, tag) = fp
        .strip_prefix("hmac-sha256:")
        .and_then(|r| r.split_once(':'))
        .unwrap_or_else(|| panic!("`hmac-sha256:<key id>:<hex>`: {fp}"));
    assert_eq!(
        key_id,
        &hex(&hmac(&secret, b"phi-gateway fingerprint key id"))[..8]
    );
    let subkey = hmac(&secret, SUBKEY_LABEL);
    let mut with_key = Vec::new();
    for n in 0..10_000u32 {
        let value = format!("{n:04}");
        assert!(
            !keyless_digests(value.as_bytes())
                .iter()
                .any(|d| d.starts_with(tag)),
            "{fp} is computable without the key (value {value})"
        );
        if hex(&hmac(&subkey, value.as_bytes())).starts_with(tag) {
            with_key.push(value);
        }
    }
    assert_eq!(
        with_key,
        ["4821"],
        "with the key the fingerprint names the value"
    );

    // The printed fingerprint works as an exception; the old keyless form is refused.
    let exc = format!(
        "{PIN_RULE}    exceptions:\n      - name: known-test-pin\n        values: ['{fp}']\n"
    );
    std::fs::write(dir.path().join("rules/pin.yaml"), &exc).expect("write");
    let o = run_scan(
        &["--rules", rules, "--fingerprint-key", key_file, "-"],
        input,
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let o = run_scan(&["--rules", rules, "-"], input);
    assert_eq!(
        o.status.code(),
        Some(1),
        "without the key the exception cannot apply"
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--fingerprint-key"),
        "says why"
    );
    let legacy = format!(
        "hmac-sha256:{}",
        hex(&hmac(OLD_PUBLIC_KEY, b"4821"))[..32].to_owned()
    );
    std::fs::write(dir.path().join("rules/pin.yaml"), exc.replace(&fp, &legacy)).expect("write");
    let o = run_scan(
        &["--rules", rules, "--fingerprint-key", key_file, "-"],
        input,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no key id"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Regression (issue 14): was `body_sha256`, an unkeyed SHA-256 of the body, which names the
/// one identifier of a small templated body to anyone who hashes every candidate.
#[tokio::test]
async fn audit_body_digest_is_not_computable_without_the_key() {
    let up = RecordingUpstream::start();
    let gw = Gateway::start(GatewayOpts::new(up.addr()));
    let c = gw.client(false);
    let template = |pin: &str| {
        format!(
            r#"{{"resourceType":"Patient","active":true,"extension":[{{"url":"http://example.org/door","valueString":"{pin}"}}]}}"#
        )
    };
    let body = template("4821");
    let resp = c
        .post(gw.url("/fhir/Patient"))
        .header(AUDIT, "ticket-brute")
        .header("content-type", "application/fhir+json")
        .body(body.clone())
        .send()
        .await
        .expect("send");
    let id = resp
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("request id")
        .to_string();
    let _ = resp.bytes().await;
    let records = gw.audit_records();
    let r = audit_record_of(&records, &id);
    assert!(r.get("body_sha256").is_none(), "{r}");
    let digest = r["body_hmac"].as_str().expect("body_hmac").to_string();
    let secret = gw.fingerprint_secret();
    let mut with_key = Vec::new();
    for n in 0..10_000u32 {
        let pin = format!("{n:04}");
        let candidate = template(&pin);
        assert!(
            !keyless_digests(candidate.as_bytes()).contains(&digest),
            "body digest computable without the key ({pin})"
        );
        if hex(&hmac(&secret, candidate.as_bytes())) == digest {
            with_key.push(pin);
        }
    }
    assert_eq!(
        with_key,
        ["4821"],
        "with the key the digest matches the body in hand"
    );
}
