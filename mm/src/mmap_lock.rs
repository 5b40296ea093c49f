//! The `mmap_lock` wrappers (include/linux/mmap_lock.h, v5.8+): thin calls over the
//! address space's rw_semaphore with identical semantics, which also record the hold in the
//! current task's held-lock list (what lockdep's `held_locks` shows), so that livelock
//! reports can name the holders of a victim's `mmap_lock`. All emulated mm code takes
//! `mmap_lock` through these.
//!
//! The blocking wrappers also keep a histogram of the waits that slept, per operation and
//! sleep state ([`MmapLockWait`]), in the current task's counters: a histogram version of
//! `CONFIG_LOCK_STAT`'s per-class `waittime` (kernel/locking/lockdep.c `lock_contended()` →
//! `lock_acquired()`, v4.7), for the `oomlab_rwsem_wait_seconds` metric. Nothing here reads
//! the clock: the wrapper reads the task's own `rwsem_sleep_reader|writer` and `rwsem_wait_ns`
//! lock events ([`crate::locking::lock_events`]) before and after the call; the rwsem's slow
//! path, which already timed its sleep, is the only clock reader. A wait that did not sleep
//! (the fast path, or a slow path that got the lock at once) leaves both unchanged and costs
//! two reads of the task's counters. Deviation from lock_stat: only waits that slept are
//! counted (lock_stat also counts contention that spun), and per wait kind, not per lock
//! class (every `mmap_lock` is one class).

use crate::locking::lock_events::LockEvent;
use crate::locking::rwsem::{Killed, ReadGuard, WriteGuard};
use crate::mm_types::{MmStruct, VmaTree};
use crate::sched;
use std::ops::{Deref, DerefMut};

/// Upper bounds of the wait histogram's buckets, ns, inclusive (Prometheus `le`); a wait longer
/// than the last goes to the `+Inf` bucket. 1-2.5-5 steps from 10 µs (a wake-up on a busy
/// host) to 10 s, then 30 s and 60 s: the threads executor's livelock window is 5 s and the
/// sim's 30 s, and an uninterruptible waiter behind a stuck victim waits that long or more.
pub const WAIT_BUCKETS_NS: [u64; 21] = [
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
    30_000_000_000,
    60_000_000_000,
];
/// Buckets including `+Inf`.
pub const WAIT_BUCKETS: usize = WAIT_BUCKETS_NS.len() + 1;
/// Counters per wait kind: the count of waits in each bucket (`0..WAIT_BUCKETS`, the last is
/// `+Inf`), then the total ns of the waits in each bucket (`WAIT_BUCKETS..2 * WAIT_BUCKETS`), so
/// that a histogram can be rebuilt with its exact sum.
pub const WAIT_SLOTS: usize = 2 * WAIT_BUCKETS;

crate::events::per_task_events! {
    /// The kind of an `mmap_lock` wait that slept: operation and sleep state.
    MmapLockWait,
    /// The `mmap_lock` wait histograms of one task (or folded totals): per kind,
    /// [`WAIT_SLOTS`] counters.
    MmapLockWaits,
    NR_MMAP_LOCK_WAITS, slots = WAIT_SLOTS;
    /// `mmap_read_lock()`: `down_read`, TASK_UNINTERRUPTIBLE (faults before v6.5, remote
    /// access, `exit_mmap`).
    ReadUninterruptible => "read_uninterruptible",
    /// `mmap_read_lock_killable()`: `down_read_killable` (faults with v6.5's
    /// `lock_mm_and_find_vma`).
    ReadKillable => "read_killable",
    /// `mmap_write_lock()`: `down_write`, TASK_UNINTERRUPTIBLE.
    WriteUninterruptible => "write_uninterruptible",
    /// `mmap_write_lock_killable()`: `down_write_killable` (v4.7).
    WriteKillable => "write_killable",
}

impl MmapLockWait {
    /// `read` or `write`.
    pub const fn op(self) -> &'static str {
        match self {
            MmapLockWait::ReadUninterruptible | MmapLockWait::ReadKillable => "read",
            MmapLockWait::WriteUninterruptible | MmapLockWait::WriteKillable => "write",
        }
    }
    /// `killable` or `uninterruptible`.
    pub const fn wait(self) -> &'static str {
        match self {
            MmapLockWait::ReadKillable | MmapLockWait::WriteKillable => "killable",
            MmapLockWait::ReadUninterruptible | MmapLockWait::WriteUninterruptible => {
                "uninterruptible"
            }
        }
    }
    fn sleep_event(self) -> LockEvent {
        match self.op() {
            "read" => LockEvent::RwsemSleepReader,
            _ => LockEvent::RwsemSleepWriter,
        }
    }
}

/// The bucket of a wait of `ns` (`WAIT_BUCKETS - 1` is `+Inf`).
pub fn wait_bucket(ns: u64) -> usize {
    WAIT_BUCKETS_NS.partition_point(|&le| le < ns)
}

/// One wait kind's histogram, read from a snapshot of [`MmapLockWaits`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WaitHistogram {
    /// Waits per bucket (not cumulative; the last is `+Inf`).
    pub counts: [u64; WAIT_BUCKETS],
    /// Total ns of the waits in each bucket.
    pub sums_ns: [u64; WAIT_BUCKETS],
}

impl WaitHistogram {
    /// The histogram of `kind` in `snapshot` ([`MmapLockWaits::snapshot`] or the totals of
    /// [`crate::task::TaskList::mmap_lock_waits`]).
    pub fn of(snapshot: &[u64; NR_MMAP_LOCK_WAITS * WAIT_SLOTS], kind: MmapLockWait) -> Self {
        let base = kind as usize * WAIT_SLOTS;
        WaitHistogram {
            counts: std::array::from_fn(|i| snapshot[base + i]),
            sums_ns: std::array::from_fn(|i| snapshot[base + WAIT_BUCKETS + i]),
        }
    }
    /// Waits counted.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
    /// Total ns waited.
    pub fn sum_ns(&self) -> u64 {
        self.sums_ns.iter().sum()
    }
    /// The `q` quantile (0..=1) estimated as Prometheus' `histogram_quantile()` does: linear
    /// interpolation inside the bucket that holds it, the first bucket starting at 0; a
    /// quantile in the `+Inf` bucket is the last finite bound. `None` without waits.
    pub fn quantile_ns(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let mut below = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            if c > 0 && (below + c) as f64 >= rank {
                let Some(&hi) = WAIT_BUCKETS_NS.get(i) else {
                    return Some(WAIT_BUCKETS_NS[WAIT_BUCKETS_NS.len() - 1] as f64);
                };
                let lo = if i == 0 { 0 } else { WAIT_BUCKETS_NS[i - 1] };
                let frac = (rank - below as f64) / c as f64;
                return Some(lo as f64 + (hi - lo) as f64 * frac);
            }
            below += c;
        }
        Some(WAIT_BUCKETS_NS[WAIT_BUCKETS_NS.len() - 1] as f64)
    }
}

/// Run the blocking acquisition `acquire` and, if it slept, count the wait into the current
/// task's histogram of `kind` (the rwsem's slow path times its own sleep; see the module).
/// One look-up of `current` for the whole call: the task outlives its own lock call.
#[inline]
fn counting_wait<T>(kind: MmapLockWait, acquire: impl FnOnce() -> T) -> T {
    sched::with_current_opt(|t| {
        let Some(t) = t else {
            return acquire();
        };
        let ev = t.lock_events();
        let marks = || (ev.get(kind.sleep_event()), ev.get(LockEvent::RwsemWaitNs));
        let (sleeps0, ns0) = marks();
        let r = acquire();
        let (sleeps1, ns1) = marks();
        if sleeps1 != sleeps0 || ns1 != ns0 {
            let ns = ns1.wrapping_sub(ns0);
            let b = wait_bucket(ns);
            // The sum before the count: a reader that sees the count (snapshots read counts
            // first) sees the sum too.
            let waits = t.mmap_lock_waits();
            waits.add_local_at(kind, WAIT_BUCKETS + b, ns);
            waits.add_local_at(kind, b, 1);
        }
        r
    })
}

fn lock_id(mm: &MmStruct) -> usize {
    mm.mmap_lock.raw() as *const _ as usize
}

fn acquired(mm: &MmStruct, write: bool) {
    sched::with_current_opt(|t| {
        if let Some(t) = t {
            t.lockdep_acquired(lock_id(mm), write)
        }
    });
}

fn released(mm: &MmStruct) {
    sched::with_current_opt(|t| {
        if let Some(t) = t {
            t.lockdep_released(lock_id(mm))
        }
    });
}

/// `mmap_lock` held for read.
pub struct MmapReadGuard<'a> {
    mm: &'a MmStruct,
    g: Option<ReadGuard<'a, VmaTree>>,
}

/// `mmap_lock` held for write.
pub struct MmapWriteGuard<'a> {
    mm: &'a MmStruct,
    g: Option<WriteGuard<'a, VmaTree>>,
}

impl Deref for MmapReadGuard<'_> {
    type Target = VmaTree;
    fn deref(&self) -> &VmaTree {
        self.g.as_ref().expect("live guard")
    }
}
impl Deref for MmapWriteGuard<'_> {
    type Target = VmaTree;
    fn deref(&self) -> &VmaTree {
        self.g.as_ref().expect("live guard")
    }
}
impl DerefMut for MmapWriteGuard<'_> {
    fn deref_mut(&mut self) -> &mut VmaTree {
        self.g.as_mut().expect("live guard")
    }
}
impl Drop for MmapReadGuard<'_> {
    fn drop(&mut self) {
        drop(self.g.take());
        released(self.mm);
    }
}
impl Drop for MmapWriteGuard<'_> {
    fn drop(&mut self) {
        drop(self.g.take());
        released(self.mm);
    }
}

impl<'a> MmapWriteGuard<'a> {
    /// `mmap_write_downgrade()`.
    pub fn downgrade(mut self) -> MmapReadGuard<'a> {
        let g = self.g.take().expect("live guard").downgrade();
        let mm = self.mm;
        std::mem::forget(self);
        released(mm);
        acquired(mm, false);
        MmapReadGuard { mm, g: Some(g) }
    }
}

fn read_guard<'a>(mm: &'a MmStruct, g: ReadGuard<'a, VmaTree>) -> MmapReadGuard<'a> {
    acquired(mm, false);
    MmapReadGuard { mm, g: Some(g) }
}
fn write_guard<'a>(mm: &'a MmStruct, g: WriteGuard<'a, VmaTree>) -> MmapWriteGuard<'a> {
    acquired(mm, true);
    MmapWriteGuard { mm, g: Some(g) }
}

/// `mmap_read_lock()`: `down_read`, TASK_UNINTERRUPTIBLE.
pub fn mmap_read_lock(mm: &MmStruct) -> MmapReadGuard<'_> {
    let g = counting_wait(MmapLockWait::ReadUninterruptible, || mm.mmap_lock.read());
    read_guard(mm, g)
}
/// `mmap_read_lock_killable()`.
pub fn mmap_read_lock_killable(mm: &MmStruct) -> Result<MmapReadGuard<'_>, Killed> {
    let g = counting_wait(MmapLockWait::ReadKillable, || mm.mmap_lock.read_killable())?;
    Ok(read_guard(mm, g))
}
/// `mmap_read_trylock()`.
pub fn mmap_read_trylock(mm: &MmStruct) -> Option<MmapReadGuard<'_>> {
    mm.mmap_lock.try_read().map(|g| read_guard(mm, g))
}
/// `mmap_write_lock()`: `down_write`, TASK_UNINTERRUPTIBLE.
pub fn mmap_write_lock(mm: &MmStruct) -> MmapWriteGuard<'_> {
    let g = counting_wait(MmapLockWait::WriteUninterruptible, || mm.mmap_lock.write());
    write_guard(mm, g)
}
/// `mmap_write_lock_killable()` (v4.7 `down_write_killable`).
pub fn mmap_write_lock_killable(mm: &MmStruct) -> Result<MmapWriteGuard<'_>, Killed> {
    let g = counting_wait(MmapLockWait::WriteKillable, || {
        mm.mmap_lock.write_killable()
    })?;
    Ok(write_guard(mm, g))
}
/// `mmap_write_trylock()`.
pub fn mmap_write_trylock(mm: &MmStruct) -> Option<MmapWriteGuard<'_>> {
    mm.mmap_lock.try_write().map(|g| write_guard(mm, g))
}
