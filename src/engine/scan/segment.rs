//! What a segment is and where it sits: the part kind, the segment itself, its field context
//! and its log-safe location (with the address field selectors are matched against).

use crate::engine::rules::glob_match;

/// Which part of the request is being scanned (matched against rules' `where:`).
#[derive(Debug, Clone, Copy)]
pub(crate) enum PartKind<'a> {
    Query,
    Header(&'a str),
    /// A body, with its `Content-Type`.
    Body(Option<&'a str>),
    Text,
}

/// A unit of text to scan.
#[derive(Debug)]
pub(crate) struct Segment<'s> {
    pub(crate) text: &'s str,
    pub(crate) loc: Loc<'s>,
    pub(crate) ctx: FieldCtx<'s>,
    pub(crate) chain: &'s [&'static str],
    /// Structural address, if any: `fhir:Patient.name.family`, `hl7:PID-19`.
    pub(crate) sel: Option<&'s str>,
}

impl Segment<'_> {
    /// Whether the location has an address for `json:`/`form:`/… selectors (free text has
    /// none).
    pub(super) fn loc_addressable(&self) -> bool {
        !matches!(self.loc, Loc::Offset(_))
    }
}

/// The field context of a segment: key path plus extra words (parameter/header name, FHIR
/// `system` and `type` values). Not logged; only searched for hotwords.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FieldCtx<'s> {
    pub(crate) path: &'s [PathElem<'s>],
    pub(crate) extra: &'s [&'s str],
}

/// One element of a JSON Pointer.
#[derive(Debug, Clone, Copy)]
pub(crate) enum PathElem<'s> {
    Key(&'s str),
    Index(usize),
}

/// Where a segment is, rendered into a log-safe string only when something is reported.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Loc<'s> {
    /// A query parameter, form field or header: `<prefix><name>`, an unsafe name as `*`.
    Named { prefix: &'s str, name: &'s str },
    /// Free text: rendered as `<base>@<byte offset>`.
    Offset(&'s str),
    /// JSON: `<prefix>` + JSON Pointer with unsafe segments replaced by `*`.
    Pointer {
        prefix: &'s str,
        path: &'s [PathElem<'s>],
    },
}

impl Loc<'_> {
    pub(crate) fn render(&self, offset: usize) -> String {
        match self {
            Loc::Named { prefix, name } => format!("{prefix}{}", safe_segment(name)),
            Loc::Offset(base) => format!("{base}@{offset}"),
            Loc::Pointer { prefix, path } => {
                let mut s = String::with_capacity(prefix.len() + path.len() * 8);
                s.push_str(prefix);
                for elem in path.iter() {
                    s.push('/');
                    match elem {
                        PathElem::Key(k) => s.push_str(safe_segment(k)),
                        PathElem::Index(i) => s.push_str(&i.to_string()),
                    }
                }
                s
            }
        }
    }

    /// The address `where` and `exceptions.fields` selectors are matched against:
    /// `json:/identifier/0/value`, `form:ssn`, `multipart:file`, `hl7:PID-19`, `query:ssn`,
    /// `header:x-patient`. Free text has none.
    pub(crate) fn address(&self) -> Option<String> {
        match self {
            Loc::Named { prefix, name } => {
                let p = prefix.strip_prefix("body:").unwrap_or(prefix);
                // Nested prefixes (`body:multipart:f:form:`) keep only the innermost kind.
                let kind = p.trim_end_matches(':').rsplit(':').next().unwrap_or(p);
                Some(format!("{kind}:{name}"))
            }
            Loc::Offset(_) => None,
            Loc::Pointer { path, .. } => {
                let mut s = String::from("json:");
                for elem in path.iter() {
                    s.push('/');
                    match elem {
                        PathElem::Key(k) => s.push_str(k),
                        PathElem::Index(i) => s.push_str(&i.to_string()),
                    }
                }
                Some(s)
            }
        }
    }
}

/// Returns `segment` if it is a plain identifier that cannot carry PHI, else `*`.
///
/// Locations go to logs and audit records. Keys, parameter and header names come from the
/// client, and a client can put an SSN into a JSON key; so only `^[A-Za-z_][A-Za-z0-9_.-]{0,63}$`
/// without a run of three or more digits is kept verbatim.
pub(crate) fn safe_segment(segment: &str) -> &str {
    let b = segment.as_bytes();
    let first_ok = b
        .first()
        .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_');
    let chars_ok = b
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
    let mut run = 0;
    let digit_run = b.iter().any(|c| {
        run = if c.is_ascii_digit() { run + 1 } else { 0 };
        run >= 3
    });
    if first_ok && chars_ok && b.len() <= 64 && !digit_run {
        segment
    } else {
        "*"
    }
}

/// Whether a selector (`json:/a/*/b`, `fhir:Patient.name.*`, `hl7:PID-19`, `form:ssn`) matches
/// the segment.
pub(super) fn selector_matches(selector: &str, addr: Option<&str>, sel: Option<&str>) -> bool {
    addr.is_some_and(|a| glob_match(selector, a)) || sel.is_some_and(|s| glob_match(selector, s))
}
