//! Rule-by-rule scripted-interleaving tests of the Model A rw_semaphore (`mm::locking::rwsem`) on the
//! deterministic sim executor: every admission, wake-up and bail-out rule of
//! docs/rwsem-rules.md (AR1–AR7, WK1–WK6, §5.1–§5.2) has at least one test that
//! fails if the rule is broken, and the two symptoms of the unfixed 2016 bail-out
//! (`RwSemModel::RfcV1`, §5.3) are reproduced next to the fixed behaviour.
//!
//! # Technique
//! The harness is the shared lab of `rwsem_lab` (also used by the Model B and spinning tests);
//! this file adds Model A's count-word checks to it ([`CountWord`]).
//! Each emulated task is an *actor*: a separate process (`CloneKind::Process`, so SIGKILL to one
//! actor never touches another) running a list of kernel-shaped operations ([`Op`]) on one
//! shared [`RawRwSem`]. After every operation the actor logs `name:Op=result` and calls
//! `cond_resched()`, so one `Sim::step(tid)` runs exactly one operation: it ends `Yielded` (the
//! operation completed), `Exited` (it was the last one) or `Blocked` (the task went to sleep
//! inside the operation; the step that follows its wake-up completes it). The test dictates the
//! interleaving step by step and, after each step, asserts
//! - the log lines the step produced,
//! - the raw `count()` word, written with the kernel's constants (`WB` = `RWSEM_WAITING_BIAS`,
//!   `AWB` = `RWSEM_ACTIVE_WRITE_BIAS`, `RB` = `RWSEM_ACTIVE_READ_BIAS`),
//! - the wait queue, head first, as `name:R|W`, and the writer holding the lock, both read
//!   through `RawRwSem::snapshot()` (and cross-checked against `waiters()` and `owner()`),
//! - which tasks sleep (`is_blocked`) and which were woken (`is_runnable`).
//!
//! Signals come from the test thread (`send_sig`, outside any task) or from a killer actor
//! ([`Op::Kill`]). Every acquisition is also checked against a lock-independent witness
//! (readers/writers inside), as locktorture does.
//!
//! The property tests at the end run many seeds of the lab's random world (`rwsem_lab::prop`:
//! random readers, writers, trylockers, downgraders and killers, SIGKILL and non-fatal signals),
//! with Model A's invariant and sizes, on the seeded picker
//! (`Sim::run_until`) and check mutual exclusion on every acquisition and at every yield while
//! holding; between every two steps, that the count word agrees with the queue and the owner
//! (one `WAITING_BIAS` term per "queue non-empty" and per writer holding, no ungranted reader at
//! the head of a lock no writer holds); that Model A always ends `AllExited` with `count() == 0`,
//! an empty queue and no owner; and that RfcV1 runs step-for-step like Model A until a killed
//! writer bails out, after which both symptoms of §5.3 show up for some seeds (the RfcV1 runs
//! stop at the first broken invariant).
//!
//! # What the sim executor cannot show
//! The sim executor has no preemption: it switches only at `cond_resched()` and when a task
//! sleeps in `schedule()`. A lock operation therefore runs atomically between yield points, and
//! interleavings are only those at yield/blocking points. Branches that need another task to run
//! *inside* an operation are unreachable here; they are covered by the loom models
//! (tests/loom_rwsem.rs):
//! - AR2's "the reader that created the queue grants itself when only readers are active"
//!   needs a release or a reader fast path between a reader's failed fast path and its slow
//!   path;
//! - §5.1's re-check of the grant *under `wait_lock`* by a killable reader needs the grant to
//!   land between its "granted?" check and its signal check (here we show the observable half:
//!   a reader granted before it runs returns success even with SIGKILL pending);
//! - WAKE_READERS (AR5, 424acaaeb3a3) finding readers at the head of a read-held lock: in Model
//!   A without preemption that state never persists, so the test builds it with RfcV1's stranded
//!   readers (the rule's code is shared by both models).
//!
//! The wake logic that a reader runs when it enqueues on a lock nobody holds (AR2) is exercised
//! (wake window), but its wake-up is redundant there: the head writer was already woken; a
//! mutant without it survives this file.
//!
//! A spin is not a yield point either: with RfcV1's stale bias, a release that finds a reader
//! queued retries the read grant forever inside one step (see
//! `rfcv1_symptom_a_holder_release_with_reader_queued_on_stale_bias_must_not_hang_the_executor`,
//! which runs that scenario under a watchdog).

use crate::rwsem_lab::prop::{check_world, random_world_of, Reached, World, WorldKind};
use crate::rwsem_lab::{expect_deadlock, Ctx, Exited, Lab, Op, Yielded};
use mm::locking::lock_events::LockEvent;
use mm::locking::rwsem::{
    RawRwSem, RwSemConfig, RwSemModel, RwSemSnapshot, RwSemSpin, WaiterType, RWSEM_ACTIVE_MASK,
    RWSEM_ACTIVE_READ_BIAS, RWSEM_ACTIVE_WRITE_BIAS, RWSEM_WAITING_BIAS,
};
use mm::sched;
use mm::sched::sim::{SimConfig, SimOutcome};
use mm::task::Tid;
use std::sync::Arc;

use Op::*;

/// `RWSEM_WAITING_BIAS`: "someone is queued".
const WB: i64 = RWSEM_WAITING_BIAS;
/// `RWSEM_ACTIVE_WRITE_BIAS` = `WB` + 1: a writer holds (or attempts).
const AWB: i64 = RWSEM_ACTIVE_WRITE_BIAS;
/// `RWSEM_ACTIVE_READ_BIAS`: one reader.
const RB: i64 = RWSEM_ACTIVE_READ_BIAS;

/// Model A, spinning off (the rules of this file are those of spinning off).
const A: RwSemConfig = crate::rwsem_lab::A;
/// The unfixed 2016 bail-out.
const RFC: RwSemConfig = RwSemConfig {
    model: RwSemModel::RfcV1,
    spin: RwSemSpin::Off,
};

// ---- harness: the shared lab (rwsem_lab), plus what Model A's rules check ------------------

/// A lab whose seeded picker uses `seed` (only [`Lab::run`] picks).
fn with_seed(config: RwSemConfig, seed: u64) -> Lab {
    Lab::with_sim(
        config,
        SimConfig {
            seed,
            max_steps: 1_000_000,
            ..Default::default()
        },
    )
}

/// Model A's checks on the shared lab: its count word is part of the rules.
trait CountWord {
    fn queue(&self) -> String;
    fn check_count(&self, count: i64, queue: &str, owner: Option<&str>);
    fn trylocks_succeed(&self);
}

impl CountWord for Lab {
    /// The wait queue (granted readers excluded), head first, as `name:R|W`, read through
    /// the lock's snapshot.
    fn queue(&self) -> String {
        self.sem
            .snapshot()
            .waiting()
            .map(|w| {
                format!(
                    "{}:{}",
                    self.name(w.tid),
                    match w.kind {
                        WaiterType::Read => "R",
                        WaiterType::Write => "W",
                    }
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Assert the count word (Model A's encoding is part of the rules), the queue and the
    /// write owner (through the snapshot), and that the snapshot agrees with the raw
    /// accessors.
    #[track_caller]
    fn check_count(&self, count: i64, queue: &str, owner: Option<&str>) {
        let c = self.sem.count();
        assert!(
            c == count,
            "count is {}, expected {}",
            describe(c),
            describe(count)
        );
        assert_eq!(self.queue(), queue, "wait queue");
        let s = self.sem.snapshot();
        assert_eq!(
            s.writer.map(|t| self.name(t)),
            owner,
            "owner (writer holding the lock)"
        );
        assert_eq!(s.writer, self.sem.owner(), "snapshot vs owner()");
        let raw: Vec<Tid> = self.sem.waiters().iter().map(|w| w.tid).collect();
        let snap: Vec<Tid> = s.waiting().map(|w| w.tid).collect();
        assert_eq!(raw, snap, "snapshot vs waiters()");
        assert_eq!(self.sem.is_contended(), !queue.is_empty(), "is_contended");
    }

    /// Both trylocks succeed (one after the other, released at once).
    #[track_caller]
    fn trylocks_succeed(&self) {
        assert!(self.sem.down_read_trylock(), "down_read_trylock failed");
        self.sem.up_read();
        assert!(self.sem.down_write_trylock(), "down_write_trylock failed");
        self.sem.up_write();
    }
}

/// `count` as "n×WAITING_BIAS + active".
fn describe(c: i64) -> String {
    let active = c & RWSEM_ACTIVE_MASK;
    let waiting = (c - active) / RWSEM_WAITING_BIAS;
    format!("{c:#x} (= {waiting}×WAITING_BIAS + {active})")
}

/// The kernel function `t` sleeps in, per the deadlock report.
fn wchan_of(rep: &mm::sched::sim::DeadlockReport, t: Tid) -> Option<&'static str> {
    rep.tasks
        .iter()
        .find(|b| b.tid == t)
        .unwrap_or_else(|| panic!("task {t} not in the deadlock report:\n{rep}"))
        .wchan
        .as_ref()
        .map(|w| w.func)
}

// ---- AR1: down_read fast path ---------------------------------------------------------------

#[test]
fn ar1_down_read_fast_path_succeeds_with_no_writer_and_no_waiter() {
    let mut l = Lab::new(A);
    let r1 = l.actor("r1", &[R, UR]);
    let r2 = l.actor("r2", &[R, UR]);
    l.step(r1, Yielded, &["r1:R=ok"]);
    l.check_count(RB, "", None);
    l.step(r2, Yielded, &["r2:R=ok"]);
    l.check_count(2 * RB, "", None);
    for t in [r1, r2] {
        assert_eq!(l.events(t, LockEvent::RwsemRlockFast), 1);
        assert_eq!(l.events(t, LockEvent::RwsemSleepReader), 0);
    }
    l.step(r1, Exited, &["r1:UR=ok"]);
    l.step(r2, Exited, &["r2:UR=ok"]);
    l.check_count(0, "", None);
}

#[test]
fn ar1_down_read_fast_path_fails_while_a_writer_holds() {
    let mut l = Lab::new(A);
    let w = l.actor("w", &[W, UW]);
    let r = l.actor("r", &[R, UR]);
    l.step(w, Yielded, &["w:W=ok"]);
    l.check_count(AWB, "", Some("w"));
    l.sleeps(r);
    // The failed fast-path increment was undone; the queue's WAITING_BIAS was added.
    l.check_count(AWB + WB, "r:R", Some("w"));
    assert_eq!(l.events(r, LockEvent::RwsemRlockFast), 0);
    l.step(w, Exited, &["w:UW=ok"]);
    l.step(r, Yielded, &["r:R=ok"]);
    assert_eq!(
        l.events(r, LockEvent::RwsemRlock),
        1,
        "acquired in the slow path"
    );
    l.step(r, Exited, &["r:UR=ok"]);
    l.check_count(0, "", None);
}

// ---- AR2: down_read slow path ---------------------------------------------------------------

/// The lock is free (the head writer was woken but has not run), yet a new reader does not
/// bypass the queue: it enqueues at the tail and is granted only after the writer.
#[test]
fn ar2_reader_slow_path_enqueues_at_tail_even_when_the_lock_is_free() {
    let mut l = Lab::new(A);
    let h = l.actor("h", &[W, UW]);
    let w1 = l.actor("w1", &[W, UW]);
    let r = l.actor("r", &[R, UR]);
    l.step(h, Yielded, &["h:W=ok"]);
    l.sleeps(w1);
    l.step(h, Exited, &["h:UW=ok"]);
    l.check_count(WB, "w1:W", None);
    l.runnable(&[w1]);
    // Nobody active, queue non-empty: the fast path fails (count WB + 1 ≤ 0), the reader
    // queues behind w1 and its WAKE_ANY only (re)wakes the head writer.
    l.sleeps(r);
    l.check_count(WB, "w1:W r:R", None);
    l.runnable(&[w1]);
    l.step(w1, Yielded, &["w1:W=ok"]);
    l.check_count(AWB + WB, "r:R", Some("w1"));
    l.blocked(&[r]);
    l.step(w1, Exited, &["w1:UW=ok"]);
    // Granted by the waker before it runs: its bias is already in the count.
    l.check_count(RB, "", None);
    l.runnable(&[r]);
    l.step(r, Yielded, &["r:R=ok"]);
    l.step(r, Exited, &["r:UR=ok"]);
    l.check_count(0, "", None);
}

/// A reader arriving behind existing waiters goes to the tail, after waiters of both kinds.
#[test]
fn ar2_reader_queues_at_the_tail_behind_writers_and_readers() {
    let mut l = Lab::new(A);
    let h = l.actor("h", &[W, UW]);
    let r1 = l.actor("r1", &[R, UR]);
    let w2 = l.actor("w2", &[W, UW]);
    let r3 = l.actor("r3", &[R, UR]);
    l.step(h, Yielded, &["h:W=ok"]);
    l.sleeps(r1);
    l.check_count(AWB + WB, "r1:R", Some("h"));
    l.sleeps(w2);
    l.sleeps(r3);
    // One WAITING_BIAS however many waiters.
    l.check_count(AWB + WB, "r1:R w2:W r3:R", Some("h"));
    l.step(h, Exited, &["h:UW=ok"]);
    // r1 granted; r3 stays behind w2.
    l.check_count(WB + RB, "w2:W r3:R", None);
    l.runnable(&[r1]);
    l.blocked(&[w2, r3]);
    l.run_to_completion();
}

// ---- AR3: readers wait behind a queued writer -------------------------------------------------

#[test]
fn ar3_reader_waits_behind_queued_writer_although_only_readers_hold() {
    let mut l = Lab::new(A);
    let r1 = l.actor("r1", &[R, UR]);
    let w = l.actor("w", &[W, UW]);
    let r2 = l.actor("r2", &[R, UR]);
    l.step(r1, Yielded, &["r1:R=ok"]);
    l.sleeps(w);
    l.check_count(WB + RB, "w:W", None);
    // Only a reader holds, but a writer is queued: r2 waits (writer-starvation avoidance).
    l.sleeps(r2);
    l.check_count(WB + RB, "w:W r2:R", None);
    l.blocked(&[w, r2]);
    l.step(r1, Exited, &["r1:UR=ok"]);
    l.check_count(WB, "w:W r2:R", None);
    l.runnable(&[w]);
    l.blocked(&[r2]);
    l.step(w, Yielded, &["w:W=ok"]);
    l.check_count(AWB + WB, "r2:R", Some("w"));
    l.step(w, Exited, &["w:UW=ok"]);
    l.check_count(RB, "", None);
    l.step(r2, Yielded, &["r2:R=ok"]);
    l.step(r2, Exited, &["r2:UR=ok"]);
    l.check_count(0, "", None);
}

/// AR3's consequence: a read-after-read by the same task deadlocks once a writer queued in
/// between.
#[test]
fn ar3_recursive_down_read_deadlocks_once_a_writer_queued_in_between() {
    let mut l = Lab::new(A);
    let r = l.actor("r", &[R, R, UR, UR]);
    let w = l.actor("w", &[W, UW]);
    l.step(r, Yielded, &["r:R=ok"]);
    l.sleeps(w);
    l.sleeps(r);
    l.check_count(WB + RB, "w:W r:R", None);
    let rep = expect_deadlock(l.run());
    assert_eq!(wchan_of(&rep, r), Some("rwsem_down_read_failed"));
    assert_eq!(wchan_of(&rep, w), Some("rwsem_down_write_failed"));
}

// ---- AR4: down_write fast path ----------------------------------------------------------------

#[test]
fn ar4_down_write_fast_path_only_when_count_is_zero() {
    let mut l = Lab::new(A);
    let w1 = l.actor("w1", &[W, UW]);
    let r = l.actor("r", &[R, UR]);
    let w2 = l.actor("w2", &[W, UW]);
    let w3 = l.actor("w3", &[W, UW]);
    // count 0: fast path.
    l.step(w1, Yielded, &["w1:W=ok"]);
    l.check_count(AWB, "", Some("w1"));
    assert_eq!(l.events(w1, LockEvent::RwsemWlockFast), 1);
    l.step(w1, Exited, &["w1:UW=ok"]);
    l.check_count(0, "", None);
    // A reader holds: slow path, sleeps.
    l.step(r, Yielded, &["r:R=ok"]);
    l.sleeps(w2);
    l.check_count(WB + RB, "w2:W", None);
    assert_eq!(l.events(w2, LockEvent::RwsemWlockFast), 0);
    // Nobody holds but a waiter is queued (count = WB): the fast path fails; w3 only gets the
    // lock through the slow path's try (AR6).
    l.step(r, Exited, &["r:UR=ok"]);
    l.check_count(WB, "w2:W", None);
    l.step(w3, Yielded, &["w3:W=ok"]);
    assert_eq!(l.events(w3, LockEvent::RwsemWlockFast), 0);
    assert_eq!(l.events(w3, LockEvent::RwsemWlock), 1);
    l.check_count(AWB + WB, "w2:W", Some("w3"));
    l.run_to_completion();
}

// ---- AR5: down_write slow path ----------------------------------------------------------------

#[test]
fn ar5_writer_slow_path_queues_sets_waiting_bias_and_takes_the_lock_itself() {
    let mut l = Lab::new(A);
    let r = l.actor("r", &[R, UR]);
    let w = l.actor("w", &[W, UW]);
    l.step(r, Yielded, &["r:R=ok"]);
    l.sleeps(w);
    l.check_count(WB + RB, "w:W", None);
    assert_eq!(l.events(w, LockEvent::RwsemSleepWriter), 1);
    l.step(r, Exited, &["r:UR=ok"]);
    // Woken, not granted: still queued, nobody holds.
    l.check_count(WB, "w:W", None);
    l.runnable(&[w]);
    l.step(w, Yielded, &["w:W=ok"]);
    // It was the only waiter: it unlinked itself and removed the WAITING_BIAS.
    l.check_count(AWB, "", Some("w"));
    l.step(w, Exited, &["w:UW=ok"]);
    l.check_count(0, "", None);
}

/// The slow-path try succeeds whenever nobody is active, whatever the waiter's position: a
/// non-head writer that happens to run first takes the lock from the woken head writer.
#[test]
fn ar5_writer_try_succeeds_when_nobody_is_active_regardless_of_queue_position() {
    let mut l = Lab::new(A);
    let h = l.actor("h", &[W, UW]);
    let w1 = l.actor("w1", &[W, UW]);
    let w2 = l.actor("w2", &[W, UW]);
    l.step(h, Yielded, &["h:W=ok"]);
    l.sleeps(w1);
    l.sleeps(w2);
    l.check_count(AWB + WB, "w1:W w2:W", Some("h"));
    l.step(h, Exited, &["h:UW=ok"]);
    l.check_count(WB, "w1:W w2:W", None);
    l.runnable(&[w1]);
    l.blocked(&[w2]);
    // w2 (second in the queue) wakes for an unrelated reason and runs before w1.
    l.spurious_wake(w2);
    l.step(w2, Yielded, &["w2:W=ok"]);
    // w1 is still queued, so the WAITING_BIAS stays.
    l.check_count(AWB + WB, "w1:W", Some("w2"));
    l.sleeps(w1);
    l.step(w2, Exited, &["w2:UW=ok"]);
    l.check_count(WB, "w1:W", None);
    l.runnable(&[w1]);
    l.step(w1, Yielded, &["w1:W=ok"]);
    l.check_count(AWB, "", Some("w1"));
    l.step(w1, Exited, &["w1:UW=ok"]);
    l.check_count(0, "", None);
}

/// A writer queuing on a read-held lock behind queued readers grants them (WAKE_READERS,
/// 424acaaeb3a3), up to the first writer. In Model A without preemption, readers never sit at
/// the head of a read-held lock for long, so the state is built with RfcV1's stranded readers
/// (§5.3 symptom b); the rule's code is common to both models.
#[test]
fn ar5_writer_queuing_behind_readers_on_read_held_lock_grants_the_head_readers() {
    let mut l = Lab::new(RFC);
    let r1 = l.actor("r1", &[R, UR]);
    let wk = l.actor("wk", &[WK]);
    let r2 = l.actor("r2", &[R, UR]);
    let r3 = l.actor("r3", &[R, UR]);
    let w5 = l.actor("w5", &[W, UW]);
    let r6 = l.actor("r6", &[R, UR]);
    let w4 = l.actor("w4", &[W, UW]);
    l.step(r1, Yielded, &["r1:R=ok"]);
    for t in [wk, r2, r3, w5, r6] {
        l.sleeps(t);
    }
    l.check_count(WB + RB, "wk:W r2:R r3:R w5:W r6:R", None);
    l.kill(wk);
    l.step(wk, Exited, &["wk:WK=EINTR"]);
    // RfcV1: nobody granted r2, r3 though only r1 holds for read.
    l.check_count(WB + RB, "r2:R r3:R w5:W r6:R", None);
    l.blocked(&[r2, r3, w5, r6]);
    // w4 queues: the lock is read-held (count > WB), so it grants the head readers, r2 and r3,
    // and stops at w5.
    l.sleeps(w4);
    l.check_count(WB + 3 * RB, "w5:W r6:R w4:W", None);
    l.runnable(&[r2, r3]);
    l.blocked(&[w5, r6, w4]);
    l.run_to_completion();
}

// ---- AR6: writer lock stealing ----------------------------------------------------------------

#[test]
fn ar6_writer_steals_the_lock_in_the_wake_window_and_the_woken_writer_sleeps_again() {
    let mut l = Lab::new(A);
    let h = l.actor("h", &[W, UW]);
    let w1 = l.actor("w1", &[W, UW]);
    let s = l.actor("s", &[W, UW]);
    l.step(h, Yielded, &["h:W=ok"]);
    l.sleeps(w1);
    l.check_count(AWB + WB, "w1:W", Some("h"));
    l.step(h, Exited, &["h:UW=ok"]);
    // The wake window: w1 woken, lock free, queue non-empty.
    l.check_count(WB, "w1:W", None);
    l.runnable(&[w1]);
    // s enters before w1 runs: its slow-path try sees nobody active and takes the lock.
    l.step(s, Yielded, &["s:W=ok"]);
    l.check_count(AWB + WB, "w1:W", Some("s"));
    assert_eq!(l.events(s, LockEvent::RwsemSleepWriter), 0, "s never slept");
    assert_eq!(l.events(s, LockEvent::RwsemWlock), 1);
    // w1 runs, finds the lock held, and sleeps again.
    l.sleeps(w1);
    l.check_count(AWB + WB, "w1:W", Some("s"));
    l.step(s, Exited, &["s:UW=ok"]);
    l.check_count(WB, "w1:W", None);
    l.runnable(&[w1]);
    l.step(w1, Yielded, &["w1:W=ok"]);
    l.check_count(AWB, "", Some("w1"));
    l.step(w1, Exited, &["w1:UW=ok"]);
    l.check_count(0, "", None);
}

// ---- AR7: trylocks ----------------------------------------------------------------------------

#[test]
fn ar7_trylocks_on_an_uncontended_lock() {
    let mut l = Lab::new(A);
    let t = l.actor("t", &[TR, TW, TR, UR, UR, TW, TR, TW, UW]);
    l.step(t, Yielded, &["t:TR=1"]);
    l.check_count(RB, "", None);
    // Read-held, nobody queued: write trylock fails, read trylock succeeds.
    l.step(t, Yielded, &["t:TW=0"]);
    l.step(t, Yielded, &["t:TR=1"]);
    l.check_count(2 * RB, "", None);
    l.step(t, Yielded, &["t:UR=ok"]);
    l.step(t, Yielded, &["t:UR=ok"]);
    l.check_count(0, "", None);
    l.step(t, Yielded, &["t:TW=1"]);
    l.check_count(AWB, "", Some("t"));
    l.step(t, Yielded, &["t:TR=0"]);
    l.step(t, Yielded, &["t:TW=0"]);
    l.check_count(AWB, "", Some("t"));
    l.step(t, Exited, &["t:UW=ok"]);
    l.check_count(0, "", None);
}

#[test]
fn ar7_read_trylock_fails_while_writer_queued_on_read_held_lock() {
    let mut l = Lab::new(A);
    let r = l.actor("r", &[R, UR]);
    let w = l.actor("w", &[W, UW]);
    let t = l.actor("t", &[TR, TW]);
    l.step(r, Yielded, &["r:R=ok"]);
    l.sleeps(w);
    l.check_count(WB + RB, "w:W", None);
    // Only a reader holds, yet both trylocks fail because w is queued; they neither queue nor
    // touch the count.
    l.step(t, Yielded, &["t:TR=0"]);
    l.step(t, Exited, &["t:TW=0"]);
    l.check_count(WB + RB, "w:W", None);
    l.trylocks_fail();
    l.run_to_completion();
    l.trylocks_succeed();
}

/// The lock is free (the head writer was woken but has not run): both trylocks still fail.
#[test]
fn ar7_trylocks_fail_in_the_wake_window_although_the_lock_is_free() {
    let mut l = Lab::new(A);
    let h = l.actor("h", &[W, UW]);
    let w1 = l.actor("w1", &[W, UW]);
    let t = l.actor("t", &[TR, TW]);
    l.step(h, Yielded, &["h:W=ok"]);
    l.sleeps(w1);
    l.step(h, Exited, &["h:UW=ok"]);
    l.check_count(WB, "w1:W", None);
    assert!(
        l.sem.is_locked(),
        "rwsem_is_locked is true with only the waiting bias"
    );
    l.step(t, Yielded, &["t:TR=0"]);
    l.step(t, Exited, &["t:TW=0"]);
    l.trylocks_fail();
    l.check_count(WB, "w1:W", None);
    l.runnable(&[w1]);
    l.run_to_completion();
}

/// The oom_reaper (v4.6 `oom_reap_task`): 10 `down_read_trylock` attempts HZ/10 apart. While
/// the victim sits queued in an uninterruptible `down_write` behind a reader, every attempt
/// fails, although only a reader holds the lock.
#[test]
fn ar7_oom_reaper_read_trylock_fails_every_retry_while_victim_queued_in_down_write() {
    let mut l = Lab::new(A);
    let holder = l.actor("holder", &[R, Wait(0), UR]);
    let victim = l.actor("victim", &[W, UW]);
    let ctx = l.ctx.clone();
    let _reaper = l.spawn("reaper", move || {
        let (n, ok) = oom_reap(&ctx);
        ctx.log.lock().push(format!(
            "reaper:{}={n}",
            if ok { "reaped" } else { "gave up" }
        ));
        ctx.comps.complete(0);
    });
    l.step(holder, Yielded, &["holder:R=ok"]);
    l.sleeps(holder);
    l.sleeps(victim);
    l.check_count(WB + RB, "victim:W", None);
    // Even SIGKILL does not help an uninterruptible writer (§5.1).
    l.kill(victim);
    l.blocked(&[victim]);
    let o = l.sim.run();
    assert_eq!(o, SimOutcome::AllExited);
    let log = l.new_log();
    assert!(
        log.contains(&"reaper:gave up=10".to_string()),
        "reaper log: {log:?}"
    );
    assert!(log.contains(&"victim:W=ok".to_string()));
    l.check_count(0, "", None);
}

/// The same with a killable victim (the 2016 RFC's point): the OOM killer's SIGKILL makes the
/// victim leave the queue, and the reaper's next attempt succeeds.
#[test]
fn ar7_oom_reaper_read_trylock_succeeds_once_killable_victim_left_the_queue() {
    let mut l = Lab::new(A);
    let holder = l.actor("holder", &[R, Wait(0), UR]);
    let victim = l.actor("victim", &[WK, UW]);
    let ctx = l.ctx.clone();
    let reaper = l.spawn("reaper", move || {
        let (n, ok) = oom_reap(&ctx);
        ctx.log.lock().push(format!(
            "reaper:{}={n}",
            if ok { "reaped" } else { "gave up" }
        ));
        ctx.comps.complete(0);
    });
    l.step(holder, Yielded, &["holder:R=ok"]);
    l.sleeps(holder);
    l.sleeps(victim);
    l.sleeps(reaper); // attempt 1 failed; schedule_timeout(HZ/10)
    l.kill(victim);
    l.step(victim, Exited, &["victim:WK=EINTR"]);
    l.check_count(RB, "", None);
    assert!(l.sim.advance_to_next_timer());
    l.step(reaper, Exited, &["reaper:reaped=2"]);
    l.runnable(&[holder]);
    l.run_to_completion();
}

/// `oom_reap_task()` of v4.6 around `__oom_reap_task()`'s `down_read_trylock(&mm->mmap_sem)`.
fn oom_reap(ctx: &Ctx) -> (u32, bool) {
    const MAX_OOM_REAP_RETRIES: u32 = 10;
    let mut attempts = 0;
    loop {
        attempts += 1;
        if ctx.sem.down_read_trylock() {
            ctx.wit.read_enter("reaper");
            ctx.wit.read_exit();
            ctx.sem.up_read();
            return (attempts, true);
        }
        if attempts == MAX_OOM_REAP_RETRIES {
            return (attempts, false);
        }
        sched::schedule_timeout_uninterruptible(sched::hz() as u64 / 10);
    }
}

// ---- WK1: up_read -----------------------------------------------------------------------------

#[test]
fn wk1_only_the_last_reader_wakes_and_only_if_waiters() {
    let mut l = Lab::new(A);
    let r1 = l.actor("r1", &[R, UR]);
    let r2 = l.actor("r2", &[R, UR]);
    let w = l.actor("w", &[W, UW]);
    let r3 = l.actor("r3", &[R, UR]);
    l.step(r1, Yielded, &["r1:R=ok"]);
    l.step(r2, Yielded, &["r2:R=ok"]);
    l.sleeps(w);
    l.check_count(WB + 2 * RB, "w:W", None);
    // Not the last reader: no wake-up.
    l.step(r1, Exited, &["r1:UR=ok"]);
    l.check_count(WB + RB, "w:W", None);
    l.blocked(&[w]);
    // The last reader wakes the head writer.
    l.step(r2, Exited, &["r2:UR=ok"]);
    l.check_count(WB, "w:W", None);
    l.runnable(&[w]);
    assert_eq!(l.events(r2, LockEvent::RwsemWakeWriter), 1);
    assert_eq!(l.events(r1, LockEvent::RwsemWakeWriter), 0);
    l.step(w, Yielded, &["w:W=ok"]);
    l.step(w, Exited, &["w:UW=ok"]);
    // No waiters: the last reader's up_read wakes nobody.
    l.step(r3, Yielded, &["r3:R=ok"]);
    l.step(r3, Exited, &["r3:UR=ok"]);
    assert_eq!(l.events(r3, LockEvent::RwsemWakeWriter), 0);
    assert_eq!(l.events(r3, LockEvent::RwsemWakeReader), 0);
    l.check_count(0, "", None);
}

// ---- WK2: up_write ----------------------------------------------------------------------------

#[test]
fn wk2_up_write_wakes_the_queue_only_if_waiters() {
    let mut l = Lab::new(A);
    let h = l.actor("h", &[W, UW, W, UW]);
    let w = l.actor("w", &[W, UW]);
    l.step(h, Yielded, &["h:W=ok"]);
    l.step(h, Yielded, &["h:UW=ok"]);
    l.check_count(0, "", None);
    assert_eq!(l.events(h, LockEvent::RwsemWakeWriter), 0);
    l.step(h, Yielded, &["h:W=ok"]);
    l.sleeps(w);
    l.check_count(AWB + WB, "w:W", Some("h"));
    l.step(h, Exited, &["h:UW=ok"]);
    l.check_count(WB, "w:W", None);
    l.runnable(&[w]);
    assert_eq!(l.events(h, LockEvent::RwsemWakeWriter), 1);
    l.run_to_completion();
}

// ---- WK3: WAKE_ANY ----------------------------------------------------------------------------

#[test]
fn wk3_head_writer_is_only_woken_not_granted_and_only_the_head() {
    let mut l = Lab::new(A);
    let h = l.actor("h", &[W, UW]);
    let w1 = l.actor("w1", &[W, UW]);
    let w2 = l.actor("w2", &[W, UW]);
    l.step(h, Yielded, &["h:W=ok"]);
    l.sleeps(w1);
    l.sleeps(w2);
    l.step(h, Exited, &["h:UW=ok"]);
    // Not granted: no write bias, no owner, still queued.
    l.check_count(WB, "w1:W w2:W", None);
    l.runnable(&[w1]);
    l.blocked(&[w2]);
    l.step(w1, Yielded, &["w1:W=ok"]);
    l.check_count(AWB + WB, "w2:W", Some("w1"));
    l.run_to_completion();
}

#[test]
fn wk3_head_readers_granted_as_the_maximal_leading_run_stopping_at_the_first_writer() {
    let mut l = Lab::new(A);
    let h = l.actor("h", &[W, UW]);
    let r1 = l.actor("r1", &[R, UR]);
    let r2 = l.actor("r2", &[R, UR]);
    let w3 = l.actor("w3", &[W, UW]);
    let r4 = l.actor("r4", &[R, UR]);
    l.step(h, Yielded, &["h:W=ok"]);
    for t in [r1, r2, w3, r4] {
        l.sleeps(t);
    }
    l.check_count(AWB + WB, "r1:R r2:R w3:W r4:R", Some("h"));
    l.step(h, Exited, &["h:UW=ok"]);
    // r1 and r2 granted (their biases added before either runs); r4 stays behind w3.
    l.check_count(WB + 2 * RB, "w3:W r4:R", None);
    assert_eq!(l.events(h, LockEvent::RwsemWakeReader), 2);
    l.runnable(&[r1, r2]);
    l.blocked(&[w3, r4]);
    l.step(r1, Yielded, &["r1:R=ok"]);
    l.step(r2, Yielded, &["r2:R=ok"]);
    l.step(r1, Exited, &["r1:UR=ok"]);
    l.blocked(&[w3]);
    l.step(r2, Exited, &["r2:UR=ok"]);
    l.runnable(&[w3]);
    l.step(w3, Yielded, &["w3:W=ok"]);
    l.check_count(AWB + WB, "r4:R", Some("w3"));
    l.step(w3, Exited, &["w3:UW=ok"]);
    // The whole queue was granted: the WAITING_BIAS goes with it.
    l.check_count(RB, "", None);
    l.step(r4, Yielded, &["r4:R=ok"]);
    l.step(r4, Exited, &["r4:UR=ok"]);
    l.check_count(0, "", None);
}

/// WAKE_ANY with a reader at the head while a writer holds the lock: the reservation of the
/// first read grant is undone and nobody is granted (§5.2 obligation 4). Reached through a
/// killed writer's bail-out.
#[test]
fn wk3_reader_grant_abandoned_while_a_writer_holds() {
    let mut l = Lab::new(A);
    let h = l.actor("h", &[W, UW]);
    let wk = l.actor("wk", &[WK]);
    let r2 = l.actor("r2", &[R, UR]);
    l.step(h, Yielded, &["h:W=ok"]);
    l.sleeps(wk);
    l.sleeps(r2);
    l.check_count(AWB + WB, "wk:W r2:R", Some("h"));
    l.kill(wk);
    l.step(wk, Exited, &["wk:WK=EINTR"]);
    l.check_count(AWB + WB, "r2:R", Some("h"));
    l.blocked(&[r2]);
    assert_eq!(l.events(wk, LockEvent::RwsemWakeReader), 0);
    l.step(h, Exited, &["h:UW=ok"]);
    l.check_count(RB, "", None);
    l.runnable(&[r2]);
    l.run_to_completion();
}

// ---- WK4: WAKE_READERS ------------------------------------------------------------------------

/// A writer queuing behind a queued writer on a read-held lock runs WAKE_READERS, which never
/// wakes a head writer (WAKE_ANY would).
#[test]
fn wk4_wake_readers_never_wakes_a_head_writer() {
    let mut l = Lab::new(A);
    let r = l.actor("r", &[R, UR]);
    let w1 = l.actor("w1", &[W, UW]);
    let w2 = l.actor("w2", &[W, UW]);
    l.step(r, Yielded, &["r:R=ok"]);
    l.sleeps(w1);
    l.sleeps(w2);
    l.check_count(WB + RB, "w1:W w2:W", None);
    l.blocked(&[w1, w2]);
    assert_eq!(l.events(w2, LockEvent::RwsemWakeWriter), 0);
    l.step(r, Exited, &["r:UR=ok"]);
    l.runnable(&[w1]);
    l.blocked(&[w2]);
    l.run_to_completion();
}

/// WAKE_READERS with readers at the head grants the leading run only (see also
/// `ar5_writer_queuing_behind_readers_on_read_held_lock_grants_the_head_readers`).
#[test]
fn wk4_wake_readers_grants_the_leading_readers_only() {
    let mut l = Lab::new(RFC);
    let r1 = l.actor("r1", &[R, UR]);
    let wk = l.actor("wk", &[WK]);
    let r2 = l.actor("r2", &[R, UR]);
    let w3 = l.actor("w3", &[W, UW]);
    let r4 = l.actor("r4", &[R, UR]);
    let w5 = l.actor("w5", &[W, UW]);
    l.step(r1, Yielded, &["r1:R=ok"]);
    for t in [wk, r2, w3, r4] {
        l.sleeps(t);
    }
    l.kill(wk);
    l.step(wk, Exited, &["wk:WK=EINTR"]);
    l.check_count(WB + RB, "r2:R w3:W r4:R", None);
    l.sleeps(w5);
    l.check_count(WB + 2 * RB, "w3:W r4:R w5:W", None);
    l.runnable(&[r2]);
    l.blocked(&[w3, r4, w5]);
    assert_eq!(l.events(w5, LockEvent::RwsemWakeReader), 1);
    l.run_to_completion();
}

// ---- WK5: downgrade_write ---------------------------------------------------------------------

#[test]
fn wk5_downgrade_grants_head_readers_and_nobody_behind_the_first_writer() {
    let mut l = Lab::new(A);
    let h = l.actor("h", &[W, DG, UR]);
    let r1 = l.actor("r1", &[R, UR]);
    let r2 = l.actor("r2", &[R, UR]);
    let w3 = l.actor("w3", &[W, UW]);
    let r4 = l.actor("r4", &[R, UR]);
    l.step(h, Yielded, &["h:W=ok"]);
    for t in [r1, r2, w3, r4] {
        l.sleeps(t);
    }
    l.check_count(AWB + WB, "r1:R r2:R w3:W r4:R", Some("h"));
    l.step(h, Yielded, &["h:DG=ok"]);
    // h's write hold became one read hold; r1, r2 granted; r4 waits behind w3.
    l.check_count(WB + 3 * RB, "w3:W r4:R", None);
    l.runnable(&[r1, r2]);
    l.blocked(&[w3, r4]);
    assert_eq!(l.events(h, LockEvent::RwsemWakeReader), 2);
    l.step(r1, Yielded, &["r1:R=ok"]);
    l.step(r2, Yielded, &["r2:R=ok"]);
    l.step(r1, Exited, &["r1:UR=ok"]);
    l.step(r2, Exited, &["r2:UR=ok"]);
    l.blocked(&[w3]);
    l.check_count(WB + RB, "w3:W r4:R", None);
    l.step(h, Exited, &["h:UR=ok"]);
    l.runnable(&[w3]);
    l.run_to_completion();
}

/// A writer at the head stays asleep through the downgrade and keeps the readers behind it
/// waiting, although the lock is now only read-held.
#[test]
fn wk5_downgrade_never_wakes_a_writer_so_readers_behind_it_keep_waiting() {
    let mut l = Lab::new(A);
    let h = l.actor("h", &[W, DG, UR]);
    let w1 = l.actor("w1", &[W, UW]);
    let r2 = l.actor("r2", &[R, UR]);
    l.step(h, Yielded, &["h:W=ok"]);
    l.sleeps(w1);
    l.sleeps(r2);
    l.check_count(AWB + WB, "w1:W r2:R", Some("h"));
    l.step(h, Yielded, &["h:DG=ok"]);
    l.check_count(WB + RB, "w1:W r2:R", None);
    l.blocked(&[w1, r2]);
    assert_eq!(l.events(h, LockEvent::RwsemWakeWriter), 0);
    l.trylocks_fail();
    l.step(h, Exited, &["h:UR=ok"]);
    l.check_count(WB, "w1:W r2:R", None);
    l.runnable(&[w1]);
    l.blocked(&[r2]);
    l.step(w1, Yielded, &["w1:W=ok"]);
    l.check_count(AWB + WB, "r2:R", Some("w1"));
    l.step(w1, Exited, &["w1:UW=ok"]);
    l.check_count(RB, "", None);
    l.run_to_completion();
}

#[test]
fn wk5_downgrade_without_waiters_leaves_one_read_hold() {
    let mut l = Lab::new(A);
    let h = l.actor("h", &[W, DG, UR]);
    let r = l.actor("r", &[R, UR]);
    l.step(h, Yielded, &["h:W=ok"]);
    l.step(h, Yielded, &["h:DG=ok"]);
    l.check_count(RB, "", None);
    l.step(r, Yielded, &["r:R=ok"]);
    assert_eq!(l.events(r, LockEvent::RwsemRlockFast), 1);
    l.check_count(2 * RB, "", None);
    l.step(h, Exited, &["h:UR=ok"]);
    l.step(r, Exited, &["r:UR=ok"]);
    l.check_count(0, "", None);
}

// ---- WK6: FIFO --------------------------------------------------------------------------------

#[test]
fn wk6_waiters_are_served_in_arrival_order() {
    for seed in 0..20 {
        let mut l = with_seed(A, seed);
        let h = l.actor("h", &[W, UW]);
        let order = [
            ("w1", W),
            ("r2", R),
            ("w3", W),
            ("r4", R),
            ("r5", R),
            ("w6", W),
            ("r7", R),
        ];
        let mut tids = vec![];
        for (name, op) in order {
            let rel = if op == W { UW } else { UR };
            tids.push(l.actor(name, &[op, rel]));
        }
        l.step(h, Yielded, &["h:W=ok"]);
        for &t in &tids {
            l.sleeps(t);
        }
        l.check_count(AWB + WB, "w1:W r2:R w3:W r4:R r5:R w6:W r7:R", Some("h"));
        assert_eq!(l.sim.run(), SimOutcome::AllExited, "seed {seed}");
        let acquired: Vec<String> = l
            .new_log()
            .iter()
            .filter(|e| e.ends_with(":R=ok") || e.ends_with(":W=ok"))
            .map(|e| e[..2].to_string())
            .collect();
        // Readers granted together may run in either order.
        let pos = |n: &str| acquired.iter().position(|x| x == n).unwrap();
        let batches: [&[&str]; 6] = [&["w1"], &["r2"], &["w3"], &["r4", "r5"], &["w6"], &["r7"]];
        // Each batch is served after every task of the previous one.
        let mut last = None;
        for b in batches {
            for n in b {
                assert!(Some(pos(n)) > last, "seed {seed}: order {acquired:?}");
            }
            last = b.iter().map(|n| Some(pos(n))).max().unwrap();
        }
        l.check_count(0, "", None);
    }
}

// ---- §5.1: when signals are checked ------------------------------------------------------------

#[test]
fn s51_fast_paths_ignore_pending_signals() {
    let mut l = Lab::new(A);
    let wk = l.actor("wk", &[WK, UW]);
    let rk = l.actor("rk", &[RK, UR]);
    let ri = l.actor("ri", &[RI, UR]);
    let t = l.actor("t", &[TW, UW, TR, UR]);
    // An uncontended down_write_killable with SIGKILL pending succeeds.
    l.kill(wk);
    l.step(wk, Yielded, &["wk:WK=ok"]);
    l.check_count(AWB, "", Some("wk"));
    assert_eq!(l.events(wk, LockEvent::RwsemWlockFast), 1);
    l.step(wk, Exited, &["wk:UW=ok"]);
    l.kill(rk);
    l.step(rk, Yielded, &["rk:RK=ok"]);
    l.signal(ri);
    l.step(ri, Yielded, &["ri:RI=ok"]);
    l.check_count(2 * RB, "", None);
    l.step(rk, Exited, &["rk:UR=ok"]);
    l.step(ri, Exited, &["ri:UR=ok"]);
    // Trylocks never look at signals either.
    l.kill(t);
    l.step(t, Yielded, &["t:TW=1"]);
    l.step(t, Yielded, &["t:UW=ok"]);
    l.step(t, Yielded, &["t:TR=1"]);
    l.step(t, Exited, &["t:UR=ok"]);
    l.check_count(0, "", None);
}

/// The try comes before the signal check: a killable writer woken to a free lock takes it and
/// returns 0 even with SIGKILL pending.
#[test]
fn s51_killable_writer_woken_to_a_free_lock_takes_it_despite_sigkill() {
    let mut l = Lab::new(A);
    let r = l.actor("r", &[R, UR]);
    let wk = l.actor("wk", &[WK, UW]);
    l.step(r, Yielded, &["r:R=ok"]);
    l.sleeps(wk);
    l.step(r, Exited, &["r:UR=ok"]);
    l.check_count(WB, "wk:W", None);
    l.runnable(&[wk]);
    l.kill(wk);
    l.step(wk, Yielded, &["wk:WK=ok"]);
    l.check_count(AWB, "", Some("wk"));
    assert!(l.task(wk).fatal_signal_pending());
    l.step(wk, Exited, &["wk:UW=ok"]);
    l.check_count(0, "", None);
}

/// SIGKILL pending on entry to a contended slow path: the first try fails, the signal check
/// that follows bails out, the task never sleeps.
#[test]
fn s51_killable_writer_with_sigkill_pending_bails_out_after_the_first_failed_try() {
    let mut l = Lab::new(A);
    let r = l.actor("r", &[R, UR]);
    let wk = l.actor("wk", &[WK]);
    l.step(r, Yielded, &["r:R=ok"]);
    l.kill(wk);
    l.step(wk, Exited, &["wk:WK=EINTR"]);
    l.check_count(RB, "", None);
    assert_eq!(l.events(wk, LockEvent::RwsemSleepWriter), 0);
    assert_eq!(l.events(wk, LockEvent::RwsemWlockFail), 1);
    l.step(r, Exited, &["r:UR=ok"]);
    l.check_count(0, "", None);
}

/// ... but if the slow path's try succeeds (the wake window), it takes the lock: signals are
/// checked only after a failed try.
#[test]
fn s51_killable_writer_with_sigkill_pending_still_steals_a_free_lock_in_the_slow_path() {
    let mut l = Lab::new(A);
    let h = l.actor("h", &[W, UW]);
    let w1 = l.actor("w1", &[W, UW]);
    let wk = l.actor("wk", &[WK, UW]);
    l.step(h, Yielded, &["h:W=ok"]);
    l.sleeps(w1);
    l.step(h, Exited, &["h:UW=ok"]);
    l.check_count(WB, "w1:W", None);
    l.kill(wk);
    l.step(wk, Yielded, &["wk:WK=ok"]);
    l.check_count(AWB + WB, "w1:W", Some("wk"));
    l.sleeps(w1);
    l.run_to_completion();
}

#[test]
fn s51_killable_reader_with_sigkill_pending_bails_out_without_sleeping() {
    let mut l = Lab::new(A);
    let h = l.actor("h", &[W, UW]);
    let rk = l.actor("rk", &[RK]);
    l.step(h, Yielded, &["h:W=ok"]);
    l.kill(rk);
    l.step(rk, Exited, &["rk:RK=EINTR"]);
    l.check_count(AWB, "", Some("h"));
    assert_eq!(l.events(rk, LockEvent::RwsemSleepReader), 0);
    assert_eq!(l.events(rk, LockEvent::RwsemRlockFail), 1);
    l.run_to_completion();
}

#[test]
fn s51_uninterruptible_waits_ignore_sigkill() {
    let mut l = Lab::new(A);
    let h = l.actor("h", &[W, UW]);
    let ru = l.actor("ru", &[R, UR]);
    let wu = l.actor("wu", &[W, UW]);
    l.step(h, Yielded, &["h:W=ok"]);
    l.sleeps(ru);
    l.sleeps(wu);
    l.check_count(AWB + WB, "ru:R wu:W", Some("h"));
    // SIGKILL does not even wake them.
    l.kill(ru);
    l.kill(wu);
    l.blocked(&[ru, wu]);
    // Woken for another reason, they re-check, ignore the signal, and sleep again.
    l.spurious_wake(ru);
    l.spurious_wake(wu);
    l.sleeps(ru);
    l.sleeps(wu);
    l.check_count(AWB + WB, "ru:R wu:W", Some("h"));
    l.step(h, Exited, &["h:UW=ok"]);
    l.check_count(WB + RB, "wu:W", None);
    l.step(ru, Yielded, &["ru:R=ok"]);
    l.step(ru, Exited, &["ru:UR=ok"]);
    l.step(wu, Yielded, &["wu:W=ok"]);
    l.check_count(AWB, "", Some("wu"));
    l.step(wu, Exited, &["wu:UW=ok"]);
    l.check_count(0, "", None);
}

#[test]
fn s51_killable_waits_ignore_non_fatal_signals() {
    let mut l = Lab::new(A);
    let h = l.actor("h", &[W, UW]);
    let rk = l.actor("rk", &[RK, UR]);
    let wk = l.actor("wk", &[WK, UW]);
    l.step(h, Yielded, &["h:W=ok"]);
    l.sleeps(rk);
    l.sleeps(wk);
    l.signal(rk);
    l.signal(wk);
    l.blocked(&[rk, wk]);
    l.spurious_wake(rk);
    l.spurious_wake(wk);
    l.sleeps(rk);
    l.sleeps(wk);
    l.check_count(AWB + WB, "rk:R wk:W", Some("h"));
    l.step(h, Exited, &["h:UW=ok"]);
    l.step(rk, Yielded, &["rk:RK=ok"]);
    l.step(rk, Exited, &["rk:UR=ok"]);
    l.step(wk, Yielded, &["wk:WK=ok"]);
    l.step(wk, Exited, &["wk:UW=ok"]);
    l.check_count(0, "", None);
}

#[test]
fn s51_interruptible_read_wait_returns_interrupted_on_any_signal() {
    let mut l = Lab::new(A);
    let h = l.actor("h", &[W, UW]);
    let ri = l.actor("ri", &[RI]);
    let ri2 = l.actor("ri2", &[RI]);
    l.step(h, Yielded, &["h:W=ok"]);
    l.sleeps(ri);
    l.check_count(AWB + WB, "ri:R", Some("h"));
    // A non-fatal signal wakes a TASK_INTERRUPTIBLE waiter, which bails out.
    l.signal(ri);
    l.runnable(&[ri]);
    l.step(ri, Exited, &["ri:RI=EINTR"]);
    l.check_count(AWB, "", Some("h"));
    assert_eq!(l.events(ri, LockEvent::RwsemRlockFail), 1);
    // SIGKILL too.
    l.sleeps(ri2);
    l.kill(ri2);
    l.step(ri2, Exited, &["ri2:RI=EINTR"]);
    l.check_count(AWB, "", Some("h"));
    l.run_to_completion();
}

/// A killable reader checks "granted?" before the signal: granted by `up_write` while it had
/// SIGKILL pending (in both orders), it returns success and holds the lock.
#[test]
fn s51_killable_reader_granted_before_it_runs_keeps_the_lock_despite_sigkill() {
    for kill_first in [true, false] {
        let mut l = Lab::new(A);
        let h = l.actor("h", &[W, UW]);
        let rk = l.actor("rk", &[RK, UR]);
        l.step(h, Yielded, &["h:W=ok"]);
        l.sleeps(rk);
        if kill_first {
            l.kill(rk);
            l.runnable(&[rk]);
        }
        l.step(h, Exited, &["h:UW=ok"]);
        l.check_count(RB, "", None);
        if !kill_first {
            l.kill(rk);
        }
        l.step(rk, Yielded, &["rk:RK=ok"]);
        l.check_count(RB, "", None);
        assert_eq!(l.events(rk, LockEvent::RwsemRlockFail), 0);
        l.step(rk, Exited, &["rk:UR=ok"]);
        l.check_count(0, "", None);
    }
}

// ---- §5.2: bail-out obligations ---------------------------------------------------------------

/// The killed writer was the last waiter: it unlinks itself and removes the WAITING_BIAS, so
/// the count is exactly the holders' again and later fast paths and trylocks succeed.
#[test]
fn s52_killed_last_waiter_removes_waiting_bias_and_fast_paths_work_again() {
    let mut l = Lab::new(A);
    let r = l.actor("r", &[R, UR]);
    let wk = l.actor("wk", &[WK]);
    let w = l.actor("w", &[W, UW]);
    let n = l.actor("n", &[R, UR]);
    l.step(r, Yielded, &["r:R=ok"]);
    l.sleeps(wk);
    l.check_count(WB + RB, "wk:W", None);
    l.kill(wk);
    l.runnable(&[wk]);
    l.step(wk, Exited, &["wk:WK=EINTR"]);
    l.check_count(RB, "", None);
    assert_eq!(l.events(wk, LockEvent::RwsemWlockFail), 1);
    // Read trylock and read fast path work while r still holds.
    assert!(l.sem.down_read_trylock());
    l.sem.up_read();
    l.step(n, Yielded, &["n:R=ok"]);
    assert_eq!(l.events(n, LockEvent::RwsemRlockFast), 1);
    l.step(n, Exited, &["n:UR=ok"]);
    l.step(r, Exited, &["r:UR=ok"]);
    l.check_count(0, "", None);
    l.trylocks_succeed();
    l.step(w, Yielded, &["w:W=ok"]);
    assert_eq!(l.events(w, LockEvent::RwsemWlockFast), 1);
    l.step(w, Exited, &["w:UW=ok"]);
    l.check_count(0, "", None);
}

#[test]
fn s52_killed_last_waiter_behind_a_writer_leaves_exactly_the_write_bias() {
    let mut l = Lab::new(A);
    let h = l.actor("h", &[W, UW]);
    let wk = l.actor("wk", &[WK]);
    l.step(h, Yielded, &["h:W=ok"]);
    l.sleeps(wk);
    l.check_count(AWB + WB, "wk:W", Some("h"));
    l.kill(wk);
    l.step(wk, Exited, &["wk:WK=EINTR"]);
    l.check_count(AWB, "", Some("h"));
    l.step(h, Exited, &["h:UW=ok"]);
    l.check_count(0, "", None);
    l.trylocks_succeed();
}

/// Readers queued behind a killable writer while readers hold (AR3) are granted when it is
/// killed: WAKE_ANY on bail-out. The kill comes from another task (the OOM killer).
#[test]
fn s52_killed_writer_grants_the_readers_queued_behind_it_while_readers_hold() {
    let mut l = Lab::new(A);
    let r1 = l.actor("r1", &[R, UR]);
    let wk = l.actor("wk", &[WK]);
    let r2 = l.actor("r2", &[R, UR]);
    let r3 = l.actor("r3", &[R, UR]);
    let w4 = l.actor("w4", &[W, UW]);
    let r5 = l.actor("r5", &[R, UR]);
    let oom = l.actor("oom", &[Kill("wk")]);
    l.step(r1, Yielded, &["r1:R=ok"]);
    for t in [wk, r2, r3, w4, r5] {
        l.sleeps(t);
    }
    l.check_count(WB + RB, "wk:W r2:R r3:R w4:W r5:R", None);
    l.step(oom, Exited, &["oom:Kill(\"wk\")=ok"]);
    l.runnable(&[wk]);
    l.blocked(&[r2, r3, w4, r5]);
    l.step(wk, Exited, &["wk:WK=EINTR"]);
    // r2 and r3 granted (lock read-held only); w4 is the new head, r5 behind it.
    l.check_count(WB + 3 * RB, "w4:W r5:R", None);
    l.runnable(&[r2, r3]);
    l.blocked(&[w4, r5]);
    assert_eq!(l.events(wk, LockEvent::RwsemWakeReader), 2);
    // The holders continue together.
    l.step(r2, Yielded, &["r2:R=ok"]);
    l.step(r3, Yielded, &["r3:R=ok"]);
    l.step(r1, Exited, &["r1:UR=ok"]);
    l.run_to_completion();
}

/// The killed head writer wakes the writer behind it (which re-checks and, the lock still being
/// read-held, sleeps again).
#[test]
fn s52_killed_head_writer_wakes_the_new_head_writer() {
    let mut l = Lab::new(A);
    let r = l.actor("r", &[R, UR]);
    let wk = l.actor("wk", &[WK]);
    let w2 = l.actor("w2", &[W, UW]);
    l.step(r, Yielded, &["r:R=ok"]);
    l.sleeps(wk);
    l.sleeps(w2);
    l.check_count(WB + RB, "wk:W w2:W", None);
    l.kill(wk);
    l.blocked(&[w2]);
    l.step(wk, Exited, &["wk:WK=EINTR"]);
    l.check_count(WB + RB, "w2:W", None);
    l.runnable(&[w2]);
    assert_eq!(l.events(wk, LockEvent::RwsemWakeWriter), 1);
    l.sleeps(w2);
    l.step(r, Exited, &["r:UR=ok"]);
    l.runnable(&[w2]);
    l.step(w2, Yielded, &["w2:W=ok"]);
    l.check_count(AWB, "", Some("w2"));
    l.step(w2, Exited, &["w2:UW=ok"]);
    l.check_count(0, "", None);
}

/// A killed writer that is not at the head: it unlinks itself; the bail-out's WAKE_ANY only
/// wakes the head writer, never the readers behind it.
#[test]
fn s52_killed_writer_behind_a_head_writer_unlinks_itself() {
    let mut l = Lab::new(A);
    let r = l.actor("r", &[R, UR]);
    let w1 = l.actor("w1", &[W, UW]);
    let wk = l.actor("wk", &[WK]);
    let r3 = l.actor("r3", &[R, UR]);
    l.step(r, Yielded, &["r:R=ok"]);
    for t in [w1, wk, r3] {
        l.sleeps(t);
    }
    l.check_count(WB + RB, "w1:W wk:W r3:R", None);
    l.kill(wk);
    l.step(wk, Exited, &["wk:WK=EINTR"]);
    l.check_count(WB + RB, "w1:W r3:R", None);
    l.runnable(&[w1]);
    l.blocked(&[r3]);
    l.sleeps(w1);
    l.run_to_completion();
}

/// A killed (or interrupted) reader unlinks itself, removes the WAITING_BIAS if it was the
/// last waiter, and wakes nobody (Model A readers' bail-out).
#[test]
fn s52_killed_reader_unlinks_itself_and_removes_waiting_bias_when_last() {
    // Last waiter.
    let mut l = Lab::new(A);
    let h = l.actor("h", &[W, UW]);
    let rk = l.actor("rk", &[RK]);
    l.step(h, Yielded, &["h:W=ok"]);
    l.sleeps(rk);
    l.check_count(AWB + WB, "rk:R", Some("h"));
    l.kill(rk);
    l.step(rk, Exited, &["rk:RK=EINTR"]);
    l.check_count(AWB, "", Some("h"));
    l.run_to_completion();
    l.trylocks_succeed();

    // Not the last waiter: the queue keeps its WAITING_BIAS, nobody is woken.
    let mut l = Lab::new(A);
    let h = l.actor("h", &[W, UW]);
    let rk = l.actor("rk", &[RK]);
    let w2 = l.actor("w2", &[W, UW]);
    let r3 = l.actor("r3", &[R, UR]);
    l.step(h, Yielded, &["h:W=ok"]);
    l.sleeps(rk);
    l.sleeps(w2);
    l.sleeps(r3);
    l.kill(rk);
    l.step(rk, Exited, &["rk:RK=EINTR"]);
    l.check_count(AWB + WB, "w2:W r3:R", Some("h"));
    l.blocked(&[w2, r3]);
    l.run_to_completion();
}

// ---- §5.3: the unfixed 2016 bail-out (RwSemModel::RfcV1) ---------------------------------------

/// r holds for read, wk queues (killable) and is killed: the last waiter leaves.
fn kill_the_last_waiter(model: RwSemConfig) -> (Lab, Tid) {
    let mut l = Lab::new(model);
    let r = l.actor("r", &[R, UR]);
    let wk = l.actor("wk", &[WK]);
    l.step(r, Yielded, &["r:R=ok"]);
    l.sleeps(wk);
    l.check_count(WB + RB, "wk:W", None);
    l.kill(wk);
    l.step(wk, Exited, &["wk:WK=EINTR"]);
    (l, r)
}

/// Symptom (a): the count keeps a WAITING_BIAS with an empty queue. Both trylocks fail forever;
/// a new reader queues with nobody left to wake it.
#[test]
fn rfcv1_symptom_a_stale_waiting_bias_after_the_last_waiter_is_killed_hangs_new_readers() {
    let (mut l, r) = kill_the_last_waiter(RFC);
    l.check_count(WB + RB, "", None);
    l.step(r, Exited, &["r:UR=ok"]);
    l.check_count(WB, "", None);
    assert!(l.sem.is_locked());
    l.trylocks_fail();
    let n = l.actor("n", &[R, UR]);
    l.sleeps(n);
    // A second WAITING_BIAS: the count no longer looks "free" nor "read-held".
    l.check_count(2 * WB, "n:R", None);
    let why = l.sem.stuck_diagnosis().expect("diagnosed");
    assert!(why.contains("no wake-up is coming"), "{why}");
    assert!(
        why.contains("2 waiting bias(es) where 1 are accounted for"),
        "{why}"
    );
    assert!(why.contains("2016 RFC"), "{why}");
    let rep = expect_deadlock(l.run());
    assert_eq!(wchan_of(&rep, n), Some("rwsem_down_read_failed"));
    assert_eq!(rep.tasks.len(), 1, "{rep}");
}

#[test]
fn rfcv1_symptom_a_stale_waiting_bias_also_hangs_new_writers() {
    let (mut l, r) = kill_the_last_waiter(RFC);
    l.step(r, Exited, &["r:UR=ok"]);
    l.check_count(WB, "", None);
    let w = l.actor("w", &[W, UW]);
    l.sleeps(w);
    l.check_count(2 * WB, "w:W", None);
    let rep = expect_deadlock(l.run());
    assert_eq!(wchan_of(&rep, w), Some("rwsem_down_write_failed"));
}

/// The same script on Model A: exact count, trylocks and fast paths work.
#[test]
fn rfcv1_symptom_a_does_not_happen_with_model_a() {
    let (mut l, r) = kill_the_last_waiter(A);
    l.check_count(RB, "", None);
    assert_eq!(l.sem.stuck_diagnosis(), None);
    l.step(r, Exited, &["r:UR=ok"]);
    l.check_count(0, "", None);
    assert_eq!(l.sem.stuck_diagnosis(), None);
    l.trylocks_succeed();
    let n = l.actor("n", &[R, UR]);
    l.step(n, Yielded, &["n:R=ok"]);
    l.run_to_completion();
}

/// r1 holds for read and waits for r2; wk queued behind r1, r2 behind wk (AR3); wk killed.
fn kill_writer_with_reader_behind(model: RwSemConfig) -> (Lab, Tid, Tid) {
    let mut l = Lab::new(model);
    let r1 = l.actor("r1", &[R, Wait(0), UR]);
    let wk = l.actor("wk", &[WK]);
    let r2 = l.actor("r2", &[R, Complete(0), UR]);
    l.step(r1, Yielded, &["r1:R=ok"]);
    l.sleeps(wk);
    l.sleeps(r2);
    l.check_count(WB + RB, "wk:W r2:R", None);
    l.kill(wk);
    l.step(wk, Exited, &["wk:WK=EINTR"]);
    (l, r1, r2)
}

/// Symptom (b): the reader queued behind the killed writer is not woken; r1 keeps holding the
/// lock for read, and since r1 waits for r2 the system deadlocks.
#[test]
fn rfcv1_symptom_b_readers_behind_a_killed_writer_are_not_woken() {
    let (mut l, r1, r2) = kill_writer_with_reader_behind(RFC);
    l.check_count(WB + RB, "r2:R", None);
    l.blocked(&[r2]);
    let why = l.sem.stuck_diagnosis().expect("diagnosed");
    assert!(why.contains("a reader heads the queue"), "{why}");
    // r1 continues (it holds the lock) while r2 stays asleep.
    l.sleeps(r1);
    l.blocked(&[r2]);
    let rep = expect_deadlock(l.run());
    assert_eq!(wchan_of(&rep, r2), Some("rwsem_down_read_failed"));
    assert!(rep.tasks.iter().any(|b| b.tid == r1), "{rep}");
}

#[test]
fn rfcv1_symptom_b_does_not_happen_with_model_a() {
    let (mut l, r1, r2) = kill_writer_with_reader_behind(A);
    l.check_count(2 * RB, "", None);
    assert_eq!(l.sem.stuck_diagnosis(), None);
    l.runnable(&[r2]);
    l.sleeps(r1);
    l.run_to_completion();
}

/// Symptom (a), the other order: a reader queues on the stale count *before* the last holder
/// leaves. The holder's `up_read` then runs WAKE_ANY with a reader at the head and a count of
/// two WAITING_BIAS terms and no active locker: the reservation of the first read grant sees
/// "a writer stole the lock" (oldcount < WAITING_BIAS), undoes it, finds no active locker and
/// retries (`try_reader_grant` in v4.7's `__rwsem_mark_wake`) — forever, because on the sim's
/// single CPU nothing else can change the count. docs/rwsem-rules.md §5.3 says the grant is
/// abandoned and the queued reader hangs: the run should end in `SimOutcome::Deadlock` with the
/// reader stranded (or the emulator should report the hard lockup), not hang the executor's OS
/// thread where no deadlock report can be produced.
///
/// The scenario runs on a worker thread under a 2 s watchdog. On a hang the test plays "another
/// CPU" whose reader fast-path increment ends the spin (as on SMP), joins the worker, and fails.
#[test]
fn rfcv1_symptom_a_holder_release_with_reader_queued_on_stale_bias_must_not_hang_the_executor() {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::sync::mpsc::{channel, RecvTimeoutError};
    use std::time::Duration;

    let (sem_tx, sem_rx) = channel();
    let (done_tx, done_rx) = channel();
    let worker = std::thread::spawn(move || {
        let r = catch_unwind(AssertUnwindSafe(|| {
            let (mut l, r) = kill_the_last_waiter(RFC);
            sem_tx.send(l.sem.clone()).unwrap();
            l.check_count(WB + RB, "", None);
            let n = l.actor("n", &[R, UR]);
            l.sleeps(n);
            l.check_count(2 * WB + RB, "n:R", None);
            // r's up_read leaves 2×WAITING_BIAS and wakes the queue: n's grant cannot work.
            l.step(r, Exited, &["r:UR=ok"]);
            let rep = expect_deadlock(l.run());
            assert_eq!(wchan_of(&rep, n), Some("rwsem_down_read_failed"));
        }));
        let _ = done_tx.send(r.map_err(|p| {
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        }));
    });
    let sem: Arc<RawRwSem> = sem_rx.recv().expect("worker set up the scenario");
    match done_rx.recv_timeout(Duration::from_secs(2)) {
        Ok(Ok(())) => {}
        Ok(Err(msg)) if msg.contains("lockup") || msg.contains("livelock") => {}
        Ok(Err(msg)) => panic!("{msg}"),
        Err(RecvTimeoutError::Disconnected) => panic!("worker vanished"),
        Err(RecvTimeoutError::Timeout) => {
            let spinning_at = sem.count();
            // Another CPU's down_read fast path: +1 on the count (then it fails here, outside
            // an emulated task, leaving the +1 in place). The spinning undo now sees an active
            // locker and gives up.
            let _ = catch_unwind(AssertUnwindSafe(|| sem.down_read()));
            let _ = worker.join();
            panic!(
                "up_read never returned: it spins in mark_wake's reader-grant retry with a stale \
                 WAITING_BIAS (count {} around the spin, reader queued). Expected per \
                 docs/rwsem-rules.md §5.3: the grant is abandoned and the run ends in a deadlock \
                 report (or the emulator reports a hard lockup).",
                describe(spinning_at)
            );
        }
    }
    worker.join().unwrap();
}

// ---- property tests: random interleavings ------------------------------------------------------

/// The lock's state, read through its snapshot, must be consistent at every step boundary
/// (the state table of `mm::locking::rwsem`; docs/rwsem-rules.md §2.1): the "someone is queued"
/// mark of the count (one `WAITING_BIAS` term beyond a writer holder's) present once iff the
/// queue is non-empty; a writer holder alone; and a reader at the head of the queue only while a
/// writer holds (in Model A every release or bail-out that leaves readers at the head of a lock
/// no writer holds grants them). Some(what is wrong) otherwise.
fn invariant_violation(s: &RwSemSnapshot) -> Option<String> {
    let q: Vec<_> = s.waiting().collect();
    let writer = s.write_locked;
    if s.waiters_flag != u32::from(!q.is_empty()) {
        return Some(format!(
            "stale count: {} with {} waiter(s) and {}",
            describe(s.count),
            q.len(),
            if writer {
                "a writer holding"
            } else {
                "no writer"
            }
        ));
    }
    if writer && s.readers > 0 {
        return Some(format!("write-held with {} reader(s) active", s.readers));
    }
    match q.first() {
        Some(h) if h.kind == WaiterType::Read && !writer => Some(format!(
            "reader {} not granted at the head of the queue (count {}), no writer holds",
            h.tid,
            describe(s.count)
        )),
        _ => None,
    }
}

/// Model A's property world: its count-word invariant, no holds across jiffies (Model A has no
/// timeouts), and the sizes these tests were written with.
const MODEL_A_WORLD: WorldKind = WorldKind {
    max_steps: 200_000,
    salt: 0x5eed_0f00_1111_01ab,
    kill_delay: 25,
    long_holds: false,
    invariant: invariant_violation,
};

fn random_world(config: RwSemConfig, seed: u64) -> World {
    random_world_of(&MODEL_A_WORLD, config, seed)
}

const PROP_SEEDS: u64 = 400;

#[test]
fn prop_model_a_random_interleavings_exclude_and_end_quiescent() {
    let mut reached = Reached::default();
    for seed in 0..PROP_SEEDS {
        let w = random_world(A, seed);
        check_world(A, seed, &w);
        assert_eq!(
            w.sem.count(),
            0,
            "seed {seed}: count {}",
            describe(w.sem.count())
        );
        reached.add(&w);
    }
    // The worlds did reach the interesting paths.
    reached.assert_all(
        &[
            LockEvent::RwsemSleepReader,
            LockEvent::RwsemSleepWriter,
            LockEvent::RwsemWakeReader,
            LockEvent::RwsemWakeWriter,
            LockEvent::RwsemRlockFail,
            LockEvent::RwsemWlockFail,
            LockEvent::RwsemDowngrade,
            LockEvent::RwsemRtrylockFail,
            LockEvent::RwsemWtrylock,
        ],
        PROP_SEEDS,
    );
}

/// RfcV1 differs from Model A only in a killed writer's bail-out: without one, the run is
/// step-for-step identical; with one, some seeds leave a stale WAITING_BIAS (symptom a) and some
/// leave readers ungranted at the head of a lock no writer holds (symptom b). Mutual exclusion
/// holds in all of them (the bug is one of liveness).
#[test]
fn prop_rfc_v1_diverges_from_model_a_only_after_a_writer_bail_out() {
    let (mut stale, mut stranded, mut with_bailout) = (0, 0, 0);
    for seed in 0..PROP_SEEDS {
        let a = random_world(A, seed);
        let v = random_world(RFC, seed);
        assert_eq!(a.violation, None, "seed {seed}");
        if a.events[LockEvent::RwsemWlockFail as usize] == 0 {
            assert_eq!(
                a.hash, v.hash,
                "seed {seed}: RfcV1 diverged without a bail-out"
            );
            assert_eq!(v.outcome, SimOutcome::AllExited, "seed {seed}");
            continue;
        }
        with_bailout += 1;
        match &v.violation {
            Some(s) if s.starts_with("stale count") => stale += 1,
            Some(s) if s.contains("not granted") => stranded += 1,
            Some(s) => panic!("seed {seed}: unexpected violation {s}"),
            None => assert_eq!(v.outcome, SimOutcome::AllExited, "seed {seed}"),
        }
    }
    assert!(
        with_bailout > 0,
        "no killed writer bailed out in {PROP_SEEDS} seeds"
    );
    assert!(
        stale > 0 && stranded > 0,
        "RfcV1 in {with_bailout} runs with a bail-out: {stale} stale biases, {stranded} \
         stranded readers; both symptoms must show"
    );
}

/// `stuck_diagnosis` judges only a lock at rest: in the wake window (the head writer woken by
/// the last reader's `up_read`, not yet run: free lock, one waiter) it says nothing, and after
/// the writer ran the state is healthy.
#[test]
fn stuck_diagnosis_is_silent_in_the_wake_window_and_on_healthy_locks() {
    let mut l = Lab::new(A);
    let r = l.actor("r", &[R, UR]);
    let w = l.actor("w", &[W, UW]);
    l.step(r, Yielded, &["r:R=ok"]);
    assert_eq!(l.sem.stuck_diagnosis(), None, "read-held, nobody queued");
    l.sleeps(w);
    assert_eq!(l.sem.stuck_diagnosis(), None, "read-held, writer queued");
    l.step(r, Exited, &["r:UR=ok"]);
    l.check_count(WB, "w:W", None);
    l.runnable(&[w]);
    assert_eq!(l.sem.stuck_diagnosis(), None, "wake window");
    l.run_to_completion();
    assert_eq!(l.sem.stuck_diagnosis(), None, "free");
}
