use crate::gateway::answer::error_body;
use crate::gateway::checks::{audit_header_problem, header_selected};
use crate::verdict::Reason;

#[test]
fn error_body_is_valid_json_without_request_data() {
    let b = error_body(Reason::PhiDetected, "abc", &["us-ssn", "email"]);
    let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["reason"], "phi_detected");
    assert_eq!(v["rules"][1], "email");
    let b = error_body(Reason::MissingAuditHeader, "abc", &[]);
    let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert!(v.get("rules").is_none());
}

#[test]
fn audit_header_format() {
    let mut h = http::HeaderMap::new();
    let check = |h: &http::HeaderMap| audit_header_problem(&mut h.get_all("x-a").iter(), 16);
    assert_eq!(check(&h), Some(Reason::MissingAuditHeader));
    h.insert("x-a", http::HeaderValue::from_static("ticket-42:alice"));
    assert_eq!(check(&h), None);
    h.insert("x-a", http::HeaderValue::from_static(""));
    assert_eq!(check(&h), Some(Reason::MalformedAuditHeader));
    h.insert("x-a", http::HeaderValue::from_static("has space"));
    assert_eq!(check(&h), Some(Reason::MalformedAuditHeader));
    h.insert("x-a", http::HeaderValue::from_static("aaaaaaaaaaaaaaaaa"));
    assert_eq!(check(&h), Some(Reason::MalformedAuditHeader));
    h.insert("x-a", http::HeaderValue::from_static("one"));
    h.append("x-a", http::HeaderValue::from_static("two"));
    assert_eq!(check(&h), Some(Reason::MalformedAuditHeader));
}

#[test]
fn encodings_and_header_selectors() {
    use crate::engine::content_encoding_supported as ok;
    assert!(ok("gzip") && ok("gzip, br") && ok("GZIP") && ok("x-gzip, zstd, identity"));
    assert!(!ok("compress") && !ok("gzip, lzma"));
    let sel = vec!["referer".to_string(), "x-patient-*".to_string()];
    assert!(header_selected(&sel, "x-patient-name"));
    assert!(header_selected(&sel, "referer"));
    assert!(!header_selected(&sel, "x-other"));
}
