//! The mm crate's integration tests, one binary (one link for all of them): the executors and
//! the scheduler seam, the rw_semaphore (rules per model, spinning, stress), the mutex, the
//! page allocator, address spaces (unit, property and race tests). The loom models are
//! `tests/loom_rwsem.rs`, a binary of their own because they build under `--cfg oomlab_loom`.
#![cfg(not(oomlab_loom))]

mod common;
mod rwsem_lab;

mod address_space;
mod as_smoke;
mod kmutex;
mod mm_proptest;
mod mmap_lock_waits;
mod page_alloc;
mod rwsem_model_b;
mod rwsem_rules;
mod rwsem_smoke;
mod rwsem_spin;
mod rwsem_stress;
mod sim_executor;
mod threads_executor;
