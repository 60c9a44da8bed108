use std::path::{Path, PathBuf};

use super::compile::{quote_free, ENCRYPTION_FORMATS};
use super::load::read_dir_sources;
use super::*;
use crate::engine::source::SourceError;
use crate::engine::validate::Validator;
use crate::engine::Mode;
use crate::engine::{Limits, Part};

#[test]
fn quote_free_patterns() {
    for ok in [
        "(?P<value>[0-9]{9})",
        "(?i)mrn[ :#=]{0,3}[A-Z0-9-]+",
        r"\p{L}[\p{L}'. -]*",
    ] {
        assert!(quote_free(ok), "{ok}");
    }
    for bad in [
        "[^ ]+",
        "a.b",
        "^[0-9]{9}",
        r"\b[0-9]{9}\b",
        "x\"",
        "[0-9]{3}$",
        "(",
        "\\d+\\s\"",
    ] {
        assert!(!quote_free(bad), "{bad}");
    }
}

fn load(text: &str) -> Result<RuleSet, RuleError> {
    RuleSet::from_sources(&[(PathBuf::from("t.yaml"), text.to_string())])
}

fn source_err(text: &str) -> SourceError {
    match load(text) {
        Err(RuleError::Source(e)) => e,
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("loaded, expected an error"),
    }
}

const MINIMAL: &str = "rules:
  - id: demo-rule
    description: demo
    category: G
    severity: low
    patterns:
      - regex: '(?P<value>[0-9]{9})'
        score: 0.6
        boundary: digit
    validators: [ssn]
";

#[test]
fn default_pack_loads_and_passes_its_inline_tests() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let set = RuleSet::load_dir(&dir).expect("default pack loads");
    let ids: Vec<&str> = set.rules().map(|r| r.id.as_str()).collect();
    for id in [
        "us-ssn",
        "credit-card",
        "us-npi",
        "us-mbi",
        "us-dea",
        "email",
        "us-phone",
    ] {
        assert!(ids.contains(&id), "missing {id}");
    }
    let failures = set.run_inline_tests();
    assert!(
        failures.is_empty(),
        "{}",
        failures
            .iter()
            .map(|f| f.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(set.digest().len(), 64);
    assert_eq!(
        set.get("us-ssn").and_then(|r| r.category),
        Some(Category::G)
    );
    assert!(set.lint().is_empty(), "{:?}", set.lint());
    // The issue's bar for the default pack: at least 3 positive and 3 negative examples.
    for (info, rule) in set.infos.iter().zip(&set.compiled) {
        let pos = rule.tests.iter().filter(|t| t.expect_match).count();
        let neg = rule.tests.len() - pos;
        assert!(
            pos >= 3 && neg >= 3,
            "{}: {pos} match / {neg} no_match",
            info.id
        );
    }
}

#[test]
fn globs() {
    for (p, t, want) in [
        (
            "fhir:*.identifier.value",
            "fhir:Patient.identifier.value",
            true,
        ),
        (
            "fhir:*.identifier.value",
            "fhir:Patient.identifier.system",
            false,
        ),
        ("fhir:Patient.name.*", "fhir:Patient.name.given", true),
        ("fhir:Patient.name.*", "fhir:Patient.birthDate", false),
        ("provider-*", "provider-directory", true),
        ("provider-*", "ehr", false),
        ("a*b*c", "axxbyyc", true),
        ("a*b*c", "axxcyyb", false),
        ("a*b*c", "abc", true),
        ("*", "", true),
        ("exact", "exact", true),
        ("exact", "exactly", false),
        ("a*a", "a", false),
    ] {
        assert_eq!(glob_match(p, t), want, "{p} vs {t}");
    }
}

/// rules/schema.json (for editors) must list exactly what the loader accepts.
#[test]
fn json_schema_matches_the_loader() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/schema.json");
    let text = std::fs::read_to_string(path).expect("schema");
    let schema: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    let rule = &schema["$defs"]["rule"]["properties"];
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let validators = strings(&rule["validators"]["items"]["enum"]);
    assert_eq!(validators.join(", "), Validator::names());
    let formats = strings(&rule["require_encrypted"]["properties"]["formats"]["items"]["enum"]);
    assert_eq!(formats, ENCRYPTION_FORMATS);
    let categories = strings(&rule["category"]["enum"]);
    assert_eq!(categories.len(), 18);
    let mut keys: Vec<&String> = rule.as_object().expect("properties").keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "category",
            "context",
            "description",
            "exceptions",
            "id",
            "keywords",
            "min_score",
            "mode",
            "override",
            "patterns",
            "require_encrypted",
            "severity",
            "tests",
            "validators",
            "where"
        ]
    );
}

#[test]
fn minimal_rule_and_metadata() {
    let set = load(MINIMAL).expect("loads");
    assert_eq!(set.len(), 1);
    assert!(!set.is_empty());
    let info = set.get("demo-rule").expect("present");
    assert_eq!(info.line, 2);
    assert_eq!(info.mode, Mode::Enforce);
    assert_eq!(info.category.map(|c| c.to_string()).as_deref(), Some("G"));
    assert_eq!(info.severity.as_str(), "low");
}

#[test]
fn digest_depends_on_names_and_bytes() {
    let a = load(MINIMAL).expect("loads");
    let b =
        RuleSet::from_sources(&[(PathBuf::from("u.yaml"), MINIMAL.to_string())]).expect("loads");
    assert_ne!(a.digest(), b.digest());
    assert_eq!(a.digest(), load(MINIMAL).expect("loads").digest());
}

#[test]
fn unknown_key_names_line_and_field() {
    let text = MINIMAL.replace(
        "    validators: [ssn]\n",
        "    validators: [ssn]\n    min_scor: 0.5\n",
    );
    let e = source_err(&text);
    assert_eq!(e.line, 11, "{e}");
    assert!(e.message.contains("unknown field `min_scor`"), "{e}");
    assert_eq!(e.field, "rules[0].min_scor", "{e}");
}

#[test]
fn bad_regex_names_line_and_field() {
    let e = source_err(&MINIMAL.replace("(?P<value>[0-9]{9})", "([0-9]{9}"));
    assert_eq!(e.line, 7, "{e}");
    assert_eq!(e.field, "rules[0].patterns[0].regex");
    assert!(e.message.contains("invalid regex"), "{e}");
}

#[test]
fn lookaround_and_backrefs_are_rejected_clearly() {
    for re in [
        "(?<![0-9])[0-9]{9}",
        "[0-9]{9}(?![0-9])",
        "(?=x)[0-9]{9}",
        "([- ])[0-9]{2}\\1",
    ] {
        let e = source_err(&MINIMAL.replace("(?P<value>[0-9]{9})", re));
        assert!(e.message.contains("lookaround"), "{re}: {e}");
        assert!(e.message.contains("boundary"), "{re}: {e}");
        assert_eq!(e.line, 7);
    }
}

#[test]
fn unknown_validator_lists_valid_names() {
    let e = source_err(&MINIMAL.replace("[ssn]", "[ssn, sssn]"));
    assert_eq!(e.line, 10);
    assert_eq!(e.field, "rules[0].validators[1]");
    assert!(
        e.message.contains("sssn") && e.message.contains("phone_nanp"),
        "{e}"
    );
}

#[test]
fn duplicate_id_across_sources_names_both_files() {
    let r = RuleSet::from_sources(&[
        (PathBuf::from("a.yaml"), MINIMAL.to_string()),
        (PathBuf::from("b.yaml"), format!("# comment\n{MINIMAL}")),
    ]);
    match r {
        Err(RuleError::Source(e)) => {
            assert_eq!(e.file, PathBuf::from("b.yaml"));
            assert_eq!(e.line, 3);
            assert!(e.message.contains("a.yaml:2"), "{e}");
            assert!(e.to_string().starts_with("b.yaml:3"), "{e}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn value_errors() {
    let cases = [
        (
            MINIMAL.replace("id: demo-rule", "id: Demo_Rule"),
            "rules[0].id",
        ),
        (
            MINIMAL.replace("score: 0.6", "score: 1.5"),
            "rules[0].patterns[0].score",
        ),
        (
            MINIMAL.replace(
                "    validators: [ssn]\n",
                "    validators: [ssn]\n    min_score: 2\n",
            ),
            "rules[0].min_score",
        ),
        (
            MINIMAL.replace("(?P<value>[0-9]{9})", "[0-9]*"),
            "rules[0].patterns[0].regex",
        ),
        (
            MINIMAL.replace(
                "    validators: [ssn]\n",
                "    validators: [ssn]\n    context: { words: [ssn], window_before: 5000 }\n",
            ),
            "rules[0].context.window_before",
        ),
        (
            MINIMAL.replace(
                "    validators: [ssn]\n",
                "    validators: [ssn]\n    where: [cookies]\n",
            ),
            "rules[0].where[0]",
        ),
        (
            MINIMAL.replace("score: 0.6", "score: 0.1"),
            "rules[0].min_score",
        ),
    ];
    for (text, field) in cases {
        let e = source_err(&text);
        assert_eq!(e.field, field, "{e}");
        assert!(e.line > 0, "{e}");
    }
    let empty = "rules:\n  - id: x1\n    description: d\n    category: A\n    severity: low\n    patterns: []\n";
    let e = source_err(empty);
    assert_eq!(e.field, "rules[0].patterns");
    assert_eq!(e.line, 6);
}

#[test]
fn docs_example_loads_and_passes() {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/rules.md"))
        .expect("docs/rules.md");
    // The "Complete example" section's block.
    let section = doc.find("## Complete example").expect("section");
    let start = section
        + doc
            .get(section..)
            .and_then(|d| d.find("```yaml\n"))
            .expect("yaml block")
        + "```yaml\n".len();
    let len = doc
        .get(start..)
        .and_then(|r| r.find("```"))
        .expect("block end");
    let yaml = doc.get(start..start + len).expect("block");
    let set = load(yaml).expect("docs example loads");
    assert!(set.run_inline_tests().is_empty());
}

/// The layering and `require_encrypted` examples of docs/rules.md load as written.
#[test]
fn docs_layering_and_encryption_examples_load() {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/rules.md"))
        .expect("docs/rules.md");
    let block_after = |heading: &str| -> String {
        let at = doc.find(heading).expect("heading");
        let rest = doc.get(at..).unwrap_or("");
        let start = rest.find("```yaml\n").expect("block") + "```yaml\n".len();
        let len = rest.get(start..).and_then(|r| r.find("```")).expect("end");
        rest.get(start..start + len).unwrap_or("").to_string()
    };
    let base = read_dir_sources(&Path::new(env!("CARGO_MANIFEST_DIR")).join("rules"))
        .expect("default pack");
    let site = vec![(PathBuf::from("site/site.yaml"), block_after("## Layering"))];
    let set = RuleSet::from_layers(&[base, site]).expect("layered example loads");
    assert_eq!(set.get("us-phone").map(|r| r.mode), Some(Mode::Off));
    assert_eq!(
        set.get("fhir-patient-name").map(|r| r.mode),
        Some(Mode::Enforce)
    );
    assert!(set.run_inline_tests().is_empty());
    let enc = block_after("### Encrypted fields");
    let set = load(&format!("rules:\n{enc}")).expect("encryption example loads");
    assert_eq!(set.len(), 1);
}

#[test]
fn category_and_severity_parse_strictly() {
    // YAML 1.1 would read N as a boolean; the rule schema must not.
    let set = load(&MINIMAL.replace("category: G", "category: N")).expect("loads");
    assert_eq!(
        set.get("demo-rule").and_then(|r| r.category),
        Some(Category::N)
    );
    let e = source_err(&MINIMAL.replace("category: G", "category: S"));
    assert!(e.field.ends_with("category"), "{e}");
    let e = source_err(&MINIMAL.replace("severity: low", "severity: LOW"));
    assert!(e.field.ends_with("severity"), "{e}");
}

#[test]
fn directory_errors() {
    let missing = Path::new("/nonexistent/phi-gateway-rules");
    assert!(matches!(
        RuleSet::load_dir(missing),
        Err(RuleError::Dir { .. })
    ));
    let empty = std::env::temp_dir().join(format!("phi-rules-empty-{}", std::process::id()));
    std::fs::create_dir_all(&empty).expect("mkdir");
    std::fs::write(empty.join("README.md"), "not a rule").expect("write");
    let r = RuleSet::load_dir(&empty);
    let _ = std::fs::remove_dir_all(&empty);
    assert!(matches!(r, Err(RuleError::Empty { .. })), "{r:?}");
}

#[test]
fn inline_test_failures_are_reported_masked() {
    let text = format!(
        "{MINIMAL}    tests:\n      match: ['nothing here']\n      no_match: ['536221234']\n"
    );
    let set = load(&text).expect("loads");
    let failures = set.run_inline_tests();
    assert_eq!(failures.len(), 2, "{failures:?}");
    let f = failures.get(1).expect("second");
    assert_eq!(f.expected, "no match");
    assert_eq!(f.input_masked, "#########");
    assert_eq!(f.line, 13);
    assert!(!f.to_string().contains("536"));
}

#[test]
fn off_rules_are_listed_and_tested_but_not_scanned() {
    let text = MINIMAL.replace(
        "    validators: [ssn]\n",
        "    validators: [ssn]\n    mode: off\n    tests:\n      match: ['536221234']\n",
    );
    let set = load(&text).expect("loads");
    assert_eq!(set.get("demo-rule").map(|r| r.mode), Some(Mode::Off));
    assert!(set.run_inline_tests().is_empty());
    let engine = crate::engine::Engine::new(std::sync::Arc::new(set));
    let scan = engine
        .scan(&Part::Text("536221234"), &Limits::default())
        .expect("scans");
    assert!(scan.findings.is_empty());
}

#[test]
fn test_objects_are_validated() {
    let text = format!(
        "{MINIMAL}    tests:\n      match: [{{ query: 'a=b', content_type: text/plain }}]\n"
    );
    let e = source_err(&text);
    assert!(e.message.contains("content_type"), "{e}");
    let text = format!("{MINIMAL}    tests:\n      match: [{{ bdy: 'x' }}]\n");
    let e = source_err(&text);
    assert!(e.message.contains("unknown field"), "{e}");
}

#[test]
fn selector_probes_split_type_and_pieces() {
    use super::SelectorProbe;
    let keys = |ty: Option<(&str, bool)>, pieces: &[&str]| SelectorProbe::Keys {
        resource: ty.map(|(t, e)| (t.to_string(), e)),
        pieces: pieces.iter().map(|p| p.to_string()).collect(),
    };
    for (sel, want) in [
        (
            "fhir:Patient.name.family",
            keys(Some(("Patient", true)), &["family", "name"]),
        ),
        (
            "fhir:*.identifier.value",
            keys(None, &["identifier", "value"]),
        ),
        (
            "fhir:MedicinalProduct*",
            keys(Some(("MedicinalProduct", false)), &[]),
        ),
        (
            "fhir:Patient.name.text",
            keys(Some(("Patient", true)), &["name", "text"]),
        ),
        ("json:/member/0/ssn", keys(None, &["member", "ssn"])),
        ("hl7:PID-3", SelectorProbe::NeverJson),
        ("form:ssn", SelectorProbe::NeverJson),
    ] {
        assert_eq!(SelectorProbe::new(sel), want, "{sel}");
    }
}

#[test]
fn where_request_and_response_choose_the_message() {
    use crate::engine::{Message, ScanOptions};
    let set = load(
        "rules:
  - id: sig
    description: an error signature
    severity: high
    patterns:
      - regex: 'Traceback \\(most recent call last\\)'
        score: 0.9
    where: [response]
  - id: both
    description: a PHI rule without a direction
    category: R
    severity: low
    patterns:
      - regex: 'PAT-[0-9]{4}'
        score: 0.9
  - id: req
    description: a request-only rule
    category: R
    severity: low
    patterns:
      - regex: 'REQ-[0-9]{4}'
        score: 0.9
    where: [request, body]
",
    )
    .expect("loads");
    assert_eq!(set.get("sig").and_then(|r| r.category), None);
    let text = "Traceback (most recent call last): PAT-1234 REQ-5678";
    let fired = |message: Message| -> Vec<String> {
        let part = Part::Body {
            content_type: Some("text/plain"),
            content_encoding: None,
            bytes: text.as_bytes(),
        };
        let options = ScanOptions::default().message(message);
        let scan = crate::engine::scan_rules(&set, &part, &Limits::default(), None, &options)
            .expect("scans");
        let mut ids: Vec<String> = scan.findings.into_iter().map(|f| f.rule_id).collect();
        ids.sort();
        ids.dedup();
        ids
    };
    assert_eq!(fired(Message::Request), ["both", "req"]);
    assert_eq!(fired(Message::Response), ["both", "sig"]);
    // A 2xx body is PHI by design: only the explicit response signatures run on it.
    assert_eq!(fired(Message::ResponseSignatures), ["sig"]);
}

#[test]
fn only_response_rules_may_omit_the_category() {
    let e = source_err(&MINIMAL.replace("    category: G\n", ""));
    assert!(e.field.ends_with("category"), "{e}");
    assert!(e.to_string().contains("where: [response]"), "{e}");
    let e = source_err(&format!("{MINIMAL}    where: [sideways]\n"));
    assert!(e.to_string().contains("request, response"), "{e}");
}
