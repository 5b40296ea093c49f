//! An emulated machine: physical memory, the OOM killer, the oom_reaper kthread, the kernel
//! log and the livelock watchdog, booted on one executor.

use mm::mm_types::MMF_TORN_DOWN;
use mm::mm_types::{MmKnobs, MmStruct};
use mm::page_alloc::{FramePool, OomKiller, PoolConfig, PoolError};
use mm::sched::sim::Sim;
use mm::sched::threads::ThreadsExecutor;
use mm::task::{CloneError, CloneKind, Task, TaskList};
use reaper::klog::KernelLog;
use reaper::oom_kill::{Oom, OomConfig};
use reaper::oom_reaper::{ReaperConfig, ReaperQueue};
use reaper::watchdog::{Watchdog, WatchdogConfig};
use std::sync::Arc;

/// Everything configurable about an emulated machine: the kernel configuration of a run.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MachineConfig {
    /// Physical memory, bytes.
    pub memory_bytes: u64,
    /// `mmap_lock` wait kinds and the rwsem model.
    pub knobs: MmKnobs,
    /// OOM sysctls and the abort rule.
    pub oom: OomConfig,
    /// `None` = no oom_reaper (`--reaper off`).
    pub reaper: Option<ReaperConfig>,
    pub watchdog: WatchdogConfig,
    /// Poison freed frames and check them on reuse.
    pub poison: bool,
    /// Refuse a pool larger than the host's available memory.
    pub check_host: bool,
}

impl MachineConfig {
    /// Defaults for a sim-executor machine of `memory_bytes`.
    pub fn sim(memory_bytes: u64) -> Self {
        MachineConfig {
            memory_bytes,
            knobs: MmKnobs::default(),
            oom: OomConfig::default(),
            reaper: Some(ReaperConfig::default()),
            watchdog: WatchdogConfig::sim(),
            poison: false,
            check_host: false,
        }
    }

    /// Defaults for a threads-executor machine of `memory_bytes`: the wall-clock watchdog
    /// window (5 s), and a pool that must fit in the host's available memory.
    pub fn threads(memory_bytes: u64) -> Self {
        MachineConfig {
            watchdog: WatchdogConfig::threads(),
            check_host: true,
            ..MachineConfig::sim(memory_bytes)
        }
    }
}

/// A booted machine.
pub struct Machine {
    pub cfg: MachineConfig,
    pub pool: Arc<FramePool>,
    pub log: Arc<KernelLog>,
    pub oom: Arc<Oom>,
    pub reaper: Option<Arc<ReaperQueue>>,
    pub watchdog: Arc<Watchdog>,
    pub tasks: Arc<TaskList>,
    kthreads: Vec<Arc<Task>>,
}

impl Machine {
    /// Boot on a sim executor: create the pool, install the OOM killer, start the oom_reaper
    /// (if configured) and the watchdog kthreads.
    pub fn boot_sim(sim: &mut Sim, cfg: MachineConfig) -> Result<Machine, PoolError> {
        let tasks = sim.tasks().clone();
        Self::boot(cfg, tasks, |kind, f| sim.spawn(kind, f))
    }

    /// Boot on a threads executor: as [`Machine::boot_sim`], the kthreads being OS threads.
    /// Use [`MachineConfig::threads`] for the wall-clock watchdog window.
    pub fn boot_threads(exec: &ThreadsExecutor, cfg: MachineConfig) -> Result<Machine, PoolError> {
        Self::boot(cfg, exec.tasks().clone(), |kind, f| exec.spawn(kind, f))
    }

    /// The executor-independent half of booting: `spawn` starts a kthread on the executor.
    fn boot(
        cfg: MachineConfig,
        tasks: Arc<TaskList>,
        mut spawn: impl FnMut(CloneKind, Box<dyn FnOnce() + Send>) -> Result<Arc<Task>, CloneError>,
    ) -> Result<Machine, PoolError> {
        let pool = FramePool::new(PoolConfig {
            bytes: cfg.memory_bytes,
            poison: cfg.poison,
            check_host: cfg.check_host,
            ..PoolConfig::default()
        })?;
        let log = Arc::new(KernelLog::default());
        let reaper = cfg
            .reaper
            .clone()
            .map(|rc| ReaperQueue::new(rc, log.clone()));
        let oom = Oom::new(
            cfg.oom.clone(),
            tasks.clone(),
            pool.clone(),
            log.clone(),
            reaper.clone(),
        );
        pool.set_oom_killer(oom.clone() as Arc<dyn OomKiller>);
        let watchdog = Watchdog::new(cfg.watchdog.clone(), oom.clone());
        let mut kthreads = Vec::new();
        if let Some(r) = &reaper {
            let r = r.clone();
            kthreads.push(
                spawn(kthread("oom_reaper"), Box::new(move || r.run()))
                    .expect("spawning oom_reaper"),
            );
        }
        let w = watchdog.clone();
        kthreads.push(
            spawn(kthread("oomlab_watchdog"), Box::new(move || w.run()))
                .expect("spawning the watchdog"),
        );
        Ok(Machine {
            cfg,
            pool,
            log,
            oom,
            reaper,
            watchdog,
            tasks,
            kthreads,
        })
    }

    /// The kthreads (not workload tasks).
    pub fn kthreads(&self) -> &[Arc<Task>] {
        &self.kthreads
    }

    /// Stop the kthreads (they exit at their next wake-up).
    pub fn stop_kthreads(&self) {
        if let Some(r) = &self.reaper {
            r.stop();
        }
        self.watchdog.stop();
    }

    /// The kthreads that have not exited yet.
    pub fn kthreads_alive(&self) -> usize {
        self.kthreads.iter().filter(|t| !t.has_exited()).count()
    }

    /// The address spaces whose `mmap_lock` cannot make progress, each once, with why
    /// ([`mm::locking::rwsem::RawRwSem::stuck_diagnosis`]): those of `tasks` (the tasks left) and of
    /// every OOM victim. Meaningful once the machine is at rest (the end of a run or trial).
    pub fn stuck_locks(&self, tasks: &[Arc<Task>]) -> Vec<(Arc<MmStruct>, String)> {
        let mut seen = std::collections::HashSet::new();
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
    /// executor's clock: from the kill to the earlier of a successful reap and the teardown
    /// of its address space. Victims still pending (or only skipped) are left out.
    pub fn kill_to_reclaim_ns(&self) -> Vec<u64> {
        let reap_times = self
            .reaper
            .as_ref()
            .map(|r| r.reap_times())
            .unwrap_or_default();
        self.oom
            .victims()
            .iter()
            .filter(|v| v.killed)
            .filter_map(|v| {
                let reaped = reap_times
                    .iter()
                    .filter(|(t, at)| *t == v.tgid && *at >= v.marked_ns)
                    .map(|(_, at)| *at)
                    .min();
                let torn =
                    v.mm.test_flag(MMF_TORN_DOWN)
                        .then(|| v.mm.torn_down_ns())
                        .flatten();
                let at = match (reaped, torn) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }?;
                Some(at.saturating_sub(v.marked_ns))
            })
            .collect()
    }

    /// A new, empty address space for process `tgid`.
    pub fn new_mm(&self, tgid: u32) -> Arc<MmStruct> {
        MmStruct::new(&self.pool, self.cfg.knobs, &format!("pid {tgid}"))
    }
}

fn kthread(name: &str) -> CloneKind {
    CloneKind::Process {
        comm: name.to_string(),
    }
}

impl Drop for Machine {
    /// Break the pool ↔ OOM-killer reference cycle so that the frame pool's mapping is
    /// returned to the host when the machine goes (many trials run in one process).
    fn drop(&mut self) {
        self.pool.clear_oom_killer();
    }
}
