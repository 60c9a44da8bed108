//! `phi-gateway scan` and `phi-gateway rules test`: the binary, run as a rule author would.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::run_scan;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_phi-gateway"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn json_lines(o: &Output) -> Vec<serde_json::Value> {
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

const SSN: &str = "536-22-1234";

#[test]
fn scan_json_reports_rule_category_location_and_chain_and_masks_values() {
    let body = format!(r#"{{"resourceType":"Patient","ssn":"{SSN}"}}"#);
    let o = run_scan(
        &[
            "--rules",
            "rules",
            "--json",
            "--content-type",
            "application/fhir+json",
            "-",
        ],
        body.as_bytes(),
    );
    assert_eq!(o.status.code(), Some(1), "findings exit 1: {}", stdout(&o));
    let lines = json_lines(&o);
    let f = lines
        .iter()
        .find(|v| v["rule"] == "us-ssn")
        .expect("us-ssn finding");
    assert_eq!(f["category"], "G");
    assert_eq!(f["location"], "body:/ssn");
    assert_eq!(f["decode_chain"], serde_json::json!(["json"]));
    assert!(!stdout(&o).contains(SSN) && !stdout(&o).contains("536221234"));
}

#[test]
fn scan_clean_input_exits_zero_and_errors_exit_two() {
    let o = run_scan(
        &["--rules", "rules", "-"],
        br#"{"resourceType":"Patient","active":true}"#,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("0 finding(s)"));
    // Unreadable file, bad rules dir, undecodable body: 2.
    let o = run_scan(&["--rules", "rules", "/definitely/not/here.json"], b"");
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/definitely/not/here.json"));
    let o = run_scan(&["--rules", "/no/such/rules", "-"], b"x");
    assert_eq!(o.status.code(), Some(2));
    let o = run_scan(
        &["--rules", "rules", "--content-encoding", "gzip", "-"],
        b"not gzip",
    );
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
}

#[test]
fn scan_sees_through_content_encoding() {
    let mut gz = flate2_gzip(format!("SSN {SSN}").as_bytes());
    let o = run_scan(
        &[
            "--rules",
            "rules",
            "--json",
            "--content-encoding",
            "gzip",
            "-",
        ],
        &gz,
    );
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let lines = json_lines(&o);
    assert_eq!(
        lines[0]["decode_chain"],
        serde_json::json!(["gzip", "text"])
    );
    gz.clear();
}

/// A minimal gzip member (stored, uncompressed blocks) so the test needs no extra crate.
fn flate2_gzip(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    for (i, chunk) in data.chunks(65535).enumerate() {
        let last = (i + 1) * 65535 >= data.len();
        out.push(u8::from(last));
        let len = chunk.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    if data.is_empty() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for b in data {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn scan_http_request_covers_path_query_headers_and_body() {
    let req = format!(
        "POST /fhir/Patient/by-ssn/{SSN}?mbi=1EG4-TE5-MK73 HTTP/1.1\r\nHost: ehr\r\nX-Patient-SSN: {SSN}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 14\r\n\r\nssn=536221234&"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("req.http");
    std::fs::write(&file, req).expect("write");
    let o = run_scan(
        &[
            "--rules",
            "rules",
            "--json",
            "--http",
            file.to_str().expect("utf8"),
        ],
        b"",
    );
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let locs: Vec<String> = json_lines(&o)
        .iter()
        .map(|v| {
            format!(
                "{}={}",
                v["rule"].as_str().unwrap_or(""),
                v["location"].as_str().unwrap_or("")
            )
        })
        .collect();
    for want in [
        "us-ssn=path@",
        "us-mbi=query:mbi",
        "us-ssn=header:x-patient-ssn",
        "us-ssn=body:form:ssn",
    ] {
        assert!(
            locs.iter().any(|l| l.starts_with(want)),
            "{want} in {locs:?}"
        );
    }
    // A file that is not a request is an error.
    std::fs::write(&file, "garbage").expect("write");
    let o = run_scan(
        &["--rules", "rules", "--http", file.to_str().expect("utf8")],
        b"",
    );
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn scan_explain_shows_validator_context_score_and_near_misses() {
    let o = run_scan(
        &["--rules", "rules", "--explain", "-"],
        b"SSN: 536-22-1234. Old card: SSN 078-05-1120.",
    );
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(out.contains("validators: ssn passed"), "{out}");
    assert!(out.contains("context: `ssn` in window"), "{out}");
    assert!(out.contains("score 0.95"), "{out}");
    assert!(out.contains("validator `ssn` failed"), "{out}");
    assert!(out.contains("###-##-####"), "{out}");
    assert!(!out.contains("078-05-1120") && !out.contains(SSN), "{out}");
    let o = run_scan(
        &["--rules", "rules", "--explain", "--json", "-"],
        b"SSN: 078-05-1120",
    );
    assert_eq!(o.status.code(), Some(0), "a near miss is not a finding");
    let lines = json_lines(&o);
    assert_eq!(lines[0]["near_miss"], true);
    assert_eq!(lines[0]["reason"], "validator `ssn` failed");
}

#[test]
fn rules_test_runs_fixtures_and_lints() {
    // The shipped pack is clean.
    let o = bin()
        .args(["rules", "test", "rules"])
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    // A rule without negative examples, and a fixture that expects the wrong thing.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("r.yaml"),
        "rules:\n  - id: word\n    description: d\n    category: R\n    severity: low\n    patterns:\n      - regex: 'secretword'\n        score: 0.9\n    tests:\n      match: ['a secretword']\n",
    )
    .expect("write");
    std::fs::create_dir(dir.path().join("tests")).expect("mkdir");
    std::fs::write(
        dir.path().join("tests/ok.http"),
        "# ruleid: word\nPOST /x HTTP/1.1\r\nContent-Type: text/plain\r\n\r\nthe secretword\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("tests/bad.txt"),
        "# ok: word\nsecretword here\n",
    )
    .expect("write");
    let o = bin()
        .args(["rules", "test"])
        .arg(dir.path())
        .output()
        .expect("run");
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("LINT") && out.contains("no negative example"),
        "{out}"
    );
    assert!(
        out.contains("bad.txt") && out.contains("expected ok: word"),
        "{out}"
    );
    assert!(!out.contains("ok.http"), "{out}");
    assert!(
        out.contains("1 fixture") || out.contains("2 fixture"),
        "{out}"
    );
}

#[test]
fn rules_test_reports_a_rule_whose_own_example_does_not_trigger() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("r.yaml"),
        "rules:\n  - id: word\n    description: d\n    category: R\n    severity: low\n    patterns:\n      - regex: 'secretword'\n        score: 0.9\n    tests:\n      match: ['nothing here']\n      no_match: ['x']\n",
    )
    .expect("write");
    let o = bin()
        .args(["rules", "test"])
        .arg(dir.path())
        .output()
        .expect("run");
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("rule `word`: expected match, got no finding"),
        "{out}"
    );
    assert!(Path::new(env!("CARGO_MANIFEST_DIR")).join("rules").is_dir());
}

/// `--response` scans a body as the response leak guard scans an error answer: the error
/// signatures (`where: [response]`) fire, with `-` for their category; without it, as a
/// request, they do not.
#[test]
fn scan_response_runs_the_error_signatures() {
    let page =
        "java.lang.IllegalStateException: boom\n\tat org.example.ehr.Dao.load(Dao.java:12)\n";
    let args = ["--rules", "rules", "--content-type", "text/plain"];
    let o = run_scan(&[&args[..], &["--response", "-"]].concat(), page.as_bytes());
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("java-stack-trace\t- (high)"),
        "{}",
        stdout(&o)
    );
    let o = run_scan(&[&args[..], &["-"]].concat(), page.as_bytes());
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
}
