//! The request checks the hooks call: the head (TLS version, routing, framing, size limits,
//! audit headers, Content-Encoding, query and header inspection) and the complete body. Each
//! records its decision in the [`Ctx`]; the hooks turn it into bytes on the wire.

use std::time::Instant;

use pingora::proxy::Session;

use crate::engine::Mode;
use crate::engine::{InspectError, Part, ScanOptions};
use crate::gateway::ctx::Ctx;
use crate::gateway::proxy::Gateway;
use crate::verdict::Reason;

/// Why an audit header value is unacceptable, if it is.
pub(super) fn audit_header_problem<'a>(
    values: &mut impl Iterator<Item = &'a http::HeaderValue>,
    max_len: usize,
) -> Option<Reason> {
    let first = values.next();
    let Some(v) = first else {
        return Some(Reason::MissingAuditHeader);
    };
    if values.next().is_some() {
        // Two values: which one would the auditor trust? Refuse the ambiguity.
        return Some(Reason::MalformedAuditHeader);
    }
    let b = v.as_bytes();
    let token_ok = !b.is_empty()
        && b.len() <= max_len
        && b.iter().all(|&c| {
            c.is_ascii_alphanumeric()
                || matches!(
                    c,
                    b'-' | b'_' | b'.' | b':' | b'/' | b'@' | b'+' | b'=' | b'~' | b'#'
                )
        });
    (!token_ok).then_some(Reason::MalformedAuditHeader)
}

/// The stronger of two optional modes (`enforce` beats `monitor`).
fn stronger(a: Option<Mode>, b: Option<Mode>) -> Option<Mode> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// Whether the request asks to switch protocols: an `Upgrade` header (HTTP/1.1; pingora
/// relays a 101 and then copies bytes both ways), or `Connection: upgrade` without one.
pub(super) fn is_upgrade(req: &pingora::http::RequestHeader) -> bool {
    req.headers.contains_key(http::header::UPGRADE)
        || req
            .headers
            .get_all(http::header::CONNECTION)
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"upgrade"))
}

/// Whether the raw HTTP/1 head carried a `Content-Length` line. pingora drops Content-Length
/// when Transfer-Encoding is present (RFC 9112 §6.3) before any hook runs, so only the raw
/// bytes still show that the client sent both.
fn raw_head_has_content_length(session: &Session) -> bool {
    let Some(h1) = session.as_http1() else {
        return false;
    };
    let raw = h1.get_headers_raw_bytes();
    // httparse accepts bare LF line ends too, so split on LF; the request line never matches.
    raw.split(|&b| b == b'\n').any(|line| {
        line.get(..15)
            .is_some_and(|name| name.eq_ignore_ascii_case(b"content-length:"))
    })
}

impl Gateway {
    /// Scans one request part and folds the findings into `ctx`, timing the engine.
    pub(super) fn inspect(
        &self,
        ctx: &mut Ctx,
        part: &Part<'_>,
    ) -> Result<Option<Mode>, InspectError> {
        let start = Instant::now();
        // The route name scopes `route:` rules and exceptions.
        let options = ScanOptions::route(ctx.route().map(|r| r.name.as_str()));
        let result = ctx
            .snapshot
            .engine
            .scan_with(part, &ctx.snapshot.limits, &options);
        ctx.inspection += start.elapsed();
        ctx.inspected = true;
        Ok(ctx.absorb(result?))
    }

    /// Runs the header-time checks. Returns `Some(reason)` when the request must be refused now.
    pub(super) fn check_request_head(&self, session: &Session, ctx: &mut Ctx) -> Option<Reason> {
        // Defence in depth: the listener's crypto provider cannot negotiate anything but
        // TLS 1.3, but if that ever regressed this refuses the request anyway.
        let version = session
            .digest()
            .and_then(|d| d.ssl_digest.as_ref())
            .map(|d| d.version.to_string());
        if version.as_deref() != Some(crate::gateway::tls::TLS13) {
            ctx.block(Reason::TlsVersionNotAllowed);
            return Some(Reason::TlsVersionNotAllowed);
        }

        let req = session.req_header();
        let host = req.uri.host().or_else(|| {
            req.headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
        });
        let snapshot = ctx.snapshot.clone();
        let Some((idx, route)) = snapshot.config.route_for(host, req.uri.path()) else {
            ctx.block(Reason::NoRoute);
            return Some(Reason::NoRoute);
        };
        ctx.route = Some(idx);

        // Transfer codings other than `chunked` (`gzip, chunked`, `identity, chunked` on two
        // lines, ...): pingora de-chunks such a body but leaves the other coding on it, so the
        // engine would scan gzip bytes as text (a PHI bypass), and it rewrites the header to
        // plain `chunked` upstream, which then gets coded bytes it was not told about.
        let mut codings = req
            .headers
            .get_all(http::header::TRANSFER_ENCODING)
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .map(|t| t.trim_ascii())
            .filter(|t| !t.is_empty());
        let first = codings.next();
        if first.is_some()
            && (!first.is_some_and(|t| t.eq_ignore_ascii_case(b"chunked"))
                || codings.next().is_some())
        {
            ctx.block(Reason::UnsupportedTransferEncoding);
            return Some(Reason::UnsupportedTransferEncoding);
        }
        // RFC 9112 §6.3: a request with both Transfer-Encoding and Content-Length "ought to be
        // handled as an error" — it is the CL.TE / TE.CL smuggling shape. pingora would frame
        // it by Transfer-Encoding and close afterwards; we refuse it outright, so the upstream
        // never sees a request whose length two parsers could disagree about.
        if req.headers.contains_key(http::header::TRANSFER_ENCODING)
            && raw_head_has_content_length(session)
        {
            ctx.block(Reason::BadRequest);
            return Some(Reason::BadRequest);
        }
        // Trailer fields come after the body, where pingora 0.9 does not hand them to any hook
        // (HTTP/1.1 trailers are parsed and discarded, HTTP/2 trailing HEADERS are never read),
        // so they cannot be inspected. A request that announces them is refused; undeclared
        // ones are dropped on the way, never forwarded (docs/hostile-input.md, "Trailers").
        if req.headers.contains_key(http::header::TRAILER) {
            ctx.block(Reason::TrailersNotAllowed);
            return Some(Reason::TrailersNotAllowed);
        }
        // An upgrade turns the connection into a tunnel nothing can inspect: refused before
        // any upstream connection unless the route allows tunnels explicitly.
        if is_upgrade(req) {
            if !route.allow_upgrade {
                ctx.block(Reason::UpgradeNotAllowed);
                return Some(Reason::UpgradeNotAllowed);
            }
            ctx.tunnel = true;
        }
        // Size limits on the head, checked before the engine scans any of it. pingora alone
        // would accept a request line up to 64 KiB and headers up to about 1 MiB.
        let limits = &snapshot.config.limits;
        if req.raw_path().len() > limits.max_uri_bytes {
            ctx.block(Reason::UriTooLong);
            return Some(Reason::UriTooLong);
        }
        let header_bytes: usize = req
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum();
        if header_bytes > limits.max_header_bytes {
            ctx.block(Reason::HeadersTooLarge);
            return Some(Reason::HeadersTooLarge);
        }

        // Declared body size: refuse before connecting upstream. Monitor routes too: the cap
        // protects memory, it is not a policy choice.
        let declared = req
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > route.max_body_bytes) {
            ctx.block(Reason::BodyTooLarge);
            return Some(Reason::BodyTooLarge);
        }

        for name in &route.audit_headers {
            let mut values = req.headers.get_all(name.as_str()).iter();
            if let Some(reason) = audit_header_problem(&mut values, route.audit_header_max_length) {
                if ctx.violation(reason, route.mode) {
                    return Some(reason);
                }
            }
        }

        if route.inspect.body {
            if let Some(ce) = req.headers.get(http::header::CONTENT_ENCODING) {
                let ok = ce
                    .to_str()
                    .map(crate::engine::content_encoding_supported)
                    .unwrap_or(false);
                if !ok {
                    ctx.skip_body = true;
                    if ctx.violation(Reason::UnsupportedContentEncoding, route.mode) {
                        return Some(Reason::UnsupportedContentEncoding);
                    }
                }
            }
        }

        let mut strongest: Option<Mode> = None;
        if route.inspect.query {
            if let Ok(m) = self.inspect(ctx, &Part::Path(req.uri.path())) {
                strongest = stronger(strongest, m);
            }
            if let Some(q) = req.uri.query() {
                match self.inspect(ctx, &Part::Query(q)) {
                    Ok(m) => strongest = stronger(strongest, m),
                    Err(_) => {
                        if ctx.violation(Reason::UndecodableBody, route.mode) {
                            return Some(Reason::UndecodableBody);
                        }
                    }
                }
            }
        }
        // On a route that verifies tokens, `Authorization` holds the bearer token: checked by
        // signature, not scanned as free text (the engine sees through JWS, and claims such as
        // an e-mail address would read as PHI). If it does not verify and the request goes on
        // anyway (monitor, or a non-Bearer value on an optional route), it is scanned then
        // (`identity::scan_unverified_authorization`).
        let token_header = route.access.require != crate::config::Require::Off;
        for (name, value) in req.headers.iter() {
            let name = name.as_str();
            if token_header && name == "authorization" {
                continue;
            }
            let wanted = route.audit_headers.iter().any(|a| a == name)
                || route.inspect.header_selected(name);
            if !wanted {
                continue;
            }
            if let Ok(m) = self.inspect(
                ctx,
                &Part::Header {
                    name,
                    value: value.as_bytes(),
                },
            ) {
                strongest = stronger(strongest, m);
            }
        }
        match strongest {
            Some(Mode::Enforce) => {
                ctx.block(Reason::PhiDetected);
                Some(Reason::PhiDetected)
            }
            Some(_) => {
                ctx.would_block(Reason::PhiDetected);
                None
            }
            None => None,
        }
    }

    /// Scans the complete body. Returns the reason to refuse, if any.
    pub(super) fn check_body(
        &self,
        ctx: &mut Ctx,
        content_type: Option<&str>,
        content_encoding: Option<&str>,
    ) -> Option<Reason> {
        let snapshot = ctx.snapshot.clone();
        let route = ctx.route.and_then(|i| snapshot.config.routes.get(i))?;
        let body = std::mem::take(&mut ctx.body);
        let result = self.inspect(
            ctx,
            &Part::Body {
                content_type,
                content_encoding,
                bytes: &body,
            },
        );
        ctx.body = body;
        let reason = match result {
            Ok(Some(Mode::Enforce)) => Reason::PhiDetected,
            Ok(Some(_)) => {
                ctx.would_block(Reason::PhiDetected);
                return None;
            }
            Ok(None) => return None,
            Err(InspectError::UnsupportedEncoding { .. } | InspectError::TooManyLayers) => {
                Reason::UnsupportedContentEncoding
            }
            Err(InspectError::DecodedTooLarge { .. } | InspectError::ExpansionRatio { .. }) => {
                Reason::DecodedBodyTooLarge
            }
            Err(InspectError::Corrupt { .. }) => Reason::UndecodableBody,
        };
        // Decoding limits protect memory and the upstream, so they hold in monitor mode too;
        // everything else follows the route's mode.
        if reason == Reason::DecodedBodyTooLarge || route.mode == Mode::Enforce {
            ctx.block(reason);
            Some(reason)
        } else {
            ctx.would_block(reason);
            None
        }
    }
}
