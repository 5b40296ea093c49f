//! The reaper crate's tests boot a real [`reaper::machine::Machine`] on a seeded `Sim` and end
//! it with [`reaper::machine::Machine::finish`] (the one lifecycle), through a small view that
//! adds what the rule tests share: process set-up, run-until-or-fail, log greps.
#![allow(dead_code)]

use mm::gfp::Gfp;
use mm::memory::{attach_mm, mmput, touch};
use mm::mm_types::{MmKnobs, MmStruct};
use mm::mmap::{mmap, MAP_ANONYMOUS, MAP_LOCKED, MAP_PRIVATE, MAP_SHARED, PROT_READ, PROT_WRITE};
use mm::page_alloc::OomControl;
use mm::pgtable::PAGE_SIZE;
use mm::sched::sim::{Sim, SimConfig, SimOutcome};
use mm::sched::{self};
use mm::task::{CloneKind, Task};
use parking_lot::Mutex;
use reaper::machine::{Checks, Kernel, MachineConfig, Verdict, WorkloadEnd};
use reaper::oom_kill::OomConfig;
use reaper::oom_reaper::{ReaperConfig, ReaperQueue};
use reaper::watchdog::{Watchdog, WatchdogConfig};
use std::cell::{RefCell, RefMut};
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

pub const MIB: u64 = 1 << 20;
pub const MS: u64 = 1_000_000;
pub const SEC: u64 = 1_000_000_000;

/// What to boot.
#[derive(Clone, Debug)]
pub struct Boot {
    pub memory_bytes: u64,
    pub knobs: MmKnobs,
    pub oom: OomConfig,
    /// `None`: no oom_reaper (R0).
    pub reaper: Option<ReaperConfig>,
    /// `None`: no watchdog kthread.
    pub watchdog: Option<WatchdogConfig>,
    /// Emulated cost of one direct-reclaim round; 1 ms keeps looping allocators cheap to
    /// simulate over long windows.
    pub reclaim_cost_ns: u64,
    pub seed: u64,
}

impl Default for Boot {
    fn default() -> Self {
        Boot {
            memory_bytes: 16 * MIB,
            knobs: MmKnobs::default(),
            oom: OomConfig::default(),
            reaper: Some(ReaperConfig::default()),
            watchdog: None,
            reclaim_cost_ns: MS,
            seed: 1,
        }
    }
}

/// A booted machine on a seeded sim: the kernel (through `Deref`) and the lifecycle.
pub struct Machine {
    kernel: Arc<Kernel>,
    inner: RefCell<Option<reaper::machine::Machine<Sim>>>,
}

impl std::ops::Deref for Machine {
    type Target = Kernel;
    fn deref(&self) -> &Kernel {
        &self.kernel
    }
}

/// A new sim and a machine booted on it (kthreads get the first pids).
pub fn boot(b: Boot) -> Machine {
    let sim = Sim::new(SimConfig {
        seed: b.seed,
        ..SimConfig::default()
    });
    let cfg = MachineConfig {
        memory_bytes: b.memory_bytes,
        knobs: b.knobs,
        oom: b.oom,
        reaper_on: b.reaper.is_some(),
        reaper: b.reaper.unwrap_or_default(),
        watchdog: b.watchdog,
        reclaim_cost_ns: b.reclaim_cost_ns,
        poison: false,
    };
    let m = reaper::machine::Machine::boot(sim, cfg).expect("frame pool");
    Machine {
        kernel: m.kernel().clone(),
        inner: RefCell::new(Some(m)),
    }
}

/// `GFP_KERNEL`, order 0: what an ordinary allocation hands `out_of_memory()`.
pub fn oc_kernel() -> OomControl {
    OomControl {
        gfp: Gfp::GFP_KERNEL,
        order: 0,
    }
}

pub fn load(a: &std::sync::atomic::AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

impl Machine {
    /// The sim, to step or inspect it by hand.
    pub fn sim(&self) -> RefMut<'_, Sim> {
        RefMut::map(self.inner.borrow_mut(), |m| {
            m.as_mut().expect("machine finished").exec()
        })
    }
    /// Kernel log texts (without timestamps).
    pub fn lines(&self) -> Vec<String> {
        self.log.lines().into_iter().map(|l| l.text).collect()
    }
    /// Lines containing `pat`.
    pub fn grep(&self, pat: &str) -> Vec<String> {
        self.log.grep(pat).into_iter().map(|l| l.text).collect()
    }
    /// The whole log as dmesg prints it, for assertion messages.
    pub fn dmesg(&self) -> String {
        self.log.lines().iter().map(|l| format!("{l}\n")).collect()
    }
    pub fn oom_kills(&self) -> u64 {
        load(&self.oom.stats().oom_kill)
    }
    pub fn reaper(&self) -> &Arc<ReaperQueue> {
        self.kernel.reaper.as_ref().expect("booted with a reaper")
    }
    pub fn watchdog(&self) -> &Arc<Watchdog> {
        self.kernel
            .watchdog
            .as_ref()
            .expect("booted with a watchdog")
    }
    /// Pids of the kthreads.
    pub fn kthread_tids(&self) -> Vec<u32> {
        self.kernel.kthreads().iter().map(|t| t.tid()).collect()
    }

    /// Start process `comm` with a fresh address space named after its pid and
    /// `oom_score_adj` = `adj`; `body` runs with the address space attached. Returns the task
    /// and the address space.
    pub fn process(
        &self,
        comm: &str,
        adj: i32,
        body: impl FnOnce(Arc<MmStruct>) + Send + 'static,
    ) -> (Arc<Task>, Arc<MmStruct>) {
        let slot: Arc<OnceLock<Arc<MmStruct>>> = Arc::new(OnceLock::new());
        let s2 = slot.clone();
        let t = self.kernel_task(comm, move || {
            sched::with_current(|t| t.group().set_oom_score_adj(adj));
            let mm = s2.get().expect("mm set before the first step").clone();
            // exec: the task's reference replaces the creator's.
            attach_mm(&mm);
            mmput(&mm);
            body(mm);
        });
        let mm = self.kernel.new_mm(t.tgid());
        assert!(slot.set(mm.clone()).is_ok(), "fresh slot");
        (t, mm)
    }

    /// Start a process `comm` without an address space (a driver, like a kthread).
    pub fn kernel_task(&self, comm: &str, body: impl FnOnce() + Send + 'static) -> Arc<Task> {
        self.inner
            .borrow_mut()
            .as_mut()
            .expect("machine finished")
            .spawn(
                CloneKind::Process {
                    comm: comm.to_string(),
                },
                body,
            )
            .expect("spawning a task")
    }

    /// Run `f` in a new mm-less task `comm` and the sim until that task exited; returns what
    /// `f` returned. Other tasks run meanwhile; `f` itself is atomic unless it sleeps.
    pub fn run_in_task<R: Send + 'static>(
        &self,
        comm: &str,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> R {
        let out: Arc<Mutex<Option<R>>> = Arc::new(Mutex::new(None));
        let o2 = out.clone();
        let t = self.kernel_task(comm, move || {
            *o2.lock() = Some(f());
        });
        let tid = t.tid();
        self.run_until(&format!("task {comm} finished"), |s| s.has_exited(tid));
        let v = out.lock().take().expect("result");
        v
    }

    /// Run until every task that is not a kthread exited, then end the machine's life with
    /// the one lifecycle ([`reaper::machine::Machine::finish`]): the kthreads stop, the
    /// invariants are checked (frame conservation, nothing left allocated, no task left).
    pub fn finish(&self) {
        let k = self.kernel.clone();
        self.run_until("the workload exited", |_| k.workload_exited());
        let m = self
            .inner
            .borrow_mut()
            .take()
            .expect("machine finished twice");
        let f = m.finish(WorkloadEnd::Done, u64::MAX);
        assert_eq!(
            (f.verdict.clone(), f.checks.clone()),
            (Verdict::Completed, Checks::Full),
            "tasks left: {:?}\n{}",
            f.tasks_left,
            self.dmesg()
        );
        assert_eq!(f.frames_leaked, Some(0));
    }

    /// Stop the run where it is: drop the sim (its tasks are left asleep; their stacks go).
    pub fn abandon(&self) {
        drop(self.inner.borrow_mut().take());
    }

    /// Frame conservation holds and no frame is left allocated or mapped.
    pub fn check_frames(&self) {
        self.pool.check_conservation().unwrap();
        let a = self.pool.accounting();
        assert_eq!(a.allocated + a.mapped, 0, "frames leaked: {a}");
    }

    /// Run until `pred` holds (or fail with the log).
    pub fn run_until(&self, what: &str, mut pred: impl FnMut(&Sim) -> bool) {
        let mut sim = self.sim();
        let r = sim.run_until(|s| pred(s));
        let (now, report) = (sim.now_ns(), sim.deadlock_report());
        drop(sim);
        assert_eq!(
            r,
            SimOutcome::Stopped,
            "never reached: {what} (at {now} ns)\n{report}\n{}",
            self.dmesg()
        );
    }
}

/// Map `pages` anonymous pages (private unless `MAP_SHARED` is in `flags`; `MAP_LOCKED`
/// mlocks them), touch each for write, and fold the task's rss cache into the mm so that
/// `oom_badness` sees it. Returns the start address.
pub fn populate(mm: &MmStruct, pages: u64, flags: u32) -> u64 {
    let share = if flags & MAP_SHARED != 0 {
        MAP_SHARED
    } else {
        MAP_PRIVATE
    };
    let addr = mmap(
        mm,
        0,
        pages * PAGE_SIZE,
        PROT_READ | PROT_WRITE,
        MAP_ANONYMOUS | share | (flags & MAP_LOCKED),
    )
    .expect("mmap");
    for i in 0..pages {
        touch(mm, addr + i * PAGE_SIZE, true, 0x5a).expect("touch");
    }
    sched::with_current(|t| t.sync_mm_rss());
    addr
}

/// Sleep interruptibly until SIGKILL arrives (`pause()`); then the task exits.
pub fn pause() {
    while !sched::fatal_signal_pending() {
        sched::schedule_timeout_interruptible(sched::msecs_to_jiffies(1000));
    }
}

/// Sleep `ms` in TASK_UNINTERRUPTIBLE (a task SIGKILL cannot reach, e.g. stuck on I/O).
pub fn sleep_uninterruptible(ms: u64) {
    let mut left = sched::msecs_to_jiffies(ms);
    while left > 0 {
        left = sched::schedule_timeout_uninterruptible(left);
    }
}

/// Sleep `ms` in TASK_KILLABLE.
pub fn sleep_killable(ms: u64) {
    sched::schedule_timeout_killable(sched::msecs_to_jiffies(ms));
}

/// Sleep `ms` interruptibly.
pub fn sleep_ms(ms: u64) {
    sched::schedule_timeout_interruptible(sched::msecs_to_jiffies(ms));
}

/// `clone(CLONE_VM)` without `CLONE_THREAD` from inside a process: a new process `comm`
/// sharing the caller's address space.
pub fn clone_vm(comm: &str, body: impl FnOnce(Arc<MmStruct>) + Send + 'static) -> Arc<Task> {
    let mm = sched::with_current(|t| t.mm()).expect("a user process");
    mm.mmget();
    sched::spawn(
        CloneKind::Process {
            comm: comm.to_string(),
        },
        move || {
            attach_mm(&mm);
            mmput(&mm);
            body(mm);
        },
    )
    .expect("clone(CLONE_VM)")
}

/// `clone(CLONE_THREAD | CLONE_VM)`: a new thread of the caller's process.
pub fn clone_thread(body: impl FnOnce(Arc<MmStruct>) + Send + 'static) -> Arc<Task> {
    let tgid = sched::with_current(|t| t.tgid());
    sched::spawn(CloneKind::Thread { tgid }, move || {
        let mm = sched::with_current(|t| t.mm()).expect("CLONE_VM thread");
        body(mm);
    })
    .expect("clone(CLONE_THREAD)")
}

/// A counter of processes that finished their set-up.
#[derive(Clone, Default)]
pub struct Ready(Arc<std::sync::atomic::AtomicUsize>);
impl Ready {
    pub fn done(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}
