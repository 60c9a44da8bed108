//! The baseline math, pure: an exponentially weighted mean and spread of a principal's count
//! per window (Tony Finch, "Incremental calculation of weighted mean and variance", 2009:
//! `diff = x − μ; incr = α·diff; μ ← μ + incr; σ² ← (1 − α)·(σ² + diff·incr)`), and the
//! threshold a window's count is judged against:
//!
//! - before `min_history` windows are learned (cold start): the signal's fixed ceiling;
//! - after: `max(floor, k·μ, μ + z·max(σ, √μ))`. `√μ` is the Poisson spread: a principal
//!   whose every hour looked the same has σ = 0, and one more request must not be an alert.
//!
//! What is learned, and when ([`learn`]): only windows that are over (the current one is
//! never part of the baseline that judges it), only windows with activity (a clinician's
//! off-shift hours are not "normal zero": Elastic's `non_zero_count`), and never a window
//! flagged by an alert, so a slow ramp cannot teach the detector that a bulk export is normal
//! (Elastic's `skip_model_update`).

use crate::config::{AnomalySettings, SignalSettings};

/// One principal's learned normal for one signal. Stored as text
/// (`mean:variance:learned`), versioned by the last window it learned.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Baseline {
    /// Weighted mean count per window.
    pub mean: f64,
    /// Weighted variance.
    pub var: f64,
    /// Windows learned.
    pub learned: u64,
}

impl Baseline {
    /// Nothing learned yet.
    pub const EMPTY: Baseline = Baseline {
        mean: 0.0,
        var: 0.0,
        learned: 0,
    };

    /// Adds one window's count with smoothing `alpha`. The first sample is the mean.
    pub fn learn(&mut self, x: f64, alpha: f64) {
        if self.learned == 0 {
            self.mean = x;
            self.var = 0.0;
        } else {
            let diff = x - self.mean;
            let incr = alpha * diff;
            self.mean += incr;
            self.var = (1.0 - alpha) * (self.var + diff * incr);
        }
        self.learned = self.learned.saturating_add(1);
    }

    /// The weighted standard deviation.
    pub fn spread(&self) -> f64 {
        self.var.max(0.0).sqrt()
    }

    /// The stored form.
    pub fn encode(&self) -> String {
        format!("{}:{}:{}", self.mean, self.var, self.learned)
    }

    /// From the stored form; `None` for anything else (treated as nothing learned).
    pub fn decode(s: &str) -> Option<Baseline> {
        let mut it = s.split(':');
        let b = Baseline {
            mean: it.next()?.parse().ok()?,
            var: it.next()?.parse().ok()?,
            learned: it.next()?.parse().ok()?,
        };
        (it.next().is_none() && b.mean.is_finite() && b.var.is_finite() && b.mean >= 0.0)
            .then_some(b)
    }
}

/// The smoothing factor whose weights halve every `half_life` windows:
/// `(1 − α)^h = ½`, so `α = 1 − 2^(−1/h)`.
pub fn alpha(half_life: u64) -> f64 {
    1.0 - 0.5f64.powf(1.0 / half_life.max(1) as f64)
}

/// What a threshold was derived from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// Fewer than `min_history` windows learned: the fixed ceiling.
    ColdStart,
    /// The learned baseline.
    Baseline,
    /// Cold start, judged by the baseline of the principal's peer group (its role).
    PeerGroup,
}

impl Basis {
    /// `cold_start` or `baseline`.
    pub fn as_str(self) -> &'static str {
        match self {
            Basis::ColdStart => "cold_start",
            Basis::Baseline => "baseline",
            Basis::PeerGroup => "peer_group",
        }
    }
}

/// The count at or above which a window alerts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    /// The count.
    pub value: f64,
    /// Where it came from.
    pub basis: Basis,
}

/// The threshold of `signal` for a principal with baseline `b`.
pub fn threshold(a: &AnomalySettings, signal: &SignalSettings, b: &Baseline) -> Threshold {
    if b.learned < a.min_history {
        return Threshold {
            value: signal.cold_start_ceiling as f64,
            basis: Basis::ColdStart,
        };
    }
    let spread = b.spread().max(b.mean.sqrt());
    let value = (signal.floor as f64)
        .max(a.k * b.mean)
        .max(b.mean + a.z * spread);
    Threshold {
        value,
        basis: Basis::Baseline,
    }
}

/// [`threshold`], except that a principal still in cold start whose peer group (its role)
/// has `min_history` samples is judged by the peer group's baseline instead of the fixed
/// ceiling (`baseline.peer_group: true`; Sentinel and QRadar fall back on peers the same way).
pub fn threshold_with_peer(
    a: &AnomalySettings,
    signal: &SignalSettings,
    b: &Baseline,
    peer: Option<&Baseline>,
) -> Threshold {
    match peer {
        Some(p) if b.learned < a.min_history && p.learned >= a.min_history => Threshold {
            basis: Basis::PeerGroup,
            ..threshold(a, signal, p)
        },
        _ => threshold(a, signal, b),
    }
}

/// Whether `observed` alerts against `t`.
pub fn alerts(observed: u64, t: &Threshold) -> bool {
    observed as f64 >= t.value
}

/// The baseline after window `window` ended with `count`: unchanged when the window was
/// flagged or idle, else one more sample. Callers pass only windows before the current one.
pub fn learn(b: Baseline, count: u64, flagged: bool, alpha: f64) -> Baseline {
    let mut b = b;
    if count > 0 && !flagged {
        b.learn(count as f64, alpha);
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AnomalyMode, Signal, SuspensionSettings};
    use std::time::Duration;

    fn settings(min_history: u64) -> AnomalySettings {
        AnomalySettings {
            mode: AnomalyMode::Monitor,
            window: Duration::from_secs(3600),
            sub_windows: 12,
            signals: Vec::new(),
            k: 3.0,
            z: 4.0,
            min_history,
            half_life_windows: 168,
            peer_group: true,
            suspension: SuspensionSettings {
                ttl: Duration::from_secs(3600),
                when: Vec::new(),
                high_tier_factor: 3.0,
                escalation: Duration::from_secs(86_400),
            },
            fail_closed_routes: Vec::new(),
        }
    }

    const SIG: SignalSettings = SignalSettings {
        signal: Signal::PatientRequests,
        enabled: true,
        floor: 50,
        cold_start_ceiling: 400,
    };

    fn learned(counts: &[u64], a: f64) -> Baseline {
        counts
            .iter()
            .fold(Baseline::EMPTY, |b, c| learn(b, *c, false, a))
    }

    #[test]
    fn ewma_follows_finch_and_halves_at_the_half_life() {
        let a = alpha(1);
        assert!((a - 0.5).abs() < 1e-12);
        let mut b = Baseline::EMPTY;
        b.learn(10.0, a);
        assert_eq!((b.mean, b.var, b.learned), (10.0, 0.0, 1));
        b.learn(20.0, a);
        // diff 10, incr 5: mean 15, var (1-0.5)(0 + 10·5) = 25.
        assert_eq!((b.mean, b.var), (15.0, 25.0));
        assert_eq!(b.spread(), 5.0);
        // A week of identical hours: mean is the count, spread 0.
        let steady = learned(&[40; 168], alpha(168));
        assert!((steady.mean - 40.0).abs() < 1e-9 && steady.spread() < 1e-9);
        assert_eq!(Baseline::decode(&steady.encode()), Some(steady));
        assert_eq!(Baseline::decode("1:2"), None);
        assert_eq!(Baseline::decode("NaN:0:3"), None);
    }

    /// Cold start: a fixed ceiling until `min_history` windows are learned, whatever they were.
    #[test]
    fn cold_start_uses_the_ceiling_until_min_history() {
        let s = settings(3);
        let b = learned(&[1, 1], alpha(168));
        let t = threshold(&s, &SIG, &b);
        assert_eq!((t.value, t.basis), (400.0, Basis::ColdStart));
        assert!(!alerts(399, &t) && alerts(400, &t));
        let b = learned(&[1, 1, 1], alpha(168));
        assert_eq!(threshold(&s, &SIG, &b).basis, Basis::Baseline);
    }

    /// The threshold is the largest of floor, k·mean and mean + z·spread (spread at least the
    /// Poisson √mean): never a bare "3 × average".
    #[test]
    fn threshold_is_the_max_of_floor_k_mean_and_z_spread() {
        let s = settings(1);
        // Quiet principal: 2 an hour. 3 × 2 = 6 would alert on a normal busy hour; the floor wins.
        let quiet = learned(&[2; 30], alpha(168));
        assert_eq!(threshold(&s, &SIG, &quiet).value, 50.0);
        // Steady 100 an hour: k·mean = 300 beats 100 + 4·√100 = 140 and the floor.
        let steady = learned(&[100; 30], alpha(168));
        assert!((threshold(&s, &SIG, &steady).value - 300.0).abs() < 1e-6);
        // Erratic principal: mean + z·σ wins over k·mean.
        let erratic = learned(&[10, 200, 10, 200, 10, 200], alpha(2));
        let t = threshold(&s, &SIG, &erratic);
        let expect = erratic.mean + 4.0 * erratic.spread();
        assert!(erratic.spread() > erratic.mean.sqrt());
        assert!((t.value - expect).abs() < 1e-6 && t.value > 3.0 * erratic.mean);
    }

    /// A flagged window is never learned, nor an idle one: a ramp of alerts cannot raise the
    /// baseline, and off-shift zeros do not lower it.
    /// Cold start with a learned peer group: the role's baseline judges, not the ceiling; a
    /// peer group still in cold start itself leaves the ceiling.
    #[test]
    fn a_cold_principal_is_judged_by_its_learned_peer_group() {
        let s = settings(3);
        let cold = learned(&[1], alpha(168));
        let peers = learned(&[20; 10], alpha(168));
        let t = threshold_with_peer(&s, &SIG, &cold, Some(&peers));
        assert_eq!(t.basis, Basis::PeerGroup);
        assert!((t.value - 60.0).abs() < 1e-6, "{t:?}");
        let young = learned(&[20; 2], alpha(168));
        assert_eq!(
            threshold_with_peer(&s, &SIG, &cold, Some(&young)).basis,
            Basis::ColdStart
        );
        let warm = learned(&[5; 3], alpha(168));
        assert_eq!(
            threshold_with_peer(&s, &SIG, &warm, Some(&peers)).basis,
            Basis::Baseline,
            "a principal with its own history is judged by it"
        );
    }

    #[test]
    fn flagged_and_idle_windows_are_not_learned() {
        let a = alpha(168);
        let b = learned(&[20; 10], a);
        assert_eq!(
            learn(b, 5_000, true, a),
            b,
            "a flagged window taught the baseline"
        );
        assert_eq!(
            learn(b, 0, false, a),
            b,
            "an idle window lowered the baseline"
        );
        let after = learn(b, 25, false, a);
        assert_eq!(after.learned, 11);
        assert!(after.mean > b.mean);
    }
}
