//! One string value that may be an envelope: a JWE counts as encrypted, a JWS payload is read
//! as a payload of its own, encryption markers are reported, fake envelopes are decoded.

use super::content_type::Media;
use super::payload::{scan_payload, Base};
use crate::engine::classify::{classify, Token};
use crate::engine::scan::{FieldCtx, Loc, Scanner, Segment};
use crate::engine::InspectError;

/// Scans a string value after checking whether it is a JOSE token. Returns whether the value
/// was classified as encrypted (and therefore not scanned).
pub(super) fn scan_value(
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
