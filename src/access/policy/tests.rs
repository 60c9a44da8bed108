use std::path::PathBuf;

use serde_json::json;

use super::*;
use crate::access::compartment::Escape;

const DEFAULT: &str = include_str!("../../../deploy/policy/default.yaml");

/// The shipped default policy (deploy/policy/default.yaml), for the unit tests of this folder.
pub(super) fn default_policy() -> Policy {
    Policy::from_sources(&[(PathBuf::from("default.yaml"), DEFAULT.to_string())])
        .unwrap_or_else(|e| panic!("{e}"))
}

fn load(text: &str) -> Result<Policy, PolicyError> {
    Policy::from_sources(&[(PathBuf::from("p.yaml"), text.to_string())])
}

fn load_err(text: &str) -> String {
    match load(text) {
        Ok(_) => panic!("loaded: {text}"),
        Err(e) => e.to_string(),
    }
}

fn subject(scope: &str, roles: &[&str], patient: Option<&str>) -> Subject {
    Subject {
        scope: scope.to_string(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        permissions: serde_json::Value::Null,
        patient: patient.map(str::to_string),
    }
}

fn eval(p: &Policy, s: &Subject, method: &str, target: &str, body: Option<&[u8]>) -> Decision {
    p.evaluate(
        s,
        &AccessRequest {
            method,
            target,
            base: "/fhir",
            body,
            if_none_exist: false,
        },
    )
}

#[test]
fn the_shipped_policy_passes_its_own_tests_and_lint() {
    let p = default_policy();
    let failures = p.run_inline_tests();
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(p.lint().is_empty(), "{:#?}", p.lint());
    assert!(p.test_count() >= 30);
    assert_eq!(p.roles().len(), 4);
    assert_eq!(p.digest().len(), 64);
}

#[test]
fn break_glass_eligibility_comes_from_the_role() {
    let p = default_policy();
    let d = eval(
        &p,
        &subject("user/*.rs", &["emergency"], None),
        "GET",
        "/fhir/Patient/pat-2",
        None,
    );
    assert!(d.allow && d.break_glass_eligible);
    // Eligible even when denied: the gateway decides on the override.
    let d = eval(
        &p,
        &subject("user/*.rs", &["emergency"], None),
        "DELETE",
        "/fhir/Patient/pat-2",
        None,
    );
    assert!(!d.allow && d.break_glass_eligible);
    let d = eval(
        &p,
        &subject("user/*.rs", &["clinician"], None),
        "GET",
        "/fhir/Patient/pat-2",
        None,
    );
    assert!(!d.break_glass_eligible);
}

#[test]
fn patient_binding_reports_the_patient_and_the_post_check() {
    let p = default_policy();
    let s = subject("patient/*.cruds", &[], Some("pat-1"));
    let d = eval(&p, &s, "GET", "/fhir/Observation/obs-2", None);
    assert!(d.allow);
    assert_eq!(d.post_check, PostCheck::Response);
    assert_eq!(d.bound_patient.as_deref(), Some("pat-1"));
    let body =
        br#"{"resourceType":"Observation","id":"obs-1","subject":{"reference":"Patient/pat-1"}}"#;
    // The default roles grant nobody delete; a patient app with no roles gets scopes only.
    let d = eval(&p, &s, "PUT", "/fhir/Observation/obs-1", Some(body));
    assert!(d.allow, "{d:?}");
    assert_eq!(d.post_check, PostCheck::Target);
    let d = eval(&p, &s, "PUT", "/fhir/Observation/obs-1", None);
    assert_eq!(d.reason, Reason::Compartment(Escape::BodyOutside));
    let d = eval(&p, &s, "PUT", "/fhir/Observation/obs-1", Some(b"not json"));
    assert_eq!(d.reason, Reason::Compartment(Escape::BodyOutside));
    // A user scope is not patient-bound, even with a patient claim.
    let d = eval(
        &p,
        &subject("user/*.rs", &["clinician"], Some("pat-1")),
        "GET",
        "/fhir/Patient/pat-2",
        None,
    );
    assert!(d.allow);
    assert_eq!(d.bound_patient, None);
}

#[test]
fn escalation_by_star_and_mixing_is_refused() {
    let p = default_policy();
    // patient/*.cruds for pat-1 and a clinician role: still bound to pat-1.
    let s = subject("patient/*.cruds", &["clinician"], Some("pat-1"));
    for target in [
        "/fhir/Patient/pat-2",
        "/fhir/Observation?subject=Patient/pat-2",
        "/fhir/Patient/pat-2/*",
        "/fhir?_type=Patient",
        "/fhir/Observation/_history",
    ] {
        assert!(!eval(&p, &s, "GET", target, None).allow, "{target}");
    }
    // A user scope on one type and a patient star: a Condition read of another patient is
    // decided by the patient scope and refused.
    let s = subject(
        "user/Observation.rs patient/*.rs",
        &["clinician"],
        Some("pat-1"),
    );
    assert!(eval(&p, &s, "GET", "/fhir/Observation?code=x", None).allow);
    let d = eval(&p, &s, "GET", "/fhir/Condition?patient=pat-2", None);
    assert_eq!(d.reason, Reason::Compartment(Escape::ValueMismatch));
    // Conditional update needs u and s in one context: u from user, s from patient is not it.
    let s = subject(
        "user/Observation.u patient/Observation.s",
        &["clinician"],
        Some("pat-1"),
    );
    let d = eval(
        &p,
        &s,
        "PUT",
        "/fhir/Observation?subject=Patient/pat-1",
        Some(b"{}"),
    );
    assert_eq!(d.reason, Reason::InsufficientScope);
    // _include reaching a type the scopes do not cover.
    let s = subject("user/Observation.rs", &["clinician"], None);
    let d = eval(
        &p,
        &s,
        "GET",
        "/fhir/Observation?code=x&_include=Observation:subject:Patient",
        None,
    );
    assert_eq!(d.reason, Reason::InsufficientScope);
    let d = eval(&p, &s, "GET", "/fhir/Observation?code=x&_include=*", None);
    assert_eq!(d.reason, Reason::InsufficientScope);
    let s = subject("user/Observation.rs user/Patient.rs", &["clinician"], None);
    assert!(
        eval(
            &p,
            &s,
            "GET",
            "/fhir/Observation?code=x&_include=Observation:subject:Patient",
            None
        )
        .allow
    );
}

#[test]
fn bundles_list_every_denied_entry_with_its_reason() {
    let p = default_policy();
    let s = subject("patient/*.rs", &[], Some("pat-1"));
    let body = json!({"resourceType":"Bundle","type":"batch","entry":[
        {"request":{"method":"GET","url":"Patient/pat-1"}},
        {"request":{"method":"GET","url":"Patient/pat-2"}},
        {"request":{"method":"GET","url":"Observation?subject=Patient/pat-1"}},
        {"request":{"method":"GET","url":"observation/obs-1"}},
        {"request":{"method":"DELETE","url":"Patient/pat-1"}},
        {"request":{"method":"GET","url":"https://evil/fhir/Patient/pat-1"}}
    ]})
    .to_string();
    let d = eval(&p, &s, "POST", "/fhir", Some(body.as_bytes()));
    assert!(!d.allow);
    assert_eq!(d.reason, Reason::BundleEntryDenied);
    assert_eq!(d.denied_entries, vec![1, 3, 4, 5]);
    assert_eq!(
        d.entry_reasons,
        vec![
            Reason::Compartment(Escape::OtherPatient),
            Reason::UnknownResourceType,
            Reason::InsufficientScope,
            Reason::MalformedRequest,
        ]
    );
    let d = eval(&p, &s, "POST", "/fhir", Some(b"{"));
    assert_eq!(d.reason, Reason::MalformedBundle);
    let d = eval(&p, &s, "POST", "/fhir", None);
    assert_eq!(d.reason, Reason::MalformedBundle);
    // All in scope, one read by id of an Observation: allowed, the response must be checked.
    let ok = json!({"resourceType":"Bundle","type":"batch","entry":[
        {"request":{"method":"GET","url":"Patient/pat-1"}},
        {"request":{"method":"GET","url":"Observation/obs-1"}}
    ]})
    .to_string();
    let d = eval(&p, &s, "POST", "/fhir", Some(ok.as_bytes()));
    assert!(d.allow);
    assert_eq!(d.post_check, PostCheck::Response);
}

#[test]
fn default_settings_deny_subjects_without_roles() {
    let p = load(
        "roles:\n  - name: r\n    grants:\n      - types: ['*']\n        interactions: [read]\n",
    )
    .unwrap();
    let d = eval(
        &p,
        &subject("patient/*.rs", &[], Some("pat-1")),
        "GET",
        "/fhir/Patient/pat-1",
        None,
    );
    assert_eq!(d.reason, Reason::NoMatchingRole);
    let d = eval(
        &p,
        &subject("user/*.rs", &["r"], None),
        "GET",
        "/fhir/Patient/pat-1",
        None,
    );
    assert!(d.allow);
    let d = eval(
        &p,
        &subject("user/*.rs", &["r"], None),
        "GET",
        "/fhir/Patient?name=x",
        None,
    );
    assert_eq!(d.reason, Reason::NoMatchingRole);
    let d = eval(
        &p,
        &subject("", &["r"], None),
        "GET",
        "/fhir/Patient/pat-1",
        None,
    );
    assert_eq!(d.reason, Reason::InsufficientScope);
    let d = eval(&p, &subject("", &[], None), "GET", "/fhir/metadata", None);
    assert!(d.allow);
}

#[test]
fn scopes_can_be_optional_for_claim_only_tokens() {
    let p = load(
        "settings:\n  require_scopes: false\npermissions:\n  - claim: ehr_read\n    value: 'patient.*'\n    grants:\n      - types: [Patient, Observation]\n        interactions: [read, search]\n",
    )
    .unwrap();
    let mut s = subject("", &[], None);
    s.permissions = json!({"ehr_read": ["patient.*"], "ehr_write": ["progress_notes"]});
    assert!(eval(&p, &s, "GET", "/fhir/Observation/obs-1", None).allow);
    assert_eq!(
        eval(&p, &s, "GET", "/fhir/Condition/c-1", None).reason,
        Reason::NoMatchingRole
    );
    // A patient claim binds when no user/system scope grants.
    s.patient = Some("pat-1".into());
    assert_eq!(
        eval(&p, &s, "GET", "/fhir/Patient/pat-2", None).reason,
        Reason::Compartment(Escape::OtherPatient)
    );
    // The permissions claim as one string, and odd shapes.
    s.patient = None;
    s.permissions = json!({"ehr_read": "patient.*"});
    assert!(eval(&p, &s, "GET", "/fhir/Patient/pat-2", None).allow);
    for odd in [
        json!(null),
        json!([]),
        json!("patient.*"),
        json!({"ehr_read": [1, null]}),
    ] {
        s.permissions = odd;
        assert!(!eval(&p, &s, "GET", "/fhir/Patient/pat-2", None).allow);
    }
}

#[test]
fn operations_need_a_listing_at_the_right_level() {
    let p = load(
        "roles:\n  - name: r\n    grants:\n      - types: ['*']\n        interactions: [read, search]\n    operations: ['Patient/[id]/$everything', '*/$validate', '$export']\n",
    )
    .unwrap();
    let s = subject("user/*.rs", &["r"], None);
    assert!(eval(&p, &s, "GET", "/fhir/Patient/pat-1/$everything", None).allow);
    assert!(eval(&p, &s, "POST", "/fhir/Observation/$validate", Some(b"{}")).allow);
    assert!(eval(&p, &s, "GET", "/fhir/$export", None).allow);
    for (m, t) in [
        ("GET", "/fhir/Patient/$everything"),
        ("GET", "/fhir/Encounter/e-1/$everything"),
        ("POST", "/fhir/Observation/obs-1/$validate"),
        ("GET", "/fhir/Patient/$export"),
        ("POST", "/fhir/$reindex"),
    ] {
        assert_eq!(
            eval(&p, &s, m, t, None).reason,
            Reason::OperationNotAllowed,
            "{m} {t}"
        );
    }
    // scopes_only subjects never get operations.
    let p = load("settings:\n  without_roles: scopes_only\n").unwrap();
    let d = eval(
        &p,
        &subject("patient/*.rs", &[], Some("pat-1")),
        "GET",
        "/fhir/Patient/pat-1/$everything",
        None,
    );
    assert_eq!(d.reason, Reason::OperationNotAllowed);
}

#[test]
fn load_errors_name_file_line_and_field() {
    for (text, line, field, words) in [
        ("roles:\n  - name: a\n    grants:\n      - types: [patient]\n        interactions: [read]\n", 4, "roles[0].grants[0].types[0]", "unknown resource type"),
        ("roles:\n  - name: a\n    grants:\n      - types: [Patient]\n        interactions: [read, write]\n", 5, "roles[0].grants[0].interactions[1]", "unknown interaction"),
        ("roles:\n  - name: a\n    operations: [everything]\n", 3, "roles[0].operations[0]", "is not `$name`"),
        ("roles:\n  - name: a\n    operations: ['Widget/$x']\n", 3, "roles[0].operations[0]", "is not `$name`"),
        ("roles:\n  - name: a\n    colour: red\n", 3, "roles[0].colour", "unknown field"),
        ("rolez: []\n", 1, "rolez", "unknown field"),
        ("roles:\n  - name: a\n  - name: a\n", 3, "roles[1].name", "duplicate role"),
        ("settings:\n  shared_types: [Observation]\n", 2, "settings.shared_types[0]", "patient compartment"),
        ("settings:\n  shared_types: [Patient]\n", 2, "settings.shared_types[0]", "not an R4"),
        ("settings:\n  without_roles: maybe\n", 2, "settings.without_roles", "unknown variant"),
        ("tests:\n  - name: t\n    request: {method: GET, url: metadata}\n    expect: allow\n    reason: fine\n", 5, "tests[0].reason", "unknown reason"),
        ("tests:\n  - name: t\n    request: {method: GET, url: metadata}\n    expect: maybe\n", 4, "tests[0].expect", "unknown variant"),
        ("tests:\n  - name: t\n    request: {method: GET, url: metadata}\n    expect: allow\n    post_check: later\n", 5, "tests[0].post_check", "unknown post_check"),
        ("tests:\n  - name: t\n    request: {method: GET, url: metadata}\n    expect: allow\n    reason: patient_mismatch\n", 5, "tests[0].reason", "only have"),
        ("disable: [ghost]\n", 1, "disable[0]", "no role has this name"),
        ("roles:\n  - name: a\n    override: true\n", 2, "roles[0].override", "no earlier policy directory"),
        ("permissions:\n  - claim: a\n    value: b\n    valuex: c\n", 4, "permissions[0].valuex", "unknown field"),
    ] {
        let e = match load(text) {
            Ok(_) => panic!("loaded: {text}"),
            Err(PolicyError::Source(e)) => e,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(e.line, line, "{text}: {e}");
        assert_eq!(e.field, field, "{text}: {e}");
        assert!(e.to_string().contains(words), "{text}: {e}");
        assert!(e.to_string().starts_with("p.yaml:"), "{e}");
    }
    assert!(load_err("roles: [").contains("p.yaml"));
}

#[test]
fn layers_override_and_disable_roles() {
    let base = (
        PathBuf::from("base/a.yaml"),
        "roles:\n  - name: nurse\n    grants:\n      - types: [Patient]\n        interactions: [read]\n  - name: billing\n    grants:\n      - types: [Claim]\n        interactions: [read]\n".to_string(),
    );
    let site = (
        PathBuf::from("site/a.yaml"),
        "roles:\n  - name: nurse\n    override: true\n    grants:\n      - types: [Observation]\n        interactions: [read]\ndisable: [billing]\n".to_string(),
    );
    let p = Policy::from_layers(&[vec![base.clone()], vec![site]]).unwrap();
    assert_eq!(p.roles().len(), 1);
    let s = subject("user/*.rs", &["nurse"], None);
    assert!(eval(&p, &s, "GET", "/fhir/Observation/o", None).allow);
    assert!(!eval(&p, &s, "GET", "/fhir/Patient/p", None).allow);
    // Same name in a later layer without override: an error naming the first definition.
    let clash = (
        PathBuf::from("site/b.yaml"),
        "roles:\n  - name: nurse\n    grants: []\n".to_string(),
    );
    let e = Policy::from_layers(&[vec![base.clone()], vec![clash]])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("base/a.yaml:2") && e.contains("override: true"),
        "{e}"
    );
    // Two files of one layer both setting settings.
    let s1 = (
        PathBuf::from("a.yaml"),
        "settings: {require_scopes: false}\n".to_string(),
    );
    let s2 = (
        PathBuf::from("b.yaml"),
        "settings: {capabilities: false}\n".to_string(),
    );
    assert!(Policy::from_sources(&[s1.clone(), s2.clone()]).is_err());
    let p = Policy::from_layers(&[vec![s1], vec![s2]]).unwrap();
    assert!(!p.settings().require_scopes && !p.settings().capabilities);
}

#[test]
fn the_lint_finds_untested_and_empty_roles() {
    let p = load("roles:\n  - name: ghost\n  - name: tested\n    grants:\n      - types: [Patient]\n        interactions: [read]\ntests:\n  - name: t\n    subject: {roles: [tested], scope: 'user/*.rs'}\n    request: {method: GET, url: Patient/p}\n    expect: allow\n").unwrap();
    let lint: Vec<String> = p.lint().iter().map(|l| l.to_string()).collect();
    assert_eq!(lint.len(), 2, "{lint:?}");
    assert!(lint[0].contains("`ghost` is unreachable") && lint[0].starts_with("p.yaml:2"));
    assert!(lint[1].contains("no test exercises role `ghost`"));
    assert!(load("{}").unwrap().lint()[0].message.contains("no inline"));
}

#[test]
fn failing_tests_say_what_was_expected() {
    let p = load("tests:\n  - name: t\n    subject: {scope: 'patient/*.rs', patient: p1}\n    request: {method: GET, url: Patient/p2}\n    expect: allow\n").unwrap();
    let f = p.run_inline_tests();
    assert_eq!(f.len(), 1);
    let text = f[0].to_string();
    assert!(
        text.starts_with("p.yaml:2: test `t`: expected allow, got deny"),
        "{text}"
    );
}

#[test]
fn reasons_are_stable_strings_with_statuses() {
    assert_eq!(
        Reason::Compartment(Escape::OtherPatient).as_str(),
        "patient_mismatch"
    );
    assert_eq!(
        Reason::Compartment(Escape::OtherPatient).answer(),
        "insufficient_scope"
    );
    assert_eq!(Reason::MalformedRequest.status(), 400);
    assert_eq!(Reason::NoMatchingRole.status(), 403);
    let all = Reason::all();
    let mut dedup = all.clone();
    dedup.sort_unstable();
    dedup.dedup();
    assert_eq!(all.len(), dedup.len());
    assert!(all
        .iter()
        .all(|r| r.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')));
}

#[test]
fn never_panics_on_odd_requests() {
    let p = default_policy();
    let s = subject("patient/*.cruds", &["clinician"], Some(""));
    for (m, t) in [
        ("GET", ""),
        ("GET", "/"),
        ("POST", "/fhir"),
        ("GET", "/fhir/%"),
        ("X", "/fhir/Patient"),
    ] {
        let _ = eval(&p, &s, m, t, Some(b"\xff\xfe"));
        let _ = eval(&p, &s, m, t, None);
    }
    // An empty patient claim is no patient context.
    let d = eval(&p, &s, "GET", "/fhir/Patient/pat-1", None);
    assert_eq!(d.reason, Reason::NoPatientContext);
}

#[test]
fn subjects_come_from_claims() {
    let s = Subject::from_claims(&json!({
        "sub": "u-1",
        "scope": "openid user/*.rs",
        "roles": ["nurse", 7, "clinician"],
        "permissions": {"ehr_read": ["patient.*"]},
        "patient": "pat-1"
    }));
    assert_eq!(s.scope, "openid user/*.rs");
    assert_eq!(s.roles, vec!["nurse", "clinician"]);
    assert_eq!(s.permissions, json!({"ehr_read": ["patient.*"]}));
    assert_eq!(s.patient.as_deref(), Some("pat-1"));
    let s = Subject::from_claims(
        &json!({"scp": ["patient/*.rs", "openid"], "roles": "billing", "patient": 12}),
    );
    assert_eq!(s.scope, "patient/*.rs openid");
    assert_eq!(s.roles, vec!["billing"]);
    assert_eq!(s.patient, None);
    assert_eq!(s.permissions, serde_json::Value::Null);
    let empty = Subject::from_claims(&json!(null));
    assert!(empty.scope.is_empty() && empty.roles.is_empty() && empty.patient.is_none());
}
