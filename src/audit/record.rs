//! The audit record: one per decision, never holding a matched PHI value.
//!
//! Raw request values that an auditor may need to correlate (the FHIR resource id, a user id
//! that the engine flags) enter this module wrapped in [`Redacted`], which has no `Serialize`
//! and prints `[redacted]` under `Debug`. The only ways out are [`Fingerprinter::fingerprint`]
//! (HMAC-SHA256 with a key kept outside the log directory) or, for values the engine has
//! checked and found clean on a route configured for it, [`Redacted::into_clear_checked`].

use std::fmt;

use serde::{Deserialize, Serialize};

/// A request value that must never be written as is. No `Serialize`, no `Display`.
pub struct Redacted<T>(T);

impl<T> Redacted<T> {
    /// Wraps a raw value.
    pub fn new(value: T) -> Self {
        Redacted(value)
    }
}

impl Redacted<String> {
    /// Releases the value in clear. Callers must first have run it through the detection
    /// engine (`clean == true` means no rule fired on it); otherwise this returns `None`.
    pub fn into_clear_checked(self, clean: bool) -> Option<String> {
        clean.then_some(self.0)
    }

    /// The raw bytes, for scanning and fingerprinting only (crate-internal).
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl<T> fmt::Debug for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// HMAC-SHA256 with the deployment's fingerprint key. A plain hash of a low-entropy identifier
/// (an SSN, a medical record number) can be reversed by enumeration; a keyed one cannot
/// without the key, which lives outside the log directory.
pub struct Fingerprinter {
    key: ring::hmac::Key,
}

impl Fingerprinter {
    /// Builds from raw key bytes (at least 32).
    pub fn new(key: &[u8]) -> Self {
        Self {
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key),
        }
    }

    /// A running HMAC over the request body (`body_hmac`): fed chunk by chunk as the body
    /// arrives, finished when the record is built. Keyed like the fingerprints, because a
    /// plain SHA-256 of a small templated body (a Patient with one identifier) is reversed
    /// by hashing every value of the identifier.
    pub fn body_context(&self) -> ring::hmac::Context {
        ring::hmac::Context::with_key(&self.key)
    }

    /// `hmac-sha256:<hex>` of the value; the only way a [`Redacted`] value reaches a record
    /// when it is not released in clear.
    pub fn fingerprint(&self, value: &Redacted<String>) -> String {
        let tag = ring::hmac::sign(&self.key, value.expose().as_bytes());
        format!("hmac-sha256:{}", hex(tag.as_ref()))
    }
}

impl fmt::Debug for Fingerprinter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Fingerprinter([key])")
    }
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    // A table look-up per nibble: `write!("{b:02x}")` went through the formatter per byte and
    // was the single largest cost of the audit writer (three digests per record).
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// Hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

/// One audit record. Field order is the serialisation order; `prev_hash` chains records.
///
/// The first seven fields are the schema compliance teams already use (`log_id`, `user_id`,
/// `action_type`, `resource_id`, `timestamp`, `ip_address`, `user_agent`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuditRecord {
    /// Random UUID v4.
    pub log_id: String,
    /// The acting user: a verified bearer token's user claim, else the configured source;
    /// `anonymous` when none is available.
    pub user_id: String,
    /// What was attempted: the FHIR interaction when one can be derived, else the method.
    pub action_type: String,
    /// `Patient/123` (clear) or `hmac-sha256:…`, when the URL names a FHIR resource.
    pub resource_id: Option<String>,
    /// RFC 3339 UTC with nanoseconds, taken when the record is built.
    pub timestamp: String,
    /// Client IP address as seen by the gateway.
    pub ip_address: Option<String>,
    /// Client `User-Agent`, or its fingerprint when a detector fired on it.
    pub user_agent: Option<String>,
    /// The gateway's request id (also sent as `x-request-id`).
    pub request_id: String,
    /// The audit header's value, or its fingerprint when a detector fired on it.
    pub audit_header: Option<String>,
    /// Route name, or `unmatched`.
    pub route: String,
    /// HTTP method.
    pub method: String,
    /// `read`, `vread`, `search`, `create`, `update`, `patch`, `delete`, `history`,
    /// `operation`, `capabilities`, or none.
    pub fhir_interaction: Option<String>,
    /// `allow`, `block`, `would_block`, `error` or `fail_closed`.
    pub decision: String,
    /// Why, when not allowed (`phi_detected`, `missing_audit_header`, …).
    pub reason: Option<String>,
    /// The route's mode (`enforce`, `monitor`), or none when unrouted.
    pub mode: Option<String>,
    /// Rule ids that fired (sorted, unique).
    pub rule_ids: Vec<String>,
    /// Where findings were (`body:/identifier/0/value`, `query:*`), never the values.
    pub field_paths: Vec<String>,
    /// HTTP status sent to the client (0 when none was sent).
    pub status: u16,
    /// Request body bytes received.
    pub bytes_in: u64,
    /// Response body bytes: our own error body, or the upstream's declared Content-Length
    /// (none when the upstream streamed without one).
    pub bytes_out: Option<u64>,
    /// Negotiated TLS version.
    pub tls_version: Option<String>,
    /// Hash of the effective configuration and rules.
    pub config_version: String,
    /// Hex HMAC-SHA256 of the request body as received, keyed with the fingerprint key, when
    /// the request had a body. Matches a document in hand to its record for whoever holds
    /// the key; an unkeyed hash of a small body could be reversed by enumeration.
    pub body_hmac: Option<String>,
    /// The bearer-token check, on routes with `access.require: token | optional`; absent
    /// elsewhere (and in records written before access control existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<AccessRecord>,
    /// An incident the gateway raised (issue 12: an access anomaly), on a record of its own
    /// (`action_type: incident`); absent on request records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident: Option<IncidentRecord>,
    /// What the response leak guard did with the upstream's answer, when it acted on it
    /// (absent for answers it released, and in records written before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_leak: Option<ResponseLeakRecord>,
    /// Monotonic sequence number across segments (assigned by the writer).
    pub seq: u64,
    /// Hex SHA-256 of the previous record's line bytes (assigned by the writer).
    pub prev_hash: String,
}

/// The leak guard's part of a record (issue 12 §2): which rules fired where in the upstream's
/// answer, never the answer's text.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ResponseLeakRecord {
    /// `block` (replaced), `would_block` (monitor), `cut` (over the cap or undecodable, in
    /// enforce: answered 502) or `unscanned` (the same in monitor: passed).
    pub action: String,
    /// The status the upstream answered with.
    pub upstream_status: u16,
    /// Body bytes the upstream sent (as received, before decoding), as far as they were read.
    pub upstream_bytes: u64,
    /// Hex HMAC-SHA256 of the upstream's body under the fingerprint key (as `body_hmac`), when
    /// it was read whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_hmac: Option<String>,
    /// The findings (at most 32), in document order.
    #[serde(default)]
    pub findings: Vec<LeakFinding>,
}

/// One rule that fired in an upstream answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LeakFinding {
    /// The rule id.
    pub rule: String,
    /// Log-safe location (`body@120`, `body:/issue/0/diagnostics`).
    pub location: String,
    /// Length of the matched text, in characters.
    pub length: usize,
    /// Keyed fingerprint of the matched text (`hmac-sha256:<key id>:<hex>`, the rule set's
    /// fingerprint key), when the gateway has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

/// The access part of a record. Identifiers a token carries (client id, token id, session
/// id) are stored only as keyed fingerprints; scopes in clear unless a detector fires on one.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AccessRecord {
    /// `allow` (a token verified), `anonymous` (none, on a `require: optional` route), `deny`
    /// or `would_deny` (monitor).
    pub decision: String,
    /// Which check failed (`expired`, `bad_signature`, `unknown_kid`, …), when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The configured name of the token's issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The granted scopes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// `hmac-sha256:…` of `client_id` (or `azp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// `hmac-sha256:…` of `jti`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
    /// `hmac-sha256:…` of `sid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The access policy's reason, on routes where the policy decides: `allowed`, or why it
    /// refused (`insufficient_scope`, `patient_mismatch`, `bundle_entry_denied`, …), or
    /// `compartment_check_unavailable` (allowed only with a check the gateway cannot make),
    /// or the response check's reason when it refused the held-back answer
    /// (`response_outside_compartment`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What the policy said must still be checked after an allow (`response`, `target`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_check: Option<String>,
    /// For a refused batch/transaction Bundle: the indexes of the denied entries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub denied_entries: Vec<usize>,
    /// Each denied entry's reason, in the order of `denied_entries`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entry_reasons: Vec<String>,
    /// `hmac-sha256:…` of `Patient/{id}` for the token's patient context (`patient` claim):
    /// the same fingerprint a record of a request for that Patient has as `resource_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    /// The token's `purpose_of_use` claim (a code such as `TREAT`), in clear unless a
    /// detector fires on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose_of_use: Option<String>,
    /// The session check (automatic logoff): `active`, `started`, `idle_timeout`, `expired`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// Break-glass: present on every record of a break-glass request (the box's start, each
    /// access under it, each refusal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub break_glass: Option<BreakGlassRecord>,
}

/// The break-glass part of a record (issue 11 §4): what the after-the-fact review reads
/// (`phi-gateway audit break-glass`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BreakGlassRecord {
    /// `started`: a new time box (written and made durable before the request is forwarded;
    /// `severity: critical`, the justification, the expiry); `access`: the record of a
    /// request forwarded under a box (`time_box` says whether it started it); `refused`: a
    /// break-glass request the gateway refused (`reason`).
    pub event: String,
    /// `critical` on `started`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    /// On `access`: `started` (this request opened the box) or `active` (an open box).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_box: Option<String>,
    /// When the box ends, RFC 3339 UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// `hmac-sha256:…` of `Patient/{id}`, the patient the box is for (never in clear).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    /// The justification, in clear only when no detector fired on it (otherwise its
    /// fingerprint); on `started`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub justification: Option<String>,
    /// How the request asked: `category` (the `Category` header's `v3-ActReason#BTG`) or
    /// `purpose_of_use` (an emergency code in the token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
    /// The policy's reason the box overrides (`patient_mismatch`, `insufficient_scope`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overridden: Option<String>,
    /// On `refused`: why (`break_glass_justification_required`, …, `audit_unavailable`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// An incident (issue 12 §1): what an investigator needs to pull the evidence, and no PHI.
/// The principal is its keyed state key (32 hex), never a user id or address; the evidence
/// is the request ids of the principal's recent audit records on the raising gateway.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IncidentRecord {
    /// The incident id (also the alert's id).
    pub id: String,
    /// `phi_gateway.access_anomaly`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `critical`.
    pub severity: String,
    /// The detector rule (`access_anomaly`).
    pub rule: String,
    /// The signal that crossed its threshold furthest (`patient_requests`, …).
    pub signal: String,
    /// The principal's keyed key.
    pub principal: String,
    /// `user` or `client_address`.
    pub principal_kind: String,
    /// The sliding window, seconds.
    pub window_seconds: u64,
    /// Every signal over its threshold, with observed vs expected.
    pub signals: Vec<IncidentSignal>,
    /// `alert` (monitor, or not yet graded for suspension) or `suspend`.
    pub action: String,
    /// With `suspend`: until when, RFC 3339 UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspended_until: Option<String>,
    /// The gateway instance that raised it.
    pub gateway: String,
    /// Request ids of the principal's recent audit records (newest last).
    pub audit_refs: Vec<String>,
}

/// One signal of an [`IncidentRecord`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IncidentSignal {
    /// The signal.
    pub signal: String,
    /// Its count over the sliding window.
    pub observed: u64,
    /// The count it alerts at.
    pub threshold: f64,
    /// The learned mean (0 before any window was learned).
    pub expected: f64,
    /// The learned spread.
    pub spread: f64,
    /// `baseline` or `cold_start`.
    pub basis: String,
    /// Windows learned.
    pub history: u64,
}

/// The FHIR resource and interaction a request addresses, derived from its URL and method.
#[derive(Debug)]
pub struct FhirTarget {
    /// `Patient/123`, `Patient`, … (raw: may carry anything the client typed).
    pub resource: Option<Redacted<String>>,
    /// The interaction, when it can be derived.
    pub interaction: Option<&'static str>,
}

fn is_resource_type(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_uppercase()) && b.all(|c| c.is_ascii_alphanumeric())
}

/// Derives the FHIR target from the path below the route prefix: `[base/]Type[/id[/_history[/vid]]]`,
/// `Type/_search`, `$operation`, `metadata`.
pub fn fhir_target(method: &str, path: &str) -> FhirTarget {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let Some(pos) = segs.iter().position(|s| is_resource_type(s)) else {
        let interaction = match (method, segs.last()) {
            ("GET", Some(&"metadata")) => Some("capabilities"),
            (_, Some(s)) if s.starts_with('$') => Some("operation"),
            _ => None,
        };
        return FhirTarget {
            resource: None,
            interaction,
        };
    };
    let ty = segs[pos];
    let rest = &segs[pos + 1..];
    let id = rest
        .first()
        .filter(|s| !s.starts_with('_') && !s.starts_with('$'));
    let resource = match id {
        Some(id) => format!("{ty}/{id}"),
        None => ty.to_string(),
    };
    let after_id = if id.is_some() { &rest[1..] } else { rest };
    let interaction = match (method, id.is_some(), after_id) {
        (_, _, [op, ..]) if op.starts_with('$') => Some("operation"),
        (_, _, [s, ..]) if *s == "_search" => Some("search"),
        ("GET" | "HEAD", true, ["_history", _, ..]) => Some("vread"),
        ("GET" | "HEAD", _, ["_history"]) => Some("history"),
        ("GET" | "HEAD", true, []) => Some("read"),
        ("GET" | "HEAD", false, []) => Some("search"),
        ("POST", false, []) => Some("create"),
        ("PUT", _, []) => Some("update"),
        ("PATCH", _, []) => Some("patch"),
        ("DELETE", _, []) => Some("delete"),
        _ => None,
    };
    FhirTarget {
        resource: Some(Redacted::new(resource)),
        interaction,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fhir_interactions_from_url_and_method() {
        let t = |m: &str, p: &str| {
            let t = fhir_target(m, p);
            (t.resource.map(|r| r.expose().to_string()), t.interaction)
        };
        assert_eq!(
            t("GET", "/fhir/Patient/123"),
            (Some("Patient/123".into()), Some("read"))
        );
        assert_eq!(
            t("GET", "/fhir/Patient"),
            (Some("Patient".into()), Some("search"))
        );
        assert_eq!(
            t("POST", "/fhir/Patient"),
            (Some("Patient".into()), Some("create"))
        );
        assert_eq!(
            t("POST", "/fhir/Patient/_search"),
            (Some("Patient".into()), Some("search"))
        );
        assert_eq!(t("PUT", "/fhir/Patient/9").1, Some("update"));
        assert_eq!(t("DELETE", "/fhir/Patient/9").1, Some("delete"));
        assert_eq!(t("PATCH", "/fhir/Patient/9").1, Some("patch"));
        assert_eq!(t("GET", "/fhir/Patient/9/_history/2").1, Some("vread"));
        assert_eq!(t("GET", "/fhir/Patient/9/_history").1, Some("history"));
        assert_eq!(t("GET", "/fhir/metadata"), (None, Some("capabilities")));
        assert_eq!(
            t("POST", "/fhir/Patient/9/$everything").1,
            Some("operation")
        );
        assert_eq!(t("GET", "/other/thing"), (None, None));
    }

    #[test]
    fn redacted_values_only_leave_as_fingerprints_or_checked_clear() {
        let v = Redacted::new("Patient/536-22-1234".to_string());
        assert_eq!(format!("{v:?}"), "[redacted]");
        let f = Fingerprinter::new(&[7u8; 32]);
        let fp = f.fingerprint(&v);
        assert!(
            fp.starts_with("hmac-sha256:") && fp.len() == 12 + 64,
            "{fp}"
        );
        assert!(!fp.contains("536"));
        // Same key, same value: same fingerprint (correlation); other key: different.
        assert_eq!(
            fp,
            f.fingerprint(&Redacted::new("Patient/536-22-1234".into()))
        );
        assert_ne!(fp, Fingerprinter::new(&[8u8; 32]).fingerprint(&v));
        assert_eq!(v.into_clear_checked(false), None);
    }
}
