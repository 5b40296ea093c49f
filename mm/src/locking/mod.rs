//! The kernel's `kernel/locking/`: the `rw_semaphore` behind `mmap_lock`, the sleeping
//! `struct mutex` (`oom_lock`, the fs-style locks of scenarios) and the lock statistics
//! (`lock_events_list.h`).
pub mod kmutex;
pub mod lock_events;
pub mod rwsem;
