//! `defence.webhook` validation: formats, the URL rule, the secret rule, bounds, and that
//! every error names the line and the field.

use super::*;
use crate::engine::source::parse;

/// The section at its place in gateway.yaml, so serde's own errors (unknown key, missing
/// field) carry the same field path as the validator's.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Doc {
    defence: Defence,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Defence {
    webhook: RawWebhook,
}

/// Parses and validates `body` (the lines under `webhook:`, indented four spaces) with
/// relative paths resolved against `dir`.
fn check(dir: &Path, body: &str) -> Result<WebhookSettings, SourceError> {
    let file = dir.join("gateway.yaml");
    let text = format!("defence:\n  webhook:\n{body}");
    let doc: Doc = parse(&file, &text)?;
    let resolve = |p: &Path| dir.join(p);
    validate(&file, &resolve, &doc.defence.webhook)
}

fn dir_with_secret() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hook.key"), "k".repeat(40)).unwrap();
    std::fs::write(dir.path().join("ca.pem"), "not checked here").unwrap();
    dir
}

#[test]
fn generic_with_secret_gets_the_defaults() {
    let dir = dir_with_secret();
    let s = check(
        dir.path(),
        "    format: generic\n    url: https://alerts.hospital.internal/hook\n    secret_file: hook.key\n",
    )
    .unwrap();
    assert_eq!(s.format, WebhookFormat::Generic);
    assert_eq!(s.url, "https://alerts.hospital.internal/hook");
    assert_eq!(s.secret_file, Some(dir.path().join("hook.key")));
    assert_eq!(s.ca_file, None);
    assert_eq!(s.timeout, Duration::from_millis(DEFAULT_WEBHOOK_TIMEOUT_MS));
    assert_eq!(s.retries as u64, DEFAULT_WEBHOOK_RETRIES);
    assert_eq!(s.backoff, Duration::from_millis(DEFAULT_WEBHOOK_BACKOFF_MS));
    assert_eq!(s.queue as u64, DEFAULT_WEBHOOK_QUEUE);
}

#[test]
fn alertmanager_needs_no_secret_and_takes_every_knob() {
    let dir = dir_with_secret();
    let s = check(
        dir.path(),
        "    format: alertmanager\n    url: https://am.hospital.internal:9093/hook\n    ca_file: ca.pem\n    timeout_ms: 500\n    retries: 0\n    backoff_ms: 10\n    queue: 1\n",
    )
    .unwrap();
    assert_eq!(s.format, WebhookFormat::Alertmanager);
    assert_eq!(s.ca_file, Some(dir.path().join("ca.pem")));
    assert_eq!(s.secret_file, None);
    assert_eq!(s.timeout, Duration::from_millis(500));
    assert_eq!((s.retries, s.queue), (0, 1));
    assert_eq!(s.backoff, Duration::from_millis(10));
}

#[test]
fn plain_http_only_to_a_loopback_ip() {
    let dir = dir_with_secret();
    for ok in [
        "http://127.0.0.1:9000/hook",
        "http://127.9.8.7/hook",
        "http://[::1]:9000/hook",
    ] {
        let s = check(
            dir.path(),
            &format!("    format: alertmanager\n    url: \"{ok}\"\n"),
        );
        assert!(s.is_ok(), "{ok}: {s:?}");
    }
    for bad in [
        "http://localhost:9000/hook",
        "http://10.0.0.7/hook",
        "http://alerts.hospital.internal/hook",
        "http://[::ffff:10.0.0.1]/hook",
        "ftp://127.0.0.1/hook",
        "alerts.hospital.internal/hook",
        "https://user:pw@alerts.hospital.internal/hook",
        "https:///hook",
    ] {
        let e = check(
            dir.path(),
            &format!("    format: alertmanager\n    url: \"{bad}\"\n"),
        )
        .unwrap_err();
        assert_eq!(e.field, "defence.webhook.url", "{bad}: {e}");
        assert_eq!(e.line, 4, "{bad}: {e}");
    }
    let e = check(
        dir.path(),
        "    format: alertmanager\n    url: http://alerts.hospital.internal/hook\n",
    )
    .unwrap_err();
    assert!(e.message.contains("must be `https://`"), "{e}");
    assert!(e.to_string().contains("gateway.yaml:4:"), "{e}");
}

#[test]
fn ca_file_only_with_https() {
    let dir = dir_with_secret();
    let e = check(
        dir.path(),
        "    format: alertmanager\n    url: http://127.0.0.1:9000/\n    ca_file: ca.pem\n",
    )
    .unwrap_err();
    assert_eq!((e.field.as_str(), e.line), ("defence.webhook.ca_file", 5));
    let e = check(
        dir.path(),
        "    format: alertmanager\n    url: https://am.internal/\n    ca_file: missing.pem\n",
    )
    .unwrap_err();
    assert_eq!(e.field, "defence.webhook.ca_file");
    assert!(e.message.contains("not a readable file"), "{e}");
}

#[test]
fn generic_without_secret_file_names_the_field() {
    let dir = dir_with_secret();
    let e = check(
        dir.path(),
        "    format: generic\n    url: https://alerts.hospital.internal/hook\n",
    )
    .unwrap_err();
    assert_eq!(e.field, "defence.webhook.secret_file");
    assert_eq!(e.line, 3, "points at `format: generic`: {e}");
    assert!(e.message.contains("HMAC-SHA256"), "{e}");
    let e = check(
        dir.path(),
        "    format: generic\n    url: https://alerts.hospital.internal/hook\n    secret_file: nope.key\n",
    )
    .unwrap_err();
    assert_eq!(
        (e.field.as_str(), e.line),
        ("defence.webhook.secret_file", 5)
    );
}

#[test]
fn unknown_key_and_unknown_format_are_errors() {
    let dir = dir_with_secret();
    let e = check(
        dir.path(),
        "    format: alertmanager\n    url: https://am.internal/\n    retry: 3\n",
    )
    .unwrap_err();
    assert_eq!(e.line, 5, "{e}");
    assert!(e.message.contains("unknown field `retry`"), "{e}");
    assert!(e.field.starts_with("defence.webhook"), "{e}");
    let e = check(
        dir.path(),
        "    format: slack\n    url: https://am.internal/\n",
    )
    .unwrap_err();
    assert_eq!((e.field.as_str(), e.line), ("defence.webhook.format", 3));
    let e = check(dir.path(), "    format: alertmanager\n").unwrap_err();
    assert!(e.message.contains("url"), "{e}");
}

#[test]
fn bounds_name_their_field() {
    let dir = dir_with_secret();
    for (line, field) in [
        ("timeout_ms: 50", "timeout_ms"),
        ("timeout_ms: 30001", "timeout_ms"),
        ("retries: 11", "retries"),
        ("backoff_ms: 1", "backoff_ms"),
        ("queue: 0", "queue"),
        ("queue: 10001", "queue"),
    ] {
        let e = check(
            dir.path(),
            &format!("    format: alertmanager\n    url: https://am.internal/\n    {line}\n"),
        )
        .unwrap_err();
        assert_eq!(e.field, format!("defence.webhook.{field}"), "{line}: {e}");
        assert_eq!(e.line, 5, "{line}: {e}");
    }
}
