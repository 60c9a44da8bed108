//! The SMART scope parser: a `scope` claim → `ScopeSet` (strict v1/v2 grammar, qualifiers,
//! non-resource scopes). A set that parses answers `permits` in every context for a few
//! needs, and its resource scopes print; nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use phi_gateway::access::fhir::{Param, Params};
use phi_gateway::access::scope::{Context, Letter, Need, Scope, ScopeSet};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for word in text.split(' ') {
        let _ = Scope::parse(word);
    }
    let Ok(set) = ScopeSet::parse(&text) else {
        return;
    };
    let _ = set.mixes_versions();
    let params = Params(vec![Param {
        name: "category".into(),
        values: vec!["laboratory".into()],
    }]);
    for letter in [
        Letter::Create,
        Letter::Read,
        Letter::Update,
        Letter::Delete,
        Letter::Search,
    ] {
        for ty in [Some("Observation"), Some("Patient"), None] {
            let need = Need {
                letter,
                resource_type: ty,
                params: Some(&params),
            };
            for c in [Context::Patient, Context::User, Context::System] {
                let _ = set.permits(c, &need);
            }
            let _ = set.granting_context(&[need]);
        }
    }
    for r in set.resource_scopes() {
        let _ = r.to_string();
    }
});
