//! Raising an incident: one per principal per fixed window across the fleet (`SET … NX` on
//! `v:alert:<win>`, so a burst split across replicas raises it once; a burst that crosses a
//! window boundary can raise one in each window, which counts as a second trigger), the
//! windows it covers flagged (never learned), the graded containment decision, then the
//! CRITICAL audit record, `phi_gateway_anomalies_total{signal,action}`, an ERROR log line and
//! the alert for the notifier (`defence.webhook`, when configured). Nothing here holds PHI: the principal is its keyed key, the evidence request ids.

use std::time::Duration;

use super::detector::{ms, Clock, Hit};
use super::webhook::Alert;
use super::{Defence, Observation};
use crate::audit::{IncidentRecord, IncidentSignal};
use crate::config::{AnomalyMode, SuspendWhen};
use crate::state::StateKey;

fn rfc3339(ms: u64) -> String {
    use time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

impl Defence {
    pub(super) async fn raise(&self, obs: &Observation, c: Clock, hits: Vec<Hit>, now: u64) {
        let p = &obs.principal;
        let window = self.settings.window;
        let s = &self.settings.suspension;
        let high = hits
            .iter()
            .any(|h| h.observed as f64 >= s.high_tier_factor * h.threshold.value);
        let escalates = self.settings.mode == AnomalyMode::Enforce
            && s.when.contains(&SuspendWhen::HighTier)
            && high;
        // One incident per principal and window, fleet-wide, and one more if the count goes
        // on to the high tier. A store that fails here answered a moment ago: the incident
        // is raised (a duplicate beats a lost one).
        let (alert, alert_high) = (
            StateKey::value(p, "alert", Some(c.win)),
            StateKey::value(p, "alert_high", Some(c.win)),
        );
        // What this replica already knows was raised in this window (by it or another
        // replica): a principal over its threshold costs no more round trips per request.
        let (known, known_high) = self.raised_in(p, c.win);
        if known && (!escalates || known_high) {
            return;
        }
        let first = !known && !matches!(self.store.set_nx(&alert, window * 2).await, Ok(false));
        self.mark_raised(p, c.win, false);
        if !first {
            // Already raised in this window: only the high tier raises another.
            let again =
                escalates && !matches!(self.store.set_nx(&alert_high, window * 2).await, Ok(false));
            if escalates {
                self.mark_raised(p, c.win, true);
            }
            if !again {
                return;
            }
        }
        // The sliding window spans this fixed window and the one before: neither is learned.
        for w in [c.win, c.win.saturating_sub(1)] {
            let _ = self
                .store
                .set_nx(&StateKey::value(p, "flag", Some(w)), window * 3)
                .await;
        }
        let Some(primary) = hits
            .iter()
            .max_by(|a, b| {
                let r = |h: &Hit| h.observed as f64 / h.threshold.value.max(1.0);
                r(a).total_cmp(&r(b))
            })
            .cloned()
        else {
            return;
        };
        let suspend = self.settings.mode == AnomalyMode::Enforce
            && (escalates || self.graded(p, first, now).await);
        let until = if suspend {
            let u = self
                .suspensions
                .suspend(&self.store, p, self.settings.suspension.ttl)
                .await;
            self.metrics
                .principals_suspended
                .set(self.suspensions.len() as i64);
            Some(u)
        } else {
            None
        };
        let action = if suspend { "suspend" } else { "alert" };
        let id = uuid::Uuid::new_v4().to_string();
        let refs = self.evidence(p);
        let signal = primary.signal.as_str();
        self.metrics
            .anomalies
            .with_label_values(&[signal, action])
            .inc();
        tracing::error!(
            target: "phi_gateway::defence",
            severity = "CRITICAL",
            incident = %id,
            principal = p.as_str(),
            principal_kind = obs.kind.as_str(),
            signal,
            observed = primary.observed,
            threshold = primary.threshold.value,
            expected = primary.baseline.mean,
            basis = primary.threshold.basis.as_str(),
            action,
            "access anomaly"
        );
        if let Some(audit) = &self.audit {
            let record = audit.incident_record(IncidentRecord {
                id: id.clone(),
                kind: "phi_gateway.access_anomaly".into(),
                severity: "critical".into(),
                rule: "access_anomaly".into(),
                signal: signal.into(),
                principal: p.as_str().into(),
                principal_kind: obs.kind.as_str().into(),
                window_seconds: window.as_secs(),
                signals: hits
                    .iter()
                    .map(|h| IncidentSignal {
                        signal: h.signal.as_str().into(),
                        observed: h.observed,
                        threshold: h.threshold.value,
                        expected: h.baseline.mean,
                        spread: h.baseline.spread(),
                        basis: h.threshold.basis.as_str().into(),
                        history: h.baseline.learned,
                    })
                    .collect(),
                action: action.into(),
                suspended_until: until.map(rfc3339),
                gateway: self.gateway.clone(),
                audit_refs: refs.clone(),
            });
            if !audit.record(record).await {
                tracing::error!(target: "phi_gateway::defence", incident = %id, "the incident record could not be written to the audit trail");
            }
        }
        let alert = Alert {
            id,
            name: "PhiGatewayAccessAnomaly",
            severity: "critical",
            summary: format!(
                "access anomaly: {signal} {} in {} s (threshold {:.0}); action {action}",
                primary.observed,
                window.as_secs(),
                primary.threshold.value
            ),
            principal: p.as_str().into(),
            principal_kind: obs.kind.as_str(),
            signal,
            observed: primary.observed,
            threshold: primary.threshold.value,
            action,
            starts_at_ms: now,
            gateway: self.gateway.clone(),
            audit_refs: refs,
        };
        match &self.notifier {
            Some(n) => n.notify(alert),
            None => {
                tracing::debug!(target: "phi_gateway::defence", incident = %alert.id, "no defence.webhook: the alert is in the audit trail, the log and the metric only")
            }
        }
    }

    /// Whether a window's first incident suspends (enforce mode) by `first_trigger` or
    /// `second_trigger`; `high_tier` is judged by the caller. Every first incident counts as
    /// a trigger in the escalation period, whatever it decides.
    async fn graded(&self, p: &crate::state::Principal, first: bool, now: u64) -> bool {
        let s = &self.settings.suspension;
        if !first {
            return false;
        }
        let esc_ms = ms(s.escalation).max(1);
        let triggers = self
            .store
            .incr(
                &StateKey::counter(p, "triggers", now / esc_ms),
                1,
                s.escalation + Duration::from_secs(1),
            )
            .await
            .unwrap_or(1);
        s.when.iter().any(|w| match w {
            SuspendWhen::FirstTrigger => true,
            SuspendWhen::SecondTrigger => triggers >= 2,
            SuspendWhen::HighTier => false,
        })
    }
}
