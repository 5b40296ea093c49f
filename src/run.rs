//! `oomlab run`: boot the machine on the chosen executor, run the load generator within
//! `--duration` (`loadgen::load::LoadRun`: the driver keeps the schedule, winds the load
//! down and finishes the machine with its one verdict), and return the report.
//!
//! SIGINT, SIGTERM and SIGHUP end the run early: the handler only records the signal; the
//! driver sees it, stops the load, winds it down and reports within 2 s (exit status
//! 128 + the signal). The same signal again while that happens exits at once.
//!
//! Before the machine boots, the metrics exporter starts listening (`--metrics-addr`: an
//! address it cannot listen on is a usage error before anything starts); after the boot the
//! watcher (`watch.rs`) publishes the metrics and the progress line beside the run.

use crate::cli::Executor;
use crate::plan::RunPlan;
use crate::telemetry::progress::Progress;
use crate::telemetry::publisher::{Publisher, RunInfo};
use crate::watch::{Watch, Watcher};
use anyhow::{Context, Result};
use std::io::IsTerminal;

use loadgen::load::LoadRun;
use loadgen::report::Report;
use mm::sched::sim::{Sim, SimConfig};
use mm::sched::threads::{ThreadsConfig, ThreadsExecutor};
use std::sync::atomic::{AtomicI32, Ordering};

/// Slack of the sim's own time bound past the run's: lets the kthreads finish a reaper retry
/// cycle after the wind-down.
const SIM_SLACK_NS: u64 = 60_000_000_000;

/// The signal that asked the run to end (0: none).
static INTERRUPT: AtomicI32 = AtomicI32::new(0);

/// Record SIGINT, SIGTERM and SIGHUP in [`INTERRUPT`]; a second one exits at once.
fn catch_signals() -> Result<()> {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only does async-signal-safe work: an atomic swap and _exit.
        unsafe {
            signal_hook::low_level::register(sig, move || {
                if INTERRUPT.swap(sig, Ordering::SeqCst) != 0 {
                    signal_hook::low_level::exit(128 + sig);
                }
            })?;
        }
    }
    Ok(())
}

/// Run the plan and return its report.
pub fn run(plan: &RunPlan) -> Result<Report> {
    catch_signals()?;
    if let Some(addr) = plan.metrics {
        let at = crate::telemetry::serve(addr)?;
        eprintln!("oomlab: serving metrics at http://{at}/metrics");
    }
    Ok(match plan.executor {
        Executor::Threads => drive(
            LoadRun::boot(ThreadsExecutor::new(ThreadsConfig::default()), &plan.run)?,
            plan,
        )?,
        Executor::Sim => drive(
            LoadRun::boot(
                Sim::new(SimConfig {
                    seed: plan.run.seed,
                    max_time_ns: plan.run.duration_ns.saturating_add(SIM_SLACK_NS),
                    max_steps: u64::MAX,
                    ..SimConfig::default()
                }),
                &plan.run,
            )?,
            plan,
        )?,
    })
}

/// Run a booted machine with its watcher beside it.
fn drive<E: mm::sched::Executor>(r: LoadRun<E>, plan: &RunPlan) -> Result<Report> {
    let k = r.kernel();
    let watch = Watch {
        log: plan.log.as_ref().map(|sink| sink.open()),
        publisher: plan.metrics.map(|_| {
            Publisher::new(
                k,
                &RunInfo {
                    executor: plan.executor.name(),
                    bound_ns: plan.run.duration_ns,
                },
            )
        }),
        progress: (!plan.quiet).then(|| {
            Progress::new(
                std::io::stderr().is_terminal(),
                plan.run.duration_ns,
                plan.run.machine.memory_bytes,
            )
        }),
    };
    let watcher = Watcher::start(k.clone(), r.clock(), watch);
    let report = r.run(&INTERRUPT);
    watcher.finish().context("writing the kernel log (--log)")?;
    Ok(report)
}

/// After the summary: keep serving the final metrics for `--metrics-linger` (a signal ends
/// it early).
pub fn linger(plan: &RunPlan) {
    if plan.metrics.is_some() && !plan.metrics_linger.is_zero() {
        crate::telemetry::linger(plan.metrics_linger, &INTERRUPT);
    }
}
