//! oomlab's emulated kernel core: tasks and signals, the scheduler seam and its executors,
//! the killable rw_semaphore, physical memory with the allocation slow path, and address
//! spaces with their syscalls and page faults. See ARCHITECTURE.md.
pub mod errno;
mod events;
pub mod gfp;
pub mod locking;
pub mod memory;
pub mod mm_types;
pub mod mmap;
pub mod mmap_lock;
pub mod page_alloc;
pub mod pgtable;
pub mod sched;
pub(crate) mod sync;
pub mod task;
pub mod vmstat;
