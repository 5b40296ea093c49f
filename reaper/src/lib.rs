//! The OOM killer, the oom_reaper kthread, the kernel log and the livelock watchdog of an
//! emulated machine. Implements `mm::page_alloc::OomKiller`; depends only on `mm`.
pub mod events;
pub mod klog;
pub mod knobs;
pub mod machine;
pub mod oom_kill;
pub mod oom_reaper;
pub mod units;
pub mod watchdog;
