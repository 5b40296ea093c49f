//! oomlab's emulated kernel core.
pub mod sched;
pub(crate) mod sync;
pub mod task;
