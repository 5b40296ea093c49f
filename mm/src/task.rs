//! Emulated tasks, thread groups and signals.
//!
//! Models `struct task_struct` / `struct signal_struct` (include/linux/sched.h) as far as the
//! OOM and locking paths need them, and the delivery half of kernel/signal.c (v4.7):
//! `send_sig_info()` → `complete_signal()` → `signal_wake_up_state()` → `try_to_wake_up()`.
//!
//! Deviations from the kernel:
//! - Two signals exist: `SIGKILL` (fatal, cannot be blocked or handled) and one non-fatal,
//!   handled signal standing for any other (`Signal::Other`, think SIGUSR1). No masks, no
//!   handlers: a non-fatal signal stays pending until the task calls
//!   [`crate::sched::flush_signals`] (its "handler ran").
//! - As in `complete_signal()`, a SIGKILL sent to *one* thread is promoted to a group exit:
//!   every thread of the thread group gets SIGKILL pending and is woken if its sleep state
//!   accepts it. [`kill_thread_group`] is the `kill(2)` form, [`send_sig`] the `tgkill(2)` form;
//!   they differ only for the non-fatal signal (delivered to the group leader, or the first live
//!   thread, instead of the kernel's `wants_signal()` search).
//! - The run-state word doubles as the futex word of the threads executor.

use crate::sync::{AtomicU32, Ordering};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicI32};
use std::sync::Arc;

/// Thread id (`task_struct::pid`).
pub type Tid = u32;
/// Process id (`task_struct::tgid`, the thread-group id).
pub type Tgid = u32;

/// Task run states, with the kernel's values (include/linux/sched.h, v4.7).
pub mod state {
    pub const TASK_RUNNING: u32 = 0x0000;
    pub const TASK_INTERRUPTIBLE: u32 = 0x0001;
    pub const TASK_UNINTERRUPTIBLE: u32 = 0x0002;
    pub const TASK_DEAD: u32 = 0x0040;
    pub const TASK_WAKEKILL: u32 = 0x0080;
    pub const TASK_KILLABLE: u32 = TASK_WAKEKILL | TASK_UNINTERRUPTIBLE;
    /// `TASK_NORMAL`: the mask `wake_up_process()` uses.
    pub const TASK_NORMAL: u32 = TASK_INTERRUPTIBLE | TASK_UNINTERRUPTIBLE;

    /// One-letter state as `ps`/sysrq-t print it.
    pub fn letter(s: u32) -> char {
        match s {
            TASK_RUNNING => 'R',
            TASK_INTERRUPTIBLE => 'S',
            TASK_DEAD => 'X',
            _ if s & TASK_UNINTERRUPTIBLE != 0 => 'D',
            _ => '?',
        }
    }

    /// Kernel-style name of a sleep state.
    pub fn name(s: u32) -> &'static str {
        match s {
            TASK_RUNNING => "TASK_RUNNING",
            TASK_INTERRUPTIBLE => "TASK_INTERRUPTIBLE",
            TASK_UNINTERRUPTIBLE => "TASK_UNINTERRUPTIBLE",
            TASK_KILLABLE => "TASK_KILLABLE",
            TASK_DEAD => "TASK_DEAD",
            _ => "TASK_?",
        }
    }
}
use state::*;

const SIGPEND_KILL: u32 = 1 << 0;
const SIGPEND_OTHER: u32 = 1 << 1;

/// The signals the emulation delivers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// SIGKILL: fatal, wakes TASK_KILLABLE and TASK_INTERRUPTIBLE sleepers.
    Kill,
    /// Any non-fatal signal: wakes TASK_INTERRUPTIBLE sleepers only.
    Other,
}

/// What a sleeping task waits for (the kernel's `wchan`, enriched for wait-for chains).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wchan {
    /// The kernel function the task sleeps in, e.g. `rwsem_down_write_failed_killable`.
    pub func: &'static str,
    /// Name of the object waited on, e.g. `mmap_lock[pid 42]`.
    pub object: Arc<str>,
    /// Identity of the object (its address), for matching waiters to holders.
    pub object_id: usize,
}

impl fmt::Display for Wchan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on {}", self.func, self.object)
    }
}

/// How a task is made runnable again; chosen by the executor that created it.
pub(crate) enum ExecHandle {
    #[cfg(not(oomlab_loom))]
    Threads(Arc<crate::sched::threads::ThreadsShared>),
    #[cfg(not(oomlab_loom))]
    Sim(Arc<crate::sched::sim::SimShared>, usize),
    #[cfg(oomlab_loom)]
    Loom(
        loom::thread::Thread,
        Arc<crate::sched::loom_exec::LoomShared>,
    ),
}

struct WchanSlot {
    last: Option<Wchan>,
    active: bool,
}

/// An emulated task (`struct task_struct`).
pub struct Task {
    tid: Tid,
    group: Arc<ThreadGroup>,
    /// `task_struct::state`; also the futex word of the threads executor.
    pub(crate) state: AtomicU32,
    /// Pending-signal bits (private + shared sets folded together; see module doc).
    sigpending: AtomicU32,
    pub(crate) exec: ExecHandle,
    /// The wait channel (`active`) and the last one set, kept while inactive so that a task
    /// sleeping on the same object again does not clone the object's name (an atomic on a
    /// cache line every waiter of that object shares).
    wchan: parking_lot::Mutex<WchanSlot>,
    /// Emulated time (ns) at which the current sleep began; for hung-task reports.
    sleep_since_ns: std::sync::atomic::AtomicU64,
    exited: AtomicBool,
    /// `PF_EXITING`: the task is in `do_exit()`.
    pf_exiting: AtomicBool,
    /// The task sits in `pause()` in user space: idle by choice, waiting for nothing but a
    /// signal (emulator bookkeeping for scenario runners, which end a trial when only such
    /// tasks are left).
    paused: AtomicBool,
    /// Set by a waker that granted this task a read lock it queued for (the kernel clears
    /// `rwsem_waiter::task` instead). A task waits on at most one lock at a time.
    pub(crate) rwsem_granted: crate::sync::AtomicBool,
    lock_events: crate::locking::lock_events::LockEvents,
    vm_events: crate::vmstat::VmEvents,
    /// Histograms of this task's `mmap_lock` waits that slept ([`crate::mmap_lock`]).
    mmap_lock_waits: crate::mmap_lock::MmapLockWaits,
    /// `task->mm` (None for kernel threads and after `exit_mm`).
    mm: parking_lot::Mutex<Option<Arc<crate::mm_types::MmStruct>>>,
    /// Identity of `task->mm` for lock-free `current->mm == mm` tests.
    mm_ptr: std::sync::atomic::AtomicPtr<crate::mm_types::MmStruct>,
    /// `task->rss_stat` (SPLIT_RSS_COUNTING): per-task deltas not yet folded into the mm.
    rss_cache: [std::sync::atomic::AtomicI64; crate::mm_types::NR_MM_COUNTERS],
    rss_events: std::sync::atomic::AtomicU32,
    /// Locks this task holds that matter for wait-for chains (lockdep's `held_locks`, for
    /// `mmap_lock` and kernel mutexes): object id | 1 if held for write; 0 = free slot.
    /// Written only by the task itself; read racily by diagnostics.
    held_locks: [std::sync::atomic::AtomicUsize; MAX_HELD_LOCKS],
    /// Emulated ns + 1 since which the task waits in the allocator slow path; 0 = not.
    memalloc_since: std::sync::atomic::AtomicU64,
}

/// Held-lock slots per task (lockdep's `MAX_LOCK_DEPTH` is 48; the emulated kernel paths
/// nest at most two).
pub const MAX_HELD_LOCKS: usize = 4;

/// A lock a task holds, as recorded for diagnostics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeldLock {
    pub object_id: usize,
    pub write: bool,
}

impl fmt::Debug for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}/{}]", self.group.comm, self.group.tgid, self.tid)
    }
}

impl Task {
    pub(crate) fn new(tid: Tid, group: Arc<ThreadGroup>, exec: ExecHandle) -> Arc<Task> {
        Arc::new(Task {
            tid,
            group,
            state: AtomicU32::new(TASK_RUNNING),
            sigpending: AtomicU32::new(0),
            exec,
            wchan: parking_lot::Mutex::new(WchanSlot {
                last: None,
                active: false,
            }),
            sleep_since_ns: std::sync::atomic::AtomicU64::new(0),
            exited: AtomicBool::new(false),
            pf_exiting: AtomicBool::new(false),
            paused: AtomicBool::new(false),
            rwsem_granted: crate::sync::AtomicBool::new(false),
            lock_events: Default::default(),
            vm_events: Default::default(),
            mmap_lock_waits: Default::default(),
            mm: parking_lot::Mutex::new(None),
            mm_ptr: std::sync::atomic::AtomicPtr::new(std::ptr::null_mut()),
            rss_cache: std::array::from_fn(|_| std::sync::atomic::AtomicI64::new(0)),
            rss_events: std::sync::atomic::AtomicU32::new(0),
            held_locks: std::array::from_fn(|_| std::sync::atomic::AtomicUsize::new(0)),
            memalloc_since: std::sync::atomic::AtomicU64::new(0),
        })
    }
    pub fn tid(&self) -> Tid {
        self.tid
    }
    pub fn tgid(&self) -> Tgid {
        self.group.tgid
    }
    /// `task_struct::comm` (shared by the group here; the kernel has one per thread).
    pub fn comm(&self) -> &str {
        &self.group.comm
    }
    pub fn group(&self) -> &Arc<ThreadGroup> {
        &self.group
    }
    /// Current run state (one of [`state`]'s constants).
    pub fn state(&self) -> u32 {
        // Without the threads executor's private PARKED bit.
        self.state.load(Ordering::SeqCst) & !(1 << 30)
    }
    /// `fatal_signal_pending()`: SIGKILL is pending.
    pub fn fatal_signal_pending(&self) -> bool {
        self.sigpending.load(Ordering::SeqCst) & SIGPEND_KILL != 0
    }
    /// `signal_pending()`: any signal is pending.
    pub fn signal_pending(&self) -> bool {
        self.sigpending.load(Ordering::SeqCst) != 0
    }
    /// `signal_pending_state()` (include/linux/sched.h, v4.7): would a signal interrupt a
    /// sleep in `state`?
    pub fn signal_pending_state(&self, state: u32) -> bool {
        if state & (TASK_INTERRUPTIBLE | TASK_WAKEKILL) == 0 {
            return false;
        }
        let p = self.sigpending.load(Ordering::SeqCst);
        if p == 0 {
            return false;
        }
        state & TASK_INTERRUPTIBLE != 0 || p & SIGPEND_KILL != 0
    }
    pub(crate) fn flush_nonfatal(&self) {
        self.sigpending.fetch_and(!SIGPEND_OTHER, Ordering::SeqCst);
    }
    /// What the task sleeps on, if it published it.
    pub fn wchan(&self) -> Option<Wchan> {
        let g = self.wchan.lock();
        if g.active {
            g.last.clone()
        } else {
            None
        }
    }
    pub(crate) fn set_wchan(&self, w: Option<Wchan>) {
        let mut g = self.wchan.lock();
        g.active = w.is_some();
        if w.is_some() {
            g.last = w;
        }
    }
    /// `set_wchan(Some(Wchan { func, object, object_id }))` without cloning `object` when the
    /// task last waited on the same object.
    pub(crate) fn set_wchan_on(&self, func: &'static str, object: &Arc<str>, object_id: usize) {
        let mut g = self.wchan.lock();
        match &mut g.last {
            Some(w) if w.object_id == object_id && Arc::ptr_eq(&w.object, object) => w.func = func,
            last => {
                *last = Some(Wchan {
                    func,
                    object: object.clone(),
                    object_id,
                })
            }
        }
        g.active = true;
    }
    pub(crate) fn set_sleep_since(&self, ns: u64) {
        self.sleep_since_ns
            .store(ns, std::sync::atomic::Ordering::Relaxed);
    }
    /// Emulated time (ns) when the task last went to sleep.
    pub fn sleep_since_ns(&self) -> u64 {
        self.sleep_since_ns
            .load(std::sync::atomic::Ordering::Relaxed)
    }
    /// `task->mm`.
    pub fn mm(&self) -> Option<Arc<crate::mm_types::MmStruct>> {
        self.mm.lock().clone()
    }
    /// Is `mm` this task's address space?
    #[inline]
    pub fn mm_is(&self, mm: &crate::mm_types::MmStruct) -> bool {
        std::ptr::eq(
            self.mm_ptr.load(std::sync::atomic::Ordering::Relaxed),
            mm as *const _,
        )
    }
    /// Set `task->mm` to a reference the caller already counted in `mm_users`
    /// (`use_mm`/exec/clone). Returns the previous one (the caller must `mmput` it).
    pub(crate) fn swap_mm(
        &self,
        mm: Option<Arc<crate::mm_types::MmStruct>>,
    ) -> Option<Arc<crate::mm_types::MmStruct>> {
        let mut g = self.mm.lock();
        self.sync_mm_rss_locked(g.as_deref());
        let p = mm
            .as_ref()
            .map_or(std::ptr::null_mut(), |m| Arc::as_ptr(m) as *mut _);
        self.mm_ptr.store(p, std::sync::atomic::Ordering::Relaxed);
        std::mem::replace(&mut *g, mm)
    }
    /// `add_mm_counter_fast()` on the current task's cache; folds at the threshold.
    /// Only the task itself calls this.
    pub(crate) fn rss_cache_add(&self, member: usize, v: i64) {
        use std::sync::atomic::Ordering::Relaxed;
        let c = &self.rss_cache[member];
        c.store(c.load(Relaxed) + v, Relaxed);
        let e = self.rss_events.load(Relaxed) + 1;
        self.rss_events.store(e, Relaxed);
        if e > crate::mm_types::TASK_RSS_EVENTS_THRESH {
            self.sync_mm_rss();
        }
    }
    /// `sync_mm_rss()`: fold this task's rss cache into its mm.
    pub fn sync_mm_rss(&self) {
        let g = self.mm.lock();
        self.sync_mm_rss_locked(g.as_deref());
    }
    fn sync_mm_rss_locked(&self, mm: Option<&crate::mm_types::MmStruct>) {
        use std::sync::atomic::Ordering::Relaxed;
        self.rss_events.store(0, Relaxed);
        for (i, c) in self.rss_cache.iter().enumerate() {
            let v = c.swap(0, Relaxed);
            if v != 0 {
                if let Some(mm) = mm {
                    mm.add_counter_atomic(i, v);
                }
            }
        }
    }
    /// This task's lock event counters.
    pub fn lock_events(&self) -> &crate::locking::lock_events::LockEvents {
        &self.lock_events
    }
    /// This task's VM event counters.
    pub fn vm_events(&self) -> &crate::vmstat::VmEvents {
        &self.vm_events
    }
    /// This task's `mmap_lock` wait histograms.
    pub fn mmap_lock_waits(&self) -> &crate::mmap_lock::MmapLockWaits {
        &self.mmap_lock_waits
    }
    /// Record that this (current) task acquired lock `object_id` (`lock_acquired`).
    pub fn lockdep_acquired(&self, object_id: usize, write: bool) {
        use std::sync::atomic::Ordering::Relaxed;
        debug_assert!(object_id & 1 == 0);
        if let Some(slot) = self.held_locks.iter().find(|s| s.load(Relaxed) == 0) {
            slot.store(object_id | write as usize, Relaxed);
        }
    }
    /// Record the release of lock `object_id` (`lock_release`).
    pub fn lockdep_released(&self, object_id: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        if let Some(slot) = self
            .held_locks
            .iter()
            .find(|s| s.load(Relaxed) & !1 == object_id)
        {
            slot.store(0, Relaxed);
        }
    }
    /// Locks the task holds (a racy snapshot, as `debug_show_all_locks()` prints).
    pub fn held_locks(&self) -> Vec<HeldLock> {
        use std::sync::atomic::Ordering::Relaxed;
        self.held_locks
            .iter()
            .map(|s| s.load(Relaxed))
            .filter(|v| *v != 0)
            .map(|v| HeldLock {
                object_id: v & !1,
                write: v & 1 != 0,
            })
            .collect()
    }
    /// Since when (emulated ns) the task waits for memory in the allocator slow path.
    pub fn memalloc_waiting_since(&self) -> Option<u64> {
        match self
            .memalloc_since
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            0 => None,
            v => Some(v - 1),
        }
    }
    pub(crate) fn set_memalloc_waiting(&self, since_ns: Option<u64>) {
        self.memalloc_since.store(
            since_ns.map_or(0, |v| v + 1),
            std::sync::atomic::Ordering::Relaxed,
        );
    }
    /// Is the task idle in `pause()` (see [`Task::set_paused`])?
    pub fn paused(&self) -> bool {
        self.paused.load(std::sync::atomic::Ordering::SeqCst)
    }
    /// Mark the task as idle in `pause()` (user space waiting only for a signal), or as busy
    /// again. Set and cleared by the task itself.
    pub fn set_paused(&self, on: bool) {
        self.paused.store(on, std::sync::atomic::Ordering::SeqCst);
    }
    /// `PF_EXITING`.
    pub fn pf_exiting(&self) -> bool {
        self.pf_exiting.load(std::sync::atomic::Ordering::SeqCst)
    }
    /// `exit_signals()`/`PF_EXITING` at the start of `do_exit()`.
    pub(crate) fn set_pf_exiting(&self) {
        self.pf_exiting
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
    pub fn has_exited(&self) -> bool {
        self.exited.load(std::sync::atomic::Ordering::SeqCst)
    }
    pub(crate) fn mark_exited(&self) {
        self.state.store(TASK_DEAD, Ordering::SeqCst);
        self.exited.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// `signal_wake_up_state()` + `try_to_wake_up()`: set the pending bit, then wake the task
    /// if its sleep state accepts the signal (docs/rwsem-rules.md §5.1).
    fn deliver(&self, sig: Signal) {
        let (bit, mask) = match sig {
            Signal::Kill => (SIGPEND_KILL, TASK_INTERRUPTIBLE | TASK_WAKEKILL),
            Signal::Other => (SIGPEND_OTHER, TASK_INTERRUPTIBLE),
        };
        self.sigpending.fetch_or(bit, Ordering::SeqCst);
        crate::sched::try_to_wake_up(self, mask);
    }
}

/// A thread group, i.e. a process (`struct signal_struct` plus the group-wide parts of
/// `task_struct`).
pub struct ThreadGroup {
    tgid: Tgid,
    comm: Arc<str>,
    threads: parking_lot::Mutex<Vec<Arc<Task>>>,
    /// `SIGNAL_GROUP_EXIT`: a fatal signal is being delivered to the whole group.
    group_exit: AtomicBool,
    /// `signal_struct::oom_score_adj` (−1000..=1000).
    oom_score_adj: AtomicI32,
    /// `tsk_is_oom_victim()`: the OOM killer chose (or self-marked) this process
    /// (`signal->oom_mm` set, v4.9+). Monotonic.
    oom_victim: AtomicBool,
    /// `signal->oom_mm`: the victim's address space, pinned with `mmgrab` (`mm_count`).
    oom_mm: parking_lot::Mutex<Option<Arc<crate::mm_types::MmStruct>>>,
}

impl fmt::Debug for ThreadGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.comm, self.tgid)
    }
}

impl ThreadGroup {
    pub fn tgid(&self) -> Tgid {
        self.tgid
    }
    pub fn comm(&self) -> &str {
        &self.comm
    }
    /// Live threads, in creation order.
    pub fn threads(&self) -> Vec<Arc<Task>> {
        self.threads.lock().clone()
    }
    pub fn group_exit(&self) -> bool {
        self.group_exit.load(std::sync::atomic::Ordering::SeqCst)
    }
    pub fn oom_score_adj(&self) -> i32 {
        self.oom_score_adj
            .load(std::sync::atomic::Ordering::Relaxed)
    }
    /// `tsk_is_oom_victim()`.
    pub fn is_oom_victim(&self) -> bool {
        self.oom_victim.load(std::sync::atomic::Ordering::SeqCst)
    }
    /// The flag half of `mark_oom_victim()` (the OOM killer adds the rest). Returns true the
    /// first time.
    pub fn set_oom_victim(&self) -> bool {
        !self
            .oom_victim
            .swap(true, std::sync::atomic::Ordering::SeqCst)
    }
    /// `signal->oom_mm`.
    pub fn oom_mm(&self) -> Option<Arc<crate::mm_types::MmStruct>> {
        self.oom_mm.lock().clone()
    }
    /// The process half of `mark_oom_victim()` (mm/oom_kill.c, v4.15): the first time, record
    /// `mm` as `signal->oom_mm` (`mmgrab`) and set `MMF_OOM_VICTIM` on it. Returns true the
    /// first time.
    pub fn mark_oom_victim(&self, mm: Option<&Arc<crate::mm_types::MmStruct>>) -> bool {
        let mut g = self.oom_mm.lock();
        if g.is_none() {
            if let Some(mm) = mm {
                mm.mmgrab();
                mm.set_flag(crate::mm_types::MMF_OOM_VICTIM);
                *g = Some(mm.clone());
            }
        }
        self.set_oom_victim()
    }
    /// Set `oom_score_adj`; clamped to the kernel's range −1000..=1000.
    pub fn set_oom_score_adj(&self, adj: i32) {
        self.oom_score_adj
            .store(adj.clamp(-1000, 1000), std::sync::atomic::Ordering::Relaxed);
    }
}

/// What a new task is (the relevant `clone(2)` flags).
#[derive(Clone, Debug)]
pub enum CloneKind {
    /// `fork()`: a new process with this `comm`.
    Process { comm: String },
    /// `clone(CLONE_THREAD | CLONE_VM)`: a new thread of an existing process; it shares the
    /// process's address space.
    Thread { tgid: Tgid },
}

/// Error from task creation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloneError {
    /// The thread group does not exist (or is exiting, as `copy_process` refuses then).
    NoSuchProcess(Tgid),
    /// EAGAIN: no pid is free below `pid_max`, or the host could not provide a thread for
    /// the task (threads executor).
    Again,
}

impl fmt::Display for CloneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloneError::NoSuchProcess(t) => write!(f, "no such process {t} (or it is exiting)"),
            CloneError::Again => write!(f, "the host could not create a thread (EAGAIN)"),
        }
    }
}
impl std::error::Error for CloneError {}

/// `PID_MAX_DEFAULT` (include/linux/threads.h): `/proc/sys/kernel/pid_max` by default.
pub const PID_MAX_DEFAULT: u32 = 0x8000;
/// `RESERVED_PIDS` (kernel/pid.c): where pid allocation wraps to.
pub const RESERVED_PIDS: u32 = 300;

/// The process list (`init_task.tasks` + the pid hash): what `for_each_process` and the
/// OOM killer iterate.
///
/// Pids are allocated as `alloc_pid()` does since v4.15 (`idr_alloc_cyclic(&ns->idr, NULL,
/// pid_min, pid_max)`): the next free number after the last one handed out, from 1 at boot;
/// past `pid_max - 1` the search wraps to `RESERVED_PIDS`; a number is free when neither a
/// task nor a thread group (a process whose leader exited) holds it. All taken: `EAGAIN`.
/// So a run of any length reuses the pids of reaped tasks, as a long-running kernel does.
pub struct TaskList {
    inner: parking_lot::Mutex<TaskListInner>,
}

#[derive(Default)]
struct TaskListInner {
    /// Lock events of exited tasks.
    retired_events: crate::locking::lock_events::LockEvents,
    /// VM events of exited tasks.
    retired_vm_events: crate::vmstat::VmEvents,
    /// `mmap_lock` wait histograms of exited tasks.
    retired_mmap_lock_waits: crate::mmap_lock::MmapLockWaits,
    /// Where the next pid search starts (`idr_next`).
    next_pid: u32,
    /// `pid_max`.
    pid_max: u32,
    tasks: BTreeMap<Tid, Arc<Task>>,
    groups: BTreeMap<Tgid, Arc<ThreadGroup>>,
}

impl TaskListInner {
    /// `alloc_pid()`'s number: cyclic from `next_pid`, wrapping to `RESERVED_PIDS`.
    fn alloc_pid(&mut self) -> Result<Tid, CloneError> {
        let span = self.pid_max - RESERVED_PIDS;
        let mut pid = self.next_pid;
        for _ in 0..=span {
            if pid >= self.pid_max {
                pid = RESERVED_PIDS;
            }
            if !self.tasks.contains_key(&pid) && !self.groups.contains_key(&pid) {
                self.next_pid = pid + 1;
                return Ok(pid);
            }
            pid += 1;
        }
        Err(CloneError::Again)
    }
}

impl Default for TaskList {
    fn default() -> Self {
        Self::new()
    }
}

impl TaskList {
    pub fn new() -> Self {
        Self::with_pid_max(PID_MAX_DEFAULT)
    }

    /// A process list whose pids stay below `pid_max` (`/proc/sys/kernel/pid_max`; at least
    /// `RESERVED_PIDS + 1`).
    pub fn with_pid_max(pid_max: u32) -> Self {
        assert!(pid_max > RESERVED_PIDS, "pid_max must exceed RESERVED_PIDS");
        TaskList {
            inner: parking_lot::Mutex::new(TaskListInner {
                next_pid: 1,
                pid_max,
                ..Default::default()
            }),
        }
    }

    /// `copy_process()`, the bookkeeping half: allocate a pid and link the task.
    pub(crate) fn create(
        &self,
        kind: &CloneKind,
        exec: impl FnOnce(Tid) -> ExecHandle,
    ) -> Result<Arc<Task>, CloneError> {
        let mut g = self.inner.lock();
        match kind {
            CloneKind::Thread { tgid } => {
                let grp = g
                    .groups
                    .get(tgid)
                    .cloned()
                    .ok_or(CloneError::NoSuchProcess(*tgid))?;
                // The group's thread list lock plays `sighand->siglock`: checking
                // SIGNAL_GROUP_EXIT and linking the thread are atomic against a group kill.
                let mut threads = grp.threads.lock();
                if grp.group_exit() {
                    return Err(CloneError::NoSuchProcess(*tgid));
                }
                let tid = g.alloc_pid()?;
                let task = Task::new(tid, grp.clone(), exec(tid));
                // CLONE_THREAD implies CLONE_VM: share the group's address space (copy_mm).
                if let Some(mm) = threads.iter().find_map(|t| t.mm()) {
                    if mm.mmget_not_zero() {
                        task.swap_mm(Some(mm));
                    }
                }
                threads.push(task.clone());
                drop(threads);
                g.tasks.insert(tid, task.clone());
                Ok(task)
            }
            CloneKind::Process { comm } => {
                let tid = g.alloc_pid()?;
                let grp = Arc::new(ThreadGroup {
                    tgid: tid,
                    comm: Arc::from(comm.as_str()),
                    threads: parking_lot::Mutex::new(Vec::new()),
                    group_exit: AtomicBool::new(false),
                    oom_score_adj: AtomicI32::new(0),
                    oom_victim: AtomicBool::new(false),
                    oom_mm: parking_lot::Mutex::new(None),
                });
                g.groups.insert(tid, grp.clone());
                let task = Task::new(tid, grp.clone(), exec(tid));
                grp.threads.lock().push(task.clone());
                g.tasks.insert(tid, task.clone());
                Ok(task)
            }
        }
    }

    /// `release_task()`: unlink an exited task (its pid is free again unless it leads a
    /// process that still has threads); the process goes with its last thread.
    pub(crate) fn release(&self, t: &Task) {
        let mut g = self.inner.lock();
        g.tasks.remove(&t.tid);
        t.lock_events.fold_into(&g.retired_events);
        t.vm_events.fold_into(&g.retired_vm_events);
        t.mmap_lock_waits.fold_into(&g.retired_mmap_lock_waits);
        let mut threads = t.group.threads.lock();
        threads.retain(|x| x.tid != t.tid);
        if threads.is_empty() {
            g.groups.remove(&t.group.tgid);
        }
    }

    /// Unlink everything (executor teardown; breaks the group↔task reference cycles).
    #[cfg_attr(oomlab_loom, allow(dead_code))]
    pub(crate) fn clear(&self) {
        let mut g = self.inner.lock();
        // The tasks left go without exiting: keep their counts in the totals.
        for t in g.tasks.values() {
            t.lock_events.fold_into(&g.retired_events);
            t.vm_events.fold_into(&g.retired_vm_events);
            t.mmap_lock_waits.fold_into(&g.retired_mmap_lock_waits);
        }
        for grp in g.groups.values() {
            grp.threads.lock().clear();
        }
        g.groups.clear();
        g.tasks.clear();
    }

    /// A write to `/proc/sys/kernel/ns_last_pid` (v3.3+, the checkpoint/restore interface):
    /// the next pid allocated is `last + 1`. Models `pid_ns_ctl_handler()` followed by
    /// `alloc_pid()`'s search from `last_pid + 1`. Deviation: pids are never reused here, so a
    /// value below the last pid handed out is refused (`Err` with that pid) instead of letting
    /// the allocator search on for a free one.
    pub fn set_ns_last_pid(&self, last: Tid) -> Result<(), Tid> {
        let mut g = self.inner.lock();
        let last_used = g.next_pid - 1;
        if last < last_used || last == Tid::MAX {
            return Err(last_used);
        }
        g.next_pid = last + 1;
        Ok(())
    }

    pub fn find_task(&self, tid: Tid) -> Option<Arc<Task>> {
        self.inner.lock().tasks.get(&tid).cloned()
    }
    pub fn find_process(&self, tgid: Tgid) -> Option<Arc<ThreadGroup>> {
        self.inner.lock().groups.get(&tgid).cloned()
    }
    /// `for_each_process`: live processes in pid order (a snapshot).
    pub fn processes(&self) -> Vec<Arc<ThreadGroup>> {
        self.inner.lock().groups.values().cloned().collect()
    }
    /// All live tasks in tid order (a snapshot).
    pub fn tasks(&self) -> Vec<Arc<Task>> {
        self.inner.lock().tasks.values().cloned().collect()
    }
    /// Lock event totals: live tasks plus exited ones.
    pub fn lock_events(&self) -> [u64; crate::locking::lock_events::NR_LOCK_EVENTS] {
        let g = self.inner.lock();
        let mut sum = g.retired_events.snapshot();
        for t in g.tasks.values() {
            for (s, v) in sum.iter_mut().zip(t.lock_events.snapshot()) {
                *s += v;
            }
        }
        sum
    }
    /// VM event totals (`/proc/vmstat`): live tasks plus exited ones.
    pub fn vm_events(&self) -> [u64; crate::vmstat::NR_VM_EVENTS] {
        let g = self.inner.lock();
        let mut sum = g.retired_vm_events.snapshot();
        for t in g.tasks.values() {
            for (s, v) in sum.iter_mut().zip(t.vm_events.snapshot()) {
                *s += v;
            }
        }
        sum
    }
    /// `mmap_lock` wait histogram totals ([`crate::mmap_lock::WaitHistogram::of`] reads one
    /// kind): live tasks plus exited ones.
    pub fn mmap_lock_waits(
        &self,
    ) -> [u64; crate::mmap_lock::NR_MMAP_LOCK_WAITS * crate::mmap_lock::WAIT_SLOTS] {
        let g = self.inner.lock();
        let mut sum = g.retired_mmap_lock_waits.snapshot();
        for t in g.tasks.values() {
            for (s, v) in sum.iter_mut().zip(t.mmap_lock_waits.snapshot()) {
                *s += v;
            }
        }
        sum
    }
    pub fn nr_tasks(&self) -> usize {
        self.inner.lock().tasks.len()
    }
}

/// `send_sig(sig, p)` / `tgkill()`: signal one task. SIGKILL is promoted to a group exit, as
/// `complete_signal()` does for any fatal signal.
pub fn send_sig(sig: Signal, t: &Task) {
    match sig {
        Signal::Kill => kill_thread_group(sig, &t.group),
        Signal::Other => t.deliver(sig),
    }
}

/// `kill(2)` / `do_send_sig_info(…, PIDTYPE_TGID)`: signal a whole process. SIGKILL sets
/// `SIGNAL_GROUP_EXIT`, makes SIGKILL pending on every thread and wakes each thread whose
/// sleep state accepts it. A non-fatal signal goes to the first live thread.
pub fn kill_thread_group(sig: Signal, group: &ThreadGroup) {
    match sig {
        Signal::Kill => {
            // Under the thread-list lock (`siglock`), so that no clone slips in unsignalled.
            let threads = {
                let l = group.threads.lock();
                group
                    .group_exit
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                l.clone()
            };
            for t in &threads {
                t.deliver(Signal::Kill);
            }
        }
        Signal::Other => {
            if let Some(t) = group.threads().first() {
                t.deliver(Signal::Other);
            }
        }
    }
}
