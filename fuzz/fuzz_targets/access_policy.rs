//! The access-policy loader: YAML text → `Policy` (schema, types, interactions, operations,
//! settings, tests). Byte 0 bit 0 loads the text as a second layer over the shipped policy
//! (exercising `override:` and `disable:`). A policy that loads is linted, runs its inline
//! tests and decides a few requests. Nothing may panic.
#![no_main]

use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;
use phi_gateway::access::policy::{AccessRequest, Policy, Subject};

const SHIPPED: &str = include_str!("../../deploy/policy/default.yaml");

fuzz_target!(|data: &[u8]| {
    let [flags, yaml @ ..] = data else {
        return;
    };
    let file = (
        PathBuf::from("fuzz.yaml"),
        String::from_utf8_lossy(yaml).into_owned(),
    );
    let loaded = if flags & 1 == 1 {
        let base = vec![(PathBuf::from("default.yaml"), SHIPPED.to_string())];
        Policy::from_layers(&[base, vec![file]])
    } else {
        Policy::from_sources(&[file])
    };
    let Ok(policy) = loaded else {
        return;
    };
    let _ = policy.lint();
    let _ = policy.run_inline_tests();
    let subject = Subject {
        scope: "patient/*.rs user/Observation.read".into(),
        roles: vec!["clinician".into(), "nurse".into()],
        permissions: serde_json::json!({"ehr_read": ["patient.*"]}),
        patient: Some("pat-1".into()),
    };
    for (method, target) in [
        ("GET", "/fhir/Patient/pat-2"),
        ("GET", "/fhir/Observation?subject=Patient/pat-1"),
        ("POST", "/fhir/Patient/pat-1/$everything"),
    ] {
        let _ = policy.evaluate(
            &subject,
            &AccessRequest {
                method,
                target,
                base: "/fhir",
                body: None,
                if_none_exist: false,
            },
        );
    }
});
