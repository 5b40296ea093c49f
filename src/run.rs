//! `oomlab run`: boot a machine on the chosen executor, start the load generator's supervisor,
//! wait for it to finish (the load runs until shortly before `--duration`, then every task
//! is stopped or killed and waited for), stop the kthreads, join, check the emulator's
//! invariants, and report.
//!
//! Every run ends: the watchdog recovers livelocks with sysrq-f kills while the load runs,
//! the supervisor gives up on a wind-down that cannot finish, and the driver here gives up
//! on the executor past a hard bound. Only a run that completed and was joined is checked
//! for frame conservation and leaks; a broken invariant is an emulator bug (exit 101).

use crate::plan::{describe_machine, secs, Executor, RunPlan, UsageError};
use crate::{EXIT_BUG, EXIT_DEADLOCK, EXIT_OK, EXIT_PANIC, EXIT_TIME_LIMIT};
use anyhow::Result;
use loadgen::load::{Load, LoadReport};
use loadgen::machine::Machine;
use mm::page_alloc::FrameAccounting;
use mm::sched::sim::{Sim, SimConfig, SimOutcome};
use mm::sched::threads::{ThreadsConfig, ThreadsExecutor};
use mm::task::{state, CloneKind, Task};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How the run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ending {
    /// The load ran its course and every task exited.
    Completed,
    /// The modelled kernel panicked.
    Panicked,
    /// Tasks were left when the wind-down (or the executor) was given up.
    TimeLimit,
    /// Sim: nothing runnable and no timer pending, tasks left.
    Deadlock,
}

impl Ending {
    fn name(self) -> &'static str {
        match self {
            Ending::Completed => "completed",
            Ending::Panicked => "panicked",
            Ending::TimeLimit => "time-limit (tasks left that could not exit)",
            Ending::Deadlock => "deadlock (no task runnable, no timer pending)",
        }
    }
}

/// The invariant checks at the end of a run.
enum Checks {
    /// Conservation held, nothing was left allocated, every task exited.
    Ok,
    /// Sim with tasks left: conservation held (nothing runs between two steps); leaks are not
    /// meaningful while tasks still own memory.
    ConservedOnly,
    /// Not meaningful: tasks are still running (panic, or a wind-down given up).
    NotChecked(&'static str),
    /// Emulator bug.
    Broken(String),
}

/// Everything the report needs, gathered once the run is over.
struct Outcome {
    ending: Ending,
    /// Executor time at the end, ns.
    end_ns: u64,
    /// Wall-clock time of the whole run (threads executor only: the sim's output must not
    /// depend on the host).
    wall: Option<Duration>,
    load: LoadReport,
    accounting: FrameAccounting,
    checks: Checks,
    /// Tasks left at the end, sysrq-t style.
    tasks_left: Vec<String>,
    /// `mmap_lock`s of the tasks left and of the OOM victims that cannot make progress, with
    /// why ([`mm::locking::rwsem::RawRwSem::stuck_diagnosis`]).
    stuck_locks: Vec<String>,
}

/// Run the plan; print the summary to `out`; return the exit status.
pub fn run(plan: &RunPlan, out: &mut impl Write) -> Result<u8> {
    let (m, outcome) = match plan.executor {
        Executor::Threads => run_threads(plan)?,
        Executor::Sim => run_sim(plan)?,
    };
    report(plan, &m, &outcome, out)?;
    Ok(match (outcome.ending, &outcome.checks) {
        (_, Checks::Broken(_)) => EXIT_BUG,
        (Ending::Completed, _) => EXIT_OK,
        (Ending::Panicked, _) => EXIT_PANIC,
        (Ending::TimeLimit, _) => EXIT_TIME_LIMIT,
        (Ending::Deadlock, _) => EXIT_DEADLOCK,
    })
}

fn boot_error(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::Error::new(UsageError(e.to_string()))
}

fn supervisor() -> CloneKind {
    CloneKind::Process {
        comm: "loadgen".into(),
    }
}

/// The threads executor: OS threads, wall-clock time.
fn run_threads(plan: &RunPlan) -> Result<(Machine, Outcome)> {
    let started = Instant::now();
    let exec = ThreadsExecutor::new(ThreadsConfig::default());
    let m = Machine::boot_threads(&exec, plan.machine.clone()).map_err(boot_error)?;
    let load = Load::new(
        plan.load.clone(),
        m.pool.clone(),
        m.cfg.knobs,
        m.oom.clone(),
    );
    let l = load.clone();
    exec.spawn(supervisor(), move || l.supervise())
        .expect("starting the load supervisor");

    // The supervisor bounds the run itself; this bound only catches a supervisor that never
    // gets to run (it is a task like the others).
    let hard = Duration::from_nanos(plan.load.load_end_ns.saturating_add(plan.load.drain_ns))
        + Duration::from_secs(5);
    while !load.finished() && started.elapsed() < hard {
        std::thread::sleep(Duration::from_millis(20));
    }
    let report = load.report();
    let wound_down = load.finished() && report.processes_left == 0 && !report.stopped_by_panic;
    m.stop_kthreads();
    let ending = if m.oom.panicked().is_some() {
        Ending::Panicked
    } else if wound_down {
        Ending::Completed
    } else {
        Ending::TimeLimit
    };
    if ending != Ending::Completed {
        // Tasks remain that will never exit (the panicking task sleeps for good; the others
        // could not wind down): report them, and leave the executor unjoined (its threads end
        // with the process).
        let tasks_left = sysrq_t(&exec.tasks().tasks());
        let outcome = Outcome {
            ending,
            end_ns: exec.now_ns(),
            wall: Some(started.elapsed()),
            load: report,
            accounting: m.pool.accounting(),
            checks: Checks::NotChecked("tasks are still running"),
            tasks_left,
            stuck_locks: stuck_locks(&exec.tasks().tasks(), &m),
        };
        std::mem::forget(exec);
        return Ok((m, outcome));
    }
    // The kthreads exit at their next wake-up; a reaper in the middle of its retries
    // finishes them first.
    let kthread_bound = Duration::from_secs(5)
        + plan.machine.reaper.as_ref().map_or(Duration::ZERO, |r| {
            Duration::from_millis(r.interval_ms.saturating_mul(u64::from(r.retries)))
        });
    let waited = Instant::now();
    while m.kthreads_alive() > 0 && waited.elapsed() < kthread_bound {
        std::thread::sleep(Duration::from_millis(10));
    }
    if m.kthreads_alive() > 0 {
        let outcome = Outcome {
            ending: Ending::TimeLimit,
            end_ns: exec.now_ns(),
            wall: Some(started.elapsed()),
            load: report,
            accounting: m.pool.accounting(),
            checks: Checks::NotChecked("the kthreads did not stop"),
            tasks_left: sysrq_t(&exec.tasks().tasks()),
            stuck_locks: stuck_locks(&exec.tasks().tasks(), &m),
        };
        std::mem::forget(exec);
        return Ok((m, outcome));
    }
    exec.join();
    let end_ns = exec.now_ns();
    let tasks_left = sysrq_t(&exec.tasks().tasks());
    drop(exec);
    let checks = final_checks(&m, tasks_left.len());
    let outcome = Outcome {
        ending: Ending::Completed,
        end_ns,
        wall: Some(started.elapsed()),
        load: report,
        accounting: m.pool.accounting(),
        checks,
        tasks_left,
        stuck_locks: Vec::new(),
    };
    Ok((m, outcome))
}

/// The sim executor: the same load, deterministic from `--seed`, in emulated time.
fn run_sim(plan: &RunPlan) -> Result<(Machine, Outcome)> {
    let mut sim = Sim::new(SimConfig {
        seed: plan.seed,
        // Time bounds the run (every step costs emulated time); a minute of slack past the
        // supervisor's own bound lets the kthreads finish a reaper retry cycle.
        max_time_ns: plan
            .load
            .load_end_ns
            .saturating_add(plan.load.drain_ns)
            .saturating_add(60_000_000_000),
        max_steps: u64::MAX,
        ..SimConfig::default()
    });
    let m = Machine::boot_sim(&mut sim, plan.machine.clone()).map_err(boot_error)?;
    let load = Load::new(
        plan.load.clone(),
        m.pool.clone(),
        m.cfg.knobs,
        m.oom.clone(),
    );
    let l = load.clone();
    sim.spawn(supervisor(), move || l.supervise())
        .expect("starting the load supervisor");
    let first = sim.run_until(|_| load.finished());
    let report = load.report();
    let mut ending = match first {
        _ if m.oom.panicked().is_some() => Ending::Panicked,
        SimOutcome::Stopped if report.processes_left == 0 => Ending::Completed,
        SimOutcome::Deadlock(_) => Ending::Deadlock,
        _ => Ending::TimeLimit,
    };
    if ending == Ending::Completed {
        m.stop_kthreads();
        ending = match sim.run() {
            SimOutcome::AllExited => Ending::Completed,
            SimOutcome::Deadlock(_) => Ending::Deadlock,
            _ => Ending::TimeLimit,
        };
    }
    let tasks_left = sysrq_t(&sim.tasks().tasks());
    let stuck = stuck_locks(&sim.tasks().tasks(), &m);
    // Nothing runs between two sim steps: conservation is meaningful even with tasks left.
    let checks = if ending == Ending::Completed {
        final_checks(&m, tasks_left.len())
    } else {
        match m.pool.check_conservation() {
            Ok(()) => Checks::ConservedOnly,
            Err(e) => Checks::Broken(e),
        }
    };
    let outcome = Outcome {
        ending,
        end_ns: sim.now_ns(),
        wall: None,
        load: report,
        accounting: m.pool.accounting(),
        checks,
        tasks_left,
        stuck_locks: stuck,
    };
    drop(sim);
    Ok((m, outcome))
}

/// After every task exited: frame conservation, and nothing left allocated or mapped.
fn final_checks(m: &Machine, tasks_left: usize) -> Checks {
    if let Err(e) = m.pool.check_conservation() {
        return Checks::Broken(e);
    }
    let a = m.pool.accounting();
    if a.allocated + a.mapped != 0 {
        return Checks::Broken(format!(
            "{} frames still allocated or mapped after every task exited ({a})",
            a.allocated + a.mapped
        ));
    }
    if tasks_left != 0 {
        return Checks::Broken(format!("{tasks_left} tasks still listed after the join"));
    }
    Checks::Ok
}

/// One line per task: `comm[tgid/tid] state in wchan, SIGKILL pending`.
fn sysrq_t(tasks: &[Arc<Task>]) -> Vec<String> {
    tasks
        .iter()
        .map(|t| {
            format!(
                "{}[{}/{}] {}{}{}",
                t.comm(),
                t.tgid(),
                t.tid(),
                state::name(t.state()),
                t.wchan()
                    .map_or(String::new(), |w| format!(" in {} on {}", w.func, w.object)),
                if t.fatal_signal_pending() {
                    ", SIGKILL pending"
                } else {
                    ""
                }
            )
        })
        .collect()
}

/// [`Machine::stuck_locks`] as report lines: `mmap_lock[pid N]: why`.
fn stuck_locks(tasks: &[Arc<Task>], m: &Machine) -> Vec<String> {
    m.stuck_locks(tasks)
        .into_iter()
        .map(|(mm, why)| format!("{}: {why}", mm.name()))
        .collect()
}

/// Tasks listed in full up to this many; then a count.
const TASKS_SHOWN: usize = 20;
/// Livelock chains printed in full up to this many.
const CHAINS_SHOWN: usize = 3;

fn report(plan: &RunPlan, m: &Machine, o: &Outcome, out: &mut impl Write) -> Result<()> {
    let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let l = &o.load;
    let executor = match plan.executor {
        Executor::Threads => "threads",
        Executor::Sim => "sim",
    };
    writeln!(
        out,
        "oomlab run: {} worker threads ({} of up to {} threads) + {}, {} \
         executor, {} MiB, seed {}",
        l.threads,
        plural(u64::from(l.processes), "process", "processes"),
        l.threads_per_process,
        plural(
            u64::from(l.remote_readers),
            "remote reader",
            "remote readers"
        ),
        executor,
        plan.machine.memory_bytes >> 20,
        plan.seed
    )?;
    writeln!(out, "kernel: {}", describe_machine(&plan.machine))?;
    if let Some(msg) = m.oom.panicked() {
        writeln!(out, "Kernel panic - not syncing: {msg}")?;
    }
    let chains = m.watchdog.reports();
    for r in chains.iter().take(CHAINS_SHOWN) {
        writeln!(out, "livelock at {}:", secs(r.at_ns))?;
        for line in &r.chain {
            writeln!(out, "  {line}")?;
        }
    }
    if chains.len() > CHAINS_SHOWN {
        writeln!(out, "... {} more livelocks", chains.len() - CHAINS_SHOWN)?;
    }
    let row = |out: &mut dyn Write, k: &str, v: String| writeln!(out, "  {k:<17} {v}");
    row(out, "ending", o.ending.name().to_string())?;
    let clock = match o.wall {
        Some(w) => format!("{} wall clock", secs(w.as_nanos() as u64)),
        None => format!("{} emulated", secs(o.end_ns)),
    };
    row(
        out,
        "duration",
        format!(
            "{clock} (load stopped at {}, wound down at {}; bound {})",
            secs(l.stopped_at_ns),
            secs(l.wound_down_at_ns),
            secs(plan.duration_ns)
        ),
    )?;
    row(
        out,
        "threads",
        format!(
            "{} workers in {} + {}; {} started ({} respawns), {} tasks \
             of a budget of {}; {} threads killed, {} stopped",
            l.threads,
            plural(u64::from(l.processes), "process", "processes"),
            plural(
                u64::from(l.remote_readers),
                "remote reader",
                "remote readers"
            ),
            plural(l.processes_spawned, "process", "processes"),
            l.respawns,
            l.tasks_spawned,
            l.tasks_max,
            l.threads_killed,
            l.threads_stopped
        ),
    )?;
    row(
        out,
        "work",
        format!(
            "{} mmaps ({} failed), {} munmaps, {} pages touched, {} remote writes ({} failed)",
            l.mmaps,
            l.mmap_errors,
            l.munmaps,
            l.pages_touched,
            l.remote_ok + l.remote_failed,
            l.remote_failed
        ),
    )?;
    let st = m.oom.stats();
    row(
        out,
        "OOM kills",
        format!(
            "{} (+ {} sharers; {} dying tasks self-marked; {} selections aborted for a \
             pending victim)",
            ld(&st.oom_kill),
            ld(&st.sharer_kills),
            ld(&st.self_marked),
            ld(&st.aborts)
        ),
    )?;
    row(
        out,
        "oom_reaper",
        match &m.reaper {
            Some(r) => {
                let rs = r.stats();
                format!(
                    "{} attempts, {} reaped, {} gave up, {} already done by exit \
                     ({} pages reaped)",
                    ld(&rs.attempts),
                    ld(&rs.reaped),
                    ld(&rs.gave_up),
                    ld(&rs.skipped),
                    ld(&rs.pages_reaped)
                )
            }
            None => "off".into(),
        },
    )?;
    let wd = m.watchdog.stats();
    row(
        out,
        "livelocks",
        format!(
            "{} detected, {} sysrq kills",
            ld(&wd.livelocks),
            ld(&st.sysrq_kills)
        ),
    )?;
    row(
        out,
        "stalled episodes",
        format!(
            "{} (victims neither reaped nor torn down within {})",
            ld(&wd.stalled_episodes),
            secs(m.cfg.watchdog.window_ns)
        ),
    )?;
    let mut k2r = m.kill_to_reclaim_ns();
    k2r.sort_unstable();
    row(
        out,
        "kill→reclaim",
        match (k2r.last(), k2r.get(k2r.len() / 2)) {
            (Some(max), Some(median)) => format!(
                "max {:.1}ms, median {:.1}ms ({} of {} killed victims)",
                *max as f64 / 1e6,
                *median as f64 / 1e6,
                k2r.len(),
                m.oom.victims().iter().filter(|v| v.killed).count()
            ),
            _ => "no victim's memory came back (none killed)".into(),
        },
    )?;
    row(out, "frames", o.accounting.to_string())?;
    row(
        out,
        "conservation",
        match &o.checks {
            Checks::Ok => "ok (free + pcp + allocated + mapped == total; nothing left \
                           allocated; every task exited)"
                .into(),
            Checks::ConservedOnly => "ok (free + pcp + allocated + mapped == total); leaks not \
                                      checked: tasks are still alive"
                .into(),
            Checks::NotChecked(why) => format!("not checked: {why}"),
            Checks::Broken(e) => format!("BROKEN: {e}"),
        },
    )?;
    if !o.tasks_left.is_empty() {
        writeln!(out, "tasks left:")?;
        for t in o.tasks_left.iter().take(TASKS_SHOWN) {
            writeln!(out, "  {t}")?;
        }
        if o.tasks_left.len() > TASKS_SHOWN {
            writeln!(out, "  ... and {} more", o.tasks_left.len() - TASKS_SHOWN)?;
        }
    }
    if !o.stuck_locks.is_empty() {
        writeln!(out, "stuck locks:")?;
        for l in &o.stuck_locks {
            writeln!(out, "  {l}")?;
        }
    }
    if plan.executor == Executor::Sim {
        writeln!(
            out,
            "reproduce with: oomlab run --executor sim --seed {} (and the same flags)",
            plan.seed
        )?;
    }
    out.flush()?;
    if let Checks::Broken(e) = &o.checks {
        eprintln!(
            "oomlab: emulator invariant broken (seed {}): {e}",
            plan.seed
        );
    }
    Ok(())
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
