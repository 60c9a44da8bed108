use serde_json::json;

use super::*;
use crate::access::fhir::{classify, RequestParts};

const ME: &str = "pat-1";

fn req(method: &str, target: &str) -> Classified {
    classify(&RequestParts {
        method,
        target,
        base: "/fhir",
        body: None,
        if_none_exist: false,
    })
    .unwrap_or_else(|e| panic!("{method} {target}: {e}"))
}

fn check(method: &str, target: &str) -> Result<Inside, Escape> {
    check_request(&req(method, target), ME, None)
}

fn write(method: &str, target: &str, body: serde_json::Value) -> Result<Inside, Escape> {
    check_request(&req(method, target), ME, Some(&body))
}

#[test]
fn the_table_is_r4() {
    assert_eq!(
        compartment_params("Observation"),
        Some(&["subject", "performer"][..])
    );
    assert_eq!(
        compartment_params("AllergyIntolerance"),
        Some(&["patient", "recorder", "asserter"][..])
    );
    assert_eq!(compartment_params("Patient"), Some(&["link"][..]));
    assert_eq!(compartment_params("Practitioner"), Some(&[][..]));
    assert_eq!(compartment_params("patient"), None);
    assert!(in_compartment_type("Encounter"));
    assert!(!in_compartment_type("Medication"));
    // R4, not R4B/R5: AllergyIntolerance has no `participant`, Condition has `asserter`.
    assert!(!compartment_params("AllergyIntolerance")
        .unwrap()
        .contains(&"participant"));
    assert!(compartment_params("Condition")
        .unwrap()
        .contains(&"asserter"));
}

#[test]
fn reads_of_patient_only_for_the_context() {
    assert_eq!(check("GET", "/fhir/Patient/pat-1"), Ok(Inside::Yes));
    assert_eq!(
        check("GET", "/fhir/Patient/pat-2"),
        Err(Escape::OtherPatient)
    );
    assert_eq!(
        check("GET", "/fhir/Patient/pat-2/_history"),
        Err(Escape::OtherPatient)
    );
    assert_eq!(
        check("GET", "/fhir/Patient/pat-2/_history/1"),
        Err(Escape::OtherPatient)
    );
    assert_eq!(
        check("GET", "/fhir/Patient/pat-1/_history/1"),
        Ok(Inside::Yes)
    );
    // Encodings normalise to the same id before the comparison.
    assert_eq!(
        check("GET", "/fhir/Patient/pat%2D2"),
        Err(Escape::OtherPatient)
    );
    assert_eq!(check("GET", "/fhir/Patient/pat%2D1"), Ok(Inside::Yes));
}

#[test]
fn reads_by_id_of_other_types_need_the_response() {
    assert_eq!(
        check("GET", "/fhir/Observation/obs-2"),
        Ok(Inside::IfResponseIs)
    );
    assert_eq!(
        check("GET", "/fhir/Observation/obs-2/_history/3"),
        Ok(Inside::IfResponseIs)
    );
    assert_eq!(
        check("GET", "/fhir/Practitioner/pr-1"),
        Err(Escape::TypeOutside)
    );
}

#[test]
fn compartment_searches_only_for_the_context() {
    assert_eq!(
        check("GET", "/fhir/Patient/pat-1/Observation?code=x"),
        Ok(Inside::Yes)
    );
    assert_eq!(check("GET", "/fhir/Patient/pat-1/*"), Ok(Inside::Yes));
    assert_eq!(
        check("GET", "/fhir/Patient/pat-2/Observation"),
        Err(Escape::OtherPatient)
    );
    assert_eq!(
        check("GET", "/fhir/Patient/pat-2/*"),
        Err(Escape::OtherPatient)
    );
    assert_eq!(
        check("GET", "/fhir/Patient/pat-1/Practitioner"),
        Err(Escape::TypeOutside)
    );
    assert_eq!(
        check("GET", "/fhir/Encounter/e-1/Observation"),
        Err(Escape::ForeignCompartment)
    );
    assert_eq!(
        check(
            "GET",
            "/fhir/Patient/pat-1/Observation?_include=Observation:performer"
        ),
        Err(Escape::EscapeParam)
    );
}

#[test]
fn type_searches_must_carry_the_context_in_every_value() {
    for ok in [
        "/fhir/Observation?subject=Patient/pat-1",
        "/fhir/Observation?subject=Patient%2Fpat-1&code=x",
        "/fhir/Observation?patient=pat-1",
        "/fhir/Observation?patient=Patient/pat-1",
        "/fhir/Observation?subject:Patient=pat-1",
        "/fhir/Observation?subject=Patient/pat-1&subject=Patient/pat-1",
        "/fhir/Observation?performer=Patient/pat-1",
        "/fhir/Encounter?patient=pat-1",
        "/fhir/Condition?patient=Patient/pat-1",
        "/fhir/Patient?_id=pat-1",
    ] {
        assert_eq!(check("GET", ok), Ok(Inside::Yes), "{ok}");
    }
    for (bad, why) in [
        ("/fhir/Observation?code=x", Escape::ParamMissing),
        ("/fhir/Observation", Escape::ParamMissing),
        ("/fhir/Patient?name=x", Escape::ParamMissing),
        (
            "/fhir/Observation?subject=Patient/pat-2",
            Escape::ValueMismatch,
        ),
        (
            "/fhir/Observation?subject=Patient/pat-1,Patient/pat-2",
            Escape::ValueMismatch,
        ),
        (
            "/fhir/Observation?subject=Patient/pat-1%2CPatient/pat-2",
            Escape::ValueMismatch,
        ),
        (
            "/fhir/Observation?subject=Patient/pat-1&subject=Patient/pat-2",
            Escape::ValueMismatch,
        ),
        (
            "/fhir/Observation?subject=Patient/pat-1&performer=Patient/pat-2",
            Escape::ValueMismatch,
        ),
        ("/fhir/Observation?subject=pat-1", Escape::ValueMismatch),
        (
            "/fhir/Observation?subject=Group/pat-1",
            Escape::ValueMismatch,
        ),
        (
            "/fhir/Observation?subject=https://other/fhir/Patient/pat-1",
            Escape::ValueMismatch,
        ),
        (
            "/fhir/Observation?subject=Patient/pat-1/_history/1",
            Escape::ValueMismatch,
        ),
        (
            "/fhir/Observation?subject:identifier=urn:x|123",
            Escape::ValueMismatch,
        ),
        (
            "/fhir/Observation?subject:missing=true",
            Escape::ValueMismatch,
        ),
        (
            "/fhir/Observation?subject:Group=pat-1",
            Escape::ValueMismatch,
        ),
        ("/fhir/Observation?subject=", Escape::ValueMismatch),
        ("/fhir/Observation?subject", Escape::ValueMismatch),
        ("/fhir/Patient?_id=pat-1,pat-2", Escape::ValueMismatch),
        ("/fhir/Patient?_id=pat-1&_id=pat-2", Escape::ValueMismatch),
        (
            "/fhir/Patient?_id=pat-1&link=Patient/pat-2",
            Escape::ValueMismatch,
        ),
        ("/fhir/Patient?_id:not=pat-1", Escape::ValueMismatch),
        // A type with no `patient` search parameter: the alias is not accepted.
        ("/fhir/Account?patient=pat-1", Escape::ParamMissing),
        ("/fhir/Practitioner?name=x", Escape::TypeOutside),
    ] {
        assert_eq!(check("GET", bad), Err(why), "{bad}");
    }
}

#[test]
fn escape_parameters_are_refused_in_every_encoding() {
    for bad in [
        "/fhir/Observation?subject=Patient/pat-1&_has:Observation:patient:code=x",
        "/fhir/Observation?subject=Patient/pat-1&%5Fhas:Group:member:_id=g",
        "/fhir/Observation?subject.name=x",
        "/fhir/Observation?subject:Patient.name=x&subject=Patient/pat-1",
        "/fhir/Observation?subject=Patient/pat-1&patient.identifier=x",
        "/fhir/Observation?subject=Patient/pat-1&_include=Observation:subject",
        "/fhir/Observation?subject=Patient/pat-1&_include:iterate=*",
        "/fhir/Observation?subject=Patient/pat-1&_revinclude=Provenance:target",
        "/fhir/Observation?subject=Patient/pat-1&_query=everyone",
        "/fhir/Observation?subject=Patient/pat-1&_filter=subject%20eq%20x",
        "/fhir/Patient?_id=pat-1&_revinclude=Observation:subject",
    ] {
        assert_eq!(check("GET", bad), Err(Escape::EscapeParam), "{bad}");
    }
}

#[test]
fn system_level_and_everything_of_others_are_refused() {
    assert_eq!(
        check("GET", "/fhir?_type=Observation"),
        Err(Escape::SystemLevel)
    );
    assert_eq!(check("GET", "/fhir/_history"), Err(Escape::SystemLevel));
    assert_eq!(
        check("GET", "/fhir/Observation/_history"),
        Err(Escape::SystemLevel)
    );
    assert_eq!(check("POST", "/fhir/_search"), Err(Escape::SystemLevel));
    assert_eq!(
        check("GET", "/fhir/Patient/pat-1/$everything"),
        Ok(Inside::Yes)
    );
    assert_eq!(
        check("GET", "/fhir/Patient/pat-2/$everything"),
        Err(Escape::OtherPatient)
    );
    assert_eq!(
        check("GET", "/fhir/Patient/$everything"),
        Err(Escape::Operation)
    );
    assert_eq!(check("GET", "/fhir/$export"), Err(Escape::Operation));
    assert_eq!(
        check("GET", "/fhir/Observation/obs-1/$meta"),
        Err(Escape::Operation)
    );
    assert_eq!(check("GET", "/fhir/metadata"), Ok(Inside::Yes));
}

#[test]
fn post_search_form_bodies_are_checked_too() {
    let c = classify(&RequestParts {
        method: "POST",
        target: "/fhir/Observation/_search",
        base: "/fhir",
        body: Some(b"subject=Patient%2Fpat-2"),
        if_none_exist: false,
    })
    .unwrap();
    assert_eq!(check_request(&c, ME, None), Err(Escape::ValueMismatch));
    let c = classify(&RequestParts {
        method: "POST",
        target: "/fhir/Observation/_search?subject=Patient/pat-1",
        base: "/fhir",
        body: Some(b"subject=Patient%2Fpat-2"),
        if_none_exist: false,
    })
    .unwrap();
    assert_eq!(check_request(&c, ME, None), Err(Escape::ValueMismatch));
}

#[test]
fn create_and_update_bodies_must_reference_the_context() {
    let obs = |subject: &str| json!({"resourceType":"Observation","subject":{"reference":subject}});
    assert_eq!(
        write("POST", "/fhir/Observation", obs("Patient/pat-1")),
        Ok(Inside::Yes)
    );
    assert_eq!(
        write("POST", "/fhir/Observation", obs("Patient/pat-2")),
        Err(Escape::BodyOutside)
    );
    assert_eq!(
        write(
            "POST",
            "/fhir/Observation",
            obs("https://x/fhir/Patient/pat-1")
        ),
        Err(Escape::BodyOutside)
    );
    assert_eq!(
        write("POST", "/fhir/Observation", obs("Group/g-1")),
        Err(Escape::BodyOutside)
    );
    assert_eq!(
        write(
            "POST",
            "/fhir/Observation",
            json!({"resourceType":"Observation"})
        ),
        Err(Escape::BodyOutside)
    );
    // The body's type must be the URL's.
    assert_eq!(
        write(
            "POST",
            "/fhir/Observation",
            json!({"resourceType":"Condition","subject":{"reference":"Patient/pat-1"}})
        ),
        Err(Escape::BodyOutside)
    );
    // Subject is the context but a performer names another patient.
    let two = json!({"resourceType":"Observation","subject":{"reference":"Patient/pat-1"},
        "performer":[{"reference":"Patient/pat-2"}]});
    assert_eq!(
        write("POST", "/fhir/Observation", two),
        Err(Escape::BodyOutside)
    );
    // Practitioner performers are fine.
    let prac = json!({"resourceType":"Observation","subject":{"reference":"Patient/pat-1"},
        "performer":[{"reference":"Practitioner/pr-1"}]});
    assert_eq!(write("POST", "/fhir/Observation", prac), Ok(Inside::Yes));
    // Elements per type: AllergyIntolerance.patient, MedicationAdministration.subject,
    // CareTeam.participant[].member, Coverage.beneficiary.
    for (ty, body) in [
        (
            "AllergyIntolerance",
            json!({"resourceType":"AllergyIntolerance","patient":{"reference":"Patient/pat-1"}}),
        ),
        (
            "Encounter",
            json!({"resourceType":"Encounter","subject":{"reference":"Patient/pat-1"}}),
        ),
        (
            "MedicationAdministration",
            json!({"resourceType":"MedicationAdministration","subject":{"reference":"Patient/pat-1"}}),
        ),
        (
            "CareTeam",
            json!({"resourceType":"CareTeam","participant":[{"member":{"reference":"Patient/pat-1"}}]}),
        ),
        (
            "Coverage",
            json!({"resourceType":"Coverage","beneficiary":{"reference":"Patient/pat-1"}}),
        ),
    ] {
        assert_eq!(
            write("POST", &format!("/fhir/{ty}"), body),
            Ok(Inside::Yes),
            "{ty}"
        );
    }
    // A new Patient cannot be created under a patient binding.
    assert_eq!(
        write(
            "POST",
            "/fhir/Patient",
            json!({"resourceType":"Patient","id":"pat-1"})
        ),
        Err(Escape::BodyOutside)
    );
    // Update: the body is checked, and the replaced resource needs checking too.
    assert_eq!(
        write("PUT", "/fhir/Observation/obs-1", obs("Patient/pat-1")),
        Ok(Inside::IfTargetIs)
    );
    assert_eq!(
        write("PUT", "/fhir/Observation/obs-2", obs("Patient/pat-2")),
        Err(Escape::BodyOutside)
    );
    let wrong_id =
        json!({"resourceType":"Observation","id":"obs-9","subject":{"reference":"Patient/pat-1"}});
    assert_eq!(
        write("PUT", "/fhir/Observation/obs-1", wrong_id),
        Err(Escape::BodyOutside)
    );
    assert_eq!(
        write(
            "PUT",
            "/fhir/Patient/pat-1",
            json!({"resourceType":"Patient","id":"pat-1"})
        ),
        Ok(Inside::Yes)
    );
    assert_eq!(
        write(
            "PUT",
            "/fhir/Patient/pat-1",
            json!({"resourceType":"Patient","id":"pat-2"})
        ),
        Err(Escape::BodyOutside)
    );
    assert_eq!(
        write(
            "PUT",
            "/fhir/Patient/pat-2",
            json!({"resourceType":"Patient","id":"pat-2"})
        ),
        Err(Escape::OtherPatient)
    );
    assert_eq!(
        check("PUT", "/fhir/Observation/obs-1"),
        Err(Escape::BodyOutside)
    );
}

#[test]
fn unjudgeable_writes_are_refused() {
    assert_eq!(
        check("PATCH", "/fhir/Observation/obs-1"),
        Err(Escape::Unjudgeable)
    );
    assert_eq!(
        check("PUT", "/fhir/Observation?subject=Patient/pat-1"),
        Err(Escape::Unjudgeable)
    );
    assert_eq!(
        check("DELETE", "/fhir/Observation?subject=Patient/pat-1"),
        Err(Escape::Unjudgeable)
    );
    let cond = classify(&RequestParts {
        method: "POST",
        target: "/fhir/Observation",
        base: "/fhir",
        body: None,
        if_none_exist: true,
    })
    .unwrap();
    let body = json!({"resourceType":"Observation","subject":{"reference":"Patient/pat-1"}});
    assert_eq!(
        check_request(&cond, ME, Some(&body)),
        Err(Escape::Unjudgeable)
    );
    assert_eq!(
        check("DELETE", "/fhir/Observation/obs-1"),
        Ok(Inside::IfTargetIs)
    );
    assert_eq!(
        check("DELETE", "/fhir/Patient/pat-2"),
        Err(Escape::OtherPatient)
    );
}

#[test]
fn returned_resources_are_judged_by_their_references() {
    let obs1 =
        json!({"resourceType":"Observation","id":"obs-1","subject":{"reference":"Patient/pat-1"}});
    let obs2 =
        json!({"resourceType":"Observation","id":"obs-2","subject":{"reference":"Patient/pat-2"}});
    assert!(resource_in_compartment(&obs1, ME));
    assert!(!resource_in_compartment(&obs2, ME));
    let abs = json!({"resourceType":"Observation","subject":{"reference":"https://ehr/fhir/Patient/pat-1"}});
    assert!(resource_in_compartment(&abs, ME));
    assert!(resource_in_compartment(
        &json!({"resourceType":"Patient","id":"pat-1"}),
        ME
    ));
    assert!(!resource_in_compartment(
        &json!({"resourceType":"Patient","id":"pat-2"}),
        ME
    ));
    assert!(!resource_in_compartment(
        &json!({"resourceType":"Practitioner","id":"pat-1"}),
        ME
    ));
    assert!(!resource_in_compartment(
        &json!({"subject":{"reference":"Patient/pat-1"}}),
        ME
    ));
    // `pat-1` must be the whole id, not a prefix.
    let prefix = json!({"resourceType":"Observation","subject":{"reference":"Patient/pat-10"}});
    assert!(!resource_in_compartment(&prefix, ME));
    // A reference outside the compartment elements does not count (focus is not one).
    let focus = json!({"resourceType":"Observation","subject":{"reference":"Patient/pat-2"},"focus":[{"reference":"Patient/pat-1"}]});
    assert!(!resource_in_compartment(&focus, ME));
}

#[test]
fn returned_bundles_are_judged_entry_by_entry() {
    let b = json!({"resourceType":"Bundle","type":"searchset","entry":[
        {"resource":{"resourceType":"Observation","subject":{"reference":"Patient/pat-1"}}},
        {"resource":{"resourceType":"Observation","subject":{"reference":"Patient/pat-2"}}},
        {"resource":{"resourceType":"OperationOutcome"},"search":{"mode":"outcome"}},
        {"response":{"status":"200 OK"}},
        {"resource":{"resourceType":"Bundle"}},
        {"resource":{"resourceType":"Patient","id":"pat-2"}}
    ]});
    assert_eq!(bundle_outside_entries(&b, ME), vec![1, 4, 5]);
    assert!(bundle_outside_entries(&json!({"resourceType":"Bundle"}), ME).is_empty());
}

#[test]
fn deep_or_odd_bodies_never_panic() {
    let mut v = json!({"reference":"Patient/pat-1"});
    for _ in 0..100 {
        v = json!([v]);
    }
    let body = json!({"resourceType":"Observation","subject":v});
    let _ = write("POST", "/fhir/Observation", body.clone());
    let _ = resource_in_compartment(&body, ME);
    for odd in [
        json!(null),
        json!(1),
        json!("x"),
        json!([]),
        json!({"resourceType":1}),
    ] {
        let _ = resource_in_compartment(&odd, ME);
        let _ = bundle_outside_entries(&odd, ME);
        let _ = write("POST", "/fhir/Observation", odd);
    }
}

#[test]
fn record_hopping_shapes_stay_refused_in_every_encoding() {
    for (bad, why) in [
        ("/fhir/Patient/pat%2D2", Escape::OtherPatient),
        ("/fhir/Pati%65nt/pat-2", Escape::OtherPatient),
        ("/fhir/Patient/pat-2/Obs%65rvation", Escape::OtherPatient),
        ("/fhir/Patient/pat-2/%24everything", Escape::OtherPatient),
        (
            "/fhir/Observation?subject=Patient%2Fpat-2",
            Escape::ValueMismatch,
        ),
        (
            "/fhir/Observation?subject=Patient/pat%2D2",
            Escape::ValueMismatch,
        ),
        (
            "/fhir/Observation?sub%6Aect=Patient/pat-2",
            Escape::ValueMismatch,
        ),
        (
            "/fhir/Observation?subject=Patient/pat-1%2CPatient/pat-2",
            Escape::ValueMismatch,
        ),
        (
            "/fhir/Observation?subject=Patient/pat-1%252CPatient/pat-2",
            Escape::ValueMismatch,
        ),
        (
            "/fhir/Observation?subject=Patient%252Fpat-1",
            Escape::ValueMismatch,
        ),
        (
            "/fhir/Observation?subject=Patient/pat-1+",
            Escape::ValueMismatch,
        ),
        (
            "/fhir/Observation?subject=+Patient/pat-1",
            Escape::ValueMismatch,
        ),
        (
            "/fhir/Observation?patient=pat-1&patient=pat-2",
            Escape::ValueMismatch,
        ),
        (
            "/fhir/Observation?patient=pat-1&subject=Patient/pat-2",
            Escape::ValueMismatch,
        ),
        (
            "/fhir/Observation?subject=Patient/pat-1&%5Fhas:Group:member:_id=g",
            Escape::EscapeParam,
        ),
        (
            "/fhir/Observation?subject=Patient/pat-1&%5F%68as:Group:member:_id=g",
            Escape::EscapeParam,
        ),
        (
            "/fhir/Observation?subject=Patient/pat-1&%5Finclude=Observation:subject",
            Escape::EscapeParam,
        ),
        (
            "/fhir/Observation?subject=Patient/pat-1&_revinclude%3Aiterate=Provenance:target",
            Escape::EscapeParam,
        ),
        (
            "/fhir/Observation?subject%2Ename=x&subject=Patient/pat-1",
            Escape::EscapeParam,
        ),
        (
            "/fhir/Observation?subject%3APatient.name=x&subject=Patient/pat-1",
            Escape::EscapeParam,
        ),
        ("/fhir/%5Fhistory", Escape::SystemLevel),
        ("/fhir/Observation/%5Fhistory", Escape::SystemLevel),
    ] {
        assert_eq!(check("GET", bad), Err(why), "{bad}");
    }
    // Double encodings in the path, and traversal, never reach the check: refused before.
    for bad in [
        "/fhir/Patient/pat-1/..%2Fpat-2",
        "/fhir/Patient/pat-1%2F..%2Fpat-2",
        "/fhir/Patient/pat%252D2",
        "/fhir/Patient/pat-1/%2e%2e/pat-2",
        "/fhir/Patient%2Fpat-2",
        "/fhir/Observation?%255Fhas:Group:member:_id=g&subject=Patient/pat-1",
    ] {
        let r = classify(&RequestParts {
            method: "GET",
            target: bad,
            base: "/fhir",
            body: None,
            if_none_exist: false,
        });
        assert!(r.is_err(), "{bad}: {r:?}");
    }
}

/// The shipped table against the R4 package itself, where it is unpacked (the accuracy suite's
/// `tests/fetch-fhir-examples.sh` puts it in `target/fhir-examples/package`): every type's
/// compartment parameters, and the `patient` alias column against clinical-patient's bases.
#[test]
fn the_table_matches_the_r4_package() {
    let dir = std::env::var_os("PHI_GATEWAY_FHIR_EXAMPLES")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fhir-examples/package")
        });
    let read = |name: &str| -> Option<serde_json::Value> {
        let text = std::fs::read_to_string(dir.join(name)).ok()?;
        serde_json::from_str(&text).ok()
    };
    let (Some(def), Some(clinical)) = (
        read("CompartmentDefinition-patient.json"),
        read("SearchParameter-clinical-patient.json"),
    ) else {
        eprintln!("R4 package not found in {}: skipped", dir.display());
        return;
    };
    assert_eq!(def["version"], "4.0.1");
    let resources = def["resource"].as_array().expect("resource list");
    assert!(resources.len() > 140);
    for r in resources {
        let code = r["code"].as_str().expect("code");
        let params: Vec<&str> = r["param"]
            .as_array()
            .map(|a| a.iter().filter_map(|p| p.as_str()).collect())
            .unwrap_or_default();
        assert_eq!(compartment_params(code), Some(params.as_slice()), "{code}");
    }
    let bases: Vec<&str> = clinical["base"]
        .as_array()
        .expect("base list")
        .iter()
        .filter_map(|b| b.as_str())
        .collect();
    for ty in crate::access::fhir::resource_types() {
        let listed = compartment_params(ty)
            .unwrap_or_default()
            .contains(&"patient");
        let alias = TABLE.get(ty).is_some_and(|r| r.alias);
        assert_eq!(alias, bases.contains(&ty) && !listed, "{ty}");
    }
}
