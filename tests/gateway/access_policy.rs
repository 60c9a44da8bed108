//! The access policy enforced by the gateway (issue 11 §2–§3) through the real binary: real
//! signed tokens from the HTTPS JWKS server of `identity.rs`, the shipped policy
//! (`deploy/policy`), real TLS 1.3 clients (curl with `--path-as-is`, so encodings reach the
//! gateway as written), and the recording upstream proving what reached it. The decisions
//! themselves are unit-tested in `src/access/policy/tests.rs`; each case here proves the
//! wiring, so each fails if the gateway stops calling the policy.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;
use crate::identity::{access_lines, header, record_of, JwksServer, Keys};

pub(crate) fn shipped_policy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/policy")
}

/// A gateway whose `fhir` route checks tokens (`require`, `mode`) and applies the policy in
/// `policy_dir`.
fn policy_gateway(
    up: &RecordingUpstream,
    jwks: &JwksServer,
    require: &str,
    mode: &str,
    policy_dir: &Path,
) -> Gateway {
    let mut o = GatewayOpts::new(up.addr());
    o.access = access_lines(jwks, &[]);
    o.access
        .push(format!("  policy: [\"{}\"]", policy_dir.display()));
    o.fhir_route_extra = vec![
        "    access:".into(),
        format!("      require: {require}"),
        format!("      mode: {mode}"),
    ];
    Gateway::start(o)
}

/// `curl --path-as-is METHOD URL` with the audit header and, if any, the bearer token.
fn send(gw: &Gateway, method: &str, path: &str, token: Option<&str>) -> CurlResult {
    let auth = token.map(|t| format!("authorization: Bearer {t}"));
    let url = gw.url(path);
    let audit = format!("{AUDIT}: policy-test");
    let mut args = vec!["--path-as-is", "-g", "-X", method, "-H", &audit];
    if let Some(a) = &auth {
        args.extend(["-H", a.as_str()]);
    }
    args.push(&url);
    gw.curl(&args)
}

/// Requests the upstream had recorded before a case, to tell what the case added.
fn since(up: &RecordingUpstream, before: usize) -> Vec<Recorded> {
    up.quiesce();
    up.requests().into_iter().skip(before).collect()
}

/// One URL-only case: the claims (None: no token), the request, and what must come of it.
struct Case {
    name: &'static str,
    claims: Option<Value>,
    method: &'static str,
    path: &'static str,
    /// 200 (forwarded) or the refusal's status.
    status: u16,
    /// The client's `reason` of a refusal.
    reason: &'static str,
    /// The audit record's `access.reason`.
    policy: &'static str,
}

fn case(
    name: &'static str,
    claims: Option<Value>,
    method: &'static str,
    path: &'static str,
    status: u16,
    policy: &'static str,
) -> Case {
    let reason = match status {
        200 => "",
        400 => "bad_request",
        _ if policy == "compartment_check_unavailable" => "compartment_check_unavailable",
        _ => "insufficient_scope",
    };
    Case {
        name,
        claims,
        method,
        path,
        status,
        reason,
        policy,
    }
}

fn patient_app() -> Option<Value> {
    Some(json!({"scope": "patient/*.rs", "patient": "pat-1"}))
}

fn user(scope: &str, roles: &[&str]) -> Option<Value> {
    Some(json!({"scope": scope, "roles": roles}))
}

fn cases() -> Vec<Case> {
    let p = patient_app;
    vec![
        // Scopes: v1 and v2, the star, and what neither escalates to.
        case(
            "v2 patient scope, own compartment parameter",
            Some(json!({"scope": "patient/Observation.rs", "patient": "pat-1"})),
            "GET",
            "/fhir/Observation?subject=Patient/pat-1",
            200,
            "allowed",
        ),
        case(
            "v1 patient scope, own compartment search",
            Some(json!({"scope": "patient/Observation.read", "patient": "pat-1"})),
            "GET",
            "/fhir/Patient/pat-1/Observation",
            200,
            "allowed",
        ),
        case(
            "user star scope searches any type",
            user("user/*.rs", &[]),
            "GET",
            "/fhir/Condition?code=1234",
            200,
            "allowed",
        ),
        case(
            "a scope for another type",
            user("user/Observation.rs", &[]),
            "GET",
            "/fhir/Condition?code=1234",
            403,
            "insufficient_scope",
        ),
        case(
            "a read-and-search star does not delete",
            user("user/*.rs", &[]),
            "DELETE",
            "/fhir/Observation/obs-1",
            403,
            "insufficient_scope",
        ),
        case(
            "patient star with a clinician role stays bound to its patient",
            Some(json!({"scope": "patient/*.cruds", "roles": ["clinician"], "patient": "pat-1"})),
            "GET",
            "/fhir/Patient/pat-2",
            403,
            "patient_mismatch",
        ),
        case(
            "v1 read of one type and v2 create of another grant no read of the second",
            Some(
                json!({"scope": "patient/Observation.read patient/Condition.c", "patient": "pat-1"}),
            ),
            "GET",
            "/fhir/Condition?patient=pat-1",
            403,
            "insufficient_scope",
        ),
        case(
            "a user scope on one type does not unbind a patient star on another",
            Some(
                json!({"scope": "user/Observation.rs patient/*.rs", "roles": ["clinician"], "patient": "pat-1"}),
            ),
            "GET",
            "/fhir/Condition?patient=pat-2",
            403,
            "compartment_value_mismatch",
        ),
        // Roles and the permissions claim.
        case(
            "nurse reads an observation",
            user("user/Observation.rs", &["nurse"]),
            "GET",
            "/fhir/Observation/obs-1",
            200,
            "allowed",
        ),
        case(
            "billing reads no clinical data whatever its scopes",
            user("user/*.cruds", &["billing"]),
            "GET",
            "/fhir/Observation?code=1234",
            403,
            "no_matching_role",
        ),
        case(
            "permissions claim grants medication history",
            Some(
                json!({"scope": "user/*.rs", "permissions": {"ehr_read": ["medication_history"]}}),
            ),
            "GET",
            "/fhir/MedicationRequest?code=1234",
            200,
            "allowed",
        ),
        case(
            "permissions claim grants nothing else",
            Some(
                json!({"scope": "user/*.rs", "permissions": {"ehr_read": ["medication_history"]}}),
            ),
            "GET",
            "/fhir/Condition?code=1234",
            403,
            "no_matching_role",
        ),
        case(
            "an unknown role is default deny",
            user("user/*.rs", &["janitor"]),
            "GET",
            "/fhir/Patient/pat-1",
            403,
            "no_matching_role",
        ),
        case(
            "an $operation no role lists",
            user("user/*.rs", &["nurse"]),
            "GET",
            "/fhir/Patient/pat-1/$everything",
            403,
            "operation_not_allowed",
        ),
        // Patient binding: every record-hopping shape.
        case(
            "own Patient read",
            p(),
            "GET",
            "/fhir/Patient/pat-1",
            200,
            "allowed",
        ),
        case(
            "Patient/{other}",
            p(),
            "GET",
            "/fhir/Patient/pat-2",
            403,
            "patient_mismatch",
        ),
        case(
            "Patient/{other}/Observation",
            p(),
            "GET",
            "/fhir/Patient/pat-2/Observation",
            403,
            "patient_mismatch",
        ),
        case(
            "type search without the compartment parameter",
            p(),
            "GET",
            "/fhir/Observation?code=1234",
            403,
            "compartment_param_missing",
        ),
        case(
            "type search for another patient",
            p(),
            "GET",
            "/fhir/Observation?subject=Patient/pat-2",
            403,
            "compartment_value_mismatch",
        ),
        case(
            "comma-separated values with another patient",
            p(),
            "GET",
            "/fhir/Observation?subject=Patient/pat-1,Patient/pat-2",
            403,
            "compartment_value_mismatch",
        ),
        case(
            "repeated parameter with another patient",
            p(),
            "GET",
            "/fhir/Observation?subject=Patient/pat-1&subject=Patient/pat-2",
            403,
            "compartment_value_mismatch",
        ),
        case(
            "_has",
            p(),
            "GET",
            "/fhir/Observation?subject=Patient/pat-1&_has:Provenance:target:agent=Practitioner/p1",
            403,
            "compartment_escape_param",
        ),
        case(
            "chained parameter",
            p(),
            "GET",
            "/fhir/Observation?subject=Patient/pat-1&performer.name=Smith",
            403,
            "compartment_escape_param",
        ),
        case(
            "_include",
            p(),
            "GET",
            "/fhir/Observation?subject=Patient/pat-1&_include=Observation:performer",
            403,
            "compartment_escape_param",
        ),
        case(
            "_revinclude",
            p(),
            "GET",
            "/fhir/Patient?_id=pat-1&_revinclude=Provenance:target",
            403,
            "compartment_escape_param",
        ),
        case(
            "system-level search",
            p(),
            "GET",
            "/fhir/?_type=Observation",
            403,
            "system_level_not_allowed",
        ),
        case(
            "$everything of another patient",
            Some(json!({"scope": "patient/*.rs", "roles": ["clinician"], "patient": "pat-1"})),
            "GET",
            "/fhir/Patient/pat-2/$everything",
            403,
            "patient_mismatch",
        ),
        case(
            "$everything of its own patient",
            Some(json!({"scope": "patient/*.rs", "roles": ["clinician"], "patient": "pat-1"})),
            "GET",
            "/fhir/Patient/pat-1/$everything",
            200,
            "allowed",
        ),
        // Encodings: refused or decoded once, never split from what the upstream sees.
        case(
            "%2F inside a segment",
            p(),
            "GET",
            "/fhir/Patient%2Fpat-2",
            400,
            "malformed_request",
        ),
        case(
            "%252F double encoding",
            p(),
            "GET",
            "/fhir/Patient/pat-1%252F..%252Fpat-2",
            400,
            "malformed_request",
        ),
        case(
            "..",
            p(),
            "GET",
            "/fhir/Patient/pat-1/../pat-2",
            400,
            "malformed_request",
        ),
        case(
            "//",
            p(),
            "GET",
            "/fhir/Patient//pat-2",
            400,
            "malformed_request",
        ),
        case(
            "case of the type",
            p(),
            "GET",
            "/fhir/patient/pat-2",
            400,
            "unknown_resource_type",
        ),
        case(
            "an encoded unreserved character decodes to the same hop",
            p(),
            "GET",
            "/fhir/Pati%65nt/pat-2",
            403,
            "patient_mismatch",
        ),
        // A delete or update by id the URL cannot judge: the gateway reads the current
        // version first (tests/gateway/write_target.rs). A read by id is forwarded with its
        // response held back (tests/gateway/response_check.rs).
        // Anonymous on an `optional` route: a subject without claims, default deny.
        case(
            "anonymous capabilities",
            None,
            "GET",
            "/fhir/metadata",
            200,
            "allowed",
        ),
        case(
            "anonymous patient read",
            None,
            "GET",
            "/fhir/Patient/pat-1",
            403,
            "insufficient_scope",
        ),
    ]
}

/// Every URL-only decision is taken before any upstream connection: each refusal is 403 (or
/// 400) with the typed reason, the fixed-realm challenge and the request id, nothing reaches
/// the upstream, and the audit record names the policy's reason; each allow is forwarded.
#[tokio::test]
async fn url_decisions_are_enforced_before_any_upstream_connection() {
    let up = RecordingUpstream::start();
    let keys = Keys::new("p");
    let jwks = JwksServer::start(keys.jwks());
    let gw = policy_gateway(&up, &jwks, "optional", "enforce", &shipped_policy());
    let mut failures = Vec::new();
    for c in cases() {
        let token = c.claims.as_ref().map(|cl| keys.token("ES256", cl.clone()));
        let before = up.requests().len();
        let r = send(&gw, c.method, c.path, token.as_deref());
        let new = since(&up, before);
        let what = format!("{} ({} {})", c.name, c.method, c.path);
        if r.status != c.status {
            failures.push(format!("{what}: status {} body {}", r.status, r.body));
            continue;
        }
        if c.status == 200 {
            let line = format!("{} {} HTTP/1.1", c.method, c.path);
            if new.len() != 1 || new[0].request_line() != line {
                failures.push(format!(
                    "{what}: upstream got {:?}",
                    new.iter()
                        .map(|r| r.request_line().to_string())
                        .collect::<Vec<_>>()
                ));
            }
        } else {
            check_refusal(r.status, &r.headers, &r.body, c.status, c.reason);
            if !new.is_empty() {
                failures.push(format!("{what}: reached the upstream:\n{}", up.describe()));
            }
            let challenge = header(&r.headers, "www-authenticate");
            let want = (c.reason == "insufficient_scope")
                .then_some("Bearer realm=\"phi-gateway\", error=\"insufficient_scope\"");
            if challenge != want {
                failures.push(format!("{what}: WWW-Authenticate {challenge:?}"));
            }
            // Nothing from the URL is echoed.
            if r.body.contains("pat-2") || r.body.contains("Patient") {
                failures.push(format!("{what}: body echoes the URL: {}", r.body));
            }
        }
        let id = header(&r.headers, "x-request-id")
            .unwrap_or_default()
            .to_string();
        let rec = record_of(&gw, &id);
        let decision = match (c.status, c.claims.is_some()) {
            (200, true) => "allow",
            (200, false) => "anonymous",
            _ => "deny",
        };
        if rec["access"]["reason"] != c.policy || rec["access"]["decision"] != decision {
            failures.push(format!("{what}: audit access {}", rec["access"]));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}\n{}",
        failures.len(),
        cases().len(),
        failures.join("\n"),
        gw.logs()
    );
    gw.wait_metric(
        "phi_gateway_access_decisions_total",
        &[("decision", "deny"), ("reason", "patient_mismatch")],
        3.0,
    );
    gw.wait_metric(
        "phi_gateway_access_decisions_total",
        &[("decision", "allow"), ("reason", "allowed")],
        7.0,
    );
}

fn observation(patient: &str) -> String {
    json!({"resourceType": "Observation", "status": "final", "code": {"text": "heart rate"},
           "subject": {"reference": format!("Patient/{patient}")}})
    .to_string()
}

async fn post(
    gw: &Gateway,
    method: &str,
    path: &str,
    token: &str,
    body: String,
) -> (u16, Vec<(String, String)>, String) {
    let resp = gw
        .client(false)
        .request(method.parse().unwrap(), gw.url(path))
        .header(AUDIT, "policy-test")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/fhir+json")
        .body(body)
        .send()
        .await
        .expect("request");
    let (s, h, b, _) = read_response(resp).await;
    (s, h, b)
}

/// Creates, updates and Bundles are decided on the complete body, before it is released: a
/// body naming another patient, or a transaction with one entry out of scope, is refused and
/// no body byte reaches the upstream; a scope denial that needs no body is answered before
/// any upstream connection; allowed bodies are forwarded byte for byte.
#[tokio::test]
async fn body_decisions_are_taken_before_the_body_is_released() {
    let up = RecordingUpstream::start();
    let keys = Keys::new("b");
    let jwks = JwksServer::start(keys.jwks());
    let gw = policy_gateway(&up, &jwks, "token", "enforce", &shipped_policy());
    let app = keys.token(
        "ES256",
        json!({"scope": "patient/Observation.cr patient/Patient.ru", "patient": "pat-1"}),
    );

    // Allowed: own patient, forwarded exactly.
    let body = observation("pat-1");
    let (s, _, b) = post(&gw, "POST", "/fhir/Observation", &app, body.clone()).await;
    assert_eq!(s, 200, "{b}\n{}", gw.logs());
    assert_forwarded_exactly(&up, "/fhir/Observation", body.as_bytes());

    // A create referencing another patient.
    let before = up.requests().len();
    let (s, h, b) = post(&gw, "POST", "/fhir/Observation", &app, observation("pat-2")).await;
    let r = check_refusal(s, &h, &b, 403, "insufficient_scope");
    assert_eq!(
        header(&h, "www-authenticate"),
        Some("Bearer realm=\"phi-gateway\", error=\"insufficient_scope\"")
    );
    assert_no_body_since(&up, before, "create for another patient");
    assert_eq!(
        record_of(&gw, &r.request_id)["access"]["reason"],
        "body_not_in_compartment"
    );

    // An update of its own Patient whose body is another patient.
    let before = up.requests().len();
    let other = json!({"resourceType": "Patient", "id": "pat-2"}).to_string();
    let (s, h, b) = post(&gw, "PUT", "/fhir/Patient/pat-1", &app, other).await;
    let r = check_refusal(s, &h, &b, 403, "insufficient_scope");
    assert_no_body_since(&up, before, "update with another patient's body");
    assert_eq!(
        record_of(&gw, &r.request_id)["access"]["reason"],
        "body_not_in_compartment"
    );

    // A scope denial needs no body: refused before any upstream connection.
    let reader = keys.token("ES256", json!({"scope": "user/Observation.rs"}));
    let before = up.requests().len();
    let (s, h, b) = post(
        &gw,
        "POST",
        "/fhir/Observation",
        &reader,
        observation("pat-1"),
    )
    .await;
    let r = check_refusal(s, &h, &b, 403, "insufficient_scope");
    assert!(
        since(&up, before).is_empty(),
        "a URL-decided refusal reached the upstream:\n{}",
        up.describe()
    );
    assert_eq!(
        record_of(&gw, &r.request_id)["access"]["reason"],
        "insufficient_scope"
    );

    // A transaction with one entry out of scope: 403 listing its index.
    let writer = keys.token("ES256", json!({"scope": "user/Observation.cruds"}));
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": serde_json::from_str::<Value>(&observation("pat-1")).unwrap(),
         "request": {"method": "POST", "url": "Observation"}},
        {"resource": {"resourceType": "Condition", "subject": {"reference": "Patient/pat-1"}},
         "request": {"method": "POST", "url": "Condition"}},
        {"request": {"method": "GET", "url": "Observation?code=1234"}}
    ]})
    .to_string();
    let before = up.requests().len();
    let (s, h, b) = post(&gw, "POST", "/fhir/", &writer, bundle).await;
    let r = check_refusal(s, &h, &b, 403, "insufficient_scope");
    assert_eq!(r.json["denied_entries"], json!([1]), "{b}");
    assert_no_body_since(&up, before, "a transaction with an entry out of scope");
    let rec = record_of(&gw, &r.request_id);
    assert_eq!(rec["access"]["reason"], "bundle_entry_denied");
    assert_eq!(rec["access"]["denied_entries"], json!([1]));
    assert_eq!(
        rec["access"]["entry_reasons"],
        json!(["insufficient_scope"])
    );

    // The same Bundle without the entry goes through, byte for byte.
    let ok = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": "Observation?code=1234"}}
    ]})
    .to_string();
    let before = up.requests().len();
    let (s, _, b) = post(&gw, "POST", "/fhir/", &writer, ok.clone()).await;
    assert_eq!(s, 200, "{b}");
    // (The refused transaction's head reached the upstream above, incomplete.)
    let new = since(&up, before);
    assert!(
        new.len() == 1 && new[0].complete && new[0].body == ok.as_bytes(),
        "{}",
        up.describe()
    );
}

/// What the body-time refusal may have let through: at most the request head, never a body
/// byte, never a complete request.
fn assert_no_body_since(up: &RecordingUpstream, before: usize, what: &str) {
    for r in since(up, before) {
        assert!(
            r.raw_body.is_empty() && !r.complete,
            "{what}: body bytes reached the upstream:\n{}",
            up.describe()
        );
    }
}

/// Monitor mode forwards what enforce refuses, and audits and counts it as `would_deny` with
/// the policy's reason.
#[tokio::test]
async fn monitor_mode_forwards_and_audits_would_deny() {
    let up = RecordingUpstream::start();
    let keys = Keys::new("m");
    let jwks = JwksServer::start(keys.jwks());
    let gw = policy_gateway(&up, &jwks, "token", "monitor", &shipped_policy());
    let app = keys.token(
        "ES256",
        json!({"scope": "patient/*.rs", "patient": "pat-1"}),
    );
    let r = send(&gw, "GET", "/fhir/Patient/pat-2", Some(&app));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        up.request_lines().last().map(String::as_str),
        Some("GET /fhir/Patient/pat-2 HTTP/1.1")
    );
    let rec = record_of(&gw, header(&r.headers, "x-request-id").unwrap());
    assert_eq!(rec["decision"], "would_block");
    assert_eq!(rec["reason"], "insufficient_scope");
    assert_eq!(rec["access"]["decision"], "would_deny");
    assert_eq!(rec["access"]["reason"], "patient_mismatch");
    gw.wait_metric(
        "phi_gateway_access_decisions_total",
        &[("decision", "would_deny"), ("reason", "patient_mismatch")],
        1.0,
    );
    // A body-time would-deny is forwarded whole.
    let body = observation("pat-2");
    let writer = keys.token(
        "ES256",
        json!({"scope": "patient/Observation.c", "patient": "pat-1"}),
    );
    let (s, h, b) = post(&gw, "POST", "/fhir/Observation", &writer, body.clone()).await;
    assert_eq!(s, 200, "{b}");
    assert_forwarded_exactly(&up, "/fhir/Observation", body.as_bytes());
    let rec = record_of(&gw, header(&h, "x-request-id").unwrap());
    assert_eq!(rec["access"]["decision"], "would_deny");
    assert_eq!(rec["access"]["reason"], "body_not_in_compartment");
}

/// The audit record's access object: the policy's reason, the scopes, the patient context
/// only as the keyed fingerprint of `Patient/{id}` (the same value a record of a read of that
/// patient has as `resource_id`), the purpose of use; no patient id anywhere in the record.
#[tokio::test]
async fn the_audit_record_fingerprints_the_patient_context() {
    let up = RecordingUpstream::start();
    let keys = Keys::new("r");
    let jwks = JwksServer::start(keys.jwks());
    let gw = policy_gateway(&up, &jwks, "token", "enforce", &shipped_policy());
    let app = keys.token(
        "ES256",
        json!({"scope": "patient/*.rs", "patient": "pat-1", "purpose_of_use": "TREAT"}),
    );
    let ok = send(&gw, "GET", "/fhir/Patient/pat-1", Some(&app));
    assert_eq!(ok.status, 200, "{}", ok.body);
    let hop = send(&gw, "GET", "/fhir/Patient/pat-2", Some(&app));
    let r = check_refusal(
        hop.status,
        &hop.headers,
        &hop.body,
        403,
        "insufficient_scope",
    );
    let fp = phi_gateway::audit::Fingerprinter::new(&gw.fingerprint_secret()).fingerprint(
        &phi_gateway::audit::Redacted::new("Patient/pat-1".to_string()),
    );
    let allowed = record_of(&gw, header(&ok.headers, "x-request-id").unwrap());
    let refused = record_of(&gw, &r.request_id);
    assert_eq!(allowed["access"]["patient"], fp.as_str());
    assert_eq!(
        allowed["resource_id"],
        fp.as_str(),
        "joins with the read's resource_id"
    );
    assert_eq!(refused["access"]["patient"], fp.as_str());
    assert_eq!(refused["access"]["reason"], "patient_mismatch");
    assert_eq!(refused["access"]["purpose_of_use"], "TREAT");
    assert_eq!(refused["access"]["scopes"], json!(["patient/*.rs"]));
    assert_eq!(refused["decision"], "block");
    assert_eq!(refused["reason"], "insufficient_scope");
    for rec in [&allowed, &refused] {
        let text = rec.to_string();
        assert!(!text.contains("pat-1") && !text.contains("pat-2"), "{text}");
    }
    assert!(!gw.logs().contains("pat-2"), "a patient id reached the log");
}

/// A policy change is hot-reloaded with the configuration; a broken policy is refused with
/// its file and line, and the running policy stays.
#[tokio::test]
async fn a_policy_change_reloads_and_a_broken_one_keeps_the_running_policy() {
    let up = RecordingUpstream::start();
    let keys = Keys::new("l");
    let jwks = JwksServer::start(keys.jwks());
    let dir = tempfile::tempdir().unwrap();
    let shipped = std::fs::read_to_string(shipped_policy().join("default.yaml")).unwrap();
    let file = dir.path().join("default.yaml");
    std::fs::write(&file, &shipped).unwrap();
    let gw = policy_gateway(&up, &jwks, "token", "enforce", dir.path());
    let nurse = keys.token("ES256", json!({"scope": "user/*.rs", "roles": ["nurse"]}));
    let r = send(&gw, "GET", "/fhir/Patient/pat-1/$everything", Some(&nurse));
    check_refusal(r.status, &r.headers, &r.body, 403, "insufficient_scope");

    // Give the nurse role the operation.
    let needle = "  - name: nurse\n";
    assert!(shipped.contains(needle));
    let granted = shipped.replacen(
        needle,
        "  - name: nurse\n    operations: [\"Patient/[id]/$everything\"]\n",
        1,
    );
    std::fs::write(&file, &granted).unwrap();
    let (status, body) = gw.admin_post("/reload").expect("admin reload");
    assert_eq!(status, 200, "{body}");
    let r = send(&gw, "GET", "/fhir/Patient/pat-1/$everything", Some(&nurse));
    assert_eq!(r.status, 200, "after reload: {}\n{}", r.body, gw.logs());

    // A broken policy: refused naming the file and line; the running policy stays.
    std::fs::write(
        &file,
        granted.replacen("  - name: nurse\n", "  - name: nurse\n    grnats: []\n", 1),
    )
    .unwrap();
    let (status, body) = gw.admin_post("/reload").expect("admin reload");
    assert_ne!(status, 200, "{body}");
    assert!(body.contains("default.yaml:"), "{body}");
    let r = send(&gw, "GET", "/fhir/Patient/pat-1/$everything", Some(&nurse));
    assert_eq!(r.status, 200, "the running policy stays: {}", r.body);
    let deadline = Instant::now() + TIMEOUT;
    while !gw
        .logs()
        .contains("still serving the previous configuration")
    {
        assert!(
            Instant::now() < deadline,
            "no reload failure logged\n{}",
            gw.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `check` loads the policy before anything binds: a broken policy file is exit 78 naming
/// its file, line and field.
#[test]
fn check_refuses_a_broken_policy_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("site.yaml"),
        "roles:\n  - name: nurse\n    grants:\n      - types: [Patiant]\n        interactions: [read]\n",
    )
    .unwrap();
    let keys = Keys::new("c");
    let jwks = JwksServer::start(keys.jwks());
    let mut o = GatewayOpts::new(std::net::SocketAddr::from(([127, 0, 0, 1], free_port())));
    o.access = access_lines(&jwks, &[]);
    o.access
        .push(format!("  policy: [\"{}\"]", dir.path().display()));
    o.fhir_route_extra = vec!["    access:".into(), "      require: token".into()];
    let files = GatewayFiles::new(&o);
    let out = Command::new(env!("CARGO_BIN_EXE_phi-gateway"))
        .args(["check", "--no-resolve", "--config"])
        .arg(&files.config)
        .current_dir(files.dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("run phi-gateway check");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains("access.policy") && err.contains("site.yaml:4:"),
        "{err}"
    );
}
