//! Page tables of an emulated address space.
//!
//! Models the x86-64 4-level page table walked by `handle_mm_fault()` (mm/memory.c, v4.15),
//! folded to three levels (PGD → PMD → PTE table), 9 bits each, covering
//! [`TASK_SIZE`] = 512 GiB of user address space. Upper-level tables are allocated on demand
//! and installed with a compare-and-swap (the kernel installs them under
//! `mm->page_table_lock`); they are freed all at once by `exit_mmap()`
//! ([`PageTable::free_pgtables`]), when no walker can exist, or when the [`PageTable`] drops.
//!
//! Each PTE table has its own spinlock, the kernel's split PTE lock (`pte_lockptr()`,
//! `USE_SPLIT_PTE_PTLOCKS`): installing a PTE (page fault) and clearing one (munmap, the
//! oom_reaper, exit) happen under it, so that a fault that checks `MMF_UNSTABLE` under the PTE
//! lock can never install a page behind a reaper that already zapped that table
//! (`check_stable_address_space()`, v4.15). Entries are atomics so that lock-free readers
//! (the emulated MMU on an access hit) see whole values.
//!
//! PTE encoding (emulator's own): 0 = `pte_none`; otherwise `pfn << 12 | flags` with
//! [`PTE_PRESENT`], [`PTE_WRITE`], [`PTE_ZERO`] (maps the shared zero page; no frame) and
//! [`PTE_PROTNONE`] (x86 `_PAGE_PROTNONE`: the page stays mapped and counted, but the MMU
//! refuses every access, so user accesses fault).
//!
//! Deviations: page-table memory comes from the host heap, not from the frame pool (it is still
//! counted in `nr_ptes`/`pgtables_bytes` for `oom_badness`); munmap does not free the tables
//! of the range it unmapped (`unmap_region()` → `free_pgtables()`): the emulated MMU reads
//! entries without any lock, and the kernel's protection of that walk (TLB shootdown, RCU
//! table freeing) is not modelled, so tables are freed only when the whole address space goes
//! (`exit_mmap()`). The top level (`mm->pgd`) stays until the `PageTable` drops, as the kernel
//! frees it in `__mmdrop()`.

use crate::sync::RawSpinLock;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

/// Bits per level.
const LEVEL_BITS: u32 = 9;
const ENTRIES: usize = 1 << LEVEL_BITS;
/// `PAGE_SHIFT`.
pub const PAGE_SHIFT: u32 = 12;
/// `PAGE_SIZE`.
pub const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;
/// `TASK_SIZE`: the end of the user address space (512 GiB here).
pub const TASK_SIZE: u64 = 1 << (PAGE_SHIFT + 3 * LEVEL_BITS);

pub const PTE_PRESENT: u64 = 1 << 0;
pub const PTE_WRITE: u64 = 1 << 1;
/// The entry maps the zero page (`my_zero_pfn()`), read-only, no frame behind it.
pub const PTE_ZERO: u64 = 1 << 2;
/// `_PAGE_PROTNONE`: present for the kernel (`pte_present()`), inaccessible to the MMU; what
/// `change_protection()` installs for `PROT_NONE`.
pub const PTE_PROTNONE: u64 = 1 << 3;

/// Decoded PTE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pte {
    None,
    /// The shared zero page, read-only.
    Zero,
    /// A frame.
    Page {
        pfn: u32,
        write: bool,
    },
    /// A `PROT_NONE` entry: the frame (or, with `None`, the zero page) stays mapped, but every
    /// user access faults.
    ProtNone {
        pfn: Option<u32>,
    },
}

impl Pte {
    pub fn decode(v: u64) -> Pte {
        if v & PTE_PRESENT == 0 {
            Pte::None
        } else if v & PTE_PROTNONE != 0 {
            Pte::ProtNone {
                pfn: (v & PTE_ZERO == 0).then_some((v >> PAGE_SHIFT) as u32),
            }
        } else if v & PTE_ZERO != 0 {
            Pte::Zero
        } else {
            Pte::Page {
                pfn: (v >> PAGE_SHIFT) as u32,
                write: v & PTE_WRITE != 0,
            }
        }
    }
    pub fn encode(self) -> u64 {
        match self {
            Pte::None => 0,
            Pte::Zero => PTE_PRESENT | PTE_ZERO,
            Pte::Page { pfn, write } => {
                ((pfn as u64) << PAGE_SHIFT) | PTE_PRESENT | if write { PTE_WRITE } else { 0 }
            }
            Pte::ProtNone { pfn: Some(pfn) } => {
                ((pfn as u64) << PAGE_SHIFT) | PTE_PRESENT | PTE_PROTNONE
            }
            Pte::ProtNone { pfn: None } => PTE_PRESENT | PTE_PROTNONE | PTE_ZERO,
        }
    }
    /// The frame behind the entry, if any (`vm_normal_page()`): a page, accessible or not.
    pub fn frame(self) -> Option<u32> {
        match self {
            Pte::Page { pfn, .. } | Pte::ProtNone { pfn: Some(pfn) } => Some(pfn),
            _ => None,
        }
    }
    /// `pte_modify(pte, vm_get_page_prot(flags))` for a present entry (`change_pte_range()`):
    /// the entry `change_protection()` installs for the new VMA access bits `vm_access`
    /// (`VM_READ | VM_WRITE | VM_EXEC`). No access ⇒ [`Pte::ProtNone`]; otherwise the page
    /// becomes accessible again, write-protected if `VM_WRITE` went. Gaining `VM_WRITE` does
    /// not make a private entry writable (v4.x): the next write fault does (`do_wp_page`).
    pub fn modify(self, vm_access: u64) -> Pte {
        use crate::mm_types::vm::{VM_ACCESS, VM_WRITE};
        if vm_access & VM_ACCESS == 0 {
            return match self {
                Pte::None => Pte::None,
                other => Pte::ProtNone { pfn: other.frame() },
            };
        }
        match self {
            Pte::ProtNone { pfn: None } => Pte::Zero,
            Pte::ProtNone { pfn: Some(pfn) } => Pte::Page { pfn, write: false },
            Pte::Page { pfn, write } => Pte::Page {
                pfn,
                write: write && vm_access & VM_WRITE != 0,
            },
            other => other,
        }
    }
}

/// What [`PageTable::zap_range`] reports to its caller.
#[derive(Clone, Copy, Debug)]
pub enum Zap {
    /// The present entry for this address was cleared; it held this value.
    Cleared(u64, Pte),
    /// A table is done and its lock dropped.
    TableDone,
}

/// A last-level table with its split PTE lock. The lock sits in a cache line of its own
/// before the entries (the kernel keeps it apart too, in the table page's `struct page`,
/// `page->ptl`): a lock word sharing a line with another table's entries would bounce between
/// CPUs faulting in neighbouring tables.
#[repr(C, align(64))]
pub struct PteTable {
    ptl: PtlLine,
    entries: [AtomicU64; ENTRIES],
}

// The lock has a line of its own and the entries start on the next one.
const _: () = assert!(std::mem::align_of::<PteTable>() == 64);
const _: () = assert!(std::mem::offset_of!(PteTable, entries) == 64);

/// `page->ptl`, alone in its cache line.
#[repr(align(64))]
struct PtlLine(RawSpinLock<()>);

impl std::ops::Deref for PtlLine {
    type Target = RawSpinLock<()>;
    fn deref(&self) -> &RawSpinLock<()> {
        &self.0
    }
}

struct Pmd {
    tables: [AtomicPtr<PteTable>; ENTRIES],
}

/// The page tables of one address space.
pub struct PageTable {
    pgd: [AtomicPtr<Pmd>; ENTRIES],
    /// Last-level tables allocated (`mm->nr_ptes`).
    nr_ptes: AtomicU64,
}

impl Default for PageTable {
    fn default() -> Self {
        Self::new()
    }
}

fn idx(addr: u64, level: u32) -> usize {
    ((addr >> (PAGE_SHIFT + level * LEVEL_BITS)) as usize) & (ENTRIES - 1)
}

/// A locked PTE table (`pte_offset_map_lock()`); entries are changed through it.
pub struct PteLocked<'a> {
    table: &'a PteTable,
    _g: crate::sync::SpinGuard<'a, ()>,
}

impl PteLocked<'_> {
    /// Read the entry for `addr`.
    pub fn get(&self, addr: u64) -> Pte {
        Pte::decode(self.table.entries[idx(addr, 0)].load(Ordering::Acquire))
    }
    /// Write the entry for `addr` (`set_pte_at()`).
    pub fn set(&self, addr: u64, pte: Pte) {
        self.table.entries[idx(addr, 0)].store(pte.encode(), Ordering::Release);
    }
    /// Clear the entry and return the old value (`ptep_get_and_clear()`). Every writer of an
    /// entry holds this table's lock and the emulated MMU never writes entries (no
    /// accessed/dirty bits), so a load and a store do what x86's `xchg` does against the
    /// hardware walker.
    pub fn take(&self, addr: u64) -> Pte {
        let e = &self.table.entries[idx(addr, 0)];
        let old = e.load(Ordering::Acquire);
        if old != 0 {
            e.store(0, Ordering::Release);
        }
        Pte::decode(old)
    }
}

/// The table behind `slot`, allocating and installing it with a CAS if `alloc` (the kernel's
/// `__pmd_alloc`/`__pte_alloc`, which populate under `page_table_lock`). Returns the table and
/// whether this call installed it. Installed tables live until the `PageTable` drops.
fn install<T>(slot: &AtomicPtr<T>, alloc: bool, make: impl FnOnce() -> T) -> Option<(&T, bool)> {
    let p = slot.load(Ordering::Acquire);
    if !p.is_null() {
        // SAFETY: installed tables live until the PageTable drops.
        return Some((unsafe { &*p }, false));
    }
    if !alloc {
        return None;
    }
    let new = Box::into_raw(Box::new(make()));
    match slot.compare_exchange(
        std::ptr::null_mut(),
        new,
        Ordering::AcqRel,
        Ordering::Acquire,
    ) {
        // SAFETY: just installed; lives until drop.
        Ok(_) => Some((unsafe { &*new }, true)),
        Err(cur) => {
            // SAFETY: `new` was never shared.
            drop(unsafe { Box::from_raw(new) });
            // SAFETY: installed by another walker; lives until drop.
            Some((unsafe { &*cur }, false))
        }
    }
}

impl PageTable {
    pub fn new() -> Self {
        PageTable {
            pgd: std::array::from_fn(|_| AtomicPtr::new(std::ptr::null_mut())),
            nr_ptes: AtomicU64::new(0),
        }
    }

    /// Number of last-level tables (`mm_nr_ptes()`).
    pub fn nr_ptes(&self) -> u64 {
        self.nr_ptes.load(Ordering::Relaxed)
    }

    fn pmd(&self, addr: u64, alloc: bool) -> Option<&Pmd> {
        debug_assert!(addr < TASK_SIZE);
        install(&self.pgd[idx(addr, 2)], alloc, || Pmd {
            tables: std::array::from_fn(|_| AtomicPtr::new(std::ptr::null_mut())),
        })
        .map(|(pmd, _)| pmd)
    }

    fn table(&self, addr: u64, alloc: bool) -> Option<&PteTable> {
        let pmd = self.pmd(addr, alloc)?;
        let (table, new) = install(&pmd.tables[idx(addr, 1)], alloc, || PteTable {
            ptl: PtlLine(RawSpinLock::new(())),
            entries: std::array::from_fn(|_| AtomicU64::new(0)),
        })?;
        if new {
            self.nr_ptes.fetch_add(1, Ordering::Relaxed);
        }
        Some(table)
    }

    /// Lock-free read of the PTE for `addr` (what the MMU sees).
    pub fn lookup(&self, addr: u64) -> Pte {
        match self.table(addr, false) {
            None => Pte::None,
            Some(t) => Pte::decode(t.entries[idx(addr, 0)].load(Ordering::Acquire)),
        }
    }

    /// `pte_alloc()` + `pte_offset_map_lock()`: the locked table covering `addr`.
    pub fn lock_alloc(&self, addr: u64) -> PteLocked<'_> {
        let table = self.table(addr, true).expect("allocating a page table");
        PteLocked {
            table,
            _g: table.ptl.lock(),
        }
    }

    /// The locked table covering `addr`, if it exists.
    pub fn lock(&self, addr: u64) -> Option<PteLocked<'_>> {
        let table = self.table(addr, false)?;
        Some(PteLocked {
            table,
            _g: table.ptl.lock(),
        })
    }

    /// Clear every PTE in [start, end), one table at a time under its lock
    /// (`zap_pte_range()`): `f(Zap::Cleared(addr, old))` runs for each cleared present entry
    /// with the lock held (the caller drops its page reference there, as `zap_pte_range`
    /// does), and `f(Zap::TableDone)` after each table's lock is dropped (where
    /// `zap_pte_range` flushes its `mmu_gather` batch and frees the pages it gathered).
    pub fn zap_range(&self, start: u64, end: u64, mut f: impl FnMut(Zap)) {
        let mut addr = start;
        let span = PAGE_SIZE << LEVEL_BITS;
        while addr < end {
            let next = ((addr / span) + 1) * span;
            let stop = next.min(end);
            if let Some(locked) = self.lock(addr) {
                let mut a = addr;
                while a < stop {
                    let old = locked.take(a);
                    if old != Pte::None {
                        f(Zap::Cleared(a, old));
                    }
                    a += PAGE_SIZE;
                }
                drop(locked);
                f(Zap::TableDone);
            }
            addr = stop;
        }
    }

    /// Apply `f` to every present PTE in [start, end), under the table locks
    /// (`change_pte_range()`); `f` returns the new entry.
    pub fn update_range(&self, start: u64, end: u64, mut f: impl FnMut(Pte) -> Pte) {
        let mut addr = start;
        let span = PAGE_SIZE << LEVEL_BITS;
        while addr < end {
            let next = ((addr / span) + 1) * span;
            let stop = next.min(end);
            if let Some(locked) = self.lock(addr) {
                let mut a = addr;
                while a < stop {
                    let old = locked.get(a);
                    if old != Pte::None {
                        locked.set(a, f(old));
                    }
                    a += PAGE_SIZE;
                }
            }
            addr = stop;
        }
    }
}

impl PageTable {
    /// `free_pgtables()` over the whole user range, as `exit_mmap()` (mm/mmap.c, v4.19) calls
    /// it after `unmap_vmas()`: every PMD and PTE table is freed and [`Self::nr_ptes`] drops
    /// to 0 (`free_pte_range()` → `mm_dec_nr_ptes()`). Every entry must be clear already:
    /// a live entry asserts (its frame would leak). The top level stays (`mm_free_pgd()` is
    /// `__mmdrop()`'s), so later walks find no table, as on a fresh address space.
    ///
    /// # Safety
    /// No walk of these tables may run concurrently, nor any reference into them be held:
    /// the caller holds the address space's `mmap_lock` for write and the address space has
    /// no users, which excludes every walker (the emulated MMU walks only for tasks using the
    /// mm; the fault, GUP, munmap, mprotect and reaper walks hold `mmap_lock`).
    pub unsafe fn free_pgtables(&self) {
        self.free_tables();
    }

    /// Free every table below the top level; see [`Self::free_pgtables`] for who may.
    fn free_tables(&self) {
        for slot in &self.pgd {
            let p = slot.swap(std::ptr::null_mut(), Ordering::AcqRel);
            if p.is_null() {
                continue;
            }
            // SAFETY: unlinked above; no walker holds it (the callers' contract, or `&mut`
            // at drop).
            let pmd = unsafe { Box::from_raw(p) };
            for t in &pmd.tables {
                let tp = t.swap(std::ptr::null_mut(), Ordering::AcqRel);
                if !tp.is_null() {
                    // SAFETY: as above.
                    let table = unsafe { Box::from_raw(tp) };
                    self.nr_ptes.fetch_sub(1, Ordering::Relaxed);
                    for e in table.entries.iter().filter(|_| !std::thread::panicking()) {
                        assert_eq!(
                            Pte::decode(e.load(Ordering::Relaxed)),
                            Pte::None,
                            "page table freed with a live PTE (a frame would leak)"
                        );
                    }
                }
            }
        }
    }
}

impl Drop for PageTable {
    fn drop(&mut self) {
        self.free_tables();
    }
}
