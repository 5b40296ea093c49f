//! oomlab's emulated kernel core: tasks and signals, the scheduler seam and its executors,
//! and the killable rw_semaphore. See ARCHITECTURE.md.
pub mod gfp;
pub mod kmutex;
pub mod lock_events;
pub mod page_alloc;
pub mod rwsem;
pub mod sched;
pub(crate) mod sync;
pub mod task;
