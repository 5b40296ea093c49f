//! One trial of the bench (one configuration, one seed: a whole machine's life), what is kept
//! of it, and the pool of host threads that runs the trials.
//!
//! A trial boots a machine, runs the workload (the `run` load in small, or a canonical
//! scenario), and keeps only plain numbers ([`TrialResult`]): the machine, its frame pool and
//! the report are dropped before the next trial starts on that host thread, so the bench's
//! memory is `jobs` frame pools plus the results.
//!
//! The sim executor is not `Send`: each trial builds its own on the host thread that runs it.
//! Results are stored by trial index, so they do not depend on `--jobs` or on which thread
//! ran what.

use crate::cli::Executor;
use loadgen::load::{LoadConfig, RunConfig};
use loadgen::report::{Report, VictimRecord};
use loadgen::scenario::{Scenario, ScenarioConfig};
use mm::sched::sim::{Sim, SimConfig};
use mm::sched::threads::{ThreadsConfig, ThreadsExecutor};
use reaper::machine::{MachineConfig, Verdict};
use serde_json::{json, Value};
use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Once};

const SEC: u64 = 1_000_000_000;
#[cfg(test)]
const MS: u64 = 1_000_000;

/// Slack of the sim's own time bound past the load driver's (as `oomlab run` has): lets the
/// kthreads finish a reaper retry cycle after the wind-down.
const SIM_SLACK_NS: u64 = 60 * SEC;

/// The shape of the `run` load in a trial.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadShape {
    pub processes: u32,
    pub threads_per_process: u32,
    pub remote_readers: u32,
    pub memory_bytes: u64,
    /// The whole trial, wind-down included, executor ns.
    pub duration_ns: u64,
}

/// What each trial runs.
#[derive(Clone)]
pub enum Workload {
    /// The `oomlab run` load, sized by [`LoadShape`].
    Run(LoadShape),
    /// A canonical scenario (sim executor only).
    Scenario {
        scenario: Scenario,
        memory_bytes: u64,
        time_limit_ns: u64,
    },
}

impl Workload {
    /// Tasks one trial runs at most (the load's, or a guess for a scenario).
    pub fn tasks(&self) -> u64 {
        match self {
            Workload::Run(s) => u64::from(s.processes * s.threads_per_process + s.remote_readers),
            Workload::Scenario { .. } => 64,
        }
    }

    /// The frame pool of one trial, bytes.
    pub fn memory_bytes(&self) -> u64 {
        match self {
            Workload::Run(s) => s.memory_bytes,
            Workload::Scenario { memory_bytes, .. } => *memory_bytes,
        }
    }
}

/// Which trial: its index in the whole bench (configuration-major), its configuration and seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrialSpec {
    pub index: usize,
    pub config: usize,
    pub seed: u64,
}

/// What is kept of one trial.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrialResult {
    pub spec: TrialSpec,
    /// The machine's verdict ([`Verdict::name`]): completed, panicked, time-limit, deadlock.
    pub ending: String,
    /// Livelocks the watchdog detected (each recovered by a sysrq-f kill).
    pub livelocks: u64,
    /// OOM episodes whose victim was neither reaped nor torn down within the window.
    pub stalled_episodes: u64,
    /// `/proc/vmstat oom_kill`: every kill, sysrq kills included.
    pub oom_kills: u64,
    /// OOM-killer kills made while an earlier victim's memory had not come back
    /// ([`collateral_kills`]).
    pub collateral_kills: u64,
    /// Victims the oom_reaper gave up on ("unable to reap").
    pub reaper_give_ups: u64,
    /// Kills by the watchdog's sysrq-f recovery.
    pub sysrq_kills: u64,
    /// Kill → memory back of every killed victim whose memory came back, ns.
    pub kill_to_reclaim_ns: Vec<u64>,
    /// The executor's clock at the end of the workload phase, ns.
    pub end_ns: u64,
}

/// A trial that broke the emulator: its verdict was [`Verdict::EmulatorBug`], or the emulator
/// panicked (an assert) inside it.
#[derive(Clone, Debug)]
pub struct TrialBug {
    pub spec: TrialSpec,
    pub what: String,
    /// The trial's report summary, when there is a report (not after a panic).
    pub summary: Vec<String>,
}

/// How a trial ended for the bench.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// The trial's numbers, and its report's summary when asked for.
    Done(TrialResult, Option<Vec<String>>),
    Bug(TrialBug),
    /// The host refused the frame pool (a runtime error of the tool).
    HostError(String),
}

/// Kills by the OOM killer (sysrq kills left out: they are counted as recoveries) made while
/// an earlier killed victim's memory had not come back yet (neither reaped nor torn down), so
/// the kills after the first of an OOM episode. An episode begins with a kill while every
/// earlier victim's memory is back, and lasts until every victim killed in it has its memory
/// back. The L1 chain under the reaper alone is the example (docs/oom-rules.md §6): the reaper
/// gives up, `MMF_OOM_SKIP` lets the next selection go on, and a second process dies while the
/// first one's memory is still stuck. Self-marked dying tasks (not killed) do not count either
/// way.
pub fn collateral_kills(victims: &[VictimRecord]) -> u64 {
    let mut sorted: Vec<&VictimRecord> = victims.iter().filter(|v| v.killed).collect();
    sorted.sort_by_key(|v| v.at_ns);
    // The latest time at which the memory of a victim killed so far comes back
    // (u64::MAX: some never did).
    let mut outstanding_until = 0u64;
    let mut n = 0;
    for v in sorted {
        if outstanding_until > v.at_ns && !v.sysrq {
            n += 1;
        }
        outstanding_until = outstanding_until.max(v.reclaimed_ns.unwrap_or(u64::MAX));
    }
    n
}

impl TrialResult {
    /// Keep the numbers of a report whose verdict is not an emulator bug.
    fn from_report(spec: TrialSpec, r: &Report) -> TrialResult {
        TrialResult {
            spec,
            ending: r.verdict.name().to_string(),
            livelocks: r.livelocks,
            stalled_episodes: r.stalled_episodes,
            oom_kills: r.oom.kills,
            collateral_kills: collateral_kills(&r.victims),
            reaper_give_ups: r.reaper.as_ref().map_or(0, |x| x.gave_up),
            sysrq_kills: r.oom.sysrq_kills,
            kill_to_reclaim_ns: r.kill_to_reclaim_ns.clone(),
            end_ns: r.workload_end_ns,
        }
    }

    /// The trial as JSON (integers only, so that it reads back exactly).
    pub fn json(&self) -> Value {
        json!({
            "index": self.spec.index,
            "config": self.spec.config,
            "seed": self.spec.seed,
            "ending": self.ending,
            "livelocks": self.livelocks,
            "stalled_episodes": self.stalled_episodes,
            "oom_kills": self.oom_kills,
            "collateral_kills": self.collateral_kills,
            "reaper_give_ups": self.reaper_give_ups,
            "sysrq_kills": self.sysrq_kills,
            "kill_to_reclaim_ns": self.kill_to_reclaim_ns,
            "end_ns": self.end_ns,
        })
    }

    /// Read back [`TrialResult::json`]; `Err` names the missing or malformed key.
    pub fn from_json(v: &Value) -> Result<TrialResult, String> {
        let u = |k: &str| v[k].as_u64().ok_or_else(|| format!("'{k}'"));
        let ending = v["ending"].as_str().ok_or("'ending'")?.to_string();
        let kill_to_reclaim_ns = v["kill_to_reclaim_ns"]
            .as_array()
            .ok_or("'kill_to_reclaim_ns'")?
            .iter()
            .map(|x| x.as_u64().ok_or("'kill_to_reclaim_ns'".to_string()))
            .collect::<Result<Vec<u64>, String>>()?;
        Ok(TrialResult {
            spec: TrialSpec {
                index: u("index")? as usize,
                config: u("config")? as usize,
                seed: u("seed")?,
            },
            ending,
            livelocks: u("livelocks")?,
            stalled_episodes: u("stalled_episodes")?,
            oom_kills: u("oom_kills")?,
            collateral_kills: u("collateral_kills")?,
            reaper_give_ups: u("reaper_give_ups")?,
            sysrq_kills: u("sysrq_kills")?,
            kill_to_reclaim_ns,
            end_ns: u("end_ns")?,
        })
    }
}

/// The run configuration of a `run` trial: the `oomlab run` load shaped by `shape`, bounded as
/// `oomlab run` bounds its `--duration` (loadgen's `RunConfig`: the load stops a reserve
/// before the end, the verdict comes at the bound).
pub fn run_config(
    shape: &LoadShape,
    machine: MachineConfig,
    seed: u64,
    executor: Executor,
) -> RunConfig {
    let threads = shape.processes * shape.threads_per_process;
    let mut load = LoadConfig::new(threads, seed);
    load.threads_per_process = shape.threads_per_process;
    load.remote_readers = shape.remote_readers;
    RunConfig {
        machine,
        load,
        seed,
        duration_ns: shape.duration_ns,
        host_cpus: match executor {
            Executor::Sim => None,
            Executor::Threads => Some(std::thread::available_parallelism().map_or(1, |n| n.get())),
        },
    }
}

/// Run one trial on `executor` and keep its numbers.
pub fn run_trial(
    spec: TrialSpec,
    machine: &MachineConfig,
    workload: &Workload,
    executor: Executor,
    keep_summary: bool,
) -> Outcome {
    let report = match workload {
        Workload::Run(shape) => {
            let rc = run_config(shape, machine.clone(), spec.seed, executor);
            match executor {
                Executor::Sim => loadgen::load::run(
                    Sim::new(SimConfig {
                        seed: spec.seed,
                        max_time_ns: rc.duration_ns.saturating_add(SIM_SLACK_NS),
                        max_steps: u64::MAX,
                        ..SimConfig::default()
                    }),
                    &rc,
                ),
                Executor::Threads => {
                    loadgen::load::run(ThreadsExecutor::new(ThreadsConfig::default()), &rc)
                }
            }
        }
        Workload::Scenario {
            scenario,
            time_limit_ns,
            ..
        } => loadgen::scenario::run(
            scenario,
            &ScenarioConfig {
                machine: machine.clone(),
                seed: spec.seed,
                max_time_ns: *time_limit_ns,
            },
        ),
    };
    let report = match report {
        Ok(r) => r,
        Err(e) => return Outcome::HostError(format!("cannot create the frame pool: {e:?}")),
    };
    if let Verdict::EmulatorBug { what } = &report.verdict {
        return Outcome::Bug(TrialBug {
            spec,
            what: what.clone(),
            summary: report.summary(),
        });
    }
    let summary = keep_summary.then(|| report.summary());
    Outcome::Done(TrialResult::from_report(spec, &report), summary)
}

thread_local! {
    /// This host thread runs trials: its panics are collected, not printed.
    static IN_TRIAL: Cell<bool> = const { Cell::new(false) };
    /// The panics of the current trial, in order: "message (at file:line:col)".
    static PANICS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// Route the panics of trial threads to [`PANICS`] (other threads keep the default hook).
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_TRIAL.with(Cell::get) {
                return previous(info);
            }
            let p = info.payload();
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".into());
            let at = info
                .location()
                .map_or(String::new(), |l| format!(" (at {l})"));
            PANICS.with(|v| v.borrow_mut().push(format!("{msg}{at}")));
        }));
    });
}

/// Run one trial, turning a panic inside it into a [`TrialBug`].
fn run_caught(
    spec: TrialSpec,
    machine: &MachineConfig,
    workload: &Workload,
    executor: Executor,
    keep_summary: bool,
) -> Outcome {
    PANICS.with(|v| v.borrow_mut().clear());
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_trial(spec, machine, workload, executor, keep_summary)
    }));
    match r {
        Ok(o) => o,
        Err(_) => {
            // The first panic is the emulator's own assert; the sim re-raises it with the
            // step and seed, which the bench reports its own way.
            let first = PANICS.with(|v| v.borrow().first().cloned());
            Outcome::Bug(TrialBug {
                spec,
                what: format!(
                    "panicked: {}",
                    first
                        .unwrap_or_else(|| "unknown panic".into())
                        .replace('\n', "; ")
                ),
                summary: Vec::new(),
            })
        }
    }
}

/// How to run the trials of a bench.
pub struct Runner<'a> {
    /// The machine of each configuration.
    pub machines: &'a [MachineConfig],
    pub workload: &'a Workload,
    pub executor: Executor,
    /// Host threads.
    pub jobs: usize,
    /// Keep each trial's report summary.
    pub summaries: bool,
}

/// Run `specs` on `r.jobs` host threads; `done(n_finished)` is called on the calling thread
/// after each. Once a trial breaks the emulator no new trial starts (those running finish).
/// Returns the outcomes in `specs` order (`None`: not run because of a bug).
pub fn run_all(
    specs: &[TrialSpec],
    r: &Runner,
    mut done: impl FnMut(usize),
) -> Vec<Option<Outcome>> {
    install_panic_hook();
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let mut out: Vec<Option<Outcome>> = vec![None; specs.len()];
    let (tx, rx) = mpsc::channel::<(usize, Outcome)>();
    std::thread::scope(|s| {
        for _ in 0..r.jobs.clamp(1, specs.len().max(1)) {
            let tx = tx.clone();
            let (next, stop) = (&next, &stop);
            s.spawn(move || {
                IN_TRIAL.with(|c| c.set(true));
                loop {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(spec) = specs.get(i) else { break };
                    let machine = &r.machines[spec.config];
                    let o = run_caught(*spec, machine, r.workload, r.executor, r.summaries);
                    if !matches!(o, Outcome::Done(..)) {
                        stop.store(true, Ordering::SeqCst);
                    }
                    if tx.send((i, o)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let mut finished = 0;
        for (i, o) in rx {
            out[i] = Some(o);
            finished += 1;
            done(finished);
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use loadgen::scenario::Ctx;
    use mm::gfp::Gfp;

    /// A scenario whose process leaks a frame (a broken emulator invariant: the verdict is
    /// an emulator bug).
    fn leaker() -> Scenario {
        Scenario::rust(
            "test-leaker",
            "leaks a kernel page",
            8 << 20,
            |ctx: &mut Ctx| {
                let pool = ctx.m.pool.clone();
                ctx.process("leaker", 0, move |_| {
                    let _leaked = pool.alloc_page(Gfp::GFP_KERNEL);
                    Ok(())
                });
            },
        )
    }

    /// A scenario whose process trips an assert.
    fn panicker() -> Scenario {
        Scenario::rust("test-panicker", "asserts", 8 << 20, |ctx: &mut Ctx| {
            ctx.process("panicker", 0, |_| panic!("frame accounting broke"));
        })
    }

    fn scenario_workload(scenario: Scenario) -> Workload {
        Workload::Scenario {
            scenario,
            memory_bytes: 8 << 20,
            time_limit_ns: 10 * SEC,
        }
    }

    fn specs(n: usize) -> Vec<TrialSpec> {
        (0..n)
            .map(|i| TrialSpec {
                index: i,
                config: 0,
                seed: i as u64,
            })
            .collect()
    }

    #[test]
    fn an_emulator_bug_verdict_stops_the_bench() {
        let machines = [MachineConfig::sim(8 << 20)];
        let w = scenario_workload(leaker());
        let r = Runner {
            machines: &machines,
            workload: &w,
            executor: Executor::Sim,
            jobs: 1,
            summaries: false,
        };
        let out = run_all(&specs(3), &r, |_| {});
        let Some(Outcome::Bug(b)) = &out[0] else {
            panic!("not a bug: {:?}", out[0]);
        };
        assert!(b.what.contains("still allocated"), "{}", b.what);
        assert!(!b.summary.is_empty());
        assert!(out[1..].iter().all(Option::is_none), "later trials ran");
    }

    #[test]
    fn a_panic_in_a_trial_is_caught_and_reported() {
        let machines = [MachineConfig::sim(8 << 20)];
        let w = scenario_workload(panicker());
        let r = Runner {
            machines: &machines,
            workload: &w,
            executor: Executor::Sim,
            jobs: 2,
            summaries: false,
        };
        let out = run_all(&specs(4), &r, |_| {});
        let bugs: Vec<&TrialBug> = out
            .iter()
            .flatten()
            .map(|o| match o {
                Outcome::Bug(b) => b,
                o => panic!("not a bug: {o:?}"),
            })
            .collect();
        assert!(!bugs.is_empty() && bugs.len() <= 2, "{bugs:?}");
        for b in bugs {
            assert!(
                b.what
                    .starts_with("panicked: frame accounting broke (at src/bench/trial.rs"),
                "{}",
                b.what
            );
        }
    }

    fn victim(at_ms: u64, back_ms: Option<u64>, killed: bool, sysrq: bool) -> VictimRecord {
        VictimRecord {
            pid: 0,
            comm: String::new(),
            killed,
            sysrq,
            at_ns: at_ms * MS,
            reclaimed_ns: back_ms.map(|b| b * MS),
        }
    }

    #[test]
    fn a_kill_while_an_earlier_victims_memory_is_stuck_is_collateral() {
        // Each victim's memory back before the next kill: separate episodes.
        assert_eq!(
            collateral_kills(&[
                victim(10, Some(20), true, false),
                victim(30, Some(31), true, false),
            ]),
            0
        );
        // The reaper gave up on the first (memory back only at 2000 ms, its teardown): the
        // kill at 1100 ms is collateral; the one at 3000 ms starts a new episode.
        assert_eq!(
            collateral_kills(&[
                victim(10, Some(2000), true, false),
                victim(1100, Some(1200), true, false),
                victim(3000, Some(3001), true, false),
            ]),
            1
        );
        // Never back: every later OOM kill is collateral; sysrq kills are recoveries, not
        // collateral, but their stuck memory makes later kills collateral.
        assert_eq!(
            collateral_kills(&[
                victim(10, None, true, false),
                victim(40, None, true, true),
                victim(50, Some(60), true, false),
            ]),
            1
        );
        // Self-marked dying tasks count neither way.
        assert_eq!(
            collateral_kills(&[
                victim(10, None, false, false),
                victim(20, Some(30), true, false),
            ]),
            0
        );
    }

    #[test]
    fn trial_json_reads_back() {
        let t = TrialResult {
            spec: TrialSpec {
                index: 7,
                config: 1,
                seed: u64::MAX,
            },
            ending: "completed".into(),
            livelocks: 2,
            stalled_episodes: 3,
            oom_kills: 40,
            collateral_kills: 5,
            reaper_give_ups: 6,
            sysrq_kills: 2,
            kill_to_reclaim_ns: vec![1, u64::MAX],
            end_ns: 123,
        };
        assert_eq!(TrialResult::from_json(&t.json()), Ok(t.clone()));
        let mut v = t.json();
        v["oom_kills"] = json!("many");
        assert_eq!(TrialResult::from_json(&v), Err("'oom_kills'".into()));
    }
}
