//! JSON: a duplicate-keeping, borrowing parse, then a walk over keys, strings and numbers with
//! their key path, FHIR structural path and sibling context; base64 attachments and JWE JSON
//! serialisations are recognised.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use super::content_type::Media;
use super::jose::scan_value_at;
use super::payload::{scan_payload, Base};
use crate::engine::classify::Token;
use crate::engine::scan::{FieldCtx, Loc, PathElem, Scanner, Segment};
use crate::engine::InspectError;

/// Parses a complete JSON document. serde_json refuses nesting beyond 128 levels with an
/// error (not a stack overflow); callers then scan the text instead.
pub(super) fn parse_json(text: &str) -> Result<Node<'_>, serde_json::Error> {
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

/// A parsed JSON document that keeps duplicate keys (the first `"ssn"` must not hide behind a
/// second one, as it would in a map) and borrows unescaped strings from the input.
#[derive(Debug)]
pub(super) enum Node<'a> {
    Null,
    Bool,
    Num(Num),
    Str(Cow<'a, str>),
    Arr(Vec<Node<'a>>),
    Obj(Vec<(Cow<'a, str>, Node<'a>)>),
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Num {
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

/// Walks a parsed JSON document, scanning keys, strings and numbers.
pub(super) struct Walker<'a, 'r> {
    pub(super) sc: &'a mut Scanner<'r>,
    pub(super) prefix: &'a str,
    pub(super) chain: &'a [&'static str],
    pub(super) layers: usize,
    pub(super) too_deep: bool,
    /// Scratch buffer for number text.
    pub(super) num: String,
}

impl Walker<'_, '_> {
    pub(super) fn walk<'n>(
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
                // A FHIR resource starts a new structural path: `fhir:Patient.name.family`.
                let resource = members.iter().find_map(|(k, v)| match (k.as_ref(), v) {
                    ("resourceType", Node::Str(rt)) if safe_name(rt) => Some(rt.as_ref()),
                    _ => None,
                });
                // A resource's own `name`, `type` or `system` describe the resource (a
                // StructureDefinition of type `Patient.birthDate`, a SearchParameter named
                // `birthdate`), not one of its members: no sibling context there.
                let mut extra = Vec::new();
                if resource.is_none() {
                    siblings(members, &mut extra);
                }
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

/// Most sibling values kept as the field context of an object's members.
const MAX_SIBLINGS: usize = 16;

/// The FHIR-ish sibling values that describe what an object's `value` is: `system` (Identifier
/// and ContactPoint) and `type` (a string, or a CodeableConcept's text and first codings).
/// Never called for a FHIR resource's own members (see the caller).
fn siblings<'n>(members: &'n [(Cow<'_, str>, Node<'_>)], out: &mut Vec<&'n str>) {
    let strings = |node: &'n Node<'_>| match node {
        Node::Str(s) => Some(s.as_ref()),
        _ => None,
    };
    for (k, v) in members {
        // Duplicate keys are kept, so a client can repeat `type` a hundred thousand times:
        // every member's context would then copy them all (context is capped per segment,
        // but building it per member of a huge object is still members × siblings).
        if out.len() >= MAX_SIBLINGS {
            break;
        }
        match (k.as_ref(), v) {
            ("system" | "type", Node::Str(s)) => out.push(s),
            // Legacy name/value pairs (`{"field": "SocialSecurityNumber", "value": …}`,
            // FHIR `Parameters.parameter.name`): the name says what the value is.
            ("name" | "label" | "field" | "fieldName" | "key" | "attribute", Node::Str(s))
                if s.len() <= 64 =>
            {
                out.push(s)
            }
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

/// A resource type or other name safe to put into a structural path.
/// A `resourceType` value that starts a `fhir:` path: 1 to 64 ASCII letters and digits. Also
/// used by the whole-body clean check (`fastpath::Resources`, resource exceptions), which must
/// read resource types exactly as the walker does.
pub(crate) fn safe_name(s: &str) -> bool {
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
