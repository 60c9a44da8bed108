//! Choosing a route for a request: host and path prefix matching over the path as an
//! upstream would read it.

use super::{GatewayConfig, Route};

impl GatewayConfig {
    /// The first route matching `host` (any case, port ignored) and `path`.
    ///
    /// `path` is the raw request path; matching uses [`routing_path`], so an encoded or
    /// dotted spelling (`/public/%70atients`, `/public/./patients`) cannot slip past a
    /// more specific route into a broader one while the upstream normalises it back.
    pub fn route_for(&self, host: Option<&str>, path: &str) -> Option<(usize, &Route)> {
        let path = routing_path(path);
        let path = path.as_ref();
        let host = host.map(strip_port);
        self.routes.iter().enumerate().find(|(_, r)| {
            let host_ok = match (&r.host, host) {
                (None, _) => true,
                (Some(want), Some(got)) => want.eq_ignore_ascii_case(got),
                (Some(_), None) => false,
            };
            host_ok && path.starts_with(&r.path_prefix)
        })
    }
}

/// The path as an upstream would most likely interpret it: percent-decoded, dot segments
/// removed (RFC 3986 §5.2.4), repeated slashes merged. Used only to choose a route; the
/// request is forwarded with its original path.
pub fn routing_path(raw: &str) -> std::borrow::Cow<'_, str> {
    let suspicious =
        raw.contains('%') || raw.contains("//") || raw.contains("/.") || raw.contains('\\');
    if !suspicious {
        return std::borrow::Cow::Borrowed(raw);
    }
    let decoded = percent_encoding::percent_decode_str(raw).decode_utf8_lossy();
    let decoded = decoded.replace('\\', "/");
    let mut out: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut path = String::with_capacity(decoded.len() + 1);
    for seg in &out {
        path.push('/');
        path.push_str(seg);
    }
    // Keep a trailing slash (`/fhir/` must still match the prefix `/fhir/`).
    if decoded.ends_with('/')
        || decoded.ends_with("/.")
        || decoded.ends_with("/..")
        || path.is_empty()
    {
        path.push('/');
    }
    std::borrow::Cow::Owned(path)
}

pub(super) fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        // [::1]:8443
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}
