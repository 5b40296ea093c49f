//! Model A (and RfcV1): the count word and the slow paths of **Linux v4.7**
//! `kernel/locking/rwsem-xadd.c` with `include/asm-generic/rwsem.h` fast paths, the May-2016
//! fix "locking/rwsem: Fix down_write_killable()" (Peter Zijlstra), and the killable reader slow
//! path of v4.15 (76f8507f7a64). [`RwSemModel::RfcV1`] reproduces the unfixed 2016 bail-out.
//! With [`RwSemSpin::On`], v4.7's writer optimistic spinning (`rwsem_optimistic_spin()`,
//! `CONFIG_RWSEM_SPIN_ON_OWNER=y`) and its `rwsem_wake()` shortcut.
//!
//! # Count word
//!
//! Three biases make up the 64-bit count (docs/rwsem-rules.md §2.1): `ACTIVE_BIAS` (1, also
//! `ACTIVE_READ_BIAS`) per task holding or attempting the lock, in the low 32 bits
//! (`ACTIVE_MASK`); `WAITING_BIAS` (−2³²) once while the wait list is non-empty; and
//! `ACTIVE_WRITE_BIAS`, which **equals** `WAITING_BIAS` + `ACTIVE_BIAS`: a writer counts as
//! one active task plus one waiting bias of its own. So one value can stand for several
//! states, as the kernel's own guide at the top of rwsem-xadd.c lists them (value → cases):
//!
//! | `count` | cases |
//! |---|---|
//! | 0 | free: nobody holds, attempts or waits |
//! | N > 0 | N readers hold or attempt (a reader whose fast path failed backs its 1 out), queue empty |
//! | `WAITING_BIAS` + N, N ≥ 2 | N readers hold or attempt, queue non-empty; **or** a writer holds or attempts and N − 1 readers attempt, queue empty |
//! | `WAITING_BIAS` + 1 = `ACTIVE_WRITE_BIAS` | one reader holds or attempts, queue non-empty; **or** a writer holds or attempts, queue empty |
//! | `WAITING_BIAS` | queue non-empty, nobody active: the wake window (AR6), where a writer may steal the lock |
//! | 2 × `WAITING_BIAS` + 1 + N | a writer holds or attempts, N readers attempt, queue non-empty |
//!
//! One `WAITING_BIAS` term beyond the writer's own means "the wait list is non-empty"
//! (RfcV1 breaks this, §5.3). Every place that changes it, all under `wait_lock`:
//!
//! - added by [`down_read_failed`] (the reader that queues on an empty list adds
//!   `WAITING_BIAS` − `ACTIVE_BIAS` in one step) and [`down_write_failed`] (the writer that
//!   queues on an empty list, after taking back its own `ACTIVE_WRITE_BIAS`);
//! - removed by [`mark_wake`] when its grant of readers empties the list, by
//!   [`try_write_lock`] when the writer that takes the lock was the only waiter (it swaps
//!   `WAITING_BIAS` for `ACTIVE_WRITE_BIAS`: its own waiting term stays, the list's goes), by
//!   [`read_out_nolock`] and [`write_out_nolock`] (Model A) when the leaving waiter was the
//!   last;
//! - not removed by RfcV1's [`write_out_nolock`]: the stale bias of §5.3;
//! - [`downgrade_write`] removes the writer's own waiting term (`ACTIVE_WRITE_BIAS` becomes
//!   one `ACTIVE_READ_BIAS`), never the list's.
//!
//! `owner` is the writer's tid (`rwsem_set_owner`), 0 otherwise: v4.7 readers do not record
//! themselves.
//!
//! Constants (64-bit): `ACTIVE_MASK` = 0xffff_ffff, `ACTIVE_BIAS` = `ACTIVE_READ_BIAS` = 1,
//! `WAITING_BIAS` = −2³², `ACTIVE_WRITE_BIAS` = `WAITING_BIAS` + 1.
//!
//! # Rules (docs/rwsem-rules.md) and where they live
//! AR1 [`down_read`]'s fast path; AR2/AR3 [`down_read_failed`]; AR4 [`down_write`]'s fast path;
//! AR5/AR6 [`down_write_failed`] + [`try_write_lock`]; AR7 the trylocks; AR9 [`optimistic_spin`]
//! and [`rwsem_wake`]'s spinner shortcut; WK1 [`up_read`]; WK2 [`up_write`]; WK3–WK5
//! [`mark_wake`]; WK5 [`downgrade_write`]; §5.1 the signal checks in both slow paths; §5.2 the
//! `out_nolock` functions; §5.3 [`write_out_nolock`] for RfcV1.
//!
//! # Deviations
//! - `down_read_interruptible` appeared in v5.11 (Model B); here it runs Model A's reader slow
//!   path with TASK_INTERRUPTIBLE.
//! - The write-slow-path WAKE_READERS case wakes with `wait_lock` held, as v4.7 does.
//! - With RfcV1's stale bias, v4.7's reader grant would retry forever on one CPU; the emulation
//!   abandons the grant instead (see [`mark_wake`]).
//! - Spinning: see `spin.rs` (the OSQ, `need_resched()` as a time budget, "on a CPU" as the
//!   task's run state). `rwsem_wake()`'s spinner shortcut carries the full fences x86 gives
//!   v4.7 (see there): with weaker orderings it can lose a wake-up.

use super::spin::{OwnerCache, SpinBudget};
use super::{
    current_tid, reader_granted_exit, wake_up_q, RawRwSem, RwSemModel, RwSemSpin, WaitList,
    WaiterType, WakeQ, WakeType, OWNER_SHIFT,
};
use crate::locking::lock_events::{count as count_event, LockEvent};
use crate::sched;
use crate::sync::{fence, Ordering};
use crate::task::state::*;

/// `RWSEM_ACTIVE_MASK`.
pub const RWSEM_ACTIVE_MASK: i64 = 0xffff_ffff;
/// `RWSEM_UNLOCKED_VALUE`.
pub const RWSEM_UNLOCKED_VALUE: i64 = 0;
/// `RWSEM_ACTIVE_BIAS`.
pub const RWSEM_ACTIVE_BIAS: i64 = 1;
/// `RWSEM_WAITING_BIAS`.
pub const RWSEM_WAITING_BIAS: i64 = -RWSEM_ACTIVE_MASK - 1;
/// `RWSEM_ACTIVE_READ_BIAS`.
pub const RWSEM_ACTIVE_READ_BIAS: i64 = RWSEM_ACTIVE_BIAS;
/// `RWSEM_ACTIVE_WRITE_BIAS`.
pub const RWSEM_ACTIVE_WRITE_BIAS: i64 = RWSEM_WAITING_BIAS + RWSEM_ACTIVE_BIAS;

/// The count word as (write-locked, readers, waiter marks, handoff) for snapshots; `owner_set`
/// says whether a writer recorded itself. At rest the count is `active × ACTIVE_BIAS + terms
/// × WAITING_BIAS`, with one term for a writer holding and one while anyone is queued.
pub(super) fn decode(count: i64, owner_set: bool) -> (bool, u64, u32, bool) {
    let active = count & RWSEM_ACTIVE_MASK;
    let terms = (active - count) / -RWSEM_WAITING_BIAS;
    let w = i64::from(owner_set);
    (
        owner_set,
        (active - w).max(0) as u64,
        (terms - w).max(0) as u32,
        false,
    )
}

// ---- fast paths (include/asm-generic/rwsem.h) -------------------------------------------------

/// `down_read*()` (v4.7/v4.15): the fast path, then the slow path in `state`. Err(()) is -EINTR.
#[inline(always)]
pub(super) fn down_read(sem: &RawRwSem, state: u32) -> Result<(), ()> {
    if read_fast(sem) {
        return Ok(());
    }
    down_read_failed(sem, state)
}

/// `__down_read()`: one atomic increment; succeeds iff the new count is positive (AR1).
#[inline(always)]
fn read_fast(sem: &RawRwSem) -> bool {
    let c = sem
        .count
        .fetch_add(RWSEM_ACTIVE_READ_BIAS, Ordering::Acquire)
        + RWSEM_ACTIVE_READ_BIAS;
    if c > 0 {
        count_event(LockEvent::RwsemRlockFast, 1);
        true
    } else {
        false
    }
}

/// `down_read_trylock()`: succeeds iff no writer holds and nobody is queued (AR7).
///
/// The cmpxchg loop of x86 `__down_read_trylock` (v4.7), started from a guess of the unlocked
/// value instead of a load of the count, as "locking/rwsem: Optimize down_read_trylock()"
/// (ddb20d1d3aed, v5.1) does: the same outcomes, one cache-line transfer fewer when another CPU
/// wrote the count last.
#[inline]
pub(super) fn down_read_trylock(sem: &RawRwSem) -> bool {
    let mut tmp = RWSEM_UNLOCKED_VALUE;
    while tmp >= 0 {
        match sem.count.compare_exchange_weak(
            tmp,
            tmp + RWSEM_ACTIVE_READ_BIAS,
            Ordering::Acquire,
            Ordering::Relaxed,
        ) {
            Ok(_) => {
                count_event(LockEvent::RwsemRtrylock, 1);
                return true;
            }
            Err(now) => tmp = now,
        }
    }
    count_event(LockEvent::RwsemRtrylockFail, 1);
    false
}

/// `up_read()`: the reader that leaves no active locker behind wakes the queue (WK1).
#[inline]
pub(super) fn up_read(sem: &RawRwSem) {
    let tmp = sem
        .count
        .fetch_sub(RWSEM_ACTIVE_READ_BIAS, Ordering::Release)
        - RWSEM_ACTIVE_READ_BIAS;
    debug_assert!(
        tmp & RWSEM_ACTIVE_MASK != RWSEM_ACTIVE_MASK,
        "up_read of an unlocked rwsem"
    );
    if tmp < -1 && tmp & RWSEM_ACTIVE_MASK == 0 {
        rwsem_wake(sem);
    }
}

/// `down_write*()` (v4.7): the fast path, then the slow path in `state`. Err(()) is -EINTR.
#[inline(always)]
pub(super) fn down_write(sem: &RawRwSem, state: u32) -> Result<(), ()> {
    if write_fast(sem) {
        return Ok(());
    }
    down_write_failed(sem, state)
}

/// `__down_write()`: add `ACTIVE_WRITE_BIAS`; success iff the count was 0 (AR4).
#[inline(always)]
fn write_fast(sem: &RawRwSem) -> bool {
    let tmp = sem
        .count
        .fetch_add(RWSEM_ACTIVE_WRITE_BIAS, Ordering::Acquire)
        + RWSEM_ACTIVE_WRITE_BIAS;
    if tmp == RWSEM_ACTIVE_WRITE_BIAS {
        sem.set_owner();
        count_event(LockEvent::RwsemWlockFast, 1);
        true
    } else {
        false
    }
}

/// `down_write_trylock()`: succeeds iff the count is exactly 0 (AR7).
#[inline]
pub(super) fn down_write_trylock(sem: &RawRwSem) -> bool {
    let ok = sem
        .count
        .compare_exchange(
            RWSEM_UNLOCKED_VALUE,
            RWSEM_ACTIVE_WRITE_BIAS,
            Ordering::Acquire,
            Ordering::Relaxed,
        )
        .is_ok();
    if ok {
        sem.set_owner();
        count_event(LockEvent::RwsemWtrylock, 1);
    } else {
        count_event(LockEvent::RwsemWtrylockFail, 1);
    }
    ok
}

/// `up_write()`: if anyone is queued, WAKE_ANY (WK2).
#[inline]
pub(super) fn up_write(sem: &RawRwSem) {
    sem.clear_owner();
    let tmp = sem
        .count
        .fetch_sub(RWSEM_ACTIVE_WRITE_BIAS, Ordering::Release)
        - RWSEM_ACTIVE_WRITE_BIAS;
    if tmp < 0 {
        rwsem_wake(sem);
    }
}

/// `downgrade_write()` (v4.7: `rwsem_clear_owner()` + `__downgrade_write()`): remove the
/// writer's `WAITING_BIAS` term, keeping its active bias as one read hold; if waiters remain,
/// grant the readers at the head (WK5).
pub(super) fn downgrade_write(sem: &RawRwSem) {
    sem.clear_owner();
    let tmp = sem.count.fetch_add(-RWSEM_WAITING_BIAS, Ordering::AcqRel) - RWSEM_WAITING_BIAS;
    if tmp < 0 {
        rwsem_downgrade_wake(sem);
    }
}

// ---- slow paths (kernel/locking/rwsem-xadd.c) ---------------------------------------------

/// `__rwsem_mark_wake()` (v4.7), under `wait_lock`; the queue must be non-empty.
/// A head writer is only woken (WAKE_ANY); head readers are granted: their bias is added to
/// the count before any of them runs, they are unlinked and marked granted.
fn mark_wake(sem: &RawRwSem, wl: &mut WaitList, wake_type: WakeType, wake_q: &mut WakeQ) {
    let head = wl.q.front().expect("mark_wake on an empty wait list");
    if head.kind == WaiterType::Write {
        if wake_type == WakeType::Any {
            // Wake the writer at the front but do not grant it the lock: other writers may
            // steal it (AR6).
            wake_q.push(head.task.clone());
            count_event(LockEvent::RwsemWakeWriter, 1);
        }
        return;
    }

    // Reserve the first reader grant before counting readers, to bail out early if a writer
    // stole the lock.
    let mut adjustment = 0;
    if wake_type != WakeType::ReadOwned {
        adjustment = RWSEM_ACTIVE_READ_BIAS;
        loop {
            let oldcount = sem.count.fetch_add(adjustment, Ordering::AcqRel);
            if oldcount < RWSEM_WAITING_BIAS {
                // A writer stole the lock. Undo our reader grant.
                let now = sem.count.fetch_sub(adjustment, Ordering::AcqRel) - adjustment;
                if now & RWSEM_ACTIVE_MASK != 0 {
                    return;
                }
                // Deviation: nothing changed the count between our grant and its undo, so
                // retrying cannot succeed. This state (two waiting biases, nobody active) is
                // unreachable in Model A; with RfcV1's stale bias v4.7 would spin here until
                // another CPU touched the count (a hard lockup on one CPU). The emulation
                // abandons the grant instead, as docs/rwsem-rules.md §5.3 describes, so the sim
                // reports the stranded reader as a deadlock.
                if now == oldcount {
                    return;
                }
                // The last active locker left: retry.
                continue;
            }
            break;
        }
    }

    // Grant an unbounded number of read locks to the readers at the front of the queue.
    let woken =
        wl.q.iter()
            .take_while(|w| w.kind == WaiterType::Read)
            .count() as i64;
    let mut adj = woken * RWSEM_ACTIVE_READ_BIAS - adjustment;
    if woken as usize == wl.q.len() {
        // Hit the end of the list: nobody is left waiting.
        adj -= RWSEM_WAITING_BIAS;
    }
    if adj != 0 {
        sem.count.fetch_add(adj, Ordering::AcqRel);
    }
    wl.prune_granted();
    for _ in 0..woken {
        let w = wl.q.pop_front().expect("counted reader");
        wl.grant(w, wake_q);
    }
    count_event(LockEvent::RwsemWakeReader, woken as u64);
}

/// `rwsem_wake()` (v4.7). With spinning on, a release that finds a spinner present and
/// `wait_lock` busy leaves the wake-up to others: the spinner will try the lock before it
/// sleeps (AR9; removed in v5.3).
///
/// Ordering: the releaser's count update and its look at the OSQ are separated by a full
/// fence, and so are a spinner's OSQ exit and its later look at the count (in
/// `Osq::unlock`): v4.7 on x86 has both from its `LOCK`-prefixed instructions (the releasing
/// `XADD`, `osq_unlock()`'s `CMPXCHG`). Without them the two form a store-buffering pair: a
/// spinner that gave up and queued behind another waiter reads the count from before the
/// release while the releaser still sees it in the OSQ, finds `wait_lock` held by it, and
/// skips the only wake-up it would get (the loom model
/// `a_spin_wake_skipped_for_a_spinner_is_not_lost` finds exactly this). The kernel fixed one
/// form of it for weakly ordered CPUs in v4.14, "locking/rwsem-xadd: Fix missed wakeup due to
/// reordering of load" (Prateek Sood; stable backport 3642629995f5), with an `smp_rmb()` here.
#[cold]
fn rwsem_wake(sem: &RawRwSem) {
    let mut wake_q = WakeQ::new();
    {
        let spinner = sem.spin == RwSemSpin::On && {
            fence(Ordering::SeqCst);
            sem.osq.is_locked()
        };
        let mut wl = if spinner {
            match sem.wait_lock.try_lock() {
                Some(wl) => wl,
                None => return,
            }
        } else {
            sem.wait_lock.lock()
        };
        if !wl.q.is_empty() {
            mark_wake(sem, &mut wl, WakeType::Any, &mut wake_q);
        }
    }
    wake_up_q(wake_q);
}

/// `rwsem_downgrade_wake()`.
#[cold]
fn rwsem_downgrade_wake(sem: &RawRwSem) {
    let mut wake_q = WakeQ::new();
    {
        let mut wl = sem.wait_lock.lock();
        if !wl.q.is_empty() {
            mark_wake(sem, &mut wl, WakeType::ReadOwned, &mut wake_q);
        }
    }
    wake_up_q(wake_q);
}

/// `rwsem_down_read_failed()` (v4.7) with the killable loop of
/// `__rwsem_down_read_failed_common()` (v4.15). Err(()) is -EINTR.
#[cold]
fn down_read_failed(sem: &RawRwSem, state: u32) -> Result<(), ()> {
    let cur = sched::current();
    let mut adjustment = -RWSEM_ACTIVE_READ_BIAS;
    let mut wake_q = WakeQ::new();
    cur.rwsem_granted.store(false, Ordering::Relaxed);
    {
        let mut wl = sem.wait_lock.lock();
        if wl.q.is_empty() {
            adjustment += RWSEM_WAITING_BIAS;
        }
        wl.add(cur.clone(), WaiterType::Read, state, 0);
        // We are now waiting on the lock, but no longer actively locking.
        let count = sem.count.fetch_add(adjustment, Ordering::AcqRel) + adjustment;
        // If there are no active locks, wake the front queued process(es). If there are no
        // writers and we are first in the queue, wake our own waiter to join the existing
        // active readers.
        if count == RWSEM_WAITING_BIAS
            || (count > RWSEM_WAITING_BIAS && adjustment != -RWSEM_ACTIVE_READ_BIAS)
        {
            mark_wake(sem, &mut wl, WakeType::Any, &mut wake_q);
        }
    }
    wake_up_q(wake_q);

    let func = match state {
        TASK_UNINTERRUPTIBLE => "rwsem_down_read_failed",
        TASK_KILLABLE => "rwsem_down_read_failed_killable",
        _ => "rwsem_down_read_failed_interruptible",
    };
    cur.set_wchan_on(func, &sem.name, sem as *const _ as usize);
    let mut slept_since = None;
    let result = loop {
        sched::set_current_state(state);
        if cur.rwsem_granted.load(Ordering::Acquire) {
            reader_granted_exit(&cur);
            break Ok(());
        }
        if cur.signal_pending_state(state) {
            let mut wl = sem.wait_lock.lock();
            // A waker may have granted us concurrently.
            if cur.rwsem_granted.load(Ordering::Acquire) {
                reader_granted_exit(&cur);
                break Ok(());
            }
            read_out_nolock(sem, &mut wl, &cur);
            break Err(());
        }
        if slept_since.is_none() {
            slept_since = Some(sched::ktime_get_ns());
            count_event(LockEvent::RwsemSleepReader, 1);
        }
        sched::schedule();
    };
    sched::__set_current_state(TASK_RUNNING);
    cur.set_wchan(None);
    if let Some(t0) = slept_since {
        count_event(LockEvent::RwsemWaitNs, sched::ktime_get_ns() - t0);
    }
    count_event(
        if result.is_ok() {
            LockEvent::RwsemRlock
        } else {
            LockEvent::RwsemRlockFail
        },
        1,
    );
    result
}

/// The reader's `out_nolock` (v4.15, §5.2): unlink; if the queue became empty remove the
/// waiting bias. Model A readers never wake anyone here (a reader only waits behind a writer
/// that holds or is queued ahead, and that writer's release does the wake).
fn read_out_nolock(sem: &RawRwSem, wl: &mut WaitList, cur: &crate::task::Task) {
    wl.unlink(cur);
    if wl.q.is_empty() {
        sem.count.fetch_add(-RWSEM_WAITING_BIAS, Ordering::AcqRel);
    }
}

/// `rwsem_try_write_lock()` (v4.7), under `wait_lock`: take the lock iff nobody is active,
/// whatever our position in the queue (AR5/AR6).
fn try_write_lock(sem: &RawRwSem, count: i64, wl: &WaitList) -> bool {
    if count != RWSEM_WAITING_BIAS {
        return false;
    }
    let new = if wl.q.len() == 1 {
        RWSEM_ACTIVE_WRITE_BIAS
    } else {
        RWSEM_ACTIVE_WRITE_BIAS + RWSEM_WAITING_BIAS
    };
    if sem
        .count
        .compare_exchange(RWSEM_WAITING_BIAS, new, Ordering::AcqRel, Ordering::Relaxed)
        .is_ok()
    {
        sem.set_owner();
        return true;
    }
    false
}

/// `__rwsem_down_write_failed_common()` (v4.7 + the May-2016 fix). Err(()) is -EINTR.
#[cold]
fn down_write_failed(sem: &RawRwSem, state: u32) -> Result<(), ()> {
    // Undo the write bias of the fast path: stop active locking.
    sem.count
        .fetch_sub(RWSEM_ACTIVE_WRITE_BIAS, Ordering::AcqRel);

    // Do optimistic spinning and steal the lock if possible (AR9).
    if sem.spin == RwSemSpin::On && optimistic_spin(sem) {
        return Ok(());
    }

    let cur = sched::current();
    let func = if state == TASK_KILLABLE {
        "rwsem_down_write_failed_killable"
    } else {
        "rwsem_down_write_failed"
    };
    let mut wl = sem.wait_lock.lock();
    let waiting = !wl.q.is_empty();
    wl.add(cur.clone(), WaiterType::Write, state, 0);
    let mut count;
    if waiting {
        count = sem.count.load(Ordering::Acquire);
        // Threads were queued before us and no writer is active: the lock is read-owned, so
        // wake the readers queued ahead of us (424acaaeb3a3). Like the kernel, wake them with
        // wait_lock held.
        if count > RWSEM_WAITING_BIAS {
            let mut wake_q = WakeQ::new();
            mark_wake(sem, &mut wl, WakeType::Readers, &mut wake_q);
            wake_up_q(wake_q);
        }
    } else {
        count = sem.count.fetch_add(RWSEM_WAITING_BIAS, Ordering::AcqRel) + RWSEM_WAITING_BIAS;
    }

    cur.set_wchan_on(func, &sem.name, sem as *const _ as usize);
    let mut slept_since = None;
    // Wait until we successfully acquire the lock.
    sched::set_current_state(state);
    let result = loop {
        if try_write_lock(sem, count, &wl) {
            wl.unlink(&cur);
            drop(wl);
            break Ok(());
        }
        drop(wl);
        // Block until there are no active lockers.
        let mut killed = false;
        loop {
            if cur.signal_pending_state(state) {
                killed = true;
                break;
            }
            if slept_since.is_none() {
                slept_since = Some(sched::ktime_get_ns());
                count_event(LockEvent::RwsemSleepWriter, 1);
            }
            sched::schedule();
            sched::set_current_state(state);
            count = sem.count.load(Ordering::Acquire);
            if count & RWSEM_ACTIVE_MASK == 0 {
                break;
            }
        }
        if killed {
            break Err(());
        }
        wl = sem.wait_lock.lock();
    };
    sched::__set_current_state(TASK_RUNNING);
    cur.set_wchan(None);
    match result {
        Ok(()) => count_event(LockEvent::RwsemWlock, 1),
        Err(()) => {
            write_out_nolock(sem, &cur);
            count_event(LockEvent::RwsemWlockFail, 1);
        }
    }
    if let Some(t0) = slept_since {
        count_event(LockEvent::RwsemWaitNs, sched::ktime_get_ns() - t0);
    }
    result
}

/// The writer's `out_nolock` (§5.2/§5.3). Model A (fixed): unlink; if the queue became empty
/// remove the waiting bias, otherwise WAKE_ANY so that waiters blocked only by us proceed.
/// RfcV1: unlink only.
#[cold]
fn write_out_nolock(sem: &RawRwSem, cur: &crate::task::Task) {
    let mut wake_q = WakeQ::new();
    {
        let mut wl = sem.wait_lock.lock();
        wl.unlink(cur);
        match sem.model {
            RwSemModel::RfcV1 => {}
            _ => {
                if wl.q.is_empty() {
                    sem.count.fetch_add(-RWSEM_WAITING_BIAS, Ordering::AcqRel);
                } else {
                    mark_wake(sem, &mut wl, WakeType::Any, &mut wake_q);
                }
            }
        }
    }
    wake_up_q(wake_q);
}

// ---- optimistic spinning (v4.7, CONFIG_RWSEM_SPIN_ON_OWNER=y) -------------------------------

/// The writer's tid recorded in `owner` (0: none).
fn owner_tid(sem: &RawRwSem) -> crate::task::Tid {
    (sem.owner.load(Ordering::Acquire) >> OWNER_SHIFT) as crate::task::Tid
}

/// `rwsem_try_write_lock_unqueued()` (v4.7): take the lock, ahead of the whole queue, iff
/// nobody is active (count 0 or `WAITING_BIAS`).
fn try_write_lock_unqueued(sem: &RawRwSem) -> bool {
    let mut count = sem.count.load(Ordering::Relaxed);
    loop {
        if !(count == 0 || count == RWSEM_WAITING_BIAS) {
            return false;
        }
        match sem.count.compare_exchange(
            count,
            count + RWSEM_ACTIVE_WRITE_BIAS,
            Ordering::AcqRel,
            Ordering::Relaxed,
        ) {
            Ok(_) => {
                sem.set_owner();
                return true;
            }
            Err(old) => count = old,
        }
    }
}

/// `rwsem_can_spin_on_owner()` (v4.7): a writer owner that runs; or no owner and nobody
/// active (readers may hold the lock when the owner is not set: do not spin then).
fn can_spin_on_owner(sem: &RawRwSem, budget: &SpinBudget, cache: &mut OwnerCache) -> bool {
    if budget.need_resched() {
        return false;
    }
    match owner_tid(sem) {
        0 => sem.count.load(Ordering::Relaxed) & RWSEM_ACTIVE_MASK == 0,
        owner => cache.on_cpu(owner),
    }
}

/// `rwsem_spin_on_owner()` (v4.7): spin while `owner` holds the lock and runs. True if the
/// spinner should go on (a new writer owner, or the lock looks free).
fn spin_on_owner(
    sem: &RawRwSem,
    owner: crate::task::Tid,
    budget: &mut SpinBudget,
    cache: &mut OwnerCache,
) -> bool {
    while owner_tid(sem) == owner {
        // Abort spinning when need_resched or the owner is not running.
        if !cache.on_cpu(owner) || budget.need_resched() {
            return false;
        }
        budget.relax();
    }
    if owner_tid(sem) != 0 {
        return true; // New owner, continue spinning.
    }
    // When the owner is not set, the lock could be free or held by readers.
    let count = sem.count.load(Ordering::Relaxed);
    count == 0 || count == RWSEM_WAITING_BIAS
}

/// `rwsem_optimistic_spin()` (v4.7): with the OSQ, spin on the owner and try to take the lock
/// whenever it changes; give up when the owner sleeps or on `need_resched()`. Signals are not
/// checked (AR9: the spin is bounded and the caller checks them once it queues).
fn optimistic_spin(sem: &RawRwSem) -> bool {
    let mut budget = SpinBudget::start();
    let mut cache = OwnerCache::default();
    let me = current_tid();
    let mut taken = false;
    if !can_spin_on_owner(sem, &budget, &mut cache) || !sem.osq.lock(me, &mut budget) {
        count_event(LockEvent::RwsemOptFail, 1);
        return false;
    }
    loop {
        let owner = owner_tid(sem);
        if owner != 0 && !spin_on_owner(sem, owner, &mut budget, &mut cache) {
            break;
        }
        // wait_lock is not needed: the unqueued try takes the lock ahead of the queue.
        if try_write_lock_unqueued(sem) {
            taken = true;
            break;
        }
        // No owner: we may have preempted the owner between its acquisition and its setting
        // of the owner field; only need_resched() ends this spin (v4.7: no RT tasks here).
        if owner == 0 && budget.need_resched() {
            break;
        }
        budget.relax();
    }
    sem.osq.unlock(me);
    count_event(
        if taken {
            LockEvent::RwsemOptLock
        } else {
            LockEvent::RwsemOptFail
        },
        1,
    );
    taken
}
