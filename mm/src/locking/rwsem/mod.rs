//! The killable read-write semaphore (`struct rw_semaphore`), the lock behind `mmap_lock`.
//!
//! Three models of the kernel's algorithm, chosen per lock at creation ([`RwSemConfig`]), each
//! with or without writer optimistic spinning ([`RwSemSpin`], `CONFIG_RWSEM_SPIN_ON_OWNER`):
//!
//! | model | kernel | file |
//! |---|---|---|
//! | [`RwSemModel::A`] | `kernel/locking/rwsem-xadd.c` + `include/asm-generic/rwsem.h`, Linux v4.7, with the May-2016 fix "locking/rwsem: Fix down_write_killable()" (Peter Zijlstra) and the killable reader slow path of v4.15 (76f8507f7a64) | [`xadd`] |
//! | [`RwSemModel::RfcV1`] | the same, with the 2016 RFC's unfixed writer bail-out (docs/rwsem-rules.md §5.3) | [`xadd`] |
//! | [`RwSemModel::B`] | `kernel/locking/rwsem.c`, Linux v6.6 (the v5.3 rewrite: flag-bit count, handoff, reader lock stealing, phase-fair reader wake-up; later fixes up to v6.6) | [`model_b`] |
//!
//! The rules (docs/rwsem-rules.md AR1–AR9, WK1–WK6, §5.1–§5.5) are listed in each model's
//! file with the function that implements them; optimistic spinning is in [`xadd`] and
//! [`model_b`] on top of the shared pieces of `spin.rs`. This file holds what all models share:
//! the wait list, the raw interface ([`RawRwSem`]), the model-independent [`RawRwSem::snapshot`]
//! and [`RawRwSem::stuck_diagnosis`], and the guard-returning facade ([`RwSem`]).
//!
//! # State (all models)
//!
//! | field | meaning | invariant | changed by | under |
//! |---|---|---|---|---|
//! | `count` (i64) | the kernel's count word; encoding per model: [`xadd`] (`ACTIVE_MASK`/`WAITING_BIAS`), [`model_b`] (`WRITER_LOCKED`/`FLAG_WAITERS`/`FLAG_HANDOFF`/reader count/`READFAIL`) | see the model | fast paths (one atomic RMW each), slow paths, wakers | lock-free / `wait_lock` |
//! | `owner` bits 63..2 | tid of the writer holding the lock (A, B); B also the last reader to take it, with `READER_OWNED` | 0 while free in A; write-held ⇒ the writer's tid (0 for a holder outside any task) | write acquisitions and releases; B: read acquisitions (`rwsem_set_reader_owned`) | the holder / lock-free |
//! | `owner` bit 0 `RWSEM_READER_OWNED` | B: the lock is (or was last) reader-owned | A: never set | B read acquisitions, `downgrade_write`; cleared by a writer's `rwsem_set_owner` | lock-free |
//! | `owner` bit 1 `RWSEM_NONSPINNABLE` | B: a writer gave up spinning on the readers; writers do not spin until the readers are gone | set only while `READER_OWNED` | B spinners set; last `up_read` to a waiter-only count and `rwsem_cond_wake_waiter` clear; a writer's `rwsem_set_owner` clears | lock-free |
//! | `wait_lock` | the kernel's `raw_spinlock_t` (a parking_lot mutex; loom's under `--cfg oomlab_loom`) | never held across `schedule()`, `cond_resched()` or a sim switch | | |
//! | `WaitList::q` | the kernel's `wait_list`: FIFO of `rwsem_waiter`s (task, READ/WRITE, sleep state, B's `timeout` and `handoff_set`) | a granted reader is removed by the waker; a writer removes itself once it holds the lock; a killed waiter removes itself | slow paths, wakers, bail-outs | `wait_lock` |
//! | `WaitList::granted` | readers a waker granted (the kernel's `waiter.task = NULL`), kept for [`RawRwSem::snapshot`] until they are back from their slow path (emulator bookkeeping) | disjoint from `q`; an entry is pending while its task's `rwsem_granted` is set and its wait channel is this lock | added by the waker that grants; entries whose reader returned are dropped by the next waker that grants | `wait_lock` |
//! | `WaitList::handoff_setter` | B: the task that set `RWSEM_FLAG_HANDOFF` (diagnostics; the kernel does not keep it) | ≠ 0 ⇔ the bit is set (at rest) | whoever sets or clears the bit | `wait_lock` |
//! | `Task::rwsem_granted` | the kernel's `waiter.task == NULL`: this reader was granted | set only by a waker, after adding the reader's bias; cleared by the reader when it enqueues and when it returns | wakers / the reader | `wait_lock` (read and cleared lock-free by the reader) |
//! | `osq` | spin only: the optimistic spin queue; its head is the one task spinning on `count` | at most one task spins on the lock word | spinners | its own lock |
//!
//! # Deviations common to the models
//! - Wakers collect tasks in a `wake_q` (an inline vector) and wake them after `wait_lock` is
//!   dropped: the form of v4.8 (133e89ef5ef3, "locking/rwsem: Enable lockless waiter
//!   wakeup(s)") and of Model B's kernels. v4.7's `__rwsem_do_wake()` called
//!   `wake_up_process()` under `wait_lock`; Model A keeps that only for the write slow path's
//!   WAKE_READERS case (see [`xadd`]). The grant itself (the bias in the count, the reader's
//!   `waiter.task = NULL`) is made under `wait_lock` in both forms, so which waiter gets the
//!   lock is the same; only the moment the woken task may first run moves later.
//! - No lockdep. `owner` is a tid with the flag bits below it, not a task pointer.
//! - Lock statistics are per-task counters ([`crate::locking::lock_events`]).
//! - No RT scheduling class: `rt_task()` is always false (Model B's RT handoff and spinning
//!   rules never apply).

pub mod model_b;
mod spin;
pub mod xadd;

pub use spin::{RWSEM_SPIN_MAX_NS, RWSEM_SPIN_MAX_STEPS, RWSEM_SPIN_STEP_NS};
pub use xadd::{
    RWSEM_ACTIVE_BIAS, RWSEM_ACTIVE_MASK, RWSEM_ACTIVE_READ_BIAS, RWSEM_ACTIVE_WRITE_BIAS,
    RWSEM_UNLOCKED_VALUE, RWSEM_WAITING_BIAS,
};

use crate::locking::lock_events::{count as count_event, LockEvent};
use crate::sched;
use crate::sync::{AtomicI64, Ordering, RawSpinLock};
use crate::task::{state::*, Task, Tid};
use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

/// Which kernel's rwsem algorithm a lock follows (chosen per lock, see [`RwSemConfig`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RwSemModel {
    /// v4.7 rwsem-xadd with the May-2016 down_write_killable() fix; killable readers as v4.15.
    #[default]
    A,
    /// The RFC as first merged (v4.7-rc, before the fix): a killed writer only unlinks itself,
    /// leaving a stale `WAITING_BIAS` when it was the last waiter and not waking the waiters
    /// behind it (docs/rwsem-rules.md §5.3).
    RfcV1,
    /// v6.6 `kernel/locking/rwsem.c`: handoff, reader lock stealing, phase-fair reader wake-up,
    /// `rwsem_del_wake_waiter` on bail-out (docs/rwsem-rules.md, rules marked \[B\]).
    B,
}

impl RwSemModel {
    pub fn name(self) -> &'static str {
        match self {
            RwSemModel::A => "a",
            RwSemModel::RfcV1 => "rfc-v1",
            RwSemModel::B => "b",
        }
    }
}

/// `CONFIG_RWSEM_SPIN_ON_OWNER`: do writers spin on the lock before they queue (AR9)?
///
/// Kernels: the option exists since v3.16 ("locking/rwsem: Support optimistic spinning",
/// 4fc828e24cd9) as `def_bool y` on `SMP && ARCH_SUPPORTS_ATOMIC_RMW` (x86, arm64, …; later
/// also `!PREEMPT_RT`), so the SMP v4.7 and v6.x kernels that distributions ship spin; it is
/// off on uniprocessor builds and on architectures without atomic RMW. Reader spinning
/// (v5.3–v5.10) is not modelled: v5.11 (617f3ef95177) removed it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RwSemSpin {
    /// `CONFIG_RWSEM_SPIN_ON_OWNER=n`: every contended writer queues and sleeps.
    #[default]
    Off,
    /// `CONFIG_RWSEM_SPIN_ON_OWNER=y`: writer optimistic spinning as the model's kernel does it.
    On,
}

impl RwSemSpin {
    pub fn name(self) -> &'static str {
        match self {
            RwSemSpin::Off => "off",
            RwSemSpin::On => "on",
        }
    }
}

/// How one lock is built: its model and its spin setting, both fixed at creation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RwSemConfig {
    pub model: RwSemModel,
    pub spin: RwSemSpin,
}

impl RwSemConfig {
    pub fn new(model: RwSemModel, spin: RwSemSpin) -> RwSemConfig {
        RwSemConfig { model, spin }
    }
}

impl From<RwSemModel> for RwSemConfig {
    /// The model without spinning.
    fn from(model: RwSemModel) -> RwSemConfig {
        RwSemConfig {
            model,
            spin: RwSemSpin::Off,
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

/// `enum rwsem_waiter_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WaiterType {
    Read,
    Write,
}

/// The sleep state a waiter waits in (which signals end its wait, §5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WaitState {
    /// `TASK_UNINTERRUPTIBLE`: no signal ends the wait.
    Uninterruptible,
    /// `TASK_KILLABLE`: SIGKILL ends it.
    Killable,
    /// `TASK_INTERRUPTIBLE`: any signal ends it.
    Interruptible,
}

impl WaitState {
    fn of(state: u32) -> WaitState {
        match state {
            TASK_KILLABLE => WaitState::Killable,
            TASK_INTERRUPTIBLE => WaitState::Interruptible,
            _ => WaitState::Uninterruptible,
        }
    }
}

/// `struct rwsem_waiter`.
struct Waiter {
    task: Arc<Task>,
    kind: WaiterType,
    /// The sleep state of the wait (`TASK_*`).
    state: u32,
    /// Arrival order (emulator bookkeeping for snapshots).
    seq: u64,
    /// B: `jiffies + RWSEM_WAIT_TIMEOUT` at enqueue; 0 in A.
    timeout: u64,
    /// B: the handoff bit is credited to this waiter (v5.19+ / v6.3+ semantics).
    handoff_set: bool,
}

/// A reader a waker granted that has not returned from its slow path yet. Only a `Weak`
/// reference: the entry may outlive the grant until the next waker prunes it, and a strong
/// one would keep the task, its process and through `signal->oom_mm` this very lock's address
/// space alive (a reference cycle that leaked every OOM victim's frame pool).
struct GrantedReader {
    task: std::sync::Weak<Task>,
    state: u32,
    seq: u64,
}

/// What `wait_lock` protects.
struct WaitList {
    q: VecDeque<Waiter>,
    granted: Vec<GrantedReader>,
    next_seq: u64,
    /// B: who set `RWSEM_FLAG_HANDOFF` (0: nobody / the bit is clear).
    handoff_setter: Tid,
}

impl WaitList {
    fn new() -> WaitList {
        WaitList {
            q: VecDeque::new(),
            granted: Vec::new(),
            next_seq: 0,
            handoff_setter: 0,
        }
    }

    /// `list_add_tail(&waiter->list, &sem->wait_list)`.
    fn add(&mut self, task: Arc<Task>, kind: WaiterType, state: u32, timeout: u64) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.q.push_back(Waiter {
            task,
            kind,
            state,
            seq,
            timeout,
            handoff_set: false,
        });
    }

    fn position(&self, cur: &Task) -> Option<usize> {
        self.q
            .iter()
            .position(|w| std::ptr::eq(Arc::as_ptr(&w.task), cur))
    }

    /// `list_del(&waiter.list)` for the current task's entry.
    fn unlink(&mut self, cur: &Task) -> Waiter {
        let pos = self
            .position(cur)
            .expect("rwsem waiter missing from its wait list");
        self.q.remove(pos).expect("position in range")
    }

    /// Drop the `granted` entries of readers that returned (before a waker adds new ones, so
    /// that the list holds one batch at most).
    fn prune_granted(&mut self) {
        self.granted.retain(|g| {
            g.task
                .upgrade()
                .is_some_and(|t| t.rwsem_granted.load(Ordering::Relaxed))
        });
    }

    /// The grant of a reader waiter: the kernel clears `waiter->task` (release) and queues the
    /// task for waking. The reader's bias must already be in the count.
    fn grant(&mut self, w: Waiter, wake_q: &mut WakeQ) {
        w.task.rwsem_granted.store(true, Ordering::Release);
        self.granted.push(GrantedReader {
            task: Arc::downgrade(&w.task),
            state: w.state,
            seq: w.seq,
        });
        wake_q.push(w.task);
    }
}

/// `enum rwsem_wake_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WakeType {
    /// Wake whatever is at the head of the queue.
    Any,
    /// Wake readers only (a writer queued behind readers on a read-held lock).
    Readers,
    /// Waker already holds a read lock (`downgrade_write`, B's reader stealing).
    ReadOwned,
}

/// `DEFINE_WAKE_Q`: tasks to wake once `wait_lock` is dropped; inline up to a few entries, so
/// that waking one writer or a short batch of readers does not allocate.
type WakeQ = smallvec::SmallVec<[Arc<Task>; 4]>;

/// `wake_up_q()`.
fn wake_up_q(wake_q: WakeQ) {
    for t in wake_q {
        sched::wake_up_process(&t);
    }
}

/// One waiter as seen by observers (tests, wait-for chains): the kernel's wait list only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WaiterInfo {
    pub tid: Tid,
    pub write: bool,
}

/// A task in a lock's slow path, as [`RawRwSem::snapshot`] shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedTask {
    pub tid: Tid,
    pub kind: WaiterType,
    pub wait: WaitState,
    /// A reader a waker granted (its bias is in the count and it left the kernel's wait list)
    /// that has not returned from `down_read*` yet. Writers are never granted (AR5).
    pub granted: bool,
    /// The task is runnable (a waker or a signal woke it, or it has not slept yet) while
    /// still waiting: the state is in flux, not at rest.
    pub woken: bool,
    /// B: the handoff bit is credited to this waiter (`rwsem_waiter::handoff_set`).
    pub handoff_set: bool,
}

/// `RWSEM_FLAG_HANDOFF` and its bookkeeping (Model B).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandoffInfo {
    /// The task that set the bit (a waiter's own try, or the waker that found a timed-out
    /// reader at the head); `None` after the setter left and the bit was inherited (v5.16+).
    pub set_by: Option<Tid>,
    /// The waiter the bit is credited to (`handoff_set`), if it is still queued.
    pub credited_to: Option<Tid>,
}

/// A model-independent view of one lock, taken under `wait_lock`: what tests, reports and
/// [`RawRwSem::stuck_diagnosis`] look at instead of decoding the count word. Meaningful at
/// rest (no task in the middle of a lock operation); fields read from the count word are
/// racy otherwise, as `rwsem_is_locked()` is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RwSemSnapshot {
    pub model: RwSemModel,
    pub spin: RwSemSpin,
    /// The raw count word (for display; its encoding depends on `model`).
    pub count: i64,
    /// A writer holds the lock.
    pub write_locked: bool,
    /// The writer holding the lock, if it is an emulated task.
    pub writer: Option<Tid>,
    /// Read holds the count word records (granted readers included; a reader that is only
    /// attempting, between a failed fast path and its slow path, too).
    pub readers: u64,
    /// Readers a waker granted that have not returned from `down_read*` yet, in arrival order.
    pub granted: Vec<Tid>,
    /// Every task in the slow path, in arrival order: the kernel's wait list plus the granted
    /// readers that have not returned yet (`granted: true`).
    pub queue: Vec<QueuedTask>,
    /// The "someone is queued" mark of the count word: how many times it is present (Model
    /// A's `WAITING_BIAS` terms not accounted for by a writer holding, which a stale bias
    /// makes 2 or more; Model B's `RWSEM_FLAG_WAITERS`, 0 or 1).
    pub waiters_flag: u32,
    /// Model B's `RWSEM_FLAG_HANDOFF`, if set.
    pub handoff: Option<HandoffInfo>,
    /// Model B's `RWSEM_NONSPINNABLE` owner bit.
    pub nonspinnable: bool,
    /// Optimistic spinners (the OSQ), the one spinning on the lock first.
    pub spinners: Vec<Tid>,
}

impl RwSemSnapshot {
    /// The kernel's wait list: the queued tasks not granted, head first.
    pub fn waiting(&self) -> impl Iterator<Item = &QueuedTask> {
        self.queue.iter().filter(|w| !w.granted)
    }
    /// Nobody holds the lock, nobody waits or spins, no flag is set.
    pub fn is_idle(&self) -> bool {
        !self.write_locked
            && self.readers == 0
            && self.queue.is_empty()
            && self.waiters_flag == 0
            && self.handoff.is_none()
            && self.spinners.is_empty()
    }
}

/// Flag bits below the tid in `owner` (Model B's names; Model A sets neither).
const RWSEM_READER_OWNED: i64 = 1 << 0;
const RWSEM_NONSPINNABLE: i64 = 1 << 1;
const RWSEM_OWNER_FLAGS_MASK: i64 = RWSEM_READER_OWNED | RWSEM_NONSPINNABLE;
const OWNER_SHIFT: u32 = 2;

/// The current task's id, 0 outside emulated tasks.
#[inline(always)]
fn current_tid() -> Tid {
    sched::with_current_opt(|t| t.map_or(0, |t| t.tid()))
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
    owner: AtomicI64,
    model: RwSemModel,
    spin: RwSemSpin,
    wait_lock: RawSpinLock<WaitList>,
    osq: spin::Osq,
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
    /// `init_rwsem()` for `model`, optimistic spinning off.
    pub fn new(name: impl Into<Arc<str>>, model: RwSemModel) -> Self {
        Self::with_config(name, model.into())
    }

    /// `init_rwsem()` with a model and a spin setting.
    pub fn with_config(name: impl Into<Arc<str>>, config: RwSemConfig) -> Self {
        RawRwSem {
            count: AtomicI64::new(0),
            owner: AtomicI64::new(0),
            model: config.model,
            spin: config.spin,
            wait_lock: RawSpinLock::new(WaitList::new()),
            osq: spin::Osq::new(),
            name: name.into(),
        }
    }

    pub fn name(&self) -> &Arc<str> {
        &self.name
    }
    pub fn model(&self) -> RwSemModel {
        self.model
    }
    pub fn spin(&self) -> RwSemSpin {
        self.spin
    }
    pub fn config(&self) -> RwSemConfig {
        RwSemConfig {
            model: self.model,
            spin: self.spin,
        }
    }
    /// The raw count word (for tests of a model's encoding and for diagnostics).
    pub fn count(&self) -> i64 {
        self.count.load(Ordering::SeqCst)
    }
    /// Tid of the writer holding the lock, if any.
    pub fn owner(&self) -> Option<Tid> {
        let o = self.owner.load(Ordering::Relaxed);
        if o & RWSEM_READER_OWNED != 0 {
            return None;
        }
        match (o >> OWNER_SHIFT) as Tid {
            0 => None,
            t => Some(t),
        }
    }

    /// `rwsem_set_owner()`: the current task holds the lock for write (clears B's flags).
    ///
    /// Release, and Acquire where spinners load it: a spinner that reads a tid here looks at
    /// that task next, which must be ordered after the task's creation (the kernel has RCU and
    /// the task pointer; a plain store on x86 either way).
    #[inline(always)]
    fn set_owner(&self) {
        self.owner
            .store((current_tid() as i64) << OWNER_SHIFT, Ordering::Release);
    }

    /// `rwsem_clear_owner()`.
    #[inline(always)]
    fn clear_owner(&self) {
        self.owner.store(0, Ordering::Release);
    }

    // ---- the kernel's API, dispatched to the model -----------------------------------------

    /// `down_read()`: TASK_UNINTERRUPTIBLE, never fails.
    #[inline]
    pub fn down_read(&self) {
        let r = match self.model {
            RwSemModel::B => model_b::down_read_common(self, TASK_UNINTERRUPTIBLE),
            _ => xadd::down_read(self, TASK_UNINTERRUPTIBLE),
        };
        debug_assert!(r.is_ok());
    }

    /// `down_read_killable()` (v4.15): -EINTR only if SIGKILL arrives while queued.
    #[inline]
    pub fn down_read_killable(&self) -> Result<(), Killed> {
        match self.model {
            RwSemModel::B => model_b::down_read_common(self, TASK_KILLABLE),
            _ => xadd::down_read(self, TASK_KILLABLE),
        }
        .map_err(|()| Killed)
    }

    /// `down_read_interruptible()` (v5.11): -EINTR if any signal arrives while queued.
    #[inline]
    pub fn down_read_interruptible(&self) -> Result<(), Interrupted> {
        match self.model {
            RwSemModel::B => model_b::down_read_common(self, TASK_INTERRUPTIBLE),
            _ => xadd::down_read(self, TASK_INTERRUPTIBLE),
        }
        .map_err(|()| Interrupted)
    }

    /// `down_read_trylock()`: succeeds iff no writer holds and nobody is queued (AR7; B: no
    /// bit of `READ_FAILED_MASK`, so not while HANDOFF is set either).
    #[inline]
    pub fn down_read_trylock(&self) -> bool {
        match self.model {
            RwSemModel::B => model_b::down_read_trylock(self),
            _ => xadd::down_read_trylock(self),
        }
    }

    /// `up_read()`: the reader that leaves the lock free with waiters queued wakes them (WK1).
    #[inline]
    pub fn up_read(&self) {
        match self.model {
            RwSemModel::B => model_b::up_read(self),
            _ => xadd::up_read(self),
        }
    }

    /// `down_write()`: TASK_UNINTERRUPTIBLE, never fails.
    #[inline]
    pub fn down_write(&self) {
        let r = match self.model {
            RwSemModel::B => model_b::down_write_common(self, TASK_UNINTERRUPTIBLE),
            _ => xadd::down_write(self, TASK_UNINTERRUPTIBLE),
        };
        debug_assert!(r.is_ok());
    }

    /// `down_write_killable()` (v4.7): -EINTR only if SIGKILL is pending after a failed
    /// attempt in the slow path.
    #[inline]
    pub fn down_write_killable(&self) -> Result<(), Killed> {
        match self.model {
            RwSemModel::B => model_b::down_write_common(self, TASK_KILLABLE),
            _ => xadd::down_write(self, TASK_KILLABLE),
        }
        .map_err(|()| Killed)
    }

    /// `down_write_trylock()`: succeeds iff the count is exactly 0 (AR7).
    #[inline]
    pub fn down_write_trylock(&self) -> bool {
        match self.model {
            RwSemModel::B => model_b::down_write_trylock(self),
            _ => xadd::down_write_trylock(self),
        }
    }

    /// `up_write()`: if anyone is queued, WAKE_ANY (WK2).
    #[inline]
    pub fn up_write(&self) {
        match self.model {
            RwSemModel::B => model_b::up_write(self),
            _ => xadd::up_write(self),
        }
    }

    /// `downgrade_write()`: the write hold becomes one read hold of the same task, then queued
    /// readers are granted without waking any writer (WK5; B: with the handoff rules).
    pub fn downgrade_write(&self) {
        count_event(LockEvent::RwsemDowngrade, 1);
        match self.model {
            RwSemModel::B => model_b::downgrade_write(self),
            _ => xadd::downgrade_write(self),
        }
    }

    /// `rwsem_is_locked()`: the count is not the unlocked value (true also when only the
    /// waiter flag is left, as in the kernel).
    pub fn is_locked(&self) -> bool {
        self.count.load(Ordering::Relaxed) != 0
    }

    /// `rwsem_is_contended()`: the wait list is non-empty.
    pub fn is_contended(&self) -> bool {
        !self.wait_lock.lock().q.is_empty()
    }

    /// The kernel's wait list, head first (a snapshot under `wait_lock`).
    pub fn waiters(&self) -> Vec<WaiterInfo> {
        self.wait_lock
            .lock()
            .q
            .iter()
            .map(|w| WaiterInfo {
                tid: w.task.tid(),
                write: w.kind == WaiterType::Write,
            })
            .collect()
    }

    /// Forget the granted-reader records of readers that have returned from their slow path
    /// (emulator bookkeeping, nothing of the kernel's; under `wait_lock`). Wakers prune them
    /// only when they grant the next batch, so a lock that will never grant again (the
    /// `mmap_lock` of a torn-down address space, kept by the OOM killer's victim book) would
    /// keep each record's task allocation alive; `exit_mmap()` calls this under the write lock,
    /// when no granted reader can still be pending.
    pub fn prune_grant_records(&self) {
        self.wait_lock.lock().prune_granted();
    }

    /// How many granted-reader records the lock keeps, pending or stale (for tests).
    pub fn grant_records(&self) -> usize {
        self.wait_lock.lock().granted.len()
    }

    // ---- observation ----------------------------------------------------------------------

    /// A model-independent view of the lock (see [`RwSemSnapshot`]), under `wait_lock`.
    pub fn snapshot(&self) -> RwSemSnapshot {
        let wl = self.wait_lock.lock();
        let count = self.count.load(Ordering::SeqCst);
        let owner = self.owner.load(Ordering::SeqCst);
        let owner_tid = (owner >> OWNER_SHIFT) as Tid;
        let (write_locked, readers, waiters_flag, handoff_bit) = match self.model {
            RwSemModel::B => model_b::decode(count),
            _ => xadd::decode(count, owner_tid != 0),
        };
        let writer = (write_locked && owner & RWSEM_READER_OWNED == 0 && owner_tid != 0)
            .then_some(owner_tid);
        let mut queue: Vec<(u64, QueuedTask)> =
            wl.q.iter()
                .map(|w| {
                    (
                        w.seq,
                        QueuedTask {
                            tid: w.task.tid(),
                            kind: w.kind,
                            wait: WaitState::of(w.state),
                            granted: false,
                            woken: w.task.state() == TASK_RUNNING,
                            handoff_set: w.handoff_set,
                        },
                    )
                })
                .chain(wl.granted.iter().filter_map(|g| {
                    let task = g.task.upgrade()?;
                    self.grant_pending(&task).then(|| {
                        (
                            g.seq,
                            QueuedTask {
                                tid: task.tid(),
                                kind: WaiterType::Read,
                                wait: WaitState::of(g.state),
                                granted: true,
                                woken: task.state() == TASK_RUNNING,
                                handoff_set: false,
                            },
                        )
                    })
                }))
                .collect();
        queue.sort_by_key(|(seq, _)| *seq);
        let queue: Vec<QueuedTask> = queue.into_iter().map(|(_, q)| q).collect();
        let handoff = handoff_bit.then(|| HandoffInfo {
            set_by: (wl.handoff_setter != 0).then_some(wl.handoff_setter),
            credited_to: wl.q.iter().find(|w| w.handoff_set).map(|w| w.task.tid()),
        });
        RwSemSnapshot {
            model: self.model,
            spin: self.spin,
            count,
            write_locked,
            writer,
            readers,
            granted: queue.iter().filter(|w| w.granted).map(|w| w.tid).collect(),
            queue,
            waiters_flag,
            handoff,
            nonspinnable: self.model == RwSemModel::B && owner & RWSEM_NONSPINNABLE != 0,
            spinners: if self.spin == RwSemSpin::On {
                self.osq.spinners()
            } else {
                Vec::new()
            },
        }
    }

    /// Why tasks queued on this lock cannot make progress, judged from [`Self::snapshot`]
    /// **at rest** (no task in the middle of a lock operation, e.g. at the end of a sim
    /// trial): `None` when the state is consistent, or in flux (a queued waiter was woken and
    /// has not run yet).
    ///
    /// At rest the "someone is queued" mark of the count is present once iff the queue is
    /// non-empty. More than that is a mark nobody will remove (the RFC as first posted: a
    /// killed writer leaves its bias behind, docs/rwsem-rules.md §5.3); waiters with nobody
    /// holding the lock means nobody will ever wake them; a reader at the head of the queue
    /// while only readers hold means the wake-up that grants it was skipped (both models grant
    /// it on every path that leaves it there); Model B's handoff bit with nobody queued would
    /// make every fast path fail for good.
    pub fn stuck_diagnosis(&self) -> Option<String> {
        let s = self.snapshot();
        let waiting: Vec<&QueuedTask> = s.waiting().collect();
        let in_flux = match s.model {
            // As before snapshots existed: only the wait list's waiters count.
            RwSemModel::A | RwSemModel::RfcV1 => waiting.iter().any(|w| w.woken),
            RwSemModel::B => s.queue.iter().any(|w| w.woken),
        };
        if in_flux {
            return None;
        }
        let queued = waiting.len() as i64;
        let head_reader = waiting.first().is_some_and(|w| w.kind == WaiterType::Read);
        let writer = i64::from(s.write_locked);
        let nobody_holds = !s.write_locked && s.readers == 0;
        let mut why = Vec::new();
        if queued > 0 && nobody_holds {
            why.push(format!(
                "nobody holds the lock, yet {queued} waiter(s) sleep and no wake-up is coming"
            ));
        }
        if head_reader && s.readers > 0 && writer == 0 {
            why.push(
                "a reader heads the queue while only readers hold the lock: the wake-up that \
                 should have granted it never ran (a waiter ahead of it left without waking \
                 the queue)"
                    .to_string(),
            );
        }
        match s.model {
            RwSemModel::A | RwSemModel::RfcV1 => {
                let biases = writer + i64::from(s.waiters_flag);
                let expected = writer + i64::from(queued > 0);
                if biases > expected {
                    why.push(format!(
                        "the count carries {biases} waiting bias(es) where {expected} are \
                         accounted for: a stale bias, so every reader takes the slow path and \
                         queues ({})",
                        match s.model {
                            RwSemModel::RfcV1 => {
                                "the 2016 RFC as first posted leaves a killed writer's bias \
                                 behind, kernel-rwsem.md §5.3"
                            }
                            _ => "Model A never leaves one: an emulator bug",
                        }
                    ));
                }
            }
            RwSemModel::B => {
                if queued == 0 && s.waiters_flag > 0 {
                    why.push(
                        "RWSEM_FLAG_WAITERS is set with nobody queued: every fast path fails \
                         and readers queue with nobody to wake them (Model B clears it with \
                         the last waiter: an emulator bug)"
                            .to_string(),
                    );
                }
                if queued == 0 && s.handoff.is_some() {
                    why.push(
                        "RWSEM_FLAG_HANDOFF is set with nobody queued: every fast path and \
                         trylock fails for good (Model B clears it with the last waiter: an \
                         emulator bug)"
                            .to_string(),
                    );
                }
            }
        }
        (!why.is_empty()).then(|| why.join("; "))
    }

    /// A granted reader has not returned from its slow path on this lock yet (the reader
    /// clears its flag when it returns; a stale entry's task may since wait elsewhere).
    fn grant_pending(&self, task: &Task) -> bool {
        task.rwsem_granted.load(Ordering::Acquire)
            && task
                .wchan()
                .is_some_and(|w| w.object_id == self as *const _ as usize)
    }
}

/// A reader that saw its grant is back from its slow path (see `WaitList::granted`).
#[inline]
fn reader_granted_exit(cur: &Task) {
    cur.rwsem_granted.store(false, Ordering::Relaxed);
}

// ---- the typed facade ---------------------------------------------------------------------

/// A read-write semaphore guarding a `T`, with RAII guards (the `lock_api` shape over
/// [`RawRwSem`]).
///
/// Differences from `std::sync::RwLock`: no poisoning; the killable and interruptible
/// acquisitions return one error type each ([`Killed`], [`Interrupted`]); blocking calls must
/// run inside an emulated task (they sleep through [`crate::sched`]); a writer can
/// [`WriteGuard::downgrade`].
pub struct RwSem<T: ?Sized> {
    raw: RawRwSem,
    data: UnsafeCell<T>,
}

// SAFETY: the semaphore provides reader/writer exclusion for `data`.
unsafe impl<T: ?Sized + Send> Send for RwSem<T> {}
unsafe impl<T: ?Sized + Send + Sync> Sync for RwSem<T> {}

impl<T> RwSem<T> {
    /// A lock of `model` without optimistic spinning.
    pub fn new(name: impl Into<Arc<str>>, model: RwSemModel, data: T) -> Self {
        Self::with_config(name, model.into(), data)
    }
    /// A lock with a model and a spin setting.
    pub fn with_config(name: impl Into<Arc<str>>, config: RwSemConfig, data: T) -> Self {
        RwSem {
            raw: RawRwSem::with_config(name, config),
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
    /// [`RawRwSem::snapshot`].
    pub fn snapshot(&self) -> RwSemSnapshot {
        self.raw.snapshot()
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
