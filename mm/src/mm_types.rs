//! Address spaces: `struct mm_struct` and `struct vm_area_struct` (include/linux/mm_types.h).
//!
//! | field | meaning | invariant | changed by | under |
//! |---|---|---|---|---|
//! | `mmap_lock` ([`RwSem`]) guarding [`VmaTree`] | the VMA tree, ordered by start address | VMAs never overlap; all page aligned; inside [`TASK_SIZE`] | mmap/munmap/mprotect/mlock (write), faults, reaper, remote access (read) | `mmap_lock` |
//! | `pgtable` | page tables | a present PTE lies inside a VMA, except between a munmap's VMA removal and its zap (both under the write lock) | faults (install), munmap/reaper/exit (clear) | `mmap_lock` (read or write) + the PTE table lock |
//! | `rss[MM_*]` | resident pages by type (`mm->rss_stat`) | Σ = present, frame-backed PTEs, once every task's cache is synced | PTE install/clear via [`add_mm_counter`] | atomics (+ per-task caches, `SPLIT_RSS_COUNTING`) |
//! | `flags` | `MMF_OOM_SKIP`, `MMF_UNSTABLE`, `MMF_OOM_VICTIM` (+ emulator's `MMF_TORN_DOWN`) | all monotonic | OOM killer, reaper, exit_mmap | atomic bit ops |
//! | `mm_users` | users of the address space (threads, remote pins) | the last `mmput` runs `exit_mmap` | `mmget`/`mmput` | atomic |
//! | `mm_count` | references to the struct (`mmgrab`/`mmdrop`); mm_users > 0 holds one | | | atomic |
//!
//! Models v4.15–v4.19 (the OOM-era fields; `MMF_OOM_VICTIM` is 4.15+).

use crate::locking::rwsem::{RwSem, RwSemConfig, RwSemModel, RwSemSpin};
use crate::page_alloc::FramePool;
use crate::pgtable::{PageTable, PAGE_SIZE, TASK_SIZE};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

/// rss counter indices (`enum { MM_FILEPAGES, MM_ANONPAGES, MM_SWAPENTS, MM_SHMEMPAGES }`).
pub const MM_FILEPAGES: usize = 0;
pub const MM_ANONPAGES: usize = 1;
pub const MM_SWAPENTS: usize = 2;
pub const MM_SHMEMPAGES: usize = 3;
pub const NR_MM_COUNTERS: usize = 4;

/// `mm->flags` bits, with the kernel's bit numbers (include/linux/sched/coredump.h, v4.15).
pub const MMF_OOM_SKIP: u32 = 21;
pub const MMF_UNSTABLE: u32 = 22;
pub const MMF_OOM_VICTIM: u32 = 25;
/// Emulator-only: `exit_mmap()` finished; nothing is left to reclaim.
pub const MMF_TORN_DOWN: u32 = 40;

/// `DEFAULT_MAX_MAP_COUNT` (`vm.max_map_count`).
pub const DEFAULT_MAX_MAP_COUNT: usize = 65530;

/// How `mmap_lock` waits (per-run kernel knobs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum LockWait {
    /// TASK_UNINTERRUPTIBLE (`down_write`, `down_read`).
    #[default]
    Uninterruptible,
    /// TASK_KILLABLE (`down_write_killable`, v4.7 RFC; `down_read_killable` in faults, v6.5).
    Killable,
}

impl LockWait {
    pub fn name(self) -> &'static str {
        match self {
            LockWait::Uninterruptible => "uninterruptible",
            LockWait::Killable => "killable",
        }
    }
}

/// Kernel knobs that address spaces follow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MmKnobs {
    /// mm syscalls' `mmap_lock` write waits (docs/rwsem-rules.md §6).
    pub write_lock: LockWait,
    /// Page faults' `mmap_lock` read waits (killable = v6.5 `lock_mm_and_find_vma`).
    pub read_lock: LockWait,
    /// `mmap_lock`'s algorithm (per address space, fixed when the mm is created).
    pub rwsem_model: RwSemModel,
    /// `CONFIG_RWSEM_SPIN_ON_OWNER` for `mmap_lock` (writer optimistic spinning, AR9).
    pub rwsem_spin: RwSemSpin,
}

impl MmKnobs {
    /// How `mmap_lock` is built.
    pub fn rwsem_config(&self) -> RwSemConfig {
        RwSemConfig::new(self.rwsem_model, self.rwsem_spin)
    }
}

/// `vm_flags` bits (include/linux/mm.h values).
pub mod vm {
    pub const VM_READ: u64 = 0x0000_0001;
    pub const VM_WRITE: u64 = 0x0000_0002;
    pub const VM_EXEC: u64 = 0x0000_0004;
    pub const VM_SHARED: u64 = 0x0000_0008;
    pub const VM_MAYSHARE: u64 = 0x0000_0080;
    pub const VM_LOCKED: u64 = 0x0000_2000;
    /// `VM_PFNMAP`, `VM_HUGETLB` are not modelled (no such mappings can be created).
    pub const VM_ACCESS: u64 = VM_READ | VM_WRITE | VM_EXEC;
}

/// `struct vm_area_struct` (the parts modelled): an anonymous mapping, private or shared
/// (shared anonymous memory is shmem in the kernel: `shmem_zero_setup`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vma {
    pub start: u64,
    pub end: u64,
    pub flags: u64,
}

impl Vma {
    pub fn len(&self) -> u64 {
        self.end - self.start
    }
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
    pub fn is_shared(&self) -> bool {
        self.flags & vm::VM_SHARED != 0
    }
    pub fn is_locked(&self) -> bool {
        self.flags & vm::VM_LOCKED != 0
    }
    /// `vma_is_anonymous()` private memory, the only kind the oom_reaper frees.
    pub fn is_private_anon(&self) -> bool {
        !self.is_shared()
    }
    /// The rss counter pages of this VMA are charged to.
    pub fn rss_type(&self) -> usize {
        if self.is_shared() {
            MM_SHMEMPAGES
        } else {
            MM_ANONPAGES
        }
    }
}

/// The VMA tree (`mm->mm_rb` / maple tree), plus `mm->total_vm`/`locked_vm` bookkeeping that
/// changes together with it. Only reachable through `mmap_lock`.
#[derive(Default, Debug)]
pub struct VmaTree {
    vmas: BTreeMap<u64, Vma>,
    /// `mm->mmap_base` analogue: top-down allocation starts below this.
    pub(crate) mmap_base: u64,
    /// Pages covered by VMAs, kept up to date by `insert`/`detach_range`.
    pages: u64,
}

impl VmaTree {
    pub fn iter(&self) -> impl Iterator<Item = &Vma> {
        self.vmas.values()
    }
    pub fn len(&self) -> usize {
        self.vmas.len()
    }
    pub fn is_empty(&self) -> bool {
        self.vmas.is_empty()
    }
    /// `find_vma()`: the first VMA with `end > addr`.
    pub fn find_vma(&self, addr: u64) -> Option<&Vma> {
        if let Some((_, v)) = self.vmas.range(..=addr).next_back() {
            if v.end > addr {
                return Some(v);
            }
        }
        self.vmas.range(addr..).next().map(|(_, v)| v)
    }
    /// The VMA containing `addr`.
    pub fn vma_at(&self, addr: u64) -> Option<&Vma> {
        self.find_vma(addr).filter(|v| v.start <= addr)
    }
    /// VMAs intersecting [start, end).
    pub fn overlapping(&self, start: u64, end: u64) -> impl Iterator<Item = &Vma> {
        let first = self
            .vmas
            .range(..start)
            .next_back()
            .filter(|(_, v)| v.end > start)
            .map(|(k, _)| *k)
            .unwrap_or(start);
        self.vmas.range(first..end).map(|(_, v)| v)
    }
    /// `total_vm` in pages.
    pub fn total_vm(&self) -> u64 {
        self.pages
    }
    /// `locked_vm` in pages.
    pub fn locked_vm(&self) -> u64 {
        self.vmas
            .values()
            .filter(|v| v.is_locked())
            .map(|v| v.len() / PAGE_SIZE)
            .sum()
    }

    pub(crate) fn insert(&mut self, v: Vma) {
        debug_assert!(v.start < v.end && v.end <= TASK_SIZE);
        debug_assert!(self.overlapping(v.start, v.end).next().is_none());
        self.pages += v.len() / PAGE_SIZE;
        self.vmas.insert(v.start, v);
    }

    /// `split_vma()` at `addr` if a VMA straddles it.
    pub(crate) fn split_at(&mut self, addr: u64) {
        let Some(v) = self.vma_at(addr).cloned() else {
            return;
        };
        if v.start == addr {
            return;
        }
        let tail = Vma {
            start: addr,
            end: v.end,
            flags: v.flags,
        };
        self.vmas.get_mut(&v.start).expect("vma").end = addr;
        self.vmas.insert(addr, tail);
    }

    /// Remove and return the VMAs inside [start, end) after splitting at both ends
    /// (`detach_vmas_to_be_unmapped()`).
    pub(crate) fn detach_range(&mut self, start: u64, end: u64) -> Vec<Vma> {
        self.split_at(start);
        self.split_at(end);
        let keys: Vec<u64> = self.vmas.range(start..end).map(|(k, _)| *k).collect();
        let out: Vec<Vma> = keys
            .into_iter()
            .map(|k| self.vmas.remove(&k).expect("vma"))
            .collect();
        self.pages -= out.iter().map(|v| v.len() / PAGE_SIZE).sum::<u64>();
        out
    }

    /// Apply `f` to the flags of every VMA in [start, end), splitting at the ends
    /// (`mprotect_fixup()` / `mlock_fixup()`). Adjacent VMAs are not merged back
    /// (no `vma_merge()`; deviation).
    pub(crate) fn update_flags(&mut self, start: u64, end: u64, f: impl Fn(u64) -> u64) {
        self.split_at(start);
        self.split_at(end);
        for (_, v) in self.vmas.range_mut(start..end) {
            v.flags = f(v.flags);
        }
    }

    /// Is [start, end) fully covered by VMAs (no hole)?
    pub(crate) fn covers(&self, start: u64, end: u64) -> bool {
        let mut at = start;
        for v in self.overlapping(start, end) {
            if v.start > at {
                return false;
            }
            at = v.end;
            if at >= end {
                return true;
            }
        }
        at >= end
    }

    /// `unmapped_area_topdown()`: the highest gap of `len` bytes below `mmap_base`.
    pub(crate) fn unmapped_area_topdown(&self, len: u64) -> Option<u64> {
        let mut hi = self.mmap_base;
        for v in self.vmas.values().rev() {
            if v.start >= hi {
                hi = hi.min(v.start);
                continue;
            }
            if v.end <= hi && hi - v.end >= len {
                return Some(hi - len);
            }
            hi = hi.min(v.start);
        }
        (hi >= len + MMAP_MIN_ADDR).then(|| hi - len)
    }
}

/// `mmap_min_addr` (default 4096 on most distributions; 64 KiB in the kernel default).
pub const MMAP_MIN_ADDR: u64 = 0x10000;
/// Default `mmap_base` (top-down allocation below it).
pub const DEFAULT_MMAP_BASE: u64 = TASK_SIZE - (1 << 30);

static NEXT_MM_ID: AtomicU64 = AtomicU64::new(1);

/// An emulated address space (`struct mm_struct`).
pub struct MmStruct {
    id: u64,
    /// `mmap_lock` (called `mmap_sem` before v5.8) guarding the VMA tree.
    pub mmap_lock: RwSem<VmaTree>,
    pub(crate) pgtable: PageTable,
    rss: [AtomicI64; NR_MM_COUNTERS],
    flags: AtomicU64,
    mm_users: AtomicI32,
    mm_count: AtomicI32,
    pub(crate) pool: Arc<FramePool>,
    pub(crate) knobs: MmKnobs,
    name: Arc<str>,
    /// Emulated ns + 1 when `exit_mmap()` finished; 0 before.
    torn_down_ns: AtomicU64,
    /// Emulated ns + 1 when the oom_reaper finished reaping it; 0 before.
    reaped_ns: AtomicU64,
    /// The OOM killer was told that this victim's memory came back
    /// ([`crate::page_alloc::OomKiller::victim_mm_reclaimed`]).
    reclaim_reported: AtomicBool,
    /// `mm->total_vm` in pages (updated under the write lock; read without it).
    total_vm: AtomicU64,
}

impl fmt::Debug for MmStruct {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "mm#{}({})", self.id, self.name)
    }
}

impl MmStruct {
    /// `mm_alloc()` + `mm_init()`: a new, empty address space with `mm_users` = `mm_count` = 1.
    /// `owner` names it in lock wait channels (e.g. `"pid 42"`).
    pub fn new(pool: &Arc<FramePool>, knobs: MmKnobs, owner: &str) -> Arc<MmStruct> {
        let id = NEXT_MM_ID.fetch_add(1, Ordering::Relaxed);
        let name: Arc<str> = Arc::from(format!("mmap_lock[{owner}]"));
        Arc::new(MmStruct {
            id,
            mmap_lock: RwSem::with_config(
                name.clone(),
                knobs.rwsem_config(),
                VmaTree {
                    vmas: BTreeMap::new(),
                    mmap_base: DEFAULT_MMAP_BASE,
                    pages: 0,
                },
            ),
            pgtable: PageTable::new(),
            rss: std::array::from_fn(|_| AtomicI64::new(0)),
            flags: AtomicU64::new(0),
            mm_users: AtomicI32::new(1),
            mm_count: AtomicI32::new(1),
            pool: pool.clone(),
            knobs,
            name,
            torn_down_ns: AtomicU64::new(0),
            reaped_ns: AtomicU64::new(0),
            reclaim_reported: AtomicBool::new(false),
            total_vm: AtomicU64::new(0),
        })
    }

    pub fn id(&self) -> u64 {
        self.id
    }
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }
    pub fn knobs(&self) -> MmKnobs {
        self.knobs
    }
    pub fn pool(&self) -> &Arc<FramePool> {
        &self.pool
    }

    /// `get_mm_counter()`.
    pub fn get_mm_counter(&self, member: usize) -> i64 {
        self.rss[member].load(Ordering::Relaxed).max(0)
    }
    /// `get_mm_rss()`: anon + file + shmem resident pages.
    pub fn get_mm_rss(&self) -> u64 {
        (self.get_mm_counter(MM_FILEPAGES)
            + self.get_mm_counter(MM_ANONPAGES)
            + self.get_mm_counter(MM_SHMEMPAGES)) as u64
    }
    /// Raw counter, possibly transiently negative (per-task caches not yet synced).
    pub fn mm_counter_raw(&self, member: usize) -> i64 {
        self.rss[member].load(Ordering::Relaxed)
    }
    pub(crate) fn add_counter_atomic(&self, member: usize, v: i64) {
        self.rss[member].fetch_add(v, Ordering::Relaxed);
    }
    /// `mm_nr_ptes()` in tables.
    pub fn nr_ptes(&self) -> u64 {
        self.pgtable.nr_ptes()
    }
    /// `mm_pgtables_bytes()`.
    pub fn pgtables_bytes(&self) -> u64 {
        self.nr_ptes() * PAGE_SIZE
    }

    pub fn test_flag(&self, bit: u32) -> bool {
        self.flags.load(Ordering::SeqCst) & (1 << bit) != 0
    }
    /// `set_bit()`; returns the old value (`test_and_set_bit()`).
    pub fn set_flag(&self, bit: u32) -> bool {
        self.flags.fetch_or(1 << bit, Ordering::SeqCst) & (1 << bit) != 0
    }

    /// `mm->total_vm`, pages.
    pub fn total_vm(&self) -> u64 {
        self.total_vm.load(Ordering::Relaxed)
    }
    /// Refresh `total_vm` from the VMA tree (callers hold the write lock).
    pub(crate) fn update_total_vm(&self, vmas: &VmaTree) {
        self.total_vm.store(vmas.total_vm(), Ordering::Relaxed);
    }
    /// When `exit_mmap()` finished (emulated ns), if it did.
    pub fn torn_down_ns(&self) -> Option<u64> {
        match self.torn_down_ns.load(Ordering::SeqCst) {
            0 => None,
            v => Some(v - 1),
        }
    }
    pub(crate) fn set_torn_down(&self) {
        let now = if crate::sched::in_task() {
            crate::sched::ktime_get_ns()
        } else {
            0
        };
        self.torn_down_ns.store(now + 1, Ordering::SeqCst);
        // Before MMF_TORN_DOWN: until then the OOM killer keeps the victim's live entry.
        self.report_reclaimed();
        self.set_flag(MMF_TORN_DOWN);
    }
    /// When the oom_reaper finished reaping it (emulated ns), if it did. Emulator
    /// bookkeeping (the kernel keeps no such time) for kill → reclaim.
    pub fn reaped_ns(&self) -> Option<u64> {
        match self.reaped_ns.load(Ordering::SeqCst) {
            0 => None,
            v => Some(v - 1),
        }
    }
    /// Record that the oom_reaper reaped this address space at `now_ns` (the first time counts).
    pub fn set_reaped(&self, now_ns: u64) {
        let _ = self
            .reaped_ns
            .compare_exchange(0, now_ns + 1, Ordering::SeqCst, Ordering::SeqCst);
        self.report_reclaimed();
    }
    /// Tell the OOM killer, once, that this victim's memory came back (the first of a reap and
    /// a teardown; an address space that was never an OOM victim is not reported).
    fn report_reclaimed(&self) {
        if self.test_flag(MMF_OOM_VICTIM) && !self.reclaim_reported.swap(true, Ordering::SeqCst) {
            if let Some(k) = self.pool.oom_killer() {
                k.victim_mm_reclaimed(self);
            }
        }
    }
    /// When its memory came back after an OOM kill: the earlier of the oom_reaper's reap and
    /// the end of `exit_mmap()`.
    pub fn reclaimed_ns(&self) -> Option<u64> {
        match (self.reaped_ns(), self.torn_down_ns()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
    /// `mm_users`.
    pub fn mm_users(&self) -> i32 {
        self.mm_users.load(Ordering::SeqCst)
    }
    /// `mm_count`.
    pub fn mm_count(&self) -> i32 {
        self.mm_count.load(Ordering::SeqCst)
    }
    /// `mmget()`: one more user (a thread, or a pin by a remote accessor).
    pub fn mmget(&self) {
        let old = self.mm_users.fetch_add(1, Ordering::SeqCst);
        assert!(old > 0, "mmget on a dead mm {self:?}");
    }
    /// `mmget_not_zero()`.
    pub fn mmget_not_zero(&self) -> bool {
        let mut cur = self.mm_users.load(Ordering::SeqCst);
        loop {
            if cur == 0 {
                return false;
            }
            match self
                .mm_users
                .compare_exchange(cur, cur + 1, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
    }
    /// `mmgrab()`.
    pub fn mmgrab(&self) {
        self.mm_count.fetch_add(1, Ordering::SeqCst);
    }
    /// `mmdrop()`.
    pub fn mmdrop(&self) {
        let old = self.mm_count.fetch_sub(1, Ordering::SeqCst);
        assert!(old > 0, "mmdrop underflow on {self:?}");
    }
    /// Drop one user; true if it was the last (the caller runs `__mmput`).
    pub(crate) fn put_user(&self) -> bool {
        let old = self.mm_users.fetch_sub(1, Ordering::SeqCst);
        assert!(old > 0, "mmput underflow on {self:?}");
        old == 1
    }
}

/// A handle for the current task's per-mm rss cache (`task->rss_stat`,
/// `SPLIT_RSS_COUNTING`): changes are batched per task and folded into the mm counters every
/// `TASK_RSS_EVENTS_THRESH` (64) events and at `exit_mm`, as in v4.x.
pub const TASK_RSS_EVENTS_THRESH: u32 = 64;

/// `add_mm_counter_fast()`: charge `v` pages of `member` to `mm`, through the current task's
/// cache when `mm` is the current task's own address space, directly otherwise (remote
/// access, reaper).
pub fn add_mm_counter(mm: &MmStruct, member: usize, v: i64) {
    let cached = crate::sched::with_current_opt(|t| match t {
        Some(t) if t.mm_is(mm) => {
            t.rss_cache_add(member, v);
            true
        }
        _ => false,
    });
    if !cached {
        mm.add_counter_atomic(member, v);
    }
}
