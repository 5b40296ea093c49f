//! Anonymous write page faults: the emulated fault (`mm::memory::touch` → `handle_page_fault`:
//! `mmap_lock` for read, VMA lookup, allocate + zero a 4 KiB frame, PTE install, rss, unlock)
//! side by side with the host kernel's anonymous write fault, in one run.
//!
//! Shape (will-it-scale `page_fault1`): each worker loops { mmap a `REGION` private anonymous
//! region; write one byte into each 4 KiB page in order; munmap it }, counting one operation
//! per page written; the munmap is part of the loop (it returns the frames), as in
//! will-it-scale. Region 64 MiB on both sides (will-it-scale uses 128 MiB; the per-page cost
//! does not depend on it). The host region gets `madvise(MADV_NOHUGEPAGE)` so that it takes
//! 4 KiB faults whatever the host's THP mode (the emulator has no THP); the host minor faults
//! per page are reported to show that every page did fault.
//!
//! - emulated: tasks of one emulated process (one `MmStruct`) on a `ThreadsExecutor`, over a
//!   512 MiB frame pool created once (pre-faulted, so the host takes no faults for it) and
//!   large enough that the allocator never leaves its fast path (checked: the slow-path
//!   counter stays 0, and frame conservation is checked after every window).
//! - real: OS threads of this process (one address space) against the host kernel.
//!
//! 1 and 2 workers. Every sample runs the four configurations back to back (emulated and
//! real interleaved, so background load hits both alike); windows of `OOMLAB_BENCH_SECS`
//! seconds (default 2), `OOMLAB_BENCH_SAMPLES` samples (default 5), medians reported.
//! Ratios are ratios of medians of this run (paired per-sample ratios are in the JSON).
//!
//! Noise: per window, `/proc/thread-self/schedstat` of every worker splits its time into
//! on a CPU / runnable but waiting for one (other load) / asleep (blocked on `mmap_lock`).
//! A window with more than 10 % run-queue wait is retaken, up to 3 times, the retakes
//! taking at most a quarter of the nominal run time in all; figures "with run-queue wait
//! taken out" are printed and stored as diagnostics, never as the targets.
//!
//! Targets (issue 3): emulated faults/s per thread ≥ 3× the host kernel's, at 1 and at 2
//! threads; emulated 2 threads in one address space ≥ 1.6× one thread (total faults/s).
//!
//! Results: a table and `<target>/oomlab-bench/fault.json`.
//!
//! ```text
//! cargo bench -p mm --bench fault
//! OOMLAB_BENCH_SECS=1 OOMLAB_BENCH_SAMPLES=5 cargo bench -p mm --bench fault
//! ```
//! Under `cargo test --benches` it runs once, briefly, and writes no JSON.

#[cfg(oomlab_loom)]
fn main() {}

#[cfg(not(oomlab_loom))]
mod asbench;
#[cfg(not(oomlab_loom))]
mod common;

#[cfg(not(oomlab_loom))]
fn main() {
    bench::main()
}

#[cfg(not(oomlab_loom))]
mod bench {
    use crate::asbench::{self, run_window, Body, Runner, Sample};
    use crate::common::{self, median, num, BenchArgs};
    use mm::memory::{attach_mm, mmput, touch};
    use mm::mm_types::{MmKnobs, MmStruct};
    use mm::mmap::{mmap, munmap, MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE};
    use mm::page_alloc::{AllocStat, FramePool, PoolConfig};
    use serde_json::{json, Map, Value};
    use std::sync::Arc;
    use std::time::Duration;

    const SECTION: &str = "page_fault";
    const PAGE: usize = 4096;
    const POOL_BYTES: u64 = 512 << 20;
    const REGION: usize = 64 << 20;
    const TARGET_VS_REAL: f64 = 3.0;
    const TARGET_SCALING_2T: f64 = 1.6;

    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    enum Side {
        Emulated,
        Real,
    }

    impl Side {
        fn name(self) -> &'static str {
            match self {
                Side::Emulated => "emulated",
                Side::Real => "real",
            }
        }
    }

    /// page_fault1 on the emulated address space `mm` (run inside a task of its process).
    fn emulated_body(mm: Arc<MmStruct>, region: usize) -> Body {
        Box::new(move |w| {
            if !mm::sched::with_current(|t| t.mm_is(&mm)) {
                attach_mm(&mm);
            }
            w.ready();
            let mut ops = 0u64;
            'outer: loop {
                let a = mmap(
                    &mm,
                    0,
                    region as u64,
                    PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS,
                )
                .expect("emulated mmap");
                let mut off = 0;
                while off < region {
                    touch(&mm, a + off as u64, true, 1).expect("emulated write fault");
                    ops += 1;
                    off += PAGE;
                    if !w.running() {
                        munmap(&mm, a, region as u64).expect("emulated munmap");
                        break 'outer;
                    }
                }
                munmap(&mm, a, region as u64).expect("emulated munmap");
            }
            ops
        })
    }

    /// page_fault1 on the host kernel.
    fn real_body(region: usize) -> Body {
        Box::new(move |w| {
            w.ready();
            let mut ops = 0u64;
            'outer: loop {
                let p = asbench::host_mmap_anon(region);
                // SAFETY: advice on our own fresh mapping.
                unsafe { libc::madvise(p.cast(), region, libc::MADV_NOHUGEPAGE) };
                let mut off = 0;
                while off < region {
                    // SAFETY: inside our mapping; a volatile store so it is not elided.
                    unsafe { std::ptr::write_volatile(p.add(off), 1u8) };
                    ops += 1;
                    off += PAGE;
                    if !w.running() {
                        asbench::host_munmap(p, region);
                        break 'outer;
                    }
                }
                asbench::host_munmap(p, region);
            }
            ops
        })
    }

    struct Emu {
        pool: Arc<FramePool>,
    }

    /// One window of `side` with `n` workers.
    fn run_one(emu: &Emu, side: Side, n: usize, region: usize, window: Duration) -> Sample {
        match side {
            Side::Emulated => {
                let pool = &emu.pool;
                let slow0 = pool.stats().get(AllocStat::SlowpathEntries);
                let mm = MmStruct::new(pool, MmKnobs::default(), "fault-bench");
                let s = run_window(Runner::Tasks, "fault", n, window, |_| {
                    emulated_body(mm.clone(), region)
                });
                mmput(&mm);
                let slow = pool.stats().get(AllocStat::SlowpathEntries) - slow0;
                assert_eq!(
                    slow, 0,
                    "the emulated allocator entered its slow path: the pool is too small"
                );
                let a = pool.accounting();
                assert_eq!(
                    a.allocated + a.mapped,
                    0,
                    "frames left after the window: {a}"
                );
                pool.check_conservation()
                    .expect("frame conservation after the window");
                s
            }
            Side::Real => run_window(Runner::OsThreads, "fault", n, window, |_| real_body(region)),
        }
    }

    const CONFIGS: [(Side, usize); 4] = [
        (Side::Emulated, 1),
        (Side::Real, 1),
        (Side::Emulated, 2),
        (Side::Real, 2),
    ];

    fn summarize(samples: &[Sample], region: usize) -> Value {
        let f = |g: &dyn Fn(&Sample) -> f64| median(&samples.iter().map(g).collect::<Vec<_>>());
        let pages_per_region = (region / PAGE) as f64;
        json!({
            "faults_per_sec_total_median": num(f(&|s| s.ops_per_sec())),
            "faults_per_sec_per_thread_median": num(f(&|s| s.ops_per_sec_per_worker())),
            "ns_per_fault_per_thread_median": num(f(&|s| 1e9 / s.ops_per_sec_per_worker())),
            "faults_per_sec_per_thread_runq_adjusted_median": num(f(&|s| s
                .ops_per_available_sec_per_worker())),
            "cpu_cores_median": num(f(&|s| s.cpu_cores)),
            "worker_on_cpu_share_median": num(f(&|s| s.on_cpu_share())),
            "worker_runq_wait_share_median": num(f(&|s| s.runq_wait_share())),
            "worker_asleep_share_median": num(f(&|s| s.asleep_share())),
            "retakes_total": samples.iter().map(|s| s.retakes).sum::<u32>(),
            "host_minflt_per_fault_median": num(f(&|s| s.host_minflt as f64 / s.ops.max(1) as f64)),
            "rwsem_slowpath_per_region_median": num(f(&|s| s.rwsem_slow
                .map_or(f64::NAN, |x| x as f64 * pages_per_region / s.ops.max(1) as f64))),
            "rwsem_sleeps_per_region_median": num(f(&|s| s.rwsem_sleeps
                .map_or(f64::NAN, |x| x as f64 * pages_per_region / s.ops.max(1) as f64))),
            "samples": samples.iter().map(|s| json!({
                "faults_per_sec_total": num(s.ops_per_sec()),
                "per_thread_faults": s.per_worker_ops,
                "secs": num(s.secs),
                "cpu_cores": num(s.cpu_cores),
                "worker_on_cpu_share": num(s.on_cpu_share()),
                "worker_runq_wait_share": num(s.runq_wait_share()),
                "retakes": s.retakes,
                "host_minflt": s.host_minflt,
                "rwsem_slowpath": s.rwsem_slow,
                "rwsem_sleeps": s.rwsem_sleeps,
            })).collect::<Vec<_>>(),
        })
    }

    pub fn main() {
        let args = BenchArgs::parse();
        if !args.selects(SECTION) {
            return;
        }
        let (window, nsamples, pool_bytes, region) = if args.bench_mode {
            (
                Duration::from_secs_f64(common::env_secs(2.0)),
                common::env_usize("OOMLAB_BENCH_SAMPLES", 5),
                POOL_BYTES,
                REGION,
            )
        } else {
            (Duration::from_millis(50), 1, 64 << 20, 4 << 20)
        };
        let load0 = asbench::loadavg_1m();
        let pool = FramePool::new(PoolConfig {
            bytes: pool_bytes,
            ..Default::default()
        })
        .unwrap_or_else(|e| panic!("building the {pool_bytes}-byte frame pool: {e}"));
        let emu = Emu { pool };
        println!(
            "== {SECTION}: anonymous write faults, {} MiB regions, {:.2} s windows, {nsamples} \
             sample(s), medians; host kernel {}, THP {}, load average {load0:.2}, {} ==",
            region >> 20,
            window.as_secs_f64(),
            asbench::host_kernel(),
            asbench::host_thp_mode(),
            asbench::host_priority()
        );
        if !args.bench_mode {
            println!("{}", asbench::SMOKE_NOTE);
        }

        // Warm-up (code, allocator arenas, the page-table pages of the emulated mm).
        for &(side, n) in &CONFIGS {
            run_one(
                &emu,
                side,
                n,
                region,
                Duration::from_millis(100).min(window),
            );
        }

        // Retakes may add a quarter of the nominal time at most.
        let retaker =
            asbench::Retaker::new(window.mul_f64((CONFIGS.len() * nsamples) as f64 * 0.25));
        let mut per: Vec<Vec<Sample>> = vec![Vec::new(); CONFIGS.len()];
        for s in 0..nsamples {
            for (ci, &(side, n)) in CONFIGS.iter().enumerate() {
                let r = retaker.run(|| run_one(&emu, side, n, region, window));
                println!(
                    "  sample {s} {:<8} T={n}: {:>12.0} faults/s total {:>12.0} per thread \
                     ({:>5.0} ns/fault/thread)  {}  host minflt/fault {:.3}{}",
                    side.name(),
                    r.ops_per_sec(),
                    r.ops_per_sec_per_worker(),
                    1e9 / r.ops_per_sec_per_worker(),
                    asbench::time_split(&r),
                    r.host_minflt as f64 / r.ops.max(1) as f64,
                    match (r.rwsem_slow, r.rwsem_sleeps) {
                        (Some(a), Some(b)) => format!("  rwsem slow path {a}, sleeps {b}"),
                        _ => String::new(),
                    }
                );
                per[ci].push(r);
            }
        }

        let med =
            |ci: usize, g: fn(&Sample) -> f64| median(&per[ci].iter().map(g).collect::<Vec<_>>());
        let per_thread = |ci: usize| med(ci, |s| s.ops_per_sec_per_worker());
        let total = |ci: usize| med(ci, |s| s.ops_per_sec());
        // Indices into CONFIGS.
        let (e1, r1, e2, r2) = (0, 1, 2, 3);
        let ratio_1t = per_thread(e1) / per_thread(r1);
        let ratio_2t = per_thread(e2) / per_thread(r2);
        let scaling_emu = total(e2) / total(e1);
        let scaling_real = total(r2) / total(r1);
        // The same with run-queue wait (other load on the machine) taken out.
        let adj = |ci: usize| med(ci, |s| s.ops_per_available_sec_per_worker());
        let ratio_1t_adj = adj(e1) / adj(r1);
        let ratio_2t_adj = adj(e2) / adj(r2);
        let scaling_emu_adj = 2.0 * adj(e2) / adj(e1);
        let scaling_real_adj = 2.0 * adj(r2) / adj(r1);
        // Paired per-sample ratios (same sample = same background load).
        let paired = |a: usize, b: usize, g: fn(&Sample) -> f64| {
            (0..nsamples)
                .map(|s| g(&per[a][s]) / g(&per[b][s]))
                .collect::<Vec<_>>()
        };
        let paired_1t = paired(e1, r1, |s| s.ops_per_sec_per_worker());
        let paired_2t = paired(e2, r2, |s| s.ops_per_sec_per_worker());
        let paired_scaling = paired(e2, e1, |s| s.ops_per_sec());

        println!(
            "\n{:>7} {:>18} {:>18} {:>14} {:>14} {:>10}",
            "threads",
            "emulated /s/thread",
            "real /s/thread",
            "emu ns/fault",
            "real ns/fault",
            "emu/real"
        );
        for (n, e, r) in [(1, e1, r1), (2, e2, r2)] {
            println!(
                "{:>7} {:>18.0} {:>18.0} {:>14.0} {:>14.0} {:>9.2}x",
                n,
                per_thread(e),
                per_thread(r),
                1e9 / per_thread(e),
                1e9 / per_thread(r),
                per_thread(e) / per_thread(r)
            );
        }
        println!(
            "2 threads / 1 thread (total faults/s): emulated {scaling_emu:.2}x (target ≥ \
             {TARGET_SCALING_2T}x), real {scaling_real:.2}x"
        );
        println!(
            "with run-queue wait taken out (a free CPU per thread): emulated/real per thread 1T \
             {ratio_1t_adj:.2}x, 2T {ratio_2t_adj:.2}x; 2T/1T emulated {scaling_emu_adj:.2}x, \
             real {scaling_real_adj:.2}x"
        );
        let pass_1t = ratio_1t >= TARGET_VS_REAL;
        let pass_2t = ratio_2t >= TARGET_VS_REAL;
        let pass_scaling = scaling_emu >= TARGET_SCALING_2T;
        println!(
            "targets: emulated/real per thread ≥ {TARGET_VS_REAL}x: 1T {ratio_1t:.2}x {}, 2T \
             {ratio_2t:.2}x {}; 2T scaling ≥ {TARGET_SCALING_2T}x: {scaling_emu:.2}x {}",
            verdict(pass_1t),
            verdict(pass_2t),
            verdict(pass_scaling)
        );

        if args.bench_mode {
            let mut rows = Vec::new();
            for (n, e, r) in [(1usize, e1, r1), (2, e2, r2)] {
                rows.push(json!({
                    "threads": n,
                    "emulated": summarize(&per[e], region),
                    "real": summarize(&per[r], region),
                    "ratio_emulated_vs_real_per_thread": num(per_thread(e) / per_thread(r)),
                }));
            }
            let mut sections = Map::new();
            sections.insert(
                SECTION.into(),
                json!({
                    "window_s": window.as_secs_f64(),
                    "samples": nsamples,
                    "region_bytes": region,
                    "pool_bytes": pool_bytes,
                    "host_kernel": asbench::host_kernel(),
                    "host_thp": asbench::host_thp_mode(),
                    "host_priority": asbench::host_priority(),
                    "host_madvise_nohugepage": true,
                    "loadavg_1m_at_start": num(load0),
                    "retake_if_runq_share_above": asbench::MAX_RUNQ_SHARE,
                    "max_retakes_per_sample": asbench::MAX_RETAKES,
                    "rows": rows,
                    "ratio_emulated_vs_real_per_thread_1t": num(ratio_1t),
                    "ratio_emulated_vs_real_per_thread_2t": num(ratio_2t),
                    "paired_ratios_1t": nums(&paired_1t),
                    "paired_ratios_2t": nums(&paired_2t),
                    "scaling_2t_vs_1t_emulated": num(scaling_emu),
                    "scaling_2t_vs_1t_real": num(scaling_real),
                    "paired_scaling_emulated": nums(&paired_scaling),
                    "runq_adjusted": {
                        "note": asbench::RUNQ_ADJUSTED_NOTE,
                        "ratio_emulated_vs_real_per_thread_1t": num(ratio_1t_adj),
                        "ratio_emulated_vs_real_per_thread_2t": num(ratio_2t_adj),
                        "scaling_2t_vs_1t_emulated": num(scaling_emu_adj),
                        "scaling_2t_vs_1t_real": num(scaling_real_adj),
                    },
                    "targets": {
                        "emulated_vs_real_per_thread_min": TARGET_VS_REAL,
                        "emulated_scaling_2t_vs_1t_min": TARGET_SCALING_2T,
                    },
                    "pass_vs_real_1t": pass_1t,
                    "pass_vs_real_2t": pass_2t,
                    "pass_scaling_2t": pass_scaling,
                    "pass_all": pass_1t && pass_2t && pass_scaling,
                }),
            );
            let command = format!(
                "OOMLAB_BENCH_SECS={} OOMLAB_BENCH_SAMPLES={nsamples} cargo bench -p mm \
                 --bench fault",
                window.as_secs_f64()
            );
            common::write_json("fault", &command, sections);
        }
    }

    fn nums(xs: &[f64]) -> Vec<Value> {
        xs.iter().map(|&x| num(x)).collect()
    }

    fn verdict(ok: bool) -> &'static str {
        if ok {
            "PASS"
        } else {
            "MISS"
        }
    }
}
