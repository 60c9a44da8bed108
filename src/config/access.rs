//! The validated `access:` section (token issuers, identity headers, the verified-token cache)
//! and each route's `access:` (whether a bearer token is required, enforce or monitor). The
//! verifier itself (`crate::access::identity`) consumes these settings; keeping them here lets
//! `check` validate a configuration without fetching a key.
//!
//! Durations are integer `_seconds` / `_ms` fields like everywhere else in gateway.yaml.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::break_glass::{validate_break_glass, BreakGlassSettings};
use super::raw::{RawAccess, RawIntrospection, RawIssuer, RawRouteAccess};
use super::validate::{bounded, check_header_name, readable_file, Located};
use crate::engine::source::{SourceError, Spanned};
use crate::engine::Mode;

/// Default `max_lifetime_seconds`: SMART App Launch "access tokens SHOULD have a valid lifetime
/// no greater than one hour" ("short-lived tokens are mandatory").
pub const DEFAULT_MAX_LIFETIME_SECONDS: u64 = 3600;
/// Default `clock_skew_seconds` (Envoy's and jsonwebtoken's default).
pub const DEFAULT_CLOCK_SKEW_SECONDS: u64 = 60;
/// Default `refresh_seconds`: how often a key set is fetched again.
pub const DEFAULT_REFRESH_SECONDS: u64 = 300;
/// Default `max_staleness_seconds`: how long the last good key set is served while every
/// refresh fails.
pub const DEFAULT_MAX_STALENESS_SECONDS: u64 = 86_400;
/// Default `fetch_timeout_ms` for one JWKS fetch (connect, TLS, answer).
pub const DEFAULT_FETCH_TIMEOUT_MS: u64 = 5_000;
/// Default `refetch_cooldown_seconds`: at most one fetch triggered by an unknown `kid` per
/// issuer in this window, so fabricated key ids cannot drive outbound fetches.
pub const DEFAULT_REFETCH_COOLDOWN_SECONDS: u64 = 10;
/// Default `token_cache_entries`.
pub const DEFAULT_TOKEN_CACHE_ENTRIES: u64 = 10_000;

/// Default `response_hold_bytes`: the largest upstream answer held back (in memory, per
/// request) for the compartment check of a patient-bound read by id. A single FHIR resource
/// is kilobytes; 4 MiB leaves room for a history Bundle or an embedded attachment.
pub const DEFAULT_RESPONSE_HOLD_BYTES: u64 = 4 * 1024 * 1024;
/// Bounds of `response_hold_bytes` (1 KiB … 64 MiB): every held response costs this much
/// memory at most while it is checked.
const RESPONSE_HOLD_BYTES_MIN: u64 = 1024;
const RESPONSE_HOLD_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// Headers `claims_to_headers` may not set: framing, routing and the gateway's own.
pub(super) const RESERVED_HEADERS: &[&str] = &[
    "authorization",
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "upgrade",
    "trailer",
    "proxy-connection",
    "x-request-id",
    "x-forwarded-for",
    "x-forwarded-proto",
    "cookie",
];

/// A JWS signature algorithm an issuer may use. `none` and the HMAC family are not here: a
/// gateway verifying with published keys must never accept a shared-secret algorithm (the
/// RS256 → HS256 key-confusion attack uses the public key as the HMAC secret).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (RSA keys of 2048 bits or more).
    Rs256,
    /// RSASSA-PSS with SHA-256 (RSA keys of 2048 bits or more).
    Ps256,
    /// ECDSA on P-256 with SHA-256.
    Es256,
    /// Ed25519.
    EdDsa,
}

impl Algorithm {
    /// The JWS `alg` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Rs256 => "RS256",
            Algorithm::Ps256 => "PS256",
            Algorithm::Es256 => "ES256",
            Algorithm::EdDsa => "EdDSA",
        }
    }

    /// The algorithm named exactly `alg` (JWS names are case-sensitive).
    pub fn from_jws(alg: &str) -> Option<Self> {
        match alg {
            "RS256" => Some(Algorithm::Rs256),
            "PS256" => Some(Algorithm::Ps256),
            "ES256" => Some(Algorithm::Es256),
            "EdDSA" => Some(Algorithm::EdDsa),
            _ => None,
        }
    }
}

/// Where an issuer's signing keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JwksSource {
    /// A JWKS file, read at start and again every `refresh`.
    File(PathBuf),
    /// A JWKS URL, always `https://`, fetched over TLS 1.3 without following redirects.
    Url {
        /// The URL.
        url: String,
        /// CA bundle to trust instead of the system roots.
        ca_file: Option<PathBuf>,
    },
    /// No keys: the issuer's tokens are opaque, and each one is asked about at its RFC 7662
    /// introspection endpoint (always `https://`, TLS 1.3, no redirects), then cached until
    /// its `exp`.
    Introspection(Introspection),
}

/// Where and as whom opaque tokens are introspected (RFC 7662).
#[derive(Clone, PartialEq, Eq)]
pub struct Introspection {
    /// The endpoint, `https://`.
    pub url: String,
    /// The gateway's client id at the authorization server (HTTP Basic, RFC 7662 §2.1).
    pub client_id: String,
    /// The file holding its client secret, read at start (never in gateway.yaml itself).
    pub client_secret_file: PathBuf,
    /// CA bundle to trust instead of the system roots.
    pub ca_file: Option<PathBuf>,
}

// Hand-written so a `{:?}` of the configuration shows where the secret is, never more.
impl std::fmt::Debug for Introspection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Introspection")
            .field("url", &self.url)
            .field("client_id", &self.client_id)
            .field("client_secret_file", &self.client_secret_file)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// Which claim names the user in the audit record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UserClaim {
    /// `sub` (the default).
    Sub,
    /// `fhirUser` (SMART), falling back to `sub` when a token has none.
    FhirUser,
}

impl UserClaim {
    /// The claim name.
    pub fn as_str(self) -> &'static str {
        match self {
            UserClaim::Sub => "sub",
            UserClaim::FhirUser => "fhirUser",
        }
    }
}

/// One trusted token issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issuer {
    /// Short name: the `issuer` label of the JWKS metrics and the audit record's issuer.
    pub name: String,
    /// The exact `iss` value its tokens carry.
    pub issuer: String,
    /// Accepted `aud` values; a token must name at least one.
    pub audiences: Vec<String>,
    /// Accepted algorithms; a token's `alg` must be one, and its key must be of that type.
    pub algorithms: Vec<Algorithm>,
    /// Where the keys come from.
    pub jwks: JwksSource,
    /// How often the keys are fetched (or read) again.
    pub refresh: Duration,
    /// The last good key set is served this long after its fetch while refreshes fail; past
    /// it tokens of this issuer get 503 `jwks_unavailable`.
    pub max_staleness: Duration,
    /// Longest one fetch may take.
    pub fetch_timeout: Duration,
    /// Shortest time between two fetches triggered by an unknown `kid`.
    pub refetch_cooldown: Duration,
    /// Longest accepted `exp - iat`; `None` (`max_lifetime_seconds: 0`) turns the check off.
    /// With a limit, a token without `iat` is refused.
    pub max_lifetime: Option<Duration>,
    /// Tolerance for `exp`, `nbf` and `iat`.
    pub clock_skew: Duration,
    /// Which claim becomes the audit record's `user_id`.
    pub user_claim: UserClaim,
}

/// The validated top-level `access:` section.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AccessSettings {
    /// Trusted issuers (names and `iss` values unique).
    pub issuers: Vec<Issuer>,
    /// (lowercase header name, claim name): set on the upstream request from a verified token;
    /// inbound copies are always removed.
    pub claims_to_headers: Vec<(String, String)>,
    /// Most verified tokens kept in the cache.
    pub token_cache_entries: usize,
    /// The largest upstream response body (as received, before decoding) held back for the
    /// compartment check of a patient-bound read (`post_check: response`); over it the
    /// client gets 502 `response_too_large` and none of the body.
    pub response_hold_bytes: u64,
    /// Idle and absolute session limits (automatic logoff).
    pub sessions: super::SessionSettings,
    /// Break-glass (emergency access beyond the policy).
    pub break_glass: BreakGlassSettings,
}

/// Whether a route requires a bearer token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Require {
    /// No token processing at all (the default, so existing configurations keep working).
    #[default]
    Off,
    /// A request without a token passes anonymously; a token that is present must verify.
    Optional,
    /// Every request needs a valid token (401 otherwise).
    Token,
}

impl Require {
    /// The configuration value.
    pub fn as_str(self) -> &'static str {
        match self {
            Require::Off => "off",
            Require::Optional => "optional",
            Require::Token => "token",
        }
    }
}

/// A route's access settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteAccess {
    /// Whether a token is required.
    pub require: Require,
    /// `enforce` refuses; `monitor` forwards and records `would_deny`.
    pub mode: Mode,
    /// Whether the access policy (`access.policy`) decides on this route's requests: true
    /// when a policy is configured, the route checks tokens (`require: token | optional`)
    /// and the route does not opt out with `access.policy: false`.
    pub policy: bool,
    /// The FHIR base path the policy reads request URLs below (`/fhir`): `access.fhir_base`,
    /// else `path_prefix` without its trailing `/`.
    pub fhir_base: String,
}

impl Default for RouteAccess {
    fn default() -> Self {
        RouteAccess {
            require: Require::Off,
            mode: Mode::Enforce,
            policy: false,
            fhir_base: String::new(),
        }
    }
}

/// Validates the top-level `access:` section.
pub(super) fn validate_access(
    file: &Path,
    resolve: &dyn Fn(&Path) -> PathBuf,
    raw: &RawAccess,
) -> Result<AccessSettings, SourceError> {
    let err = |s: &dyn Located, field: &str, msg: String| s.error(file, field, msg);
    let mut issuers: Vec<Issuer> = Vec::new();
    for (i, r) in raw.issuers.iter().enumerate() {
        let issuer = validate_issuer(file, resolve, i, r)?;
        if issuers.iter().any(|o| o.name == issuer.name) {
            return Err(err(
                &r.name,
                &format!("access.issuers[{i}].name"),
                "duplicate issuer name".into(),
            ));
        }
        if issuers.iter().any(|o| o.issuer == issuer.issuer) {
            return Err(err(
                &r.issuer,
                &format!("access.issuers[{i}].issuer"),
                "another issuer has the same `issuer` value".into(),
            ));
        }
        let intro = |o: &Issuer| matches!(o.jwks, JwksSource::Introspection(_));
        if intro(&issuer) && issuers.iter().any(intro) {
            // An opaque token names no issuer: with two endpoints the gateway would have to
            // send every token to both, leaking it to the wrong one.
            return Err(err(
                r.introspection
                    .as_ref()
                    .map_or(&r.name as &dyn Located, |x| x as &dyn Located),
                &format!("access.issuers[{i}].introspection"),
                "only one issuer can introspect opaque tokens (an opaque token names no issuer)"
                    .into(),
            ));
        }
        issuers.push(issuer);
    }
    let mut claims_to_headers = Vec::new();
    for (header, claim) in &raw.claims_to_headers {
        let field = format!("access.claims_to_headers.{header}");
        check_header_name(header).map_err(|m| err(claim, &field, m))?;
        let lower = header.to_ascii_lowercase();
        if RESERVED_HEADERS.contains(&lower.as_str()) {
            return Err(err(
                claim,
                &field,
                format!("`{lower}` is a header the gateway or HTTP framing owns; pick another name such as `x-user-id`"),
            ));
        }
        if claim.value.is_empty() || claim.value.len() > 64 {
            return Err(err(
                claim,
                &field,
                "must name a claim (1-64 characters)".into(),
            ));
        }
        claims_to_headers.push((lower, claim.value.clone()));
    }
    let token_cache_entries = bounded(
        raw.token_cache_entries.as_ref(),
        DEFAULT_TOKEN_CACHE_ENTRIES,
        0,
        10_000_000,
    )
    .map_err(|(s, m)| err(s, "access.token_cache_entries", m))?
        as usize;
    let response_hold_bytes = bounded(
        raw.response_hold_bytes.as_ref(),
        DEFAULT_RESPONSE_HOLD_BYTES,
        RESPONSE_HOLD_BYTES_MIN,
        RESPONSE_HOLD_BYTES_MAX,
    )
    .map_err(|(s, m)| err(s, "access.response_hold_bytes", m))?;
    Ok(AccessSettings {
        issuers,
        claims_to_headers,
        token_cache_entries,
        response_hold_bytes,
        sessions: super::state::validate_sessions(file, raw.sessions.as_ref())?,
        break_glass: validate_break_glass(file, raw.break_glass.as_ref())?,
    })
}

fn validate_issuer(
    file: &Path,
    resolve: &dyn Fn(&Path) -> PathBuf,
    i: usize,
    r: &RawIssuer,
) -> Result<Issuer, SourceError> {
    let at = |f: &str| format!("access.issuers[{i}].{f}");
    let err = |s: &dyn Located, f: &str, msg: String| s.error(file, &at(f), msg);
    let secs = |v: &Option<Spanned<u64>>, default: u64, min: u64, max: u64, f: &str| {
        bounded(v.as_ref(), default, min, max).map_err(|(s, m)| err(s, f, m))
    };
    let name = &r.name.value;
    let name_ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !name_ok {
        // The name is a metric label.
        return Err(err(
            &r.name,
            "name",
            "must be 1-64 characters of letters, digits, `-` and `_`".into(),
        ));
    }
    if r.issuer.value.is_empty() || r.issuer.value.len() > 512 {
        return Err(err(
            &r.issuer,
            "issuer",
            "must be the exact `iss` value (1-512 characters)".into(),
        ));
    }
    if r.audiences.value.is_empty() {
        return Err(err(
            &r.audiences,
            "audiences",
            "at least one audience is required: a token for another service must not pass here"
                .into(),
        ));
    }
    for (j, a) in r.audiences.value.iter().enumerate() {
        if a.value.is_empty() {
            return Err(err(
                a,
                &format!("audiences[{j}]"),
                "must not be empty".into(),
            ));
        }
    }
    let mut algorithms = Vec::new();
    match (&r.algorithms, &r.introspection) {
        (Some(list), Some(_)) => {
            return Err(err(
                list,
                "algorithms",
                "an `introspection` issuer takes opaque tokens, which have no algorithm; remove `algorithms` (or use a second issuer for its JWTs)".into(),
            ))
        }
        (None, None) => {
            return Err(SourceError::at(
                file,
                &r.issuer,
                at("algorithms"),
                "pin at least one algorithm (RS256, PS256, ES256, EdDSA)",
            ))
        }
        (None, Some(_)) => {}
        (Some(list), None) => {
            if list.value.is_empty() {
                return Err(err(
                    list,
                    "algorithms",
                    "pin at least one algorithm (RS256, PS256, ES256, EdDSA)".into(),
                ));
            }
            for (j, a) in list.value.iter().enumerate() {
                let f = format!("algorithms[{j}]");
                let alg = match Algorithm::from_jws(&a.value) {
                    Some(alg) => alg,
                    None if a.value.eq_ignore_ascii_case("none") => {
                        return Err(err(a, &f, "`none` means unsigned tokens; never allowed".into()))
                    }
                    None if a.value.to_ascii_uppercase().starts_with("HS") => {
                        return Err(err(
                            a,
                            &f,
                            format!("`{}` is a shared-secret algorithm; with published keys it enables key confusion, so it is never allowed", a.value),
                        ))
                    }
                    None => {
                        return Err(err(
                            a,
                            &f,
                            format!("unsupported algorithm `{}` (expected RS256, PS256, ES256 or EdDSA)", a.value),
                        ))
                    }
                };
                if !algorithms.contains(&alg) {
                    algorithms.push(alg);
                }
            }
        }
    }
    let jwks = if let Some(ix) = &r.introspection {
        if let Some(f) = &r.jwks_file {
            return Err(err(
                f,
                "jwks_file",
                "an `introspection` issuer has no key set".into(),
            ));
        }
        if let Some(u) = &r.jwks_url {
            return Err(err(
                u,
                "jwks_url",
                "an `introspection` issuer has no key set".into(),
            ));
        }
        validate_introspection(file, resolve, &at, &ix.value)?
    } else {
        match (&r.jwks_file, &r.jwks_url) {
            (Some(_), Some(u)) => {
                return Err(err(
                    u,
                    "jwks_url",
                    "set either `jwks_file` or `jwks_url`, not both".into(),
                ))
            }
            (None, None) => {
                return Err(SourceError::at(
                    file,
                    &r.issuer,
                    at("jwks_file"),
                    "needs `jwks_file` or `jwks_url`",
                ))
            }
            (Some(f), None) => {
                if let Some(ca) = &r.jwks_ca_file {
                    return Err(err(
                        ca,
                        "jwks_ca_file",
                        "only applies with `jwks_url`".into(),
                    ));
                }
                JwksSource::File(resolve(&f.value))
            }
            (None, Some(u)) => {
                check_https_url(&u.value).map_err(|m| err(u, "jwks_url", m))?;
                let ca_file = match &r.jwks_ca_file {
                    Some(ca) => Some(readable_file(file, resolve, ca, &at("jwks_ca_file"))?),
                    None => None,
                };
                JwksSource::Url {
                    url: u.value.clone(),
                    ca_file,
                }
            }
        }
    };
    let refresh = secs(
        &r.refresh_seconds,
        DEFAULT_REFRESH_SECONDS,
        1,
        86_400,
        "refresh_seconds",
    )?;
    let max_staleness = secs(
        &r.max_staleness_seconds,
        DEFAULT_MAX_STALENESS_SECONDS.max(refresh),
        1,
        30 * 86_400,
        "max_staleness_seconds",
    )?;
    if max_staleness < refresh {
        if let Some(s) = &r.max_staleness_seconds {
            return Err(err(
                s,
                "max_staleness_seconds",
                "must not be below refresh_seconds".into(),
            ));
        }
    }
    let max_lifetime = secs(
        &r.max_lifetime_seconds,
        DEFAULT_MAX_LIFETIME_SECONDS,
        0,
        30 * 86_400,
        "max_lifetime_seconds",
    )?;
    let user_claim = match r.user_claim.as_ref().map(|c| c.value.as_str()) {
        None | Some("sub") => UserClaim::Sub,
        Some("fhirUser") => UserClaim::FhirUser,
        Some(other) => {
            return Err(SourceError::at(
                file,
                r.user_claim.as_ref().unwrap_or(&r.name),
                at("user_claim"),
                format!("unknown claim `{other}` (expected `sub` or `fhirUser`)"),
            ))
        }
    };
    Ok(Issuer {
        name: name.clone(),
        issuer: r.issuer.value.clone(),
        audiences: r.audiences.value.iter().map(|a| a.value.clone()).collect(),
        algorithms,
        jwks,
        refresh: Duration::from_secs(refresh),
        max_staleness: Duration::from_secs(max_staleness),
        fetch_timeout: Duration::from_millis(secs(
            &r.fetch_timeout_ms,
            DEFAULT_FETCH_TIMEOUT_MS,
            100,
            60_000,
            "fetch_timeout_ms",
        )?),
        refetch_cooldown: Duration::from_secs(secs(
            &r.refetch_cooldown_seconds,
            DEFAULT_REFETCH_COOLDOWN_SECONDS,
            0,
            3600,
            "refetch_cooldown_seconds",
        )?),
        max_lifetime: (max_lifetime > 0).then(|| Duration::from_secs(max_lifetime)),
        clock_skew: Duration::from_secs(secs(
            &r.clock_skew_seconds,
            DEFAULT_CLOCK_SKEW_SECONDS,
            0,
            600,
            "clock_skew_seconds",
        )?),
        user_claim,
    })
}

fn validate_introspection(
    file: &Path,
    resolve: &dyn Fn(&Path) -> PathBuf,
    at: &dyn Fn(&str) -> String,
    r: &RawIntrospection,
) -> Result<JwksSource, SourceError> {
    let err = |s: &dyn Located, f: &str, msg: String| s.error(file, &at(f), msg);
    check_https_url(&r.url.value).map_err(|m| err(&r.url, "introspection.url", m))?;
    let id = &r.client_id.value;
    if id.is_empty() || id.len() > 256 || id.contains(':') || id.chars().any(char::is_control) {
        return Err(err(
            &r.client_id,
            "introspection.client_id",
            "must be 1-256 characters, without `:` (it is sent in HTTP Basic)".into(),
        ));
    }
    let readable = |p: &Spanned<PathBuf>, f: &str| readable_file(file, resolve, p, &at(f));
    Ok(JwksSource::Introspection(Introspection {
        url: r.url.value.clone(),
        client_id: id.clone(),
        client_secret_file: readable(&r.client_secret_file, "introspection.client_secret_file")?,
        ca_file: match &r.ca_file {
            Some(ca) => Some(readable(ca, "introspection.ca_file")?),
            None => None,
        },
    }))
}

/// An `https://host[:port]/…` URL: no other scheme (a key set fetched in clear could be
/// replaced on the way), a host, no user info.
fn check_https_url(url: &str) -> Result<(), String> {
    let uri: http::Uri = url.parse().map_err(|_| format!("`{url}` is not a URL"))?;
    if uri.scheme_str() != Some("https") {
        return Err(
            "must be an `https://` URL: keys fetched in clear could be replaced on the way".into(),
        );
    }
    match uri.authority() {
        Some(a) if !a.host().is_empty() && !a.as_str().contains('@') => Ok(()),
        _ => Err(format!("`{url}` has no host (or carries user info)")),
    }
}

/// The validated top-level `access.policy`: the policy directories in load order, resolved
/// against the configuration file's directory. Their contents are loaded (and every policy
/// error reported with its file, line and field) by the snapshot build, before anything binds.
pub(super) fn validate_policy_dirs(
    file: &Path,
    resolve: &dyn Fn(&Path) -> PathBuf,
    raw: Option<&RawAccess>,
) -> Result<Vec<PathBuf>, SourceError> {
    let Some(list) = raw.and_then(|a| a.policy.as_ref()) else {
        return Ok(Vec::new());
    };
    if list.value.is_empty() {
        // An empty list would read as "a policy is configured" to a reviewer and decide
        // nothing; absent is the way to say no policy.
        return Err(list.error(
            file,
            "access.policy",
            "lists no directory; name at least one (e.g. `[deploy/policy]`) or remove the key"
                .into(),
        ));
    }
    let mut dirs: Vec<PathBuf> = Vec::with_capacity(list.value.len());
    for (i, d) in list.value.iter().enumerate() {
        // Like `rules.dir`, a directory that cannot be read is reported by the loader (at the
        // same build step, before anything binds); validation stays free of file I/O.
        let dir = resolve(&d.value);
        if dirs.contains(&dir) {
            return Err(d.error(file, &format!("access.policy[{i}]"), "listed twice".into()));
        }
        dirs.push(dir);
    }
    Ok(dirs)
}

/// Validates one route's `access:` (over `defaults.access`); `issuers` says whether any issuer
/// is configured, which `require: token | optional` needs, and `policy` whether
/// `access.policy` is, which `access.policy: true` on a route needs. `path_prefix` is the
/// route's, the default FHIR base.
pub(super) fn validate_route_access(
    file: &Path,
    field: &str,
    raw: Option<&RawRouteAccess>,
    issuers: bool,
    policy: bool,
    path_prefix: &str,
) -> Result<RouteAccess, SourceError> {
    let Some(raw) = raw else {
        return Ok(RouteAccess::default());
    };
    let require = match raw.require.as_ref() {
        None => Require::Off,
        Some(r) => {
            let require = match r.value.as_str() {
                "off" => Require::Off,
                "optional" => Require::Optional,
                "token" => Require::Token,
                other => {
                    return Err(r.error(
                        file,
                        &format!("{field}.require"),
                        format!("unknown value `{other}` (expected `token`, `optional` or `off`)"),
                    ))
                }
            };
            if require != Require::Off && !issuers {
                return Err(r.error(
                    file,
                    &format!("{field}.require"),
                    "needs at least one issuer in `access.issuers`".into(),
                ));
            }
            require
        }
    };
    let mode = match raw.mode.as_ref() {
        None => Mode::Enforce,
        Some(m) if m.value == Mode::Off => {
            return Err(m.error(
                file,
                &format!("{field}.mode"),
                "is `enforce` or `monitor`; to switch token checks off use `require: off`".into(),
            ))
        }
        Some(m) => m.value,
    };
    let applies = match raw.policy.as_ref() {
        None => policy && require != Require::Off,
        Some(p) if !p.value => false,
        Some(p) if !policy => {
            return Err(p.error(
                file,
                &format!("{field}.policy"),
                "needs a policy in `access.policy` (top level)".into(),
            ))
        }
        Some(p) if require == Require::Off => {
            return Err(p.error(
                file,
                &format!("{field}.policy"),
                "the policy decides on verified claims; set `require: token` or `optional`".into(),
            ))
        }
        Some(_) => true,
    };
    let fhir_base = match raw.fhir_base.as_ref() {
        None => path_prefix.trim_end_matches('/').to_string(),
        Some(b) => {
            let ok = b.value.starts_with('/')
                && !b.value.contains("//")
                && b.value
                    .bytes()
                    .all(|c| c.is_ascii_graphic() && c != b'%' && c != b'?');
            if !ok {
                return Err(b.error(
                    file,
                    &format!("{field}.fhir_base"),
                    "must be a plain absolute path such as `/fhir/R4` (no `%`, `?` or `//`)".into(),
                ));
            }
            b.value.trim_end_matches('/').to_string()
        }
    };
    Ok(RouteAccess {
        require,
        mode,
        policy: applies,
        fhir_base,
    })
}
