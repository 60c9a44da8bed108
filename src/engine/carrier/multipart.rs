//! `multipart/*` bodies: parts split on the raw boundary, part headers, transfer encodings
//! (`base64`, `quoted-printable`), nested payloads, preamble and epilogue.

use std::borrow::Cow;

use super::content_type::{ct_param, media_type};
use super::jose::scan_value;
use super::payload::{scan_payload, Base};
use crate::engine::scan::{FieldCtx, Loc, Scanner, Segment};
use crate::engine::InspectError;

/// Scans a `multipart/*` body part by part: field names as context, `base64` and
/// `quoted-printable` transfer encodings undone, nested payloads (JSON, HL7, nested multipart)
/// parsed by their own content type, and anything outside the first and last boundary
/// (preamble, epilogue — a classic smuggling place) scanned as text. Returns false when the
/// boundary never occurs, so the caller scans the body as text.
pub(super) fn scan_multipart(
    sc: &mut Scanner<'_>,
    bytes: &[u8],
    boundary: &str,
    chain: &[&'static str],
    base: Base<'_>,
    layers: usize,
) -> bool {
    let delim = format!("--{boundary}");
    let finder = memchr::memmem::Finder::new(delim.as_bytes());
    let Some(first) = find_with(&finder, bytes, 0) else {
        return false;
    };
    if layers >= sc.limits.max_decode_layers {
        sc.fail(InspectError::TooManyLayers);
        return true;
    }
    let mut chain = chain.to_vec();
    chain.push("multipart");
    let root = base.root().to_string();
    let prefix = format!("{root}multipart:");
    let outside = |sc: &mut Scanner<'_>, data: &[u8], chain: &[&'static str]| {
        let text = String::from_utf8_lossy(data);
        if !text.trim().is_empty() {
            sc.segment(&Segment {
                text: &text,
                loc: Loc::Offset(base.text_base),
                ctx: FieldCtx::default(),
                chain,
                sel: None,
            });
        }
    };
    outside(sc, bytes.get(..first).unwrap_or(&[]), &chain);
    let mut pos = first + delim.len();
    let mut index = 0usize;
    loop {
        // After a delimiter: `--` ends the body, else a line break starts a part.
        if bytes.get(pos..pos + 2) == Some(b"--") {
            outside(sc, bytes.get(pos + 2..).unwrap_or(&[]), &chain);
            break;
        }
        let next = find_with(&finder, bytes, pos);
        let end = next.unwrap_or(bytes.len());
        let raw = bytes.get(pos..end).unwrap_or(&[]);
        scan_part(sc, raw, index, &prefix, &chain, layers);
        index += 1;
        match next {
            Some(n) => pos = n + delim.len(),
            None => break,
        }
    }
    true
}

/// One multipart part: headers, a blank line, the content.
fn scan_part(
    sc: &mut Scanner<'_>,
    raw: &[u8],
    index: usize,
    prefix: &str,
    chain: &[&'static str],
    layers: usize,
) {
    let raw = raw
        .strip_prefix(b"\r\n")
        .or_else(|| raw.strip_prefix(b"\n"))
        .unwrap_or(raw);
    let (head, body) = match find_bytes(raw, b"\r\n\r\n", 0) {
        Some(p) => (raw.get(..p).unwrap_or(&[]), raw.get(p + 4..).unwrap_or(&[])),
        None => match find_bytes(raw, b"\n\n", 0) {
            Some(p) => (raw.get(..p).unwrap_or(&[]), raw.get(p + 2..).unwrap_or(&[])),
            None => (&[][..], raw),
        },
    };
    let body = body
        .strip_suffix(b"\r\n")
        .or_else(|| body.strip_suffix(b"\n"))
        .unwrap_or(body);
    let head = String::from_utf8_lossy(head);
    let (mut name, mut filename, mut ctype, mut cte) = (None, None, None, None);
    for line in head.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let k = k.trim().to_ascii_lowercase();
        let v = v.trim();
        match k.as_str() {
            "content-disposition" => {
                name = mime_param(v, "name");
                filename = mime_param(v, "filename");
            }
            "content-type" => ctype = Some(v.to_string()),
            "content-transfer-encoding" => cte = Some(v.to_ascii_lowercase()),
            _ => {}
        }
    }
    let part_name = name.clone().unwrap_or_else(|| format!("part{index}"));
    let loc = Loc::Named {
        prefix,
        name: &part_name,
    };
    // Names and file names are client-chosen text too.
    for label in [name.as_deref(), filename.as_deref()].into_iter().flatten() {
        sc.segment(&Segment {
            text: label,
            loc,
            ctx: FieldCtx::default(),
            chain,
            sel: None,
        });
    }
    let mut chain = chain.to_vec();
    let decoded: Cow<'_, [u8]> = match cte.as_deref() {
        Some("base64") => {
            use base64::Engine as _;
            let compact: Vec<u8> = body
                .iter()
                .copied()
                .filter(|b| !b.is_ascii_whitespace())
                .collect();
            match base64::engine::general_purpose::STANDARD.decode(&compact) {
                Ok(d) => {
                    chain.push("base64");
                    Cow::Owned(d)
                }
                Err(_) => Cow::Borrowed(body),
            }
        }
        Some("quoted-printable") => {
            chain.push("quoted-printable");
            Cow::Owned(quoted_printable(body))
        }
        _ => Cow::Borrowed(body),
    };
    let (media, charset) = media_type(ctype.as_deref());
    let plain_field = filename.is_none()
        && ctype
            .as_deref()
            .is_none_or(|c| c.to_ascii_lowercase().starts_with("text/plain"));
    if plain_field {
        let text = String::from_utf8_lossy(&decoded);
        let extra = [part_name.as_str()];
        let ctx = FieldCtx {
            path: &[],
            extra: &extra,
        };
        scan_value(sc, &text, loc, ctx, &chain, layers);
        return;
    }
    let inner = format!("{prefix}{part_name}:");
    let inner_form = format!("{inner}form:");
    let boundary = ct_param(ctype.as_deref(), "boundary");
    let b = Base {
        json_prefix: &inner,
        text_base: &inner,
        form_prefix: &inner_form,
        boundary: boundary.as_deref(),
    };
    scan_payload(
        sc,
        &decoded,
        media,
        charset.as_deref(),
        &chain,
        b,
        layers + 1,
    );
}

/// Decodes quoted-printable (RFC 2045): `=XX` escapes and `=` soft line breaks.
pub(crate) fn quoted_printable(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    let hexv = |b: u8| char::from(b).to_digit(16);
    while let Some(&c) = body.get(i) {
        if c == b'=' {
            match (body.get(i + 1).copied(), body.get(i + 2).copied()) {
                (Some(b'\r'), Some(b'\n')) => {
                    i += 3;
                    continue;
                }
                (Some(b'\n'), _) => {
                    i += 2;
                    continue;
                }
                (Some(a), Some(b)) => {
                    if let (Some(x), Some(y)) = (hexv(a), hexv(b)) {
                        out.push(u8::try_from(x * 16 + y).unwrap_or(b'?'));
                        i += 3;
                        continue;
                    }
                }
                _ => {}
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

/// One header parameter (`name="x"`) of a MIME header value.
fn mime_param(value: &str, name: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        let k = k.trim().trim_end_matches('*');
        k.eq_ignore_ascii_case(name).then(|| {
            let v = v.trim();
            // RFC 5987 `filename*=UTF-8''x`: keep what follows the language tag.
            let v = v.rsplit("''").next().unwrap_or(v);
            v.trim_matches('"').to_string()
        })
    })
}

/// Finds `needle` in `hay` from `from`: linear in `hay` (two-way / SIMD search), where a
/// `windows().position()` scan cost `hay × needle` and a client picks the boundary length.
fn find_bytes(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    find_with(&memchr::memmem::Finder::new(needle), hay, from)
}

/// [`find_bytes`] with a searcher built once (the part loop searches for the same delimiter).
fn find_with(finder: &memchr::memmem::Finder<'_>, hay: &[u8], from: usize) -> Option<usize> {
    if finder.needle().is_empty() {
        return None;
    }
    finder.find(hay.get(from..)?).map(|p| p + from)
}
