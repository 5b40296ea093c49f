//! A scripted-interleaving lab for the rw_semaphore on the sim executor, shared by the rule
//! tests of every model (rwsem_rules.rs for Model A and RfcV1, which adds its count-word
//! checks; rwsem_model_b.rs; rwsem_spin.rs). Each emulated task is an *actor* (a process of its own) running a list of
//! kernel-shaped operations ([`Op`]) on one [`RawRwSem`]; after every operation it logs
//! `name:Op=result` and calls `cond_resched()`, so one `Sim::step(tid)` runs one operation, or
//! one spin iteration of an optimistic spinner (which yields without logging), or up to the
//! point where the task sleeps.
//!
//! Locks are read through [`RawRwSem::snapshot`] only, rendered by [`Lab::state`] as
//! `"<holders>; queue <waiters>; flags <flags>"`:
//! - holders: `free`, `write NAME`, `read N`;
//! - waiters in arrival order as `NAME:R|W`, with `+` for a reader granted but not yet back
//!   from `down_read*`, and `!` for the waiter the handoff bit is credited to;
//! - flags: `waiters`, `handoff(by NAME)` / `handoff(inherited)`, `nonspinnable`,
//!   `spinners NAME,NAME`.
//!
//! Every lock operation is also checked against a lock-independent witness (readers/writers
//! inside), as locktorture does. [`Lab::assert_closed`] is the closing check of every test:
//! nobody holds, the queue is empty, every flag is clear, `down_write_trylock` succeeds.
#![allow(dead_code)]

pub mod prop;

use mm::locking::lock_events::LockEvent;
use mm::locking::rwsem::{
    Interrupted, Killed, RawRwSem, RwSemConfig, RwSemModel, RwSemSnapshot, RwSemSpin, WaiterType,
};
use mm::sched::sim::{Sim, SimConfig, SimOutcome, StepResult};
use mm::sched::{self, cond_resched};
use mm::task::state::{TASK_RUNNING, TASK_UNINTERRUPTIBLE};
use mm::task::{send_sig, CloneKind, Signal, Task, TaskList, Tid};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

pub use StepResult::{Blocked, Exited, Yielded};

/// Model B, spinning off.
pub const B: RwSemConfig = RwSemConfig {
    model: RwSemModel::B,
    spin: RwSemSpin::Off,
};
/// Model B, spinning on.
pub const B_SPIN: RwSemConfig = RwSemConfig {
    model: RwSemModel::B,
    spin: RwSemSpin::On,
};
/// Model A, spinning off.
pub const A: RwSemConfig = RwSemConfig {
    model: RwSemModel::A,
    spin: RwSemSpin::Off,
};
/// Model A, spinning on.
pub const A_SPIN: RwSemConfig = RwSemConfig {
    model: RwSemModel::A,
    spin: RwSemSpin::On,
};

/// One operation of an actor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `down_read` (TASK_UNINTERRUPTIBLE).
    R,
    /// `down_read_killable`.
    RK,
    /// `down_read_interruptible`.
    RI,
    /// `down_write` (TASK_UNINTERRUPTIBLE).
    W,
    /// `down_write_killable`.
    WK,
    /// `up_read`.
    UR,
    /// `up_write`.
    UW,
    /// `downgrade_write`.
    DG,
    /// `down_read_trylock` (logs 1/0).
    TR,
    /// `down_write_trylock` (logs 1/0).
    TW,
    /// Stay on the CPU for this many `cond_resched()` steps (a holder that keeps running).
    Busy(u32),
    /// `wait_for_completion(k)`, uninterruptible: a holder that sleeps on something else.
    Wait(usize),
    /// `complete_all(k)`.
    Complete(usize),
    /// SIGKILL to the process named so.
    Kill(&'static str),
}

/// Who is inside the critical section, independent of the lock under test.
#[derive(Default)]
pub struct Witness {
    pub readers: AtomicUsize,
    pub writers: AtomicUsize,
}

impl Witness {
    pub fn read_enter(&self, who: &str) {
        assert_eq!(
            self.writers.load(SeqCst),
            0,
            "{who}: read lock granted while a writer holds it"
        );
        self.readers.fetch_add(1, SeqCst);
    }
    pub fn write_enter(&self, who: &str) {
        assert_eq!(
            self.writers.fetch_add(1, SeqCst),
            0,
            "{who}: write lock granted while another writer holds it"
        );
        assert_eq!(
            self.readers.load(SeqCst),
            0,
            "{who}: write lock granted while readers hold it"
        );
    }
    pub fn read_exit(&self) {
        assert!(
            self.readers.fetch_sub(1, SeqCst) > 0,
            "up_read without a reader"
        );
    }
    pub fn write_exit(&self) {
        assert_eq!(
            self.writers.fetch_sub(1, SeqCst),
            1,
            "up_write without a writer"
        );
    }
    pub fn downgrade(&self) {
        self.write_exit();
        self.readers.fetch_add(1, SeqCst);
    }
    pub fn assert_read_held(&self, who: &str) {
        assert_eq!(
            self.writers.load(SeqCst),
            0,
            "{who}: writer inside while reading"
        );
        assert!(self.readers.load(SeqCst) > 0);
    }
    pub fn assert_write_held(&self, who: &str) {
        assert_eq!(self.writers.load(SeqCst), 1, "{who}: second writer inside");
        assert_eq!(
            self.readers.load(SeqCst),
            0,
            "{who}: reader inside while writing"
        );
    }
    pub fn is_empty(&self) -> bool {
        self.readers.load(SeqCst) == 0 && self.writers.load(SeqCst) == 0
    }
}

/// `done` and the tasks sleeping in `wait_for_completion`.
type Completion = (bool, Vec<Arc<Task>>);

/// Kernel-style completions, for holders that wait on another task.
#[derive(Clone, Default)]
pub struct Completions(Arc<Mutex<HashMap<usize, Completion>>>);

impl Completions {
    pub fn wait(&self, k: usize) {
        loop {
            sched::set_current_state(TASK_UNINTERRUPTIBLE);
            {
                let mut g = self.0.lock();
                let e = g.entry(k).or_default();
                if e.0 {
                    break;
                }
                e.1.push(sched::current());
            }
            sched::schedule();
        }
        sched::__set_current_state(TASK_RUNNING);
    }
    pub fn complete(&self, k: usize) {
        let waiters = {
            let mut g = self.0.lock();
            let e = g.entry(k).or_default();
            e.0 = true;
            std::mem::take(&mut e.1)
        };
        for t in waiters {
            sched::wake_up_process(&t);
        }
    }
}

/// Everything an actor needs.
#[derive(Clone)]
pub struct Ctx {
    pub sem: Arc<RawRwSem>,
    pub log: Arc<Mutex<Vec<String>>>,
    pub wit: Arc<Witness>,
    pub comps: Completions,
    pub tasks: Arc<TaskList>,
}

impl Ctx {
    /// Run one operation; returns the logged result.
    pub fn exec(&self, who: &str, op: Op) -> &'static str {
        let (sem, wit) = (&*self.sem, &*self.wit);
        match op {
            Op::R => {
                sem.down_read();
                wit.read_enter(who);
                "ok"
            }
            Op::RK => match sem.down_read_killable() {
                Ok(()) => {
                    wit.read_enter(who);
                    "ok"
                }
                Err(Killed) => {
                    assert!(
                        sched::fatal_signal_pending(),
                        "{who}: EINTR without SIGKILL"
                    );
                    "EINTR"
                }
            },
            Op::RI => match sem.down_read_interruptible() {
                Ok(()) => {
                    wit.read_enter(who);
                    "ok"
                }
                Err(Interrupted) => {
                    assert!(sched::signal_pending(), "{who}: EINTR without a signal");
                    "EINTR"
                }
            },
            Op::W => {
                sem.down_write();
                wit.write_enter(who);
                "ok"
            }
            Op::WK => match sem.down_write_killable() {
                Ok(()) => {
                    wit.write_enter(who);
                    "ok"
                }
                Err(Killed) => {
                    assert!(
                        sched::fatal_signal_pending(),
                        "{who}: EINTR without SIGKILL"
                    );
                    "EINTR"
                }
            },
            Op::UR => {
                wit.read_exit();
                sem.up_read();
                "ok"
            }
            Op::UW => {
                wit.write_exit();
                sem.up_write();
                "ok"
            }
            Op::DG => {
                wit.downgrade();
                sem.downgrade_write();
                "ok"
            }
            Op::TR => {
                if sem.down_read_trylock() {
                    wit.read_enter(who);
                    "1"
                } else {
                    "0"
                }
            }
            Op::TW => {
                if sem.down_write_trylock() {
                    wit.write_enter(who);
                    "1"
                } else {
                    "0"
                }
            }
            Op::Busy(n) => {
                for _ in 0..n {
                    cond_resched();
                }
                "ok"
            }
            Op::Wait(k) => {
                self.comps.wait(k);
                "ok"
            }
            Op::Complete(k) => {
                self.comps.complete(k);
                "ok"
            }
            Op::Kill(name) => {
                let p = self
                    .tasks
                    .processes()
                    .into_iter()
                    .find(|p| p.comm() == name)
                    .unwrap_or_else(|| panic!("no process {name}"));
                send_sig(Signal::Kill, &p.threads()[0]);
                "ok"
            }
        }
    }
}

/// A sim executor, one lock, and named actors driven step by step.
pub struct Lab {
    pub sim: Sim,
    pub sem: Arc<RawRwSem>,
    pub ctx: Ctx,
    seen: usize,
    names: HashMap<Tid, &'static str>,
    tasks: HashMap<Tid, Arc<Task>>,
}

impl Lab {
    pub fn new(config: RwSemConfig) -> Lab {
        Lab::with_sim(
            config,
            SimConfig {
                seed: 1,
                max_steps: 1_000_000,
                ..Default::default()
            },
        )
    }

    /// `sim.seed` only matters for [`Lab::run`] (the seeded picker).
    pub fn with_sim(config: RwSemConfig, sim: SimConfig) -> Lab {
        let sim = Sim::new(sim);
        let sem = Arc::new(RawRwSem::with_config("sem", config));
        let ctx = Ctx {
            sem: sem.clone(),
            log: Default::default(),
            wit: Default::default(),
            comps: Default::default(),
            tasks: sim.tasks().clone(),
        };
        Lab {
            sim,
            sem,
            ctx,
            seen: 0,
            names: HashMap::new(),
            tasks: HashMap::new(),
        }
    }

    /// A new process `name` that runs `ops`, one per step; an `EINTR` ends it.
    pub fn actor(&mut self, name: &'static str, ops: &[Op]) -> Tid {
        let ops = ops.to_vec();
        let ctx = self.ctx.clone();
        self.spawn(name, move || {
            let n = ops.len();
            for (i, op) in ops.into_iter().enumerate() {
                let res = ctx.exec(name, op);
                ctx.log.lock().push(format!("{name}:{op:?}={res}"));
                if res == "EINTR" {
                    return;
                }
                if i + 1 < n {
                    cond_resched();
                }
            }
        })
    }

    /// A new process `name` running arbitrary code.
    pub fn spawn(&mut self, name: &'static str, f: impl FnOnce() + Send + 'static) -> Tid {
        let t = self
            .sim
            .spawn(
                CloneKind::Process {
                    comm: name.to_string(),
                },
                f,
            )
            .expect("spawn");
        self.names.insert(t.tid(), name);
        self.tasks.insert(t.tid(), t.clone());
        t.tid()
    }

    pub fn name(&self, t: Tid) -> &'static str {
        self.names.get(&t).copied().unwrap_or("?")
    }

    pub fn new_log(&mut self) -> Vec<String> {
        let log = self.ctx.log.lock();
        let new = log[self.seen..].to_vec();
        self.seen = log.len();
        new
    }

    /// Run `t`'s next step; assert how it ended and what it logged.
    #[track_caller]
    pub fn step(&mut self, t: Tid, expect: StepResult, log: &[&str]) {
        let r = self
            .sim
            .step(t)
            .unwrap_or_else(|e| panic!("cannot step {}: {e:?}", self.name(t)));
        let new = self.new_log();
        assert_eq!(
            (r, new.clone()),
            (
                expect,
                log.iter().map(|s| s.to_string()).collect::<Vec<_>>()
            ),
            "step of {}: (result, log)",
            self.name(t)
        );
    }

    /// The step of `t` goes (back) to sleep without completing anything.
    #[track_caller]
    pub fn sleeps(&mut self, t: Tid) {
        self.step(t, Blocked, &[]);
    }

    /// The step of `t` yields without completing anything (one spin iteration).
    #[track_caller]
    pub fn spins(&mut self, t: Tid) {
        self.step(t, Yielded, &[]);
    }

    pub fn snapshot(&self) -> RwSemSnapshot {
        self.sem.snapshot()
    }

    /// The lock's state through the snapshot, rendered as described in the module docs.
    pub fn state(&self) -> String {
        let s = self.snapshot();
        let holders = if s.write_locked {
            format!(
                "write {}",
                s.writer
                    .map_or("?".to_string(), |t| self.name(t).to_string())
            )
        } else if s.readers > 0 {
            format!("read {}", s.readers)
        } else {
            "free".to_string()
        };
        let queue: Vec<String> = s
            .queue
            .iter()
            .map(|w| {
                format!(
                    "{}:{}{}{}",
                    self.name(w.tid),
                    if w.kind == WaiterType::Write {
                        "W"
                    } else {
                        "R"
                    },
                    if w.granted { "+" } else { "" },
                    if w.handoff_set { "!" } else { "" }
                )
            })
            .collect();
        let mut flags = Vec::new();
        if s.waiters_flag > 0 {
            flags.push(if s.waiters_flag == 1 {
                "waiters".to_string()
            } else {
                format!("waiters×{}", s.waiters_flag)
            });
        }
        if let Some(h) = &s.handoff {
            flags.push(match h.set_by {
                Some(t) => format!("handoff(by {})", self.name(t)),
                None => "handoff(inherited)".to_string(),
            });
        }
        if s.nonspinnable {
            flags.push("nonspinnable".to_string());
        }
        if !s.spinners.is_empty() {
            flags.push(format!(
                "spinners {}",
                s.spinners
                    .iter()
                    .map(|t| self.name(*t))
                    .collect::<Vec<_>>()
                    .join(",")
            ));
        }
        format!(
            "{holders}; queue {}; flags {}",
            queue.join(" "),
            flags.join(" ")
        )
        .replace("queue ;", "queue;")
        .trim_end()
        .to_string()
    }

    /// Assert the lock's state (see [`Lab::state`]) and that the snapshot agrees with the raw
    /// accessors every report uses (`owner()`, `waiters()`, `is_contended()`).
    #[track_caller]
    pub fn check(&self, expect: &str) {
        assert_eq!(self.state(), expect, "lock state");
        let s = self.snapshot();
        assert_eq!(self.sem.owner(), s.writer, "owner() vs snapshot");
        let waiting: Vec<Tid> = s.waiting().map(|w| w.tid).collect();
        let waiters: Vec<Tid> = self.sem.waiters().iter().map(|w| w.tid).collect();
        assert_eq!(waiters, waiting, "waiters() vs snapshot");
        assert_eq!(self.sem.is_contended(), !waiting.is_empty(), "is_contended");
    }

    #[track_caller]
    pub fn blocked(&self, ts: &[Tid]) {
        for &t in ts {
            assert!(self.sim.is_blocked(t), "{} should sleep", self.name(t));
        }
    }

    #[track_caller]
    pub fn runnable(&self, ts: &[Tid]) {
        for &t in ts {
            assert!(
                self.sim.is_runnable(t),
                "{} should be runnable",
                self.name(t)
            );
        }
    }

    pub fn task(&self, t: Tid) -> &Arc<Task> {
        &self.tasks[&t]
    }

    /// SIGKILL from outside the emulation (the test thread).
    pub fn kill(&self, t: Tid) {
        send_sig(Signal::Kill, self.task(t));
    }

    /// A non-fatal signal.
    pub fn signal(&self, t: Tid) {
        send_sig(Signal::Other, self.task(t));
    }

    /// A wake-up for no reason (`wake_up_process` by some unrelated waker).
    pub fn spurious_wake(&self, t: Tid) {
        sched::wake_up_process(self.task(t));
    }

    /// Move the emulated clock (and jiffies) forward.
    pub fn advance_ms(&mut self, ms: u64) {
        self.sim.advance_time(ms * 1_000_000);
    }

    pub fn events(&self, t: Tid, ev: LockEvent) -> u64 {
        self.task(t).lock_events().get(ev)
    }

    /// Both trylocks fail and leave the count alone (AR7), probed from the test thread.
    #[track_caller]
    pub fn trylocks_fail(&self) {
        let c = self.sem.count();
        assert!(
            !self.sem.down_read_trylock(),
            "down_read_trylock succeeded in state {}",
            self.state()
        );
        assert!(
            !self.sem.down_write_trylock(),
            "down_write_trylock succeeded in state {}",
            self.state()
        );
        assert_eq!(self.sem.count(), c, "a failed trylock changed the count");
    }

    /// Run the rest with the seeded picker.
    pub fn run(&mut self) -> SimOutcome {
        let o = self.sim.run();
        self.new_log();
        o
    }

    /// The closing check: nobody holds, the queue is empty, every flag is clear, and
    /// `down_write_trylock` succeeds (then releases).
    #[track_caller]
    pub fn assert_closed(&self) {
        let s = self.snapshot();
        assert!(s.is_idle(), "lock not idle at the end: {}", self.state());
        assert_eq!(self.state(), "free; queue; flags");
        assert!(self.ctx.wit.is_empty(), "witness not empty");
        assert!(
            self.sem.down_write_trylock(),
            "down_write_trylock failed on an idle lock"
        );
        self.sem.up_write();
        assert_eq!(self.sem.count(), 0);
        assert_eq!(self.sem.stuck_diagnosis(), None);
    }

    /// Run every task to its end with the seeded picker, then the closing check.
    #[track_caller]
    pub fn run_to_completion(&mut self) {
        let o = self.run();
        if let SimOutcome::Deadlock(rep) = &o {
            panic!(
                "expected every task to finish:\n{rep}\nlock: {}",
                self.state()
            );
        }
        assert_eq!(o, SimOutcome::AllExited, "lock: {}", self.state());
        self.assert_closed();
    }
}

/// The deadlock report of `o`, or a panic.
#[track_caller]
pub fn expect_deadlock(o: SimOutcome) -> mm::sched::sim::DeadlockReport {
    match o {
        SimOutcome::Deadlock(rep) => rep,
        other => panic!("expected a deadlock, got {other:?}"),
    }
}

/// SplitMix64.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
