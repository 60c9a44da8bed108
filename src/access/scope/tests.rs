use super::*;
use crate::access::fhir::{Param, Params};

fn set(s: &str) -> ScopeSet {
    ScopeSet::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn need(letter: Letter, ty: &str) -> Need<'_> {
    Need {
        letter,
        resource_type: Some(ty),
        params: None,
    }
}

fn any_type(letter: Letter) -> Need<'static> {
    Need {
        letter,
        resource_type: None,
        params: None,
    }
}

fn params(pairs: &[(&str, &[&str])]) -> Params {
    Params(
        pairs
            .iter()
            .map(|(n, v)| Param {
                name: n.to_string(),
                values: v.iter().map(|s| s.to_string()).collect(),
            })
            .collect(),
    )
}

#[test]
fn v1_forms_map_to_v2_letters() {
    for (v1, v2) in [
        ("patient/Observation.read", "rs"),
        ("patient/Observation.write", "cud"),
        ("user/*.*", "cruds"),
        ("system/Patient.read", "rs"),
    ] {
        let s = Scope::parse(v1).unwrap();
        let Scope::Resource(r) = s else {
            panic!("{v1}")
        };
        assert_eq!(r.perms.letters(), v2, "{v1}");
        assert_eq!(r.version, Version::V1);
    }
}

#[test]
fn v2_letters_in_order_parse() {
    for (s, letters) in [
        ("patient/Observation.rs", "rs"),
        ("user/*.cruds", "cruds"),
        ("patient/Observation.c", "c"),
        ("user/Encounter.ud", "ud"),
        ("system/*.s", "s"),
        ("user/Condition.crs", "crs"),
    ] {
        let Scope::Resource(r) = Scope::parse(s).unwrap() else {
            panic!("{s}")
        };
        assert_eq!(r.perms.letters(), letters, "{s}");
        assert_eq!(r.version, Version::V2);
    }
}

#[test]
fn out_of_order_repeated_or_unknown_letters_are_refused() {
    for s in [
        "patient/Observation.sr",
        "patient/Observation.rr",
        "patient/Observation.dus",
        "patient/Observation.rw",
        "patient/Observation.x",
        "patient/Observation.",
        "patient/Observation.read-only",
        "patient/Observation.READ",
        "patient/Observation.all",
        "patient/Observation",
        "user/*.cruds ",
    ] {
        let r = Scope::parse(s.trim_end_matches(' '));
        if s.ends_with(' ') {
            assert!(r.is_ok(), "{s}");
            continue;
        }
        assert!(r.is_err(), "{s} parsed as {r:?}");
    }
}

#[test]
fn types_are_case_sensitive_and_must_be_r4_types() {
    assert!(matches!(
        Scope::parse("patient/observation.rs"),
        Err(ScopeError::UnknownType(_))
    ));
    assert!(matches!(
        Scope::parse("patient/Widget.rs"),
        Err(ScopeError::UnknownType(_))
    ));
    assert!(Scope::parse("patient/Observation.rs").is_ok());
}

#[test]
fn contexts_are_exactly_patient_user_system() {
    for s in [
        "*/Observation.rs",
        "Patient/Observation.rs",
        "admin/*.*",
        "/Observation.rs",
    ] {
        assert!(
            matches!(Scope::parse(s), Err(ScopeError::BadContext(_))),
            "{s}"
        );
    }
}

#[test]
fn non_resource_scopes_are_recognised_and_grant_nothing() {
    let s = set("openid fhirUser launch/patient launch offline_access online_access profile email");
    assert_eq!(s.scopes()[0], Scope::OpenId);
    assert_eq!(s.scopes()[1], Scope::FhirUser);
    assert_eq!(s.scopes()[2], Scope::Launch("patient".into()));
    assert_eq!(s.scopes()[4], Scope::OfflineAccess);
    assert_eq!(s.scopes()[7], Scope::Other("email".into()));
    for c in [Context::Patient, Context::User, Context::System] {
        assert!(!s.permits(c, &need(Letter::Read, "Patient")));
    }
    assert!(Scope::parse("launch/Patient").is_err());
    assert!(Scope::parse("launch/").is_err());
}

#[test]
fn one_malformed_scope_refuses_the_set() {
    assert!(ScopeSet::parse("openid patient/Observation.rs patient/Observation.sr").is_err());
    assert!(ScopeSet::parse(&"a ".repeat(MAX_SCOPE_BYTES)).is_err());
    assert!(ScopeSet::from_list(&["patient/Observation.rs", "user/*.cruds"]).is_ok());
    assert!(ScopeSet::from_list(&["patient/Observation.rs", "user/x.cruds"]).is_err());
}

#[test]
fn star_grants_any_type_but_only_in_its_context() {
    let s = set("patient/*.cruds");
    assert!(s.permits(Context::Patient, &need(Letter::Read, "Observation")));
    assert!(s.permits(Context::Patient, &any_type(Letter::Search)));
    // Escalation by star: a patient star never answers for user or system context.
    assert!(!s.permits(Context::User, &need(Letter::Read, "Observation")));
    assert!(!s.permits(Context::System, &any_type(Letter::Search)));
    assert_eq!(
        s.granting_context(&[need(Letter::Read, "Observation")]),
        Some(Context::Patient)
    );
}

#[test]
fn a_named_type_never_grants_every_type() {
    let s = set("user/Observation.rs user/Patient.rs");
    assert!(!s.permits(Context::User, &any_type(Letter::Search)));
    assert!(!s.permits(Context::User, &need(Letter::Read, "Condition")));
}

#[test]
fn write_does_not_imply_read() {
    let s = set("patient/Observation.write patient/Condition.c");
    assert!(!s.permits(Context::Patient, &need(Letter::Read, "Observation")));
    assert!(s.permits(Context::Patient, &need(Letter::Update, "Observation")));
    assert!(!s.permits(Context::Patient, &need(Letter::Read, "Condition")));
    assert!(s.permits(Context::Patient, &need(Letter::Create, "Condition")));
}

#[test]
fn v1_v2_mixing_grants_only_what_one_scope_grants() {
    // v1 read (rs) on Observation + v2 create on Condition: no update anywhere, no read of
    // Condition, no create of Observation.
    let s = set("patient/Observation.read patient/Condition.c");
    assert!(s.mixes_versions());
    assert!(!s.permits(Context::Patient, &need(Letter::Update, "Observation")));
    assert!(!s.permits(Context::Patient, &need(Letter::Read, "Condition")));
    assert!(!s.permits(Context::Patient, &need(Letter::Create, "Observation")));
    // Letters from two contexts never add up to a grant: u from user and s from patient.
    let s = set("user/Observation.u patient/Observation.s");
    let needs = [
        need(Letter::Update, "Observation"),
        need(Letter::Search, "Observation"),
    ];
    assert_eq!(s.granting_context(&needs), None);
    assert!(!set("patient/Observation.rs").mixes_versions());
}

#[test]
fn qualifiers_restrict_only() {
    let s = set("patient/Observation.rs?category=laboratory");
    let lab = params(&[("category", &["laboratory"])]);
    let mixed = params(&[("category", &["laboratory", "vital-signs"])]);
    let two = params(&[
        ("category", &["laboratory"]),
        ("category", &["vital-signs"]),
    ]);
    let none = params(&[("code", &["1234-5"])]);
    let search = |p: &'static Params| Need {
        letter: Letter::Search,
        resource_type: Some("Observation"),
        params: Some(p),
    };
    let lab: &'static Params = Box::leak(Box::new(lab));
    let mixed: &'static Params = Box::leak(Box::new(mixed));
    let two: &'static Params = Box::leak(Box::new(two));
    let none: &'static Params = Box::leak(Box::new(none));
    assert!(s.permits(Context::Patient, &search(lab)));
    assert!(!s.permits(Context::Patient, &search(mixed)));
    assert!(!s.permits(Context::Patient, &search(two)));
    assert!(!s.permits(Context::Patient, &search(none)));
    // A read by id cannot show the category: a qualified scope does not grant it.
    assert!(!s.permits(Context::Patient, &need(Letter::Read, "Observation")));
    // Qualifiers with a system|code value, percent-encoded.
    let s = set("patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category%7Claboratory");
    let sys: &'static Params = Box::leak(Box::new(params(&[(
        "category",
        &["http://terminology.hl7.org/CodeSystem/observation-category|laboratory"],
    )])));
    assert!(s.permits(Context::Patient, &search(sys)));
    assert!(!s.permits(Context::Patient, &search(lab)));
}

#[test]
fn malformed_qualifiers_are_refused() {
    for s in [
        "patient/Observation.read?category=laboratory",
        "patient/Observation.rs?",
        "patient/Observation.rs?category",
        "patient/Observation.rs?category=",
        "patient/Observation.rs?=x",
        "patient/Observation.rs?_has:x=y",
        "patient/Observation.rs?code:in=x",
        "patient/Observation.rs?category=%FF",
    ] {
        assert!(
            matches!(Scope::parse(s), Err(ScopeError::BadQualifier(_))),
            "{s}"
        );
    }
}

#[test]
fn display_is_v2() {
    let Scope::Resource(r) = Scope::parse("user/*.read").unwrap() else {
        panic!()
    };
    assert_eq!(r.to_string(), "user/*.rs");
}

#[test]
fn never_panics_on_odd_input() {
    for s in [
        "",
        "/",
        "//",
        ".",
        "patient/",
        "patient/.",
        "patient/*.",
        "patient/*?",
        "patient/*.rs?&",
        "patient/*.rs?a=b&",
        "\u{0}",
        "patient/\u{e9}.rs",
        "patient/*.r\u{e9}",
        "a/b/c.d",
        "patient//Observation.rs",
    ] {
        let _ = Scope::parse(s);
        let _ = ScopeSet::parse(s);
    }
}
