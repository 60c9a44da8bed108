//! The hand-over between the request path and the writer thread: one bounded queue under one
//! mutex, and a wake-up per batch instead of per record.
//!
//! A `std::sync::mpsc` channel wakes a blocked receiver on every send, so each request used to
//! cost two thread switches (to the writer and back), which on a busy core is most of what the
//! audit trail costs. Here the request path only pushes under a short lock and wakes the writer
//! only when it must:
//!
//! - the writer is **idle** (no traffic a moment ago): the first record wakes it, so at low
//!   load a record reaches the file at once;
//! - the writer is **lingering** (`fsync: batched`, traffic flowing): nobody waits for the
//!   record, so the writer is left alone and takes what accumulated when its short linger
//!   timer ([`LINGER`]) fires, or earlier when [`BATCH_WAKE`] records are waiting;
//! - the writer is **busy** writing a batch: it takes the queue again as soon as it is done,
//!   without a wake-up;
//! - a record whose durability is awaited (`fsync: every_record`) wakes an idle or lingering
//!   writer at once. Records that arrive while it writes and syncs form the next group, which
//!   is written under one fdatasync and acknowledged together (group commit).
//!
//! The queue holds at most `capacity` records; control messages (shutdown, test hooks) are
//! never refused.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::Msg;

/// How long a lingering writer (`fsync: batched`) lets records accumulate before it takes
/// them. Bounded by `fsync_interval_ms` (see [`Handoff::new`]).
pub(super) const LINGER: Duration = Duration::from_millis(5);
/// Records waiting that wake a lingering writer before its timer.
pub(super) const BATCH_WAKE: usize = 64;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Writer {
    /// Writing; it looks at the queue again when done.
    Busy,
    /// Waiting for the first record (woken by it).
    Idle,
    /// Waiting for its linger timer (woken early only by [`BATCH_WAKE`] records or an
    /// awaited record).
    Lingering,
}

struct State {
    items: Vec<Msg>,
    /// Records in `items` (control messages do not count against the capacity).
    records: usize,
    writer: Writer,
    /// The writer thread has ended.
    writer_gone: bool,
    /// The request side is gone (`AuditLog` dropped without a shutdown).
    senders_gone: bool,
}

/// Why a record was not queued.
pub(super) enum Refused {
    Full,
    WriterGone,
}

/// What [`Handoff::take`] found.
pub(super) enum Taken {
    /// Messages were moved into the caller's buffer.
    Messages,
    /// The timeout passed with nothing queued.
    Timeout,
    /// Nothing queued and the request side is gone.
    Disconnected,
}

pub(super) struct Handoff {
    state: Mutex<State>,
    cv: Condvar,
    capacity: usize,
    batch_wake: usize,
    linger: Duration,
    /// Times a pushed record woke the writer (tests check it is per batch, not per record).
    wakeups: AtomicU64,
}

impl Handoff {
    /// A queue for `capacity` records. With `fsync: batched` every `fsync_interval`, the linger
    /// never exceeds that interval.
    pub(super) fn new(capacity: usize, fsync_interval: Option<Duration>) -> Self {
        Self {
            state: Mutex::new(State {
                items: Vec::with_capacity(capacity.min(1024)),
                records: 0,
                writer: Writer::Idle,
                writer_gone: false,
                senders_gone: false,
            }),
            cv: Condvar::new(),
            capacity,
            batch_wake: BATCH_WAKE.min(capacity.div_ceil(2)).max(1),
            linger: fsync_interval.map_or(LINGER, |i| i.min(LINGER)),
            wakeups: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the queue inconsistent (pushes and
        // swaps are single operations), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a record without blocking. `awaited`: somebody waits for its durability ack.
    pub(super) fn push_record(&self, msg: Msg, awaited: bool) -> Result<(), (Refused, Msg)> {
        let mut s = self.lock();
        if s.writer_gone {
            return Err((Refused::WriterGone, msg));
        }
        if s.records >= self.capacity {
            return Err((Refused::Full, msg));
        }
        s.items.push(msg);
        s.records += 1;
        let wake = match s.writer {
            Writer::Busy => false,
            Writer::Idle => true,
            Writer::Lingering => awaited || s.records >= self.batch_wake,
        };
        if wake {
            s.writer = Writer::Busy;
            drop(s);
            self.wakeups.fetch_add(1, Ordering::Relaxed);
            self.cv.notify_one();
        }
        Ok(())
    }

    /// Queues a control message (never refused for capacity) and wakes the writer.
    pub(super) fn push_control(&self, msg: Msg) -> Result<(), Msg> {
        let mut s = self.lock();
        if s.writer_gone {
            return Err(msg);
        }
        s.items.push(msg);
        s.writer = Writer::Busy;
        drop(s);
        self.cv.notify_one();
        Ok(())
    }

    /// The request side is gone: the writer finishes what is queued and stops.
    pub(super) fn close_senders(&self) {
        self.lock().senders_gone = true;
        self.cv.notify_one();
    }

    /// The writer thread has ended: later records are refused as `writer_gone`.
    pub(super) fn writer_gone(&self) {
        let mut s = self.lock();
        s.writer_gone = true;
        s.items.clear();
        s.records = 0;
    }

    /// Writer side: swaps everything queued into `out` (which must be empty), waiting up to
    /// `timeout` for something to arrive. `linger`: the writer expects more traffic and need not
    /// be woken for a record nobody waits on (see the module doc). Returns how many records
    /// were taken along with what happened.
    pub(super) fn take(
        &self,
        out: &mut Vec<Msg>,
        timeout: Duration,
        linger: bool,
    ) -> (Taken, usize) {
        debug_assert!(out.is_empty());
        let deadline = Instant::now() + timeout;
        let mut s = self.lock();
        loop {
            if !s.items.is_empty() {
                std::mem::swap(&mut s.items, out);
                let n = std::mem::take(&mut s.records);
                s.writer = Writer::Busy;
                return (Taken::Messages, n);
            }
            if s.senders_gone {
                return (Taken::Disconnected, 0);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                s.writer = Writer::Idle;
                return (Taken::Timeout, 0);
            }
            s.writer = if linger {
                Writer::Lingering
            } else {
                Writer::Idle
            };
            s = self
                .cv
                .wait_timeout(s, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    /// The longest a lingering writer waits before it takes what accumulated.
    pub(super) fn linger(&self) -> Duration {
        self.linger
    }

    /// How often a record woke the writer so far.
    #[cfg(test)]
    pub(super) fn wakeups(&self) -> u64 {
        self.wakeups.load(Ordering::Relaxed)
    }
}
