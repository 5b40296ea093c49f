//! The allocator's counters and the frame accounting: the slow path's event counters,
//! `NR_FREE_PAGES` and the per-state frame counts (the part of the kernel's vmstat counters
//! that `mm/page_alloc.c` maintains, reduced to this emulator's states), and the
//! frame-conservation recount, an emulator check with no kernel counterpart.

use super::{FramePool, FrameState, Pfn};
use std::fmt;
use std::sync::atomic::Ordering;

macro_rules! alloc_stats {
    ($($(#[doc = $doc:literal])* $name:ident => $sname:literal,)*) => {
        /// One allocator statistic (counters only; declared in one place).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(usize)]
        pub enum AllocStat { $($(#[doc = $doc])* $name,)* }
        impl AllocStat {
            /// Every statistic, in declaration order.
            pub const ALL: &'static [AllocStat] = &[$(AllocStat::$name,)*];
            /// snake_case name for exporters.
            pub const fn name(self) -> &'static str {
                match self { $(AllocStat::$name => $sname,)* }
            }
        }
    };
}

alloc_stats! {
    /// `__alloc_pages_slowpath` entered (the LOW-watermark fast path failed).
    SlowpathEntries => "slowpath_entries",
    /// A slow-path allocation returned a page (what the livelock watchdog watches).
    SlowpathSuccess => "slowpath_success",
    /// A slow-path allocation returned no page (`nopage`).
    SlowpathFail => "slowpath_fail",
    /// `goto retry` in the slow path (after reclaim progress, OOM progress or NOFAIL).
    SlowpathRetries => "slowpath_retries",
    /// Direct reclaim rounds (`__alloc_pages_direct_reclaim`).
    DirectReclaim => "direct_reclaim",
    /// `drain_all_pages` calls.
    DrainAllPages => "drain_all_pages",
    /// `mutex_trylock(&oom_lock)` failed in `__alloc_pages_may_oom` (the loser slept a jiffy).
    OomLockContended => "oom_lock_contended",
    /// `out_of_memory()` calls from the allocator.
    OutOfMemoryCalls => "out_of_memory_calls",
    /// `out_of_memory()` calls that reported progress.
    OutOfMemoryProgress => "out_of_memory_progress",
    /// Pages handed out under ALLOC_OOM rights (an OOM victim in the slow path).
    AllocOom => "alloc_oom",
    /// Pages handed out by the last-chance HIGH-watermark attempt under `oom_lock`.
    LastChanceSuccess => "last_chance_success",
}

/// Number of allocator statistics.
pub const NR_ALLOC_STATS: usize = AllocStat::ALL.len();

/// A snapshot of the allocator statistics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllocStatsSnapshot {
    /// Indexed by `AllocStat as usize`.
    pub counters: [u64; NR_ALLOC_STATS],
    /// pcp lists refilled from the free list (`rmqueue_bulk`), summed over slots.
    pub pcp_refills: u64,
    /// pcp lists spilled to the free list above `high` (`free_pcppages_bulk`), summed.
    pub pcp_spills: u64,
    /// Emulated time (ns) of the last successful slow-path allocation; 0 = none yet.
    pub last_slowpath_success_ns: u64,
    /// Tasks inside `__alloc_pages_slowpath` at the time of the snapshot.
    pub nr_in_slowpath: u64,
}

impl AllocStatsSnapshot {
    pub fn get(&self, s: AllocStat) -> u64 {
        self.counters[s as usize]
    }
}

/// Frame counts by state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FrameAccounting {
    pub total: u64,
    /// `NR_FREE_PAGES`.
    pub free: u64,
    /// On per-CPU lists.
    pub pcp: u64,
    /// Allocated, not mapped.
    pub allocated: u64,
    /// Mapped by a PTE.
    pub mapped: u64,
}

impl fmt::Display for FrameAccounting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "total:{} free:{} pcp:{} allocated:{} mapped:{}",
            self.total, self.free, self.pcp, self.allocated, self.mapped
        )
    }
}

impl FramePool {
    /// Frame counts from the counters (cheap; racy under concurrent allocation).
    pub fn accounting(&self) -> FrameAccounting {
        let mut a = FrameAccounting {
            total: self.total,
            free: self.nr_free.load(Ordering::Relaxed),
            ..Default::default()
        };
        let (mut alloc, mut mapped) = (0i64, 0i64);
        for s in self.slots.iter() {
            a.pcp += s.count.load(Ordering::Relaxed);
            alloc += s.allocated.load(Ordering::Relaxed);
            mapped += s.mapped.load(Ordering::Relaxed);
        }
        a.allocated = alloc.max(0) as u64;
        a.mapped = mapped.max(0) as u64;
        a
    }

    /// Allocator statistics.
    pub fn stats(&self) -> AllocStatsSnapshot {
        AllocStatsSnapshot {
            counters: std::array::from_fn(|i| self.stats[i].load(Ordering::Relaxed)),
            pcp_refills: self
                .slots
                .iter()
                .map(|s| s.refills.load(Ordering::Relaxed))
                .sum(),
            pcp_spills: self
                .slots
                .iter()
                .map(|s| s.spills.load(Ordering::Relaxed))
                .sum(),
            last_slowpath_success_ns: self.last_slowpath_success_ns.load(Ordering::Relaxed),
            nr_in_slowpath: self.nr_in_slowpath.load(Ordering::Relaxed),
        }
    }

    #[inline]
    pub(super) fn stat(&self, s: AllocStat) {
        self.stats[s as usize].fetch_add(1, Ordering::Relaxed);
    }

    // ---- invariants ----------------------------------------------------------------------

    /// Recount every frame's state and check it against the lists and the counters:
    /// free + pcp + allocated + mapped == total, every listed frame in the list's state and
    /// listed once, and the counters equal to the recount. Meaningful when no allocation,
    /// free or (un)mapping runs concurrently (end of a run or trial).
    pub fn check_conservation(&self) -> Result<(), String> {
        let mut errs = Vec::new();
        let lists: Vec<_> = self.slots.iter().map(|s| s.list.lock()).collect();
        let fl = self.free_list.lock();
        let mut by_state = [0u64; 4];
        for f in self.pages.iter() {
            by_state[f.state.load(Ordering::Acquire) as usize] += 1;
        }
        let mut seen = vec![false; self.total as usize];
        let mut check_list = |name: &str, l: &mut dyn Iterator<Item = Pfn>, want: FrameState| {
            for pfn in l {
                if (pfn.0 as u64) >= self.total {
                    errs.push(format!("{name}: pfn {pfn} outside the pool"));
                    continue;
                }
                if std::mem::replace(&mut seen[pfn.0 as usize], true) {
                    errs.push(format!("{name}: pfn {pfn} listed twice"));
                }
                let s = self.frame_state(pfn);
                if s != want {
                    errs.push(format!(
                        "{name}: pfn {pfn} in state {s:?}, expected {want:?}"
                    ));
                }
            }
        };
        check_list("free list", &mut fl.iter().copied(), FrameState::Free);
        for (i, l) in lists.iter().enumerate() {
            check_list(
                &format!("pcp[{i}]"),
                &mut l.iter().copied(),
                FrameState::Pcp,
            );
        }
        let pcp_listed: u64 = lists.iter().map(|l| l.len() as u64).sum();
        drop(fl);
        drop(lists);
        let [free, pcp, allocated, mapped] = by_state;
        let a = self.accounting();
        let mut expect = |what: &str, counter: u64, recount: u64| {
            if counter != recount {
                errs.push(format!("{what}: counter {counter} != recount {recount}"));
            }
        };
        expect("free", a.free, free);
        expect("pcp", a.pcp, pcp);
        expect("pcp (listed)", pcp_listed, pcp);
        expect("allocated", a.allocated, allocated);
        expect("mapped", a.mapped, mapped);
        let sum = free + pcp + allocated + mapped;
        if sum != self.total {
            errs.push(format!(
                "free {free} + pcp {pcp} + allocated {allocated} + mapped {mapped} = {sum} != \
                 total {}",
                self.total
            ));
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "frame conservation broken ({a}): {}",
                errs.join("; ")
            ))
        }
    }
}
