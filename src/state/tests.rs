//! Unit tests of the memory backend (the bound, the session rule, counters, distinct values,
//! sets) and of key derivation. The Redis backend is tested against a real `redis-server`
//! in tests/gateway/state.rs.

use std::time::Duration;

use super::memory::MAX_MEMBERS;
use super::*;

const MIN: u64 = 60_000;

fn keyer() -> Keyer {
    Keyer::new(b"0123456789abcdef0123456789abcdef")
}

fn session(n: &str) -> StateKey {
    StateKey::session(&keyer().principal("session", &["https://idp", n]))
}

fn touch(now: u64, start: u64) -> SessionTouch {
    SessionTouch {
        now_ms: now,
        idle_ms: 15 * MIN,
        retain_ms: 60 * MIN,
        start_ms: start,
    }
}

#[test]
fn keys_are_fingerprints_with_one_hash_tag_per_principal() {
    let k = keyer();
    let p = k.principal("session", &["https://idp.example", "sid-123"]);
    assert_eq!(p.as_str().len(), 32);
    assert!(p.as_str().bytes().all(|b| b.is_ascii_hexdigit()));
    let s = StateKey::session(&p);
    assert!(!s.as_str().contains("sid-123") && !s.as_str().contains("idp"));
    assert_eq!(s.as_str(), format!("phi:{{{}}}:s", p.as_str()));
    let c = StateKey::counter(&p, "reads", 7);
    assert_eq!(c.as_str(), format!("phi:{{{}}}:c:reads:7", p.as_str()));
    assert!(StateKey::distinct(&p, "patients", 7)
        .as_str()
        .starts_with(&format!("phi:{{{}}}:", p.as_str())));
    // Length-prefixed parts: moving a byte between parts changes the principal.
    assert_ne!(
        k.principal("x", &["ab", "c"]),
        k.principal("x", &["a", "bc"])
    );
    assert_ne!(k.principal("x", &["a"]), k.principal("y", &["a"]));
    // Another secret, other keys: a fleet must share the secret.
    let other = Keyer::new(b"another secret of thirty-two byt");
    assert_ne!(other.principal("x", &["a"]), k.principal("x", &["a"]));
    assert_eq!(format!("{k:?}"), "Keyer([key])");
}

#[test]
fn session_stays_active_while_used_within_the_idle_limit() {
    let m = Memory::new(100);
    let k = session("s1");
    let t0 = 1_000 * MIN;
    let first = m.session_touch(&k, touch(t0, t0 - 1_000));
    assert!(first.active && !first.known);
    assert_eq!(first.first_seen_ms, t0 - 1_000);
    // Each use inside the window moves the window: 14 minutes apart, four times.
    for i in 1..=4 {
        let seen = m.session_touch(&k, touch(t0 + i * 14 * MIN, t0));
        assert!(seen.active && seen.known, "use {i}");
        assert_eq!(seen.last_seen_ms, t0 + (i - 1) * 14 * MIN);
    }
}

#[test]
fn session_idle_past_the_limit_stays_timed_out() {
    let m = Memory::new(100);
    let k = session("s2");
    let t0 = 1_000 * MIN;
    assert!(m.session_touch(&k, touch(t0, t0)).active);
    let late = m.session_touch(&k, touch(t0 + 15 * MIN + 1, t0));
    assert!(!late.active && late.known);
    assert_eq!(late.last_seen_ms, t0);
    // Not refreshed by the refused request, nor by a fresh token of the same session.
    let again = m.session_touch(&k, touch(t0 + 15 * MIN + 2, t0 + 15 * MIN + 2));
    assert!(
        !again.active,
        "a new token must not revive a timed-out session"
    );
}

#[test]
fn unknown_session_is_judged_by_its_token() {
    let m = Memory::new(100);
    let t0 = 1_000 * MIN;
    // A token issued 20 minutes ago and never seen: idle since it was issued.
    let old = m.session_touch(&session("old"), touch(t0, t0 - 20 * MIN));
    assert!(!old.active && !old.known);
    // Remembered as timed out.
    assert!(!m.session_touch(&session("old"), touch(t0 + 1, t0)).active);
    // Issued 10 minutes ago: still inside the window.
    assert!(
        m.session_touch(&session("new"), touch(t0, t0 - 10 * MIN))
            .active
    );
}

#[test]
fn memory_never_holds_more_than_max_entries() {
    let m = Memory::new(1_000);
    let t0 = 1_000 * MIN;
    for i in 0..50_000u64 {
        let k = session(&format!("sid-{i}"));
        assert!(m.session_touch(&k, touch(t0 + i, t0 + i)).active);
        assert!(m.len() <= 1_000, "after {i}: {}", m.len());
    }
    assert_eq!(m.len(), 1_000);
    // The newest are kept, the oldest evicted: an evicted session reads as unknown.
    let newest = session("sid-49999");
    assert!(m.session_touch(&newest, touch(t0 + 50_000, t0)).known);
    let oldest = session("sid-0");
    assert!(!m.session_touch(&oldest, touch(t0 + 50_001, t0)).known);
    // Counters and sets count against the same bound.
    let p = keyer().principal("user", &["u"]);
    for w in 0..5_000u64 {
        m.incr(
            &StateKey::counter(&p, "reads", w),
            1,
            Duration::from_secs(60),
            t0,
        );
    }
    assert_eq!(m.len(), 1_000);
}

#[test]
fn expired_entries_are_evicted_before_live_ones() {
    let m = Memory::new(3);
    let p = keyer().principal("user", &["u"]);
    let t0 = 1_000 * MIN;
    let short = StateKey::counter(&p, "a", 1);
    let long1 = StateKey::counter(&p, "b", 1);
    let long2 = StateKey::counter(&p, "c", 1);
    m.incr(&short, 1, Duration::from_secs(1), t0);
    m.incr(&long1, 1, Duration::from_secs(600), t0);
    m.incr(&long2, 1, Duration::from_secs(600), t0);
    let later = t0 + 2_000;
    m.incr(
        &StateKey::counter(&p, "d", 1),
        1,
        Duration::from_secs(600),
        later,
    );
    assert_eq!(m.sum(&[long1, long2], later), 2, "both live counters kept");
    assert_eq!(m.sum(&[short], later), 0);
}

#[test]
fn counters_add_up_in_fixed_windows_and_expire_from_creation() {
    let m = Memory::new(100);
    let p = keyer().principal("user", &["u"]);
    let t0 = 1_000 * MIN;
    let w = |i| StateKey::counter(&p, "reads", i);
    assert_eq!(m.incr(&w(1), 1, Duration::from_secs(60), t0), 1);
    assert_eq!(m.incr(&w(1), 2, Duration::from_secs(60), t0 + 59_000), 3);
    assert_eq!(m.incr(&w(2), 5, Duration::from_secs(60), t0 + 30_000), 5);
    assert_eq!(m.sum(&[w(1), w(2), w(3)], t0 + 59_000), 8);
    // The expiry is set once: the increment at 59 s did not extend window 1.
    assert_eq!(m.sum(&[w(1), w(2)], t0 + 60_000), 5);
    assert_eq!(m.sum(&[w(1), w(2)], t0 + 90_000), 0);
}

#[test]
fn distinct_values_count_the_union_and_stop_at_the_cap() {
    let m = Memory::new(100);
    let k = keyer();
    let p = k.principal("user", &["u"]);
    let t0 = 1_000 * MIN;
    let a = StateKey::distinct(&p, "patients", 1);
    let b = StateKey::distinct(&p, "patients", 2);
    let ttl = Duration::from_secs(600);
    assert!(m.distinct_add(&a, &k.principal("patient", &["p1"]), ttl, t0));
    assert!(!m.distinct_add(&a, &k.principal("patient", &["p1"]), ttl, t0));
    assert!(m.distinct_add(&a, &k.principal("patient", &["p2"]), ttl, t0));
    assert!(m.distinct_add(&b, &k.principal("patient", &["p2"]), ttl, t0));
    assert!(m.distinct_add(&b, &k.principal("patient", &["p3"]), ttl, t0));
    assert_eq!(m.distinct_count(&[a.clone(), b], t0), 3);
    for i in 0..(MAX_MEMBERS + 100) {
        m.distinct_add(&a, &k.principal("patient", &[&i.to_string()]), ttl, t0);
    }
    assert_eq!(m.distinct_count(&[a], t0), MAX_MEMBERS as u64);
}

#[test]
fn set_members_expire_one_by_one() {
    let m = Memory::new(100);
    let k = keyer();
    let key = StateKey::set("suspended");
    let (u1, u2) = (k.principal("user", &["u1"]), k.principal("user", &["u2"]));
    let t0 = 1_000 * MIN;
    m.set_add(&key, &u1, Duration::from_secs(60), t0);
    m.set_add(&key, &u2, Duration::from_secs(600), t0);
    assert!(m.set_contains(&key, &u1, t0 + 59_000));
    assert!(!m.set_contains(&key, &u1, t0 + 60_000), "u1's own expiry");
    assert!(
        m.set_contains(&key, &u2, t0 + 60_000),
        "the key outlives u1"
    );
    assert_eq!(
        m.set_members(&key, t0 + 60_000),
        vec![(u2.as_str().to_string(), t0 + 600_000)]
    );
    // Adding again only pushes an expiry out.
    m.set_add(&key, &u2, Duration::from_secs(1), t0);
    assert!(m.set_contains(&key, &u2, t0 + 500_000));
    m.set_remove(&key, &u2);
    assert!(!m.set_contains(&key, &u2, t0));
}

#[tokio::test]
async fn memory_store_reports_up_and_counts_sessions() {
    let metrics = Metrics::new().unwrap();
    let store = Store::start(&StateSettings::default(), metrics.clone()).unwrap();
    assert_eq!(store.backend(), "memory");
    assert!(store.is_up());
    let k = session("s");
    let now = now_ms();
    let seen = store.session_touch(&k, touch(now, now)).await;
    assert!(seen.active && !seen.local);
    assert_eq!(store.local_entries(), 1);
    let p = keyer().principal("user", &["u"]);
    assert_eq!(
        store
            .incr(&StateKey::counter(&p, "r", 1), 2, Duration::from_secs(5))
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        metrics
            .state_backend_up
            .with_label_values(&["memory"])
            .get(),
        1
    );
}
