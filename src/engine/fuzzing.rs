//! Entry points into the engine's internal decoders for the fuzz targets in `fuzz/` and the
//! property tests. Not part of the supported API (hidden from the docs, may change any time):
//! the internals stay `pub(crate)`, and this module exposes only thin wrappers over them, so
//! a fuzzer can reach each decoder on its own instead of only through a whole scan.

use super::normalize::OffsetMap;
use super::{InspectError, Limits};

/// A decoded text and the map from its byte offsets back to the input's.
#[derive(Debug)]
pub struct Mapped {
    /// The decoded text.
    pub text: String,
    map: Option<OffsetMap>,
}

impl Mapped {
    /// The input offset the engine reports for output offset `out`.
    pub fn to_source(&self, out: usize) -> usize {
        self.map.as_ref().map_or(out, |m| m.to_source(out))
    }
}

/// Undoes a `Content-Encoding` value on `body` under `limits`, like a body scan does first.
/// Returns the decoded bytes and the decode chain (outermost first).
pub fn decode_content(
    body: &[u8],
    content_encoding: Option<&str>,
    limits: &Limits,
) -> Result<(Vec<u8>, Vec<&'static str>), InspectError> {
    let mut chain = Vec::new();
    let out = super::decode::decode_body(body, content_encoding, limits, &mut chain)?;
    Ok((out.into_owned(), chain))
}

/// One round of `%XX` / `%uXXXX` decoding, as applied to every segment that has escapes.
pub fn percent_decode(text: &str) -> Mapped {
    let (text, map) = super::normalize::percent_decode(text);
    Mapped {
        text,
        map: Some(map),
    }
}

/// XML/HTML character references and entities (`&#53;`, `&#x35;`, `&amp;`).
pub fn xml_entity_decode(text: &str) -> Mapped {
    let (text, map) = super::normalize::xml_entity_decode(text);
    Mapped {
        text,
        map: Some(map),
    }
}

/// Unicode folding (NFKC, any decimal digit to ASCII, dashes, spaces, invisible characters).
pub fn normalize(text: &str) -> Mapped {
    let (out, map) = super::normalize::normalize(text);
    Mapped {
        text: out.into_owned(),
        map,
    }
}

/// Heuristic base64 in free text: every candidate run `(start, end)` and its decoded text when
/// the engine would scan it (readable UTF-8).
pub fn base64_runs(text: &str) -> Vec<(usize, usize, Option<String>)> {
    super::normalize::base64_runs(text)
        .into_iter()
        .map(|(s, e)| {
            let decoded = text
                .get(s..e)
                .and_then(super::normalize::decode_base64_text);
            (s, e, decoded)
        })
        .collect()
}

/// Quoted-printable (multipart `Content-Transfer-Encoding: quoted-printable`).
pub fn quoted_printable(body: &[u8]) -> Vec<u8> {
    super::carrier::quoted_printable(body)
}

/// HL7 v2 escapes (`\F\`, `\Xhh…\`, …) of one field, with the delimiters declared by the
/// `MSH` line `msh`.
pub fn hl7_unescape(msh: &str, value: &str) -> String {
    super::hl7::unescape_with(msh, value)
}

/// The JSON carrier's parser (keeps duplicate keys, undoes `\u` escapes): every key and string
/// value in document order, or `None` when the text is not one JSON document.
pub fn json_strings(text: &str) -> Option<Vec<String>> {
    super::carrier::json_strings(text)
}
