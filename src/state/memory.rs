//! The in-memory backend: one map, bounded.
//!
//! Bounds: at most `max_entries` keys (`state.max_entries`), every key with an expiry. An
//! index ordered by expiry sits beside the map, so making room is O(log n): expired entries
//! go first, then the live entry that would expire soonest (for sessions, the one idle the
//! longest; for counters, the oldest window). A distinct-value or set key holds at most
//! [`MAX_MEMBERS`] members; past that, new members are not added (a distinct count then
//! stops growing at the cap, a set refuses the member: say so where they are used).
//! Worst case ≈ `max_entries` × (key ≈ 60 bytes + entry ≈ 80 bytes), plus members.
//!
//! Time is passed in (Unix milliseconds), so the tests need no clock.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use super::{Principal, SessionSeen, SessionTouch, StateKey};

/// Most members of one distinct-value or set key.
pub const MAX_MEMBERS: usize = 16_384;

#[derive(Debug)]
enum Value {
    Session {
        last: u64,
        first: u64,
    },
    Counter(u64),
    Distinct(std::collections::HashSet<String>),
    /// Member → expiry.
    Set(HashMap<String, u64>),
    /// A versioned text (`put_if_newer`) or a marker (`set_nx`): `version|text`.
    Text(String),
}

#[derive(Debug)]
struct Entry {
    value: Value,
    expires: u64,
    seq: u64,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<String, Entry>,
    /// (expiry, insertion sequence) → key: the eviction order.
    order: BTreeMap<(u64, u64), String>,
    seq: u64,
}

impl Inner {
    /// The live entry of `key`, dropping it if it has expired.
    fn live(&mut self, key: &str, now: u64) -> Option<&mut Entry> {
        let expired = self.map.get(key).is_some_and(|e| e.expires <= now);
        if expired {
            self.remove(key);
        }
        self.map.get_mut(key)
    }

    fn remove(&mut self, key: &str) -> Option<Entry> {
        let e = self.map.remove(key)?;
        self.order.remove(&(e.expires, e.seq));
        Some(e)
    }

    /// Moves `key`'s expiry (it must exist).
    fn set_expiry(&mut self, key: &str, expires: u64) {
        let Some(e) = self.map.get_mut(key) else {
            return;
        };
        self.order.remove(&(e.expires, e.seq));
        e.expires = expires;
        self.order.insert((e.expires, e.seq), key.to_string());
    }

    /// Inserts (or replaces) `key`, evicting to stay within `max`.
    fn insert(&mut self, key: &str, value: Value, expires: u64, now: u64, max: usize) {
        self.remove(key);
        while self.map.len() >= max.max(1) {
            // The first in the order is expired if any is, else the soonest to expire.
            let Some((_, victim)) = self.order.pop_first() else {
                break;
            };
            self.map.remove(&victim);
        }
        // Expired entries are dropped on the way even when there is room, so a burst of keys
        // that all expire does not keep the map at its bound.
        while let Some(entry) = self.order.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let victim = entry.remove();
            self.map.remove(&victim);
        }
        self.seq += 1;
        let seq = self.seq;
        self.order.insert((expires, seq), key.to_string());
        self.map.insert(
            key.to_string(),
            Entry {
                value,
                expires,
                seq,
            },
        );
    }
}

/// The bounded in-memory store.
#[derive(Debug)]
pub struct Memory {
    inner: Mutex<Inner>,
    max: usize,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Memory {
    /// An empty store holding at most `max_entries` keys (at least one).
    pub fn new(max_entries: usize) -> Memory {
        Memory {
            inner: Mutex::new(Inner::default()),
            max: max_entries.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the map half-updated in a way that
        // matters here (every update is one insert or remove), so a poisoned lock is used as is.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keys held (expired ones not yet dropped included).
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The session rule, the same as the Redis script's (`remote::SESSION_SCRIPT`).
    pub fn session_touch(&self, key: &StateKey, t: SessionTouch) -> SessionSeen {
        let mut g = self.lock();
        let found = match g.live(key.as_str(), t.now_ms) {
            Some(Entry {
                value: Value::Session { last, first },
                ..
            }) => Some((*last, *first)),
            _ => None,
        };
        let (last, first) = found.unwrap_or((t.start_ms, t.start_ms));
        let active = t.now_ms.saturating_sub(last) <= t.idle_ms;
        let expires = t.now_ms.saturating_add(t.retain_ms);
        if active {
            let v = Value::Session {
                last: last.max(t.now_ms),
                first,
            };
            g.insert(key.as_str(), v, expires, t.now_ms, self.max);
        } else if found.is_none() {
            // Remembered as timed out, so a later token of the same session cannot start it.
            g.insert(
                key.as_str(),
                Value::Session { last, first },
                expires,
                t.now_ms,
                self.max,
            );
        }
        SessionSeen {
            active,
            known: found.is_some(),
            last_seen_ms: last,
            first_seen_ms: first,
            local: false,
        }
    }

    /// What the map holds for a session (last, first), without touching it.
    pub(super) fn session_peek(&self, key: &StateKey, now: u64) -> Option<(u64, u64)> {
        match self.lock().live(key.as_str(), now) {
            Some(Entry {
                value: Value::Session { last, first },
                ..
            }) => Some((*last, *first)),
            _ => None,
        }
    }

    /// Mirrors what the shared store answered for a session.
    pub(super) fn session_record(&self, key: &StateKey, seen: &SessionSeen, t: SessionTouch) {
        let last = if seen.active {
            seen.last_seen_ms.max(t.now_ms)
        } else {
            seen.last_seen_ms
        };
        let v = Value::Session {
            last,
            first: seen.first_seen_ms,
        };
        let expires = t.now_ms.saturating_add(t.retain_ms);
        self.lock()
            .insert(key.as_str(), v, expires, t.now_ms, self.max);
    }

    /// Adds to a counter; the expiry is set when the counter is created.
    pub fn incr(&self, key: &StateKey, by: u64, ttl: Duration, now: u64) -> u64 {
        let mut g = self.lock();
        if let Some(Entry {
            value: Value::Counter(n),
            ..
        }) = g.live(key.as_str(), now)
        {
            *n = n.saturating_add(by);
            return *n;
        }
        let expires = now.saturating_add(ms(ttl));
        g.insert(key.as_str(), Value::Counter(by), expires, now, self.max);
        by
    }

    /// The sum of live counters.
    pub fn sum(&self, keys: &[StateKey], now: u64) -> u64 {
        let mut g = self.lock();
        keys.iter()
            .map(|k| match g.live(k.as_str(), now) {
                Some(Entry {
                    value: Value::Counter(n),
                    ..
                }) => *n,
                _ => 0,
            })
            .fold(0u64, u64::saturating_add)
    }

    /// Adds a member (up to [`MAX_MEMBERS`]); whether the count changed.
    pub fn distinct_add(
        &self,
        key: &StateKey,
        member: &Principal,
        ttl: Duration,
        now: u64,
    ) -> bool {
        let mut g = self.lock();
        if let Some(Entry {
            value: Value::Distinct(s),
            ..
        }) = g.live(key.as_str(), now)
        {
            if s.len() >= MAX_MEMBERS {
                return false;
            }
            return s.insert(member.as_str().to_string());
        }
        let s = std::iter::once(member.as_str().to_string()).collect();
        let expires = now.saturating_add(ms(ttl));
        g.insert(key.as_str(), Value::Distinct(s), expires, now, self.max);
        true
    }

    /// Distinct members over the union of `keys`.
    pub fn distinct_count(&self, keys: &[StateKey], now: u64) -> u64 {
        let mut g = self.lock();
        let mut union = std::collections::HashSet::new();
        for k in keys {
            if let Some(Entry {
                value: Value::Distinct(s),
                ..
            }) = g.live(k.as_str(), now)
            {
                union.extend(s.iter().cloned());
            }
        }
        union.len() as u64
    }

    /// Adds a member until `now + ttl`; the key lives as long as its longest member.
    pub fn set_add(&self, key: &StateKey, member: &Principal, ttl: Duration, now: u64) {
        let mut g = self.lock();
        let until = now.saturating_add(ms(ttl));
        let grown = match g.live(key.as_str(), now) {
            Some(Entry {
                value: Value::Set(m),
                expires,
                ..
            }) => {
                m.retain(|_, e| *e > now);
                if m.len() < MAX_MEMBERS || m.contains_key(member.as_str()) {
                    let e = m.entry(member.as_str().to_string()).or_insert(0);
                    *e = (*e).max(until);
                }
                Some((*expires).max(until))
            }
            _ => None,
        };
        match grown {
            Some(expires) => g.set_expiry(key.as_str(), expires),
            None => {
                let m = std::iter::once((member.as_str().to_string(), until)).collect();
                g.insert(key.as_str(), Value::Set(m), until, now, self.max);
            }
        }
    }

    /// Whether `member` is in the set and not expired.
    pub fn set_contains(&self, key: &StateKey, member: &Principal, now: u64) -> bool {
        match self.lock().live(key.as_str(), now) {
            Some(Entry {
                value: Value::Set(m),
                ..
            }) => m.get(member.as_str()).is_some_and(|e| *e > now),
            _ => false,
        }
    }

    /// The live members and their expiry.
    pub fn set_members(&self, key: &StateKey, now: u64) -> Vec<(String, u64)> {
        match self.lock().live(key.as_str(), now) {
            Some(Entry {
                value: Value::Set(m),
                ..
            }) => {
                let mut v: Vec<_> = m
                    .iter()
                    .filter(|(_, e)| **e > now)
                    .map(|(k, e)| (k.clone(), *e))
                    .collect();
                v.sort();
                v
            }
            _ => Vec::new(),
        }
    }

    /// Removes a member.
    pub fn set_remove(&self, key: &StateKey, member: &Principal) {
        if let Some(Entry {
            value: Value::Set(m),
            ..
        }) = self.lock().map.get_mut(key.as_str())
        {
            m.remove(member.as_str());
        }
    }

    /// The text of a value key (`version|text`, or `1` for a marker).
    pub fn get(&self, key: &StateKey, now: u64) -> Option<String> {
        match self.lock().live(key.as_str(), now) {
            Some(Entry {
                value: Value::Text(t),
                ..
            }) => Some(t.clone()),
            _ => None,
        }
    }

    /// Stores `version|text` unless the key holds a version at least as new; whether it
    /// stored (the Redis backend's `PUT_IF_NEWER` script is the same rule).
    pub fn put_if_newer(
        &self,
        key: &StateKey,
        version: u64,
        text: &str,
        ttl: Duration,
        now: u64,
    ) -> bool {
        let mut g = self.lock();
        if let Some(Entry {
            value: Value::Text(t),
            ..
        }) = g.live(key.as_str(), now)
        {
            if super::version_of(t).is_some_and(|v| v >= version) {
                return false;
            }
        }
        let v = Value::Text(format!("{version}|{text}"));
        g.insert(key.as_str(), v, now.saturating_add(ms(ttl)), now, self.max);
        true
    }

    /// Stores `text` for `ttl`; the previous text, if any.
    pub fn swap(&self, key: &StateKey, text: &str, ttl: Duration, now: u64) -> Option<String> {
        let mut g = self.lock();
        let old = match g.live(key.as_str(), now) {
            Some(Entry {
                value: Value::Text(t),
                ..
            }) => Some(t.clone()),
            _ => None,
        };
        let v = Value::Text(text.to_string());
        g.insert(key.as_str(), v, now.saturating_add(ms(ttl)), now, self.max);
        old
    }

    /// Sets a marker unless the key exists; whether this call set it.
    pub fn set_nx(&self, key: &StateKey, ttl: Duration, now: u64) -> bool {
        let mut g = self.lock();
        if g.live(key.as_str(), now).is_some() {
            return false;
        }
        let v = Value::Text("1".into());
        g.insert(key.as_str(), v, now.saturating_add(ms(ttl)), now, self.max);
        true
    }
}
