//! Rule tests of the livelock watchdog (docs/oom-rules.md §8 M8, issue 4 "Livelock watchdog and
//! recovery") on the sim executor: a livelock is declared only after a full window with a
//! memory waiter and no progress, never while progress happens or nobody waits; stalled
//! episodes are counted once per victim; the khungtaskd-style report covers only
//! TASK_UNINTERRUPTIBLE sleepers, at most 10; the wait-for chain names the waiting
//! allocator, the pending victim, the victim threads' lock, mode and killability, and the
//! holder; the sysrq-f recovery kills a new process, is counted, and every run ends.

use crate::common::*;
use mm::gfp::Gfp;
use mm::memory::access_process_vm;
use mm::mm_types::{LockWait, MmKnobs, MMF_TORN_DOWN};
use mm::mmap::{mmap, munmap, MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE};
use mm::page_alloc::{AllocStat, OomKiller, Pfn};
use mm::pgtable::PAGE_SIZE;
use mm::sched;
use mm::task::Task;
use reaper::watchdog::WatchdogConfig;
use regex::Regex;
use std::sync::{Arc, Mutex, OnceLock};

fn window(window_ns: u64) -> WatchdogConfig {
    WatchdogConfig {
        window_ns,
        ..WatchdogConfig::sim()
    }
}

/// The emulated time of the last progress the watchdog counts before its recovery: a
/// slow-path success or a kill (sysrq kills excluded).
fn last_progress_ns(m: &Machine) -> u64 {
    let kills = m
        .oom
        .victims()
        .iter()
        .filter(|v| !v.by_sysrq)
        .map(|v| v.marked_ns)
        .max()
        .unwrap_or(0);
    kills.max(m.pool.stats().last_slowpath_success_ns)
}

/// M8 with the default sim window (30 s): a hog kills a victim stuck in TASK_UNINTERRUPTIBLE
/// (no reaper) and then loops in the slow path because selection aborts. The livelock is
/// declared only once 30 s passed without progress, the recovery (sysrq-f) kills a new
/// process — the hog — and the run ends. The stuck victim also gets a hung-task report.
#[test]
fn livelock_is_declared_after_the_full_window_and_recovered() {
    let m = boot(Boot {
        memory_bytes: 4 * MIB,
        reaper: None,
        watchdog: Some(WatchdogConfig::sim()),
        ..Boot::default()
    });
    assert_eq!(m.watchdog().config().window_ns, 30 * SEC);
    let ready = Ready::default();
    let r2 = ready.clone();
    let (victim, _) = m.process("victim", 0, move |mm| {
        populate(&mm, 800, 0);
        r2.done();
        sleep_uninterruptible(200_000);
    });
    let r3 = ready.clone();
    let (hog, _) = m.process("hog", 0, move |mm| {
        while r3.count() == 0 {
            sleep_ms(1);
        }
        loop {
            let a = mmap(
                &mm,
                0,
                16 * PAGE_SIZE,
                PROT_READ | PROT_WRITE,
                MAP_ANONYMOUS | MAP_PRIVATE,
            )
            .unwrap();
            for i in 0..16 {
                let _ = mm::memory::touch(&mm, a + i * PAGE_SIZE, true, 1);
                if sched::fatal_signal_pending() {
                    return;
                }
            }
        }
    });
    let w = m.watchdog().clone();
    let mut before = None;
    m.run_until("livelock", |s| {
        if load(&w.stats().livelocks) == 1 {
            return true;
        }
        // Sampled 1 s before the window ends: nothing declared yet.
        if before.is_none() && !m.oom.victims().is_empty() {
            let t = m.oom.victims()[0].marked_ns;
            if s.now_ns() >= t + 29 * SEC {
                before = Some(load(&w.stats().livelocks));
            }
        }
        false
    });
    assert_eq!(before, Some(0), "not declared before the window ran out");
    assert_eq!(m.oom.victims()[0].tgid, victim.tgid());
    let anchor = last_progress_ns(&m);
    let rep = &w.reports()[0];
    assert!(
        rep.at_ns >= anchor + 30 * SEC && rep.at_ns <= anchor + 30 * SEC + 300 * MS,
        "declared at {} ns, last progress at {anchor} ns",
        rep.at_ns
    );
    assert_eq!(rep.waiters, 1);
    assert!(rep.chain[0].starts_with(&format!(
        "hog[{}/{}] waits for memory in the allocator slow path",
        hog.tgid(),
        hog.tid()
    )));
    // Recovery: sysrq-f killed the hog, the only new candidate.
    assert_eq!(load(&m.oom.stats().sysrq_kills), 1);
    let v = m.oom.victims();
    assert_eq!(v.len(), 2);
    assert!(v[1].by_sysrq && v[1].tgid == hog.tgid());
    m.finish();
    assert_eq!(load(&w.stats().livelocks), 1);
    assert_eq!(
        load(&w.stats().stalled_episodes),
        1,
        "the stuck victim, once"
    );
    assert_eq!(
        m.grep("INFO: task victim:"),
        vec![format!(
            "INFO: task victim:{} blocked for more than 120 seconds.",
            victim.tid()
        )],
        "the stuck victim, in TASK_UNINTERRUPTIBLE for 200 s"
    );
}

/// No livelock while nobody waits for memory, however long a victim stays pending; stalled
/// episodes are counted once per victim, not once per window.
#[test]
fn no_livelock_without_a_memory_waiter_and_stalled_episodes_count_once() {
    let m = boot(Boot {
        reaper: None,
        watchdog: Some(window(5 * SEC)),
        ..Boot::default()
    });
    let ready = Ready::default();
    for (comm, pages) in [("first", 300u64), ("second", 100)] {
        let r = ready.clone();
        m.process(comm, 0, move |mm| {
            populate(&mm, pages, 0);
            r.done();
            sleep_uninterruptible(60_000);
        });
    }
    m.run_until("set-up", |_| ready.count() == 2);
    let oom = m.oom.clone();
    m.kernel_task("driver", move || {
        assert!(oom.out_of_memory(&oc_kernel()));
        sleep_ms(10_000);
        assert!(oom.sysrq_force_oom(), "a second victim 10 s later");
    });
    let w = m.watchdog().clone();
    m.run_until("50 s", |s| s.now_ns() > 50 * SEC);
    assert_eq!(load(&w.stats().livelocks), 0, "nobody waits for memory");
    assert_eq!(
        load(&w.stats().stalled_episodes),
        2,
        "two victims, each pending for many windows, counted once each"
    );
    m.finish();
    assert_eq!(load(&w.stats().stalled_episodes), 2);
    assert_eq!(load(&w.stats().livelocks), 0);
}

/// A GFP_NOFS allocator waits in the slow path for 20 s (never killing, L9) while another
/// process frees a page every 2 s: each success is progress, so no livelock with a 5 s
/// window. When the frees stop, the livelock comes one window after the last success; its
/// chain says no victim is pending; sysrq-f kills the freer, whose memory lets the allocator
/// finish.
#[test]
fn no_livelock_while_progress_happens_then_one_after_it_stops() {
    let m = boot(Boot {
        reaper: None,
        watchdog: Some(window(5 * SEC)),
        ..Boot::default()
    });
    let ready = Ready::default();
    let r2 = ready.clone();
    let frees_done: Arc<OnceLock<u64>> = Arc::new(OnceLock::new());
    let fd = frees_done.clone();
    let (freer, _) = m.process("freer", 0, move |mm| {
        let a = populate(&mm, 2000, 0);
        r2.done();
        for i in 0..10 {
            sleep_ms(2000);
            munmap(&mm, a + i * PAGE_SIZE, PAGE_SIZE).unwrap();
        }
        fd.set(sched::ktime_get_ns()).unwrap();
        pause();
    });
    let (pool, r3) = (m.pool.clone(), ready.clone());
    let nofs = m.kernel_task("nofs", move || {
        while r3.count() == 0 {
            sleep_ms(1);
        }
        let mut got: Vec<Pfn> = Vec::new();
        while got.len() < 3000 {
            got.push(
                pool.alloc_page(Gfp::GFP_NOFS)
                    .expect("NOFS never fails here"),
            );
        }
        for p in got {
            pool.free_page(p);
        }
    });
    let w = m.watchdog().clone();
    let fd2 = frees_done.clone();
    m.run_until("last free", |_| fd2.get().is_some());
    let t_last_free = *frees_done.get().unwrap();
    assert!(t_last_free > 20 * SEC);
    // The allocator waits in the slow path now, and got a page after each of the 10 frees.
    assert!(nofs.memalloc_waiting_since().is_some());
    assert!(m.pool.stats().get(AllocStat::SlowpathSuccess) >= 10);
    assert_eq!(load(&w.stats().livelocks), 0, "progress every 2 s");
    assert_eq!(m.oom_kills(), 0, "NOFS never kills");

    m.run_until("livelock", |_| load(&w.stats().livelocks) == 1);
    let rep = &w.reports()[0];
    let last = m.pool.stats().last_slowpath_success_ns;
    assert!(last >= t_last_free, "the last free was taken");
    assert!(
        rep.at_ns >= last + 5 * SEC && rep.at_ns <= last + 5 * SEC + 300 * MS,
        "declared at {} ns, last success at {last} ns",
        rep.at_ns
    );
    assert!(rep.chain[0].starts_with(&format!(
        "nofs[{}/{}] waits for memory in the allocator slow path",
        nofs.tgid(),
        nofs.tid()
    )));
    assert!(rep
        .chain
        .iter()
        .any(|l| l.starts_with("no OOM victim is pending")));
    assert_eq!(load(&m.oom.stats().sysrq_kills), 1);
    assert_eq!(m.oom.victims()[0].tgid, freer.tgid());
    m.finish();
    assert_eq!(load(&w.stats().livelocks), 1);
    assert_eq!(load(&w.stats().stalled_episodes), 0);
}

/// When the recovery finds nothing to kill (only an mm-less NOFS allocator), the livelock is
/// declared once per window, sysrq reports "OOM request ignored", and the run ends at its
/// time bound.
#[test]
fn unrecoverable_livelock_is_counted_once_per_window() {
    let m = boot(Boot {
        memory_bytes: 4 * MIB,
        reaper: None,
        watchdog: Some(window(5 * SEC)),
        ..Boot::default()
    });
    let pool = m.pool.clone();
    let got: Arc<Mutex<Vec<Pfn>>> = Arc::default();
    let g2 = got.clone();
    m.kernel_task("nofs", move || loop {
        let p = pool.alloc_page(Gfp::GFP_NOFS).unwrap();
        g2.lock().unwrap().push(p);
    });
    let w = m.watchdog().clone();
    m.run_until("27 s", |s| s.now_ns() > 27 * SEC);
    let stuck_at = m.pool.stats().last_slowpath_success_ns;
    assert!(stuck_at < SEC);
    let want = (m.sim().now_ns() - stuck_at) / (5 * SEC);
    assert_eq!(want, 5);
    assert_eq!(load(&w.stats().livelocks), want);
    let at: Vec<u64> = w.reports().iter().map(|r| r.at_ns).collect();
    for pair in at.windows(2) {
        assert!(pair[1] - pair[0] >= 5 * SEC, "one per window: {at:?}");
    }
    assert_eq!(m.grep("OOM request ignored. No task eligible").len(), 5);
    assert_eq!(load(&m.oom.stats().sysrq_kills), 0);
    assert!(m.oom.panicked().is_none(), "sysrq never panics");
    // The run is bounded: stop it, give the frames back, check the books.
    m.abandon();
    for p in got.lock().unwrap().drain(..) {
        m.pool.free_page(p);
    }
    m.check_frames();
}

/// khungtaskd (`check_hung_task()`, v4.19): only tasks in exactly TASK_UNINTERRUPTIBLE longer
/// than the timeout are reported — not TASK_KILLABLE, not TASK_INTERRUPTIBLE, not shorter
/// sleeps — in the kernel's line, and at most `hung_task_warnings` = 10 times.
#[test]
fn hung_task_report_covers_uninterruptible_sleepers_only_at_most_ten() {
    let m = boot(Boot {
        reaper: None,
        watchdog: Some(WatchdogConfig {
            hung_task_timeout_ns: 2 * SEC,
            recover: false,
            ..WatchdogConfig::sim()
        }),
        ..Boot::default()
    });
    // Earlier pids first, so that a wrong report would use up the budget.
    m.kernel_task("short", || sleep_uninterruptible(1500));
    for _ in 0..3 {
        m.kernel_task("killable", || sleep_killable(6000));
    }
    for _ in 0..2 {
        m.kernel_task("idle", || sleep_ms(6000));
    }
    let d: Vec<Arc<Task>> = (0..12)
        .map(|_| m.kernel_task("dsleep", || sleep_uninterruptible(6000)))
        .collect();
    m.finish();
    let re = Regex::new(r"^INFO: task (\S+):(\d+) blocked for more than (\d+) seconds\.$").unwrap();
    let reports: Vec<(String, u32, u64)> = m
        .lines()
        .iter()
        .filter(|l| l.starts_with("INFO: task"))
        .map(|l| {
            let c = re.captures(l).unwrap_or_else(|| panic!("bad line {l:?}"));
            (
                c[1].to_string(),
                c[2].parse().unwrap(),
                c[3].parse().unwrap(),
            )
        })
        .collect();
    let want: Vec<(String, u32, u64)> = d[..10]
        .iter()
        .map(|t| ("dsleep".to_string(), t.tid(), 2))
        .collect();
    assert_eq!(reports, want);
    assert_eq!(load(&m.watchdog().stats().hung_task_reports), 10);
}

struct L1 {
    victim: Arc<Task>,
    writer: Arc<Task>,
    remote: Arc<Task>,
}

/// The RFC's chain (§6 L1): a remote writer (process_vm_writev, /proc/pid/mem) pins the
/// victim's mm and holds its `mmap_lock` for read while it faults pages in (allocating);
/// a victim thread queues for write in munmap behind it; the OOM killer kills the victim and
/// then aborts forever on it. No reaper. Runs until the first livelock.
fn l1_chain(write_lock: LockWait) -> (Machine, L1) {
    let m = boot(Boot {
        memory_bytes: 4 * MIB,
        knobs: MmKnobs {
            write_lock,
            ..MmKnobs::default()
        },
        reaper: None,
        watchdog: Some(window(5 * SEC)),
        ..Boot::default()
    });
    let ready = Ready::default();
    let remote_slot: Arc<OnceLock<Arc<Task>>> = Arc::new(OnceLock::new());
    let writer_slot: Arc<OnceLock<Arc<Task>>> = Arc::new(OnceLock::new());
    let region: Arc<OnceLock<u64>> = Arc::new(OnceLock::new());
    let (r2, rs, ws, rg) = (
        ready.clone(),
        remote_slot.clone(),
        writer_slot.clone(),
        region.clone(),
    );
    let (victim, vmm) = m.process("victim", 0, move |mm| {
        let a = mmap(
            &mm,
            0,
            2048 * PAGE_SIZE,
            PROT_READ | PROT_WRITE,
            MAP_ANONYMOUS | MAP_PRIVATE,
        )
        .unwrap();
        for i in 0..10 {
            mm::memory::touch(&mm, a + i * PAGE_SIZE, true, 1).unwrap();
        }
        sched::with_current(|t| t.sync_mm_rss());
        let spare = mmap(
            &mm,
            0,
            PAGE_SIZE,
            PROT_READ | PROT_WRITE,
            MAP_ANONYMOUS | MAP_PRIVATE,
        )
        .unwrap();
        rg.set(a).unwrap();
        let rs = rs.clone();
        let t = clone_thread(move |mm| {
            // Wait until the remote writer loops for memory (holding our mmap_lock).
            while rs
                .get()
                .is_none_or(|r| r.memalloc_waiting_since().is_none())
            {
                sleep_uninterruptible(1);
            }
            let _ = munmap(&mm, spare, PAGE_SIZE);
        });
        ws.set(t).unwrap();
        r2.done();
        pause();
    });
    let r3 = ready.clone();
    let (remote, _) = m.process("remote", 0, move |mm| {
        populate(&mm, 5, 0);
        while r3.count() == 0 {
            sleep_ms(1);
        }
        let a = *region.get().unwrap();
        let mut buf = vec![7u8; 1000 * PAGE_SIZE as usize];
        let _ = access_process_vm(&vmm, a + 10 * PAGE_SIZE, &mut buf, true);
    });
    remote_slot.set(remote.clone()).ok().unwrap();
    let w = m.watchdog().clone();
    m.run_until("livelock", |_| load(&w.stats().livelocks) == 1);
    let writer = writer_slot.get().unwrap().clone();
    (
        m,
        L1 {
            victim,
            writer,
            remote,
        },
    )
}

/// Asserts that `chain` contains `want` in order (each a prefix of a trimmed line).
fn assert_chain(chain: &[String], want: &[String]) {
    let mut i = 0;
    for w in want {
        match chain[i..]
            .iter()
            .position(|l| l.trim_start().starts_with(w.as_str()))
        {
            Some(j) => i += j + 1,
            None => panic!("chain lacks {w:?} (in order):\n{}", chain.join("\n")),
        }
    }
}

/// The wait-for chain of L1 with uninterruptible write waits names, in order: the allocator
/// waiting for memory, the pending victim (with what pins its mm), each victim thread's lock,
/// mode and killability, and the holder of that lock — the allocator again. The sysrq-f
/// recovery kills the remote writer (a new process; the pending victim is skipped), and the
/// whole chain unwinds.
#[test]
fn wait_for_chain_of_the_rfc_livelock_and_its_recovery() {
    let (m, l) = l1_chain(LockWait::Uninterruptible);
    let (v, r, t2) = (&l.victim, &l.remote, &l.writer);
    let rep = m.watchdog().reports()[0].clone();
    let lock = format!("mmap_lock[pid {}]", v.tgid());
    let remote = format!("remote[{}/{}]", r.tgid(), r.tid());
    assert_chain(
        &rep.chain,
        &[
            format!("{remote} waits for memory in the allocator slow path since"),
            format!("-> they wait for OOM victim victim[{}] (marked at", v.tgid()),
            format!(
                "victim[{}/{}] sleeps in rwsem_down_read_failed on {lock} (read, uninterruptible), SIGKILL pending",
                v.tgid(),
                v.tid()
            ),
            format!("-> {lock} is held for read by:"),
            format!("{remote} waits for memory"),
            format!(
                "victim[{}/{}] sleeps in rwsem_down_write_failed on {lock} (write, uninterruptible), SIGKILL pending",
                v.tgid(),
                t2.tid()
            ),
            format!("-> {lock} is held for read by:"),
            format!("{remote} waits for memory"),
        ],
    );
    let pin =
        Regex::new(r"mm_users=(\d+) \((\d+) task\(s\) using it, (\d+) remote pin\(s\)\)").unwrap();
    let c = rep
        .chain
        .iter()
        .find_map(|l| pin.captures(l))
        .expect("what pins the mm");
    assert_eq!((&c[1], &c[2], &c[3]), ("3", "2", "1"));
    // The log carries the chain, then the recovery.
    let lines = m.lines();
    let at = lines
        .iter()
        .position(|l| {
            l.starts_with(
                "oomlab: livelock: no slow-path allocation, kill or victim teardown for 5s \
                 while 1 task(s) wait for memory",
            )
        })
        .expect("livelock line");
    assert_eq!(lines[at + 1], format!("oomlab:   {}", rep.chain[0]));
    let sysrq = lines
        .iter()
        .position(|l| l == "sysrq: Manual OOM execution")
        .unwrap();
    assert!(sysrq > at);
    assert!(lines[sysrq..].iter().any(|l| l.starts_with(&format!(
        "Out of memory: Killed process {} (remote)",
        r.tgid()
    ))));
    let victims = m.oom.victims();
    assert_eq!(victims.len(), 2);
    assert!(victims[1].by_sysrq && victims[1].tgid == r.tgid());
    assert_eq!(load(&m.oom.stats().sysrq_kills), 1);
    let vmm = victims[0].mm.clone();
    m.finish();
    assert!(vmm.test_flag(MMF_TORN_DOWN));
    let w = m.watchdog().stats();
    assert_eq!(load(&w.livelocks), 1);
    assert_eq!(load(&w.stalled_episodes), 1, "the first victim only");
}

/// The same chain with killable write waits (the RFC's change, without the reaper): the
/// queued writer leaves on SIGKILL and every victim thread exits, but the remote writer's pin
/// keeps the mm and it still needs memory — the chain now says that only a remote pin is
/// left (M4 per-mm rule).
#[test]
fn wait_for_chain_with_killable_writers_names_the_remote_pin() {
    let (m, l) = l1_chain(LockWait::Killable);
    assert!(l.writer.has_exited() && l.victim.has_exited());
    let rep = m.watchdog().reports()[0].clone();
    assert_chain(
        &rep.chain,
        &[
            format!(
                "remote[{}/{}] waits for memory in the allocator slow path",
                l.remote.tgid(),
                l.remote.tid()
            ),
            format!("-> they wait for OOM victim victim[{}]", l.victim.tgid()),
            "every thread of the victim has exited; only a remote pin keeps the mm alive"
                .to_string(),
        ],
    );
    assert!(rep
        .chain
        .iter()
        .any(|l| l.contains("mm_users=1 (0 task(s) using it, 1 remote pin(s))")));
    assert_eq!(load(&m.oom.stats().sysrq_kills), 1);
    m.finish();
}
