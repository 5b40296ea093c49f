//! Synchronisation primitives behind one seam, so that `--cfg oomlab_loom` swaps the atomics and
//! the internal mutex of the lock and the task state for loom's model-checked versions (the
//! approach of tokio's `src/loom/mod.rs`).

#[cfg(not(oomlab_loom))]
pub(crate) use std::sync::atomic::{fence, AtomicBool, AtomicI64, AtomicU32, Ordering};

#[cfg(oomlab_loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicBool, AtomicI64, AtomicU32, Ordering};

/// The kernel's raw spinlock (`raw_spinlock_t`) as used for `rw_semaphore::wait_lock`.
/// Never held across `schedule()` or a sim yield point (the kernel runs with preemption off
/// under it); the sim executor therefore never switches while it is held.
#[cfg(not(oomlab_loom))]
#[allow(dead_code)]
pub(crate) type SpinGuard<'a, T> = parking_lot::MutexGuard<'a, T>;
#[cfg(oomlab_loom)]
#[allow(dead_code)]
pub(crate) type SpinGuard<'a, T> = loom::sync::MutexGuard<'a, T>;

#[cfg(not(oomlab_loom))]
pub(crate) struct RawSpinLock<T>(parking_lot::Mutex<T>);
#[cfg(not(oomlab_loom))]
impl<T> RawSpinLock<T> {
    pub(crate) const fn new(v: T) -> Self {
        Self(parking_lot::Mutex::new(v))
    }
    #[inline]
    pub(crate) fn lock(&self) -> parking_lot::MutexGuard<'_, T> {
        self.0.lock()
    }
    /// `raw_spin_trylock()`.
    #[inline]
    pub(crate) fn try_lock(&self) -> Option<parking_lot::MutexGuard<'_, T>> {
        self.0.try_lock()
    }
}

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
