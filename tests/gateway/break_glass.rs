//! Break-glass (issue 11 §4) through the real binary: an `emergency` token (the shipped
//! policy's break-glass eligible role) bound to `pat-1` reads `pat-2` with FHIR's BTG
//! `Category` label and a justification; real keys and the HTTPS JWKS server of
//! tests/gateway/identity.rs, the recording upstream proving what reached it, the audit trail
//! read back and listed by `phi-gateway audit break-glass`. Time boxes of a few seconds
//! (`duration_seconds`); every wait is bounded and polls for the state, never for a time.

use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::access_policy::shipped_policy;
use crate::common::*;
use crate::identity::{access_lines, header, JwksServer, Keys};
use crate::sessions::{fleet_key, redis_state};

const BTG: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason#BTG; \
                   scheme=\"http://hl7.org/fhir/tag/security\"; label=\"break the glass\"";
const WHY: &str = "unconscious patient in the ED, chart needed for treatment";
const OTHER: &str = "/fhir/Patient/pat-2";

/// A gateway whose `fhir` route checks tokens with the shipped policy, `access.break_glass`
/// lines `bg`, and `state:` lines `state`.
fn bg_gateway(
    up: &RecordingUpstream,
    jwks: &JwksServer,
    bg: &[&str],
    state: Vec<String>,
) -> Gateway {
    let mut o = GatewayOpts::new(up.addr());
    // The route inspects one header only: the justification is scanned by break-glass itself,
    // whatever the route's header inspection covers.
    o.inspect_headers = vec!["user-agent".into()];
    o.access = access_lines(jwks, &[]);
    o.access
        .push(format!("  policy: [\"{}\"]", shipped_policy().display()));
    o.access.push("  break_glass:".into());
    o.access.extend(bg.iter().map(|l| format!("    {l}")));
    o.fhir_route_extra = vec![
        "    access:".into(),
        "      require: token".into(),
        "      mode: enforce".into(),
    ];
    o.state = state;
    Gateway::start(o)
}

/// A token of `roles`, bound to `pat-1` with patient scopes (`extra` merged).
fn token(keys: &Keys, roles: &[&str], extra: Value) -> String {
    let mut claims = json!({"scope": "patient/*.rs", "patient": "pat-1", "roles": roles});
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    keys.token("ES256", claims)
}

struct Answer {
    status: u16,
    reason: Option<String>,
    id: String,
    /// Whether the upstream received this request.
    forwarded: bool,
}

/// `GET path` with the token, the BTG `Category` label if `category`, and `justification`.
async fn send(
    gw: &Gateway,
    up: &RecordingUpstream,
    path: &str,
    t: &str,
    category: bool,
    justification: Option<&str>,
) -> Answer {
    let before = up.requests().len();
    let mut r = gw
        .client(false)
        .get(gw.url(path))
        .header(AUDIT, "break-glass-test")
        .header("authorization", format!("Bearer {t}"));
    if category {
        r = r.header("category", BTG);
    }
    if let Some(j) = justification {
        r = r.header("x-break-glass-justification", j);
    }
    let (status, h, body, _) = read_response(r.send().await.expect("request")).await;
    up.quiesce();
    let reason = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|b| b["reason"].as_str().map(String::from));
    if status != 200 {
        check_refusal(status, &h, &body, status, reason.as_deref().unwrap_or("?"));
    }
    Answer {
        status,
        reason,
        id: header(&h, "x-request-id").unwrap_or_default().to_string(),
        forwarded: up.requests().len() > before,
    }
}

/// The records of request `id` (a box's start has two: its CRITICAL record, then the
/// request's), waiting (bounded) until `n` are written.
fn records_of(gw: &Gateway, id: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let r: Vec<Value> = gw
            .audit_records()
            .into_iter()
            .filter(|r| r["request_id"] == id)
            .collect();
        if r.len() >= n {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} records for {id}",
            r.len()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

fn fingerprint(gw: &Gateway, v: &str) -> String {
    phi_gateway::audit::Fingerprinter::new(&gw.fingerprint_secret())
        .fingerprint(&phi_gateway::audit::Redacted::new(v.to_string()))
}

fn break_glass_list(gw: &Gateway, since: Option<&str>) -> (i32, Value, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_phi-gateway"));
    c.args(["audit", "break-glass", "--json", "--dir"])
        .arg(gw.audit_dir())
        .arg("--pubkey")
        .arg(gw.audit_pubkey());
    if let Some(s) = since {
        c.args(["--since", s]);
    }
    let out = c.output().expect("run audit break-glass");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let v = serde_json::from_str(&text).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), v, text)
}

/// The whole model on one gateway: an eligible role with a justification opens a box (the
/// upstream gets the request, a CRITICAL record is written first), a second request inside
/// the box needs no justification (`active`); without the label the policy's denial stands;
/// no or a short justification, PHI in it, an ineligible role, a URL without one patient are
/// refused with their typed reasons and reach nothing; the CLI lists the records of the
/// verified trail without the patient's id.
#[tokio::test]
async fn eligible_role_with_justification_breaks_the_glass_once_per_box() {
    let up = RecordingUpstream::start();
    let keys = Keys::new("bg-model");
    let jwks = JwksServer::start(keys.jwks());
    let gw = bg_gateway(&up, &jwks, &["min_justification_chars: 20"], Vec::new());
    let emergency = token(&keys, &["emergency"], json!({}));

    // Without asking, the binding holds.
    let a = send(&gw, &up, OTHER, &emergency, false, Some(WHY)).await;
    assert_eq!(
        (a.status, a.reason.as_deref()),
        (403, Some("insufficient_scope"))
    );
    assert!(!a.forwarded);

    // Asking without a justification, or with one too short.
    for j in [None, Some("emergency")] {
        let a = send(&gw, &up, OTHER, &emergency, true, j).await;
        assert_eq!(
            (a.status, a.reason.as_deref()),
            (403, Some("break_glass_justification_required")),
            "{j:?}\n{}",
            gw.logs()
        );
        assert!(!a.forwarded, "refused break-glass reached the upstream");
        let r = &records_of(&gw, &a.id, 1)[0];
        assert_eq!(r["access"]["break_glass"]["event"], "refused");
    }

    // PHI in the justification: refused, and the value is nowhere.
    let ssn = "536-22-1234";
    let a = send(
        &gw,
        &up,
        OTHER,
        &emergency,
        true,
        Some(&format!("patient SSN {ssn} needs urgent review")),
    )
    .await;
    assert_eq!(
        (a.status, a.reason.as_deref()),
        (403, Some("break_glass_justification_phi"))
    );
    assert!(!a.forwarded);
    records_of(&gw, &a.id, 1);

    // An ineligible role, however justified.
    let clinician = token(&keys, &["clinician"], json!({}));
    let a = send(&gw, &up, OTHER, &clinician, true, Some(WHY)).await;
    assert_eq!(
        (a.status, a.reason.as_deref()),
        (403, Some("break_glass_not_eligible"))
    );
    assert!(!a.forwarded);

    // No single patient in the URL.
    let a = send(
        &gw,
        &up,
        "/fhir/Observation?code=1234-5",
        &emergency,
        true,
        Some(WHY),
    )
    .await;
    assert_eq!(
        (a.status, a.reason.as_deref()),
        (403, Some("break_glass_patient_required"))
    );
    assert!(!a.forwarded);

    // Eligible and justified: forwarded, CRITICAL record first.
    let first = send(&gw, &up, OTHER, &emergency, true, Some(WHY)).await;
    assert_eq!(first.status, 200, "{:?}\n{}", first.reason, gw.logs());
    assert!(first.forwarded);
    let recs = records_of(&gw, &first.id, 2);
    let start = &recs[0]["access"]["break_glass"];
    assert_eq!(start["event"], "started", "{:#}", recs[0]);
    assert_eq!(start["severity"], "critical");
    assert_eq!(start["justification"], WHY);
    assert_eq!(start["trigger"], "category");
    assert_eq!(start["patient"], fingerprint(&gw, "Patient/pat-2"));
    assert!(start["expires_at"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));
    assert_eq!(recs[0]["user_id"], "clinician-7");
    assert!(
        recs[0]["seq"].as_u64() < recs[1]["seq"].as_u64(),
        "the start is recorded before the request's own record"
    );
    let access = &recs[1]["access"];
    assert_eq!(access["reason"], "break_glass");
    assert_eq!(access["break_glass"]["event"], "access");
    assert_eq!(access["break_glass"]["time_box"], "started");
    assert_eq!(access["break_glass"]["expires_at"], start["expires_at"]);
    assert_eq!(access["break_glass"]["overridden"], start["overridden"]);

    // Inside the box: no justification needed, same expiry.
    let second = send(&gw, &up, OTHER, &emergency, true, None).await;
    assert_eq!(second.status, 200, "{:?}\n{}", second.reason, gw.logs());
    assert!(second.forwarded);
    let recs = records_of(&gw, &second.id, 1);
    assert_eq!(recs.len(), 1, "an open box writes no new start record");
    assert_eq!(recs[0]["access"]["break_glass"]["time_box"], "active");
    assert_eq!(
        recs[0]["access"]["break_glass"]["expires_at"],
        start["expires_at"]
    );

    // The box is per patient: another patient needs its own justification.
    let a = send(&gw, &up, "/fhir/Patient/pat-3", &emergency, true, None).await;
    assert_eq!(
        a.reason.as_deref(),
        Some("break_glass_justification_required")
    );

    // The emergency purpose of use in the token asks too.
    let emer = token(
        &keys,
        &["emergency"],
        json!({"purpose_of_use": "EMER", "sub": "ed-2"}),
    );
    let a = send(&gw, &up, OTHER, &emer, false, Some(WHY)).await;
    assert_eq!(a.status, 200, "{:?}\n{}", a.reason, gw.logs());
    assert_eq!(
        records_of(&gw, &a.id, 2)[0]["access"]["break_glass"]["trigger"],
        "purpose_of_use"
    );

    let m = |e: &str| gw.metric("phi_gateway_break_glass_total", &[("event", e)]);
    assert_eq!((m("started"), m("access"), m("refused")), (2.0, 3.0, 6.0));

    // Nothing identifying in the trail (resource ids are fingerprints on this route), and the
    // refused justification's SSN nowhere.
    let trail = serde_json::to_string(&gw.audit_records()).unwrap();
    for leak in [ssn, "pat-2", "pat-3"] {
        assert!(!trail.contains(leak), "{leak} in the audit trail");
    }
    assert!(!gw.logs().contains(ssn), "the SSN in the logs");

    // The review list: the verified trail's break-glass records, in order.
    let (code, v, text) = break_glass_list(&gw, None);
    assert_eq!(code, 0, "{text}");
    assert_eq!(v["report"]["valid"], true);
    let events: Vec<&str> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        [
            "refused", "refused", "refused", "refused", "refused", "started", "access", "access",
            "refused", "started", "access"
        ],
        "{text}"
    );
    let started = &v["entries"][5];
    assert_eq!(started["severity"], "critical");
    assert_eq!(started["justification"], WHY);
    assert_eq!(started["user_id"], "clinician-7");
    assert!(!text.contains("pat-2") && !text.contains(ssn), "{text}");
    let (code, v, text) = break_glass_list(&gw, Some("2999-01-01T00:00:00Z"));
    assert_eq!(code, 0, "{text}");
    assert_eq!(v["entries"], json!([]), "--since filters");

    // An edited trail is not listed: a reviewer never signs off on records that do not verify.
    let seg = std::fs::read_dir(gw.audit_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .find(|p| std::fs::read_to_string(p).unwrap().contains(WHY))
        .expect("the segment with the start record");
    let text = std::fs::read_to_string(&seg).unwrap();
    std::fs::write(
        &seg,
        text.replace(WHY, "routine chart review, all fine here"),
    )
    .unwrap();
    let (code, _, out) = break_glass_list(&gw, None);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.trim().is_empty(),
        "nothing listed from an edited trail: {out}"
    );
}

/// After the box ends, the next request needs a new justification, which opens a new box
/// with a new CRITICAL record.
#[tokio::test]
async fn after_the_box_a_new_justification_is_needed() {
    let up = RecordingUpstream::start();
    let keys = Keys::new("bg-expiry");
    let jwks = JwksServer::start(keys.jwks());
    let gw = bg_gateway(&up, &jwks, &["duration_seconds: 2"], Vec::new());
    let t = token(&keys, &["emergency"], json!({}));
    let first = send(&gw, &up, OTHER, &t, true, Some(WHY)).await;
    assert_eq!(first.status, 200, "{:?}\n{}", first.reason, gw.logs());

    // Poll until the box is over (bounded): each answer is either an access under the box
    // or the refusal that asks for a new justification.
    let deadline = Instant::now() + Duration::from_secs(20);
    let refused = loop {
        let a = send(&gw, &up, OTHER, &t, true, None).await;
        match (a.status, a.reason.as_deref()) {
            (200, _) => assert!(a.forwarded),
            (403, Some("break_glass_justification_required")) => break a,
            other => panic!("unexpected {other:?}\n{}", gw.logs()),
        }
        assert!(Instant::now() < deadline, "the 2 s box never ended");
        thread::sleep(Duration::from_millis(200));
    };
    assert!(!refused.forwarded);
    let again = send(&gw, &up, OTHER, &t, true, Some(WHY)).await;
    assert_eq!(again.status, 200, "{:?}\n{}", again.reason, gw.logs());
    let recs = records_of(&gw, &again.id, 2);
    assert_eq!(recs[0]["access"]["break_glass"]["event"], "started");
    assert_eq!(recs[1]["access"]["break_glass"]["time_box"], "started");
    let starts = gw
        .audit_records()
        .iter()
        .filter(|r| r["access"]["break_glass"]["event"] == "started")
        .count();
    assert_eq!(starts, 2);
}

/// Two gateways, one Redis: a box opened on one is open on the other (no justification
/// needed there), with the same expiry; the Redis key names neither the user nor the patient.
#[tokio::test]
async fn two_gateways_share_the_box_through_redis() {
    let redis = RedisServer::start();
    let (_shared, key) = fleet_key();
    let up = RecordingUpstream::start();
    let keys = Keys::new("bg-fleet");
    let jwks = JwksServer::start(keys.jwks());
    let gw1 = bg_gateway(&up, &jwks, &[], redis_state(&redis, &key));
    let gw2 = bg_gateway(&up, &jwks, &[], redis_state(&redis, &key));
    let t = token(&keys, &["emergency"], json!({}));

    // Gateway 2 has seen nothing yet: it needs a justification.
    let a = send(&gw2, &up, OTHER, &t, true, None).await;
    assert_eq!(
        a.reason.as_deref(),
        Some("break_glass_justification_required")
    );
    let first = send(&gw1, &up, OTHER, &t, true, Some(WHY)).await;
    assert_eq!(first.status, 200, "{:?}\n{}", first.reason, gw1.logs());
    let start = records_of(&gw1, &first.id, 2)[0]["access"]["break_glass"].clone();
    let other = send(&gw2, &up, OTHER, &t, true, None).await;
    assert_eq!(other.status, 200, "{:?}\n{}", other.reason, gw2.logs());
    assert!(other.forwarded);
    let rec = &records_of(&gw2, &other.id, 1)[0]["access"]["break_glass"];
    assert_eq!(rec["time_box"], "active");
    assert_eq!(rec["expires_at"], start["expires_at"]);
    let boxes: Vec<String> = redis
        .keys()
        .into_iter()
        .filter(|k| k.ends_with(":bg"))
        .collect();
    assert_eq!(boxes.len(), 1, "one box: {boxes:?}");
    for leak in ["pat-2", "clinician-7"] {
        assert!(!boxes[0].contains(leak), "{leak} in a Redis key: {boxes:?}");
    }
}

/// Break-glass fails closed when the trail cannot take its record, even on a route that
/// fails open for ordinary requests.
#[tokio::test]
async fn failing_audit_trail_refuses_break_glass_even_when_the_route_fails_open() {
    let up = RecordingUpstream::start();
    let keys = Keys::new("bg-audit");
    let jwks = JwksServer::start(keys.jwks());
    let mut o = GatewayOpts::new(up.addr());
    o.audit_extra = vec!["  segment_max_bytes: 1024".into()];
    o.access = access_lines(&jwks, &[]);
    o.access
        .push(format!("  policy: [\"{}\"]", shipped_policy().display()));
    o.access.push("  break_glass:".into());
    o.access.push("    enabled: true".into());
    o.fhir_route_extra = vec![
        "    access:".into(),
        "      require: token".into(),
        "      mode: enforce".into(),
        "    audit:".into(),
        "      fail_closed: false".into(),
    ];
    let gw = Gateway::start(o);
    let t = token(&keys, &["emergency"], json!({}));
    let own = "/fhir/Patient/pat-1";

    // Take the audit directory away, then let ordinary (fail-open) requests run until the
    // sink reports the failure.
    std::fs::remove_dir_all(gw.audit_dir()).unwrap();
    std::fs::write(gw.audit_dir(), b"not a directory").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let a = send(&gw, &up, own, &t, false, None).await;
        assert_eq!(a.status, 200, "the route fails open: {:?}", a.reason);
        if http_get(gw.files.admin_port, "/readyz").is_some_and(|(c, _)| c == 503) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the sink never failed\n{}",
            gw.logs()
        );
        thread::sleep(Duration::from_millis(50));
    }

    let a = send(&gw, &up, OTHER, &t, true, Some(WHY)).await;
    assert_eq!(
        (a.status, a.reason.as_deref()),
        (503, Some("audit_unavailable")),
        "{}",
        gw.logs()
    );
    assert!(
        !a.forwarded,
        "break-glass without a record reached the upstream"
    );
    assert_eq!(
        gw.metric("phi_gateway_break_glass_total", &[("event", "refused")]),
        1.0
    );
    assert_eq!(
        gw.metric("phi_gateway_break_glass_total", &[("event", "started")]),
        0.0
    );
    // Ordinary requests still pass (fail open): only break-glass fails closed.
    assert_eq!(send(&gw, &up, own, &t, false, None).await.status, 200);
}
