//! Opaque tokens: RFC 7662 introspection at the issuer's endpoint, for sites whose
//! authorization server does not issue JWTs.
//!
//! A bearer token that is not a JWS goes to the one issuer configured with `introspection:`.
//! The gateway POSTs it there (`token=…&token_type_hint=access_token`, HTTP Basic with its
//! client id and the secret read from a file at start) over the same TLS 1.3-only, no-redirect
//! client the key sets use, and accepts it only if the answer is 200 with a JSON object whose
//! `active` is `true` and whose claims pass the same checks as a JWT's (`exp` required, `nbf`,
//! `iat`, maximum lifetime, `iss` exact — filled in with the configured issuer when the
//! answer leaves it out, since the endpoint speaks for that issuer —, `aud` naming one of the
//! issuer's audiences). An active token is cached like a verified JWT, until its `exp`, so the
//! steady state is a hash and a lookup; an inactive one is not cached (it may be activated,
//! and a cache of refusals keyed by client-chosen strings would be a client-filled memory).
//!
//! Concurrent requests with the same token not yet cached share one introspection
//! (single-flight): a burst of a new session's first requests costs the endpoint one call,
//! not one per request. Its outcome, refusals included, is handed to every waiter and then
//! forgotten.
//!
//! Failures are typed: `inactive` (401 `token_invalid`) and `introspection_unavailable`
//! (503: the endpoint did not answer in time, or not with 200 and JSON; the gateway cannot
//! judge the token and fails closed). Nothing of the token or the answer is logged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};
use tokio::sync::OnceCell;

use super::{claims, now_unix, token_hash, TokenError, VerifiedToken, Verifier};
use crate::config::JwksSource;

/// The largest introspection answer read (a claims object; real ones are well under 4 KiB).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// One introspection in flight, shared by every request waiting for the same token.
type Flight = Arc<OnceCell<Result<Arc<VerifiedToken>, TokenError>>>;

/// An introspection issuer's client and credentials, set once at start.
pub(super) struct Introspector {
    pub(super) client: reqwest::Client,
    pub(super) secret: String,
    /// Introspections in flight, by token hash. An entry lives only while its call runs, so
    /// the map holds at most one entry per concurrent request.
    inflight: Mutex<HashMap<[u8; 32], Flight>>,
}

impl Introspector {
    /// Reads the client secret (first line, trimmed; an empty file is an error).
    pub(super) fn new(
        client: reqwest::Client,
        secret_file: &std::path::Path,
    ) -> Result<Self, String> {
        let text = std::fs::read_to_string(secret_file)
            .map_err(|e| format!("{}: {e}", secret_file.display()))?;
        let secret = text.lines().next().unwrap_or("").trim().to_string();
        if secret.is_empty() {
            return Err(format!(
                "{}: the client secret file is empty",
                secret_file.display()
            ));
        }
        Ok(Introspector {
            client,
            secret,
            inflight: Mutex::new(HashMap::new()),
        })
    }
}

impl Verifier {
    /// The index of the issuer that introspects opaque tokens, if one is configured (config
    /// validation allows at most one).
    pub(super) fn introspection_issuer(&self) -> Option<usize> {
        self.issuers
            .iter()
            .position(|i| matches!(i.config.jwks, JwksSource::Introspection(_)))
    }

    /// Asks issuer `i`'s endpoint about `token` and, if it is active and its claims pass,
    /// caches and returns it. Concurrent calls for one token share one request.
    pub(super) async fn introspect(
        &self,
        i: usize,
        token: &str,
    ) -> Result<Arc<VerifiedToken>, TokenError> {
        let Some(ix) = self.issuers.get(i).and_then(|s| s.introspector.get()) else {
            return Err(TokenError::IntrospectionUnavailable);
        };
        let hash = token_hash(token);
        let flight = match ix.inflight.lock() {
            Ok(mut map) => map.entry(hash).or_default().clone(),
            // A poisoned map only loses the sharing, never the check.
            Err(_) => Flight::default(),
        };
        let result = flight
            .get_or_init(|| self.introspect_once(i, token))
            .await
            .clone();
        if let Ok(mut map) = ix.inflight.lock() {
            // Only this flight's own entry: a later one for the same token may have replaced it.
            if map.get(&hash).is_some_and(|f| Arc::ptr_eq(f, &flight)) {
                map.remove(&hash);
            }
        }
        result
    }

    /// One introspection request and its judgement.
    async fn introspect_once(
        &self,
        i: usize,
        token: &str,
    ) -> Result<Arc<VerifiedToken>, TokenError> {
        let Some(issuer) = self.issuers.get(i) else {
            return Err(TokenError::UnknownIssuer);
        };
        let (JwksSource::Introspection(cfg), Some(ix)) =
            (&issuer.config.jwks, issuer.introspector.get())
        else {
            return Err(TokenError::IntrospectionUnavailable);
        };
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("token", token)
            .append_pair("token_type_hint", "access_token")
            .finish();
        let ask = async {
            let mut resp = ix
                .client
                .post(&cfg.url)
                .basic_auth(&cfg.client_id, Some(&ix.secret))
                .header(http::header::ACCEPT, "application/json")
                .header(
                    http::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(body)
                .send()
                .await
                .map_err(|e| format!("POST: {}", without_url(&e)))?;
            if resp.status() != reqwest::StatusCode::OK {
                return Err(format!("answered {}", resp.status().as_u16()));
            }
            let mut buf = Vec::new();
            while let Some(chunk) = resp
                .chunk()
                .await
                .map_err(|e| format!("reading the answer: {}", without_url(&e)))?
            {
                if buf.len() + chunk.len() > MAX_ANSWER_BYTES {
                    return Err(format!("answer over {MAX_ANSWER_BYTES} bytes"));
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(buf)
        };
        let count = |result: &str| {
            if let Some(m) = self.metrics.get() {
                m.introspection
                    .with_label_values(&[issuer.config.name.as_str(), result])
                    .inc();
            }
        };
        let bound = issuer.config.fetch_timeout;
        let answer = match tokio::time::timeout(bound, ask).await {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(e)) => {
                tracing::warn!(issuer = %issuer.config.name, error = %e, "token introspection failed");
                count("unavailable");
                return Err(TokenError::IntrospectionUnavailable);
            }
            Err(_) => {
                tracing::warn!(issuer = %issuer.config.name, timeout = ?bound, "token introspection did not answer in time");
                count("unavailable");
                return Err(TokenError::IntrospectionUnavailable);
            }
        };
        let now = now_unix();
        let claims = judge(&answer, &issuer.config).inspect_err(|e| {
            count(if *e == TokenError::Inactive {
                "inactive"
            } else {
                "unavailable"
            })
        })?;
        let exp =
            claims::check(&claims, None, &issuer.config, now).inspect_err(|_| count("refused"))?;
        count("active");
        let verified = Arc::new(VerifiedToken {
            issuer: i,
            issuer_name: issuer.config.name.clone(),
            exp,
            user_claim: issuer.config.user_claim,
            claims,
            // No key: key rotation never drops an introspected token from the cache.
            key: [0; 32],
        });
        let until = exp.saturating_add(issuer.config.clock_skew.as_secs());
        self.cache
            .insert(token_hash(token), verified.clone(), until, now);
        Ok(verified)
    }
}

/// The claims of an introspection answer: a JSON object with `active: true` (anything else is
/// [`TokenError::Inactive`]; an answer that is not a JSON object is the endpoint failing), with
/// `iss` filled in when absent. `active` itself is dropped: it is not a claim of the token.
pub(super) fn judge(
    answer: &[u8],
    issuer: &crate::config::Issuer,
) -> Result<Map<String, Value>, TokenError> {
    let Ok(Value::Object(mut claims)) = serde_json::from_slice::<Value>(answer) else {
        tracing::warn!(issuer = %issuer.name, "token introspection answered something that is not a JSON object");
        return Err(TokenError::IntrospectionUnavailable);
    };
    // RFC 7662 §2.2: `active` is a boolean; a string "true" is not one.
    if claims.remove("active") != Some(Value::Bool(true)) {
        return Err(TokenError::Inactive);
    }
    claims
        .entry("iss")
        .or_insert_with(|| Value::String(issuer.issuer.clone()));
    Ok(claims)
}

/// A reqwest error without the URL it names (the endpoint URL is configuration, not a
/// secret, but keeping log lines free of URLs is the rule everywhere else).
fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(u) = e.url() {
        s = s.replace(u.as_str(), "<endpoint>");
    }
    if e.is_timeout() {
        s.push_str(" (timeout)");
    }
    s
}
