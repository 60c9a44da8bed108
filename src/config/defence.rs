//! The `defence:` section: access-anomaly detection and containment (issue 12 §1; see
//! `crate::defence` and docs/defence.md). The raw YAML types live here too, so the section is
//! one file, except `defence.webhook` (alert delivery), validated by `super::webhook`.
//!
//! Process-wide: a change needs a restart (the detector and its suspension cache start once).
//! Every default is a named constant with the reason in docs/defence.md.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::validate::{bounded, Located};
use super::Route;
use crate::engine::source::{SourceError, Spanned};

/// Default `window_seconds`: the sliding hour of the issue.
pub const DEFAULT_WINDOW_SECONDS: u64 = 3_600;
/// Default `sub_windows`: 12 five-minute counters make the sliding hour (error ≤ one).
pub const DEFAULT_SUB_WINDOWS: u64 = 12;
/// Default `baseline.k`: the seed's "3 × average".
pub const DEFAULT_K: f64 = 3.0;
/// Default `baseline.z`: standard deviations above the mean.
pub const DEFAULT_Z: f64 = 4.0;
/// Default `baseline.min_history`: active windows learned before the baseline judges
/// (Splunk's detections need 16 samples; a day of hourly windows is more).
pub const DEFAULT_MIN_HISTORY: u64 = 24;
/// Default `baseline.half_life_windows`: a week of hourly windows.
pub const DEFAULT_HALF_LIFE_WINDOWS: u64 = 168;
/// Default `suspension.ttl_seconds`: an hour, longer than the default access token lifetime.
pub const DEFAULT_SUSPENSION_TTL_SECONDS: u64 = 3_600;
/// Default `suspension.high_tier_factor`: a count this many times the threshold suspends at
/// once (where `suspension.when` lists `high_tier`).
pub const DEFAULT_HIGH_TIER_FACTOR: f64 = 3.0;
/// Default `suspension.escalation_seconds`: a second trigger within a day suspends.
pub const DEFAULT_ESCALATION_SECONDS: u64 = 86_400;

/// The signals, their names (metric label, incident record) and default floor and
/// cold-start ceiling, per window.
pub const SIGNALS: [(Signal, &str, u64, u64); 4] = [
    (Signal::PatientRequests, "patient_requests", 200, 600),
    (Signal::DistinctPatients, "distinct_patients", 30, 100),
    (Signal::Blocked, "blocked", 20, 60),
    (Signal::RecordsReturned, "records_returned", 5_000, 20_000),
];

/// One counted signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signal {
    /// Requests to patient data that were forwarded.
    PatientRequests,
    /// Distinct patients touched (HyperLogLog of patient fingerprints).
    DistinctPatients,
    /// Requests refused for PHI, scope or compartment (IDOR) reasons.
    Blocked,
    /// Resources returned in FHIR JSON answers to patient-data requests (Bundle entries).
    RecordsReturned,
}

impl Signal {
    /// The stable name (`patient_requests`, `distinct_patients`, `blocked`,
    /// `records_returned`).
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::PatientRequests => "patient_requests",
            Signal::DistinctPatients => "distinct_patients",
            Signal::Blocked => "blocked",
            Signal::RecordsReturned => "records_returned",
        }
    }
}

/// `monitor`: alert only; `enforce`: alert and contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnomalyMode {
    /// Alert only.
    Monitor,
    /// Alert and suspend (graded by [`SuspensionSettings::when`]).
    Enforce,
}

/// One signal's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SignalSettings {
    /// Which signal.
    pub signal: Signal,
    /// Counted and judged.
    pub enabled: bool,
    /// The absolute floor: never an alert below this count per window.
    pub floor: u64,
    /// Before `min_history` windows are learned: alert at this count (and at the floor).
    pub cold_start_ceiling: u64,
}

/// What suspends a principal in `enforce` mode (any listed condition).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuspendWhen {
    /// Every alert suspends.
    FirstTrigger,
    /// The second alert within `escalation_seconds`.
    SecondTrigger,
    /// An alert whose count is at least `high_tier_factor` × its threshold.
    HighTier,
}

/// `suspension:`.
#[derive(Debug, Clone, PartialEq)]
pub struct SuspensionSettings {
    /// How long a suspension lasts unless reinstated.
    pub ttl: Duration,
    /// What suspends.
    pub when: Vec<SuspendWhen>,
    /// See [`SuspendWhen::HighTier`].
    pub high_tier_factor: f64,
    /// See [`SuspendWhen::SecondTrigger`].
    pub escalation: Duration,
}

/// The validated `defence.anomaly` section.
#[derive(Debug, Clone, PartialEq)]
pub struct AnomalySettings {
    /// monitor or enforce.
    pub mode: AnomalyMode,
    /// The sliding window ("hour").
    pub window: Duration,
    /// Fixed sub-windows making up the window.
    pub sub_windows: u64,
    /// The signals in [`SIGNALS`] order.
    pub signals: Vec<SignalSettings>,
    /// Multiple of the mean.
    pub k: f64,
    /// Spreads above the mean.
    pub z: f64,
    /// Active windows learned before the baseline judges.
    pub min_history: u64,
    /// The weight of a window halves after this many later windows.
    pub half_life_windows: u64,
    /// Judge a principal in cold start by its peer group's (role's) baseline once that has
    /// `min_history` samples, instead of the fixed ceiling.
    pub peer_group: bool,
    /// Containment.
    pub suspension: SuspensionSettings,
    /// Routes (by index) refused with 503 while counting fails, instead of failing open.
    pub fail_closed_routes: Vec<usize>,
}

impl AnomalySettings {
    /// The length of one sub-window.
    pub fn sub_window(&self) -> Duration {
        self.window / u32::try_from(self.sub_windows.max(1)).unwrap_or(u32::MAX)
    }
}

/// `defence:` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDefence {
    #[serde(default)]
    pub(super) anomaly: Option<RawAnomaly>,
    /// Where incident alerts go (`super::webhook`).
    #[serde(default)]
    pub(super) webhook: Option<super::webhook::RawWebhook>,
}

/// `defence.anomaly:` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAnomaly {
    pub(super) mode: Option<Spanned<String>>,
    pub(super) window_seconds: Option<Spanned<u64>>,
    pub(super) sub_windows: Option<Spanned<u64>>,
    #[serde(default)]
    pub(super) signals: RawSignals,
    #[serde(default)]
    pub(super) baseline: RawBaseline,
    #[serde(default)]
    pub(super) suspension: RawSuspension,
    #[serde(default)]
    pub(super) fail_closed_routes: Vec<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSignals {
    pub(super) patient_requests: Option<RawSignal>,
    pub(super) distinct_patients: Option<RawSignal>,
    pub(super) blocked: Option<RawSignal>,
    pub(super) records_returned: Option<RawSignal>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSignal {
    pub(super) enabled: Option<bool>,
    pub(super) floor: Option<Spanned<u64>>,
    pub(super) cold_start_ceiling: Option<Spanned<u64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBaseline {
    pub(super) k: Option<Spanned<f64>>,
    pub(super) z: Option<Spanned<f64>>,
    pub(super) min_history: Option<Spanned<u64>>,
    pub(super) half_life_windows: Option<Spanned<u64>>,
    pub(super) peer_group: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSuspension {
    pub(super) ttl_seconds: Option<Spanned<u64>>,
    pub(super) when: Option<Vec<Spanned<String>>>,
    pub(super) high_tier_factor: Option<Spanned<f64>>,
    pub(super) escalation_seconds: Option<Spanned<u64>>,
}

/// `v` within `[min, max]`, else an error naming `field`.
fn bounded_f64(
    file: &Path,
    v: Option<&Spanned<f64>>,
    default: f64,
    (min, max): (f64, f64),
    field: &str,
) -> Result<f64, SourceError> {
    match v {
        None => Ok(default),
        Some(s) if !(min..=max).contains(&s.value) => Err(s.error(
            file,
            field,
            format!("must be between {min} and {max}, got {}", s.value),
        )),
        Some(s) => Ok(s.value),
    }
}

/// Validates `defence:`; `None` when detection is off (no section, or `mode: off`).
pub(super) fn validate_defence(
    file: &Path,
    raw: Option<&RawDefence>,
    routes: &[Route],
) -> Result<Option<AnomalySettings>, SourceError> {
    let Some(a) = raw.and_then(|d| d.anomaly.as_ref()) else {
        return Ok(None);
    };
    let f = |name: &str| format!("defence.anomaly.{name}");
    let num = |v: &Option<Spanned<u64>>, default: u64, min: u64, max: u64, name: &str| {
        bounded(v.as_ref(), default, min, max).map_err(|(s, m)| s.error(file, &f(name), m))
    };
    let mode = match a.mode.as_ref().map(|m| (m, m.value.as_str())) {
        None | Some((_, "monitor")) => AnomalyMode::Monitor,
        Some((_, "enforce")) => AnomalyMode::Enforce,
        Some((_, "off")) => return Ok(None),
        Some((m, other)) => {
            return Err(m.error(
                file,
                &f("mode"),
                format!("unknown mode `{other}` (expected `monitor`, `enforce` or `off`)"),
            ))
        }
    };
    let window = num(
        &a.window_seconds,
        DEFAULT_WINDOW_SECONDS,
        2,
        7 * 86_400,
        "window_seconds",
    )?;
    let sub_windows = num(&a.sub_windows, DEFAULT_SUB_WINDOWS, 1, 60, "sub_windows")?;
    if window % sub_windows != 0 {
        if let Some(s) = &a.sub_windows {
            return Err(s.error(
                file,
                &f("sub_windows"),
                format!("must divide window_seconds ({window}) evenly"),
            ));
        }
    }
    let raws = [
        &a.signals.patient_requests,
        &a.signals.distinct_patients,
        &a.signals.blocked,
        &a.signals.records_returned,
    ];
    let mut signals = Vec::new();
    for ((signal, name, floor, ceiling), raw) in SIGNALS.into_iter().zip(raws) {
        let default = RawSignal::default();
        let r = raw.as_ref().unwrap_or(&default);
        let at = |x: &str| format!("signals.{name}.{x}");
        let floor = num(&r.floor, floor, 1, 10_000_000, &at("floor"))?;
        let cold_start_ceiling = num(
            &r.cold_start_ceiling,
            ceiling.max(floor),
            floor,
            10_000_000,
            &at("cold_start_ceiling"),
        )?;
        signals.push(SignalSettings {
            signal,
            enabled: r.enabled.unwrap_or(true),
            floor,
            cold_start_ceiling,
        });
    }
    let b = &a.baseline;
    let k = bounded_f64(
        file,
        b.k.as_ref(),
        DEFAULT_K,
        (1.0, 1_000.0),
        &f("baseline.k"),
    )?;
    let z = bounded_f64(
        file,
        b.z.as_ref(),
        DEFAULT_Z,
        (0.0, 100.0),
        &f("baseline.z"),
    )?;
    let min_history = num(
        &b.min_history,
        DEFAULT_MIN_HISTORY,
        1,
        10_000,
        "baseline.min_history",
    )?;
    let half_life_windows = num(
        &b.half_life_windows,
        DEFAULT_HALF_LIFE_WINDOWS,
        1,
        100_000,
        "baseline.half_life_windows",
    )?;
    let s = &a.suspension;
    let ttl = num(
        &s.ttl_seconds,
        DEFAULT_SUSPENSION_TTL_SECONDS,
        1,
        30 * 86_400,
        "suspension.ttl_seconds",
    )?;
    let when = match &s.when {
        None => vec![SuspendWhen::SecondTrigger, SuspendWhen::HighTier],
        Some(list) => {
            let mut out = Vec::new();
            for w in list {
                out.push(match w.value.as_str() {
                    "first_trigger" => SuspendWhen::FirstTrigger,
                    "second_trigger" => SuspendWhen::SecondTrigger,
                    "high_tier" => SuspendWhen::HighTier,
                    other => return Err(w.error(
                        file,
                        &f("suspension.when"),
                        format!("unknown condition `{other}` (expected `first_trigger`, `second_trigger` or `high_tier`)"),
                    )),
                });
            }
            out
        }
    };
    let high_tier_factor = bounded_f64(
        file,
        s.high_tier_factor.as_ref(),
        DEFAULT_HIGH_TIER_FACTOR,
        (1.0, 1_000.0),
        &f("suspension.high_tier_factor"),
    )?;
    let escalation = num(
        &s.escalation_seconds,
        DEFAULT_ESCALATION_SECONDS,
        1,
        30 * 86_400,
        "suspension.escalation_seconds",
    )?;
    let mut fail_closed_routes = Vec::new();
    for name in &a.fail_closed_routes {
        match routes.iter().position(|r| r.name == name.value) {
            Some(i) => fail_closed_routes.push(i),
            None => {
                return Err(name.error(
                    file,
                    &f("fail_closed_routes"),
                    format!("no route named `{}`", name.value),
                ))
            }
        }
    }
    Ok(Some(AnomalySettings {
        mode,
        window: Duration::from_secs(window),
        sub_windows,
        signals,
        k,
        z,
        min_history,
        half_life_windows,
        peer_group: b.peer_group.unwrap_or(false),
        suspension: SuspensionSettings {
            ttl: Duration::from_secs(ttl),
            when,
            high_tier_factor,
            escalation: Duration::from_secs(escalation),
        },
        fail_closed_routes,
    }))
}
