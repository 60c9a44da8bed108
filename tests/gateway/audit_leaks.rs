//! Proof that the audit trail holds no PHI: a PHI-laden request mix — every detector in
//! rules/, in every place the gateway inspects, with percent, form, JSON `\u`, gzip and base64
//! encodings, on an enforce and a monitor route, plus PHI in the free-text headers the record
//! carries (user agent, audit header, identity header) — then a search of the audit files, the
//! PostgreSQL table, the gateway's log output and a metrics scrape for every injected value in
//! every encoding it was sent in. Zero hits.

use std::io::Write as _;

use base64::Engine as _;

use crate::common::*;
use crate::postgres::{pg_opts, rows_when, Postgres};

/// (rule id, context word or field, synthetic value) — values from the rules' own inline
/// tests. Every syntactic detector of the default pack, and a structural one.
const PHI: &[(&str, &str, &str)] = &[
    ("email", "email", "jane.roe@synthetic-clinic.org"),
    ("us-phone", "phone", "404-321-7788"),
    ("credit-card", "card", "4526018159083012"),
    ("us-ssn", "ssn", "536-22-1234"),
    ("us-itin", "itin", "911-70-1234"),
    ("us-npi", "npi", "1245319599"),
    ("us-mbi", "mbi", "1EG4-TE5-MK73"),
    ("us-dea", "dea", "AB1234563"),
    ("us-aba-routing", "routing", "011000015"),
    ("iban", "iban", "GB82WEST12345698765432"),
    ("mrn-keyword", "mrn", "00481234"),
    ("dob-keyword", "dob", "06/15/1961"),
    ("us-hicn", "hicn", "536221234A"),
    ("vin", "vin", "1M8GDM9AXKP042788"),
    ("ipv4-patient", "ip_address", "203.0.113.7"),
    // Structural: a Patient's birthDate is PHI by position, whatever it looks like.
    ("fhir-patient-birthdate", "birthDate", "1961-06-15"),
];

fn percent_all(v: &str) -> String {
    v.bytes().map(|b| format!("%{b:02X}")).collect()
}

fn json_u_escapes(v: &str) -> String {
    v.chars().map(|c| format!("\\u{:04x}", c as u32)).collect()
}

fn form(key: &str, v: &str) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair(key, v)
        .finish()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// Every spelling of `v` that goes on the wire in this test.
fn encodings(key: &str, v: &str) -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(v);
    let mut out = vec![
        v.to_string(),
        v.replace('-', ""),
        percent_all(v),
        percent_all(v).to_lowercase(),
        form(key, v),
        form(key, v).split_once('=').unwrap().1.to_string(),
        json_u_escapes(v),
        b64.clone(),
        b64.trim_end_matches('=').to_string(),
    ];
    out.retain(|s| s.len() >= 6);
    out.sort();
    out.dedup();
    out
}

#[tokio::test]
async fn no_injected_phi_value_reaches_audit_files_postgres_logs_or_metrics() {
    let pg = Postgres::start();
    let up = RecordingUpstream::start();
    let mut o = pg_opts(up.addr(), &pg);
    o.inspect_headers = vec!["x-patient-note".into()];
    o.audit_extra.extend([
        "  user_id:".to_string(),
        "    source: header".to_string(),
        "    header: x-authenticated-user".to_string(),
    ]);
    // Clear resource ids on the enforce route: a detector hit must still be fingerprinted.
    o.fhir_route_extra = vec!["    audit:".into(), "      resource_id: clear".into()];
    let gw = Gateway::start(o);
    let c = gw.client(false);
    let mut sent = 0usize;

    for route in ["fhir", "monitor"] {
        for (_, key, v) in PHI {
            let b64 = base64::engine::general_purpose::STANDARD.encode(v);
            let json = format!(r#"{{"resourceType":"Patient","{key}":"{v}"}}"#);
            let token = format!("{key}:{}", v.replace(' ', ""));
            let reqs = vec![
                // Query, percent-encoded.
                c.get(gw.url(&format!("/{route}/Patient?{key}={}", percent_all(v)))),
                // Path (plain and percent-encoded): the resource id.
                c.get(gw.url(&format!("/{route}/Patient/{}", v.replace(' ', "")))),
                c.get(gw.url(&format!("/{route}/Patient/{}", percent_all(v)))),
                // An inspected header.
                c.get(gw.url(&format!("/{route}/Patient")))
                    .header("x-patient-note", format!("{key} {v}")),
                // JSON body, plain and with \u escapes.
                c.post(gw.url(&format!("/{route}/Patient")))
                    .header("content-type", "application/fhir+json")
                    .body(json.clone()),
                c.post(gw.url(&format!("/{route}/Patient")))
                    .header("content-type", "application/json")
                    .body(format!(r#"{{"{key}":"{}"}}"#, json_u_escapes(v))),
                // Form body.
                c.post(gw.url(&format!("/{route}/Patient")))
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(form(key, v)),
                // gzip-compressed JSON body.
                c.post(gw.url(&format!("/{route}/Patient")))
                    .header("content-type", "application/fhir+json")
                    .header("content-encoding", "gzip")
                    .body(gzip(json.as_bytes())),
                // base64 inside a JSON value.
                c.post(gw.url(&format!("/{route}/Binary")))
                    .header("content-type", "application/json")
                    .body(format!(
                        r#"{{"resourceType":"Binary","data":"{b64}","{key}_b64":"{b64}"}}"#
                    )),
                // PHI in the free-text values a record carries.
                c.get(gw.url(&format!("/{route}/Observation")))
                    .header("user-agent", format!("client ({key} {v})"))
                    .header("x-authenticated-user", token.clone()),
            ];
            for (i, req) in reqs.into_iter().enumerate() {
                let audit = if i == 9 {
                    token.clone()
                } else {
                    format!("leak-{route}-{i}")
                };
                let resp = req.header(AUDIT, audit).send().await.expect("request");
                let (status, _, body, _) = read_response(resp).await;
                assert!(status > 0, "{body}");
                sent += 1;
            }
        }
    }

    // Everything written: the file sink (durable before each response), PostgreSQL (async).
    let records = gw.audit_records();
    assert_eq!(records.len(), sent, "one record per request");
    let rows = rows_when(&pg, sent as i64).await;
    assert_eq!(rows.len(), sent, "{}", gw.logs());

    // The mix really was PHI-laden: every detector fired on both routes.
    for route in ["fhir", "monitor"] {
        for (rule, _, _) in PHI {
            assert!(
                records
                    .iter()
                    .filter(|r| r["route"] == route)
                    .any(|r| r["rule_ids"].as_array().unwrap().iter().any(|x| x == rule)),
                "{rule} never fired on {route}"
            );
        }
    }
    assert!(records.iter().any(|r| r["decision"] == "block"));
    assert!(records.iter().any(|r| r["decision"] == "would_block"));
    assert!(
        records.iter().any(|r| r["resource_id"]
            .as_str()
            .is_some_and(|s| s.starts_with("hmac-sha256:"))),
        "detector hits in the path are fingerprinted even on a clear route"
    );

    // Search everywhere.
    let mut audit_files = String::new();
    for e in std::fs::read_dir(gw.audit_dir()).unwrap().flatten() {
        audit_files.push_str(&String::from_utf8_lossy(&std::fs::read(e.path()).unwrap()));
    }
    let client = pg.client().await;
    let table: String = client
        .query_one(
            "SELECT coalesce(string_agg(t::text, E'\\n'), '') FROM hipaa_audit_log t",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(table.len() > 1000, "the table dump is real: {table}");
    std::thread::sleep(std::time::Duration::from_millis(200));
    let logs = gw.logs();
    let scrape = gw.scrape_metrics();
    let mut hits = Vec::new();
    for (_, key, v) in PHI {
        for enc in encodings(key, v) {
            for (place, text) in [
                ("audit files", &audit_files),
                ("postgres", &table),
                ("logs", &logs),
                ("metrics", &scrape),
            ] {
                if text.contains(&enc) {
                    let line = text.lines().find(|l| l.contains(&enc)).unwrap_or("");
                    hits.push(format!("{enc:?} ({v}) in {place}: {line}"));
                }
            }
        }
    }
    assert!(hits.is_empty(), "PHI leaked:\n{}", hits.join("\n"));
}
