//! Automatic logoff (issue 11 §5, HIPAA 164.312(a)(2)(iii)): the session check that runs
//! right after a bearer token verified. A token's session is `(iss, sid)` when it has a `sid`
//! claim (so refreshed tokens of one sign-in share it), else the token itself. Two limits:
//! - idle: no request for longer than `access.sessions.idle_timeout_seconds` ends the session
//!   (401 `session_idle_timeout`). A session never seen before counts as active since its
//!   token's `iat`: a token first used 20 minutes after it was issued belongs to a session
//!   idle that long. A timed-out session stays ended, whatever token of it comes next.
//! - absolute: older than `access.sessions.max_session_seconds` from `auth_time` (else from
//!   its first sighting) ends it (401 `session_expired`).
//!
//! The state lives in [`crate::state`] (memory, or Redis shared by a fleet, with a local
//! copy while Redis fails). Keys are keyed fingerprints of `(iss, sid)` or of the token.

use std::time::Duration;

use crate::access::identity::VerifiedToken;
use crate::config::SessionSettings;
use crate::engine::Mode;
use crate::gateway::ctx::Ctx;
use crate::gateway::identity::AccessDecision;
use crate::gateway::proxy::Gateway;
use crate::state::{SessionSeen, SessionTouch, StateKey, Store};
use crate::verdict::Reason;

/// What the session check found (the audit record's `access.session`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SessionOutcome {
    /// A known session, active within its limits.
    Active,
    /// A session seen for the first time.
    Started,
    /// Idle past the limit.
    IdleTimeout,
    /// Past the absolute limit.
    Expired,
}

impl SessionOutcome {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            SessionOutcome::Active => "active",
            SessionOutcome::Started => "started",
            SessionOutcome::IdleTimeout => "idle_timeout",
            SessionOutcome::Expired => "expired",
        }
    }

    fn reason(self) -> Option<Reason> {
        match self {
            SessionOutcome::Active | SessionOutcome::Started => None,
            SessionOutcome::IdleTimeout => Some(Reason::SessionIdleTimeout),
            SessionOutcome::Expired => Some(Reason::SessionExpired),
        }
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A numeric time claim in milliseconds (claims of another type are ignored: the token
/// verified, and the absolute limit then falls back to the first sighting).
fn time_claim_ms(token: &VerifiedToken, name: &str) -> Option<u64> {
    token
        .claims
        .get(name)
        .and_then(serde_json::Value::as_u64)
        .map(|s| s.saturating_mul(1000))
}

/// The session key: `(iss, sid)` when the token has a `sid`, else the token itself.
fn session_key(store: &Store, token: &VerifiedToken, raw: &str) -> StateKey {
    let keyer = store.keyer();
    let principal = match (token.str_claim("iss"), token.str_claim("sid")) {
        (Some(iss), Some(sid)) => keyer.principal("session", &[iss, sid]),
        _ => keyer.principal("token", &[raw]),
    };
    StateKey::session(&principal)
}

/// The decision from what the store saw. Pure, so the limits are unit-tested without a store.
pub(super) fn judge(
    settings: &SessionSettings,
    auth_time_ms: Option<u64>,
    seen: Option<&SessionSeen>,
    now_ms: u64,
) -> SessionOutcome {
    if let Some(seen) = seen {
        if !seen.active {
            return SessionOutcome::IdleTimeout;
        }
    }
    if let Some(max) = settings.max_session {
        let started = auth_time_ms.or(seen.map(|s| s.first_seen_ms));
        if started.is_some_and(|t| now_ms.saturating_sub(t) > ms(max)) {
            return SessionOutcome::Expired;
        }
    }
    match seen {
        Some(s) if !s.known => SessionOutcome::Started,
        _ => SessionOutcome::Active,
    }
}

impl Gateway {
    /// The session check of a verified token (`raw` is its text, the key of a session
    /// without `sid`). Returns the reason to refuse, if any.
    pub(super) async fn check_session(
        &self,
        ctx: &mut Ctx,
        mode: Mode,
        raw: &str,
    ) -> Option<Reason> {
        let settings = ctx.snapshot.config.access.sessions;
        let store = self.state.as_ref()?;
        let token = ctx.access.as_ref()?.token.clone()?;
        if !settings.enabled() {
            return None;
        }
        let now = crate::state::now_ms();
        let auth_time = time_claim_ms(&token, "auth_time");
        // Past the absolute limit by `auth_time`: refused without touching the store.
        let early = judge(&settings, auth_time, None, now);
        let (outcome, seen) = if early == SessionOutcome::Expired {
            (early, None)
        } else {
            let touch = SessionTouch {
                now_ms: now,
                // Without an idle limit the store still records the first sighting, for the
                // absolute limit of tokens without `auth_time`.
                idle_ms: settings.idle_timeout.map_or(u64::MAX / 2, ms),
                retain_ms: ms(settings.retain()),
                start_ms: time_claim_ms(&token, "iat")
                    .or(auth_time)
                    .unwrap_or(now)
                    .min(now),
            };
            let key = session_key(store, &token, raw);
            let seen = store.session_touch(&key, touch).await;
            (judge(&settings, auth_time, Some(&seen), now), Some(seen))
        };
        let where_ = match (store.backend(), seen) {
            ("memory", _) => "memory",
            (_, Some(s)) if s.local => "local",
            _ => "shared",
        };
        self.metrics
            .sessions
            .with_label_values(&[outcome.as_str(), where_])
            .inc();
        ctx.session = Some(outcome);
        let reason = outcome.reason()?;
        let enforce = mode == Mode::Enforce;
        if let Some(a) = ctx.access.as_mut() {
            a.decision = if enforce {
                AccessDecision::Deny
            } else {
                AccessDecision::WouldDeny
            };
        }
        if enforce {
            ctx.block(reason);
            Some(reason)
        } else {
            ctx.would_block(reason);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60_000;

    fn seen(active: bool, known: bool, first: u64) -> SessionSeen {
        SessionSeen {
            active,
            known,
            last_seen_ms: first,
            first_seen_ms: first,
            local: false,
        }
    }

    #[test]
    fn idle_first_then_absolute_then_new_or_known() {
        let s = SessionSettings {
            idle_timeout: Some(Duration::from_secs(900)),
            max_session: Some(Duration::from_secs(3600)),
        };
        let now = 1_000 * MIN;
        assert_eq!(
            judge(&s, None, Some(&seen(false, true, now)), now),
            SessionOutcome::IdleTimeout
        );
        // auth_time decides the absolute limit even before the store is asked.
        assert_eq!(
            judge(&s, Some(now - 61 * MIN), None, now),
            SessionOutcome::Expired
        );
        assert_eq!(
            judge(&s, Some(now - 59 * MIN), None, now),
            SessionOutcome::Active
        );
        // Without auth_time: the first sighting.
        assert_eq!(
            judge(&s, None, Some(&seen(true, true, now - 61 * MIN)), now),
            SessionOutcome::Expired
        );
        assert_eq!(
            judge(&s, None, Some(&seen(true, false, now)), now),
            SessionOutcome::Started
        );
        assert_eq!(
            judge(&s, None, Some(&seen(true, true, now - MIN)), now),
            SessionOutcome::Active
        );
        let off = SessionSettings {
            idle_timeout: Some(Duration::from_secs(900)),
            max_session: None,
        };
        assert_eq!(
            judge(&off, Some(0), Some(&seen(true, true, 0)), now),
            SessionOutcome::Active
        );
    }
}
