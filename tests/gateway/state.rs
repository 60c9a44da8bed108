//! The shared-state store's Redis backend (`phi_gateway::state`) against a real `redis-server`
//! started here: the session rule, counters, distinct values and sets give the answers the
//! memory backend's unit tests prove, keys hold only fingerprints, an outage falls back to the
//! local copy and recovers, and `rediss://` is TLS 1.3 only. Times are passed in where the
//! API takes them, so no test waits for an idle window here.

use std::time::{Duration, Instant};

use phi_gateway::config::{StateBackend, StateSettings};
use phi_gateway::state::{Keyer, SessionTouch, StateKey, Store};
use phi_gateway::telemetry::Metrics;

use crate::common::*;

const MIN: u64 = 60_000;

fn settings(url: String, ca_file: Option<std::path::PathBuf>) -> StateSettings {
    StateSettings {
        backend: StateBackend::Redis {
            url,
            password_file: None,
            ca_file,
        },
        // Generous for a loaded test machine: these tests prove answers, not latency.
        timeout: Duration::from_millis(1_000),
        // One store per test: a random key (the fleet case is in sessions.rs).
        key_file: None,
        ..StateSettings::default()
    }
}

fn touch(now: u64, start: u64) -> SessionTouch {
    SessionTouch {
        now_ms: now,
        idle_ms: 15 * MIN,
        retain_ms: 60 * MIN,
        start_ms: start,
    }
}

/// Waits (bounded) until `f` holds.
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn redis_backend_gives_the_memory_backends_answers() {
    let redis = RedisServer::start();
    let metrics = Metrics::new().unwrap();
    let store = Store::start(&settings(redis.url(), None), metrics.clone()).unwrap();
    assert_eq!(store.backend(), "redis");
    let k = store.keyer().clone();

    // Sessions: started, kept alive within the window, timed out past it and not revived.
    let sid = StateKey::session(&k.principal("session", &["https://idp", "sid-secret-1"]));
    let t0 = phi_gateway::state::now_ms();
    let s = store.session_touch(&sid, touch(t0, t0 - 1_000)).await;
    assert!(s.active && !s.known && !s.local, "{s:?}");
    assert_eq!(s.first_seen_ms, t0 - 1_000);
    let s = store.session_touch(&sid, touch(t0 + 14 * MIN, t0)).await;
    assert!(s.active && s.known && !s.local, "{s:?}");
    assert_eq!(s.last_seen_ms, t0);
    let s = store.session_touch(&sid, touch(t0 + 30 * MIN, t0)).await;
    assert!(!s.active && s.known, "idle 16 minutes: {s:?}");
    let s = store
        .session_touch(&sid, touch(t0 + 30 * MIN + 1, t0 + 30 * MIN))
        .await;
    assert!(!s.active, "a fresh token must not revive it: {s:?}");
    // Unknown and issued 20 minutes ago: idle since.
    let old = StateKey::session(&k.principal("session", &["https://idp", "sid-old"]));
    assert!(
        !store
            .session_touch(&old, touch(t0, t0 - 20 * MIN))
            .await
            .active
    );

    // Counters: INCRBY + PEXPIRE NX; the expiry is set once.
    let p = k.principal("user", &["clinician-7"]);
    let (c1, c2) = (
        StateKey::counter(&p, "reads", 1),
        StateKey::counter(&p, "reads", 2),
    );
    let ttl = Duration::from_secs(600);
    assert_eq!(store.incr(&c1, 1, ttl).await.unwrap(), 1);
    assert_eq!(store.incr(&c1, 2, ttl).await.unwrap(), 3);
    assert_eq!(store.incr(&c2, 5, ttl).await.unwrap(), 5);
    let missing = StateKey::counter(&p, "reads", 3);
    assert_eq!(store.sum(&[c1.clone(), c2, missing]).await.unwrap(), 8);
    let client = redis::Client::open(redis.url()).unwrap();
    let mut con = client.get_connection().unwrap();
    let pttl: i64 = redis::cmd("PTTL").arg(c1.as_str()).query(&mut con).unwrap();
    assert!(pttl > 0 && pttl <= 600_000, "counter expiry: {pttl}");

    // Distinct values: PFCOUNT over several windows is the union.
    let (h1, h2) = (
        StateKey::distinct(&p, "patients", 1),
        StateKey::distinct(&p, "patients", 2),
    );
    let pat = |id: &str| k.principal("patient", &[id]);
    assert!(store.distinct_add(&h1, &pat("pat-1"), ttl).await.unwrap());
    assert!(!store.distinct_add(&h1, &pat("pat-1"), ttl).await.unwrap());
    assert!(store.distinct_add(&h1, &pat("pat-2"), ttl).await.unwrap());
    assert!(store.distinct_add(&h2, &pat("pat-2"), ttl).await.unwrap());
    assert!(store.distinct_add(&h2, &pat("pat-3"), ttl).await.unwrap());
    assert_eq!(store.distinct_count(&[h1, h2]).await.unwrap(), 3);

    // Sets with per-member expiry.
    let set = StateKey::set("suspended");
    let (u1, u2) = (k.principal("user", &["u1"]), k.principal("user", &["u2"]));
    store
        .set_add(&set, &u1, Duration::from_millis(1))
        .await
        .unwrap();
    store.set_add(&set, &u2, ttl).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!store.set_contains(&set, &u1).await.unwrap(), "u1 expired");
    assert!(store.set_contains(&set, &u2).await.unwrap());
    let members = store.set_members(&set).await.unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].0, u2.as_str());
    let key_ttl: i64 = redis::cmd("PTTL")
        .arg(set.as_str())
        .query(&mut con)
        .unwrap();
    assert!(
        key_ttl > 1_000,
        "the key outlives its longest member: {key_ttl}"
    );
    store.set_remove(&set, &u2).await.unwrap();
    assert!(!store.set_contains(&set, &u2).await.unwrap());

    // No identifier in any key: only fingerprints under one hash tag per principal.
    let keys = redis.keys();
    assert!(keys.len() >= 6, "{keys:?}");
    for key in &keys {
        for secret in ["sid-secret-1", "clinician-7", "pat-1", "idp", "u2"] {
            assert!(!key.contains(secret), "{key} names {secret}");
        }
        let tagged = key.starts_with("phi:{set:")
            || (key.starts_with("phi:{")
                && key[5..].find('}') == Some(32)
                && key[5..37].bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(tagged, "{key}");
    }
    assert!(store.is_up());
    assert_eq!(
        metrics.state_backend_up.with_label_values(&["redis"]).get(),
        1
    );
}

/// Redis stopped mid-test: known sessions are served from the local copy, unknown ones are
/// judged by their token, the store reports down (metric), and recovers when Redis is back.
#[tokio::test]
async fn redis_outage_falls_back_to_the_local_copy_and_recovers() {
    let mut redis = RedisServer::start();
    let metrics = Metrics::new().unwrap();
    let store = Store::start(&settings(redis.url(), None), metrics.clone()).unwrap();
    let k = store.keyer().clone();
    let known = StateKey::session(&k.principal("session", &["https://idp", "known"]));
    let t0 = phi_gateway::state::now_ms();
    let s = store.session_touch(&known, touch(t0, t0)).await;
    assert!(s.active && !s.local, "{s:?}");

    redis.stop();
    let s = store.session_touch(&known, touch(t0 + MIN, t0)).await;
    assert!(
        s.active && s.known && s.local,
        "known session, local copy: {s:?}"
    );
    let stale = StateKey::session(&k.principal("session", &["https://idp", "stale"]));
    let s = store.session_touch(&stale, touch(t0, t0 - 20 * MIN)).await;
    assert!(!s.active && s.local, "unknown and idle by its token: {s:?}");
    let fresh = StateKey::session(&k.principal("session", &["https://idp", "fresh"]));
    assert!(store.session_touch(&fresh, touch(t0, t0)).await.active);
    assert!(!store.is_up());
    assert_eq!(
        metrics.state_backend_up.with_label_values(&["redis"]).get(),
        0
    );
    assert!(
        metrics
            .state_errors
            .with_label_values(&["session", "backend"])
            .get()
            + metrics
                .state_errors
                .with_label_values(&["session", "timeout"])
                .get()
            >= 1
    );
    let p = k.principal("user", &["u"]);
    assert!(
        store
            .incr(
                &StateKey::counter(&p, "reads", 1),
                1,
                Duration::from_secs(60)
            )
            .await
            .is_err(),
        "counters report the outage to their caller"
    );

    redis.start_again();
    eventually("the store reporting Redis up again", || store.is_up()).await;
    // The activity served locally during the outage reached the shared store: at +14 min
    // from the local sighting at +1 min the session is still active, though Redis itself
    // last saw it at t0.
    let s = store.session_touch(&known, touch(t0 + 15 * MIN, t0)).await;
    assert!(s.active && !s.local, "{s:?}");
}

/// `rediss://` goes through rustls with the process's TLS 1.3-only provider (the one the
/// gateway installs): a TLS 1.3 server answers, a server limited to TLS 1.2 is never reached.
#[tokio::test]
async fn rediss_speaks_tls13_only() {
    let _ = phi_gateway::gateway::tls::install_tls13_only_provider();
    let certs = tempfile::tempdir().unwrap();
    phi_gateway::gateway::tls::generate_dev_ca(certs.path()).unwrap();
    let d = certs.path().to_path_buf();
    let tls_server = |protocols: &str| {
        let port = free_port();
        let args = vec![
            "--port".to_string(),
            "0".into(),
            "--tls-port".into(),
            port.to_string(),
            "--tls-cert-file".into(),
            d.join("server.pem").display().to_string(),
            "--tls-key-file".into(),
            d.join("server.key").display().to_string(),
            "--tls-ca-cert-file".into(),
            d.join("ca.pem").display().to_string(),
            "--tls-auth-clients".into(),
            "no".into(),
            "--tls-protocols".into(),
            protocols.into(),
        ];
        RedisServer::start_with(args)
    };
    let dir = d.clone();
    let good = tls_server("TLSv1.3");
    let url = format!("rediss://localhost:{}", good.tls_port());
    let store = Store::start(
        &settings(url, Some(dir.join("ca.pem"))),
        Metrics::new().unwrap(),
    )
    .unwrap();
    let p = Keyer::new(b"x").principal("user", &["u"]);
    let key = StateKey::counter(&p, "reads", 1);
    assert_eq!(
        store.incr(&key, 1, Duration::from_secs(5)).await.unwrap(),
        1,
        "{}",
        good.log()
    );

    let old = tls_server("TLSv1.2");
    let url = format!("rediss://localhost:{}", old.tls_port());
    let store = Store::start(
        &settings(url, Some(dir.join("ca.pem"))),
        Metrics::new().unwrap(),
    )
    .unwrap();
    assert!(
        store.incr(&key, 1, Duration::from_secs(5)).await.is_err(),
        "a TLS 1.2-only server must not be spoken to"
    );
    assert!(!store.is_up());
}

/// A Redis that accepts connections and never answers (here: the recording upstream in its
/// hanging mode): every request-path call gives up at `timeout_ms`. Sessions are answered from
/// the local copy, counters report a timeout, and the store reports down.
#[tokio::test]
async fn a_redis_that_never_answers_costs_at_most_the_timeout() {
    let silent = RecordingUpstream::start_hanging();
    let metrics = Metrics::new().unwrap();
    let mut s = settings(format!("redis://{}", silent.addr()), None);
    s.timeout = Duration::from_millis(50);
    let store = Store::start(&s, metrics.clone()).unwrap();
    let k = store.keyer().clone();
    let sid = StateKey::session(&k.principal("session", &["https://idp", "s"]));
    let t0 = phi_gateway::state::now_ms();
    let seen = store.session_touch(&sid, touch(t0, t0)).await;
    assert!(seen.active && seen.local, "{seen:?}");
    let p = k.principal("user", &["u"]);
    let e = store
        .incr(
            &StateKey::counter(&p, "reads", 1),
            1,
            Duration::from_secs(60),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, phi_gateway::state::StateError::Timeout(50)),
        "{e}"
    );
    assert!(!store.is_up());
    assert!(
        metrics
            .state_errors
            .with_label_values(&["session", "timeout"])
            .get()
            >= 1
    );
}

/// The anomaly detector's primitives in Redis: a batch is one pipeline whose answers match
/// the memory backend's (`INCRBY` + `PEXPIRE NX` keeps the first expiry, `MGET` sums,
/// `PFADD`/`PFCOUNT` union, `GET`, `SET … GET` swaps), a versioned value is only replaced by
/// a newer version, and a marker is set once.
#[tokio::test]
async fn batches_versioned_values_and_markers_match_the_memory_backend() {
    use phi_gateway::state::{Op, Reply};
    let redis = RedisServer::start();
    let store = Store::start(&settings(redis.url(), None), Metrics::new().unwrap()).unwrap();
    let memory = Store::start(&StateSettings::default(), Metrics::new().unwrap()).unwrap();
    let k = store.keyer().clone();
    let p = k.principal("user", &["token", "idp", "dr-batch"]);
    let pat = k.principal("patient", &["Patient/pat-9"]);
    let ttl = Duration::from_secs(600);
    let ops = vec![
        Op::Incr {
            key: StateKey::counter(&p, "patient_requests", 1),
            by: 2,
            ttl,
        },
        Op::Incr {
            key: StateKey::counter(&p, "patient_requests", 2),
            by: 3,
            ttl: Duration::from_secs(5),
        },
        Op::Sum(vec![
            StateKey::counter(&p, "patient_requests", 1),
            StateKey::counter(&p, "patient_requests", 2),
            StateKey::counter(&p, "patient_requests", 3),
        ]),
        Op::Sum(Vec::new()),
        Op::DistinctAdd {
            key: StateKey::distinct(&p, "patients", 1),
            member: pat.clone(),
            ttl,
        },
        Op::DistinctCount(vec![
            StateKey::distinct(&p, "patients", 1),
            StateKey::distinct(&p, "patients", 2),
        ]),
        Op::Get(StateKey::value(&p, "bl_x", None)),
        Op::Swap {
            key: StateKey::value(&p, "last", None),
            text: "7".into(),
            ttl,
        },
        Op::Swap {
            key: StateKey::value(&p, "last", None),
            text: "8".into(),
            ttl,
        },
    ];
    let expect = vec![
        Reply::Count(2),
        Reply::Count(3),
        Reply::Count(5),
        Reply::Count(0),
        Reply::Flag(true),
        Reply::Count(1),
        Reply::Text(None),
        Reply::Text(None),
        Reply::Text(Some("7".into())),
    ];
    assert_eq!(store.batch(&ops).await.unwrap(), expect);
    assert_eq!(memory.batch(&ops).await.unwrap(), expect);
    // The same increments again: the expiry set at creation stays (PEXPIRE … NX).
    let again = store.batch(&ops[..2]).await.unwrap();
    assert_eq!(again, vec![Reply::Count(4), Reply::Count(6)]);
    let client = redis::Client::open(redis.url()).unwrap();
    let mut con = client.get_connection().unwrap();
    let pttl: i64 = redis::cmd("PTTL")
        .arg(StateKey::counter(&p, "patient_requests", 2).as_str())
        .query(&mut con)
        .unwrap();
    assert!(pttl > 0 && pttl <= 5_000, "expiry moved: {pttl}");

    // Versioned values: only a newer version replaces; markers are set once.
    let bl = StateKey::value(&p, "bl_patient_requests", None);
    for s in [&store, &memory] {
        assert!(s.put_if_newer(&bl, 5, "3:1:4", ttl).await.unwrap());
        assert!(!s.put_if_newer(&bl, 5, "9:9:9", ttl).await.unwrap());
        assert!(!s.put_if_newer(&bl, 4, "9:9:9", ttl).await.unwrap());
        assert!(s.put_if_newer(&bl, 6, "4:1:5", ttl).await.unwrap());
        let got = s.batch(&[Op::Get(bl.clone())]).await.unwrap();
        assert_eq!(got, vec![Reply::Text(Some("6|4:1:5".into()))]);
        let alert = StateKey::value(&p, "alert", Some(9));
        assert!(s.set_nx(&alert, ttl).await.unwrap());
        assert!(!s.set_nx(&alert, ttl).await.unwrap());
    }
    for key in redis.keys() {
        assert!(!key.contains("dr-batch") && !key.contains("pat-9"), "{key}");
        assert!(
            key.starts_with(&format!("phi:{{{}}}:", p.as_str())),
            "{key}"
        );
    }
}
