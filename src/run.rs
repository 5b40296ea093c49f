//! `oomlab run`: run the load generator on the chosen executor (`loadgen::load::run`, which
//! boots the machine, drives the load, winds it down within `--duration` and finishes the
//! machine with its one verdict), then print the report.

use crate::cli::Executor;
use crate::plan::RunPlan;
use anyhow::Result;
use loadgen::report::Report;
use mm::sched::sim::{Sim, SimConfig};
use mm::sched::threads::{ThreadsConfig, ThreadsExecutor};

/// Slack of the sim's own time bound past the supervisor's: lets the kthreads finish a reaper
/// retry cycle after the wind-down.
const SIM_SLACK_NS: u64 = 60_000_000_000;

/// Run the plan and return its report.
pub fn run(plan: &RunPlan) -> Result<Report> {
    let r = match plan.executor {
        Executor::Threads => {
            loadgen::load::run(ThreadsExecutor::new(ThreadsConfig::default()), &plan.run)
        }
        Executor::Sim => loadgen::load::run(
            Sim::new(SimConfig {
                seed: plan.run.seed,
                max_time_ns: plan.run.hard_bound_ns().saturating_add(SIM_SLACK_NS),
                max_steps: u64::MAX,
                ..SimConfig::default()
            }),
            &plan.run,
        ),
    };
    Ok(r?)
}
