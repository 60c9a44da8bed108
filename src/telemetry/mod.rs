//! Prometheus metrics: the one registry every capability counts into and the admin listener
//! renders. A leaf: it uses no other folder, so `gateway`, `audit` and `runtime` can all hold
//! a [`Metrics`] handle without an import circle.
//!
//! All metrics live in one [`Registry`] owned by [`Metrics`] (not the crate-global default),
//! so two gateways in one process never share counters. We use the `prometheus` crate through
//! `pingora_prometheus::prometheus` so the version always matches pingora's (pingora#636: a
//! second `prometheus` major silently makes a second registry).
//!
//! Labels are bounded by construction: `route` is a configured route name or `unmatched`,
//! `rule` is a loaded rule id, `decision`, `reason` and `mode` come from small enums. No label
//! ever holds a path, host, client address, user, header value or matched value.

use pingora_prometheus::prometheus::{
    self, Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Request duration buckets (seconds): the OpenTelemetry HTTP advice, plus sub-millisecond
/// steps because a proxy's own overhead lives there.
const REQUEST_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
    7.5, 10.0,
];
/// Inspection duration buckets (seconds): rule evaluation only.
const INSPECTION_BUCKETS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1,
];

/// Every metric the gateway exports.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Requests by route and decision.
    pub requests: IntCounterVec,
    /// Blocked and would-block requests by route and reason.
    pub rejections: IntCounterVec,
    /// Rule matches by rule id and effective mode.
    pub rule_matches: IntCounterVec,
    /// End-to-end request duration.
    pub request_duration: HistogramVec,
    /// Time spent in the detection engine per request.
    pub inspection_duration: Histogram,
    /// Upstream failures by route and reason.
    pub upstream_errors: IntCounterVec,
    /// Upstream answers the response leak guard acted on, by route and action.
    pub response_leaks: IntCounterVec,
    /// Response bytes held back right now, across requests (leak guard and compartment check).
    pub response_held_bytes: IntGauge,
    /// Requests being processed.
    pub in_flight: IntGauge,
    /// Clients too slow to send a request head or body, by phase (`header`, `body`).
    pub client_timeouts: IntCounterVec,
    /// Rules loaded.
    pub rules_loaded: IntGauge,
    /// Expiry of served certificates.
    pub cert_not_after: IntGaugeVec,
    /// Reload attempts by result (`success`, `failure`).
    pub config_reloads: IntCounterVec,
    /// Unix time of the last successful load (start-up counts as one).
    pub config_last_reload_success: IntGauge,
    /// Audit records that could not be written, by sink and kind.
    pub audit_write_errors: IntCounterVec,
    /// Audit records written, by sink.
    pub audit_records: IntCounterVec,
    /// Records waiting in the audit writer's queue.
    pub audit_queue_depth: IntGauge,
    /// Signed checkpoints written.
    pub audit_checkpoints: IntCounter,
    /// Unix time of the last signed checkpoint.
    pub audit_last_checkpoint: IntGauge,
    /// Key set fetches, by issuer name and result (`success`, `failure`).
    pub jwks_refresh: IntCounterVec,
    /// Age of the key set in use, by issuer name.
    pub jwks_age: IntGaugeVec,
    /// RFC 7662 introspections of opaque tokens, by issuer name and result (`active`,
    /// `inactive`, `refused`: active but its claims failed, `unavailable`).
    pub introspection: IntCounterVec,
    /// Access policy decisions, by decision (`allow`, `deny`, `would_deny`) and the policy's
    /// reason (a fixed set: `access::policy::Reason::all()`, `compartment_check_unavailable`,
    /// `break_glass`, `access::policy::ResponseEscape::all()`, `response_too_large`,
    /// `response_undecodable`, and the target check's `target_*` reasons).
    pub access_decisions: IntCounterVec,
    /// 1 while the state backend answers, by backend (`memory`, `redis`).
    pub state_backend_up: IntGaugeVec,
    /// Failed state backend calls, by operation and kind (`timeout`, `backend`, `protocol`).
    pub state_errors: IntCounterVec,
    /// Session checks, by result (`active`, `started`, `idle_timeout`, `expired`) and where
    /// they were answered (`shared`, `local`, `memory`).
    pub sessions: IntCounterVec,
    /// `phi_gateway_break_glass_total{event}`: break-glass time boxes started, accesses under
    /// one, and break-glass requests refused.
    pub break_glass: IntCounterVec,
    /// `phi_gateway_anomalies_total{signal,action}`: access anomalies raised (one incident
    /// each, counted under the signal that crossed furthest), by action (`alert`, `suspend`).
    pub anomalies: IntCounterVec,
    /// `phi_gateway_anomaly_observations_total{result}`: requests the detector counted
    /// (`counted`) or could not count because the state backend failed (`failed_open`).
    pub anomaly_observations: IntCounterVec,
    /// `phi_gateway_principals_suspended`: principals this instance enforces a suspension on.
    pub principals_suspended: IntGauge,
    /// `phi_gateway_anomaly_memory_entries`: keys the detector's memory store holds (at most
    /// `state.max_entries`; 0 with Redis).
    pub anomaly_memory_entries: IntGauge,
    /// `phi_gateway_alert_deliveries_total{format, result}`: incident alerts by webhook format
    /// (`alertmanager`, `generic`) and result (`delivered`, `failed`: every attempt failed or
    /// the receiver refused it, `dropped`: the delivery queue was full).
    pub alert_deliveries: IntCounterVec,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "phi_gateway_requests_total",
                "Requests handled, by route and decision (allow, block, would_block, error).",
            ),
            &["route", "decision"],
        )?;
        let rejections = IntCounterVec::new(
            Opts::new(
                "phi_gateway_rejections_total",
                "Blocked or would-block requests, by route and reason.",
            ),
            &["route", "reason"],
        )?;
        let rule_matches = IntCounterVec::new(
            Opts::new(
                "phi_gateway_rule_matches_total",
                "Requests in which a rule matched, by rule id and effective mode.",
            ),
            &["rule", "mode"],
        )?;
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "phi_gateway_request_duration_seconds",
                "Time from request start to the end of the response, by route and decision.",
            )
            .buckets(REQUEST_BUCKETS.to_vec()),
            &["route", "decision"],
        )?;
        let inspection_duration = Histogram::with_opts(
            HistogramOpts::new(
                "phi_gateway_inspection_duration_seconds",
                "Time spent in the detection engine per request (query, headers and body).",
            )
            .buckets(INSPECTION_BUCKETS.to_vec()),
        )?;
        let upstream_errors = IntCounterVec::new(
            Opts::new(
                "phi_gateway_upstream_errors_total",
                "Upstream failures, by route and reason (unavailable, timeout, error).",
            ),
            &["route", "reason"],
        )?;
        let response_leaks = IntCounterVec::new(
            Opts::new(
                "phi_gateway_response_leaks_total",
                "Upstream answers the response leak guard acted on, by route and action (block: replaced, would_block: monitor found a leak, cut: over the cap or undecodable in enforce, unscanned: the same in monitor).",
            ),
            &["route", "action"],
        )?;
        let response_held_bytes = IntGauge::new(
            "phi_gateway_response_held_bytes",
            "Response body bytes held back right now, across all requests (limits.response_hold_budget_bytes bounds it).",
        )?;
        let client_timeouts = IntCounterVec::new(
            Opts::new(
                "phi_gateway_client_timeouts_total",
                "Clients that did not deliver a request in time, by phase: header (connection closed) or body (answered 408).",
            ),
            &["phase"],
        )?;
        // Both series exist from the start, so a slowloris alert has a baseline of 0.
        for phase in ["header", "body"] {
            client_timeouts.with_label_values(&[phase]);
        }
        let in_flight = IntGauge::new(
            "phi_gateway_requests_in_flight",
            "Requests currently being processed.",
        )?;
        let rules_loaded = IntGauge::new("phi_gateway_rules_loaded", "Rules currently loaded.")?;
        let cert_not_after = IntGaugeVec::new(
            Opts::new(
                "phi_gateway_tls_cert_not_after_timestamp_seconds",
                "Expiry (Unix time) of the certificate served on a listener.",
            ),
            &["cert"],
        )?;
        let config_reloads = IntCounterVec::new(
            Opts::new(
                "phi_gateway_config_reloads_total",
                "Configuration and rule reload attempts, by result (success, failure).",
            ),
            &["result"],
        )?;
        // Both series exist from the start, so `increase(...{result="failure"}[5m])` works
        // before the first failure and dashboards show 0 rather than "no data".
        for result in ["success", "failure"] {
            config_reloads.with_label_values(&[result]);
        }
        let config_last_reload_success = IntGauge::new(
            "phi_gateway_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful configuration load (start-up or reload).",
        )?;
        let build_info = IntGaugeVec::new(
            Opts::new(
                "phi_gateway_build_info",
                "Build information; the value is always 1.",
            ),
            &["version", "revision"],
        )?;
        let audit_write_errors = IntCounterVec::new(
            Opts::new(
                "phi_gateway_audit_write_errors_total",
                "Audit records not written, by sink (file, postgres) and kind (write, fsync, checkpoint, queue_full, ack_timeout, writer_gone, connect, insert).",
            ),
            &["sink", "kind"],
        )?;
        let audit_records = IntCounterVec::new(
            Opts::new(
                "phi_gateway_audit_records_total",
                "Audit records written, by sink (file, postgres).",
            ),
            &["sink"],
        )?;
        let audit_queue_depth = IntGauge::new(
            "phi_gateway_audit_queue_depth",
            "Audit records waiting in the writer's bounded queue.",
        )?;
        let audit_checkpoints = IntCounter::new(
            "phi_gateway_audit_checkpoints_total",
            "Signed audit checkpoints written (including heartbeats).",
        )?;
        let audit_last_checkpoint = IntGauge::new(
            "phi_gateway_audit_last_checkpoint_timestamp_seconds",
            "Unix time of the last signed audit checkpoint.",
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), crate::REVISION])
            .set(1);

        let jwks_refresh = IntCounterVec::new(
            Opts::new(
                "phi_gateway_jwks_refresh_total",
                "Token issuer key set fetches, by configured issuer name and result (success, failure).",
            ),
            &["issuer", "result"],
        )?;
        let introspection = IntCounterVec::new(
            Opts::new(
                "phi_gateway_introspection_total",
                "Introspections of opaque tokens (RFC 7662), by configured issuer name and result (active, inactive, refused, unavailable).",
            ),
            &["issuer", "result"],
        )?;
        registry.register(Box::new(introspection.clone()))?;
        let jwks_age = IntGaugeVec::new(
            Opts::new(
                "phi_gateway_jwks_age_seconds",
                "Seconds since the key set in use for each token issuer was fetched.",
            ),
            &["issuer"],
        )?;
        let access_decisions = IntCounterVec::new(
            Opts::new(
                "phi_gateway_access_decisions_total",
                "Access policy decisions, by decision (allow, deny, would_deny) and the policy's reason (allowed, insufficient_scope, patient_mismatch, …).",
            ),
            &["decision", "reason"],
        )?;
        registry.register(Box::new(access_decisions.clone()))?;
        let state_backend_up = IntGaugeVec::new(
            Opts::new(
                "phi_gateway_state_backend_up",
                "1 while the shared-state backend answers within its timeout, 0 while it fails (sessions then come from the local copy).",
            ),
            &["backend"],
        )?;
        let state_errors = IntCounterVec::new(
            Opts::new(
                "phi_gateway_state_errors_total",
                "Failed shared-state backend calls, by operation and kind (timeout, backend, protocol).",
            ),
            &["op", "kind"],
        )?;
        let sessions = IntCounterVec::new(
            Opts::new(
                "phi_gateway_sessions_total",
                "Session checks of verified tokens, by result (active, started, idle_timeout, expired) and store (shared, local, memory).",
            ),
            &["result", "store"],
        )?;
        registry.register(Box::new(state_backend_up.clone()))?;
        registry.register(Box::new(state_errors.clone()))?;
        registry.register(Box::new(sessions.clone()))?;
        let break_glass = IntCounterVec::new(
            Opts::new(
                "phi_gateway_break_glass_total",
                "Break-glass events: started (a new time box, CRITICAL audit record), access (a request allowed under a box), refused (no justification, not eligible, PHI in the justification, no patient, audit unavailable).",
            ),
            &["event"],
        )?;
        registry.register(Box::new(break_glass.clone()))?;
        let anomalies = IntCounterVec::new(
            Opts::new(
                "phi_gateway_anomalies_total",
                "Access anomalies raised (a CRITICAL incident record each), by signal (patient_requests, distinct_patients, blocked) and action (alert, suspend).",
            ),
            &["signal", "action"],
        )?;
        let anomaly_observations = IntCounterVec::new(
            Opts::new(
                "phi_gateway_anomaly_observations_total",
                "Requests the access-anomaly detector counted (counted) or could not count because the state backend failed or was slower than its timeout (failed_open).",
            ),
            &["result"],
        )?;
        let principals_suspended = IntGauge::new(
            "phi_gateway_principals_suspended",
            "Principals this instance refuses with 403 principal_suspended (its copy of the fleet's suspension list).",
        )?;
        registry.register(Box::new(anomalies.clone()))?;
        registry.register(Box::new(anomaly_observations.clone()))?;
        registry.register(Box::new(principals_suspended.clone()))?;
        let anomaly_memory_entries = IntGauge::new(
            "phi_gateway_anomaly_memory_entries",
            "Keys the access-anomaly detector's in-memory store holds (bounded by state.max_entries; 0 with Redis).",
        )?;
        registry.register(Box::new(anomaly_memory_entries.clone()))?;
        for signal in [
            "patient_requests",
            "distinct_patients",
            "blocked",
            "records_returned",
        ] {
            for action in ["alert", "suspend"] {
                anomalies.with_label_values(&[signal, action]);
            }
        }
        for result in ["counted", "failed_open"] {
            anomaly_observations.with_label_values(&[result]);
        }
        // Every series from the start at 0, so `increase(...) > 0` alerts see a value.
        for event in ["started", "access", "refused"] {
            break_glass.with_label_values(&[event]);
        }
        let alert_deliveries = IntCounterVec::new(
            Opts::new(
                "phi_gateway_alert_deliveries_total",
                "Incident alerts sent by webhook, by format (alertmanager, generic) and result (delivered, failed, dropped: the delivery queue was full).",
            ),
            &["format", "result"],
        )?;
        registry.register(Box::new(alert_deliveries.clone()))?;
        registry.register(Box::new(jwks_refresh.clone()))?;
        registry.register(Box::new(jwks_age.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(rejections.clone()))?;
        registry.register(Box::new(rule_matches.clone()))?;
        registry.register(Box::new(request_duration.clone()))?;
        registry.register(Box::new(inspection_duration.clone()))?;
        registry.register(Box::new(upstream_errors.clone()))?;
        registry.register(Box::new(response_leaks.clone()))?;
        registry.register(Box::new(response_held_bytes.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        registry.register(Box::new(client_timeouts.clone()))?;
        registry.register(Box::new(rules_loaded.clone()))?;
        registry.register(Box::new(cert_not_after.clone()))?;
        registry.register(Box::new(config_reloads.clone()))?;
        registry.register(Box::new(config_last_reload_success.clone()))?;
        registry.register(Box::new(build_info))?;
        registry.register(Box::new(audit_write_errors.clone()))?;
        registry.register(Box::new(audit_records.clone()))?;
        registry.register(Box::new(audit_queue_depth.clone()))?;
        registry.register(Box::new(audit_checkpoints.clone()))?;
        registry.register(Box::new(audit_last_checkpoint.clone()))?;
        Ok(Self {
            registry,
            requests,
            rejections,
            rule_matches,
            request_duration,
            inspection_duration,
            upstream_errors,
            response_leaks,
            response_held_bytes,
            in_flight,
            client_timeouts,
            rules_loaded,
            cert_not_after,
            config_reloads,
            config_last_reload_success,
            audit_write_errors,
            audit_records,
            audit_queue_depth,
            audit_checkpoints,
            audit_last_checkpoint,
            jwks_refresh,
            jwks_age,
            introspection,
            access_decisions,
            state_backend_up,
            state_errors,
            sessions,
            break_glass,
            anomalies,
            anomaly_observations,
            principals_suspended,
            anomaly_memory_entries,
            alert_deliveries,
        })
    }

    /// Renders the registry in the Prometheus text format.
    pub fn render(&self) -> Result<Vec<u8>, prometheus::Error> {
        let mut out = Vec::with_capacity(8 * 1024);
        TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        Ok(out)
    }
}

/// Label values one route's per-request series can take that are kept resolved: the five
/// decisions and the reasons with room to spare; anything past that falls back to a lookup.
const SLOTS: usize = 32;

/// Handles of one label dimension, resolved on first use of each value and kept.
struct Slots<M> {
    slots: [std::sync::OnceLock<(&'static str, M)>; SLOTS],
}

impl<M> Default for Slots<M> {
    fn default() -> Self {
        Self {
            slots: std::array::from_fn(|_| std::sync::OnceLock::new()),
        }
    }
}

impl<M> Slots<M> {
    /// Runs `f` on the handle for `key`, resolving it with `make` the first time.
    fn with(&self, key: &'static str, make: impl Fn() -> M, f: impl FnOnce(&M)) {
        for slot in &self.slots {
            let (k, m) = match slot.get() {
                Some(v) => v,
                None => slot.get_or_init(|| (key, make())),
            };
            if *k == key {
                return f(m);
            }
        }
        f(&make());
    }
}

/// The per-request series of one route (`requests_total`, `request_duration_seconds`,
/// `rejections_total`), resolved once per label value and then kept, so the request path
/// does no label hashing or registry lookup. Held by the request snapshot, one per route (and
/// one for `unmatched`); a reload builds new ones, which resolve to the same series. The
/// series exist only once counted, exactly as with `with_label_values` per request.
pub struct RouteHandles {
    route: String,
    requests: Slots<IntCounter>,
    durations: Slots<Histogram>,
    rejections: Slots<IntCounter>,
}

impl std::fmt::Debug for RouteHandles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteHandles")
            .field("route", &self.route)
            .finish_non_exhaustive()
    }
}

impl RouteHandles {
    /// Handles for the route named `route` (resolved lazily against the [`Metrics`] passed to
    /// each call; a snapshot is only ever used with one).
    pub fn new(route: &str) -> Self {
        Self {
            route: route.to_string(),
            requests: Slots::default(),
            durations: Slots::default(),
            rejections: Slots::default(),
        }
    }

    /// Counts one finished request with `decision` and its duration.
    pub fn request(&self, m: &Metrics, decision: &'static str, seconds: f64) {
        let labels = [self.route.as_str(), decision];
        self.requests.with(
            decision,
            || m.requests.with_label_values(&labels),
            |c| c.inc(),
        );
        self.durations.with(
            decision,
            || m.request_duration.with_label_values(&labels),
            |h| h.observe(seconds),
        );
    }

    /// Counts one blocked or would-block request with `reason`.
    pub fn rejection(&self, m: &Metrics, reason: &'static str) {
        self.rejections.with(
            reason,
            || {
                m.rejections
                    .with_label_values(&[self.route.as_str(), reason])
            },
            |c| c.inc(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kept handles count into the very series `with_label_values` names, and a second set
    /// (a reload's) adds to them.
    #[test]
    fn route_handles_count_into_the_labelled_series() {
        let m = Metrics::new().unwrap();
        let h = RouteHandles::new("fhir");
        for _ in 0..3 {
            h.request(&m, "allow", 0.001);
        }
        h.request(&m, "block", 0.002);
        h.rejection(&m, "phi_detected");
        RouteHandles::new("fhir").request(&m, "allow", 0.001);
        assert_eq!(m.requests.with_label_values(&["fhir", "allow"]).get(), 4);
        assert_eq!(m.requests.with_label_values(&["fhir", "block"]).get(), 1);
        assert_eq!(
            m.rejections
                .with_label_values(&["fhir", "phi_detected"])
                .get(),
            1
        );
        assert_eq!(
            m.request_duration
                .with_label_values(&["fhir", "allow"])
                .get_sample_count(),
            4
        );
        let text = String::from_utf8(m.render().unwrap()).unwrap();
        assert!(
            !text.contains("decision=\"error\""),
            "no series before it is counted"
        );
    }

    #[test]
    fn renders_with_help_and_build_info() {
        let m = Metrics::new().unwrap();
        m.requests.with_label_values(&["fhir", "block"]).inc();
        let text = String::from_utf8(m.render().unwrap()).unwrap();
        assert!(text.contains("# HELP phi_gateway_requests_total"));
        assert!(text.contains("phi_gateway_requests_total{decision=\"block\",route=\"fhir\"} 1"));
        assert!(text.contains("phi_gateway_build_info{"));
    }
}
