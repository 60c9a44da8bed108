//! Verdicts: decisions and reasons, and the rule that turns findings into a decision.
//!
//! The engine reports *what* it found; this module decides *what to do about it*, combining the
//! route's mode, the rule's own mode and per-route rule overrides. Keeping the decision here (and
//! not in the proxy) means the `scan` command, rule tests and the proxy agree on what would be
//! blocked.
//!
//! Below `audit` and `gateway` because both speak this vocabulary (one decision per request
//! feeds the audit record, the metrics and the log line); it uses only `engine` (for `Mode`).

use crate::engine::Mode;

/// What the gateway did with a request. Exactly one per request; feeds logs and metrics from
/// the same value so they can never disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Decision {
    /// Forwarded; nothing matched.
    Allow,
    /// Answered by the gateway with a 4xx; nothing (or, for bodies, no body byte) reached the
    /// upstream. Also an upstream answer a response check withheld (the compartment check's
    /// 403, the leak guard's replacement with the upstream's status): then the upstream
    /// received the request, and the client none of its answer.
    Block,
    /// Monitor mode: would have been blocked, forwarded untouched.
    WouldBlock,
    /// The gateway or the upstream failed (5xx).
    Error,
    /// Refused with 503 because the audit trail could not record the request (a fail-closed
    /// route with a failing audit sink or a full audit queue).
    FailClosed,
}

impl Decision {
    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Block => "block",
            Decision::WouldBlock => "would_block",
            Decision::Error => "error",
            Decision::FailClosed => "fail_closed",
        }
    }
}

/// Why a request was not simply allowed. The string form appears in the JSON error body, in
/// logs and as a metric label, so the set is small and fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// A required audit header is absent.
    MissingAuditHeader,
    /// A required audit header is empty, too long or not a printable token.
    MalformedAuditHeader,
    /// A rule found unencrypted PHI.
    PhiDetected,
    /// The body exceeds `max_body_bytes` (declared or streamed).
    BodyTooLarge,
    /// The decompressed body exceeds the decoding limits.
    DecodedBodyTooLarge,
    /// The Content-Encoding cannot be decoded, so the body cannot be inspected.
    UnsupportedContentEncoding,
    /// The body claims an encoding it does not have.
    UndecodableBody,
    /// A Transfer-Encoding other than plain `chunked` (e.g. `gzip, chunked`): the gateway
    /// would see a coded body it cannot inspect, and pingora would drop the coding on the way
    /// upstream.
    UnsupportedTransferEncoding,
    /// The connection did not negotiate TLS 1.3.
    TlsVersionNotAllowed,
    /// No route matches the host and path.
    NoRoute,
    /// The upstream refused the connection or failed TLS.
    UpstreamUnavailable,
    /// The upstream did not answer in time.
    UpstreamTimeout,
    /// The upstream broke the exchange.
    UpstreamError,
    /// The upstream answered while the request body was still held back for inspection. Its
    /// answer cannot stand for a request the gateway has not decided on (it might carry PHI
    /// and be refused), so it is dropped; the held body never reaches the upstream.
    UpstreamEarlyResponse,
    /// The client sent something HTTP-invalid, or ambiguous framing (both Content-Length and
    /// Transfer-Encoding, a classic request-smuggling shape).
    BadRequest,
    /// The client did not send the request body within `limits.body_timeout_ms`.
    ClientTimeout,
    /// The request target is longer than `limits.max_uri_bytes`.
    UriTooLong,
    /// The request headers together exceed `limits.max_header_bytes`.
    HeadersTooLarge,
    /// A bug or resource failure inside the gateway.
    InternalError,
    /// The audit trail cannot record the request, and the route fails closed.
    AuditUnavailable,
    /// The request asks to switch protocols (`Upgrade`, e.g. WebSocket) on a route that does
    /// not allow tunnels: the gateway cannot inspect what would flow through one.
    UpgradeNotAllowed,
    /// The request announces trailer fields (a `Trailer` header). Trailers are header fields
    /// after the body; the gateway cannot inspect them, so it refuses requests that declare
    /// them (undeclared ones are discarded, never forwarded; docs/hostile-input.md).
    TrailersNotAllowed,
    /// Not a refusal: an upgrade the route allows (`allow_upgrade: true`) was relayed as an
    /// uninspected tunnel. Recorded with decision `allow` so the audit trail shows it.
    UpgradeTunnel,
    /// The route requires a bearer token and the request has none.
    TokenMissing,
    /// The bearer token is not acceptable (malformed, bad signature, wrong issuer or
    /// audience, not yet valid, over the maximum lifetime, …; the audit record says which).
    TokenInvalid,
    /// The bearer token has expired.
    TokenExpired,
    /// A token in the query string (`access_token=`): URLs end up in logs.
    TokenInQuery,
    /// A token in a form body (`access_token=`): only the `Authorization` header is read.
    TokenInBody,
    /// More than one token (two `Authorization` headers, or a header and a query or body token).
    TokenMultiple,
    /// The token's issuer has no key set younger than its `max_staleness`: the gateway cannot
    /// judge the token, so it refuses (fails closed) with 503.
    JwksUnavailable,
    /// The issuer's RFC 7662 introspection endpoint did not answer (in time, with 200 and
    /// JSON): an opaque token cannot be judged, so the gateway refuses (fails closed) with 503.
    IntrospectionUnavailable,
    /// The access policy refuses the request (scopes, roles, patient binding; RFC 6750
    /// `insufficient_scope`). The audit record's `access.reason` names the policy's reason.
    InsufficientScope,
    /// The policy allows the request only if the response (a read by id of a resource that
    /// may belong to another patient) or the target (an update or delete by id) is checked
    /// against the patient's compartment, and the gateway cannot check it yet: refused rather
    /// than forwarded unchecked. Since the response hold-back exists this is only the
    /// update or delete by id (`post_check: target`; docs/access.md).
    CompartmentCheckUnavailable,
    /// A held-back response (patient binding) is larger than `access.response_hold_bytes`:
    /// it cannot be checked, so none of it is released.
    ResponseTooLarge,
    /// A held-back response is not JSON (FHIR XML, HTML, text): the compartment check reads
    /// JSON only, so none of it is released; the client can ask for `application/fhir+json`.
    UnsupportedResponseFormat,
    /// A held-back response's Content-Encoding cannot be undone (unknown coding, corrupt or
    /// over the decompression limits): none of it is released.
    UndecodableResponse,
    /// The response leak guard found PHI or an error signature (stack trace, SQL error) in an
    /// upstream error response: the client gets a generic answer with the upstream's status
    /// instead (`gateway/leak.rs`; the [`Reason::status`] here is only nominal).
    ResponseLeakBlocked,
    /// The token's session saw no request for longer than `access.sessions.idle_timeout_seconds`
    /// (automatic logoff, HIPAA 164.312(a)(2)(iii)).
    SessionIdleTimeout,
    /// The token's session is older than `access.sessions.max_session_seconds` (from
    /// `auth_time`, else from its first request).
    SessionExpired,
    /// A break-glass request (FHIR `Category` `v3-ActReason#BTG`, or an emergency
    /// `purpose_of_use`) that needs a new time box without a justification header of the
    /// configured minimum length.
    BreakGlassJustificationRequired,
    /// The break-glass justification carries PHI: it would have to be stored in the audit
    /// trail, so the request is refused and the value is never recorded in clear.
    BreakGlassJustificationPhi,
    /// A break-glass request by a subject none of whose roles is `break_glass_eligible`.
    BreakGlassNotEligible,
    /// A break-glass request whose URL names no single patient: a time box is per patient.
    BreakGlassPatientRequired,
    /// The principal (user, or client address for anonymous traffic) is suspended by the
    /// access-anomaly detector (`defence.anomaly.mode: enforce`) until its suspension ends or
    /// an operator reinstates it.
    PrincipalSuspended,
    /// A route listed in `defence.anomaly.fail_closed_routes` while the detector cannot count
    /// (the state backend fails): refused rather than served uncounted.
    AnomalyDetectionUnavailable,
}

impl Reason {
    /// Stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::MissingAuditHeader => "missing_audit_header",
            Reason::MalformedAuditHeader => "malformed_audit_header",
            Reason::PhiDetected => "phi_detected",
            Reason::BodyTooLarge => "body_too_large",
            Reason::DecodedBodyTooLarge => "decoded_body_too_large",
            Reason::UnsupportedContentEncoding => "unsupported_content_encoding",
            Reason::UndecodableBody => "undecodable_body",
            Reason::UnsupportedTransferEncoding => "unsupported_transfer_encoding",
            Reason::TlsVersionNotAllowed => "tls_version_not_allowed",
            Reason::NoRoute => "no_route",
            Reason::UpstreamUnavailable => "upstream_unavailable",
            Reason::UpstreamTimeout => "upstream_timeout",
            Reason::UpstreamError => "upstream_error",
            Reason::UpstreamEarlyResponse => "upstream_early_response",
            Reason::BadRequest => "bad_request",
            Reason::ClientTimeout => "client_timeout",
            Reason::UriTooLong => "uri_too_long",
            Reason::HeadersTooLarge => "headers_too_large",
            Reason::InternalError => "internal_error",
            Reason::AuditUnavailable => "audit_unavailable",
            Reason::UpgradeNotAllowed => "upgrade_not_allowed",
            Reason::TrailersNotAllowed => "trailers_not_allowed",
            Reason::UpgradeTunnel => "upgrade_tunnel",
            Reason::TokenMissing => "token_missing",
            Reason::TokenInvalid => "token_invalid",
            Reason::TokenExpired => "token_expired",
            Reason::TokenInQuery => "token_in_query",
            Reason::TokenInBody => "token_in_body",
            Reason::TokenMultiple => "token_multiple",
            Reason::JwksUnavailable => "jwks_unavailable",
            Reason::IntrospectionUnavailable => "introspection_unavailable",
            Reason::InsufficientScope => "insufficient_scope",
            Reason::CompartmentCheckUnavailable => "compartment_check_unavailable",
            Reason::ResponseTooLarge => "response_too_large",
            Reason::UnsupportedResponseFormat => "unsupported_response_format",
            Reason::UndecodableResponse => "undecodable_response",
            Reason::ResponseLeakBlocked => "response_leak_blocked",
            Reason::SessionIdleTimeout => "session_idle_timeout",
            Reason::SessionExpired => "session_expired",
            Reason::BreakGlassJustificationRequired => "break_glass_justification_required",
            Reason::BreakGlassJustificationPhi => "break_glass_justification_phi",
            Reason::BreakGlassNotEligible => "break_glass_not_eligible",
            Reason::BreakGlassPatientRequired => "break_glass_patient_required",
            Reason::PrincipalSuspended => "principal_suspended",
            Reason::AnomalyDetectionUnavailable => "anomaly_detection_unavailable",
        }
    }

    /// The HTTP status the gateway answers with for this reason.
    pub fn status(self) -> u16 {
        match self {
            Reason::MissingAuditHeader
            | Reason::MalformedAuditHeader
            | Reason::PhiDetected
            | Reason::TlsVersionNotAllowed
            | Reason::UpgradeNotAllowed
            | Reason::InsufficientScope
            | Reason::CompartmentCheckUnavailable
            | Reason::BreakGlassJustificationRequired
            | Reason::BreakGlassJustificationPhi
            | Reason::BreakGlassNotEligible
            | Reason::BreakGlassPatientRequired
            | Reason::PrincipalSuspended => 403,
            Reason::BodyTooLarge | Reason::DecodedBodyTooLarge => 413,
            Reason::UnsupportedContentEncoding => 415,
            Reason::UndecodableBody | Reason::BadRequest | Reason::TrailersNotAllowed => 400,
            // Never an answer of ours: the upstream's 101 went through.
            Reason::UpgradeTunnel => 101,
            Reason::NoRoute => 404,
            Reason::ClientTimeout => 408,
            Reason::UriTooLong => 414,
            Reason::HeadersTooLarge => 431,
            Reason::ResponseTooLarge
            | Reason::UndecodableResponse
            | Reason::ResponseLeakBlocked => 502,
            Reason::UnsupportedResponseFormat => 406,
            Reason::UpstreamUnavailable | Reason::UpstreamError | Reason::UpstreamEarlyResponse => {
                502
            }
            Reason::UpstreamTimeout => 504,
            Reason::InternalError => 500,
            // RFC 9112 §6.1: a transfer coding the server does not implement gets 501.
            Reason::UnsupportedTransferEncoding => 501,
            Reason::AuditUnavailable
            | Reason::AnomalyDetectionUnavailable
            | Reason::JwksUnavailable
            | Reason::IntrospectionUnavailable => 503,
            // RFC 6750 §3.1: every token fault is 401 `invalid_token` (a missing one, 401
            // without an error code).
            Reason::TokenMissing
            | Reason::TokenInvalid
            | Reason::TokenExpired
            | Reason::TokenInQuery
            | Reason::TokenInBody
            | Reason::TokenMultiple
            | Reason::SessionIdleTimeout
            | Reason::SessionExpired => 401,
        }
    }

    /// A short, generic sentence for the client. Never includes request data.
    pub fn message(self) -> &'static str {
        match self {
            Reason::MissingAuditHeader => "a required audit header is missing",
            Reason::MalformedAuditHeader => "a required audit header is malformed",
            Reason::PhiDetected => "the request carries unencrypted protected health information",
            Reason::BodyTooLarge => "the request body exceeds the size limit",
            Reason::DecodedBodyTooLarge => "the decompressed request body exceeds the size limit",
            Reason::UnsupportedContentEncoding => {
                "the request body uses a content-encoding the gateway cannot inspect"
            }
            Reason::UndecodableBody => "the request body does not match its content-encoding",
            Reason::UnsupportedTransferEncoding => {
                "the request uses a transfer-encoding other than chunked"
            }
            Reason::TlsVersionNotAllowed => "TLS 1.3 is required",
            Reason::NoRoute => "no route for this host and path",
            Reason::UpstreamUnavailable => "the upstream service is unavailable",
            Reason::UpstreamTimeout => "the upstream service did not answer in time",
            Reason::UpstreamError => "the upstream service failed",
            Reason::UpstreamEarlyResponse => {
                "the upstream service answered before the request body was inspected"
            }
            // Also the answer to a request the access policy cannot read as a FHIR
            // interaction (the audit record's `access.reason` says which).
            Reason::BadRequest => "the request is malformed",
            Reason::ClientTimeout => "the request was not received in time",
            Reason::UriTooLong => "the request target exceeds the size limit",
            Reason::HeadersTooLarge => "the request headers exceed the size limit",
            Reason::InternalError => "internal gateway error",
            Reason::AuditUnavailable => {
                "the audit trail cannot record this request, so the gateway refuses it"
            }
            Reason::UpgradeNotAllowed => {
                "protocol upgrades cannot be inspected and are not allowed on this route"
            }
            Reason::TrailersNotAllowed => {
                "request trailer fields cannot be inspected and are not accepted"
            }
            Reason::UpgradeTunnel => "the connection was upgraded to an uninspected tunnel",
            Reason::TokenMissing => "a bearer token is required",
            Reason::TokenInvalid => "the bearer token is not valid",
            Reason::TokenExpired => "the bearer token has expired",
            Reason::TokenInQuery => {
                "tokens are not accepted in the query string; use the Authorization header"
            }
            Reason::TokenInBody => {
                "tokens are not accepted in the request body; use the Authorization header"
            }
            Reason::TokenMultiple => "the request carries more than one token",
            Reason::IntrospectionUnavailable => {
                "the token issuer's introspection endpoint is unavailable, so the token cannot be checked"
            }
            Reason::JwksUnavailable => {
                "the token issuer's keys are unavailable, so the token cannot be checked"
            }
            Reason::InsufficientScope => "the token does not grant access to this request",
            Reason::CompartmentCheckUnavailable => {
                "this request is allowed only if the resource belongs to the token's patient, which the gateway cannot check yet; use a patient compartment search instead"
            }
            Reason::ResponseTooLarge => {
                "the upstream's answer is larger than the gateway can check, so it is withheld"
            }
            Reason::UnsupportedResponseFormat => {
                "the gateway checks this answer in JSON only; ask for application/fhir+json"
            }
            Reason::UndecodableResponse => {
                "the upstream's answer does not match its content-encoding, so it is withheld"
            }
            Reason::ResponseLeakBlocked => {
                "the upstream's error response was withheld by the gateway"
            }
            Reason::SessionIdleTimeout => {
                "the session was idle too long and has ended; sign in again"
            }
            Reason::SessionExpired => "the session has reached its time limit; sign in again",
            Reason::BreakGlassJustificationRequired => {
                "break-glass access needs a justification header of the configured minimum length"
            }
            Reason::BreakGlassJustificationPhi => {
                "the break-glass justification must not contain protected health information"
            }
            Reason::BreakGlassNotEligible => "the token's roles are not eligible for break-glass access",
            Reason::BreakGlassPatientRequired => {
                "break-glass access is granted per patient; the request must name one patient"
            }
            Reason::PrincipalSuspended => {
                "access is suspended after unusual activity; contact your security team"
            }
            Reason::AnomalyDetectionUnavailable => {
                "access monitoring is unavailable, so the gateway refuses this request"
            }
        }
    }
}

/// A finding's rule and the mode it ends up with on a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    /// Rule id.
    pub rule: String,
    /// Mode after route mode and overrides.
    pub mode: Mode,
    /// Where it was found (never the value).
    pub location: String,
}

/// Resolves each finding's effective mode on a route: a route override replaces the rule's own
/// mode, then the route's mode caps it (a monitor route never blocks). `off` findings are
/// dropped.
pub fn effective_matches<'a>(
    findings: impl IntoIterator<Item = (&'a str, Mode, &'a str)>,
    route_mode: Mode,
    overrides: &std::collections::BTreeMap<String, Mode>,
) -> Vec<Match> {
    let mut out: Vec<Match> = findings
        .into_iter()
        .filter_map(|(rule, rule_mode, location)| {
            let mode = overrides
                .get(rule)
                .copied()
                .unwrap_or(rule_mode)
                .within(route_mode);
            (mode != Mode::Off).then(|| Match {
                rule: rule.to_string(),
                mode,
                location: location.to_string(),
            })
        })
        .collect();
    out.sort_by(|a, b| (&a.rule, &a.location).cmp(&(&b.rule, &b.location)));
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn weaker_mode_wins() {
        assert_eq!(Mode::Enforce.within(Mode::Monitor), Mode::Monitor);
        assert_eq!(Mode::Monitor.within(Mode::Enforce), Mode::Monitor);
        assert_eq!(Mode::Off.within(Mode::Enforce), Mode::Off);
        assert_eq!(Mode::Enforce.within(Mode::Enforce), Mode::Enforce);
    }

    #[test]
    fn overrides_replace_rule_mode_and_route_caps_it() {
        let mut o = BTreeMap::new();
        o.insert("us-npi".to_string(), Mode::Off);
        o.insert("email".to_string(), Mode::Enforce);
        let f = vec![
            ("us-npi", Mode::Enforce, "body:/npi"),
            ("email", Mode::Monitor, "body:/telecom/0/value"),
            ("us-ssn", Mode::Enforce, "body:/ssn"),
        ];
        let m = effective_matches(f.clone(), Mode::Enforce, &o);
        assert_eq!(m.len(), 2);
        assert!(m.iter().all(|m| m.mode == Mode::Enforce));
        let m = effective_matches(f, Mode::Monitor, &o);
        assert!(m.iter().all(|m| m.mode == Mode::Monitor));
    }

    #[test]
    fn every_reason_has_a_client_error_or_gateway_status() {
        for r in [
            Reason::PhiDetected,
            Reason::BodyTooLarge,
            Reason::UnsupportedContentEncoding,
            Reason::UpstreamTimeout,
        ] {
            assert!(r.status() >= 400 && !r.message().is_empty());
        }
        for (r, status, name) in [
            (Reason::ClientTimeout, 408, "client_timeout"),
            (Reason::UriTooLong, 414, "uri_too_long"),
            (Reason::HeadersTooLarge, 431, "headers_too_large"),
            (
                Reason::UnsupportedTransferEncoding,
                501,
                "unsupported_transfer_encoding",
            ),
            (Reason::UpgradeNotAllowed, 403, "upgrade_not_allowed"),
            (Reason::TrailersNotAllowed, 400, "trailers_not_allowed"),
        ] {
            assert_eq!((r.status(), r.as_str()), (status, name));
            assert!(!r.message().is_empty());
        }
    }
}

#[cfg(test)]
mod yaml_tests {
    use super::Mode;

    #[test]
    fn unquoted_off_is_the_off_mode_not_false() {
        #[derive(Debug, serde::Deserialize)]
        struct M {
            mode: Mode,
        }
        let m: M =
            crate::engine::source::parse(std::path::Path::new("x.yaml"), "mode: off\n").unwrap();
        assert_eq!(m.mode, Mode::Off);
        let e = crate::engine::source::parse::<M>(std::path::Path::new("x.yaml"), "mode: block\n")
            .unwrap_err();
        assert_eq!(e.field, "mode", "{e}");
    }
}
