//! HL7 v2 (ER7) messages: segments, fields, the delimiters declared in MSH and the escapes.
//!
//! A v2 message is `SEG|field|field…` lines separated by carriage returns. MSH-1 *is* the field
//! separator and MSH-2 declares the component, repetition, escape and sub-component
//! characters, so a sender can pick `#` instead of `|`; we read them from each message rather
//! than assuming the defaults. Every field is unescaped (`\F\ \S\ \T\ \R\ \E\`, `\Xhh…\`) and
//! scanned on its own with its label (`PID-19`) and the field's name as context, and with the
//! structural address `hl7:PID-19` that `where` selectors and exceptions match.

use std::borrow::Cow;

use super::scan::{FieldCtx, Loc, Scanner, Segment};

/// Whether `text` starts like an ER7 message (`MSH` + a punctuation field separator).
pub(crate) fn looks_like_hl7(text: &str) -> bool {
    let t = text.trim_start_matches(['\r', '\n', ' ', '\t', '\u{feff}']);
    let b = t.as_bytes();
    b.starts_with(b"MSH") && b.get(3).is_some_and(|c| c.is_ascii_punctuation())
}

/// The delimiters of one message.
#[derive(Debug, Clone, Copy)]
struct Delims {
    field: char,
    component: char,
    repetition: char,
    escape: char,
    subcomponent: char,
}

impl Delims {
    fn from_msh(line: &str) -> Delims {
        let mut chars = line.chars().skip(3);
        let field = chars.next().unwrap_or('|');
        let enc: Vec<char> = chars.take_while(|c| *c != field).take(4).collect();
        Delims {
            field,
            component: enc.first().copied().unwrap_or('^'),
            repetition: enc.get(1).copied().unwrap_or('~'),
            escape: enc.get(2).copied().unwrap_or('\\'),
            subcomponent: enc.get(3).copied().unwrap_or('&'),
        }
    }
}

/// Human names of the person fields, used as field context (so `ssn` context words fire on
/// PID-19 without the rule knowing HL7).
fn field_name(segment: &str, n: usize) -> &'static str {
    match (segment, n) {
        ("PID", 2) => "patient id external",
        ("PID", 3) => "patient identifier list",
        ("PID", 4) => "alternate patient id",
        ("PID", 5) => "patient name",
        ("PID", 6) => "mother maiden name",
        ("PID", 7) => "date of birth",
        ("PID", 11) => "patient address",
        ("PID", 13) => "phone number home",
        ("PID", 14) => "phone number business",
        ("PID", 18) => "patient account number",
        ("PID", 19) => "ssn number patient",
        ("PID", 20) => "driver license number",
        ("NK1", 2) => "next of kin name",
        ("NK1", 4) => "next of kin address",
        ("NK1", 5) => "phone number",
        ("NK1", 37) => "ssn",
        ("GT1", 12) => "guarantor ssn",
        ("IN1", 49) => "insured id number",
        ("IN2", 2) => "insured ssn",
        _ => "",
    }
}

/// Identifier type codes (HL7 table 0203) of a CX list (PID-3), as context words.
fn cx_types(value: &str, d: Delims) -> Vec<&'static str> {
    let mut out = Vec::new();
    for rep in value.split(d.repetition) {
        let code = rep.split(d.component).nth(4).unwrap_or("");
        let word = match code.trim() {
            "SS" => "ssn",
            "MR" | "MRN" => "mrn medical record number",
            "MB" | "MC" => "member id medicare",
            "DL" => "driver license",
            "AN" => "account number",
            "NPI" => "npi",
            _ => continue,
        };
        out.push(word);
    }
    out
}

/// Undoes ER7 escapes. `\Xhh…\` bytes are read as UTF-8 (Latin-1 when not valid UTF-8).
fn unescape(value: &str, d: Delims) -> Cow<'_, str> {
    if !value.contains(d.escape) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find(d.escape) {
        out.push_str(rest.get(..start).unwrap_or(""));
        let after = rest.get(start + d.escape.len_utf8()..).unwrap_or("");
        let Some(end) = after.find(d.escape) else {
            // Unterminated: keep it literally.
            out.push_str(rest.get(start..).unwrap_or(""));
            return Cow::Owned(out);
        };
        let code = after.get(..end).unwrap_or("");
        match code {
            "F" => out.push(d.field),
            "S" => out.push(d.component),
            "T" => out.push(d.subcomponent),
            "R" => out.push(d.repetition),
            "E" => out.push(d.escape),
            ".br" => out.push('\n'),
            _ if code.starts_with('X') || code.starts_with('x') => {
                let hex = code.get(1..).unwrap_or("");
                let bytes: Vec<u8> = hex
                    .as_bytes()
                    .chunks(2)
                    .filter_map(|p| std::str::from_utf8(p).ok())
                    .filter_map(|p| u8::from_str_radix(p, 16).ok())
                    .collect();
                match std::str::from_utf8(&bytes) {
                    Ok(s) => out.push_str(s),
                    Err(_) => out.extend(bytes.iter().map(|b| char::from(*b))),
                }
            }
            // Formatting (\H\, \N\, \.sp\ …) and charset escapes carry no text.
            _ => {}
        }
        rest = after.get(end + d.escape.len_utf8()..).unwrap_or("");
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// [`unescape`] with the delimiters an `MSH` line declares (for the fuzz facade).
pub(crate) fn unescape_with(msh: &str, value: &str) -> String {
    unescape(value, Delims::from_msh(msh)).into_owned()
}

/// Scans every field of every segment of an ER7 message (or several, one after the other).
pub(crate) fn scan_hl7(sc: &mut Scanner<'_>, text: &str, prefix: &str, chain: &[&'static str]) {
    let mut d = Delims::from_msh(text.trim_start_matches(['\r', '\n', ' ', '\t', '\u{feff}']));
    let mut escaped_chain = chain.to_vec();
    escaped_chain.push("hl7-escape");
    for line in text.split(['\r', '\n']) {
        let line = line.trim_start_matches('\u{feff}');
        if line.is_empty() {
            continue;
        }
        if line.starts_with("MSH") {
            d = Delims::from_msh(line);
        }
        let mut fields = line.split(d.field);
        let seg = fields.next().unwrap_or("");
        let seg_ok = seg.len() == 3 && seg.bytes().all(|b| b.is_ascii_alphanumeric());
        let seg_name = if seg_ok { seg } else { "SEG" };
        if !seg_ok {
            // Not a segment id: the line is text (and the id itself could be data).
            sc.segment(&Segment {
                text: line,
                loc: Loc::Named {
                    prefix,
                    name: "text",
                },
                ctx: FieldCtx::default(),
                chain,
                sel: None,
            });
            continue;
        }
        for (i, field) in fields.enumerate() {
            // MSH-1 is the separator itself, so the first value after `MSH|` is MSH-2.
            let n = if seg_name == "MSH" { i + 2 } else { i + 1 };
            if field.is_empty() || (seg_name == "MSH" && n == 2) {
                continue;
            }
            let label = format!("{seg_name}-{n}");
            let sel = format!("hl7:{label}");
            let value = unescape(field, d);
            let mut extra: Vec<&str> = vec![label.as_str(), field_name(seg_name, n)];
            if seg_name == "PID" && matches!(n, 2..=4) {
                extra.extend(cx_types(field, d));
            }
            let this_chain: &[&'static str] = if matches!(value, Cow::Owned(_)) {
                &escaped_chain
            } else {
                chain
            };
            sc.segment(&Segment {
                text: &value,
                loc: Loc::Named {
                    prefix,
                    name: &label,
                },
                ctx: FieldCtx {
                    path: &[],
                    extra: &extra,
                },
                chain: this_chain,
                sel: Some(&sel),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Delims = Delims {
        field: '|',
        component: '^',
        repetition: '~',
        escape: '\\',
        subcomponent: '&',
    };

    #[test]
    fn escapes() {
        assert_eq!(unescape(r"536\F\22", D), "536|22");
        assert_eq!(unescape(r"\X3533362D32322D31323334\", D), "536-22-1234");
        assert_eq!(unescape(r"a\S\b\T\c\R\d\E\e", D), r"a^b&c~d\e");
        assert_eq!(unescape(r"x\H\y\N\z", D), "xyz");
        assert_eq!(unescape(r"open\F", D), r"open\F");
        assert_eq!(unescape("plain", D), "plain");
    }

    #[test]
    fn custom_delimiters() {
        let d = Delims::from_msh("MSH#*!$%#APP");
        assert_eq!(
            (d.field, d.component, d.repetition, d.escape, d.subcomponent),
            ('#', '*', '!', '$', '%')
        );
        assert!(looks_like_hl7("MSH|^~\\&|A"));
        assert!(!looks_like_hl7("MSHA"));
        assert!(!looks_like_hl7("{\"a\":1}"));
    }

    #[test]
    fn cx_type_codes() {
        assert_eq!(
            cx_types("555444444^^^SSA^SS~12345^^^H^MR", D),
            ["ssn", "mrn medical record number"]
        );
    }
}
