//! Quick end-to-end checks of the rwsem on both executors (the rule-by-rule scripted tests
//! live in rwsem_rules.rs).
use mm::locking::rwsem::{RwSem, RwSemModel};
use mm::sched::sim::{Sim, SimConfig, SimOutcome};
use mm::sched::{self};
use mm::task::CloneKind;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

fn proc(c: &str) -> CloneKind {
    CloneKind::Process { comm: c.into() }
}

#[test]
fn sim_readers_and_writers_exclude_each_other() {
    for seed in 0..50 {
        let mut sim = Sim::new(SimConfig {
            seed,
            ..Default::default()
        });
        let sem = Arc::new(RwSem::new("test", RwSemModel::A, (0u64, 0u64)));
        let done = Arc::new(AtomicU64::new(0));
        for i in 0..16 {
            let sem = sem.clone();
            let done = done.clone();
            sim.spawn(proc(&format!("t{i}")), move || {
                for _ in 0..20 {
                    if i % 4 == 0 {
                        let mut g = sem.write();
                        g.0 += 1;
                        sched::cond_resched();
                        g.1 += 1;
                    } else {
                        let g = sem.read();
                        let a = g.0;
                        sched::cond_resched();
                        assert_eq!(a, g.1, "writer inside while reading");
                        assert_eq!(g.0, g.1);
                    }
                    sched::cond_resched();
                }
                done.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap();
        }
        assert_eq!(sim.run(), SimOutcome::AllExited, "seed {seed}");
        assert_eq!(done.load(Ordering::SeqCst), 16);
        assert_eq!(sem.raw().count(), 0, "seed {seed}");
        assert_eq!(sem.write().0, 4 * 20);
    }
}

/// Regression: the typed trylocks built their guard eagerly (`bool::then_some`), so a failed
/// `try_read`/`try_write` dropped a guard and released a hold it never took.
#[test]
fn failed_typed_trylock_releases_nothing() {
    use mm::locking::rwsem::{RWSEM_ACTIVE_READ_BIAS, RWSEM_ACTIVE_WRITE_BIAS};
    let sem = RwSem::new("t", RwSemModel::A, ());
    let w = sem.write();
    assert!(sem.try_read().is_none());
    assert!(sem.try_write().is_none());
    assert_eq!(sem.raw().count(), RWSEM_ACTIVE_WRITE_BIAS);
    drop(w);
    let r = sem.read();
    assert!(sem.try_write().is_none());
    assert_eq!(sem.raw().count(), RWSEM_ACTIVE_READ_BIAS);
    drop(r);
    assert_eq!(sem.raw().count(), 0);
}

/// `MmKnobs::rwsem_model`/`rwsem_spin` reach the address space's `mmap_lock` (a per-lock
/// choice at creation), and two threads of one process fault, mmap and munmap through Model B
/// with spinning on, on many seeds: every run ends, the lock idle.
#[test]
fn mm_knobs_carry_model_b_with_spinning_to_mmap_lock() {
    use mm::locking::rwsem::RwSemSpin;
    use mm::memory::{attach_mm, mmput, touch};
    use mm::mm_types::{MmKnobs, MmStruct};
    use mm::mmap::{mmap, munmap, MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE};
    use mm::page_alloc::{FramePool, PoolConfig};
    let knobs = MmKnobs {
        rwsem_model: RwSemModel::B,
        rwsem_spin: RwSemSpin::On,
        ..MmKnobs::default()
    };
    for seed in 0..20 {
        let pool = FramePool::new(PoolConfig {
            bytes: 4 << 20,
            ..Default::default()
        })
        .unwrap();
        let mut sim = Sim::new(SimConfig {
            seed,
            ..Default::default()
        });
        let p2 = pool.clone();
        let lock = Arc::new(parking_lot::Mutex::new(None));
        let l2 = lock.clone();
        let leader = sim
            .spawn(proc("a"), move || {
                let mm = MmStruct::new(&p2, knobs, "pid 1");
                let cfg = mm.mmap_lock.raw().config();
                assert_eq!((cfg.model, cfg.spin), (RwSemModel::B, RwSemSpin::On));
                attach_mm(&mm);
                // The creator's own mm_users reference goes; the threads' keep the mm alive
                // until the last one exits (exit_mmap then tears it down).
                mmput(&mm);
                *l2.lock() = Some(mm.clone());
                let tgid = sched::current().tgid();
                sched::spawn(CloneKind::Thread { tgid }, move || {
                    let mm = sched::current().mm().unwrap();
                    for _ in 0..20 {
                        let a = mmap(
                            &mm,
                            0,
                            4 * 4096,
                            PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS,
                        )
                        .unwrap();
                        touch(&mm, a, true, 1).unwrap();
                        munmap(&mm, a, 4 * 4096).unwrap();
                    }
                })
                .unwrap();
                let a = mmap(
                    &mm,
                    0,
                    16 * 4096,
                    PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS,
                )
                .unwrap();
                for round in 0..5u8 {
                    for i in 0..16 {
                        touch(&mm, a + i * 4096, true, round).unwrap();
                    }
                    sched::cond_resched();
                }
            })
            .unwrap();
        assert_eq!(sim.run(), SimOutcome::AllExited, "seed {seed}");
        let _ = leader;
        let mm = lock.lock().take().unwrap();
        assert!(mm.mmap_lock.snapshot().is_idle(), "seed {seed}");
    }
}
