//! Per-request state: the [`Ctx`] every hook receives, and the [`Outcome`] it ends in (the
//! single source for the access log, the metrics and the audit record).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use pingora::Error;

use crate::config::Route;
use crate::engine::Mode;
use crate::gateway::answer::classify_error;
use crate::gateway::snapshot::Snapshot;
use crate::verdict::{effective_matches, Decision, Match, Reason};

/// What happened to one request; the single source for logs and metrics.
#[derive(Debug, Clone)]
pub(super) struct Outcome {
    pub(super) decision: Decision,
    pub(super) reason: Option<Reason>,
}

/// Per-request state.
pub struct Ctx {
    pub(super) request_id: String,
    pub(super) started: Instant,
    pub(super) snapshot: Arc<Snapshot>,
    pub(super) route: Option<usize>,
    /// Held-back body.
    pub(super) body: BytesMut,
    /// Body bytes seen so far (including discarded ones after the cap).
    pub(super) body_seen: u64,
    /// The body exceeded the cap; we are draining it before answering 413.
    pub(super) oversize: bool,
    pub(super) drain_started: Option<Instant>,
    /// Body inspection was skipped (monitor route with an undecodable body).
    pub(super) skip_body: bool,
    pub(super) matches: Vec<Match>,
    pub(super) outcome: Option<Outcome>,
    pub(super) inspection: Duration,
    pub(super) inspected: bool,
    /// HMAC-SHA256 (fingerprint key) over the request body bytes received, for the audit
    /// record's `body_hmac`; only kept when there is an audit trail.
    pub(super) body_digest: Option<ring::hmac::Context>,
    /// The audit record was written (or attempted) already.
    pub(super) audit_done: bool,
    /// Body bytes are held back and the verdict is not in yet.
    pub(super) body_pending: bool,
    /// An `Upgrade` request on a route with `allow_upgrade: true`: once the upstream answers
    /// 101 the connection is an uninspected tunnel (no hold-back, no error bytes of ours).
    /// Until then (a body sent with the request) everything is inspected as usual.
    pub(super) tunnel: bool,
    /// The bearer-token check's outcome, on routes that check tokens.
    pub(super) access: Option<crate::gateway::identity::Access>,
    /// The access policy's decision, on routes where the policy decides.
    pub(super) policy: Option<crate::gateway::policy::PolicyState>,
    /// The upstream's answer is held back for a check (`gateway/holdback.rs`).
    pub(super) holdback: Option<crate::gateway::holdback::Holdback>,
    /// The session check's outcome, once a token verified.
    pub(super) session: Option<crate::gateway::session::SessionOutcome>,
    /// The anomaly detector's principal of this request, once known.
    pub(super) who: Option<crate::gateway::defence::Who>,
    /// The records an answer carries to the client, counted as it streams, when the
    /// detector counts `records_returned` (`gateway/defence.rs`).
    pub(super) records: Option<crate::defence::records::RecordCounter>,
    /// What the response leak guard did with the upstream's answer, once it acted
    /// (`gateway/leak.rs`); kept here, not in the hold-back, because a monitored answer's
    /// record is written when the request ends.
    pub(super) leak: Option<crate::audit::ResponseLeakRecord>,
}

impl Ctx {
    pub(super) fn route(&self) -> Option<&Route> {
        self.route.and_then(|i| self.snapshot.config.routes.get(i))
    }

    /// The route's per-request metric handles (the last entry is `unmatched`'s).
    pub(super) fn route_handles(&self) -> Option<&crate::telemetry::RouteHandles> {
        let i = self.route.unwrap_or(self.snapshot.config.routes.len());
        self.snapshot.route_metrics.get(i)
    }

    pub(super) fn route_name(&self) -> &str {
        self.route().map(|r| r.name.as_str()).unwrap_or("unmatched")
    }

    /// Records a would-block (monitor) reason; the first reason is kept for the log.
    pub(super) fn would_block(&mut self, reason: Reason) {
        if self.outcome.is_none() {
            self.outcome = Some(Outcome {
                decision: Decision::WouldBlock,
                reason: Some(reason),
            });
        }
    }

    pub(super) fn block(&mut self, reason: Reason) {
        self.outcome = Some(Outcome {
            decision: Decision::Block,
            reason: Some(reason),
        });
    }

    /// Applies a violation according to the route mode: enforce blocks, monitor records.
    /// Returns true when the request must be answered now.
    pub(super) fn violation(&mut self, reason: Reason, mode: Mode) -> bool {
        if mode == Mode::Enforce {
            self.block(reason);
            true
        } else {
            self.would_block(reason);
            false
        }
    }

    /// Folds engine findings into the request's matches; returns the strongest mode seen.
    pub(super) fn absorb(&mut self, scan: crate::engine::Scan) -> Option<Mode> {
        let route = self.route()?;
        let new = effective_matches(
            scan.findings
                .iter()
                .map(|f| (f.rule_id.as_str(), f.mode, f.location.as_str())),
            route.mode,
            &route.rule_overrides,
        );
        let strongest = new.iter().map(|m| m.mode).min();
        self.matches.extend(new);
        strongest
    }

    /// The decision so far; `e` is the error pingora ended the request with, if any.
    pub(super) fn decision(&self, e: Option<&Error>) -> Outcome {
        match (&self.outcome, e) {
            (Some(o), _) => o.clone(),
            (None, Some(err)) => Outcome {
                decision: Decision::Error,
                reason: Some(classify_error(err).1),
            },
            (None, None) => Outcome {
                decision: Decision::Allow,
                reason: None,
            },
        }
    }

    pub(super) fn fail_closed(&mut self) {
        self.outcome = Some(Outcome {
            decision: Decision::FailClosed,
            reason: Some(Reason::AuditUnavailable),
        });
    }

    pub(super) fn rule_ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self.matches.iter().map(|m| m.rule.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}
