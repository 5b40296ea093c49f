//! Canonical OOM scenarios on the sim executor (`oomlab scenario`).
//!
//! A scenario only sets up processes and their actions (map, touch, munmap, remote reads,
//! sleeps); which tasks die, whether the reaper succeeds and whether the machine livelocks
//! emerge from the model under the configuration given. The runner boots a machine on a
//! seeded sim, runs the scenario until every workload task has exited or idles in `pause()`
//! with no kill pending (a survivor: listed, then sent away), the machine panicked, or the
//! emulated time limit passed, stops the kthreads, checks the emulator's invariants
//! (frame conservation; nothing left allocated once everything exited) and reports.

use crate::machine::{Machine, MachineConfig};
use crate::user::{exec_new_mm, Step};
use mm::memory::attach_mm;
use mm::mm_types::MmStruct;
use mm::sched::sim::{Sim, SimConfig, SimOutcome};
use mm::sched::{self};
use mm::task::{CloneKind, Task};
use serde_json::{json, Value};
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

/// Setting up a scenario: spawn processes on the sim.
pub struct Ctx<'a> {
    pub sim: &'a mut Sim,
    pub m: &'a Machine,
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
        let pool = self.m.pool.clone();
        let knobs = self.m.cfg.knobs;
        self.sim
            .spawn(
                CloneKind::Process {
                    comm: comm.to_string(),
                },
                move || {
                    sched::with_current(|t| t.group().set_oom_score_adj(adj));
                    let mm =
                        exec_new_mm(|tgid| MmStruct::new(&pool, knobs, &format!("pid {tgid}")));
                    let _ = body(mm);
                },
            )
            .expect("spawning a scenario process")
    }
}

/// `clone(CLONE_THREAD|CLONE_VM)` from inside a process: a thread sharing its mm.
pub fn spawn_thread(body: impl FnOnce(Arc<MmStruct>) -> Step + Send + 'static) -> Arc<Task> {
    let tgid = sched::with_current(|t| t.tgid());
    sched::spawn(CloneKind::Thread { tgid }, move || {
        let Some(mm) = sched::with_current(|t| t.mm()) else {
            return;
        };
        let _ = body(mm);
    })
    .expect("cloning a thread")
}

/// `clone(CLONE_VM)` without `CLONE_THREAD` from inside a process: a new process `comm`
/// sharing the caller's address space.
pub fn spawn_clone_vm(
    comm: &str,
    body: impl FnOnce(Arc<MmStruct>) -> Step + Send + 'static,
) -> Arc<Task> {
    let mm = sched::with_current(|t| t.mm()).expect("a user process");
    let adj = sched::with_current(|t| t.group().oom_score_adj());
    mm.mmget();
    sched::spawn(
        CloneKind::Process {
            comm: comm.to_string(),
        },
        move || {
            sched::with_current(|t| t.group().set_oom_score_adj(adj));
            attach_mm(&mm);
            mm::memory::mmput(&mm);
            let _ = body(mm);
        },
    )
    .expect("cloning a CLONE_VM process")
}

/// A canonical scenario.
pub struct Scenario {
    pub name: &'static str,
    /// One line for `--list`.
    pub about: &'static str,
    /// Physical memory the scenario is designed for.
    pub memory_bytes: u64,
    pub setup: fn(&mut Ctx),
}

/// How a trial ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// Every workload task exited.
    Completed,
    /// The emulated kernel panicked.
    Panicked,
    /// The emulated time limit passed with tasks left.
    TimeLimit,
    /// Nothing runnable, no timer: the modelled kernel deadlocked outright.
    Deadlock,
}

impl Ending {
    pub fn name(self) -> &'static str {
        match self {
            Ending::Completed => "completed",
            Ending::Panicked => "panicked",
            Ending::TimeLimit => "time-limit",
            Ending::Deadlock => "deadlock",
        }
    }
}

/// What a trial produced.
pub struct ScenarioResult {
    pub ending: Ending,
    pub json: Value,
    pub log: Vec<String>,
    pub summary: Vec<String>,
}

/// Run `sc` under `cfg`.
pub fn run(sc: &Scenario, cfg: &ScenarioConfig) -> Result<ScenarioResult, String> {
    let mut sim = Sim::new(SimConfig {
        seed: cfg.seed,
        max_time_ns: cfg.max_time_ns,
        ..SimConfig::default()
    });
    let m = Machine::boot_sim(&mut sim, cfg.machine.clone()).map_err(|e| e.to_string())?;
    (sc.setup)(&mut Ctx {
        sim: &mut sim,
        m: &m,
    });
    let kthreads: Vec<u32> = m.kthreads().iter().map(|t| t.tid()).collect();
    // A survivor: a workload task idle in pause() with no kill pending. It waits for nothing
    // the machine can still deliver once every other workload task is gone.
    let survivor = |t: &mm::task::Task| t.paused() && !t.fatal_signal_pending();
    // Every workload task exited (or, with `survivors_ok`, idles as a survivor).
    let workload_done = |s: &Sim, survivors_ok: bool| {
        s.tasks()
            .tasks()
            .iter()
            .all(|t| kthreads.contains(&t.tid()) || (survivors_ok && survivor(t)))
    };
    let outcome = sim.run_until(|s| m.oom.panicked().is_some() || workload_done(s, true));
    let mut ending = match outcome {
        _ if m.oom.panicked().is_some() => Ending::Panicked,
        SimOutcome::Stopped | SimOutcome::AllExited => Ending::Completed,
        SimOutcome::TimeLimit | SimOutcome::StepLimit => Ending::TimeLimit,
        SimOutcome::Deadlock(_) => Ending::Deadlock,
    };
    let end_ns = sim.now_ns();
    // The trial is over; the survivors are told to leave (a SIGKILL that is not an OOM kill)
    // so that their memory comes back and the invariants can be checked.
    let mut survivors: Vec<String> = Vec::new();
    if ending == Ending::Completed {
        for t in sim.tasks().tasks() {
            if !kthreads.contains(&t.tid()) && survivor(&t) {
                survivors.push(format!("{}[{}/{}]", t.comm(), t.tgid(), t.tid()));
                mm::task::send_sig(mm::task::Signal::Kill, &t);
            }
        }
        if !survivors.is_empty() {
            sim.run_until(|s| workload_done(s, false));
            if !workload_done(&sim, false) {
                ending = Ending::Deadlock;
            }
        }
    }
    // Locks that cannot make progress, when the trial did not complete.
    let stuck = if ending == Ending::Completed {
        Vec::new()
    } else {
        m.stuck_locks(&sim.tasks().tasks())
    };
    // Who is left, and on what they sleep (sysrq-t), when the trial did not complete.
    let leftover: Vec<String> = if ending == Ending::Completed {
        Vec::new()
    } else {
        sim.deadlock_report()
            .tasks
            .iter()
            .map(|t| {
                format!(
                    "{}[{}/{}] {}{}{}",
                    t.comm,
                    t.tgid,
                    t.tid,
                    mm::task::state::name(t.state),
                    t.wchan
                        .as_ref()
                        .map_or(String::new(), |w| format!(" in {w}")),
                    if t.fatal_signal_pending {
                        ", SIGKILL pending"
                    } else {
                        ""
                    }
                )
            })
            .collect()
    };
    if ending == Ending::Completed {
        m.stop_kthreads();
        match sim.run() {
            SimOutcome::AllExited => {}
            // The workload exited but the kthreads did not stop: reported as a deadlock,
            // with the tasks left listed in the summary.
            _ => ending = Ending::Deadlock,
        }
    }
    // Emulator invariants: crash loudly, with the seed, if the bookkeeping broke.
    if let Err(e) = m.pool.check_conservation() {
        panic!(
            "oomlab: emulator invariant broken in scenario {} (seed {}): {e}",
            sc.name, cfg.seed
        );
    }
    let acct = m.pool.accounting();
    let frames_leaked = (ending == Ending::Completed).then(|| acct.allocated + acct.mapped);
    if let Some(n) = frames_leaked {
        assert_eq!(
            n, 0,
            "oomlab: emulator bug: {n} frames still allocated after every task exited in scenario {} (seed {})",
            sc.name, cfg.seed
        );
    }
    let log: Vec<String> = m.log.lines().iter().map(|l| l.to_string()).collect();
    let victims = m.oom.victims();
    let kill_to_reclaim_ms: Vec<f64> = m
        .kill_to_reclaim_ns()
        .into_iter()
        .map(|ns| ns as f64 / 1e6)
        .collect();
    let st = m.oom.stats();
    let rs = m.reaper.as_ref().map(|r| r.stats());
    let ld = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    let wd = m.watchdog.stats();
    let c = &cfg.machine;
    let json = json!({
        "scenario": sc.name,
        "config": {
            "write_lock": c.knobs.write_lock.name(),
            "read_lock": c.knobs.read_lock.name(),
            "rwsem_model": c.knobs.rwsem_model.name(),
            "reaper": if c.reaper.is_some() { "on" } else { "off" },
            "reaper_delay_ms": c.reaper.as_ref().map_or(0, |r| r.delay_ms),
            "panic_on_oom": c.oom.panic_on_oom,
            "oom_kill_allocating_task": c.oom.oom_kill_allocating_task,
            "oom_dump_tasks": c.oom.oom_dump_tasks,
            "victim_gone_rule": c.oom.victim_gone_rule.name(),
            "memory_bytes": c.memory_bytes,
            "livelock_window_ms": c.watchdog.window_ns / 1_000_000,
        },
        "seed": cfg.seed,
        "ending": ending.name(),
        "end_time_ms": end_ns as f64 / 1e6,
        "oom_kills": ld(&st.oom_kill),
        "reaper": {
            "attempts": rs.map_or(0, |r| ld(&r.attempts)),
            "reaped": rs.map_or(0, |r| ld(&r.reaped)),
            "gave_up": rs.map_or(0, |r| ld(&r.gave_up)),
        },
        "livelocks": ld(&wd.livelocks),
        "stalled_episodes": ld(&wd.stalled_episodes),
        "sysrq_kills": ld(&st.sysrq_kills),
        "panicked": m.oom.panicked().is_some(),
        "frames_leaked": frames_leaked,
        "kill_to_reclaim_ms": kill_to_reclaim_ms,
        "victims": victims.iter().map(|v| json!({"pid": v.tgid, "comm": v.comm, "killed": v.killed, "sysrq": v.by_sysrq, "at_ms": v.marked_ns as f64 / 1e6})).collect::<Vec<_>>(),
        "tasks_left": leftover,
        "survivors": survivors,
        "stuck_locks": stuck.iter().map(|(mm, why)| json!({"lock": mm.name().to_string(), "why": why})).collect::<Vec<_>>(),
        "livelock_chains": m.watchdog.reports().iter().map(|r| json!({"at_ms": r.at_ns as f64 / 1e6, "chain": r.chain})).collect::<Vec<_>>(),
        "log": log,
    });
    let mut summary = vec![format!(
        "{}: {} at {:.3}s (seed {}): {} OOM kill(s), {} sysrq kill(s), {} livelock(s), {} stalled episode(s){}",
        sc.name,
        ending.name(),
        end_ns as f64 / 1e9,
        cfg.seed,
        ld(&st.oom_kill),
        ld(&st.sysrq_kills),
        ld(&wd.livelocks),
        ld(&wd.stalled_episodes),
        if m.oom.panicked().is_some() { ", panicked" } else { "" }
    )];
    if let Some(r) = rs {
        summary.push(format!(
            "oom_reaper: {} attempt(s), {} reaped, {} gave up",
            ld(&r.attempts),
            ld(&r.reaped),
            ld(&r.gave_up)
        ));
    }
    if !kill_to_reclaim_ms.is_empty() {
        summary.push(format!("kill → reclaim (ms): {kill_to_reclaim_ms:?}"));
    }
    if !survivors.is_empty() {
        summary.push(format!(
            "survivors (idle in pause(), sent away after the trial): {}",
            survivors.join(" ")
        ));
    }
    if !leftover.is_empty() {
        summary.push("tasks left at the end:".into());
        summary.extend(leftover.iter().map(|l| format!("  {l}")));
        for v in &victims {
            let raw = v.mm.mmap_lock.raw();
            summary.push(format!(
                "  victim {} mmap_lock: count={:#x} owner={:?} waiters={:?} mm_users={}",
                v.tgid,
                raw.count(),
                raw.owner(),
                raw.waiters(),
                v.mm.mm_users()
            ));
        }
        for (mm, why) in &stuck {
            summary.push(format!("  stuck: {}: {why}", mm.name()));
        }
    }
    for r in m.watchdog.reports() {
        summary.push(format!("livelock at {:.3}s:", r.at_ns as f64 / 1e9));
        summary.extend(r.chain.iter().map(|l| format!("  {l}")));
    }
    Ok(ScenarioResult {
        ending,
        json,
        log,
        summary,
    })
}
