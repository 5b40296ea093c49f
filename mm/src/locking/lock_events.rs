//! Lock event counters, declared in one place.
//!
//! Models the kernel's `kernel/locking/lock_events_list.h` (v5.2+; per-CPU counters exported
//! through debugfs `lock_event_counts/`): each task keeps its own counters, written only by
//! that task with a plain relaxed load + store (no read-modify-write, no shared cache line on
//! the lock fast paths); readers sum them over the live tasks plus the totals folded in by
//! exited tasks ([`crate::task::TaskList::lock_events`]).
//!
//! The kernel list has `rwsem_sleep_reader`, `rwsem_sleep_writer`, `rwsem_wake_reader`,
//! `rwsem_wake_writer`, `rwsem_rlock`, `rwsem_rlock_fail`, `rwsem_wlock`, `rwsem_wlock_fail`,
//! and for optimistic spinning and Model B `rwsem_opt_lock`, `rwsem_opt_fail`,
//! `rwsem_opt_nospin`, `rwsem_rlock_steal`, `rwsem_rlock_handoff`, `rwsem_wlock_handoff`
//! (v6.x names). oomlab adds the fast-path and trylock acquisitions by operation, and the
//! total slow-path wait time.

crate::events::per_task_events! {
    /// One lock event.
    LockEvent,
    /// A set of lock event counters (one per task, or a folded total).
    LockEvents,
    NR_LOCK_EVENTS, count, lock_events;
    /// `down_read*` acquired on the fast path.
    RwsemRlockFast => "rwsem_rlock_fast",
    /// `down_write*` acquired on the fast path.
    RwsemWlockFast => "rwsem_wlock_fast",
    /// `down_read_trylock` succeeded.
    RwsemRtrylock => "rwsem_rtrylock",
    /// `down_read_trylock` failed.
    RwsemRtrylockFail => "rwsem_rtrylock_fail",
    /// `down_write_trylock` succeeded.
    RwsemWtrylock => "rwsem_wtrylock",
    /// `down_write_trylock` failed.
    RwsemWtrylockFail => "rwsem_wtrylock_fail",
    /// Read lock acquired in the slow path (contended).
    RwsemRlock => "rwsem_rlock",
    /// Write lock acquired in the slow path (contended).
    RwsemWlock => "rwsem_wlock",
    /// Killable/interruptible read wait gave up with -EINTR.
    RwsemRlockFail => "rwsem_rlock_fail",
    /// Killable write wait gave up with -EINTR.
    RwsemWlockFail => "rwsem_wlock_fail",
    /// A reader went to sleep in the slow path.
    RwsemSleepReader => "rwsem_sleep_reader",
    /// A writer went to sleep in the slow path.
    RwsemSleepWriter => "rwsem_sleep_writer",
    /// Readers granted by a waker.
    RwsemWakeReader => "rwsem_wake_reader",
    /// Writers woken by a waker.
    RwsemWakeWriter => "rwsem_wake_writer",
    /// `downgrade_write` calls.
    RwsemDowngrade => "rwsem_downgrade",
    /// A writer took the lock by optimistic spinning (AR9), without queueing.
    RwsemOptLock => "rwsem_opt_lock",
    /// A writer's optimistic spin ended without the lock (it then queued).
    RwsemOptFail => "rwsem_opt_fail",
    /// Model B: a writer gave up spinning on a reader-owned lock and set `RWSEM_NONSPINNABLE`.
    RwsemOptNospin => "rwsem_opt_nospin",
    /// Model B: a reader in the slow path kept its bias (reader optimistic lock stealing).
    RwsemRlockSteal => "rwsem_rlock_steal",
    /// Model B: a waker set `RWSEM_FLAG_HANDOFF` for the timed-out reader at the head.
    RwsemRlockHandoff => "rwsem_rlock_handoff",
    /// Model B: a timed-out writer set `RWSEM_FLAG_HANDOFF`.
    RwsemWlockHandoff => "rwsem_wlock_handoff",
    /// Emulated nanoseconds rwsem waiters spent asleep, from their first `schedule()` to the
    /// acquisition or the bail-out (slow paths that never sleep add nothing: no clock reads).
    RwsemWaitNs => "rwsem_wait_ns",
}
