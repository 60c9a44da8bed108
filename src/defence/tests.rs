//! The detector on the memory store, stepping through hours by passing the time in: a
//! cold-start burst alerts once per window, the current window is never part of the baseline
//! that judges it, a flagged window is never learned, the learned baseline judges after
//! `min_history`, graded suspension, reinstatement, and the memory bound with many
//! principals.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::config::{
    AnomalyMode, Signal, SignalSettings, StateSettings, SuspendWhen, SuspensionSettings,
};
use crate::state::{Keyer, StateKey};

const HOUR: u64 = 3_600_000;
/// An hour boundary well in the future of the real clock, so the store's real-time expiries
/// never fire during a test while its windows follow the time passed in.
const T0: u64 = 1_000_000 * HOUR;

fn settings(mode: AnomalyMode, min_history: u64, when: Vec<SuspendWhen>) -> AnomalySettings {
    let signal = |signal, floor, cold_start_ceiling| SignalSettings {
        signal,
        enabled: true,
        floor,
        cold_start_ceiling,
    };
    AnomalySettings {
        mode,
        window: Duration::from_secs(3600),
        sub_windows: 12,
        signals: vec![
            signal(Signal::PatientRequests, 5, 10),
            signal(Signal::DistinctPatients, 5, 1_000),
            signal(Signal::Blocked, 5, 1_000),
        ],
        k: 3.0,
        z: 4.0,
        min_history,
        half_life_windows: 168,
        peer_group: false,
        suspension: SuspensionSettings {
            ttl: Duration::from_secs(600),
            when,
            high_tier_factor: 3.0,
            escalation: Duration::from_secs(86_400),
        },
        fail_closed_routes: Vec::new(),
    }
}

fn start(s: AnomalySettings, max_entries: usize) -> (Arc<Defence>, Metrics) {
    let metrics = Metrics::new().unwrap();
    let state = StateSettings {
        max_entries,
        ..StateSettings::default()
    };
    let store = Store::start(&state, metrics.clone()).unwrap();
    let d = Defence::start(s, store, None, metrics.clone(), "test".into(), None).unwrap();
    (d, metrics)
}

fn user(name: &str) -> Principal {
    Keyer::new(b"0123456789abcdef0123456789abcdef").principal("user", &["idp", name])
}

fn read(p: &Principal, i: u64) -> Observation {
    Observation {
        principal: p.clone(),
        kind: PrincipalKind::User,
        patient_data: true,
        patient: None,
        blocked: false,
        records: 0,
        peer: None,
        request_id: format!("req-{i}"),
    }
}

/// `n` patient-data reads by `p`, a second apart from `at`.
async fn reads(d: &Defence, p: &Principal, n: u64, at: u64) {
    for i in 0..n {
        d.observe_at(read(p, i), at + i * 1_000).await;
    }
}

fn incidents(m: &Metrics, action: &str) -> u64 {
    m.anomalies
        .with_label_values(&["patient_requests", action])
        .get()
}

async fn baseline(d: &Defence, p: &Principal) -> Option<String> {
    let key = StateKey::value(p, "bl_patient_requests", None);
    d.store()
        .batch(&[crate::state::Op::Get(key)])
        .await
        .unwrap()[0]
        .text()
        .map(str::to_string)
}

#[tokio::test]
async fn a_cold_start_burst_alerts_once_per_window_and_monitor_never_suspends() {
    let (d, m) = start(settings(AnomalyMode::Monitor, 3, Vec::new()), 10_000);
    let p = user("alice");
    reads(&d, &p, 9, T0).await;
    assert_eq!(incidents(&m, "alert"), 0, "below the cold-start ceiling");
    reads(&d, &p, 30, T0 + 10_000).await;
    assert_eq!(
        incidents(&m, "alert"),
        1,
        "one incident per principal and window"
    );
    assert_eq!(d.suspended_until(&p), None, "monitor mode only alerts");
    assert_eq!(
        m.anomaly_observations.with_label_values(&["counted"]).get(),
        39
    );
    // Another principal is judged on its own counts.
    reads(&d, &user("bob"), 3, T0).await;
    assert_eq!(incidents(&m, "alert"), 1);
}

/// The window in progress is never learned: a busy current hour cannot raise the threshold
/// it is judged against. It is learned once the principal is seen in a later window.
#[tokio::test]
async fn the_current_window_is_excluded_and_learned_once_it_is_over() {
    let (d, _) = start(settings(AnomalyMode::Monitor, 3, Vec::new()), 10_000);
    let p = user("carol");
    reads(&d, &p, 4, T0).await;
    assert_eq!(baseline(&d, &p).await, None, "the current hour was learned");
    // Two hours later: the hour left (T0) is learned, the idle one between is not.
    reads(&d, &p, 1, T0 + 2 * HOUR).await;
    let b = baseline(&d, &p).await.expect("learned");
    let (version, text) = b.split_once('|').unwrap();
    assert_eq!(version, (T0 / HOUR).to_string());
    assert_eq!(
        Baseline::decode(text).map(|b| (b.mean, b.learned)),
        Some((4.0, 1))
    );
}

/// A window flagged by an incident is never learned (no slow-ramp poisoning).
#[tokio::test]
async fn a_flagged_window_is_never_learned() {
    let (d, m) = start(settings(AnomalyMode::Monitor, 1, Vec::new()), 10_000);
    let p = user("dave");
    reads(&d, &p, 3, T0).await;
    reads(&d, &p, 3, T0 + HOUR).await; // learns T0: mean 3
    reads(&d, &p, 40, T0 + 2 * HOUR).await; // threshold max(5, 9, 3+4·√3) = 9.9
    assert_eq!(incidents(&m, "alert"), 1);
    reads(&d, &p, 1, T0 + 3 * HOUR).await; // leaves the flagged hour
    let b = baseline(&d, &p).await.unwrap();
    let learned = Baseline::decode(b.split_once('|').unwrap().1).unwrap();
    assert_eq!(
        learned.learned, 2,
        "hours T0 and T0+1 learned, the flagged one not"
    );
    assert!((learned.mean - 3.0).abs() < 1e-9, "{learned:?}");
}

/// Until `min_history` windows are learned the ceiling judges; afterwards the baseline:
/// max(floor, k·μ, μ + z·max(σ, √μ)).
#[tokio::test]
async fn after_min_history_the_baseline_judges() {
    let (d, m) = start(settings(AnomalyMode::Monitor, 3, Vec::new()), 10_000);
    let p = user("erin");
    for h in 0..3 {
        reads(&d, &p, 2, T0 + h * HOUR).await;
    }
    // Learned: hours 0 and 1 (hour 2 is current). Still cold: ceiling 10.
    reads(&d, &p, 7, T0 + 2 * HOUR + 10_000).await; // 9 in hour 2
    assert_eq!(incidents(&m, "alert"), 0);
    // Hour 3 learns hour 2 (9): three windows learned, the baseline judges now.
    reads(&d, &p, 1, T0 + 3 * HOUR).await;
    let b = Baseline::decode(baseline(&d, &p).await.unwrap().split_once('|').unwrap().1).unwrap();
    assert_eq!(b.learned, 3);
    let t = threshold(d.settings(), &d.settings().signals[0], &b);
    assert_eq!(t.basis, Basis::Baseline);
    let below = (t.value.ceil() as u64).saturating_sub(2);
    reads(&d, &p, below, T0 + 3 * HOUR + 1_000).await;
    assert_eq!(incidents(&m, "alert"), 0, "below {t:?}");
    reads(&d, &p, 3, T0 + 3 * HOUR + 600_000).await;
    assert_eq!(incidents(&m, "alert"), 1, "at {t:?}");
}

/// Graded: with `[second_trigger]` the first incident only alerts, the next one (a later
/// window within the escalation period) suspends; reinstating lifts it.
#[tokio::test]
async fn a_second_trigger_suspends_and_reinstate_lifts_it() {
    let when = vec![SuspendWhen::SecondTrigger];
    let (d, m) = start(settings(AnomalyMode::Enforce, 100, when), 10_000);
    let p = user("frank");
    reads(&d, &p, 10, T0).await;
    assert_eq!((incidents(&m, "alert"), incidents(&m, "suspend")), (1, 0));
    assert_eq!(d.suspended_until(&p), None, "one busy hour suspended");
    reads(&d, &p, 10, T0 + HOUR).await;
    assert_eq!(incidents(&m, "suspend"), 1);
    let until = d.suspended_until(&p).expect("suspended");
    assert!(until > crate::state::now_ms());
    assert_eq!(d.suspended().len(), 1);
    assert_eq!(d.suspended()[0].0, p.as_str());
    assert!(d.reinstate(&p).await.unwrap());
    assert_eq!(d.suspended_until(&p), None);
    assert!(!d.reinstate(&p).await.unwrap(), "not suspended any more");
}

/// A high tier suspends within the window: the incident at the threshold alerts, the count
/// going on to `high_tier_factor` × the threshold suspends; a modest excess does not.
#[tokio::test]
async fn a_high_tier_suspends_within_the_window() {
    let when = vec![SuspendWhen::HighTier];
    let (d, m) = start(settings(AnomalyMode::Enforce, 100, when), 10_000);
    let modest = user("gina");
    reads(&d, &modest, 29, T0).await;
    assert_eq!(d.suspended_until(&modest), None);
    assert_eq!((incidents(&m, "alert"), incidents(&m, "suspend")), (1, 0));
    let bulk = user("harry");
    reads(&d, &bulk, 30, T0).await;
    assert_eq!((incidents(&m, "alert"), incidents(&m, "suspend")), (2, 1));
    assert!(d.suspended_until(&bulk).is_some());
    reads(&d, &bulk, 30, T0 + 40_000).await;
    assert_eq!(incidents(&m, "suspend"), 1, "escalated once per window");
}

/// The memory store never holds more than `state.max_entries` keys, however many principals
/// it counts, and the evidence map stays within its cap.
#[tokio::test]
async fn memory_stays_bounded_with_many_principals() {
    let (d, m) = start(settings(AnomalyMode::Monitor, 3, Vec::new()), 1_000);
    for i in 0..(MAX_RECENT_PRINCIPALS as u64 + 2_000) {
        d.observe_at(read(&user(&format!("u{i}")), i), T0 + i).await;
    }
    assert!(
        d.store().local_entries() <= 1_000,
        "{}",
        d.store().local_entries()
    );
    assert!(d.recent_principals() <= MAX_RECENT_PRINCIPALS);
    assert_eq!(incidents(&m, "alert"), 0);
}

/// `peer_group: true`: a principal in cold start is judged by its role's baseline once the
/// role has `min_history` samples (one per member and window), which is stricter here than
/// the fixed ceiling; a principal without a role keeps the ceiling.
#[tokio::test]
async fn a_cold_principal_is_judged_by_its_peer_group() {
    let mut s = settings(AnomalyMode::Monitor, 3, Vec::new());
    s.peer_group = true;
    let (d, m) = start(s, 10_000);
    let keyer = Keyer::new(b"0123456789abcdef0123456789abcdef");
    let nurse = keyer.principal("role", &["nurse"]);
    let as_nurse = |p: &Principal, i| Observation {
        peer: Some(nurse.clone()),
        ..read(p, i)
    };
    for name in ["n1", "n2", "n3"] {
        let p = user(name);
        for i in 0..2 {
            d.observe_at(as_nurse(&p, i), T0 + i * 1_000).await;
        }
        d.observe_at(as_nurse(&p, 9), T0 + HOUR).await; // learns hour 0 (2) into the role
    }
    // The role: 3 samples of 2 → max(5, 6, 2 + 4·√2) ≈ 7.66, under the ceiling of 10.
    let newcomer = user("n4");
    for i in 0..8 {
        d.observe_at(as_nurse(&newcomer, i), T0 + HOUR + 10_000 + i)
            .await;
    }
    assert_eq!(incidents(&m, "alert"), 1, "the peer group did not judge");
    let loner = user("solo");
    reads(&d, &loner, 8, T0 + HOUR + 20_000).await;
    assert_eq!(
        incidents(&m, "alert"),
        1,
        "no role: the ceiling of 10 judges"
    );
}
