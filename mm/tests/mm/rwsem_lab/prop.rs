//! Random interleavings of every lock operation, with signals, on the sim executor: the
//! property tests of Model B and of spinning (both models). The snapshot invariants are
//! checked between every two steps; a run must end with every task gone and the lock idle.
use super::*;
use mm::locking::rwsem::{RawRwSem, RwSemConfig, RwSemSnapshot};
use mm::sched::sim::Sim;
use mm::sched::sim::{SimConfig, SimOutcome};
use mm::sched::{self, cond_resched};
use mm::task::{send_sig, CloneKind, Signal};
use std::sync::Arc;

fn hold_read(wit: &Witness, who: &str, n: u64) {
    for _ in 0..n {
        cond_resched();
        wit.assert_read_held(who);
    }
}

fn hold_write(wit: &Witness, who: &str, n: u64) {
    for _ in 0..n {
        cond_resched();
        wit.assert_write_held(who);
    }
}

/// A random user of the lock (every variant, downgrades, holds across yields and across
/// jiffies so that handoffs happen). Dies when a killable wait is killed.
fn random_actor(sem: &RawRwSem, wit: &Witness, who: &str, seed: u64) {
    let mut r = Rng(seed);
    for _ in 0..2 + r.below(6) {
        if sched::fatal_signal_pending() {
            return;
        }
        sched::flush_signals();
        let hold = r.below(4);
        if r.below(8) == 0 {
            // A long hold: several jiffies, so that waiters time out (AR8).
            sched::cpu_work(2_000_000 + r.below(4_000_000));
        }
        match r.below(11) {
            0 | 1 => {
                sem.down_read();
                wit.read_enter(who);
                hold_read(wit, who, hold);
                wit.read_exit();
                sem.up_read();
            }
            2 => match sem.down_read_killable() {
                Ok(()) => {
                    wit.read_enter(who);
                    hold_read(wit, who, hold);
                    wit.read_exit();
                    sem.up_read();
                }
                Err(_) => return,
            },
            3 => {
                if sem.down_read_interruptible().is_ok() {
                    wit.read_enter(who);
                    hold_read(wit, who, hold);
                    wit.read_exit();
                    sem.up_read();
                }
            }
            4 => {
                sem.down_write();
                wit.write_enter(who);
                hold_write(wit, who, hold);
                wit.write_exit();
                sem.up_write();
            }
            5 | 6 => match sem.down_write_killable() {
                Ok(()) => {
                    wit.write_enter(who);
                    hold_write(wit, who, hold);
                    if r.below(3) == 0 {
                        sched::cpu_work(5_000_000);
                        cond_resched();
                    }
                    wit.write_exit();
                    sem.up_write();
                }
                Err(_) => return,
            },
            7 => {
                if sem.down_read_trylock() {
                    wit.read_enter(who);
                    hold_read(wit, who, hold);
                    wit.read_exit();
                    sem.up_read();
                }
            }
            8 => {
                if sem.down_write_trylock() {
                    wit.write_enter(who);
                    hold_write(wit, who, hold);
                    wit.write_exit();
                    sem.up_write();
                }
            }
            _ => {
                sem.down_write();
                wit.write_enter(who);
                hold_write(wit, who, hold);
                wit.downgrade();
                sem.downgrade_write();
                hold_read(wit, who, hold);
                wit.read_exit();
                sem.up_read();
            }
        }
        for _ in 0..r.below(3) {
            cond_resched();
        }
    }
}

/// The Model B state invariants at every step boundary, from the snapshot: WAITERS ⇔ a
/// non-empty wait list; HANDOFF ⇒ WAITERS, and a credited waiter is the first; a writer
/// holding excludes read holds; no ungranted reader heads the queue of a lock no writer
/// holds (every path that leaves one there grants it).
pub fn invariant_violation(s: &RwSemSnapshot) -> Option<String> {
    let waiting: Vec<_> = s.waiting().collect();
    if (s.waiters_flag == 1) == waiting.is_empty() {
        return Some(format!(
            "WAITERS {} with {} waiter(s)",
            s.waiters_flag,
            waiting.len()
        ));
    }
    if let Some(h) = &s.handoff {
        if s.waiters_flag == 0 {
            return Some("HANDOFF without WAITERS".into());
        }
        if let Some(t) = h.credited_to {
            if waiting.first().map(|w| w.tid) != Some(t) {
                return Some(format!("HANDOFF credited to {t}, not the first waiter"));
            }
        }
    }
    if waiting.iter().skip(1).any(|w| w.handoff_set) {
        return Some("handoff_set on a waiter that is not first".into());
    }
    if s.write_locked && s.readers > 0 {
        return Some(format!("write-held with {} reader(s)", s.readers));
    }
    if let Some(h) = waiting.first() {
        if h.kind == mm::locking::rwsem::WaiterType::Read && !s.write_locked {
            return Some(format!("reader {} not granted at the head", h.tid));
        }
    }
    None
}

pub struct World {
    pub outcome: SimOutcome,
    pub sem: Arc<RawRwSem>,
    pub wit: Arc<Witness>,
    pub events: [u64; mm::locking::lock_events::NR_LOCK_EVENTS],
    pub violation: Option<String>,
}

/// 3–8 random actors and 1–3 killers (SIGKILL or a non-fatal signal at random times).
pub fn random_world(config: RwSemConfig, seed: u64) -> World {
    let mut sim = Sim::new(SimConfig {
        seed,
        max_steps: 400_000,
        ..Default::default()
    });
    let sem = Arc::new(RawRwSem::with_config("prop", config));
    let wit = Arc::new(Witness::default());
    let mut rng = Rng(seed ^ 0x5eed_0f00_2222_0b0b);
    let mut victims = Vec::new();
    for i in 0..3 + rng.below(6) {
        let (sem, wit, aseed) = (sem.clone(), wit.clone(), rng.next());
        let name = format!("a{i}");
        let who = name.clone();
        let t = sim
            .spawn(CloneKind::Process { comm: name }, move || {
                random_actor(&sem, &wit, &who, aseed)
            })
            .unwrap();
        victims.push(t);
    }
    for k in 0..1 + rng.below(3) {
        let (victims, kseed) = (victims.clone(), rng.next());
        sim.spawn(
            CloneKind::Process {
                comm: format!("killer{k}"),
            },
            move || {
                let mut r = Rng(kseed);
                for _ in 0..1 + r.below(3) {
                    for _ in 0..r.below(40) {
                        cond_resched();
                    }
                    let v = &victims[r.below(victims.len() as u64) as usize];
                    let sig = if r.below(3) == 0 {
                        Signal::Other
                    } else {
                        Signal::Kill
                    };
                    send_sig(sig, v);
                }
            },
        )
        .unwrap();
    }
    let mut violation = None;
    let outcome = sim.run_until(|_| {
        violation = invariant_violation(&sem.snapshot());
        violation.is_some()
    });
    World {
        outcome,
        sem,
        wit,
        events: sim.tasks().lock_events(),
        violation,
    }
}

pub fn check_world(config: RwSemConfig, seed: u64, w: &World) {
    if let Some(v) = &w.violation {
        panic!("{config:?} seed {seed}: {v}: {:?}", w.sem.snapshot());
    }
    match &w.outcome {
        SimOutcome::AllExited => {}
        SimOutcome::Deadlock(rep) => {
            panic!("{config:?} seed {seed}: {rep}{:?}", w.sem.snapshot())
        }
        o => panic!("{config:?} seed {seed}: {o:?}"),
    }
    let s = w.sem.snapshot();
    assert!(s.is_idle(), "{config:?} seed {seed}: {s:?}");
    assert!(w.wit.is_empty(), "{config:?} seed {seed}");
    assert!(w.sem.down_write_trylock(), "{config:?} seed {seed}");
    w.sem.up_write();
}
