//! Access-anomaly detection and containment (issue 12 §1) through the real binary: a burst of
//! patient reads trips an alert (monitor: a CRITICAL incident record, the metric) or a
//! suspension (enforce: 403 `principal_suspended`, others unaffected, listed and reinstated
//! through the admin listener behind its token); anonymous traffic counted per client
//! address; Redis stopped (counting fails open, `/readyz` degraded, known suspensions stay,
//! a fail-closed route refuses); two gateways sharing one `redis-server` (one alert for a
//! burst split across both, a suspension on one enforced by the other within a second).
//! Windows of a minute with a low cold-start ceiling, so a test trips the detector at once.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::common::*;
use crate::sessions::{fleet_key, redis_state};

/// The header the tests' identity proxy would set (`audit.user_id.source: header`).
const USER: &str = "x-authenticated-user";
/// The admin token the tests configure.
const TOKEN: &str = "test-admin-token-0123456789abcdef";
/// The cold-start ceiling of `patient_requests` in these tests.
const CEILING: usize = 8;

/// `defence:` lines: `mode`, a 60 s window of 6 sub-windows, the ceiling above, and
/// suspension `when` (`first_trigger` here, so one burst suspends) and extra lines.
fn defence(mode: &str, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "  anomaly:".to_string(),
        format!("    mode: {mode}"),
        "    window_seconds: 60".into(),
        "    sub_windows: 6".into(),
        "    signals:".into(),
        "      patient_requests:".into(),
        "        floor: 4".into(),
        format!("        cold_start_ceiling: {CEILING}"),
        "    suspension:".into(),
        "      when: [first_trigger]".into(),
        "      ttl_seconds: 120".into(),
    ]
    .into();
    v.extend(extra.iter().map(|l| l.to_string()));
    v
}

/// A gateway with the detector (`defence` lines), users named by the trusted header unless
/// `anonymous`, the admin token file, and `state` lines.
fn gateway(
    up: &RecordingUpstream,
    defence: Vec<String>,
    anonymous: bool,
    state: Vec<String>,
) -> Gateway {
    let mut o = GatewayOpts::new(up.addr());
    o.defence = defence;
    o.state = state;
    if !anonymous {
        o.audit_extra = vec![
            "  user_id:".into(),
            "    source: header".into(),
            format!("    header: {USER}"),
        ];
    }
    o.admin_extra = vec!["  token_file: admin.token".into()];
    // The token file must exist before the gateway loads its config.
    let files = GatewayFiles::new(&o);
    std::fs::write(files.dir.path().join("admin.token"), format!("{TOKEN}\n")).unwrap();
    Gateway::start_files(files)
}

/// GET `path` as `user` (none: no identity header). Returns status, body, request id.
async fn read(gw: &Gateway, path: &str, user: Option<&str>) -> (u16, String, String) {
    let mut r = gw
        .client(false)
        .get(gw.url(path))
        .header(AUDIT, "anomaly-test");
    if let Some(u) = user {
        r = r.header(USER, u);
    }
    let (s, h, b, _) = read_response(r.send().await.expect("request")).await;
    let id = h
        .iter()
        .find(|(k, _)| k == "x-request-id")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    (s, b, id)
}

/// `n` reads of distinct patients by `user` on `gws` in turn; all must be answered 200.
async fn burst(gws: &[&Gateway], user: Option<&str>, n: usize) {
    for i in 0..n {
        let gw = gws[i % gws.len()];
        let (s, b, _) = read(gw, &format!("/fhir/Patient/pat-{i}"), user).await;
        assert_eq!(s, 200, "read {i}: {b}\n{}", gw.logs());
    }
}

/// An admin request with an optional bearer token: (status, body).
fn admin(gw: &Gateway, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let addr = SocketAddr::from(([127, 0, 0, 1], gw.files.admin_port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).expect("admin");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap();
    (status, body)
}

/// The sum of `phi_gateway_anomalies_total` over `gws` for `action`.
fn anomalies(gws: &[&Gateway], action: &str) -> f64 {
    gws.iter()
        .map(|g| {
            g.metric(
                "phi_gateway_anomalies_total",
                &[("signal", "patient_requests"), ("action", action)],
            )
        })
        .sum()
}

/// Waits (bounded) until `f` holds.
fn wait_for(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !f() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {TIMEOUT:?}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// The incident records in `gw`'s trail.
fn incidents(gw: &Gateway) -> Vec<Value> {
    gw.audit_records()
        .into_iter()
        .filter(|r| r["action_type"] == "incident")
        .collect()
}

/// Waits until the current minute has at least 20 s left, so a burst stays in one window.
fn early_in_the_window() {
    loop {
        let s = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        if s % 60 < 40 {
            return;
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// Monitor: a burst over the ceiling raises one CRITICAL incident (audit record, metric) and
/// every request still goes through; the record holds the principal's key and evidence, no
/// user name or patient id, and the trail verifies.
#[tokio::test]
async fn a_burst_raises_one_critical_incident_in_monitor_mode() {
    early_in_the_window();
    let up = RecordingUpstream::start();
    let gw = gateway(&up, defence("monitor", &[]), false, Vec::new());
    burst(&[&gw], Some("dr-alice"), CEILING - 1).await;
    thread::sleep(Duration::from_millis(300));
    assert_eq!(anomalies(&[&gw], "alert"), 0.0, "alert below the ceiling");
    burst(&[&gw], Some("dr-alice"), 2 * CEILING).await;
    wait_for("the alert", || anomalies(&[&gw], "alert") == 1.0);
    burst(&[&gw], Some("dr-bob"), 3).await;
    thread::sleep(Duration::from_millis(300));
    assert_eq!(
        anomalies(&[&gw], "alert"),
        1.0,
        "one incident per principal and window"
    );
    assert_eq!(anomalies(&[&gw], "suspend"), 0.0);
    let records = incidents(&gw);
    assert_eq!(records.len(), 1, "{records:?}");
    let r = &records[0];
    let i = &r["incident"];
    assert_eq!(i["severity"], "critical");
    assert_eq!(i["type"], "phi_gateway.access_anomaly");
    assert_eq!(i["signal"], "patient_requests");
    assert_eq!(i["action"], "alert");
    assert_eq!(i["principal_kind"], "user");
    assert_eq!(i["signals"][0]["basis"], "cold_start");
    assert_eq!(i["signals"][0]["observed"], CEILING as u64);
    assert_eq!(r["decision"], "alert");
    let key = i["principal"].as_str().unwrap();
    assert!(
        key.len() == 32 && key.bytes().all(|b| b.is_ascii_hexdigit()),
        "{key}"
    );
    assert_eq!(r["user_id"], format!("principal:{key}"));
    let refs = i["audit_refs"].as_array().unwrap();
    assert!(!refs.is_empty());
    let all = gw.audit_records();
    for id in refs {
        assert!(
            all.iter().any(|a| a["request_id"] == *id),
            "{id} is no audit record"
        );
    }
    let text = r.to_string();
    assert!(
        !text.contains("dr-alice") && !text.contains("pat-"),
        "{text}"
    );
    assert!(gw.logs().contains("access anomaly"));
    let (code, report) = audit_verify(&gw.audit_dir(), &gw.audit_pubkey());
    assert_eq!(code, 0, "{report}");
}

/// Enforce: the burst suspends its principal (403 `principal_suspended` with a request id,
/// nothing reaches the upstream) while another user goes on; the admin listing needs the
/// token; reinstating restores access at once.
#[tokio::test]
async fn enforce_suspends_the_principal_and_reinstate_restores_it() {
    early_in_the_window();
    let up = RecordingUpstream::start();
    let gw = gateway(&up, defence("enforce", &[]), false, Vec::new());
    burst(&[&gw], Some("dr-mallory"), CEILING).await;
    wait_for("the suspension", || anomalies(&[&gw], "suspend") == 1.0);
    let before = up.requests().len();
    let (s, b, id) = read(&gw, "/fhir/Patient/pat-1", Some("dr-mallory")).await;
    assert_eq!(s, 403, "{b}");
    let body: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(body["reason"], "principal_suspended");
    assert_eq!(body["request_id"], id.as_str());
    assert_eq!(
        up.requests().len(),
        before,
        "a suspended request reached the upstream"
    );
    let (s, _, _) = read(&gw, "/fhir/Patient/pat-1", Some("dr-carol")).await;
    assert_eq!(s, 200, "another principal was refused");
    // The admin endpoints: no token, a wrong one, the right one.
    assert_eq!(admin(&gw, "GET", "/principals/suspended", None).0, 401);
    assert_eq!(
        admin(&gw, "GET", "/principals/suspended", Some("wrong")).0,
        401
    );
    let (code, list) = admin(&gw, "GET", "/principals/suspended", Some(TOKEN));
    assert_eq!(code, 200, "{list}");
    let list: Value = serde_json::from_str(&list).unwrap();
    let suspended = list["suspended"].as_array().unwrap();
    assert_eq!(suspended.len(), 1, "{list}");
    let key = suspended[0]["principal"].as_str().unwrap().to_string();
    assert_eq!(incidents(&gw)[0]["incident"]["principal"], key.as_str());
    assert!(!list.to_string().contains("mallory"));
    let path = format!("/principals/{key}/reinstate");
    assert_eq!(admin(&gw, "POST", &path, Some("wrong")).0, 401);
    assert_eq!(
        admin(&gw, "POST", "/principals/Nope/reinstate", Some(TOKEN)).0,
        400
    );
    let (code, body) = admin(&gw, "POST", &path, Some(TOKEN));
    assert_eq!(code, 200, "{body}");
    let (s, b, _) = read(&gw, "/fhir/Patient/pat-1", Some("dr-mallory")).await;
    assert_eq!(s, 200, "still refused after reinstate: {b}");
    assert_eq!(
        admin(&gw, "POST", &path, Some(TOKEN)).0,
        404,
        "not suspended any more"
    );
    let audit = gw.audit_records();
    let refused = audit_record_of(&audit, &id);
    assert_eq!(refused["reason"], "principal_suspended");
}

/// Without `admin.token_file` the principal endpoints are refused, saying why.
#[tokio::test]
async fn without_an_admin_token_the_principal_endpoints_are_refused() {
    let up = RecordingUpstream::start();
    let mut o = GatewayOpts::new(up.addr());
    o.defence = defence("enforce", &[]);
    let gw = Gateway::start(o);
    let (code, body) = admin(&gw, "GET", "/principals/suspended", Some(TOKEN));
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("admin.token_file"), "{body}");
}

/// Anonymous traffic is counted per client address, and the incident says so.
#[tokio::test]
async fn anonymous_traffic_is_counted_per_client_address() {
    early_in_the_window();
    let up = RecordingUpstream::start();
    let gw = gateway(&up, defence("monitor", &[]), true, Vec::new());
    burst(&[&gw], None, CEILING).await;
    wait_for("the alert", || anomalies(&[&gw], "alert") == 1.0);
    wait_for("the incident record", || !incidents(&gw).is_empty());
    let i = &incidents(&gw)[0]["incident"];
    assert_eq!(i["principal_kind"], "client_address");
    assert!(!i.to_string().contains("127.0.0.1"), "{i}");
}

fn readyz(gw: &Gateway) -> Value {
    let (_, body) = http_get(gw.files.admin_port, "/readyz").expect("readyz");
    serde_json::from_str(&body).unwrap()
}

/// Redis stopped: counting fails open (metric, `/readyz` degraded) and requests go on, a
/// suspension made before stays enforced, and a route in `fail_closed_routes` refuses with
/// 503 `anomaly_detection_unavailable`.
#[tokio::test]
async fn with_redis_down_counting_fails_open_and_known_suspensions_stay() {
    early_in_the_window();
    let mut redis = RedisServer::start();
    let (_shared, key) = fleet_key();
    let up = RecordingUpstream::start();
    let gw = gateway(
        &up,
        defence("enforce", &["    fail_closed_routes: [monitor]"]),
        false,
        redis_state(&redis, &key),
    );
    burst(&[&gw], Some("dr-eve"), CEILING).await;
    wait_for("the suspension", || anomalies(&[&gw], "suspend") == 1.0);
    assert!(redis.keys().iter().any(|k| k.contains("{set:suspended}")));
    assert!(
        redis
            .keys()
            .iter()
            .all(|k| !k.contains("dr-eve") && !k.contains("pat-")),
        "{:?}",
        redis.keys()
    );
    let (s, _, _) = read(&gw, "/monitor/Patient/pat-1", Some("dr-frank")).await;
    assert_eq!(s, 200, "the fail-closed route refused while Redis is up");
    redis.stop();
    wait_for("readyz degraded", || readyz(&gw)["status"] == "degraded");
    assert_eq!(readyz(&gw)["anomaly"]["counting"], "failing_open");
    let (s, b, _) = read(&gw, "/fhir/Patient/pat-1", Some("dr-eve")).await;
    assert_eq!(s, 403, "a known suspension was lifted by the outage: {b}");
    let (s, b, _) = read(&gw, "/fhir/Patient/pat-2", Some("dr-frank")).await;
    assert_eq!(s, 200, "counting did not fail open: {b}");
    wait_for("failed_open counted", || {
        gw.metric(
            "phi_gateway_anomaly_observations_total",
            &[("result", "failed_open")],
        ) >= 1.0
    });
    let (s, b, _) = read(&gw, "/monitor/Patient/pat-1", Some("dr-frank")).await;
    assert_eq!(s, 503, "{b}");
    assert!(b.contains("anomaly_detection_unavailable"), "{b}");
}

/// Two gateways, one Redis: a burst split across both raises exactly one incident, and the
/// suspension it makes on one is enforced by the other within a second.
#[tokio::test]
async fn a_fleet_shares_counts_and_suspensions() {
    early_in_the_window();
    let redis = RedisServer::start();
    let (_shared, key) = fleet_key();
    let up = RecordingUpstream::start();
    let a = gateway(
        &up,
        defence("enforce", &[]),
        false,
        redis_state(&redis, &key),
    );
    let b = gateway(
        &up,
        defence("enforce", &[]),
        false,
        redis_state(&redis, &key),
    );
    // Each sees only half the ceiling: only the shared count can trip it.
    burst(&[&a, &b], Some("dr-trent"), CEILING).await;
    wait_for("one suspension in the fleet", || {
        anomalies(&[&a, &b], "suspend") == 1.0
    });
    let suspended_at = Instant::now();
    thread::sleep(Duration::from_millis(500));
    assert_eq!(
        anomalies(&[&a, &b], "suspend") + anomalies(&[&a, &b], "alert"),
        1.0
    );
    assert_eq!(incidents(&a).len() + incidents(&b).len(), 1);
    // Whichever raised it, both refuse within a second of it.
    for gw in [&a, &b] {
        loop {
            let (s, _, _) = read(gw, "/fhir/Patient/pat-x", Some("dr-trent")).await;
            if s == 403 {
                break;
            }
            assert!(
                suspended_at.elapsed() < Duration::from_secs(2),
                "the other gateway did not enforce the suspension within a second (+ slack)"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
    let (s, _, _) = read(&b, "/fhir/Patient/pat-1", Some("dr-walter")).await;
    assert_eq!(s, 200);
}

/// With bearer tokens the principal is the token's user (issuer and `sub`), not the token:
/// a fresh token (another `jti`, another session) of a suspended user is refused too, a
/// spoofed identity header does not get around it, and another user goes on.
#[tokio::test]
async fn the_principal_of_a_token_is_its_user_not_the_token() {
    use crate::identity::{access_lines, JwksServer, Keys};
    early_in_the_window();
    let up = RecordingUpstream::start();
    let keys = Keys::new("anomaly");
    let jwks = JwksServer::start(keys.jwks());
    let mut o = GatewayOpts::new(up.addr());
    o.access = access_lines(&jwks, &[]);
    o.fhir_route_extra = vec![
        "    access:".into(),
        "      require: token".into(),
        "      mode: enforce".into(),
    ];
    o.defence = defence("enforce", &[]);
    o.audit_extra = vec![
        "  user_id:".into(),
        "    source: header".into(),
        format!("    header: {USER}"),
    ];
    let gw = Gateway::start(o);
    let token = |sub: &str, n: u32| {
        keys.token(
            "ES256",
            serde_json::json!({"sub": sub, "jti": format!("jti-{sub}-{n}"), "sid": format!("sid-{sub}-{n}"),
                               "scope": "user/*.rs"}),
        )
    };
    let get = |t: String, path: String, spoof: bool| {
        let mut r = gw
            .client(false)
            .get(gw.url(&path))
            .header(AUDIT, "anomaly-token")
            .header("authorization", format!("Bearer {t}"));
        if spoof {
            r = r.header(USER, "someone-else");
        }
        async move { read_response(r.send().await.expect("request")).await.0 }
    };
    let t1 = token("dr-token-burst", 1);
    for i in 0..CEILING {
        assert_eq!(
            get(t1.clone(), format!("/fhir/Patient/pat-{i}"), false).await,
            200
        );
    }
    wait_for("the suspension", || anomalies(&[&gw], "suspend") == 1.0);
    let fresh = token("dr-token-burst", 2);
    assert_eq!(
        get(fresh.clone(), "/fhir/Patient/pat-1".into(), false).await,
        403
    );
    assert_eq!(
        get(fresh, "/fhir/Patient/pat-1".into(), true).await,
        403,
        "a spoofed header escaped"
    );
    let other = token("dr-token-other", 1);
    assert_eq!(get(other, "/fhir/Patient/pat-1".into(), false).await, 200);
    wait_for("the incident record", || !incidents(&gw).is_empty());
    let i = &incidents(&gw)[0]["incident"];
    assert_eq!(i["principal_kind"], "user");
    assert!(!i.to_string().contains("dr-token"), "{i}");
}

/// The binary delivers each incident to `defence.webhook`: one signed generic alert whose id
/// is the incident record's, naming the principal's key and no user or patient.
#[tokio::test]
async fn an_incident_reaches_the_webhook_receiver_signed() {
    use crate::webhook::{secret_in, Receiver};
    use phi_gateway::defence::webhook::{read_secret, verify, SeenDeliveries};
    early_in_the_window();
    let rx = Receiver::start(false, &[]);
    let secret = secret_in(rx.dir.path());
    let up = RecordingUpstream::start();
    let mut lines = defence("monitor", &[]);
    lines.extend([
        "  webhook:".to_string(),
        "    format: generic".into(),
        format!("    url: {}", rx.url()),
        format!("    secret_file: \"{}\"", secret.display()),
    ]);
    let gw = gateway(&up, lines, false, Vec::new());
    burst(&[&gw], Some("dr-hook"), CEILING + 3).await;
    wait_for("the delivery", || !rx.received().is_empty());
    wait_for("the delivered metric", || {
        gw.metric(
            "phi_gateway_alert_deliveries_total",
            &[("format", "generic"), ("result", "delivered")],
        ) == 1.0
    });
    thread::sleep(Duration::from_millis(300));
    let got = rx.received();
    assert_eq!(got.len(), 1, "one incident, one alert");
    let body: Value = serde_json::from_slice(&got[0].body).unwrap();
    let record = &incidents(&gw)[0]["incident"];
    assert_eq!(body["id"], record["id"]);
    assert_eq!(body["principal"], record["principal"]);
    assert_eq!(body["signal"], "patient_requests");
    assert_eq!(body["action"], "alert");
    let text = body.to_string();
    assert!(
        !text.contains("dr-hook") && !text.contains("pat-"),
        "{text}"
    );
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let key = read_secret(&secret).unwrap();
    verify(
        &key,
        &got[0].headers,
        &got[0].body,
        now,
        &mut SeenDeliveries::new(16),
    )
    .expect("the alert's signature verifies");
}

/// One instance without Redis: the detector's memory stays within `state.max_entries` however
/// many principals it counts, and every request is still served.
#[tokio::test]
async fn the_memory_store_stays_bounded_with_many_principals() {
    let up = RecordingUpstream::start();
    let gw = gateway(
        &up,
        defence("monitor", &[]),
        false,
        vec!["  max_entries: 300".into()],
    );
    let c = gw.client(false);
    for i in 0..1_500 {
        let r = c
            .get(gw.url(&format!("/fhir/Patient/pat-{i}")))
            .header(AUDIT, "anomaly-bound")
            .header(USER, format!("user-{i}"))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status().as_u16(), 200, "request {i}");
    }
    wait_for("every request counted", || {
        gw.metric(
            "phi_gateway_anomaly_observations_total",
            &[("result", "counted")],
        ) >= 1_500.0
    });
    let entries = gw.metric("phi_gateway_anomaly_memory_entries", &[]);
    assert!(entries > 0.0 && entries <= 300.0, "{entries} keys held");
    assert_eq!(
        anomalies(&[&gw], "alert"),
        0.0,
        "1,500 principals of one read each"
    );
}

/// `records_returned`: what the answers carried, counted as they stream. Searches whose
/// Bundles carry 30 entries each trip the signal after two (ceiling 50), while two requests
/// stay far below `patient_requests`' ceiling; a gzip answer and a single resource count
/// nothing; the incident names the signal and the records observed, no patient.
#[tokio::test]
async fn records_returned_counts_the_entries_answers_carry() {
    early_in_the_window();
    let bundle = |n: usize| {
        let entries: Vec<String> = (0..n)
            .map(|i| format!(r#"{{"fullUrl":"https://ehr.example/fhir/Observation/o{i}","resource":{{"resourceType":"Observation","id":"o{i}","subject":{{"reference":"Patient/pat-{i}"}}}}}}"#))
            .collect();
        format!(
            r#"{{"resourceType":"Bundle","type":"searchset","entry":[{}]}}"#,
            entries.join(",")
        )
    };
    let body = bundle(30);
    let up = RecordingUpstream::start_answering(move |r| {
        let fhir = "application/fhir+json";
        let line = r.request_line();
        if line.contains("_format=gz") {
            use std::io::Write as _;
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(body.as_bytes()).unwrap();
            let gz = e.finish().unwrap();
            crate::response_check::response(
                "200 OK",
                fhir,
                "content-encoding: gzip\r\n",
                &gz,
                false,
            )
        } else if line.starts_with("GET /fhir/Observation?") {
            crate::response_check::response("200 OK", fhir, "", body.as_bytes(), true)
        } else {
            crate::response_check::response(
                "200 OK",
                fhir,
                "",
                br#"{"resourceType":"Patient","id":"pat-1"}"#,
                false,
            )
        }
    });
    let lines: Vec<String> = [
        "  anomaly:",
        "    mode: monitor",
        "    window_seconds: 60",
        "    sub_windows: 6",
        "    signals:",
        "      patient_requests:",
        "        floor: 100",
        "        cold_start_ceiling: 1000",
        "      records_returned:",
        "        floor: 10",
        "        cold_start_ceiling: 50",
    ]
    .iter()
    .map(|l| l.to_string())
    .collect();
    let gw = gateway(&up, lines, false, Vec::new());
    let records = |gw: &Gateway| {
        gw.metric(
            "phi_gateway_anomalies_total",
            &[("signal", "records_returned"), ("action", "alert")],
        )
    };
    // Compressed (not counted) and a single resource (no entries): nothing moves.
    for path in ["/fhir/Observation?code=x&_format=gz", "/fhir/Patient/pat-1"] {
        for _ in 0..3 {
            let (s, b, _) = read(&gw, path, Some("dr-carol")).await;
            assert_eq!(s, 200, "{b}");
        }
    }
    // One search: 30 records, under the ceiling.
    let (s, b, _) = read(&gw, "/fhir/Observation?code=x", Some("dr-carol")).await;
    assert_eq!(s, 200);
    assert_eq!(b.matches("fullUrl").count(), 30, "released unchanged");
    thread::sleep(Duration::from_millis(300));
    assert_eq!(records(&gw), 0.0, "30 records are under the ceiling of 50");
    // The second brings the window to 60: one incident for records_returned.
    let (s, _, _) = read(&gw, "/fhir/Observation?code=x", Some("dr-carol")).await;
    assert_eq!(s, 200);
    wait_for("the records_returned alert", || records(&gw) == 1.0);
    assert_eq!(
        anomalies(&[&gw], "alert"),
        0.0,
        "eight requests are no burst"
    );
    let found = incidents(&gw);
    assert_eq!(found.len(), 1, "{found:?}");
    let i = &found[0]["incident"];
    assert_eq!(i["signal"], "records_returned");
    assert_eq!(i["signals"][0]["observed"], 60, "{i}");
    let text = found[0].to_string();
    assert!(
        !text.contains("dr-carol") && !text.contains("pat-"),
        "{text}"
    );
}
