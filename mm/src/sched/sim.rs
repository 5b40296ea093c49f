//! The sim executor: deterministic, single OS thread, virtual time.
//!
//! Every task is a stackful coroutine (`corosensei`). The scheduler loop fires due timers,
//! picks the next task among the runnable ones with a seeded PRNG (xoshiro256++), and resumes it
//! until its next yield point ([`super::cond_resched`], or `schedule()` while TASK_RUNNING) or
//! blocking point (`schedule()` in a sleep state). The virtual clock advances by
//! `step_cost_ns` per resumed step and jumps to the earliest timer when nothing is runnable.
//! Same seed + same binary ⇒ the same sequence of steps, byte for byte.
//!
//! When no task is runnable and no timer is pending while tasks remain, that is a deadlock of
//! the modelled kernel: [`Sim::run`] returns [`SimOutcome::Deadlock`] at once, with every live
//! task's state and wait channel. Every run ends: `max_steps` and `max_time_ns` bound it.
//!
//! Tests can drive the scheduler by hand instead ([`Sim::step`]): "task X runs its next step",
//! and observe [`Sim::is_blocked`].
//!
//! Deviations: one CPU; no preemption between yield points; picking is uniform among runnable
//! tasks (no CFS vruntime).

use super::set_current_ptr;
use crate::sync::Ordering;
use crate::task::{state, state::*, CloneError, CloneKind, ExecHandle, Task, TaskList, Tid, Wchan};
use corosensei::stack::DefaultStack;
use corosensei::{Coroutine, CoroutineResult, Yielder};
use rand_xoshiro::rand_core::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::cell::Cell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::sync::Arc;

/// Why a coroutine gave the CPU back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Switch {
    Yield,
    Block,
}

type Co = Coroutine<(), Switch, (), DefaultStack>;

thread_local! {
    static YIELDER: Cell<*const Yielder<(), Switch>> = const { Cell::new(std::ptr::null()) };
}

fn suspend(why: Switch) {
    let y = YIELDER.with(|c| c.get());
    assert!(!y.is_null(), "sim switch outside a sim coroutine");
    // SAFETY: the yielder lives on the running coroutine's stack for its whole life.
    unsafe { (*y).suspend(why) };
    YIELDER.with(|c| c.set(y));
}

/// Configuration of a [`Sim`].
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub seed: u64,
    /// Timer frequency for `jiffies`.
    pub hz: u32,
    /// Coroutine stack size, bytes (lazily committed by the host).
    pub stack_size: usize,
    /// Virtual time charged per resumed step, ns.
    pub step_cost_ns: u64,
    /// [`Sim::run`] stops after this many steps.
    pub max_steps: u64,
    /// [`Sim::run`] stops when the virtual clock passes this.
    pub max_time_ns: u64,
    /// Record every step in [`Sim::trace`].
    pub trace: bool,
    /// `/proc/sys/kernel/pid_max` of the machine ([`crate::task::TaskList::with_pid_max`]).
    pub pid_max: u32,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 0,
            hz: 1000,
            stack_size: 256 << 10,
            step_cost_ns: 1_000,
            max_steps: 100_000_000,
            max_time_ns: 3_600 * 1_000_000_000,
            trace: false,
            pid_max: crate::task::PID_MAX_DEFAULT,
        }
    }
}

/// What one resumed step ended in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StepResult {
    /// The task reached a yield point and is still runnable.
    Yielded,
    /// The task went to sleep.
    Blocked,
    /// The task's function returned.
    Exited,
}

/// Why [`Sim::step`] could not run a task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepError {
    NoSuchTask(Tid),
    /// The task sleeps; it must be woken first.
    NotRunnable(Tid),
    Exited(Tid),
}

/// One recorded step.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TraceEvent {
    pub step: u64,
    pub now_ns: u64,
    pub tid: Tid,
    pub result: StepResult,
}

/// How a [`Sim::run`] ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SimOutcome {
    /// Every task exited.
    AllExited,
    /// Tasks remain, none is runnable and no timer is pending.
    Deadlock(DeadlockReport),
    StepLimit,
    TimeLimit,
    /// The `until` predicate of [`Sim::run_until`] became true.
    Stopped,
}

/// A blocked task in a [`DeadlockReport`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockedTask {
    pub tid: Tid,
    pub tgid: Tid,
    pub comm: String,
    pub state: u32,
    pub wchan: Option<Wchan>,
    pub sleeping_since_ns: u64,
    pub fatal_signal_pending: bool,
}

/// Who waits on what when everything stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadlockReport {
    pub now_ns: u64,
    pub seed: u64,
    pub tasks: Vec<BlockedTask>,
}

impl fmt::Display for DeadlockReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "deadlock at {:.6}s (seed {}): no runnable task, no pending timer",
            self.now_ns as f64 / 1e9,
            self.seed
        )?;
        for t in &self.tasks {
            write!(
                f,
                "  {}[{}/{}] {} ({}){}",
                t.comm,
                t.tgid,
                t.tid,
                state::letter(t.state),
                state::name(t.state),
                if t.fatal_signal_pending {
                    " SIGKILL pending"
                } else {
                    ""
                }
            )?;
            match &t.wchan {
                Some(w) => writeln!(f, " in {w}")?,
                None => writeln!(f)?,
            }
        }
        Ok(())
    }
}

struct Inner {
    now_ns: u64,
    runq: Vec<usize>,
    on_rq: Vec<bool>,
    timers: BinaryHeap<Reverse<(u64, u64, usize, u64)>>,
    timer_gen: Vec<u64>,
    timer_seq: u64,
    /// Slots of exited tasks, reused by new ones (LIFO: deterministic), so that a run of any
    /// length keeps as many slots as it ever had live tasks.
    free_slots: Vec<usize>,
    /// Created and not yet adopted by [`Sim`]: (slot, task, body).
    spawned: Vec<(usize, Arc<Task>, TaskBody)>,
}

/// A task's code, until its coroutine starts it.
type TaskBody = Box<dyn FnOnce() + Send>;

/// The part of the sim every task can reach (through its [`ExecHandle`]).
pub struct SimShared {
    pub(crate) hz: u32,
    inner: parking_lot::Mutex<Inner>,
    pub(crate) tasks: Arc<TaskList>,
}

impl SimShared {
    pub(crate) fn now_ns(&self) -> u64 {
        self.inner.lock().now_ns
    }

    pub(crate) fn advance_clock(&self, ns: u64) {
        self.inner.lock().now_ns += ns;
    }

    pub(crate) fn yield_now(&self, _idx: usize) {
        suspend(Switch::Yield);
    }

    pub(crate) fn block(&self, t: &Task, idx: usize, deadline_ns: Option<u64>) {
        {
            let mut g = self.inner.lock();
            if let Some(d) = deadline_ns {
                let seq = g.timer_seq;
                g.timer_seq += 1;
                let gen = g.timer_gen[idx];
                g.timers.push(Reverse((d, seq, idx, gen)));
            }
            g.on_rq[idx] = false;
        }
        suspend(Switch::Block);
        debug_assert_eq!(t.state.load(Ordering::SeqCst), TASK_RUNNING);
        if deadline_ns.is_some() {
            // del_timer_sync(): a timer of a finished sleep must not fire later.
            self.inner.lock().timer_gen[idx] += 1;
        }
    }

    pub(crate) fn make_runnable(&self, idx: usize) {
        let mut g = self.inner.lock();
        if !g.on_rq[idx] {
            g.on_rq[idx] = true;
            g.runq.push(idx);
        }
    }

    pub(crate) fn create_from_task(
        self: &Arc<Self>,
        kind: CloneKind,
        f: Box<dyn FnOnce() + Send>,
    ) -> Result<Arc<Task>, CloneError> {
        self.create(kind, f)
    }

    fn create(
        self: &Arc<Self>,
        kind: CloneKind,
        f: Box<dyn FnOnce() + Send>,
    ) -> Result<Arc<Task>, CloneError> {
        let idx = {
            let mut g = self.inner.lock();
            match g.free_slots.pop() {
                Some(i) => i,
                None => {
                    g.on_rq.push(false);
                    g.timer_gen.push(0);
                    g.on_rq.len() - 1
                }
            }
        };
        let t = match self
            .tasks
            .create(&kind, |_| ExecHandle::Sim(self.clone(), idx))
        {
            Ok(t) => t,
            Err(e) => {
                self.inner.lock().free_slots.push(idx);
                return Err(e);
            }
        };
        let mut g = self.inner.lock();
        g.on_rq[idx] = true;
        g.runq.push(idx);
        g.spawned.push((idx, t.clone(), f));
        Ok(t)
    }
}

/// A deterministic executor. Not `Send`: run one per OS thread.
pub struct Sim {
    cfg: SimConfig,
    shared: Arc<SimShared>,
    /// By slot: the task that runs (or last ran) in it, and its coroutine while it lives.
    tasks: Vec<Arc<Task>>,
    cos: Vec<Option<Co>>,
    /// Tid → slot, for the live tasks and the last occupant of every free slot.
    by_tid: std::collections::HashMap<Tid, usize>,
    rng: Xoshiro256PlusPlus,
    steps: u64,
    live: usize,
    trace: Vec<TraceEvent>,
    trace_hash: u64,
}

impl Sim {
    pub fn new(cfg: SimConfig) -> Sim {
        assert!(cfg.hz > 0 && cfg.hz <= 1_000_000_000, "HZ out of range");
        let shared = Arc::new(SimShared {
            hz: cfg.hz,
            inner: parking_lot::Mutex::new(Inner {
                now_ns: 0,
                runq: Vec::new(),
                on_rq: Vec::new(),
                timers: BinaryHeap::new(),
                timer_gen: Vec::new(),
                timer_seq: 0,
                free_slots: Vec::new(),
                spawned: Vec::new(),
            }),
            tasks: Arc::new(TaskList::with_pid_max(cfg.pid_max)),
        });
        Sim {
            rng: Xoshiro256PlusPlus::seed_from_u64(cfg.seed),
            cfg,
            shared,
            tasks: Vec::new(),
            cos: Vec::new(),
            by_tid: std::collections::HashMap::new(),
            steps: 0,
            live: 0,
            trace: Vec::new(),
            trace_hash: 0xcbf2_9ce4_8422_2325,
        }
    }

    pub fn config(&self) -> &SimConfig {
        &self.cfg
    }
    pub fn seed(&self) -> u64 {
        self.cfg.seed
    }
    /// The process list of this emulated machine.
    pub fn tasks(&self) -> &Arc<TaskList> {
        &self.shared.tasks
    }
    /// Virtual time, ns.
    pub fn now_ns(&self) -> u64 {
        self.shared.now_ns()
    }
    /// The part every task (and a watching host thread) can reach.
    pub(crate) fn shared(&self) -> &Arc<SimShared> {
        &self.shared
    }
    /// Steps run so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }
    /// Recorded steps (with `trace` on).
    pub fn trace(&self) -> &[TraceEvent] {
        &self.trace
    }
    /// FNV-1a hash of every step so far (task, result, time); equal hashes ⇔ equal runs.
    pub fn trace_hash(&self) -> u64 {
        self.trace_hash
    }
    /// Task slots: the most tasks ever alive at once (slots of exited tasks are reused).
    pub fn nr_slots(&self) -> usize {
        self.cos.len()
    }
    /// Tasks not yet exited.
    pub fn nr_live(&self) -> usize {
        self.live
    }

    /// Create a task; it is runnable at once. Tasks may also create tasks with
    /// [`super::spawn`].
    pub fn spawn(
        &mut self,
        kind: CloneKind,
        f: impl FnOnce() + Send + 'static,
    ) -> Result<Arc<Task>, CloneError> {
        let t = self.shared.create(kind, Box::new(f))?;
        self.adopt_spawned();
        Ok(t)
    }

    fn adopt_spawned(&mut self) {
        let spawned = std::mem::take(&mut self.shared.inner.lock().spawned);
        for (idx, t, f) in spawned {
            let stack = DefaultStack::new(self.cfg.stack_size).expect("allocating a sim stack");
            let co = Coroutine::with_stack(stack, move |y: &Yielder<(), Switch>, ()| {
                YIELDER.with(|c| c.set(y as *const _));
                f();
                // do_exit(): release the address space in task context.
                crate::memory::exit_mm();
            });
            if idx == self.cos.len() {
                self.cos.push(Some(co));
                self.tasks.push(t.clone());
            } else {
                assert!(self.cos[idx].is_none(), "sim slot {idx} reused while live");
                self.cos[idx] = Some(co);
                let old = std::mem::replace(&mut self.tasks[idx], t.clone());
                if self.by_tid.get(&old.tid()) == Some(&idx) {
                    self.by_tid.remove(&old.tid());
                }
            }
            self.by_tid.insert(t.tid(), idx);
            self.live += 1;
        }
    }

    fn idx_of(&self, tid: Tid) -> Result<usize, StepError> {
        self.by_tid
            .get(&tid)
            .copied()
            .ok_or(StepError::NoSuchTask(tid))
    }

    /// The task sleeps (alive, not runnable).
    pub fn is_blocked(&self, tid: Tid) -> bool {
        match self.idx_of(tid) {
            Ok(i) => self.cos[i].is_some() && !self.shared.inner.lock().on_rq[i],
            Err(_) => false,
        }
    }
    /// The task can be stepped.
    pub fn is_runnable(&self, tid: Tid) -> bool {
        match self.idx_of(tid) {
            Ok(i) => self.cos[i].is_some() && self.shared.inner.lock().on_rq[i],
            Err(_) => false,
        }
    }
    pub fn has_exited(&self, tid: Tid) -> bool {
        matches!(self.idx_of(tid), Ok(i) if self.cos[i].is_none())
    }

    /// Fire every timer due at the current virtual time (`run_timer_softirq`).
    fn fire_due(&self) {
        loop {
            let fire = {
                let mut g = self.shared.inner.lock();
                match g.timers.peek() {
                    Some(Reverse((d, _, idx, gen))) if *d <= g.now_ns => {
                        let (idx, gen) = (*idx, *gen);
                        g.timers.pop();
                        (gen == g.timer_gen[idx]).then_some(idx)
                    }
                    _ => return,
                }
            };
            if let Some(idx) = fire {
                // process_timeout()
                super::wake_up_process(&self.tasks[idx]);
            }
        }
    }

    /// Jump the clock to the earliest live timer and fire it. False if none is pending.
    pub fn advance_to_next_timer(&mut self) -> bool {
        {
            let mut g = self.shared.inner.lock();
            loop {
                match g.timers.peek() {
                    None => return false,
                    Some(Reverse((d, _, idx, gen))) => {
                        if *gen != g.timer_gen[*idx] {
                            g.timers.pop();
                            continue;
                        }
                        g.now_ns = g.now_ns.max(*d);
                        break;
                    }
                }
            }
        }
        self.fire_due();
        true
    }

    /// Move the clock forward by `ns`, firing the timers that fall due.
    pub fn advance_time(&mut self, ns: u64) {
        self.shared.inner.lock().now_ns += ns;
        self.fire_due();
    }

    fn pick(&mut self) -> Option<usize> {
        loop {
            self.fire_due();
            {
                let mut g = self.shared.inner.lock();
                if !g.runq.is_empty() {
                    let n = g.runq.len() as u64;
                    let i = ((self.rng.next_u64() as u128 * n as u128) >> 64) as usize;
                    return Some(g.runq.swap_remove(i));
                }
            }
            if !self.advance_to_next_timer() {
                return None;
            }
        }
    }

    fn resume(&mut self, idx: usize) -> StepResult {
        self.steps += 1;
        self.shared.inner.lock().now_ns += self.cfg.step_cost_ns;
        let task = self.tasks[idx].clone();
        let prev = set_current_ptr(Arc::as_ptr(&task));
        let co = self.cos[idx].as_mut().expect("resuming an exited sim task");
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| co.resume(())));
        set_current_ptr(prev);
        let r = match r {
            Ok(r) => r,
            Err(e) => {
                // Crash loudly with what is needed to replay it (the library does no I/O of
                // its own: the seed goes into the panic message).
                let msg = e
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| e.downcast_ref::<String>().cloned());
                match msg {
                    Some(m) => panic!(
                        "{m}\noomlab: emulator bug in sim task {:?} at step {}; reproduce with seed {}",
                        task, self.steps, self.cfg.seed
                    ),
                    None => std::panic::resume_unwind(e),
                }
            }
        };
        let result = match r {
            CoroutineResult::Yield(Switch::Yield) => {
                let mut g = self.shared.inner.lock();
                g.runq.push(idx);
                StepResult::Yielded
            }
            CoroutineResult::Yield(Switch::Block) => StepResult::Blocked,
            CoroutineResult::Return(()) => {
                self.cos[idx] = None;
                self.live -= 1;
                {
                    let mut g = self.shared.inner.lock();
                    g.on_rq[idx] = false;
                    // No timer of the old occupant may fire for the next one.
                    g.timer_gen[idx] += 1;
                    g.free_slots.push(idx);
                }
                task.mark_exited();
                self.shared.tasks.release(&task);
                StepResult::Exited
            }
        };
        self.adopt_spawned();
        let now = self.now_ns();
        for x in [task.tid() as u64, result as u64, now] {
            for b in x.to_le_bytes() {
                self.trace_hash = (self.trace_hash ^ b as u64).wrapping_mul(0x100_0000_01b3);
            }
        }
        if self.cfg.trace {
            self.trace.push(TraceEvent {
                step: self.steps,
                now_ns: now,
                tid: task.tid(),
                result,
            });
        }
        result
    }

    /// Scripted picking: run task `tid` until its next yield or blocking point.
    pub fn step(&mut self, tid: Tid) -> Result<StepResult, StepError> {
        let idx = self.idx_of(tid)?;
        if self.cos[idx].is_none() {
            return Err(StepError::Exited(tid));
        }
        self.fire_due();
        {
            let mut g = self.shared.inner.lock();
            let Some(pos) = g.runq.iter().position(|&i| i == idx) else {
                return Err(StepError::NotRunnable(tid));
            };
            g.runq.remove(pos);
        }
        Ok(self.resume(idx))
    }

    /// Run with the seeded picker until every task exited, a deadlock, or a limit.
    pub fn run(&mut self) -> SimOutcome {
        self.run_until(|_| false)
    }

    /// As [`Sim::run`], also stopping (before the next step) once `until` returns true.
    pub fn run_until(&mut self, until: impl FnMut(&Sim) -> bool) -> SimOutcome {
        self.run_until_deadline(u64::MAX, until)
    }

    /// As [`Sim::run_until`], also stopping with [`SimOutcome::TimeLimit`] once the virtual
    /// clock passes `deadline_ns` (or [`SimConfig::max_time_ns`], whichever is earlier).
    pub fn run_until_deadline(
        &mut self,
        deadline_ns: u64,
        mut until: impl FnMut(&Sim) -> bool,
    ) -> SimOutcome {
        let deadline_ns = deadline_ns.min(self.cfg.max_time_ns);
        loop {
            if until(self) {
                return SimOutcome::Stopped;
            }
            if self.steps >= self.cfg.max_steps {
                return SimOutcome::StepLimit;
            }
            let Some(idx) = self.pick() else {
                return if self.live == 0 {
                    SimOutcome::AllExited
                } else {
                    SimOutcome::Deadlock(self.deadlock_report())
                };
            };
            if self.now_ns() > deadline_ns {
                self.shared.inner.lock().runq.push(idx);
                return SimOutcome::TimeLimit;
            }
            self.resume(idx);
        }
    }

    /// Every live task with its state and wait channel.
    pub fn deadlock_report(&self) -> DeadlockReport {
        let tasks = self
            .tasks
            .iter()
            .zip(&self.cos)
            .filter(|(_, c)| c.is_some())
            .map(|(t, _)| BlockedTask {
                tid: t.tid(),
                tgid: t.tgid(),
                comm: t.comm().to_string(),
                state: t.state(),
                wchan: t.wchan(),
                sleeping_since_ns: t.sleep_since_ns(),
                fatal_signal_pending: t.fatal_signal_pending(),
            })
            .collect();
        DeadlockReport {
            now_ns: self.now_ns(),
            seed: self.cfg.seed,
            tasks,
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        for co in self.cos.iter_mut().flatten() {
            if co.started() && !co.done() {
                // A task left asleep (deadlock, limit): do not unwind its stack through the
                // emulated kernel; its stack objects are leaked with it.
                // SAFETY: nothing on that stack is referenced from outside the coroutine.
                unsafe { co.force_reset() };
            }
        }
        self.shared.tasks.clear();
    }
}
