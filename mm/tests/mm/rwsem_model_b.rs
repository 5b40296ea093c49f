//! Rule-by-rule scripted tests of Model B (v6.6 `kernel/locking/rwsem.c`,
//! `RwSemModel::B`) on the deterministic sim executor: every rule of docs/rwsem-rules.md marked
//! [B] (AR1–AR8, WK1–WK6, §5.1, §5.2, §5.5) has a test that fails if the rule is broken,
//! written from the rule, with spinning off (the spinning rules are in rwsem_spin.rs). The
//! harness is tests/rwsem_lab (snapshot-based state strings, a lock-independent witness, and
//! the closing check of every test: nobody holds, queue empty, flags clear,
//! `down_write_trylock` succeeds).
//!
//! # What the sim executor cannot show
//! Lock operations run atomically between yield points, so a few [B] branches need another
//! task to run *inside* an operation; the loom models (tests/loom_rwsem.rs) cover them:
//! - AR2: a stealing reader that finds readers queued at the head of a free lock grants them
//!   (WAKE_READ_OWNED) — needs a reader to steal between a writer's release and its wake-up;
//! - AR2: "the queue is empty and no writer holds: keep the lock" under `wait_lock` — needs the
//!   writer to leave between the reader's failed fast path and its slow path;
//! - §5.1: the reader's re-check of its grant under `wait_lock`.

use crate::rwsem_lab::Op::*;
use crate::rwsem_lab::*;
use mm::locking::lock_events::LockEvent;
use mm::locking::rwsem::model_b::{rwsem_wait_timeout, MAX_READERS_WAKEUP};
use mm::sched::sim::SimConfig;

// ---- AR1: down_read fast path ------------------------------------------------------------------

#[test]
fn b_ar1_read_fast_path_without_writer_waiters_or_handoff() {
    let mut l = Lab::new(B);
    let r1 = l.actor("r1", &[R, UR]);
    let r2 = l.actor("r2", &[R, UR]);
    l.step(r1, Yielded, &["r1:R=ok"]);
    l.step(r2, Yielded, &["r2:R=ok"]);
    l.check("read 2; queue; flags");
    assert_eq!(l.events(r2, LockEvent::RwsemRlockFast), 1);
    assert_eq!(l.events(r2, LockEvent::RwsemRlockSteal), 0);
    l.step(r1, Exited, &["r1:UR=ok"]);
    l.step(r2, Exited, &["r2:UR=ok"]);
    l.assert_closed();
}

#[test]
fn b_ar1_read_fast_path_fails_while_a_writer_holds() {
    let mut l = Lab::new(B);
    let w = l.actor("w", &[W, UW]);
    let r = l.actor("r", &[R, UR]);
    l.step(w, Yielded, &["w:W=ok"]);
    l.check("write w; queue; flags");
    // Writer holds: no steal (WRITER_LOCKED), the reader queues and sets WAITERS.
    l.sleeps(r);
    l.check("write w; queue r:R; flags waiters");
    assert_eq!(l.events(r, LockEvent::RwsemRlockFast), 0);
    l.step(w, Exited, &["w:UW=ok"]);
    // up_write granted the reader: it left the wait list, the flags went with it.
    l.check("read 1; queue r:R+; flags");
    l.runnable(&[r]);
    l.step(r, Yielded, &["r:R=ok"]);
    l.check("read 1; queue; flags");
    l.run_to_completion();
}

// ---- AR2: down_read slow path: reader optimistic lock stealing ----------------------------

/// In the wake window (the head writer was woken, has not run: free lock, WAITERS set) a new
/// reader's fast path fails on WAITERS, but the slow path keeps its bias: the lock is neither
/// write-locked nor handed off, and not owned by other readers (1a728dff855a). The woken
/// writer then finds readers and sleeps again. Model A would queue the reader (AR2 A).
#[test]
fn b_ar2_reader_steals_a_free_lock_in_the_wake_window() {
    let mut l = Lab::new(B);
    let h = l.actor("h", &[W, UW]);
    let w = l.actor("w", &[W, UW]);
    let r = l.actor("r", &[R, UR]);
    l.step(h, Yielded, &["h:W=ok"]);
    l.sleeps(w);
    l.check("write h; queue w:W; flags waiters");
    l.step(h, Exited, &["h:UW=ok"]);
    l.check("free; queue w:W; flags waiters");
    l.runnable(&[w]);
    l.step(r, Yielded, &["r:R=ok"]);
    l.check("read 1; queue w:W; flags waiters");
    assert_eq!(l.events(r, LockEvent::RwsemRlockSteal), 1);
    assert_eq!(l.events(r, LockEvent::RwsemSleepReader), 0);
    // The stealing reader was the only one and WAITERS was set: it ran WAKE_READ_OWNED,
    // which leaves a head writer alone.
    assert_eq!(l.events(r, LockEvent::RwsemWakeWriter), 0);
    // The woken writer fails (readers hold) and sleeps again; no handoff before its timeout.
    l.sleeps(w);
    l.check("read 1; queue w:W; flags waiters");
    l.step(r, Exited, &["r:UR=ok"]);
    l.runnable(&[w]);
    l.run_to_completion();
}

/// Anti-starvation (2f06f702925b): a reader does not steal a lock other readers own; with a
/// writer queued it waits behind it (AR3).
#[test]
fn b_ar2_no_stealing_while_other_readers_own_the_lock() {
    let mut l = Lab::new(B);
    let r0 = l.actor("r0", &[R, UR]);
    let w = l.actor("w", &[W, UW]);
    let r1 = l.actor("r1", &[R, UR]);
    l.step(r0, Yielded, &["r0:R=ok"]);
    l.sleeps(w);
    l.check("read 1; queue w:W; flags waiters");
    l.sleeps(r1);
    l.check("read 1; queue w:W r1:R; flags waiters");
    assert_eq!(l.events(r1, LockEvent::RwsemRlockSteal), 0);
    // r1's conditional wake-up (readers hold: WAKE_READERS) did not wake the head writer.
    l.blocked(&[w]);
    assert_eq!(l.events(r1, LockEvent::RwsemWakeWriter), 0);
    l.step(r0, Exited, &["r0:UR=ok"]);
    l.runnable(&[w]);
    l.blocked(&[r1]);
    l.step(w, Yielded, &["w:W=ok"]);
    l.check("write w; queue r1:R; flags waiters");
    l.step(w, Exited, &["w:UW=ok"]);
    l.check("read 1; queue r1:R+; flags");
    l.run_to_completion();
}

/// With HANDOFF set no reader steals, even on a free lock: it queues, and its conditional
/// wake-up (free lock: WAKE_ANY) wakes the head writer.
#[test]
fn b_ar2_no_stealing_while_handoff_is_set() {
    let (mut l, h, w1) = writer_with_handoff_behind_reader_holder();
    let r = l.actor("r", &[R, UR]);
    l.step(h, Exited, &["h:UR=ok"]);
    l.check("free; queue w1:W!; flags waiters handoff(by w1)");
    l.runnable(&[w1]);
    l.sleeps(r);
    l.check("free; queue w1:W! r:R; flags waiters handoff(by w1)");
    assert_eq!(l.events(r, LockEvent::RwsemRlockSteal), 0);
    assert_eq!(l.events(r, LockEvent::RwsemWakeWriter), 1);
    l.step(w1, Yielded, &["w1:W=ok"]);
    l.check("write w1; queue r:R; flags waiters");
    l.run_to_completion();
}

/// The queued reader's conditional wake-up on a write-held lock wakes nobody.
#[test]
fn b_ar2_reader_enqueued_behind_a_writer_holder_wakes_nobody() {
    let mut l = Lab::new(B);
    let h = l.actor("h", &[W, UW]);
    let w = l.actor("w", &[W, UW]);
    let r = l.actor("r", &[R, UR]);
    l.step(h, Yielded, &["h:W=ok"]);
    l.sleeps(w);
    l.sleeps(r);
    l.check("write h; queue w:W r:R; flags waiters");
    l.blocked(&[w, r]);
    assert_eq!(l.events(r, LockEvent::RwsemWakeWriter), 0);
    l.run_to_completion();
}

// ---- AR3: readers wait behind a queued writer ---------------------------------------------

#[test]
fn b_ar3_reader_waits_behind_queued_writer_although_only_readers_hold() {
    let mut l = Lab::new(B);
    let r0 = l.actor("r0", &[R, Wait(1), UR]);
    let w = l.actor("w", &[W, UW]);
    let r1 = l.actor("r1", &[R, UR]);
    let c = l.actor("c", &[Complete(1)]);
    l.step(r0, Yielded, &["r0:R=ok"]);
    l.sleeps(w);
    l.sleeps(r1);
    l.check("read 1; queue w:W r1:R; flags waiters");
    // Read-after-read deadlock (AR3's consequence): r0 now waits for c, c completes.
    l.sleeps(r0);
    l.step(c, Exited, &["c:Complete(1)=ok"]);
    l.run_to_completion();
    let _ = r1;
}

/// AR3's consequence in B as in A: a task that holds the lock for read and calls down_read
/// again deadlocks once a writer queued in between (the other readers own the lock, no
/// stealing).
#[test]
fn b_ar3_recursive_down_read_deadlocks_once_a_writer_queued_in_between() {
    let mut l = Lab::new(B);
    let r0 = l.actor("r0", &[R, R, UR, UR]);
    let r1 = l.actor("r1", &[R, UR]);
    let w = l.actor("w", &[W, UW]);
    l.step(r0, Yielded, &["r0:R=ok"]);
    l.step(r1, Yielded, &["r1:R=ok"]);
    l.sleeps(w);
    l.sleeps(r0);
    l.check("read 2; queue w:W r0:R; flags waiters");
    l.step(r1, Exited, &["r1:UR=ok"]);
    let rep = expect_deadlock(l.run());
    assert_eq!(rep.tasks.len(), 2, "{rep}");
}

// ---- AR4: down_write fast path ------------------------------------------------------------

#[test]
fn b_ar4_write_fast_path_only_on_a_zero_count() {
    let mut l = Lab::new(B);
    let h = l.actor("h", &[W, UW]);
    let w1 = l.actor("w1", &[W, UW]);
    let w2 = l.actor("w2", &[W, UW]);
    l.step(h, Yielded, &["h:W=ok"]);
    assert_eq!(l.events(h, LockEvent::RwsemWlockFast), 1);
    l.sleeps(w1);
    l.step(h, Exited, &["h:UW=ok"]);
    // Free, but WAITERS is set: the fast path fails, the slow path takes the lock (AR6).
    l.check("free; queue w1:W; flags waiters");
    l.step(w2, Yielded, &["w2:W=ok"]);
    assert_eq!(l.events(w2, LockEvent::RwsemWlockFast), 0);
    assert_eq!(l.events(w2, LockEvent::RwsemWlock), 1);
    l.check("write w2; queue w1:W; flags waiters");
    l.run_to_completion();
}

// ---- AR5: down_write slow path ------------------------------------------------------------

#[test]
fn b_ar5_writer_queues_sets_waiters_and_takes_the_lock_itself() {
    let mut l = Lab::new(B);
    let r = l.actor("r", &[R, UR]);
    let w = l.actor("w", &[W, UW]);
    l.step(r, Yielded, &["r:R=ok"]);
    l.sleeps(w);
    l.check("read 1; queue w:W; flags waiters");
    l.step(r, Exited, &["r:UR=ok"]);
    // Woken, not granted (WK3): the lock is free and w still queued.
    l.check("free; queue w:W; flags waiters");
    l.step(w, Yielded, &["w:W=ok"]);
    // The only waiter took it: unlinked, WAITERS cleared.
    l.check("write w; queue; flags");
    l.step(w, Exited, &["w:UW=ok"]);
    l.assert_closed();
}

/// A writer that queues (not first) on a free lock runs WAKE_ANY for the head, then tries
/// and takes the lock itself while HANDOFF is clear (AR5 + AR6).
#[test]
fn b_ar5_non_first_writer_on_a_free_lock_wakes_the_head_and_takes_the_lock() {
    let mut l = Lab::new(B);
    let r = l.actor("r", &[R, UR]);
    let w1 = l.actor("w1", &[W, UW]);
    let w2 = l.actor("w2", &[W, UW]);
    l.step(r, Yielded, &["r:R=ok"]);
    l.sleeps(w1);
    l.step(r, Exited, &["r:UR=ok"]);
    l.runnable(&[w1]);
    l.step(w2, Yielded, &["w2:W=ok"]);
    assert_eq!(l.events(w2, LockEvent::RwsemWakeWriter), 1);
    l.check("write w2; queue w1:W; flags waiters");
    l.sleeps(w1);
    l.run_to_completion();
}

/// A writer queuing behind a head writer on a read-held lock runs WAKE_READERS
/// (`rwsem_cond_wake_waiter`), which never wakes a writer (WK4).
#[test]
fn b_ar5_wk4_writer_queuing_on_read_held_lock_does_not_wake_a_head_writer() {
    let mut l = Lab::new(B);
    let r = l.actor("r", &[R, UR]);
    let w1 = l.actor("w1", &[W, UW]);
    let w2 = l.actor("w2", &[W, UW]);
    l.step(r, Yielded, &["r:R=ok"]);
    l.sleeps(w1);
    l.sleeps(w2);
    l.check("read 1; queue w1:W w2:W; flags waiters");
    l.blocked(&[w1, w2]);
    assert_eq!(l.events(w2, LockEvent::RwsemWakeWriter), 0);
    l.run_to_completion();
}

// ---- AR6: writer lock stealing --------------------------------------------------------------

#[test]
fn b_ar6_writer_steals_in_the_wake_window_and_the_woken_writer_sleeps_again() {
    let mut l = Lab::new(B);
    let h = l.actor("h", &[W, UW]);
    let w1 = l.actor("w1", &[W, UW]);
    let w2 = l.actor("w2", &[W, UW]);
    l.step(h, Yielded, &["h:W=ok"]);
    l.sleeps(w1);
    l.step(h, Exited, &["h:UW=ok"]);
    l.check("free; queue w1:W; flags waiters");
    l.step(w2, Yielded, &["w2:W=ok"]);
    l.check("write w2; queue w1:W; flags waiters");
    l.sleeps(w1);
    l.check("write w2; queue w1:W; flags waiters");
    l.step(w2, Exited, &["w2:UW=ok"]);
    l.step(w1, Yielded, &["w1:W=ok"]);
    l.check("write w1; queue; flags");
    l.run_to_completion();
}

/// HANDOFF credited to the first waiter reserves the lock for it (6eebd5fb2083): a writer
/// arriving in the wake window queues instead of stealing.
#[test]
fn b_ar6_no_stealing_from_a_first_waiter_holding_the_handoff() {
    let (mut l, h, w1) = writer_with_handoff_behind_reader_holder();
    let w2 = l.actor("w2", &[W, UW]);
    l.step(h, Exited, &["h:UR=ok"]);
    l.runnable(&[w1]);
    l.sleeps(w2);
    l.check("free; queue w1:W! w2:W; flags waiters handoff(by w1)");
    l.step(w1, Yielded, &["w1:W=ok"]);
    // The first waiter took the lock: HANDOFF cleared, w2 still queued.
    l.check("write w1; queue w2:W; flags waiters");
    l.run_to_completion();
}

// ---- AR7: trylocks ----------------------------------------------------------------------------

#[test]
fn b_ar7_trylocks_on_an_uncontended_lock() {
    let mut l = Lab::new(B);
    let a = l.actor("a", &[TR, TR, TW, UR, UR, TW, UW]);
    l.step(a, Yielded, &["a:TR=1"]);
    l.step(a, Yielded, &["a:TR=1"]);
    l.step(a, Yielded, &["a:TW=0"]);
    l.check("read 2; queue; flags");
    l.step(a, Yielded, &["a:UR=ok"]);
    l.step(a, Yielded, &["a:UR=ok"]);
    l.step(a, Yielded, &["a:TW=1"]);
    l.check("write a; queue; flags");
    l.step(a, Exited, &["a:UW=ok"]);
    l.assert_closed();
}

/// While any waiter is queued both trylocks fail, even when only readers hold or the lock is
/// free in the wake window; trylocks never steal.
#[test]
fn b_ar7_trylocks_fail_while_a_waiter_is_queued() {
    let mut l = Lab::new(B);
    let r = l.actor("r", &[R, UR]);
    let w = l.actor("w", &[W, UW]);
    l.step(r, Yielded, &["r:R=ok"]);
    l.sleeps(w);
    l.trylocks_fail();
    l.step(r, Exited, &["r:UR=ok"]);
    l.check("free; queue w:W; flags waiters");
    l.trylocks_fail();
    l.run_to_completion();
}

// ---- AR8: handoff ---------------------------------------------------------------------------

/// h holds the lock for read (and waits on completion 9 before it releases); w1 queued behind
/// it timed out and set HANDOFF on a spurious wake-up. Returns the lab with h and w1.
fn writer_with_handoff_behind_reader_holder() -> (Lab, mm::task::Tid, mm::task::Tid) {
    let mut l = Lab::new(B);
    let h = l.actor("h", &[R, UR]);
    let w1 = l.actor("w1", &[W, UW]);
    l.step(h, Yielded, &["h:R=ok"]);
    l.sleeps(w1);
    l.advance_ms(5);
    l.spurious_wake(w1);
    l.sleeps(w1);
    l.check("read 1; queue w1:W!; flags waiters handoff(by w1)");
    assert_eq!(l.events(w1, LockEvent::RwsemWlockHandoff), 1);
    (l, h, w1)
}

/// A writer whose try fails on a held lock sets HANDOFF only once its timeout
/// (`RWSEM_WAIT_TIMEOUT` = 4 jiffies at HZ=1000) has passed: "expired" is `jiffies` strictly
/// after enqueue + 4.
#[test]
fn b_ar8_writer_sets_handoff_only_after_its_timeout_has_strictly_passed() {
    assert_eq!(rwsem_wait_timeout(1000), 4);
    assert_eq!(rwsem_wait_timeout(250), 1);
    assert_eq!(rwsem_wait_timeout(100), 1);
    assert_eq!(rwsem_wait_timeout(300), 2);
    let mut l = Lab::new(B);
    let h = l.actor("h", &[R, UR]);
    let w = l.actor("w", &[W, UW]);
    l.step(h, Yielded, &["h:R=ok"]);
    l.sleeps(w);
    // Enqueued in jiffy 0: timeout = 4.
    assert!(l.sim.now_ns() < 1_000_000);
    // Jiffy 4 (= the timeout): not expired.
    l.sim.advance_time(4_500_000 - l.sim.now_ns());
    l.spurious_wake(w);
    l.sleeps(w);
    l.check("read 1; queue w:W; flags waiters");
    // Jiffy 5: expired.
    l.advance_ms(1);
    l.spurious_wake(w);
    l.sleeps(w);
    l.check("read 1; queue w:W!; flags waiters handoff(by w)");
    l.run_to_completion();
}

/// The timeout is in the executor's jiffies: at HZ=100, one jiffy (10 ms).
#[test]
fn b_ar8_handoff_timeout_follows_the_executors_hz() {
    let mut l = Lab::with_sim(
        B,
        SimConfig {
            seed: 1,
            hz: 100,
            ..Default::default()
        },
    );
    let h = l.actor("h", &[R, UR]);
    let w = l.actor("w", &[W, UW]);
    l.step(h, Yielded, &["h:R=ok"]);
    l.sleeps(w);
    // 15 ms later: jiffy 1 = the timeout, not after it.
    l.advance_ms(15);
    l.spurious_wake(w);
    l.sleeps(w);
    l.check("read 1; queue w:W; flags waiters");
    l.advance_ms(10);
    l.spurious_wake(w);
    l.sleeps(w);
    l.check("read 1; queue w:W!; flags waiters handoff(by w)");
    l.run_to_completion();
}

/// While HANDOFF is set: the reader fast path fails, reader stealing is off, both trylocks
/// fail; the first writer gets the lock when the readers leave, which clears HANDOFF.
#[test]
fn b_ar8_effects_of_handoff_and_its_clearing_by_the_first_writer() {
    let (mut l, h, w1) = writer_with_handoff_behind_reader_holder();
    let r = l.actor("r", &[R, UR]);
    l.trylocks_fail();
    // Read-held by another reader: the fast path fails on HANDOFF|WAITERS, no stealing.
    l.sleeps(r);
    l.check("read 1; queue w1:W! r:R; flags waiters handoff(by w1)");
    assert_eq!(l.events(r, LockEvent::RwsemRlockSteal), 0);
    l.step(h, Exited, &["h:UR=ok"]);
    l.step(w1, Yielded, &["w1:W=ok"]);
    l.check("write w1; queue r:R; flags waiters");
    l.step(w1, Exited, &["w1:UW=ok"]);
    l.check("read 1; queue r:R+; flags");
    l.run_to_completion();
}

/// A non-first writer that times out sets the bit too, but the credit goes to the first
/// waiter (`first->handoff_set`, v6.3); the first then gets the lock.
#[test]
fn b_ar8_handoff_set_by_a_non_first_writer_is_credited_to_the_first() {
    let mut l = Lab::new(B);
    let h = l.actor("h", &[R, UR]);
    let w1 = l.actor("w1", &[W, UW]);
    let w2 = l.actor("w2", &[W, UW]);
    l.step(h, Yielded, &["h:R=ok"]);
    l.sleeps(w1);
    l.sleeps(w2);
    l.advance_ms(5);
    l.spurious_wake(w2);
    l.sleeps(w2);
    l.check("read 1; queue w1:W! w2:W; flags waiters handoff(by w2)");
    l.step(h, Exited, &["h:UR=ok"]);
    l.runnable(&[w1]);
    l.step(w1, Yielded, &["w1:W=ok"]);
    l.check("write w1; queue w2:W; flags waiters");
    l.run_to_completion();
}

/// A waker that finds a timed-out reader at the head while a writer holds sets HANDOFF for
/// that reader; the next release grants the readers and clears it. Reached through a killed
/// first reader's bail-out (its WAKE_ANY finds r1 at the head while h holds).
#[test]
fn b_ar8_head_reader_gets_handoff_from_a_waker_and_the_grant_clears_it() {
    let mut l = Lab::new(B);
    let h = l.actor("h", &[W, UW]);
    let rk = l.actor("rk", &[RK]);
    let r1 = l.actor("r1", &[R, UR]);
    let w2 = l.actor("w2", &[W, UW]);
    l.step(h, Yielded, &["h:W=ok"]);
    l.sleeps(rk);
    l.sleeps(r1);
    l.advance_ms(5);
    l.kill(rk);
    l.step(rk, Exited, &["rk:RK=EINTR"]);
    l.check("write h; queue r1:R!; flags waiters handoff(by r1)");
    assert_eq!(l.events(rk, LockEvent::RwsemRlockHandoff), 1);
    l.blocked(&[r1]);
    // A writer arriving now yields to the reader the handoff is credited to.
    l.sleeps(w2);
    l.check("write h; queue r1:R! w2:W; flags waiters handoff(by r1)");
    l.step(h, Exited, &["h:UW=ok"]);
    l.check("read 1; queue r1:R+ w2:W; flags waiters");
    l.run_to_completion();
}

/// A killed writer whose timeout passed tries the lock once more before it looks at the
/// signal (the v6.6 loop: try, then signal): the try fails on the held lock and sets HANDOFF,
/// then the writer leaves; the bit stays (v5.16+) and the timed-out reader now at the head gets
/// the credit from the bail-out's WAKE_ANY.
#[test]
fn b_ar8_killed_timed_out_writer_sets_handoff_on_its_way_out_and_the_next_reader_inherits_it() {
    let mut l = Lab::new(B);
    let h = l.actor("h", &[W, UW]);
    let wk = l.actor("wk", &[WK]);
    let r1 = l.actor("r1", &[R, UR]);
    l.step(h, Yielded, &["h:W=ok"]);
    l.sleeps(wk);
    l.sleeps(r1);
    l.advance_ms(5);
    l.kill(wk);
    l.step(wk, Exited, &["wk:WK=EINTR"]);
    assert_eq!(l.events(wk, LockEvent::RwsemWlockHandoff), 1);
    l.check("write h; queue r1:R!; flags waiters handoff(inherited)");
    l.step(h, Exited, &["h:UW=ok"]);
    l.check("read 1; queue r1:R+; flags");
    l.run_to_completion();
}

/// Before its timeout a head reader gets no handoff: the waker only undoes its grant.
#[test]
fn b_ar8_head_reader_before_its_timeout_gets_no_handoff() {
    let mut l = Lab::new(B);
    let h = l.actor("h", &[W, UW]);
    let wk = l.actor("wk", &[WK]);
    let r1 = l.actor("r1", &[R, UR]);
    l.step(h, Yielded, &["h:W=ok"]);
    l.sleeps(wk);
    l.sleeps(r1);
    l.kill(wk);
    l.step(wk, Exited, &["wk:WK=EINTR"]);
    l.check("write h; queue r1:R; flags waiters");
    l.blocked(&[r1]);
    l.run_to_completion();
}

/// v5.16+ (d257cc8cb8d5): the waiter credited with HANDOFF leaves without the lock; the bit
/// stays and the new first waiter inherits it (v5.3–v5.15 cleared it on the way out).
#[test]
fn b_ar8_handoff_is_inherited_when_its_holder_is_killed() {
    let mut l = Lab::new(B);
    let h = l.actor("h", &[R, UR]);
    let wk = l.actor("wk", &[WK]);
    let w2 = l.actor("w2", &[W, UW]);
    l.step(h, Yielded, &["h:R=ok"]);
    l.sleeps(wk);
    l.sleeps(w2);
    l.advance_ms(5);
    l.spurious_wake(wk);
    l.sleeps(wk);
    l.check("read 1; queue wk:W! w2:W; flags waiters handoff(by wk)");
    l.kill(wk);
    l.step(wk, Exited, &["wk:WK=EINTR"]);
    // Inherited: the bit stays with nobody credited; wk was first, so w2 was woken.
    l.check("read 1; queue w2:W; flags waiters handoff(inherited)");
    l.runnable(&[w2]);
    l.trylocks_fail();
    // w2 retries: the lock is held and HANDOFF is already set: it can neither take nor set it.
    l.sleeps(w2);
    l.check("read 1; queue w2:W; flags waiters handoff(inherited)");
    l.step(h, Exited, &["h:UR=ok"]);
    l.step(w2, Yielded, &["w2:W=ok"]);
    l.check("write w2; queue; flags");
    l.run_to_completion();
}

/// An inherited HANDOFF (not credited to the first waiter) does not reserve the lock: a
/// non-first writer may take it (6eebd5fb2083: only a handoff the first waiter set counts).
#[test]
fn b_ar8_inherited_handoff_does_not_stop_a_non_first_writer() {
    let mut l = Lab::new(B);
    let h = l.actor("h", &[R, Wait(1), UR]);
    let wk = l.actor("wk", &[WK]);
    let w2 = l.actor("w2", &[W, UW]);
    let w3 = l.actor("w3", &[W, UW]);
    let c = l.actor("c", &[Complete(1)]);
    l.step(h, Yielded, &["h:R=ok"]);
    l.sleeps(h);
    l.sleeps(wk);
    l.sleeps(w2);
    l.advance_ms(5);
    l.spurious_wake(wk);
    l.sleeps(wk);
    l.kill(wk);
    l.step(wk, Exited, &["wk:WK=EINTR"]);
    l.sleeps(w2);
    l.check("read 1; queue w2:W; flags waiters handoff(inherited)");
    l.step(c, Exited, &["c:Complete(1)=ok"]);
    l.step(h, Yielded, &["h:Wait(1)=ok"]);
    l.step(h, Exited, &["h:UR=ok"]);
    // The lock is free; w2 (first, woken) has not run. w3 arrives and takes it.
    l.runnable(&[w2]);
    l.step(w3, Yielded, &["w3:W=ok"]);
    l.check("write w3; queue w2:W; flags waiters");
    l.run_to_completion();
}

/// The last waiter leaving clears WAITERS and HANDOFF (`rwsem_del_waiter`): the fast paths
/// work again.
#[test]
fn b_ar8_s52_last_waiter_leaving_clears_waiters_and_handoff() {
    let mut l = Lab::new(B);
    let h = l.actor("h", &[R, UR, R, UR]);
    let wk = l.actor("wk", &[WK]);
    l.step(h, Yielded, &["h:R=ok"]);
    l.sleeps(wk);
    l.advance_ms(5);
    l.spurious_wake(wk);
    l.sleeps(wk);
    l.check("read 1; queue wk:W!; flags waiters handoff(by wk)");
    l.kill(wk);
    l.step(wk, Exited, &["wk:WK=EINTR"]);
    l.check("read 1; queue; flags");
    l.step(h, Yielded, &["h:UR=ok"]);
    l.step(h, Yielded, &["h:R=ok"]);
    assert_eq!(l.events(h, LockEvent::RwsemRlockFast), 2);
    l.run_to_completion();
}

// ---- WK1, WK2: releases -------------------------------------------------------------------

#[test]
fn b_wk1_only_the_last_reader_wakes_and_only_if_waiters() {
    let mut l = Lab::new(B);
    let r1 = l.actor("r1", &[R, UR]);
    let r2 = l.actor("r2", &[R, UR]);
    let w = l.actor("w", &[W, UW]);
    let r3 = l.actor("r3", &[R, UR]);
    l.step(r1, Yielded, &["r1:R=ok"]);
    l.step(r2, Yielded, &["r2:R=ok"]);
    l.sleeps(w);
    l.step(r1, Exited, &["r1:UR=ok"]);
    l.blocked(&[w]);
    l.step(r2, Exited, &["r2:UR=ok"]);
    l.runnable(&[w]);
    assert_eq!(l.events(r2, LockEvent::RwsemWakeWriter), 1);
    assert_eq!(l.events(r1, LockEvent::RwsemWakeWriter), 0);
    l.step(w, Yielded, &["w:W=ok"]);
    l.step(w, Exited, &["w:UW=ok"]);
    l.step(r3, Yielded, &["r3:R=ok"]);
    l.step(r3, Exited, &["r3:UR=ok"]);
    assert_eq!(l.events(r3, LockEvent::RwsemWakeWriter), 0);
    assert_eq!(l.events(r3, LockEvent::RwsemWakeReader), 0);
    l.assert_closed();
}

#[test]
fn b_wk2_up_write_wakes_only_if_waiters() {
    let mut l = Lab::new(B);
    let h = l.actor("h", &[W, UW, W, UW]);
    let w = l.actor("w", &[W, UW]);
    l.step(h, Yielded, &["h:W=ok"]);
    l.step(h, Yielded, &["h:UW=ok"]);
    assert_eq!(l.events(h, LockEvent::RwsemWakeWriter), 0);
    l.step(h, Yielded, &["h:W=ok"]);
    l.sleeps(w);
    l.step(h, Exited, &["h:UW=ok"]);
    l.runnable(&[w]);
    assert_eq!(l.events(h, LockEvent::RwsemWakeWriter), 1);
    l.run_to_completion();
}

// ---- WK3: WAKE_ANY ------------------------------------------------------------------------

#[test]
fn b_wk3_head_writer_is_only_woken_and_only_the_head() {
    let mut l = Lab::new(B);
    let h = l.actor("h", &[W, UW]);
    let w1 = l.actor("w1", &[W, UW]);
    let w2 = l.actor("w2", &[W, UW]);
    l.step(h, Yielded, &["h:W=ok"]);
    l.sleeps(w1);
    l.sleeps(w2);
    l.step(h, Exited, &["h:UW=ok"]);
    l.check("free; queue w1:W w2:W; flags waiters");
    l.runnable(&[w1]);
    l.blocked(&[w2]);
    l.step(w1, Yielded, &["w1:W=ok"]);
    l.check("write w1; queue w2:W; flags waiters");
    l.run_to_completion();
}

/// The phase-fair reader wake-up (d3681e269fff, v5.3; v6.6): with a reader at the head every
/// queued reader is granted, including those behind writers; the writers keep their order.
/// (Model A grants only the leading run r1.)
#[test]
fn b_wk3_reader_at_the_head_grants_every_queued_reader_skipping_writers() {
    let mut l = Lab::new(B);
    let h = l.actor("h", &[W, UW]);
    let r1 = l.actor("r1", &[R, UR]);
    let w2 = l.actor("w2", &[W, UW]);
    let r3 = l.actor("r3", &[R, UR]);
    let w4 = l.actor("w4", &[W, UW]);
    let r5 = l.actor("r5", &[R, UR]);
    l.step(h, Yielded, &["h:W=ok"]);
    for t in [r1, w2, r3, w4, r5] {
        l.sleeps(t);
    }
    l.check("write h; queue r1:R w2:W r3:R w4:W r5:R; flags waiters");
    l.step(h, Exited, &["h:UW=ok"]);
    l.check("read 3; queue r1:R+ w2:W r3:R+ w4:W r5:R+; flags waiters");
    assert_eq!(l.events(h, LockEvent::RwsemWakeReader), 3);
    l.runnable(&[r1, r3, r5]);
    l.blocked(&[w2, w4]);
    for t in [r1, r3, r5] {
        l.step(t, Yielded, &[&format!("{}:R=ok", l.name(t))]);
    }
    l.check("read 3; queue w2:W w4:W; flags waiters");
    for t in [r1, r3] {
        l.step(t, Exited, &[&format!("{}:UR=ok", l.name(t))]);
    }
    l.blocked(&[w2]);
    l.step(r5, Exited, &["r5:UR=ok"]);
    l.runnable(&[w2]);
    l.blocked(&[w4]);
    l.run_to_completion();
}

/// One wake-up grants `MAX_READERS_WAKEUP` (256) readers at most; the others stay queued
/// (with WAITERS) until the granted readers leave, then the last one's wake-up grants them.
#[test]
fn b_wk3_one_wake_up_grants_at_most_256_readers() {
    let mut l = Lab::new(B);
    let h = l.actor("h", &[W, UW]);
    l.step(h, Yielded, &["h:W=ok"]);
    let n = MAX_READERS_WAKEUP + 10;
    let readers: Vec<_> = (0..n)
        .map(|i| {
            let name: &'static str = Box::leak(format!("r{i}").into_boxed_str());
            l.actor(name, &[R, UR])
        })
        .collect();
    for &r in &readers {
        l.sleeps(r);
    }
    l.step(h, Exited, &["h:UW=ok"]);
    let s = l.snapshot();
    assert_eq!(s.readers, MAX_READERS_WAKEUP as u64);
    assert_eq!(s.granted.len(), MAX_READERS_WAKEUP);
    assert_eq!(s.waiting().count(), 10);
    assert_eq!(s.waiters_flag, 1);
    assert_eq!(
        l.events(h, LockEvent::RwsemWakeReader),
        MAX_READERS_WAKEUP as u64
    );
    l.run_to_completion();
}

// ---- WK5: downgrade_write -----------------------------------------------------------------

/// downgrade_write keeps the holder as one reader and grants every queued reader (a reader
/// heads the queue: WAKE_READ_OWNED, phase-fair), never a writer.
#[test]
fn b_wk5_downgrade_grants_every_queued_reader_when_a_reader_heads_the_queue() {
    let mut l = Lab::new(B);
    let h = l.actor("h", &[W, DG, UR]);
    let r1 = l.actor("r1", &[R, UR]);
    let w2 = l.actor("w2", &[W, UW]);
    let r3 = l.actor("r3", &[R, UR]);
    l.step(h, Yielded, &["h:W=ok"]);
    for t in [r1, w2, r3] {
        l.sleeps(t);
    }
    l.step(h, Yielded, &["h:DG=ok"]);
    l.check("read 3; queue r1:R+ w2:W r3:R+; flags waiters");
    assert_eq!(l.events(h, LockEvent::RwsemDowngrade), 1);
    l.runnable(&[r1, r3]);
    l.blocked(&[w2]);
    l.run_to_completion();
}

/// With a writer at the head, downgrade_write grants nobody: the readers behind it keep
/// waiting although the lock is now only read-held (WK5, as in A).
#[test]
fn b_wk5_downgrade_never_wakes_a_head_writer_and_grants_nobody_behind_it() {
    let mut l = Lab::new(B);
    let h = l.actor("h", &[W, DG, UR]);
    let w1 = l.actor("w1", &[W, UW]);
    let r2 = l.actor("r2", &[R, UR]);
    l.step(h, Yielded, &["h:W=ok"]);
    l.sleeps(w1);
    l.sleeps(r2);
    l.step(h, Yielded, &["h:DG=ok"]);
    l.check("read 1; queue w1:W r2:R; flags waiters");
    l.blocked(&[w1, r2]);
    l.step(h, Exited, &["h:UR=ok"]);
    l.runnable(&[w1]);
    l.run_to_completion();
}

#[test]
fn b_wk5_downgrade_without_waiters_leaves_one_read_hold() {
    let mut l = Lab::new(B);
    let h = l.actor("h", &[W, DG, UR]);
    let r = l.actor("r", &[R, UR]);
    l.step(h, Yielded, &["h:W=ok"]);
    l.step(h, Yielded, &["h:DG=ok"]);
    l.check("read 1; queue; flags");
    // Now reader-owned: a new reader takes the fast path alongside.
    l.step(r, Yielded, &["r:R=ok"]);
    l.check("read 2; queue; flags");
    l.run_to_completion();
}

/// Downgrade and handoff: a HANDOFF credited to a head writer survives the downgrade (no
/// reader is granted), so new readers still cannot take the now read-held lock; the writer
/// gets it when the downgraded holder leaves.
#[test]
fn b_wk5_downgrade_keeps_a_head_writers_handoff() {
    let mut l = Lab::new(B);
    let h = l.actor("h", &[W, DG, UR]);
    let w1 = l.actor("w1", &[W, UW]);
    let r = l.actor("r", &[R, UR]);
    l.step(h, Yielded, &["h:W=ok"]);
    l.sleeps(w1);
    l.advance_ms(5);
    l.spurious_wake(w1);
    l.sleeps(w1);
    l.check("write h; queue w1:W!; flags waiters handoff(by w1)");
    l.step(h, Yielded, &["h:DG=ok"]);
    l.check("read 1; queue w1:W!; flags waiters handoff(by w1)");
    l.trylocks_fail();
    l.sleeps(r);
    l.check("read 1; queue w1:W! r:R; flags waiters handoff(by w1)");
    l.step(h, Exited, &["h:UR=ok"]);
    l.step(w1, Yielded, &["w1:W=ok"]);
    l.check("write w1; queue r:R; flags waiters");
    l.run_to_completion();
}

/// Downgrade and handoff: a HANDOFF a timed-out head reader got is cleared by the downgrade's
/// grant of that reader.
#[test]
fn b_wk5_downgrade_grants_a_head_reader_holding_the_handoff_and_clears_it() {
    let mut l = Lab::new(B);
    let h = l.actor("h", &[W, DG, UR]);
    let rk = l.actor("rk", &[RK]);
    let r1 = l.actor("r1", &[R, UR]);
    l.step(h, Yielded, &["h:W=ok"]);
    l.sleeps(rk);
    l.sleeps(r1);
    l.advance_ms(5);
    l.kill(rk);
    l.step(rk, Exited, &["rk:RK=EINTR"]);
    l.check("write h; queue r1:R!; flags waiters handoff(by r1)");
    l.step(h, Yielded, &["h:DG=ok"]);
    l.check("read 2; queue r1:R+; flags");
    l.run_to_completion();
}

// ---- WK6: order ---------------------------------------------------------------------------

/// Writers are served one at a time in queue order; readers queued behind a writer are
/// served with the next reader phase, ahead of writers that queued before them.
#[test]
fn b_wk6_writers_in_order_readers_in_the_next_reader_phase() {
    let mut l = Lab::new(B);
    let h = l.actor("h", &[R, UR]);
    let w1 = l.actor("w1", &[W, UW]);
    let w2 = l.actor("w2", &[W, UW]);
    let r3 = l.actor("r3", &[R, UR]);
    let w4 = l.actor("w4", &[W, UW]);
    l.step(h, Yielded, &["h:R=ok"]);
    for t in [w1, w2, r3, w4] {
        l.sleeps(t);
    }
    l.step(h, Exited, &["h:UR=ok"]);
    l.step(w1, Yielded, &["w1:W=ok"]);
    l.check("write w1; queue w2:W r3:R w4:W; flags waiters");
    l.step(w1, Exited, &["w1:UW=ok"]);
    l.runnable(&[w2]);
    l.blocked(&[r3, w4]);
    l.step(w2, Yielded, &["w2:W=ok"]);
    l.step(w2, Exited, &["w2:UW=ok"]);
    // r3 heads the queue now: the reader phase.
    l.check("read 1; queue r3:R+ w4:W; flags waiters");
    l.run_to_completion();
}

// ---- §5.1: when signals are checked -------------------------------------------------------

#[test]
fn b_s51_fast_paths_ignore_pending_signals() {
    let mut l = Lab::new(B);
    let a = l.actor("a", &[RK, UR, WK, UW, RI, UR]);
    l.kill(a);
    l.signal(a);
    l.step(a, Yielded, &["a:RK=ok"]);
    l.step(a, Yielded, &["a:UR=ok"]);
    l.step(a, Yielded, &["a:WK=ok"]);
    l.step(a, Yielded, &["a:UW=ok"]);
    l.step(a, Yielded, &["a:RI=ok"]);
    l.step(a, Exited, &["a:UR=ok"]);
    l.assert_closed();
}

/// The writer checks signals after a failed try: woken to a free lock it takes it, SIGKILL
/// or not.
#[test]
fn b_s51_killable_writer_woken_to_a_free_lock_takes_it_despite_sigkill() {
    let mut l = Lab::new(B);
    let h = l.actor("h", &[R, UR]);
    let wk = l.actor("wk", &[WK, UW]);
    l.step(h, Yielded, &["h:R=ok"]);
    l.sleeps(wk);
    l.step(h, Exited, &["h:UR=ok"]);
    l.kill(wk);
    l.step(wk, Yielded, &["wk:WK=ok"]);
    l.step(wk, Exited, &["wk:UW=ok"]);
    l.assert_closed();
}

#[test]
fn b_s51_killable_writer_with_sigkill_pending_bails_out_after_the_first_failed_try() {
    let mut l = Lab::new(B);
    let h = l.actor("h", &[R, UR]);
    let wk = l.actor("wk", &[WK]);
    l.step(h, Yielded, &["h:R=ok"]);
    l.kill(wk);
    l.step(wk, Exited, &["wk:WK=EINTR"]);
    assert_eq!(l.events(wk, LockEvent::RwsemSleepWriter), 0);
    l.check("read 1; queue; flags");
    l.run_to_completion();
}

#[test]
fn b_s51_killable_reader_with_sigkill_pending_bails_out_without_sleeping() {
    let mut l = Lab::new(B);
    let h = l.actor("h", &[W, UW]);
    let rk = l.actor("rk", &[RK]);
    l.step(h, Yielded, &["h:W=ok"]);
    l.kill(rk);
    l.step(rk, Exited, &["rk:RK=EINTR"]);
    assert_eq!(l.events(rk, LockEvent::RwsemSleepReader), 0);
    assert_eq!(l.events(rk, LockEvent::RwsemRlockFail), 1);
    l.check("write h; queue; flags");
    l.run_to_completion();
}

#[test]
fn b_s51_uninterruptible_and_killable_waits_ignore_what_they_must() {
    let mut l = Lab::new(B);
    let h = l.actor("h", &[W, UW]);
    let r = l.actor("r", &[R, UR]);
    let w = l.actor("w", &[W, UW]);
    let rk = l.actor("rk", &[RK, UR]);
    let ri = l.actor("ri", &[RI]);
    l.step(h, Yielded, &["h:W=ok"]);
    for t in [r, w, rk, ri] {
        l.sleeps(t);
    }
    // SIGKILL does not wake uninterruptible waiters; a non-fatal signal wakes neither killable
    // nor uninterruptible ones; it ends an interruptible wait.
    l.kill(r);
    l.kill(w);
    l.signal(rk);
    l.signal(ri);
    l.blocked(&[r, w, rk]);
    l.runnable(&[ri]);
    l.step(ri, Exited, &["ri:RI=EINTR"]);
    l.check("write h; queue r:R w:W rk:R; flags waiters");
    l.run_to_completion();
}

/// A reader granted before it runs returns success even with SIGKILL pending: it checks its
/// grant before the signal.
#[test]
fn b_s51_killable_reader_granted_before_it_runs_keeps_the_lock_despite_sigkill() {
    let mut l = Lab::new(B);
    let h = l.actor("h", &[W, UW]);
    let rk = l.actor("rk", &[RK, UR]);
    l.step(h, Yielded, &["h:W=ok"]);
    l.sleeps(rk);
    l.step(h, Exited, &["h:UW=ok"]);
    l.check("read 1; queue rk:R+; flags");
    l.kill(rk);
    l.step(rk, Yielded, &["rk:RK=ok"]);
    l.step(rk, Exited, &["rk:UR=ok"]);
    l.assert_closed();
}

// ---- §5.2, §5.5: the bail-out (rwsem_del_wake_waiter) ----------------------------------------

/// A killed first waiter with others behind it runs WAKE_ANY (1ee326196c66): readers queued
/// behind it on a read-held lock are granted at once.
#[test]
fn b_s52_killed_first_writer_grants_the_readers_behind_it_on_a_read_held_lock() {
    let mut l = Lab::new(B);
    let h = l.actor("h", &[R, UR]);
    let wk = l.actor("wk", &[WK]);
    let r1 = l.actor("r1", &[R, UR]);
    let w2 = l.actor("w2", &[W, UW]);
    let r3 = l.actor("r3", &[R, UR]);
    l.step(h, Yielded, &["h:R=ok"]);
    for t in [wk, r1, w2, r3] {
        l.sleeps(t);
    }
    l.check("read 1; queue wk:W r1:R w2:W r3:R; flags waiters");
    l.kill(wk);
    l.step(wk, Exited, &["wk:WK=EINTR"]);
    l.check("read 3; queue r1:R+ w2:W r3:R+; flags waiters");
    l.runnable(&[r1, r3]);
    l.blocked(&[w2]);
    l.run_to_completion();
}

/// A killed waiter that was not first wakes nobody: the readers behind it still wait behind
/// the head writer (that writer's turn comes first anyway).
#[test]
fn b_s52_killed_non_first_waiter_wakes_nobody() {
    let mut l = Lab::new(B);
    let h = l.actor("h", &[R, UR]);
    let w1 = l.actor("w1", &[W, UW]);
    let wk = l.actor("wk", &[WK]);
    let r3 = l.actor("r3", &[R, UR]);
    l.step(h, Yielded, &["h:R=ok"]);
    for t in [w1, wk, r3] {
        l.sleeps(t);
    }
    l.kill(wk);
    l.step(wk, Exited, &["wk:WK=EINTR"]);
    l.check("read 1; queue w1:W r3:R; flags waiters");
    l.blocked(&[w1, r3]);
    assert_eq!(l.events(wk, LockEvent::RwsemWakeWriter), 0);
    assert_eq!(l.events(wk, LockEvent::RwsemWakeReader), 0);
    l.run_to_completion();
}

/// A killed first reader wakes the new head writer (B wakes on bail-out for readers too,
/// unlike A).
#[test]
fn b_s52_killed_first_reader_wakes_the_new_head() {
    let mut l = Lab::new(B);
    let h = l.actor("h", &[W, UW]);
    let rk = l.actor("rk", &[RK]);
    let w2 = l.actor("w2", &[W, UW]);
    l.step(h, Yielded, &["h:W=ok"]);
    l.sleeps(rk);
    l.sleeps(w2);
    l.kill(rk);
    l.step(rk, Exited, &["rk:RK=EINTR"]);
    l.check("write h; queue w2:W; flags waiters");
    l.runnable(&[w2]);
    assert_eq!(l.events(rk, LockEvent::RwsemWakeWriter), 1);
    // Woken to a held lock: it sleeps again.
    l.sleeps(w2);
    l.run_to_completion();
}

/// The bail-out's wake-up never grants readers while a writer holds (§5.2 obligation 4).
#[test]
fn b_s52_bail_out_never_grants_readers_while_a_writer_holds() {
    let mut l = Lab::new(B);
    let h = l.actor("h", &[W, UW]);
    let rk = l.actor("rk", &[RK]);
    let r2 = l.actor("r2", &[R, UR]);
    l.step(h, Yielded, &["h:W=ok"]);
    l.sleeps(rk);
    l.sleeps(r2);
    l.kill(rk);
    l.step(rk, Exited, &["rk:RK=EINTR"]);
    l.check("write h; queue r2:R; flags waiters");
    l.blocked(&[r2]);
    assert_eq!(l.events(rk, LockEvent::RwsemWakeReader), 0);
    l.run_to_completion();
}

/// The last waiter killed: WAITERS cleared, the fast paths work again, no wake-up.
#[test]
fn b_s52_killed_last_waiter_clears_the_waiters_flag() {
    let mut l = Lab::new(B);
    let h = l.actor("h", &[W, UW]);
    let rk = l.actor("rk", &[RK]);
    let r = l.actor("r", &[R, UR]);
    l.step(h, Yielded, &["h:W=ok"]);
    l.sleeps(rk);
    l.kill(rk);
    l.step(rk, Exited, &["rk:RK=EINTR"]);
    l.check("write h; queue; flags");
    l.step(h, Exited, &["h:UW=ok"]);
    l.step(r, Yielded, &["r:R=ok"]);
    assert_eq!(l.events(r, LockEvent::RwsemRlockFast), 1);
    l.run_to_completion();
}

/// An interrupted reader (any signal, TASK_INTERRUPTIBLE) takes the same bail-out.
#[test]
fn b_s52_interrupted_first_reader_wakes_the_new_head() {
    let mut l = Lab::new(B);
    let h = l.actor("h", &[R, UR]);
    let w = l.actor("w", &[W, UW]);
    let ri = l.actor("ri", &[RI]);
    let w2 = l.actor("w2", &[W, UW]);
    l.step(h, Yielded, &["h:R=ok"]);
    l.sleeps(w);
    l.sleeps(ri);
    l.sleeps(w2);
    l.check("read 1; queue w:W ri:R w2:W; flags waiters");
    l.signal(ri);
    l.step(ri, Exited, &["ri:RI=EINTR"]);
    // Not first: nobody woken.
    l.check("read 1; queue w:W w2:W; flags waiters");
    l.blocked(&[w, w2]);
    l.run_to_completion();
}

// ---- stuck_diagnosis ----------------------------------------------------------------------

#[test]
fn b_stuck_diagnosis_is_silent_on_healthy_states_and_the_wake_window() {
    let mut l = Lab::new(B);
    let r = l.actor("r", &[R, UR]);
    let w = l.actor("w", &[W, UW]);
    l.step(r, Yielded, &["r:R=ok"]);
    assert_eq!(l.sem.stuck_diagnosis(), None);
    l.sleeps(w);
    assert_eq!(l.sem.stuck_diagnosis(), None);
    l.step(r, Exited, &["r:UR=ok"]);
    assert_eq!(l.sem.stuck_diagnosis(), None, "wake window");
    l.run_to_completion();
}

// ---- property test: random interleavings (tests/rwsem_lab/prop.rs) -------------------------

const PROP_SEEDS: u64 = 300;

#[test]
fn prop_model_b_random_interleavings_exclude_keep_the_flags_and_end_idle() {
    let mut reached = crate::rwsem_lab::prop::Reached::default();
    for seed in 0..PROP_SEEDS {
        let w = crate::rwsem_lab::prop::random_world(B, seed);
        crate::rwsem_lab::prop::check_world(B, seed, &w);
        reached.add(&w);
    }
    reached.assert_all(
        &[
            LockEvent::RwsemSleepReader,
            LockEvent::RwsemSleepWriter,
            LockEvent::RwsemWakeReader,
            LockEvent::RwsemWakeWriter,
            LockEvent::RwsemRlockFail,
            LockEvent::RwsemWlockFail,
            LockEvent::RwsemDowngrade,
            LockEvent::RwsemRlockSteal,
            LockEvent::RwsemWlockHandoff,
            LockEvent::RwsemRtrylockFail,
            LockEvent::RwsemWtrylock,
        ],
        PROP_SEEDS,
    );
}

/// With the same seed, a sim run is the same run: Model B is deterministic.
#[test]
fn prop_model_b_runs_replay_identically() {
    for seed in [3, 17, 99] {
        let a = crate::rwsem_lab::prop::random_world(B, seed);
        let b = crate::rwsem_lab::prop::random_world(B, seed);
        assert_eq!(a.hash, b.hash, "seed {seed}: the runs diverged");
        assert_eq!(a.events, b.events, "seed {seed}");
    }
}
