//! User-space behaviour of emulated processes: the syscalls and memory accesses a workload
//! makes, and the return-to-user-space rule that a task with SIGKILL pending exits.
//!
//! Every helper returns [`Exit`] when the task must die (SIGKILL pending at a return to user
//! space, or a fatal fault), so task bodies read `step()?;` and end by returning.

use mm::errno::Errno;
use mm::memory::{access_process_vm, attach_mm, mmput, touch, FaultError};
use mm::mm_types::MmStruct;
use mm::mmap::{mmap, munmap, MAP_ANONYMOUS, MAP_PRIVATE, MAP_SHARED, PROT_READ, PROT_WRITE};
use mm::pgtable::PAGE_SIZE;
use mm::sched;
use std::sync::Arc;

/// The task must exit now (`do_exit()` on the way back to user space).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exit;

/// Result of a user-level step.
pub type Step<T = ()> = Result<T, Exit>;

/// The return-to-user-space check: a pending SIGKILL ends the task.
pub fn ret_to_user() -> Step {
    if sched::fatal_signal_pending() {
        Err(Exit)
    } else {
        Ok(())
    }
}

/// Become a process with a fresh address space (`execve`). Returns the mm.
pub fn exec_new_mm(make: impl FnOnce(u32) -> Arc<MmStruct>) -> Arc<MmStruct> {
    let tgid = sched::with_current(|t| t.tgid());
    let mm = make(tgid);
    attach_mm(&mm);
    // The creator's reference goes; the task's own (from attach_mm) remains.
    mmput(&mm);
    mm
}

/// `mmap` anonymous memory; `Exit` on EINTR (killed while waiting for `mmap_lock`).
pub fn map(mm: &MmStruct, pages: u64, shared: bool) -> Step<Result<u64, Errno>> {
    let flags = MAP_ANONYMOUS | if shared { MAP_SHARED } else { MAP_PRIVATE };
    let r = mmap(mm, 0, pages * PAGE_SIZE, PROT_READ | PROT_WRITE, flags);
    ret_to_user()?;
    Ok(r)
}

/// `munmap`; `Exit` when killed.
pub fn unmap(mm: &MmStruct, addr: u64, pages: u64) -> Step<Result<(), Errno>> {
    let r = munmap(mm, addr, pages * PAGE_SIZE);
    ret_to_user()?;
    Ok(r)
}

/// Write one byte into each of `pages` pages from `addr` (faulting them in). Stops with
/// `Exit` on SIGKILL or a fatal fault (SIGSEGV/SIGBUS); a VM_FAULT_OOM fault is retried, as
/// user space re-executes the instruction.
pub fn touch_pages(mm: &MmStruct, addr: u64, pages: u64) -> Step {
    for i in 0..pages {
        loop {
            match touch(mm, addr + i * PAGE_SIZE, true, (i as u8) | 1) {
                Ok(()) => break,
                Err(FaultError::Oom) => {
                    ret_to_user()?;
                    sched::cond_resched();
                }
                Err(_) => return Err(Exit),
            }
        }
        ret_to_user()?;
        sched::cond_resched();
    }
    Ok(())
}

/// Map and touch `pages` pages; returns the address.
pub fn populate_anon(mm: &MmStruct, pages: u64) -> Step<u64> {
    let addr = match map(mm, pages, false)? {
        Ok(a) => a,
        Err(_) => return Err(Exit),
    };
    touch_pages(mm, addr, pages)?;
    Ok(addr)
}

/// Allocate memory chunk by chunk until killed (a memory hog).
pub fn hog(mm: &MmStruct, chunk_pages: u64) -> Step {
    loop {
        populate_anon(mm, chunk_pages)?;
    }
}

/// Sleep interruptibly in `ms` steps until killed (`pause()`).
pub fn pause_until_killed(ms: u64) -> Step {
    loop {
        sched::schedule_timeout_interruptible(sched::msecs_to_jiffies(ms));
        ret_to_user()?;
    }
}

/// Sleep `ms` (`nanosleep`, interruptible); `Exit` if killed.
pub fn sleep_ms(ms: u64) -> Step {
    sched::schedule_timeout_interruptible(sched::msecs_to_jiffies(ms));
    ret_to_user()
}

/// Read another process's memory the way /proc/pid/mem or process_vm_readv does: pin its
/// mm, take its `mmap_lock` for read, fault pages in (allocating), copy. Returns bytes read
/// or the errno.
pub fn remote_read(target: &Arc<MmStruct>, addr: u64, len: usize) -> Step<Result<usize, Errno>> {
    let mut buf = vec![0u8; len];
    let r = access_process_vm(target, addr, &mut buf, false);
    ret_to_user()?;
    Ok(r)
}

/// Write into another process's memory (process_vm_writev, /proc/pid/mem, ptrace pokes):
/// like [`remote_read`], but the target's untouched pages must be allocated, so the writer
/// allocates while it holds the target's `mmap_lock` for read.
pub fn remote_write(target: &Arc<MmStruct>, addr: u64, len: usize) -> Step<Result<usize, Errno>> {
    let mut buf = vec![0x5au8; len];
    let r = access_process_vm(target, addr, &mut buf, true);
    ret_to_user()?;
    Ok(r)
}
