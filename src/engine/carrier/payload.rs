//! Payload dispatch: a decoded body (or a JWS payload) goes to the carrier its media type or
//! its content names (form, multipart, HL7, JSON), and whatever is left is scanned as text.

use std::borrow::Cow;

use super::charset::{transcode_utf16, utf16_by_nuls};
use super::content_type::Media;
use super::form::scan_form;
use super::json::{parse_json, Walker};
use super::multipart::scan_multipart;
use crate::engine::scan::{BodyCheck, FieldCtx, Loc, Scanner, Segment};

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
    if media == Media::Hl7 || crate::engine::hl7::looks_like_hl7(text) {
        chain.push("hl7");
        let prefix = format!("{}hl7:", base.root());
        crate::engine::hl7::scan_hl7(sc, text, &prefix, &chain);
        return;
    }
    let looks_json = matches!(
        text.trim_start_matches(|c: char| c.is_ascii_whitespace())
            .as_bytes()
            .first(),
        Some(b'{' | b'[')
    );
    // The plan before the whole-body check narrowed it, if it did.
    let mut unnarrowed = None;
    if media == Media::Json || looks_json {
        let top_level = chain
            .iter()
            .all(|c| matches!(*c, "gzip" | "deflate" | "br" | "zstd"));
        // Most clean traffic is proven clean in a few passes over the raw text; for the rest,
        // the walk evaluates only the rules that check could not prove dead.
        if top_level {
            match sc.json_body_check(text) {
                BodyCheck::Clean => return,
                BodyCheck::Alive(rules) => unnarrowed = Some(sc.narrow_to(&rules)),
                BodyCheck::Unknown => {}
            }
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
    // The check's proofs are about the JSON tokens the walk scans, not about the text as one
    // segment (a pattern may span two tokens there). The one pass accepts only what the walk
    // parses and walks whole, so this should not happen after narrowing; if it does, every
    // rule runs again.
    if let Some(plan) = unnarrowed {
        sc.widen(plan);
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
    pub(super) fn root(&self) -> &str {
        self.form_prefix
            .strip_suffix("form:")
            .unwrap_or(self.form_prefix)
    }
}
