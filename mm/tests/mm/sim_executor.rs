//! Integration tests of the scheduler seam on the deterministic sim executor.
//!
//! Everything here is exact: the sim has a virtual clock and a seeded picker, so the tests assert
//! precise step results, step counts and virtual times rather than timing windows.

use crate::common::{panic_message, process, thread, Log};
use mm::sched::sim::{Sim, SimConfig, SimOutcome, StepError, StepResult, TraceEvent};
use mm::sched::{
    self, cond_resched, current, flush_signals, hz, jiffies, ktime_get_ns, msecs_to_jiffies,
    schedule, schedule_timeout, schedule_timeout_interruptible, schedule_timeout_killable,
    schedule_timeout_uninterruptible, set_current_state, signal_pending, wake_up_process,
    MAX_SCHEDULE_TIMEOUT,
};
use mm::task::state::{self, *};
use mm::task::{kill_thread_group, send_sig, CloneError, Signal, Tid};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

fn sim_with(seed: u64, hz: u32) -> Sim {
    Sim::new(SimConfig {
        seed,
        hz,
        ..Default::default()
    })
}

/// Step `tid` until it blocks or exits; returns every step result. Panics if it runs more than
/// `max` steps.
fn step_until_stops(sim: &mut Sim, tid: Tid, max: usize) -> Vec<StepResult> {
    let mut out = Vec::new();
    for _ in 0..max {
        let r = sim.step(tid).expect("task must be steppable");
        out.push(r);
        if r != StepResult::Yielded {
            return out;
        }
    }
    panic!("task {tid} still yielding after {max} steps: {out:?}");
}

// ---- determinism -------------------------------------------------------------------------

#[derive(Debug, PartialEq)]
struct RunRecord {
    outcome: SimOutcome,
    hash: u64,
    trace: Vec<TraceEvent>,
    /// (tid, round, value, jiffies) as observed by the tasks themselves.
    log: Vec<(Tid, u32, u64, u64)>,
    steps: u64,
    now_ns: u64,
}

/// ~20 tasks that yield, sleep with timeouts, wake each other and spawn children.
fn workload(seed: u64, trace: bool) -> RunRecord {
    const N: u32 = 20;
    let mut sim = Sim::new(SimConfig {
        seed,
        hz: 1000,
        trace,
        ..Default::default()
    });
    let tl = sim.tasks().clone();
    let log: Log<(Tid, u32, u64, u64)> = Log::new();
    for i in 0..N {
        let tl = tl.clone();
        let log = log.clone();
        sim.spawn(process(&format!("w{i}")), move || {
            let me = current().tid();
            for round in 0..12u32 {
                let v: u64 = match (i * 7 + round * 3) % 5 {
                    0 => {
                        cond_resched();
                        0
                    }
                    1 => schedule_timeout_interruptible(1 + ((i + round) % 5) as u64),
                    2 => {
                        let peer = 1 + (i + round + 1) % N;
                        match tl.find_task(peer) {
                            Some(p) => wake_up_process(&p) as u64,
                            None => 2,
                        }
                    }
                    3 => {
                        set_current_state(TASK_INTERRUPTIBLE);
                        schedule_timeout(20)
                    }
                    _ if round == 4 => {
                        let log = log.clone();
                        let child = sched::spawn(process("child"), move || {
                            let me = current().tid();
                            for r in 0..3 {
                                cond_resched();
                                log.push((me, 100 + r, 0, jiffies()));
                            }
                        })
                        .expect("spawn from a task");
                        child.tid() as u64
                    }
                    _ => {
                        cond_resched();
                        cond_resched();
                        1
                    }
                };
                log.push((me, round, v, jiffies()));
            }
        })
        .unwrap();
    }
    let outcome = sim.run();
    RunRecord {
        outcome,
        hash: sim.trace_hash(),
        trace: sim.trace().to_vec(),
        log: log.snapshot(),
        steps: sim.steps(),
        now_ns: sim.now_ns(),
    }
}

#[test]
fn same_seed_gives_identical_trace() {
    let a = workload(42, true);
    let b = workload(42, true);
    assert_eq!(a.outcome, SimOutcome::AllExited);
    assert!(a.steps > 200, "workload too small: {} steps", a.steps);
    assert_eq!(a.trace.len() as u64, a.steps, "trace: one event per step");
    // Trace events are numbered 1.. and the clock never runs backwards.
    for (k, ev) in a.trace.iter().enumerate() {
        assert_eq!(ev.step, k as u64 + 1);
    }
    assert!(a.trace.windows(2).all(|w| w[0].now_ns <= w[1].now_ns));
    // Children were spawned by tasks (tids beyond the 20 initial ones) and ran.
    assert!(a.trace.iter().any(|e| e.tid > 20));
    // Every task's rounds are all logged.
    assert_eq!(
        a.log.iter().filter(|e| e.0 <= 20 && e.1 < 100).count(),
        20 * 12
    );

    assert_eq!(a.hash, b.hash);
    assert_eq!(a.trace, b.trace);
    assert_eq!(a.log, b.log);
    assert_eq!(a, b);
}

#[test]
fn tracing_does_not_change_the_run() {
    let with = workload(9, true);
    let without = workload(9, false);
    assert!(without.trace.is_empty());
    assert_eq!(with.hash, without.hash);
    assert_eq!(with.log, without.log);
    assert_eq!(with.now_ns, without.now_ns);
}

#[test]
fn different_seeds_give_different_traces() {
    let runs: Vec<RunRecord> = (1..=6).map(|s| workload(s, false)).collect();
    for r in &runs {
        assert_eq!(r.outcome, SimOutcome::AllExited);
    }
    let hashes: HashSet<u64> = runs.iter().map(|r| r.hash).collect();
    assert!(
        hashes.len() >= 2,
        "6 seeds gave only {} distinct trace hash(es)",
        hashes.len()
    );
    let logs: HashSet<Vec<(Tid, u32, u64, u64)>> = runs.iter().map(|r| r.log.clone()).collect();
    assert!(logs.len() >= 2, "the seed does not change the interleaving");
}

#[test]
fn parallel_trials_are_deterministic() {
    // One executor per OS thread, concurrently: thread-locals must not leak between them.
    let reference = workload(1234, true);
    let hs: Vec<_> = (0..2)
        .map(|_| std::thread::spawn(|| workload(1234, true)))
        .collect();
    for h in hs {
        let r = h.join().unwrap();
        assert_eq!(r.hash, reference.hash);
        assert_eq!(r.trace, reference.trace);
        assert_eq!(r.log, reference.log);
    }
}

// ---- virtual clock -----------------------------------------------------------------------

#[test]
fn schedule_timeout_uninterruptible_advances_jiffies() {
    for hz_cfg in [100u32, 250, 1000] {
        for j in [1u64, 7, 50] {
            let mut sim = sim_with(3, hz_cfg);
            let out = Log::new();
            let o = out.clone();
            sim.spawn(process("sleeper"), move || {
                let (j0, n0) = (jiffies(), ktime_get_ns());
                let left = schedule_timeout_uninterruptible(j);
                o.push((left, j0, jiffies(), n0, ktime_get_ns(), hz()));
            })
            .unwrap();
            assert_eq!(sim.run(), SimOutcome::AllExited);
            let (left, j0, j1, n0, n1, h) = out.snapshot()[0];
            let ctx = format!("HZ={hz_cfg} j={j}");
            assert_eq!(h, hz_cfg, "{ctx}");
            assert_eq!(left, 0, "{ctx}: timer fired, nothing left");
            assert!(j1 - j0 >= j, "{ctx}: jiffies advanced {}", j1 - j0);
            // The clock jumps exactly to the timer (plus one step cost).
            assert!(j1 - j0 <= j + 1, "{ctx}: jiffies advanced {}", j1 - j0);
            let ns_per_jiffy = 1_000_000_000 / hz_cfg as u64;
            assert!(n1 - n0 >= j * ns_per_jiffy, "{ctx}");
            assert_eq!(sim.steps(), 2, "{ctx}: sleep step + wake step");
        }
    }
}

#[test]
fn timed_sleep_among_busy_tasks_still_waits_its_timeout() {
    let mut sim = sim_with(5, 1000);
    let out = Log::new();
    let o = out.clone();
    sim.spawn(process("sleeper"), move || {
        let j0 = jiffies();
        let left = schedule_timeout_uninterruptible(5);
        o.push((left, jiffies() - j0));
    })
    .unwrap();
    for _ in 0..3 {
        // 3 × 4000 steps × 1 µs = 12 ms of virtual time, more than the 5 ms sleep.
        sim.spawn(process("busy"), || {
            for _ in 0..4000 {
                cond_resched();
            }
        })
        .unwrap();
    }
    assert_eq!(sim.run(), SimOutcome::AllExited);
    let (left, waited) = out.snapshot()[0];
    assert_eq!(left, 0);
    assert!(waited >= 5, "woke after {waited} jiffies");
}

#[test]
fn clock_jumps_when_nothing_is_runnable() {
    let mut sim = sim_with(11, 100);
    let out = Arc::new(AtomicU64::new(u64::MAX));
    let o = out.clone();
    sim.spawn(process("sleeper"), move || {
        o.store(schedule_timeout_uninterruptible(10 * 100), Ordering::SeqCst); // 10 s
    })
    .unwrap();
    assert_eq!(sim.run(), SimOutcome::AllExited);
    assert_eq!(out.load(Ordering::SeqCst), 0);
    assert!(sim.steps() <= 3, "took {} steps", sim.steps());
    assert!(sim.now_ns() >= 10_000_000_000);
    assert!(
        sim.now_ns() <= 10_000_000_000 + 10 * sim.config().step_cost_ns,
        "clock at {} ns",
        sim.now_ns()
    );
}

#[test]
fn jiffies_and_ktime_agree() {
    for hz_cfg in [100u32, 300, 1000] {
        let mut sim = sim_with(2, hz_cfg);
        let step_cost = sim.config().step_cost_ns;
        let reads = Log::new();
        let r = reads.clone();
        sim.spawn(process("clock"), move || {
            let p = 1_000_000_000 / hz() as u64;
            for i in 0..40u64 {
                let (ns, j) = (ktime_get_ns(), jiffies());
                assert_eq!(j, ns / p, "jiffies = ktime / (NSEC_PER_SEC / HZ)");
                r.push(ns);
                if i % 4 == 3 {
                    schedule_timeout_uninterruptible(i % 7 + 1);
                } else {
                    cond_resched();
                }
            }
            r.push(ktime_get_ns());
        })
        .unwrap();
        assert_eq!(sim.run(), SimOutcome::AllExited);
        let ns = reads.snapshot();
        assert!(ns.windows(2).all(|w| w[0] <= w[1]), "ktime is monotonic");
        // A lone task's consecutive cond_resched() steps each cost exactly `step_cost_ns`.
        assert_eq!(ns[1] - ns[0], step_cost);
        assert_eq!(ns[2] - ns[1], step_cost);
        // The last read happened in the last step: the sim clock has not moved since.
        assert_eq!(*ns.last().unwrap(), sim.now_ns());
    }
}

#[test]
fn msecs_to_jiffies_rounds_up() {
    let mut sim = sim_with(0, 100);
    let out = Log::new();
    let o = out.clone();
    sim.spawn(process("m"), move || {
        o.push((
            msecs_to_jiffies(0),
            msecs_to_jiffies(10),
            msecs_to_jiffies(15),
            msecs_to_jiffies(1000),
        ));
    })
    .unwrap();
    assert_eq!(sim.run(), SimOutcome::AllExited);
    assert_eq!(out.snapshot()[0], (0, 1, 2, 100));
}

// ---- deadlock detection ------------------------------------------------------------------

#[test]
fn two_uninterruptible_sleepers_are_a_deadlock() {
    let mut sim = sim_with(77, 1000);
    for name in ["a", "b"] {
        sim.spawn(process(name), || {
            set_current_state(TASK_UNINTERRUPTIBLE);
            schedule();
            unreachable!("nobody wakes us");
        })
        .unwrap();
    }
    let SimOutcome::Deadlock(rep) = sim.run() else {
        panic!("expected a deadlock")
    };
    assert_eq!(sim.steps(), 2, "detected at once, without spinning");
    assert_eq!(rep.seed, 77);
    let tids: Vec<Tid> = rep.tasks.iter().map(|t| t.tid).collect();
    assert_eq!(tids, vec![1, 2]);
    for t in &rep.tasks {
        assert_eq!(t.state, TASK_UNINTERRUPTIBLE);
        assert_eq!(state::letter(t.state), 'D');
        assert!(!t.fatal_signal_pending);
        assert_eq!(t.tgid, t.tid);
    }
    assert_eq!(rep.tasks[0].comm, "a");
    let text = rep.to_string();
    assert!(text.contains("a[1/1] D (TASK_UNINTERRUPTIBLE)"), "{text}");
    assert!(text.contains("b[2/2] D (TASK_UNINTERRUPTIBLE)"), "{text}");
    assert!(sim.is_blocked(1) && sim.is_blocked(2));
    assert_eq!(sim.nr_live(), 2);
}

#[test]
fn a_pending_timer_is_not_a_deadlock() {
    // The waker sleeps on a timer while the sleeper has no timer: not a deadlock.
    let mut sim = sim_with(1, 1000);
    let woke = Arc::new(AtomicBool::new(false));
    let w = woke.clone();
    let sleeper = sim
        .spawn(process("sleeper"), move || {
            set_current_state(TASK_UNINTERRUPTIBLE);
            schedule();
            w.store(true, Ordering::SeqCst);
        })
        .unwrap();
    sim.spawn(process("waker"), move || {
        schedule_timeout_uninterruptible(1000); // 1 s
        assert!(wake_up_process(&sleeper));
    })
    .unwrap();
    assert_eq!(sim.run(), SimOutcome::AllExited);
    assert!(woke.load(Ordering::SeqCst));
    assert!(sim.now_ns() >= 1_000_000_000);
}

// ---- signals and sleep states ------------------------------------------------------------

#[test]
fn killable_sleeper_is_woken_by_sigkill_from_another_task() {
    for seed in 0..8 {
        let mut sim = sim_with(seed, 1000);
        let tl = sim.tasks().clone();
        let seen = Log::new();
        let s = seen.clone();
        sim.spawn(process("victim"), move || {
            set_current_state(TASK_KILLABLE);
            schedule();
            let me = current();
            s.push((
                me.state(),
                me.fatal_signal_pending(),
                me.group().group_exit(),
            ));
        })
        .unwrap();
        sim.spawn(process("killer"), move || {
            let victim = tl.find_task(1).unwrap();
            while victim.state() != TASK_KILLABLE {
                cond_resched();
            }
            send_sig(Signal::Kill, &victim);
        })
        .unwrap();
        assert_eq!(sim.run(), SimOutcome::AllExited, "seed {seed}");
        assert_eq!(seen.snapshot(), vec![(TASK_RUNNING, true, true)]);
    }
}

#[test]
fn killable_sleeper_woken_by_sigkill_scripted() {
    let mut sim = sim_with(0, 1000);
    let victim = sim
        .spawn(process("victim"), || {
            set_current_state(TASK_KILLABLE);
            schedule();
            assert!(sched::fatal_signal_pending());
        })
        .unwrap();
    let v = victim.clone();
    let killer = sim
        .spawn(process("killer"), move || send_sig(Signal::Kill, &v))
        .unwrap();
    assert_eq!(sim.step(victim.tid()), Ok(StepResult::Blocked));
    assert!(sim.is_blocked(victim.tid()));
    assert_eq!(victim.state(), TASK_KILLABLE);
    assert_eq!(sim.step(killer.tid()), Ok(StepResult::Exited));
    assert!(sim.is_runnable(victim.tid()));
    assert_eq!(victim.state(), TASK_RUNNING);
    assert_eq!(sim.step(victim.tid()), Ok(StepResult::Exited));
}

#[test]
fn uninterruptible_sleeper_is_not_woken_by_sigkill() {
    let mut sim = sim_with(0, 1000);
    let after = Log::new();
    let a = after.clone();
    let victim = sim
        .spawn(process("victim"), move || {
            set_current_state(TASK_UNINTERRUPTIBLE);
            schedule();
            a.push(sched::fatal_signal_pending());
        })
        .unwrap();
    let v = victim.clone();
    let killer = sim
        .spawn(process("killer"), move || send_sig(Signal::Kill, &v))
        .unwrap();
    assert_eq!(sim.step(victim.tid()), Ok(StepResult::Blocked));
    assert_eq!(sim.step(killer.tid()), Ok(StepResult::Exited));
    // SIGKILL is pending, the group is exiting, but a D sleeper stays asleep.
    assert!(victim.fatal_signal_pending());
    assert!(victim.group().group_exit());
    assert!(sim.is_blocked(victim.tid()));
    assert!(!sim.is_runnable(victim.tid()));
    assert_eq!(victim.state(), TASK_UNINTERRUPTIBLE);
    assert_eq!(
        sim.step(victim.tid()),
        Err(StepError::NotRunnable(victim.tid()))
    );
    // The picker sees the same thing: a deadlock, with the pending SIGKILL reported.
    let SimOutcome::Deadlock(rep) = sim.run() else {
        panic!("expected a deadlock")
    };
    assert_eq!(rep.tasks.len(), 1);
    assert_eq!(rep.tasks[0].tid, victim.tid());
    assert!(rep.tasks[0].fatal_signal_pending);
    assert!(rep.to_string().contains("SIGKILL pending"));
    // An explicit wake-up does wake it.
    assert!(wake_up_process(&victim));
    assert_eq!(sim.run(), SimOutcome::AllExited);
    assert_eq!(after.snapshot(), vec![true]);
}

#[test]
fn other_signal_wakes_interruptible_but_not_killable() {
    let mut sim = sim_with(0, 1000);
    let seen = Log::new();
    let (s1, s2) = (seen.clone(), seen.clone());
    let intr = sim
        .spawn(process("intr"), move || {
            set_current_state(TASK_INTERRUPTIBLE);
            schedule();
            s1.push(("intr", signal_pending(), sched::fatal_signal_pending()));
        })
        .unwrap();
    let kill = sim
        .spawn(process("killable"), move || {
            set_current_state(TASK_KILLABLE);
            schedule();
            s2.push(("killable", signal_pending(), sched::fatal_signal_pending()));
        })
        .unwrap();
    let (i2, k2) = (intr.clone(), kill.clone());
    let sender = sim
        .spawn(process("sender"), move || {
            send_sig(Signal::Other, &i2);
            send_sig(Signal::Other, &k2);
        })
        .unwrap();
    assert_eq!(sim.step(intr.tid()), Ok(StepResult::Blocked));
    assert_eq!(sim.step(kill.tid()), Ok(StepResult::Blocked));
    assert_eq!(sim.step(sender.tid()), Ok(StepResult::Exited));
    assert!(sim.is_runnable(intr.tid()), "S sleeper woken by a signal");
    assert!(
        sim.is_blocked(kill.tid()),
        "killable sleeper ignores SIGUSR1"
    );
    assert!(kill.signal_pending() && !kill.fatal_signal_pending());
    assert_eq!(sim.step(intr.tid()), Ok(StepResult::Exited));
    assert_eq!(
        sim.step(kill.tid()),
        Err(StepError::NotRunnable(kill.tid()))
    );
    // SIGKILL does wake it.
    send_sig(Signal::Kill, &kill);
    assert_eq!(sim.step(kill.tid()), Ok(StepResult::Exited));
    assert_eq!(
        seen.snapshot(),
        vec![("intr", true, false), ("killable", true, true)]
    );
}

#[test]
fn flush_signals_lets_an_interruptible_task_sleep_again() {
    let mut sim = sim_with(0, 1000);
    let t = sim
        .spawn(process("t"), || {
            send_sig(Signal::Other, &current());
            set_current_state(TASK_INTERRUPTIBLE);
            schedule(); // returns at once: signal pending
            assert_eq!(current().state(), TASK_RUNNING);
            assert!(signal_pending(), "schedule() does not consume signals");
            flush_signals();
            assert!(!signal_pending());
            set_current_state(TASK_INTERRUPTIBLE);
            schedule(); // now it sleeps
        })
        .unwrap();
    let rs = step_until_stops(&mut sim, t.tid(), 10);
    assert_eq!(rs.last(), Some(&StepResult::Blocked));
    assert_eq!(t.state(), TASK_INTERRUPTIBLE);
    assert!(wake_up_process(&t));
    assert_eq!(sim.run(), SimOutcome::AllExited);
}

#[test]
fn sigkill_to_one_thread_kills_the_whole_thread_group() {
    let mut sim = sim_with(4, 1000);
    let tl = sim.tasks().clone();
    let woke: Log<(Tid, bool)> = Log::new();
    let sleep_killable = |woke: Log<(Tid, bool)>| {
        move || {
            set_current_state(TASK_KILLABLE);
            schedule();
            woke.push((current().tid(), sched::fatal_signal_pending()));
        }
    };
    let w = woke.clone();
    // tid 1: the process leader; it spawns two threads (tids 4 and 5) and sleeps.
    let leader = sim
        .spawn(process("victim"), move || {
            let tgid = current().tgid();
            for _ in 0..2 {
                let t = sched::spawn(thread(tgid), sleep_killable(w.clone())).unwrap();
                assert_eq!(t.tgid(), tgid);
            }
            sleep_killable(w)();
        })
        .unwrap();
    let bystander = sim
        .spawn(process("bystander"), sleep_killable(woke.clone()))
        .unwrap();
    let tl2 = tl.clone();
    let killer = sim
        .spawn(process("killer"), move || {
            // Wait until the four others sleep, then kill one non-leader thread.
            loop {
                let asleep = tl2
                    .tasks()
                    .iter()
                    .filter(|t| t.state() == TASK_KILLABLE)
                    .count();
                if asleep == 4 {
                    break;
                }
                cond_resched();
            }
            let victim_thread = tl2.find_task(5).expect("thread 5");
            assert_eq!(victim_thread.tgid(), 1);
            send_sig(Signal::Kill, &victim_thread);
            // clone(CLONE_THREAD) into an exiting group fails.
            assert_eq!(
                sched::spawn(thread(1), || {}).unwrap_err(),
                CloneError::NoSuchProcess(1)
            );
        })
        .unwrap();
    assert_eq!(killer.tid(), 3);
    let group = leader.group().clone();
    assert_eq!(group.tgid(), 1);

    // The whole victim group wakes and exits; the bystander still sleeps.
    let SimOutcome::Deadlock(rep) = sim.run() else {
        panic!("expected only the bystander to be left asleep")
    };
    assert!(group.group_exit());
    assert!(!bystander.group().group_exit());
    assert_eq!(rep.tasks.len(), 1);
    assert_eq!(rep.tasks[0].tid, bystander.tid());
    assert!(!rep.tasks[0].fatal_signal_pending);
    let mut w = woke.snapshot();
    w.sort();
    assert_eq!(w, vec![(1, true), (4, true), (5, true)]);
    assert!(
        tl.find_process(1).is_none(),
        "group released with its last thread"
    );

    // kill(2) form on the bystander.
    kill_thread_group(Signal::Kill, bystander.group());
    assert_eq!(sim.run(), SimOutcome::AllExited);
    assert_eq!(woke.len(), 4);
    assert_eq!(tl.nr_tasks(), 0);
}

#[test]
fn non_fatal_signals_target_one_thread() {
    let mut sim = sim_with(0, 1000);
    let leader = sim
        .spawn(process("p"), || {
            set_current_state(TASK_INTERRUPTIBLE);
            schedule();
        })
        .unwrap();
    let thr = sim
        .spawn(thread(leader.tgid()), || {
            set_current_state(TASK_INTERRUPTIBLE);
            schedule();
        })
        .unwrap();
    assert_eq!(sim.step(1), Ok(StepResult::Blocked));
    assert_eq!(sim.step(2), Ok(StepResult::Blocked));
    // tgkill(thread, SIGUSR1): only that thread.
    send_sig(Signal::Other, &thr);
    assert!(thr.signal_pending() && !leader.signal_pending());
    assert!(sim.is_runnable(2) && sim.is_blocked(1));
    // kill(pid, SIGUSR1): one thread (the leader here), never a group exit.
    kill_thread_group(Signal::Other, leader.group());
    assert!(leader.signal_pending() && !leader.fatal_signal_pending());
    assert!(sim.is_runnable(1));
    assert!(!leader.group().group_exit());
    assert_eq!(sim.run(), SimOutcome::AllExited);
}

#[test]
fn schedule_with_matching_signal_pending_does_not_sleep() {
    // (signal, sleep state, whether schedule() must sleep)
    let cases = [
        (Signal::Other, TASK_INTERRUPTIBLE, false),
        (Signal::Kill, TASK_INTERRUPTIBLE, false),
        (Signal::Kill, TASK_KILLABLE, false),
        (Signal::Other, TASK_KILLABLE, true),
        (Signal::Other, TASK_UNINTERRUPTIBLE, true),
        (Signal::Kill, TASK_UNINTERRUPTIBLE, true),
    ];
    for (sig, st, must_sleep) in cases {
        let ctx = format!("{sig:?} pending, {}", state::name(st));
        let mut sim = sim_with(0, 1000);
        let after = Log::new();
        let a = after.clone();
        let t = sim
            .spawn(process("t"), move || {
                send_sig(sig, &current());
                set_current_state(st);
                schedule();
                let me = current();
                a.push((me.state(), me.signal_pending()));
            })
            .unwrap();
        let rs = step_until_stops(&mut sim, t.tid(), 10);
        if must_sleep {
            assert_eq!(rs.last(), Some(&StepResult::Blocked), "{ctx}");
            assert!(sim.is_blocked(t.tid()), "{ctx}");
            assert_eq!(t.state(), st, "{ctx}");
            assert!(after.snapshot().is_empty(), "{ctx}");
        } else {
            assert_eq!(rs.last(), Some(&StepResult::Exited), "{ctx}: {rs:?}");
            assert!(!rs.contains(&StepResult::Blocked), "{ctx}");
            assert_eq!(after.snapshot(), vec![(TASK_RUNNING, true)], "{ctx}");
        }
    }
}

#[test]
fn schedule_timeout_with_pending_signal_returns_full_timeout() {
    let mut sim = sim_with(0, 1000);
    let out = Log::new();
    let o = out.clone();
    sim.spawn(process("t"), move || {
        send_sig(Signal::Kill, &current());
        let j0 = jiffies();
        let k = schedule_timeout_killable(500);
        let i = schedule_timeout_interruptible(400);
        let j1 = jiffies();
        o.push((k, i, j1 - j0));
    })
    .unwrap();
    assert_eq!(sim.run(), SimOutcome::AllExited);
    let (k, i, waited) = out.snapshot()[0];
    assert_eq!((k, i), (500, 400), "nothing slept");
    assert!(waited <= 1, "no virtual time passed beyond step costs");
}

#[test]
fn schedule_timeout_woken_early_returns_remaining() {
    let mut sim = sim_with(0, 1000);
    let out = Arc::new(AtomicU64::new(u64::MAX));
    let o = out.clone();
    let t = sim
        .spawn(process("t"), move || {
            o.store(schedule_timeout_interruptible(100), Ordering::SeqCst);
            // A second sleep without a timer: the first sleep's timer must be dead.
            set_current_state(TASK_UNINTERRUPTIBLE);
            schedule();
        })
        .unwrap();
    assert_eq!(sim.step(t.tid()), Ok(StepResult::Blocked));
    sim.advance_time(40_000_000); // 40 jiffies
    assert!(sim.is_blocked(t.tid()));
    assert!(wake_up_process(&t));
    assert_eq!(sim.step(t.tid()), Ok(StepResult::Blocked));
    let left = out.load(Ordering::SeqCst);
    assert!((59..=60).contains(&left), "left {left}");
    // del_timer_sync(): the stale timer neither fires nor counts as pending.
    sim.advance_time(1_000_000_000); // well past the old 100 ms deadline
    assert!(sim.is_blocked(t.tid()), "a stale timer woke the task");
    assert!(!sim.advance_to_next_timer());
    assert!(sim.is_blocked(t.tid()));
    assert!(matches!(sim.run(), SimOutcome::Deadlock(_)));
}

#[test]
fn wake_up_between_set_current_state_and_schedule_is_not_lost() {
    let mut sim = sim_with(0, 1000);
    let log: Log<&'static str> = Log::new();
    let l = log.clone();
    let sleeper = sim
        .spawn(process("sleeper"), move || {
            set_current_state(TASK_UNINTERRUPTIBLE);
            cond_resched(); // the waker runs here, before schedule()
            schedule();
            l.push("sleeper past schedule");
        })
        .unwrap();
    let s = sleeper.clone();
    let l = log.clone();
    let waker = sim
        .spawn(process("waker"), move || {
            let r = wake_up_process(&s);
            l.push(if r { "woke" } else { "missed" });
            // Waking a running task is a no-op.
            assert!(!wake_up_process(&s));
        })
        .unwrap();
    assert_eq!(sim.step(sleeper.tid()), Ok(StepResult::Yielded));
    assert_eq!(sleeper.state(), TASK_UNINTERRUPTIBLE);
    assert_eq!(sim.step(waker.tid()), Ok(StepResult::Exited));
    assert_eq!(sleeper.state(), TASK_RUNNING);
    let rs = step_until_stops(&mut sim, sleeper.tid(), 5);
    assert_eq!(rs.last(), Some(&StepResult::Exited), "{rs:?}");
    assert!(!rs.contains(&StepResult::Blocked));
    assert_eq!(log.snapshot(), vec!["woke", "sleeper past schedule"]);
}

#[test]
fn flag_handshake_never_loses_a_wakeup_under_random_picking() {
    // The kernel's canonical wait loop against a waker, for many seeds.
    for seed in 0..64 {
        let mut sim = sim_with(seed, 1000);
        let flag = Arc::new(AtomicBool::new(false));
        let f = flag.clone();
        let sleeper = sim
            .spawn(process("sleeper"), move || loop {
                set_current_state(TASK_UNINTERRUPTIBLE);
                if f.load(Ordering::SeqCst) {
                    set_current_state(TASK_RUNNING);
                    break;
                }
                cond_resched();
                schedule();
            })
            .unwrap();
        sim.spawn(process("waker"), move || {
            for _ in 0..(seed % 4) {
                cond_resched();
            }
            flag.store(true, Ordering::SeqCst);
            wake_up_process(&sleeper);
        })
        .unwrap();
        assert_eq!(sim.run(), SimOutcome::AllExited, "seed {seed}");
    }
}

// ---- scripted stepping -------------------------------------------------------------------

#[test]
fn step_runs_exactly_to_the_next_yield_or_blocking_point() {
    let mut sim = sim_with(0, 1000);
    let c = Arc::new(AtomicU32::new(0));
    let c2 = c.clone();
    let t = sim
        .spawn(process("stepper"), move || {
            for i in 1..=3 {
                c2.store(i, Ordering::SeqCst);
                cond_resched();
            }
            c2.store(10, Ordering::SeqCst);
            set_current_state(TASK_UNINTERRUPTIBLE);
            schedule();
            c2.store(20, Ordering::SeqCst);
        })
        .unwrap();
    let tid = t.tid();
    assert_eq!(tid, 1);
    assert!(sim.is_runnable(tid) && !sim.is_blocked(tid));
    assert_eq!(c.load(Ordering::SeqCst), 0, "spawn does not run the task");
    for i in 1..=3 {
        assert_eq!(sim.step(tid), Ok(StepResult::Yielded));
        assert_eq!(c.load(Ordering::SeqCst), i);
        assert!(sim.is_runnable(tid));
    }
    assert_eq!(sim.step(tid), Ok(StepResult::Blocked));
    assert_eq!(c.load(Ordering::SeqCst), 10);
    assert!(sim.is_blocked(tid) && !sim.is_runnable(tid));
    assert_eq!(sim.step(tid), Err(StepError::NotRunnable(tid)));
    assert_eq!(c.load(Ordering::SeqCst), 10, "a refused step runs nothing");
    assert!(wake_up_process(&t));
    assert!(sim.is_runnable(tid));
    assert_eq!(sim.step(tid), Ok(StepResult::Exited));
    assert_eq!(c.load(Ordering::SeqCst), 20);
    assert!(sim.has_exited(tid) && !sim.is_runnable(tid) && !sim.is_blocked(tid));
    assert!(t.has_exited());
    assert_eq!(t.state(), TASK_DEAD);
    assert_eq!(sim.step(tid), Err(StepError::Exited(tid)));
    assert_eq!(sim.step(99), Err(StepError::NoSuchTask(99)));
    assert_eq!(sim.step(0), Err(StepError::NoSuchTask(0)));
    assert_eq!(sim.steps(), 5, "refused steps are not counted");
    assert_eq!(sim.nr_live(), 0);
    assert_eq!(sim.run(), SimOutcome::AllExited);
}

#[test]
fn scripted_interleaving_is_followed_exactly() {
    let mut sim = Sim::new(SimConfig {
        trace: true,
        ..Default::default()
    });
    let log: Log<(Tid, u32)> = Log::new();
    for _ in 0..3 {
        let l = log.clone();
        sim.spawn(process("t"), move || {
            let me = current().tid();
            for k in 0..4 {
                l.push((me, k));
                cond_resched();
            }
        })
        .unwrap();
    }
    let script: [Tid; 8] = [3, 1, 1, 2, 3, 3, 1, 2];
    for tid in script {
        assert_eq!(sim.step(tid), Ok(StepResult::Yielded));
    }
    let expect = vec![
        (3, 0),
        (1, 0),
        (1, 1),
        (2, 0),
        (3, 1),
        (3, 2),
        (1, 2),
        (2, 1),
    ];
    assert_eq!(log.snapshot(), expect);
    let traced: Vec<Tid> = sim.trace().iter().map(|e| e.tid).collect();
    assert_eq!(traced, script.to_vec());
    assert_eq!(sim.run(), SimOutcome::AllExited);
    assert_eq!(log.len(), 12);
}

#[test]
fn scripted_timers_fire_when_time_is_advanced() {
    let mut sim = sim_with(0, 1000);
    let out = Arc::new(AtomicU64::new(u64::MAX));
    let o = out.clone();
    let t = sim
        .spawn(process("t"), move || {
            o.store(schedule_timeout_uninterruptible(5), Ordering::SeqCst);
        })
        .unwrap();
    assert!(!sim.advance_to_next_timer(), "no timer yet");
    assert_eq!(sim.step(t.tid()), Ok(StepResult::Blocked));
    // The step began at 1 µs (one step cost): the deadline is 5.001 ms.
    sim.advance_time(4_000_000);
    assert!(sim.is_blocked(t.tid()));
    assert_eq!(sim.step(t.tid()), Err(StepError::NotRunnable(t.tid())));
    sim.advance_time(1_000_000);
    assert!(sim.is_runnable(t.tid()), "timer fired");
    assert_eq!(sim.step(t.tid()), Ok(StepResult::Exited));
    assert_eq!(out.load(Ordering::SeqCst), 0);

    // advance_to_next_timer() jumps exactly to the deadline.
    let t2 = sim
        .spawn(process("t2"), || {
            schedule_timeout_uninterruptible(1000);
        })
        .unwrap();
    assert_eq!(sim.step(t2.tid()), Ok(StepResult::Blocked));
    let before = sim.now_ns();
    assert!(sim.advance_to_next_timer());
    assert_eq!(sim.now_ns(), before + 1_000_000_000);
    assert!(sim.is_runnable(t2.tid()));
    assert_eq!(sim.run(), SimOutcome::AllExited);
}

// ---- spawn and the task list -------------------------------------------------------------

#[test]
fn spawn_from_a_task_and_task_list_bookkeeping() {
    let mut sim = sim_with(0, 1000);
    let tl = sim.tasks().clone();
    assert_eq!(tl.nr_tasks(), 0);
    let seen = Log::new();
    let s = seen.clone();
    let parent = sim
        .spawn(process("parent"), move || {
            let me = current();
            let s1 = s.clone();
            let child = sched::spawn(process("child"), move || {
                let c = current();
                s1.push(("child", c.tid(), c.tgid()));
                set_current_state(TASK_UNINTERRUPTIBLE);
                schedule();
            })
            .unwrap();
            let s2 = s.clone();
            let thr = sched::spawn(thread(me.tgid()), move || {
                let c = current();
                s2.push(("thread", c.tid(), c.tgid()));
                cond_resched();
            })
            .unwrap();
            s.push(("parent", child.tid(), thr.tid()));
            cond_resched();
        })
        .unwrap();
    assert_eq!(parent.tid(), 1);
    assert_eq!(sim.step(1), Ok(StepResult::Yielded));
    assert_eq!(seen.snapshot(), vec![("parent", 2, 3)]);
    // Spawned tasks are known to the sim and the task list, runnable, not yet run.
    assert!(sim.is_runnable(2) && sim.is_runnable(3));
    assert_eq!(tl.nr_tasks(), 3);
    let tgids: Vec<u32> = tl.processes().iter().map(|g| g.tgid()).collect();
    assert_eq!(tgids, vec![1, 2]);
    let tids: Vec<Tid> = tl.tasks().iter().map(|t| t.tid()).collect();
    assert_eq!(tids, vec![1, 2, 3]);
    assert_eq!(tl.find_task(3).unwrap().tgid(), 1);
    assert_eq!(tl.find_task(2).unwrap().comm(), "child");
    assert_eq!(tl.find_task(3).unwrap().comm(), "parent");
    let g1 = tl.find_process(1).unwrap();
    let g1_threads: Vec<Tid> = g1.threads().iter().map(|t| t.tid()).collect();
    assert_eq!(g1_threads, vec![1, 3]);

    // The leader exits first: its process stays while thread 3 lives.
    assert_eq!(sim.step(1), Ok(StepResult::Exited));
    assert!(tl.find_task(1).is_none());
    assert!(parent.has_exited());
    let g1_threads: Vec<Tid> = tl
        .find_process(1)
        .expect("process lives on in thread 3")
        .threads()
        .iter()
        .map(|t| t.tid())
        .collect();
    assert_eq!(g1_threads, vec![3]);
    assert_eq!(sim.step(3), Ok(StepResult::Yielded));
    assert_eq!(sim.step(3), Ok(StepResult::Exited));
    assert!(
        tl.find_process(1).is_none(),
        "released with its last thread"
    );
    assert_eq!(tl.processes().len(), 1);

    // Failing clone does not consume a pid; pids stay sequential.
    assert_eq!(
        sim.spawn(thread(77), || {}).unwrap_err(),
        CloneError::NoSuchProcess(77)
    );
    let late = sim.spawn(process("late"), || {}).unwrap();
    assert_eq!(late.tid(), 4);

    assert_eq!(sim.step(2), Ok(StepResult::Blocked));
    wake_up_process(&tl.find_task(2).unwrap());
    assert_eq!(sim.run(), SimOutcome::AllExited);
    let mut s = seen.snapshot();
    s.sort();
    assert_eq!(s, vec![("child", 2, 2), ("parent", 2, 3), ("thread", 3, 1)]);
    assert_eq!(tl.nr_tasks(), 0);
    assert!(tl.processes().is_empty());
    assert!(tl.find_task(2).is_none());
}

#[test]
fn current_is_the_spawned_task() {
    let mut sim = sim_with(0, 1000);
    let same = Arc::new(AtomicBool::new(false));
    let s = same.clone();
    let tl = sim.tasks().clone();
    let t = sim
        .spawn(process("me"), move || {
            let me = current();
            let listed = tl.find_task(me.tid()).unwrap();
            s.store(Arc::ptr_eq(&me, &listed), Ordering::SeqCst);
        })
        .unwrap();
    assert!(!sched::in_task(), "the test thread is not an emulated task");
    assert_eq!(sim.run(), SimOutcome::AllExited);
    assert!(same.load(Ordering::SeqCst));
    assert!(t.has_exited());
}

// ---- limits ------------------------------------------------------------------------------

#[test]
fn endless_cond_resched_loop_hits_the_step_limit() {
    let mut sim = Sim::new(SimConfig {
        max_steps: 1000,
        ..Default::default()
    });
    sim.spawn(process("spinner"), || loop {
        cond_resched();
    })
    .unwrap();
    assert_eq!(sim.run(), SimOutcome::StepLimit);
    assert_eq!(sim.steps(), 1000);
    assert_eq!(sim.nr_live(), 1);
    assert!(sim.is_runnable(1));
}

#[test]
fn endless_sleeping_loop_hits_the_time_limit() {
    let mut sim = Sim::new(SimConfig {
        hz: 100,
        max_time_ns: 1_000_000_000,
        ..Default::default()
    });
    sim.spawn(process("napper"), || loop {
        schedule_timeout_uninterruptible(1); // 10 ms
    })
    .unwrap();
    assert_eq!(sim.run(), SimOutcome::TimeLimit);
    assert!(sim.now_ns() > 1_000_000_000);
    assert!(sim.now_ns() <= 1_000_000_000 + 10_000_000 + 2_000);
    assert!(
        (99..=102).contains(&sim.steps()),
        "{} steps of 10 ms",
        sim.steps()
    );
}

#[test]
fn busy_loop_hits_the_time_limit_through_step_costs() {
    let mut sim = Sim::new(SimConfig {
        step_cost_ns: 1_000_000,
        max_time_ns: 50_000_000,
        ..Default::default()
    });
    sim.spawn(process("spinner"), || loop {
        cond_resched();
    })
    .unwrap();
    assert_eq!(sim.run(), SimOutcome::TimeLimit);
    assert_eq!(sim.steps(), 51);
}

#[test]
fn run_until_stops_before_the_next_step() {
    let mut sim = sim_with(0, 1000);
    let n = Arc::new(AtomicU32::new(0));
    let n2 = n.clone();
    sim.spawn(process("counter"), move || {
        for _ in 0..100 {
            n2.fetch_add(1, Ordering::SeqCst);
            cond_resched();
        }
    })
    .unwrap();
    let n3 = n.clone();
    assert_eq!(
        sim.run_until(move |_| n3.load(Ordering::SeqCst) == 10),
        SimOutcome::Stopped
    );
    assert_eq!(n.load(Ordering::SeqCst), 10);
    assert_eq!(sim.steps(), 10);
    assert_eq!(sim.run(), SimOutcome::AllExited);
    assert_eq!(n.load(Ordering::SeqCst), 100);
}

#[test]
fn max_schedule_timeout_sleeps_without_a_timer() {
    let mut sim = sim_with(0, 1000);
    let out = Arc::new(AtomicU64::new(0));
    let o = out.clone();
    let t = sim
        .spawn(process("t"), move || {
            set_current_state(TASK_INTERRUPTIBLE);
            o.store(schedule_timeout(MAX_SCHEDULE_TIMEOUT), Ordering::SeqCst);
        })
        .unwrap();
    assert!(matches!(sim.run(), SimOutcome::Deadlock(_)));
    assert!(!sim.advance_to_next_timer());
    send_sig(Signal::Other, &t);
    assert_eq!(sim.run(), SimOutcome::AllExited);
    assert_eq!(out.load(Ordering::SeqCst), MAX_SCHEDULE_TIMEOUT);
}

#[test]
fn panic_in_a_sim_task_propagates_out_of_run() {
    let mut sim = sim_with(0, 1000);
    sim.spawn(process("bad"), || {
        cond_resched();
        panic!("sim task exploded 31337");
    })
    .unwrap();
    let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sim.run()))
        .expect_err("the panic must reach the caller");
    assert!(panic_message(&*err).contains("31337"));
}

// ---- findings ----------------------------------------------------------------------------

/// In the kernel, `schedule()` always goes through `__schedule()` → `pick_next_task()`: when
/// `signal_pending_state()` cancels the sleep the task stays on the run queue but another
/// runnable task may still be picked. On the sim executor `schedule()` returns to the caller
/// without a yield point, so a modelled-kernel loop that retries a signal-aborted sleep (the
/// shape of a livelock) never gives the sim control back: it hangs instead of ending in
/// `StepLimit`, breaking "every run ends". Here the loop is bounded so the test terminates.
#[test]
fn schedule_aborted_by_pending_signal_is_still_a_scheduling_point() {
    const SPINS: u32 = 100_000;
    let mut sim = Sim::new(SimConfig {
        max_steps: 50,
        ..Default::default()
    });
    let spins = Arc::new(AtomicU32::new(0));
    let s = spins.clone();
    sim.spawn(process("spinner"), move || {
        send_sig(Signal::Other, &current());
        for _ in 0..SPINS {
            set_current_state(TASK_INTERRUPTIBLE);
            schedule(); // returns at once: a signal is pending and never flushed
            s.fetch_add(1, Ordering::SeqCst);
        }
    })
    .unwrap();
    sim.spawn(process("other"), || loop {
        cond_resched();
    })
    .unwrap();
    assert_eq!(sim.run(), SimOutcome::StepLimit);
    let n = spins.load(Ordering::SeqCst);
    assert!(
        n < 50,
        "the spinner looped {n} times through schedule() within at most 50 sim steps: \
         schedule() with a pending signal is not a scheduling point on the sim executor"
    );
}

/// Pids are allocated as `alloc_pid()` does (cyclic, wrapping to `RESERVED_PIDS` past
/// `pid_max - 1`, skipping numbers in use) so that a run of any length keeps creating tasks;
/// the sim reuses the slots of exited tasks, so its bookkeeping stays as large as the most
/// tasks alive at once.
#[test]
fn pids_wrap_to_reserved_pids_skipping_those_in_use_and_slots_are_reused() {
    use mm::task::{CloneError, CloneKind, RESERVED_PIDS};
    let mut sim = Sim::new(SimConfig {
        pid_max: RESERVED_PIDS + 10,
        ..Default::default()
    });
    let stop = Arc::new(AtomicBool::new(false));
    // A task that runs until `stop`, or one that exits at once.
    let body = |lives: bool| {
        let stop = stop.clone();
        move || {
            while lives && !stop.load(Ordering::SeqCst) {
                schedule_timeout_interruptible(1);
            }
        }
    };
    let proc = || CloneKind::Process { comm: "p".into() };
    let keeper = sim.spawn(proc(), body(true)).unwrap();
    assert_eq!(keeper.tid(), 1);
    let mut seen = Vec::new();
    for _ in 0..320 {
        // The one that draws pid 303 after the wrap stays alive.
        let lives = seen.len() == 308 + 3;
        let t = sim.spawn(proc(), body(lives)).unwrap();
        seen.push(t.tid());
        if !lives {
            let tid = t.tid();
            assert_eq!(sim.run_until(|s| s.has_exited(tid)), SimOutcome::Stopped);
        }
    }
    assert_eq!(
        seen[..308],
        (2..310).collect::<Vec<u32>>(),
        "first pass from 1"
    );
    assert_eq!(
        seen[308..312],
        [300, 301, 302, 303],
        "wrap to RESERVED_PIDS"
    );
    assert!(
        seen[312..]
            .iter()
            .all(|&p| p != 303 && (300..310).contains(&p)),
        "the live pids are skipped: {:?}",
        &seen[312..]
    );
    assert!(sim.nr_slots() <= 3, "slots are reused: {}", sim.nr_slots());
    // Take every free number: the next clone fails with EAGAIN, as alloc_pid() does.
    let mut held = Vec::new();
    let err = loop {
        match sim.spawn(proc(), body(true)) {
            Ok(t) => held.push(t.tid()),
            Err(e) => break e,
        }
        assert!(held.len() <= 10);
    };
    assert_eq!(err, CloneError::Again);
    held.sort_unstable();
    assert_eq!(held, [300, 301, 302, 304, 305, 306, 307, 308, 309]);
    stop.store(true, Ordering::SeqCst);
    assert_eq!(sim.run(), SimOutcome::AllExited);
}

/// `/proc/sys/kernel/ns_last_pid`: the next fork gets the pid asked for, the sim steps tasks
/// by that pid, later forks continue from it, and a pid already handed out is refused.
#[test]
fn ns_last_pid_sets_the_next_pid() {
    let mut sim = sim_with(0, 1000);
    let a = sim.spawn(process("a"), || {}).unwrap();
    assert_eq!(a.tid(), 1);
    sim.tasks().set_ns_last_pid(99).unwrap();
    let b = sim.spawn(process("b"), cond_resched).unwrap();
    let c = sim.spawn(process("c"), || {}).unwrap();
    assert_eq!((b.tid(), b.tgid(), c.tid()), (100, 100, 101));
    assert_eq!(
        sim.tasks().set_ns_last_pid(50),
        Err(101),
        "pid 51 was passed"
    );
    assert_eq!(sim.step(100), Ok(StepResult::Yielded));
    assert_eq!(sim.step(100), Ok(StepResult::Exited));
    assert_eq!(
        sim.step(2),
        Err(StepError::NoSuchTask(2)),
        "pids 2-99 were skipped"
    );
    assert_eq!(sim.run(), SimOutcome::AllExited);
}
