//! deploy/: the Grafana dashboard and the Prometheus alerts only query metrics (and labels)
//! that a running gateway really exports, the alert rules pass `promtool check rules` and
//! their unit tests, and the dashboard keeps its stable uid and data source variable.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::json;

use crate::common::*;
use crate::identity::{Keys, AUDIENCE, ISSUER};
use crate::introspection::Introspector;

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
/// header, would-block, upstream failure; with a token: a policy allow and a policy denial;
/// an opaque token that is introspected), so labelled families have samples; returns the
/// scrape once they do.
///
/// Access is checked on the `fhir` route in monitor mode, so the requests without a token
/// still reach the PHI checks. The shared state is a Redis nobody listens on: start-up never
/// waits for it, its calls fail (`phi_gateway_state_errors_total`), it is reported down, and
/// sessions are answered from the local copy (`phi_gateway_sessions_total{store="local"}`).
async fn scrape_with_traffic() -> (Gateway, String, Introspector) {
    let up = RecordingUpstream::start();
    // A token issuer with a key set from a file (the JWKS metrics, and signed tokens for
    // the access decisions and sessions), and one introspecting opaque tokens at a real
    // HTTPS endpoint (the introspection counter).
    let files = tempfile::tempdir().unwrap();
    let keys = Keys::new("deploy");
    let jwks = files.path().join("jwks.json");
    std::fs::write(&jwks, json!({ "keys": keys.jwks() }).to_string()).unwrap();
    let state_key = files.path().join("state.key");
    std::fs::write(&state_key, "deploy-test-state-key-0123456789").unwrap();
    let ix = Introspector::start();
    let mut opts = GatewayOpts::new(up.addr());
    opts.access = vec![
        "  issuers:".into(),
        "    - name: idp".into(),
        format!("      issuer: {ISSUER}"),
        format!("      audiences: [\"{AUDIENCE}\"]"),
        "      algorithms: [ES256]".into(),
        format!("      jwks_file: \"{}\"", jwks.display()),
    ];
    opts.access
        .extend(ix.issuer_lines("https://opaque.test.example"));
    opts.access.extend([
        format!("  policy: [\"{}\"]", repo("deploy/policy").display()),
        "  sessions:".into(),
        "    idle_timeout_seconds: 900".into(),
    ]);
    opts.state = vec![
        "  backend: redis".into(),
        format!("  url: redis://127.0.0.1:{}", free_port()),
        "  timeout_ms: 200".into(),
        format!("  key_file: \"{}\"", state_key.display()),
    ];
    opts.fhir_route_extra = vec![
        "    access:".into(),
        "      require: token".into(),
        "      mode: monitor".into(),
    ];
    let gw = Gateway::start(opts);
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
    // With a signed token: the default scope (user/Observation.rs) allows the Observation
    // search and not the Patient read (would_deny: forwarded in monitor mode); an unknown
    // opaque token is introspected (inactive: would_deny too).
    let token = keys.token("ES256", json!({}));
    for (path, bearer) in [
        ("/fhir/Observation?code=1234-5", token.as_str()),
        ("/fhir/Patient/p2", token.as_str()),
        ("/fhir/Observation?code=1234-5", "opaque-deploy-token"),
    ] {
        let r = c
            .get(gw.url(path))
            .header(AUDIT, "deploy-token")
            .header("authorization", format!("Bearer {bearer}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}\n{}", gw.logs());
    }
    let scrape = scrape_when(&gw, |s| {
        [
            "phi_gateway_requests_total",
            "phi_gateway_rejections_total",
            "phi_gateway_rule_matches_total",
            "phi_gateway_upstream_errors_total",
            "phi_gateway_request_duration_seconds_count",
            "phi_gateway_inspection_duration_seconds_count",
            "phi_gateway_access_decisions_total",
            "phi_gateway_sessions_total",
            "phi_gateway_state_backend_up",
            "phi_gateway_state_errors_total",
            "phi_gateway_introspection_total",
            "phi_gateway_jwks_age_seconds",
            "phi_gateway_jwks_refresh_total",
        ]
        .iter()
        .all(|m| has_metric(s, m))
            && metric_value(s, "phi_gateway_requests_total", &[]) >= 8.0
    });
    (gw, scrape, ix)
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

    let (_gw, scrape, _ix) = scrape_with_traffic().await;
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
        "Break-glass events",
        "Access decisions by decision and reason",
        "Token key set age by issuer",
        "Key set refreshes and introspections by result",
        "Sessions by result",
        "Shared-state backend up",
        "Shared-state errors",
        "Access anomalies by signal and action",
        "Anomaly counting and suspended principals",
        "Response leaks by route and action",
        "Response bytes held",
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
        "PhiGatewayBreakGlassStarted",
        "PhiGatewayJwksStale",
        "PhiGatewayStateBackendDown",
        "PhiGatewayAccessDenialSurge",
        "PhiGatewayIntrospectionUnavailable",
        "PhiGatewayAccessAnomaly",
        "PhiGatewayAnomalyCountingFailing",
        "PhiGatewayResponseLeakBlocked",
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

// === Kubernetes ===

/// Parses one manifest (one object per file) into JSON.
fn manifest(name: &str) -> serde_json::Value {
    let text = read(&format!("deploy/kubernetes/{name}"));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Every manifest file in deploy/kubernetes/ except the kustomization.
fn manifest_files() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(repo("deploy/kubernetes"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    files.sort();
    files
}

/// kubernetes-validate (PyPI), installed by `.ci/setup test` into a venv; `$KUBERNETES_VALIDATE`
/// overrides the path.
fn kubernetes_validate() -> PathBuf {
    if let Some(p) = std::env::var_os("KUBERNETES_VALIDATE") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").expect("HOME");
    let p =
        Path::new(&home).join(".cache/phi-gateway-ci/kubernetes-validate/bin/kubernetes-validate");
    assert!(
        p.is_file(),
        "{} not found: run `.ci/setup test` (installs kubernetes-validate from PyPI into a venv)",
        p.display()
    );
    p
}

#[test]
fn kubernetes_manifests_pass_strict_schema_validation() {
    let kinds: BTreeMap<String, String> = manifest_files()
        .into_iter()
        .map(|f| {
            let kind = manifest(&f)["kind"].as_str().unwrap().to_string();
            (f, kind)
        })
        .collect();
    // PodMonitor is a prometheus-operator CRD: kubernetes-validate bundles only the built-in
    // schemas, so it is checked structurally in the next test instead.
    let files: Vec<&String> = kinds
        .iter()
        .filter(|(_, k)| *k != "PodMonitor")
        .map(|(f, _)| f)
        .collect();
    assert!(files.len() >= 8, "{kinds:?}");
    let out = Command::new("timeout")
        .arg("120")
        .arg(kubernetes_validate())
        .args(["--strict", "--kubernetes-version", "1.30.0"])
        .args(&files)
        .current_dir(repo("deploy/kubernetes"))
        .stdin(Stdio::null())
        .output()
        .expect("run kubernetes-validate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "kubernetes-validate:\n{text}");
    for f in &files {
        assert!(text.contains(&format!("INFO {f} passed")), "{f}:\n{text}");
    }
}

/// `server.<key>` of a gateway.yaml text (a plain integer).
fn server_seconds(gateway_yaml: &str, key: &str) -> u64 {
    let v: serde_json::Value = serde_saphyr::from_str(gateway_yaml).unwrap();
    v["server"][key]
        .as_u64()
        .unwrap_or_else(|| panic!("server.{key}"))
}

#[test]
fn kubernetes_manifests_fit_together() {
    let dep = manifest("deployment.yaml");
    let spec = &dep["spec"];
    let pod = &spec["template"]["spec"];
    let labels = &spec["template"]["metadata"]["labels"];
    assert!(spec["replicas"].as_u64().unwrap() >= 2);
    assert_eq!(&spec["selector"]["matchLabels"], labels);

    // Security context: non-root, read-only root, no privilege escalation, no capabilities.
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["automountServiceAccountToken"], false);
    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert!(c["resources"]["requests"]["memory"].is_string());
    assert!(c["resources"]["limits"]["memory"].is_string());

    // The gateway config this pod runs: ports and timings must agree with it.
    let cm = manifest("configmap-gateway.yaml");
    let gw_yaml = cm["data"]["gateway.yaml"].as_str().unwrap();
    let gw: serde_json::Value = serde_saphyr::from_str(gw_yaml).unwrap();
    let port_of = |addr: &serde_json::Value| -> u64 {
        addr.as_str()
            .unwrap()
            .rsplit_once(':')
            .unwrap()
            .1
            .parse()
            .unwrap()
    };
    let ports: BTreeMap<&str, u64> = c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap(),
                p["containerPort"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(ports["https"], port_of(&gw["listen"]["address"]));
    assert_eq!(ports["admin"], port_of(&gw["admin"]["address"]));
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        args,
        ["run", "--config", "/etc/phi-gateway/config/gateway.yaml"]
    );

    // Probes: startup and readiness on /readyz, liveness on /livez, all on the admin port.
    for (probe, path) in [
        ("startupProbe", "/readyz"),
        ("readinessProbe", "/readyz"),
        ("livenessProbe", "/livez"),
    ] {
        assert_eq!(c[probe]["httpGet"]["path"], path, "{probe}");
        assert_eq!(c[probe]["httpGet"]["port"], "admin", "{probe}");
    }

    // Termination: longer than preStop + drain + runtime stop, with room for the audit flush.
    let pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_u64()
        .unwrap_or(0);
    let needed = pre_stop
        + server_seconds(gw_yaml, "grace_period_seconds")
        + server_seconds(gw_yaml, "graceful_shutdown_timeout_seconds");
    let tgps = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(
        tgps >= needed + 10,
        "terminationGracePeriodSeconds {tgps} vs {needed} + flush"
    );

    // Volumes: directory mounts only (a subPath mount never sees ConfigMap updates), the rules
    // and config from their ConfigMaps, the key from a Secret, writable audit and run dirs.
    let mounts = c["volumeMounts"].as_array().unwrap();
    for m in mounts {
        assert!(
            m.get("subPath").is_none() && m.get("subPathExpr").is_none(),
            "subPath: {m}"
        );
    }
    let mount = |name: &str| -> &serde_json::Value {
        mounts
            .iter()
            .find(|m| m["name"] == name)
            .unwrap_or_else(|| panic!("mount {name}"))
    };
    let volume = |name: &str| -> &serde_json::Value {
        pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("volume {name}"))
    };
    assert_eq!(mount("config")["mountPath"], "/etc/phi-gateway/config");
    assert_eq!(mount("rules")["mountPath"], "/etc/phi-gateway/rules");
    assert_eq!(mount("policy")["mountPath"], "/etc/phi-gateway/policy");
    assert_eq!(
        volume("policy")["configMap"]["name"],
        manifest("configmap-policy.yaml")["metadata"]["name"]
    );
    assert_eq!(gw["access"]["policy"], serde_json::json!(["../policy"]));
    assert_eq!(mount("tls")["mountPath"], "/etc/phi-gateway/tls");
    assert_eq!(
        volume("config")["configMap"]["name"],
        cm["metadata"]["name"]
    );
    assert_eq!(
        volume("rules")["configMap"]["name"],
        manifest("configmap-rules.yaml")["metadata"]["name"]
    );
    assert!(volume("tls")["secret"]["secretName"].is_string());
    assert!(
        volume("audit")["emptyDir"].is_object()
            || volume("audit")["persistentVolumeClaim"].is_object()
    );
    assert!(mount("audit").get("readOnly").is_none_or(|r| r == false));
    let run_dir = mount("run")["mountPath"].as_str().unwrap();
    for key in ["pid_file", "upgrade_sock"] {
        let p = gw["server"][key].as_str().unwrap();
        assert!(
            p.starts_with(&format!("{run_dir}/")),
            "server.{key} {p} is not on a writable volume"
        );
    }

    // Service: the TLS port only.
    let svc = manifest("service.yaml");
    assert_eq!(&svc["spec"]["selector"], labels);
    let svc_ports = svc["spec"]["ports"].as_array().unwrap();
    assert_eq!(svc_ports.len(), 1, "the Service exposes the TLS port only");
    assert_eq!(svc_ports[0]["targetPort"], "https");

    // PDB, NetworkPolicy and PodMonitor select the same pods; the PodMonitor scrapes the admin
    // port (by name) at /metrics.
    assert_eq!(
        &manifest("poddisruptionbudget.yaml")["spec"]["selector"]["matchLabels"],
        labels
    );
    let np = manifest("networkpolicy.yaml");
    assert_eq!(&np["spec"]["podSelector"]["matchLabels"], labels);
    let pm = manifest("podmonitor.yaml");
    assert_eq!(pm["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(pm["kind"], "PodMonitor");
    assert_eq!(&pm["spec"]["selector"]["matchLabels"], labels);
    let ep = &pm["spec"]["podMetricsEndpoints"][0];
    assert_eq!(ep["port"], "admin");
    assert_eq!(ep["path"], "/metrics");

    // Every resource is in the kustomization.
    let kust = read("deploy/kubernetes/kustomization.yaml");
    for f in manifest_files() {
        assert!(
            kust.contains(&format!("  - {f}\n")),
            "{f} missing from kustomization.yaml"
        );
    }
}

#[test]
fn rules_configmap_is_the_repository_rule_pack() {
    let cm = manifest("configmap-rules.yaml");
    let data = cm["data"].as_object().unwrap();
    let mut want = BTreeMap::new();
    for e in std::fs::read_dir(repo("rules")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            want.insert(name, std::fs::read_to_string(&p).unwrap());
        }
    }
    let got: BTreeMap<String, String> = data
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    assert!(
        got == want,
        "deploy/kubernetes/configmap-rules.yaml differs from rules/. Regenerate its data with\n  \
         kubectl create configmap phi-gateway-rules -n phi-gateway --from-file=rules/ \
         --dry-run=client -o yaml\n(keep the header comment and labels). Files: got {:?}, want {:?}",
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
}

#[test]
fn policy_configmap_is_the_repository_policy() {
    let cm = manifest("configmap-policy.yaml");
    let data = cm["data"].as_object().unwrap();
    let mut want = BTreeMap::new();
    for e in std::fs::read_dir(repo("deploy/policy")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            want.insert(name, std::fs::read_to_string(&p).unwrap());
        }
    }
    let got: BTreeMap<String, String> = data
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    assert!(
        got == want,
        "deploy/kubernetes/configmap-policy.yaml differs from deploy/policy/. Regenerate its data \
         with\n  kubectl create configmap phi-gateway-policy -n phi-gateway \
         --from-file=deploy/policy/ --dry-run=client -o yaml\n(keep the header comment and \
         labels). Files: got {:?}, want {:?}",
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
}

// === systemd ===

#[test]
fn systemd_unit_verifies_scores_ok_and_fits_the_example_config() {
    let unit = read("deploy/systemd/phi-gateway.service");
    let config = "/etc/phi-gateway/gateway.yaml";
    for line in [
        format!("ExecStartPre=/usr/bin/phi-gateway check --config {config}"),
        format!("ExecStart=/usr/bin/phi-gateway run --config {config}"),
        format!("ExecReload=/usr/bin/phi-gateway check --config {config}\nExecReload=/bin/kill -HUP $MAINPID"),
        "User=phi-gateway".to_string(),
        "ProtectSystem=strict".to_string(),
        "NoNewPrivileges=yes".to_string(),
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE\n".to_string(),
        "AmbientCapabilities=CAP_NET_BIND_SERVICE\n".to_string(),
        "RuntimeDirectory=phi-gateway".to_string(),
    ] {
        assert!(unit.contains(&line), "unit lacks `{line}`");
    }
    // TimeoutStopSec covers deploy/gateway.yaml's drain and runtime stop, plus the audit flush.
    let gw = read("deploy/gateway.yaml");
    let needed = server_seconds(&gw, "grace_period_seconds")
        + server_seconds(&gw, "graceful_shutdown_timeout_seconds");
    let stop: u64 = unit
        .lines()
        .find_map(|l| l.strip_prefix("TimeoutStopSec="))
        .expect("TimeoutStopSec")
        .parse()
        .unwrap();
    assert!(
        stop >= needed + 10,
        "TimeoutStopSec={stop} vs {needed} + flush"
    );
    for key in ["pid_file", "upgrade_sock"] {
        let v: serde_json::Value = serde_saphyr::from_str(&gw).unwrap();
        assert!(
            v["server"][key]
                .as_str()
                .unwrap()
                .starts_with("/run/phi-gateway/"),
            "server.{key} must be in RuntimeDirectory (the rest is read-only)"
        );
    }

    // `systemd-analyze verify` on a copy whose binary path exists here; any message fails.
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_phi-gateway");
    let copy = dir.path().join("phi-gateway.service");
    std::fs::write(&copy, unit.replace("/usr/bin/phi-gateway", bin)).unwrap();
    let out = Command::new("timeout")
        .args(["60", "systemd-analyze", "verify"])
        .arg(&copy)
        .stdin(Stdio::null())
        .output()
        .expect("run systemd-analyze (Debian `systemd`; `.ci/setup test` installs it)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.trim().is_empty(),
        "systemd-analyze verify:\n{err}"
    );

    // `systemd-analyze security --offline=yes`: the exposure score docs/operations.md quotes.
    let out = Command::new("timeout")
        .args(["60", "systemd-analyze", "security", "--offline=yes"])
        .arg(repo("deploy/systemd/phi-gateway.service"))
        .stdin(Stdio::null())
        .output()
        .expect("run systemd-analyze security");
    let text = String::from_utf8_lossy(&out.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for phi-gateway.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no exposure score in:\n{text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let docs = read("docs/operations.md");
    assert!(
        docs.contains(&format!("exposure level **{score:.1}**")),
        "docs/operations.md must quote the current score {score:.1}"
    );
    assert!(score <= 2.0, "exposure {score} (> 2.0):\n{text}");
}

/// The `gateway.yaml` text inside the Kubernetes ConfigMap (the block under `gateway.yaml: |`).
fn configmap_gateway_yaml() -> String {
    let cm = read("deploy/kubernetes/configmap-gateway.yaml");
    let start = cm.find("gateway.yaml: |\n").expect("gateway.yaml block") + 16;
    cm[start..]
        .lines()
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Regression (issue 14): was "the demo scans only `referer`, deploy/ only the headers it
/// lists": the demo, deploy/gateway.yaml and the Kubernetes ConfigMap all inspect every
/// request header but the built-in skip list (cookies included) and refuse upgrades.
#[test]
fn demo_deploy_and_kubernetes_inspect_every_header_and_refuse_upgrades() {
    let dir = tempfile::tempdir().unwrap();
    let demo = phi_gateway::runtime::demo::write_demo_config(
        dir.path(),
        "127.0.0.1:8443",
        "127.0.0.1:9464",
        "127.0.0.1:8080",
        &repo("rules"),
        &repo("deploy/policy"),
    )
    .unwrap();
    let texts = [
        ("demo", std::fs::read_to_string(&demo).unwrap()),
        ("deploy/gateway.yaml", read("deploy/gateway.yaml")),
        ("kubernetes", configmap_gateway_yaml()),
    ];
    // deploy/gateway.yaml names an upstream CA file that must exist.
    std::fs::create_dir_all(dir.path().join("tls")).unwrap();
    std::fs::write(dir.path().join("tls/upstream-ca.pem"), "").unwrap();
    for (i, (what, text)) in texts.into_iter().enumerate() {
        let file = dir.path().join(format!("config-{i}.yaml"));
        std::fs::write(&file, &text).unwrap();
        let c = phi_gateway::config::load_with(&file, phi_gateway::config::Dns::Skip)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let fhir = c
            .routes
            .iter()
            .find(|r| r.name == "fhir")
            .unwrap_or_else(|| panic!("{what}: no fhir route"));
        for name in [
            "x-patient-ssn",
            "x-member-id",
            "cookie",
            "referer",
            "authorization",
        ] {
            assert!(
                fhir.inspect.header_selected(name),
                "{what}: {name} not inspected"
            );
        }
        for name in phi_gateway::config::SKIPPED_HEADERS {
            assert!(
                !fhir.inspect.header_selected(name),
                "{what}: {name} inspected"
            );
        }
        assert!(!fhir.allow_upgrade, "{what}: upgrades allowed");
    }
}
