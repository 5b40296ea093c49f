//! An emulated machine: physical memory, the OOM killer, the oom_reaper kthread, the kernel
//! log and the livelock watchdog, booted on one executor.

use mm::mm_types::{MmKnobs, MmStruct};
use mm::page_alloc::{FramePool, OomKiller, PoolConfig, PoolError};
use mm::sched::sim::Sim;
use mm::task::{CloneKind, Task, TaskList};
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
        let pool = FramePool::new(PoolConfig {
            bytes: cfg.memory_bytes,
            poison: cfg.poison,
            check_host: cfg.check_host,
            ..PoolConfig::default()
        })?;
        let log = Arc::new(KernelLog::default());
        let tasks = sim.tasks().clone();
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
                sim.spawn(kthread("oom_reaper"), move || r.run())
                    .expect("spawning oom_reaper"),
            );
        }
        let w = watchdog.clone();
        kthreads.push(
            sim.spawn(kthread("oomlab_watchdog"), move || w.run())
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
