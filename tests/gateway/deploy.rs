//! deploy/: the Grafana dashboard and the Prometheus alerts only query metrics (and labels)
//! that a running gateway really exports, the alert rules pass `promtool check rules` and
//! their unit tests, and the dashboard keeps its stable uid and data source variable.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::*;

const PROMTOOL: &str = "/usr/bin/promtool";

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

/// Every `phi_gateway_*` metric name in `text` (recording-rule names use `phi_gateway:` and
/// are not matched).
fn metric_names(text: &str) -> BTreeSet<String> {
    let re = regex::Regex::new(r"\bphi_gateway_[A-Za-z0-9_]+").unwrap();
    re.find_iter(text).map(|m| m.as_str().to_string()).collect()
}

/// `(metric, label names)` for every `phi_gateway_x{label="…", …}` selector in `expr`.
fn selector_labels(expr: &str) -> Vec<(String, BTreeSet<String>)> {
    let re = regex::Regex::new(r"\b(phi_gateway_[A-Za-z0-9_]+)\{([^}]*)\}").unwrap();
    let label = regex::Regex::new(r#"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)\s*""#).unwrap();
    re.captures_iter(expr)
        .map(|c| {
            let names = label
                .captures_iter(&c[2])
                .map(|l| l[1].to_string())
                .collect();
            (c[1].to_string(), names)
        })
        .collect()
}

/// The PromQL expressions of the dashboard: panel targets and template variable queries.
fn dashboard_exprs(dash: &serde_json::Value) -> Vec<String> {
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m {
                    match (k.as_str(), x) {
                        ("expr" | "definition", serde_json::Value::String(s)) => {
                            out.push(s.clone())
                        }
                        _ => walk(x, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(dash, &mut out);
    out
}

/// The `expr` of every rule in a Prometheus rule file.
fn alert_exprs(yaml: &str) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct File {
        groups: Vec<Group>,
    }
    #[derive(serde::Deserialize)]
    struct Group {
        rules: Vec<Rule>,
    }
    #[derive(serde::Deserialize)]
    struct Rule {
        expr: String,
    }
    let f: File = serde_saphyr::from_str(yaml).expect("alerts.yaml parses");
    f.groups
        .into_iter()
        .flat_map(|g| g.rules)
        .map(|r| r.expr)
        .collect()
}

/// Families announced by `# TYPE name kind` lines: exported even before their first sample.
fn exported_families(scrape: &str) -> BTreeMap<String, String> {
    scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| {
            let (name, kind) = l.split_once(' ')?;
            Some((name.to_string(), kind.trim().to_string()))
        })
        .collect()
}

/// The family a queried name belongs to, if the gateway exports it: the name itself, or a
/// histogram's `_bucket`/`_sum`/`_count` series.
fn family_of<'a>(name: &'a str, families: &BTreeMap<String, String>) -> Option<&'a str> {
    if families.contains_key(name) {
        return Some(name);
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if families
                .get(base)
                .is_some_and(|k| k == "histogram" || (k == "summary" && suffix != "_bucket"))
            {
                return Some(base);
            }
        }
    }
    None
}

/// Starts a gateway and sends one request of each kind (allow, PHI block, missing audit
/// header, would-block, upstream failure), so labelled families have samples; returns the
/// scrape once they do.
async fn scrape_with_traffic() -> (Gateway, String) {
    let up = RecordingUpstream::start();
    let gw = Gateway::start(GatewayOpts::new(up.addr()));
    let c = gw.client(false);
    let ok = c
        .get(gw.url("/fhir/Patient/p1"))
        .header(AUDIT, "deploy-1")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status().as_u16(), 200);
    expect_refusal(
        c.post(gw.url("/fhir/Patient"))
            .header(AUDIT, "deploy-phi")
            .header("content-type", "application/fhir+json")
            .body(ssn_patient()),
        403,
        "phi_detected",
    )
    .await;
    expect_refusal(
        c.get(gw.url("/fhir/Patient/x")),
        403,
        "missing_audit_header",
    )
    .await;
    let monitored = c
        .post(gw.url("/monitor/Patient"))
        .header(AUDIT, "deploy-monitor")
        .header("content-type", "application/fhir+json")
        .body(ssn_patient())
        .send()
        .await
        .unwrap();
    assert_eq!(monitored.status().as_u16(), 200);
    expect_refusal(
        c.get(gw.url("/down/Patient/x"))
            .header(AUDIT, "deploy-down"),
        502,
        "upstream_unavailable",
    )
    .await;
    let scrape = scrape_when(&gw, |s| {
        [
            "phi_gateway_requests_total",
            "phi_gateway_rejections_total",
            "phi_gateway_rule_matches_total",
            "phi_gateway_upstream_errors_total",
            "phi_gateway_request_duration_seconds_count",
            "phi_gateway_inspection_duration_seconds_count",
        ]
        .iter()
        .all(|m| has_metric(s, m))
            && metric_value(s, "phi_gateway_requests_total", &[]) >= 5.0
    });
    (gw, scrape)
}

#[tokio::test]
async fn dashboard_and_alerts_query_only_exported_metrics_and_labels() {
    let dash_text = read("deploy/grafana/phi-gateway.json");
    let dash: serde_json::Value = serde_json::from_str(&dash_text).expect("dashboard is JSON");
    let alerts_text = read("deploy/prometheus/alerts.yaml");
    let mut exprs = dashboard_exprs(&dash);
    let n_dash = exprs.len();
    exprs.extend(alert_exprs(&alerts_text));
    assert!(
        n_dash >= 15 && exprs.len() >= n_dash + 8,
        "too few queries found"
    );
    // Every query must touch a gateway metric (or an alert's recording rule); a query on
    // anything else could not be checked here.
    for e in &exprs {
        assert!(
            e.contains("phi_gateway_") || e.contains("phi_gateway:"),
            "{e}"
        );
    }
    // Whole files, not only the expressions: a metric named in a description must exist too.
    let mut queried = metric_names(&dash_text);
    queried.extend(metric_names(&alerts_text));

    let (_gw, scrape) = scrape_with_traffic().await;
    let families = exported_families(&scrape);
    let samples = parse_metrics(&scrape);

    let missing: Vec<&String> = queried
        .iter()
        .filter(|n| family_of(n, &families).is_none())
        .collect();

    // Label names in selectors must exist on the series (Prometheus adds instance and job).
    let mut bad_labels = Vec::new();
    for e in &exprs {
        for (name, labels) in selector_labels(e) {
            let series: Vec<&Sample> = samples.iter().filter(|s| s.name == name).collect();
            if series.is_empty() {
                continue; // reported as missing above, or no sample to compare with
            }
            let have: BTreeSet<&str> = series
                .iter()
                .flat_map(|s| s.labels.iter().map(|(k, _)| k.as_str()))
                .chain(["instance", "job"])
                .collect();
            for l in &labels {
                if !have.contains(l.as_str()) {
                    bad_labels.push(format!("{name}{{{l}}} (has: {have:?})"));
                }
            }
        }
    }
    assert!(
        missing.is_empty() && bad_labels.is_empty(),
        "deploy/grafana/phi-gateway.json and deploy/prometheus/alerts.yaml query what the \
         gateway does not export.\nmissing metrics: {missing:#?}\nunknown labels: \
         {bad_labels:#?}\nexported families: {:#?}",
        families.keys().collect::<Vec<_>>()
    );
}

#[test]
fn dashboard_has_stable_uid_datasource_variable_and_the_documented_panels() {
    let dash: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana/phi-gateway.json")).unwrap();
    assert_eq!(dash["uid"], "phi-gateway");
    let vars = dash["templating"]["list"].as_array().unwrap();
    assert!(
        vars.iter().any(|v| v["name"] == "datasource"
            && v["type"] == "datasource"
            && v["query"] == "prometheus"),
        "datasource variable"
    );
    let panels = dash["panels"].as_array().unwrap();
    let mut ids = BTreeSet::new();
    for p in panels {
        assert!(ids.insert(p["id"].as_u64().unwrap()), "duplicate panel id");
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{}", p["title"]);
        for t in targets {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        }
    }
    let titles: Vec<&str> = panels.iter().filter_map(|p| p["title"].as_str()).collect();
    for want in [
        "Requests per second by decision",
        "Block ratio by route",
        "Top rules",
        "p50 / p95 / p99",
        "Inspection latency",
        "Audit write errors",
        "Audit checkpoint age",
        "Reloads by result",
        "Certificate expiry",
    ] {
        assert!(
            titles.iter().any(|t| t.contains(want)),
            "no panel `{want}`: {titles:?}"
        );
    }
}

fn promtool(args: &[&str]) -> (bool, String) {
    assert!(
        Path::new(PROMTOOL).is_file(),
        "{PROMTOOL} not found: run `.ci/setup` (installs prometheus' promtool) first"
    );
    let out = Command::new("timeout")
        .arg("60")
        .arg(PROMTOOL)
        .args(args)
        .current_dir(repo("deploy/prometheus"))
        .stdin(Stdio::null())
        .output()
        .expect("run promtool");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn alert_rules_pass_promtool_check_and_their_unit_tests() {
    let (ok, out) = promtool(&["check", "rules", "alerts.yaml"]);
    assert!(ok, "promtool check rules:\n{out}");
    let (ok, out) = promtool(&["test", "rules", "alerts.test.yaml"]);
    assert!(ok, "promtool test rules:\n{out}");
    // Each required alert exists and has a summary and a runbook.
    let text = read("deploy/prometheus/alerts.yaml");
    for alert in [
        "PhiGatewayBlockRateSpike",
        "PhiGatewayAuditWriteErrors",
        "PhiGatewayReloadFailed",
        "PhiGatewayUpstreamErrors",
        "PhiGatewayHighLatencyP99",
        "PhiGatewayCertificateExpiringSoon",
    ] {
        assert!(text.contains(&format!("alert: {alert}\n")), "{alert}");
        let tests = read("deploy/prometheus/alerts.test.yaml");
        assert!(
            tests.contains(&format!("alertname: {alert}\n")),
            "{alert} has no promtool unit test"
        );
    }
    assert_eq!(
        text.matches("summary:").count(),
        text.matches("alert: ").count()
    );
    assert_eq!(
        text.matches("runbook_url:").count(),
        text.matches("alert: ").count()
    );
}
