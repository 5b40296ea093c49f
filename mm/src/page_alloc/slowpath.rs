//! The page allocator proper and its slow path: `__alloc_pages_nodemask()`,
//! `get_page_from_freelist()`, `gfp_to_alloc_flags()`, `__gfp_pfmemalloc_flags()`, direct
//! reclaim, `should_reclaim_retry()`, `__alloc_pages_may_oom()` and `__alloc_pages_slowpath()`
//! of `mm/page_alloc.c` v4.15, with the allocator's side of the OOM killer (`struct
//! oom_control`, `out_of_memory()`, `pagefault_out_of_memory()` of `mm/oom_kill.c`).

use super::watermarks::{
    zone_watermark_ok, ALLOC_CPUSET, ALLOC_HARDER, ALLOC_HIGH, ALLOC_NO_WATERMARKS, ALLOC_OOM,
    ALLOC_WMARK_HIGH, ALLOC_WMARK_LOW, ALLOC_WMARK_MASK, ALLOC_WMARK_MIN,
};
use super::{AllocStat, FramePool, Pfn};
use crate::gfp::Gfp;
use crate::locking::kmutex::KMutex;
use crate::sched;
use crate::task::{Task, Wchan};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// `MAX_RECLAIM_RETRIES` (v4.7+): fruitless reclaim rounds before the OOM path.
pub const MAX_RECLAIM_RETRIES: u32 = 16;
/// `PAGE_ALLOC_COSTLY_ORDER`.
pub const PAGE_ALLOC_COSTLY_ORDER: u32 = 3;

/// `struct oom_control`, the part the allocator fills in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OomControl {
    /// The allocation's mask (`GFP_NOFS` ⇒ the OOM killer does not kill; its decision).
    pub gfp: Gfp,
    /// The allocation's order; −1 for a sysrq-forced OOM (`is_sysrq_oom()`).
    pub order: i32,
}

/// The OOM killer as the allocator sees it: `out_of_memory()` (mm/oom_kill.c). `mm` defines it,
/// the `reaper` crate implements it.
///
/// Called with [`FramePool::oom_lock`] held, from the allocating task (`current`). Returns true
/// if the allocator should consider that progress was made (a kill, a self-marked dying task,
/// an aborted selection, a NOFS allocation that may not kill) — it then retries.
pub trait OomKiller: Send + Sync {
    fn out_of_memory(&self, oc: &OomControl) -> bool;

    /// The memory of `mm`, an OOM victim's address space (`MMF_OOM_VICTIM`), came back: the
    /// oom_reaper reaped it or `exit_mmap()` tore it down, whichever came first
    /// ([`crate::mm_types::MmStruct::reclaimed_ns`] is set). Called once per address space,
    /// from the task that did it. Emulator bookkeeping with no kernel counterpart: it lets
    /// the OOM killer report kill → reclaim as it happens. Default: nothing.
    fn victim_mm_reclaimed(&self, _mm: &crate::mm_types::MmStruct) {}
}

/// Marks the current task as waiting for memory while it is in the slow path.
struct MemallocWaiting(Arc<Task>);

impl MemallocWaiting {
    fn new(t: Arc<Task>) -> Self {
        t.set_memalloc_waiting(Some(sched::ktime_get_ns()));
        MemallocWaiting(t)
    }
}

impl Drop for MemallocWaiting {
    fn drop(&mut self) {
        self.0.set_memalloc_waiting(None);
    }
}

/// Decrements the in-slowpath gauge on every exit.
struct InSlowpath<'a>(&'a AtomicU64);

impl Drop for InSlowpath<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `cond_resched()` inside tasks; nothing outside (set-up code, benchmark drivers).
fn cond_resched_if_task() {
    if sched::in_task() {
        sched::cond_resched();
    }
}

/// `gfp_to_alloc_flags()` (v4.15): MIN watermark, `__GFP_HIGH` → ALLOC_HIGH, `__GFP_ATOMIC` →
/// ALLOC_HARDER unless `__GFP_NOMEMALLOC`. (No rt tasks, so no rt ALLOC_HARDER.)
fn gfp_to_alloc_flags(gfp: Gfp) -> u32 {
    let mut alloc_flags = ALLOC_WMARK_MIN | ALLOC_CPUSET;
    if gfp.contains(Gfp::__GFP_HIGH) {
        alloc_flags |= ALLOC_HIGH;
    }
    if gfp.contains(Gfp::__GFP_ATOMIC) {
        if !gfp.contains(Gfp::__GFP_NOMEMALLOC) {
            alloc_flags |= ALLOC_HARDER;
        }
        alloc_flags &= !ALLOC_CPUSET;
    }
    alloc_flags
}

/// `__gfp_pfmemalloc_flags()` (v4.15) for a task context: none with `__GFP_NOMEMALLOC`,
/// NO_WATERMARKS with `__GFP_MEMALLOC`, ALLOC_OOM for OOM victims (`oom_reserves_allowed()`:
/// `tsk_is_oom_victim(current)`). No PF_MEMALLOC in the emulation.
fn gfp_pfmemalloc_flags(gfp: Gfp, cur: Option<&Task>) -> u32 {
    if gfp.contains(Gfp::__GFP_NOMEMALLOC) {
        return 0;
    }
    if gfp.contains(Gfp::__GFP_MEMALLOC) {
        return ALLOC_NO_WATERMARKS;
    }
    match cur {
        Some(t) if t.group().is_oom_victim() => ALLOC_OOM,
        _ => 0,
    }
}

impl FramePool {
    // ---- the allocator -------------------------------------------------------------------

    /// `get_page_from_freelist()` for order 0 and one zone: the watermark check selected by
    /// `alloc_flags` against `NR_FREE_PAGES`, then `rmqueue()`.
    #[inline]
    fn get_page_from_freelist(&self, alloc_flags: u32) -> Option<Pfn> {
        if alloc_flags & ALLOC_NO_WATERMARKS == 0 {
            let mark = match alloc_flags & ALLOC_WMARK_MASK {
                ALLOC_WMARK_MIN => self.wmark.min,
                ALLOC_WMARK_LOW => self.wmark.low,
                _ => self.wmark.high,
            };
            let free = self.nr_free.load(Ordering::Relaxed) as i64;
            // zone_watermark_fast(): the order-0 shortcut, then the full check.
            if free <= mark as i64 && !zone_watermark_ok(free, mark, alloc_flags) {
                return None;
            }
        }
        self.rmqueue()
    }

    /// Allocate one zeroed frame: `alloc_page(gfp)` → `__alloc_pages_nodemask()` (v4.15) for
    /// order 0. The fast path tries at the LOW watermark; on failure the slow path
    /// ([`Self::alloc_pages_slowpath`]) reclaims, retries and finally calls the OOM killer.
    /// Returns `None` only when the slow path gives up (see its rules); GFP_KERNEL requests of
    /// tasks that are not OOM victims never fail while an OOM killer reports progress.
    #[inline]
    pub fn alloc_page(&self, gfp: Gfp) -> Option<Pfn> {
        if let Some(p) = self.get_page_from_freelist(ALLOC_WMARK_LOW) {
            return Some(p);
        }
        self.alloc_pages_slowpath(gfp, 0)
    }

    /// Pages that direct reclaim could free (`zone_reclaimable_pages()`). There is no page
    /// cache or swap yet, so 0: reclaim never makes progress. This is the hook where a future
    /// page cache reports its reclaimable pages (and `try_to_free_pages` frees them).
    pub fn reclaimable_pages(&self) -> u64 {
        0
    }

    /// `try_to_free_pages()`: pages reclaimed (none, see [`Self::reclaimable_pages`]).
    fn try_to_free_pages(&self, _gfp: Gfp) -> u64 {
        0
    }

    /// `__perform_reclaim()` (v4.15): `cond_resched()` around synchronous reclaim.
    fn perform_reclaim(&self, gfp: Gfp) -> u64 {
        cond_resched_if_task();
        let progress = self.try_to_free_pages(gfp);
        if sched::in_task() {
            sched::cpu_work(self.reclaim_cost_ns);
        }
        cond_resched_if_task();
        progress
    }

    /// `__alloc_pages_direct_reclaim()` (v4.15), with the drain made unconditional (see the
    /// module's deviations): reclaim, retry, drain the pcp lists once, retry.
    fn alloc_pages_direct_reclaim(
        &self,
        gfp: Gfp,
        alloc_flags: u32,
        did_some_progress: &mut u64,
    ) -> Option<Pfn> {
        self.stat(AllocStat::DirectReclaim);
        *did_some_progress = self.perform_reclaim(gfp);
        let mut drained = false;
        loop {
            if let Some(p) = self.slow_get_page(alloc_flags) {
                return Some(p);
            }
            // Pages may be pinned on the per-cpu lists: shrink them and try again.
            if drained {
                return None;
            }
            self.drain_all_pages();
            drained = true;
        }
    }

    /// `should_reclaim_retry()` (v4.15) for one zone. Resets `no_progress_loops` on progress,
    /// else counts it; gives up after more than `MAX_RECLAIM_RETRIES` fruitless rounds; else
    /// retries (after `cond_resched()`) while free + a shrinking share of the reclaimable pages
    /// would pass the MIN watermark with this request's `alloc_flags`.
    fn should_reclaim_retry(
        &self,
        order: u32,
        alloc_flags: u32,
        did_some_progress: bool,
        no_progress_loops: &mut u32,
    ) -> bool {
        if did_some_progress && order <= PAGE_ALLOC_COSTLY_ORDER {
            *no_progress_loops = 0;
        } else {
            *no_progress_loops += 1;
        }
        if *no_progress_loops > MAX_RECLAIM_RETRIES {
            // Before OOM, exhaust highatomic_reserve: there is none.
            return false;
        }
        let reclaimable = self.reclaimable_pages();
        let mut available = reclaimable;
        available -= (*no_progress_loops as u64 * available).div_ceil(MAX_RECLAIM_RETRIES as u64);
        available += self.nr_free.load(Ordering::Relaxed);
        if zone_watermark_ok(available as i64, self.wmark.min, alloc_flags) {
            // No dirty/writeback pages to wait for; not a workqueue worker: cond_resched().
            cond_resched_if_task();
            return true;
        }
        false
    }

    /// `out_of_memory()` through the installed [`OomKiller`]; no killer = no progress.
    fn out_of_memory(&self, oc: &OomControl) -> bool {
        self.stat(AllocStat::OutOfMemoryCalls);
        let killer = self.oom_killer.read().clone();
        let progress = killer.is_some_and(|k| k.out_of_memory(oc));
        if progress {
            self.stat(AllocStat::OutOfMemoryProgress);
        }
        progress
    }

    /// `pagefault_out_of_memory()` (mm/oom_kill.c, v4.19): a page fault whose allocation
    /// failed (VM_FAULT_OOM) runs the OOM killer with `gfp_mask` 0 unless `oom_lock` is taken
    /// (then somebody else is handling the OOM). The early return for a dying task came with
    /// v5.16 (0b28179a6138) and is not modelled.
    pub fn pagefault_out_of_memory(&self) {
        if !self.oom_lock.mutex_trylock() {
            return;
        }
        self.out_of_memory(&OomControl {
            gfp: Gfp::from_bits(0),
            order: 0,
        });
        self.oom_lock.mutex_unlock();
    }

    /// `__alloc_pages_may_oom()` (v4.15). Trylock `oom_lock`; a loser reports progress and
    /// sleeps one jiffy uninterruptibly ("whoever holds the lock makes progress for us", the
    /// root of CVE-2016-10723). The winner makes a last-chance attempt at the HIGH watermark,
    /// skips the kill where the kernel does, calls `out_of_memory()`, and unlocks.
    fn alloc_pages_may_oom(
        &self,
        gfp: Gfp,
        order: u32,
        cur: &Task,
        did_some_progress: &mut u64,
    ) -> Option<Pfn> {
        *did_some_progress = 0;
        // Acquire the oom lock. If that fails, somebody else is making progress for us.
        if !self.oom_lock.mutex_trylock() {
            self.stat(AllocStat::OomLockContended);
            *did_some_progress = 1;
            cur.set_wchan(Some(Wchan {
                func: "__alloc_pages_may_oom",
                object: self.oom_lock.name().clone(),
                object_id: &self.oom_lock as *const KMutex as usize,
            }));
            sched::schedule_timeout_uninterruptible(1);
            cur.set_wchan(None);
            return None;
        }
        let page = 'out: {
            // One more time at a very high watermark, only to catch a parallel OOM kill; this
            // attempt must not reclaim (gfp | __GFP_HARDWALL) & ~__GFP_DIRECT_RECLAIM.
            if let Some(p) = self.slow_get_page(ALLOC_WMARK_HIGH | ALLOC_CPUSET) {
                self.stat(AllocStat::LastChanceSuccess);
                break 'out Some(p);
            }
            // (PF_DUMPCORE: no coredumps in the emulation.)
            // The OOM killer will not help higher order allocs.
            if order > PAGE_ALLOC_COSTLY_ORDER {
                break 'out None;
            }
            // The caller has a more reasonable fallback than shooting a random task.
            if gfp.contains(Gfp::__GFP_RETRY_MAYFAIL) {
                break 'out None;
            }
            // (Lowmem-only requests and suspended storage: one ZONE_NORMAL, no PM.)
            // The OOM killer may not free memory on a specific node.
            if gfp.contains(Gfp::__GFP_THISNODE) {
                break 'out None;
            }
            // GFP_NOFS is passed on: out_of_memory() decides not to kill for it.
            let oc = OomControl {
                gfp,
                order: order as i32,
            };
            if self.out_of_memory(&oc) || gfp.contains(Gfp::__GFP_NOFAIL) {
                *did_some_progress = 1;
                // Help non-failing allocations by giving them access to memory reserves.
                if gfp.contains(Gfp::__GFP_NOFAIL) {
                    break 'out self.slow_get_page(ALLOC_NO_WATERMARKS);
                }
            }
            None
        };
        self.oom_lock.mutex_unlock();
        page
    }

    /// `get_page_from_freelist()` from the slow path, counting ALLOC_OOM grants.
    fn slow_get_page(&self, alloc_flags: u32) -> Option<Pfn> {
        let p = self.get_page_from_freelist(alloc_flags);
        if p.is_some() && alloc_flags & ALLOC_OOM != 0 {
            self.stat(AllocStat::AllocOom);
        }
        p
    }

    /// `__alloc_pages_slowpath()` (v4.15), order 0, in the kernel's order; the step numbers are
    /// those of docs/oom-rules.md §1:
    ///
    /// - 1: alloc flags at the MIN watermark (`gfp_to_alloc_flags`), try again;
    /// - 2 (`retry:`): reserves: ALLOC_OOM for OOM victims unless `__GFP_NOMEMALLOC`; try again;
    /// - 3: no `__GFP_DIRECT_RECLAIM` ⇒ fail;
    /// - 4: direct reclaim (+ pcp drain; no compaction at order 0), try again;
    /// - 5: `__GFP_NORETRY` ⇒ fail;
    /// - 6: `should_reclaim_retry()` ⇒ `goto retry`; (7, compaction retries, does not apply)
    /// - 8: `__alloc_pages_may_oom()` (oom_lock trylock, last chance, `out_of_memory()`);
    /// - 9: an OOM victim that already allocated with ALLOC_OOM (or `__GFP_NOMEMALLOC`) fails;
    /// - 10: OOM progress ⇒ `no_progress_loops = 0`, `goto retry`, forever for non-victims;
    ///   `nopage:` `__GFP_NOFAIL` tries ALLOC_HARDER, `cond_resched()`, `goto retry`.
    ///
    /// Every loop passes through `cond_resched()` (in `__perform_reclaim`, or after NOFAIL) or a
    /// one-jiffy sleep (oom_lock contention), so the sim executor can switch. Nothing is
    /// bounded artificially: a livelock is a result for the watchdog.
    #[cold]
    #[inline(never)]
    fn alloc_pages_slowpath(&self, mut gfp: Gfp, order: u32) -> Option<Pfn> {
        self.stat(AllocStat::SlowpathEntries);
        self.nr_in_slowpath.fetch_add(1, Ordering::Relaxed);
        let _gauge = InSlowpath(&self.nr_in_slowpath);
        let cur: Option<Arc<Task>> = sched::in_task().then(sched::current);
        // Publish "waits for memory" for the watchdog's wait-for chains.
        let _waiting = cur.as_ref().map(|t| MemallocWaiting::new(t.clone()));
        let can_direct_reclaim = gfp.allows_blocking();
        // Catch abuse of atomic reserves by callers that are not in atomic context.
        if gfp.contains(Gfp::__GFP_ATOMIC | Gfp::__GFP_DIRECT_RECLAIM) {
            gfp = gfp.difference(Gfp::__GFP_ATOMIC);
        }
        let mut no_progress_loops: u32 = 0;
        // The fast path used conservative flags; now the precise ones (MIN watermark).
        let mut alloc_flags = gfp_to_alloc_flags(gfp);
        // wake_all_kswapds(): no kswapd.
        let page = 'got_pg: {
            if let Some(p) = self.slow_get_page(alloc_flags) {
                break 'got_pg Some(p);
            }
            let mut first = true;
            'retry: loop {
                if !first {
                    self.stat(AllocStat::SlowpathRetries);
                }
                first = false;
                let reserve_flags = gfp_pfmemalloc_flags(gfp, cur.as_deref());
                if reserve_flags != 0 {
                    alloc_flags = reserve_flags;
                }
                if let Some(p) = self.slow_get_page(alloc_flags) {
                    break 'got_pg Some(p);
                }
                'nopage: {
                    // Caller is not willing to reclaim, we can't balance anything.
                    if !can_direct_reclaim {
                        break 'nopage;
                    }
                    // (Recursion of direct reclaim, PF_MEMALLOC: not modelled.)
                    let mut did_some_progress = 0;
                    if let Some(p) =
                        self.alloc_pages_direct_reclaim(gfp, alloc_flags, &mut did_some_progress)
                    {
                        break 'got_pg Some(p);
                    }
                    // (Direct compaction: order 0 only.)
                    if gfp.contains(Gfp::__GFP_NORETRY) {
                        break 'nopage;
                    }
                    if order > PAGE_ALLOC_COSTLY_ORDER && !gfp.contains(Gfp::__GFP_RETRY_MAYFAIL) {
                        break 'nopage;
                    }
                    // Outside an emulated task there is no loop and no OOM killer.
                    let Some(cur) = cur.as_deref() else {
                        break 'nopage;
                    };
                    if self.should_reclaim_retry(
                        order,
                        alloc_flags,
                        did_some_progress > 0,
                        &mut no_progress_loops,
                    ) {
                        continue 'retry;
                    }
                    // (should_compact_retry, cpuset races: not modelled.)
                    // Reclaim has failed us, start killing things.
                    if let Some(p) =
                        self.alloc_pages_may_oom(gfp, order, cur, &mut did_some_progress)
                    {
                        break 'got_pg Some(p);
                    }
                    // Avoid allocations with no watermarks from looping endlessly.
                    if cur.group().is_oom_victim()
                        && (alloc_flags == ALLOC_OOM || gfp.contains(Gfp::__GFP_NOMEMALLOC))
                    {
                        break 'nopage;
                    }
                    // Retry as long as the OOM killer is making progress.
                    if did_some_progress != 0 {
                        no_progress_loops = 0;
                        continue 'retry;
                    }
                }
                // nopage: make sure that a __GFP_NOFAIL request doesn't leak out.
                if gfp.contains(Gfp::__GFP_NOFAIL) && cur.is_some() {
                    if !can_direct_reclaim {
                        // WARN_ON_ONCE: NOFAIL without the right to block.
                        break 'got_pg None;
                    }
                    // Reserves, but not ALLOC_NO_WATERMARKS (__alloc_pages_cpuset_fallback).
                    if let Some(p) = self.slow_get_page(ALLOC_HARDER) {
                        break 'got_pg Some(p);
                    }
                    sched::cond_resched();
                    continue;
                }
                break 'got_pg None;
            }
        };
        match page {
            Some(_) => {
                self.stat(AllocStat::SlowpathSuccess);
                if let Some(t) = cur.as_deref() {
                    self.last_slowpath_success_ns
                        .store(sched::now_ns_of(t), Ordering::Relaxed);
                }
            }
            None => self.stat(AllocStat::SlowpathFail),
        }
        page
    }
}
