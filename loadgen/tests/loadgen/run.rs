//! `oomlab run`'s load and its driver (`loadgen::load::LoadRun`): the time bound, interrupts,
//! counts that add up (checked against the kernel's own counters), host refusals, and long runs
//! that keep their pressure. Sim-executor runs are exact; the threads-executor runs are bounded
//! by the run's own time bound and assert outcomes, never host speed.

use loadgen::load::{LoadConfig, LoadRun, RunConfig};
use loadgen::report::{Report, Workload};
use mm::sched::sim::{Sim, SimConfig};
use mm::sched::threads::{ThreadsConfig, ThreadsExecutor};
use mm::vmstat::VmEvent;
use reaper::machine::{Checks, MachineConfig, Verdict};
use std::sync::atomic::AtomicI32;

const SEC: u64 = 1_000_000_000;

fn config(threads: u32, mib: u64, duration_s: u64, seed: u64) -> RunConfig {
    RunConfig {
        machine: MachineConfig::sim(mib << 20),
        load: LoadConfig::new(threads, seed),
        seed,
        duration_ns: duration_s * SEC,
        host_cpus: None,
    }
}

fn sim_for(rc: &RunConfig, pid_max: u32) -> Sim {
    Sim::new(SimConfig {
        seed: rc.seed,
        max_time_ns: rc.duration_ns + 60 * SEC,
        max_steps: u64::MAX,
        pid_max,
        ..SimConfig::default()
    })
}

fn run_sim(rc: &RunConfig, interrupt: i32) -> Report {
    LoadRun::boot(sim_for(rc, mm::task::PID_MAX_DEFAULT), rc)
        .expect("boot")
        .run(&AtomicI32::new(interrupt))
}

fn load(r: &Report) -> &loadgen::load::LoadReport {
    match &r.workload {
        Workload::Run { load, .. } => load,
        Workload::Scenario { .. } => panic!("not a run"),
    }
}

/// Every started task is in exactly one class, and the load's own counts equal the kernel's
/// (`mmap_calls`, `munmap_calls`: only the load calls them), whatever ended the run.
fn assert_counts_add_up(r: &Report) {
    let l = load(r);
    let s = r.summary().join("\n");
    assert_eq!(
        l.tasks_started,
        l.tasks_stopped + l.tasks_killed + l.tasks_left,
        "{s}"
    );
    assert_eq!(
        l.work.mmaps + l.work.mmap_errors,
        r.vm_event(VmEvent::MmapCalls),
        "{s}"
    );
    assert_eq!(l.work.munmaps, r.vm_event(VmEvent::MunmapCalls), "{s}");
    assert!(
        r.vm_event(VmEvent::Pgfault) >= l.work.pages_touched.min(1),
        "{s}"
    );
}

#[test]
fn sim_run_keeps_its_bound_and_every_task_is_accounted_for() {
    let rc = config(32, 16, 5, 1);
    let r = run_sim(&rc, 0);
    let l = load(&r);
    let s = r.summary().join("\n");
    assert_eq!(r.verdict, Verdict::Completed, "{s}");
    assert_eq!(r.checks, Checks::Full, "{s}");
    assert_eq!(l.tasks_left, 0, "{s}");
    assert!(r.oom.kills > 0, "the load causes OOM kills: {s}");
    // The load ran its share of the bound, the wind-down ended inside the bound.
    assert!(l.stopped_at_ns - l.started_at_ns >= rc.load_ns(), "{s}");
    assert!(
        l.wound_down_at_ns - l.started_at_ns <= rc.duration_ns,
        "{s}"
    );
    assert!(l.work.pages_touched > 0 && l.work.remote_ok > 0, "{s}");
    assert_counts_add_up(&r);
    // The same seed replays the same run.
    assert_eq!(s, run_sim(&rc, 0).summary().join("\n"));
}

/// Regression (issue 13, item 7): counters were folded every 64 loop iterations, so a run
/// that ended in an emulated panic (whose tasks never exit) printed 0 mmaps while 65024
/// frames were mapped. Per-thread counters are exact at the end however the run ended.
#[test]
fn counts_are_exact_when_the_modelled_kernel_panics() {
    let mut rc = config(32, 16, 10, 2);
    rc.machine.set_knob("panic-on-oom", "1").unwrap();
    let r = run_sim(&rc, 0);
    let s = r.summary().join("\n");
    assert!(matches!(r.verdict, Verdict::Panicked { .. }), "{s}");
    assert!(
        load(&r).tasks_left > 0,
        "the panicked machine keeps its tasks: {s}"
    );
    assert!(r.frames.mapped > 0, "{s}");
    assert!(load(&r).work.pages_touched > 0, "{s}");
    assert_counts_add_up(&r);
}

/// An interrupt (SIGINT) ends the load, winds it down and reports: verdict `interrupted`,
/// every task gone, the invariants checked.
#[test]
fn an_interrupt_winds_the_run_down_and_reports() {
    let rc = config(32, 16, 600, 3);
    let r = run_sim(&rc, 2);
    let s = r.summary().join("\n");
    assert_eq!(r.verdict, Verdict::Interrupted { signal: 2 }, "{s}");
    assert_eq!(r.checks, Checks::Full, "{s}");
    assert_eq!(load(&r).interrupted_by, Some(2));
    assert_eq!(load(&r).tasks_left, 0, "{s}");
    assert!(s.contains("interrupted by SIGINT and wound down"), "{s}");
    assert_eq!(r.json()["ending"], "interrupted");
    assert_counts_add_up(&r);
}

/// Regression (issue 13, item 6): a budget of 12,288 tasks ran out after ~40 s and the load
/// lost its pressure. Pids are reused (here `pid_max` is small, so they wrap many times) and
/// processes are respawned for as long as the run lasts: OOM kills keep coming at the same
/// rate from the first third of the run to the last.
#[test]
fn long_runs_keep_their_pressure_as_pids_wrap() {
    let rc = config(16, 8, 45, 4);
    let r = LoadRun::boot(sim_for(&rc, 500), &rc)
        .expect("boot")
        .run(&AtomicI32::new(0));
    let s = r.summary().join("\n");
    assert_eq!(r.verdict, Verdict::Completed, "{s}");
    let l = load(&r);
    assert!(l.tasks_started > 1500, "pids wrapped several times: {s}");
    let third = rc.load_ns() / 3;
    let kills_in = |from: u64| {
        r.victims
            .iter()
            .filter(|v| v.killed && v.at_ns >= from && v.at_ns < from + third)
            .count() as f64
    };
    let (first, last) = (kills_in(0), kills_in(2 * third));
    assert!(first > 10.0, "{first} kills in the first third: {s}");
    assert!(
        last >= first * 0.5 && last <= first * 2.0,
        "kills per third: {first} then {last}\n{s}"
    );
    assert_counts_add_up(&r);
}

/// Regression (issue 13, item 1): when the host refuses threads the run panicked (exit 101).
/// With a thread cap standing in for `pids.max`, the load runs with the tasks it could start,
/// the report says so, and the invariants hold.
#[test]
fn refused_threads_leave_a_warning_not_a_crash() {
    let mut rc = config(32, 16, 2, 5);
    rc.machine = MachineConfig::threads(16 << 20);
    rc.host_cpus = Some(2);
    let exec = ThreadsExecutor::new(ThreadsConfig {
        max_threads: Some(24),
        ..Default::default()
    });
    let r = LoadRun::boot(exec, &rc)
        .expect("boot")
        .run(&AtomicI32::new(0));
    let s = r.summary().join("\n");
    // Real threads: on a host busy enough, killed tasks may still be waiting for a CPU at
    // the bound (the run then says so); either way nothing crashed and the books balance.
    match r.verdict {
        Verdict::Completed => assert_eq!(r.checks, Checks::Full, "{s}"),
        Verdict::TimeLimit => assert!(load(&r).tasks_left > 0, "{s}"),
        _ => panic!("{s}"),
    }
    assert!(load(&r).clones_refused > 0, "{s}");
    assert!(
        s.contains("warning: the host refused") && s.contains("thread creations"),
        "{s}"
    );
    assert_counts_add_up(&r);
}

/// A run gives its machine back: nothing keeps the kernel (and its frame pool, real host
/// memory) alive once the report is built. The livelock-rate bench runs thousands of trials
/// in one process.
#[test]
fn the_machine_is_freed_after_a_run() {
    for interrupt in [0, 2] {
        let rc = config(16, 8, 2, 6);
        let r = LoadRun::boot(sim_for(&rc, mm::task::PID_MAX_DEFAULT), &rc).expect("boot");
        let kernel = std::sync::Arc::downgrade(r.kernel());
        let pool = std::sync::Arc::downgrade(&r.kernel().pool);
        let load = std::sync::Arc::downgrade(r.load());
        let report = r.run(&AtomicI32::new(interrupt));
        assert!(load.upgrade().is_none(), "the load outlived its run");
        assert!(report.oom.kills > 0 || interrupt != 0);
        assert!(kernel.upgrade().is_none(), "the kernel outlived its run");
        assert!(pool.upgrade().is_none(), "the frame pool outlived its run");
    }
}
