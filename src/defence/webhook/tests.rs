//! Payload shapes and the signature rules, no sockets (deliveries to real receivers are in
//! tests/gateway/webhook.rs).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use serde_json::Value;

use super::signature::*;
use super::*;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-test";
const NOW: u64 = 1_796_212_800;

fn alert() -> Alert {
    Alert {
        id: "inc-01JF3Q5N8R".into(),
        name: "PhiGatewayAccessAnomaly",
        severity: "critical",
        summary: "patient requests far above this principal's baseline".into(),
        principal: "9f86d081884c7d65".into(),
        principal_kind: "user",
        signal: "distinct_patients",
        observed: 412,
        threshold: 37.5,
        action: "suspend",
        starts_at_ms: 1_796_212_800_123,
        gateway: "gw-a".into(),
        audit_refs: vec!["6f1c…-1".into(), "6f1c…-2".into()],
    }
}

fn json(format: WebhookFormat, a: &Alert) -> Value {
    serde_json::from_slice(&payload::body(format, a).unwrap()).unwrap()
}

#[test]
fn alertmanager_v4_message_has_every_field() {
    let v = json(WebhookFormat::Alertmanager, &alert());
    assert_eq!(v["version"], "4");
    assert_eq!(v["status"], "firing");
    assert_eq!(v["receiver"], "phi-gateway");
    assert_eq!(v["truncatedAlerts"], 0);
    assert_eq!(v["externalURL"], "");
    assert_eq!(
        v["groupKey"],
        "{}:{alertname=\"PhiGatewayAccessAnomaly\", principal=\"9f86d081884c7d65\"}"
    );
    assert_eq!(v["groupLabels"]["alertname"], "PhiGatewayAccessAnomaly");
    assert_eq!(v["groupLabels"]["principal"], "9f86d081884c7d65");
    let alerts = v["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1);
    let a = &alerts[0];
    assert_eq!(a["status"], "firing");
    let labels = a["labels"].as_object().unwrap();
    let names: Vec<&str> = labels.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "action",
            "alertname",
            "gateway",
            "principal",
            "severity",
            "signal"
        ]
    );
    assert_eq!(labels["severity"], "critical");
    assert_eq!(labels["signal"], "distinct_patients");
    assert_eq!(labels["action"], "suspend");
    assert_eq!(labels["gateway"], "gw-a");
    assert_eq!(v["commonLabels"], a["labels"]);
    assert_eq!(v["commonAnnotations"], a["annotations"]);
    let ann = &a["annotations"];
    assert_eq!(ann["summary"], alert().summary);
    assert_eq!(ann["incident_id"], "inc-01JF3Q5N8R");
    assert_eq!(ann["principal_kind"], "user");
    assert_eq!(ann["observed"], "412");
    assert_eq!(ann["threshold"], "37.5");
    assert_eq!(ann["audit_refs"], "6f1c…-1,6f1c…-2");
    assert_eq!(a["startsAt"], "2026-12-02T12:00:00.123Z");
    assert_eq!(a["endsAt"], "0001-01-01T00:00:00Z");
    assert_eq!(a["generatorURL"], "");
    let fp = a["fingerprint"].as_str().unwrap();
    assert_eq!(fp.len(), 16);
    assert!(fp.bytes().all(|b| b.is_ascii_hexdigit()), "{fp}");
}

#[test]
fn generic_body_is_the_alert() {
    let v = json(WebhookFormat::Generic, &alert());
    assert_eq!(v["version"], "1");
    assert_eq!(v["id"], "inc-01JF3Q5N8R");
    assert_eq!(v["status"], "firing");
    assert_eq!(v["name"], "PhiGatewayAccessAnomaly");
    assert_eq!(v["principal"], "9f86d081884c7d65");
    assert_eq!(v["principal_kind"], "user");
    assert_eq!(v["signal"], "distinct_patients");
    assert_eq!(v["observed"], 412);
    assert_eq!(v["threshold"], 37.5);
    assert_eq!(v["action"], "suspend");
    assert_eq!(v["starts_at"], "2026-12-02T12:00:00.123Z");
    assert_eq!(v["starts_at_ms"], 1_796_212_800_123u64);
    assert_eq!(v["gateway"], "gw-a");
    assert_eq!(v["audit_refs"].as_array().unwrap().len(), 2);
    assert_eq!(v["audit_refs_omitted"], 0);
}

#[test]
fn audit_refs_are_capped_and_the_rest_counted() {
    let mut a = alert();
    a.audit_refs = (0..payload::MAX_AUDIT_REFS + 5)
        .map(|i| format!("r{i}"))
        .collect();
    let v = json(WebhookFormat::Generic, &a);
    assert_eq!(
        v["audit_refs"].as_array().unwrap().len(),
        payload::MAX_AUDIT_REFS
    );
    assert_eq!(v["audit_refs_omitted"], 5);
    let v = json(WebhookFormat::Alertmanager, &a);
    let refs = v["alerts"][0]["annotations"]["audit_refs"]
        .as_str()
        .unwrap();
    assert!(refs.ends_with(" (+5 more)"), "{refs}");
    assert_eq!(refs.matches(',').count(), payload::MAX_AUDIT_REFS - 1);
}

/// The values of prometheus/common `model/signature_test.go` (`TestLabelsToSignature`, the
/// version with separator bytes) and `model.emptyLabelSignature`.
#[test]
fn fingerprint_matches_prometheus() {
    assert_eq!(payload::fingerprint(&BTreeMap::new()), "cbf29ce484222325");
    let labels = BTreeMap::from([("name", "garland, briggs"), ("fear", "love is not enough")]);
    assert_eq!(
        u64::from_str_radix(&payload::fingerprint(&labels), 16).unwrap(),
        5_799_056_148_416_392_346
    );
}

fn signed(body: &[u8], ts: u64, delivery: &str) -> HeaderMap {
    let key = hmac::Key::new(hmac::HMAC_SHA256, SECRET);
    let mut h = HeaderMap::new();
    h.insert(TIMESTAMP_HEADER, HeaderValue::from(ts));
    h.insert(DELIVERY_HEADER, HeaderValue::from_str(delivery).unwrap());
    h.insert(
        SIGNATURE_HEADER,
        HeaderValue::from_str(&sign(&key, ts, delivery, body)).unwrap(),
    );
    h
}

#[test]
fn signature_is_hmac_sha256_over_timestamp_delivery_body() {
    let key = hmac::Key::new(hmac::HMAC_SHA256, SECRET);
    let sig = sign(&key, 1700000000, "d-1", b"{}");
    let expected = hmac::sign(&key, b"1700000000.d-1.{}");
    assert_eq!(
        sig,
        format!("sha256={}", crate::audit::record::hex(expected.as_ref()))
    );
}

#[test]
fn verify_accepts_once_then_refuses_the_replay() {
    let body = payload::body(WebhookFormat::Generic, &alert()).unwrap();
    let h = signed(&body, NOW - 10, "3c5e-a1");
    let mut seen = SeenDeliveries::new(16);
    assert_eq!(verify(SECRET, &h, &body, NOW, &mut seen), Ok(()));
    assert_eq!(seen.len(), 1);
    assert_eq!(
        verify(SECRET, &h, &body, NOW + 1, &mut seen),
        Err(VerifyError::Replay)
    );
}

#[test]
fn verify_refuses_tampering_old_and_future_timestamps() {
    let body = br#"{"id":"inc-1","observed":3}"#.to_vec();
    let mut seen = SeenDeliveries::new(16);
    let h = signed(&body, NOW, "d-1");
    let tampered = br#"{"id":"inc-1","observed":0}"#;
    assert_eq!(
        verify(SECRET, &h, tampered, NOW, &mut seen),
        Err(VerifyError::Signature)
    );
    assert_eq!(
        verify(
            b"another secret of thirty-two bytes!",
            &h,
            &body,
            NOW,
            &mut seen
        ),
        Err(VerifyError::Signature)
    );
    // A re-dated copy of a good delivery: the signature covers the timestamp.
    let mut redated = h.clone();
    redated.insert(TIMESTAMP_HEADER, HeaderValue::from(NOW + 1));
    assert_eq!(
        verify(SECRET, &redated, &body, NOW, &mut seen),
        Err(VerifyError::Signature)
    );
    let old = signed(&body, NOW - TOLERANCE_SECONDS - 1, "d-2");
    assert_eq!(
        verify(SECRET, &old, &body, NOW, &mut seen),
        Err(VerifyError::Stale(TOLERANCE_SECONDS + 1))
    );
    let ahead = signed(&body, NOW + TOLERANCE_SECONDS + 5, "d-3");
    assert_eq!(
        verify(SECRET, &ahead, &body, NOW, &mut seen),
        Err(VerifyError::Future(TOLERANCE_SECONDS + 5))
    );
    // Nothing refused was remembered; the edge of the window still passes.
    assert!(seen.is_empty());
    let edge = signed(&body, NOW - TOLERANCE_SECONDS, "d-4");
    assert_eq!(verify(SECRET, &edge, &body, NOW, &mut seen), Ok(()));
}

#[test]
fn verify_refuses_missing_repeated_and_malformed_headers() {
    let body = b"{}";
    let good = signed(body, NOW, "d-1");
    let mut seen = SeenDeliveries::new(16);
    for name in [TIMESTAMP_HEADER, DELIVERY_HEADER, SIGNATURE_HEADER] {
        let mut h = good.clone();
        h.remove(name);
        assert_eq!(
            verify(SECRET, &h, body, NOW, &mut seen),
            Err(VerifyError::Missing(name))
        );
        let mut h = good.clone();
        h.append(name, HeaderValue::from_static("1"));
        assert_eq!(
            verify(SECRET, &h, body, NOW, &mut seen),
            Err(VerifyError::Missing(name))
        );
    }
    for (name, value) in [
        (TIMESTAMP_HEADER, "-5"),
        (TIMESTAMP_HEADER, "1e9"),
        (TIMESTAMP_HEADER, "99999999999999999999"),
        (DELIVERY_HEADER, "has space"),
        (DELIVERY_HEADER, &"x".repeat(65)),
        (SIGNATURE_HEADER, "sha1=abcd"),
        (SIGNATURE_HEADER, &format!("sha256={}", "g".repeat(64))),
        (SIGNATURE_HEADER, &format!("sha256={}", "a".repeat(63))),
    ] {
        let mut h = good.clone();
        h.insert(name, HeaderValue::from_str(value).unwrap());
        assert_eq!(
            verify(SECRET, &h, body, NOW, &mut seen),
            Err(VerifyError::Malformed(name)),
            "{name}: {value}"
        );
    }
    assert!(seen.is_empty());
}

#[test]
fn seen_deliveries_stay_bounded() {
    let body = b"{}";
    let mut seen = SeenDeliveries::new(2);
    for id in ["a", "b"] {
        assert_eq!(
            verify(SECRET, &signed(body, NOW, id), body, NOW, &mut seen),
            Ok(())
        );
    }
    // Full of ids still inside the window: refused, not forgotten.
    assert_eq!(
        verify(SECRET, &signed(body, NOW, "c"), body, NOW, &mut seen),
        Err(VerifyError::ReplayCacheFull)
    );
    // Once their window has passed, they make room (and could not verify again anyway).
    let later = NOW + TOLERANCE_SECONDS + 1;
    assert_eq!(
        verify(SECRET, &signed(body, later, "c"), body, later, &mut seen),
        Ok(())
    );
    assert_eq!(seen.len(), 1);
    assert_eq!(
        verify(SECRET, &signed(body, NOW, "a"), body, later, &mut seen),
        Err(VerifyError::Stale(TOLERANCE_SECONDS + 1))
    );
}

#[test]
fn secrets_are_trimmed_and_must_be_long_enough() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("k");
    std::fs::write(&p, format!("{}\n", "s".repeat(MIN_SECRET_BYTES))).unwrap();
    assert_eq!(read_secret(&p).unwrap(), vec![b's'; MIN_SECRET_BYTES]);
    std::fs::write(&p, format!("  {}\n", "s".repeat(MIN_SECRET_BYTES - 1))).unwrap();
    let e = read_secret(&p).unwrap_err();
    assert!(
        matches!(e, WebhookError::SecretTooShort { len, .. } if len == MIN_SECRET_BYTES - 1),
        "{e}"
    );
    assert!(
        !e.to_string().contains("sss"),
        "the error shows no secret: {e}"
    );
    assert!(matches!(
        read_secret(&dir.path().join("missing")),
        Err(WebhookError::Secret { .. })
    ));
}

fn settings(dir: &Path, url: &str) -> WebhookSettings {
    WebhookSettings {
        format: WebhookFormat::Generic,
        url: url.into(),
        ca_file: Some(dir.join("ca.pem")),
        secret_file: Some(dir.join("hook.key")),
        timeout: Duration::from_secs(1),
        retries: 0,
        backoff: Duration::from_millis(10),
        queue: 1,
    }
}

#[test]
fn check_refuses_what_start_would_fail_on() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("hook.key"), "k".repeat(40)).unwrap();
    let url = "https://alerts.hospital.internal/hook";
    // Text without a certificate: nothing to trust.
    std::fs::write(d.join("ca.pem"), "not a certificate\n").unwrap();
    assert!(matches!(
        check(&settings(d, url)),
        Err(WebhookError::NoRoots)
    ));
    // A certificate block that is not a certificate.
    std::fs::write(
        d.join("ca.pem"),
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let e = check(&settings(d, url)).unwrap_err();
    assert!(matches!(e, WebhookError::CaFile { .. }), "{e}");
    assert!(e.to_string().contains("defence.webhook.ca_file"), "{e}");
    // A plain loopback receiver needs no CA; a short secret still fails.
    let mut plain = settings(d, "http://127.0.0.1:9/hook");
    plain.ca_file = None;
    assert!(check(&plain).is_ok());
    std::fs::write(d.join("hook.key"), "short\n").unwrap();
    assert!(matches!(
        check(&plain),
        Err(WebhookError::SecretTooShort { len: 5, .. })
    ));
    let m = Metrics::new().unwrap();
    assert!(Notifier::start(&plain, &m).is_err());
}
