//! Runtime defence (issue 12 §1): access-anomaly detection and containment.
//!
//! Each request the gateway finished is an [`Observation`] of one principal (the verified
//! token's user, else the configured `user_id` source, else the client address, and it says
//! which). [`Defence::observe`] counts its signals in the shared [`Store`] — requests to
//! patient data, distinct patients (a HyperLogLog of keyed patient fingerprints) and blocked
//! requests — in fixed sub-windows summed into a sliding window, judges the sliding count
//! against the principal's learned baseline (`baseline`), and raises an incident when one
//! crosses: a CRITICAL audit record, `phi_gateway_anomalies_total{signal,action}`, an ERROR
//! log line and an alert for the notifier (`incident`). In `enforce` mode an incident can
//! also suspend the principal (`containment`), graded so one busy hour does not lock a
//! clinician out: the gateway then answers 403 `principal_suspended` until the suspension
//! ends or an operator reinstates it.
//!
//! One design reason: the request never waits for any of this. Counting runs after the
//! answer (spawned from `logging`), one pipelined round trip bounded by `state.timeout_ms`,
//! and fails open (counted in `phi_gateway_anomaly_observations_total{result="failed_open"}`,
//! `/readyz` degraded) unless the route is listed in `fail_closed_routes`. The suspension
//! check reads a per-replica copy of the fleet's suspension list, refreshed every
//! [`REFRESH_EVERY`], so a suspension made on one gateway is enforced by every other within a
//! second, and stays enforced while Redis is down.
//!
//! [`webhook`] delivers the incidents' alerts to an Alertmanager-compatible or a generic signed
//! receiver, through a bounded queue drained by a thread of its own: a dead receiver costs
//! dropped alerts (counted in `phi_gateway_alert_deliveries_total`), never request latency.
//!
//! May use `engine`, `telemetry`, `verdict`, `config`, `audit` and `state`; never `access`,
//! `gateway` or `runtime` (tests/layout.rs). The gateway calls it (`gateway/defence.rs`), the
//! runtime starts it and serves its admin endpoints. Nothing here carries PHI: principals and
//! patients are keyed fingerprints, alerts hold counts and gateway-made request ids only.

mod baseline;
mod containment;
mod detector;
mod incident;
pub mod records;
pub mod webhook;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::audit::AuditLog;
use crate::config::AnomalySettings;
use crate::state::{Principal, StateError, Store};
use crate::telemetry::Metrics;

pub use baseline::{
    alerts, alpha, learn, threshold, threshold_with_peer, Baseline, Basis, Threshold,
};
pub use webhook::{Alert, Notifier};

/// How often each replica copies the fleet's suspension list.
pub const REFRESH_EVERY: Duration = Duration::from_millis(500);

/// Most principals whose recent request ids are kept for an incident's `audit_refs`.
pub const MAX_RECENT_PRINCIPALS: usize = 10_000;
/// Request ids kept per principal.
pub const RECENT_PER_PRINCIPAL: usize = 16;

/// Who a principal is, as the incident and the admin listing say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalKind {
    /// A user: the token's subject, or the configured `user_id` source.
    User,
    /// Anonymous traffic, counted per client address.
    ClientAddress,
}

impl PrincipalKind {
    /// `user` or `client_address`.
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::User => "user",
            PrincipalKind::ClientAddress => "client_address",
        }
    }
}

/// What one finished request tells the detector. Holds fingerprints only.
#[derive(Debug, Clone)]
pub struct Observation {
    /// Whose request it was.
    pub principal: Principal,
    /// What kind of principal.
    pub kind: PrincipalKind,
    /// A request to patient data that was forwarded.
    pub patient_data: bool,
    /// The patient it touched, as a keyed fingerprint of `Patient/{id}`.
    pub patient: Option<Principal>,
    /// Refused (or would have been, in monitor) for PHI, scope or compartment reasons.
    pub blocked: bool,
    /// Resources the answer carried to the client (FHIR JSON Bundle entries,
    /// [`records::RecordCounter`]), for `records_returned`; 0 when not counted.
    pub records: u64,
    /// The principal's peer group (its first role, as a keyed fingerprint), if known.
    pub peer: Option<Principal>,
    /// The request id (the audit record's), kept for the incident's evidence.
    pub request_id: String,
}

/// The detector and its containment, process-wide (started once, not reloaded).
pub struct Defence {
    settings: AnomalySettings,
    store: Arc<Store>,
    audit: Option<Arc<AuditLog>>,
    metrics: Metrics,
    gateway: String,
    suspensions: containment::Suspensions,
    /// Where incident alerts go (`defence.webhook`), if anywhere.
    notifier: Option<Notifier>,
    recent: Mutex<Recent>,
    /// Principal key → (window, high tier too) of the last incident this replica knows was
    /// raised; at most [`MAX_RECENT_PRINCIPALS`] (cleared when full: the store decides again).
    raised: Mutex<HashMap<String, (u64, bool)>>,
}

impl std::fmt::Debug for Defence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Defence")
            .field("mode", &self.settings.mode)
            .field("backend", &self.store.backend())
            .finish_non_exhaustive()
    }
}

/// What [`Defence::start`] cannot do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DefenceError {
    /// The refresh thread or its runtime could not be started.
    #[error("cannot start the suspension refresher: {0}")]
    Start(#[source] std::io::Error),
}

impl Defence {
    /// Starts the detector on `store` and the thread that keeps this replica's copy of the
    /// suspension list (ends with the `Defence`). `gateway` names this instance in incidents;
    /// `notifier` delivers their alerts.
    pub fn start(
        settings: AnomalySettings,
        store: Arc<Store>,
        audit: Option<Arc<AuditLog>>,
        metrics: Metrics,
        gateway: String,
        notifier: Option<Notifier>,
    ) -> Result<Arc<Defence>, DefenceError> {
        let d = Arc::new(Defence {
            settings,
            store,
            audit,
            metrics,
            gateway,
            suspensions: containment::Suspensions::default(),
            notifier,
            recent: Mutex::new(Recent::default()),
            raised: Mutex::new(HashMap::new()),
        });
        containment::spawn_refresher(Arc::downgrade(&d)).map_err(DefenceError::Start)?;
        Ok(d)
    }

    /// The settings.
    pub fn settings(&self) -> &AnomalySettings {
        &self.settings
    }

    /// The store (for the principal keys: [`Store::keyer`]).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Whether counting works now (the backend answered its last call); a fail-closed route
    /// refuses while it does not.
    pub fn counting_up(&self) -> bool {
        self.store.is_up()
    }

    /// Until when (Unix ms) `p` is suspended, if it is: from this replica's copy, no I/O.
    pub fn suspended_until(&self, p: &Principal) -> Option<u64> {
        self.suspensions.until(p.as_str(), crate::state::now_ms())
    }

    /// The suspended principals (key, until Unix ms), from this replica's copy.
    pub fn suspended(&self) -> Vec<(String, u64)> {
        self.suspensions.list(crate::state::now_ms())
    }

    /// Lifts `p`'s suspension, here and in the shared store. `Ok(false)`: it was not
    /// suspended. An error means the shared store failed: lifted here only.
    pub async fn reinstate(&self, p: &Principal) -> Result<bool, StateError> {
        let r = self.suspensions.reinstate(&self.store, p).await;
        self.metrics
            .principals_suspended
            .set(self.suspensions.len() as i64);
        if let Ok(true) = r {
            tracing::warn!(
                target: "phi_gateway::defence",
                principal = p.as_str(),
                "principal reinstated by an operator"
            );
        }
        r
    }

    /// Keeps `request_id` as evidence for an incident about `p` (bounded).
    fn remember(&self, p: &Principal, request_id: &str) {
        let mut g = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        g.push(p.as_str(), request_id);
    }

    /// The request ids kept for `p`, oldest first.
    fn evidence(&self, p: &Principal) -> Vec<String> {
        let g = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        g.map
            .get(p.as_str())
            .map(|v| v.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether an incident (and a high-tier one) is known raised for `p` in window `win`.
    fn raised_in(&self, p: &Principal, win: u64) -> (bool, bool) {
        let g = self.raised.lock().unwrap_or_else(|e| e.into_inner());
        match g.get(p.as_str()) {
            Some((w, high)) if *w == win => (true, *high),
            _ => (false, false),
        }
    }

    fn mark_raised(&self, p: &Principal, win: u64, high: bool) {
        let mut g = self.raised.lock().unwrap_or_else(|e| e.into_inner());
        if g.len() >= MAX_RECENT_PRINCIPALS && !g.contains_key(p.as_str()) {
            g.clear();
        }
        let e = g.entry(p.as_str().to_string()).or_insert((win, false));
        if e.0 != win {
            *e = (win, false);
        }
        e.1 |= high;
    }

    /// Principals whose request ids are kept (tests of the bound).
    pub fn recent_principals(&self) -> usize {
        let g = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        g.map.len()
    }
}

/// Recent request ids per principal: at most [`MAX_RECENT_PRINCIPALS`] principals (the oldest
/// first in goes first), [`RECENT_PER_PRINCIPAL`] ids each.
#[derive(Debug, Default)]
struct Recent {
    map: HashMap<String, VecDeque<String>>,
    order: VecDeque<String>,
}

impl Recent {
    fn push(&mut self, key: &str, request_id: &str) {
        if !self.map.contains_key(key) {
            while self.map.len() >= MAX_RECENT_PRINCIPALS {
                let Some(old) = self.order.pop_front() else {
                    break;
                };
                self.map.remove(&old);
            }
            self.order.push_back(key.to_string());
        }
        let ids = self.map.entry(key.to_string()).or_default();
        if ids.len() >= RECENT_PER_PRINCIPAL {
            ids.pop_front();
        }
        ids.push_back(request_id.to_string());
    }
}

#[cfg(test)]
mod tests;
