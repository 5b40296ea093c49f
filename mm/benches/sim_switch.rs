//! Task switch rate of the sim executor (`mm::sched::sim::Sim`).
//!
//! N tasks (N = 2, 8, 64, 256) each call `cond_resched()` M times, M chosen so that a run makes
//! about `OOMLAB_BENCH_SWITCHES` switches (default 2 000 000); the seeded picker chooses the
//! next task at every yield. One *switch* is one step of the sim: pick a runnable task, resume
//! its coroutine, run it to its next yield point and come back (`Sim::steps()`, so the N final
//! steps that return from the task functions count too). Only `Sim::run()` is timed; building
//! the sim and its stacks is not. `OOMLAB_BENCH_SAMPLES` samples (default 5), medians reported.
//! Target: ≥ 5 M switches/s at every N.
//!
//! Results: a table and `<target>/oomlab-bench/sim_switch.json`.
//!
//! ```text
//! cargo bench -p mm --bench sim_switch
//! ```
//! Under `cargo test --benches` it runs once, briefly, and writes no JSON.

#[cfg(oomlab_loom)]
fn main() {}

#[cfg(not(oomlab_loom))]
mod common;

#[cfg(not(oomlab_loom))]
fn main() {
    bench::main()
}

#[cfg(not(oomlab_loom))]
mod bench {
    use crate::common::{self, median, num, BenchArgs};
    use mm::sched::sim::{Sim, SimConfig, SimOutcome};
    use mm::task::CloneKind;
    use serde_json::{json, Map};
    use std::time::Instant;

    const TASKS: [usize; 4] = [2, 8, 64, 256];
    const TARGET_PER_SEC: f64 = 5e6;
    const SECTION: &str = "sim_switch";

    /// One timed run: (switches, seconds).
    fn run_once(ntasks: usize, per_task: u64, seed: u64) -> (u64, f64) {
        let mut sim = Sim::new(SimConfig {
            seed,
            max_steps: u64::MAX,
            ..Default::default()
        });
        for i in 0..ntasks {
            sim.spawn(
                CloneKind::Process {
                    comm: format!("yield{i}"),
                },
                move || {
                    for _ in 0..per_task {
                        mm::sched::cond_resched();
                    }
                },
            )
            .expect("spawning a sim task");
        }
        let t = Instant::now();
        let outcome = sim.run();
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(outcome, SimOutcome::AllExited, "sim run did not finish");
        let steps = sim.steps();
        assert_eq!(
            steps,
            ntasks as u64 * (per_task + 1),
            "unexpected step count"
        );
        (steps, secs)
    }

    pub fn main() {
        let args = BenchArgs::parse();
        if !args.selects(SECTION) {
            return;
        }
        let (total, nsamples, counts): (u64, usize, &[usize]) = if args.bench_mode {
            (
                common::env_usize("OOMLAB_BENCH_SWITCHES", 2_000_000) as u64,
                common::env_usize("OOMLAB_BENCH_SAMPLES", 5),
                &TASKS,
            )
        } else {
            (10_000, 1, &[2, 8])
        };

        println!("== {SECTION}: ~{total} switches per run, {nsamples} sample(s), medians ==");
        let mut rows = Vec::new();
        for &n in counts {
            let per_task = (total / n as u64).max(1);
            // Warm-up run (page-faults the allocator's arenas and the code in).
            run_once(n, per_task.min(10_000), 0);
            let mut rates = Vec::new();
            for s in 0..nsamples {
                let (switches, secs) = run_once(n, per_task, s as u64 + 1);
                let rate = switches as f64 / secs;
                println!(
                    "  N={n:<3} sample {s}: {switches} switches in {:.3} s = {:.2} M/s ({:.0} ns/switch)",
                    secs,
                    rate / 1e6,
                    1e9 / rate
                );
                rates.push(rate);
            }
            let med = median(&rates);
            rows.push(json!({
                "tasks": n,
                "switches_per_run": n as u64 * (per_task + 1),
                "switches_per_sec_median": num(med),
                "ns_per_switch_median": num(1e9 / med),
                "ratio_vs_target": num(med / TARGET_PER_SEC),
                "pass": med >= TARGET_PER_SEC,
                "samples_switches_per_sec": rates.iter().map(|&r| num(r)).collect::<Vec<_>>(),
            }));
        }

        println!(
            "\n{:>5} {:>16} {:>14} {:>12}",
            "tasks", "switches/s", "ns/switch", "vs 5 M/s"
        );
        for r in &rows {
            let rate = r["switches_per_sec_median"].as_f64().unwrap_or(f64::NAN);
            println!(
                "{:>5} {:>14.2} M {:>14.0} {:>11.2}x",
                r["tasks"].to_string(),
                rate / 1e6,
                1e9 / rate,
                rate / TARGET_PER_SEC
            );
        }

        if args.bench_mode {
            let mut sections = Map::new();
            sections.insert(
                SECTION.into(),
                json!({
                    "samples": nsamples,
                    "target_switches_per_sec_min": TARGET_PER_SEC,
                    "rows": rows,
                    "pass_all": rows.iter().all(|r| r["pass"] == true),
                }),
            );
            let command = format!(
                "OOMLAB_BENCH_SWITCHES={total} OOMLAB_BENCH_SAMPLES={nsamples} cargo bench -p mm --bench sim_switch"
            );
            common::write_json("sim_switch", &command, sections);
        }
    }
}
