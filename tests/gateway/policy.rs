//! `phi-gateway policy test`: the real binary over the shipped policy, a policy whose test
//! fails, and a policy that does not load (exit codes 0, 1, 78 like `rules test`).

use std::path::Path;
use std::process::{Command, Output};

fn policy_test(dirs: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_phi-gateway"))
        .args(["policy", "test"])
        .args(dirs)
        .output()
        .expect("run phi-gateway policy test")
}

fn shipped() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/policy")
}

#[test]
fn policy_test_passes_on_the_shipped_policy() {
    let out = policy_test(&[&shipped()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("4 roles") && text.contains(" 0 failed, 0 lint"),
        "{text}"
    );
}

#[test]
fn a_failing_policy_test_exits_1_naming_file_line_and_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let policy = std::fs::read_to_string(shipped().join("default.yaml")).unwrap();
    // Turn the record-hopping test into one that expects the hop to be allowed.
    let needle = "  - name: patient app cannot hop to another patient\n    subject: {scope: \"patient/*.rs\", patient: pat-1}\n    request: {method: GET, url: Patient/pat-2}\n    expect: deny\n    reason: patient_mismatch\n";
    assert!(
        policy.contains(needle),
        "fixture test not found in deploy/policy/default.yaml"
    );
    let broken = policy.replacen(
        needle,
        "  - name: patient app cannot hop to another patient\n    subject: {scope: \"patient/*.rs\", patient: pat-1}\n    request: {method: GET, url: Patient/pat-2}\n    expect: allow\n",
        1,
    );
    let line = broken[..broken.find("  - name: patient app cannot hop").unwrap()]
        .lines()
        .count()
        + 1;
    std::fs::write(dir.path().join("default.yaml"), broken).unwrap();
    let out = policy_test(&[dir.path()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("default.yaml:{line}: test `patient app cannot hop to another patient`: expected allow, got deny patient_mismatch")),
        "{text}"
    );
    assert!(text.contains("1 failed"), "{text}");
}

#[test]
fn a_policy_that_does_not_load_exits_78_naming_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("site.yaml"),
        "roles:\n  - name: porter\n    grants:\n      - types: [Observation]\n        interactions: [read, wheel]\n",
    )
    .unwrap();
    let out = policy_test(&[dir.path()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains("site.yaml:5:")
            && err.contains("roles[0].grants[0].interactions[1]")
            && err.contains("wheel"),
        "{err}"
    );
    // A site layer over the shipped policy: its roles override and disable by name.
    std::fs::write(
        dir.path().join("site.yaml"),
        "disable: [billing]\ntests:\n  - name: billing is gone at this site\n    subject: {roles: [billing], scope: 'user/*.rs'}\n    request: {method: GET, url: Coverage/c-1}\n    expect: deny\n    reason: no_matching_role\n",
    )
    .unwrap();
    let out = policy_test(&[&shipped(), dir.path()]);
    let text = String::from_utf8_lossy(&out.stdout);
    // The shipped billing tests now fail (billing is disabled): exit 1, and they are named.
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("test `billing reads coverage`"), "{text}");
    assert!(text.contains("3 roles"), "{text}");
}
