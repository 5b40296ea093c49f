//! Workloads on emulated machines: user-process behaviour, the load generator of `oomlab run`,
//! the canonical OOM scenarios, and the one report of a machine's life.
pub mod load;
pub mod report;
pub mod scenario;
pub mod scenario_file;
pub mod scenarios;
pub mod user;
