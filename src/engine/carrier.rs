//! Carriers: turning a query string, a header or a decoded body into text segments.
//!
//! Regexes over raw bodies miss `\u0035`-escaped JSON, `+`-encoded form values and identifiers
//! inside signed tokens, and they cannot tell an SSN in `"ssn"` from one in `"orderId"`. So we
//! parse what we can (JSON, `application/x-www-form-urlencoded`, query strings, JOSE tokens),
//! scan decoded keys and values one by one with their field context, and fall back to plain
//! text for everything else. Anything that does not parse is scanned as text rather than
//! skipped: a parse error must never become a bypass.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use super::classify::{classify, Token};
use super::scan::{FieldCtx, Loc, PathElem, Scanner, Segment};
use super::InspectError;

/// A parsed JSON document that keeps duplicate keys (the first `"ssn"` must not hide behind a
/// second one, as it would in a map) and borrows unescaped strings from the input.
#[derive(Debug)]
enum Node<'a> {
    Null,
    Bool,
    Num(Num),
    Str(Cow<'a, str>),
    Arr(Vec<Node<'a>>),
    Obj(Vec<(Cow<'a, str>, Node<'a>)>),
}

#[derive(Debug, Clone, Copy)]
enum Num {
    U(u64),
    I(i64),
    F(f64),
}

impl fmt::Display for Num {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Num::U(n) => write!(f, "{n}"),
            Num::I(n) => write!(f, "{n}"),
            // `1.23456789e8` prints as `123456789`, which is what a reader of the number sees.
            Num::F(n) => write!(f, "{n}"),
        }
    }
}

/// A string that borrows from the input when it has no escapes.
struct CowStr<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for CowStr<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CowStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> Deserialize<'de> for Node<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Node<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Node::Null)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Node::Bool)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Node::Num(Num::U(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Node::Num(Num::I(v)))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Node::Num(Num::F(v)))
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Node::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Node::Str(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Node::Str(Cow::Owned(v)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Node::Arr(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut members = Vec::new();
                while let Some(CowStr(key)) = map.next_key()? {
                    members.push((key, map.next_value()?));
                }
                Ok(Node::Obj(members))
            }
        }
        d.deserialize_any(V)
    }
}

/// Parses a complete JSON document. serde_json refuses nesting beyond 128 levels with an
/// error (not a stack overflow); callers then scan the text instead.
fn parse_json(text: &str) -> Result<Node<'_>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let node = Node::deserialize(&mut de)?;
    de.end()?;
    Ok(node)
}

/// Every key and string value of a JSON document in document order (for the fuzz facade),
/// or `None` when `text` does not parse.
pub(crate) fn json_strings(text: &str) -> Option<Vec<String>> {
    fn collect(node: &Node<'_>, out: &mut Vec<String>) {
        match node {
            Node::Str(s) => out.push(s.to_string()),
            Node::Arr(items) => items.iter().for_each(|n| collect(n, out)),
            Node::Obj(members) => {
                for (k, v) in members {
                    out.push(k.to_string());
                    collect(v, out);
                }
            }
            Node::Null | Node::Bool | Node::Num(_) => {}
        }
    }
    let node = parse_json(text).ok()?;
    let mut out = Vec::new();
    collect(&node, &mut out);
    Some(out)
}

/// How a payload is to be interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Media {
    /// Declared JSON (`application/json`, `application/*+json`, `text/json`).
    Json,
    /// Declared `application/x-www-form-urlencoded`.
    Form,
    /// HL7 v2 ER7 (`x-application/hl7-v2+er7`, `application/hl7-v2`, `application/edi-hl7`).
    Hl7,
    /// `multipart/*` (the boundary travels in [`Base::boundary`]).
    Multipart,
    /// Anything else: JSON if it looks like and parses as JSON, else text.
    Sniff,
}

/// Parses a `Content-Type` into the media kind and the lowercase `charset` parameter.
pub(crate) fn media_type(content_type: Option<&str>) -> (Media, Option<String>) {
    let Some(ct) = content_type else {
        return (Media::Sniff, None);
    };
    let mut parts = ct.split(';');
    let essence = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let charset = parts.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| v.trim().trim_matches('"').to_ascii_lowercase())
    });
    let media = if essence == "application/json"
        || essence == "text/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
    {
        Media::Json
    } else if essence == "application/x-www-form-urlencoded" {
        Media::Form
    } else if matches!(
        essence.as_str(),
        "x-application/hl7-v2+er7" | "application/hl7-v2" | "application/edi-hl7" | "text/hl7"
    ) {
        Media::Hl7
    } else if essence.starts_with("multipart/") {
        Media::Multipart
    } else {
        Media::Sniff
    };
    (media, charset)
}

/// A `Content-Type` parameter (`boundary`), unquoted.
pub(crate) fn ct_param(content_type: Option<&str>, name: &str) -> Option<String> {
    content_type?.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

/// Decodes UTF-16 bodies (by BOM, declared charset, or the NUL-byte pattern RFC 4627 used to
/// sniff JSON) so that `5\03\06\0…` is not invisible to the ASCII patterns.
fn transcode_utf16(bytes: &[u8], charset: Option<&str>) -> Option<String> {
    let (le, body) = match bytes {
        [0xFF, 0xFE, rest @ ..] => (true, rest),
        [0xFE, 0xFF, rest @ ..] => (false, rest),
        _ => match charset {
            Some("utf-16le") => (true, bytes),
            Some("utf-16be") => (false, bytes),
            _ => match utf16_by_nuls(bytes) {
                Some(le) => (le, bytes),
                None if charset == Some("utf-16") => (false, bytes),
                None => return None,
            },
        },
    };
    let units = body.chunks_exact(2).map(|c| match c {
        [a, b] if le => u16::from_le_bytes([*a, *b]),
        [a, b] => u16::from_be_bytes([*a, *b]),
        _ => 0xFFFD,
    });
    Some(
        char::decode_utf16(units)
            .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
            .collect(),
    )
}

/// Whether the bytes themselves look like UTF-16 by their NUL pattern (ASCII text in UTF-16
/// has a zero in every other byte): `Some(true)` little-endian, `Some(false)` big-endian.
fn utf16_by_nuls(bytes: &[u8]) -> Option<bool> {
    let sample = bytes.get(..4096).unwrap_or(bytes);
    if sample.len() < 4 {
        return None;
    }
    let pairs = sample.len() / 2;
    let even = sample.iter().step_by(2).filter(|b| **b == 0).count();
    let odd = sample
        .iter()
        .skip(1)
        .step_by(2)
        .filter(|b| **b == 0)
        .count();
    if odd * 10 >= pairs * 4 && even * 20 < pairs {
        Some(true)
    } else if even * 10 >= pairs * 4 && odd * 20 < pairs {
        Some(false)
    } else {
        None
    }
}

/// How locations are written for one payload.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Base<'a> {
    /// Prefix for JSON Pointers (`body:` or `query:tok#jws`).
    pub(crate) json_prefix: &'a str,
    /// Base for text offsets (`body` → `body@12`).
    pub(crate) text_base: &'a str,
    /// Prefix for form fields (`body:form:`).
    pub(crate) form_prefix: &'a str,
    /// The multipart boundary, for [`Media::Multipart`].
    pub(crate) boundary: Option<&'a str>,
}

impl Base<'_> {
    /// The prefix that other named locations share (`body:`), derived from `form_prefix`.
    fn root(&self) -> &str {
        self.form_prefix
            .strip_suffix("form:")
            .unwrap_or(self.form_prefix)
    }
}

/// Scans a decoded payload (a request body, or a JWS payload) according to its media type.
pub(crate) fn scan_payload(
    sc: &mut Scanner<'_>,
    bytes: &[u8],
    media: Media,
    charset: Option<&str>,
    chain: &[&'static str],
    base: Base<'_>,
    layers: usize,
) {
    let mut chain = chain.to_vec();
    let text: Cow<'_, str> = match transcode_utf16(bytes, charset) {
        Some(s) => {
            // A BOM or a charset parameter can claim UTF-16 for bytes that are not: `FF FE`
            // in front of ASCII decodes to CJK noise, while an upstream that ignores the claim
            // reads the ASCII (and the SSN in it). Unless the bytes' own NUL pattern agrees
            // with the claim, scan them as 8-bit text as well.
            let unmarked = bytes
                .strip_prefix(b"\xFF\xFE")
                .or_else(|| bytes.strip_prefix(b"\xFE\xFF"))
                .unwrap_or(bytes);
            if utf16_by_nuls(unmarked).is_none() {
                scan_text(
                    sc,
                    unmarked,
                    &String::from_utf8_lossy(unmarked),
                    media,
                    chain.clone(),
                    base,
                    layers,
                );
            }
            chain.push("utf16");
            Cow::Owned(s)
        }
        None => {
            let b = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
            // `from_utf8` has a fast path for ASCII that the lossy version lacks.
            match std::str::from_utf8(b) {
                Ok(s) => Cow::Borrowed(s),
                Err(_) => String::from_utf8_lossy(b),
            }
        }
    };
    scan_text(sc, bytes, &text, media, chain, base, layers);
}

/// Scans a payload already decoded to `text` (`bytes` is the same payload undecoded, for
/// multipart, which splits on raw boundaries).
fn scan_text(
    sc: &mut Scanner<'_>,
    bytes: &[u8],
    text: &str,
    media: Media,
    mut chain: Vec<&'static str>,
    base: Base<'_>,
    layers: usize,
) {
    if media == Media::Form {
        chain.push("form");
        scan_form(sc, text, base.form_prefix, &chain, layers);
        return;
    }
    if media == Media::Multipart {
        if let Some(boundary) = base.boundary {
            if scan_multipart(sc, bytes, boundary, &chain, base, layers) {
                return;
            }
        }
    }
    if media == Media::Hl7 || super::hl7::looks_like_hl7(text) {
        chain.push("hl7");
        let prefix = format!("{}hl7:", base.root());
        super::hl7::scan_hl7(sc, text, &prefix, &chain);
        return;
    }
    let looks_json = matches!(
        text.trim_start_matches(|c: char| c.is_ascii_whitespace())
            .as_bytes()
            .first(),
        Some(b'{' | b'[')
    );
    if media == Media::Json || looks_json {
        let top_level = chain
            .iter()
            .all(|c| matches!(*c, "gzip" | "deflate" | "br" | "zstd"));
        // Most clean traffic is proven clean in a few passes over the raw text.
        if top_level && sc.json_body_clean(text) {
            return;
        }
        if let Ok(node) = parse_json(text) {
            if chain
                .iter()
                .all(|c| matches!(*c, "gzip" | "deflate" | "br" | "zstd"))
            {
                // A top-level body: its plain JSON segments are substrings of `text`.
                if !sc.has_body_keywords() {
                    sc.body_keywords(text.as_bytes());
                }
            }
            chain.push("json");
            let mut walker = Walker {
                sc,
                prefix: base.json_prefix,
                chain: &chain,
                layers,
                too_deep: false,
                num: String::new(),
            };
            let mut path = Vec::new();
            let mut fhir = String::new();
            walker.walk(&node, &mut path, 0, &mut fhir);
            let too_deep = walker.too_deep;
            drop(node);
            if !too_deep {
                return;
            }
            // Deeper than max_json_depth: the structure beyond the limit was not walked, so
            // scan the whole document as text as well.
            chain.pop();
        }
    }
    chain.push("text");
    sc.segment(&Segment {
        text,
        loc: Loc::Offset(base.text_base),
        ctx: FieldCtx::default(),
        chain: &chain,
        sel: None,
    });
}

/// Finds `needle` in `hay` from `from`.
fn find_bytes(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
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

/// Scans a `multipart/*` body part by part: field names as context, `base64` and
/// `quoted-printable` transfer encodings undone, nested payloads (JSON, HL7, nested multipart)
/// parsed by their own content type, and anything outside the first and last boundary
/// (preamble, epilogue — a classic smuggling place) scanned as text. Returns false when the
/// boundary never occurs, so the caller scans the body as text.
fn scan_multipart(
    sc: &mut Scanner<'_>,
    bytes: &[u8],
    boundary: &str,
    chain: &[&'static str],
    base: Base<'_>,
    layers: usize,
) -> bool {
    let delim = format!("--{boundary}");
    let Some(first) = find_bytes(bytes, delim.as_bytes(), 0) else {
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
        let next = find_bytes(bytes, delim.as_bytes(), pos);
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

/// Scans `name=value&…` pairs (query strings and form bodies): `+` and `%XX` are decoded,
/// names are scanned on their own and serve as field context for their values.
pub(crate) fn scan_form(
    sc: &mut Scanner<'_>,
    text: &str,
    prefix: &str,
    chain: &[&'static str],
    layers: usize,
) {
    if !sc.active() {
        return;
    }
    for (name, value) in form_urlencoded::parse(text.as_bytes()) {
        let loc = Loc::Named {
            prefix,
            name: &name,
        };
        sc.segment(&Segment {
            text: &name,
            loc,
            ctx: FieldCtx::default(),
            chain,
            sel: None,
        });
        let extra = [name.as_ref()];
        let ctx = FieldCtx {
            path: &[],
            extra: &extra,
        };
        scan_value(sc, &value, loc, ctx, chain, layers);
    }
}

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

/// Scans a string value after checking whether it is a JOSE token. Returns whether the value
/// was classified as encrypted (and therefore not scanned).
fn scan_value(
    sc: &mut Scanner<'_>,
    value: &str,
    loc: Loc<'_>,
    ctx: FieldCtx<'_>,
    chain: &[&'static str],
    layers: usize,
) -> bool {
    scan_value_at(sc, value, loc, ctx, None, chain, layers)
}

/// [`scan_value`] with a structural address (`fhir:Patient.birthDate`).
pub(crate) fn scan_value_at(
    sc: &mut Scanner<'_>,
    value: &str,
    loc: Loc<'_>,
    ctx: FieldCtx<'_>,
    sel: Option<&str>,
    chain: &[&'static str],
    layers: usize,
) -> bool {
    let token = classify(value, sc.limits.max_decoded_bytes);
    sc.check_encryption(&loc, &ctx, sel, &token, value, chain);
    match token {
        Token::Encrypted { .. } => {
            sc.encrypted(loc.render(0));
            return true;
        }
        Token::Marked { .. } => {
            // Reported, and scanned all the same: the marker costs an attacker nothing.
            sc.encrypted(loc.render(0));
        }
        Token::Signed { payload } => {
            if layers >= sc.limits.max_decode_layers {
                // Token inside token inside token…: refuse rather than skip the payload.
                sc.fail(InspectError::TooManyLayers);
            } else {
                let base = format!("{}#jws", loc.render(0));
                let mut inner = chain.to_vec();
                inner.push("jws");
                let b = Base {
                    json_prefix: &base,
                    text_base: &base,
                    form_prefix: &base,
                    boundary: None,
                };
                scan_payload(sc, &payload, Media::Sniff, None, &inner, b, layers + 1);
            }
        }
        Token::FakeEncrypted { ciphertext } => {
            let text = String::from_utf8_lossy(&ciphertext);
            let mut inner = chain.to_vec();
            inner.push("base64");
            sc.segment(&Segment {
                text: &text,
                loc,
                ctx,
                chain: &inner,
                sel,
            });
        }
        Token::Plain => {}
    }
    sc.segment(&Segment {
        text: value,
        loc,
        ctx,
        chain,
        sel,
    });
    false
}

/// The FHIR-ish sibling values that describe what an object's `value` is: `system` (Identifier
/// and ContactPoint) and `type` (a string, or a CodeableConcept's text and first codings).
fn siblings<'n>(members: &'n [(Cow<'_, str>, Node<'_>)], out: &mut Vec<&'n str>) {
    let strings = |node: &'n Node<'_>| match node {
        Node::Str(s) => Some(s.as_ref()),
        _ => None,
    };
    for (k, v) in members {
        match (k.as_ref(), v) {
            ("system" | "type", Node::Str(s)) => out.push(s),
            ("type", Node::Obj(t)) => {
                for (k2, v2) in t {
                    match (k2.as_ref(), v2) {
                        ("text", Node::Str(s)) => out.push(s),
                        ("coding", Node::Arr(codings)) => {
                            for c in codings.iter().take(4) {
                                if let Node::Obj(cm) = c {
                                    out.extend(
                                        cm.iter()
                                            .filter(|(k3, _)| {
                                                matches!(k3.as_ref(), "code" | "display" | "system")
                                            })
                                            .filter_map(|(_, v3)| strings(v3)),
                                    );
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
}

/// Walks a parsed JSON document, scanning keys, strings and numbers.
struct Walker<'a, 'r> {
    sc: &'a mut Scanner<'r>,
    prefix: &'a str,
    chain: &'a [&'static str],
    layers: usize,
    too_deep: bool,
    /// Scratch buffer for number text.
    num: String,
}

impl Walker<'_, '_> {
    fn walk<'n>(
        &mut self,
        node: &'n Node<'_>,
        path: &mut Vec<PathElem<'n>>,
        depth: usize,
        fhir: &mut String,
    ) {
        match node {
            Node::Arr(items) => {
                if depth >= self.sc.limits.max_json_depth {
                    self.too_deep = true;
                    return;
                }
                for (i, item) in items.iter().enumerate() {
                    path.push(PathElem::Index(i));
                    self.member(item, path, depth + 1, &[], fhir);
                    path.pop();
                }
            }
            Node::Obj(members) => {
                if depth >= self.sc.limits.max_json_depth {
                    self.too_deep = true;
                    return;
                }
                let mut extra = Vec::new();
                siblings(members, &mut extra);
                // A FHIR resource starts a new structural path: `fhir:Patient.name.family`.
                let resource = members.iter().find_map(|(k, v)| match (k.as_ref(), v) {
                    ("resourceType", Node::Str(rt)) if safe_name(rt) => Some(rt.as_ref()),
                    _ => None,
                });
                let saved = resource.map(|rt| std::mem::replace(fhir, format!("fhir:{rt}")));
                if is_jwe_json(members) {
                    self.sc.encrypted(
                        Loc::Pointer {
                            prefix: self.prefix,
                            path,
                        }
                        .render(0),
                    );
                }
                for (key, value) in members {
                    path.push(PathElem::Key(key));
                    let parent = path.split_last().map_or(&[][..], |(_, rest)| rest);
                    self.sc.segment(&Segment {
                        text: key,
                        loc: Loc::Pointer {
                            prefix: self.prefix,
                            path,
                        },
                        ctx: FieldCtx {
                            path: parent,
                            extra: &[],
                        },
                        chain: self.chain,
                        sel: None,
                    });
                    let len = fhir.len();
                    if !fhir.is_empty() {
                        fhir.push('.');
                        fhir.push_str(key);
                    }
                    self.member(value, path, depth + 1, &extra, fhir);
                    fhir.truncate(len);
                    path.pop();
                }
                if let Some(saved) = saved {
                    *fhir = saved;
                }
            }
            scalar => self.member(scalar, path, depth, &[], fhir),
        }
    }

    fn member<'n>(
        &mut self,
        node: &'n Node<'_>,
        path: &mut Vec<PathElem<'n>>,
        depth: usize,
        extra: &[&str],
        fhir: &mut String,
    ) {
        let loc = Loc::Pointer {
            prefix: self.prefix,
            path,
        };
        let ctx = FieldCtx { path, extra };
        let sel = (!fhir.is_empty()).then_some(fhir.as_str());
        match node {
            Node::Str(s) => {
                let is_b64_field = matches!(
                    path.last(),
                    Some(PathElem::Key("data" | "valueBase64Binary" | "content"))
                );
                if is_b64_field && self.attachment(s, loc) {
                    return;
                }
                scan_value_at(self.sc, s, loc, ctx, sel, self.chain, self.layers);
            }
            Node::Num(n) => {
                self.num.clear();
                // Writing to a String cannot fail.
                let _ = write!(self.num, "{n}");
                let num = std::mem::take(&mut self.num);
                self.sc
                    .check_encryption(&loc, &ctx, sel, &Token::Plain, &num, self.chain);
                self.num = num;
                self.sc.segment(&Segment {
                    text: &self.num,
                    loc,
                    ctx,
                    chain: self.chain,
                    sel,
                });
            }
            Node::Arr(_) | Node::Obj(_) => self.walk(node, path, depth, fhir),
            Node::Null | Node::Bool => {}
        }
    }

    /// FHIR `Attachment.data`, `Binary.data` (`content` in DSTU2) and `valueBase64Binary` are
    /// base64 by schema: decode and scan the content as a payload of its own (JSON, HL7, text).
    /// Returns false when the value is not base64, so the caller scans it as a string.
    fn attachment(&mut self, value: &str, loc: Loc<'_>) -> bool {
        use base64::Engine as _;
        let compact: String = value.split_ascii_whitespace().collect();
        if compact.len() < 8 || compact.len() / 4 * 3 > self.sc.limits.max_decoded_bytes {
            return false;
        }
        let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(&compact) else {
            return false;
        };
        if self.layers >= self.sc.limits.max_decode_layers {
            self.sc.fail(InspectError::TooManyLayers);
            return true;
        }
        let base = format!("{}#base64", loc.render(0));
        let mut chain = self.chain.to_vec();
        chain.push("base64");
        let b = Base {
            json_prefix: &base,
            text_base: &base,
            form_prefix: &base,
            boundary: None,
        };
        scan_payload(
            self.sc,
            &bytes,
            Media::Sniff,
            None,
            &chain,
            b,
            self.layers + 1,
        );
        true
    }
}

/// A resource type or other name safe to put into a structural path.
fn safe_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A JWE JSON serialisation (RFC 7516 §7.2): `protected`/`header`, `iv`, `ciphertext`, `tag`.
fn is_jwe_json(members: &[(Cow<'_, str>, Node<'_>)]) -> bool {
    let has = |name: &str| {
        members
            .iter()
            .any(|(k, v)| k == name && matches!(v, Node::Str(_)))
    };
    has("ciphertext")
        && has("iv")
        && (has("protected")
            || members
                .iter()
                .any(|(k, _)| k == "recipients" || k == "header"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types() {
        assert_eq!(
            media_type(Some("application/fhir+json; charset=UTF-8")).0,
            Media::Json
        );
        assert_eq!(
            media_type(Some("application/json; charset=\"utf-16le\""))
                .1
                .as_deref(),
            Some("utf-16le")
        );
        assert_eq!(
            media_type(Some("Application/X-WWW-Form-Urlencoded")).0,
            Media::Form
        );
        assert_eq!(media_type(Some("text/plain")).0, Media::Sniff);
        assert_eq!(media_type(None).0, Media::Sniff);
    }

    #[test]
    fn utf16_detection() {
        let le: Vec<u8> = "{\"ssn\":1}"
            .encode_utf16()
            .flat_map(|u| u.to_le_bytes())
            .collect();
        assert_eq!(transcode_utf16(&le, None).as_deref(), Some("{\"ssn\":1}"));
        let mut be = vec![0xFE, 0xFF];
        be.extend("ab".encode_utf16().flat_map(|u| u.to_be_bytes()));
        assert_eq!(transcode_utf16(&be, None).as_deref(), Some("ab"));
        assert_eq!(transcode_utf16(b"plain ascii text", None), None);
    }

    #[test]
    fn json_keeps_duplicates_and_borrows() {
        let node = parse_json(r#"{"a":"x","a":"y\u0035"}"#).expect("parses");
        match node {
            Node::Obj(m) => {
                assert_eq!(m.len(), 2);
                assert!(matches!(
                    m.first(),
                    Some((_, Node::Str(Cow::Borrowed("x"))))
                ));
                assert!(matches!(m.get(1), Some((_, Node::Str(s))) if s == "y5"));
            }
            other => panic!("{other:?}"),
        }
        assert!(parse_json("{} trailing").is_err());
    }
}
