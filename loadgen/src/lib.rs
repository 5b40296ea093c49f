//! Workloads on emulated machines: user-process behaviour, machine boot, the load generator
//! of `oomlab run`, and the canonical OOM scenarios.
pub mod load;
pub mod machine;
pub mod scenario;
pub mod scenarios;
pub mod user;
