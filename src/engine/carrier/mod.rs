//! Carriers: turning a query string, a header or a decoded body into text segments.
//!
//! Regexes over raw bodies miss `\u0035`-escaped JSON, `+`-encoded form values and identifiers
//! inside signed tokens, and they cannot tell an SSN in `"ssn"` from one in `"orderId"`. So we
//! parse what we can (JSON, `application/x-www-form-urlencoded`, query strings, JOSE tokens),
//! scan decoded keys and values one by one with their field context, and fall back to plain
//! text for everything else. Anything that does not parse is scanned as text rather than
//! skipped: a parse error must never become a bypass.
//!
//! One file per carrier, so the code for a format is where its name says: payload dispatch by
//! media type and the text fallback (`payload`), JSON (`json`), form and query strings
//! (`form`), multipart (`multipart`), headers (`header`), JOSE tokens and other envelopes in a
//! single value (`jose`), UTF-16 and charsets (`charset`) and `Content-Type` parsing
//! (`content_type`). Part of the pure engine: no I/O, no clocks, no shared state.

mod charset;
mod content_type;
mod form;
mod header;
mod jose;
mod json;
mod multipart;
mod payload;

pub(crate) use content_type::{ct_param, media_type};
pub(crate) use form::scan_form;
pub(crate) use header::scan_header;
pub(crate) use json::{json_strings, safe_name};
pub(crate) use multipart::quoted_printable;
pub(crate) use payload::{scan_payload, Base};

#[cfg(test)]
mod tests;
