//! Headers: names and values, with credentials (`Bearer <token>`) unwrapped.

use super::jose::scan_value;
use crate::engine::scan::{FieldCtx, Loc, Scanner, Segment};

/// Scans one header. Credentials (`Bearer <token>`) are unwrapped so a JWE counts as
/// encrypted and a JWS payload is read.
pub(crate) fn scan_header(sc: &mut Scanner<'_>, name: &str, value: &[u8]) {
    let text = String::from_utf8_lossy(value);
    if name == "cookie" {
        scan_cookie(sc, &text);
        return;
    }
    let extra = [name];
    let ctx = FieldCtx {
        path: &[],
        extra: &extra,
    };
    let loc = Loc::Named {
        prefix: "header:",
        name,
    };
    // Names are client-chosen too (`X-536-22-1234: 1`).
    sc.segment(&Segment {
        text: name,
        loc,
        ctx: FieldCtx::default(),
        chain: &[],
        sel: None,
    });
    let token = match text.trim().split_once(|c: char| c.is_ascii_whitespace()) {
        Some((scheme, token))
            if !scheme.is_empty()
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !token.trim().contains(|c: char| c.is_ascii_whitespace()) =>
        {
            token.trim()
        }
        _ => &text,
    };
    let encrypted = scan_value(sc, token, loc, ctx, &[], 0);
    if token.len() != text.len() && !encrypted {
        // The scheme word is context too (`Basic`, custom schemes with data after them).
        sc.segment(&Segment {
            text: &text,
            loc,
            ctx,
            chain: &[],
            sel: None,
        });
    }
}

/// Scans a `Cookie` header as its `name=value` pairs (RFC 6265 §4.2: separated by `;`): each
/// cookie name is scanned on its own and is context for its value (`ssn=536221234` fires through
/// the SSN rule's context), values are unquoted and percent-decoded, and findings are located
/// at `header:cookie:<name>`.
fn scan_cookie(sc: &mut Scanner<'_>, text: &str) {
    for pair in text.split(';') {
        let pair = pair.trim();
        if pair.is_empty() {
            continue;
        }
        let (cookie, raw) = pair.split_once('=').unwrap_or(("", pair));
        let cookie = cookie.trim();
        let raw = raw.trim();
        let raw = raw
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(raw);
        let loc = Loc::Named {
            prefix: "header:cookie:",
            name: cookie,
        };
        if !cookie.is_empty() {
            sc.segment(&Segment {
                text: cookie,
                loc,
                ctx: FieldCtx::default(),
                chain: &[],
                sel: None,
            });
        }
        let extra = ["cookie", cookie];
        let ctx = FieldCtx {
            path: &[],
            extra: &extra,
        };
        let decoded = percent_encoding::percent_decode_str(raw).decode_utf8_lossy();
        let chain: &[&'static str] = if decoded != raw { &["percent"] } else { &[] };
        scan_value(sc, &decoded, loc, ctx, chain, 0);
    }
}
