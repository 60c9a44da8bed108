use super::bundle::{parse_bundle, BundleKind};
use super::*;

fn c(method: &str, target: &str) -> Result<Classified, FhirError> {
    classify(&RequestParts {
        method,
        target,
        base: "/fhir",
        body: None,
        if_none_exist: false,
    })
}

fn i(method: &str, target: &str) -> Interaction {
    c(method, target)
        .unwrap_or_else(|e| panic!("{method} {target}: {e}"))
        .interaction
}

fn s(x: &str) -> String {
    x.to_string()
}

#[test]
fn every_interaction_shape() {
    use Interaction as I;
    let cases: Vec<(&str, &str, Interaction)> = vec![
        (
            "GET",
            "/fhir/Patient/pat-1",
            I::Read {
                resource_type: s("Patient"),
                id: s("pat-1"),
            },
        ),
        (
            "HEAD",
            "/fhir/Patient/pat-1",
            I::Read {
                resource_type: s("Patient"),
                id: s("pat-1"),
            },
        ),
        (
            "GET",
            "/fhir/Observation/obs-1/_history/2",
            I::Vread {
                resource_type: s("Observation"),
                id: s("obs-1"),
                vid: s("2"),
            },
        ),
        (
            "GET",
            "/fhir/Observation/obs-1/_history",
            I::HistoryInstance {
                resource_type: s("Observation"),
                id: s("obs-1"),
            },
        ),
        (
            "GET",
            "/fhir/Observation/_history",
            I::HistoryType {
                resource_type: s("Observation"),
            },
        ),
        ("GET", "/fhir/_history", I::HistorySystem),
        (
            "GET",
            "/fhir/Observation?code=x",
            I::SearchType {
                resource_type: s("Observation"),
            },
        ),
        (
            "POST",
            "/fhir/Observation/_search",
            I::SearchType {
                resource_type: s("Observation"),
            },
        ),
        ("GET", "/fhir?_type=Observation", I::SearchSystem),
        ("GET", "/fhir/", I::SearchSystem),
        ("POST", "/fhir/_search", I::SearchSystem),
        (
            "GET",
            "/fhir/Patient/pat-1/Observation?code=x",
            I::SearchCompartment {
                compartment: s("Patient"),
                id: s("pat-1"),
                resource_type: Some(s("Observation")),
            },
        ),
        (
            "GET",
            "/fhir/Patient/pat-1/*",
            I::SearchCompartment {
                compartment: s("Patient"),
                id: s("pat-1"),
                resource_type: None,
            },
        ),
        (
            "POST",
            "/fhir/Patient/pat-1/Observation/_search",
            I::SearchCompartment {
                compartment: s("Patient"),
                id: s("pat-1"),
                resource_type: Some(s("Observation")),
            },
        ),
        (
            "POST",
            "/fhir/Observation",
            I::Create {
                resource_type: s("Observation"),
                conditional: false,
            },
        ),
        (
            "PUT",
            "/fhir/Observation/obs-1",
            I::Update {
                resource_type: s("Observation"),
                id: s("obs-1"),
            },
        ),
        (
            "PUT",
            "/fhir/Observation?identifier=x",
            I::ConditionalUpdate {
                resource_type: s("Observation"),
            },
        ),
        (
            "PATCH",
            "/fhir/Observation/obs-1",
            I::Patch {
                resource_type: s("Observation"),
                id: s("obs-1"),
            },
        ),
        (
            "PATCH",
            "/fhir/Observation?identifier=x",
            I::ConditionalPatch {
                resource_type: s("Observation"),
            },
        ),
        (
            "DELETE",
            "/fhir/Observation/obs-1",
            I::Delete {
                resource_type: s("Observation"),
                id: s("obs-1"),
            },
        ),
        (
            "DELETE",
            "/fhir/Observation?code=x",
            I::ConditionalDelete {
                resource_type: s("Observation"),
            },
        ),
        (
            "GET",
            "/fhir/$export",
            I::Operation {
                name: s("export"),
                level: OpLevel::System,
            },
        ),
        (
            "POST",
            "/fhir/Patient/$match",
            I::Operation {
                name: s("match"),
                level: OpLevel::Type(s("Patient")),
            },
        ),
        (
            "GET",
            "/fhir/Patient/pat-1/$everything",
            I::Operation {
                name: s("everything"),
                level: OpLevel::Instance(s("Patient"), s("pat-1")),
            },
        ),
        ("GET", "/fhir/metadata", I::Capabilities),
    ];
    for (m, t, want) in cases {
        assert_eq!(i(m, t), want, "{m} {t}");
    }
}

#[test]
fn conditional_create_comes_from_if_none_exist() {
    let got = classify(&RequestParts {
        method: "POST",
        target: "/fhir/Patient",
        base: "/fhir",
        body: None,
        if_none_exist: true,
    })
    .unwrap();
    assert_eq!(
        got.interaction,
        Interaction::Create {
            resource_type: s("Patient"),
            conditional: true
        }
    );
}

#[test]
fn batch_and_transaction_come_from_the_body() {
    let parts = |body: &'static [u8]| RequestParts {
        method: "POST",
        target: "/fhir",
        base: "/fhir",
        body: Some(body),
        if_none_exist: false,
    };
    assert_eq!(
        classify(&parts(br#"{"resourceType":"Bundle","type":"batch"}"#))
            .unwrap()
            .interaction,
        Interaction::Batch
    );
    assert_eq!(
        classify(&parts(br#"{"resourceType":"Bundle","type":"transaction"}"#))
            .unwrap()
            .interaction,
        Interaction::Transaction
    );
    for bad in [
        &b"{}"[..],
        b"not json",
        br#"{"resourceType":"Bundle","type":"searchset"}"#,
    ] {
        assert!(matches!(
            classify(&parts(bad)),
            Err(FhirError::BadBundle(_))
        ));
    }
}

#[test]
fn resource_types_are_case_sensitive() {
    assert_eq!(c("GET", "/fhir/patient/pat-1"), Err(FhirError::UnknownType));
    assert_eq!(c("GET", "/fhir/PATIENT/pat-1"), Err(FhirError::UnknownType));
    assert_eq!(c("GET", "/fhir/Widget"), Err(FhirError::UnknownType));
    assert_eq!(
        c("GET", "/fhir/Patient/pat-1/observation"),
        Err(FhirError::UnknownType)
    );
    assert!(is_resource_type("Parameters"));
    assert_eq!(resource_types().len(), 146);
}

#[test]
fn dot_and_empty_segments_are_refused() {
    for t in [
        "/fhir/Patient/pat-1/../pat-2",
        "/fhir/Patient/./pat-2",
        "/fhir//Patient/pat-2",
        "/fhir/Patient//pat-2",
        "/fhir/Patient/%2e%2e/pat-2",
        "/fhir/Patient/%2E/pat-2",
        "/fhir/Patient/pat-1/%2e%2e%2fpat-2",
    ] {
        let r = c("GET", t);
        assert!(
            matches!(
                r,
                Err(FhirError::DotOrEmptySegment | FhirError::AmbiguousEncoding)
            ),
            "{t}: {r:?}"
        );
    }
}

#[test]
fn percent_decoding_happens_once_and_ambiguity_is_refused() {
    // Encoded unreserved characters decode once, consistently.
    assert_eq!(
        i("GET", "/fhir/Pati%65nt/pat%2D1"),
        Interaction::Read {
            resource_type: s("Patient"),
            id: s("pat-1")
        }
    );
    for t in [
        "/fhir/Patient%2Fpat-2",
        "/fhir/Patient/pat-1%2F..%2Fpat-2",
        "/fhir/Patient/pat%252F2",
        "/fhir/Patient%252Fpat-2",
        "/fhir/Patient/pat-1%5c..%5cpat-2",
        "/fhir/Patient/pat-1;jsessionid=x",
        "/fhir/Patient/pat-1%00",
        "/fhir/Patient/%",
        "/fhir/Patient/pat%2",
        "/fhir/Patient/pat%zz",
        "/fhir/Patient/%FF",
    ] {
        let r = c("GET", t);
        assert_eq!(r, Err(FhirError::AmbiguousEncoding), "{t}");
    }
    // Query keys: one decode; a key still holding `%` (double-encoded `_has`) is refused.
    let got = c("GET", "/fhir/Observation?%5Fhas:Group:member:_id=g").unwrap();
    assert_eq!(got.params.0[0].name, "_has:Group:member:_id");
    assert_eq!(
        c("GET", "/fhir/Observation?%255Fhas:Group:member:_id=g"),
        Err(FhirError::AmbiguousEncoding)
    );
    assert_eq!(
        c("GET", "/fhir/Observation?a%00=1"),
        Err(FhirError::AmbiguousEncoding)
    );
    assert_eq!(
        c("GET", "/fhir/Observation?a=%0a"),
        Err(FhirError::AmbiguousEncoding)
    );
}

#[test]
fn repeated_parameters_and_comma_lists_are_kept() {
    let got = c(
        "GET",
        "/fhir/Observation?subject=Patient/pat-1,Patient/pat-2&subject=Patient%2Fpat-3&code=a%2Cb&note=x\\,y&name=a+b",
    )
    .unwrap();
    let p = &got.params.0;
    assert_eq!(p.len(), 5);
    assert_eq!(p[0].values, vec!["Patient/pat-1", "Patient/pat-2"]);
    assert_eq!(p[1].values, vec!["Patient/pat-3"]);
    assert_eq!(
        p[2].values,
        vec!["a", "b"],
        "decoded, then split: %2C separates like a comma"
    );
    assert_eq!(p[3].values, vec!["x\\,y"]);
    assert_eq!(p[4].values, vec!["a b"]);
    let all: Vec<&str> = got.params.values_of("subject").collect();
    assert_eq!(all, vec!["Patient/pat-1", "Patient/pat-2", "Patient/pat-3"]);
}

#[test]
fn search_form_body_is_added_to_the_parameters() {
    let got = classify(&RequestParts {
        method: "POST",
        target: "/fhir/Observation/_search?code=x",
        base: "/fhir",
        body: Some(b"subject=Patient%2Fpat-2&category=lab"),
        if_none_exist: false,
    })
    .unwrap();
    let names: Vec<&str> = got.params.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, vec!["code", "subject", "category"]);
    assert_eq!(got.params.0[1].values, vec!["Patient/pat-2"]);
}

#[test]
fn param_names_split_into_base_modifier_and_chain() {
    let got = c(
        "GET",
        "/fhir/Observation?subject:Patient.name=x&subject:missing=true",
    )
    .unwrap();
    let p = &got.params.0;
    assert_eq!(p[0].base_name(), "subject");
    assert_eq!(p[0].modifier(), Some("Patient"));
    assert!(p[0].is_chained());
    assert_eq!(p[1].modifier(), Some("missing"));
    assert!(!p[1].is_chained());
}

#[test]
fn base_path_is_required_and_configurable() {
    assert_eq!(c("GET", "/api/Patient/pat-1"), Err(FhirError::OutsideBase));
    assert_eq!(
        c("GET", "/fhirx/Patient/pat-1"),
        Err(FhirError::OutsideBase)
    );
    let root = |t| {
        classify(&RequestParts {
            method: "GET",
            target: t,
            base: "/",
            body: None,
            if_none_exist: false,
        })
    };
    assert!(root("/Patient/pat-1").is_ok());
    let nested = classify(&RequestParts {
        method: "GET",
        target: "/api/r4/Patient/pat-1",
        base: "/api/r4/",
        body: None,
        if_none_exist: false,
    });
    assert!(nested.is_ok());
    assert_eq!(c("GET", "Patient/pat-1"), Err(FhirError::NotOriginForm));
    assert_eq!(
        c("GET", "https://h/fhir/Patient/pat-1"),
        Err(FhirError::NotOriginForm)
    );
    assert_eq!(
        c("GET", "/fhir/Patient/pat-1#x"),
        Err(FhirError::NotOriginForm)
    );
}

#[test]
fn methods_are_checked_per_shape() {
    for (m, t) in [
        ("POST", "/fhir/Patient/pat-1"),
        ("DELETE", "/fhir/metadata"),
        ("PUT", "/fhir"),
        ("GET", "/fhir/Patient/_search"),
        ("POST", "/fhir/Patient/pat-1/_history"),
        ("DELETE", "/fhir/Patient/pat-1/$everything"),
        ("OPTIONS", "/fhir/Patient"),
        ("TRACE", "/fhir/Patient/pat-1"),
    ] {
        let r = c(m, t);
        assert!(
            matches!(
                r,
                Err(FhirError::MethodNotAllowed | FhirError::UnknownShape)
            ),
            "{m} {t}: {r:?}"
        );
    }
}

#[test]
fn ids_and_operation_names_are_validated() {
    assert_eq!(c("GET", "/fhir/Patient/a%20b"), Err(FhirError::BadId));
    assert_eq!(
        c("GET", &format!("/fhir/Patient/{}", "a".repeat(65))),
        Err(FhirError::BadId)
    );
    assert_eq!(c("GET", "/fhir/Patient/$ev*ry"), Err(FhirError::BadId));
    assert_eq!(c("GET", "/fhir/$"), Err(FhirError::BadId));
    assert_eq!(
        c("GET", "/fhir/Patient/pat-1/_history/2/extra"),
        Err(FhirError::UnknownShape)
    );
}

#[test]
fn too_many_parameters_are_refused() {
    let q: Vec<String> = (0..300).map(|n| format!("p{n}=1")).collect();
    let target = format!("/fhir/Observation?{}", q.join("&"));
    assert_eq!(c("GET", &target), Err(FhirError::TooMany));
}

#[test]
fn bundle_entries_are_classified_with_their_index() {
    let body = br#"{"resourceType":"Bundle","type":"transaction","entry":[
        {"request":{"method":"GET","url":"Patient/pat-1"}},
        {"request":{"method":"POST","url":"Observation","ifNoneExist":"identifier=x"},
         "resource":{"resourceType":"Observation","subject":{"reference":"Patient/pat-1"}}},
        {"request":{"method":"PUT","url":"Observation/obs-2"},"resource":{"resourceType":"Observation"}},
        {"request":{"method":"DELETE","url":"Observation?code=x"}},
        {"request":{"method":"GET","url":"https://other/fhir/Patient/pat-2"}},
        {"request":{"method":"POST","url":""},"resource":{"resourceType":"Bundle","type":"batch"}},
        {"resource":{"resourceType":"Patient"}},
        {"request":{"method":"POST","url":"Patient"},"resource":{"resourceType":"Parameters"}},
        {"request":{"method":"PATCH","url":"Patient/pat-1"},"resource":{"resourceType":"Parameters"}},
        {"request":{"method":"GET","url":"/Patient/../Patient/pat-2"}},
        {"request":{"method":"BREW","url":"Patient"}},
        {"request":{"method":"GET","url":"Observation?code=http://loinc.org|8867-4&subject=Patient/pat-1"}},
        {"request":{"method":"GET","url":"urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"}}
    ]}"#;
    let b = parse_bundle(body).unwrap();
    assert_eq!(b.kind, BundleKind::Transaction);
    assert_eq!(b.entries.len(), 13);
    let kinds: Vec<Result<&str, ()>> = b
        .entries
        .iter()
        .map(|e| {
            e.request
                .as_ref()
                .map(|c| c.interaction.name())
                .map_err(|_| ())
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            Ok("read"),
            Ok("create"),
            Ok("update"),
            Ok("conditional_delete"),
            Err(()),
            Err(()),
            Err(()),
            Err(()),
            Ok("patch"),
            Err(()),
            Err(()),
            Ok("search_type"),
            Err(()),
        ]
    );
    assert_eq!(
        b.entries[1].request.as_ref().unwrap().interaction,
        Interaction::Create {
            resource_type: s("Observation"),
            conditional: true
        }
    );
    assert!(b.entries[1].resource.is_some());
    assert!(b.entries.iter().enumerate().all(|(n, e)| e.index == n));
}

#[test]
fn bundle_shapes_that_are_not_batches_are_refused() {
    for body in [
        &b""[..],
        b"[]",
        br#"{"resourceType":"Patient"}"#,
        br#"{"resourceType":"Bundle","type":"collection"}"#,
        br#"{"resourceType":"Bundle","type":"batch","entry":{}}"#,
    ] {
        assert!(parse_bundle(body).is_err());
    }
    let empty = parse_bundle(br#"{"resourceType":"Bundle","type":"batch"}"#).unwrap();
    assert!(empty.entries.is_empty());
}

#[test]
fn never_panics_on_odd_targets() {
    for t in [
        "",
        "/",
        "?",
        "/?",
        "/fhir?",
        "/fhir?&&&",
        "/fhir?=",
        "/fhir?a==b",
        "/fhir/%",
        "/fhir/%%",
        "/fhir/Patient/\u{e9}",
        "/fhir/Patient?x=%",
        "/fhir/Patient?x=\\",
        "/fhir/Patient?x=,,,",
        "/fhir/\u{0}",
        "/fhir/$",
        "/fhir/Patient/1/$",
        "/fhir/Patient/1/*/_search",
    ] {
        for m in ["GET", "POST", "PUT", "PATCH", "DELETE", ""] {
            let _ = c(m, t);
        }
    }
    let _ = classify_relative("GET", "", None);
    let _ = classify_relative("GET", "?", None);
}
