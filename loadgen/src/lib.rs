//! Workloads on emulated machines: user-process behaviour, machine boot, and the canonical
//! OOM scenarios.
pub mod machine;
pub mod scenario;
pub mod scenarios;
pub mod user;
