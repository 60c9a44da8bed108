//! Containment: the suspension list. The fleet's list is a set with per-member expiry in the
//! shared store (`phi:{set:suspended}:z`); each replica enforces its own copy, which a thread
//! refreshes every [`super::REFRESH_EVERY`]. The request path reads only the copy (a map
//! lookup), so a suspension costs no Redis round trip per request, and a Redis outage never
//! lifts one: the copy keeps the last known list (members still expire on time), and a
//! suspension this replica made while Redis failed is written again until it lands.
//!
//! Why a copy and not `set_contains` per request: the suspension check runs before every
//! upstream call; Redis Cluster replication can lose acknowledged writes and a timeout would
//! have to fail one way or the other. A copy fails safe (known suspensions stay) and fast.

use std::collections::HashMap;
use std::sync::{Mutex, Weak};
use std::time::Duration;

use super::Defence;
use crate::state::{now_ms, Principal, StateError, StateKey, Store};

/// The set's name in the store.
pub(super) const SUSPENDED: &str = "suspended";

/// This replica's copy of the list, and what it still has to write to the shared store.
#[derive(Debug, Default)]
pub(super) struct Suspensions {
    /// Key → until (Unix ms).
    copy: Mutex<HashMap<String, u64>>,
    /// Suspensions made here that the shared store has not taken yet: key → until.
    pending: Mutex<HashMap<String, u64>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every update is one insert, remove or replace: a poisoned lock holds a usable map.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Suspensions {
    pub(super) fn until(&self, key: &str, now: u64) -> Option<u64> {
        lock(&self.copy).get(key).copied().filter(|u| *u > now)
    }

    pub(super) fn list(&self, now: u64) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = lock(&self.copy)
            .iter()
            .filter(|(_, u)| **u > now)
            .map(|(k, u)| (k.clone(), *u))
            .collect();
        v.sort();
        v
    }

    pub(super) fn len(&self) -> usize {
        let now = now_ms();
        lock(&self.copy).values().filter(|u| **u > now).count()
    }

    /// Suspends `p` for `ttl`: in the copy at once, then in the shared store (kept pending
    /// if that fails). Returns the end, Unix ms.
    pub(super) async fn suspend(&self, store: &Store, p: &Principal, ttl: Duration) -> u64 {
        let now = now_ms();
        let until = now.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
        lock(&self.copy).insert(p.as_str().to_string(), until);
        if store
            .set_add_from(&StateKey::set(SUSPENDED), p, ttl, now)
            .await
            .is_err()
        {
            lock(&self.pending).insert(p.as_str().to_string(), until);
        }
        until
    }

    /// Lifts `p` here, then in the shared store.
    pub(super) async fn reinstate(&self, store: &Store, p: &Principal) -> Result<bool, StateError> {
        let here = lock(&self.copy).remove(p.as_str()).is_some();
        let pending = lock(&self.pending).remove(p.as_str()).is_some();
        let key = StateKey::set(SUSPENDED);
        let shared = store.set_contains(&key, p).await?;
        store.set_remove(&key, p).await?;
        Ok(here || pending || shared)
    }

    /// Writes pending suspensions, then replaces the copy with the shared list (plus what is
    /// still pending). On failure the copy stays as it was.
    async fn refresh(&self, store: &Store) {
        let now = now_ms();
        let pending: Vec<(String, u64)> = lock(&self.pending)
            .iter()
            .map(|(k, u)| (k.clone(), *u))
            .collect();
        for (k, until) in pending {
            let Some(p) = Principal::parse(&k) else {
                continue;
            };
            if until <= now {
                lock(&self.pending).remove(&k);
                continue;
            }
            let ttl = Duration::from_millis(until - now);
            if store
                .set_add_from(&StateKey::set(SUSPENDED), &p, ttl, now)
                .await
                .is_ok()
            {
                lock(&self.pending).remove(&k);
            }
        }
        let Ok(shared) = store.set_members(&StateKey::set(SUSPENDED)).await else {
            return;
        };
        let mut copy: HashMap<String, u64> = shared.into_iter().collect();
        for (k, u) in lock(&self.pending).iter() {
            copy.entry(k.clone()).or_insert(*u);
        }
        *lock(&self.copy) = copy;
    }
}

/// The refresher thread: its own current-thread runtime (the store's calls are bounded by
/// their timeout), every `REFRESH_EVERY`, until the `Defence` is dropped.
pub(super) fn spawn_refresher(defence: Weak<Defence>) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("phi-defence".into())
        .spawn(move || {
            rt.block_on(async move {
                loop {
                    let Some(d) = defence.upgrade() else { break };
                    d.suspensions.refresh(&d.store).await;
                    d.metrics
                        .principals_suspended
                        .set(d.suspensions.len() as i64);
                    drop(d);
                    tokio::time::sleep(super::REFRESH_EVERY).await;
                }
            })
        })?;
    Ok(())
}
