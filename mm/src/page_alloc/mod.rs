//! Physical memory: the frame pool, its watermarks, per-CPU page caches and the page allocator
//! with its slow path (reclaim → retry → OOM killer).
//!
//! Models `mm/page_alloc.c`: the watermark set-up and the per-CPU pagesets of **v4.7**
//! (`init_per_zone_wmark_min`, `__setup_per_zone_wmarks`, `zone_batchsize`,
//! `pageset_set_batch`, `buffered_rmqueue`/`rmqueue_bulk`, `free_hot_cold_page`/
//! `free_pcppages_bulk`, `drain_all_pages`), and the allocator of **v4.15**
//! (`__alloc_pages_nodemask`, `get_page_from_freelist`, `__zone_watermark_ok` with ALLOC_OOM,
//! `__alloc_pages_slowpath`, `__gfp_pfmemalloc_flags`, `should_reclaim_retry`,
//! `__alloc_pages_may_oom`) — the first version in which every thread of an OOM victim gets
//! ALLOC_OOM reserves (half the min watermark) and fails instead of looping
//! (docs/oom-rules.md §1, §8 M1/M2).
//!
//! # Files
//!
//! - this file: the documentation, [`FramePool`] (its fields, `new` and the plain accessors) and
//!   the re-exports that make up `mm::page_alloc`'s public paths;
//! - `watermarks.rs`: watermarks, pcp sizing, `alloc_flags` and `__zone_watermark_ok()`;
//! - `frame.rs`: `struct page` — [`Pfn`], [`FrameState`], the checked state transitions,
//!   `get_page`/`put_page`, frame access, clearing and poisoning;
//! - `pcp.rs`: the per-CPU pagesets and the free list (`rmqueue`, `free_page`, `drain_all_pages`);
//! - `slowpath.rs`: `alloc_page`, the slow path and the OOM killer interface ([`OomKiller`]);
//! - `stats.rs`: [`AllocStat`], [`FrameAccounting`] and `check_conservation`;
//! - `pool.rs`: [`PoolConfig`], [`PoolError`]. (Whether the host can hold a pool is the
//!   binary's question: `src/host.rs`.)
//!
//! # One zone
//!
//! The pool is one anonymous `memmap2` mapping of `bytes` (default 256 MiB), pre-faulted once
//! at boot (`MAP_POPULATE`) and never handed back to the host: frames are 4 KiB slices of it,
//! named by [`Pfn`]. There is one node and one zone (ZONE_NORMAL); every page is "managed".
//!
//! # Watermarks (v4.7, one zone, `watermark_scale_factor` = 10)
//!
//! ```text
//! lowmem_kbytes   = total_pages * 4                         (nr_free_buffer_pages() at boot)
//! min_free_kbytes = clamp(int_sqrt(lowmem_kbytes * 16), 128, 65536)   init_per_zone_wmark_min()
//! min             = min_free_kbytes >> (PAGE_SHIFT - 10)     (pages; one zone gets all of it)
//! tmp             = max(min / 4, mult_frac(total_pages, 10, 10000))   __setup_per_zone_wmarks()
//! low             = min + tmp
//! high            = min + 2 * tmp
//! ```
//! 256 MiB = 65536 pages: lowmem_kbytes 262144, ×16 = 4194304, √ = 2048 kB → min = 512 pages;
//! tmp = max(128, 65) = 128 → low = 640, high = 768.
//!
//! # Per-CPU pagesets (v4.7 `zone_batchsize` + `pageset_set_batch`)
//!
//! ```text
//! batch = min(total_pages / 1024, 512 KiB / PAGE_SIZE) / 4, at least 1
//! batch = rounddown_pow_of_two(batch + batch / 2) - 1
//! pcp.high = 6 * batch, pcp.batch = max(1, batch)
//! ```
//! 256 MiB: 64 → 16 → rounddown_pow_of_two(24) − 1 = 15 → high 90, batch 15. Pools of 16 MiB
//! and less get batch 0 → high 0, batch 1: every free spills at once (as in the kernel).
//!
//! # State
//!
//! | field | meaning | invariant | changed by | under |
//! |---|---|---|---|---|
//! | `pages[pfn].state` (AtomicU8; `PageMeta` is one cache line, like `struct page`) | Free / Pcp / Allocated / Mapped | Free ⇔ on `free_list`; Pcp ⇔ on exactly one pcp list | rmqueue_bulk (Free→Pcp), rmqueue (Pcp→Allocated), set_mapped/set_unmapped, free (Allocated→Pcp), spill/drain (Pcp→Free) | the list lock for list moves; a CAS for the rest |
//! | `free_list` | the buddy allocator's order-0 stand-in (LIFO) | holds exactly the Free frames | refill, spill, drain | its `RawSpinLock` (`zone->lock`) |
//! | `nr_free` | `NR_FREE_PAGES`: frames on `free_list` (pcp pages excluded, as in the kernel) | = `free_list.len()` | with every `free_list` change | `zone->lock` (read lock-free) |
//! | `slots[i].pcp` | `per_cpu_pages::lists` (hot end at the front) | holds exactly the Pcp frames of slot i | rmqueue, free, spill, drain | the slot's `RawSpinLock` |
//! | `slots[i].count` | `per_cpu_pages::count` | = the list's length | with every list change | the slot's lock (read lock-free) |
//! | `slots[i].allocated`, `.mapped` | this slot's share of Allocated / Mapped frames (may be negative: a frame allocated on one CPU can be freed on another) | Σ over slots = number of frames in that state | alloc, free, set_mapped, set_unmapped | atomic add |
//!
//! Lock order: a pcp slot lock, then `free_list` (the kernel: `local_irq_save`, then
//! `zone->lock`). Neither is ever held across `schedule()` or a sim switch.
//!
//! # Deviations
//! - Order 0 only; no buddy merging, no migratetypes, no highatomic reserves, no CMA, no
//!   `lowmem_reserve`, no cpusets/mempolicies, no compaction.
//! - No kswapd (`wake_all_kswapds` is a no-op) and no page cache: direct reclaim frees
//!   [`FramePool::reclaimable_pages`] = 0 pages and reports no progress. The hook is where a
//!   future page cache plugs in.
//! - After direct reclaim the pcp lists are drained once and the allocation retried even when
//!   reclaim made no progress (the kernel drains only after progress). Without this, pages
//!   freed by an OOM victim onto another CPU's list would stay out of reach of the watermark
//!   check for good.
//! - `drain_all_pages` locks every slot from the calling task instead of scheduling work on
//!   each CPU. Per-CPU slots are indexed by `raw_smp_processor_id() % nr_slots` with
//!   `nr_slots` = the host's CPUs; the sim executor is one CPU (slot 0).
//! - Outside an emulated task (benchmark drivers, test set-up) the slow path makes one pass:
//!   the MIN attempt, "reclaim" + drain + retry, then it fails (no retry loop, no OOM killer,
//!   no sleeping; `__GFP_NOFAIL` fails too).
//! - No PF_MEMALLOC, no `__GFP_MEMALLOC` users, no `PF_DUMPCORE`, no PM freezer.
//! - Every allocated frame is zeroed (all emulated allocations are anonymous user pages);
//!   `__GFP_ZERO` changes nothing. Poisoning uses `PAGE_POISON` (0xaa) as
//!   `CONFIG_PAGE_POISONING` does; corruption is an `assert!`, not a `bad_page()` report.
//! - Bookkeeping violations (double free, double map, freeing a mapped frame) are `assert!`s:
//!   they are emulator bugs (design.md "Modelled kernel vs emulator").

mod frame;
mod pcp;
mod pool;
mod slowpath;
mod stats;
mod watermarks;

pub use frame::{FrameState, Pfn, PAGE_POISON};
pub use pool::{PoolConfig, PoolError, DEFAULT_POOL_BYTES, DEFAULT_RECLAIM_COST_NS};
pub use slowpath::{OomControl, OomKiller, MAX_RECLAIM_RETRIES, PAGE_ALLOC_COSTLY_ORDER};
pub use stats::{AllocStat, AllocStatsSnapshot, FrameAccounting, NR_ALLOC_STATS};
pub use watermarks::{
    compute_watermarks, min_free_kbytes, pcp_high_batch, zone_batchsize, Watermarks,
    WATERMARK_SCALE_FACTOR,
};

use crate::locking::kmutex::KMutex;
use crate::pgtable::{PAGE_SHIFT, PAGE_SIZE};
use crate::sync::RawSpinLock;
use frame::PageMeta;
use pcp::{CachePadded, PcpSlot};
use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

/// The emulated physical memory: one zone of 4 KiB frames and its allocator.
pub struct FramePool {
    _map: memmap2::MmapMut,
    base: *mut u8,
    total: u64,
    poison: bool,
    wmark: Watermarks,
    pcp_high: u64,
    pcp_batch: u64,
    /// `mem_map`: one `struct page` per frame, a cache line each as in the kernel (64 bytes
    /// on x86-64), so that CPUs working on neighbouring frames never share a line.
    pages: Box<[PageMeta]>,
    /// `zone->lock` + `zone->free_area[0]`.
    free_list: RawSpinLock<Vec<Pfn>>,
    /// `NR_FREE_PAGES`.
    nr_free: AtomicU64,
    slots: Box<[CachePadded<PcpSlot>]>,
    oom_lock: KMutex,
    oom_killer: parking_lot::RwLock<Option<Arc<dyn OomKiller>>>,
    stats: [AtomicU64; NR_ALLOC_STATS],
    last_slowpath_success_ns: AtomicU64,
    nr_in_slowpath: AtomicU64,
    reclaim_cost_ns: u64,
}

// SAFETY: `base` points into `_map`, which lives as long as the pool; frames are only accessed
// by their owner (the state machine hands each frame to one owner at a time), and all shared
// bookkeeping is atomic or lock-protected.
unsafe impl Send for FramePool {}
unsafe impl Sync for FramePool {}

impl fmt::Debug for FramePool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "FramePool({} pages, {:?}, {})",
            self.total,
            self.wmark,
            self.accounting()
        )
    }
}

impl FramePool {
    /// Build the pool: validate the size, map and pre-fault the
    /// memory, set the watermarks and per-CPU pagesets, put every frame on the free list.
    pub fn new(cfg: PoolConfig) -> Result<Arc<FramePool>, PoolError> {
        let bytes = cfg.bytes;
        if bytes == 0 || !bytes.is_multiple_of(PAGE_SIZE) {
            return Err(PoolError::BadSize {
                bytes,
                reason: format!("not a non-zero multiple of {PAGE_SIZE} bytes"),
            });
        }
        let total = bytes >> PAGE_SHIFT;
        if total > u32::MAX as u64 || bytes > isize::MAX as u64 {
            return Err(PoolError::BadSize {
                bytes,
                reason: format!("more than {} frames", u32::MAX),
            });
        }
        let wmark = compute_watermarks(total);
        if wmark.high * 2 > total {
            return Err(PoolError::BadSize {
                bytes,
                reason: format!(
                    "{total} frames is too small for its watermarks (min {} low {} high {}); \
                     at least twice the high watermark is needed",
                    wmark.min, wmark.low, wmark.high
                ),
            });
        }
        let mut map = memmap2::MmapOptions::new()
            .len(bytes as usize)
            .map_anon()
            .map_err(PoolError::Map)?;
        let base = map.as_mut_ptr();
        pool::prefault(base, bytes as usize, cfg.poison);
        let (pcp_high, pcp_batch) = pcp_high_batch(total);
        let nr_slots = std::thread::available_parallelism().map_or(1, |n| n.get());
        let slots = (0..nr_slots)
            .map(|_| {
                CachePadded(PcpSlot {
                    list: RawSpinLock::new(VecDeque::with_capacity(pcp_high as usize + 1)),
                    count: AtomicU64::new(0),
                    allocated: AtomicI64::new(0),
                    mapped: AtomicI64::new(0),
                    refills: AtomicU64::new(0),
                    spills: AtomicU64::new(0),
                })
            })
            .collect();
        // LIFO: pfn 0 is handed out first.
        let free: Vec<Pfn> = (0..total as u32).rev().map(Pfn).collect();
        Ok(Arc::new(FramePool {
            _map: map,
            base,
            total,
            poison: cfg.poison,
            wmark,
            pcp_high: pcp_high as u64,
            pcp_batch: pcp_batch as u64,
            pages: (0..total)
                .map(|_| PageMeta {
                    state: AtomicU8::new(FrameState::Free as u8),
                    refs: std::sync::atomic::AtomicU32::new(0),
                })
                .collect(),
            free_list: RawSpinLock::new(free),
            nr_free: AtomicU64::new(total),
            slots,
            oom_lock: KMutex::new("oom_lock"),
            oom_killer: parking_lot::RwLock::new(None),
            stats: std::array::from_fn(|_| AtomicU64::new(0)),
            last_slowpath_success_ns: AtomicU64::new(0),
            nr_in_slowpath: AtomicU64::new(0),
            reclaim_cost_ns: cfg.reclaim_cost_ns,
        }))
    }

    // ---- configuration and observation -------------------------------------------------

    /// Number of frames (`totalram_pages`).
    pub fn total_pages(&self) -> u64 {
        self.total
    }
    pub fn watermarks(&self) -> Watermarks {
        self.wmark
    }
    /// `(pcp->high, pcp->batch)`.
    pub fn pcp_params(&self) -> (u64, u64) {
        (self.pcp_high, self.pcp_batch)
    }
    /// Number of per-CPU slots (host CPUs).
    pub fn nr_slots(&self) -> usize {
        self.slots.len()
    }
    pub fn poisoning(&self) -> bool {
        self.poison
    }
    /// `NR_FREE_PAGES` (pcp pages excluded).
    pub fn nr_free_pages(&self) -> u64 {
        self.nr_free.load(Ordering::Relaxed)
    }

    /// Install the OOM killer (the reaper crate's `out_of_memory`). Without one, the allocator's
    /// OOM step reports no progress, so non-NOFAIL allocations fail after it — the behaviour of
    /// a kernel whose OOM killer is disabled (`oom_killer_disabled`).
    pub fn set_oom_killer(&self, k: Arc<dyn OomKiller>) {
        *self.oom_killer.write() = Some(k);
    }

    /// The installed OOM killer, if any.
    pub(crate) fn oom_killer(&self) -> Option<Arc<dyn OomKiller>> {
        self.oom_killer.read().clone()
    }

    /// Remove the OOM killer (machine teardown: the killer refers back to the pool, so the
    /// pair would otherwise keep each other — and the frame mapping — alive).
    pub fn clear_oom_killer(&self) {
        *self.oom_killer.write() = None;
    }

    /// Give the frames' host memory back, keeping the mapping (`MADV_DONTNEED`; the frames
    /// read as zeros afterwards). For a machine abandoned with tasks asleep for good (a sim
    /// trial that hit its time bound): their stacks are never unwound, so they keep the pool
    /// alive, and many trials run in one process. Nothing may run on the machine afterwards;
    /// the bookkeeping (frame states, counters) is kept.
    pub fn discard_frames(&self) {
        // SAFETY: the mapping stays valid (MADV_DONTNEED on a private anonymous mapping only
        // replaces its pages with zero pages); no reference into frame contents outlives a
        // task's access, and the caller guarantees that no task runs any more.
        let _ = unsafe {
            self._map
                .unchecked_advise(memmap2::UncheckedAdvice::DontNeed)
        };
    }

    /// `oom_lock`: serialises OOM kills (the allocator trylocks it; sysrq-f and the OOM killer's
    /// other callers lock it).
    pub fn oom_lock(&self) -> &KMutex {
        &self.oom_lock
    }
}
