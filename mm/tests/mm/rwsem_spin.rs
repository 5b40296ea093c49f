//! Scripted sim tests of writer optimistic spinning (docs/rwsem-rules.md AR9,
//! `CONFIG_RWSEM_SPIN_ON_OWNER=y`) for Model A (v4.7 `rwsem_optimistic_spin`) and Model B (v6.6),
//! with the closing checks of every rule test (tests/rwsem_lab).
//!
//! On the sim executor a spinner yields at every iteration (`cond_resched()` in each
//! `cpu_relax()`), so one `Sim::step` of a spinning writer is one spin iteration: it ends
//! `Yielded` with nothing logged ([`Lab::spins`]). Every iteration costs emulated time, and a
//! spin ends after `RWSEM_SPIN_MAX_NS` (the emulated `need_resched()`), so spins are bounded and
//! the same seed gives the same run.
//!
//! Not reachable on the sim (no switch inside an operation, `wait_lock` never held across a
//! switch): v4.7's `rwsem_wake()` leaving the wake-up to a spinner when `wait_lock` is busy.
//! The loom model `a_spin_wake_skipped_for_a_spinner_is_not_lost` covers it.

use crate::rwsem_lab::Op::*;
use crate::rwsem_lab::*;
use mm::locking::lock_events::LockEvent;
use mm::locking::rwsem::{RwSemConfig, RWSEM_SPIN_MAX_NS, RWSEM_SPIN_STEP_NS};
use mm::sched::sim::SimConfig;

/// Spin iterations before the emulated `need_resched()` ends a spin on the sim (default step
/// cost), give or take one.
fn max_spin_steps() -> u64 {
    RWSEM_SPIN_MAX_NS / (SimConfig::default().step_cost_ns + RWSEM_SPIN_STEP_NS)
}

/// Step `t` while it spins; returns the number of spin steps before it blocked or completed.
fn spin_until_done(l: &mut Lab, t: mm::task::Tid) -> u64 {
    let mut n = 0;
    loop {
        let before = l.ctx.log.lock().len();
        let r = l.sim.step(t).expect("step");
        let logged = l.ctx.log.lock().len() > before;
        if r != Yielded || logged {
            return n;
        }
        n += 1;
        assert!(n < 10_000, "spin did not end");
    }
}

// ---- both models: spinning on a running writer owner ---------------------------------------

fn spins_on_running_writer_and_takes_the_lock_without_queueing(config: RwSemConfig) {
    let mut l = Lab::new(config);
    let h = l.actor("h", &[W, UW]);
    let w = l.actor("w", &[W, UW]);
    l.step(h, Yielded, &["h:W=ok"]);
    l.spins(w);
    l.spins(w);
    // Spinning, not queued: no WAITERS, so the lock's fast paths are unaffected.
    l.check("write h; queue; flags spinners w");
    l.step(h, Exited, &["h:UW=ok"]);
    l.check("free; queue; flags spinners w");
    assert_eq!(l.events(h, LockEvent::RwsemWakeWriter), 0);
    l.step(w, Yielded, &["w:W=ok"]);
    l.check("write w; queue; flags");
    assert_eq!(l.events(w, LockEvent::RwsemOptLock), 1);
    assert_eq!(l.events(w, LockEvent::RwsemSleepWriter), 0);
    l.run_to_completion();
}

#[test]
fn a_spin_writer_spins_on_a_running_writer_and_takes_the_lock_without_queueing() {
    spins_on_running_writer_and_takes_the_lock_without_queueing(A_SPIN);
}

#[test]
fn b_spin_writer_spins_on_a_running_writer_and_takes_the_lock_without_queueing() {
    spins_on_running_writer_and_takes_the_lock_without_queueing(B_SPIN);
}

/// Spinning off (the default): the same writer queues and sleeps at once.
#[test]
fn spin_off_writer_queues_and_sleeps_at_once() {
    for config in [A, B] {
        let mut l = Lab::new(config);
        let h = l.actor("h", &[W, UW]);
        let w = l.actor("w", &[W, UW]);
        l.step(h, Yielded, &["h:W=ok"]);
        l.sleeps(w);
        assert_eq!(l.events(w, LockEvent::RwsemOptFail), 0);
        assert_eq!(l.events(w, LockEvent::RwsemOptLock), 0);
        l.run_to_completion();
    }
}

/// "On a CPU" is the owner's run state: a writer asleep (here waiting for a completion) is
/// not spun on; a spinner stops when its owner goes to sleep.
fn no_spinning_on_a_sleeping_owner(config: RwSemConfig) {
    let mut l = Lab::new(config);
    let h = l.actor("h", &[W, Wait(1), UW]);
    let w1 = l.actor("w1", &[W, UW]);
    let w2 = l.actor("w2", &[W, UW]);
    let c = l.actor("c", &[Complete(1)]);
    l.step(h, Yielded, &["h:W=ok"]);
    // w1 spins on the running h...
    l.spins(w1);
    // ...until h sleeps: then w1 queues and sleeps.
    l.sleeps(h);
    l.sleeps(w1);
    assert_eq!(l.events(w1, LockEvent::RwsemOptFail), 1);
    // A writer arriving now does not spin at all.
    l.sleeps(w2);
    assert_eq!(l.events(w2, LockEvent::RwsemOptFail), 1);
    l.step(c, Exited, &["c:Complete(1)=ok"]);
    l.run_to_completion();
}

#[test]
fn a_spin_no_spinning_on_a_sleeping_owner() {
    no_spinning_on_a_sleeping_owner(A_SPIN);
}

#[test]
fn b_spin_no_spinning_on_a_sleeping_owner() {
    no_spinning_on_a_sleeping_owner(B_SPIN);
}

/// A spin is bounded: with the owner running on and on, the spinner gives up after the
/// emulated `need_resched()` (RWSEM_SPIN_MAX_NS of emulated time), queues and sleeps.
fn spin_is_bounded(config: RwSemConfig) -> u64 {
    let mut l = Lab::new(config);
    let h = l.actor("h", &[W, Busy(1000), UW]);
    let w = l.actor("w", &[W, UW]);
    l.step(h, Yielded, &["h:W=ok"]);
    let t0 = l.sim.now_ns();
    let n = spin_until_done(&mut l, w);
    l.blocked(&[w]);
    let spent = l.sim.now_ns() - t0;
    let max = max_spin_steps();
    assert!(
        n + 2 >= max && n <= max + 1,
        "{config:?}: {n} spin steps, expected about {max}"
    );
    assert!(spent >= RWSEM_SPIN_MAX_NS, "{config:?}: spun {spent} ns");
    l.check("write h; queue w:W; flags waiters");
    l.run_to_completion();
    n
}

#[test]
fn a_spin_is_bounded_by_the_emulated_need_resched() {
    spin_is_bounded(A_SPIN);
}

#[test]
fn b_spin_is_bounded_by_the_emulated_need_resched() {
    spin_is_bounded(B_SPIN);
}

/// Signals are not checked while spinning (AR9): a killable writer spinning with SIGKILL
/// pending takes the lock if the owner releases within the spin, and returns success.
fn spinning_ignores_signals(config: RwSemConfig) {
    let mut l = Lab::new(config);
    let h = l.actor("h", &[W, UW]);
    let wk = l.actor("wk", &[WK, UW]);
    l.step(h, Yielded, &["h:W=ok"]);
    l.spins(wk);
    l.kill(wk);
    l.spins(wk);
    l.spins(wk);
    l.step(h, Exited, &["h:UW=ok"]);
    l.step(wk, Yielded, &["wk:WK=ok"]);
    l.step(wk, Exited, &["wk:UW=ok"]);
    l.assert_closed();
}

#[test]
fn a_spin_spinning_ignores_sigkill() {
    spinning_ignores_signals(A_SPIN);
}

#[test]
fn b_spin_spinning_ignores_sigkill() {
    spinning_ignores_signals(B_SPIN);
}

/// ...and once the spin gives up, the writer queues, fails its first try and only then sees
/// SIGKILL: -EINTR without sleeping.
fn killed_spinner_bails_out_after_the_spin(config: RwSemConfig) {
    let mut l = Lab::new(config);
    let h = l.actor("h", &[W, Busy(1000), UW]);
    let wk = l.actor("wk", &[WK]);
    l.step(h, Yielded, &["h:W=ok"]);
    l.spins(wk);
    l.kill(wk);
    let before = l.ctx.log.lock().len();
    loop {
        let r = l.sim.step(wk).expect("step");
        if l.ctx.log.lock().len() > before {
            assert_eq!(r, Exited);
            break;
        }
    }
    assert_eq!(l.ctx.log.lock().last().unwrap(), "wk:WK=EINTR");
    assert_eq!(l.events(wk, LockEvent::RwsemSleepWriter), 0);
    l.check("write h; queue; flags");
    l.run_to_completion();
}

#[test]
fn a_spin_killed_spinner_bails_out_once_the_spin_ends() {
    killed_spinner_bails_out_after_the_spin(A_SPIN);
}

#[test]
fn b_spin_killed_spinner_bails_out_once_the_spin_ends() {
    killed_spinner_bails_out_after_the_spin(B_SPIN);
}

/// The OSQ: one spinner spins on the lock, the next waits its turn in the queue; each takes
/// the lock in OSQ order as the owner changes.
fn osq_lets_one_spinner_spin_at_a_time(config: RwSemConfig) {
    let mut l = Lab::new(config);
    let h = l.actor("h", &[W, UW]);
    let w1 = l.actor("w1", &[W, UW]);
    let w2 = l.actor("w2", &[W, UW]);
    l.step(h, Yielded, &["h:W=ok"]);
    l.spins(w1);
    l.spins(w2);
    l.check("write h; queue; flags spinners w1,w2");
    l.step(h, Exited, &["h:UW=ok"]);
    // w2 is not at the OSQ head: it does not try the lock.
    l.spins(w2);
    l.check("free; queue; flags spinners w1,w2");
    l.step(w1, Yielded, &["w1:W=ok"]);
    l.check("write w1; queue; flags spinners w2");
    l.spins(w2);
    l.step(w1, Exited, &["w1:UW=ok"]);
    l.step(w2, Yielded, &["w2:W=ok"]);
    assert_eq!(l.events(w2, LockEvent::RwsemOptLock), 1);
    l.run_to_completion();
}

#[test]
fn a_spin_osq_lets_one_spinner_spin_at_a_time() {
    osq_lets_one_spinner_spin_at_a_time(A_SPIN);
}

#[test]
fn b_spin_osq_lets_one_spinner_spin_at_a_time() {
    osq_lets_one_spinner_spin_at_a_time(B_SPIN);
}

// ---- Model A (v4.7) ----------------------------------------------------------------------------

/// v4.7: no spinning when the owner is not set and readers are active.
#[test]
fn a_spin_no_spinning_on_a_read_held_lock() {
    let mut l = Lab::new(A_SPIN);
    let r = l.actor("r", &[R, UR]);
    let w = l.actor("w", &[W, UW]);
    l.step(r, Yielded, &["r:R=ok"]);
    l.sleeps(w);
    assert_eq!(l.events(w, LockEvent::RwsemOptFail), 1);
    l.run_to_completion();
}

/// v4.7 spins also when no owner is set and nobody is active: in the wake window (the head
/// writer woken, not yet run) a spinning writer takes the lock ahead of the whole queue with the
/// unqueued try (count `WAITING_BIAS`); the woken writer sleeps again.
#[test]
fn a_spin_writer_takes_a_free_lock_ahead_of_the_queue_in_the_wake_window() {
    let mut l = Lab::new(A_SPIN);
    let r = l.actor("r", &[R, UR]);
    let w1 = l.actor("w1", &[W, UW]);
    let w2 = l.actor("w2", &[W, UW]);
    l.step(r, Yielded, &["r:R=ok"]);
    l.sleeps(w1);
    l.step(r, Exited, &["r:UR=ok"]);
    l.runnable(&[w1]);
    l.step(w2, Yielded, &["w2:W=ok"]);
    assert_eq!(l.events(w2, LockEvent::RwsemOptLock), 1);
    l.check("write w2; queue w1:W; flags waiters");
    l.sleeps(w1);
    l.run_to_completion();
}

/// A spinner overtakes a sleeping queued writer (AR6 by spinning): the release wakes the head
/// writer, the spinner's unqueued try wins.
#[test]
fn a_spin_spinner_overtakes_a_queued_writer() {
    let mut l = Lab::new(A_SPIN);
    let h = l.actor("h", &[W, Wait(1), UW]);
    let w1 = l.actor("w1", &[W, UW]);
    let w2 = l.actor("w2", &[W, UW]);
    let c = l.actor("c", &[Complete(1)]);
    l.step(h, Yielded, &["h:W=ok"]);
    l.sleeps(h);
    l.sleeps(w1);
    l.step(c, Exited, &["c:Complete(1)=ok"]);
    l.step(h, Yielded, &["h:Wait(1)=ok"]);
    l.spins(w2);
    l.check("write h; queue w1:W; flags waiters spinners w2");
    l.step(h, Exited, &["h:UW=ok"]);
    l.runnable(&[w1]);
    l.step(w2, Yielded, &["w2:W=ok"]);
    l.sleeps(w1);
    l.check("write w2; queue w1:W; flags waiters");
    l.run_to_completion();
}

// ---- Model B (v6.6) ----------------------------------------------------------------------------

/// v6.6 spins on a reader-owned lock too, for (10 + readers/2) µs; past that it sets
/// RWSEM_NONSPINNABLE and queues; later writers do not spin until the readers are gone
/// (the last reader's release clears the bit).
#[test]
fn b_spin_reader_owned_spin_is_time_bounded_then_nonspinnable() {
    let mut l = Lab::new(B_SPIN);
    let r = l.actor("r", &[R, Busy(1000), UR]);
    let w = l.actor("w", &[W, UW]);
    let w2 = l.actor("w2", &[W, UW]);
    l.step(r, Yielded, &["r:R=ok"]);
    let t0 = l.sim.now_ns();
    let n = spin_until_done(&mut l, w);
    let spent = l.sim.now_ns() - t0;
    // rwsem_rspin_threshold() with one reader: 10.5 µs, well before the need_resched budget.
    assert!(
        (10_500..RWSEM_SPIN_MAX_NS).contains(&spent),
        "spun {spent} ns in {n} steps"
    );
    assert_eq!(l.events(w, LockEvent::RwsemOptNospin), 1);
    l.blocked(&[w]);
    l.check("read 1; queue w:W; flags waiters nonspinnable");
    l.sleeps(w2);
    assert_eq!(l.events(w2, LockEvent::RwsemOptFail), 1);
    assert_eq!(l.events(w2, LockEvent::RwsemOptLock), 0);
    l.run_to_completion();
}

/// A writer spinning on readers takes the lock as soon as they leave, without queueing.
#[test]
fn b_spin_writer_takes_a_reader_owned_lock_when_the_readers_leave() {
    let mut l = Lab::new(B_SPIN);
    let r = l.actor("r", &[R, UR]);
    let w = l.actor("w", &[W, UW]);
    l.step(r, Yielded, &["r:R=ok"]);
    l.spins(w);
    l.spins(w);
    l.check("read 1; queue; flags spinners w");
    l.step(r, Exited, &["r:UR=ok"]);
    l.step(w, Yielded, &["w:W=ok"]);
    assert_eq!(l.events(w, LockEvent::RwsemOptLock), 1);
    assert_eq!(l.events(w, LockEvent::RwsemSleepWriter), 0);
    l.run_to_completion();
}

/// No reader spinning in v6.x (removed in v5.11, 617f3ef95177): a reader facing a writer
/// queues and sleeps at once.
#[test]
fn b_spin_readers_do_not_spin() {
    let mut l = Lab::new(B_SPIN);
    let h = l.actor("h", &[W, UW]);
    let r = l.actor("r", &[R, UR]);
    l.step(h, Yielded, &["h:W=ok"]);
    l.sleeps(r);
    l.check("write h; queue r:R; flags waiters");
    l.run_to_completion();
}

/// The first waiter that set HANDOFF spins on a running writer owner instead of sleeping,
/// and takes the lock without sleeping again when the owner releases (OWNER_NULL).
#[test]
fn b_spin_first_waiter_with_handoff_spins_on_the_running_owner() {
    let mut l = Lab::new(B_SPIN);
    let h = l.actor("h", &[W, Wait(1), UW]);
    let w1 = l.actor("w1", &[W, UW]);
    let w2 = l.actor("w2", &[W, UW]);
    let c = l.actor("c", &[Complete(1)]);
    l.step(h, Yielded, &["h:W=ok"]);
    l.sleeps(h);
    // h sleeps: no spinning, w1 queues.
    l.sleeps(w1);
    l.sleeps(w2);
    l.advance_ms(5);
    l.step(c, Exited, &["c:Complete(1)=ok"]);
    l.spurious_wake(w1);
    // w1 times out, sets HANDOFF, and spins on the now running h.
    l.spins(w1);
    l.check("write h; queue w1:W! w2:W; flags waiters handoff(by w1)");
    l.spins(w1);
    assert_eq!(l.events(w1, LockEvent::RwsemSleepWriter), 1);
    // A non-first waiter never gets the credit, so it never spins in the slow path.
    l.spurious_wake(w2);
    l.sleeps(w2);
    l.step(h, Yielded, &["h:Wait(1)=ok"]);
    l.step(h, Exited, &["h:UW=ok"]);
    l.step(w1, Yielded, &["w1:W=ok"]);
    assert_eq!(l.events(w1, LockEvent::RwsemSleepWriter), 1);
    l.check("write w1; queue w2:W; flags waiters");
    l.run_to_completion();
}

/// A spinner's unqueued try fails while HANDOFF is set: the lock goes to the first waiter.
#[test]
fn b_spin_spinner_cannot_take_a_handed_off_lock() {
    let mut l = Lab::new(B_SPIN);
    let h = l.actor("h", &[R, Wait(1), UR]);
    let w1 = l.actor("w1", &[W, UW]);
    let w2 = l.actor("w2", &[W, UW]);
    let c = l.actor("c", &[Complete(1)]);
    l.step(h, Yielded, &["h:R=ok"]);
    l.sleeps(h);
    // A reader-owned lock: w1 spins on it until the threshold, then queues.
    spin_until_done(&mut l, w1);
    l.blocked(&[w1]);
    l.advance_ms(5);
    l.spurious_wake(w1);
    l.sleeps(w1);
    l.check("read 1; queue w1:W!; flags waiters handoff(by w1) nonspinnable");
    l.step(c, Exited, &["c:Complete(1)=ok"]);
    l.step(h, Yielded, &["h:Wait(1)=ok"]);
    l.step(h, Exited, &["h:UR=ok"]);
    // Free, HANDOFF set, w1 woken: w2's fast path fails (WAITERS), it may spin (the last
    // reader cleared NONSPINNABLE) but its unqueued try fails on HANDOFF.
    l.check("free; queue w1:W!; flags waiters handoff(by w1)");
    l.spins(w2);
    l.spins(w2);
    l.check("free; queue w1:W!; flags waiters handoff(by w1) spinners w2");
    l.step(w1, Yielded, &["w1:W=ok"]);
    l.check("write w1; queue; flags spinners w2");
    l.run_to_completion();
}

// ---- random interleavings with spinning --------------------------------------------------------

/// Spinning keeps the models' invariants and liveness under random interleavings with
/// signals: every run ends with all tasks gone and the lock idle. (Model A's invariant is its
/// count decomposition, checked as the "waiters flag ⇔ queue" form of the snapshot.)
#[test]
fn prop_spinning_random_interleavings_end_idle() {
    for config in [B_SPIN, A_SPIN] {
        let mut spun = 0;
        for seed in 0..200 {
            let w = crate::rwsem_lab::prop::random_world(config, seed);
            crate::rwsem_lab::prop::check_world(config, seed, &w);
            spun += w.events[LockEvent::RwsemOptLock as usize];
        }
        assert!(spun > 0, "{config:?}: no acquisition by spinning");
    }
}

/// Same seed, same run, spinning included.
#[test]
fn prop_spinning_is_deterministic_on_the_sim() {
    for config in [B_SPIN, A_SPIN] {
        for seed in [5, 23] {
            let a = crate::rwsem_lab::prop::random_world(config, seed);
            let b = crate::rwsem_lab::prop::random_world(config, seed);
            assert_eq!(a.hash, b.hash, "{config:?} seed {seed}: the runs diverged");
            assert_eq!(a.events, b.events, "{config:?} seed {seed}");
            assert_eq!(a.outcome, b.outcome);
        }
    }
}
