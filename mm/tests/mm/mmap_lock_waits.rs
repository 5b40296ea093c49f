//! The `mmap_lock` wait histograms (`mm::mmap_lock::MmapLockWait`) on the sim executor: a
//! wait that slept is counted once, in the bucket of its length, with its exact length, under
//! its operation and sleep state; a SIGKILLed killable wait is counted too; an acquisition
//! that did not sleep is not; exited tasks' counts stay in the totals, which add up to the
//! rwsem's own `rwsem_wait_ns`.

use crate::common::process;
use mm::locking::lock_events::LockEvent;
use mm::mm_types::{MmKnobs, MmStruct};
use mm::mmap_lock::{
    mmap_read_lock, mmap_read_lock_killable, mmap_write_lock, mmap_write_lock_killable,
    wait_bucket, MmapLockWait, WaitHistogram, WAIT_BUCKETS, WAIT_BUCKETS_NS,
};
use mm::page_alloc::{FramePool, PoolConfig};
use mm::sched::sim::{Sim, SimConfig, SimOutcome};
use mm::sched::{self};
use mm::task::{kill_thread_group, Signal, Task};
use std::sync::{Arc, Mutex};

const MS: u64 = 1_000_000;

fn sleep_ms(ms: u64) {
    let mut left = sched::msecs_to_jiffies(ms);
    while left > 0 {
        left = sched::schedule_timeout_uninterruptible(left);
    }
}

/// The current task's `rwsem_wait_ns`.
fn wait_ns() -> u64 {
    sched::with_current(|t| t.lock_events().get(LockEvent::RwsemWaitNs))
}

/// Models A and B count a sleeping wait once, and its length (the wait histograms read those
/// counters), with optimistic spinning off and on. (rfc-v1 is left out: the killed writer of
/// this script leaves its stale bias and strands the reader behind it, the bug it models.)
#[test]
fn waits_that_slept_are_counted_by_kind_and_length() {
    use mm::locking::rwsem::{RwSemModel, RwSemSpin};
    for rwsem_model in [RwSemModel::A, RwSemModel::B] {
        for rwsem_spin in [RwSemSpin::Off, RwSemSpin::On] {
            waits_are_counted(MmKnobs {
                rwsem_model,
                rwsem_spin,
                ..MmKnobs::default()
            });
        }
    }
}

fn waits_are_counted(knobs: MmKnobs) {
    let pool = FramePool::new(PoolConfig {
        bytes: 4 << 20,
        ..Default::default()
    })
    .unwrap();
    let mm = MmStruct::new(&pool, knobs, "pid 1");
    let mut sim = Sim::new(SimConfig::default());
    let tasks = sim.tasks().clone();
    // What each waiter measured with the rwsem's own counter: (kind, ns).
    let waited: Arc<Mutex<Vec<(MmapLockWait, u64)>>> = Arc::default();
    let victim: Arc<Mutex<Option<Arc<Task>>>> = Arc::default();

    // The holder: write-locks for 30 ms, then read-locks for 300 ms.
    let m = mm.clone();
    sim.spawn(process("holder"), move || {
        {
            let _w = mmap_write_lock(&m);
            sleep_ms(30);
        }
        sleep_ms(5);
        let _r = mmap_read_lock(&m);
        sleep_ms(300);
    })
    .unwrap();
    // Waiters behind the write hold (started 1 ms in): a reader, an uninterruptible writer.
    for kind in [
        MmapLockWait::ReadUninterruptible,
        MmapLockWait::WriteUninterruptible,
    ] {
        let (m, w) = (mm.clone(), waited.clone());
        sim.spawn(process("waiter"), move || {
            sleep_ms(1);
            let before = wait_ns();
            match kind {
                MmapLockWait::ReadUninterruptible => drop(mmap_read_lock(&m)),
                _ => drop(mmap_write_lock(&m)),
            }
            w.lock().unwrap().push((kind, wait_ns() - before));
        })
        .unwrap();
    }
    // Behind the read hold: a killable writer that is SIGKILLed after 100 ms of waiting, and
    // a killable reader that does not wait (readers share).
    let (m, w, v) = (mm.clone(), waited.clone(), victim.clone());
    sim.spawn(process("killed-writer"), move || {
        *v.lock().unwrap() = Some(sched::current());
        sleep_ms(50);
        let before = wait_ns();
        assert!(
            mmap_write_lock_killable(&m).is_err(),
            "SIGKILLed while waiting"
        );
        w.lock()
            .unwrap()
            .push((MmapLockWait::WriteKillable, wait_ns() - before));
    })
    .unwrap();
    let m = mm.clone();
    sim.spawn(process("killer"), move || {
        sleep_ms(150);
        let t = v_task(&victim);
        kill_thread_group(Signal::Kill, t.group());
        // Once the killed writer left the queue, a reader gets in beside the read hold at
        // once: not a wait.
        sleep_ms(5);
        let before = wait_ns();
        drop(mmap_read_lock_killable(&m).unwrap());
        assert_eq!(wait_ns(), before, "did not sleep");
    })
    .unwrap();
    assert_eq!(sim.run(), SimOutcome::AllExited);

    let totals = tasks.mmap_lock_waits();
    let waited = waited.lock().unwrap().clone();
    assert_eq!(waited.len(), 3, "{waited:?}");
    for &kind in MmapLockWait::ALL {
        let h = WaitHistogram::of(&totals, kind);
        let mine: Vec<u64> = waited
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|w| w.1)
            .collect();
        assert_eq!(h.count(), mine.len() as u64, "{kind:?}");
        assert_eq!(h.sum_ns(), mine.iter().sum::<u64>(), "{kind:?}: exact sum");
        for ns in mine {
            assert!(ns > 0, "{kind:?} slept");
            let b = wait_bucket(ns);
            assert_eq!(h.counts[b], 1, "{kind:?}: {ns} ns in bucket {b}");
            assert!(b == 0 || ns > WAIT_BUCKETS_NS[b - 1]);
            assert!(b == WAIT_BUCKETS - 1 || ns <= WAIT_BUCKETS_NS[b]);
        }
    }
    // Roughly what the holds lasted: the writer waited about 29 ms, the killed one 100 ms.
    let ns_of = |k| waited.iter().find(|(x, _)| *x == k).unwrap().1;
    assert!((25 * MS..=35 * MS).contains(&ns_of(MmapLockWait::ReadUninterruptible)));
    assert!((90 * MS..=110 * MS).contains(&ns_of(MmapLockWait::WriteKillable)));
    assert_eq!(
        WaitHistogram::of(&totals, MmapLockWait::ReadKillable).count(),
        0
    );
    // Every wait that slept is in a histogram: the totals add up to the rwsem's own.
    let all: u64 = MmapLockWait::ALL
        .iter()
        .map(|&k| WaitHistogram::of(&totals, k).sum_ns())
        .sum();
    assert_eq!(all, tasks.lock_events()[LockEvent::RwsemWaitNs as usize]);
    assert_eq!(tasks.lock_events()[LockEvent::RwsemWlockFail as usize], 1);
}

fn v_task(v: &Mutex<Option<Arc<Task>>>) -> Arc<Task> {
    v.lock().unwrap().clone().expect("the writer started")
}

#[test]
fn quantiles_interpolate_inside_buckets_as_prometheus_does() {
    let mut h = WaitHistogram::default();
    assert_eq!(h.quantile_ns(0.5), None);
    // 10 waits in (1 ms, 2.5 ms]: the median is halfway through the bucket.
    let b = wait_bucket(2 * MS);
    h.counts[b] = 10;
    assert_eq!(WAIT_BUCKETS_NS[b - 1], MS);
    assert_eq!(h.quantile_ns(0.5), Some(1.75e6));
    assert_eq!(h.quantile_ns(1.0), Some(2.5e6));
    // In +Inf: the last finite bound.
    h.counts[WAIT_BUCKETS - 1] = 90;
    assert_eq!(
        h.quantile_ns(0.99),
        Some(*WAIT_BUCKETS_NS.last().unwrap() as f64)
    );
}
