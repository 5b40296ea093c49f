//! The kernel's sleeping mutex (`struct mutex`), e.g. `oom_lock`.
//!
//! Models `kernel/locking/mutex.c` of Linux **v4.10** (Peter Zijlstra's owner-word rewrite,
//! 3ca0ff571b09): the owner word holds the owning task plus flag bits, the fast paths are one
//! compare-and-swap on it, and `wait_lock` serialises the FIFO wait list. Optimistic spinning
//! (`CONFIG_MUTEX_SPIN_ON_OWNER`) and the handoff protocol are left out (see Deviations).
//!
//! # State
//!
//! | field | meaning | invariant | changed by | under |
//! |---|---|---|---|---|
//! | `owner` bits 63..3 | tid of the owner, 0 = unlocked | ≠ 0 ⇔ locked | `__mutex_trylock` (CAS 0 → tid, keeping the flags), unlock (CAS tid → 0, keeping the flags) | lock-free |
//! | `owner` bit 0 `MUTEX_FLAG_WAITERS` | unlock must take the slow path and wake the head waiter | set ⇒ `wait_list` non-empty (at quiescent points) | set by the waiter that becomes first; cleared by whoever empties the list | `wait_lock` |
//! | `wait_lock` | the kernel's `spinlock_t` | never held across `schedule()` or a sim switch | | |
//! | `wait_list` | FIFO of sleeping waiters (`struct mutex_waiter`) | a waiter is on it from queueing until it owns the lock or bails out; it removes itself | the waiter | `wait_lock` |
//!
//! `MUTEX_FLAG_HANDOFF` (bit 1) and `MUTEX_FLAG_PICKUP` (bit 2) are never set here.
//!
//! # Rules
//! - `mutex_trylock` succeeds iff no task owns the lock, whatever the waiters (a fresh locker may
//!   steal the lock from a woken head waiter: no fairness without handoff).
//! - `mutex_unlock` clears the owner first, then, if `MUTEX_FLAG_WAITERS` was set, wakes the head
//!   waiter without granting it the lock; the woken waiter retries its trylock.
//! - A waiter re-checks the lock after publishing its sleep state, so a wake-up between the
//!   state store and `schedule()` is never lost (`kernel/sched` protocol, see [`crate::sched`]).
//! - A killable waiter that sees SIGKILL under `wait_lock` leaves the queue, clears the flags if
//!   the queue became empty, and returns -EINTR ([`Killed`]). It never holds a grant (there are
//!   none without handoff), so nobody else needs waking.
//!
//! # Deviations
//! - No optimistic spinning, no `MUTEX_FLAG_HANDOFF` (v4.10 sets it after a woken waiter lost
//!   the race again; without it a woken waiter can starve behind lock stealers, as before v4.10).
//! - The owner is a tid (`u32::MAX` outside emulated tasks), not a task pointer. Outside an
//!   emulated task only the non-sleeping paths work (trylock, uncontended lock, unlock).
//! - No lockdep, no `CONFIG_DEBUG_MUTEXES` beyond the owner check in `mutex_unlock`, which is an
//!   `assert!` (an unlock by a non-owner is an emulator bug).

use crate::locking::rwsem::Killed;
use crate::sched;
use crate::sync::{AtomicI64, Ordering, RawSpinLock};
use crate::task::{state::*, Task, Tid};
use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

/// `MUTEX_FLAG_WAITERS`: non-empty wait list, unlock must issue a wakeup.
pub const MUTEX_FLAG_WAITERS: i64 = 0x01;
/// `MUTEX_FLAGS`: the low bits of the owner word reserved for flags.
pub const MUTEX_FLAGS: i64 = 0x07;
/// Bit position of the owner's tid in the owner word (the bits below it are [`MUTEX_FLAGS`]).
pub const OWNER_SHIFT: u32 = 3;

/// Owner id of a locker outside any emulated task (benchmark drivers, test harnesses).
pub const NO_TASK_OWNER: Tid = u32::MAX;

fn current_id() -> Tid {
    sched::with_current_opt(|t| t.map_or(NO_TASK_OWNER, |t| t.tid()))
}

/// The kernel's sleeping mutex. Kernel-shaped calls on `&self`; [`KMutex::lock`] and friends
/// return an RAII [`KMutexGuard`].
pub struct KMutex {
    /// `mutex::owner`: tid << 3 | flags.
    owner: AtomicI64,
    /// `mutex::wait_lock` + `mutex::wait_list`.
    wait_lock: RawSpinLock<VecDeque<Arc<Task>>>,
    name: Arc<str>,
}

impl fmt::Debug for KMutex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KMutex({}, owner={:?})", self.name, self.owner())
    }
}

impl KMutex {
    /// `mutex_init()` / `DEFINE_MUTEX(name)`.
    pub fn new(name: impl Into<Arc<str>>) -> KMutex {
        KMutex {
            owner: AtomicI64::new(0),
            wait_lock: RawSpinLock::new(VecDeque::new()),
            name: name.into(),
        }
    }

    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// `__mutex_owner()`: tid of the owner, if locked.
    pub fn owner(&self) -> Option<Tid> {
        match self.owner.load(Ordering::Relaxed) >> OWNER_SHIFT {
            0 => None,
            t => Some(t as Tid),
        }
    }

    /// `mutex_is_locked()`.
    pub fn is_locked(&self) -> bool {
        self.owner.load(Ordering::Relaxed) >> OWNER_SHIFT != 0
    }

    /// Tids of the sleeping waiters, head first (a snapshot under `wait_lock`).
    pub fn waiters(&self) -> Vec<Tid> {
        self.wait_lock.lock().iter().map(|t| t.tid()).collect()
    }

    /// The raw owner word (for tests and diagnostics).
    pub fn owner_word(&self) -> i64 {
        self.owner.load(Ordering::SeqCst)
    }

    // ---- fast paths ---------------------------------------------------------------------

    /// `__mutex_trylock_fast()`: CAS 0 → current.
    #[inline(always)]
    fn trylock_fast(&self, me: Tid) -> bool {
        self.owner
            .compare_exchange(
                0,
                (me as i64) << OWNER_SHIFT,
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .is_ok()
    }

    /// `__mutex_trylock(lock, false)` (v4.10): take the lock iff no task owns it, keeping the
    /// flag bits; loops only to race against a flag change.
    fn trylock_slow(&self, me: Tid) -> bool {
        let mut owner = self.owner.load(Ordering::Relaxed);
        loop {
            if owner >> OWNER_SHIFT != 0 {
                return false;
            }
            let new = ((me as i64) << OWNER_SHIFT) | (owner & MUTEX_FLAGS);
            match self
                .owner
                .compare_exchange(owner, new, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(now) => owner = now,
            }
        }
    }

    /// Record the hold in the current task's held-lock list (lockdep's `held_locks`), so that
    /// wait-for chains can name the holder of a contended mutex.
    fn held(&self) {
        let id = self as *const _ as usize;
        sched::with_current_opt(|t| {
            if let Some(t) = t {
                t.lockdep_acquired(id, true)
            }
        });
    }

    /// `mutex_lock()`: sleep in TASK_UNINTERRUPTIBLE until the lock is ours.
    #[inline]
    pub fn mutex_lock(&self) {
        let me = current_id();
        if !self.trylock_fast(me) {
            let r = self.lock_slowpath(TASK_UNINTERRUPTIBLE, me);
            debug_assert!(r.is_ok());
        }
        self.held();
    }

    /// `mutex_lock_killable()`: as `mutex_lock`, but -EINTR if SIGKILL arrives while waiting.
    #[inline]
    pub fn mutex_lock_killable(&self) -> Result<(), Killed> {
        let me = current_id();
        if !self.trylock_fast(me) {
            self.lock_slowpath(TASK_KILLABLE, me)?;
        }
        self.held();
        Ok(())
    }

    /// `mutex_trylock()`: succeeds iff the lock is unowned (waiters do not matter).
    #[inline]
    pub fn mutex_trylock(&self) -> bool {
        let ok = self.trylock_slow(current_id());
        if ok {
            self.held();
        }
        ok
    }

    /// `mutex_unlock()`: the owner releases; if waiters are flagged, wake the head waiter.
    #[inline]
    pub fn mutex_unlock(&self) {
        let me = current_id();
        let id = self as *const _ as usize;
        sched::with_current_opt(|t| {
            if let Some(t) = t {
                t.lockdep_released(id)
            }
        });
        let mine = (me as i64) << OWNER_SHIFT;
        // __mutex_unlock_fast(): CAS current → 0 (fails when a flag is set).
        if self
            .owner
            .compare_exchange(mine, 0, Ordering::Release, Ordering::Relaxed)
            .is_ok()
        {
            return;
        }
        self.unlock_slowpath(me);
    }

    // ---- slow paths ---------------------------------------------------------------------

    /// `__mutex_lock_common()` (v4.10) without spinning, handoff and ww_mutex.
    #[cold]
    fn lock_slowpath(&self, state: u32, me: Tid) -> Result<(), Killed> {
        let cur = sched::current();
        let mut q = self.wait_lock.lock();
        // After waiting to acquire the wait_lock, try again.
        if self.trylock_slow(me) {
            return Ok(());
        }
        // Add waiting tasks to the end of the waitqueue (FIFO).
        q.push_back(cur.clone());
        if q.len() == 1 {
            // __mutex_waiter_is_first(): flag the owner word so that unlock wakes us.
            self.owner.fetch_or(MUTEX_FLAG_WAITERS, Ordering::AcqRel);
        }
        cur.set_wchan_on(
            if state == TASK_KILLABLE {
                "__mutex_lock_killable_slowpath"
            } else {
                "__mutex_lock_slowpath"
            },
            &self.name,
            self as *const _ as usize,
        );
        sched::set_current_state(state);
        let result = loop {
            // Serialised against mutex_unlock() by wait_lock: trylock before the error checks.
            if self.trylock_slow(me) {
                break Ok(());
            }
            // Check for signals while holding wait_lock, so that cancellation is ordered
            // against mutex_unlock() and wake-ups do not go missing.
            if cur.signal_pending_state(state) {
                break Err(Killed);
            }
            drop(q);
            sched::schedule();
            sched::set_current_state(state);
            // Order against unlock: either we see its state change back to RUNNING and fall
            // through the next schedule(), or we see its unlock and acquire.
            if self.trylock_slow(me) {
                q = self.wait_lock.lock();
                break Ok(());
            }
            q = self.wait_lock.lock();
        };
        sched::__set_current_state(TASK_RUNNING);
        // acquired: / err: — mutex_remove_waiter() and clear the flags if we were the last.
        self.remove_waiter(&mut q, &cur);
        drop(q);
        cur.set_wchan(None);
        result
    }

    /// `mutex_remove_waiter()` + `__mutex_clear_flag(lock, MUTEX_FLAGS)` on an empty list.
    fn remove_waiter(&self, q: &mut VecDeque<Arc<Task>>, cur: &Task) {
        let pos = q
            .iter()
            .position(|t| std::ptr::eq(Arc::as_ptr(t), cur))
            .expect("mutex waiter missing from its wait list");
        q.remove(pos);
        if q.is_empty() {
            self.owner.fetch_and(!MUTEX_FLAGS, Ordering::AcqRel);
        }
    }

    /// `__mutex_unlock_slowpath()` (v4.10) without handoff: release the owner field (keeping the
    /// flags), then wake the head waiter if `MUTEX_FLAG_WAITERS` was set.
    #[cold]
    fn unlock_slowpath(&self, me: Tid) {
        let mut owner = self.owner.load(Ordering::Relaxed);
        loop {
            assert_eq!(
                (owner >> OWNER_SHIFT) as Tid,
                me,
                "mutex_unlock of {} by tid {me}, which does not own it (owner word {owner:#x})",
                self.name
            );
            match self.owner.compare_exchange(
                owner,
                owner & MUTEX_FLAGS,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    if owner & MUTEX_FLAG_WAITERS == 0 {
                        return;
                    }
                    break;
                }
                Err(now) => owner = now,
            }
        }
        let next = self.wait_lock.lock().front().cloned();
        if let Some(t) = next {
            // wake_up_q() after dropping wait_lock.
            sched::wake_up_process(&t);
        }
    }

    // ---- the RAII facade ----------------------------------------------------------------

    /// `mutex_lock()` with a guard that unlocks on drop.
    pub fn lock(&self) -> KMutexGuard<'_> {
        self.mutex_lock();
        KMutexGuard { lock: self }
    }

    /// `mutex_lock_killable()` with a guard.
    pub fn lock_killable(&self) -> Result<KMutexGuard<'_>, Killed> {
        self.mutex_lock_killable()?;
        Ok(KMutexGuard { lock: self })
    }

    /// `mutex_trylock()` with a guard (`then`, not `then_some`: a guard built eagerly for a
    /// failed trylock would be dropped at once and unlock a mutex we do not hold).
    pub fn try_lock(&self) -> Option<KMutexGuard<'_>> {
        self.mutex_trylock().then(|| KMutexGuard { lock: self })
    }
}

/// A hold of a [`KMutex`]; `mutex_unlock` on drop (must be dropped by the locking task).
#[must_use = "the mutex is released when the guard is dropped"]
pub struct KMutexGuard<'a> {
    lock: &'a KMutex,
}

impl KMutexGuard<'_> {
    pub fn mutex(&self) -> &KMutex {
        self.lock
    }
}

impl Drop for KMutexGuard<'_> {
    fn drop(&mut self) {
        self.lock.mutex_unlock();
    }
}

#[cfg(all(test, not(oomlab_loom)))]
mod tests {
    // The other tests of this mutex are in mm/tests/kmutex.rs; this one stays here because it
    // sets MUTEX_FLAG_WAITERS in the private owner word directly.
    use super::*;
    use crate::sched::sim::{Sim, SimConfig};
    use crate::task::CloneKind;

    fn proc(c: &str) -> CloneKind {
        CloneKind::Process { comm: c.into() }
    }

    fn sim(seed: u64) -> Sim {
        Sim::new(SimConfig {
            seed,
            ..Default::default()
        })
    }

    #[test]
    #[should_panic(expected = "does not own it")]
    fn unlock_by_non_owner_asserts() {
        let mut s = sim(6);
        let m = Arc::new(KMutex::new("m"));
        let m2 = m.clone();
        s.spawn(proc("a"), move || {
            m2.mutex_lock();
            let m3 = m2.clone();
            sched::spawn(proc("b"), move || {
                // Force the slow unlock path by setting the waiters flag.
                m3.owner.fetch_or(MUTEX_FLAG_WAITERS, Ordering::SeqCst);
                m3.mutex_unlock();
            })
            .unwrap();
            sched::schedule_timeout_uninterruptible(1);
        })
        .unwrap();
        s.run();
    }
}
