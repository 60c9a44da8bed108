//! `Content-Encoding` decoding with decompression-bomb limits.
//!
//! A compressed body is opaque to regexes, and "we do not inspect gzip" is the oldest WAF bypass
//! there is (CRS rule 950010 skips compressed responses outright). So every listed coding is
//! undone, in reverse order as RFC 9110 §8.4 prescribes, and anything we cannot undo is an error
//! the caller can fail closed on. Output is read in bounded chunks through [`Read::take`], never
//! sized from headers the attacker controls, and stopped at both an absolute cap and a ratio to
//! the bytes actually received.

use std::borrow::Cow;
use std::io::Read;

use flate2::read::{DeflateDecoder, MultiGzDecoder, ZlibDecoder};

use super::{InspectError, Limits};

/// Bodies may always decode to this many bytes, however small the compressed input: a 200-byte
/// gzip of a 40 KiB JSON document is legitimate, and the ratio check only has to stop bombs.
const RATIO_FLOOR: u64 = 1024 * 1024;

/// zstd frames declare their window size; refuse windows above 32 MiB so a 20-byte frame
/// cannot make the decoder allocate the 2 GiB the format allows.
const ZSTD_WINDOW_LOG_MAX: u32 = 25;

/// Longest encoding token echoed back in [`InspectError::UnsupportedEncoding`].
const MAX_TOKEN_LEN: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Coding {
    Gzip,
    Deflate,
    Brotli,
    Zstd,
}

impl Coding {
    fn name(self) -> &'static str {
        match self {
            Coding::Gzip => "gzip",
            Coding::Deflate => "deflate",
            Coding::Brotli => "br",
            Coding::Zstd => "zstd",
        }
    }
}

/// Reduces an unknown token to at most 32 characters of `[a-z0-9-]`, so the error (which ends up
/// in logs) can never carry header bytes an attacker chose.
fn sanitize_token(token: &str) -> String {
    token
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')
        .take(MAX_TOKEN_LEN)
        .collect()
}

/// Whether every coding in a `Content-Encoding` value is one [`decode_body`] can undo.
pub(crate) fn supported(header: &str) -> bool {
    parse_codings(header).is_ok()
}

/// Parses a `Content-Encoding` value into the codings to undo, outermost first.
fn parse_codings(header: &str) -> Result<Vec<Coding>, InspectError> {
    let mut codings = Vec::new();
    for token in header.split(',') {
        let token = token.trim_matches(|c: char| c.is_ascii_whitespace());
        let coding = if token.is_empty() || token.eq_ignore_ascii_case("identity") {
            continue;
        } else if token.eq_ignore_ascii_case("gzip") || token.eq_ignore_ascii_case("x-gzip") {
            Coding::Gzip
        } else if token.eq_ignore_ascii_case("deflate") {
            Coding::Deflate
        } else if token.eq_ignore_ascii_case("br") {
            Coding::Brotli
        } else if token.eq_ignore_ascii_case("zstd") {
            Coding::Zstd
        } else {
            return Err(InspectError::UnsupportedEncoding {
                encoding: sanitize_token(token),
            });
        };
        codings.push(coding);
    }
    // Applied in order, so the last one listed is the outermost and is undone first.
    codings.reverse();
    Ok(codings)
}

/// The output budget for one layer and the error to report when it is exceeded.
struct Budget {
    cap: u64,
    exceeded: InspectError,
}

impl Budget {
    /// The smaller of the absolute cap and `ratio × bytes on the wire` (never below 1 MiB). The
    /// ratio is taken against the body as received, so stacked layers cannot multiply it.
    fn new(limits: &Limits, wire_len: usize) -> Budget {
        let absolute = u64::try_from(limits.max_decoded_bytes).unwrap_or(u64::MAX);
        let by_ratio = limits
            .max_expansion_ratio
            .saturating_mul(u64::try_from(wire_len).unwrap_or(u64::MAX))
            .max(RATIO_FLOOR);
        if by_ratio < absolute {
            Budget {
                cap: by_ratio,
                exceeded: InspectError::ExpansionRatio {
                    limit: limits.max_expansion_ratio,
                },
            }
        } else {
            Budget {
                cap: absolute,
                exceeded: InspectError::DecodedTooLarge {
                    limit: limits.max_decoded_bytes,
                },
            }
        }
    }

    fn error(&self) -> InspectError {
        match self.exceeded {
            InspectError::ExpansionRatio { limit } => InspectError::ExpansionRatio { limit },
            InspectError::DecodedTooLarge { limit } => InspectError::DecodedTooLarge { limit },
            _ => InspectError::DecodedTooLarge {
                limit: usize::try_from(self.cap).unwrap_or(usize::MAX),
            },
        }
    }
}

/// Reads `reader` to the end, failing as soon as the output exceeds the budget.
fn read_bounded<R: Read>(
    reader: R,
    budget: &Budget,
    coding: Coding,
) -> Result<Vec<u8>, InspectError> {
    let mut limited = reader.take(budget.cap.saturating_add(1));
    let mut out = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match limited.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                out.extend_from_slice(chunk.get(..n).unwrap_or(&[]));
                if u64::try_from(out.len()).unwrap_or(u64::MAX) > budget.cap {
                    return Err(budget.error());
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => {
                return Err(InspectError::Corrupt {
                    encoding: coding.name(),
                })
            }
        }
    }
    Ok(out)
}

/// Whether `b` starts with a valid RFC 1950 zlib header (CM = 8, window ≤ 32 KiB, FCHECK).
fn has_zlib_header(b: &[u8]) -> bool {
    match (b.first(), b.get(1)) {
        (Some(&cmf), Some(&flg)) => {
            cmf & 0x0F == 8 && cmf >> 4 <= 7 && ((u16::from(cmf) << 8) | u16::from(flg)) % 31 == 0
        }
        _ => false,
    }
}

fn decode_layer(input: &[u8], coding: Coding, budget: &Budget) -> Result<Vec<u8>, InspectError> {
    match coding {
        Coding::Gzip => read_bounded(MultiGzDecoder::new(input), budget, coding),
        Coding::Deflate => {
            // RFC 9110 says zlib, but many clients send raw deflate; accept both.
            if has_zlib_header(input) {
                match read_bounded(ZlibDecoder::new(input), budget, coding) {
                    Err(InspectError::Corrupt { .. }) => {}
                    other => return other,
                }
            }
            read_bounded(DeflateDecoder::new(input), budget, coding)
        }
        Coding::Brotli => read_bounded(brotli::Decompressor::new(input, 4096), budget, coding),
        Coding::Zstd => {
            let corrupt = || InspectError::Corrupt {
                encoding: coding.name(),
            };
            let mut decoder =
                zstd::stream::read::Decoder::with_buffer(input).map_err(|_| corrupt())?;
            decoder
                .window_log_max(ZSTD_WINDOW_LOG_MAX)
                .map_err(|_| corrupt())?;
            read_bounded(decoder, budget, coding)
        }
    }
}

/// Undoes `content_encoding` on `body`, appending one chain entry per layer.
///
/// The decoded result (also of an unencoded body) must fit `limits.max_decoded_bytes`: scanning
/// is all-or-nothing, a body we did not read completely is a body we did not inspect.
pub(crate) fn decode_body<'a>(
    body: &'a [u8],
    content_encoding: Option<&str>,
    limits: &Limits,
    chain: &mut Vec<&'static str>,
) -> Result<Cow<'a, [u8]>, InspectError> {
    let codings = match content_encoding {
        Some(h) => parse_codings(h)?,
        None => Vec::new(),
    };
    if codings.len() > limits.max_decode_layers {
        return Err(InspectError::TooManyLayers);
    }
    let budget = Budget::new(limits, body.len());
    let mut data: Cow<'a, [u8]> = Cow::Borrowed(body);
    for coding in codings {
        data = Cow::Owned(decode_layer(&data, coding, &budget)?);
        chain.push(coding.name());
    }
    if data.len() > limits.max_decoded_bytes {
        return Err(InspectError::DecodedTooLarge {
            limit: limits.max_decoded_bytes,
        });
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).expect("write");
        e.finish().expect("finish")
    }

    fn decode(body: &[u8], enc: &str) -> Result<(Vec<u8>, Vec<&'static str>), InspectError> {
        let mut chain = Vec::new();
        let out = decode_body(body, Some(enc), &Limits::default(), &mut chain)?;
        Ok((out.into_owned(), chain))
    }

    #[test]
    fn parses_tokens() {
        assert_eq!(
            parse_codings(" GZIP , identity,br").expect("ok"),
            vec![Coding::Brotli, Coding::Gzip]
        );
        assert!(parse_codings("").expect("ok").is_empty());
        match parse_codings("gzip, X-Evil\u{1}\"<script>536-22-1234aaaaaaaaaaaaaaaaaaaaaaa") {
            Err(InspectError::UnsupportedEncoding { encoding }) => {
                assert!(encoding.len() <= 32);
                assert!(encoding
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn multi_member_gzip() {
        let mut body = gzip(b"hello ");
        body.extend(gzip(b"world"));
        let (out, chain) = decode(&body, "x-gzip").expect("decodes");
        assert_eq!(out, b"hello world");
        assert_eq!(chain, ["gzip"]);
    }

    #[test]
    fn raw_and_zlib_deflate() {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(b"zlib data").expect("write");
        let z = z.finish().expect("finish");
        assert_eq!(decode(&z, "deflate").expect("zlib").0, b"zlib data");
        let mut r = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        r.write_all(b"raw data").expect("write");
        let r = r.finish().expect("finish");
        assert_eq!(decode(&r, "deflate").expect("raw").0, b"raw data");
    }

    #[test]
    fn too_many_layers() {
        let limits = Limits {
            max_decode_layers: 2,
            ..Limits::default()
        };
        let mut chain = Vec::new();
        assert!(matches!(
            decode_body(b"x", Some("gzip, gzip, gzip"), &limits, &mut chain),
            Err(InspectError::TooManyLayers)
        ));
    }

    #[test]
    fn absolute_cap_applies_to_identity_too() {
        let limits = Limits {
            max_decoded_bytes: 4,
            ..Limits::default()
        };
        let mut chain = Vec::new();
        assert!(matches!(
            decode_body(b"12345", None, &limits, &mut chain),
            Err(InspectError::DecodedTooLarge { limit: 4 })
        ));
    }

    #[test]
    fn corrupt_inputs() {
        for enc in ["gzip", "deflate", "br", "zstd"] {
            let r = decode(b"\x1f\x8b\x08\x00garbage-garbage-garbage", enc);
            assert!(
                matches!(r, Err(InspectError::Corrupt { .. })),
                "{enc}: {r:?}"
            );
        }
        // Truncated gzip.
        let g = gzip(b"some text that is long enough to matter");
        let cut = g.get(..g.len() - 6).expect("len");
        assert!(matches!(
            decode(cut, "gzip"),
            Err(InspectError::Corrupt { encoding: "gzip" })
        ));
    }
}
