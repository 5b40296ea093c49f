//! Random interleavings of every lock operation, with signals, on the sim executor: the
//! property tests of Model B and of spinning (both models). The snapshot invariants are
//! checked between every two steps; a run must end with every task gone and the lock idle.
use super::*;
use mm::locking::rwsem::{Interrupted, Killed, RawRwSem, RwSemConfig, RwSemSnapshot};
use mm::sched::sim::Sim;
use mm::sched::sim::{SimConfig, SimOutcome};
use mm::sched::{self, cond_resched};
use mm::task::{send_sig, CloneKind, Signal};
use std::sync::Arc;

/// Hold for read across `n` yields, checking the witness at each.
fn hold_read(wit: &Witness, who: &str, n: u64) {
    for _ in 0..n {
        cond_resched();
        wit.assert_read_held(who);
    }
}

/// Hold for write across `n` yields, checking the witness at each.
fn hold_write(wit: &Witness, who: &str, n: u64) {
    for _ in 0..n {
        cond_resched();
        wit.assert_write_held(who);
    }
}

/// A random user of the lock: every variant, downgrades, holds across yields; with
/// `long_holds`, also holds across jiffies so that Model B's waiters time out (AR8). Dies
/// (returns, holding nothing) when a killable wait is killed or, between rounds, when SIGKILL
/// is pending (the way back to user space). A wait that fails says why: a killable one only
/// for a fatal signal, an interruptible one only for a pending signal.
fn random_actor(sem: &RawRwSem, wit: &Witness, who: &str, seed: u64, long_holds: bool) {
    let mut r = Rng(seed);
    for _ in 0..2 + r.below(6) {
        if sched::fatal_signal_pending() {
            return;
        }
        sched::flush_signals();
        let hold = r.below(4);
        if long_holds && r.below(8) == 0 {
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
                Err(Killed) => {
                    assert!(
                        sched::fatal_signal_pending(),
                        "{who}: killed without SIGKILL"
                    );
                    return;
                }
            },
            3 => match sem.down_read_interruptible() {
                Ok(()) => {
                    wit.read_enter(who);
                    hold_read(wit, who, hold);
                    wit.read_exit();
                    sem.up_read();
                }
                Err(Interrupted) => assert!(sched::signal_pending(), "{who}: no signal"),
            },
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
                    if long_holds && r.below(3) == 0 {
                        sched::cpu_work(5_000_000);
                        cond_resched();
                    }
                    wit.write_exit();
                    sem.up_write();
                }
                Err(Killed) => {
                    assert!(
                        sched::fatal_signal_pending(),
                        "{who}: killed without SIGKILL"
                    );
                    return;
                }
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
    /// The sim's trace hash (equal hashes: the same run step for step).
    pub hash: u64,
    /// The first step boundary at which the world's invariant reported something; the run
    /// stops there.
    pub violation: Option<String>,
}

/// What differs between the property worlds of the test files: who the actors are, which
/// invariant holds between steps, and the world's sizes.
pub struct WorldKind {
    pub max_steps: u64,
    /// Mixed into the seed of the world's own choices.
    pub salt: u64,
    /// A killer yields fewer than this many times before each signal it sends.
    pub kill_delay: u64,
    /// The actors also hold across jiffies (see [`random_actor`]).
    pub long_holds: bool,
    pub invariant: fn(&RwSemSnapshot) -> Option<String>,
}

/// The world of the Model B and spinning property tests.
pub const ANY_MODEL: WorldKind = WorldKind {
    max_steps: 400_000,
    salt: 0x5eed_0f00_2222_0b0b,
    kill_delay: 40,
    long_holds: true,
    invariant: invariant_violation,
};

/// [`random_world_of`] with [`ANY_MODEL`].
pub fn random_world(config: RwSemConfig, seed: u64) -> World {
    random_world_of(&ANY_MODEL, config, seed)
}

/// 3–8 random actors and 1–3 killers (SIGKILL or a non-fatal signal to random actors at random
/// times), run with the seeded picker; the invariant is checked between all steps.
pub fn random_world_of(kind: &WorldKind, config: RwSemConfig, seed: u64) -> World {
    let mut sim = Sim::new(SimConfig {
        seed,
        max_steps: kind.max_steps,
        ..Default::default()
    });
    let sem = Arc::new(RawRwSem::with_config("prop", config));
    let wit = Arc::new(Witness::default());
    let mut rng = Rng(seed ^ kind.salt);
    let mut victims = Vec::new();
    for i in 0..3 + rng.below(6) {
        let (sem, wit, aseed, long) = (sem.clone(), wit.clone(), rng.next(), kind.long_holds);
        let name = format!("a{i}");
        let who = name.clone();
        let t = sim
            .spawn(CloneKind::Process { comm: name }, move || {
                random_actor(&sem, &wit, &who, aseed, long)
            })
            .unwrap();
        victims.push(t);
    }
    for k in 0..1 + rng.below(3) {
        let (victims, kseed, delay) = (victims.clone(), rng.next(), kind.kill_delay);
        sim.spawn(
            CloneKind::Process {
                comm: format!("killer{k}"),
            },
            move || {
                let mut r = Rng(kseed);
                for _ in 0..1 + r.below(3) {
                    for _ in 0..r.below(delay) {
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
        violation = (kind.invariant)(&sem.snapshot());
        violation.is_some()
    });
    World {
        outcome,
        sem,
        wit,
        events: sim.tasks().lock_events(),
        hash: sim.trace_hash(),
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

/// Lock events summed over many worlds: do the worlds reach the paths a test is about?
pub struct Reached([u64; mm::locking::lock_events::NR_LOCK_EVENTS]);

impl Default for Reached {
    fn default() -> Self {
        Reached([0; mm::locking::lock_events::NR_LOCK_EVENTS])
    }
}

impl Reached {
    pub fn add(&mut self, w: &World) {
        for (t, e) in self.0.iter_mut().zip(w.events) {
            *t += e;
        }
    }

    /// Every event of `evs` happened at least once in the `seeds` worlds added.
    #[track_caller]
    pub fn assert_all(&self, evs: &[LockEvent], seeds: u64) {
        for ev in evs {
            assert!(
                self.0[*ev as usize] > 0,
                "no {} in {seeds} seeds",
                ev.name()
            );
        }
    }
}
