//! The canonical scenarios, named after the chains of docs/oom-rules.md §6 they reproduce.
//!
//! Each only sets up processes and what they do; every outcome (who is killed, whether the
//! reaper reaps or gives up, whether the machine livelocks) emerges from the model under the
//! run's configuration. Timings are in emulated milliseconds.

use crate::scenario::{spawn_clone_vm, spawn_thread, Ctx, Scenario};
use crate::user::{
    fault_stalled_on_io, hog, io_wait_ms, kill, kmutex_lock, map, map_unmap_loop,
    pause_until_killed, populate_anon, populate_locked, populate_shared, remote_read, remote_write,
    ret_to_user, sleep_ms, syscall_write_lock, touch_pages, unmap, write_locked_io_wait, Exit,
    KernelPages, Step,
};
use mm::gfp::Gfp;
use mm::locking::kmutex::KMutex;
use mm::mm_types::MmStruct;
use mm::pgtable::PAGE_SIZE;
use parking_lot::Mutex;
use std::sync::Arc;

const MIB: u64 = 1 << 20;
/// Frames of a 16 MiB machine.
const FRAMES_16M: u64 = 16 * MIB / PAGE_SIZE;

/// `percent` % of a 16 MiB machine, in frames. (Of its 4096 frames, about 3967 can be
/// allocated before the min watermark of 128 stops non-victims.)
const fn pct(percent: u64) -> u64 {
    FRAMES_16M * percent / 100
}

/// How long the long-running bystander services of several scenarios live, ms: longer than
/// the default livelock window (30 s), so that under `--reaper off` a livelock is declared
/// before their exit would end it.
const SERVICE_MS: u64 = 40_000;

/// A slot through which one process publishes its address space (and an address in it) to
/// another, as a pid does for /proc readers.
type MmSlot = Arc<Mutex<Option<(Arc<MmStruct>, u64)>>>;

/// All scenarios, in `--list` order.
pub fn all() -> &'static [Scenario] {
    &SCENARIOS
}

/// Look a scenario up by name.
pub fn find(name: &str) -> Option<&'static Scenario> {
    SCENARIOS.iter().find(|s| s.name == name)
}

static SCENARIOS: [Scenario; 17] = [
    Scenario {
        name: "single-hog",
        about: "one process allocates until the OOM killer kills it; two idle processes survive",
        memory_bytes: 16 * MIB,
        setup: single_hog,
    },
    Scenario {
        name: "oom-score-adj",
        about: "three processes (oom_score_adj -1000 / 0 / +500) each want 40% of memory",
        memory_bytes: 16 * MIB,
        setup: oom_score_adj,
    },
    Scenario {
        name: "oom-lock",
        about: "8 small allocators and one hog hit exhaustion in the same jiffy: one wins oom_lock and kills the hog, the abort rule keeps it to one kill",
        memory_bytes: 16 * MIB,
        setup: oom_lock,
    },
    Scenario {
        name: "dying-allocator",
        about: "a task SIGKILLed while its page fault loops in the slow path self-marks (task_will_free_mem), takes reserves and exits: no second OOM kill",
        memory_bytes: 16 * MIB,
        setup: dying_allocator,
    },
    Scenario {
        name: "shared-mm",
        about: "two processes share one address space (CLONE_VM): the OOM kill reaches both",
        memory_bytes: 16 * MIB,
        setup: shared_mm,
    },
    Scenario {
        name: "remote-reader",
        about: "L1: a remote reader holds the victim's mmap_lock for read and needs memory while a victim thread waits in munmap for write",
        memory_bytes: 16 * MIB,
        setup: remote_reader,
    },
    Scenario {
        name: "slow-reader",
        about: "L2: a victim thread holds mmap_lock for read across 2 s of I/O while another victim thread waits in munmap for write",
        memory_bytes: 16 * MIB,
        setup: slow_reader,
    },
    Scenario {
        name: "writer-stuck",
        about: "L5: the victim holds mmap_lock for write and waits for an inode mutex held by a task allocating kernel memory",
        memory_bytes: 16 * MIB,
        setup: writer_stuck,
    },
    Scenario {
        name: "writer-stuck-nobody-left",
        about: "L5 with nothing else eligible (the allocating lock holder has oom_score_adj -1000): panic once the reaper gives up, livelock without it",
        memory_bytes: 16 * MIB,
        setup: writer_stuck_nobody_left,
    },
    Scenario {
        name: "fs-lock",
        about: "L4: the victim waits for an inode mutex (not mmap_lock) held by a task allocating kernel memory",
        memory_bytes: 16 * MIB,
        setup: fs_lock,
    },
    Scenario {
        name: "unreapable",
        about: "L7: the victim's memory is mostly mlocked and shared and one of its threads sits in I/O: the reaper frees little, a second victim follows",
        memory_bytes: 16 * MIB,
        setup: unreapable,
    },
    Scenario {
        name: "clone-vm-exit",
        about: "L3: CLONE_VM processes: one holds mmap_lock for write and allocates, the other is exiting and waits in exit_mm",
        memory_bytes: 16 * MIB,
        setup: clone_vm_exit,
    },
    Scenario {
        name: "nofs-only",
        about: "L9: every allocator uses GFP_NOFS, so the OOM killer never kills; only the watchdog's sysrq-f ends it",
        memory_bytes: 16 * MIB,
        setup: nofs_only,
    },
    Scenario {
        name: "panic-on-oom",
        about: "an allocator outgrows memory; by default the idle cache process is killed, run with --panic-on-oom 1 (or 2) to see the panic",
        memory_bytes: 16 * MIB,
        setup: panic_on_oom,
    },
    Scenario {
        name: "kill-allocating-task",
        about: "the allocator is not the largest process: the largest is killed, or the allocator itself with --oom-kill-allocating-task 1",
        memory_bytes: 16 * MIB,
        setup: kill_allocating_task,
    },
    Scenario {
        name: "reaper-delay",
        about: "the victim's memory stays put 2.5 s (a thread in I/O): the reaper reclaims it at once, or after --reaper-delay",
        memory_bytes: 16 * MIB,
        setup: reaper_delay,
    },
    Scenario {
        name: "exit-vs-reaper",
        about: "a busy victim (faulting, mapping, unmapping, read remotely) exits while the reaper reaps; run it across seeds",
        memory_bytes: 16 * MIB,
        setup: exit_vs_reaper,
    },
];

/// Hold `pages` of memory for `ms`, then exit.
fn hold(mm: &MmStruct, pages: u64, ms: u64) -> Step {
    populate_anon(mm, pages)?;
    sleep_ms(ms)
}

fn single_hog(c: &mut Ctx) {
    for name in ["idle-a", "idle-b"] {
        c.process(name, 0, |mm| hold(&mm, 256, 20_000));
    }
    c.process("hog", 0, |mm| {
        sleep_ms(100)?;
        hog(&mm, 64)
    });
}

fn oom_score_adj(c: &mut Ctx) {
    let want = FRAMES_16M * 4 / 10;
    for (name, adj) in [("adj-min", -1000), ("adj-zero", 0), ("adj-plus500", 500)] {
        c.process(name, adj, move |mm| hold(&mm, want, 20_000));
    }
}

fn remote_reader(c: &mut Ctx) {
    let slot: MmSlot = Arc::new(Mutex::new(None));
    let s2 = slot.clone();
    // The victim: a large resident set, an untouched region, a thread doing mmap/munmap
    // (write-locking mmap_lock) and an idle thread.
    c.process("victim", 0, move |mm| {
        populate_anon(&mm, FRAMES_16M * 45 / 100)?;
        let untouched = map(&mm, FRAMES_16M, false)?.map_err(|_| crate::user::Exit)?;
        *s2.lock() = Some((mm.clone(), untouched));
        spawn_thread(|mm| {
            for _ in 0..100_000 {
                let a = map(&mm, 1, false)?.map_err(|_| crate::user::Exit)?;
                touch_pages(&mm, a, 1)?;
                let _ = unmap(&mm, a, 1)?;
                sleep_ms(1)?;
            }
            Ok(())
        });
        spawn_thread(|_| pause_until_killed(1000));
        pause_until_killed(1000)
    });
    // A foreign accessor of the victim's memory (/proc/pid/mem, process_vm_writev): holds the
    // victim's mmap_lock for read while its page faults allocate.
    c.process("reader", 0, move |_| {
        sleep_ms(500)?;
        let Some((target, addr)) = slot.lock().clone() else {
            return Ok(());
        };
        let _ = remote_write(&target, addr, (FRAMES_16M * 3 / 4 * PAGE_SIZE) as usize)?;
        Ok(())
    });
    // Another memory user, finished after a while.
    c.process("worker", 0, |mm| hold(&mm, FRAMES_16M * 25 / 100, 60_000));
}

/// A hog fills 88% of memory and pauses; at 100 ms it and eight small allocators (150 pages
/// each) all wake in the same jiffy and allocate together, so all nine reach the slow path
/// within a few steps of each other. The first through `oom_lock` kills the hog (the
/// largest); the others' `out_of_memory()` calls abort selection while the hog's mm is
/// pending (§3.3) and retry, and the hog's memory then serves all of them: one kill, not
/// nine. (In 4.19 nobody sleeps under `oom_lock`, so on the sim executor — one CPU, no
/// preemption between scheduling points — its trylock never fails and the CVE-2016-10723
/// starvation of §6 L8 does not arise.)
fn oom_lock(c: &mut Ctx) {
    for i in 0..8 {
        c.process(&format!("small-{i}"), 0, |mm| {
            sleep_ms(100)?;
            populate_anon(&mm, 150)?;
            sleep_ms(500)
        });
    }
    c.process("hog", 0, |mm| {
        populate_anon(&mm, pct(88))?;
        sleep_ms(100)?;
        hog(&mm, 64)
    });
}

/// `stuck` (the largest) holds its `mmap_lock` for write across 700 ms of I/O from 50 ms.
/// `allocator` faults memory in from 100 ms, exhausts it and gets `stuck` killed; while
/// `stuck`'s address space is pending, the allocator's page fault loops in the slow path
/// (abort rule). At 600 ms a supervisor SIGKILLs the allocator: on its next
/// `out_of_memory()` the allocator is dying (`task_will_free_mem(current)`, §2.1 step 3), so
/// it is marked a victim without a kill, a counter increment or a "Killed process" line,
/// gets ALLOC_OOM reserves, finishes (or fails) its fault and exits.
fn dying_allocator(c: &mut Ctx) {
    c.process("stuck", 0, |mm| {
        populate_anon(&mm, pct(55))?;
        sleep_ms(50)?;
        write_locked_io_wait(&mm, 700)?;
        pause_until_killed(1000)
    });
    let allocator = c.process("allocator", 0, |mm| {
        sleep_ms(100)?;
        hog(&mm, 16)
    });
    c.process("supervisor", 0, move |_| {
        sleep_ms(600)?;
        kill(&allocator);
        Ok(())
    });
}

/// `shared-a` and `shared-b` (clone(CLONE_VM) without CLONE_THREAD) fill one address space;
/// an allocator then needs memory. The victim is `shared-a` (equal badness, the first wins
/// the tie); `oom_kill_process` also SIGKILLs every other process using the mm (§4.1 step
/// 5), so `shared-b`, which only ever exits when killed, goes too and the mm is freed.
fn shared_mm(c: &mut Ctx) {
    c.process("shared-a", 0, |mm| {
        populate_anon(&mm, pct(30))?;
        spawn_clone_vm("shared-b", |mm| {
            populate_anon(&mm, pct(25))?;
            pause_until_killed(1000)
        });
        pause_until_killed(1000)
    });
    c.process("allocator", 0, |mm| {
        sleep_ms(100)?;
        hold(&mm, pct(45), 500)
    });
}

/// L2: the victim's thread `io` page-faults on a file page and waits 2 s for I/O with
/// `mmap_lock` held for read (0.1 s – 2.1 s); another victim thread, mapping and unmapping in
/// a loop, queues for write behind it. At 0.3 s an allocator exhausts memory; the victim is
/// killed. A bystander service (30%) is the next candidate.
fn slow_reader(c: &mut Ctx) {
    c.process("victim", 0, |mm| {
        populate_anon(&mm, pct(45))?;
        spawn_thread(|mm| {
            sleep_ms(100)?;
            fault_stalled_on_io(&mm, 2000)?;
            pause_until_killed(1000)
        });
        spawn_thread(|mm| map_unmap_loop(&mm, 100_000));
        pause_until_killed(1000)
    });
    c.process("bystander", 0, |mm| hold(&mm, pct(30), SERVICE_MS));
    c.process("allocator", 0, |mm| {
        sleep_ms(300)?;
        hold(&mm, pct(35), 500)
    });
}

/// The lock holder of L4/L5: a `write(2)` that takes the inode mutex at 100 ms, waits 200 ms
/// for metadata I/O, then allocates `pages` page-cache pages with GFP_KERNEL under the mutex,
/// and releases everything at the end of the syscall.
fn inode_writer(
    pool: Arc<mm::page_alloc::FramePool>,
    i_mutex: Arc<KMutex>,
    pages: u64,
) -> impl FnOnce(Arc<MmStruct>) -> Step + Send + 'static {
    move |_| {
        sleep_ms(100)?;
        {
            let _g = kmutex_lock(&i_mutex);
            io_wait_ms(200);
            let mut cache = KernelPages::new(&pool);
            let _ = cache.alloc(Gfp::GFP_KERNEL, pages);
        }
        ret_to_user()
    }
}

/// The victim of L5: at 200 ms a syscall takes `mmap_lock` for write and then the inode
/// mutex (a `->mmap` that locks the inode), waiting uninterruptibly for it. An idle thread
/// would exit on SIGKILL but waits in `exit_mm` behind the write lock.
fn write_locked_victim(
    i_mutex: Arc<KMutex>,
) -> impl FnOnce(Arc<MmStruct>) -> Step + Send + 'static {
    move |mm| {
        populate_anon(&mm, pct(50))?;
        spawn_thread(|_| pause_until_killed(1000));
        sleep_ms(200)?;
        {
            let _w = syscall_write_lock(&mm)?;
            let _g = kmutex_lock(&i_mutex);
        }
        ret_to_user()?;
        pause_until_killed(1000)
    }
}

/// L5: `victim` (50%) holds its `mmap_lock` for write and waits for the inode mutex that
/// `writer` holds while it allocates 40% in page-cache pages. The OOM kill of `victim` cannot
/// complete: it sleeps uninterruptibly holding the lock the reaper needs. A bystander service
/// (20%) is the next candidate; its memory is enough for the writer.
fn writer_stuck(c: &mut Ctx) {
    let i_mutex = Arc::new(KMutex::new("&inode->i_mutex"));
    c.process("victim", 0, write_locked_victim(i_mutex.clone()));
    c.process("bystander", 0, |mm| hold(&mm, pct(20), SERVICE_MS));
    c.process(
        "writer",
        0,
        inode_writer(c.m.pool.clone(), i_mutex, pct(40)),
    );
}

/// L5 with nobody left: as `writer-stuck` without the bystander, and the writer is a
/// protected service (oom_score_adj −1000) that wants 55%. Once the victim's mm is
/// `MMF_OOM_SKIP` nothing is eligible.
fn writer_stuck_nobody_left(c: &mut Ctx) {
    let i_mutex = Arc::new(KMutex::new("&inode->i_mutex"));
    c.process("victim", 0, write_locked_victim(i_mutex.clone()));
    c.process(
        "writer",
        -1000,
        inode_writer(c.m.pool.clone(), i_mutex, pct(55)),
    );
}

/// L4: `victim` (50%) opens a file at 200 ms and waits (uninterruptibly, no `mmap_lock`
/// held) for the inode mutex that `writer` holds while it allocates 40% in page-cache pages.
/// A bystander service (20%) is the next candidate.
fn fs_lock(c: &mut Ctx) {
    let i_mutex = Arc::new(KMutex::new("&inode->i_mutex"));
    let m = i_mutex.clone();
    c.process("victim", 0, move |mm| {
        populate_anon(&mm, pct(50))?;
        spawn_thread(|_| pause_until_killed(1000));
        sleep_ms(200)?;
        drop(kmutex_lock(&m));
        ret_to_user()?;
        pause_until_killed(1000)
    });
    c.process("bystander", 0, |mm| hold(&mm, pct(20), SERVICE_MS));
    c.process(
        "writer",
        0,
        inode_writer(c.m.pool.clone(), i_mutex, pct(40)),
    );
}

/// L7: `victim` (55%: 8% private anonymous, 27% mlocked, 20% shared) has a thread in 2 s of
/// uninterruptible I/O (no lock held), so its exit takes until 2.05 s. An allocator wants 30%
/// from 200 ms; a bystander service holds 28%. The reaper can only unmap the 8%.
fn unreapable(c: &mut Ctx) {
    c.process("victim", 0, |mm| {
        populate_anon(&mm, pct(8))?;
        populate_locked(&mm, pct(27))?;
        populate_shared(&mm, pct(20))?;
        spawn_thread(|_| {
            sleep_ms(50)?;
            io_wait_ms(2000);
            ret_to_user()
        });
        pause_until_killed(1000)
    });
    c.process("bystander", 0, |mm| hold(&mm, pct(28), SERVICE_MS));
    c.process("allocator", 0, |mm| {
        sleep_ms(200)?;
        hold(&mm, pct(30), 500)
    });
}

/// L3 (Tetsuo Handa, Feb 2016): `p1` fills an address space and clones `p2` with CLONE_VM.
/// At 100 ms `p2` enters a syscall that holds `mmap_lock` for write, waits 100 ms for I/O,
/// then allocates 30% with GFP_KERNEL under the lock. `p1` exits at 150 ms and waits in
/// `exit_mm`'s `down_read`. A bystander (30%) makes the allocation fail.
fn clone_vm_exit(c: &mut Ctx) {
    let pool = c.m.pool.clone();
    c.process("p1", 0, move |mm| {
        populate_anon(&mm, pct(50))?;
        spawn_clone_vm("p2", move |mm| {
            sleep_ms(100)?;
            {
                let _w = syscall_write_lock(&mm)?;
                io_wait_ms(100);
                let mut slab = KernelPages::new(&pool);
                let _ = slab.alloc(Gfp::GFP_KERNEL, pct(30));
            }
            ret_to_user()?;
            pause_until_killed(1000)
        });
        sleep_ms(150)
    });
    c.process("bystander", 0, |mm| hold(&mm, pct(30), 2000));
}

/// L9: a process holds 60% until killed; at 100 ms two filesystem writers allocate 25% each
/// in GFP_NOFS pages (journal/writeback buffers). `out_of_memory()` never kills for an
/// allocation without `__GFP_FS` (§2.1 step 4), so nothing moves until the watchdog's
/// sysrq-f.
fn nofs_only(c: &mut Ctx) {
    c.process("filler", 0, |mm| {
        populate_anon(&mm, pct(60))?;
        pause_until_killed(1000)
    });
    for i in 0..2 {
        let pool = c.m.pool.clone();
        c.process(&format!("nofs-{i}"), 0, move |_| {
            sleep_ms(100)?;
            {
                let mut buffers = KernelPages::new(&pool);
                let _ = buffers.alloc(Gfp::GFP_NOFS, pct(25));
                io_wait_ms(100);
            }
            ret_to_user()
        });
    }
}

/// An idle cache process (55%) and, from 100 ms, an allocator that wants 55%. The scenario
/// sets no sysctl: by default the OOM killer kills the cache and the allocator finishes; run
/// with `panic_on_oom` 1 or 2 and the first OOM panics instead.
fn panic_on_oom(c: &mut Ctx) {
    c.process("cache", 0, |mm| hold(&mm, pct(55), 2000));
    c.process("allocator", 0, |mm| {
        sleep_ms(100)?;
        hold(&mm, pct(55), 500)
    });
}

/// The largest process (`big`, 55%) is idle; `allocator` wants 55% from 100 ms. By default
/// `big` is killed; with `oom_kill_allocating_task` the allocator (current) is killed and
/// `big` survives.
fn kill_allocating_task(c: &mut Ctx) {
    c.process("big", 0, |mm| hold(&mm, pct(55), 2000));
    c.process("allocator", 0, |mm| {
        sleep_ms(100)?;
        hold(&mm, pct(55), 500)
    });
}

/// The victim (55%) has a thread in uninterruptible I/O from 50 ms to 2.55 s (no lock
/// held), so it cannot free its memory by exiting before then. An allocator wants 50% from
/// 200 ms. Only the reaper can reclaim earlier: at once, or after its start delay.
fn reaper_delay(c: &mut Ctx) {
    c.process("victim", 0, |mm| {
        populate_anon(&mm, pct(55))?;
        spawn_thread(|_| {
            sleep_ms(50)?;
            io_wait_ms(2500);
            ret_to_user()
        });
        pause_until_killed(1000)
    });
    c.process("allocator", 0, |mm| {
        sleep_ms(200)?;
        hold(&mm, pct(50), 500)
    });
}

/// A busy victim (50%): three threads fault, map and unmap in a loop, and a /proc/pid/mem
/// style reader pins and copies its pages. At 50 ms an allocator wanting 50% gets it killed;
/// its threads exit (racing through faults, munmap, `exit_mm` and `exit_mmap`) while the
/// reaper unmaps the same memory. Run across seeds: the runner's frame conservation check
/// catches any page freed twice or lost.
fn exit_vs_reaper(c: &mut Ctx) {
    let slot: MmSlot = Arc::new(Mutex::new(None));
    let s2 = slot.clone();
    c.process("victim", 0, move |mm| {
        let addr = populate_anon(&mm, pct(50))?;
        *s2.lock() = Some((mm.clone(), addr));
        for _ in 0..3 {
            spawn_thread(|mm| {
                for _ in 0..10_000 {
                    let a = map(&mm, 16, false)?.map_err(|_| Exit)?;
                    touch_pages(&mm, a, 16)?;
                    let _ = unmap(&mm, a, 16)?;
                    sleep_ms(1)?;
                }
                Ok(())
            });
        }
        pause_until_killed(1000)
    });
    c.process("reader", 0, move |_| {
        sleep_ms(20)?;
        let Some((target, addr)) = slot.lock().clone() else {
            return Ok(());
        };
        let chunk = 16 * PAGE_SIZE;
        for i in 0..10_000u64 {
            let off = (i * chunk) % (pct(50) * PAGE_SIZE);
            if remote_read(&target, addr + off, chunk as usize)?.is_err() {
                break;
            }
            sleep_ms(1)?;
        }
        Ok(())
    });
    c.process("allocator", 0, |mm| {
        sleep_ms(50)?;
        hold(&mm, pct(50), 200)
    });
}
