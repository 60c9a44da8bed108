//! The request's audit record: written once, from the same decision that feeds the access
//! log and the metrics; and whether a fail-closed route may go on at all.

use pingora::proxy::Session;

use crate::audit::{RecordInput, Redacted};
use crate::config::ResourceIdMode;
use crate::gateway::ctx::{Ctx, Outcome};
use crate::gateway::proxy::Gateway;

/// The first value of a header, as a [`Redacted`] string (lossy for non-UTF-8 bytes).
fn header_value(session: &Session, name: &str) -> Option<Redacted<String>> {
    session
        .req_header()
        .headers
        .get(name)
        .map(|v| Redacted::new(String::from_utf8_lossy(v.as_bytes()).into_owned()))
}

impl Gateway {
    /// A fail-closed route must not go on when the audit trail cannot take its record.
    pub(super) fn audit_refuses(&self, ctx: &Ctx) -> bool {
        match (&self.audit, ctx.route()) {
            (Some(a), Some(r)) => r.audit.fail_closed && !a.accepting(),
            _ => false,
        }
    }

    /// Writes the request's audit record, once, from the same decision that feeds the access
    /// log and metrics. With `fsync: every_record` this waits until the record is durable.
    /// Returns false when the trail could not take it.
    pub(super) async fn audit(
        &self,
        session: &Session,
        ctx: &mut Ctx,
        outcome: &Outcome,
        status: u16,
        bytes_out: Option<u64>,
    ) -> bool {
        let Some(audit) = &self.audit else {
            return true;
        };
        if ctx.audit_done {
            return true;
        }
        ctx.audit_done = true;
        let input = record_input(audit, session, ctx, outcome, status, bytes_out);
        let record = audit.build(&ctx.snapshot.engine, &ctx.snapshot.limits, input);
        audit.record(record).await
    }

    /// Writes the CRITICAL record of a new break-glass time box, before the request is
    /// forwarded, and waits until the trail took it (durable with `fsync: every_record`).
    /// Returns false when it could not: the request must then be refused.
    pub(super) async fn audit_break_glass_start(
        &self,
        session: &Session,
        ctx: &Ctx,
        started: crate::audit::BreakGlassInput,
    ) -> bool {
        let Some(audit) = &self.audit else {
            return false;
        };
        if !audit.accepting() {
            return false;
        }
        let outcome = Outcome {
            decision: crate::verdict::Decision::Allow,
            reason: None,
        };
        let mut input = record_input(audit, session, ctx, &outcome, 0, None);
        if let Some(p) = input.policy.as_mut() {
            p.break_glass = Some(started);
        }
        let record = audit.build(&ctx.snapshot.engine, &ctx.snapshot.limits, input);
        audit.record(record).await
    }
}

/// The record's input from what the request left in `ctx`.
fn record_input<'a>(
    audit: &crate::audit::AuditLog,
    session: &'a Session,
    ctx: &'a Ctx,
    outcome: &Outcome,
    status: u16,
    bytes_out: Option<u64>,
) -> RecordInput<'a> {
    let route = ctx.route();
    let req = session.req_header();
    let user_header = match audit.user_id_source() {
        crate::config::UserIdSource::Header(h) => header_value(session, h),
        crate::config::UserIdSource::ClientCert => session
            .digest()
            .and_then(|d| d.ssl_digest.as_ref())
            .and_then(|t| t.extension.get::<crate::gateway::tls::ClientIdentity>())
            .map(|id| Redacted::new(id.subject.clone())),
        _ => None,
    };
    RecordInput {
        request_id: &ctx.request_id,
        route: ctx.route_name(),
        mode: route.map(|r| r.mode),
        method: req.method.as_str(),
        path: req.uri.path(),
        resource_in_clear: route.is_some_and(|r| r.audit.resource_id == ResourceIdMode::Clear),
        decision: outcome.decision,
        reason: outcome.reason,
        rule_ids: ctx.rule_ids().into_iter().map(String::from).collect(),
        field_paths: {
            let mut l: Vec<String> = ctx.matches.iter().map(|m| m.location.clone()).collect();
            l.sort_unstable();
            l.dedup();
            l
        },
        status,
        bytes_in: ctx.body_seen,
        bytes_out,
        tls_version: session
            .digest()
            .and_then(|d| d.ssl_digest.as_ref())
            .map(|d| d.version.to_string()),
        config_version: &ctx.snapshot.config_version,
        body_hmac: ctx
            .body_digest
            .clone()
            .map(|d| crate::audit::record::hex(d.sign().as_ref())),
        ip_address: session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip().to_string()),
        user_agent: header_value(session, http::header::USER_AGENT.as_str()),
        audit_header: route
            .and_then(|r| r.audit_headers.first())
            .and_then(|h| header_value(session, h)),
        user_header,
        access: crate::gateway::identity::access_input(ctx),
        policy: crate::gateway::policy::policy_input(ctx),
        response_leak: ctx.leak.clone(),
    }
}
