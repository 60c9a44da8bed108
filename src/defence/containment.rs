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
    /// Suspensions made here: key → (until, when the shared store took it). Kept until the
    /// store has them and a refresh has certainly read them back (a refresh that read the
    /// list just before the write must not drop them from the copy).
    pending: Mutex<HashMap<String, (u64, Option<u64>)>>,
    /// Reinstated here: key → when. A refresh that read the list before the removal must not
    /// bring them back.
    lifted: Mutex<HashMap<String, u64>>,
}

/// How long a suspension made here is merged into the copy after the store took it.
const WRITTEN_GRACE_MS: u64 = 4 * super::REFRESH_EVERY.as_millis() as u64;

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
        let key = p.as_str().to_string();
        lock(&self.lifted).remove(&key);
        lock(&self.pending).insert(key.clone(), (until, None));
        lock(&self.copy).insert(key.clone(), until);
        if store
            .set_add_from(&StateKey::set(SUSPENDED), p, ttl, now)
            .await
            .is_ok()
        {
            if let Some(e) = lock(&self.pending).get_mut(&key) {
                e.1 = Some(now_ms());
            }
        }
        until
    }

    /// Lifts `p` here, then in the shared store.
    pub(super) async fn reinstate(&self, store: &Store, p: &Principal) -> Result<bool, StateError> {
        lock(&self.lifted).insert(p.as_str().to_string(), now_ms());
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
        lock(&self.pending).retain(|_, (until, written)| {
            *until > now && written.is_none_or(|w| now.saturating_sub(w) < WRITTEN_GRACE_MS)
        });
        let unwritten: Vec<(String, u64)> = lock(&self.pending)
            .iter()
            .filter(|(_, (_, written))| written.is_none())
            .map(|(k, (u, _))| (k.clone(), *u))
            .collect();
        for (k, until) in unwritten {
            let Some(p) = Principal::parse(&k) else {
                continue;
            };
            let ttl = Duration::from_millis(until.saturating_sub(now).max(1));
            if store
                .set_add_from(&StateKey::set(SUSPENDED), &p, ttl, now)
                .await
                .is_ok()
            {
                if let Some(e) = lock(&self.pending).get_mut(&k) {
                    e.1 = Some(now_ms());
                }
            }
        }
        let Ok(shared) = store.set_members(&StateKey::set(SUSPENDED)).await else {
            return;
        };
        let mut copy: HashMap<String, u64> = shared.into_iter().collect();
        // Held while the copy is replaced: a suspension made meanwhile is either merged here
        // or written to the copy after it (`suspend` takes `pending` first, then `copy`).
        let pending = lock(&self.pending);
        for (k, (u, _)) in pending.iter() {
            copy.entry(k.clone()).or_insert(*u);
        }
        let mut lifted = lock(&self.lifted);
        lifted.retain(|_, at| now.saturating_sub(*at) < WRITTEN_GRACE_MS);
        copy.retain(|k, _| !lifted.contains_key(k));
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
