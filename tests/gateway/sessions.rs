//! Automatic logoff (issue 11 §5) through the real binary: idle and absolute session limits
//! on one gateway (memory), the same on two gateways sharing one real `redis-server`, and
//! Redis stopped mid-test. Real keys and the HTTPS JWKS server of tests/gateway/identity.rs;
//! idle windows of a few seconds, every wait bounded.

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;
use crate::identity::{access_lines, get, header, now, record_of, JwksServer, Keys};

/// A gateway whose `fhir` route requires a token, with `access.sessions` lines `sessions`
/// and `state:` lines `state`.
fn session_gateway(
    up: &RecordingUpstream,
    jwks: &JwksServer,
    sessions: &[&str],
    state: Vec<String>,
) -> Gateway {
    let mut o = GatewayOpts::new(up.addr());
    o.access = access_lines(jwks, &[]);
    o.access.push("  sessions:".into());
    o.access.extend(sessions.iter().map(|l| format!("    {l}")));
    o.state = state;
    o.fhir_route_extra = vec![
        "    access:".into(),
        "      require: token".into(),
        "      mode: enforce".into(),
    ];
    Gateway::start(o)
}

/// `state:` lines for `redis`, with the fleet's shared key file.
pub(crate) fn redis_state(redis: &RedisServer, key: &Path) -> Vec<String> {
    vec![
        "  backend: redis".into(),
        format!("  url: {}", redis.url()),
        // Generous for a loaded test machine: a slower answer would be served from the local
        // copy, and these tests prove the shared store.
        "  timeout_ms: 500".into(),
        format!("  key_file: \"{}\"", key.display()),
    ]
}

/// The state key file every gateway of a fleet shares (the directory lives as long as the
/// returned guard).
pub(crate) fn fleet_key() -> (tempfile::TempDir, std::path::PathBuf) {
    let shared = tempfile::tempdir().unwrap();
    let key = shared.path().join("state.key");
    std::fs::write(
        &key,
        b"fleet secret: 32 bytes or more, the same on every gateway",
    )
    .unwrap();
    (shared, key)
}

/// A token of session `sid` issued now (`extra` merged; null removes a claim).
fn token(keys: &Keys, sid: Option<&str>, extra: Value) -> String {
    let mut claims = json!({"iat": now(), "sid": sid});
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    keys.token("ES256", claims)
}

/// Sends a request; asserts the status, and for a 401 the reason, the challenge and that the
/// upstream received nothing. Returns the request id.
async fn expect(
    gw: &Gateway,
    up: &RecordingUpstream,
    t: &str,
    status: u16,
    reason: &str,
) -> String {
    let before = up.requests().len();
    let (s, h, b) = get(gw, "/fhir/Observation?code=1234-5", Some(t)).await;
    assert_eq!(s, status, "{reason}: {b}\n{}", gw.logs());
    if status == 401 {
        let body: Value = serde_json::from_str(&b).unwrap();
        assert_eq!(body["reason"], reason, "{b}");
        assert_eq!(
            header(&h, "www-authenticate"),
            Some("Bearer realm=\"phi-gateway\", error=\"invalid_token\"")
        );
        assert_eq!(
            up.requests().len(),
            before,
            "a logged-off request reached the upstream"
        );
        assert!(!b.contains(t) && !b.contains("idle-"), "{b}");
    }
    header(&h, "x-request-id").unwrap().to_string()
}

fn readyz(gw: &Gateway) -> (u16, Value) {
    let (code, body) = http_get(gw.files.admin_port, "/readyz").expect("readyz");
    (code, serde_json::from_str(&body).unwrap())
}

/// Idle expiry: requests inside the window keep a session alive past it; a gap longer than
/// the window ends it, for every later token of that session; other sessions are untouched;
/// a token first used longer than the window after it was issued is refused.
#[tokio::test]
async fn idle_session_is_logged_off_and_activity_keeps_it_alive() {
    let up = RecordingUpstream::start();
    let keys = Keys::new("sess-idle");
    let jwks = JwksServer::start(keys.jwks());
    let gw = session_gateway(&up, &jwks, &["idle_timeout_seconds: 3"], Vec::new());
    let t = token(&keys, Some("idle-1"), json!({}));
    let first = expect(&gw, &up, &t, 200, "").await;
    assert_eq!(record_of(&gw, &first)["access"]["session"], "started");
    // Four requests a second apart: 4 s in all, longer than the window, never idle 3 s.
    for _ in 0..4 {
        thread::sleep(Duration::from_secs(1));
        let id = expect(&gw, &up, &t, 200, "").await;
        assert_eq!(record_of(&gw, &id)["access"]["session"], "active");
    }
    thread::sleep(Duration::from_millis(4_500));
    let id = expect(&gw, &up, &t, 401, "session_idle_timeout").await;
    let rec = record_of(&gw, &id);
    assert_eq!(rec["decision"], "block");
    assert_eq!(rec["access"]["decision"], "deny");
    assert_eq!(rec["access"]["session"], "idle_timeout");
    assert!(rec["access"]["session_id"]
        .as_str()
        .unwrap()
        .starts_with("hmac-sha256:"));
    // A fresh token of the same sign-in (same sid) does not restart it.
    let fresh = token(&keys, Some("idle-1"), json!({"jti": "refreshed"}));
    expect(&gw, &up, &fresh, 401, "session_idle_timeout").await;
    // Another session is unaffected.
    expect(&gw, &up, &token(&keys, Some("idle-2"), json!({})), 200, "").await;
    // No sid: the token is the session. Issued 10 s ago and never used: idle since.
    let stale = token(&keys, None, json!({"iat": now() - 10}));
    expect(&gw, &up, &stale, 401, "session_idle_timeout").await;
    assert!(
        gw.metric(
            "phi_gateway_sessions_total",
            &[("result", "idle_timeout"), ("store", "memory")]
        ) >= 3.0
    );
    assert!(
        gw.metric(
            "phi_gateway_rejections_total",
            &[("route", "fhir"), ("reason", "session_idle_timeout")]
        ) >= 3.0
    );
}

/// The absolute limit counts from `auth_time`.
#[tokio::test]
async fn session_past_its_absolute_limit_from_auth_time_is_refused() {
    let up = RecordingUpstream::start();
    let keys = Keys::new("sess-abs");
    let jwks = JwksServer::start(keys.jwks());
    let gw = session_gateway(
        &up,
        &jwks,
        &["idle_timeout_seconds: 30", "max_session_seconds: 60"],
        Vec::new(),
    );
    let old = token(&keys, Some("abs-1"), json!({"auth_time": now() - 120}));
    let id = expect(&gw, &up, &old, 401, "session_expired").await;
    assert_eq!(record_of(&gw, &id)["access"]["session"], "expired");
    let recent = token(&keys, Some("abs-2"), json!({"auth_time": now() - 10}));
    expect(&gw, &up, &recent, 200, "").await;
    expect(&gw, &up, &recent, 200, "").await;
}

/// Two gateways, one Redis: a session started on one is known to the other, activity on
/// gateway 1 keeps it alive on gateway 2, and the idle expiry is seen by both. Keys in Redis
/// hold no identifier.
#[tokio::test]
async fn two_gateways_share_sessions_through_redis() {
    let redis = RedisServer::start();
    let (_shared, key) = fleet_key();
    let up = RecordingUpstream::start();
    let keys = Keys::new("sess-fleet");
    let jwks = JwksServer::start(keys.jwks());
    let sessions = ["idle_timeout_seconds: 3"];
    let gw1 = session_gateway(&up, &jwks, &sessions, redis_state(&redis, &key));
    let gw2 = session_gateway(&up, &jwks, &sessions, redis_state(&redis, &key));
    let t = token(&keys, Some("fleet-1"), json!({}));

    let id = expect(&gw2, &up, &t, 200, "").await;
    assert_eq!(record_of(&gw2, &id)["access"]["session"], "started");
    // Gateway 1 never saw it: it knows it from Redis.
    let id = expect(&gw1, &up, &t, 200, "").await;
    assert_eq!(record_of(&gw1, &id)["access"]["session"], "active");
    thread::sleep(Duration::from_millis(1_800));
    expect(&gw1, &up, &t, 200, "").await;
    thread::sleep(Duration::from_millis(1_800));
    // Gateway 2's own last request was over 3 s ago: only gateway 1's activity keeps it.
    let id = expect(&gw2, &up, &t, 200, "").await;
    assert_eq!(record_of(&gw2, &id)["access"]["session"], "active");

    thread::sleep(Duration::from_millis(4_000));
    expect(&gw1, &up, &t, 401, "session_idle_timeout").await;
    expect(&gw2, &up, &t, 401, "session_idle_timeout").await;
    for gw in [&gw1, &gw2] {
        assert!(
            gw.metric(
                "phi_gateway_sessions_total",
                &[("result", "idle_timeout"), ("store", "shared")]
            ) >= 1.0
        );
        assert_eq!(
            gw.metric("phi_gateway_state_backend_up", &[("backend", "redis")]),
            1.0
        );
    }
    let keys_in_redis = redis.keys();
    assert!(!keys_in_redis.is_empty());
    for k in &keys_in_redis {
        assert!(!k.contains("fleet-1") && !k.contains("idp"), "{k}");
        assert!(k.starts_with("phi:{") && k.ends_with("}:s"), "{k}");
    }
}

/// Redis stopped mid-test: the session this gateway knows keeps working inside its window
/// (from the local copy), an unknown session is refused once its token is older than the
/// window, a new one is admitted, `/readyz` says degraded (still 200) and the metric says
/// down; when Redis is back `/readyz` is ready again.
#[tokio::test]
async fn redis_outage_keeps_known_sessions_and_degrades_readiness() {
    let mut redis = RedisServer::start();
    let (_shared, key) = fleet_key();
    let up = RecordingUpstream::start();
    let keys = Keys::new("sess-outage");
    let jwks = JwksServer::start(keys.jwks());
    let gw = session_gateway(
        &up,
        &jwks,
        &["idle_timeout_seconds: 20"],
        redis_state(&redis, &key),
    );
    let (code, body) = readyz(&gw);
    assert_eq!((code, &body["status"]), (200, &json!("ready")), "{body}");
    assert_eq!(body["state"], json!({"backend": "redis", "up": true}));
    let t = token(&keys, Some("outage-1"), json!({}));
    expect(&gw, &up, &t, 200, "").await;

    redis.stop();
    expect(&gw, &up, &t, 200, "").await;
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let (code, body) = readyz(&gw);
        if body["status"] == "degraded" {
            assert_eq!(code, 200, "degraded still serves: {body}");
            assert_eq!(body["state"]["up"], false);
            break;
        }
        assert!(Instant::now() < deadline, "/readyz never degraded: {body}");
        thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        gw.metric("phi_gateway_state_backend_up", &[("backend", "redis")]),
        0.0
    );
    assert!(
        gw.metric(
            "phi_gateway_sessions_total",
            &[("result", "active"), ("store", "local")]
        ) >= 1.0
    );
    let unknown_old = token(&keys, Some("outage-2"), json!({"iat": now() - 60}));
    expect(&gw, &up, &unknown_old, 401, "session_idle_timeout").await;
    let unknown_new = token(&keys, Some("outage-3"), json!({}));
    expect(&gw, &up, &unknown_new, 200, "").await;

    redis.start_again();
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let (code, body) = readyz(&gw);
        if body["status"] == "ready" {
            assert_eq!(code, 200);
            break;
        }
        assert!(Instant::now() < deadline, "/readyz never recovered: {body}");
        thread::sleep(Duration::from_millis(100));
    }
    expect(&gw, &up, &t, 200, "").await;
    assert_eq!(
        gw.metric("phi_gateway_state_backend_up", &[("backend", "redis")]),
        1.0
    );
}
