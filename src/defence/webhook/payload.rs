//! The two bodies an [`Alert`] is sent as: the Alertmanager webhook version 4 message
//! (prometheus/alertmanager `notify/webhook/webhook.go`, `template/template.go`) and the
//! generic JSON object. Both are built from the alert's fields only: no request data can get
//! in, because none is there.
//!
//! Audit references are capped at [`MAX_AUDIT_REFS`] so a large incident cannot make a body
//! that a receiver (or a chat tool downstream of it) refuses; the number left out is stated.

use std::collections::BTreeMap;

use serde::Serialize;

use super::Alert;
use crate::config::WebhookFormat;

/// The most audit record ids one body carries.
pub(super) const MAX_AUDIT_REFS: usize = 64;
/// Alertmanager's receiver name for our messages (we are not an Alertmanager; this names who
/// sent it).
const RECEIVER: &str = "phi-gateway";
/// Go's zero `time.Time`: what Alertmanager sends as `endsAt` for an alert with no known end.
const NO_END: &str = "0001-01-01T00:00:00Z";
/// The generic body's schema version (bumped on an incompatible change).
const GENERIC_VERSION: &str = "1";

/// The JSON body of `alert` in `format`.
pub(super) fn body(format: WebhookFormat, alert: &Alert) -> Result<Vec<u8>, serde_json::Error> {
    match format {
        WebhookFormat::Alertmanager => serde_json::to_vec(&alertmanager(alert)),
        WebhookFormat::Generic => serde_json::to_vec(&generic(alert)),
    }
}

/// Alertmanager webhook message, version 4. One alert per message: the gateway raises one
/// incident at a time, and grouping belongs to whoever receives it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Message<'a> {
    version: &'static str,
    group_key: String,
    truncated_alerts: u64,
    status: &'static str,
    receiver: &'static str,
    group_labels: BTreeMap<&'static str, &'a str>,
    common_labels: BTreeMap<&'static str, &'a str>,
    common_annotations: BTreeMap<&'static str, String>,
    #[serde(rename = "externalURL")]
    external_url: &'static str,
    alerts: [AmAlert<'a>; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AmAlert<'a> {
    status: &'static str,
    labels: BTreeMap<&'static str, &'a str>,
    annotations: BTreeMap<&'static str, String>,
    starts_at: String,
    ends_at: &'static str,
    #[serde(rename = "generatorURL")]
    generator_url: &'static str,
    fingerprint: String,
}

fn alertmanager(alert: &Alert) -> Message<'_> {
    let labels = BTreeMap::from([
        ("alertname", alert.name),
        ("severity", alert.severity),
        ("principal", alert.principal.as_str()),
        ("signal", alert.signal),
        ("action", alert.action),
        ("gateway", alert.gateway.as_str()),
    ]);
    let (refs, omitted) = capped_refs(alert);
    let mut refs = refs.join(",");
    if omitted > 0 {
        refs.push_str(&format!(" (+{omitted} more)"));
    }
    let annotations = BTreeMap::from([
        ("summary", alert.summary.clone()),
        (
            "description",
            format!(
                "signal {} observed {} against a threshold of {}; action: {}",
                alert.signal, alert.observed, alert.threshold, alert.action
            ),
        ),
        ("incident_id", alert.id.clone()),
        ("principal_kind", alert.principal_kind.to_string()),
        ("observed", alert.observed.to_string()),
        ("threshold", alert.threshold.to_string()),
        ("audit_refs", refs),
    ]);
    let group_labels = BTreeMap::from([
        ("alertname", alert.name),
        ("principal", alert.principal.as_str()),
    ]);
    Message {
        version: "4",
        // Alertmanager's form: the route's matchers (`{}`: none), then the group labels as
        // Prometheus prints a label set.
        group_key: format!("{{}}:{}", label_set(&group_labels)),
        truncated_alerts: 0,
        status: "firing",
        receiver: RECEIVER,
        group_labels,
        common_labels: labels.clone(),
        common_annotations: annotations.clone(),
        external_url: "",
        alerts: [AmAlert {
            status: "firing",
            fingerprint: fingerprint(&labels),
            labels,
            annotations,
            starts_at: rfc3339(alert.starts_at_ms),
            ends_at: NO_END,
            generator_url: "",
        }],
    }
}

/// The generic body: the alert's fields, its start as RFC 3339 too, the capped references.
#[derive(Serialize)]
struct Generic<'a> {
    version: &'static str,
    id: &'a str,
    status: &'static str,
    name: &'static str,
    severity: &'static str,
    summary: &'a str,
    principal: &'a str,
    principal_kind: &'static str,
    signal: &'static str,
    observed: u64,
    threshold: f64,
    action: &'static str,
    starts_at: String,
    starts_at_ms: u64,
    gateway: &'a str,
    audit_refs: &'a [String],
    audit_refs_omitted: usize,
}

fn generic(alert: &Alert) -> Generic<'_> {
    let (audit_refs, audit_refs_omitted) = capped_refs(alert);
    Generic {
        version: GENERIC_VERSION,
        id: &alert.id,
        status: "firing",
        name: alert.name,
        severity: alert.severity,
        summary: &alert.summary,
        principal: &alert.principal,
        principal_kind: alert.principal_kind,
        signal: alert.signal,
        observed: alert.observed,
        threshold: alert.threshold,
        action: alert.action,
        starts_at: rfc3339(alert.starts_at_ms),
        starts_at_ms: alert.starts_at_ms,
        gateway: &alert.gateway,
        audit_refs,
        audit_refs_omitted,
    }
}

fn capped_refs(alert: &Alert) -> (&[String], usize) {
    let n = alert.audit_refs.len().min(MAX_AUDIT_REFS);
    (&alert.audit_refs[..n], alert.audit_refs.len() - n)
}

/// `{a="x", b="y"}`, as prometheus/common `LabelSet.String()` prints it (sorted names).
fn label_set(labels: &BTreeMap<&'static str, &str>) -> String {
    let pairs: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}={}", serde_json::Value::from(*v)))
        .collect();
    format!("{{{}}}", pairs.join(", "))
}

/// The alert fingerprint Alertmanager would compute for these labels: prometheus/common
/// `model.LabelSet.Fingerprint()`, FNV-1a 64 over the sorted names and values, each followed
/// by the separator byte 0xff (which never occurs in UTF-8), printed as 16 hex digits.
pub(super) fn fingerprint(labels: &BTreeMap<&str, &str>) -> String {
    const OFFSET: u64 = 14_695_981_039_346_656_037;
    const PRIME: u64 = 1_099_511_628_211;
    const SEPARATOR: u8 = 0xff;
    let mut h = OFFSET;
    let mut add = |bytes: &[u8]| {
        for b in bytes.iter().chain(std::iter::once(&SEPARATOR)) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(PRIME);
        }
    };
    for (name, value) in labels {
        add(name.as_bytes());
        add(value.as_bytes());
    }
    format!("{h:016x}")
}

/// Unix milliseconds as RFC 3339 UTC; the epoch for a time past the year 9999, which the
/// `time` crate cannot print (a detector clock that far off is a bug, not an incident time).
pub(super) fn rfc3339(ms: u64) -> String {
    use time::format_description::well_known::Rfc3339;
    let nanos = i128::from(ms).saturating_mul(1_000_000);
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".into())
}
