//! The metrics publisher: on the watcher thread, outside the machine, it reads the machine's
//! plain counters into a [`Sample`] and folds it into the `metrics` recorder at most once a
//! second (and once more at the end, with the final values), and drains the rare-event stream
//! (`reaper::events`) every watcher tick so that its bounded channel does not fill.
//!
//! Counters come from the counters, never from counting events: they are exact whatever the
//! stream dropped, and they agree with the summary. The events give the values counters
//! cannot (kill → reclaim, a victim's RSS) and are counted per kind
//! (`oomlab_kernel_events_total`), with the stream's drops beside them.
//!
//! `mmap_lock` wait histograms arrive as per-bucket counts and sums
//! (`mm::mmap_lock::MmapLockWait`); each bucket's new waits are recorded at their mean, which
//! lies inside the bucket, so the exported buckets, count and sum equal the tasks' exactly.

use super::catalog::{self as c, Metric};
use loadgen::report::{OomFigures, ReaperFigures};
use metrics::{Counter, Gauge, Histogram};
use mm::mmap_lock::{
    MmapLockWait, WaitHistogram, NR_MMAP_LOCK_WAITS, WAIT_BUCKETS, WAIT_BUCKETS_NS, WAIT_SLOTS,
};
use mm::page_alloc::{AllocStat, AllocStatsSnapshot, FrameAccounting};
use mm::pgtable::PAGE_SIZE;
use mm::task::state;
use reaper::events::{KernelEvent, ReapResult};
use reaper::machine::Kernel;
use std::sync::atomic::Ordering;

/// Capacity of the rare-event channel. A watcher tick (100 ms) of events: a run kills at most
/// a few hundred processes a second, each kill bringing a reap and a reclaim.
pub const EVENT_CAPACITY: usize = 16_384;

/// Task states as `oomlab_tasks` labels them, in its label order.
const TASK_STATES: [&str; 5] = ["running", "sleeping", "killable", "uninterruptible", "dead"];

/// The machine's counters at one moment: plain values, read from outside the machine.
#[derive(Clone, Debug)]
pub struct Sample {
    /// Executor time since the load started, ns.
    pub elapsed_ns: u64,
    pub vm: [u64; mm::vmstat::NR_VM_EVENTS],
    pub lock: [u64; mm::locking::lock_events::NR_LOCK_EVENTS],
    pub waits: [u64; NR_MMAP_LOCK_WAITS * WAIT_SLOTS],
    pub alloc: AllocStatsSnapshot,
    pub frames: FrameAccounting,
    pub oom: OomFigures,
    /// Zeros when the reaper is off.
    pub reaper: ReaperFigures,
    pub livelocks: u64,
    pub stalled_episodes: u64,
    pub victims_pending: u64,
    /// Tasks by [`TASK_STATES`].
    pub tasks: [u64; 5],
    pub events_dropped: u64,
}

impl Sample {
    /// Read `k`'s counters; `elapsed_ns` is the run's executor time so far.
    pub fn take(k: &Kernel, elapsed_ns: u64) -> Sample {
        let mut tasks = [0u64; 5];
        for t in k.tasks.tasks() {
            let s = t.state();
            let i = if t.has_exited() || s & state::TASK_DEAD != 0 {
                4
            } else if s & state::TASK_KILLABLE == state::TASK_KILLABLE {
                2
            } else if s & state::TASK_UNINTERRUPTIBLE != 0 {
                3
            } else if s & state::TASK_INTERRUPTIBLE != 0 {
                1
            } else {
                0
            };
            tasks[i] += 1;
        }
        let (livelocks, stalled_episodes) = k.watchdog.as_ref().map_or((0, 0), |w| {
            (
                w.stats().livelocks.load(Ordering::Relaxed),
                w.stats().stalled_episodes.load(Ordering::Relaxed),
            )
        });
        Sample {
            elapsed_ns,
            vm: k.tasks.vm_events(),
            lock: k.tasks.lock_events(),
            waits: k.tasks.mmap_lock_waits(),
            alloc: k.pool.stats(),
            frames: k.pool.accounting(),
            oom: OomFigures::of(&k.oom),
            reaper: k
                .reaper
                .as_deref()
                .map(ReaperFigures::of)
                .unwrap_or_default(),
            livelocks,
            stalled_episodes,
            victims_pending: k.oom.victims().iter().filter(|v| !v.resolved()).count() as u64,
            tasks,
            events_dropped: k.events.dropped(),
        }
    }

    pub fn vm_event(&self, ev: mm::vmstat::VmEvent) -> u64 {
        self.vm[ev as usize]
    }

    /// Free memory: the free lists and the per-CPU lists, bytes.
    pub fn free_bytes(&self) -> u64 {
        (self.frames.free + self.frames.pcp) * PAGE_SIZE
    }
}

fn counter(m: &'static Metric, labels: &[(&'static str, &'static str)]) -> Counter {
    metrics::counter!(m.name, c::labels(m, labels))
}
fn gauge(m: &'static Metric, labels: &[(&'static str, &'static str)]) -> Gauge {
    metrics::gauge!(m.name, c::labels(m, labels))
}
fn histogram(m: &'static Metric, labels: &[(&'static str, &'static str)]) -> Histogram {
    metrics::histogram!(m.name, c::labels(m, labels))
}

/// The recorder's handles, created once (every series exists from the start, at zero).
struct Handles {
    page_faults: Counter,
    mmap_calls: Counter,
    munmap_calls: Counter,
    memory_total: Gauge,
    memory_free: Gauge,
    /// By frame state: free, pcp, allocated, mapped.
    memory: [Gauge; 4],
    alloc_slowpath: Counter,
    /// success, failure.
    alloc_slowpath_results: [Counter; 2],
    tasks_waiting_for_memory: Gauge,
    process_resident: Gauge,
    oom_invocations: Counter,
    oom_aborted: Counter,
    oom_kills: Counter,
    oom_sharer_kills: Counter,
    oom_self_marked: Counter,
    sysrq_kills: Counter,
    oom_victims_pending: Gauge,
    oom_victim_rss: Histogram,
    kill_to_reclaim: Histogram,
    reaper_attempts: Counter,
    /// By [`ReapResult::ALL`].
    reaper_results: [Counter; 3],
    reaped_bytes: Counter,
    livelocks: Counter,
    stalled_episodes: Counter,
    /// By [`MmapLockWait::ALL`].
    rwsem_wait: Vec<Histogram>,
    /// read, write.
    rwsem_wait_killed: [Counter; 2],
    /// By [`TASK_STATES`].
    tasks: Vec<Gauge>,
    run_elapsed: Gauge,
    run_finished: Gauge,
    /// oom_kill, reap, livelock, reclaimed.
    kernel_events: [Counter; 4],
    kernel_events_dropped: Counter,
}

impl Handles {
    fn new() -> Handles {
        Handles {
            page_faults: counter(&c::PAGE_FAULTS, &[]),
            mmap_calls: counter(&c::MMAP_CALLS, &[]),
            munmap_calls: counter(&c::MUNMAP_CALLS, &[]),
            memory_total: gauge(&c::MEMORY_TOTAL, &[]),
            memory_free: gauge(&c::MEMORY_FREE, &[]),
            memory: ["free", "pcp", "allocated", "mapped"]
                .map(|s| gauge(&c::MEMORY, &[("state", s)])),
            alloc_slowpath: counter(&c::ALLOC_SLOWPATH, &[]),
            alloc_slowpath_results: ["success", "failure"]
                .map(|r| counter(&c::ALLOC_SLOWPATH_RESULTS, &[("result", r)])),
            tasks_waiting_for_memory: gauge(&c::TASKS_WAITING_FOR_MEMORY, &[]),
            process_resident: gauge(&c::PROCESS_RESIDENT, &[]),
            oom_invocations: counter(&c::OOM_INVOCATIONS, &[]),
            oom_aborted: counter(&c::OOM_ABORTED, &[]),
            oom_kills: counter(&c::OOM_KILLS, &[]),
            oom_sharer_kills: counter(&c::OOM_SHARER_KILLS, &[]),
            oom_self_marked: counter(&c::OOM_SELF_MARKED, &[]),
            sysrq_kills: counter(&c::SYSRQ_KILLS, &[]),
            oom_victims_pending: gauge(&c::OOM_VICTIMS_PENDING, &[]),
            oom_victim_rss: histogram(&c::OOM_VICTIM_RSS, &[]),
            kill_to_reclaim: histogram(&c::KILL_TO_RECLAIM, &[]),
            reaper_attempts: counter(&c::REAPER_ATTEMPTS, &[]),
            reaper_results: ReapResult::ALL
                .map(|r| counter(&c::REAPER_RESULTS, &[("result", r.name())])),
            reaped_bytes: counter(&c::REAPED_BYTES, &[]),
            livelocks: counter(&c::LIVELOCKS, &[]),
            stalled_episodes: counter(&c::STALLED_EPISODES, &[]),
            rwsem_wait: MmapLockWait::ALL
                .iter()
                .map(|k| histogram(&c::RWSEM_WAIT, &[("op", k.op()), ("wait", k.wait())]))
                .collect(),
            rwsem_wait_killed: ["read", "write"]
                .map(|op| counter(&c::RWSEM_WAIT_KILLED, &[("op", op)])),
            tasks: TASK_STATES
                .iter()
                .map(|s| gauge(&c::TASKS, &[("state", s)]))
                .collect(),
            run_elapsed: gauge(&c::RUN_ELAPSED, &[]),
            run_finished: gauge(&c::RUN_FINISHED, &[]),
            kernel_events: ["oom_kill", "reap", "livelock", "reclaimed"]
                .map(|e| counter(&c::KERNEL_EVENTS, &[("event", e)])),
            kernel_events_dropped: counter(&c::KERNEL_EVENTS_DROPPED, &[]),
        }
    }
}

/// The run's constant labels and figures, published once.
pub struct RunInfo {
    pub executor: &'static str,
    pub bound_ns: u64,
}

/// Folds a machine's counters and events into the recorder.
pub struct Publisher {
    events: crossbeam_channel::Receiver<KernelEvent>,
    /// Drained from the stream, not yet folded.
    pending: Vec<KernelEvent>,
    /// Received so far, by kind (oom_kill, reap, livelock, reclaimed).
    received: [u64; 4],
    /// The wait histograms as last published.
    waits: [u64; NR_MMAP_LOCK_WAITS * WAIT_SLOTS],
    h: Handles,
    /// For the emulator's own RSS (none if the host's process table cannot be read).
    sys: Option<(sysinfo::System, sysinfo::Pid)>,
}

impl Publisher {
    /// Subscribe to `k`'s events and create every series (the recorder must be installed).
    pub fn new(k: &Kernel, run: &RunInfo) -> Publisher {
        let events = k
            .events
            .subscribe(EVENT_CAPACITY)
            .expect("one publisher per machine");
        let cfg = &k.cfg;
        // The machine's value of an enumerated knob, as its declared choice.
        let knob = |name: &str| -> &'static str {
            let def = reaper::knobs::find(name).unwrap_or_else(|| panic!("no knob --{name}"));
            let value = def.get(cfg);
            def.choices
                .iter()
                .map(|(v, _)| *v)
                .find(|v| *v == value)
                .unwrap_or_else(|| panic!("--{name} {value} is not one of its choices"))
        };
        gauge(
            &c::BUILD_INFO,
            &[
                ("version", env!("CARGO_PKG_VERSION")),
                ("executor", run.executor),
                ("write_lock", knob("write-lock")),
                ("read_lock", knob("read-lock")),
                ("rwsem_model", knob("rwsem-model")),
                ("reaper", knob("reaper")),
            ],
        )
        .set(1.0);
        gauge(&c::RUN_BOUND, &[]).set(run.bound_ns as f64 / 1e9);
        let h = Handles::new();
        h.memory_total
            .set(k.pool.total_pages() as f64 * PAGE_SIZE as f64);
        h.run_finished.set(0.0);
        Publisher {
            events,
            pending: Vec::new(),
            received: [0; 4],
            waits: [0; NR_MMAP_LOCK_WAITS * WAIT_SLOTS],
            h,
            sys: sysinfo::System::new()
                .ok()
                .zip(sysinfo::get_current_pid().ok()),
        }
    }

    /// Take what the event stream holds (every watcher tick: the channel is bounded).
    pub fn drain_events(&mut self) {
        self.pending.extend(self.events.try_iter());
    }

    /// Fold `s` and the events drained so far into the recorder; `finished`: these are the
    /// run's final values.
    pub fn publish(&mut self, s: &Sample, finished: bool) {
        use mm::locking::lock_events::LockEvent;
        use mm::vmstat::VmEvent;
        let h = &self.h;
        h.page_faults.absolute(s.vm_event(VmEvent::Pgfault));
        h.mmap_calls.absolute(s.vm_event(VmEvent::MmapCalls));
        h.munmap_calls.absolute(s.vm_event(VmEvent::MunmapCalls));
        h.memory_free.set(s.free_bytes() as f64);
        let f = &s.frames;
        for (g, pages) in h.memory.iter().zip([f.free, f.pcp, f.allocated, f.mapped]) {
            g.set((pages * PAGE_SIZE) as f64);
        }
        h.alloc_slowpath
            .absolute(s.alloc.get(AllocStat::SlowpathEntries));
        h.alloc_slowpath_results[0].absolute(s.alloc.get(AllocStat::SlowpathSuccess));
        h.alloc_slowpath_results[1].absolute(s.alloc.get(AllocStat::SlowpathFail));
        h.tasks_waiting_for_memory
            .set(s.alloc.nr_in_slowpath as f64);
        h.oom_invocations.absolute(s.oom.invocations);
        h.oom_aborted.absolute(s.oom.aborts);
        h.oom_kills.absolute(s.oom.kills);
        h.oom_sharer_kills.absolute(s.oom.sharer_kills);
        h.oom_self_marked.absolute(s.oom.self_marked);
        h.sysrq_kills.absolute(s.oom.sysrq_kills);
        h.oom_victims_pending.set(s.victims_pending as f64);
        h.reaper_attempts.absolute(s.reaper.attempts);
        for (c, n) in
            h.reaper_results
                .iter()
                .zip([s.reaper.reaped, s.reaper.gave_up, s.reaper.skipped])
        {
            c.absolute(n);
        }
        h.reaped_bytes.absolute(s.reaper.pages_reaped * PAGE_SIZE);
        h.livelocks.absolute(s.livelocks);
        h.stalled_episodes.absolute(s.stalled_episodes);
        h.rwsem_wait_killed[0].absolute(s.lock[LockEvent::RwsemRlockFail as usize]);
        h.rwsem_wait_killed[1].absolute(s.lock[LockEvent::RwsemWlockFail as usize]);
        for (g, n) in h.tasks.iter().zip(s.tasks) {
            g.set(n as f64);
        }
        h.run_elapsed.set(s.elapsed_ns as f64 / 1e9);
        for (kind, hist) in MmapLockWait::ALL.iter().zip(&h.rwsem_wait) {
            let now = WaitHistogram::of(&s.waits, *kind);
            let before = WaitHistogram::of(&self.waits, *kind);
            let base = *kind as usize * WAIT_SLOTS;
            for b in 0..WAIT_BUCKETS {
                let n = now.counts[b] - before.counts[b];
                if n > 0 {
                    let ns = now.sums_ns[b] - before.sums_ns[b];
                    hist.record_many(mean_in_bucket(ns, n, b), n as usize);
                    // A bucket's baseline moves only with its count: a sum read ahead of
                    // its count (a task between its two stores) is carried to the next one.
                    self.waits[base + b] = now.counts[b];
                    self.waits[base + WAIT_BUCKETS + b] = now.sums_ns[b];
                }
            }
        }
        for ev in self.pending.drain(..) {
            let kind = match ev {
                KernelEvent::OomKill { rss_pages, .. } => {
                    h.oom_victim_rss.record((rss_pages * PAGE_SIZE) as f64);
                    0
                }
                KernelEvent::Reap { .. } => 1,
                KernelEvent::Livelock { .. } => 2,
                KernelEvent::Reclaimed {
                    kill_to_reclaim_ns, ..
                } => {
                    h.kill_to_reclaim.record(kill_to_reclaim_ns as f64 / 1e9);
                    3
                }
            };
            self.received[kind] += 1;
        }
        for (c, n) in h.kernel_events.iter().zip(self.received) {
            c.absolute(n);
        }
        h.kernel_events_dropped.absolute(s.events_dropped);
        if let Some((sys, pid)) = &mut self.sys {
            sys.refresh_processes_specifics(
                sysinfo::ProcessesToUpdate::Some(&[*pid]),
                true,
                sysinfo::ProcessRefreshKind::nothing().with_memory(),
            );
            if let Some(p) = sys.process(*pid) {
                h.process_resident.set(p.memory() as f64);
            }
        }
        if finished {
            h.run_finished.set(1.0);
        }
    }
}

/// The value at which to record `n` waits of bucket `b` that took `sum_ns` in all: their mean,
/// in seconds, kept inside the bucket (`[0, le]` for the first, `(lower, le]` for the others)
/// against rounding.
fn mean_in_bucket(sum_ns: u64, n: u64, b: usize) -> f64 {
    let mean = sum_ns as f64 / n as f64 / 1e9;
    let mean = WAIT_BUCKETS_NS
        .get(b)
        .map_or(mean, |&le| mean.min(le as f64 / 1e9));
    let Some(lower) = b.checked_sub(1).map(|i| WAIT_BUCKETS_NS[i] as f64 / 1e9) else {
        return mean;
    };
    if mean > lower {
        mean
    } else {
        // Only when the sum rounds to the bound: the smallest value above it.
        f64::from_bits(lower.to_bits() + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_mean_stays_in_its_bucket() {
        // Every wait exactly at the bound is in the bucket (le is inclusive).
        let le = WAIT_BUCKETS_NS[3];
        assert_eq!(mean_in_bucket(3 * le, 3, 3), le as f64 / 1e9);
        assert_eq!(mm::mmap_lock::wait_bucket(le), 3);
        assert_eq!(mm::mmap_lock::wait_bucket(le + 1), 4);
        // Just above the lower bound.
        let lo = WAIT_BUCKETS_NS[2];
        assert!(mean_in_bucket(lo + 1, 1, 3) > lo as f64 / 1e9);
        // Zero-length waits (a sleep the sim woke at once) are in the first bucket.
        assert_eq!(mean_in_bucket(0, 5, 0), 0.0);
        assert_eq!(mm::mmap_lock::wait_bucket(0), 0);
        // +Inf: any value above the last bound.
        let last = *WAIT_BUCKETS_NS.last().unwrap();
        assert_eq!(mm::mmap_lock::wait_bucket(last + 1), WAIT_BUCKETS - 1);
        assert_eq!(
            mean_in_bucket(2 * (last + 10), 2, WAIT_BUCKETS - 1),
            (last + 10) as f64 / 1e9
        );
    }
}
