//! The Redis backend: redis-rs's tokio `ConnectionManager`, created lazily on a thread and
//! current-thread runtime of its own (`phi-state`), so its driver and reconnect tasks never
//! depend on pingora's runtimes and a Redis that is down at start never delays start-up.
//! Request-path callers await it from their own runtime; [`super::Store`] bounds every call.
//!
//! Commands (Redis ≥ 7.0 for `PEXPIRE … NX|GT`; Debian 12 ships 7.0):
//! - sessions: one Lua script ([`SESSION_SCRIPT`]), atomic, one round trip (`EVALSHA`, with
//!   `EVAL` once after a Redis restart flushed the script cache);
//! - counters: `INCRBY` + `PEXPIRE … NX` in one pipeline; sums: `MGET`;
//! - distinct values: `PFADD` + `PEXPIRE … NX`; counts: `PFCOUNT` over several keys (union);
//! - sets with per-member expiry: a sorted set scored by expiry (`ZADD`, `ZREMRANGEBYSCORE`,
//!   `ZSCORE`, `ZRANGE … BYSCORE`), the key's own expiry pushed out with `PEXPIRE … GT`.
//!
//! `rediss://` uses rustls on the process-default provider, which the gateway sets to its
//! TLS 1.3-only ring provider before anything else runs (`crate::gateway::tls`).

use std::path::Path;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{IntoConnectionInfo as _, Script};

use super::{Op, Principal, Reply, SessionSeen, SessionTouch, StateError, StateKey, Store};

/// The session rule, atomically (the memory backend's `session_touch` is the same rule):
/// the last activity is the stored one, else the token's start (`ARGV[4]`), raised to this
/// instance's own last sighting (`ARGV[5]`, `ARGV[6]`: activity served from the local copy
/// while Redis was down). Idle past the limit: the entry is kept as the proof (never
/// refreshed). Active: this request becomes the last activity, the entry kept `retain` more.
/// Returns `{active, known, last, first}`.
pub(super) const SESSION_SCRIPT: &str = r"
local v = redis.call('GET', KEYS[1])
local now = tonumber(ARGV[1])
local idle = tonumber(ARGV[2])
local retain = tonumber(ARGV[3])
local last, first
if v then
  local a, b = string.match(v, '^(%d+):(%d+)$')
  last = tonumber(a)
  first = tonumber(b)
end
local known = 1
if not last then
  known = 0
  last = tonumber(ARGV[4])
  first = last
end
local hint = tonumber(ARGV[5])
if hint > last then
  last = hint
  if known == 0 then first = tonumber(ARGV[6]) end
end
if now - last > idle then
  if known == 0 then
    redis.call('SET', KEYS[1], string.format('%d:%d', last, first), 'PX', retain)
  end
  return {0, known, last, first}
end
redis.call('SET', KEYS[1], string.format('%d:%d', math.max(now, last), first), 'PX', retain)
return {1, known, last, first}
";

/// `Store::put_if_newer`, atomically (the memory backend's rule): stores `version|text`
/// with an expiry unless the key holds a version at least as new. Returns 1 if it stored.
const PUT_IF_NEWER_SCRIPT: &str = r"
local v = redis.call('GET', KEYS[1])
if v then
  local n = tonumber(string.match(v, '^(%d+)|'))
  if n and n >= tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[2], 'PX', ARGV[3])
return 1
";

pub(super) struct Remote {
    manager: ConnectionManager,
    script: Script,
    put_if_newer: Script,
    handle: tokio::runtime::Handle,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// How often the health probe pings Redis.
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// How long the probe (and so a connection attempt) may take, off the request path.
pub(super) const BACKGROUND_BUDGET: Duration = Duration::from_secs(1);

impl Remote {
    /// Builds the client (URL, password file, CA file) and starts the `phi-state` thread.
    /// Connects nothing yet.
    pub(super) fn start(
        url: &str,
        password_file: Option<&Path>,
        ca_file: Option<&Path>,
        timeout: Duration,
    ) -> Result<Remote, StateError> {
        let mut info = url.into_connection_info()?;
        if let Some(p) = password_file {
            let pw = std::fs::read_to_string(p).map_err(StateError::Start)?;
            let settings = info.redis_settings().clone().set_password(pw.trim_end());
            info = info.set_redis_settings(settings);
        }
        let client = match ca_file {
            Some(ca) => {
                let root = std::fs::read(ca).map_err(StateError::Start)?;
                redis::Client::build_with_tls(
                    info,
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(root),
                    },
                )?
            }
            None => redis::Client::open(info)?,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("phi-state")
            .build()
            .map_err(StateError::Start)?;
        let handle = rt.handle().clone();
        let manager = {
            let _inside = rt.enter();
            // Reconnects are retried by the next calls (and the probe), not in long loops:
            // one retry, short delays. redis-rs's own limits are the background budget, not
            // the request timeout: a TLS handshake to a distant Redis may take longer than
            // `timeout_ms`, and it is the probe (on this runtime) that waits for it; request
            // calls are cut at `timeout_ms` by `Store::bounded` and answered locally meanwhile.
            let background = timeout.max(BACKGROUND_BUDGET);
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(background))
                .set_response_timeout(Some(background))
                .set_number_of_retries(1)
                .set_min_delay(Duration::from_millis(50))
                .set_max_delay(Duration::from_millis(500));
            ConnectionManager::new_lazy_with_config(client, config)?
        };
        std::thread::Builder::new()
            .name("phi-state".into())
            // The runtime runs for the life of the process: it drives the connection.
            .spawn(move || rt.block_on(std::future::pending::<()>()))
            .map_err(StateError::Start)?;
        Ok(Remote {
            manager,
            script: Script::new(SESSION_SCRIPT),
            put_if_newer: Script::new(PUT_IF_NEWER_SCRIPT),
            handle,
        })
    }

    /// Starts the health probe for `store` on the state runtime (ends with the store).
    pub(super) fn watch(&self, store: std::sync::Weak<Store>) {
        self.handle.spawn(async move {
            loop {
                let Some(s) = store.upgrade() else { break };
                s.probe().await;
                drop(s);
                tokio::time::sleep(PROBE_EVERY).await;
            }
        });
    }

    pub(super) async fn ping(&self) -> Result<(), StateError> {
        let mut c = self.manager.clone();
        let pong: String = redis::cmd("PING").query_async(&mut c).await?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(StateError::Protocol("PING"))
        }
    }

    pub(super) async fn session_touch(
        &self,
        key: &StateKey,
        t: SessionTouch,
        hint: Option<(u64, u64)>,
    ) -> Result<SessionSeen, StateError> {
        let mut c = self.manager.clone();
        let (hint_last, hint_first) = hint.unwrap_or((0, 0));
        let r: Vec<i64> = self
            .script
            .key(key.as_str())
            .arg(t.now_ms)
            .arg(t.idle_ms)
            .arg(t.retain_ms.max(1))
            .arg(t.start_ms)
            .arg(hint_last)
            .arg(hint_first)
            .invoke_async(&mut c)
            .await?;
        let n = |i: usize| {
            r.get(i)
                .and_then(|v| u64::try_from(*v).ok())
                .ok_or(StateError::Protocol("session script"))
        };
        Ok(SessionSeen {
            active: n(0)? == 1,
            known: n(1)? == 1,
            last_seen_ms: n(2)?,
            first_seen_ms: n(3)?,
            local: false,
        })
    }

    pub(super) async fn incr(
        &self,
        key: &StateKey,
        by: u64,
        ttl: Duration,
    ) -> Result<u64, StateError> {
        let mut c = self.manager.clone();
        let (n,): (u64,) = redis::pipe()
            .cmd("INCRBY")
            .arg(key.as_str())
            .arg(by)
            .cmd("PEXPIRE")
            .arg(key.as_str())
            .arg(ms(ttl).max(1))
            .arg("NX")
            .ignore()
            .query_async(&mut c)
            .await?;
        Ok(n)
    }

    pub(super) async fn sum(&self, keys: &[StateKey]) -> Result<u64, StateError> {
        if keys.is_empty() {
            return Ok(0);
        }
        let mut c = self.manager.clone();
        let mut cmd = redis::cmd("MGET");
        for k in keys {
            cmd.arg(k.as_str());
        }
        let values: Vec<Option<u64>> = cmd.query_async(&mut c).await?;
        Ok(values.into_iter().flatten().fold(0u64, u64::saturating_add))
    }

    pub(super) async fn distinct_add(
        &self,
        key: &StateKey,
        member: &Principal,
        ttl: Duration,
    ) -> Result<bool, StateError> {
        let mut c = self.manager.clone();
        let (changed,): (i64,) = redis::pipe()
            .cmd("PFADD")
            .arg(key.as_str())
            .arg(member.as_str())
            .cmd("PEXPIRE")
            .arg(key.as_str())
            .arg(ms(ttl).max(1))
            .arg("NX")
            .ignore()
            .query_async(&mut c)
            .await?;
        Ok(changed == 1)
    }

    pub(super) async fn distinct_count(&self, keys: &[StateKey]) -> Result<u64, StateError> {
        if keys.is_empty() {
            return Ok(0);
        }
        let mut c = self.manager.clone();
        let mut cmd = redis::cmd("PFCOUNT");
        for k in keys {
            cmd.arg(k.as_str());
        }
        Ok(cmd.query_async(&mut c).await?)
    }

    pub(super) async fn set_add(
        &self,
        key: &StateKey,
        member: &Principal,
        ttl: Duration,
        now: u64,
    ) -> Result<(), StateError> {
        let mut c = self.manager.clone();
        let until = now.saturating_add(ms(ttl));
        // NX sets an expiry on a new key, GT only ever pushes it out: the key lives as long
        // as its longest member.
        redis::pipe()
            .cmd("ZREMRANGEBYSCORE")
            .arg(key.as_str())
            .arg("-inf")
            .arg(now)
            .ignore()
            // GT still adds a new member; an existing one only gets a later expiry.
            .cmd("ZADD")
            .arg(key.as_str())
            .arg("GT")
            .arg(until)
            .arg(member.as_str())
            .ignore()
            .cmd("PEXPIRE")
            .arg(key.as_str())
            .arg(ms(ttl).max(1))
            .arg("NX")
            .ignore()
            .cmd("PEXPIRE")
            .arg(key.as_str())
            .arg(ms(ttl).max(1))
            .arg("GT")
            .ignore()
            .query_async::<()>(&mut c)
            .await?;
        Ok(())
    }

    pub(super) async fn set_contains(
        &self,
        key: &StateKey,
        member: &Principal,
        now: u64,
    ) -> Result<bool, StateError> {
        let mut c = self.manager.clone();
        let score: Option<f64> = redis::cmd("ZSCORE")
            .arg(key.as_str())
            .arg(member.as_str())
            .query_async(&mut c)
            .await?;
        Ok(score.is_some_and(|s| s > now as f64))
    }

    pub(super) async fn set_members(
        &self,
        key: &StateKey,
        now: u64,
    ) -> Result<Vec<(String, u64)>, StateError> {
        let mut c = self.manager.clone();
        let v: Vec<(String, f64)> = redis::cmd("ZRANGE")
            .arg(key.as_str())
            .arg(format!("({now}"))
            .arg("+inf")
            .arg("BYSCORE")
            .arg("WITHSCORES")
            .query_async(&mut c)
            .await?;
        let mut out: Vec<(String, u64)> =
            v.into_iter().map(|(m, s)| (m, s.max(0.0) as u64)).collect();
        out.sort();
        Ok(out)
    }

    pub(super) async fn set_remove(
        &self,
        key: &StateKey,
        member: &Principal,
    ) -> Result<(), StateError> {
        let mut c = self.manager.clone();
        redis::cmd("ZREM")
            .arg(key.as_str())
            .arg(member.as_str())
            .query_async::<()>(&mut c)
            .await?;
        Ok(())
    }

    /// One pipeline for the whole batch. Empty key lists send nothing and answer 0.
    pub(super) async fn batch(&self, ops: &[Op]) -> Result<Vec<Reply>, StateError> {
        let mut p = redis::pipe();
        let mut sent = false;
        for op in ops {
            match op {
                Op::Incr { key, by, ttl } => {
                    p.cmd("INCRBY").arg(key.as_str()).arg(*by);
                    p.cmd("PEXPIRE")
                        .arg(key.as_str())
                        .arg(ms(*ttl).max(1))
                        .arg("NX")
                        .ignore();
                }
                Op::Sum(keys) | Op::DistinctCount(keys) if keys.is_empty() => continue,
                Op::Sum(keys) => {
                    let c = p.cmd("MGET");
                    for k in keys {
                        c.arg(k.as_str());
                    }
                }
                Op::DistinctAdd { key, member, ttl } => {
                    p.cmd("PFADD").arg(key.as_str()).arg(member.as_str());
                    p.cmd("PEXPIRE")
                        .arg(key.as_str())
                        .arg(ms(*ttl).max(1))
                        .arg("NX")
                        .ignore();
                }
                Op::DistinctCount(keys) => {
                    let c = p.cmd("PFCOUNT");
                    for k in keys {
                        c.arg(k.as_str());
                    }
                }
                Op::Get(key) => {
                    p.cmd("GET").arg(key.as_str());
                }
                Op::Swap { key, text, ttl } => {
                    p.cmd("SET")
                        .arg(key.as_str())
                        .arg(text.as_str())
                        .arg("PX")
                        .arg(ms(*ttl).max(1))
                        .arg("GET");
                }
            }
            sent = true;
        }
        let mut values = if sent {
            let mut c = self.manager.clone();
            let v: Vec<redis::Value> = p.query_async(&mut c).await?;
            v.into_iter()
        } else {
            Vec::new().into_iter()
        };
        let mut out = Vec::with_capacity(ops.len());
        for op in ops {
            let reply = match op {
                Op::Sum(keys) | Op::DistinctCount(keys) if keys.is_empty() => Reply::Count(0),
                _ => {
                    let v = values.next().ok_or(StateError::Protocol("batch"))?;
                    let bad = |_| StateError::Protocol("batch");
                    match op {
                        Op::Incr { .. } | Op::DistinctCount(_) => {
                            Reply::Count(redis::from_redis_value::<u64>(v).map_err(bad)?)
                        }
                        Op::Sum(_) => {
                            let all: Vec<Option<u64>> = redis::from_redis_value(v).map_err(bad)?;
                            Reply::Count(all.into_iter().flatten().fold(0, u64::saturating_add))
                        }
                        Op::DistinctAdd { .. } => {
                            Reply::Flag(redis::from_redis_value::<i64>(v).map_err(bad)? == 1)
                        }
                        Op::Get(_) | Op::Swap { .. } => {
                            Reply::Text(redis::from_redis_value(v).map_err(bad)?)
                        }
                    }
                }
            };
            out.push(reply);
        }
        Ok(out)
    }

    pub(super) async fn put_if_newer(
        &self,
        key: &StateKey,
        version: u64,
        text: &str,
        ttl: Duration,
    ) -> Result<bool, StateError> {
        let mut c = self.manager.clone();
        let stored: i64 = self
            .put_if_newer
            .key(key.as_str())
            .arg(version)
            .arg(text)
            .arg(ms(ttl).max(1))
            .invoke_async(&mut c)
            .await?;
        Ok(stored == 1)
    }

    pub(super) async fn set_nx(&self, key: &StateKey, ttl: Duration) -> Result<bool, StateError> {
        let mut c = self.manager.clone();
        let set: Option<String> = redis::cmd("SET")
            .arg(key.as_str())
            .arg("1")
            .arg("NX")
            .arg("PX")
            .arg(ms(ttl).max(1))
            .query_async(&mut c)
            .await?;
        Ok(set.is_some())
    }
}
