//! `phi-gateway scan --lines`: PHI in the logs of other systems, line by line.

use std::process::Command;

use crate::common::run_scan;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const SSN: &str = "536-22-1234";

#[test]
fn lines_reports_file_line_rule_and_shape_for_text_and_json_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("app.log");
    std::fs::write(
        &log,
        format!(
            "2026-01-02T03:04:05Z INFO started\n\
             2026-01-02T03:04:06Z ERROR lookup failed for SSN {SSN}\n\
             {{\"level\":\"error\",\"member\":{{\"ssn\":\"{SSN}\"}}}}\n\
             {{\"level\":\"info\",\"order\":\"536221234\"}}\r\n\
             \n\
             tail without newline, ssn: {SSN}"
        ),
    )
    .expect("write log");
    let path = log.to_str().expect("utf-8");
    let o = run_scan(&["--rules", "rules", "--lines", path], b"");
    let out = text(&o.stdout);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "findings exit 1: {out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].starts_with(&format!("{path}:2\tus-ssn\t")),
        "{out}"
    );
    assert!(lines[0].ends_with("\t###-##-####"), "{out}");
    assert!(
        lines[1].starts_with(&format!("{path}:3\tus-ssn\t")),
        "{out}"
    );
    assert!(
        lines[1].contains("\tjson:/member/ssn\t"),
        "JSON keys give the place: {out}"
    );
    assert!(lines[2].starts_with(&format!("{path}:6\t")), "{out}");
    assert!(!out.contains(SSN) && !err.contains(SSN) && !out.contains("536221234"));
    assert!(
        err.contains("6 line(s)")
            && err.contains("3 finding(s) on 3 line(s)")
            && err.contains("MB/s"),
        "{err}"
    );

    // JSON output, from standard input.
    let o = run_scan(
        &["--rules", "rules", "--lines", "--json", "-"],
        format!("x\n{{\"member\":{{\"ssn\":\"{SSN}\"}}}}\n").as_bytes(),
    );
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_str(text(&o.stdout).trim()).expect("one JSON line");
    assert_eq!(v["line"], 2);
    assert_eq!(v["rule"], "us-ssn");
    assert_eq!(v["location"], "json:/member/ssn");
    assert_eq!(v["value"], "###-##-####");
    assert!(
        v.get("fingerprint").is_none(),
        "no key, no fingerprint: {v}"
    );
}

#[test]
fn lines_exit_codes_clean_and_error() {
    let o = run_scan(
        &["--rules", "rules", "--lines", "-"],
        b"GET /fhir/Patient 200 12ms\nall quiet\n",
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stdout));
    assert!(o.stdout.is_empty());
    assert!(text(&o.stderr).contains("2 line(s)"));
    let o = run_scan(
        &["--rules", "rules", "--lines", "/nonexistent/app.log"],
        b"",
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("/nonexistent/app.log"));
}

/// A line over the cap is scanned in overlapping pieces, not dropped: a value in the middle,
/// one across a cut and one at the end are all found, once each, with a note on stderr.
#[test]
fn lines_over_the_cap_are_scanned_in_pieces() {
    let cap = 4096;
    let mut line = String::new();
    let filler = |n: usize| "lorem ipsum dolor sit amet ".repeat(n / 27 + 1)[..n].to_string();
    line.push_str(&filler(1000));
    line.push_str(&format!(" ssn {SSN} "));
    // Straddle the first cut at `cap` bytes.
    let straddle_at = cap - 6 - line.len();
    line.push_str(&filler(straddle_at));
    line.push_str(&format!("ssn {SSN} "));
    line.push_str(&filler(3 * cap));
    line.push_str(&format!(" ssn {SSN}"));
    let input = format!("first\n{line}\nlast ssn {SSN}\n");
    let o = run_scan(
        &[
            "--rules",
            "rules",
            "--lines",
            "--max-line-bytes",
            &cap.to_string(),
            "-",
        ],
        input.as_bytes(),
    );
    let out = text(&o.stdout);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let on_line_2 = out.lines().filter(|l| l.contains(":2\t")).count();
    assert_eq!(on_line_2, 3, "{out}");
    assert_eq!(
        out.lines().filter(|l| l.contains(":3\t")).count(),
        1,
        "{out}"
    );
    assert!(err.contains(":2: longer than 4096 bytes"), "{err}");
    assert!(err.contains("3 line(s)"), "{err}");
}

#[test]
fn lines_help_explains_it() {
    let o = Command::new(env!("CARGO_BIN_EXE_phi-gateway"))
        .args(["scan", "--help"])
        .output()
        .expect("run");
    let help = text(&o.stdout);
    assert!(
        help.contains("--lines") && help.contains("FILE:LINE"),
        "{help}"
    );
    assert!(
        help.contains("--max-line-bytes") && help.contains("--fingerprint-key"),
        "{help}"
    );
}
