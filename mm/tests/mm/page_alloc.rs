//! The frame pool and the page allocator: watermarks, accounting, assertions, poisoning, and the
//! slow path (reclaim → OOM → retry / fail) on the sim executor with test doubles of the OOM
//! killer; the per-CPU fast path under real parallelism on the threads executor.

use mm::gfp::Gfp;
use mm::page_alloc::{
    compute_watermarks, min_free_kbytes, pcp_high_batch, AllocStat, AllocStatsSnapshot,
    FrameAccounting, FramePool, FrameState, OomControl, OomKiller, Pfn, PoolConfig, PoolError,
    Watermarks,
};
use mm::pgtable::PAGE_SIZE;
use mm::sched::sim::{Sim, SimConfig, SimOutcome};
use mm::sched::threads::{ThreadsConfig, ThreadsExecutor};
use mm::sched::{self};
use mm::task::{send_sig, CloneKind, Signal};
use rand_xoshiro::rand_core::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

const MIB: u64 = 1 << 20;

fn process(comm: &str) -> CloneKind {
    CloneKind::Process {
        comm: comm.to_string(),
    }
}

fn pool(bytes: u64, poison: bool) -> Arc<FramePool> {
    FramePool::new(PoolConfig {
        bytes,
        poison,
        // These tests count slow-path rounds per step of virtual time: no reclaim cost.
        reclaim_cost_ns: 0,
    })
    .expect("pool")
}

fn sim(seed: u64, max_time_ns: u64) -> Sim {
    Sim::new(SimConfig {
        seed,
        max_time_ns,
        ..Default::default()
    })
}

/// Allocate from outside any task until the allocator refuses (it stops at the MIN watermark
/// after draining the pcp lists); returns the frames.
fn fill_to_min(p: &FramePool) -> Vec<Pfn> {
    let mut v = Vec::new();
    while let Some(pfn) = p.alloc_page(Gfp::GFP_KERNEL) {
        v.push(pfn);
    }
    v
}

/// Statistics accumulated since `base`.
fn delta(p: &FramePool, base: &AllocStatsSnapshot) -> AllocStatsSnapshot {
    let now = p.stats();
    AllocStatsSnapshot {
        counters: std::array::from_fn(|i| now.counters[i] - base.counters[i]),
        pcp_refills: now.pcp_refills - base.pcp_refills,
        pcp_spills: now.pcp_spills - base.pcp_spills,
        ..now
    }
}

/// A test double of the OOM killer.
struct Double<F>(F);
impl<F: Fn(&OomControl) -> bool + Send + Sync> OomKiller for Double<F> {
    fn out_of_memory(&self, oc: &OomControl) -> bool {
        (self.0)(oc)
    }
}

fn set_killer(p: &FramePool, f: impl Fn(&OomControl) -> bool + Send + Sync + 'static) {
    p.set_oom_killer(Arc::new(Double(f)));
}

// ---- watermarks, sizes, host check ---------------------------------------------------------

/// min_free_kbytes = clamp(int_sqrt(kB * 16), 128, 65536); min = that / 4 pages;
/// tmp = max(min / 4, pages * 10 / 10000); low = min + tmp; high = min + 2 * tmp.
/// Each row computed by hand.
#[test]
fn watermarks_match_the_v4_7_formula() {
    let rows: &[(u64, Watermarks)] = &[
        // 512 KiB = 128 pages: √(512·16)=90 → clamped to 128 kB = 32 pages; tmp = max(8, 0).
        (
            512 * 1024,
            Watermarks {
                min: 32,
                low: 40,
                high: 48,
            },
        ),
        // 4 MiB = 1024 pages: √65536 = 256 kB = 64 pages; tmp = max(16, 1) = 16.
        (
            4 * MIB,
            Watermarks {
                min: 64,
                low: 80,
                high: 96,
            },
        ),
        // 16 MiB = 4096 pages: √262144 = 512 kB = 128 pages; tmp = max(32, 4) = 32.
        (
            16 * MIB,
            Watermarks {
                min: 128,
                low: 160,
                high: 192,
            },
        ),
        // 64 MiB = 16384 pages: √1048576 = 1024 kB = 256 pages; tmp = max(64, 16) = 64.
        (
            64 * MIB,
            Watermarks {
                min: 256,
                low: 320,
                high: 384,
            },
        ),
        // 256 MiB = 65536 pages: √4194304 = 2048 kB = 512 pages; tmp = max(128, 65) = 128.
        (
            256 * MIB,
            Watermarks {
                min: 512,
                low: 640,
                high: 768,
            },
        ),
        // 1 GiB = 262144 pages: √16777216 = 4096 kB = 1024 pages; tmp = max(256, 262) = 262.
        (
            1024 * MIB,
            Watermarks {
                min: 1024,
                low: 1286,
                high: 1548,
            },
        ),
        // 64 GiB = 16777216 pages: √1073741824 = 32768 kB = 8192 pages; tmp = 16777.
        (
            64 << 30,
            Watermarks {
                min: 8192,
                low: 24969,
                high: 41746,
            },
        ),
        // 1 TiB = 268435456 pages: √(2^30·16) = 131072 → clamped to 65536 kB = 16384 pages;
        // tmp = max(4096, 268435) = 268435.
        (
            1 << 40,
            Watermarks {
                min: 16384,
                low: 284819,
                high: 553254,
            },
        ),
    ];
    for (bytes, want) in rows {
        assert_eq!(compute_watermarks(bytes / 4096), *want, "{bytes} bytes");
    }
    assert_eq!(min_free_kbytes(262144), 2048);
    assert_eq!(min_free_kbytes(1), 128);
    assert_eq!(min_free_kbytes(1 << 40), 65536);
}

#[test]
fn pool_reports_its_watermarks_and_pcp_parameters() {
    let p = pool(256 * MIB, false);
    assert_eq!(p.total_pages(), 65536);
    assert_eq!(
        p.watermarks(),
        Watermarks {
            min: 512,
            low: 640,
            high: 768
        }
    );
    // zone_batchsize: 65536/1024 = 64 → /4 = 16 → rounddown_pow_of_two(24) - 1 = 15.
    assert_eq!(p.pcp_params(), (90, 15));
    assert_eq!(
        p.nr_slots(),
        std::thread::available_parallelism().unwrap().get()
    );
    assert_eq!(
        p.accounting(),
        FrameAccounting {
            total: 65536,
            free: 65536,
            ..Default::default()
        }
    );
    p.check_conservation().unwrap();
}

#[test]
fn pcp_batch_matches_zone_batchsize() {
    // (pages, (high, batch))
    let rows = [
        (1024, (0, 1)),      // batch 1 → rounddown(1) - 1 = 0: pcp lists effectively off
        (4096, (0, 1)),      // 4 → 1 → 0
        (16384, (18, 3)),    // 16 → 4 → rounddown(6) - 1 = 3
        (65536, (90, 15)),   // 64 → 16 → rounddown(24) - 1 = 15
        (262144, (186, 31)), // 256 → capped at 128 (512 KiB) → 32 → rounddown(48) - 1 = 31
        (1 << 24, (186, 31)),
    ];
    for (pages, want) in rows {
        assert_eq!(pcp_high_batch(pages), want, "{pages} pages");
    }
}

#[test]
fn bad_sizes_are_refused() {
    for bytes in [0, 4095, 4097, 256 * 1024, 128 * 1024 + 4096] {
        match FramePool::new(PoolConfig {
            bytes,
            poison: false,
            ..PoolConfig::default()
        }) {
            Err(e @ PoolError::BadSize { .. }) => {
                assert!(e.to_string().contains("bad memory pool size"), "{e}")
            }
            other => panic!("{bytes}: expected BadSize, got {other:?}"),
        }
    }
    // The smallest accepted: 2 × high ≤ total (512 KiB: high 48, 128 frames).
    assert_eq!(pool(512 * 1024, false).total_pages(), 128);
}

// ---- frames: zeroing, poisoning, assertions ------------------------------------------------

#[test]
fn allocated_frames_are_zeroed() {
    for poison in [false, true] {
        let p = pool(4 * MIB, poison);
        let frames = fill_to_min(&p);
        assert_eq!(frames.len() as u64, p.total_pages() - p.watermarks().min);
        let mut buf = vec![0u8; PAGE_SIZE as usize];
        for (i, &pfn) in frames.iter().enumerate() {
            p.read_frame(pfn, 0, &mut buf);
            assert!(buf.iter().all(|&b| b == 0), "pfn {pfn} not zeroed");
            p.write_frame(pfn, 0, &[i as u8 | 1; PAGE_SIZE as usize]);
        }
        for &pfn in &frames {
            p.free_page(pfn);
        }
        let again = fill_to_min(&p);
        for &pfn in &again {
            p.read_frame(pfn, 0, &mut buf);
            assert!(buf.iter().all(|&b| b == 0), "reused pfn {pfn} not zeroed");
            p.free_page(pfn);
        }
        p.check_conservation().unwrap();
    }
}

#[test]
#[should_panic(expected = "memory corruption in freed frame")]
fn poison_catches_a_write_after_free() {
    let p = pool(4 * MIB, true);
    let pfn = p.alloc_page(Gfp::GFP_KERNEL).unwrap();
    p.free_page(pfn);
    // A use-after-free write through a stale pointer.
    // SAFETY: inside the mapping; the point of the test is the stale write.
    unsafe { *p.frame_ptr(pfn).add(100) = 0x42 };
    // Reuse every frame: the corrupted one is checked when it is handed out again.
    while let Some(q) = p.alloc_page(Gfp::GFP_KERNEL) {
        let _ = q;
    }
}

#[test]
fn poisoned_frames_hold_the_pattern_while_free() {
    let p = pool(4 * MIB, true);
    let pfn = p.alloc_page(Gfp::GFP_KERNEL).unwrap();
    p.write_frame(pfn, 0, b"secret");
    p.free_page(pfn);
    // SAFETY: reading a free frame of a live pool; nobody else uses this pool.
    let bytes = unsafe { std::slice::from_raw_parts(p.frame_ptr(pfn), PAGE_SIZE as usize) };
    assert!(bytes.iter().all(|&b| b == mm::page_alloc::PAGE_POISON));
}

#[test]
#[should_panic(expected = "double free")]
fn double_free_asserts() {
    let p = pool(4 * MIB, false);
    let pfn = p.alloc_page(Gfp::GFP_KERNEL).unwrap();
    p.free_page(pfn);
    p.free_page(pfn);
}

#[test]
#[should_panic(expected = "still mapped")]
fn freeing_a_mapped_frame_asserts() {
    let p = pool(4 * MIB, false);
    let pfn = p.alloc_page(Gfp::GFP_KERNEL).unwrap();
    p.set_mapped(pfn);
    p.free_page(pfn);
}

#[test]
#[should_panic(expected = "mapped twice")]
fn double_map_asserts() {
    let p = pool(4 * MIB, false);
    let pfn = p.alloc_page(Gfp::GFP_KERNEL).unwrap();
    p.set_mapped(pfn);
    p.set_mapped(pfn);
}

#[test]
#[should_panic(expected = "that is not allocated")]
fn mapping_a_free_frame_asserts() {
    let p = pool(4 * MIB, false);
    p.set_mapped(Pfn(7));
}

#[test]
#[should_panic(expected = "unmapping frame pfn")]
fn unmapping_an_unmapped_frame_asserts() {
    let p = pool(4 * MIB, false);
    let pfn = p.alloc_page(Gfp::GFP_KERNEL).unwrap();
    p.set_unmapped(pfn);
}

#[test]
#[should_panic(expected = "outside the pool")]
fn pfn_out_of_range_asserts() {
    let p = pool(4 * MIB, false);
    let _ = p.frame_ptr(Pfn(1024));
}

#[test]
fn map_unmap_accounting() {
    let p = pool(4 * MIB, false);
    let a = p.alloc_page(Gfp::GFP_HIGHUSER_MOVABLE).unwrap();
    let b = p.alloc_page(Gfp::GFP_HIGHUSER_MOVABLE).unwrap();
    p.set_mapped(a);
    assert_eq!(p.frame_state(a), FrameState::Mapped);
    assert_eq!(p.frame_state(b), FrameState::Allocated);
    let acc = p.accounting();
    assert_eq!((acc.allocated, acc.mapped), (1, 1));
    assert_eq!(acc.free + acc.pcp, 1022);
    p.check_conservation().unwrap();
    p.set_unmapped(a);
    p.free_page(a);
    p.free_page(b);
    p.drain_all_pages();
    assert_eq!(
        p.accounting(),
        FrameAccounting {
            total: 1024,
            free: 1024,
            ..Default::default()
        }
    );
    p.check_conservation().unwrap();
}

/// Random alloc / free / map / unmap / drain sequences against a trivial model: after every
/// step the counters agree with the model, and the full recount agrees with the counters.
#[test]
fn random_sequences_conserve_frames() {
    for seed in 0..40u64 {
        let p = pool(2 * MIB, seed % 4 == 0);
        let total = p.total_pages();
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut held: Vec<(Pfn, bool)> = Vec::new();
        let gfps = [
            Gfp::GFP_KERNEL,
            Gfp::GFP_ATOMIC,
            Gfp::GFP_NOFS,
            Gfp::GFP_NOWAIT,
        ];
        for step in 0..3000 {
            match rng.next_u32() % 100 {
                0..=44 => {
                    let gfp = gfps[rng.next_u32() as usize % gfps.len()];
                    if let Some(pfn) = p.alloc_page(gfp) {
                        assert!(
                            held.iter().all(|(q, _)| *q != pfn),
                            "pfn {pfn} handed out twice"
                        );
                        held.push((pfn, false));
                    }
                }
                45..=79 if !held.is_empty() => {
                    let i = rng.next_u32() as usize % held.len();
                    let (pfn, mapped) = held.swap_remove(i);
                    if mapped {
                        p.set_unmapped(pfn);
                    }
                    p.free_page(pfn);
                }
                80..=89 if !held.is_empty() => {
                    let i = rng.next_u32() as usize % held.len();
                    if !held[i].1 {
                        p.set_mapped(held[i].0);
                        held[i].1 = true;
                    }
                }
                90..=97 if !held.is_empty() => {
                    let i = rng.next_u32() as usize % held.len();
                    if held[i].1 {
                        p.set_unmapped(held[i].0);
                        held[i].1 = false;
                    }
                }
                98..=99 => p.drain_all_pages(),
                _ => {}
            }
            let a = p.accounting();
            let mapped = held.iter().filter(|h| h.1).count() as u64;
            assert_eq!(a.mapped, mapped, "seed {seed} step {step}");
            assert_eq!(
                a.allocated,
                held.len() as u64 - mapped,
                "seed {seed} step {step}"
            );
            assert_eq!(
                a.free + a.pcp,
                total - held.len() as u64,
                "seed {seed} step {step}"
            );
            if step % 50 == 0 {
                p.check_conservation()
                    .unwrap_or_else(|e| panic!("seed {seed} step {step}: {e}"));
            }
        }
        for (pfn, mapped) in held {
            if mapped {
                p.set_unmapped(pfn);
            }
            p.free_page(pfn);
        }
        p.drain_all_pages();
        assert_eq!(p.accounting().free, total, "seed {seed}");
        p.check_conservation().unwrap();
    }
}

/// How deep each kind of request may dig (no pcp caching in a 4 MiB pool: every check is
/// exact). Outside tasks the slow path makes one pass and fails.
#[test]
fn watermark_levels_by_gfp() {
    let p = pool(4 * MIB, false);
    let w = p.watermarks();
    assert_eq!(w.min, 64);
    fill_to_min(&p);
    assert_eq!(p.nr_free_pages(), 64, "GFP_KERNEL stops at min");
    assert!(p.alloc_page(Gfp::GFP_NOWAIT).is_none());
    assert!(p.alloc_page(Gfp::GFP_NOIO).is_none());
    // __GFP_HIGH (ALLOC_HIGH): min - min/2 = 32.
    while p.alloc_page(Gfp::GFP_KERNEL | Gfp::__GFP_HIGH).is_some() {}
    assert_eq!(p.nr_free_pages(), 32);
    // GFP_ATOMIC (ALLOC_HIGH + ALLOC_HARDER): 64 → 32 → 32 - 32/4 = 24.
    while p.alloc_page(Gfp::GFP_ATOMIC).is_some() {}
    assert_eq!(p.nr_free_pages(), 24);
    // __GFP_NOMEMALLOC removes ALLOC_HARDER from GFP_ATOMIC: back to 32, so nothing more.
    assert!(p
        .alloc_page(Gfp::GFP_ATOMIC | Gfp::__GFP_NOMEMALLOC)
        .is_none());
    let s = p.stats();
    assert_eq!(
        s.get(AllocStat::OutOfMemoryCalls),
        0,
        "no OOM killer outside tasks"
    );
    assert!(s.get(AllocStat::SlowpathFail) >= 5);
    p.check_conservation().unwrap();
}

// ---- the slow path on the sim executor ----------------------------------------------------

/// (a) Memory exhausted; the OOM killer "kills" (frees a victim's frames): the allocator
/// retries and succeeds. The killer sees the request's gfp mask and order (GFP_NOFS included:
/// not killing for it is the OOM killer's decision).
#[test]
fn oom_kill_frees_memory_and_the_allocation_succeeds() {
    for gfp in [Gfp::GFP_KERNEL, Gfp::GFP_HIGHUSER_MOVABLE, Gfp::GFP_NOFS] {
        let p = pool(4 * MIB, true);
        let victim_frames = Arc::new(parking_lot::Mutex::new(fill_to_min(&p)));
        let base = p.stats();
        let calls = Arc::new(parking_lot::Mutex::new(Vec::new()));
        {
            let (weak, victim_frames, calls) =
                (Arc::downgrade(&p), victim_frames.clone(), calls.clone());
            set_killer(&p, move |oc| {
                calls.lock().push((*oc, format!("{:#}", oc.gfp)));
                let p = weak.upgrade().unwrap();
                assert_eq!(
                    p.oom_lock().owner(),
                    Some(sched::current().tid()),
                    "called under oom_lock"
                );
                let frames = std::mem::take(&mut *victim_frames.lock());
                let killed = !frames.is_empty();
                for f in frames {
                    p.free_page(f);
                }
                killed
            });
        }
        let mut s = sim(1, u64::MAX);
        let got = Arc::new(parking_lot::Mutex::new(Vec::new()));
        {
            let (p, got) = (p.clone(), got.clone());
            s.spawn(process("hog"), move || {
                for _ in 0..100 {
                    // Allocate first: never hold a host mutex across a sim switch.
                    let pfn = p
                        .alloc_page(gfp)
                        .expect("a non-victim's allocation never fails");
                    got.lock().push(pfn);
                }
            })
            .unwrap();
        }
        assert_eq!(s.run(), SimOutcome::AllExited);
        assert_eq!(got.lock().len(), 100);
        let calls = calls.lock().clone();
        assert_eq!(calls.len(), 1, "{gfp}: one OOM call");
        assert_eq!(calls[0].0, OomControl { gfp, order: 0 });
        assert_eq!(calls[0].1, gfp.log_form().to_string());
        let st = delta(&p, &base);
        assert_eq!(st.get(AllocStat::SlowpathEntries), 1);
        assert_eq!(st.get(AllocStat::SlowpathSuccess), 1);
        assert_eq!(st.get(AllocStat::SlowpathFail), 0);
        assert_eq!(st.get(AllocStat::SlowpathRetries), 1);
        assert_eq!(st.get(AllocStat::OutOfMemoryCalls), 1);
        assert_eq!(st.get(AllocStat::OutOfMemoryProgress), 1);
        assert_eq!(st.get(AllocStat::OomLockContended), 0);
        assert!(st.last_slowpath_success_ns > 0);
        assert_eq!(st.nr_in_slowpath, 0);
        assert!(!p.oom_lock().is_locked());
        for f in got.lock().drain(..) {
            p.free_page(f);
        }
        p.drain_all_pages();
        assert_eq!(p.nr_free_pages(), p.total_pages());
        p.check_conservation().unwrap();
    }
}

/// (b) An OOM victim allocates from the reserve below min down to min/2 (ALLOC_OOM), then
/// fails instead of looping, although the OOM killer keeps reporting progress (the abort rule).
#[test]
fn victim_uses_half_the_reserve_then_fails() {
    let p = pool(64 * MIB, false); // min 256, pcp batch 3: exercises the pcp refill dip
    let filled = fill_to_min(&p);
    let base = p.stats();
    let free0 = p.nr_free_pages();
    assert!(free0 <= 256 && free0 > 256 - 3, "{free0}");
    let oom_calls = Arc::new(AtomicU64::new(0));
    {
        let oom_calls = oom_calls.clone();
        set_killer(&p, move |_| {
            oom_calls.fetch_add(1, Ordering::SeqCst);
            true // "a victim exists": the selection aborts
        });
    }
    let mut s = sim(2, 60 * 1_000_000_000);
    let got = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let t = {
        let (p, got) = (p.clone(), got.clone());
        s.spawn(process("victim"), move || {
            assert!(sched::current().group().set_oom_victim());
            while let Some(pfn) = p.alloc_page(Gfp::GFP_KERNEL) {
                got.lock().push(pfn);
            }
        })
        .unwrap()
    };
    assert_eq!(s.run(), SimOutcome::AllExited, "the victim must not loop");
    assert!(t.has_exited());
    let n = got.lock().len() as u64;
    let a = p.accounting();
    assert_eq!(a.pcp, 0, "drained before failing");
    // ALLOC_OOM: free must stay > min - min/2 = 128 before each grant; a pcp refill of
    // `batch` frames may dip batch - 1 below.
    assert!(a.free <= 128 && a.free >= 128 - 2, "{a}");
    assert_eq!(n, free0 - a.free);
    let st = delta(&p, &base);
    assert_eq!(st.get(AllocStat::AllocOom), n);
    assert_eq!(st.get(AllocStat::SlowpathSuccess), n);
    assert_eq!(st.get(AllocStat::SlowpathFail), 1);
    assert_eq!(oom_calls.load(Ordering::SeqCst), 1);
    for f in got.lock().drain(..).chain(filled) {
        p.free_page(f);
    }
    p.check_conservation().unwrap();
}

/// (c) Non-victims keep retrying while the OOM killer reports progress without freeing
/// anything: the slow path never fails, loops through reclaim → OOM → retry, and lets the sim
/// switch; the run ends at the time limit. Same seed ⇒ same run.
#[test]
fn non_victims_retry_forever() {
    let run = |seed: u64| {
        let p = pool(4 * MIB, false);
        let _filled = fill_to_min(&p);
        let base = p.stats();
        set_killer(&p, |_| true);
        let mut s = sim(seed, 5_000_000); // 5 ms of virtual time
        for i in 0..3 {
            let p = p.clone();
            s.spawn(process(&format!("alloc{i}")), move || {
                let _ = p.alloc_page(Gfp::GFP_KERNEL);
                unreachable!("a GFP_KERNEL allocation of a non-victim returned");
            })
            .unwrap();
        }
        assert_eq!(s.run(), SimOutcome::TimeLimit);
        (s.trace_hash(), s.steps(), delta(&p, &base))
    };
    for seed in [3, 11] {
        let (hash, steps, st) = run(seed);
        assert_eq!(st.get(AllocStat::SlowpathEntries), 3);
        assert_eq!(st.get(AllocStat::SlowpathSuccess), 0);
        assert_eq!(st.get(AllocStat::SlowpathFail), 0);
        assert_eq!(st.nr_in_slowpath, 3);
        assert!(st.get(AllocStat::OutOfMemoryCalls) > 500, "{st:?}");
        assert!(st.get(AllocStat::SlowpathRetries) >= st.get(AllocStat::OutOfMemoryCalls) - 3);
        assert_eq!(st.last_slowpath_success_ns, 0);
        let (hash2, steps2, st2) = run(seed);
        assert_eq!(
            (hash, steps, st),
            (hash2, steps2, st2),
            "seed {seed} not deterministic"
        );
    }
}

/// (d) oom_lock contention, the 4.x shape: the OOM killer sleeps one jiffy after a kill while
/// holding oom_lock; the 8 allocators that lose the trylock sleep one jiffy each (with a wchan
/// naming oom_lock) and retry; everybody gets memory in the end.
#[test]
fn oom_lock_losers_sleep_one_jiffy() {
    for seed in 0..8 {
        let p = pool(4 * MIB, false);
        let stash = Arc::new(parking_lot::Mutex::new(fill_to_min(&p)));
        let base = p.stats();
        let oom_calls = Arc::new(AtomicU64::new(0));
        {
            let (weak, stash, oom_calls): (Weak<FramePool>, _, _) =
                (Arc::downgrade(&p), stash.clone(), oom_calls.clone());
            set_killer(&p, move |_| {
                oom_calls.fetch_add(1, Ordering::SeqCst);
                let p = weak.upgrade().unwrap();
                let mut st = stash.lock();
                let n = st.len().saturating_sub(8);
                for f in st.drain(n..) {
                    p.free_page(f);
                }
                drop(st);
                // 4.x out_of_memory(): schedule_timeout_killable(1) with oom_lock held.
                sched::schedule_timeout_killable(1);
                true
            });
        }
        let mut s = sim(seed, 60 * 1_000_000_000);
        let done = Arc::new(AtomicUsize::new(0));
        let got = Arc::new(parking_lot::Mutex::new(Vec::new()));
        for i in 0..8 {
            let (p, done, got) = (p.clone(), done.clone(), got.clone());
            s.spawn(process(&format!("alloc{i}")), move || {
                for _ in 0..4 {
                    let pfn = p.alloc_page(Gfp::GFP_KERNEL).unwrap();
                    got.lock().push(pfn);
                }
                done.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap();
        }
        let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
        {
            let (tasks, done, seen) = (s.tasks().clone(), done.clone(), seen.clone());
            s.spawn(process("monitor"), move || {
                while done.load(Ordering::SeqCst) < 8 {
                    for t in tasks.tasks() {
                        if let Some(w) = t.wchan() {
                            seen.lock().push((w.func, w.object.to_string()));
                        }
                    }
                    sched::cond_resched();
                }
            })
            .unwrap();
        }
        assert_eq!(s.run(), SimOutcome::AllExited, "seed {seed}");
        assert_eq!(got.lock().len(), 32);
        let st = delta(&p, &base);
        assert!(
            st.get(AllocStat::OomLockContended) > 0,
            "seed {seed}: {st:?}"
        );
        assert!(oom_calls.load(Ordering::SeqCst) >= 4);
        assert_eq!(st.get(AllocStat::SlowpathFail), 0);
        // Virtual time moved by whole jiffies of sleeping (HZ = 1000).
        assert!(s.now_ns() >= 2_000_000, "seed {seed}: {} ns", s.now_ns());
        let seen = seen.lock();
        assert!(
            seen.iter()
                .any(|(f, o)| *f == "__alloc_pages_may_oom" && o == "oom_lock"),
            "seed {seed}: {seen:?}"
        );
        assert!(!p.oom_lock().is_locked());
        assert_eq!(p.oom_lock().owner_word(), 0);
        for f in got.lock().drain(..) {
            p.free_page(f);
        }
        p.check_conservation().unwrap();
    }
}

/// (e) A dying task (SIGKILL pending) enters the slow path; the OOM killer self-marks it as a
/// victim (out_of_memory() step 3, `task_will_free_mem(current)`) and reports progress; the
/// task then allocates from the reserve and finally bails out with None instead of looping.
#[test]
fn dying_task_self_marked_bails_out() {
    let p = pool(64 * MIB, false);
    let _filled = fill_to_min(&p);
    let base = p.stats();
    let free0 = p.nr_free_pages();
    let oom_calls = Arc::new(AtomicU64::new(0));
    {
        let oom_calls = oom_calls.clone();
        set_killer(&p, move |_| {
            oom_calls.fetch_add(1, Ordering::SeqCst);
            let cur = sched::current();
            if cur.fatal_signal_pending() {
                cur.group().set_oom_victim();
                return true;
            }
            false
        });
    }
    let mut s = sim(5, 60 * 1_000_000_000);
    let n = Arc::new(AtomicU64::new(0));
    let t = {
        let (p, n) = (p.clone(), n.clone());
        s.spawn(process("dying"), move || {
            send_sig(Signal::Kill, &sched::current());
            assert!(!sched::current().group().is_oom_victim());
            while p.alloc_page(Gfp::GFP_KERNEL).is_some() {
                n.fetch_add(1, Ordering::SeqCst);
            }
        })
        .unwrap()
    };
    assert_eq!(s.run(), SimOutcome::AllExited);
    assert!(t.group().is_oom_victim());
    // Self-marking (first OOM call), then the final failure (second call).
    assert_eq!(oom_calls.load(Ordering::SeqCst), 2);
    let a = p.accounting();
    assert!(a.free <= 128 && a.free >= 126, "{a}");
    assert_eq!(n.load(Ordering::SeqCst), free0 - a.free);
    assert_eq!(delta(&p, &base).get(AllocStat::SlowpathFail), 1);
}

/// Without an OOM killer the OOM step makes no progress: the allocation fails (as with
/// `oom_killer_disabled`).
#[test]
fn no_oom_killer_means_the_allocation_fails() {
    let p = pool(4 * MIB, false);
    let _filled = fill_to_min(&p);
    let base = p.stats();
    let mut s = sim(6, 60 * 1_000_000_000);
    let r = Arc::new(parking_lot::Mutex::new(None));
    {
        let (p, r) = (p.clone(), r.clone());
        s.spawn(process("a"), move || {
            *r.lock() = Some(p.alloc_page(Gfp::GFP_KERNEL))
        })
        .unwrap();
    }
    assert_eq!(s.run(), SimOutcome::AllExited);
    assert_eq!(*r.lock(), Some(None));
    let st = delta(&p, &base);
    assert_eq!(st.get(AllocStat::OutOfMemoryCalls), 1);
    assert_eq!(st.get(AllocStat::OutOfMemoryProgress), 0);
    assert_eq!(st.get(AllocStat::SlowpathFail), 1);
}

/// `__GFP_NORETRY` fails after one reclaim round without calling the OOM killer;
/// `__GFP_NOFAIL` gets the no-watermark attempt after out_of_memory() even when it reports
/// no progress; GFP_ATOMIC never sleeps and never calls it.
#[test]
fn noretry_nofail_and_atomic() {
    let p = pool(4 * MIB, false);
    let _filled = fill_to_min(&p);
    let base = p.stats();
    let oom_calls = Arc::new(AtomicU64::new(0));
    {
        let oom_calls = oom_calls.clone();
        set_killer(&p, move |_| {
            oom_calls.fetch_add(1, Ordering::SeqCst);
            false
        });
    }
    let mut s = sim(7, 60 * 1_000_000_000);
    let out = Arc::new(parking_lot::Mutex::new(Vec::new()));
    {
        let (p, out, oom_calls) = (p.clone(), out.clone(), oom_calls.clone());
        s.spawn(process("a"), move || {
            let r = p.alloc_page(Gfp::GFP_KERNEL | Gfp::__GFP_NORETRY);
            out.lock()
                .push(("noretry", r.is_some(), oom_calls.load(Ordering::SeqCst)));
            let r = p.alloc_page(Gfp::GFP_KERNEL | Gfp::__GFP_NOFAIL);
            out.lock()
                .push(("nofail", r.is_some(), oom_calls.load(Ordering::SeqCst)));
            let r = p.alloc_page(Gfp::GFP_NOWAIT);
            out.lock()
                .push(("nowait", r.is_some(), oom_calls.load(Ordering::SeqCst)));
        })
        .unwrap();
    }
    assert_eq!(s.run(), SimOutcome::AllExited);
    assert_eq!(
        *out.lock(),
        vec![
            ("noretry", false, 0),
            ("nofail", true, 1),
            ("nowait", false, 1)
        ]
    );
    assert_eq!(p.nr_free_pages(), 63, "NOFAIL dipped below min");
    assert_eq!(delta(&p, &base).get(AllocStat::OutOfMemoryCalls), 1);
}

// ---- the per-CPU fast path under real parallelism -----------------------------------------

/// Tasks on the threads executor churn alloc / map / unmap / free on their own frames; each
/// frame carries its owner's stamp, checked before it is freed (a frame handed to two owners
/// would be caught). Conservation holds at the end.
#[test]
fn threads_pcp_churn_conserves_frames() {
    let p = pool(64 * MIB, false);
    let exec = ThreadsExecutor::new(ThreadsConfig::default());
    const TASKS: u64 = 4;
    for i in 0..TASKS {
        let p = p.clone();
        exec.spawn(process(&format!("churn{i}")), move || {
            let me = sched::current().tid();
            let stamp = me.to_le_bytes();
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(i);
            let mut held: Vec<(Pfn, bool)> = Vec::new();
            let mut buf = [0u8; 4];
            for _ in 0..20_000 {
                let r = rng.next_u32();
                if held.len() < 8 || (r % 2 == 0 && held.len() < 512) {
                    let pfn = p
                        .alloc_page(Gfp::GFP_HIGHUSER_MOVABLE)
                        .expect("plenty of memory");
                    p.read_frame(pfn, 0, &mut buf);
                    assert_eq!(buf, [0; 4], "frame not zeroed");
                    p.write_frame(pfn, 0, &stamp);
                    let mapped = r % 3 == 0;
                    if mapped {
                        p.set_mapped(pfn);
                    }
                    held.push((pfn, mapped));
                } else {
                    let (pfn, mapped) = held.swap_remove(r as usize % held.len());
                    p.read_frame(pfn, 0, &mut buf);
                    assert_eq!(buf, stamp, "pfn {pfn} was handed to another owner");
                    if mapped {
                        p.set_unmapped(pfn);
                    }
                    p.free_page(pfn);
                }
            }
            for (pfn, mapped) in held {
                if mapped {
                    p.set_unmapped(pfn);
                }
                p.free_page(pfn);
            }
        })
        .unwrap();
    }
    exec.join();
    p.check_conservation().unwrap();
    let a = p.accounting();
    assert_eq!((a.allocated, a.mapped), (0, 0));
    assert_eq!(a.free + a.pcp, a.total);
    let st = p.stats();
    assert!(st.pcp_refills > 0 && st.pcp_spills > 0, "{st:?}");
    assert_eq!(st.get(AllocStat::SlowpathEntries), 0);
    p.drain_all_pages();
    assert_eq!(p.nr_free_pages(), p.total_pages());
    p.check_conservation().unwrap();
}

/// `release_unmapped` (the zap's mmu_gather flush): frames whose last reference the mapping
/// held are freed onto the pcp list in one pass; a frame pinned with `get_page` stays
/// Allocated until its last `put_page`; accounting is conserved at every step.
#[test]
fn release_unmapped_frees_unpinned_frames_and_keeps_pinned_ones() {
    let p = pool(16 * MIB, false);
    let frames: Vec<Pfn> = (0..700)
        .map(|_| p.alloc_page(Gfp::GFP_HIGHUSER_MOVABLE).unwrap())
        .collect();
    for &f in &frames {
        p.set_mapped(f);
    }
    let pinned = frames[600];
    p.get_page(pinned);
    let before = p.accounting();
    assert_eq!((before.allocated, before.mapped), (0, 700));
    // More than one internal batch (512) in one call.
    p.release_unmapped(&frames);
    let after = p.accounting();
    assert_eq!(
        (after.allocated, after.mapped),
        (1, 0),
        "only the pinned frame is still allocated"
    );
    assert_eq!(after.free + after.pcp, before.free + before.pcp + 699);
    p.check_conservation().unwrap();
    assert_eq!(p.frame_state(pinned), FrameState::Allocated);
    assert_eq!(p.page_count(pinned), 1);
    for &f in frames.iter().filter(|&&f| f != pinned) {
        assert!(
            matches!(p.frame_state(f), FrameState::Pcp | FrameState::Free),
            "pfn {f} not freed: {:?}",
            p.frame_state(f)
        );
        assert_eq!(p.page_count(f), 0);
    }
    p.put_page(pinned);
    assert!(matches!(
        p.frame_state(pinned),
        FrameState::Pcp | FrameState::Free
    ));
    p.drain_all_pages();
    let end = p.accounting();
    assert_eq!(
        (end.free, end.pcp, end.allocated, end.mapped),
        (end.total, 0, 0, 0)
    );
    p.check_conservation().unwrap();
}

#[test]
#[should_panic(expected = "unmapping and freeing frame pfn")]
fn release_unmapped_of_an_unmapped_frame_asserts() {
    let p = pool(4 * MIB, false);
    let pfn = p.alloc_page(Gfp::GFP_KERNEL).unwrap();
    p.release_unmapped(&[pfn]);
}

#[test]
#[should_panic(expected = "unmapping frame pfn")]
fn release_unmapped_twice_asserts() {
    let p = pool(4 * MIB, false);
    let pfn = p.alloc_page(Gfp::GFP_KERNEL).unwrap();
    p.set_mapped(pfn);
    p.release_unmapped(&[pfn]);
    p.release_unmapped(&[pfn]);
}

/// With poisoning on, frames freed by a batch release are poisoned: writing one after the
/// release is caught when it is handed out again.
#[test]
fn release_unmapped_poisons_freed_frames() {
    let p = pool(4 * MIB, true);
    let pfn = p.alloc_page(Gfp::GFP_KERNEL).unwrap();
    p.set_mapped(pfn);
    p.release_unmapped(&[pfn]);
    // SAFETY: test-only peek at a freed frame of our own pool.
    let first = unsafe { *p.frame_ptr(pfn) };
    assert_eq!(first, mm::page_alloc::PAGE_POISON);
}

/// A pinner that drops its reference before the zap's release: the release then holds the
/// last reference and frees the frame.
#[test]
fn release_unmapped_after_the_pin_was_dropped_frees() {
    let p = pool(4 * MIB, false);
    let pfn = p.alloc_page(Gfp::GFP_HIGHUSER_MOVABLE).unwrap();
    p.set_mapped(pfn);
    p.get_page(pfn);
    p.put_page(pfn);
    assert_eq!(p.frame_state(pfn), FrameState::Mapped);
    p.release_unmapped(&[pfn]);
    assert!(matches!(
        p.frame_state(pfn),
        FrameState::Pcp | FrameState::Free
    ));
    p.check_conservation().unwrap();
}

/// Bounded race on real threads: a pinner's `put_page` against the zap's `release_unmapped`
/// of the same frames, in both orders, many rounds. Whoever drops the last reference frees
/// the frame exactly once (a wrong order of unmap and put would assert "freeing frame ...
/// not allocated"); every frame ends free and accounting balances.
#[test]
fn release_unmapped_races_pinners_put_page() {
    let p = pool(16 * MIB, false);
    for round in 0..200 {
        let frames: Vec<Pfn> = (0..64)
            .map(|_| p.alloc_page(Gfp::GFP_HIGHUSER_MOVABLE).unwrap())
            .collect();
        for &f in &frames {
            p.set_mapped(f);
            p.get_page(f);
        }
        let go = Arc::new(std::sync::Barrier::new(2));
        let pinner = {
            let (p, frames, go) = (p.clone(), frames.clone(), go.clone());
            std::thread::spawn(move || {
                go.wait();
                for &f in frames.iter().rev() {
                    p.put_page(f);
                }
            })
        };
        go.wait();
        if round % 2 == 0 {
            p.release_unmapped(&frames);
        } else {
            for f in &frames {
                p.release_unmapped(std::slice::from_ref(f));
            }
        }
        pinner.join().unwrap();
        for &f in &frames {
            assert!(
                matches!(p.frame_state(f), FrameState::Pcp | FrameState::Free),
                "round {round}: pfn {f} left {:?}",
                p.frame_state(f)
            );
            assert_eq!(p.page_count(f), 0);
        }
        p.check_conservation().unwrap();
    }
    p.drain_all_pages();
    let a = p.accounting();
    assert_eq!((a.allocated, a.mapped, a.free), (0, 0, a.total));
}
