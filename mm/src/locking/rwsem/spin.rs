//! Writer optimistic spinning (docs/rwsem-rules.md AR9, `CONFIG_RWSEM_SPIN_ON_OWNER=y`): the
//! optimistic spin queue (OSQ), the "owner is on a CPU" test and the emulated
//! `need_resched()`. The spin loops themselves are the models' (`xadd::optimistic_spin`,
//! `model_b::optimistic_spin`); they share these pieces.
//!
//! Models `kernel/locking/osq_lock.c` (v4.7 … v6.x: the MCS queue of per-CPU nodes that lets one
//! spinner at a time spin on the lock word) and the `owner->on_cpu` / `need_resched()` checks
//! of `rwsem_spin_on_owner()`.
//!
//! # Deviations
//! - The OSQ is a FIFO of task ids under an internal lock with the head published in an
//!   atomic, not an MCS chain of per-CPU nodes: the same queueing (one spinner on the lock,
//!   the others wait their turn in arrival order, a waiter unqueues itself when it must
//!   reschedule), without the lock-free unqueue protocol.
//! - "The owner is on a CPU" is the emulated task's run state: `TASK_RUNNING`, i.e. not asleep
//!   in `schedule()`. The kernel's `owner->on_cpu` is also true between `set_current_state()`
//!   and `schedule()`, and false for a runnable task that was preempted; the sim executor has
//!   one CPU and no preemption, so every runnable task counts as running there. No
//!   `vcpu_is_preempted()`.
//! - `need_resched()` is a budget: one spin (the OSQ wait included) ends after
//!   [`RWSEM_SPIN_MAX_NS`] of the executor's time or [`RWSEM_SPIN_MAX_STEPS`] iterations,
//!   whichever comes first. The kernel spins until the scheduler tick or a wake-up asks for
//!   the CPU; the emulation has no such signal, and an unbounded spin would stall the sim.
//! - Every iteration passes through `cond_resched()` (so the sim executor can run the owner)
//!   and charges [`RWSEM_SPIN_STEP_NS`] of emulated CPU time (`sched::cpu_work`). No internal
//!   lock is held across either.
//! - No RT tasks: `rt_task(current)` is always false.

use crate::sched;
use crate::sync::{AtomicU32, Ordering, RawSpinLock};
use crate::task::{state::TASK_RUNNING, Task, Tid};
use std::collections::VecDeque;
use std::sync::Arc;

/// Emulated CPU time of one spin iteration (a look at the owner and the count, `cpu_relax()`),
/// ns, charged on the sim executor.
pub const RWSEM_SPIN_STEP_NS: u64 = 250;

/// The emulated `need_resched()`: a spin gives up after this much of the executor's time, ns.
/// Of the order of Model B's reader-owned spin limit (10–25 µs, `rwsem_rspin_threshold()`) and
/// of a few sleep/wake-up handovers on the threads executor's host.
pub const RWSEM_SPIN_MAX_NS: u64 = 20_000;

/// Iterations of one spin at most, whatever the clock says (loom's clock stands still).
#[cfg(not(oomlab_loom))]
pub const RWSEM_SPIN_MAX_STEPS: u32 = 1 << 20;
/// Under loom a spin is two iterations at most, to keep the models small (tokio's
/// `MAX_READS` idea).
#[cfg(oomlab_loom)]
pub const RWSEM_SPIN_MAX_STEPS: u32 = 2;

/// The budget of one optimistic spin (the region the kernel runs with preemption disabled).
pub(crate) struct SpinBudget {
    deadline_ns: u64,
    steps: u32,
}

impl SpinBudget {
    /// Starts now (`preempt_disable()` at the top of the spin).
    pub(crate) fn start() -> SpinBudget {
        SpinBudget {
            deadline_ns: sched::ktime_get_ns().saturating_add(RWSEM_SPIN_MAX_NS),
            steps: 0,
        }
    }

    /// `need_resched()`, emulated (see the module's deviations).
    pub(crate) fn need_resched(&self) -> bool {
        self.steps >= RWSEM_SPIN_MAX_STEPS || sched::ktime_get_ns() >= self.deadline_ns
    }

    /// `cpu_relax()` between two looks at the lock: a voluntary preemption point that costs
    /// emulated time. Never called with an internal lock held.
    pub(crate) fn relax(&mut self) {
        self.steps += 1;
        std::hint::spin_loop();
        sched::cpu_work(RWSEM_SPIN_STEP_NS);
        sched::cond_resched();
    }
}

/// The task behind an owner id, looked up once per owner (`rcu_read_lock()` +
/// `sem->owner` in the kernel, which has the pointer already).
#[derive(Default)]
pub(crate) struct OwnerCache(Option<Arc<Task>>);

impl OwnerCache {
    /// `owner_on_cpu()`: the task `tid` exists and is not asleep.
    pub(crate) fn on_cpu(&mut self, tid: Tid) -> bool {
        if tid == 0 {
            return false;
        }
        if self.0.as_ref().map(|t| t.tid()) != Some(tid) {
            self.0 = sched::find_task_by_vpid(tid);
        }
        self.0.as_ref().is_some_and(|t| t.state() == TASK_RUNNING)
    }
}

/// `struct optimistic_spin_queue` (kernel/locking/osq_lock.c): spinners wait their turn here,
/// so that one of them at a time spins on the lock word.
pub(crate) struct Osq {
    /// Queued spinners, the one spinning on the lock first.
    queue: RawSpinLock<VecDeque<Tid>>,
    /// The spinner at the head (0: nobody queued). Waiting spinners watch it.
    head: AtomicU32,
}

impl Osq {
    pub(crate) fn new() -> Osq {
        Osq {
            queue: RawSpinLock::new(VecDeque::new()),
            head: AtomicU32::new(0),
        }
    }

    /// `osq_is_locked()`: some task spins or waits to spin.
    pub(crate) fn is_locked(&self) -> bool {
        self.head.load(Ordering::Acquire) != 0
    }

    /// The spinners, head first (for snapshots).
    pub(crate) fn spinners(&self) -> Vec<Tid> {
        self.queue.lock().iter().copied().collect()
    }

    /// `osq_lock()`: queue behind earlier spinners and spin until first (true), or unqueue and
    /// give up when `budget` says to reschedule (false).
    pub(crate) fn lock(&self, me: Tid, budget: &mut SpinBudget) -> bool {
        {
            let mut q = self.queue.lock();
            q.push_back(me);
            if q.len() == 1 {
                self.head.store(me, Ordering::Release);
                return true;
            }
        }
        loop {
            if self.head.load(Ordering::Acquire) == me {
                return true;
            }
            if budget.need_resched() {
                // osq_lock()'s unqueue: unless we became the head meanwhile, leave the queue.
                let mut q = self.queue.lock();
                if self.head.load(Ordering::Acquire) == me {
                    return true;
                }
                let pos = q
                    .iter()
                    .position(|&t| t == me)
                    .expect("spinner missing from its OSQ");
                q.remove(pos);
                return false;
            }
            budget.relax();
        }
    }

    /// `osq_unlock()`: the next spinner in line becomes the head.
    pub(crate) fn unlock(&self, me: Tid) {
        let mut q = self.queue.lock();
        let head = q.pop_front();
        assert_eq!(head, Some(me), "osq_unlock by a task not at the OSQ head");
        self.head
            .store(q.front().copied().unwrap_or(0), Ordering::Release);
        drop(q);
        // osq_unlock() is a locked cmpxchg, a full barrier on x86: a spinner that leaves must
        // not read the lock word from before a release that may have seen it in the queue
        // (v4.7's rwsem_wake() skips the wake-up for a spinner, see xadd::rwsem_wake).
        crate::sync::fence(Ordering::SeqCst);
    }
}
