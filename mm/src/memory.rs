//! Page faults, unmapping, remote access, the oom_reaper's unmap and address-space teardown.
//!
//! Models mm/memory.c, arch/x86/mm/fault.c, mm/gup.c, kernel/fork.c, kernel/exit.c, mm/mmap.c
//! and the unmap half of mm/oom_kill.c; versions are given per function.
//!
//! Page references: a mapped frame holds one reference (the allocation's, handed to the PTE);
//! `get_user_pages` takes one more while it copies; whoever drops the last reference frees
//! the frame. PTEs are cleared with an atomic take under the PTE table lock, so a frame is
//! unmapped (and its mapping reference dropped) exactly once whether munmap, the reaper or
//! exit gets there first (docs/oom-rules.md §5).

use crate::errno::Errno;
use crate::gfp::Gfp;
use crate::locking::rwsem::Killed;
use crate::mm_types::vm;
use crate::mm_types::{
    add_mm_counter, LockWait, MmStruct, Vma, VmaTree, MMF_OOM_SKIP, MMF_OOM_VICTIM, MMF_UNSTABLE,
};
use crate::mmap_lock::{
    mmap_read_lock, mmap_read_lock_killable, mmap_read_trylock, mmap_write_lock, MmapReadGuard,
};
use crate::pgtable::{Pte, PAGE_SIZE, TASK_SIZE};
use crate::sched;
use crate::vmstat::{count_vm_event, VmEvent};
use std::sync::Arc;

/// Why a page fault could not be satisfied (the `VM_FAULT_*` error bits and the arch
/// handler's outcomes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultError {
    /// No VMA, or an access the VMA does not permit: SIGSEGV.
    Segv,
    /// `VM_FAULT_SIGBUS`: the address space is `MMF_UNSTABLE` (being reaped).
    Bus,
    /// `VM_FAULT_OOM`: the allocation failed (only OOM victims and dying tasks see this: the
    /// allocator never fails order-0 requests of others). `pagefault_out_of_memory()` ran.
    Oom,
    /// The `mmap_lock` wait was killable (read_lock = killable, v6.5) and SIGKILL arrived.
    Killed,
}

/// `VM_FAULT_*` of the inner handler.
enum VmFault {
    Oom,
    Bus,
}

/// Page-aligned `addr`.
pub fn page_align_down(addr: u64) -> u64 {
    addr & !(PAGE_SIZE - 1)
}

/// `handle_mm_fault()` → `handle_pte_fault()` → `do_anonymous_page()` / `do_wp_page()` /
/// `shmem_fault()` (v4.15), for a VMA found under `mmap_lock` held for read (or write).
///
/// - Read fault on private anonymous memory maps the shared zero page (no allocation).
/// - Write fault on `pte_none` or on the zero page allocates a zeroed frame.
/// - Write fault on a present, write-protected page (after `mprotect` took `PROT_WRITE` away
///   and gave it back) makes the entry writable: `do_wp_page()` → `wp_page_reuse()`, since
///   without fork every anonymous page has one mapping (shmem pages are shared anyway).
/// - Shared anonymous (shmem) faults always allocate; pages are charged to MM_SHMEMPAGES.
/// - `check_stable_address_space()` under the PTE lock: an `MMF_UNSTABLE` mm gets SIGBUS.
///
/// Deviations: no COW between processes (no fork of address spaces), no swap, no THP; a
/// shmem page belongs to its address space rather than to a shared inode.
fn fault_locked(mm: &MmStruct, vma: &Vma, addr: u64, write: bool) -> Result<(), VmFault> {
    let addr = page_align_down(addr);
    let pt = &mm.pgtable;
    let shared = vma.is_shared();
    // Decide under the lock-free view whether a frame is needed, allocate it with no lock
    // held (the allocator may sleep), then install under the PTE lock.
    let cur = pt.lookup(addr);
    // change_protection() rewrites every entry of the range under the write lock, so an
    // inaccessible entry never meets a VMA that allows the access.
    assert!(
        !matches!(cur, Pte::ProtNone { .. }),
        "oomlab: emulator bug: PROT_NONE PTE at {addr:#x} in {vma:?}"
    );
    let need_frame = match cur {
        Pte::None => write || shared,
        Pte::Zero => write,
        Pte::Page { .. } | Pte::ProtNone { .. } => false,
    };
    if !need_frame {
        match cur {
            Pte::None => {
                // do_anonymous_page(), read fault: map the zero page.
                let locked = pt.lock_alloc(addr);
                if mm.test_flag(MMF_UNSTABLE) {
                    return Err(VmFault::Bus);
                }
                if locked.get(addr) == Pte::None {
                    locked.set(addr, Pte::Zero);
                }
            }
            Pte::Page { pfn, write: false } if write => {
                // do_wp_page() → wp_page_reuse(): maybe_mkwrite() under the PTE lock if the
                // entry is unchanged (`pte_same`). Without this the access would fault again
                // forever. (The caller checked VM_WRITE.)
                let locked = pt.lock_alloc(addr);
                if locked.get(addr) == cur {
                    locked.set(addr, Pte::Page { pfn, write: true });
                }
            }
            _ => {}
        }
        return Ok(());
    }
    let Some(pfn) = mm.pool.alloc_page(Gfp::GFP_HIGHUSER_MOVABLE) else {
        return Err(VmFault::Oom);
    };
    let locked = pt.lock_alloc(addr);
    if mm.test_flag(MMF_UNSTABLE) {
        drop(locked);
        mm.pool.put_page(pfn);
        return Err(VmFault::Bus);
    }
    match locked.get(addr) {
        Pte::None | Pte::Zero => {
            mm.pool.set_mapped(pfn);
            locked.set(
                addr,
                Pte::Page {
                    pfn: pfn.0,
                    write: vma.flags & vm::VM_WRITE != 0,
                },
            );
            drop(locked);
            add_mm_counter(mm, vma.rss_type(), 1);
        }
        Pte::Page { .. } | Pte::ProtNone { .. } => {
            // Someone else installed a page meanwhile (`!pte_same`): release ours.
            drop(locked);
            mm.pool.put_page(pfn);
        }
    }
    Ok(())
}

fn access_ok(vma: &Vma, write: bool) -> bool {
    if write {
        vma.flags & vm::VM_WRITE != 0
    } else {
        vma.flags & vm::VM_ACCESS != 0
    }
}

/// The fault path's blocking `mmap_lock` read wait, after its trylock failed: `down_read()`
/// (x86 `__do_page_fault()`, before v6.5) or `mmap_read_lock_killable()` (v6.5
/// `lock_mm_and_find_vma()`, eda0047296a1) per the machine's `read_lock` knob. The one place
/// that dispatches on the knob; a kernel path that waits like a fault (e.g. `filemap_fault()`
/// waiting for I/O) takes the lock through it too.
pub fn fault_read_lock(mm: &MmStruct) -> Result<MmapReadGuard<'_>, Killed> {
    match mm.knobs.read_lock {
        LockWait::Uninterruptible => Ok(mmap_read_lock(mm)),
        LockWait::Killable => mmap_read_lock_killable(mm),
    }
}

/// A user-mode page fault on `addr` of `mm` (the current task's address space).
///
/// Models x86 `__do_page_fault()` (v4.7): `down_read_trylock`, falling back to `down_read`
/// (uninterruptible); with `read_lock = killable` the fallback is `down_read_killable` as
/// `lock_mm_and_find_vma()` does since v6.5 (a fatal signal makes the fault return, the
/// task dies on the way back to user space). Then `find_vma`, access checks (SIGSEGV; no
/// stack expansion), `handle_mm_fault`, `up_read`. On `VM_FAULT_OOM` it calls
/// [`pagefault_out_of_memory`].
pub fn handle_page_fault(mm: &MmStruct, addr: u64, write: bool) -> Result<(), FaultError> {
    count_vm_event(VmEvent::Pgfault, 1);
    if addr >= TASK_SIZE {
        return Err(FaultError::Segv);
    }
    let guard = match mmap_read_trylock(mm) {
        Some(g) => g,
        None => fault_read_lock(mm).map_err(|Killed| FaultError::Killed)?,
    };
    let Some(vma) = guard.vma_at(addr) else {
        return Err(FaultError::Segv);
    };
    if !access_ok(vma, write) {
        return Err(FaultError::Segv);
    }
    let r = fault_locked(mm, vma, addr, write);
    drop(guard);
    match r {
        Ok(()) => Ok(()),
        Err(VmFault::Bus) => Err(FaultError::Bus),
        Err(VmFault::Oom) => {
            pagefault_out_of_memory(mm);
            Err(FaultError::Oom)
        }
    }
}

/// `pagefault_out_of_memory()` (mm/oom_kill.c, v4.7): a fault whose allocation failed runs the
/// OOM killer with `gfp_mask` 0 if it can take `oom_lock` without waiting.
pub fn pagefault_out_of_memory(mm: &MmStruct) {
    mm.pool.pagefault_out_of_memory();
}

/// A user-mode access to `addr` by the current task: a hit if the PTE allows it, otherwise a
/// page fault. A write stores `val` into the byte at `addr` (through a page reference, as
/// the CPU would through the TLB).
pub fn touch(mm: &MmStruct, addr: u64, write: bool, val: u8) -> Result<(), FaultError> {
    // A user access to a kernel address never reaches the page tables of the user half:
    // SIGSEGV (x86 `bad_area_nosemaphore` for `fault_in_kernel_space`).
    if addr >= TASK_SIZE {
        return Err(FaultError::Segv);
    }
    loop {
        match mm.pgtable.lookup(addr) {
            Pte::Page { pfn, write: w } if w || !write => {
                if write {
                    if let Some(pfn) = pin_pte_page(mm, addr, pfn) {
                        // SAFETY: the frame is pinned by our reference; one byte inside it.
                        unsafe {
                            *mm.pool.frame_ptr(pfn).add((addr % PAGE_SIZE) as usize) = val;
                        }
                        mm.pool.put_page(pfn);
                    } else {
                        continue; // the PTE changed under us: take the fault path
                    }
                }
                return Ok(());
            }
            Pte::Zero if !write => return Ok(()),
            _ => handle_page_fault(mm, addr, write)?,
        }
    }
}

/// `get_page()` on the frame `addr` maps, if the PTE still maps `pfn` (checked under the PTE
/// lock, as `follow_page_pte()` does).
fn pin_pte_page(mm: &MmStruct, addr: u64, pfn: u32) -> Option<crate::page_alloc::Pfn> {
    let locked = mm.pgtable.lock(addr)?;
    match locked.get(addr) {
        Pte::Page { pfn: p, .. } if p == pfn => {
            let pfn = crate::page_alloc::Pfn(pfn);
            mm.pool.get_page(pfn);
            Some(pfn)
        }
        _ => None,
    }
}

/// `zap_page_range()` / `unmap_page_range()` for [start, end) of `vma`: clear the PTEs, drop
/// the mapping references, uncharge rss. Returns the number of frames unmapped.
///
/// Frames are gathered per PTE table, as `zap_pte_range()` (v4.7) gathers them into its
/// `mmu_gather`, and released together once the table's lock is dropped
/// ([`crate::page_alloc::FramePool::release_unmapped`]); the kernel flushes at most
/// `MAX_GATHER_BATCH` pages at a time, here one table (≤ 512).
pub(crate) fn zap_vma_range(mm: &MmStruct, vma: &Vma, start: u64, end: u64) -> u64 {
    use crate::page_alloc::Pfn;
    use crate::pgtable::Zap;
    let mut n = 0;
    let mut batch = [Pfn(0); 512];
    let mut len = 0usize;
    mm.pgtable.zap_range(start, end, |z| match z {
        // Accessible or PROT_NONE: either way the entry held the frame's mapping reference.
        Zap::Cleared(_, old) => {
            if let Some(pfn) = old.frame() {
                batch[len] = Pfn(pfn);
                len += 1;
                n += 1;
            }
        }
        Zap::TableDone => {
            mm.pool.release_unmapped(&batch[..len]);
            len = 0;
        }
    });
    if n > 0 {
        add_mm_counter(mm, vma.rss_type(), -(n as i64));
    }
    n
}

/// `__oom_reap_task_mm()` (mm/oom_kill.c, v4.19), called with `mmap_lock` held for read:
/// set `MMF_UNSTABLE`, then unmap every private anonymous VMA that is not `VM_LOCKED`
/// (`can_madv_dontneed_vma()`); shared (shmem) and mlocked memory stays. Returns the number of
/// frames unmapped. (No mmu notifiers exist here, so it never has to back off.)
pub fn oom_reap_task_mm(mm: &MmStruct, vmas: &VmaTree) -> u64 {
    mm.set_flag(MMF_UNSTABLE);
    let mut n = 0;
    for vma in vmas.iter() {
        if vma.is_locked() || !vma.is_private_anon() {
            continue;
        }
        n += zap_vma_range(mm, vma, vma.start, vma.end);
    }
    n
}

/// `__access_remote_vm()` (mm/memory.c, v4.7) on an address space the caller has pinned
/// (`mm_users`): `down_read(&mm->mmap_sem)` (uninterruptible in v4.7), then page by page
/// `get_user_pages_remote()` — which faults pages in, allocating — and a copy through the
/// page reference, then `up_read`. Returns the bytes transferred; an error only if nothing
/// was transferred: EFAULT for an unmapped address or an `MMF_UNSTABLE` (reaped) address
/// space (`VM_FAULT_SIGBUS`), ENOMEM when the fault's allocation failed, EINTR when the
/// caller got SIGKILL (`__get_user_pages` checks `fatal_signal_pending` per page). It never
/// returns zeros in place of reaped memory.
pub fn access_remote_vm(
    mm: &MmStruct,
    addr: u64,
    buf: &mut [u8],
    write: bool,
) -> Result<usize, Errno> {
    let guard = mmap_read_lock(mm);
    access_remote_vm_locked(mm, &guard, addr, buf, write)
}

/// The page walk of [`access_remote_vm`] (`get_user_pages_remote()` and the copy, v4.7) for a
/// caller that already holds `mm`'s `mmap_lock` for read (`guard`) and keeps holding it after:
/// a remote access whose first page makes it wait with the lock held (a file page under I/O:
/// `filemap_fault()` cannot drop the lock for `get_user_pages_remote()` without `locked`)
/// waits in the caller, then walks here. Same results and errors as [`access_remote_vm`].
pub fn access_remote_vm_locked(
    mm: &MmStruct,
    guard: &MmapReadGuard<'_>,
    addr: u64,
    buf: &mut [u8],
    write: bool,
) -> Result<usize, Errno> {
    let mut done = 0usize;
    let mut err = None;
    while done < buf.len() {
        // __get_user_pages(): cond_resched() per page, and a fatal signal ends the walk.
        sched::cond_resched();
        if sched::fatal_signal_pending() {
            err = Some(Errno::EINTR);
            break;
        }
        let a = addr + done as u64;
        let Some(vma) = guard.vma_at(a).filter(|v| access_ok(v, write)) else {
            err = Some(Errno::EFAULT);
            break;
        };
        // follow_page_mask(); on a miss, faultin_page() with FOLL_WRITE semantics for writes.
        // The remote reader always needs a real page to copy from, as FOLL_GET does with the
        // zero page for reads: treat the zero page as readable zeros only if it is mapped.
        let pinned = loop {
            match mm.pgtable.lookup(a) {
                Pte::Page { pfn, write: w } if w || !write => {
                    if let Some(p) = pin_pte_page(mm, a, pfn) {
                        break Some(p);
                    }
                }
                Pte::Zero if !write => break None,
                _ => {}
            }
            // No MMF_UNSTABLE test here: fault_locked() makes it under the PTE lock on every
            // path that installs a page (-> EFAULT below), and the write-protect fault on a
            // page the reaper left (mlocked, shmem) succeeds, as do_wp_page() does.
            match fault_locked(mm, vma, a, write) {
                Ok(()) => continue,
                Err(VmFault::Bus) => {
                    err = Some(Errno::EFAULT);
                    break None;
                }
                Err(VmFault::Oom) => {
                    err = Some(Errno::ENOMEM);
                    break None;
                }
            }
        };
        if err.is_some() {
            break;
        }
        let off = (a % PAGE_SIZE) as usize;
        let n = (PAGE_SIZE as usize - off).min(buf.len() - done);
        match pinned {
            Some(pfn) => {
                // SAFETY: the frame is pinned by our reference; [off, off+n) is inside it.
                unsafe {
                    let p = mm.pool.frame_ptr(pfn).add(off);
                    if write {
                        std::ptr::copy_nonoverlapping(buf[done..].as_ptr(), p, n);
                    } else {
                        std::ptr::copy_nonoverlapping(p, buf[done..].as_mut_ptr(), n);
                    }
                }
                mm.pool.put_page(pfn);
            }
            None => buf[done..done + n].fill(0), // the zero page, genuinely mapped
        }
        done += n;
    }
    match (done, err) {
        (0, Some(e)) => Err(e),
        _ => Ok(done),
    }
}

/// `access_process_vm()` / `get_task_mm()` + [`access_remote_vm`] + `mmput()`: pin the target
/// address space (fails with EIO... as /proc does with ESRCH→EIO when it is gone), access it,
/// unpin. The unpin may be the last reference and tear the address space down in the
/// caller's context, as in the kernel.
pub fn access_process_vm(
    mm: &Arc<MmStruct>,
    addr: u64,
    buf: &mut [u8],
    write: bool,
) -> Result<usize, Errno> {
    if !mm.mmget_not_zero() {
        return Err(Errno::EIO);
    }
    let r = access_remote_vm(mm, addr, buf, write);
    mmput(mm);
    r
}

/// Install `mm` as the current task's address space (`exec`/`use_mm`); takes one `mm_users`
/// reference on behalf of the task (the caller keeps its own).
pub fn attach_mm(mm: &Arc<MmStruct>) {
    mm.mmget();
    let old = sched::with_current(|t| t.swap_mm(Some(mm.clone())));
    if let Some(old) = old {
        mmput(&old);
    }
}

/// `exit_mm()` (kernel/exit.c, v4.7): `sync_mm_rss`, `down_read(&mm->mmap_sem)`
/// (uninterruptible — the core-dump rendezvous; still uninterruptible in 6.x), clear
/// `current->mm`, `up_read`, `mmput`. A no-op for tasks without an address space.
/// Called by the executors when a task's function returns.
pub fn exit_mm() {
    sched::with_current(|t| t.set_pf_exiting());
    let Some(mm) = sched::with_current(|t| t.mm()) else {
        return;
    };
    let guard = mmap_read_lock(&mm);
    let old = sched::with_current(|t| t.swap_mm(None));
    drop(guard);
    if let Some(old) = old {
        mmput(&old);
    }
}

/// `mmput()` (kernel/fork.c): drop a user; the last one runs `__mmput()` → [`exit_mmap`].
pub fn mmput(mm: &MmStruct) {
    if mm.put_user() {
        exit_mmap(mm);
        mm.mmdrop();
    }
}

/// `exit_mmap()` (mm/mmap.c): the last user is gone; free everything.
///
/// Order as v4.19 (212925802454, 27ae357fa82b): an OOM victim's mm is first reaped by
/// the exiting task itself (`__oom_reap_task_mm`), `MMF_OOM_SKIP` is set and a
/// `down_write`/`up_write` pair waits out a reaper already inside its read-locked section;
/// then every VMA is unmapped and removed and the page tables are freed (`free_pgtables()`).
/// Deviation: that final teardown holds `mmap_lock` for write (as v6.1 does) because the VMA
/// tree is only reachable through the lock; no one else can contend for it then. `MMF_OOM_SKIP` is set at the end for every mm (v6.x does so
/// unconditionally), with the emulator's `MMF_TORN_DOWN`.
pub fn exit_mmap(mm: &MmStruct) {
    if mm.test_flag(MMF_OOM_VICTIM) {
        {
            let g = mmap_read_lock(mm);
            oom_reap_task_mm(mm, &g);
        }
        mm.set_flag(MMF_OOM_SKIP);
        drop(mmap_write_lock(mm));
    }
    let mut g = mmap_write_lock(mm);
    let vmas: Vec<Vma> = g.iter().cloned().collect();
    for vma in &vmas {
        zap_vma_range(mm, vma, vma.start, vma.end);
    }
    let end = vmas.last().map_or(0, |v| v.end);
    let start = vmas.first().map_or(0, |v| v.start);
    g.detach_range(start, end.max(start));
    mm.update_total_vm(&g);
    assert_eq!(
        mm.mm_users(),
        0,
        "exit_mmap() on an address space with users"
    );
    // SAFETY: we hold mmap_lock for write and the last user is gone: no walker.
    unsafe { mm.pgtable.free_pgtables() };
    mm.mmap_lock.raw().prune_grant_records();
    drop(g);
    mm.set_flag(MMF_OOM_SKIP);
    mm.set_torn_down();
}
