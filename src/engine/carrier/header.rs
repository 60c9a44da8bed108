//! Headers: names and values, with credentials (`Bearer <token>`) unwrapped.

use super::jose::scan_value;
use crate::engine::scan::{FieldCtx, Loc, Scanner, Segment};

/// Scans one header. Credentials (`Bearer <token>`) are unwrapped so a JWE counts as
/// encrypted and a JWS payload is read.
pub(crate) fn scan_header(sc: &mut Scanner<'_>, name: &str, value: &[u8]) {
    let text = String::from_utf8_lossy(value);
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
