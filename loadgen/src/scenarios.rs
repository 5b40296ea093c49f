//! The canonical scenarios, named after the chains of oom-killer.md §6 they reproduce.
//!
//! Each only sets up processes and what they do; every outcome (who is killed, whether the
//! reaper reaps or gives up, whether the machine livelocks) emerges from the model under the
//! run's configuration. Timings are in emulated milliseconds.

use crate::scenario::{spawn_thread, Ctx, Scenario};
use crate::user::{
    hog, map, pause_until_killed, populate_anon, remote_write, sleep_ms, touch_pages, unmap, Step,
};
use mm::mm_types::MmStruct;
use mm::pgtable::PAGE_SIZE;
use parking_lot::Mutex;
use std::sync::Arc;

const MIB: u64 = 1 << 20;
/// Frames of a 16 MiB machine.
const FRAMES_16M: u64 = 16 * MIB / PAGE_SIZE;

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

static SCENARIOS: [Scenario; 3] = [
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
        name: "remote-reader",
        about: "L1: a remote reader holds the victim's mmap_lock for read and needs memory while a victim thread waits in munmap for write",
        memory_bytes: 16 * MIB,
        setup: remote_reader,
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
