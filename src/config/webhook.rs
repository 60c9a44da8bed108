//! `defence.webhook:`: where incident alerts go (issue 12 §1, "alert ... a webhook"), as
//! written ([`RawWebhook`]) and validated ([`WebhookSettings`]). The delivery itself lives in
//! `crate::defence::webhook`; this file only decides what a valid receiver is.
//!
//! - `format: alertmanager` (the Alertmanager webhook version 4 payload) or `generic` (the
//!   alert as JSON, signed with HMAC-SHA256 and a timestamp and nonce against replay);
//! - `url`: `https://` always, except that plain `http://` is allowed to a loopback IP literal
//!   (`127.0.0.0/8`, `::1`) for a receiver on the same host. A host *name* never gets plain
//!   HTTP, even `localhost`: a name can resolve elsewhere, and an alert names a principal;
//! - no credentials in the URL (they would sit in gateway.yaml and in logs);
//! - `secret_file` is required for `generic` (an unsigned alert could be forged by anyone who
//!   can reach the receiver) and optional for `alertmanager` (which ignores it; if set, the
//!   same signature headers are added);
//! - every duration and size is bounded, so a delivery can never hold more than
//!   `queue × (retries + 1)` attempts of `timeout_ms` each.
//!
//! The section is process-wide (the notifier is started once).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::validate::{bounded, readable_file, Located};
use crate::engine::source::{SourceError, Spanned};

/// Where the section sits in gateway.yaml; every error's field path starts with it.
const SECTION: &str = "defence.webhook";

/// Default `timeout_ms`: one delivery attempt, connect to last byte of the answer.
pub const DEFAULT_WEBHOOK_TIMEOUT_MS: u64 = 2_000;
/// Upper bound of `timeout_ms` (Standard Webhooks suggests 15-30 s for senders).
pub const MAX_WEBHOOK_TIMEOUT_MS: u64 = 30_000;
/// Lower bound of `timeout_ms`.
pub const MIN_WEBHOOK_TIMEOUT_MS: u64 = 100;
/// Default `retries`: attempts after the first one, for 5xx, 429 and transport errors.
pub const DEFAULT_WEBHOOK_RETRIES: u64 = 3;
/// Upper bound of `retries`.
pub const MAX_WEBHOOK_RETRIES: u64 = 10;
/// Default `backoff_ms`: the wait before the first retry; it doubles for each further one.
pub const DEFAULT_WEBHOOK_BACKOFF_MS: u64 = 500;
/// Bounds of `backoff_ms`.
pub const MIN_WEBHOOK_BACKOFF_MS: u64 = 10;
/// Upper bound of `backoff_ms`, and the longest any single wait between attempts grows to.
pub const MAX_WEBHOOK_BACKOFF_MS: u64 = 60_000;
/// Default `queue`: alerts waiting for delivery before new ones are dropped (and counted).
pub const DEFAULT_WEBHOOK_QUEUE: u64 = 256;
/// Upper bound of `queue`.
pub const MAX_WEBHOOK_QUEUE: u64 = 10_000;

/// `defence.webhook:` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    format: Spanned<String>,
    url: Spanned<String>,
    #[serde(default)]
    ca_file: Option<Spanned<PathBuf>>,
    #[serde(default)]
    secret_file: Option<Spanned<PathBuf>>,
    #[serde(default)]
    timeout_ms: Option<Spanned<u64>>,
    #[serde(default)]
    retries: Option<Spanned<u64>>,
    #[serde(default)]
    backoff_ms: Option<Spanned<u64>>,
    #[serde(default)]
    queue: Option<Spanned<u64>>,
}

/// The payload a receiver gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookFormat {
    /// The Alertmanager webhook version 4 payload (`{"version":"4","alerts":[…]}`), for
    /// anything that already takes Alertmanager's webhooks.
    Alertmanager,
    /// The alert itself as a JSON object, signed (`X-Phi-Gateway-Signature`).
    Generic,
}

impl WebhookFormat {
    /// The name in gateway.yaml, also the `format` label of
    /// `phi_gateway_alert_deliveries_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookFormat::Alertmanager => "alertmanager",
            WebhookFormat::Generic => "generic",
        }
    }
}

/// The validated `defence.webhook` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSettings {
    /// The payload format.
    pub format: WebhookFormat,
    /// The receiver: `https://…`, or `http://` to a loopback IP literal.
    pub url: String,
    /// CA bundle to trust for the receiver instead of the system roots.
    pub ca_file: Option<PathBuf>,
    /// The HMAC-SHA256 key (file contents, surrounding whitespace trimmed, at least 32 bytes).
    /// Always set for [`WebhookFormat::Generic`].
    pub secret_file: Option<PathBuf>,
    /// The longest one attempt may take.
    pub timeout: Duration,
    /// Attempts after the first.
    pub retries: u32,
    /// The wait before the first retry (doubling, at most [`MAX_WEBHOOK_BACKOFF_MS`]).
    pub backoff: Duration,
    /// Alerts waiting before new ones are dropped.
    pub queue: usize,
}

/// Validates `defence.webhook`. `file` is gateway.yaml (for the error's location) and
/// `resolve` turns a relative path into one against the file's directory.
pub fn validate(
    file: &Path,
    resolve: &dyn Fn(&Path) -> PathBuf,
    raw: &RawWebhook,
) -> Result<WebhookSettings, SourceError> {
    let err = |s: &dyn Located, f: &str, msg: String| s.error(file, &format!("{SECTION}.{f}"), msg);
    let readable =
        |p: &Spanned<PathBuf>, f: &str| readable_file(file, resolve, p, &format!("{SECTION}.{f}"));
    let format = match raw.format.value.as_str() {
        "alertmanager" => WebhookFormat::Alertmanager,
        "generic" => WebhookFormat::Generic,
        other => {
            return Err(err(
                &raw.format,
                "format",
                format!("unknown format `{other}` (expected `alertmanager` or `generic`)"),
            ))
        }
    };
    let tls = check_url(&raw.url.value).map_err(|m| err(&raw.url, "url", m))?;
    let ca_file = match &raw.ca_file {
        Some(ca) if !tls => {
            return Err(err(
                ca,
                "ca_file",
                "only applies to an `https://` url".into(),
            ))
        }
        Some(ca) => Some(readable(ca, "ca_file")?),
        None => None,
    };
    let secret_file = match &raw.secret_file {
        Some(s) => Some(readable(s, "secret_file")?),
        None if format == WebhookFormat::Generic => {
            return Err(err(
                &raw.format,
                "secret_file",
                "`format: generic` needs a `secret_file` holding the HMAC-SHA256 key the receiver verifies with (at least 32 bytes)".into(),
            ))
        }
        None => None,
    };
    let timeout = bounded(
        raw.timeout_ms.as_ref(),
        DEFAULT_WEBHOOK_TIMEOUT_MS,
        MIN_WEBHOOK_TIMEOUT_MS,
        MAX_WEBHOOK_TIMEOUT_MS,
    )
    .map_err(|(s, m)| err(s, "timeout_ms", m))?;
    let retries = bounded(
        raw.retries.as_ref(),
        DEFAULT_WEBHOOK_RETRIES,
        0,
        MAX_WEBHOOK_RETRIES,
    )
    .map_err(|(s, m)| err(s, "retries", m))?;
    let backoff = bounded(
        raw.backoff_ms.as_ref(),
        DEFAULT_WEBHOOK_BACKOFF_MS,
        MIN_WEBHOOK_BACKOFF_MS,
        MAX_WEBHOOK_BACKOFF_MS,
    )
    .map_err(|(s, m)| err(s, "backoff_ms", m))?;
    let queue = bounded(
        raw.queue.as_ref(),
        DEFAULT_WEBHOOK_QUEUE,
        1,
        MAX_WEBHOOK_QUEUE,
    )
    .map_err(|(s, m)| err(s, "queue", m))?;
    Ok(WebhookSettings {
        format,
        url: raw.url.value.clone(),
        ca_file,
        secret_file,
        timeout: Duration::from_millis(timeout),
        // Both bounded above by MAX_WEBHOOK_RETRIES and MAX_WEBHOOK_QUEUE, far inside the types.
        retries: retries as u32,
        backoff: Duration::from_millis(backoff),
        queue: queue as usize,
    })
}

/// Checks a receiver URL; returns whether it is `https://`.
fn check_url(url: &str) -> Result<bool, String> {
    let uri: http::Uri = url.parse().map_err(|_| {
        format!("`{url}` is not a URL such as `https://alerts.hospital.internal/hook`")
    })?;
    let Some(authority) = uri.authority() else {
        return Err(format!("`{url}` has no host"));
    };
    if authority.as_str().contains('@') {
        return Err(
            "must not carry credentials (they would sit in gateway.yaml and in logs)".into(),
        );
    }
    let host = authority.host();
    if host.is_empty() {
        return Err(format!("`{url}` has no host"));
    }
    match uri.scheme_str() {
        Some("https") => Ok(true),
        Some("http") if is_loopback_literal(host) => Ok(false),
        Some("http") => Err(
            "must be `https://` (plain `http://` is allowed only to a loopback IP such as 127.0.0.1 or [::1])".into(),
        ),
        _ => Err("must be an `https://` URL".into()),
    }
}

/// Whether `host` (as in a URL authority, IPv6 in brackets) is a loopback IP literal.
fn is_loopback_literal(host: &str) -> bool {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests;
