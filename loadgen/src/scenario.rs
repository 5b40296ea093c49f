//! OOM scenarios on the sim executor (`oomlab scenario`).
//!
//! A scenario only sets up processes and their actions (map, touch, munmap, remote reads,
//! sleeps); which tasks die, whether the reaper succeeds and whether the machine livelocks
//! emerge from the model under the configuration given. Scenarios are files
//! ([`crate::scenario_file`]: the canonical ones are embedded from `scenarios/*.toml`, users
//! pass their own with `--file`); tests may still set a machine up in Rust ([`Setup::Rust`]).
//!
//! The runner boots a machine on a seeded sim, runs the scenario until every workload task
//! has exited or idles in `pause()` with no kill pending (a survivor: listed, then sent
//! away), the machine panicked, or the emulated time limit passed, stops the kthreads, checks
//! the emulator's invariants (frame conservation; nothing left allocated once everything
//! exited) and reports.

use crate::report::{Report, Workload};
use crate::scenario_file::{interp, ScenarioFile};
use crate::user::Step;
use mm::mm_types::MmStruct;
use mm::page_alloc::PoolError;
use mm::sched::sim::{Sim, SimConfig};
use mm::task::Task;
use reaper::machine::{Kernel, Machine, MachineConfig, WorkloadEnd};
use std::sync::Arc;

/// A scenario's configuration: the machine's kernel configuration, the seed and the emulated
/// time limit.
#[derive(Clone, Debug)]
pub struct ScenarioConfig {
    pub machine: MachineConfig,
    pub seed: u64,
    /// The trial ends at this emulated time even if tasks remain (reported as `time-limit`).
    pub max_time_ns: u64,
}

impl ScenarioConfig {
    pub fn new(memory_bytes: u64) -> Self {
        ScenarioConfig {
            machine: MachineConfig::sim(memory_bytes),
            seed: 0,
            max_time_ns: 600_000_000_000,
        }
    }
}

/// Setting up a scenario: spawn processes on the machine.
pub struct Ctx<'a> {
    machine: &'a mut Machine<Sim>,
    /// The machine's kernel (its frame pool, for kernel-side allocations).
    pub m: Arc<Kernel>,
}

/// A process body: runs with the process's address space attached; returning ends the task.
pub type Body = Box<dyn FnOnce(Arc<MmStruct>) -> Step + Send>;

impl Ctx<'_> {
    /// Start a process `comm` with a fresh address space and `oom_score_adj` = `adj`.
    pub fn process(
        &mut self,
        comm: &str,
        adj: i32,
        body: impl FnOnce(Arc<MmStruct>) -> Step + Send + 'static,
    ) -> Arc<Task> {
        self.machine.spawn_process(comm, adj, move |mm| {
            let _ = body(mm);
        })
    }
}

/// How a scenario sets its machine up.
#[derive(Clone)]
pub enum Setup {
    /// A scenario file (checked; see [`crate::scenario_file`]).
    File(Arc<ScenarioFile>),
    /// Rust code (tests that need a handle on the machine).
    Rust(fn(&mut Ctx)),
}

/// A scenario: a name, a line for `--list`, the memory it is designed for, and its set-up.
#[derive(Clone)]
pub struct Scenario {
    pub name: String,
    /// One line for `--list`.
    pub about: String,
    /// Physical memory the scenario is designed for.
    pub memory_bytes: u64,
    /// How the command line names it, for reports (`remote-reader`,
    /// `--file my/scenario.toml`).
    pub invocation: String,
    pub setup: Setup,
}

impl Scenario {
    /// A scenario file; `invocation` as [`Scenario::invocation`].
    pub fn from_file(file: ScenarioFile, invocation: String) -> Scenario {
        Scenario {
            name: file.name.clone(),
            about: file.about.clone(),
            memory_bytes: file.memory_bytes,
            invocation,
            setup: Setup::File(Arc::new(file)),
        }
    }

    /// A scenario set up by Rust code.
    pub fn rust(name: &str, about: &str, memory_bytes: u64, setup: fn(&mut Ctx)) -> Scenario {
        Scenario {
            name: name.to_string(),
            about: about.to_string(),
            memory_bytes,
            invocation: name.to_string(),
            setup: Setup::Rust(setup),
        }
    }

    /// The scenario file, if it is one.
    pub fn file(&self) -> Option<&Arc<ScenarioFile>> {
        match &self.setup {
            Setup::File(f) => Some(f),
            Setup::Rust(_) => None,
        }
    }

    /// Its configuration on a machine of `memory_bytes`: the sim defaults, then the file's
    /// `[kernel]` knobs and `time_limit`. (Knob flags of the command line go on top.)
    pub fn config_with_memory(&self, memory_bytes: u64) -> ScenarioConfig {
        let mut cfg = ScenarioConfig::new(memory_bytes);
        if let Some(f) = self.file() {
            for (k, v) in &f.kernel {
                // Checked when the file was read; knobs do not depend on each other.
                cfg.machine
                    .set_knob(k, v)
                    .expect("a knob value checked when the file was read");
            }
            if let Some(t) = f.time_limit_ns {
                cfg.max_time_ns = t;
            }
        }
        cfg
    }

    /// Its configuration on its own memory.
    pub fn config(&self) -> ScenarioConfig {
        self.config_with_memory(self.memory_bytes)
    }
}

/// A finished trial: its report, and what the scenario's runner noted (orderings of a file
/// that could no longer hold, pids that could not be given).
pub struct Trial {
    pub report: Report,
    pub notes: Vec<String>,
}

/// Run `sc` under `cfg`. Only a pool that cannot be created (the host check) is an error.
pub fn run(sc: &Scenario, cfg: &ScenarioConfig) -> Result<Report, PoolError> {
    run_trial(sc, cfg).map(|t| t.report)
}

/// Run `sc` under `cfg`, with the runner's notes.
pub fn run_trial(sc: &Scenario, cfg: &ScenarioConfig) -> Result<Trial, PoolError> {
    let sim = Sim::new(SimConfig {
        seed: cfg.seed,
        max_time_ns: cfg.max_time_ns,
        ..SimConfig::default()
    });
    let mut machine = Machine::boot(sim, cfg.machine.clone())?;
    let k = machine.kernel().clone();
    let mut ctx = Ctx {
        machine: &mut machine,
        m: k.clone(),
    };
    let runtime = match &sc.setup {
        Setup::File(f) => Some(interp::setup(f, &mut ctx)),
        Setup::Rust(setup) => {
            setup(&mut ctx);
            None
        }
    };
    // A survivor: a workload task idle in pause() with no kill pending. It waits for nothing
    // the machine can still deliver once every other workload task is gone.
    let survivor = |t: &Task| t.paused() && !t.fatal_signal_pending();
    // Every workload task exited (or, with `survivors_ok`, idles as a survivor).
    let workload_done = |k: &Kernel, survivors_ok: bool| {
        k.tasks
            .tasks()
            .iter()
            .all(|t| k.is_kthread(t.tid()) || (survivors_ok && survivor(t)))
    };
    let mut end = machine.run_workload(u64::MAX, |k| workload_done(k, true));
    let workload_end_ns = machine.now_ns();
    // The trial is over; the survivors are told to leave (a SIGKILL that is not an OOM kill)
    // so that their memory comes back and the invariants can be checked.
    let mut survivors: Vec<String> = Vec::new();
    if end == WorkloadEnd::Done {
        for t in k.tasks.tasks() {
            if !k.is_kthread(t.tid()) && survivor(&t) {
                survivors.push(format!("{}[{}/{}]", t.comm(), t.tgid(), t.tid()));
                mm::task::send_sig(mm::task::Signal::Kill, &t);
            }
        }
        if !survivors.is_empty() {
            machine.run_workload(u64::MAX, |k| workload_done(k, false));
            if !workload_done(&k, false) {
                end = WorkloadEnd::Deadlock;
            }
        }
    }
    drop(k);
    let mut finished = machine.finish(end, u64::MAX);
    finished.workload_end_ns = workload_end_ns;
    let report = Report::new(
        Workload::Scenario {
            name: sc.invocation.clone(),
            time_limit_ns: cfg.max_time_ns,
        },
        cfg.seed,
        finished,
        survivors,
        None,
    );
    Ok(Trial {
        report,
        notes: runtime.map_or(Vec::new(), |r| r.notes()),
    })
}
