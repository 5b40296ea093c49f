//! Synchronisation primitives behind one seam, so that `--cfg oomlab_loom` swaps the atomics and
//! the internal mutex of the lock and the task state for loom's model-checked versions (the
//! approach of tokio's `src/loom/mod.rs`).

#[cfg(not(oomlab_loom))]
pub(crate) use std::sync::atomic::{fence, AtomicBool, AtomicI64, AtomicU32, Ordering};

#[cfg(oomlab_loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicBool, AtomicI64, AtomicU32, Ordering};

/// The kernel's raw spinlock (`raw_spinlock_t`) as used for `rw_semaphore::wait_lock`, the
/// page-table and per-CPU list locks. Never held across `schedule()` or a sim yield point (the
/// kernel runs with preemption off under it); the sim executor therefore never switches while
/// one is held. That is enforced, not just written down: every [`RawSpinLock`] held counts in
/// this OS thread's [`preempt_count`], and `schedule()` / `cond_resched()` assert it is zero
/// ([`might_sleep`]), in every build.
#[cfg(not(oomlab_loom))]
pub(crate) struct RawSpinLock<T>(parking_lot::Mutex<T>);

/// A held [`RawSpinLock`]; dropping it unlocks and leaves the atomic section.
#[cfg(not(oomlab_loom))]
pub(crate) struct SpinGuard<'a, T>(parking_lot::MutexGuard<'a, T>);

#[cfg(not(oomlab_loom))]
thread_local! {
    /// Raw spinlocks held by this OS thread: the kernel's `preempt_count()` for them. On the
    /// sim all tasks share one OS thread, which is sound because tasks switch only where the
    /// count must be zero.
    static PREEMPT_COUNT: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Raw spinlocks held by the calling OS thread.
#[cfg(not(oomlab_loom))]
#[inline]
pub(crate) fn preempt_count() -> u32 {
    PREEMPT_COUNT.with(|c| c.get())
}

/// `might_sleep()` (include/linux/kernel.h; the check of `___might_sleep()`): a function that
/// may sleep or switch tasks was called; crash loudly if a raw spinlock is held, as the
/// kernel's "BUG: sleeping function called from invalid context" (here always on, not only
/// with `CONFIG_DEBUG_ATOMIC_SLEEP`). A bug of the emulator, never a modelled outcome.
#[cfg(not(oomlab_loom))]
#[inline]
#[track_caller]
pub(crate) fn might_sleep() {
    let held = preempt_count();
    assert!(
        held == 0,
        "BUG: sleeping function called from invalid context: {held} raw spinlock(s) held \
         (oomlab emulator bug: a switch under a spinlock)"
    );
}

/// Under loom, model threads are coroutines of one OS thread that loom may preempt anywhere,
/// so a per-OS-thread count would mix threads up: the check is off there (loom explores the
/// lock's own orderings instead).
#[cfg(oomlab_loom)]
#[inline]
pub(crate) fn might_sleep() {}

#[cfg(not(oomlab_loom))]
impl<T> RawSpinLock<T> {
    pub(crate) const fn new(v: T) -> Self {
        Self(parking_lot::Mutex::new(v))
    }
    #[inline]
    pub(crate) fn lock(&self) -> SpinGuard<'_, T> {
        let g = self.0.lock();
        PREEMPT_COUNT.with(|c| c.set(c.get() + 1));
        SpinGuard(g)
    }
    /// `raw_spin_trylock()`.
    #[inline]
    pub(crate) fn try_lock(&self) -> Option<SpinGuard<'_, T>> {
        let g = self.0.try_lock()?;
        PREEMPT_COUNT.with(|c| c.set(c.get() + 1));
        Some(SpinGuard(g))
    }
}

#[cfg(not(oomlab_loom))]
impl<T> Drop for SpinGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        PREEMPT_COUNT.with(|c| c.set(c.get() - 1));
    }
}

#[cfg(not(oomlab_loom))]
impl<T> std::ops::Deref for SpinGuard<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        &self.0
    }
}

#[cfg(not(oomlab_loom))]
impl<T> std::ops::DerefMut for SpinGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

#[cfg(oomlab_loom)]
#[allow(dead_code)]
pub(crate) type SpinGuard<'a, T> = loom::sync::MutexGuard<'a, T>;

#[cfg(oomlab_loom)]
pub(crate) struct RawSpinLock<T>(loom::sync::Mutex<T>);
#[cfg(oomlab_loom)]
impl<T> RawSpinLock<T> {
    pub(crate) fn new(v: T) -> Self {
        Self(loom::sync::Mutex::new(v))
    }
    pub(crate) fn lock(&self) -> loom::sync::MutexGuard<'_, T> {
        self.0.lock().unwrap()
    }
    pub(crate) fn try_lock(&self) -> Option<loom::sync::MutexGuard<'_, T>> {
        self.0.try_lock().ok()
    }
}

#[cfg(all(test, not(oomlab_loom)))]
mod tests {
    use super::*;
    use crate::sched::{self, sim::Sim, sim::SimConfig};
    use crate::task::CloneKind;
    use std::sync::Arc;

    fn task() -> CloneKind {
        CloneKind::Process {
            comm: "t".to_string(),
        }
    }

    #[test]
    fn spinlocks_count_while_held_and_nest() {
        let (a, b) = (RawSpinLock::new(1), RawSpinLock::new(2));
        assert_eq!(preempt_count(), 0);
        let ga = a.lock();
        let gb = b.lock();
        assert_eq!((*ga + *gb, preempt_count()), (3, 2));
        drop(ga);
        assert_eq!(preempt_count(), 1);
        drop(gb);
        assert_eq!(preempt_count(), 0);
        might_sleep();
    }

    #[test]
    fn a_switch_under_a_spinlock_is_an_emulator_bug() {
        let lock = Arc::new(RawSpinLock::new(()));
        let l2 = lock.clone();
        let mut sim = Sim::new(SimConfig::default());
        sim.spawn(task(), move || {
            let _g = l2.lock();
            sched::cond_resched();
        })
        .unwrap();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sim.run()));
        let msg = r
            .expect_err("cond_resched() under a spinlock must crash")
            .downcast::<String>()
            .map(|s| *s)
            .unwrap_or_default();
        assert!(
            msg.contains("BUG: sleeping function called from invalid context: 1 raw spinlock"),
            "{msg}"
        );
        assert!(msg.contains("reproduce with seed 0"), "{msg}");
        std::mem::forget(sim);
        // The unwound task dropped its guard.
        assert_eq!(preempt_count(), 0);
    }

    #[test]
    fn sleeping_without_a_spinlock_is_fine() {
        let lock = Arc::new(RawSpinLock::new(0u32));
        let l2 = lock.clone();
        let mut sim = Sim::new(SimConfig::default());
        sim.spawn(task(), move || {
            *l2.lock() += 1;
            sched::schedule_timeout_uninterruptible(1);
            *l2.lock() += 1;
        })
        .unwrap();
        assert_eq!(sim.run(), sched::sim::SimOutcome::AllExited);
        assert_eq!(*lock.lock(), 2);
    }
}
