//! Model B: Linux **v6.6** `kernel/locking/rwsem.c` (the v5.3 rewrite by Waiman Long and Peter
//! Zijlstra, with the fixes up to v6.6): the flag-bit count word, lock handoff, reader optimistic
//! lock stealing, the phase-fair reader wake-up, `rwsem_del_wake_waiter()` on bail-out, and with
//! [`RwSemSpin::On`] writer optimistic spinning (owner-writer spinning, time-bounded spinning on
//! reader-owned locks, the first waiter's handoff spin).
//!
//! # Count word (64-bit)
//!
//! | bits | name | meaning | invariant | set / cleared by | under |
//! |---|---|---|---|---|---|
//! | 0 | `RWSEM_WRITER_LOCKED` | a writer holds the lock | set ⇒ reader count 0 (at rest) | write fast path, `rwsem_try_write_lock`, unqueued spinner try / `up_write`, `downgrade_write` | cmpxchg / `wait_lock` |
//! | 1 | `RWSEM_FLAG_WAITERS` | the wait list is non-empty: every fast path fails | set ⇔ wait list non-empty (at rest) | the waiter that makes the list non-empty / whoever empties it (`rwsem_del_waiter`, `rwsem_mark_wake`, `rwsem_try_write_lock`) | `wait_lock` |
//! | 2 | `RWSEM_FLAG_HANDOFF` | the lock is reserved for the first waiter: no stealing, no fast path, no trylock | set ⇒ `FLAG_WAITERS` set | set by a timed-out writer's `rwsem_try_write_lock` or by `rwsem_mark_wake` for a timed-out head reader; cleared when the first writer takes the lock, when readers are granted, when the queue empties | `wait_lock` |
//! | 3–7 | | reserved | 0 | | |
//! | 8–62 | reader count | `RWSEM_READER_BIAS` per reader, including readers that are only attempting (a failed reader removes its bias in its slow path) | | `down_read*`, `up_read`, wakers granting | lock-free / `wait_lock` |
//! | 63 | `RWSEM_FLAG_READFAIL` | reader-count overflow guard | never set in practice | | |
//!
//! `owner`: the writer's tid while write-held (`rwsem_set_owner`, cleared on `up_write`); the
//! last reader's tid | `RWSEM_READER_OWNED` after a read acquisition, left in place on
//! `up_read`; `RWSEM_NONSPINNABLE` set by a writer that gave up spinning on readers (v5.11+).
//! Every waiter records `timeout` = `jiffies` + `RWSEM_WAIT_TIMEOUT` at enqueue
//! (`DIV_ROUND_UP(HZ, 250)`, in the executor's jiffies: 4 ms at HZ=1000) and `handoff_set`.
//!
//! # Rules (docs/rwsem-rules.md, \[B\]) and where they live
//! - AR1: [`down_read_common`]'s fast path (no bit of `READ_FAILED_MASK`).
//! - AR2: [`down_read_slowpath`]: reader optimistic lock stealing (1a728dff855a, v5.11) unless
//!   the lock is reader-owned by others (2f06f702925b); a stealing first reader grants the
//!   queued readers (WAKE_READ_OWNED); an empty queue and no writer keeps the lock; otherwise
//!   enqueue and [`cond_wake_waiter`] (54c1ee4d614d, v5.19).
//! - AR3: follows from AR1/AR2 (a queued waiter sets `FLAG_WAITERS`, which fails the fast path;
//!   stealing is refused while readers own the lock or HANDOFF is set).
//! - AR4: [`down_write_common`]'s fast path (cmpxchg 0 → `WRITER_LOCKED`).
//! - AR5: [`down_write_slowpath`]; [`try_write_lock`] succeeds when nobody holds the lock,
//!   except that a HANDOFF credited to the first waiter reserves the lock for it (6eebd5fb2083,
//!   v5.19, in the v6.3 form "Prevent non-first waiter from spinning in down_write()
//!   slowpath" that credits `handoff_set` to the first waiter).
//! - AR6: any writer in the slow path may take a free lock while HANDOFF is clear.
//! - AR7: [`down_read_trylock`], [`down_write_trylock`].
//! - AR8 (handoff, 4f23dbc1e657, v5.3; d257cc8cb8d5, v5.16): set in [`try_write_lock`] and in
//!   [`mark_wake`]; cleared in [`try_write_lock`], [`mark_wake`], [`del_waiter`]; inherited by the
//!   next first waiter when its holder leaves (v5.16+; v5.3–v5.15 cleared it on a killed writer's
//!   exit).
//! - AR9: [`optimistic_spin`] (OSQ, owner-writer spinning, reader-owned spinning bounded by
//!   [`rspin_threshold`] then `RWSEM_NONSPINNABLE`), [`can_spin_on_owner`], the first waiter's
//!   handoff spin in [`down_write_slowpath`]; no reader spinning (removed in v5.11,
//!   617f3ef95177).
//! - WK1 [`up_read`]; WK2 [`up_write`]; WK3/WK4 [`mark_wake`]: a head writer is woken, never
//!   granted; with a reader at the head every reader in the queue, up to `MAX_READERS_WAKEUP`,
//!   is granted, skipping writers (d3681e269fff, v5.3; the v6.6 state — mid-v5.3 trees granted
//!   the leading run only, as Model A does); WK5 [`downgrade_write`] (WAKE_READ_OWNED: nothing if
//!   a writer heads the queue); WK6 FIFO except stealing and the reader phase.
//! - §5.1: the writer checks signals after each failed try ([`down_write_slowpath`]); the reader
//!   checks "granted?" first, then the signal, then the grant again under `wait_lock`
//!   ([`down_read_slowpath`]). Spinning never checks signals.
//! - §5.2/§5.5: [`del_wake_waiter`] (1ee326196c66, v5.19): unlink; if the queue emptied clear
//!   WAITERS and HANDOFF; if the leaving waiter was first and others remain, WAKE_ANY.
//!
//! # Deviations
//! - No RT tasks (`rt_task()` false): a writer sets HANDOFF only after its timeout, RT spinners
//!   have no special exits.
//! - Spinning: see `spin.rs`. The reader-owned spin checks its time threshold on every
//!   iteration instead of every 16th (the kernel's reason is the cost of `sched_clock()`).
//! - `down_read_non_owner`, `_nested` and lockdep variants are not modelled.
//! - With `CONFIG_DEBUG_RWSEMS` off, as in production kernels, `up_read` leaves `owner` alone.

use super::spin::{OwnerCache, SpinBudget};
use super::{
    current_tid, reader_granted_exit, wake_up_q, RawRwSem, RwSemSpin, WaitList, WaiterType, WakeQ,
    WakeType, OWNER_SHIFT, RWSEM_NONSPINNABLE, RWSEM_OWNER_FLAGS_MASK, RWSEM_READER_OWNED,
};
use crate::locking::lock_events::{count as count_event, LockEvent};
use crate::sched;
use crate::sync::Ordering;
use crate::task::{state::*, Task, Tid};

/// `RWSEM_WRITER_LOCKED`.
pub const RWSEM_WRITER_LOCKED: i64 = 1 << 0;
/// `RWSEM_FLAG_WAITERS`.
pub const RWSEM_FLAG_WAITERS: i64 = 1 << 1;
/// `RWSEM_FLAG_HANDOFF`.
pub const RWSEM_FLAG_HANDOFF: i64 = 1 << 2;
/// `RWSEM_FLAG_READFAIL` (bit 63).
pub const RWSEM_FLAG_READFAIL: i64 = i64::MIN;
/// `RWSEM_READER_SHIFT`.
pub const RWSEM_READER_SHIFT: u32 = 8;
/// `RWSEM_READER_BIAS`.
pub const RWSEM_READER_BIAS: i64 = 1 << RWSEM_READER_SHIFT;
/// `RWSEM_READER_MASK`.
pub const RWSEM_READER_MASK: i64 = !(RWSEM_READER_BIAS - 1);
/// `RWSEM_WRITER_MASK`.
pub const RWSEM_WRITER_MASK: i64 = RWSEM_WRITER_LOCKED;
/// `RWSEM_LOCK_MASK`.
pub const RWSEM_LOCK_MASK: i64 = RWSEM_WRITER_MASK | RWSEM_READER_MASK;
/// `RWSEM_READ_FAILED_MASK`.
pub const RWSEM_READ_FAILED_MASK: i64 =
    RWSEM_WRITER_MASK | RWSEM_FLAG_WAITERS | RWSEM_FLAG_HANDOFF | RWSEM_FLAG_READFAIL;
/// `MAX_READERS_WAKEUP`: readers granted by one wake-up at most.
pub const MAX_READERS_WAKEUP: usize = 0x100;

/// `RWSEM_WAIT_TIMEOUT` = `DIV_ROUND_UP(HZ, 250)` jiffies (4 ms at HZ=1000, one jiffy from
/// HZ=250 down).
pub fn rwsem_wait_timeout(hz: u32) -> u64 {
    u64::from(hz).div_ceil(250)
}

/// Readers counted in `count` (bits 8–62).
fn reader_count(count: i64) -> u64 {
    ((count as u64) >> RWSEM_READER_SHIFT) & ((1 << 55) - 1)
}

/// `time_after(a, b)`: `a` is strictly later than `b`.
fn time_after(a: u64, b: u64) -> bool {
    (b.wrapping_sub(a) as i64) < 0
}

/// The count word as (write-locked, readers, waiters flag, handoff) for snapshots.
pub(super) fn decode(count: i64) -> (bool, u64, u32, bool) {
    (
        count & RWSEM_WRITER_LOCKED != 0,
        reader_count(count),
        u32::from(count & RWSEM_FLAG_WAITERS != 0),
        count & RWSEM_FLAG_HANDOFF != 0,
    )
}

// ---- the owner field ------------------------------------------------------------------------

/// `__rwsem_set_reader_owned()`: `tid` | `READER_OWNED`, keeping `NONSPINNABLE`.
///
/// Host cost only: the store is skipped when the owner word already has that value (the same
/// task taking the lock for read again), which leaves the same state as the kernel's
/// unconditional store and spares a write to the count's cache line.
#[inline(always)]
fn set_reader_owned_to(sem: &RawRwSem, tid: Tid) {
    let old = sem.owner.load(Ordering::Relaxed);
    let new = ((tid as i64) << OWNER_SHIFT) | RWSEM_READER_OWNED | (old & RWSEM_NONSPINNABLE);
    if old != new {
        sem.owner.store(new, Ordering::Release);
    }
}

/// `rwsem_set_reader_owned()`.
fn set_reader_owned(sem: &RawRwSem) {
    set_reader_owned_to(sem, current_tid());
}

/// `rwsem_owner_flags()`: the owner's tid and the flag bits.
fn owner_flags(sem: &RawRwSem) -> (Tid, i64) {
    let o = sem.owner.load(Ordering::Acquire);
    ((o >> OWNER_SHIFT) as Tid, o & RWSEM_OWNER_FLAGS_MASK)
}

/// `rwsem_set_nonspinnable()`: only while the lock is reader-owned.
fn set_nonspinnable(sem: &RawRwSem) {
    let mut owner = sem.owner.load(Ordering::Relaxed);
    loop {
        if owner & RWSEM_READER_OWNED == 0 || owner & RWSEM_NONSPINNABLE != 0 {
            return;
        }
        match sem.owner.compare_exchange(
            owner,
            owner | RWSEM_NONSPINNABLE,
            Ordering::Relaxed,
            Ordering::Relaxed,
        ) {
            Ok(_) => return,
            Err(now) => owner = now,
        }
    }
}

/// `clear_nonspinnable()`: when the reader count reaches 0.
fn clear_nonspinnable(sem: &RawRwSem) {
    if sem.spin == RwSemSpin::On && sem.owner.load(Ordering::Relaxed) & RWSEM_NONSPINNABLE != 0 {
        sem.owner.fetch_and(!RWSEM_NONSPINNABLE, Ordering::Relaxed);
    }
}

// ---- fast paths -------------------------------------------------------------------------------

/// `__down_read_common()`: `rwsem_read_trylock()` (add a reader bias; success iff no bit of
/// `READ_FAILED_MASK` was set, AR1), else the slow path in `state`. Err(()) is -EINTR.
#[inline(always)]
pub(super) fn down_read_common(sem: &RawRwSem, state: u32) -> Result<(), ()> {
    let c = sem.count.fetch_add(RWSEM_READER_BIAS, Ordering::Acquire) + RWSEM_READER_BIAS;
    if c & RWSEM_READ_FAILED_MASK == 0 {
        // rwsem_set_reader_owned() and the event, with one look at `current`.
        sched::with_current_opt(|t| {
            set_reader_owned_to(sem, t.map_or(0, |t| t.tid()));
            if let Some(t) = t {
                t.lock_events().add_local(LockEvent::RwsemRlockFast, 1);
            }
        });
        return Ok(());
    }
    down_read_slowpath(sem, c, state)
}

/// `__down_read_trylock()` (v6.6): cmpxchg loop while no bit of `READ_FAILED_MASK` is set
/// (AR7: fails while a writer holds, anyone is queued, or HANDOFF is set).
#[inline]
pub(super) fn down_read_trylock(sem: &RawRwSem) -> bool {
    let mut tmp = sem.count.load(Ordering::Relaxed);
    while tmp & RWSEM_READ_FAILED_MASK == 0 {
        match sem.count.compare_exchange_weak(
            tmp,
            tmp + RWSEM_READER_BIAS,
            Ordering::Acquire,
            Ordering::Relaxed,
        ) {
            Ok(_) => {
                set_reader_owned(sem);
                count_event(LockEvent::RwsemRtrylock, 1);
                return true;
            }
            Err(now) => tmp = now,
        }
    }
    count_event(LockEvent::RwsemRtrylockFail, 1);
    false
}

/// `__up_read()`: the reader that leaves only the waiters flag behind wakes the queue (WK1).
#[inline]
pub(super) fn up_read(sem: &RawRwSem) {
    let tmp = sem.count.fetch_sub(RWSEM_READER_BIAS, Ordering::Release) - RWSEM_READER_BIAS;
    debug_assert!(tmp >= 0, "up_read of an rwsem not read-held");
    if tmp & (RWSEM_LOCK_MASK | RWSEM_FLAG_WAITERS) == RWSEM_FLAG_WAITERS {
        clear_nonspinnable(sem);
        rwsem_wake(sem);
    }
}

/// `__down_write_common()`: `rwsem_write_trylock()` (AR4), else the slow path. Err(()) is
/// -EINTR.
#[inline(always)]
pub(super) fn down_write_common(sem: &RawRwSem, state: u32) -> Result<(), ()> {
    if write_trylock(sem) {
        count_event(LockEvent::RwsemWlockFast, 1);
        return Ok(());
    }
    down_write_slowpath(sem, state)
}

/// `rwsem_write_trylock()`: cmpxchg 0 → `WRITER_LOCKED`.
#[inline(always)]
fn write_trylock(sem: &RawRwSem) -> bool {
    if sem
        .count
        .compare_exchange(0, RWSEM_WRITER_LOCKED, Ordering::Acquire, Ordering::Relaxed)
        .is_ok()
    {
        sem.set_owner();
        true
    } else {
        false
    }
}

/// `down_write_trylock()` (AR7): only on a count of 0.
#[inline]
pub(super) fn down_write_trylock(sem: &RawRwSem) -> bool {
    let ok = write_trylock(sem);
    count_event(
        if ok {
            LockEvent::RwsemWtrylock
        } else {
            LockEvent::RwsemWtrylockFail
        },
        1,
    );
    ok
}

/// `__up_write()`: clear the owner, drop `WRITER_LOCKED`; if waiters are queued, WAKE_ANY (WK2).
#[inline]
pub(super) fn up_write(sem: &RawRwSem) {
    sem.clear_owner();
    let tmp = sem.count.fetch_add(-RWSEM_WRITER_LOCKED, Ordering::Release);
    debug_assert!(
        tmp & RWSEM_WRITER_LOCKED != 0,
        "up_write of an rwsem not write-held"
    );
    if tmp & RWSEM_FLAG_WAITERS != 0 {
        rwsem_wake(sem);
    }
}

/// `__downgrade_write()`: `WRITER_LOCKED` becomes one reader bias in one atomic step, the
/// owner becomes reader-owned, and queued readers are granted with WAKE_READ_OWNED (WK5):
/// nothing if a writer heads the queue; otherwise every queued reader (phase-fair), which also
/// clears a HANDOFF a timed-out head reader had requested.
pub(super) fn downgrade_write(sem: &RawRwSem) {
    let tmp = sem
        .count
        .fetch_add(-RWSEM_WRITER_LOCKED + RWSEM_READER_BIAS, Ordering::Release);
    debug_assert!(
        tmp & RWSEM_WRITER_LOCKED != 0,
        "downgrade of an rwsem not write-held"
    );
    set_reader_owned(sem);
    if tmp & RWSEM_FLAG_WAITERS != 0 {
        rwsem_downgrade_wake(sem);
    }
}

// ---- wake-ups and the wait list ---------------------------------------------------------------

/// `rwsem_mark_wake()` (v6.6), under `wait_lock`; the queue must be non-empty.
///
/// A writer at the head is woken for WAKE_ANY, never granted (other writers may still take
/// the lock first, AR6). With a reader at the head: unless the waker already holds a read lock,
/// reserve one read grant first; if a writer holds the lock, undo it and, if the head reader
/// waited past its timeout, set HANDOFF for it (AR8). Otherwise grant every reader of the queue
/// up to `MAX_READERS_WAKEUP`, writers keeping their order (d3681e269fff); clear WAITERS if the
/// queue emptied and HANDOFF if readers were granted (implies `rwsem_del_waiter()`).
fn mark_wake(sem: &RawRwSem, wl: &mut WaitList, wake_type: WakeType, wake_q: &mut WakeQ) {
    let head = wl.q.front().expect("mark_wake on an empty wait list");
    if head.kind == WaiterType::Write {
        if wake_type == WakeType::Any {
            wake_q.push(head.task.clone());
            count_event(LockEvent::RwsemWakeWriter, 1);
        }
        return;
    }

    // No reader wake-up if there are too many of them already.
    if sem.count.load(Ordering::Relaxed) < 0 {
        return;
    }

    let mut adjustment = 0;
    if wake_type != WakeType::ReadOwned {
        adjustment = RWSEM_READER_BIAS;
        let oldcount = sem.count.fetch_add(adjustment, Ordering::AcqRel);
        if oldcount & RWSEM_WRITER_MASK != 0 {
            // A writer took the lock first. When the head reader has waited "too" long (for
            // writers to give up the lock), request a HANDOFF to force the issue.
            let head = wl.q.front_mut().expect("head");
            if time_after(sched::jiffies_of_task(&head.task), head.timeout) {
                if oldcount & RWSEM_FLAG_HANDOFF == 0 {
                    adjustment -= RWSEM_FLAG_HANDOFF;
                    count_event(LockEvent::RwsemRlockHandoff, 1);
                    wl.handoff_setter = head.task.tid();
                }
                head.handoff_set = true;
            }
            sem.count.fetch_add(-adjustment, Ordering::AcqRel);
            return;
        }
        // Reader-owned: an early hint to spinners that readers now hold the lock.
        set_reader_owned_to(sem, head.task.tid());
    }

    // Grant up to MAX_READERS_WAKEUP readers from anywhere in the queue (the reader phase of
    // a phase-fair lock); the writers keep their order. The counts go in before anyone wakes.
    let mut readers: smallvec::SmallVec<[super::Waiter; 4]> = smallvec::SmallVec::new();
    let mut i = 0;
    while i < wl.q.len() && readers.len() < MAX_READERS_WAKEUP {
        if wl.q[i].kind == WaiterType::Read {
            readers.push(wl.q.remove(i).expect("index in range"));
        } else {
            i += 1;
        }
    }
    let woken = readers.len() as i64;
    adjustment = woken * RWSEM_READER_BIAS - adjustment;
    count_event(LockEvent::RwsemWakeReader, woken as u64);

    let oldcount = sem.count.load(Ordering::Relaxed);
    let clears_handoff = oldcount & RWSEM_FLAG_HANDOFF != 0 && (wl.q.is_empty() || woken > 0);
    if wl.q.is_empty() {
        adjustment -= RWSEM_FLAG_WAITERS;
    }
    if clears_handoff {
        // Readers got the lock: writers no longer need forcing.
        adjustment -= RWSEM_FLAG_HANDOFF;
        wl.handoff_setter = 0;
    }
    if adjustment != 0 {
        sem.count.fetch_add(adjustment, Ordering::AcqRel);
    }
    wl.prune_granted();
    for w in readers {
        wl.grant(w, wake_q);
    }
}

/// `rwsem_del_waiter()`: unlink the current task's waiter; if the queue emptied, clear WAITERS
/// and HANDOFF. True if waiters remain.
fn del_waiter(sem: &RawRwSem, wl: &mut WaitList, cur: &Task) -> bool {
    let w = wl.unlink(cur);
    if !wl.q.is_empty() {
        if wl.handoff_setter == w.task.tid() {
            // The bit stays, inherited by the new first waiter (v5.16+).
            wl.handoff_setter = 0;
        }
        return true;
    }
    sem.count
        .fetch_and(!(RWSEM_FLAG_HANDOFF | RWSEM_FLAG_WAITERS), Ordering::AcqRel);
    wl.handoff_setter = 0;
    false
}

/// `rwsem_del_wake_waiter()` (1ee326196c66, v5.19): the bail-out of both slow paths, with
/// `wait_lock` held on entry and dropped on return. If the leaving waiter was first and others
/// remain, WAKE_ANY: they may now be able to take the lock or spin on it (§5.2, §5.5).
#[cold]
fn del_wake_waiter(sem: &RawRwSem, mut wl: crate::sync::SpinGuard<'_, WaitList>, cur: &Task) {
    let first =
        wl.q.front()
            .is_some_and(|w| std::ptr::eq(std::sync::Arc::as_ptr(&w.task), cur));
    let mut wake_q = WakeQ::new();
    if del_waiter(sem, &mut wl, cur) && first {
        mark_wake(sem, &mut wl, WakeType::Any, &mut wake_q);
    }
    drop(wl);
    wake_up_q(wake_q);
}

/// `rwsem_cond_wake_waiter()` (54c1ee4d614d, v5.19), under `wait_lock`: nothing while a writer
/// holds; WAKE_READERS while readers hold; WAKE_ANY (and clear NONSPINNABLE) on a free lock.
fn cond_wake_waiter(sem: &RawRwSem, count: i64, wl: &mut WaitList, wake_q: &mut WakeQ) {
    if count & RWSEM_WRITER_MASK != 0 {
        return;
    }
    let wake_type = if count & RWSEM_READER_MASK != 0 {
        WakeType::Readers
    } else {
        clear_nonspinnable(sem);
        WakeType::Any
    };
    mark_wake(sem, wl, wake_type, wake_q);
}

/// `rwsem_wake()`.
#[cold]
fn rwsem_wake(sem: &RawRwSem) {
    let mut wake_q = WakeQ::new();
    {
        let mut wl = sem.wait_lock.lock();
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

// ---- slow paths -------------------------------------------------------------------------------

/// `rwsem_down_read_slowpath()` (v6.6); `count` is the value the failed fast path produced
/// (this reader's bias included). Err(()) is -EINTR.
#[cold]
fn down_read_slowpath(sem: &RawRwSem, count: i64, state: u32) -> Result<(), ()> {
    if count < 0 {
        // rwsem_read_trylock()'s WARN_ON_ONCE: the reader count overflowed.
        set_nonspinnable(sem);
    }
    let rcnt = reader_count(count);
    let mut adjustment = -RWSEM_READER_BIAS;
    let mut wake_q = WakeQ::new();

    // To prevent a constant stream of readers from starving a sleeping waiter, do not attempt
    // optimistic lock stealing while the lock is owned by (other) readers (2f06f702925b).
    let reader_owned = sem.owner.load(Ordering::Relaxed) & RWSEM_READER_OWNED != 0;
    if !(reader_owned && rcnt > 1 && count & RWSEM_WRITER_LOCKED == 0)
        && count & (RWSEM_WRITER_LOCKED | RWSEM_FLAG_HANDOFF) == 0
    {
        // Reader optimistic lock stealing (1a728dff855a): keep the bias.
        set_reader_owned(sem);
        count_event(LockEvent::RwsemRlockSteal, 1);
        // The first reader wakes the readers queued (WAKE_READ_OWNED: not a head writer).
        if rcnt == 1 && count & RWSEM_FLAG_WAITERS != 0 {
            {
                let mut wl = sem.wait_lock.lock();
                if !wl.q.is_empty() {
                    mark_wake(sem, &mut wl, WakeType::ReadOwned, &mut wake_q);
                }
            }
            wake_up_q(wake_q);
        }
        return Ok(());
    }

    // queue:
    let cur = sched::current();
    cur.rwsem_granted.store(false, Ordering::Relaxed);
    let timeout = sched::jiffies() + rwsem_wait_timeout(sched::hz());
    {
        let mut wl = sem.wait_lock.lock();
        if wl.q.is_empty() {
            // The queue is empty and no writer holds the lock: this reader keeps the bias it
            // already added and returns.
            if sem.count.load(Ordering::Acquire) & RWSEM_WRITER_MASK == 0 {
                drop(wl);
                set_reader_owned(sem);
                count_event(LockEvent::RwsemRlockFast, 1);
                return Ok(());
            }
            adjustment += RWSEM_FLAG_WAITERS;
        }
        wl.add(cur.clone(), WaiterType::Read, state, timeout);
        // We are now waiting on the lock, no longer actively locking.
        let count = sem.count.fetch_add(adjustment, Ordering::AcqRel) + adjustment;
        cond_wake_waiter(sem, count, &mut wl, &mut wake_q);
    }
    wake_up_q(wake_q);

    cur.set_wchan_on(
        "rwsem_down_read_slowpath",
        &sem.name,
        sem as *const _ as usize,
    );
    let mut slept_since = None;
    let result = loop {
        sched::set_current_state(state);
        if cur.rwsem_granted.load(Ordering::Acquire) {
            reader_granted_exit(&cur);
            break Ok(());
        }
        if cur.signal_pending_state(state) {
            let wl = sem.wait_lock.lock();
            // Ordered by wait_lock against rwsem_mark_wake(): granted meanwhile?
            if cur.rwsem_granted.load(Ordering::Acquire) {
                reader_granted_exit(&cur);
                break Ok(());
            }
            del_wake_waiter(sem, wl, &cur);
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

/// `rwsem_try_write_lock()` (v6.6), under `wait_lock`, for the current task's queued waiter.
///
/// While HANDOFF is credited to the first waiter only the first may take the lock. A held lock
/// makes a timed-out waiter (first or not) set HANDOFF, credited to the first waiter. A free
/// lock is taken, HANDOFF cleared, WAITERS cleared if we were the only waiter, and our waiter
/// unlinked (implies `rwsem_del_waiter()`).
fn try_write_lock(sem: &RawRwSem, wl: &mut WaitList, cur: &Task) -> bool {
    let first = wl.q.front().expect("writer missing from its wait list");
    let first_handoff_set = first.handoff_set;
    let is_first = std::ptr::eq(std::sync::Arc::as_ptr(&first.task), cur);
    let me = wl.position(cur).expect("writer missing from its wait list");
    let timeout = wl.q[me].timeout;
    let singular = wl.q.len() == 1;

    let mut count = sem.count.load(Ordering::Relaxed);
    let new = loop {
        let has_handoff = count & RWSEM_FLAG_HANDOFF != 0;
        // Honour the handoff bit and yield only when the first waiter is the one it is
        // credited to; otherwise still try to take the lock.
        if has_handoff && first_handoff_set && !is_first {
            return false;
        }
        let mut new = count;
        if count & RWSEM_LOCK_MASK != 0 {
            // A waiter (first or not) sets the handoff bit once it waited too long.
            if has_handoff || !time_after(sched::jiffies(), timeout) {
                return false;
            }
            new |= RWSEM_FLAG_HANDOFF;
        } else {
            new |= RWSEM_WRITER_LOCKED;
            new &= !RWSEM_FLAG_HANDOFF;
            if singular {
                new &= !RWSEM_FLAG_WAITERS;
            }
        }
        match sem
            .count
            .compare_exchange(count, new, Ordering::Acquire, Ordering::Relaxed)
        {
            Ok(_) => break new,
            Err(now) => count = now,
        }
    };

    if new & RWSEM_FLAG_HANDOFF != 0 {
        // The bit is set; only the first waiter gets the credit that enables its spin.
        wl.q[0].handoff_set = true;
        wl.handoff_setter = cur.tid();
        count_event(LockEvent::RwsemWlockHandoff, 1);
        return false;
    }
    wl.unlink(cur);
    wl.handoff_setter = 0;
    sem.set_owner();
    true
}

/// `rwsem_down_write_slowpath()` (v6.6). Err(()) is -EINTR.
#[cold]
fn down_write_slowpath(sem: &RawRwSem, state: u32) -> Result<(), ()> {
    // Optimistic spinning: take the lock without queueing if possible (AR9).
    if sem.spin == RwSemSpin::On {
        let mut budget = SpinBudget::start();
        let mut cache = OwnerCache::default();
        if can_spin_on_owner(sem, &budget, &mut cache)
            && optimistic_spin(sem, &mut budget, &mut cache)
        {
            return Ok(());
        }
    }

    let cur = sched::current();
    let timeout = sched::jiffies() + rwsem_wait_timeout(sched::hz());
    let mut wl = sem.wait_lock.lock();
    wl.add(cur.clone(), WaiterType::Write, state, timeout);
    if wl.q.len() > 1 {
        // Not first: wake whoever the lock's state allows (readers on a read-held lock, the
        // head on a free one), outside wait_lock.
        let mut wake_q = WakeQ::new();
        cond_wake_waiter(sem, sem.count.load(Ordering::Acquire), &mut wl, &mut wake_q);
        if !wake_q.is_empty() {
            drop(wl);
            wake_up_q(wake_q);
            wl = sem.wait_lock.lock();
        }
    } else {
        sem.count.fetch_or(RWSEM_FLAG_WAITERS, Ordering::AcqRel);
    }

    cur.set_wchan_on(
        "rwsem_down_write_slowpath",
        &sem.name,
        sem as *const _ as usize,
    );
    let mut slept_since = None;
    // Wait until we successfully acquire the lock.
    sched::set_current_state(state);
    let result = loop {
        if try_write_lock(sem, &mut wl, &cur) {
            drop(wl);
            break Ok(());
        }
        let handoff_set = wl.q[wl.position(&cur).expect("queued")].handoff_set;
        drop(wl);

        if cur.signal_pending_state(state) {
            break Err(());
        }

        // After setting the handoff bit and failing to take the lock, spin on the owner to
        // speed up the transfer; if the owner was a running writer that just released
        // (OWNER_NULL), try again without sleeping.
        let mut sleep = true;
        if handoff_set && sem.spin == RwSemSpin::On {
            let mut budget = SpinBudget::start();
            let mut cache = OwnerCache::default();
            if spin_on_owner(sem, &mut budget, &mut cache) == OwnerState::Null {
                sleep = false;
            }
        }
        if sleep {
            if slept_since.is_none() {
                slept_since = Some(sched::ktime_get_ns());
                count_event(LockEvent::RwsemSleepWriter, 1);
            }
            sched::schedule();
            sched::set_current_state(state);
        }
        wl = sem.wait_lock.lock();
    };
    sched::__set_current_state(TASK_RUNNING);
    cur.set_wchan(None);
    match result {
        Ok(()) => count_event(LockEvent::RwsemWlock, 1),
        Err(()) => {
            // out_nolock:
            del_wake_waiter(sem, sem.wait_lock.lock(), &cur);
            count_event(LockEvent::RwsemWlockFail, 1);
        }
    }
    if let Some(t0) = slept_since {
        count_event(LockEvent::RwsemWaitNs, sched::ktime_get_ns() - t0);
    }
    result
}

// ---- optimistic spinning (CONFIG_RWSEM_SPIN_ON_OWNER=y) ---------------------------------------

/// `enum owner_state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OwnerState {
    /// No owner recorded.
    Null,
    /// A writer owns the lock (or just changed to one).
    Writer,
    /// The lock is (or may be) reader-owned.
    Reader,
    /// Stop spinning: the owner does not run, is unknown, or the time is up.
    Nonspinnable,
}

impl OwnerState {
    /// `OWNER_SPINNABLE`.
    fn spinnable(self) -> bool {
        self != OwnerState::Nonspinnable
    }
}

/// `rwsem_owner_state()`.
fn owner_state(owner: Tid, flags: i64) -> OwnerState {
    if flags & RWSEM_NONSPINNABLE != 0 {
        OwnerState::Nonspinnable
    } else if flags & RWSEM_READER_OWNED != 0 {
        OwnerState::Reader
    } else if owner != 0 {
        OwnerState::Writer
    } else {
        OwnerState::Null
    }
}

/// `rwsem_try_write_lock_unqueued()`: take the lock ahead of the queue iff nobody holds it
/// and HANDOFF is clear.
fn try_write_lock_unqueued(sem: &RawRwSem) -> bool {
    let mut count = sem.count.load(Ordering::Relaxed);
    while count & (RWSEM_LOCK_MASK | RWSEM_FLAG_HANDOFF) == 0 {
        match sem.count.compare_exchange(
            count,
            count | RWSEM_WRITER_LOCKED,
            Ordering::Acquire,
            Ordering::Relaxed,
        ) {
            Ok(_) => {
                sem.set_owner();
                return true;
            }
            Err(now) => count = now,
        }
    }
    false
}

/// `rwsem_can_spin_on_owner()`: not when NONSPINNABLE is set or the owning writer sleeps;
/// reader owners are not checked (the recorded reader may be stale).
fn can_spin_on_owner(sem: &RawRwSem, budget: &SpinBudget, cache: &mut OwnerCache) -> bool {
    if budget.need_resched() {
        count_event(LockEvent::RwsemOptFail, 1);
        return false;
    }
    let (owner, flags) = owner_flags(sem);
    let ok = !(flags & RWSEM_NONSPINNABLE != 0
        || (owner != 0 && flags & RWSEM_READER_OWNED == 0 && !cache.on_cpu(owner)));
    if !ok {
        count_event(LockEvent::RwsemOptFail, 1);
    }
    ok
}

/// `rwsem_spin_on_owner()`: while a running writer owns the lock, spin; return the new owner
/// state when the owner changes, NONSPINNABLE when it stops running or the time is up.
fn spin_on_owner(sem: &RawRwSem, budget: &mut SpinBudget, cache: &mut OwnerCache) -> OwnerState {
    let (owner, flags) = owner_flags(sem);
    let state = owner_state(owner, flags);
    if state != OwnerState::Writer {
        return state;
    }
    loop {
        // A waiter that set HANDOFF may spin on the owner too; once it has the lock we can
        // spin on it, so HANDOFF does not end the spin.
        let (new, new_flags) = owner_flags(sem);
        if new != owner || new_flags != flags {
            return owner_state(new, new_flags);
        }
        if budget.need_resched() || !cache.on_cpu(owner) {
            return OwnerState::Nonspinnable;
        }
        budget.relax();
    }
}

/// `rwsem_rspin_threshold()`: how long a writer may spin on a reader-owned lock: (10 +
/// readers/2) µs, at most 25 µs, from now.
fn rspin_threshold(sem: &RawRwSem) -> u64 {
    let readers = reader_count(sem.count.load(Ordering::Relaxed)).min(30);
    sched::ktime_get_ns() + (20 + readers) * 1_000 / 2
}

/// `rwsem_optimistic_spin()` (v6.6): queue on the OSQ, then spin on the owner and try the
/// unqueued lock whenever it changes. Stops when the owning writer is not running, when readers
/// own the lock past [`rspin_threshold`] (then sets NONSPINNABLE), or on `need_resched()`.
/// Signals are not checked (AR9).
fn optimistic_spin(sem: &RawRwSem, budget: &mut SpinBudget, cache: &mut OwnerCache) -> bool {
    let me = current_tid();
    if !sem.osq.lock(me, budget) {
        count_event(LockEvent::RwsemOptFail, 1);
        return false;
    }
    let mut taken = false;
    let mut prev_owner_state = OwnerState::Null;
    let mut rspin_deadline = 0;
    loop {
        let owner_state = spin_on_owner(sem, budget, cache);
        if !owner_state.spinnable() {
            break;
        }
        taken = try_write_lock_unqueued(sem);
        if taken {
            break;
        }
        // Time-based spinning on a reader-owned lock, the threshold re-armed whenever the
        // owner turns to readers (a writer may steal the lock between two reader phases).
        if owner_state == OwnerState::Reader {
            if prev_owner_state != OwnerState::Reader {
                if sem.owner.load(Ordering::Relaxed) & RWSEM_NONSPINNABLE != 0 {
                    break;
                }
                rspin_deadline = rspin_threshold(sem);
            } else if sched::ktime_get_ns() > rspin_deadline {
                set_nonspinnable(sem);
                count_event(LockEvent::RwsemOptNospin, 1);
                break;
            }
        }
        // spin_on_owner() checks need_resched() for a writer owner; the others here.
        if owner_state != OwnerState::Writer && budget.need_resched() {
            break;
        }
        prev_owner_state = owner_state;
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
