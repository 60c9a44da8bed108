//! Identity: `Authorization: Bearer <JWT>` verified at the gateway.
//!
//! - `token`: a strict JWS compact parser (no embedded keys, no `crit`, bounded);
//! - `keys`: JWKS parsing and signature verification with ring, the key type bound to the
//!   algorithm;
//! - `claims`: `exp`/`nbf`/`iat`/lifetime/`iss`/`aud` checks and the [`VerifiedToken`];
//! - `cache`: the bounded verified-token cache (a hash and a lookup per request);
//! - `fetch`: the key-set refresher (file or HTTPS, TLS 1.3 only, no redirects, background
//!   refresh, single-flight refetch with a cooldown on an unknown `kid`, stale-if-error up
//!   to `max_staleness`) and its metrics;
//! - `request`: where the token is in a request, and whether there is exactly one.
//!
//! The algorithm is pinned per issuer in gateway.yaml, never taken from the token (RFC 8725
//! §3.1); the issuer is chosen by the token's `iss`, and only that issuer's keys are tried.
//! [`Verifier::verify`] is what the gateway calls per request; everything before the
//! unknown-`kid` refetch is synchronous and pure.

mod cache;
mod claims;
mod fetch;
mod introspect;
mod keys;
pub mod request;
pub mod token;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;

pub use cache::{token_hash, TokenCache};
pub use claims::VerifiedToken;
pub use fetch::IdentityError;
pub use keys::{parse_jwks, Jwk, JwksError, KeySet};

use crate::config::{AccessSettings, Algorithm, Issuer, JwksSource};
use crate::verdict::Reason;

/// Why a request's token was not accepted. [`TokenError::kind`] is logged and audited;
/// [`TokenError::reason`] is what the client sees. Neither holds anything from the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// No bearer token on a route that requires one.
    #[error("no bearer token")]
    Missing,
    /// `access_token` in the query string.
    #[error("token in the query string")]
    InQuery,
    /// `access_token` in a form body.
    #[error("token in the request body")]
    InBody,
    /// More than one token.
    #[error("more than one token")]
    Multiple,
    /// Not a well-formed compact JWS (or a malformed `Authorization` value).
    #[error("malformed token")]
    Malformed,
    /// Longer than `token::MAX_TOKEN_BYTES`.
    #[error("token too long")]
    TooLong,
    /// The header carries or points to a key (`jwk`, `jku`, `x5u`, `x5c`).
    #[error("token header carries a key")]
    EmbeddedKey,
    /// The header uses `crit`, `b64`, `zip`, `enc` or `cty`.
    #[error("unsupported token header")]
    UnsupportedHeader,
    /// `alg` is not one the issuer is pinned to (`none`, HS256, …).
    #[error("algorithm not allowed")]
    AlgorithmNotAllowed,
    /// No configured issuer has this `iss`.
    #[error("unknown issuer")]
    UnknownIssuer,
    /// The `kid` is in none of the issuer's keys, even after a refetch.
    #[error("unknown key id")]
    UnknownKid,
    /// No key of the issuer can verify this algorithm.
    #[error("no key for this algorithm")]
    NoMatchingKey,
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// `typ` names another kind of token.
    #[error("wrong token type")]
    WrongType,
    /// No `exp`.
    #[error("no exp")]
    MissingExp,
    /// No `iat` while a maximum lifetime is configured.
    #[error("no iat")]
    MissingIat,
    /// A claim has the wrong JSON type (string times, …).
    #[error("claim of the wrong type")]
    BadClaimType,
    /// Past `exp` (plus skew).
    #[error("expired")]
    Expired,
    /// Before `nbf` (minus skew).
    #[error("not yet valid")]
    NotYetValid,
    /// `iat` in the future (beyond skew).
    #[error("issued in the future")]
    IssuedInFuture,
    /// `exp - iat` over the maximum lifetime.
    #[error("lifetime over the maximum")]
    LifetimeTooLong,
    /// `iss` is not the issuer's.
    #[error("wrong issuer")]
    WrongIssuer,
    /// `aud` names none of the issuer's audiences.
    #[error("wrong audience")]
    WrongAudience,
    /// The issuer's key set is older than `max_staleness` (every refresh failed).
    #[error("key set unavailable")]
    JwksUnavailable,
    /// The introspection endpoint says the opaque token is not active (RFC 7662 §2.2).
    #[error("token not active")]
    Inactive,
    /// The introspection endpoint did not answer in time with 200 and a JSON object.
    #[error("introspection unavailable")]
    IntrospectionUnavailable,
}

impl TokenError {
    /// Stable snake_case name, for logs and the audit record.
    pub fn kind(self) -> &'static str {
        match self {
            TokenError::Missing => "missing",
            TokenError::InQuery => "in_query",
            TokenError::InBody => "in_body",
            TokenError::Multiple => "multiple",
            TokenError::Malformed => "malformed",
            TokenError::TooLong => "too_long",
            TokenError::EmbeddedKey => "embedded_key",
            TokenError::UnsupportedHeader => "unsupported_header",
            TokenError::AlgorithmNotAllowed => "algorithm_not_allowed",
            TokenError::UnknownIssuer => "unknown_issuer",
            TokenError::UnknownKid => "unknown_kid",
            TokenError::NoMatchingKey => "no_matching_key",
            TokenError::BadSignature => "bad_signature",
            TokenError::WrongType => "wrong_type",
            TokenError::MissingExp => "missing_exp",
            TokenError::MissingIat => "missing_iat",
            TokenError::BadClaimType => "bad_claim_type",
            TokenError::Expired => "expired",
            TokenError::NotYetValid => "not_yet_valid",
            TokenError::IssuedInFuture => "issued_in_future",
            TokenError::LifetimeTooLong => "lifetime_too_long",
            TokenError::WrongIssuer => "wrong_issuer",
            TokenError::WrongAudience => "wrong_audience",
            TokenError::JwksUnavailable => "jwks_unavailable",
            TokenError::Inactive => "inactive",
            TokenError::IntrospectionUnavailable => "introspection_unavailable",
        }
    }

    /// The reason the client gets: a few coarse ones, so an attacker learns little about
    /// which check failed (the audit record has the exact kind).
    pub fn reason(self) -> Reason {
        match self {
            TokenError::Missing => Reason::TokenMissing,
            TokenError::InQuery => Reason::TokenInQuery,
            TokenError::InBody => Reason::TokenInBody,
            TokenError::Multiple => Reason::TokenMultiple,
            TokenError::Expired => Reason::TokenExpired,
            TokenError::JwksUnavailable => Reason::JwksUnavailable,
            TokenError::IntrospectionUnavailable => Reason::IntrospectionUnavailable,
            _ => Reason::TokenInvalid,
        }
    }
}

/// One issuer's keys, as the refresher installed them.
struct IssuerKeys {
    config: Issuer,
    keys: ArcSwap<KeySet>,
    /// Unix seconds of the last successful fetch; 0 = never.
    last_success: AtomicU64,
    /// For an introspection issuer: its HTTPS client and secret, set at start.
    introspector: OnceLock<introspect::Introspector>,
}

/// The process-wide verifier: every issuer's current keys and the token cache. Started once
/// ([`Verifier::start`]), before the listener accepts traffic.
pub struct Verifier {
    issuers: Vec<IssuerKeys>,
    cache: TokenCache,
    refetch: OnceLock<tokio::sync::mpsc::Sender<fetch::Refetch>>,
    /// Set by [`Verifier::start`] (tests and benches run without).
    metrics: OnceLock<crate::telemetry::Metrics>,
}

/// A verification that needs the issuer's keys fetched again first.
enum Miss {
    Error(TokenError),
    UnknownKid(usize),
}

impl From<TokenError> for Miss {
    fn from(e: TokenError) -> Self {
        Miss::Error(e)
    }
}

/// Now, in Unix seconds.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Verifier {
    /// A verifier with no keys yet (tests and benches install them with
    /// [`Verifier::install`]; [`Verifier::start`] fetches them).
    pub fn new(settings: &AccessSettings) -> Self {
        Verifier {
            issuers: settings
                .issuers
                .iter()
                .map(|c| IssuerKeys {
                    config: c.clone(),
                    keys: ArcSwap::from_pointee(KeySet::default()),
                    last_success: AtomicU64::new(0),
                    introspector: OnceLock::new(),
                })
                .collect(),
            cache: TokenCache::new(settings.token_cache_entries),
            refetch: OnceLock::new(),
            metrics: OnceLock::new(),
        }
    }

    /// Builds the verifier and fetches every issuer's keys, failing with the issuer's name
    /// if a first fetch fails; then keeps them fresh in the background.
    pub fn start(
        settings: &AccessSettings,
        metrics: crate::telemetry::Metrics,
    ) -> Result<Arc<Self>, IdentityError> {
        let v = Arc::new(Verifier::new(settings));
        let _ = v.metrics.set(metrics.clone());
        fetch::spawn(v.clone(), metrics)?;
        Ok(v)
    }

    /// Installs a key set for issuer `i` (fetched at `now`), dropping cached tokens whose key
    /// left the set.
    pub fn install(&self, i: usize, set: KeySet, now: u64) {
        let Some(iss) = self.issuers.get(i) else {
            return;
        };
        self.cache.retain_keys(i, &|t| set.has_thumb(t));
        iss.keys.store(Arc::new(set));
        iss.last_success.store(now, Ordering::SeqCst);
    }

    /// The configured issuers, in order.
    pub fn issuers(&self) -> impl Iterator<Item = &Issuer> {
        self.issuers.iter().map(|i| &i.config)
    }

    /// Tokens in the cache.
    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    /// Whether issuer `i` has a key set younger than its `max_staleness`.
    fn fresh(&self, i: usize, now: u64) -> bool {
        self.issuers.get(i).is_some_and(|iss| {
            // Opaque tokens have no key set to go stale; each was judged by the endpoint.
            if matches!(iss.config.jwks, JwksSource::Introspection(_)) {
                return true;
            }
            let at = iss.last_success.load(Ordering::SeqCst);
            at != 0 && now.saturating_sub(at) <= iss.config.max_staleness.as_secs()
        })
    }

    /// Verifies without fetching: the cache, then parse, issuer, algorithm, key, signature,
    /// claims. Public for the bench and the fuzz target; the gateway calls [`Self::verify`].
    pub fn verify_cached_or_now(
        &self,
        token: &str,
        now: u64,
    ) -> Result<Arc<VerifiedToken>, TokenError> {
        self.try_verify(token, now).map_err(|m| match m {
            Miss::Error(e) => e,
            Miss::UnknownKid(_) => TokenError::UnknownKid,
        })
    }

    fn try_verify(&self, token: &str, now: u64) -> Result<Arc<VerifiedToken>, Miss> {
        if token.len() > token::MAX_TOKEN_BYTES {
            return Err(TokenError::TooLong.into());
        }
        let hash = token_hash(token);
        if let Some(t) = self.cache.get(&hash, now) {
            if !self.fresh(t.issuer, now) {
                return Err(TokenError::JwksUnavailable.into());
            }
            return Ok(t);
        }
        let parsed = token::parse(token)?;
        let alg = Algorithm::from_jws(&parsed.alg).ok_or(TokenError::AlgorithmNotAllowed)?;
        let iss = match parsed.claims.get("iss") {
            Some(serde_json::Value::String(s)) => s.as_str(),
            Some(_) => return Err(TokenError::BadClaimType.into()),
            None => return Err(TokenError::UnknownIssuer.into()),
        };
        let (i, issuer) = self
            .issuers
            .iter()
            .enumerate()
            .find(|(_, k)| k.config.issuer == iss)
            .ok_or(TokenError::UnknownIssuer)?;
        if !issuer.config.algorithms.contains(&alg) {
            return Err(TokenError::AlgorithmNotAllowed.into());
        }
        if !self.fresh(i, now) {
            return Err(TokenError::JwksUnavailable.into());
        }
        let set = issuer.keys.load();
        let kid = parsed.kid.as_deref();
        if kid.is_some_and(|k| !set.has_kid(k)) {
            return Err(Miss::UnknownKid(i));
        }
        let mut tried = false;
        let mut key = None;
        for k in set.candidates(kid, alg) {
            tried = true;
            if k.verify(alg, parsed.signing_input, &parsed.signature) {
                key = Some(k.thumb);
                break;
            }
        }
        let key = match (tried, key) {
            (false, _) => return Err(TokenError::NoMatchingKey.into()),
            (true, None) => return Err(TokenError::BadSignature.into()),
            (true, Some(k)) => k,
        };
        let exp = claims::check(&parsed.claims, parsed.typ.as_deref(), &issuer.config, now)?;
        let verified = Arc::new(VerifiedToken {
            issuer: i,
            issuer_name: issuer.config.name.clone(),
            exp,
            user_claim: issuer.config.user_claim,
            claims: parsed.claims,
            key,
        });
        let until = exp.saturating_add(issuer.config.clock_skew.as_secs());
        self.cache.insert(hash, verified.clone(), until, now);
        Ok(verified)
    }

    /// Verifies a bearer token. An unknown `kid` asks the refresher for the issuer's keys
    /// once (single-flight, rate-limited by `refetch_cooldown_seconds`) and tries again.
    pub async fn verify(&self, token: &str) -> Result<Arc<VerifiedToken>, TokenError> {
        match self.try_verify(token, now_unix()) {
            Ok(t) => Ok(t),
            // Not a JWS: an opaque token, for the introspection issuer if there is one.
            Err(Miss::Error(TokenError::Malformed)) => match self.introspection_issuer() {
                Some(i) => self.introspect(i, token).await,
                None => Err(TokenError::Malformed),
            },
            Err(Miss::Error(e)) => Err(e),
            Err(Miss::UnknownKid(i)) => {
                // Whether this request's refetch ran or found the cooldown (because a
                // concurrent one just fetched), the set may hold the kid now: look again.
                self.refetch(i).await;
                self.verify_cached_or_now(token, now_unix())
            }
        }
    }

    /// Asks the refresher to fetch issuer `i` again; true when it fetched a new set. Never
    /// waits longer than the issuer's fetch timeout plus a second, and never queues behind a
    /// full channel.
    async fn refetch(&self, i: usize) -> bool {
        let (Some(tx), Some(iss)) = (self.refetch.get(), self.issuers.get(i)) else {
            return false;
        };
        let (done, wait) = tokio::sync::oneshot::channel();
        if tx.try_send(fetch::Refetch { issuer: i, done }).is_err() {
            return false;
        }
        let bound = iss.config.fetch_timeout + Duration::from_secs(1);
        matches!(tokio::time::timeout(bound, wait).await, Ok(Ok(true)))
    }
}

#[cfg(test)]
mod tests;
