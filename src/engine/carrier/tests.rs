use std::borrow::Cow;

use super::charset::{transcode_utf16, utf16_by_nuls};
use super::content_type::{media_type, Media};
use super::json::{parse_json, Node};

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

/// The NUL sniff without a BOM, past its 4 KiB sample, and its no-NUL shortcut.
#[test]
fn utf16_sniffed_by_nuls() {
    let text = "{\"note\":\"536-22-1234\"}".repeat(200);
    let le: Vec<u8> = text.encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
    let be: Vec<u8> = text.encode_utf16().flat_map(|u| u.to_be_bytes()).collect();
    assert!(le.len() > 4096);
    assert_eq!(utf16_by_nuls(&le), Some(true));
    assert_eq!(utf16_by_nuls(&be), Some(false));
    assert_eq!(transcode_utf16(&le, None).as_deref(), Some(text.as_str()));
    assert_eq!(utf16_by_nuls(text.as_bytes()), None);
    let mut one_nul = text.clone().into_bytes();
    one_nul[10] = 0;
    assert_eq!(utf16_by_nuls(&one_nul), None);
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
