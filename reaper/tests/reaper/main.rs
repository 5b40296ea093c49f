//! The reaper crate's integration tests, one binary (one link): rule tests of the OOM killer,
//! the oom_reaper and the livelock watchdog, and their rare-event stream, on a real machine
//! booted on the sim executor.
#![cfg(not(oomlab_loom))]

mod common;
mod events;
mod oom_kill;
mod oom_reaper;
mod watchdog;
