//! `phi-gateway check`: exit 0 on a valid config without binding; exit 78 with
//! `file:line:` messages on invalid ones.

use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Output, Stdio};

use crate::common::*;

fn run_check(files: &GatewayFiles) -> Output {
    Command::new("timeout")
        .arg("10")
        .arg(env!("CARGO_BIN_EXE_phi-gateway"))
        .arg("check")
        .arg("--config")
        .arg(&files.config)
        .current_dir(files.dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("run phi-gateway check")
}

fn files() -> GatewayFiles {
    GatewayFiles::new(&GatewayOpts::new(SocketAddr::from((
        [127, 0, 0, 1],
        free_port(),
    ))))
}

fn rewrite(f: &GatewayFiles, from: &str, to: &str) -> String {
    assert!(f.yaml.contains(from), "`{from}` not in config");
    let text = f.yaml.replacen(from, to, 1);
    std::fs::write(&f.config, &text).unwrap();
    text
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `check`, asserts exit 78 and that stderr names every string in `wanted`.
fn check_fails_naming(f: &GatewayFiles, wanted: &[&str]) {
    let out = run_check(f);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(78), "{err}");
    for w in wanted {
        assert!(err.contains(w), "want `{w}` in: {err}");
    }
}

#[test]
fn valid_config_passes_without_binding_ports() {
    let f = files();
    // Hold both ports: `check` must not try to bind them.
    let _listen = TcpListener::bind(("127.0.0.1", f.port)).expect("hold listen port");
    let _admin = TcpListener::bind(("127.0.0.1", f.admin_port)).expect("hold admin port");
    let out = run_check(&f);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));
}

#[test]
fn typo_key_names_file_line_and_key() {
    let f = files();
    let text = rewrite(&f, "    max_body_bytes:", "    max_body_byts:");
    let line = GatewayFiles::line_of(&text, "max_body_byts");
    check_fails_naming(&f, &[&format!("gateway.yaml:{line}:"), "max_body_byts"]);
}

#[test]
fn unknown_upstream_names_line_and_field() {
    let f = files();
    let text = rewrite(&f, "    upstream: ehr\n", "    upstream: ehr-typo\n");
    let line = GatewayFiles::line_of(&text, "upstream: ehr-typo");
    check_fails_naming(
        &f,
        &[
            &format!("gateway.yaml:{line}:"),
            "routes[0].upstream",
            "ehr-typo",
        ],
    );
}

#[test]
fn missing_certificate_file_is_named() {
    let f = files();
    rewrite(&f, "cert_file: server.pem", "cert_file: no-such-cert.pem");
    check_fails_naming(&f, &["no-such-cert.pem"]);
}

#[test]
fn invalid_rule_file_names_file_line_and_key() {
    let f = files();
    let bad = f.dir.path().join("rules").join("zz-typo.yaml");
    std::fs::write(&bad, "rules:\n  - id: zz-test\n    descripton: typo\n").unwrap();
    check_fails_naming(&f, &["zz-typo.yaml:3:", "descripton"]);
}

fn rules_test(dir: &std::path::Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_phi-gateway"))
        .args(["rules", "test"])
        .arg(dir)
        .output()
        .expect("run phi-gateway rules test")
}

#[test]
fn rules_test_passes_on_the_default_pack_and_reports_a_broken_example() {
    let repo_rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let out = rules_test(&repo_rules);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("0 failed"), "{text}");

    // A `no_match` example that is a real SSN must fail, naming the rule and the line.
    let dir = tempfile::tempdir().unwrap();
    let pack = std::fs::read_to_string(repo_rules.join("identifiers.yaml")).unwrap();
    let broken = pack.replacen(
        "        - 'order 536221234 shipped'",
        "        - 'SSN 536-22-1234'",
        1,
    );
    assert_ne!(
        broken, pack,
        "fixture line not found in rules/identifiers.yaml"
    );
    let line = GatewayFiles::line_of(&broken, "'SSN 536-22-1234'");
    std::fs::write(dir.path().join("identifiers.yaml"), broken).unwrap();
    let out = rules_test(dir.path());
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("identifiers.yaml:{line}: rule `us-ssn`")),
        "{text}"
    );
    assert!(
        !text.contains("536-22-1234"),
        "inputs must be masked: {text}"
    );

    // A directory that does not exist is a configuration error.
    let out = rules_test(&dir.path().join("missing"));
    assert_eq!(out.status.code(), Some(78));
}

/// Lays out `gateway_yaml` the way deploy/ documents it — `DIR/rules/` (the repository's
/// pack), `DIR/policy/` (deploy/policy), `DIR/tls/{server.pem,server.key,upstream-ca.pem,tls.crt,tls.key}` (generated by
/// `dev-certs`) and the config at `DIR/config_rel` — and runs `check` with `extra` args.
pub fn check_deploy_config(config_rel: &str, gateway_yaml: &str, extra: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let tls = dir.path().join("tls");
    let out = Command::new(env!("CARGO_BIN_EXE_phi-gateway"))
        .args(["dev-certs", "--out"])
        .arg(&tls)
        .output()
        .expect("run phi-gateway dev-certs");
    assert!(out.status.success(), "dev-certs: {}", stderr(&out));
    std::fs::copy(tls.join("ca.pem"), tls.join("upstream-ca.pem")).unwrap();
    // The names a Kubernetes TLS Secret mounts.
    std::fs::copy(tls.join("server.pem"), tls.join("tls.crt")).unwrap();
    std::fs::copy(tls.join("server.key"), tls.join("tls.key")).unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    // The rule files (the pack's fixture directory, rules/tests/, is not needed to load it).
    for entry in std::fs::read_dir(repo.join("rules")).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, rules.join(p.file_name().unwrap())).unwrap();
        }
    }
    // The access policy the examples name (`policy/` beside `rules/`).
    let policy = dir.path().join("policy");
    std::fs::create_dir(&policy).unwrap();
    for entry in std::fs::read_dir(repo.join("deploy/policy")).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, policy.join(p.file_name().unwrap())).unwrap();
        }
    }
    let config = dir.path().join(config_rel);
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    // The audit keys the examples name (/etc/phi-gateway/keys/), as `audit keygen` makes them.
    let keys = dir.path().join("keys");
    let out = Command::new(env!("CARGO_BIN_EXE_phi-gateway"))
        .args(["audit", "keygen", "--keys-dir"])
        .arg(&keys)
        .arg("--pubkey")
        .arg(dir.path().join("audit-signing.pub"))
        .output()
        .expect("run phi-gateway audit keygen");
    assert!(out.status.success(), "audit keygen: {}", stderr(&out));
    std::fs::write(&config, gateway_yaml).unwrap();
    Command::new("timeout")
        .arg("20")
        .arg(env!("CARGO_BIN_EXE_phi-gateway"))
        .arg("check")
        .arg("--config")
        .arg(&config)
        .args(extra)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("run phi-gateway check")
}

#[test]
fn deploy_gateway_yaml_passes_check() {
    let yaml = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/gateway.yaml"),
    )
    .unwrap();
    let out = check_deploy_config("gateway.yaml", &yaml, &["--no-resolve"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    assert!(
        text.contains("ok (3 routes, 2 upstreams") && text.contains("not resolved"),
        "{text}"
    );
    assert!(
        text.contains("access policy: 4 roles, 3 permissions entries, on 1 routes"),
        "{text}"
    );

    // Without --no-resolve the example's hospital-internal host name is looked up like `run`
    // does, and on a machine outside that network `check` says so and names the field.
    let out = check_deploy_config("gateway.yaml", &yaml, &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(78), "{err}");
    for want in [
        "upstreams[1].address",
        "ehr.hospital.internal",
        "--no-resolve",
    ] {
        assert!(err.contains(want), "want `{want}` in: {err}");
    }
}

#[test]
fn kubernetes_gateway_config_passes_check() {
    #[derive(serde::Deserialize)]
    struct ConfigMap {
        data: std::collections::BTreeMap<String, String>,
    }
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("deploy/kubernetes/configmap-gateway.yaml"),
    )
    .unwrap();
    let cm: ConfigMap = serde_saphyr::from_str(&text).unwrap();
    let yaml = &cm.data["gateway.yaml"];
    // Mounted at /etc/phi-gateway/config/, next to rules/ and tls/ (see deployment.yaml).
    let out = check_deploy_config("config/gateway.yaml", yaml, &["--no-resolve"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    assert!(text.contains("ok (1 routes, 1 upstreams"), "{text}");
    assert!(text.contains("access policy: 4 roles"), "{text}");
    assert!(
        text.contains("audit trail in /var/lib/phi-gateway/audit"),
        "{text}"
    );
}
