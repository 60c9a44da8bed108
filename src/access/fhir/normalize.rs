//! One normalisation of a request target, before anything is classified or checked.

use super::{FhirError, Param, Params, MAX_PARAMS};

/// A request target after normalisation: decoded path segments below the base, and the query
/// parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalizedUrl {
    /// Path segments below the base, each decoded once.
    pub segments: Vec<String>,
    /// Query parameters in order.
    pub params: Params,
}

/// Normalises `target` (origin-form path and query) below `base` (e.g. `/fhir`; `""` or `/`
/// for the root). See the module documentation of [`crate::access::fhir`] for the rules.
pub fn normalize(target: &str, base: &str) -> Result<NormalizedUrl, FhirError> {
    if !target.starts_with('/') || target.contains('#') {
        return Err(FhirError::NotOriginForm);
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let mut raw: Vec<&str> = path[1..].split('/').collect();
    // `/fhir/` and `/fhir/Patient/` : one trailing slash is dropped.
    if raw.len() > 1 && raw.last() == Some(&"") {
        raw.pop();
    }
    if raw == [""] {
        raw.clear();
    }
    let mut segments = Vec::with_capacity(raw.len());
    for seg in raw {
        segments.push(decode_segment(seg)?);
    }
    let base_segs: Vec<&str> = base.split('/').filter(|s| !s.is_empty()).collect();
    if segments.len() < base_segs.len()
        || segments
            .iter()
            .zip(&base_segs)
            .any(|(s, b)| s.as_str() != *b)
    {
        return Err(FhirError::OutsideBase);
    }
    segments.drain(..base_segs.len());
    let params = match query {
        Some(q) => parse_query(q.as_bytes(), true)?,
        None => Params::default(),
    };
    Ok(NormalizedUrl { segments, params })
}

fn decode_segment(seg: &str) -> Result<String, FhirError> {
    if seg.is_empty() {
        return Err(FhirError::DotOrEmptySegment);
    }
    let decoded = percent_encoding::percent_decode_str(seg)
        .decode_utf8()
        .map_err(|_| FhirError::AmbiguousEncoding)?;
    if decoded == "." || decoded == ".." {
        return Err(FhirError::DotOrEmptySegment);
    }
    if decoded.is_empty()
        || decoded
            .chars()
            .any(|c| matches!(c, '/' | '\\' | '%' | ';') || c.is_control())
        || malformed_escape(seg)
    {
        return Err(FhirError::AmbiguousEncoding);
    }
    Ok(decoded.into_owned())
}

/// `%` not followed by two hex digits: `percent_decode` leaves it as is, an upstream may not.
fn malformed_escape(s: &str) -> bool {
    let b = s.as_bytes();
    b.iter().enumerate().any(|(i, &c)| {
        c == b'%'
            && !(b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    })
}

/// The form body of `POST …/_search` (`application/x-www-form-urlencoded`).
pub(super) fn form_params(body: Option<&[u8]>) -> Result<Params, FhirError> {
    match body {
        Some(b) if !b.is_empty() => parse_query(b, true),
        _ => Ok(Params::default()),
    }
}

fn decode_component(raw: &[u8], plus_is_space: bool) -> Result<String, FhirError> {
    let raw = std::str::from_utf8(raw).map_err(|_| FhirError::AmbiguousEncoding)?;
    if malformed_escape(raw) {
        return Err(FhirError::AmbiguousEncoding);
    }
    let spaced;
    let raw = if plus_is_space && raw.contains('+') {
        spaced = raw.replace('+', " ");
        spaced.as_str()
    } else {
        raw
    };
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| FhirError::AmbiguousEncoding)
}

fn parse_query(q: &[u8], plus_is_space: bool) -> Result<Params, FhirError> {
    let mut out = Vec::new();
    for pair in q.split(|&b| b == b'&') {
        if pair.is_empty() {
            continue;
        }
        if out.len() >= MAX_PARAMS {
            return Err(FhirError::TooMany);
        }
        let (k, v) = match pair.iter().position(|&b| b == b'=') {
            Some(at) => (&pair[..at], &pair[at + 1..]),
            None => (pair, &b""[..]),
        };
        let name = decode_component(k, plus_is_space)?;
        let name_ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
        if !name_ok {
            return Err(FhirError::AmbiguousEncoding);
        }
        // Servers decode the query and then split OR values on unescaped commas, so `%2C`
        // separates values here too; `\,` is a literal comma inside one value.
        let decoded = decode_component(v, plus_is_space)?;
        if decoded.chars().any(char::is_control) {
            return Err(FhirError::AmbiguousEncoding);
        }
        let values = split_unescaped_commas(&decoded);
        out.push(Param { name, values });
    }
    Ok(Params(out))
}

fn split_unescaped_commas(v: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                cur.push(c);
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            ',' => parts.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    parts.push(cur);
    parts
}
