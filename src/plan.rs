//! The command line, stage two: raw flags (cli.rs) checked and turned into plans that name
//! library types only: a machine configuration, a scenario with its trial configuration, a
//! load with its time bounds. Every error here is a usage error: one line, exit status 2.
//! The host is checked here too (a pool the host cannot hold is refused before anything
//! starts).

use crate::cli::{Executor, KernelArgs, RunArgs, ScenarioArgs};
use crate::host;
use loadgen::load::{LoadConfig, RunConfig};
use loadgen::scenario::{Scenario, ScenarioConfig};
use loadgen::scenarios;
use reaper::machine::MachineConfig;
use std::fmt;
use std::time::Duration;

/// A command line that parsed but cannot be run as asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for UsageError {}

/// `oomlab run`, validated.
#[derive(Clone, Debug)]
pub struct RunPlan {
    pub executor: Executor,
    pub run: RunConfig,
}

/// `oomlab scenario NAME`, validated.
pub struct ScenarioPlan {
    pub scenario: &'static Scenario,
    pub cfg: ScenarioConfig,
    pub json: bool,
}

/// What `oomlab scenario` was asked to do.
pub enum ScenarioCommand {
    List { json: bool },
    Run(ScenarioPlan),
}

const MS: u64 = 1_000_000;
const SEC: u64 = 1_000_000_000;

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Apply the kernel knobs given on the command line to a machine configuration (whose
/// defaults already suit its executor). The flags' values were validated by the knobs.
fn apply_kernel(k: &KernelArgs, m: &mut MachineConfig) -> Result<(), UsageError> {
    for (name, value) in &k.given {
        m.set_knob(name, value)
            .map_err(|e| UsageError(format!("--{name}: {e}")))?;
    }
    Ok(())
}

/// A frame pool of `bytes` can be built (large enough for its watermarks) and the host can
/// hold it (it is pre-faulted real memory, on either executor). The pool's own checks then
/// only fail for host reasons (a refused mapping: a runtime error, exit 1).
pub(crate) fn check_memory(bytes: u64) -> Result<(), UsageError> {
    let frames = bytes / mm::pgtable::PAGE_SIZE;
    let w = mm::page_alloc::compute_watermarks(frames);
    if w.high * 2 > frames {
        let min_bytes = (1..).map(|mib: u64| mib << 20).find(|b| {
            let f = b / mm::pgtable::PAGE_SIZE;
            mm::page_alloc::compute_watermarks(f).high * 2 <= f
        });
        return Err(UsageError(format!(
            "--memory {}: too small for the page allocator's watermarks (high {} pages); use at least {}",
            reaper::units::format_size(bytes),
            w.high,
            reaper::units::format_size(min_bytes.unwrap_or(4 << 20))
        )));
    }
    host::check_pool_fits(bytes)
}

/// Plan `oomlab run`.
///
/// Time: `--duration` bounds the whole run, wind-down included. The load stops a reserve
/// before the end (5% of the duration, between 50 ms and 3 s, at most half of it); the
/// supervisor then gives the wind-down that reserve plus two livelock windows (so that the
/// watchdog could still recover a stuck machine) before it gives up on the tasks left.
pub fn run(a: &RunArgs) -> Result<RunPlan, UsageError> {
    let mut machine = match a.executor {
        Executor::Threads => MachineConfig::threads(a.memory.0),
        Executor::Sim => MachineConfig::sim(a.memory.0),
    };
    apply_kernel(&a.kernel, &mut machine)?;
    check_memory(a.memory.0)?;
    let duration_ns = ns(a.duration);
    let reserve_ns = (duration_ns / 20)
        .clamp(50 * MS, 3 * SEC)
        .min(duration_ns / 2);
    let load_end_ns = duration_ns - reserve_ns;
    let drain_ns = reserve_ns.saturating_add(machine.livelock_window_ns().saturating_mul(2));
    let load = LoadConfig::new(a.threads, a.seed, load_end_ns, drain_ns);
    Ok(RunPlan {
        executor: a.executor,
        run: RunConfig {
            machine,
            load,
            seed: a.seed,
            duration_ns,
        },
    })
}

/// Plan `oomlab scenario`.
pub fn scenario(a: &ScenarioArgs) -> Result<ScenarioCommand, UsageError> {
    if a.list {
        return Ok(ScenarioCommand::List { json: a.json });
    }
    let name = a.name.as_deref().unwrap_or_default();
    let Some(sc) = scenarios::find(name) else {
        let known: Vec<&str> = scenarios::all().iter().map(|s| s.name).collect();
        return Err(UsageError(format!(
            "unknown scenario '{name}' (known: {}; see 'oomlab scenario --list')",
            known.join(", ")
        )));
    };
    let memory = a.memory.map_or(sc.memory_bytes, |b| b.0);
    let mut cfg = ScenarioConfig::new(memory);
    apply_kernel(&a.kernel, &mut cfg.machine)?;
    check_memory(memory)?;
    cfg.seed = a.seed;
    cfg.max_time_ns = ns(a.time_limit);
    Ok(ScenarioCommand::Run(ScenarioPlan {
        scenario: sc,
        cfg,
        json: a.json,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;
    use mm::locking::rwsem::RwSemModel;
    use mm::mm_types::LockWait;
    use reaper::oom_kill::VictimGoneRule;

    fn run_plan(args: &[&str]) -> RunPlan {
        let cli = Cli::try_parse_from(["oomlab", "run"].iter().chain(args)).unwrap();
        let Command::Run(a) = cli.command else {
            panic!("not run")
        };
        run(&a).unwrap()
    }

    #[test]
    fn run_defaults_fit_in_their_duration() {
        let p = run_plan(&[]);
        assert_eq!(p.executor, Executor::Threads);
        assert_eq!(p.run.duration_ns, 60 * SEC);
        assert_eq!(p.run.load.load_end_ns, 57 * SEC);
        let m = &p.run.machine;
        assert_eq!(m.livelock_window_ns(), 5 * SEC);
        assert_eq!(m.knobs.write_lock, LockWait::Killable);
        assert_eq!(m.knobs.read_lock, LockWait::Uninterruptible);
        let r = m.reaper().expect("reaper on by default");
        assert_eq!((r.retries, r.interval_ms, r.delay_ms), (10, 100, 0));
        assert_eq!(p.run.load.threads, 256);
    }

    #[test]
    fn run_knobs_reach_the_machine() {
        let p = run_plan(&[
            "--executor",
            "sim",
            "--write-lock",
            "uninterruptible",
            "--read-lock",
            "killable",
            "--rwsem-model",
            "rfc-v1",
            "--reaper-delay",
            "2s",
            "--reaper-retries",
            "3",
            "--reaper-interval",
            "250ms",
            "--panic-on-oom",
            "2",
            "--oom-kill-allocating-task",
            "1",
            "--oom-dump-tasks",
            "0",
            "--victim-gone-rule",
            "process-released",
            "--livelock-window",
            "10s",
            "--duration",
            "1s",
        ]);
        let m = &p.run.machine;
        assert_eq!(p.executor, Executor::Sim);
        assert_eq!(m.knobs.write_lock, LockWait::Uninterruptible);
        assert_eq!(m.knobs.read_lock, LockWait::Killable);
        assert_eq!(m.knobs.rwsem_model, RwSemModel::RfcV1);
        let r = m.reaper().unwrap();
        assert_eq!((r.retries, r.interval_ms, r.delay_ms), (3, 250, 2000));
        assert_eq!(m.oom.panic_on_oom, 2);
        assert!(m.oom.oom_kill_allocating_task);
        assert!(!m.oom.oom_dump_tasks);
        assert_eq!(m.oom.victim_gone_rule, VictimGoneRule::ProcessReleased);
        assert_eq!(m.livelock_window_ns(), 10 * SEC);
        assert_eq!(p.run.load.load_end_ns, 950 * MS);
        assert!(run_plan(&["--reaper", "off"])
            .run
            .machine
            .reaper()
            .is_none());
        assert_eq!(
            run_plan(&["--executor", "sim"])
                .run
                .machine
                .livelock_window_ns(),
            30 * SEC
        );
    }

    #[test]
    fn short_runs_keep_half_for_the_load() {
        assert_eq!(
            run_plan(&["--duration", "60ms"]).run.load.load_end_ns,
            30 * MS
        );
        assert_eq!(
            run_plan(&["--duration", "3s"]).run.load.load_end_ns,
            2850 * MS
        );
    }
}
