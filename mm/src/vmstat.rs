//! VM event counters, declared in one place: the kernel's `vm_event_item` list
//! (include/linux/vm_event_item.h, counted with `count_vm_event()` into per-CPU counters and
//! summed for `/proc/vmstat`). Here each task keeps its own counters ([`crate::events`]) and
//! the process list sums them ([`crate::task::TaskList::vm_events`]), so the totals are exact
//! whenever they are read after the tasks went quiet.
//!
//! The kernel's list has `pgfault` (every `handle_mm_fault()` entry); oomlab adds the mm
//! syscalls its workloads make, which the kernel does not count.

crate::events::per_task_events! {
    /// One VM event.
    VmEvent,
    /// A set of VM event counters (one per task, or a folded total).
    VmEvents,
    NR_VM_EVENTS, count_vm_event, vm_events;
    /// A page fault entered the fault handler (`PGFAULT`, `perf_sw_event(PAGE_FAULTS)`).
    Pgfault => "pgfault",
    /// `mmap()` calls, failed ones included.
    MmapCalls => "mmap_calls",
    /// `munmap()` calls, failed ones included.
    MunmapCalls => "munmap_calls",
}
