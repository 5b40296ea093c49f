//! The command line, stage two: raw flags (cli.rs) checked and turned into plans that name
//! library types only: a machine configuration, a scenario with its trial configuration, a
//! load with its time bounds. Every error here is a usage error: one line, exit status 2.

use crate::cli::{self, KernelArgs, RunArgs, ScenarioArgs};
use loadgen::load::LoadConfig;
use loadgen::machine::MachineConfig;
use loadgen::scenario::{Scenario, ScenarioConfig};
use loadgen::scenarios;
use mm::locking::rwsem::RwSemModel;
use mm::mm_types::{LockWait, MmKnobs};
use reaper::oom_kill::{OomConfig, VictimGoneRule};
use reaper::oom_reaper::ReaperConfig;
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

/// Which executor `oomlab run` uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Executor {
    Threads,
    Sim,
}

/// `oomlab run`, validated.
#[derive(Clone, Debug)]
pub struct RunPlan {
    pub executor: Executor,
    pub machine: MachineConfig,
    pub load: LoadConfig,
    pub seed: u64,
    /// The whole run's bound (`--duration`), executor time.
    pub duration_ns: u64,
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

/// Apply the kernel knobs to a machine configuration (whose watchdog defaults already suit
/// its executor).
fn apply_kernel(k: &KernelArgs, m: &mut MachineConfig) {
    let lock_wait = |killable: bool| {
        if killable {
            LockWait::Killable
        } else {
            LockWait::Uninterruptible
        }
    };
    m.knobs = MmKnobs {
        write_lock: lock_wait(k.write_lock == cli::WriteLock::Killable),
        read_lock: lock_wait(k.read_lock == cli::ReadLock::Killable),
        rwsem_model: match k.rwsem_model {
            cli::RwsemModel::A => RwSemModel::A,
            cli::RwsemModel::RfcV1 => RwSemModel::RfcV1,
        },
        // CONFIG_RWSEM_SPIN_ON_OWNER=n until `--rwsem-spin` is wired (issue 12).
        rwsem_spin: Default::default(),
    };
    m.oom = OomConfig {
        panic_on_oom: k.panic_on_oom,
        oom_kill_allocating_task: k.oom_kill_allocating_task == 1,
        oom_dump_tasks: k.oom_dump_tasks == 1,
        victim_gone_rule: match k.victim_gone_rule {
            cli::VictimGoneRule::MmTeardown => VictimGoneRule::MmTeardown,
            cli::VictimGoneRule::ProcessReleased => VictimGoneRule::ProcessReleased,
        },
    };
    m.reaper = (k.reaper == cli::Reaper::On).then(|| ReaperConfig {
        retries: k.reaper_retries,
        // Whole milliseconds: the value parsers checked.
        interval_ms: ns(k.reaper_interval) / MS,
        delay_ms: ns(k.reaper_delay) / MS,
    });
    if let Some(w) = k.livelock_window {
        m.watchdog.window_ns = ns(w);
    }
}

/// Plan `oomlab run`.
///
/// Time: `--duration` bounds the whole run, wind-down included. The load stops a reserve
/// before the end (5% of the duration, between 50 ms and 3 s, at most half of it); the
/// supervisor then gives the wind-down that reserve plus two livelock windows (so that the
/// watchdog could still recover a stuck machine) before it gives up on the tasks left.
pub fn run(a: &RunArgs) -> Result<RunPlan, UsageError> {
    let (executor, mut machine) = match a.executor {
        cli::Executor::Threads => (Executor::Threads, MachineConfig::threads(a.memory.0)),
        cli::Executor::Sim => {
            let mut m = MachineConfig::sim(a.memory.0);
            // The pool is real memory on either executor.
            m.check_host = true;
            (Executor::Sim, m)
        }
    };
    apply_kernel(&a.kernel, &mut machine);
    let duration_ns = ns(a.duration);
    let reserve_ns = (duration_ns / 20)
        .clamp(50 * MS, 3 * SEC)
        .min(duration_ns / 2);
    let load_end_ns = duration_ns - reserve_ns;
    let drain_ns = reserve_ns.saturating_add(machine.watchdog.window_ns.saturating_mul(2));
    let load = LoadConfig::new(a.threads, a.seed, load_end_ns, drain_ns);
    Ok(RunPlan {
        executor,
        machine,
        load,
        seed: a.seed,
        duration_ns,
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
    let mut cfg = ScenarioConfig::new(a.memory.map_or(sc.memory_bytes, |b| b.0));
    apply_kernel(&a.kernel, &mut cfg.machine);
    // Refuse a pool the host cannot hold rather than swap the host to death.
    cfg.machine.check_host = true;
    cfg.seed = a.seed;
    cfg.max_time_ns = ns(a.time_limit);
    Ok(ScenarioCommand::Run(ScenarioPlan {
        scenario: sc,
        cfg,
        json: a.json,
    }))
}

/// The kernel configuration in one line, for reports.
pub fn describe_machine(m: &MachineConfig) -> String {
    let reaper = match &m.reaper {
        Some(r) => format!(
            "on (delay {}ms, {} retries {}ms apart)",
            r.delay_ms, r.retries, r.interval_ms
        ),
        None => "off".into(),
    };
    format!(
        "write_lock={} read_lock={} rwsem={} reaper={} panic_on_oom={} \
         oom_kill_allocating_task={} oom_dump_tasks={} victim_gone_rule={} livelock_window={}",
        m.knobs.write_lock.name(),
        m.knobs.read_lock.name(),
        m.knobs.rwsem_model.name(),
        reaper,
        m.oom.panic_on_oom,
        u8::from(m.oom.oom_kill_allocating_task),
        u8::from(m.oom.oom_dump_tasks),
        m.oom.victim_gone_rule.name(),
        secs(m.watchdog.window_ns),
    )
}

/// `ns` as seconds, as short as exact: 5s, 0.25s, 1.5s.
pub fn secs(ns: u64) -> String {
    let s = format!("{:.3}", ns as f64 / 1e9);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}s")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

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
        assert_eq!(p.duration_ns, 60 * SEC);
        assert_eq!(p.load.load_end_ns, 57 * SEC);
        assert_eq!(p.machine.watchdog.window_ns, 5 * SEC);
        assert_eq!(p.machine.knobs.write_lock, LockWait::Killable);
        assert_eq!(p.machine.knobs.read_lock, LockWait::Uninterruptible);
        assert!(p.machine.check_host);
        let r = p.machine.reaper.as_ref().expect("reaper on by default");
        assert_eq!((r.retries, r.interval_ms, r.delay_ms), (10, 100, 0));
        assert_eq!(p.load.threads, 256);
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
        let m = &p.machine;
        assert_eq!(p.executor, Executor::Sim);
        assert_eq!(m.knobs.write_lock, LockWait::Uninterruptible);
        assert_eq!(m.knobs.read_lock, LockWait::Killable);
        assert_eq!(m.knobs.rwsem_model, RwSemModel::RfcV1);
        let r = m.reaper.as_ref().unwrap();
        assert_eq!((r.retries, r.interval_ms, r.delay_ms), (3, 250, 2000));
        assert_eq!(m.oom.panic_on_oom, 2);
        assert!(m.oom.oom_kill_allocating_task);
        assert!(!m.oom.oom_dump_tasks);
        assert_eq!(m.oom.victim_gone_rule, VictimGoneRule::ProcessReleased);
        assert_eq!(m.watchdog.window_ns, 10 * SEC);
        assert_eq!(p.load.load_end_ns, 950 * MS);
        assert!(run_plan(&["--reaper", "off"]).machine.reaper.is_none());
        assert_eq!(
            run_plan(&["--executor", "sim"]).machine.watchdog.window_ns,
            30 * SEC
        );
    }

    #[test]
    fn short_runs_keep_half_for_the_load() {
        assert_eq!(run_plan(&["--duration", "60ms"]).load.load_end_ns, 30 * MS);
        assert_eq!(run_plan(&["--duration", "3s"]).load.load_end_ns, 2850 * MS);
    }

    #[test]
    fn seconds_print_short() {
        assert_eq!(secs(5 * SEC), "5s");
        assert_eq!(secs(250 * MS), "0.25s");
        assert_eq!(secs(0), "0s");
    }
}
