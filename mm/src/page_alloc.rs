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
//! (../shared/reference/oom-killer.md §1, §8 M1/M2).
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

use crate::gfp::Gfp;
use crate::locking::kmutex::KMutex;
use crate::sched;
use crate::sync::RawSpinLock;
use crate::task::{Task, Wchan};
use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

/// `PAGE_SHIFT`.
pub const PAGE_SHIFT: u32 = 12;
/// `PAGE_SIZE`.
pub const PAGE_SIZE: usize = 1 << PAGE_SHIFT;
/// Frames per `release_pages()` pass of [`FramePool::release_unmapped`] (the kernel's
/// `mmu_gather` batch holds up to `MAX_GATHER_BATCH` ≈ 510 pages).
const RELEASE_BATCH: usize = 512;

/// `MAX_RECLAIM_RETRIES` (v4.7+): fruitless reclaim rounds before the OOM path.
pub const MAX_RECLAIM_RETRIES: u32 = 16;
/// `PAGE_ALLOC_COSTLY_ORDER`.
pub const PAGE_ALLOC_COSTLY_ORDER: u32 = 3;
/// `PAGE_POISON` (include/linux/poison.h): the byte freed frames are filled with.
pub const PAGE_POISON: u8 = 0xaa;
/// `watermark_scale_factor` default (v4.6+).
pub const WATERMARK_SCALE_FACTOR: u64 = 10;
/// Default pool size: 256 MiB.
pub const DEFAULT_POOL_BYTES: u64 = 256 << 20;
/// Default [`PoolConfig::reclaim_cost_ns`].
pub const DEFAULT_RECLAIM_COST_NS: u64 = 100_000;

// ---- alloc_flags (mm/internal.h, v4.15) ----------------------------------------------------
const ALLOC_WMARK_MIN: u32 = 0;
const ALLOC_WMARK_LOW: u32 = 1;
const ALLOC_WMARK_HIGH: u32 = 2;
/// Don't check watermarks at all.
const ALLOC_NO_WATERMARKS: u32 = 0x04;
const ALLOC_WMARK_MASK: u32 = ALLOC_NO_WATERMARKS - 1;
/// OOM victims: the min watermark lowered by half.
const ALLOC_OOM: u32 = 0x08;
/// `__GFP_ATOMIC` (or rt tasks): the min watermark lowered by a quarter.
const ALLOC_HARDER: u32 = 0x10;
/// `__GFP_HIGH`: the min watermark halved (same value as `__GFP_HIGH`).
const ALLOC_HIGH: u32 = 0x20;
/// Check cpusets (no-op here; kept so that flag values compare as in the kernel).
const ALLOC_CPUSET: u32 = 0x40;

/// A page frame number: the index of a 4 KiB frame in the pool.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Pfn(pub u32);

impl Pfn {
    /// Byte offset of the frame in the pool.
    pub fn offset(self) -> usize {
        (self.0 as usize) << PAGE_SHIFT
    }
}

impl fmt::Display for Pfn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// What a frame is, for exact accounting (`struct page` state, reduced).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
#[repr(u8)]
pub enum FrameState {
    /// On the shared free list (counted in `NR_FREE_PAGES`).
    Free = 0,
    /// On a per-CPU list.
    Pcp = 1,
    /// Allocated, not mapped by a PTE (page tables, in-flight faults, kernel use).
    Allocated = 2,
    /// Mapped by exactly one PTE.
    Mapped = 3,
}

impl FrameState {
    fn from_u8(v: u8) -> FrameState {
        match v {
            0 => FrameState::Free,
            1 => FrameState::Pcp,
            2 => FrameState::Allocated,
            3 => FrameState::Mapped,
            _ => unreachable!("corrupt frame state {v}"),
        }
    }
}

/// `zone->watermark[]`, in pages.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Watermarks {
    pub min: u64,
    pub low: u64,
    pub high: u64,
}

/// `int_sqrt()`: floor of the square root.
fn int_sqrt(x: u64) -> u64 {
    x.isqrt()
}

/// `init_per_zone_wmark_min()` (v4.7): `min_free_kbytes` for `lowmem_kbytes` of lowmem.
pub fn min_free_kbytes(lowmem_kbytes: u64) -> u64 {
    int_sqrt(lowmem_kbytes * 16).clamp(128, 65536)
}

/// `mult_frac(x, numer, denom)` (include/linux/kernel.h).
fn mult_frac(x: u64, numer: u64, denom: u64) -> u64 {
    let q = x / denom;
    let r = x % denom;
    q * numer + r * numer / denom
}

/// Watermarks of a single zone of `managed_pages` 4 KiB pages: `init_per_zone_wmark_min()`
/// then `__setup_per_zone_wmarks()` (v4.7, `watermark_scale_factor` = 10). See the module
/// documentation for the formula.
pub fn compute_watermarks(managed_pages: u64) -> Watermarks {
    let lowmem_kbytes = managed_pages * (PAGE_SIZE as u64 >> 10);
    let pages_min = min_free_kbytes(lowmem_kbytes) >> (PAGE_SHIFT - 10);
    // One lowmem zone: tmp = pages_min * managed / lowmem_pages = pages_min.
    let min = pages_min;
    let tmp = (min >> 2).max(mult_frac(managed_pages, WATERMARK_SCALE_FACTOR, 10000));
    Watermarks {
        min,
        low: min + tmp,
        high: min + tmp * 2,
    }
}

/// `zone_batchsize()` (v4.7, CONFIG_MMU).
pub fn zone_batchsize(managed_pages: u64) -> u32 {
    let mut batch = managed_pages / 1024;
    if batch * PAGE_SIZE as u64 > 512 * 1024 {
        batch = (512 * 1024) / PAGE_SIZE as u64;
    }
    batch /= 4; // We effectively *= 4 below.
    if batch < 1 {
        batch = 1;
    }
    // Clamp the batch to a 2^n - 1 value (cache aliasing, see the kernel's comment).
    let x = batch + batch / 2;
    let pow = 1u64 << (63 - x.leading_zeros());
    (pow - 1) as u32
}

/// `per_cpu_pages` parameters from `pageset_set_batch(p, zone_batchsize(zone))` (v4.7):
/// `(high, batch)` = `(6 * batch, max(1, batch))`.
pub fn pcp_high_batch(managed_pages: u64) -> (u32, u32) {
    let b = zone_batchsize(managed_pages);
    (6 * b, b.max(1))
}

/// How to build a [`FramePool`].
#[derive(Clone, Debug)]
pub struct PoolConfig {
    /// Pool size in bytes: a multiple of 4 KiB (default 256 MiB).
    pub bytes: u64,
    /// Fill freed frames with `PAGE_POISON` and check them on reuse.
    pub poison: bool,
    /// Refuse a pool larger than the host's available memory (sysinfo).
    pub check_host: bool,
    /// Emulated CPU time one round of direct reclaim costs (`shrink_node` + `shrink_slab`
    /// scanning with nothing to reclaim), ns; charged through `sched::cpu_work`, i.e. on the
    /// sim executor's clock only. An emulator choice (default 100 µs) that sets how fast
    /// virtual time runs while allocators loop.
    pub reclaim_cost_ns: u64,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            bytes: DEFAULT_POOL_BYTES,
            poison: false,
            check_host: true,
            reclaim_cost_ns: DEFAULT_RECLAIM_COST_NS,
        }
    }
}

/// Why a pool could not be built.
#[derive(Debug)]
pub enum PoolError {
    /// The pool would not fit in the host's available memory.
    TooLarge { requested: u64, available: u64 },
    /// Not a multiple of 4 KiB, too small for its watermarks, or too large for a `Pfn`.
    BadSize { bytes: u64, reason: String },
    /// sysinfo could not read the host's memory.
    HostQuery(String),
    /// The anonymous mapping failed.
    Map(std::io::Error),
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolError::TooLarge {
                requested,
                available,
            } => write!(
                f,
                "memory pool of {requested} bytes ({}) is larger than the host's available \
                 memory ({available} bytes, {}); choose a smaller --memory",
                mib(*requested),
                mib(*available)
            ),
            PoolError::BadSize { bytes, reason } => {
                write!(f, "bad memory pool size {bytes} bytes: {reason}")
            }
            PoolError::HostQuery(e) => write!(f, "cannot read the host's memory: {e}"),
            PoolError::Map(e) => write!(f, "cannot map the memory pool: {e}"),
        }
    }
}

impl std::error::Error for PoolError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PoolError::Map(e) => Some(e),
            _ => None,
        }
    }
}

/// The host's available memory in bytes: `MemAvailable`, capped by the cgroup's free memory.
fn host_available_bytes() -> Result<u64, PoolError> {
    let mut sys = sysinfo::System::new().map_err(|e| PoolError::HostQuery(e.to_string()))?;
    sys.refresh_memory_specifics(sysinfo::MemoryRefreshKind::nothing().with_ram());
    let mut avail = sys.available_memory();
    if let Some(cg) = sys.cgroup_limits() {
        avail = avail.min(cg.free_memory);
    }
    Ok(avail)
}

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
}

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

/// Aligns to 128 bytes so that per-CPU data of neighbouring slots never share a cache line
/// (two lines, for the adjacent-line prefetcher), as crossbeam's `CachePadded`.
#[repr(align(128))]
struct CachePadded<T>(T);

impl<T> std::ops::Deref for CachePadded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// One CPU's `struct per_cpu_pages` plus its share of the counters.
struct PcpSlot {
    /// `pcp->lists[MIGRATE_MOVABLE]`, hot end at the front.
    list: RawSpinLock<VecDeque<Pfn>>,
    /// `pcp->count`, mirrored for lock-free reads.
    count: AtomicU64,
    allocated: AtomicI64,
    mapped: AtomicI64,
    refills: AtomicU64,
    spills: AtomicU64,
}

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

/// The emulator's `struct page`: the frame's state and `page->_refcount` (1 from allocation,
/// handed to the PTE when mapped, +1 per `get_page()` pin of get_user_pages; the frame is
/// freed when it drops to 0).
#[repr(C, align(64))]
struct PageMeta {
    state: AtomicU8,
    refs: std::sync::atomic::AtomicU32,
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

/// `__zone_watermark_ok()` (v4.15) for order 0, without highatomic reserves, CMA and
/// `lowmem_reserve`: ALLOC_HIGH halves `min`; then ALLOC_OOM halves it again, or ALLOC_HARDER
/// takes a quarter off; the check fails when `free_pages <= min`.
fn zone_watermark_ok(free_pages: i64, mark: u64, alloc_flags: u32) -> bool {
    let mut min = mark as i64;
    if alloc_flags & ALLOC_HIGH != 0 {
        min -= min / 2;
    }
    if alloc_flags & (ALLOC_HARDER | ALLOC_OOM) != 0 {
        if alloc_flags & ALLOC_OOM != 0 {
            min -= min / 2;
        } else {
            min -= min / 4;
        }
    }
    free_pages > min
}

impl FramePool {
    /// Build the pool: validate the size, check the host (optional), map and pre-fault the
    /// memory, set the watermarks and per-CPU pagesets, put every frame on the free list.
    pub fn new(cfg: PoolConfig) -> Result<Arc<FramePool>, PoolError> {
        let bytes = cfg.bytes;
        if bytes == 0 || bytes % PAGE_SIZE as u64 != 0 {
            return Err(PoolError::BadSize {
                bytes,
                reason: format!("not a non-zero multiple of {PAGE_SIZE} bytes"),
            });
        }
        if cfg.check_host {
            let available = host_available_bytes()?;
            if bytes > available {
                return Err(PoolError::TooLarge {
                    requested: bytes,
                    available,
                });
            }
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
            .populate()
            .map_anon()
            .map_err(PoolError::Map)?;
        let base = map.as_mut_ptr();
        if cfg.poison {
            // Boot-time frames count as freed: poison them all (this also pre-faults).
            // SAFETY: the mapping is `bytes` long and nobody else refers to it yet.
            unsafe { std::ptr::write_bytes(base, PAGE_POISON, bytes as usize) };
        }
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

    /// Remove the OOM killer (machine teardown: the killer refers back to the pool, so the
    /// pair would otherwise keep each other — and the frame mapping — alive).
    pub fn clear_oom_killer(&self) {
        *self.oom_killer.write() = None;
    }

    /// `oom_lock`: serialises OOM kills (the allocator trylocks it; sysrq-f and the OOM killer's
    /// other callers lock it).
    pub fn oom_lock(&self) -> &KMutex {
        &self.oom_lock
    }

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
    fn stat(&self, s: AllocStat) {
        self.stats[s as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// The state of one frame.
    pub fn frame_state(&self, pfn: Pfn) -> FrameState {
        FrameState::from_u8(self.frame(pfn).load(Ordering::Acquire))
    }

    fn frame(&self, pfn: Pfn) -> &AtomicU8 {
        assert!(
            (pfn.0 as u64) < self.total,
            "pfn {pfn} outside the pool of {} frames",
            self.total
        );
        &self.pages[pfn.0 as usize].state
    }

    /// Move `pfn` from state `from` to `to`, or crash loudly: the bookkeeping is broken.
    #[inline]
    fn transition(&self, pfn: Pfn, from: FrameState, to: FrameState, what: &str) {
        if let Err(now) = self.frame(pfn).compare_exchange(
            from as u8,
            to as u8,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            let now = FrameState::from_u8(now);
            panic!(
                "oomlab: emulator bug: {what} frame pfn {pfn}: expected state {from:?}, found \
                 {now:?}"
            );
        }
    }

    /// [`Self::transition`] for a frame moving between lists with both list locks held: only
    /// the holder of the lock of the list a frame is on may change its state, so a checked
    /// load and a store do (no locked instruction per frame on the buddy paths).
    #[inline]
    fn move_listed(&self, pfn: Pfn, from: FrameState, to: FrameState, what: &str) {
        let f = self.frame(pfn);
        let now = f.load(Ordering::Acquire);
        if now != from as u8 {
            let now = FrameState::from_u8(now);
            panic!(
                "oomlab: emulator bug: {what} frame pfn {pfn}: expected state {from:?}, found \
                 {now:?}"
            );
        }
        f.store(to as u8, Ordering::Release);
    }

    /// Address of frame `pfn` (`page_address()`): valid for `PAGE_SIZE` bytes for as long as
    /// the pool lives. Creating the pointer is safe; reading or writing through it is sound
    /// only for the frame's current owner (state Allocated or Mapped, held by the caller).
    pub fn frame_ptr(&self, pfn: Pfn) -> *mut u8 {
        let _ = self.frame(pfn);
        // SAFETY: pfn < total, so the offset stays inside the mapping.
        unsafe { self.base.add(pfn.offset()) }
    }

    fn assert_owned(&self, pfn: Pfn, what: &str) {
        let s = self.frame_state(pfn);
        assert!(
            matches!(s, FrameState::Allocated | FrameState::Mapped),
            "oomlab: emulator bug: {what} frame pfn {pfn} in state {s:?}"
        );
    }

    /// Copy `dst.len()` bytes out of an allocated frame, from `offset`.
    pub fn read_frame(&self, pfn: Pfn, offset: usize, dst: &mut [u8]) {
        self.assert_owned(pfn, "reading");
        assert!(offset + dst.len() <= PAGE_SIZE, "read past the frame");
        // SAFETY: in bounds of an owned frame (see frame_ptr).
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.frame_ptr(pfn).add(offset),
                dst.as_mut_ptr(),
                dst.len(),
            )
        }
    }

    /// Copy `src` into an allocated frame at `offset`.
    pub fn write_frame(&self, pfn: Pfn, offset: usize, src: &[u8]) {
        self.assert_owned(pfn, "writing");
        assert!(offset + src.len() <= PAGE_SIZE, "write past the frame");
        // SAFETY: in bounds of an owned frame (see frame_ptr).
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.frame_ptr(pfn).add(offset), src.len())
        }
    }

    #[inline]
    fn this_slot(&self) -> &PcpSlot {
        &self.slots[sched::raw_smp_processor_id() % self.slots.len()]
    }

    // ---- mapping state -------------------------------------------------------------------

    /// Allocated → Mapped: a PTE now maps the frame (`page_add_new_anon_rmap` for a frame
    /// mapped once). Mapping a frame twice, or a frame that is not allocated, asserts.
    pub fn set_mapped(&self, pfn: Pfn) {
        if let Err(now) = self.frame(pfn).compare_exchange(
            FrameState::Allocated as u8,
            FrameState::Mapped as u8,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            let now = FrameState::from_u8(now);
            if now == FrameState::Mapped {
                panic!("oomlab: emulator bug: frame pfn {pfn} mapped twice");
            }
            panic!("oomlab: emulator bug: mapping frame pfn {pfn} that is not allocated (state {now:?})");
        }
        let s = self.this_slot();
        s.allocated.fetch_sub(1, Ordering::Relaxed);
        s.mapped.fetch_add(1, Ordering::Relaxed);
    }

    /// Mapped → Allocated: the PTE was cleared (`page_remove_rmap`).
    pub fn set_unmapped(&self, pfn: Pfn) {
        self.transition(pfn, FrameState::Mapped, FrameState::Allocated, "unmapping");
        let s = self.this_slot();
        s.mapped.fetch_sub(1, Ordering::Relaxed);
        s.allocated.fetch_add(1, Ordering::Relaxed);
    }

    // ---- the buddy stand-in and the per-CPU lists ----------------------------------------

    /// `rmqueue_bulk()` (v4.7): move up to `count` frames from the free list to a pcp list.
    fn rmqueue_bulk(&self, count: u64, list: &mut VecDeque<Pfn>) -> u64 {
        let mut fl = self.free_list.lock();
        let n = count.min(fl.len() as u64);
        for _ in 0..n {
            let pfn = fl.pop().expect("counted");
            self.move_listed(pfn, FrameState::Free, FrameState::Pcp, "refilling pcp with");
            list.push_back(pfn);
        }
        self.nr_free.store(fl.len() as u64, Ordering::Relaxed);
        n
    }

    /// `free_pcppages_bulk()` (v4.7): move `count` frames from the cold end of a pcp list to
    /// the free list.
    fn free_pcppages_bulk(&self, count: u64, list: &mut VecDeque<Pfn>) {
        let mut fl = self.free_list.lock();
        for _ in 0..count {
            let Some(pfn) = list.pop_back() else { break };
            self.move_listed(pfn, FrameState::Pcp, FrameState::Free, "spilling");
            fl.push(pfn);
        }
        self.nr_free.store(fl.len() as u64, Ordering::Relaxed);
    }

    /// `rmqueue()` / `buffered_rmqueue()` for order 0 (v4.7): take the hottest frame of this
    /// CPU's list, refilling it with `batch` frames from the free list when empty. No
    /// watermark check here (the caller did it), so a refill may dip `batch − 1` frames below.
    #[inline]
    fn rmqueue(&self) -> Option<Pfn> {
        let slot = self.this_slot();
        let pfn = {
            let mut list = slot.list.lock();
            if list.is_empty() && self.rmqueue_bulk(self.pcp_batch, &mut list) > 0 {
                slot.refills.fetch_add(1, Ordering::Relaxed);
            }
            let pfn = list.pop_front()?;
            slot.count.store(list.len() as u64, Ordering::Relaxed);
            pfn
        };
        self.transition(pfn, FrameState::Pcp, FrameState::Allocated, "allocating");
        slot.allocated.fetch_add(1, Ordering::Relaxed);
        self.prep_new_page(pfn);
        Some(pfn)
    }

    /// `prep_new_page()`: check the poison (`kernel_poison_pages(.., 1)`), then clear the page.
    fn prep_new_page(&self, pfn: Pfn) {
        self.pages[pfn.0 as usize].refs.store(1, Ordering::Relaxed);
        let p = self.frame_ptr(pfn);
        if self.poison {
            // SAFETY: we own the frame (state Allocated, just taken off a list).
            let bytes = unsafe { std::slice::from_raw_parts(p, PAGE_SIZE) };
            if let Some(off) = bytes.iter().position(|&b| b != PAGE_POISON) {
                panic!(
                    "oomlab: emulator bug: pagealloc: memory corruption in freed frame pfn {pfn} \
                     at offset {off:#x}: {:#04x} instead of poison {PAGE_POISON:#04x} (written \
                     after free)",
                    bytes[off]
                );
            }
        }
        // clear_page(). SAFETY: as above.
        unsafe { std::ptr::write_bytes(p, 0, PAGE_SIZE) };
    }

    /// Free an allocated (unmapped) frame: `free_hot_cold_page(page, false)` (v4.7). The frame
    /// goes to the hot end of this CPU's list; at `count >= high` the `batch` coldest frames
    /// spill to the free list. Freeing a frame that is not Allocated (double free, or still
    /// mapped) asserts.
    pub fn free_page(&self, pfn: Pfn) {
        self.pages[pfn.0 as usize].refs.store(0, Ordering::Relaxed);
        if let Err(now) = self.frame(pfn).compare_exchange(
            FrameState::Allocated as u8,
            FrameState::Pcp as u8,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            let now = FrameState::from_u8(now);
            panic!(
                "oomlab: emulator bug: freeing frame pfn {pfn} that is not allocated (state \
                 {now:?}{})",
                match now {
                    FrameState::Mapped => ": still mapped",
                    FrameState::Free | FrameState::Pcp => ": double free",
                    FrameState::Allocated => "",
                }
            );
        }
        self.poison_freed(pfn);
        let slot = self.this_slot();
        slot.allocated.fetch_sub(1, Ordering::Relaxed);
        self.pcp_free(slot, &[pfn]);
    }

    /// `kernel_poison_pages(page, 1, 0)` for a frame being freed (state Pcp, not yet listed:
    /// still the caller's).
    fn poison_freed(&self, pfn: Pfn) {
        if self.poison {
            // SAFETY: the frame is ours until it is on a list.
            unsafe { std::ptr::write_bytes(self.frame_ptr(pfn), PAGE_POISON, PAGE_SIZE) };
        }
    }

    /// The list half of `free_hot_cold_page()` (v4.7) for frames already in state Pcp: each
    /// goes to the hot end of `slot`'s list; at `count >= high` the `batch` coldest frames
    /// spill to the free list. One list-lock hold for all of `pfns`.
    fn pcp_free(&self, slot: &PcpSlot, pfns: &[Pfn]) {
        let mut list = slot.list.lock();
        for &pfn in pfns {
            list.push_front(pfn);
            if list.len() as u64 >= self.pcp_high {
                self.free_pcppages_bulk(self.pcp_batch, &mut list);
                slot.spills.fetch_add(1, Ordering::Relaxed);
            }
        }
        slot.count.store(list.len() as u64, Ordering::Relaxed);
    }

    /// The free half of `zap_pte_range()` + `tlb_flush_mmu_free()` (mm/memory.c, v4.7) for
    /// frames whose PTEs the caller just cleared (so that no new reference can be taken):
    /// `page_remove_rmap()` for each (Mapped → Allocated, asserting), then `release_pages()`
    /// drops each mapping reference and frees the frames whose last reference it was with
    /// `free_hot_cold_page_list()` — one per-CPU list visit for the batch, as the kernel frees
    /// an `mmu_gather` batch with interrupts disabled once. A frame still pinned by
    /// `get_page()` stays Allocated until its last `put_page()`.
    pub fn release_unmapped(&self, pfns: &[Pfn]) {
        if pfns.is_empty() {
            return;
        }
        let mut to_free = [Pfn(0); RELEASE_BATCH];
        for chunk in pfns.chunks(RELEASE_BATCH) {
            let mut n = 0;
            for &pfn in chunk {
                let refs = &self.pages[pfn.0 as usize].refs;
                // The caller cleared the PTE, so nobody can take a new reference: if the
                // mapping's is the only one, the frame goes Mapped → Pcp in one step.
                // Otherwise page_remove_rmap() must come before our put_page: a pinner's
                // last put_page frees the frame and expects it unmapped.
                let last = if refs.load(Ordering::Acquire) == 1 {
                    refs.store(0, Ordering::Relaxed);
                    self.transition(
                        pfn,
                        FrameState::Mapped,
                        FrameState::Pcp,
                        "unmapping and freeing",
                    );
                    true
                } else {
                    self.transition(pfn, FrameState::Mapped, FrameState::Allocated, "unmapping");
                    let old = refs.fetch_sub(1, Ordering::AcqRel);
                    assert!(
                        old > 0,
                        "oomlab: emulator bug: unmapping frame pfn {pfn} with no reference"
                    );
                    if old == 1 {
                        self.transition(pfn, FrameState::Allocated, FrameState::Pcp, "freeing");
                    }
                    old == 1
                };
                if last {
                    self.poison_freed(pfn);
                    to_free[n] = pfn;
                    n += 1;
                }
            }
            let slot = self.this_slot();
            slot.mapped.fetch_sub(chunk.len() as i64, Ordering::Relaxed);
            slot.allocated
                .fetch_add((chunk.len() - n) as i64, Ordering::Relaxed);
            if n > 0 {
                self.pcp_free(slot, &to_free[..n]);
            }
        }
    }

    /// `get_page()`: take a reference on an allocated or mapped frame (a `get_user_pages` pin
    /// that keeps the frame alive while it is copied, even if its PTE is zapped meanwhile).
    pub fn get_page(&self, pfn: Pfn) {
        let old = self.pages[pfn.0 as usize]
            .refs
            .fetch_add(1, Ordering::AcqRel);
        assert!(
            old > 0,
            "oomlab: emulator bug: get_page on free frame pfn {pfn}"
        );
    }

    /// `put_page()`: drop a reference; the last one frees the frame (which must be unmapped
    /// by then: [`Self::set_unmapped`] comes first, as `page_remove_rmap` precedes the free).
    pub fn put_page(&self, pfn: Pfn) {
        let old = self.pages[pfn.0 as usize]
            .refs
            .fetch_sub(1, Ordering::AcqRel);
        assert!(
            old > 0,
            "oomlab: emulator bug: put_page on free frame pfn {pfn}"
        );
        if old == 1 {
            self.free_page(pfn);
        }
    }

    /// `page_count()`.
    pub fn page_count(&self, pfn: Pfn) -> u32 {
        self.pages[pfn.0 as usize].refs.load(Ordering::Acquire)
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

    /// `drain_all_pages(NULL)`: return every per-CPU list to the free list.
    pub fn drain_all_pages(&self) {
        self.stat(AllocStat::DrainAllPages);
        for slot in self.slots.iter() {
            let mut list = slot.list.lock();
            let n = list.len() as u64;
            if n > 0 {
                self.free_pcppages_bulk(n, &mut list);
                slot.count.store(0, Ordering::Relaxed);
            }
        }
    }

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

    /// `__alloc_pages_slowpath()` (v4.15), order 0, in the kernel's order (oom-killer.md §1):
    ///
    /// 1. alloc flags at the MIN watermark (`gfp_to_alloc_flags`), try again;
    /// 2. `retry:` reserves: ALLOC_OOM for OOM victims unless `__GFP_NOMEMALLOC`; try again;
    /// 3. no `__GFP_DIRECT_RECLAIM` ⇒ fail;
    /// 4. direct reclaim (+ pcp drain), try again;
    /// 5. `__GFP_NORETRY` ⇒ fail;
    /// 6. `should_reclaim_retry()` ⇒ `goto retry`;
    /// 7. `__alloc_pages_may_oom()` (oom_lock trylock, last chance, `out_of_memory()`);
    /// 8. an OOM victim that already allocated with ALLOC_OOM (or `__GFP_NOMEMALLOC`) fails;
    /// 9. OOM progress ⇒ `no_progress_loops = 0`, `goto retry` — forever for non-victims;
    /// 10. `nopage:` `__GFP_NOFAIL` tries ALLOC_HARDER, `cond_resched()`, `goto retry`.
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
