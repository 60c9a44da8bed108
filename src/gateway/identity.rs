//! The identity checks the hooks call: the bearer token of a request on a route with
//! `access.require: token | optional` (before any upstream connection), a token hidden in a
//! form body (at the end of the held body), the identity headers set from verified claims,
//! and the access part of the audit record. The verification itself is
//! [`crate::access::identity`]; this file only moves values between pingora and it.

use std::sync::Arc;

use pingora::proxy::Session;

use crate::access::identity::{request, TokenError, VerifiedToken};
use crate::audit::{AccessInput, Redacted};
use crate::config::Require;
use crate::engine::Mode;
use crate::gateway::ctx::Ctx;
use crate::gateway::proxy::Gateway;
use crate::verdict::Reason;

/// What the access check decided for one request (the audit record's `access.decision`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AccessDecision {
    /// A token verified.
    Allow,
    /// No token on a `require: optional` route.
    Anonymous,
    /// Refused (enforce).
    Deny,
    /// Would have been refused; forwarded (monitor).
    WouldDeny,
}

impl AccessDecision {
    fn as_str(self) -> &'static str {
        match self {
            AccessDecision::Allow => "allow",
            AccessDecision::Anonymous => "anonymous",
            AccessDecision::Deny => "deny",
            AccessDecision::WouldDeny => "would_deny",
        }
    }
}

/// The access outcome kept in the [`Ctx`].
#[derive(Debug, Clone)]
pub(super) struct Access {
    pub(super) decision: AccessDecision,
    pub(super) error: Option<TokenError>,
    pub(super) token: Option<Arc<VerifiedToken>>,
}

/// The `WWW-Authenticate` value of a 401 (RFC 6750 §3). The realm is fixed: Envoy puts the
/// request URL there, and a FHIR search URL can carry PHI. A request without a token gets no
/// error code (§3.1).
pub(super) fn www_authenticate(reason: Reason) -> Option<&'static str> {
    match reason {
        Reason::TokenMissing => Some("Bearer realm=\"phi-gateway\""),
        Reason::TokenInvalid
        | Reason::TokenExpired
        | Reason::TokenInQuery
        | Reason::TokenInBody
        | Reason::TokenMultiple
        | Reason::SessionIdleTimeout
        | Reason::SessionExpired => Some("Bearer realm=\"phi-gateway\", error=\"invalid_token\""),
        _ => None,
    }
}

impl Gateway {
    /// Records a token fault by the route's access mode. Returns the reason when the request
    /// must be answered now (enforce).
    fn token_fault(&self, ctx: &mut Ctx, mode: Mode, e: TokenError) -> Option<Reason> {
        let reason = e.reason();
        // Monitor forwards every token fault, an unavailable key set included: it is the
        // mode for rolling token checks out, and must never stop traffic.
        let enforce = mode == Mode::Enforce;
        ctx.access = Some(Access {
            decision: if enforce {
                AccessDecision::Deny
            } else {
                AccessDecision::WouldDeny
            },
            error: Some(e),
            token: None,
        });
        if enforce {
            ctx.block(reason);
            Some(reason)
        } else {
            ctx.would_block(reason);
            None
        }
    }

    /// The bearer token check of a routed request. Returns the reason to refuse, if any.
    pub(super) async fn check_identity(&self, session: &Session, ctx: &mut Ctx) -> Option<Reason> {
        let (require, mode) = match ctx.route() {
            Some(r) if r.access.require != Require::Off => (r.access.require, r.access.mode),
            _ => return None,
        };
        let req = session.req_header();
        let found = request::bearer(
            req.headers
                .get_all(http::header::AUTHORIZATION)
                .iter()
                .map(|v| v.as_bytes()),
            req.uri.query(),
        );
        let token = match found {
            Err(e) => return self.token_fault(ctx, mode, e),
            Ok(None) if require == Require::Optional => {
                ctx.access = Some(Access {
                    decision: AccessDecision::Anonymous,
                    error: None,
                    token: None,
                });
                return None;
            }
            Ok(None) => return self.token_fault(ctx, mode, TokenError::Missing),
            Ok(Some(t)) => t,
        };
        let Some(verifier) = &self.identity else {
            // Configuration guarantees issuers for such a route; without a verifier no token
            // can be judged, which is the key set being unavailable.
            return self.token_fault(ctx, mode, TokenError::JwksUnavailable);
        };
        match verifier.verify(token).await {
            Ok(t) => {
                ctx.access = Some(Access {
                    decision: AccessDecision::Allow,
                    error: None,
                    token: Some(t),
                });
                self.check_session(ctx, mode, token).await
            }
            Err(e) => self.token_fault(ctx, mode, e),
        }
    }

    /// `Authorization` was left out of the head's PHI scan on a route that checks tokens. When
    /// no token verified and the request still goes on (monitor mode, or an optional route
    /// with a non-Bearer value), the header is scanned now like any other.
    pub(super) fn scan_unverified_authorization(
        &self,
        session: &Session,
        ctx: &mut Ctx,
    ) -> Option<Reason> {
        let verified = ctx.access.as_ref().is_some_and(|a| a.token.is_some());
        let mode = match ctx.route() {
            Some(r) if r.access.require != Require::Off && !verified => r.mode,
            _ => return None,
        };
        let mut strongest: Option<Mode> = None;
        for value in session
            .req_header()
            .headers
            .get_all(http::header::AUTHORIZATION)
        {
            let part = crate::engine::Part::Header {
                name: "authorization",
                value: value.as_bytes(),
            };
            if let Ok(Some(m)) = self.inspect(ctx, &part) {
                strongest = Some(strongest.map_or(m, |s| s.min(m)));
            }
        }
        match strongest.map(|m| m.within(mode)) {
            Some(Mode::Enforce) => {
                ctx.block(Reason::PhiDetected);
                Some(Reason::PhiDetected)
            }
            Some(Mode::Monitor) => {
                ctx.would_block(Reason::PhiDetected);
                None
            }
            _ => None,
        }
    }

    /// A form body carrying `access_token` on a route that checks tokens (RFC 6750 §2.2):
    /// refused, because the upstream could act on it instead of the verified header token.
    /// Only identity-coded bodies are looked at here.
    pub(super) fn check_body_token(
        &self,
        ctx: &mut Ctx,
        content_type: Option<&str>,
        content_encoding: Option<&str>,
    ) -> Option<Reason> {
        let mode = match ctx.route() {
            Some(r) if r.access.require != Require::Off => r.access.mode,
            _ => return None,
        };
        let form = content_type.is_some_and(|ct| {
            ct.split(';').next().is_some_and(|m| {
                m.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        });
        let plain = content_encoding.is_none_or(|ce| ce.trim().eq_ignore_ascii_case("identity"));
        if !(form && plain && request::form_has_token(&ctx.body)) {
            return None;
        }
        let e = if ctx.access.as_ref().is_some_and(|a| a.token.is_some()) {
            TokenError::Multiple
        } else {
            TokenError::InBody
        };
        self.token_fault(ctx, mode, e)
    }
}

/// Removes every inbound copy of the `claims_to_headers` headers (on every route: a client
/// must never be able to set them), then sets them from the verified token, if any.
pub(super) fn identity_headers(
    ctx: &Ctx,
    req: &mut pingora::http::RequestHeader,
) -> pingora::Result<()> {
    let mapping = &ctx.snapshot.config.access.claims_to_headers;
    for (header, _) in mapping {
        req.remove_header(header.as_str());
    }
    let Some(token) = ctx.access.as_ref().and_then(|a| a.token.as_ref()) else {
        return Ok(());
    };
    for (header, claim) in mapping {
        if let Some(v) = token.header_value(claim) {
            req.insert_header(header.clone(), v)?;
        }
    }
    Ok(())
}

/// The access part of the audit record, when the route checks tokens.
pub(super) fn access_input(ctx: &Ctx) -> Option<AccessInput> {
    let a = ctx.access.as_ref()?;
    let t = a.token.as_deref();
    let redact = |v: Option<&str>| v.map(|s| Redacted::new(s.to_string()));
    Some(AccessInput {
        decision: a.decision.as_str(),
        error: a.error.map(TokenError::kind),
        issuer: t.map(|t| t.issuer_name.clone()),
        user: t.and_then(|t| redact(t.user())),
        scopes: t
            .map(|t| {
                t.scopes()
                    .into_iter()
                    .map(|s| Redacted::new(s.to_string()))
                    .collect()
            })
            .unwrap_or_default(),
        client_id: t.and_then(|t| redact(t.client_id())),
        token_id: t.and_then(|t| redact(t.str_claim("jti"))),
        session_id: t.and_then(|t| redact(t.str_claim("sid"))),
        session: ctx.session.map(|s| s.as_str()),
    })
}
