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

/// How a payload is to be interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Media {
    /// Declared JSON (`application/json`, `application/*+json`, `text/json`).
    Json,
    /// Declared `application/x-www-form-urlencoded`.
    Form,
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
    } else {
        Media::Sniff
    };
    (media, charset)
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
            _ => {
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
                    (true, bytes)
                } else if (even * 10 >= pairs * 4 && odd * 20 < pairs) || charset == Some("utf-16")
                {
                    (false, bytes)
                } else {
                    return None;
                }
            }
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

/// How locations are written for one payload.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Base<'a> {
    /// Prefix for JSON Pointers (`body:` or `query:tok#jws`).
    pub(crate) json_prefix: &'a str,
    /// Base for text offsets (`body` → `body@12`).
    pub(crate) text_base: &'a str,
    /// Prefix for form fields (`body:form:`).
    pub(crate) form_prefix: &'a str,
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
            chain.push("utf16");
            Cow::Owned(s)
        }
        None => String::from_utf8_lossy(bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)),
    };
    let text: &str = &text;
    if media == Media::Form {
        chain.push("form");
        scan_form(sc, text, base.form_prefix, &chain, layers);
        return;
    }
    let looks_json = matches!(
        text.trim_start_matches(|c: char| c.is_ascii_whitespace())
            .as_bytes()
            .first(),
        Some(b'{' | b'[')
    );
    if media == Media::Json || looks_json {
        if let Ok(node) = parse_json(text) {
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
            walker.walk(&node, &mut path, 0);
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
    match classify(value, sc.limits.max_decoded_bytes) {
        Token::Encrypted => {
            sc.encrypted(loc.render(0));
            return true;
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
                sel: None,
            });
        }
        Token::Plain => {}
    }
    sc.segment(&Segment {
        text: value,
        loc,
        ctx,
        chain,
        sel: None,
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
    fn walk<'n>(&mut self, node: &'n Node<'_>, path: &mut Vec<PathElem<'n>>, depth: usize) {
        match node {
            Node::Arr(items) => {
                if depth >= self.sc.limits.max_json_depth {
                    self.too_deep = true;
                    return;
                }
                for (i, item) in items.iter().enumerate() {
                    path.push(PathElem::Index(i));
                    self.member(item, path, depth + 1, &[]);
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
                    self.member(value, path, depth + 1, &extra);
                    path.pop();
                }
            }
            scalar => self.member(scalar, path, depth, &[]),
        }
    }

    fn member<'n>(
        &mut self,
        node: &'n Node<'_>,
        path: &mut Vec<PathElem<'n>>,
        depth: usize,
        extra: &[&str],
    ) {
        let loc = Loc::Pointer {
            prefix: self.prefix,
            path,
        };
        let ctx = FieldCtx { path, extra };
        match node {
            Node::Str(s) => {
                scan_value(self.sc, s, loc, ctx, self.chain, self.layers);
            }
            Node::Num(n) => {
                self.num.clear();
                // Writing to a String cannot fail.
                let _ = write!(self.num, "{n}");
                self.sc.segment(&Segment {
                    text: &self.num,
                    loc,
                    ctx,
                    chain: self.chain,
                    sel: None,
                });
            }
            Node::Arr(_) | Node::Obj(_) => self.walk(node, path, depth),
            Node::Null | Node::Bool => {}
        }
    }
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
