//! Counting and judging one observation against the shared store.
//!
//! Keys (all of one principal, so one hash tag, one Redis Cluster slot):
//! - `c:<signal>:<sub>`: the signal in fixed sub-window `sub` (`now / (window / sub_windows)`),
//!   summed over the last `sub_windows` into the sliding window; expire after two windows;
//! - `c:<signal>_w:<win>`: the signal in fixed window `win` (`now / window`): what the baseline
//!   learns, read once the principal is seen in a later window; kept [`RETAIN_WINDOWS`]
//!   windows;
//! - `h:patients:<sub>`, `h:patients_w:<win>`: the same for distinct patients (HyperLogLog);
//! - `v:last`: the window the principal was last seen in. Swapped on every observation
//!   (`SET … GET`), so exactly one observation of the fleet sees it move and learns the
//!   window it left;
//! - `v:bl_<signal>`: the baseline (`version|mean:var:learned`, version = the last window
//!   learned, written only if newer);
//! - `v:flag:<win>`: the window was flagged by an alert (never learned).
//!
//! One round trip per observation (a pipeline of the increments, the sliding sums, the
//! baselines and the swap), a second only when the principal enters a new window (learning).

use std::time::Duration;

use super::baseline::{self, Baseline, Threshold};
use super::{Defence, Observation};
use crate::config::{Signal, SignalSettings};
use crate::state::{now_ms, Op, Principal, Reply, StateKey};

/// How many windows a window's totals are kept for learning after a pause (two days of
/// hourly windows: a principal back after a longer pause loses that one sample).
pub(super) const RETAIN_WINDOWS: u32 = 48;
/// How long a baseline is kept after it last learned.
pub(super) const BASELINE_TTL: Duration = Duration::from_secs(90 * 86_400);

/// The key names of one signal: sub-window, window, baseline.
fn names(s: Signal) -> (&'static str, &'static str, &'static str) {
    match s {
        Signal::PatientRequests => (
            "patient_requests",
            "patient_requests_w",
            "bl_patient_requests",
        ),
        Signal::DistinctPatients => ("patients", "patients_w", "bl_distinct_patients"),
        Signal::Blocked => ("blocked", "blocked_w", "bl_blocked"),
        Signal::RecordsReturned => ("records", "records_w", "bl_records_returned"),
    }
}

/// A signal's stored baseline and its version, as read.
type Learned = (Signal, Option<(u64, Baseline)>);

/// One signal over its threshold.
#[derive(Debug, Clone)]
pub(super) struct Hit {
    pub(super) signal: Signal,
    pub(super) observed: u64,
    pub(super) threshold: Threshold,
    pub(super) baseline: Baseline,
}

/// Where one observation falls in time.
#[derive(Debug, Clone, Copy)]
pub(super) struct Clock {
    pub(super) sub: u64,
    pub(super) win: u64,
}

impl Defence {
    pub(super) fn clock(&self, now: u64) -> Clock {
        let sub_ms = ms(self.settings.sub_window()).max(1);
        let win_ms = ms(self.settings.window).max(1);
        Clock {
            sub: now / sub_ms,
            win: now / win_ms,
        }
    }

    /// Counts `obs`, judges the signals it moved and raises an incident for those over their
    /// threshold. Never fails: a backend failure is counted and the observation dropped
    /// (fail open).
    pub async fn observe(&self, obs: Observation) {
        self.observe_at(obs, now_ms()).await
    }

    /// [`Defence::observe`] at `now` (Unix ms): the windows follow `now`, so tests can step
    /// through hours without waiting.
    pub async fn observe_at(&self, obs: Observation, now: u64) {
        let signals: Vec<SignalSettings> = self
            .settings
            .signals
            .iter()
            .filter(|s| s.enabled)
            .copied()
            .collect();
        let touched: Vec<SignalSettings> = signals
            .iter()
            .filter(|s| match s.signal {
                Signal::PatientRequests => obs.patient_data,
                Signal::DistinctPatients => obs.patient.is_some(),
                Signal::Blocked => obs.blocked,
                Signal::RecordsReturned => obs.records > 0,
            })
            .copied()
            .collect();
        if touched.is_empty() {
            return;
        }
        self.remember(&obs.principal, &obs.request_id);
        let clock = self.clock(now);
        match self.count(&obs, clock, &signals, &touched).await {
            Ok(hits) => {
                self.metrics
                    .anomaly_observations
                    .with_label_values(&["counted"])
                    .inc();
                if self.store.backend() == "memory" {
                    self.metrics
                        .anomaly_memory_entries
                        .set(self.store.local_entries() as i64);
                }
                if !hits.is_empty() {
                    self.raise(&obs, clock, hits, now).await;
                }
            }
            Err(e) => {
                self.metrics
                    .anomaly_observations
                    .with_label_values(&["failed_open"])
                    .inc();
                tracing::debug!(target: "phi_gateway::defence", error = %e, "observation not counted (fail open)");
            }
        }
    }

    /// The pipeline, the judgement and (on a window change) the learning.
    async fn count(
        &self,
        obs: &Observation,
        c: Clock,
        signals: &[SignalSettings],
        touched: &[SignalSettings],
    ) -> Result<Vec<Hit>, crate::state::StateError> {
        let p = &obs.principal;
        let s_n = self.settings.sub_windows;
        let sub_ttl = self.settings.window * 2;
        let win_ttl = self.settings.window * RETAIN_WINDOWS;
        let subs = |name| -> Vec<StateKey> {
            (c.sub.saturating_sub(s_n - 1)..=c.sub)
                .map(|i| sliding_key(p, name, i))
                .collect()
        };
        let mut ops = Vec::new();
        for s in touched {
            let (sub, win, _) = names(s.signal);
            match (s.signal, &obs.patient) {
                (Signal::DistinctPatients, Some(patient)) => {
                    for (key, ttl) in [
                        (StateKey::distinct(p, sub, c.sub), sub_ttl),
                        (StateKey::distinct(p, win, c.win), win_ttl),
                    ] {
                        ops.push(Op::DistinctAdd {
                            key,
                            member: patient.clone(),
                            ttl,
                        });
                    }
                    ops.push(Op::DistinctCount(subs(sub)));
                }
                _ => {
                    // Records count what the answer carried; every other signal one event.
                    let by = match s.signal {
                        Signal::RecordsReturned => obs.records,
                        _ => 1,
                    };
                    for (key, ttl) in [
                        (StateKey::counter(p, sub, c.sub), sub_ttl),
                        (StateKey::counter(p, win, c.win), win_ttl),
                    ] {
                        ops.push(Op::Incr { key, by, ttl });
                    }
                    ops.push(Op::Sum(subs(sub)));
                }
            }
        }
        for s in signals {
            ops.push(Op::Get(StateKey::value(p, names(s.signal).2, None)));
        }
        // The peer group's baselines (the role's own principal, so its own hash tag).
        let peer = obs.peer.as_ref().filter(|_| self.settings.peer_group);
        if let Some(role) = peer {
            for s in signals {
                ops.push(Op::Get(StateKey::value(role, names(s.signal).2, None)));
            }
        }
        ops.push(Op::Swap {
            key: StateKey::value(p, "last", None),
            text: c.win.to_string(),
            ttl: win_ttl,
        });
        let replies = self.store.batch(&ops).await?;
        // Replies in op order: per touched signal (add, add, count), then the baselines,
        // then the swap.
        let mut it = replies.iter();
        let mut observed = Vec::new();
        for s in touched {
            let count = it.nth(2).map(Reply::count).unwrap_or(0);
            observed.push((*s, count));
        }
        let mut baselines = Vec::new();
        for s in signals {
            let b = it.next().and_then(Reply::text).and_then(decode_versioned);
            baselines.push((s.signal, b));
        }
        let mut peers = Vec::new();
        if peer.is_some() {
            for s in signals {
                let b = it.next().and_then(Reply::text).and_then(decode_versioned);
                peers.push((s.signal, b));
            }
        }
        let peer_of = |sig: Signal| {
            peers
                .iter()
                .find(|(s, _)| *s == sig)
                .and_then(|(_, b)| *b)
                .map(|(_, b)| b)
        };
        let last = it
            .next()
            .and_then(Reply::text)
            .and_then(|t| t.parse::<u64>().ok());
        let baseline_of = |sig: Signal| {
            baselines
                .iter()
                .find(|(s, _)| *s == sig)
                .and_then(|(_, b)| *b)
                .map(|(_, b)| b)
                .unwrap_or(Baseline::EMPTY)
        };
        let hits = observed
            .into_iter()
            .filter_map(|(s, observed)| {
                let own = baseline_of(s.signal);
                let peer = peer_of(s.signal);
                let t = baseline::threshold_with_peer(&self.settings, &s, &own, peer.as_ref());
                // The incident reports the baseline that judged: the role's in a peer judgement.
                let b = match (t.basis, peer) {
                    (baseline::Basis::PeerGroup, Some(p)) => p,
                    _ => own,
                };
                baseline::alerts(observed, &t).then_some(Hit {
                    signal: s.signal,
                    observed,
                    threshold: t,
                    baseline: b,
                })
            })
            .collect();
        if let Some(left) = last.filter(|l| *l < c.win) {
            let peer = peer.map(|role| (role, peers.as_slice()));
            self.learn_window(p, left, signals, &baselines, peer)
                .await?;
        }
        Ok(hits)
    }

    /// The principal left window `left` (the fleet's one observation that saw `v:last`
    /// move): learn its totals into each signal's baseline, unless it was flagged.
    async fn learn_window(
        &self,
        p: &Principal,
        left: u64,
        signals: &[SignalSettings],
        baselines: &[Learned],
        peer: Option<(&Principal, &[Learned])>,
    ) -> Result<(), crate::state::StateError> {
        let mut ops = vec![Op::Get(StateKey::value(p, "flag", Some(left)))];
        for s in signals {
            let (_, win, _) = names(s.signal);
            ops.push(match s.signal {
                Signal::DistinctPatients => {
                    Op::DistinctCount(vec![StateKey::distinct(p, win, left)])
                }
                _ => Op::Sum(vec![StateKey::counter(p, win, left)]),
            });
        }
        let replies = self.store.batch(&ops).await?;
        let flagged = replies.first().and_then(Reply::text).is_some();
        let a = baseline::alpha(self.settings.half_life_windows);
        for (s, reply) in signals.iter().zip(replies.iter().skip(1)) {
            let current = baselines
                .iter()
                .find(|(sig, _)| *sig == s.signal)
                .and_then(|(_, b)| *b);
            if current.is_some_and(|(v, _)| v >= left) {
                continue; // learned already
            }
            let b = current.map(|(_, b)| b).unwrap_or(Baseline::EMPTY);
            let next = baseline::learn(b, reply.count(), flagged, a);
            let key = StateKey::value(p, names(s.signal).2, None);
            self.store
                .put_if_newer(&key, left, &next.encode(), BASELINE_TTL)
                .await?;
            // The peer group learns every member's window: one sample per member and window,
            // versioned by its sample count, so of two members writing the same next version
            // one loses its sample, which an estimate of the role's normal can afford.
            if let Some((role, peers)) = peer.filter(|_| reply.count() > 0 && !flagged) {
                let (version, pb) = peers
                    .iter()
                    .find(|(sig, _)| *sig == s.signal)
                    .and_then(|(_, b)| *b)
                    .unwrap_or((0, Baseline::EMPTY));
                let next = baseline::learn(pb, reply.count(), false, a);
                let key = StateKey::value(role, names(s.signal).2, None);
                self.store
                    .put_if_newer(&key, version + 1, &next.encode(), BASELINE_TTL)
                    .await?;
            }
        }
        Ok(())
    }
}

/// The sliding sub-window key of `name` (a counter, or a distinct estimate for patients).
fn sliding_key(p: &Principal, name: &'static str, sub: u64) -> StateKey {
    if name == "patients" {
        StateKey::distinct(p, name, sub)
    } else {
        StateKey::counter(p, name, sub)
    }
}

/// `version|baseline`.
fn decode_versioned(t: &str) -> Option<(u64, Baseline)> {
    let (v, b) = t.split_once('|')?;
    Some((v.parse().ok()?, Baseline::decode(b)?))
}

pub(super) fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
