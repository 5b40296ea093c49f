//! An emulated machine and its life: boot → run → finish → one [`Verdict`].
//!
//! A [`Machine`] owns an executor ([`mm::sched::Executor`]: the sim or the threads executor)
//! and a [`Kernel`]: the frame pool, the OOM killer, the oom_reaper and watchdog kthreads, the
//! kernel log and the process list. Every front end (`oomlab run`, `oomlab scenario`, the
//! livelock-rate bench, the tests) boots a machine, starts its workload, lets it run with
//! [`Machine::run_workload`], and ends it with [`Machine::finish`], which stops the kthreads,
//! joins the executor, checks the emulator's invariants once and returns the verdict. Nothing
//! else decides how a machine ended.
//!
//! The two kinds of failure stay apart (ARCHITECTURE.md): the modelled kernel's (panic,
//! tasks that never exit, an outright deadlock) are verdicts; the emulator's own (frames not
//! conserved, frames or tasks left after everything exited) is [`Verdict::EmulatorBug`].

use crate::events::EventStream;
use crate::klog::KernelLog;
use crate::oom_kill::{Oom, OomConfig};
use crate::oom_reaper::{ReaperConfig, ReaperQueue};
use crate::watchdog::{Watchdog, WatchdogConfig};
use mm::memory::{attach_mm, mmput};
use mm::mm_types::{LockWait, MmKnobs, MmStruct};
use mm::page_alloc::{FrameAccounting, FramePool, OomKiller, PoolConfig, PoolError};
use mm::sched::{self, Executor, RunStop};
use mm::task::{state, CloneError, CloneKind, Task, TaskList, Tid};
use std::collections::HashSet;
use std::sync::Arc;

/// Everything configurable about an emulated machine: the kernel configuration of a run.
/// One copy per machine ([`Kernel::cfg`]); everything reads it from there.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MachineConfig {
    /// Physical memory, bytes.
    pub memory_bytes: u64,
    /// `mmap_lock` wait kinds and the rwsem model of every address space.
    pub knobs: MmKnobs,
    /// OOM sysctls and the abort rule.
    pub oom: OomConfig,
    /// The oom_reaper kthread runs (`--reaper on|off`).
    pub reaper_on: bool,
    /// The oom_reaper's settings (kept while it is off, so that knobs compose in any order).
    pub reaper: ReaperConfig,
    /// `None` = no watchdog kthread (rule tests that watch a livelock themselves).
    pub watchdog: Option<WatchdogConfig>,
    /// Emulated CPU time of one direct-reclaim round, ns (sets how fast emulated time runs
    /// while allocators loop).
    pub reclaim_cost_ns: u64,
    /// Poison freed frames and check them on reuse.
    pub poison: bool,
}

impl MachineConfig {
    /// Defaults for a sim-executor machine of `memory_bytes`: killable mmap/munmap write
    /// waits (v4.7, the RFC merged), uninterruptible fault read waits (before v6.5), Model A,
    /// the oom_reaper on with the kernel's constants, the kernel's sysctl defaults, and the
    /// emulated 30 s livelock window.
    pub fn sim(memory_bytes: u64) -> Self {
        MachineConfig {
            memory_bytes,
            knobs: MmKnobs {
                write_lock: LockWait::Killable,
                ..MmKnobs::default()
            },
            oom: OomConfig::default(),
            reaper_on: true,
            reaper: ReaperConfig::default(),
            watchdog: Some(WatchdogConfig::sim()),
            reclaim_cost_ns: PoolConfig::default().reclaim_cost_ns,
            poison: false,
        }
    }

    /// Defaults for a threads-executor machine of `memory_bytes`: the wall-clock watchdog
    /// window (5 s).
    pub fn threads(memory_bytes: u64) -> Self {
        MachineConfig {
            watchdog: Some(WatchdogConfig::threads()),
            ..MachineConfig::sim(memory_bytes)
        }
    }

    /// The oom_reaper's settings when it runs.
    pub fn reaper(&self) -> Option<&ReaperConfig> {
        self.reaper_on.then_some(&self.reaper)
    }

    /// The livelock window, ns (0 without a watchdog).
    pub fn livelock_window_ns(&self) -> u64 {
        self.watchdog.as_ref().map_or(0, |w| w.window_ns)
    }

    /// The kernel configuration in one line, for reports.
    pub fn describe(&self) -> String {
        let reaper = match self.reaper() {
            Some(r) => format!(
                "on (delay {}ms, {} retries {}ms apart)",
                r.delay_ms, r.retries, r.interval_ms
            ),
            None => "off".into(),
        };
        format!(
            "write_lock={} read_lock={} rwsem={}{} reaper={} panic_on_oom={} \
             oom_kill_allocating_task={} oom_dump_tasks={} victim_gone_rule={} livelock_window={}",
            self.knobs.write_lock.name(),
            self.knobs.read_lock.name(),
            self.knobs.rwsem_model.name(),
            if self.knobs.rwsem_spin == mm::locking::rwsem::RwSemSpin::On {
                " (spin on)"
            } else {
                ""
            },
            reaper,
            self.oom.panic_on_oom,
            u8::from(self.oom.oom_kill_allocating_task),
            u8::from(self.oom.oom_dump_tasks),
            self.oom.victim_gone_rule.name(),
            secs(self.livelock_window_ns()),
        )
    }
}

/// `ns` as seconds, as short as exact: 5s, 0.25s, 1.5s.
pub fn secs(ns: u64) -> String {
    let s = format!("{:.3}", ns as f64 / 1e9);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}s")
}

/// The emulated kernel of a machine: what its tasks reach. `Send + Sync`; shared by the
/// machine's owner, its tasks and anything that watches the run (a metrics publisher).
pub struct Kernel {
    /// The kernel configuration (the one copy).
    pub cfg: MachineConfig,
    pub pool: Arc<FramePool>,
    pub log: Arc<KernelLog>,
    pub oom: Arc<Oom>,
    pub reaper: Option<Arc<ReaperQueue>>,
    pub watchdog: Option<Arc<Watchdog>>,
    pub tasks: Arc<TaskList>,
    /// Rare events (OOM kills, reap results, livelocks, kill → reclaim) for a watcher outside
    /// the machine ([`EventStream::subscribe`]).
    pub events: Arc<EventStream>,
    kthreads: Vec<Arc<Task>>,
}

impl Kernel {
    /// A new, empty address space for process `tgid`, following the machine's knobs.
    pub fn new_mm(&self, tgid: u32) -> Arc<MmStruct> {
        MmStruct::new(&self.pool, self.cfg.knobs, &format!("pid {tgid}"))
    }

    /// `execve()` from inside a task: the current task gets a fresh address space (its
    /// own reference; the creator's is dropped). Returns the mm.
    pub fn exec_new_mm(&self) -> Arc<MmStruct> {
        let mm = self.new_mm(sched::with_current(|t| t.tgid()));
        attach_mm(&mm);
        mmput(&mm);
        mm
    }

    /// The kthreads (oom_reaper, watchdog), not workload tasks.
    pub fn kthreads(&self) -> &[Arc<Task>] {
        &self.kthreads
    }

    /// `tid` is one of the kthreads.
    pub fn is_kthread(&self, tid: Tid) -> bool {
        self.kthreads.iter().any(|t| t.tid() == tid)
    }

    /// Every task that is not a kthread has exited.
    pub fn workload_exited(&self) -> bool {
        self.tasks.tasks().iter().all(|t| self.is_kthread(t.tid()))
    }

    /// Stop the kthreads (they exit at their next wake-up).
    pub fn stop_kthreads(&self) {
        if let Some(r) = &self.reaper {
            r.stop();
        }
        if let Some(w) = &self.watchdog {
            w.stop();
        }
    }

    /// The kthreads that have not exited yet.
    pub fn kthreads_alive(&self) -> usize {
        self.kthreads.iter().filter(|t| !t.has_exited()).count()
    }

    /// The emulated panic message, once the modelled kernel panicked.
    pub fn panicked(&self) -> Option<String> {
        self.oom.panicked()
    }

    /// The address spaces whose `mmap_lock` cannot make progress, each once, with why
    /// ([`mm::locking::rwsem::RawRwSem::stuck_diagnosis`]): those of `tasks` (the tasks left)
    /// and of every OOM victim. Meaningful once the machine is at rest.
    pub fn stuck_locks(&self, tasks: &[Arc<Task>]) -> Vec<(Arc<MmStruct>, String)> {
        let mut seen = HashSet::new();
        tasks
            .iter()
            .filter_map(|t| t.mm())
            .chain(self.oom.victims().into_iter().map(|v| v.mm))
            .filter(|mm| seen.insert(mm.id()))
            .filter_map(|mm| {
                let why = mm.mmap_lock.raw().stuck_diagnosis()?;
                Some((mm, why))
            })
            .collect()
    }

    /// Kill → reclaim time of every OOM-killed victim whose memory came back, ns of the
    /// executor's clock, in kill order: from the kill to the earlier of a successful reap and
    /// the teardown of its address space ([`crate::oom_kill::Victim::kill_to_reclaim_ns`]).
    /// Victims still pending (or only skipped) are left out.
    pub fn kill_to_reclaim_ns(&self) -> Vec<u64> {
        self.oom
            .victim_records()
            .0
            .iter()
            .filter_map(|r| r.kill_to_reclaim_ns)
            .collect()
    }

    /// Frame conservation holds and, once every task exited, nothing is left allocated or
    /// mapped and no task is listed. `Err` = an emulator bug.
    fn check_invariants(&self, all_exited: bool) -> Result<(), String> {
        self.pool.check_conservation()?;
        if all_exited {
            let a = self.pool.accounting();
            if a.allocated + a.mapped != 0 {
                return Err(format!(
                    "{} frames still allocated or mapped after every task exited ({a})",
                    a.allocated + a.mapped
                ));
            }
            let left = self.tasks.nr_tasks();
            if left != 0 {
                return Err(format!("{left} tasks still listed after every task exited"));
            }
        }
        Ok(())
    }
}

impl Drop for Kernel {
    /// Break the pool ↔ OOM-killer reference cycle so that the frame pool's mapping is
    /// returned to the host when the machine goes (many trials run in one process).
    fn drop(&mut self) {
        self.pool.clear_oom_killer();
    }
}

/// How the workload phase of a machine's life ended ([`Machine::run_workload`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WorkloadEnd {
    /// The caller's condition held (the workload is done, or was stopped and wound down).
    Done,
    /// The modelled kernel panicked.
    Panicked,
    /// The time bound passed with tasks left.
    TimeLimit,
    /// Sim: nothing runnable and no timer pending.
    Deadlock,
}

/// How a machine's life ended: one verdict for every front end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The workload ran its course, every task exited, the invariants held.
    Completed,
    /// The modelled kernel panicked (`panic_on_oom`, or nothing left to kill).
    Panicked { message: String },
    /// The time bound passed with tasks left that could not exit.
    TimeLimit,
    /// The modelled kernel deadlocked outright: no task runnable, no timer pending (sim).
    Deadlock,
    /// A signal (SIGINT, SIGTERM, SIGHUP) ended the run early; it was wound down and
    /// checked as far as the tasks left allow.
    Interrupted { signal: i32 },
    /// The emulator's own bookkeeping broke: a bug (the report names the seed).
    EmulatorBug { what: String },
}

impl Verdict {
    /// The name used in reports and JSON (`ending`).
    pub fn name(&self) -> &'static str {
        match self {
            Verdict::Completed => "completed",
            Verdict::Panicked { .. } => "panicked",
            Verdict::TimeLimit => "time-limit",
            Verdict::Deadlock => "deadlock",
            Verdict::Interrupted { .. } => "interrupted",
            Verdict::EmulatorBug { .. } => "emulator-bug",
        }
    }
}

/// How far the end-of-run invariant checks could go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Checks {
    /// Conservation held, nothing was left allocated, every task exited.
    Full,
    /// Tasks were left, but the machine was at rest (sim): conservation held; leaks are not
    /// meaningful while tasks still own memory.
    ConservationOnly,
    /// Not meaningful: tasks are still running on the threads executor.
    NotChecked(&'static str),
}

/// A machine at the end of its life: the verdict and what the report needs.
pub struct Finished {
    pub verdict: Verdict,
    pub checks: Checks,
    /// The executor's clock when the workload phase ended, ns.
    pub workload_end_ns: u64,
    /// The executor's clock when the machine was finished (kthreads stopped), ns.
    pub end_ns: u64,
    /// Tasks left at the end, sysrq-t style ([`task_line`]); empty when completed.
    pub tasks_left: Vec<String>,
    /// `mmap_lock`s that cannot make progress, with why ([`Kernel::stuck_locks`]); only
    /// when tasks were left.
    pub stuck_locks: Vec<(Arc<MmStruct>, String)>,
    /// The frames at the end.
    pub frames: FrameAccounting,
    /// Frames still allocated or mapped, when every task exited (0 unless it is a bug).
    pub frames_leaked: Option<u64>,
    /// The executor that ran it (`sim` | `threads`) and whether its runs replay by seed.
    pub executor: &'static str,
    pub deterministic: bool,
    /// The kernel, for its counters and log.
    pub kernel: Arc<Kernel>,
}

/// One line per task: `comm[tgid/tid] state in wchan, SIGKILL pending` (sysrq-t).
pub fn task_line(t: &Task) -> String {
    format!(
        "{}[{}/{}] {}{}{}",
        t.comm(),
        t.tgid(),
        t.tid(),
        state::name(t.state()),
        t.wchan().map_or(String::new(), |w| format!(" in {w}")),
        if t.fatal_signal_pending() {
            ", SIGKILL pending"
        } else {
            ""
        }
    )
}

/// An emulated machine on executor `E`.
pub struct Machine<E: Executor> {
    exec: E,
    kernel: Arc<Kernel>,
}

impl<E: Executor> Machine<E> {
    /// Boot: create the pool, install the OOM killer, start the oom_reaper (if configured)
    /// and the watchdog (if configured) kthreads, in that order (they get the first pids).
    pub fn boot(mut exec: E, cfg: MachineConfig) -> Result<Self, PoolError> {
        let pool = FramePool::new(PoolConfig {
            bytes: cfg.memory_bytes,
            poison: cfg.poison,
            reclaim_cost_ns: cfg.reclaim_cost_ns,
        })?;
        let tasks = exec.tasks().clone();
        let log = Arc::new(KernelLog::default());
        let events = Arc::new(EventStream::default());
        let reaper = cfg
            .reaper()
            .map(|rc| ReaperQueue::new(rc.clone(), log.clone(), events.clone()));
        let oom = Oom::new(
            cfg.oom.clone(),
            tasks.clone(),
            pool.clone(),
            log.clone(),
            reaper.clone(),
            events.clone(),
        );
        pool.set_oom_killer(oom.clone() as Arc<dyn OomKiller>);
        let watchdog = cfg
            .watchdog
            .clone()
            .map(|wc| Watchdog::new(wc, oom.clone()));
        let mut kthreads = Vec::new();
        if let Some(r) = &reaper {
            let r = r.clone();
            kthreads.push(
                exec.spawn_task(kthread("oom_reaper"), Box::new(move || r.run()))
                    .expect("spawning oom_reaper"),
            );
        }
        if let Some(w) = &watchdog {
            let w = w.clone();
            kthreads.push(
                exec.spawn_task(kthread("oomlab_watchdog"), Box::new(move || w.run()))
                    .expect("spawning the watchdog"),
            );
        }
        let kernel = Arc::new(Kernel {
            cfg,
            pool,
            log,
            oom,
            reaper,
            watchdog,
            tasks,
            events,
            kthreads,
        });
        Ok(Machine { exec, kernel })
    }

    /// The kernel (shared with the tasks).
    pub fn kernel(&self) -> &Arc<Kernel> {
        &self.kernel
    }

    /// The executor, e.g. to step a sim by hand.
    pub fn exec(&mut self) -> &mut E {
        &mut self.exec
    }

    /// The executor's clock, ns.
    pub fn now_ns(&self) -> u64 {
        self.exec.now_ns()
    }

    /// The executor's clock for a host thread that watches the run.
    pub fn clock(&self) -> mm::sched::Clock {
        self.exec.clock()
    }

    /// Start a task from outside the machine.
    pub fn spawn(
        &mut self,
        kind: CloneKind,
        f: impl FnOnce() + Send + 'static,
    ) -> Result<Arc<Task>, CloneError> {
        self.exec.spawn_task(kind, Box::new(f))
    }

    /// Start process `comm` with `oom_score_adj` = `adj` and a fresh address space (created
    /// by the task itself, `execve()`); `body` runs with it attached.
    pub fn spawn_process(
        &mut self,
        comm: &str,
        adj: i32,
        body: impl FnOnce(Arc<MmStruct>) + Send + 'static,
    ) -> Arc<Task> {
        let k = self.kernel.clone();
        self.spawn(
            CloneKind::Process {
                comm: comm.to_string(),
            },
            move || {
                sched::with_current(|t| t.group().set_oom_score_adj(adj));
                let mm = k.exec_new_mm();
                drop(k);
                body(mm);
            },
        )
        .expect("spawning a process")
    }

    /// Let the machine run until `done(kernel)` holds, the modelled kernel panics, or the
    /// executor's clock passes `deadline_ns` (the sim's own time bound applies too).
    pub fn run_workload(
        &mut self,
        deadline_ns: u64,
        mut done: impl FnMut(&Kernel) -> bool,
    ) -> WorkloadEnd {
        let k = self.kernel.clone();
        let stop = self
            .exec
            .run_until(deadline_ns, &mut || k.panicked().is_some() || done(&k));
        if self.kernel.panicked().is_some() {
            return WorkloadEnd::Panicked;
        }
        match stop {
            RunStop::Reached | RunStop::AllExited => WorkloadEnd::Done,
            RunStop::Deadline => WorkloadEnd::TimeLimit,
            RunStop::Deadlock(_) => WorkloadEnd::Deadlock,
        }
    }

    /// End the machine's life after a workload phase that ended with `end`.
    ///
    /// `Done`: stop the kthreads and let them exit (within `kthread_bound_ns` of executor
    /// time), join the executor, then check frame conservation, that nothing is left
    /// allocated or mapped, and that no task is listed. Otherwise, or if the kthreads do not
    /// exit: list the tasks left and the locks that cannot make progress, check conservation
    /// if the machine is at rest (sim), and abandon the executor.
    pub fn finish(mut self, end: WorkloadEnd, kthread_bound_ns: u64) -> Finished {
        let workload_end_ns = self.exec.now_ns();
        let k = self.kernel.clone();
        let mut verdict = match end {
            WorkloadEnd::Done => Verdict::Completed,
            WorkloadEnd::Panicked => Verdict::Panicked {
                message: k.panicked().unwrap_or_default(),
            },
            WorkloadEnd::TimeLimit => Verdict::TimeLimit,
            WorkloadEnd::Deadlock => Verdict::Deadlock,
        };
        let mut all_exited = false;
        if verdict == Verdict::Completed {
            k.stop_kthreads();
            let deadline = workload_end_ns.saturating_add(kthread_bound_ns);
            match self.exec.run_until(deadline, &mut || false) {
                RunStop::AllExited => all_exited = true,
                // The workload exited but the kthreads did not stop.
                RunStop::Deadlock(_) => verdict = Verdict::Deadlock,
                RunStop::Deadline | RunStop::Reached => verdict = Verdict::TimeLimit,
            }
        }
        let tasks = k.tasks.tasks();
        let tasks_left: Vec<String> = if all_exited {
            Vec::new()
        } else {
            tasks.iter().map(|t| task_line(t)).collect()
        };
        let stuck_locks = if all_exited {
            Vec::new()
        } else {
            k.stuck_locks(&tasks)
        };
        drop(tasks);
        let executor = self.exec.name();
        let deterministic = self.exec.is_deterministic();
        let end_ns = self.exec.now_ns();
        // Invariants: only at rest (every task exited, or a sim between two steps).
        let checks = if all_exited {
            self.exec.join();
            Checks::Full
        } else if deterministic {
            self.exec.abandon();
            Checks::ConservationOnly
        } else {
            self.exec.abandon();
            Checks::NotChecked("tasks are still running")
        };
        if !matches!(checks, Checks::NotChecked(_)) {
            if let Err(what) = k.check_invariants(all_exited) {
                verdict = Verdict::EmulatorBug { what };
            }
        }
        let frames = k.pool.accounting();
        if !all_exited && deterministic {
            // The abandoned sim tasks' stacks are never unwound (`Sim`'s Drop), so what they
            // hold (this kernel and its pool) stays allocated: give the frames' host memory
            // back now, as the bench runs many trials in one process.
            k.pool.discard_frames();
        }
        Finished {
            frames_leaked: all_exited.then_some(frames.allocated + frames.mapped),
            verdict,
            checks,
            workload_end_ns,
            end_ns,
            tasks_left,
            stuck_locks,
            frames,
            executor,
            deterministic,
            kernel: k,
        }
    }
}

fn kthread(name: &str) -> CloneKind {
    CloneKind::Process {
        comm: name.to_string(),
    }
}
