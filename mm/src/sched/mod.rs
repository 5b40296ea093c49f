//! The scheduler seam: the only way emulated-kernel code blocks, sleeps, yields or reads time.
//!
//! Kernel-shaped primitives modelled on kernel/sched/core.c and kernel/time/timer.c (v4.7):
//! [`set_current_state`], [`schedule`], [`wake_up_process`], [`schedule_timeout`], [`jiffies`],
//! [`cond_resched`] and [`current`]. Every task belongs to one executor, which implements them:
//!
//! - [`threads`]: one OS thread per task, futex sleeps on the task's state word, wall-clock time.
//! - [`sim`]: stackful coroutines on one OS thread, a virtual clock, a seeded picker.
//! - `loom_exec` (only under `--cfg oomlab_loom`): loom threads with park/unpark.
//!
//! The sleep/wake protocol is the kernel's: a sleeper publishes its state with
//! `set_current_state()` (a full barrier), re-checks its condition, then calls `schedule()`; a
//! waker changes the condition, then `try_to_wake_up()` moves the state back to TASK_RUNNING
//! with a compare-and-swap if the state matches its mask. `schedule()` returns once the state is
//! TASK_RUNNING again, so a wake-up between the state store and `schedule()` is never lost.
//!
//! Deviations: no preemption inside emulated code on the sim executor (switches happen only at
//! `schedule()` and `cond_resched()`); no run-queue priorities; jiffies start at 0, not at
//! `INITIAL_JIFFIES`.

use crate::sync::Ordering;
use crate::task::{state::*, Task};
use std::cell::Cell;
use std::sync::Arc;

#[cfg(not(oomlab_loom))]
pub mod executor;
#[cfg(oomlab_loom)]
pub mod loom_exec;
#[cfg(not(oomlab_loom))]
pub mod sim;
#[cfg(not(oomlab_loom))]
pub mod threads;
#[cfg(not(oomlab_loom))]
pub use executor::{Clock, Executor, RunStop};

/// `MAX_SCHEDULE_TIMEOUT`: sleep without a timer.
pub const MAX_SCHEDULE_TIMEOUT: u64 = u64::MAX;

#[cfg(not(oomlab_loom))]
thread_local! {
    /// The task running on this OS thread (threads/loom) or currently resumed coroutine (sim).
    /// Points into an `Arc<Task>` kept alive by the executor for as long as the task runs.
    static CURRENT: Cell<*const Task> = const { Cell::new(std::ptr::null()) };
}
// loom runs all model threads as coroutines on one OS thread: a std thread-local would be
// shared by all of them.
#[cfg(oomlab_loom)]
loom::thread_local! {
    static CURRENT: Cell<*const Task> = Cell::new(std::ptr::null());
}

pub(crate) fn set_current_ptr(t: *const Task) -> *const Task {
    CURRENT.with(|c| c.replace(t))
}

/// Run `f` with the current task. Panics (an emulator bug) outside an emulated task.
#[inline]
pub fn with_current<R>(f: impl FnOnce(&Task) -> R) -> R {
    let p = CURRENT.with(|c| c.get());
    assert!(
        !p.is_null(),
        "emulated-kernel primitive called outside an emulated task"
    );
    // SAFETY: the executor keeps the task alive while it runs and clears CURRENT after.
    f(unsafe { &*p })
}

/// Run `f` with the current task, if any.
#[inline]
pub fn with_current_opt<R>(f: impl FnOnce(Option<&Task>) -> R) -> R {
    let p = CURRENT.with(|c| c.get());
    // SAFETY: as in `with_current`.
    f(unsafe { p.as_ref() })
}

/// `current`: a counted reference to the running task.
pub fn current() -> Arc<Task> {
    with_current(|t| {
        let p = t as *const Task;
        // SAFETY: `p` came from `Arc::as_ptr` of a live `Arc<Task>` held by the executor.
        unsafe {
            Arc::increment_strong_count(p);
            Arc::from_raw(p)
        }
    })
}

/// True if the caller runs inside an emulated task.
pub fn in_task() -> bool {
    CURRENT.with(|c| !c.get().is_null())
}

/// `set_current_state()`: publish the sleep state with a full barrier.
#[inline]
pub fn set_current_state(state: u32) {
    with_current(|t| t.state.store(state, Ordering::SeqCst));
    // smp_store_mb(): the state store is ordered before the caller's condition loads.
    crate::sync::fence(Ordering::SeqCst);
}

/// `__set_current_state()` (the kernel's variant without the barrier; SeqCst here too).
#[inline]
pub fn __set_current_state(state: u32) {
    set_current_state(state)
}

/// `fatal_signal_pending(current)`.
pub fn fatal_signal_pending() -> bool {
    with_current(|t| t.fatal_signal_pending())
}

/// `signal_pending(current)`.
pub fn signal_pending() -> bool {
    with_current(|t| t.signal_pending())
}

/// `flush_signals(current)` for the non-fatal signal: the emulated handler ran.
pub fn flush_signals() {
    with_current(|t| t.flush_nonfatal())
}

/// `schedule()`: give up the CPU until the current state is TASK_RUNNING again.
///
/// As `__schedule()` does, a task whose state accepts a pending signal does not sleep: its
/// state is reset to TASK_RUNNING and `schedule()` returns at once.
pub fn schedule() {
    crate::sync::might_sleep();
    with_current(|t| {
        let s = t.state.load(Ordering::SeqCst);
        if s == TASK_RUNNING {
            return yield_now(t);
        }
        if t.signal_pending_state(s) {
            // __schedule() still passes through pick_next_task(): a scheduling point.
            t.state.store(TASK_RUNNING, Ordering::SeqCst);
            return yield_now(t);
        }
        t.set_sleep_since(now_ns_of(t));
        block(t, None);
    })
}

/// `schedule_timeout()`: sleep in the current state for at most `timeout` jiffies; returns the
/// jiffies left (0 when the timer fired). `MAX_SCHEDULE_TIMEOUT` sleeps without a timer.
pub fn schedule_timeout(timeout: u64) -> u64 {
    crate::sync::might_sleep();
    if timeout == MAX_SCHEDULE_TIMEOUT {
        schedule();
        return MAX_SCHEDULE_TIMEOUT;
    }
    with_current(|t| {
        let s = t.state.load(Ordering::SeqCst);
        if s == TASK_RUNNING {
            yield_now(t);
            return timeout;
        }
        if t.signal_pending_state(s) {
            t.state.store(TASK_RUNNING, Ordering::SeqCst);
            yield_now(t);
            return timeout;
        }
        let start = jiffies_of(t);
        let deadline_ns = now_ns_of(t).saturating_add(jiffies_to_ns(t, timeout));
        t.set_sleep_since(now_ns_of(t));
        block(t, Some(deadline_ns));
        let elapsed = jiffies_of(t).saturating_sub(start);
        timeout.saturating_sub(elapsed)
    })
}

/// `schedule_timeout_uninterruptible()`.
pub fn schedule_timeout_uninterruptible(timeout: u64) -> u64 {
    set_current_state(TASK_UNINTERRUPTIBLE);
    schedule_timeout(timeout)
}

/// `schedule_timeout_killable()`.
pub fn schedule_timeout_killable(timeout: u64) -> u64 {
    set_current_state(TASK_KILLABLE);
    schedule_timeout(timeout)
}

/// `schedule_timeout_interruptible()`.
pub fn schedule_timeout_interruptible(timeout: u64) -> u64 {
    set_current_state(TASK_INTERRUPTIBLE);
    schedule_timeout(timeout)
}

/// `wake_up_process()`: wake `t` from any normal sleep. Returns whether it was asleep.
pub fn wake_up_process(t: &Task) -> bool {
    try_to_wake_up(t, TASK_NORMAL)
}

/// `try_to_wake_up(p, state)`: if `p`'s state is in `mask`, make it TASK_RUNNING and runnable.
pub fn try_to_wake_up(t: &Task, mask: u32) -> bool {
    // smp_mb__after_spinlock() in the kernel's ttwu: the waker's condition stores (e.g. the
    // rwsem grant) are ordered before its load of the sleeper's state.
    crate::sync::fence(Ordering::SeqCst);
    let mut s = t.state.load(Ordering::SeqCst);
    loop {
        if s & mask == 0 {
            return false;
        }
        match t
            .state
            .compare_exchange(s, TASK_RUNNING, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(_) => {
                make_runnable(t, s);
                return true;
            }
            Err(now) => s = now,
        }
    }
}

/// `cond_resched()`: a voluntary preemption point. The sim executor may switch tasks here; the
/// threads executor leaves preemption to the host scheduler.
#[inline]
pub fn cond_resched() {
    crate::sync::might_sleep();
    with_current(yield_now)
}

/// Account `ns` of emulated CPU time spent by the current task without sleeping (a cost
/// model for work the emulation does not perform step by step, such as an LRU scan). The sim
/// executor advances its clock by `ns`; on the threads executor real time passes by itself,
/// so this is a no-op.
pub fn cpu_work(ns: u64) {
    with_current(|t| match &t.exec {
        #[cfg(not(oomlab_loom))]
        ExecHandle::Sim(s, _) => s.advance_clock(ns),
        _ => {
            let _ = ns;
        }
    })
}

/// `jiffies`.
pub fn jiffies() -> u64 {
    with_current(jiffies_of)
}

/// `HZ` of the executor the current task runs on.
pub fn hz() -> u32 {
    with_current(hz_of)
}

/// Emulated monotonic time in nanoseconds (`ktime_get_ns()`).
pub fn ktime_get_ns() -> u64 {
    with_current(now_ns_of)
}

/// `raw_smp_processor_id()`: the CPU the caller runs on, for per-CPU data. The threads
/// executor reports the host CPU (`sched_getcpu()`), the sim and loom executors CPU 0 (one
/// emulated CPU, which keeps per-CPU caches deterministic). Callers reduce it modulo their
/// number of slots. Outside tasks (benchmark drivers) the host CPU is used.
#[inline]
pub fn raw_smp_processor_id() -> usize {
    with_current_opt(|t| match t.map(|t| &t.exec) {
        #[cfg(not(oomlab_loom))]
        Some(ExecHandle::Sim(..)) => 0,
        #[cfg(oomlab_loom)]
        Some(_) => 0,
        _ => host_cpu(),
    })
}

#[cfg(not(oomlab_loom))]
fn host_cpu() -> usize {
    // SAFETY: sched_getcpu has no preconditions (vDSO call).
    let c = unsafe { libc::sched_getcpu() };
    if c < 0 {
        0
    } else {
        c as usize
    }
}
#[cfg(oomlab_loom)]
fn host_cpu() -> usize {
    0
}

/// `find_task_by_vpid()`: the live task `tid` of the current task's executor, if any. For
/// code that holds only a task's id and must look at the task itself (the rwsem's optimistic
/// spinners check whether the lock owner runs).
pub fn find_task_by_vpid(tid: crate::task::Tid) -> Option<Arc<Task>> {
    with_current(|t| match &t.exec {
        #[cfg(not(oomlab_loom))]
        ExecHandle::Threads(s) => s.tasks.find_task(tid),
        #[cfg(not(oomlab_loom))]
        ExecHandle::Sim(s, _) => s.tasks.find_task(tid),
        #[cfg(oomlab_loom)]
        ExecHandle::Loom(_, s) => s.tasks.find_task(tid),
    })
}

/// `jiffies` of the executor `t` runs on (usable outside any task, e.g. by a waker that is
/// not an emulated task judging a waiter's timeout).
pub(crate) fn jiffies_of_task(t: &Task) -> u64 {
    jiffies_of(t)
}

/// `msecs_to_jiffies()` on the current executor (rounds up, as the kernel does).
pub fn msecs_to_jiffies(ms: u64) -> u64 {
    let hz = hz() as u64;
    ms.saturating_mul(hz).div_ceil(1000)
}

fn jiffies_to_ns(t: &Task, j: u64) -> u64 {
    j.saturating_mul(1_000_000_000 / hz_of(t) as u64)
}

fn jiffies_of(t: &Task) -> u64 {
    now_ns_of(t) / (1_000_000_000 / hz_of(t) as u64)
}

// ---- executor dispatch -------------------------------------------------------------------

use crate::task::ExecHandle;

fn hz_of(t: &Task) -> u32 {
    match &t.exec {
        #[cfg(not(oomlab_loom))]
        ExecHandle::Threads(s) => s.hz,
        #[cfg(not(oomlab_loom))]
        ExecHandle::Sim(s, _) => s.hz,
        #[cfg(oomlab_loom)]
        ExecHandle::Loom(..) => 1000,
    }
}

/// Emulated time of the executor `t` runs on, in ns.
pub(crate) fn now_ns_of(t: &Task) -> u64 {
    match &t.exec {
        #[cfg(not(oomlab_loom))]
        ExecHandle::Threads(s) => s.now_ns(),
        #[cfg(not(oomlab_loom))]
        ExecHandle::Sim(s, _) => s.now_ns(),
        #[cfg(oomlab_loom)]
        ExecHandle::Loom(_, s) => s.now_ns(),
    }
}

fn yield_now(t: &Task) {
    match &t.exec {
        #[cfg(not(oomlab_loom))]
        ExecHandle::Threads(_) => {}
        #[cfg(not(oomlab_loom))]
        ExecHandle::Sim(s, idx) => s.yield_now(*idx),
        #[cfg(oomlab_loom)]
        ExecHandle::Loom(..) => loom::thread::yield_now(),
    }
}

/// Sleep until the state is TASK_RUNNING, or until `deadline_ns` (then the "timer" wakes the
/// task as `process_timeout()` does, with `wake_up_process()`).
fn block(t: &Task, deadline_ns: Option<u64>) {
    match &t.exec {
        #[cfg(not(oomlab_loom))]
        ExecHandle::Threads(s) => s.block(t, deadline_ns),
        #[cfg(not(oomlab_loom))]
        ExecHandle::Sim(s, idx) => s.block(t, *idx, deadline_ns),
        #[cfg(oomlab_loom)]
        ExecHandle::Loom(_, s) => s.block(t, deadline_ns),
    }
}

fn make_runnable(t: &Task, old_state: u32) {
    let _ = old_state;
    match &t.exec {
        #[cfg(not(oomlab_loom))]
        ExecHandle::Threads(_) => {
            if old_state & threads::PARKED != 0 {
                threads::futex_wake(&t.state)
            }
        }
        #[cfg(not(oomlab_loom))]
        ExecHandle::Sim(s, idx) => s.make_runnable(*idx),
        #[cfg(oomlab_loom)]
        ExecHandle::Loom(th, _) => th.unpark(),
    }
}

/// `kernel_clone()` from inside a task: create a task on the current task's executor.
#[cfg(not(oomlab_loom))]
pub fn spawn(
    kind: crate::task::CloneKind,
    f: impl FnOnce() + Send + 'static,
) -> Result<Arc<Task>, crate::task::CloneError> {
    let exec = with_current(|t| match &t.exec {
        #[cfg(not(oomlab_loom))]
        ExecHandle::Threads(s) => Spawner::Threads(s.clone()),
        #[cfg(not(oomlab_loom))]
        ExecHandle::Sim(s, _) => Spawner::Sim(s.clone()),
    });
    match exec {
        #[cfg(not(oomlab_loom))]
        Spawner::Threads(s) => threads::spawn_on(&s, kind, Box::new(f)),
        #[cfg(not(oomlab_loom))]
        Spawner::Sim(s) => s.create_from_task(kind, Box::new(f)),
    }
}

#[cfg(not(oomlab_loom))]
enum Spawner {
    Threads(Arc<threads::ThreadsShared>),
    Sim(Arc<sim::SimShared>),
}
