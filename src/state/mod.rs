//! Shared state: what one gateway must know about another's traffic: sessions (automatic
//! logoff, issue 11 §5), break-glass boxes, and the access-anomaly detector's counters in fixed
//! sub-windows, distinct-value estimates, versioned baselines and the suspension list (issue
//! 12, `crate::defence`), on the same [`Store`]. [`Store::batch`] sends what one request
//! counts as one pipeline.
//!
//! Two backends behind one type, chosen by `state.backend` in gateway.yaml:
//! - `memory` (one instance): a map bounded by `state.max_entries`. When it is full the entry
//!   that expires soonest goes first, so expired entries are dropped before live ones and, of
//!   live ones, the oldest (see [`memory`]). An evicted session reads as unknown, which the
//!   session check judges by the token's `iat`: it fails closed.
//! - `redis` (a fleet): redis-rs's tokio `ConnectionManager` on a thread and runtime of its
//!   own, connected lazily and reconnected in the background (by a once-a-second probe with a
//!   1 s budget), so a Redis that is down at start or later never stops the gateway. Every
//!   call a request makes is cut at `state.timeout_ms`; the request path never waits longer. Sessions are also mirrored in a local bounded map and
//!   served from it while Redis fails (see [`Store::session_touch`]).
//!
//! Keys carry no identifier: they are built only from [`Principal`]s, keyed HMAC-SHA256
//! fingerprints under the deployment's state key, and `&'static str` names written in the
//! source. Every key of one principal has the same `{…}` hash tag, so multi-key commands
//! (`MGET`, `PFCOUNT`) stay in one Redis Cluster slot.
//!
//! May use `telemetry` and `config`; `access`, `gateway` and `runtime` may use it.

mod memory;
mod remote;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::{StateBackend, StateSettings};
use crate::telemetry::Metrics;

pub use memory::Memory;

/// What can go wrong talking to a state backend. Messages never contain a key or a value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The backend did not answer within `state.timeout_ms`.
    #[error("the state backend did not answer within {0} ms")]
    Timeout(u64),
    /// The backend answered with an error, or the connection failed.
    #[error("state backend: {0}")]
    Backend(#[from] redis::RedisError),
    /// An answer of an unexpected shape.
    #[error("unexpected answer from the state backend: {0}")]
    Protocol(&'static str),
    /// The backend's thread could not be started.
    #[error("cannot start the state backend: {0}")]
    Start(#[source] std::io::Error),
}

impl StateError {
    /// The `kind` label of `phi_gateway_state_errors_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            StateError::Timeout(_) => "timeout",
            StateError::Backend(_) => "backend",
            StateError::Protocol(_) => "protocol",
            StateError::Start(_) => "start",
        }
    }
}

/// Derives [`Principal`]s from identifiers: HMAC-SHA256 under a subkey of the deployment's
/// fingerprint secret. Every gateway of a fleet must have the same secret, or they would not
/// find each other's keys. `Debug` shows nothing of the key.
#[derive(Clone)]
pub struct Keyer {
    key: ring::hmac::Key,
}

/// Label of the state subkey: keeps state keys apart from audit and exception fingerprints
/// made under the same secret.
const KEYER_LABEL: &[u8] = b"phi-gateway state key v1";

impl Keyer {
    /// Derives the state subkey from the secret's raw bytes.
    pub fn new(secret: &[u8]) -> Keyer {
        let root = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
        let sub = ring::hmac::sign(&root, KEYER_LABEL);
        Keyer {
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, sub.as_ref()),
        }
    }

    /// A key from the operating system's random generator: for a memory backend without a
    /// configured secret (its keys never leave the process).
    pub fn random() -> Result<Keyer, ring::error::Unspecified> {
        let mut secret = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret)?;
        Ok(Keyer::new(&secret))
    }

    /// The principal for `kind` (a name written in the source) and `parts` (identifiers, each
    /// length-prefixed so `("ab", "c")` and `("a", "bc")` differ).
    pub fn principal(&self, kind: &'static str, parts: &[&str]) -> Principal {
        let mut ctx = ring::hmac::Context::with_key(&self.key);
        ctx.update(kind.as_bytes());
        for p in parts {
            ctx.update(&(p.len() as u64).to_be_bytes());
            ctx.update(p.as_bytes());
        }
        let tag = ctx.sign();
        let mut hex = String::with_capacity(32);
        for b in tag.as_ref().iter().take(16) {
            use std::fmt::Write as _;
            let _ = write!(hex, "{b:02x}");
        }
        Principal(hex)
    }
}

impl std::fmt::Debug for Keyer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keyer([key])")
    }
}

/// A keyed fingerprint (32 hex digits): the only identifier a [`StateKey`] or a set member can
/// hold. Made only by [`Keyer::principal`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Principal(String);

impl Principal {
    /// The 32 hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A principal from its 32 lowercase hex digits, as [`Principal::as_str`] shows them (an
    /// operator naming a listed principal to reinstate). Anything else is refused, so no
    /// identifier can become a key this way.
    pub fn parse(key: &str) -> Option<Principal> {
        (key.len() == 32 && key.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| Principal(key.to_string()))
    }
}

/// The version of a `version|text` value ([`Store::put_if_newer`]).
pub(crate) fn version_of(stored: &str) -> Option<u64> {
    stored.split_once('|').and_then(|(v, _)| v.parse().ok())
}

/// One operation of a [`Store::batch`]: what one request's counting needs, sent to Redis
/// as one pipeline (one round trip).
#[derive(Debug, Clone)]
pub enum Op {
    /// [`Store::incr`]: `INCRBY` + `PEXPIRE … NX`. Replies [`Reply::Count`] (the new value).
    Incr {
        /// The counter.
        key: StateKey,
        /// How much to add.
        by: u64,
        /// Expiry from creation.
        ttl: Duration,
    },
    /// [`Store::sum`]: `MGET`, summed. Replies [`Reply::Count`].
    Sum(Vec<StateKey>),
    /// [`Store::distinct_add`]: `PFADD` + `PEXPIRE … NX`. Replies [`Reply::Flag`] (changed).
    DistinctAdd {
        /// The estimate.
        key: StateKey,
        /// The member (a fingerprint).
        member: Principal,
        /// Expiry from creation.
        ttl: Duration,
    },
    /// [`Store::distinct_count`]: `PFCOUNT` (the union). Replies [`Reply::Count`].
    DistinctCount(Vec<StateKey>),
    /// `GET` of a value key. Replies [`Reply::Text`].
    Get(StateKey),
    /// `SET … PX … GET`: stores `text` for `ttl` and replies the previous text
    /// ([`Reply::Text`]). Atomic: of many callers storing the same text, exactly one sees
    /// the previous one change.
    Swap {
        /// The value key.
        key: StateKey,
        /// The new text.
        text: String,
        /// Expiry from now.
        ttl: Duration,
    },
}

/// The answer to one [`Op`], in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A count or sum.
    Count(u64),
    /// Whether a distinct estimate changed.
    Flag(bool),
    /// A value key's text, if it exists.
    Text(Option<String>),
}

impl Reply {
    /// The count (0 for any other reply).
    pub fn count(&self) -> u64 {
        match self {
            Reply::Count(n) => *n,
            _ => 0,
        }
    }

    /// The text, if the reply is one and the key existed.
    pub fn text(&self) -> Option<&str> {
        match self {
            Reply::Text(t) => t.as_deref(),
            _ => None,
        }
    }
}

/// A key in the store: `phi:{<principal>}:<kind>[:<name>[:<window>]]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StateKey(String);

impl StateKey {
    /// The session of `p` (idle and absolute limits).
    pub fn session(p: &Principal) -> StateKey {
        StateKey(format!("phi:{{{}}}:s", p.0))
    }

    /// Counter `name` of `p` in fixed window number `window` (Unix time / window length).
    pub fn counter(p: &Principal, name: &'static str, window: u64) -> StateKey {
        StateKey(format!("phi:{{{}}}:c:{name}:{window}", p.0))
    }

    /// Distinct-value estimate `name` of `p` in window number `window`.
    pub fn distinct(p: &Principal, name: &'static str, window: u64) -> StateKey {
        StateKey(format!("phi:{{{}}}:h:{name}:{window}", p.0))
    }

    /// The break-glass time box of `p` (a principal of subject and patient): a set holding
    /// `p` itself until the box ends, so every gateway of a fleet sees the same expiry.
    pub fn break_glass(p: &Principal) -> StateKey {
        StateKey(format!("phi:{{{}}}:bg", p.0))
    }

    /// Value `name` of `p` (a versioned text or a marker), in window `window` if given:
    /// `phi:{<principal>}:v:<name>[:<window>]`.
    pub fn value(p: &Principal, name: &'static str, window: Option<u64>) -> StateKey {
        match window {
            Some(w) => StateKey(format!("phi:{{{}}}:v:{name}:{w}", p.0)),
            None => StateKey(format!("phi:{{{}}}:v:{name}", p.0)),
        }
    }

    /// A fleet-wide set with per-member expiry (the suspension list). Its own hash tag.
    pub fn set(name: &'static str) -> StateKey {
        StateKey(format!("phi:{{set:{name}}}:z"))
    }

    /// The key text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One session touch: what the caller knows of the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTouch {
    /// Now, Unix milliseconds.
    pub now_ms: u64,
    /// The idle limit.
    pub idle_ms: u64,
    /// How long the session's entry is kept after its last activity: past the idle limit it
    /// is the proof that the session timed out (a newer token of the same `sid` must not
    /// start it again).
    pub retain_ms: u64,
    /// When the session was last known active if the store has never seen it: the token's
    /// `iat` (or `auth_time`, or now). A token first seen longer than `idle_ms` after it was
    /// issued belongs to a session idle since.
    pub start_ms: u64,
}

/// What a session touch found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionSeen {
    /// Active within the idle limit: the touch recorded this request as its last activity.
    /// `false`: idle past the limit; nothing was refreshed.
    pub active: bool,
    /// Whether the store knew the session before this touch.
    pub known: bool,
    /// The previous last activity, Unix milliseconds.
    pub last_seen_ms: u64,
    /// When the session started (first seen, or its token's `iat`), Unix milliseconds.
    pub first_seen_ms: u64,
    /// Answered from the local copy because the shared backend failed.
    pub local: bool,
}

/// The store: one backend, its health and metrics.
pub struct Store {
    backend: Backend,
    keyer: Keyer,
    up: AtomicBool,
    timeout: Duration,
    metrics: Metrics,
}

enum Backend {
    Memory(Memory),
    Redis {
        remote: remote::Remote,
        /// Sessions as last seen, served while Redis fails.
        local: Memory,
    },
}

/// Now, Unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Store {
    /// Starts the configured backend. A Redis backend connects in the background: this never
    /// waits for Redis, and a Redis that is down at start makes the store degraded, not the
    /// gateway fail.
    pub fn start(settings: &StateSettings, metrics: Metrics) -> Result<Arc<Store>, StateError> {
        let backend = match &settings.backend {
            StateBackend::Memory => Backend::Memory(Memory::new(settings.max_entries)),
            StateBackend::Redis {
                url,
                password_file,
                ca_file,
            } => Backend::Redis {
                remote: remote::Remote::start(
                    url,
                    password_file.as_deref(),
                    ca_file.as_deref(),
                    settings.timeout,
                )?,
                local: Memory::new(settings.max_entries),
            },
        };
        let keyer = match &settings.key_file {
            Some(path) => Keyer::new(&std::fs::read(path).map_err(StateError::Start)?),
            None => Keyer::random().map_err(|_| {
                StateError::Start(std::io::Error::other("no random key for the state store"))
            })?,
        };
        let store = Arc::new(Store {
            backend,
            keyer,
            // Up until a call fails: a fresh Redis backend is judged by its first answer.
            up: AtomicBool::new(true),
            timeout: settings.timeout,
            metrics,
        });
        store.set_up(true);
        if let Backend::Redis { remote, .. } = &store.backend {
            remote.watch(Arc::downgrade(&store));
        }
        Ok(store)
    }

    /// Makes the principals this store's keys are built from.
    pub fn keyer(&self) -> &Keyer {
        &self.keyer
    }

    /// `memory` or `redis`: the `backend` label.
    pub fn backend(&self) -> &'static str {
        match self.backend {
            Backend::Memory(_) => "memory",
            Backend::Redis { .. } => "redis",
        }
    }

    /// Whether the backend answered its last call (always true in memory).
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    fn set_up(&self, up: bool) {
        let was = self.up.swap(up, Ordering::Relaxed);
        self.metrics
            .state_backend_up
            .with_label_values(&[self.backend()])
            .set(i64::from(up));
        if was != up {
            if up {
                tracing::info!(backend = self.backend(), "state backend answers again");
            } else {
                tracing::warn!(
                    backend = self.backend(),
                    "state backend unavailable: sessions are served from the local copy"
                );
            }
        }
    }

    /// Counts a failed call and marks the backend down.
    fn failed(&self, op: &'static str, e: &StateError) {
        self.metrics
            .state_errors
            .with_label_values(&[op, e.kind()])
            .inc();
        tracing::debug!(op, error = %e, "state backend call failed");
        self.set_up(false);
    }

    /// Runs one Redis call under the configured timeout, recording health.
    async fn bounded<T>(
        &self,
        op: &'static str,
        f: impl std::future::Future<Output = Result<T, StateError>>,
    ) -> Result<T, StateError> {
        self.bounded_by(self.timeout, op, f).await
    }

    async fn bounded_by<T>(
        &self,
        limit: Duration,
        op: &'static str,
        f: impl std::future::Future<Output = Result<T, StateError>>,
    ) -> Result<T, StateError> {
        let ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
        let r = match tokio::time::timeout(limit, f).await {
            Ok(r) => r,
            Err(_) => Err(StateError::Timeout(ms)),
        };
        match &r {
            Ok(_) => self.set_up(true),
            Err(e) => self.failed(op, e),
        }
        r
    }

    /// Records activity on a session, atomically: one round trip reads the last activity,
    /// judges it against the idle limit and, if still active, stores this request as the last
    /// activity. Never fails: with Redis down (or slower than the timeout) the local copy
    /// answers, which knows every session this instance has seen and judges unknown ones by
    /// their token like the shared store would (`local: true`).
    pub async fn session_touch(&self, key: &StateKey, t: SessionTouch) -> SessionSeen {
        match &self.backend {
            Backend::Memory(m) => m.session_touch(key, t),
            Backend::Redis { remote, local } => {
                // What this instance saw last, so activity served locally during an outage
                // is not forgotten by the shared store when it comes back.
                let hint = local.session_peek(key, t.now_ms);
                match self
                    .bounded("session", remote.session_touch(key, t, hint))
                    .await
                {
                    Ok(seen) => {
                        local.session_record(key, &seen, t);
                        seen
                    }
                    Err(_) => SessionSeen {
                        local: true,
                        ..local.session_touch(key, t)
                    },
                }
            }
        }
    }

    /// Adds `by` to a counter and returns its new value; the key expires `ttl` after it was
    /// created (`INCRBY` + `PEXPIRE … NX` in one pipeline: a crash between them cannot leave a
    /// key without expiry).
    pub async fn incr(&self, key: &StateKey, by: u64, ttl: Duration) -> Result<u64, StateError> {
        match &self.backend {
            Backend::Memory(m) => Ok(m.incr(key, by, ttl, now_ms())),
            Backend::Redis { remote, .. } => self.bounded("incr", remote.incr(key, by, ttl)).await,
        }
    }

    /// The sum of counters (missing ones count 0): a sliding window from its fixed
    /// sub-windows. One `MGET`: the keys must be of one principal (one slot).
    pub async fn sum(&self, keys: &[StateKey]) -> Result<u64, StateError> {
        match &self.backend {
            Backend::Memory(m) => Ok(m.sum(keys, now_ms())),
            Backend::Redis { remote, .. } => self.bounded("sum", remote.sum(keys)).await,
        }
    }

    /// Adds `member` to a distinct-value estimate (`PFADD` + `PEXPIRE … NX`). Returns whether
    /// the estimate changed.
    pub async fn distinct_add(
        &self,
        key: &StateKey,
        member: &Principal,
        ttl: Duration,
    ) -> Result<bool, StateError> {
        match &self.backend {
            Backend::Memory(m) => Ok(m.distinct_add(key, member, ttl, now_ms())),
            Backend::Redis { remote, .. } => {
                self.bounded("distinct_add", remote.distinct_add(key, member, ttl))
                    .await
            }
        }
    }

    /// Distinct members over the union of `keys` (`PFCOUNT`: HyperLogLog, 0.81 % standard
    /// error in Redis; exact in memory up to its per-key cap).
    pub async fn distinct_count(&self, keys: &[StateKey]) -> Result<u64, StateError> {
        match &self.backend {
            Backend::Memory(m) => Ok(m.distinct_count(keys, now_ms())),
            Backend::Redis { remote, .. } => {
                self.bounded("distinct_count", remote.distinct_count(keys))
                    .await
            }
        }
    }

    /// Adds `member` to a set until `ttl` from now (a sorted set scored by expiry; expired
    /// members are dropped on the way, and the key outlives its longest member).
    pub async fn set_add(
        &self,
        key: &StateKey,
        member: &Principal,
        ttl: Duration,
    ) -> Result<(), StateError> {
        self.set_add_from(key, member, ttl, now_ms()).await
    }

    /// [`Store::set_add`] from a given start (Unix milliseconds): the member expires at
    /// exactly `now_ms + ttl`, an expiry the caller has already recorded elsewhere (a
    /// break-glass box's audit record).
    pub async fn set_add_from(
        &self,
        key: &StateKey,
        member: &Principal,
        ttl: Duration,
        now_ms: u64,
    ) -> Result<(), StateError> {
        match &self.backend {
            Backend::Memory(m) => {
                m.set_add(key, member, ttl, now_ms);
                Ok(())
            }
            Backend::Redis { remote, .. } => {
                self.bounded("set_add", remote.set_add(key, member, ttl, now_ms))
                    .await
            }
        }
    }

    /// Whether `member` is in the set and not expired.
    pub async fn set_contains(
        &self,
        key: &StateKey,
        member: &Principal,
    ) -> Result<bool, StateError> {
        match &self.backend {
            Backend::Memory(m) => Ok(m.set_contains(key, member, now_ms())),
            Backend::Redis { remote, .. } => {
                self.bounded("set_contains", remote.set_contains(key, member, now_ms()))
                    .await
            }
        }
    }

    /// The members not expired, with their expiry (Unix milliseconds): what a replica copies
    /// to keep enforcing the set while Redis is down.
    pub async fn set_members(&self, key: &StateKey) -> Result<Vec<(String, u64)>, StateError> {
        match &self.backend {
            Backend::Memory(m) => Ok(m.set_members(key, now_ms())),
            Backend::Redis { remote, .. } => {
                self.bounded("set_members", remote.set_members(key, now_ms()))
                    .await
            }
        }
    }

    /// Removes `member` from the set.
    pub async fn set_remove(&self, key: &StateKey, member: &Principal) -> Result<(), StateError> {
        match &self.backend {
            Backend::Memory(m) => {
                m.set_remove(key, member);
                Ok(())
            }
            Backend::Redis { remote, .. } => {
                self.bounded("set_remove", remote.set_remove(key, member))
                    .await
            }
        }
    }

    /// Runs `ops` in order and answers each, in order: in memory one after the other, in
    /// Redis as one pipeline (one round trip, under one timeout). Every key of one batch
    /// should be of one principal, so a Redis Cluster would see one slot.
    pub async fn batch(&self, ops: &[Op]) -> Result<Vec<Reply>, StateError> {
        match &self.backend {
            Backend::Memory(m) => {
                let now = now_ms();
                Ok(ops
                    .iter()
                    .map(|op| match op {
                        Op::Incr { key, by, ttl } => Reply::Count(m.incr(key, *by, *ttl, now)),
                        Op::Sum(keys) => Reply::Count(m.sum(keys, now)),
                        Op::DistinctAdd { key, member, ttl } => {
                            Reply::Flag(m.distinct_add(key, member, *ttl, now))
                        }
                        Op::DistinctCount(keys) => Reply::Count(m.distinct_count(keys, now)),
                        Op::Get(key) => Reply::Text(m.get(key, now)),
                        Op::Swap { key, text, ttl } => Reply::Text(m.swap(key, text, *ttl, now)),
                    })
                    .collect())
            }
            Backend::Redis { remote, .. } => self.bounded("batch", remote.batch(ops)).await,
        }
    }

    /// Stores `version|text` under `key` for `ttl`, unless it holds a version at least as
    /// new (atomically: one Lua script in Redis). Whether this call stored it: of two
    /// replicas learning the same window, one does.
    pub async fn put_if_newer(
        &self,
        key: &StateKey,
        version: u64,
        text: &str,
        ttl: Duration,
    ) -> Result<bool, StateError> {
        match &self.backend {
            Backend::Memory(m) => Ok(m.put_if_newer(key, version, text, ttl, now_ms())),
            Backend::Redis { remote, .. } => {
                self.bounded("put_if_newer", remote.put_if_newer(key, version, text, ttl))
                    .await
            }
        }
    }

    /// Sets a marker for `ttl` unless `key` exists (`SET … NX PX`). Whether this call set
    /// it: of a fleet racing for it, exactly one wins.
    pub async fn set_nx(&self, key: &StateKey, ttl: Duration) -> Result<bool, StateError> {
        match &self.backend {
            Backend::Memory(m) => Ok(m.set_nx(key, ttl, now_ms())),
            Backend::Redis { remote, .. } => self.bounded("set_nx", remote.set_nx(key, ttl)).await,
        }
    }

    /// Entries held in memory (the memory backend, or the Redis backend's local copy).
    pub fn local_entries(&self) -> usize {
        match &self.backend {
            Backend::Memory(m) => m.len(),
            Backend::Redis { local, .. } => local.len(),
        }
    }

    /// The health probe of the Redis backend: a `PING`, on the state runtime, with the
    /// background budget rather than the request timeout, so it is what waits for a
    /// (re)connection to finish.
    async fn probe(&self) {
        if let Backend::Redis { remote, .. } = &self.backend {
            let limit = self.timeout.max(remote::BACKGROUND_BUDGET);
            let _ = self.bounded_by(limit, "ping", remote.ping()).await;
        }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend())
            .field("up", &self.is_up())
            .finish()
    }
}

#[cfg(test)]
mod tests;
