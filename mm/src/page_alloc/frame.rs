//! The emulator's `struct page` and `mem_map`: page frame numbers, the per-frame state and
//! reference count with their checked transitions (`get_page()`/`put_page()`/`page_count()`,
//! the rmap's mapped/unmapped step), frame access (`page_address()`), and the
//! `prep_new_page()`/`free_pages_prepare()` halves of `mm/page_alloc.c` (v4.7) that clear and
//! poison frames (`CONFIG_PAGE_POISONING`).

use super::FramePool;
use crate::pgtable::{PAGE_SHIFT, PAGE_SIZE};
use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};

/// `PAGE_POISON` (include/linux/poison.h): the byte freed frames are filled with.
pub const PAGE_POISON: u8 = 0xaa;

/// `PAGE_SIZE` as a `usize`: the length of a frame's bytes.
const FRAME_BYTES: usize = PAGE_SIZE as usize;

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
    pub(super) fn from_u8(v: u8) -> FrameState {
        match v {
            0 => FrameState::Free,
            1 => FrameState::Pcp,
            2 => FrameState::Allocated,
            3 => FrameState::Mapped,
            _ => unreachable!("corrupt frame state {v}"),
        }
    }
}

/// The emulator's `struct page`: the frame's state and `page->_refcount` (1 from allocation,
/// handed to the PTE when mapped, +1 per `get_page()` pin of get_user_pages; the frame is
/// freed when it drops to 0).
#[repr(C, align(64))]
pub(super) struct PageMeta {
    pub(super) state: AtomicU8,
    pub(super) refs: std::sync::atomic::AtomicU32,
}

impl FramePool {
    /// The state of one frame.
    pub fn frame_state(&self, pfn: Pfn) -> FrameState {
        FrameState::from_u8(self.frame(pfn).load(Ordering::Acquire))
    }

    pub(super) fn frame(&self, pfn: Pfn) -> &AtomicU8 {
        assert!(
            (pfn.0 as u64) < self.total,
            "pfn {pfn} outside the pool of {} frames",
            self.total
        );
        &self.pages[pfn.0 as usize].state
    }

    /// Move `pfn` from state `from` to `to`, or crash loudly: the bookkeeping is broken.
    #[inline]
    pub(super) fn transition(&self, pfn: Pfn, from: FrameState, to: FrameState, what: &str) {
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
    pub(super) fn move_listed(&self, pfn: Pfn, from: FrameState, to: FrameState, what: &str) {
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
        assert!(offset + dst.len() <= FRAME_BYTES, "read past the frame");
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
        assert!(offset + src.len() <= FRAME_BYTES, "write past the frame");
        // SAFETY: in bounds of an owned frame (see frame_ptr).
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.frame_ptr(pfn).add(offset), src.len())
        }
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

    // ---- references ----------------------------------------------------------------------

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

    // ---- preparing and poisoning ---------------------------------------------------------

    /// `prep_new_page()`: check the poison (`kernel_poison_pages(.., 1)`), then clear the page.
    pub(super) fn prep_new_page(&self, pfn: Pfn) {
        self.pages[pfn.0 as usize].refs.store(1, Ordering::Relaxed);
        let p = self.frame_ptr(pfn);
        if self.poison {
            // SAFETY: we own the frame (state Allocated, just taken off a list).
            let bytes = unsafe { std::slice::from_raw_parts(p, FRAME_BYTES) };
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
        unsafe { std::ptr::write_bytes(p, 0, FRAME_BYTES) };
    }

    /// `kernel_poison_pages(page, 1, 0)` for a frame being freed (state Pcp, not yet listed:
    /// still the caller's).
    pub(super) fn poison_freed(&self, pfn: Pfn) {
        if self.poison {
            // SAFETY: the frame is ours until it is on a list.
            unsafe { std::ptr::write_bytes(self.frame_ptr(pfn), PAGE_POISON, FRAME_BYTES) };
        }
    }
}
