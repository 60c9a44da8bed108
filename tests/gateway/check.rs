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
    let out = run_check(&f);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains(&format!("gateway.yaml:{line}:")),
        "want line {line}: {err}"
    );
    assert!(err.contains("max_body_byts"), "{err}");
}

#[test]
fn unknown_upstream_names_line_and_field() {
    let f = files();
    let text = rewrite(&f, "    upstream: ehr\n", "    upstream: ehr-typo\n");
    let line = GatewayFiles::line_of(&text, "upstream: ehr-typo");
    let out = run_check(&f);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains(&format!("gateway.yaml:{line}:")),
        "want line {line}: {err}"
    );
    assert!(err.contains("routes[0].upstream"), "{err}");
    assert!(err.contains("ehr-typo"), "{err}");
}

#[test]
fn missing_certificate_file_is_named() {
    let f = files();
    rewrite(&f, "cert_file: server.pem", "cert_file: no-such-cert.pem");
    let out = run_check(&f);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(err.contains("no-such-cert.pem"), "{err}");
}

#[test]
fn invalid_rule_file_names_file_line_and_key() {
    let f = files();
    let bad = f.dir.path().join("rules").join("zz-typo.yaml");
    std::fs::write(&bad, "rules:\n  - id: zz-test\n    descripton: typo\n").unwrap();
    let out = run_check(&f);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(err.contains("zz-typo.yaml:3:"), "{err}");
    assert!(err.contains("descripton"), "{err}");
}
