//! User-space behaviour of emulated processes: the syscalls and memory accesses a workload
//! makes, and the return-to-user-space rule that a task with SIGKILL pending exits.
//!
//! Every helper returns [`Exit`] when the task must die (SIGKILL pending at a return to user
//! space, or a fatal fault), so task bodies read `step()?;` and end by returning.
//!
//! The last section holds the kernel side of syscalls the scenarios need and the emulated
//! mm does not provide as syscalls: waits for I/O (with or without `mmap_lock` held), a
//! filesystem's inode mutex, and kernel-memory allocations (`alloc_page()` from a syscall
//! path, `GFP_KERNEL` or `GFP_NOFS`). They use only the emulated kernel's public API.

use mm::errno::Errno;
use mm::gfp::Gfp;
use mm::locking::kmutex::{KMutex, KMutexGuard};
use mm::memory::{access_process_vm, access_remote_vm_locked, touch, FaultError};
use mm::mm_types::MmStruct;
use mm::mmap::{
    mlock, mmap, munmap, MAP_ANONYMOUS, MAP_PRIVATE, MAP_SHARED, PROT_READ, PROT_WRITE,
};
use mm::mmap_lock::MmapWriteGuard;
use mm::page_alloc::{FramePool, Pfn};
use mm::pgtable::PAGE_SIZE;
use mm::sched;
use mm::task::{kill_thread_group, Signal, Task};
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

/// What [`touch_pages_counting`] did: the pages written, and how the loop ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Touched {
    pub pages: u64,
    pub end: Step,
}

/// Write one byte into each of `pages` pages from `addr` (faulting them in). Stops with
/// `Exit` on SIGKILL or a fatal fault (SIGSEGV/SIGBUS); a VM_FAULT_OOM fault is retried, as
/// user space re-executes the instruction.
pub fn touch_pages(mm: &MmStruct, addr: u64, pages: u64) -> Step {
    touch_pages_counting(mm, addr, pages).end
}

/// [`touch_pages`], also saying how many pages were written before it stopped.
pub fn touch_pages_counting(mm: &MmStruct, addr: u64, pages: u64) -> Touched {
    for i in 0..pages {
        loop {
            match touch(mm, addr + i * PAGE_SIZE, true, (i as u8) | 1) {
                Ok(()) => break,
                Err(FaultError::Oom) => {
                    if ret_to_user().is_err() {
                        return Touched {
                            pages: i,
                            end: Err(Exit),
                        };
                    }
                    sched::cond_resched();
                }
                Err(_) => {
                    return Touched {
                        pages: i,
                        end: Err(Exit),
                    }
                }
            }
        }
        if ret_to_user().is_err() {
            return Touched {
                pages: i + 1,
                end: Err(Exit),
            };
        }
        sched::cond_resched();
    }
    Touched { pages, end: Ok(()) }
}

/// Sleep interruptibly in `ms` steps until killed (`pause()`). The task is marked paused
/// meanwhile ([`mm::task::Task::set_paused`]): a scenario whose other tasks are all gone ends
/// with it as a survivor instead of waiting for a kill that will not come.
pub fn pause_until_killed(ms: u64) -> Step {
    let me = sched::current();
    me.set_paused(true);
    let r = loop {
        sched::schedule_timeout_interruptible(sched::msecs_to_jiffies(ms));
        if let Err(e) = ret_to_user() {
            break Err(e);
        }
    };
    me.set_paused(false);
    r
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

/// A remote access ([`remote_read`] / [`remote_write`]) whose first page makes it wait with
/// the target's `mmap_lock` held for read: `__access_remote_vm()` takes the lock, and
/// `get_user_pages_remote()` without a `locked` argument cannot drop it while
/// `filemap_fault()` waits for that page's I/O (docs/oom-rules.md §6 L1: the reader holds the
/// lock before it needs memory). `stall` is that wait (it runs with the lock held; returning
/// false abandons the access: the lock is dropped and nothing is transferred, `None`); then
/// the pages are walked under the same hold. Deviation: there are no file pages, so the wait
/// comes before the first (anonymous) page instead of being that page's fault.
pub fn remote_access_stalled(
    target: &Arc<MmStruct>,
    addr: u64,
    len: usize,
    write: bool,
    stall: impl FnOnce() -> bool,
) -> Step<Option<Result<usize, Errno>>> {
    if !target.mmget_not_zero() {
        ret_to_user()?;
        return Ok(Some(Err(Errno::EIO)));
    }
    let mut buf = vec![if write { 0x5au8 } else { 0 }; len];
    let r = {
        let g = mm::mmap_lock::mmap_read_lock(target);
        stall().then(|| access_remote_vm_locked(target, &g, addr, &mut buf, write))
    };
    mm::memory::mmput(target);
    ret_to_user()?;
    Ok(r)
}

/// Map `pages` of anonymous memory (shared: `MAP_SHARED|MAP_ANONYMOUS`, i.e. shmem, which the
/// oom_reaper leaves alone), `mlock(2)` them if `locked` (`VM_LOCKED`, faulted in by mlock's
/// populate; the reaper skips such VMAs), and write the first `resident` of them; returns the
/// address. `Exit` when the mmap or mlock fails or the task is killed.
pub fn populate(mm: &MmStruct, pages: u64, shared: bool, locked: bool, resident: u64) -> Step<u64> {
    let addr = match map(mm, pages, shared)? {
        Ok(a) => a,
        Err(_) => return Err(Exit),
    };
    if locked {
        let r = mlock(mm, addr, pages * PAGE_SIZE);
        ret_to_user()?;
        if r.is_err() {
            return Err(Exit);
        }
    }
    // mlock's populate gives up on a fault it cannot satisfy; user space touching the pages
    // retries those faults.
    touch_pages(mm, addr, resident)?;
    Ok(addr)
}

/// `kill(pid, SIGKILL)`: SIGKILL to every thread of `t`'s process (`SIGNAL_GROUP_EXIT`).
pub fn kill(t: &Task) {
    kill_thread_group(Signal::Kill, t.group());
}

// ---- kernel paths of emulated syscalls ------------------------------------------------------

/// Sleep `ms` in TASK_UNINTERRUPTIBLE ("D" state) as a kernel path waiting for I/O does
/// (`io_schedule()` in `wait_on_page_bit()`, a slow NFS server, a stuck device): SIGKILL
/// neither ends nor shortens it. Stray wake-ups go back to sleep until the time is up.
pub fn io_wait_ms(ms: u64) {
    let deadline = sched::ktime_get_ns().saturating_add(ms.saturating_mul(1_000_000));
    let per_jiffy = 1_000_000_000 / sched::hz() as u64;
    loop {
        let now = sched::ktime_get_ns();
        if now >= deadline {
            return;
        }
        sched::schedule_timeout_uninterruptible((deadline - now).div_ceil(per_jiffy).max(1));
    }
}

/// `mmap_lock` for write at the entry of an mm syscall: `mmap_write_lock_killable()` or
/// `mmap_write_lock()` per the `write_lock` knob, as the emulated mmap/munmap/mprotect/mlock
/// take it. `Exit` when the killable wait was ended by SIGKILL (EINTR, then the task dies).
pub fn syscall_write_lock(mm: &MmStruct) -> Step<MmapWriteGuard<'_>> {
    mm::mmap::syscall_write_lock(mm).map_err(|_| Exit)
}

/// `mutex_lock()` (TASK_UNINTERRUPTIBLE: SIGKILL does not end the wait) on a kernel mutex
/// from a syscall path, e.g. an inode's `i_mutex` taken by a filesystem; unlocked when the
/// guard drops. The mutex records the hold, so livelock wait-for chains name the holder.
pub fn kmutex_lock(m: &KMutex) -> KMutexGuard<'_> {
    m.lock()
}

/// Pages a kernel path allocated for itself (page-cache pages of a `write(2)`, metadata
/// buffers of a filesystem, slab for a new VMA), not mapped into any address space and so not
/// charged to any process's rss. Freed (`__free_page()`) on drop.
pub struct KernelPages {
    pool: Arc<FramePool>,
    pfns: Vec<Pfn>,
}

impl KernelPages {
    pub fn new(pool: &Arc<FramePool>) -> KernelPages {
        KernelPages {
            pool: pool.clone(),
            pfns: Vec::new(),
        }
    }

    /// Pages held.
    pub fn len(&self) -> u64 {
        self.pfns.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.pfns.is_empty()
    }

    /// Allocate `n` more pages one by one with `alloc_page(gfp)`. Stops with EINTR when
    /// SIGKILL is pending between pages (as `generic_perform_write()` checks
    /// `fatal_signal_pending()`), and with ENOMEM when an allocation fails — which an order-0
    /// `GFP_KERNEL`/`GFP_NOFS` request does only for an OOM victim whose reserves ran out
    /// (docs/oom-rules.md §1 step 9). Pages already allocated stay held.
    pub fn alloc(&mut self, gfp: Gfp, n: u64) -> Result<(), Errno> {
        for _ in 0..n {
            if sched::fatal_signal_pending() {
                return Err(Errno::EINTR);
            }
            match self.pool.alloc_page(gfp) {
                Some(p) => self.pfns.push(p),
                None => return Err(Errno::ENOMEM),
            }
            sched::cond_resched();
        }
        Ok(())
    }
}

impl Drop for KernelPages {
    fn drop(&mut self) {
        for p in self.pfns.drain(..) {
            self.pool.put_page(p);
        }
    }
}
