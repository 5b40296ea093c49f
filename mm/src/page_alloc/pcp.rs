//! The per-CPU pagesets and the free list they feed from (the buddy allocator's order-0
//! stand-in): `buffered_rmqueue()`/`rmqueue_bulk()`, `free_hot_cold_page()`/
//! `free_pcppages_bulk()`, `free_hot_cold_page_list()` (as `release_pages()` drives it) and
//! `drain_all_pages()` of `mm/page_alloc.c` v4.7.

use super::{AllocStat, FramePool, FrameState, Pfn};
use crate::sched;
use crate::sync::RawSpinLock;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Frames per `release_pages()` pass of [`FramePool::release_unmapped`] (the kernel's
/// `mmu_gather` batch holds up to `MAX_GATHER_BATCH` ≈ 510 pages).
const RELEASE_BATCH: usize = 512;

/// Aligns to 128 bytes so that per-CPU data of neighbouring slots never share a cache line
/// (two lines, for the adjacent-line prefetcher), as crossbeam's `CachePadded`.
#[repr(align(128))]
pub(super) struct CachePadded<T>(pub(super) T);

impl<T> std::ops::Deref for CachePadded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// One CPU's `struct per_cpu_pages` plus its share of the counters.
pub(super) struct PcpSlot {
    /// `pcp->lists[MIGRATE_MOVABLE]`, hot end at the front.
    pub(super) list: RawSpinLock<VecDeque<Pfn>>,
    /// `pcp->count`, mirrored for lock-free reads.
    pub(super) count: AtomicU64,
    pub(super) allocated: AtomicI64,
    pub(super) mapped: AtomicI64,
    pub(super) refills: AtomicU64,
    pub(super) spills: AtomicU64,
}

impl FramePool {
    // ---- the buddy stand-in and the per-CPU lists ----------------------------------------

    #[inline]
    pub(super) fn this_slot(&self) -> &PcpSlot {
        &self.slots[sched::raw_smp_processor_id() % self.slots.len()]
    }

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
    pub(super) fn rmqueue(&self) -> Option<Pfn> {
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
}
