use crate::config::Inspect;
use crate::gateway::answer::error_body;
use crate::gateway::checks::audit_header_problem;
use crate::verdict::Reason;

#[test]
fn error_body_is_valid_json_without_request_data() {
    let b = error_body(Reason::PhiDetected, "abc", &["us-ssn", "email"], &[]);
    let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["reason"], "phi_detected");
    assert_eq!(v["rules"][1], "email");
    let b = error_body(Reason::MissingAuditHeader, "abc", &[], &[]);
    let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert!(v.get("rules").is_none());
    assert!(v.get("denied_entries").is_none());
    let b = error_body(Reason::InsufficientScope, "abc", &[], &[0, 3]);
    let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["reason"], "insufficient_scope");
    assert_eq!(v["denied_entries"], serde_json::json!([0, 3]));
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
    let mut ins = Inspect::everything();
    ins.headers = vec!["referer".to_string(), "x-patient-*".to_string()];
    assert!(ins.header_selected("x-patient-name"));
    assert!(ins.header_selected("referer"));
    assert!(!ins.header_selected("x-other"));
    // The default selects every header but the skip list; an exact name beats the list.
    let mut ins = Inspect::everything();
    assert!(ins.header_selected("x-patient-ssn") && ins.header_selected("cookie"));
    assert!(ins.header_selected("authorization") && ins.header_selected("user-agent"));
    for skipped in crate::config::SKIPPED_HEADERS {
        assert!(!ins.header_selected(skipped), "{skipped}");
    }
    ins.headers.push("traceparent".into());
    assert!(ins.header_selected("traceparent"));
    ins.skip_headers.push("x-b3-*".into());
    assert!(!ins.header_selected("x-b3-traceid"));
}
