//! `phi-gateway demo`: a sample EHR, a development CA, a token issuer and a ready-to-use
//! configuration.
//!
//! The sample EHR exists only for the demo and for trying rules and the access policy by hand.
//! It holds two synthetic patients, `pat-1` and `pat-2`, and one Observation each, `obs-1`
//! (subject `Patient/pat-1`) and `obs-2` (subject `Patient/pat-2`), so a patient-app token
//! bound to pat-1 can be shown refused for the other patient: by the URL (`Patient/pat-2`) and
//! by the response check (`Observation/obs-2`, whose subject is only in the answer). It answers
//! `GET` reads by id, type searches (`Observation?patient=pat-1`, `subject=`, `_id=`, comma
//! lists; other parameters are ignored) and compartment searches (`Patient/pat-1/Observation`)
//! with a searchset Bundle. Any other method or path under `/fhir/` gets a small
//! OperationOutcome saying what it received (method and body size, never the body itself).
//! Real deployments point at real upstreams.
//!
//! The demo's token issuer is [`crate::runtime::demo_issuer`].

use std::fmt::Write as _;
use std::path::Path;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use serde_json::{json, Value};

/// Largest body the sample EHR reads; the rest is drained unread.
const MAX_SAMPLE_BODY: usize = 64 * 1024 * 1024;

/// The built-in sample EHR.
#[derive(Debug, Default)]
pub struct SampleEhr;

/// The sample EHR's records: synthetic, made up for the demo (no real person).
pub fn sample_records() -> Vec<Value> {
    vec![
        json!({"resourceType": "Patient", "id": "pat-1", "active": true,
               "name": [{"family": "Example", "given": ["Alex"]}], "gender": "other"}),
        json!({"resourceType": "Patient", "id": "pat-2", "active": true,
               "name": [{"family": "Sample", "given": ["Robin"]}], "gender": "unknown"}),
        json!({"resourceType": "Observation", "id": "obs-1", "status": "final",
               "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4",
                                    "display": "Heart rate"}]},
               "subject": {"reference": "Patient/pat-1"},
               "valueQuantity": {"value": 72, "unit": "beats/minute"}}),
        json!({"resourceType": "Observation", "id": "obs-2", "status": "final",
               "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4",
                                    "display": "Heart rate"}]},
               "subject": {"reference": "Patient/pat-2"},
               "valueQuantity": {"value": 64, "unit": "beats/minute"}}),
    ]
}

/// The patient a sample record belongs to (its own id for a Patient).
fn patient_of(r: &Value) -> Option<&str> {
    if r["resourceType"] == "Patient" {
        return r["id"].as_str();
    }
    r["subject"]["reference"].as_str()?.strip_prefix("Patient/")
}

/// Whether `r` matches every search parameter the sample EHR understands (`_id`, and
/// `patient` / `subject` for non-Patient types); others are ignored.
fn matches_search(r: &Value, query: &str) -> bool {
    form_urlencoded::parse(query.as_bytes()).all(|(name, value)| {
        let wanted = |have: Option<&str>| {
            value
                .split(',')
                .any(|v| have == Some(v.strip_prefix("Patient/").unwrap_or(v)))
        };
        match name.as_ref() {
            "_id" => value.split(',').any(|v| r["id"].as_str() == Some(v)),
            "patient" | "subject" if r["resourceType"] != "Patient" => wanted(patient_of(r)),
            _ => true,
        }
    })
}

fn searchset(entries: Vec<Value>) -> Value {
    json!({"resourceType": "Bundle", "type": "searchset", "total": entries.len(),
           "entry": entries.into_iter()
               .map(|r| json!({"resource": r, "search": {"mode": "match"}}))
               .collect::<Vec<_>>()})
}

/// The answer to a `GET` the sample data can serve: `None` when the path is not about its
/// types (the caller then answers as before).
fn read(path: &str, query: &str) -> Option<(StatusCode, Value)> {
    let records = sample_records();
    let of_type = |t: &str| -> Vec<Value> {
        records
            .iter()
            .filter(|r| r["resourceType"] == t)
            .cloned()
            .collect()
    };
    let segments: Vec<&str> = path.trim_start_matches("/fhir/").split('/').collect();
    let known = |t: &str| t == "Patient" || t == "Observation";
    match segments.as_slice() {
        [t] if known(t) => Some((
            StatusCode::OK,
            searchset(
                of_type(t)
                    .into_iter()
                    .filter(|r| matches_search(r, query))
                    .collect(),
            ),
        )),
        [t, id] if known(t) => Some(match of_type(t).into_iter().find(|r| r["id"] == *id) {
            Some(r) => (StatusCode::OK, r),
            None => (
                StatusCode::NOT_FOUND,
                json!({"resourceType": "OperationOutcome", "issue": [{"severity": "error",
                       "code": "not-found", "diagnostics": "no such record in the sample EHR"}]}),
            ),
        }),
        ["Patient", id, t] if known(t) => Some((
            StatusCode::OK,
            searchset(
                of_type(t)
                    .into_iter()
                    .filter(|r| patient_of(r) == Some(id) && matches_search(r, query))
                    .collect(),
            ),
        )),
        _ => None,
    }
}

#[async_trait]
impl ServeHttp for SampleEhr {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let mut received = 0usize;
        loop {
            match session.read_request_body().await {
                Ok(Some(chunk)) => {
                    received = received.saturating_add(chunk.len());
                    if received > MAX_SAMPLE_BODY {
                        break;
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    return answer(StatusCode::BAD_REQUEST, r#"{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"structure"}]}"#.to_string());
                }
            }
        }
        let req = session.req_header();
        let path = req.uri.path();
        if req
            .headers
            .get(DEMO_FAIL)
            .is_some_and(|v| v.as_bytes() == b"stacktrace")
        {
            // The classic leak in front of an EHR: a framework's error page with the stack
            // trace, quoting the record it failed on. The leak guard must withhold it.
            return stack_trace_page();
        }
        if !path.starts_with("/fhir/") && path != "/fhir" {
            return answer(StatusCode::NOT_FOUND, r#"{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"not-found","diagnostics":"the sample EHR serves /fhir/ only"}]}"#.to_string());
        }
        if req.method == http::Method::GET {
            if let Some((status, body)) = read(path, req.uri.query().unwrap_or("")) {
                return answer(status, body.to_string());
            }
        }
        let method = req.method.as_str().to_string();
        let resource = path
            .trim_start_matches("/fhir")
            .trim_start_matches('/')
            .split('/')
            .next()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphabetic()))
            .unwrap_or("metadata")
            .to_string();
        let mut body = String::new();
        let _ = write!(
            body,
            r#"{{"resourceType":"OperationOutcome","issue":[{{"severity":"information","code":"informational","diagnostics":"sample EHR accepted {method} on {resource} with {received} body bytes"}}]}}"#
        );
        let status = if method == "POST" {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        answer(status, body)
    }
}

/// The request header that makes the sample EHR fail (`x-demo-fail: stacktrace`).
pub const DEMO_FAIL: &str = "x-demo-fail";

/// A 500 with a Java-style stack trace that quotes a (synthetic) SSN, as a servlet
/// container's error page would.
fn stack_trace_page() -> Response<Vec<u8>> {
    let body = "java.lang.IllegalStateException: no chart for patient SSN 536-22-1234\n\
                \tat org.example.ehr.ChartService.load(ChartService.java:118)\n\
                \tat org.example.ehr.ObservationController.read(ObservationController.java:52)\n\
                \tat java.base/java.lang.Thread.run(Thread.java:1583)\n";
    let mut r = Response::new(body.as_bytes().to_vec());
    *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    let h = r.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(
        http::header::CONTENT_LENGTH,
        http::HeaderValue::from(body.len()),
    );
    h.insert(
        http::header::SERVER,
        http::HeaderValue::from_static("Apache-Tomcat/9.0.80"),
    );
    r
}

fn answer(status: StatusCode, body: String) -> Response<Vec<u8>> {
    let mut r = Response::new(body.into_bytes());
    *r.status_mut() = status;
    let len = r.body().len();
    let h = r.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/fhir+json"),
    );
    h.insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(len));
    r
}

/// The demo's audit directory, inside the data directory.
pub const AUDIT_DIR: &str = "audit";
/// The demo's private key directory (0700), beside (never inside) the audit directory.
pub const KEYS_DIR: &str = "keys";
/// The public key the demo writes for `audit verify`.
pub const PUBLIC_KEY: &str = "audit-signing.pub";
const SIGNING_KEY: &str = "audit-signing.key";
const FINGERPRINT_KEY: &str = "audit-fingerprint.key";

/// Creates the demo's audit keys in `dir/keys/` and the public key at
/// `dir/audit-signing.pub`, unless an earlier run already did.
pub fn ensure_audit_keys(dir: &Path) -> Result<(), crate::audit::AuditError> {
    let keys = dir.join(KEYS_DIR);
    if keys.join(SIGNING_KEY).is_file() && dir.join(PUBLIC_KEY).is_file() {
        return Ok(());
    }
    crate::audit::keys::generate(&keys, &dir.join(PUBLIC_KEY)).map(|_| ())
}

/// The demo's admin bearer token file, beside its gateway.yaml.
pub const ADMIN_TOKEN: &str = "admin.token";

/// Writes a random admin token to `dir/admin.token` (mode 0600), unless an earlier run did.
pub fn ensure_admin_token(dir: &Path) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = dir.join(ADMIN_TOKEN);
    if path.is_file() {
        return Ok(());
    }
    let mut raw = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw)
        .map_err(|_| std::io::Error::other("no random bytes for the admin token"))?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    writeln!(f, "{}", crate::audit::record::hex(&raw))
}

/// Escapes text for use inside a double-quoted YAML scalar.
fn yaml_quoted_body(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Writes the demo's `gateway.yaml` into `dir`, so the demo runs through exactly the same
/// loader and validation as `phi-gateway run`, and the user has a working file to copy. The
/// `/fhir/` route requires a token from the demo issuer (`jwks.json` beside the file) and
/// applies the access policy in `policy_dir`.
pub fn write_demo_config(
    dir: &Path,
    listen: &str,
    admin: &str,
    upstream: &str,
    rules_dir: &Path,
    policy_dir: &Path,
) -> std::io::Result<std::path::PathBuf> {
    ensure_admin_token(dir)?;
    let file = dir.join("gateway.yaml");
    let text = format!(
        "# Generated by `phi-gateway demo`. Copy and adapt for `phi-gateway run --config`.\n\
# See deploy/gateway.yaml for every field, documented.\n\
listen:\n  address: \"{listen}\"\n  cert_file: server.pem\n  key_file: server.key\n  http2: true\n\
admin:\n  address: \"{admin}\"\n  # GET /principals/suspended and POST /principals/{{key}}/reinstate need this token.\n  token_file: {admin_token}\n\
rules:\n  dir: \"{rules}\"\n\
server:\n  threads: 2\n  grace_period_seconds: 1\n  graceful_shutdown_timeout_seconds: 1\n  pid_file: phi-gateway.pid\n  upgrade_sock: phi-gateway-upgrade.sock\n\
logging:\n  format: text\n  level: info\n\
upstreams:\n  - name: sample-ehr\n    address: \"{upstream}\"\n\
access:\n  # The demo's own issuer (development only): tokens from `phi-gateway dev-token`.\n  issuers:\n    - name: {issuer_name}\n      issuer: \"{issuer}\"\n      audiences: [\"{audience}\"]\n      algorithms: [ES256]\n      jwks_file: {jwks}\n      max_lifetime_seconds: {max_lifetime}\n  policy: [\"{policy}\"]\n  # An eligible role (emergency) may pass a policy denial for one patient with the BTG\n  # label and a justification: time-boxed, CRITICAL audit record (docs/access.md).\n  break_glass:\n    duration_minutes: 60\n\
audit:\n  dir: {audit_dir}\n  signing_key_file: {keys_dir}/{signing}\n  fingerprint_key_file: {keys_dir}/{fingerprint}\n  fsync: every_record\n  checkpoint_interval_seconds: 60\n\
defence:\n  # Access-anomaly detection (docs/defence.md): alerts only in the demo.\n  anomaly:\n    mode: monitor\n\
routes:\n  - name: fhir\n    path_prefix: /fhir/\n    upstream: sample-ehr\n    mode: enforce\n    max_body_bytes: 1048576\n    audit_headers: [x-hipaa-audit-id]\n    inspect:\n      query: true\n      body: true\n      # every header except the built-in skip list (framing, x-request-id, traceparent, ...)\n      headers: [\"*\"]\n    access:\n      require: token\n    audit:\n      resource_id: clear\n      fail_closed: true\n    # Error answers are held and scanned for PHI and stack traces (docs/defence.md).\n    response_guard:\n      mode: enforce\n      statuses: [\">=400\"]\n      max_bytes: 524288\n",
        issuer_name = crate::runtime::demo_issuer::ISSUER_NAME,
        issuer = crate::runtime::demo_issuer::ISSUER,
        audience = crate::runtime::demo_issuer::AUDIENCE,
        jwks = crate::runtime::demo_issuer::JWKS_FILE,
        max_lifetime = crate::runtime::demo_issuer::MAX_LIFETIME_SECONDS,
        policy = yaml_quoted_body(&policy_dir.display().to_string()),
        audit_dir = AUDIT_DIR,
        keys_dir = KEYS_DIR,
        signing = SIGNING_KEY,
        fingerprint = FINGERPRINT_KEY,
        rules = yaml_quoted_body(&rules_dir.display().to_string()),
        admin_token = ADMIN_TOKEN,
    );
    std::fs::write(&file, text)?;
    Ok(file)
}

/// The default rule pack, embedded so `demo` works from any directory. A test keeps this list
/// identical to the files in `rules/`.
pub const DEFAULT_PACK: &[(&str, &str)] = &[
    ("contact.yaml", include_str!("../../rules/contact.yaml")),
    ("errors.yaml", include_str!("../../rules/errors.yaml")),
    ("financial.yaml", include_str!("../../rules/financial.yaml")),
    (
        "identifiers.yaml",
        include_str!("../../rules/identifiers.yaml"),
    ),
    ("records.yaml", include_str!("../../rules/records.yaml")),
    (
        "structural.yaml",
        include_str!("../../rules/structural.yaml"),
    ),
];

/// Writes the embedded default pack into `dir` and returns it.
pub fn write_default_pack(dir: &Path) -> std::io::Result<std::path::PathBuf> {
    std::fs::create_dir_all(dir)?;
    for (name, text) in DEFAULT_PACK {
        std::fs::write(dir.join(name), text)?;
    }
    Ok(dir.to_path_buf())
}

/// The shipped access policy (`deploy/policy/`), embedded so `demo` works from any directory.
/// A test keeps this list identical to the files there.
pub const DEFAULT_POLICY: &[(&str, &str)] = &[(
    "default.yaml",
    include_str!("../../deploy/policy/default.yaml"),
)];

/// Writes the embedded access policy into `dir` and returns it.
pub fn write_default_policy(dir: &Path) -> std::io::Result<std::path::PathBuf> {
    std::fs::create_dir_all(dir)?;
    for (name, text) in DEFAULT_POLICY {
        std::fs::write(dir.join(name), text)?;
    }
    Ok(dir.to_path_buf())
}

/// Where the running demo's parts are, for its [`banner`].
#[derive(Debug, Clone, Copy)]
pub struct DemoPlaces<'a> {
    /// The data directory.
    pub dir: &'a Path,
    /// The development CA (clients' `--cacert`).
    pub ca: &'a Path,
    /// The gateway's TLS listener.
    pub listen: std::net::SocketAddr,
    /// The admin listener.
    pub admin: std::net::SocketAddr,
    /// The sample EHR.
    pub ehr: std::net::SocketAddr,
    /// The rule directory.
    pub rules: &'a Path,
    /// The access policy directory.
    pub policy: &'a Path,
    /// The generated gateway.yaml.
    pub config: &'a Path,
}

/// The start-up text: where things are and requests to try.
pub fn banner(p: &DemoPlaces<'_>) -> String {
    let (listen, admin, ehr) = (p.listen, p.admin, p.ehr);
    // The binary actually running (`make demo` runs it through cargo, off PATH).
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "phi-gateway".to_string());
    let host = if listen.ip().is_loopback() {
        format!("localhost:{}", listen.port())
    } else {
        listen.to_string()
    };
    let ca = p.ca.display();
    let dir = p.dir.display();
    let config = p.config.display();
    let rules = p.rules.display();
    let policy = p.policy.display();
    let jwks = crate::runtime::demo_issuer::JWKS_FILE;
    let key = crate::runtime::demo_issuer::KEY_FILE;
    let ssn_body = r#"{"resourceType":"Observation","status":"final","subject":{"reference":"Patient/pat-1"},"note":[{"text":"SSN 536-22-1234"}]}"#;
    let curl = format!("curl --cacert {ca} 'https://{host}/fhir");
    // FHIR's break-the-glass security label (v3-ActReason#BTG) as a `Category` header.
    let btg = r#"http://terminology.hl7.org/CodeSystem/v3-ActReason#BTG; scheme="http://hl7.org/fhir/tag/security"; label="break the glass""#;
    [
        String::new(),
        "phi-gateway demo (TLS 1.3 only)".to_string(),
        format!("  gateway      https://{host}  ->  sample EHR http://{ehr}"),
        format!("  admin        http://{admin}/metrics  /livez  /readyz  (POST /reload)"),
        format!("  suspended    curl -H \"authorization: Bearer $(cat {dir}/{ADMIN_TOKEN})\" http://{admin}/principals/suspended"),
        format!("  data dir     {dir}"),
        format!("  CA for curl  {ca}"),
        format!("  config       {config}"),
        format!("  rules        {rules}"),
        format!("  policy       {policy}"),
        format!("  tokens       /fhir/ requires one; demo issuer {dir}/{jwks} (key {dir}/{KEYS_DIR}/{key}, development only)"),
        "  sample EHR   Patient pat-1, pat-2; Observation obs-1 (of pat-1), obs-2 (of pat-2)".to_string(),
        "  Edits to the rules, the policy or the config are picked up within a second (a bad".to_string(),
        "  edit is logged and the running ones stay); SIGHUP or POST /reload also reload.".to_string(),
        format!("  audit trail  {dir}/{AUDIT_DIR}/  (public key {dir}/{PUBLIC_KEY})"),
        String::new(),
        "Try these in one shell (Ctrl-C stops the demo). First three tokens (15 minutes each):".to_string(),
        String::new(),
        format!("  CLINICIAN=$({exe} dev-token --data-dir {dir} --sub dr-demo --role clinician --scope 'openid fhirUser user/*.cruds')"),
        format!("  PATIENT_APP=$({exe} dev-token --data-dir {dir} --sub app-user-1 --patient pat-1 --scope 'launch/patient openid patient/*.rs')"),
        format!("  EMERGENCY=$({exe} dev-token --data-dir {dir} --sub ed-doc-1 --role emergency --patient pat-1 --scope 'launch/patient openid patient/*.rs')"),
        String::new(),
        "  # 1. a clinician reads obs-1: 200".to_string(),
        format!("  {curl}/Observation/obs-1' -H 'x-hipaa-audit-id: demo-ticket-1' -H \"authorization: Bearer $CLINICIAN\""),
        String::new(),
        "  # 2. the patient app searches its own patient's observations: 200, a Bundle with obs-1".to_string(),
        format!("  {curl}/Observation?patient=pat-1' -H 'x-hipaa-audit-id: demo-ticket-2' -H \"authorization: Bearer $PATIENT_APP\""),
        String::new(),
        "  # 3. record hopping by URL, the patient app reads pat-2: 403 insufficient_scope, nothing reaches the EHR".to_string(),
        format!("  {curl}/Patient/pat-2' -H 'x-hipaa-audit-id: demo-ticket-3' -H \"authorization: Bearer $PATIENT_APP\""),
        String::new(),
        "  # 4. record hopping by id, the patient app reads obs-2 (pat-2's): 403, the EHR's answer is held back".to_string(),
        format!("  {curl}/Observation/obs-2' -H 'x-hipaa-audit-id: demo-ticket-4' -H \"authorization: Bearer $PATIENT_APP\""),
        String::new(),
        "  # 5. no token: 401 token_missing".to_string(),
        format!("  {curl}/Observation/obs-1' -H 'x-hipaa-audit-id: demo-ticket-5'"),
        String::new(),
        "  # 6. no audit header: 403 missing_audit_header, nothing reaches the EHR".to_string(),
        format!("  {curl}/Observation/obs-1' -H \"authorization: Bearer $CLINICIAN\""),
        String::new(),
        "  # 7. an SSN in a JSON body: 403 phi_detected, no body byte reaches the EHR".to_string(),
        format!("  {curl}/Observation' -H 'x-hipaa-audit-id: demo-ticket-7' -H \"authorization: Bearer $CLINICIAN\" -H 'content-type: application/fhir+json' -d '{ssn_body}'"),
        String::new(),
        "  # 8. break-glass: an emergency clinician bound to pat-1 opens pat-2 with the BTG label and a".to_string(),
        "  #    justification: 200, a CRITICAL audit record, then 60 minutes of access to pat-2".to_string(),
        format!("  {curl}/Patient/pat-2' -H 'x-hipaa-audit-id: demo-ticket-8' -H \"authorization: Bearer $EMERGENCY\" -H 'category: {btg}' -H 'x-break-glass-justification: unresponsive patient in the emergency department, chart needed now'"),
        String::new(),
        "  # 9. the EHR fails with a stack trace quoting an SSN: 500, an OperationOutcome from the".to_string(),
        "  #    gateway instead (response_leak_blocked), no byte of the trace".to_string(),
        format!("  {curl}/Observation/obs-1' -H 'x-hipaa-audit-id: demo-ticket-9' -H \"authorization: Bearer $CLINICIAN\" -H '{DEMO_FAIL}: stacktrace'"),
        String::new(),
        "  # then prove the audit trail is intact (also after Ctrl-C), and review break-glass use:".to_string(),
        format!("  {exe} audit verify --dir {dir}/{AUDIT_DIR} --pubkey {dir}/{PUBLIC_KEY}"),
        format!("  {exe} audit break-glass --dir {dir}/{AUDIT_DIR} --pubkey {dir}/{PUBLIC_KEY}"),
        String::new(),
        format!("  # other tokens: {exe} dev-token --help"),
        String::new(),
    ]
    .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_config_survives_awkward_paths() {
        let dir = tempfile::tempdir().unwrap();
        let rules = dir.path().join("ru\"les\\x");
        let policy = dir.path().join("po\"li\\cy");
        std::fs::create_dir_all(&policy).unwrap();
        let file = write_demo_config(
            dir.path(),
            "127.0.0.1:1",
            "127.0.0.1:2",
            "127.0.0.1:3",
            &rules,
            &policy,
        )
        .unwrap();
        let cfg = crate::config::load(&file).unwrap();
        assert_eq!(cfg.rules_dir, rules);
        assert_eq!(cfg.policy_dirs, [policy]);
    }

    #[test]
    fn embedded_policy_matches_deploy_policy() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/policy");
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let embedded: Vec<String> = DEFAULT_POLICY.iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(
            embedded, names,
            "update DEFAULT_POLICY in src/runtime/demo.rs when deploy/policy/ changes"
        );
    }

    /// The page `x-demo-fail: stacktrace` gets is one the default pack, scanned as a response,
    /// flags twice over: the stack trace and the SSN it quotes.
    #[test]
    fn the_failing_page_is_a_leak_the_default_pack_sees() {
        let page = stack_trace_page();
        assert_eq!(page.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let dir = tempfile::tempdir().unwrap();
        write_default_pack(dir.path()).unwrap();
        let rules = crate::engine::rules::RuleSet::load_dirs(&[dir.path().to_path_buf()])
            .expect("default pack");
        let engine = crate::engine::Engine::new(std::sync::Arc::new(rules));
        let options =
            crate::engine::ScanOptions::default().message(crate::engine::Message::Response);
        let part = crate::engine::Part::Body {
            content_type: Some("text/plain"),
            content_encoding: None,
            bytes: page.body(),
        };
        let scan = engine
            .scan_with(&part, &crate::engine::Limits::default(), &options)
            .expect("scans");
        let ids: Vec<&str> = scan.findings.iter().map(|f| f.rule_id.as_str()).collect();
        assert!(
            ids.contains(&"java-stack-trace") && ids.contains(&"us-ssn"),
            "{ids:?}"
        );
    }

    #[test]
    fn sample_ehr_reads_and_searches() {
        let (status, obs) = read("/fhir/Observation/obs-2", "").unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(obs["subject"]["reference"], "Patient/pat-2");
        assert_eq!(read("/fhir/Patient/pat-1", "").unwrap().1["id"], "pat-1");
        assert_eq!(
            read("/fhir/Patient/nobody", "").unwrap().0,
            StatusCode::NOT_FOUND
        );
        let ids = |path: &str, query: &str| -> Vec<String> {
            let (status, b) = read(path, query).unwrap();
            assert_eq!(status, StatusCode::OK);
            assert_eq!(b["type"], "searchset");
            b["entry"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["resource"]["id"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(ids("/fhir/Observation", "patient=pat-1"), ["obs-1"]);
        assert_eq!(ids("/fhir/Observation", "subject=Patient/pat-2"), ["obs-2"]);
        assert_eq!(
            ids(
                "/fhir/Observation",
                "patient=pat-1,Patient/pat-2&code=8867-4"
            ),
            ["obs-1", "obs-2"]
        );
        assert_eq!(ids("/fhir/Patient", "_id=pat-2"), ["pat-2"]);
        assert_eq!(ids("/fhir/Patient/pat-2/Observation", ""), ["obs-2"]);
        assert!(read("/fhir/metadata", "").is_none());
        assert!(read("/fhir/Condition/c-1", "").is_none());
    }

    #[test]
    fn embedded_pack_matches_rules_directory() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
        let mut on_disk: Vec<(String, String)> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| matches!(p.extension().and_then(|x| x.to_str()), Some("yaml" | "yml")))
            .map(|p| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read_to_string(&p).unwrap())
            })
            .collect();
        on_disk.sort();
        let embedded: Vec<(String, String)> = DEFAULT_PACK
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        assert_eq!(
            embedded, on_disk,
            "update DEFAULT_PACK in src/demo.rs when rules/ changes"
        );
    }

    #[test]
    fn default_pack_loads_and_its_inline_tests_pass() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
        let rules = crate::engine::rules::RuleSet::load_dir(&dir).unwrap();
        assert!(rules.len() >= 7);
        let failures = rules.run_inline_tests();
        assert!(failures.is_empty(), "{failures:#?}");
    }
}
