//! The mm syscalls: `mmap`, `munmap`, `mprotect`, `mlock`, `munlock` (mm/mmap.c, mm/util.c,
//! mm/mprotect.c, mm/mlock.c).
//!
//! Each takes `mmap_lock` for write at syscall entry, before any state change, with
//! `down_write_killable()` or `down_write()` according to the per-run knob `write_lock`
//! (the conversion of "mm: make mmap_sem for write waits killable for mm syscalls",
//! dc0ef0df7b6a, v4.7). A killed waiter gets EINTR; the caller (the workload) then exits.
//!
//! Only anonymous mappings exist (`MAP_ANONYMOUS`, private or shared); other flags are
//! rejected with EINVAL. Argument checks return the kernel's errno, never panic.

use crate::errno::Errno;
use crate::memory::{handle_page_fault, zap_vma_range, FaultError};
use crate::mm_types::{vm, LockWait, MmStruct, Vma, VmaTree, DEFAULT_MAX_MAP_COUNT, MMAP_MIN_ADDR};
use crate::mmap_lock::{mmap_read_lock, mmap_write_lock, mmap_write_lock_killable, MmapWriteGuard};
use crate::pgtable::{Pte, PAGE_SIZE, TASK_SIZE};
use crate::vmstat::{count_vm_event, VmEvent};

pub const PROT_NONE: u32 = 0x0;
pub const PROT_READ: u32 = 0x1;
pub const PROT_WRITE: u32 = 0x2;
pub const PROT_EXEC: u32 = 0x4;

pub const MAP_SHARED: u32 = 0x01;
pub const MAP_PRIVATE: u32 = 0x02;
pub const MAP_FIXED: u32 = 0x10;
pub const MAP_ANONYMOUS: u32 = 0x20;
pub const MAP_LOCKED: u32 = 0x2000;
pub const MAP_POPULATE: u32 = 0x8000;
pub const MAP_FIXED_NOREPLACE: u32 = 0x100000;

const KNOWN_MAP_FLAGS: u32 = MAP_SHARED
    | MAP_PRIVATE
    | MAP_FIXED
    | MAP_ANONYMOUS
    | MAP_LOCKED
    | MAP_POPULATE
    | MAP_FIXED_NOREPLACE;

/// `PAGE_ALIGN()` with overflow detection.
fn page_align(len: u64) -> Option<u64> {
    len.checked_add(PAGE_SIZE - 1).map(|l| l & !(PAGE_SIZE - 1))
}

fn offset_in_page(addr: u64) -> bool {
    addr & (PAGE_SIZE - 1) != 0
}

fn prot_to_vm(prot: u32) -> u64 {
    let mut f = 0;
    if prot & PROT_READ != 0 {
        f |= vm::VM_READ;
    }
    if prot & PROT_WRITE != 0 {
        f |= vm::VM_WRITE;
    }
    if prot & PROT_EXEC != 0 {
        f |= vm::VM_EXEC;
    }
    f
}

/// `mmap_lock` for write at the entry of an mm syscall: `mmap_write_lock_killable()` (v4.7,
/// dc0ef0df7b6a: mmap, munmap, mprotect, mlock, brk, mremap, madvise, ... return `-EINTR`) or
/// `mmap_write_lock()` (before) per the machine's `write_lock` knob. The one place that
/// dispatches on the knob; syscall paths of workloads take the lock through it too.
pub fn syscall_write_lock(mm: &MmStruct) -> Result<MmapWriteGuard<'_>, Errno> {
    match mm.knobs.write_lock {
        LockWait::Killable => mmap_write_lock_killable(mm).map_err(|_| Errno::EINTR),
        LockWait::Uninterruptible => Ok(mmap_write_lock(mm)),
    }
}

/// Unmap [start, end) with the write lock held (`do_munmap()` body).
fn unmap_locked(mm: &MmStruct, g: &mut VmaTree, start: u64, end: u64) {
    for vma in g.detach_range(start, end) {
        zap_vma_range(mm, &vma, vma.start, vma.end);
    }
}

/// `mmap(2)` for anonymous memory: `ksys_mmap_pgoff()` → `vm_mmap_pgoff()` → `do_mmap()`
/// (v4.7). Returns the start address.
///
/// Errors: EINVAL for zero length, unknown flags, neither or both of MAP_SHARED/MAP_PRIVATE,
/// a non-anonymous mapping, or an unaligned `MAP_FIXED` address; ENOMEM when the length
/// overflows, the range leaves `TASK_SIZE`, no gap is free, or `max_map_count` would be
/// exceeded; EEXIST for `MAP_FIXED_NOREPLACE` over an existing mapping (v4.17); EPERM for a
/// fixed address below `mmap_min_addr`; EINTR when the killable write wait was killed.
/// `MAP_FIXED` replaces what was there, as the kernel does. `MAP_LOCKED`/`MAP_POPULATE`
/// fault the range in after dropping the lock (`mm_populate()`); its failures are ignored,
/// as the kernel ignores them.
pub fn mmap(mm: &MmStruct, addr: u64, len: u64, prot: u32, flags: u32) -> Result<u64, Errno> {
    count_vm_event(VmEvent::MmapCalls, 1);
    if len == 0 {
        return Err(Errno::EINVAL);
    }
    if flags & !KNOWN_MAP_FLAGS != 0 || prot & !(PROT_READ | PROT_WRITE | PROT_EXEC) != 0 {
        return Err(Errno::EINVAL);
    }
    let shared = flags & MAP_SHARED != 0;
    if shared == (flags & MAP_PRIVATE != 0) || flags & MAP_ANONYMOUS == 0 {
        return Err(Errno::EINVAL);
    }
    let len = page_align(len).ok_or(Errno::ENOMEM)?;
    if len > TASK_SIZE {
        return Err(Errno::ENOMEM);
    }
    let fixed = flags & (MAP_FIXED | MAP_FIXED_NOREPLACE) != 0;
    if fixed {
        if offset_in_page(addr) {
            return Err(Errno::EINVAL);
        }
        if addr > TASK_SIZE - len {
            return Err(Errno::ENOMEM);
        }
        if addr < MMAP_MIN_ADDR {
            return Err(Errno::EPERM);
        }
    }
    let mut flags_vm = prot_to_vm(prot);
    if shared {
        flags_vm |= vm::VM_SHARED | vm::VM_MAYSHARE;
    }
    if flags & MAP_LOCKED != 0 {
        flags_vm |= vm::VM_LOCKED;
    }

    let mut g = syscall_write_lock(mm)?;
    let start = if fixed {
        if g.overlapping(addr, addr + len).next().is_some() {
            if flags & MAP_FIXED_NOREPLACE != 0 {
                return Err(Errno::EEXIST);
            }
            unmap_locked(mm, &mut g, addr, addr + len);
        }
        addr
    } else {
        g.unmapped_area_topdown(len).ok_or(Errno::ENOMEM)?
    };
    if g.len() >= DEFAULT_MAX_MAP_COUNT {
        return Err(Errno::ENOMEM);
    }
    g.insert(Vma {
        start,
        end: start + len,
        flags: flags_vm,
    });
    mm.update_total_vm(&g);
    drop(g);
    if flags & (MAP_LOCKED | MAP_POPULATE) != 0 {
        let _ = populate(mm, start, start + len);
    }
    Ok(start)
}

/// `__mm_populate()` / `populate_vma_page_range()`: fault every page of [start, end) in
/// (write faults for writable VMAs, as `FOLL_WRITE` does for private writable mappings).
fn populate(mm: &MmStruct, start: u64, end: u64) -> Result<(), FaultError> {
    let mut a = start;
    while a < end {
        if crate::sched::fatal_signal_pending() {
            return Err(FaultError::Killed);
        }
        let writable = {
            let g = mmap_read_lock(mm);
            match g.vma_at(a) {
                // check_vma_flags(): without FOLL_FORCE (not set for PROT_NONE VMAs by
                // populate_vma_page_range) GUP fails with -EFAULT, present pages or not.
                Some(v) if v.flags & vm::VM_ACCESS != 0 => v.flags & vm::VM_WRITE != 0,
                _ => return Err(FaultError::Segv),
            }
        };
        if mm.pgtable.lookup(a) == Pte::None || (writable && mm.pgtable.lookup(a) == Pte::Zero) {
            handle_page_fault(mm, a, writable)?;
        }
        a += PAGE_SIZE;
        crate::sched::cond_resched();
    }
    Ok(())
}

/// `do_munmap()`'s argument checks: page-aligned start, non-zero, non-overflowing length
/// inside `TASK_SIZE`, else EINVAL. Returns the aligned end.
fn munmap_range(addr: u64, len: u64) -> Result<u64, Errno> {
    if offset_in_page(addr) {
        return Err(Errno::EINVAL);
    }
    let len = page_align(len).ok_or(Errno::EINVAL)?;
    if len == 0 {
        return Err(Errno::EINVAL);
    }
    let end = addr.checked_add(len).ok_or(Errno::EINVAL)?;
    if end > TASK_SIZE {
        return Err(Errno::EINVAL);
    }
    Ok(end)
}

/// `munmap(2)`: `__vm_munmap()` → `do_munmap()` (v4.7; killable per the knob as in the RFC's
/// open-coded munmap). EINVAL for an unaligned address, zero length or a range outside the
/// user address space; unmapping a hole is not an error.
pub fn munmap(mm: &MmStruct, addr: u64, len: u64) -> Result<(), Errno> {
    count_vm_event(VmEvent::MunmapCalls, 1);
    let end = munmap_range(addr, len)?;
    let mut g = syscall_write_lock(mm)?;
    unmap_locked(mm, &mut g, addr, end);
    mm.update_total_vm(&g);
    Ok(())
}

/// `mprotect(2)` (`do_mprotect_pkey()`, v4.7), checks in the kernel's order: EINVAL for an
/// unaligned start; zero length succeeds; ENOMEM when `PAGE_ALIGN(len)` wraps or the end
/// does (`end <= start`); EINVAL for unknown prot bits; ENOMEM if part of the range is
/// unmapped (no VMA exists past `TASK_SIZE`). `change_protection()` rewrites the present
/// PTEs ([`Pte::modify`]): they lose write permission when `PROT_WRITE` goes and become
/// inaccessible under `PROT_NONE` (still resident); gaining write takes effect at the next
/// fault. Deviation: a hole makes the whole call fail before any change, where the kernel
/// applies the change to the VMAs before the hole, then fails.
pub fn mprotect(mm: &MmStruct, addr: u64, len: u64, prot: u32) -> Result<(), Errno> {
    if offset_in_page(addr) {
        return Err(Errno::EINVAL);
    }
    if len == 0 {
        return Ok(());
    }
    let end = addr.wrapping_add(len.wrapping_add(PAGE_SIZE - 1) & !(PAGE_SIZE - 1));
    if end <= addr {
        return Err(Errno::ENOMEM);
    }
    if prot & !(PROT_READ | PROT_WRITE | PROT_EXEC) != 0 {
        return Err(Errno::EINVAL);
    }
    let mut g = syscall_write_lock(mm)?;
    if !g.covers(addr, end) {
        return Err(Errno::ENOMEM);
    }
    let new = prot_to_vm(prot);
    g.update_flags(addr, end, |f| (f & !vm::VM_ACCESS) | new);
    mm.pgtable.update_range(addr, end, |p| p.modify(new));
    Ok(())
}

/// `do_mlock()`'s range arithmetic, with the kernel's wrapping: `len = PAGE_ALIGN(len +
/// offset_in_page(start))`, `start &= PAGE_MASK`; then `apply_vma_lock_flags()`: `end <
/// start` is EINVAL, `end == start` succeeds at once (`None`). A range past `TASK_SIZE`
/// finds no VMA: the callers' coverage check reports ENOMEM.
fn mlock_range(addr: u64, len: u64) -> Result<Option<(u64, u64)>, Errno> {
    let start = crate::memory::page_align_down(addr);
    let len = len.wrapping_add(addr - start).wrapping_add(PAGE_SIZE - 1) & !(PAGE_SIZE - 1);
    let end = start.wrapping_add(len);
    if end < start {
        return Err(Errno::EINVAL);
    }
    Ok((end > start).then_some((start, end)))
}

/// `mlock(2)` (`do_mlock()`, v4.7): set `VM_LOCKED` on the range (ENOMEM if part of it is
/// unmapped), drop the lock, then fault the range in (`__mm_populate`). EINTR if the killable
/// write wait was killed. Populate errors as `__mlock_posix_error_return()` reports them:
/// EFAULT (a PROT_NONE VMA, SIGBUS) → ENOMEM, ENOMEM (VM_FAULT_OOM) → EAGAIN; a fatal signal
/// ends it with EINTR. `RLIMIT_MEMLOCK` is not enforced (the workloads run as root).
pub fn mlock(mm: &MmStruct, addr: u64, len: u64) -> Result<(), Errno> {
    let Some((start, end)) = mlock_range(addr, len)? else {
        return Ok(());
    };
    {
        let mut g = syscall_write_lock(mm)?;
        if !g.covers(start, end) {
            return Err(Errno::ENOMEM);
        }
        g.update_flags(start, end, |f| f | vm::VM_LOCKED);
    }
    match populate(mm, start, end) {
        Ok(()) => Ok(()),
        Err(FaultError::Oom) => Err(Errno::EAGAIN),
        Err(FaultError::Killed) => Err(Errno::EINTR),
        Err(FaultError::Segv | FaultError::Bus) => Err(Errno::ENOMEM),
    }
}

/// `munlock(2)`: clear `VM_LOCKED` on the range (same range rules as [`mlock`]); ENOMEM if
/// part of it is unmapped.
pub fn munlock(mm: &MmStruct, addr: u64, len: u64) -> Result<(), Errno> {
    let Some((start, end)) = mlock_range(addr, len)? else {
        return Ok(());
    };
    let mut g = syscall_write_lock(mm)?;
    if !g.covers(start, end) {
        return Err(Errno::ENOMEM);
    }
    g.update_flags(start, end, |f| f & !vm::VM_LOCKED);
    Ok(())
}
