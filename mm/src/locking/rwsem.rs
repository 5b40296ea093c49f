//! The killable read-write semaphore (`struct rw_semaphore`), the lock behind `mmap_lock`.
//!
//! Models **Model A** of docs/rwsem-rules.md: `kernel/locking/rwsem-xadd.c` and
//! `include/asm-generic/rwsem.h` of Linux v4.7, with the May-2016 fix "locking/rwsem: Fix
//! down_write_killable()" (Peter Zijlstra) and the killable reader slow path of v4.15
//! (76f8507f7a64), optimistic spinning off (`CONFIG_RWSEM_SPIN_ON_OWNER=n`). The count word,
//! its constants and every transition are the kernel's; only the wait list is a `VecDeque`.
//! [`RwSemModel::RfcV1`] reproduces the unfixed 2016 bail-out path.
//!
//! # State
//!
//! | field | meaning | invariant | changed by | under |
//! |---|---|---|---|---|
//! | `count` (i64) | active part (low 32 bits) + `WAITING_BIAS` terms | see values below | fast paths (one atomic RMW each); slow paths | lock-free / `wait_lock` |
//! | `count` = 0 | free, nobody queued | | | |
//! | `count` = N > 0 | N readers active (or attempting: a failed reader backs out), queue empty | | | |
//! | `count` = `WAITING_BIAS` + N, N ≥ 1 | N active readers (or a writer's transient bias) with a non-empty queue | | | |
//! | `count` = `ACTIVE_WRITE_BIAS` | a writer holds, queue empty | | | |
//! | `count` = `WAITING_BIAS` + `ACTIVE_WRITE_BIAS` | a writer holds, queue non-empty | | | |
//! | `count` = `WAITING_BIAS` | queue non-empty, nobody active (the wake window of AR6) | | | |
//! | one `WAITING_BIAS` term | "someone is queued" | present ⇔ `wait_list` non-empty (at quiescent points; RfcV1 breaks it) | added by whoever makes the list non-empty, removed by whoever empties it | `wait_lock` |
//! | `owner` (tid) | the writer holding the lock, 0 otherwise (`rwsem_set_owner`) | ≠ 0 ⇒ write-held | write acquire / `up_write` / `downgrade_write` | the holder |
//! | `wait_lock` | the kernel's `raw_spinlock_t` | never held across `schedule()` or a sim switch | | |
//! | `wait_list` | FIFO of waiters: task + READ/WRITE | a granted reader is removed by the waker; a writer removes itself once it holds the lock | slow paths, wakers, bail-outs | `wait_lock` |
//! | `Task::rwsem_granted` | the kernel's `waiter.task = NULL`: this reader was granted | set only by a waker, after adding the reader's bias | wakers | `wait_lock` (read lock-free by the reader) |
//!
//! Constants (64-bit): `ACTIVE_MASK` = 0xffff_ffff, `ACTIVE_BIAS` = `ACTIVE_READ_BIAS` = 1,
//! `WAITING_BIAS` = −2³², `ACTIVE_WRITE_BIAS` = `WAITING_BIAS` + 1.
//!
//! # Rules (docs/rwsem-rules.md §3–§5) and where they live
//! AR1 [`RawRwSem::down_read`] fast path; AR2/AR3 [`RawRwSem::down_read_failed`]; AR4 fast path of
//! [`RawRwSem::down_write`]; AR5/AR6 [`RawRwSem::down_write_failed`] + `try_write_lock`; AR7 the
//! trylocks; WK1 `up_read`; WK2 `up_write`; WK3–WK5 [`RawRwSem::mark_wake`]; §5.1 the signal checks in
//! both slow paths; §5.2 the `out_nolock` functions.
//!
//! # Deviations
//! - No optimistic spinning (AR9): a kernel with `CONFIG_RWSEM_SPIN_ON_OWNER=y` could acquire a
//!   free lock slightly earlier. Spinning never checks signals, so no killable rule changes.
//! - `down_read_interruptible` appeared in v5.11 (Model B); here it runs Model A's reader slow
//!   path with TASK_INTERRUPTIBLE.
//! - `wake_q` is a `Vec` of tasks woken after `wait_lock` is dropped, as in v4.7; the
//!   write-slow-path WAKE_READERS case wakes with `wait_lock` held, as the kernel does.
//! - No lockdep. `owner` is a tid, not a task pointer with flag bits.
//! - Lock statistics are per-task counters ([`crate::locking::lock_events`]).

use crate::locking::lock_events::{count as count_event, LockEvent};
use crate::sched;
use crate::sync::{AtomicI64, AtomicU32, Ordering, RawSpinLock};
use crate::task::{state::*, Task, Tid};
use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

/// `RWSEM_ACTIVE_MASK`.
pub const RWSEM_ACTIVE_MASK: i64 = 0xffff_ffff;
/// `RWSEM_UNLOCKED_VALUE`.
pub const RWSEM_UNLOCKED_VALUE: i64 = 0;
/// `RWSEM_ACTIVE_BIAS`.
pub const RWSEM_ACTIVE_BIAS: i64 = 1;
/// `RWSEM_WAITING_BIAS`.
pub const RWSEM_WAITING_BIAS: i64 = -RWSEM_ACTIVE_MASK - 1;
/// `RWSEM_ACTIVE_READ_BIAS`.
pub const RWSEM_ACTIVE_READ_BIAS: i64 = RWSEM_ACTIVE_BIAS;
/// `RWSEM_ACTIVE_WRITE_BIAS`.
pub const RWSEM_ACTIVE_WRITE_BIAS: i64 = RWSEM_WAITING_BIAS + RWSEM_ACTIVE_BIAS;

/// Which kernel's rwsem algorithm a lock follows (per-run knob `rwsem_model`).
///
/// Room is left for Model B (v5.3+/v6.x: flag-bit count, handoff, reader stealing, phase-fair
/// reader wake-up), which will be a third variant dispatched in the same places.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RwSemModel {
    /// v4.7 rwsem-xadd with the May-2016 down_write_killable() fix; killable readers as v4.15.
    #[default]
    A,
    /// The RFC as first merged (v4.7-rc, before the fix): a killed writer only unlinks itself,
    /// leaving a stale `WAITING_BIAS` when it was the last waiter and not waking the waiters
    /// behind it (docs/rwsem-rules.md §5.3).
    RfcV1,
}

impl RwSemModel {
    pub fn name(self) -> &'static str {
        match self {
            RwSemModel::A => "a",
            RwSemModel::RfcV1 => "rfc-v1",
        }
    }
}

impl std::str::FromStr for RwSemModel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "a" => Ok(RwSemModel::A),
            "rfc-v1" => Ok(RwSemModel::RfcV1),
            _ => Err(format!("unknown rwsem model '{s}' (expected a or rfc-v1)")),
        }
    }
}

/// `-EINTR` from a killable wait: SIGKILL arrived while queued; the lock is not held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Killed;
/// `-EINTR` from an interruptible wait: a signal arrived while queued; the lock is not held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interrupted;

impl fmt::Display for Killed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("killed while waiting for the lock (EINTR)")
    }
}
impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("interrupted while waiting for the lock (EINTR)")
    }
}
impl std::error::Error for Killed {}
impl std::error::Error for Interrupted {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WaiterType {
    Read,
    Write,
}

/// `struct rwsem_waiter`.
struct Waiter {
    task: Arc<Task>,
    kind: WaiterType,
}

/// `enum rwsem_wake_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WakeType {
    /// Wake whatever is at the head of the queue.
    Any,
    /// Wake readers only (a writer queued behind readers on a read-held lock).
    Readers,
    /// Waker already holds a read lock (`downgrade_write`).
    ReadOwned,
}

/// `DEFINE_WAKE_Q`: tasks to wake once `wait_lock` is dropped; inline up to a few entries, so
/// that waking one writer or a short batch of readers does not allocate.
type WakeQ = smallvec::SmallVec<[Arc<Task>; 4]>;

/// One waiter as seen by observers (tests, wait-for chains).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WaiterInfo {
    pub tid: Tid,
    pub write: bool,
}

/// The raw semaphore: kernel-shaped calls, no data, no guards. Tests drive it step by step;
/// [`RwSem`] wraps it with typed guards.
///
/// Cache-line aligned, so that the count word every acquisition writes never shares a line
/// with the data it guards (a reader on another CPU would miss on the data after each
/// acquisition there): the host-side counterpart of the kernel keeping `mmap_sem` away from
/// the VMA tree root at the head of `mm_struct`.
#[repr(align(64))]
pub struct RawRwSem {
    count: AtomicI64,
    owner: AtomicU32,
    wait_lock: RawSpinLock<VecDeque<Waiter>>,
    model: RwSemModel,
    name: Arc<str>,
}

impl fmt::Debug for RawRwSem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "RawRwSem({}, count={:#x})",
            self.name,
            self.count.load(Ordering::Relaxed)
        )
    }
}

impl RawRwSem {
    /// `init_rwsem()`.
    pub fn new(name: impl Into<Arc<str>>, model: RwSemModel) -> Self {
        RawRwSem {
            count: AtomicI64::new(RWSEM_UNLOCKED_VALUE),
            owner: AtomicU32::new(0),
            wait_lock: RawSpinLock::new(VecDeque::new()),
            model,
            name: name.into(),
        }
    }

    pub fn name(&self) -> &Arc<str> {
        &self.name
    }
    pub fn model(&self) -> RwSemModel {
        self.model
    }
    /// The raw count word (for tests and diagnostics).
    pub fn count(&self) -> i64 {
        self.count.load(Ordering::SeqCst)
    }
    /// Tid of the writer holding the lock, if any.
    pub fn owner(&self) -> Option<Tid> {
        match self.owner.load(Ordering::Relaxed) {
            0 => None,
            t => Some(t),
        }
    }

    /// Why tasks queued on this lock cannot make progress, judged from the count word, the
    /// owner and the queue **at rest** (no task in the middle of a lock operation, e.g. at
    /// the end of a sim trial): `None` when the state is consistent, or in flux (a queued
    /// waiter was woken and has not run yet).
    ///
    /// At rest the count is `active × ACTIVE_BIAS + biases × WAITING_BIAS`, with one waiting
    /// bias for a writer holding and one while anyone is queued. More biases than that is a
    /// bias nobody will remove (the RFC as first posted: a killed writer leaves its bias
    /// behind, docs/rwsem-rules.md §5.3); waiters with nobody active means nobody will ever wake
    /// them; a reader at the head of the queue while only readers hold means the wake-up that
    /// grants it was skipped (Model A grants it on every path that leaves it there).
    pub fn stuck_diagnosis(&self) -> Option<String> {
        let c = self.count();
        let active = c & RWSEM_ACTIVE_MASK;
        let biases = (active - c) / -RWSEM_WAITING_BIAS;
        let (queued, head_reader) = {
            let q = self.wait_lock.lock();
            if q.iter().any(|w| w.task.state() == TASK_RUNNING) {
                // A waiter was woken and has not run yet: the state is in flux, not at rest.
                return None;
            }
            (
                q.len() as i64,
                q.front().is_some_and(|w| w.kind == WaiterType::Read),
            )
        };
        let writer = i64::from(self.owner().is_some());
        let expected = writer + i64::from(queued > 0);
        let mut why = Vec::new();
        if queued > 0 && active == 0 {
            why.push(format!(
                "nobody holds the lock, yet {queued} waiter(s) sleep and no wake-up is coming"
            ));
        }
        if head_reader && active > 0 && writer == 0 {
            why.push(
                "a reader heads the queue while only readers hold the lock: the wake-up that \
                 should have granted it never ran (a waiter ahead of it left without waking \
                 the queue)"
                    .to_string(),
            );
        }
        if biases > expected {
            why.push(format!(
                "the count carries {biases} waiting bias(es) where {expected} are accounted \
                 for: a stale bias, so every reader takes the slow path and queues ({})",
                match self.model {
                    RwSemModel::RfcV1 => {
                        "the 2016 RFC as first posted leaves a killed writer's bias behind, \
                         docs/rwsem-rules.md §5.3"
                    }
                    RwSemModel::A => "Model A never leaves one: an emulator bug",
                }
            ));
        }
        (!why.is_empty()).then(|| why.join("; "))
    }

    // ---- fast paths (include/asm-generic/rwsem.h) -----------------------------------

    /// `down_read()`: TASK_UNINTERRUPTIBLE, never fails.
    #[inline]
    pub fn down_read(&self) {
        if self.read_fast() {
            return;
        }
        let r = self.down_read_failed(TASK_UNINTERRUPTIBLE);
        debug_assert!(r.is_ok());
    }

    /// `down_read_killable()` (v4.15): -EINTR only if SIGKILL arrives while queued.
    #[inline]
    pub fn down_read_killable(&self) -> Result<(), Killed> {
        if self.read_fast() {
            return Ok(());
        }
        self.down_read_failed(TASK_KILLABLE).map_err(|()| Killed)
    }

    /// `down_read_interruptible()` (v5.11): -EINTR if any signal arrives while queued.
    #[inline]
    pub fn down_read_interruptible(&self) -> Result<(), Interrupted> {
        if self.read_fast() {
            return Ok(());
        }
        self.down_read_failed(TASK_INTERRUPTIBLE)
            .map_err(|()| Interrupted)
    }

    /// `__down_read()`: one atomic increment; succeeds iff the new count is positive (AR1).
    #[inline(always)]
    fn read_fast(&self) -> bool {
        let c = self
            .count
            .fetch_add(RWSEM_ACTIVE_READ_BIAS, Ordering::Acquire)
            + RWSEM_ACTIVE_READ_BIAS;
        if c > 0 {
            count_event(LockEvent::RwsemRlockFast, 1);
            true
        } else {
            false
        }
    }

    /// `down_read_trylock()`: succeeds iff no writer holds and nobody is queued (AR7).
    ///
    /// The cmpxchg loop of x86 `__down_read_trylock` (v4.7), started from a guess of the
    /// unlocked value instead of a load of the count, as "locking/rwsem: Optimize
    /// down_read_trylock()" (ddb20d1d3aed, v5.1) does: the same outcomes, one cache-line
    /// transfer fewer when another CPU wrote the count last.
    #[inline]
    pub fn down_read_trylock(&self) -> bool {
        let mut tmp = RWSEM_UNLOCKED_VALUE;
        while tmp >= 0 {
            match self.count.compare_exchange_weak(
                tmp,
                tmp + RWSEM_ACTIVE_READ_BIAS,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    count_event(LockEvent::RwsemRtrylock, 1);
                    return true;
                }
                Err(now) => tmp = now,
            }
        }
        count_event(LockEvent::RwsemRtrylockFail, 1);
        false
    }

    /// `up_read()`: the reader that leaves no active locker behind wakes the queue (WK1).
    #[inline]
    pub fn up_read(&self) {
        let tmp = self
            .count
            .fetch_sub(RWSEM_ACTIVE_READ_BIAS, Ordering::Release)
            - RWSEM_ACTIVE_READ_BIAS;
        debug_assert!(
            tmp & RWSEM_ACTIVE_MASK != RWSEM_ACTIVE_MASK,
            "up_read of an unlocked rwsem"
        );
        if tmp < -1 && tmp & RWSEM_ACTIVE_MASK == 0 {
            self.rwsem_wake();
        }
    }

    /// `down_write()`: TASK_UNINTERRUPTIBLE, never fails.
    #[inline]
    pub fn down_write(&self) {
        if self.write_fast() {
            return;
        }
        let r = self.down_write_failed(TASK_UNINTERRUPTIBLE);
        debug_assert!(r.is_ok());
    }

    /// `down_write_killable()` (v4.7): -EINTR only if SIGKILL is pending after a failed
    /// attempt in the slow path.
    #[inline]
    pub fn down_write_killable(&self) -> Result<(), Killed> {
        if self.write_fast() {
            return Ok(());
        }
        self.down_write_failed(TASK_KILLABLE).map_err(|()| Killed)
    }

    /// `__down_write()`: add `ACTIVE_WRITE_BIAS`; success iff the count was 0 (AR4).
    #[inline(always)]
    fn write_fast(&self) -> bool {
        let tmp = self
            .count
            .fetch_add(RWSEM_ACTIVE_WRITE_BIAS, Ordering::Acquire)
            + RWSEM_ACTIVE_WRITE_BIAS;
        if tmp == RWSEM_ACTIVE_WRITE_BIAS {
            self.set_owner();
            count_event(LockEvent::RwsemWlockFast, 1);
            true
        } else {
            false
        }
    }

    /// `down_write_trylock()`: succeeds iff the count is exactly 0 (AR7).
    #[inline]
    pub fn down_write_trylock(&self) -> bool {
        let ok = self
            .count
            .compare_exchange(
                RWSEM_UNLOCKED_VALUE,
                RWSEM_ACTIVE_WRITE_BIAS,
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .is_ok();
        if ok {
            self.set_owner();
            count_event(LockEvent::RwsemWtrylock, 1);
        } else {
            count_event(LockEvent::RwsemWtrylockFail, 1);
        }
        ok
    }

    /// `up_write()`: if anyone is queued, WAKE_ANY (WK2).
    #[inline]
    pub fn up_write(&self) {
        self.owner.store(0, Ordering::Relaxed);
        let tmp = self
            .count
            .fetch_sub(RWSEM_ACTIVE_WRITE_BIAS, Ordering::Release)
            - RWSEM_ACTIVE_WRITE_BIAS;
        if tmp < 0 {
            self.rwsem_wake();
        }
    }

    /// `downgrade_write()`: write hold → one read hold, then grant the head readers (WK5).
    pub fn downgrade_write(&self) {
        self.owner.store(0, Ordering::Relaxed);
        let tmp = self.count.fetch_add(-RWSEM_WAITING_BIAS, Ordering::AcqRel) - RWSEM_WAITING_BIAS;
        count_event(LockEvent::RwsemDowngrade, 1);
        if tmp < 0 {
            self.rwsem_downgrade_wake();
        }
    }

    /// `rwsem_is_locked()`: the count is not the unlocked value (true also when only the
    /// waiting bias is left, as in the kernel).
    pub fn is_locked(&self) -> bool {
        self.count.load(Ordering::Relaxed) != RWSEM_UNLOCKED_VALUE
    }

    /// `rwsem_is_contended()`: the wait list is non-empty.
    pub fn is_contended(&self) -> bool {
        !self.wait_lock.lock().is_empty()
    }

    /// The queue, head first (a snapshot under `wait_lock`).
    pub fn waiters(&self) -> Vec<WaiterInfo> {
        self.wait_lock
            .lock()
            .iter()
            .map(|w| WaiterInfo {
                tid: w.task.tid(),
                write: w.kind == WaiterType::Write,
            })
            .collect()
    }

    fn set_owner(&self) {
        let tid = crate::sched::with_current_opt(|t| t.map_or(0, |t| t.tid()));
        self.owner.store(tid, Ordering::Relaxed);
    }

    // ---- slow paths (kernel/locking/rwsem-xadd.c) ------------------------------------

    /// `__rwsem_mark_wake()` (v4.7), under `wait_lock`; the queue must be non-empty.
    /// A head writer is only woken (WAKE_ANY); head readers are granted: their bias is added
    /// to the count before any of them runs, they are unlinked and marked granted.
    fn mark_wake(&self, q: &mut VecDeque<Waiter>, wake_type: WakeType, wake_q: &mut WakeQ) {
        let head = q.front().expect("mark_wake on an empty wait list");
        if head.kind == WaiterType::Write {
            if wake_type == WakeType::Any {
                // Wake the writer at the front but do not grant it the lock: other writers
                // may steal it (AR6).
                wake_q.push(head.task.clone());
                count_event(LockEvent::RwsemWakeWriter, 1);
            }
            return;
        }

        // Reserve the first reader grant before counting readers, to bail out early if a
        // writer stole the lock.
        let mut adjustment = 0;
        if wake_type != WakeType::ReadOwned {
            adjustment = RWSEM_ACTIVE_READ_BIAS;
            loop {
                let oldcount = self.count.fetch_add(adjustment, Ordering::AcqRel);
                if oldcount < RWSEM_WAITING_BIAS {
                    // A writer stole the lock. Undo our reader grant.
                    let now = self.count.fetch_sub(adjustment, Ordering::AcqRel) - adjustment;
                    if now & RWSEM_ACTIVE_MASK != 0 {
                        return;
                    }
                    // Deviation: nothing changed the count between our grant and its undo, so
                    // retrying cannot succeed. This state (two waiting biases, nobody active)
                    // is unreachable in Model A; with RfcV1's stale bias v4.7 would spin here
                    // until another CPU touched the count (a hard lockup on one CPU). The
                    // emulation abandons the grant instead, as docs/rwsem-rules.md §5.3 describes,
                    // so the sim reports the stranded reader as a deadlock.
                    if now == oldcount {
                        return;
                    }
                    // The last active locker left: retry.
                    continue;
                }
                break;
            }
        }

        // Grant an unbounded number of read locks to the readers at the front of the queue.
        let woken = q.iter().take_while(|w| w.kind == WaiterType::Read).count() as i64;
        let mut adj = woken * RWSEM_ACTIVE_READ_BIAS - adjustment;
        if woken as usize == q.len() {
            // Hit the end of the list: nobody is left waiting.
            adj -= RWSEM_WAITING_BIAS;
        }
        if adj != 0 {
            self.count.fetch_add(adj, Ordering::AcqRel);
        }
        for _ in 0..woken {
            let w = q.pop_front().expect("counted reader");
            w.task.rwsem_granted.store(true, Ordering::Release);
            wake_q.push(w.task);
        }
        count_event(LockEvent::RwsemWakeReader, woken as u64);
    }

    /// `rwsem_wake()`.
    #[cold]
    fn rwsem_wake(&self) {
        let mut wake_q = WakeQ::new();
        {
            let mut q = self.wait_lock.lock();
            if !q.is_empty() {
                self.mark_wake(&mut q, WakeType::Any, &mut wake_q);
            }
        }
        wake_up_q(wake_q);
    }

    /// `rwsem_downgrade_wake()`.
    #[cold]
    fn rwsem_downgrade_wake(&self) {
        let mut wake_q = WakeQ::new();
        {
            let mut q = self.wait_lock.lock();
            if !q.is_empty() {
                self.mark_wake(&mut q, WakeType::ReadOwned, &mut wake_q);
            }
        }
        wake_up_q(wake_q);
    }

    /// `rwsem_down_read_failed()` (v4.7) with the killable loop of
    /// `__rwsem_down_read_failed_common()` (v4.15). Err(()) is -EINTR.
    #[cold]
    fn down_read_failed(&self, state: u32) -> Result<(), ()> {
        let cur = sched::current();
        let mut adjustment = -RWSEM_ACTIVE_READ_BIAS;
        let mut wake_q = WakeQ::new();
        cur.rwsem_granted.store(false, Ordering::Relaxed);
        {
            let mut q = self.wait_lock.lock();
            if q.is_empty() {
                adjustment += RWSEM_WAITING_BIAS;
            }
            q.push_back(Waiter {
                task: cur.clone(),
                kind: WaiterType::Read,
            });
            // We are now waiting on the lock, but no longer actively locking.
            let count = self.count.fetch_add(adjustment, Ordering::AcqRel) + adjustment;
            // If there are no active locks, wake the front queued process(es). If there are no
            // writers and we are first in the queue, wake our own waiter to join the existing
            // active readers.
            if count == RWSEM_WAITING_BIAS
                || (count > RWSEM_WAITING_BIAS && adjustment != -RWSEM_ACTIVE_READ_BIAS)
            {
                self.mark_wake(&mut q, WakeType::Any, &mut wake_q);
            }
        }
        wake_up_q(wake_q);

        let func = match state {
            TASK_UNINTERRUPTIBLE => "rwsem_down_read_failed",
            TASK_KILLABLE => "rwsem_down_read_failed_killable",
            _ => "rwsem_down_read_failed_interruptible",
        };
        cur.set_wchan_on(func, &self.name, self as *const _ as usize);
        let mut slept_since = None;
        let result = loop {
            sched::set_current_state(state);
            if cur.rwsem_granted.load(Ordering::Acquire) {
                break Ok(());
            }
            if cur.signal_pending_state(state) {
                let mut q = self.wait_lock.lock();
                // A waker may have granted us concurrently.
                if cur.rwsem_granted.load(Ordering::Acquire) {
                    break Ok(());
                }
                self.read_out_nolock(&mut q, &cur);
                break Err(());
            }
            if slept_since.is_none() {
                slept_since = Some(sched::ktime_get_ns());
                count_event(LockEvent::RwsemSleepReader, 1);
            }
            sched::schedule();
        };
        sched::__set_current_state(TASK_RUNNING);
        cur.set_wchan(None);
        if let Some(t0) = slept_since {
            count_event(LockEvent::RwsemWaitNs, sched::ktime_get_ns() - t0);
        }
        count_event(
            if result.is_ok() {
                LockEvent::RwsemRlock
            } else {
                LockEvent::RwsemRlockFail
            },
            1,
        );
        result
    }

    /// The reader's `out_nolock` (v4.15, §5.2): unlink; if the queue became empty remove the
    /// waiting bias. Model A readers never wake anyone here (a reader only waits behind a
    /// writer that holds or is queued ahead, and that writer's release does the wake).
    fn read_out_nolock(&self, q: &mut VecDeque<Waiter>, cur: &Task) {
        unlink(q, cur);
        if q.is_empty() {
            self.count.fetch_add(-RWSEM_WAITING_BIAS, Ordering::AcqRel);
        }
    }

    /// `rwsem_try_write_lock()` (v4.7), under `wait_lock`: take the lock iff nobody is active,
    /// whatever our position in the queue (AR5/AR6).
    fn try_write_lock(&self, count: i64, q: &VecDeque<Waiter>) -> bool {
        if count != RWSEM_WAITING_BIAS {
            return false;
        }
        let new = if q.len() == 1 {
            RWSEM_ACTIVE_WRITE_BIAS
        } else {
            RWSEM_ACTIVE_WRITE_BIAS + RWSEM_WAITING_BIAS
        };
        if self
            .count
            .compare_exchange(RWSEM_WAITING_BIAS, new, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            self.set_owner();
            return true;
        }
        false
    }

    /// `__rwsem_down_write_failed_common()` (v4.7 + the May-2016 fix). Err(()) is -EINTR.
    #[cold]
    fn down_write_failed(&self, state: u32) -> Result<(), ()> {
        // Undo the write bias of the fast path: stop active locking.
        // (Its result would only feed optimistic spinning: CONFIG_RWSEM_SPIN_ON_OWNER=n.)
        self.count
            .fetch_sub(RWSEM_ACTIVE_WRITE_BIAS, Ordering::AcqRel);
        let cur = sched::current();
        let func = if state == TASK_KILLABLE {
            "rwsem_down_write_failed_killable"
        } else {
            "rwsem_down_write_failed"
        };
        let mut q = self.wait_lock.lock();
        let waiting = !q.is_empty();
        q.push_back(Waiter {
            task: cur.clone(),
            kind: WaiterType::Write,
        });
        let mut count;
        if waiting {
            count = self.count.load(Ordering::Acquire);
            // Threads were queued before us and no writer is active: the lock is read-owned,
            // so wake the readers queued ahead of us (424acaaeb3a3). Like the kernel, wake
            // them with wait_lock held.
            if count > RWSEM_WAITING_BIAS {
                let mut wake_q = WakeQ::new();
                self.mark_wake(&mut q, WakeType::Readers, &mut wake_q);
                wake_up_q(wake_q);
            }
        } else {
            count = self.count.fetch_add(RWSEM_WAITING_BIAS, Ordering::AcqRel) + RWSEM_WAITING_BIAS;
        }

        cur.set_wchan_on(func, &self.name, self as *const _ as usize);
        let mut slept_since = None;
        // Wait until we successfully acquire the lock.
        sched::set_current_state(state);
        let result = loop {
            if self.try_write_lock(count, &q) {
                unlink(&mut q, &cur);
                drop(q);
                break Ok(());
            }
            drop(q);
            // Block until there are no active lockers.
            let mut killed = false;
            loop {
                if cur.signal_pending_state(state) {
                    killed = true;
                    break;
                }
                if slept_since.is_none() {
                    slept_since = Some(sched::ktime_get_ns());
                    count_event(LockEvent::RwsemSleepWriter, 1);
                }
                sched::schedule();
                sched::set_current_state(state);
                count = self.count.load(Ordering::Acquire);
                if count & RWSEM_ACTIVE_MASK == 0 {
                    break;
                }
            }
            if killed {
                break Err(());
            }
            q = self.wait_lock.lock();
        };
        sched::__set_current_state(TASK_RUNNING);
        cur.set_wchan(None);
        match result {
            Ok(()) => count_event(LockEvent::RwsemWlock, 1),
            Err(()) => {
                self.write_out_nolock(&cur);
                count_event(LockEvent::RwsemWlockFail, 1);
            }
        }
        if let Some(t0) = slept_since {
            count_event(LockEvent::RwsemWaitNs, sched::ktime_get_ns() - t0);
        }
        result
    }

    /// The writer's `out_nolock` (§5.2/§5.3). Model A (fixed): unlink; if the queue became
    /// empty remove the waiting bias, otherwise WAKE_ANY so that waiters blocked only by us
    /// proceed. RfcV1: unlink only.
    #[cold]
    fn write_out_nolock(&self, cur: &Task) {
        let mut wake_q = WakeQ::new();
        {
            let mut q = self.wait_lock.lock();
            unlink(&mut q, cur);
            match self.model {
                RwSemModel::A => {
                    if q.is_empty() {
                        self.count.fetch_add(-RWSEM_WAITING_BIAS, Ordering::AcqRel);
                    } else {
                        self.mark_wake(&mut q, WakeType::Any, &mut wake_q);
                    }
                }
                RwSemModel::RfcV1 => {}
            }
        }
        wake_up_q(wake_q);
    }
}

/// `list_del(&waiter.list)` for the current task's entry.
fn unlink(q: &mut VecDeque<Waiter>, cur: &Task) {
    let pos = q
        .iter()
        .position(|w| std::ptr::eq(Arc::as_ptr(&w.task), cur))
        .expect("rwsem waiter missing from its wait list");
    q.remove(pos);
}

/// `wake_up_q()`.
fn wake_up_q(wake_q: WakeQ) {
    for t in wake_q {
        sched::wake_up_process(&t);
    }
}

// ---- the typed facade ---------------------------------------------------------------------

/// A read-write semaphore guarding a `T`, with RAII guards (the `lock_api` shape over
/// [`RawRwSem`]).
pub struct RwSem<T: ?Sized> {
    raw: RawRwSem,
    data: UnsafeCell<T>,
}

// SAFETY: the semaphore provides reader/writer exclusion for `data`.
unsafe impl<T: ?Sized + Send> Send for RwSem<T> {}
unsafe impl<T: ?Sized + Send + Sync> Sync for RwSem<T> {}

impl<T> RwSem<T> {
    pub fn new(name: impl Into<Arc<str>>, model: RwSemModel, data: T) -> Self {
        RwSem {
            raw: RawRwSem::new(name, model),
            data: UnsafeCell::new(data),
        }
    }
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: ?Sized> RwSem<T> {
    /// The state machine underneath.
    pub fn raw(&self) -> &RawRwSem {
        &self.raw
    }
    pub fn read(&self) -> ReadGuard<'_, T> {
        self.raw.down_read();
        ReadGuard { sem: self }
    }
    pub fn read_killable(&self) -> Result<ReadGuard<'_, T>, Killed> {
        self.raw.down_read_killable()?;
        Ok(ReadGuard { sem: self })
    }
    pub fn read_interruptible(&self) -> Result<ReadGuard<'_, T>, Interrupted> {
        self.raw.down_read_interruptible()?;
        Ok(ReadGuard { sem: self })
    }
    pub fn try_read(&self) -> Option<ReadGuard<'_, T>> {
        // `then`, not `then_some`: a guard built eagerly would up_read on a failed trylock.
        self.raw
            .down_read_trylock()
            .then(|| ReadGuard { sem: self })
    }
    pub fn write(&self) -> WriteGuard<'_, T> {
        self.raw.down_write();
        WriteGuard { sem: self }
    }
    pub fn write_killable(&self) -> Result<WriteGuard<'_, T>, Killed> {
        self.raw.down_write_killable()?;
        Ok(WriteGuard { sem: self })
    }
    pub fn try_write(&self) -> Option<WriteGuard<'_, T>> {
        self.raw
            .down_write_trylock()
            .then(|| WriteGuard { sem: self })
    }
    pub fn is_locked(&self) -> bool {
        self.raw.is_locked()
    }
    pub fn is_contended(&self) -> bool {
        self.raw.is_contended()
    }
    /// Mutable access without locking, through exclusive ownership.
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }
}

/// A read hold; `up_read` on drop.
#[must_use = "the lock is released when the guard is dropped"]
pub struct ReadGuard<'a, T: ?Sized> {
    sem: &'a RwSem<T>,
}

/// A write hold; `up_write` on drop.
#[must_use = "the lock is released when the guard is dropped"]
pub struct WriteGuard<'a, T: ?Sized> {
    sem: &'a RwSem<T>,
}

impl<'a, T: ?Sized> WriteGuard<'a, T> {
    /// `downgrade_write()`.
    pub fn downgrade(self) -> ReadGuard<'a, T> {
        let sem = self.sem;
        std::mem::forget(self);
        sem.raw.downgrade_write();
        ReadGuard { sem }
    }
}

impl<T: ?Sized> Deref for ReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: a read hold excludes writers.
        unsafe { &*self.sem.data.get() }
    }
}
impl<T: ?Sized> Deref for WriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: a write hold is exclusive.
        unsafe { &*self.sem.data.get() }
    }
}
impl<T: ?Sized> DerefMut for WriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: a write hold is exclusive.
        unsafe { &mut *self.sem.data.get() }
    }
}
impl<T: ?Sized> Drop for ReadGuard<'_, T> {
    fn drop(&mut self) {
        self.sem.raw.up_read();
    }
}
impl<T: ?Sized> Drop for WriteGuard<'_, T> {
    fn drop(&mut self) {
        self.sem.raw.up_write();
    }
}
