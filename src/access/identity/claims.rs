//! Claim checks after the signature verified (RFC 7519 §4.1, RFC 8725 §3.8-3.10), and the
//! verified token the rest of the gateway reads.
//!
//! Time claims must be JSON integers (NumericDate without fractions): a string, a float, a
//! negative number or a boolean is refused, never read as "absent" (jsonwebtoken
//! CVE-2026-25537 skipped `exp` when it was a string). `exp` is required; `nbf` and `iat` are
//! checked with the issuer's clock skew; `iat` in the future is refused; `exp - iat` must not
//! exceed `max_lifetime`, and with a lifetime limit a token without `iat` is refused (its
//! lifetime cannot be known). `iss` must equal the issuer exactly; `aud` (a string or a
//! non-empty array of strings) must name one of the issuer's audiences. The identity claims
//! the gateway reads (`sub`, `client_id`, `azp`, `jti`, `sid`, `fhirUser`, `scope`) must have
//! their JSON types when present.

use serde_json::{Map, Value};

use super::TokenError;
use crate::config::{Issuer, UserClaim};

/// Most `aud` entries accepted.
const MAX_AUDIENCES: usize = 64;

/// A NumericDate claim: absent, or a non-negative JSON integer.
fn numeric(claims: &Map<String, Value>, name: &str) -> Result<Option<u64>, TokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or(TokenError::BadClaimType),
    }
}

fn string_claim(claims: &Map<String, Value>, name: &str) -> Result<(), TokenError> {
    match claims.get(name) {
        None | Some(Value::String(_)) => Ok(()),
        Some(_) => Err(TokenError::BadClaimType),
    }
}

/// Checks the claims of a token whose signature verified for `issuer`, at `now` (Unix
/// seconds). Returns `exp`.
pub fn check(
    claims: &Map<String, Value>,
    typ: Option<&str>,
    issuer: &Issuer,
    now: u64,
) -> Result<u64, TokenError> {
    // RFC 9068 access tokens say `at+jwt`; many issuers still write `JWT`. Anything else
    // (`dpop+jwt`, `logout+jwt`, `secevent+jwt`) is another kind of token.
    if let Some(t) = typ {
        let t = t.to_ascii_lowercase();
        if !matches!(t.as_str(), "jwt" | "at+jwt" | "application/at+jwt") {
            return Err(TokenError::WrongType);
        }
    }
    let skew = issuer.clock_skew.as_secs();
    let exp = numeric(claims, "exp")?.ok_or(TokenError::MissingExp)?;
    let nbf = numeric(claims, "nbf")?;
    let iat = numeric(claims, "iat")?;
    match claims.get("iss") {
        Some(Value::String(s)) if *s == issuer.issuer => {}
        Some(Value::String(_)) | None => return Err(TokenError::WrongIssuer),
        Some(_) => return Err(TokenError::BadClaimType),
    }
    let audiences: Vec<&str> = match claims.get("aud") {
        None => return Err(TokenError::WrongAudience),
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(list)) if !list.is_empty() && list.len() <= MAX_AUDIENCES => {
            let mut out = Vec::with_capacity(list.len());
            for a in list {
                out.push(a.as_str().ok_or(TokenError::BadClaimType)?);
            }
            out
        }
        Some(_) => return Err(TokenError::BadClaimType),
    };
    if !audiences
        .iter()
        .any(|a| issuer.audiences.iter().any(|want| want == a))
    {
        return Err(TokenError::WrongAudience);
    }
    for name in ["sub", "client_id", "azp", "jti", "sid", "fhirUser", "scope"] {
        string_claim(claims, name)?;
    }
    match claims.get("scp") {
        None | Some(Value::String(_)) => {}
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => {}
        Some(_) => return Err(TokenError::BadClaimType),
    }
    if now > exp.saturating_add(skew) {
        return Err(TokenError::Expired);
    }
    if nbf.is_some_and(|nbf| nbf > now.saturating_add(skew)) {
        return Err(TokenError::NotYetValid);
    }
    if iat.is_some_and(|iat| iat > now.saturating_add(skew)) {
        return Err(TokenError::IssuedInFuture);
    }
    if let Some(max) = issuer.max_lifetime {
        let iat = iat.ok_or(TokenError::MissingIat)?;
        if exp < iat || exp - iat > max.as_secs() {
            return Err(TokenError::LifetimeTooLong);
        }
    }
    Ok(exp)
}

/// A token whose signature and claims verified.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    /// Index of its issuer in `access.issuers`.
    pub issuer: usize,
    /// The issuer's configured name.
    pub issuer_name: String,
    /// `exp`, Unix seconds.
    pub exp: u64,
    /// Which claim names the user.
    pub user_claim: UserClaim,
    /// Every claim, as sent (the types of the ones above already checked).
    pub claims: Map<String, Value>,
    /// Thumbprint of the key that verified it.
    pub(super) key: [u8; 32],
}

impl VerifiedToken {
    /// A string claim, if present.
    pub fn str_claim(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    /// The user for the audit record: the configured claim, falling back to `sub`.
    pub fn user(&self) -> Option<&str> {
        self.str_claim(self.user_claim.as_str())
            .or_else(|| self.str_claim("sub"))
    }

    /// The granted scopes: `scope` (space-separated, RFC 8693 / SMART) or `scp` (a string or
    /// an array, Entra ID and Okta).
    pub fn scopes(&self) -> Vec<&str> {
        match (self.claims.get("scope"), self.claims.get("scp")) {
            (Some(Value::String(s)), _) | (None, Some(Value::String(s))) => {
                s.split_ascii_whitespace().collect()
            }
            (None, Some(Value::Array(a))) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        }
    }

    /// The client: `client_id` (RFC 9068) or `azp` (OIDC).
    pub fn client_id(&self) -> Option<&str> {
        self.str_claim("client_id")
            .or_else(|| self.str_claim("azp"))
    }

    /// A claim as a header value: strings as they are, numbers and booleans in JSON form,
    /// arrays of strings joined by spaces; `None` for anything else or for a value a header
    /// cannot carry (control characters, over 4 KiB).
    pub fn header_value(&self, claim: &str) -> Option<String> {
        let v = match self.claims.get(claim)? {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Array(a) if a.iter().all(Value::is_string) => a
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" "),
            _ => return None,
        };
        let ok = v.len() <= 4096 && v.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b));
        ok.then_some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn issuer() -> Issuer {
        Issuer {
            name: "idp".into(),
            issuer: "https://idp.example".into(),
            audiences: vec!["ehr".into(), "fhir".into()],
            algorithms: vec![crate::config::Algorithm::Es256],
            jwks: crate::config::JwksSource::File("x".into()),
            refresh: Duration::from_secs(300),
            max_staleness: Duration::from_secs(3600),
            fetch_timeout: Duration::from_secs(5),
            refetch_cooldown: Duration::from_secs(10),
            max_lifetime: Some(Duration::from_secs(3600)),
            clock_skew: Duration::from_secs(60),
            user_claim: UserClaim::Sub,
        }
    }

    fn claims(extra: serde_json::Value) -> Map<String, Value> {
        let mut base = serde_json::json!({
            "iss": "https://idp.example", "aud": "ehr", "sub": "u1",
            "iat": 1000, "exp": 1600,
        });
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                base.as_object_mut().unwrap().remove(k);
            } else {
                base[k] = v.clone();
            }
        }
        base.as_object().unwrap().clone()
    }

    #[test]
    fn accepts_a_good_token_within_skew() {
        let i = issuer();
        assert_eq!(
            check(&claims(serde_json::json!({})), None, &i, 1200),
            Ok(1600)
        );
        // 59 s after exp: inside the 60 s skew.
        assert_eq!(
            check(&claims(serde_json::json!({})), Some("at+jwt"), &i, 1659),
            Ok(1600)
        );
        let aud = serde_json::json!({"aud": ["other", "fhir"]});
        assert!(check(&claims(aud), Some("JWT"), &i, 1200).is_ok());
    }

    #[test]
    fn refuses_each_claim_fault() {
        let i = issuer();
        use serde_json::json;
        let cases = [
            (json!({}), 1661, TokenError::Expired),
            (json!({"exp": null}), 1200, TokenError::MissingExp),
            (json!({"exp": "1600"}), 1200, TokenError::BadClaimType),
            (json!({"exp": 1600.5}), 1200, TokenError::BadClaimType),
            (json!({"exp": -1}), 1200, TokenError::BadClaimType),
            (json!({"nbf": "1000"}), 1200, TokenError::BadClaimType),
            (json!({"iat": true}), 1200, TokenError::BadClaimType),
            (json!({"nbf": 1300}), 1200, TokenError::NotYetValid),
            (
                json!({"iat": 1300, "exp": 1900}),
                1200,
                TokenError::IssuedInFuture,
            ),
            (json!({"iat": null}), 1200, TokenError::MissingIat),
            (
                json!({"iat": 1000, "exp": 4601}),
                1200,
                TokenError::LifetimeTooLong,
            ),
            (
                json!({"iat": 1700, "exp": 1600}),
                1650,
                TokenError::LifetimeTooLong,
            ),
            (
                json!({"iss": "https://idp.example/"}),
                1200,
                TokenError::WrongIssuer,
            ),
            (
                json!({"iss": ["https://idp.example"]}),
                1200,
                TokenError::BadClaimType,
            ),
            (json!({"aud": "billing"}), 1200, TokenError::WrongAudience),
            (json!({"aud": []}), 1200, TokenError::BadClaimType),
            (json!({"aud": [1]}), 1200, TokenError::BadClaimType),
            (json!({"aud": null}), 1200, TokenError::WrongAudience),
            (json!({"sub": 5}), 1200, TokenError::BadClaimType),
            (json!({"scope": ["a"]}), 1200, TokenError::BadClaimType),
        ];
        for (extra, now, want) in cases {
            assert_eq!(
                check(&claims(extra.clone()), None, &i, now),
                Err(want),
                "{extra}"
            );
        }
        assert_eq!(
            check(&claims(json!({})), Some("dpop+jwt"), &i, 1200),
            Err(TokenError::WrongType)
        );
        let mut no_limit = issuer();
        no_limit.max_lifetime = None;
        assert!(check(&claims(json!({"iat": null})), None, &no_limit, 1200).is_ok());
    }

    #[test]
    fn reads_scopes_users_and_header_values() {
        let t = |c: serde_json::Value, user_claim| VerifiedToken {
            issuer: 0,
            issuer_name: "idp".into(),
            exp: 0,
            user_claim,
            claims: c.as_object().unwrap().clone(),
            key: [0; 32],
        };
        let a = t(
            serde_json::json!({"sub":"u1","scope":"patient/*.rs  user/Observation.read","n":5,"l":["a","b"],"o":{},"bad":"a\nb"}),
            UserClaim::FhirUser,
        );
        assert_eq!(a.scopes(), ["patient/*.rs", "user/Observation.read"]);
        assert_eq!(a.user(), Some("u1"), "fhirUser falls back to sub");
        assert_eq!(a.header_value("n").as_deref(), Some("5"));
        assert_eq!(a.header_value("l").as_deref(), Some("a b"));
        assert_eq!(a.header_value("o"), None);
        assert_eq!(a.header_value("bad"), None);
        let b = t(
            serde_json::json!({"sub":"u1","fhirUser":"Practitioner/7","scp":["x","y"],"azp":"app"}),
            UserClaim::FhirUser,
        );
        assert_eq!(b.user(), Some("Practitioner/7"));
        assert_eq!(b.scopes(), ["x", "y"]);
        assert_eq!(b.client_id(), Some("app"));
    }
}
