//! Rule tests of the oom_reaper kthread (docs/oom-rules.md §4.2, §5, M6) on the sim executor:
//! a successful reap, the read-trylock defeated by a queued writer (exactly `retries`
//! attempts `interval` apart, then "unable to reap" and MMF_OOM_SKIP anyway), the exit path
//! getting there first, unreapable VMAs, the start delay of ≥ 5.18, LIFO order, per-mm
//! deduplication, and reaper + exit never freeing a frame twice.

use crate::common::*;
use mm::memory::mmput;
use mm::mm_types::{
    LockWait, MmKnobs, MmStruct, MMF_OOM_SKIP, MMF_OOM_VICTIM, MMF_TORN_DOWN, MMF_UNSTABLE,
};
use mm::mmap::{mlock, mmap, munmap, MAP_ANONYMOUS, MAP_LOCKED, MAP_PRIVATE, MAP_SHARED};
use mm::mmap::{PROT_READ, PROT_WRITE};
use mm::mmap_lock::mmap_read_lock;
use mm::page_alloc::OomKiller;
use mm::pgtable::PAGE_SIZE;
use mm::sched;
use mm::sched::sim::Sim;
use mm::task::{kill_thread_group, Signal, Task};
use reaper::oom_reaper::ReaperConfig;
use regex::Regex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// One `out_of_memory(GFP_KERNEL)` from an mm-less driver; returns the kill time.
fn kill(m: &Machine) -> u64 {
    let n = m.oom.victims().len();
    let oom = m.oom.clone();
    assert!(m.run_in_task("driver", move || oom.out_of_memory(&oc_kernel())));
    let v = m.oom.victims();
    assert_eq!(v.len(), n + 1, "a new victim\n{}", m.dmesg());
    v[n].marked_ns
}

/// Run until `pred`, recording the emulated time of every reaper trylock attempt.
fn run_recording_attempts(m: &Machine, what: &str, mut pred: impl FnMut(&Sim) -> bool) -> Vec<u64> {
    let r = m.reaper().clone();
    let mut seen = load(&r.stats().attempts);
    let mut times = Vec::new();
    m.run_until(what, |s| {
        let a = load(&r.stats().attempts);
        while seen < a {
            times.push(s.now_ns());
            seen += 1;
        }
        pred(s)
    });
    times
}

/// A process that populates `anon` private pages and then sleeps uninterruptibly for
/// `stuck_ms` (so that only the reaper can free its memory meanwhile), then exits.
fn stuck_process(
    m: &Machine,
    comm: &'static str,
    anon: u64,
    stuck_ms: u64,
) -> (Arc<Task>, Arc<MmStruct>) {
    let ready = Ready::default();
    let r2 = ready.clone();
    let t = m.process(comm, 0, move |mm| {
        populate(&mm, anon, 0);
        r2.done();
        sleep_uninterruptible(stuck_ms);
    });
    m.run_until("set-up", |_| ready.count() == 1);
    t
}

fn reaped_line_re() -> Regex {
    Regex::new(
        r"^oom_reaper: reaped process (\d+) \((\S+)\), now anon-rss:(\d+)kB, file-rss:(\d+)kB, shmem-rss:(\d+)kB$",
    )
    .unwrap()
}

/// M6 success: under the read lock the reaper sets MMF_UNSTABLE, unmaps the private
/// anonymous memory, prints "reaped process", and finishes with MMF_OOM_SKIP — while the
/// victim itself is still stuck.
#[test]
fn reaper_frees_private_anon_memory_and_sets_unstable_and_skip() {
    let m = boot(Boot::default());
    let (v, vmm) = stuck_process(&m, "victim", 200, 3000);
    let mapped = m.pool.accounting().mapped;
    assert_eq!(mapped, 200);
    let killed_at = kill(&m);
    let r = m.reaper().clone();
    m.run_until("reap", |_| load(&r.stats().reaped) == 1);
    let st = r.stats();
    assert_eq!(load(&st.attempts), 1);
    assert_eq!(load(&st.pages_reaped), 200);
    assert_eq!(load(&st.gave_up), 0);
    assert_eq!(m.pool.accounting().mapped, 0, "the frames went back");
    assert!(vmm.test_flag(MMF_UNSTABLE) && vmm.test_flag(MMF_OOM_SKIP));
    assert!(!vmm.test_flag(MMF_TORN_DOWN), "the victim has not exited");
    assert!(!v.has_exited());
    let reaped = m.grep("oom_reaper: reaped process");
    assert_eq!(
        reaped,
        vec![format!(
            "oom_reaper: reaped process {} (victim), now anon-rss:0kB, file-rss:0kB, shmem-rss:0kB",
            v.tgid()
        )]
    );
    assert!(reaped_line_re().is_match(&reaped[0]));
    let at = vmm
        .reaped_ns()
        .expect("the reap is recorded on the victim's mm");
    assert!(at - killed_at < MS, "reaped at once (delay 0)");
    m.finish();
}

struct QueuedWriter {
    victim: Arc<Task>,
    vmm: Arc<MmStruct>,
    writer: Arc<Task>,
}

/// The L1/L6 shape: a foreign reader holds the victim's `mmap_lock` for read (pinned, for
/// `hold_ms`); a victim thread then waits in munmap's `down_write` behind it (with
/// `knobs.write_lock`), so the writer is queued. With `queue_writer` false there is only the
/// reader.
fn reader_and_queued_writer(m: &Machine, hold_ms: u64, queue_writer: bool) -> QueuedWriter {
    let reader_in = Arc::new(AtomicBool::new(false));
    let ready = Ready::default();
    let writer_slot: Arc<OnceLock<Arc<Task>>> = Arc::new(OnceLock::new());
    let (ri, r2, ws) = (reader_in.clone(), ready.clone(), writer_slot.clone());
    let (victim, vmm) = m.process("victim", 0, move |mm| {
        populate(&mm, 100, 0);
        let spare = mmap(
            &mm,
            0,
            PAGE_SIZE,
            PROT_READ | PROT_WRITE,
            MAP_ANONYMOUS | MAP_PRIVATE,
        )
        .unwrap();
        if queue_writer {
            let ri = ri.clone();
            let t = clone_thread(move |mm| {
                while !ri.load(Ordering::SeqCst) {
                    sleep_uninterruptible(1);
                }
                // munmap(): down_write behind the reader (killable or not per the knob).
                let _ = munmap(&mm, spare, PAGE_SIZE);
            });
            ws.set(t).unwrap();
        }
        r2.done();
        pause();
    });
    let (pin, ri, r3) = (vmm.clone(), reader_in.clone(), ready.clone());
    m.kernel_task("reader", move || {
        while r3.count() == 0 {
            sleep_uninterruptible(1);
        }
        // access_process_vm(): get_task_mm() pin, then down_read.
        assert!(pin.mmget_not_zero());
        let g = mmap_read_lock(&pin);
        ri.store(true, Ordering::SeqCst);
        sleep_uninterruptible(hold_ms);
        drop(g);
        mmput(&pin);
    });
    let raw = vmm.clone();
    m.run_until("reader in, writer queued", |_| {
        ready.count() == 1
            && reader_in.load(Ordering::SeqCst)
            && (!queue_writer || raw.mmap_lock.raw().waiters().iter().any(|w| w.write))
    });
    let writer = writer_slot.get().cloned().unwrap_or_else(|| victim.clone());
    QueuedWriter {
        victim,
        vmm,
        writer,
    }
}

/// §4.2 / M6: one queued writer makes every `down_read_trylock` fail (RWSEM_READ_FAILED_MASK:
/// waiters), so the reaper makes exactly `retries` attempts `interval` apart (sleeping after
/// the last one too), prints "unable to reap pid:N (comm)" and sets MMF_OOM_SKIP anyway.
/// A second victim queued meanwhile must not cut the retry sleeps short (the kernel's
/// `wake_up(&oom_reaper_wait)` does not reach a reaper sleeping in `schedule_timeout_idle`).
#[test]
fn queued_writer_defeats_every_trylock_until_the_reaper_gives_up() {
    for (retries, interval_ms, second_victim) in
        [(10u32, 100u64, false), (3, 250, false), (10, 100, true)]
    {
        let m = boot(Boot {
            reaper: Some(ReaperConfig {
                retries,
                interval_ms,
                delay_ms: 0,
            }),
            ..Boot::default()
        });
        let q = reader_and_queued_writer(&m, 3000, true);
        let other = second_victim.then(|| stuck_process(&m, "other", 50, 3000));
        // The victim is the biggest process.
        let killed_at = kill(&m);
        assert_eq!(m.oom.victims()[0].tgid, q.victim.tgid());
        if second_victim {
            // sysrq-f 350 ms later: a second victim enters the reaper's list meanwhile.
            let oom = m.oom.clone();
            m.kernel_task("kworker", move || {
                sleep_ms(350);
                assert!(oom.sysrq_force_oom());
            });
        }
        let r = m.reaper().clone();
        let times = run_recording_attempts(&m, "give-up", |_| load(&r.stats().gave_up) == 1);
        let st = r.stats();
        // With a second victim its (successful) attempt follows the give-up in the same step.
        assert_eq!(
            times.len() as u32,
            retries + second_victim as u32,
            "attempts {times:?}"
        );
        let times = &times[..retries as usize];
        assert!(times[0] - killed_at < MS, "first attempt at once");
        let interval = interval_ms * MS;
        for w in times.windows(2) {
            let gap = w[1] - w[0];
            assert!(
                gap >= interval && gap < interval + MS,
                "attempts {interval_ms} ms apart, got {gap} ns (retries {retries}, second victim {second_victim})"
            );
        }
        assert!(
            q.vmm.test_flag(MMF_OOM_SKIP),
            "MMF_OOM_SKIP after giving up"
        );
        assert!(!q.vmm.test_flag(MMF_UNSTABLE), "never got the lock");
        assert_eq!(
            load(&st.reaped),
            second_victim as u64,
            "only the other victim"
        );
        let unable = m.log.grep("oom_reaper: unable to reap");
        assert_eq!(unable.len(), 1);
        assert_eq!(
            unable[0].text,
            format!(
                "oom_reaper: unable to reap pid:{} (victim)",
                q.victim.tgid()
            )
        );
        // Given up after `retries` sleeps of `interval`.
        let gave_up_after = unable[0].ts_ns - killed_at;
        let want = retries as u64 * interval;
        assert!(
            gave_up_after >= want && gave_up_after < want + 2 * MS,
            "gave up after {gave_up_after} ns, want {want}"
        );
        assert_eq!(q.vmm.get_mm_rss(), 100, "nothing of the victim was reaped");
        assert!(
            !q.writer.has_exited(),
            "the uninterruptible writer is still queued"
        );
        if let Some((o, omm)) = other {
            // The second victim is reaped right after the first one is given up on.
            assert_eq!(
                omm.reaped_ns(),
                Some(unable[0].ts_ns),
                "{} reaped at the give-up's time",
                o.tgid()
            );
            assert!(omm.test_flag(MMF_OOM_SKIP));
        }
        m.finish();
    }
}

/// The trylock fails because of the queued writer, not because of the reader: with only a
/// reader holding `mmap_lock`, the reaper's read trylock shares it and reaps at once.
#[test]
fn a_reader_alone_does_not_stop_the_reaper() {
    let m = boot(Boot::default());
    let q = reader_and_queued_writer(&m, 3000, false);
    kill(&m);
    let r = m.reaper().clone();
    m.run_until("reap", |_| load(&r.stats().reaped) == 1);
    assert_eq!(load(&r.stats().attempts), 1);
    assert!(q.vmm.test_flag(MMF_UNSTABLE) && q.vmm.test_flag(MMF_OOM_SKIP));
    assert_eq!(load(&r.stats().pages_reaped), 100);
    m.finish();
}

/// With killable write waits (the RFC), SIGKILL takes the queued writer off the queue, the
/// trylock succeeds next time and the memory is reaped: no "unable to reap".
#[test]
fn killable_writer_leaves_the_queue_and_the_reaper_succeeds() {
    let m = boot(Boot {
        knobs: MmKnobs {
            write_lock: LockWait::Killable,
            ..MmKnobs::default()
        },
        ..Boot::default()
    });
    let q = reader_and_queued_writer(&m, 3000, true);
    kill(&m);
    let r = m.reaper().clone();
    m.run_until("reap", |_| load(&r.stats().reaped) == 1);
    assert_eq!(load(&r.stats().gave_up), 0);
    assert!(m.grep("unable to reap").is_empty());
    assert!(
        q.writer.has_exited(),
        "the killable writer returned EINTR and exited"
    );
    assert!(q.vmm.test_flag(MMF_UNSTABLE));
    m.finish();
}

/// `exit_mmap()` (4.19) of a victim reaps itself and sets MMF_OOM_SKIP before its
/// `down_write()`/`up_write()` cycle. If that write wait is queued behind a reader, every
/// reaper trylock fails — but after the last attempt MMF_OOM_SKIP is already set, so there
/// is no "unable to reap" line (`oom_reap_task()`).
#[test]
fn no_unable_line_when_exit_already_set_oom_skip() {
    let m = boot(Boot::default());
    let ready = Ready::default();
    let r2 = ready.clone();
    let (v, vmm) = m.process("victim", 0, move |mm| {
        populate(&mm, 100, 0);
        r2.done();
        pause();
    });
    // A holder with only an mm_count reference (as the reaper itself has): it does not keep
    // the address space alive, so the victim's exit runs exit_mmap().
    let holder_in = Arc::new(AtomicBool::new(false));
    let (h, hin, r3) = (vmm.clone(), holder_in.clone(), ready.clone());
    m.kernel_task("holder", move || {
        while r3.count() == 0 {
            sleep_uninterruptible(1);
        }
        h.mmgrab();
        let g = mmap_read_lock(&h);
        hin.store(true, Ordering::SeqCst);
        sleep_uninterruptible(3000);
        drop(g);
        h.mmdrop();
    });
    m.run_until("set-up", |_| {
        ready.count() == 1 && holder_in.load(Ordering::SeqCst)
    });
    let killed_at = kill(&m);
    // The victim runs its exit before the reaper's first attempt.
    while m.sim().is_runnable(v.tid()) {
        m.sim().step(v.tid()).unwrap();
    }
    assert!(
        m.sim().is_blocked(v.tid()),
        "{}\n{}",
        m.sim().deadlock_report(),
        m.dmesg()
    );
    assert_eq!(
        v.wchan().map(|w| w.func),
        Some("rwsem_down_write_failed"),
        "exit_mmap's down_write behind the holder"
    );
    assert!(vmm.test_flag(MMF_OOM_SKIP) && !vmm.test_flag(MMF_TORN_DOWN));
    assert_eq!(m.pool.accounting().mapped, 0, "exit_mmap reaped first");
    let r = m.reaper().clone();
    let times = run_recording_attempts(&m, "reaper done", |s| s.now_ns() > killed_at + 1500 * MS);
    assert_eq!(times.len(), 10, "every trylock failed: {times:?}");
    let st = r.stats();
    assert_eq!(load(&st.gave_up), 0);
    assert_eq!(load(&st.reaped), 0);
    assert!(m.grep("unable to reap").is_empty(), "{}", m.dmesg());
    assert!(m.grep("reaped process").is_empty());
    m.finish();
    assert!(vmm.test_flag(MMF_TORN_DOWN));
}

/// `oom_reap_task_mm()` checks MMF_OOM_SKIP under the read lock: when the victim's exit
/// finished before the first attempt, the reaper backs off without reaping or reporting.
#[test]
fn reaper_backs_off_when_exit_mmap_finished_first() {
    let m = boot(Boot::default());
    let ready = Ready::default();
    let r2 = ready.clone();
    let (v, vmm) = m.process("victim", 0, move |mm| {
        populate(&mm, 100, 0);
        r2.done();
        pause();
    });
    m.run_until("set-up", |_| ready.count() == 1);
    kill(&m);
    while m.sim().is_runnable(v.tid()) {
        m.sim().step(v.tid()).unwrap();
    }
    assert!(v.has_exited() && vmm.test_flag(MMF_TORN_DOWN));
    let r = m.reaper().clone();
    m.run_until("reaper done", |_| r.pending() == 0);
    let st = r.stats();
    assert_eq!(
        (load(&st.attempts), load(&st.skipped), load(&st.reaped)),
        (1, 1, 0)
    );
    assert!(m.grep("oom_reaper:").is_empty(), "{}", m.dmesg());
    m.finish();
}

/// §4.2 (`can_madv_lru_vma`, shared mappings left alone) and L7: mlocked VMAs (mlock(2) on
/// part of a mapping, and MAP_LOCKED) and shared anonymous (shmem) VMAs are not reaped; the
/// reaper still "succeeds", sets MMF_OOM_SKIP, and the abort rule lets the next victim go
/// while that memory is still held.
#[test]
fn mlocked_and_shared_vmas_are_not_reaped() {
    let m = boot(Boot::default());
    let ready = Ready::default();
    let r2 = ready.clone();
    let (v, vmm) = m.process("victim", 0, move |mm| {
        let a = populate(&mm, 130, 0);
        mlock(&mm, a + 100 * PAGE_SIZE, 30 * PAGE_SIZE).unwrap();
        mmap(
            &mm,
            0,
            10 * PAGE_SIZE,
            PROT_READ | PROT_WRITE,
            MAP_ANONYMOUS | MAP_PRIVATE | MAP_LOCKED,
        )
        .unwrap();
        populate(&mm, 20, MAP_SHARED);
        sched::with_current(|t| t.sync_mm_rss());
        r2.done();
        sleep_uninterruptible(3000);
    });
    let r3 = ready.clone();
    let (w, _) = m.process("next", 0, move |mm| {
        populate(&mm, 50, 0);
        r3.done();
        pause();
    });
    m.run_until("set-up", |_| ready.count() == 2);
    assert_eq!(m.pool.accounting().mapped, 210);
    kill(&m);
    assert_eq!(m.oom.victims()[0].tgid, v.tgid());
    let r = m.reaper().clone();
    m.run_until("reap", |_| load(&r.stats().reaped) == 1);
    assert_eq!(
        load(&r.stats().pages_reaped),
        100,
        "only the plain private pages"
    );
    assert_eq!(m.pool.accounting().mapped, 110);
    assert_eq!(
        m.grep("oom_reaper: reaped process"),
        vec![format!(
            "oom_reaper: reaped process {} (victim), now anon-rss:160kB, file-rss:0kB, shmem-rss:80kB",
            v.tgid()
        )]
    );
    assert!(vmm.test_flag(MMF_OOM_SKIP));
    // L7: the next OOM kills again although 60 pages of the first victim are still held.
    kill(&m);
    assert_eq!(m.oom.victims()[1].tgid, w.tgid());
    assert_eq!(m.oom_kills(), 2);
    m.finish();
}

/// ≥ 5.18 `OOM_REAPER_DELAY` (2 s): the first attempt comes 2 s after the kill; and a request
/// whose mm is already MMF_OOM_SKIP when the delay runs out (the victim exited by itself) is
/// dropped without an attempt or a message.
#[test]
fn start_delay_postpones_the_first_attempt_and_drops_exited_victims() {
    let delayed = || Boot {
        reaper: Some(ReaperConfig {
            delay_ms: 2000,
            ..ReaperConfig::default()
        }),
        ..Boot::default()
    };
    // A stuck victim: reaped 2 s after the kill.
    let m = boot(delayed());
    stuck_process(&m, "victim", 100, 5000);
    let killed_at = kill(&m);
    assert_eq!(m.reaper().pending(), 1);
    let r = m.reaper().clone();
    let times = run_recording_attempts(&m, "reap", |_| load(&r.stats().reaped) == 1);
    assert_eq!(times.len(), 1);
    let first = times[0] - killed_at;
    assert!(
        (2000 * MS..2002 * MS).contains(&first),
        "first attempt {first} ns after the kill"
    );
    m.finish();

    // A victim that exits at once: the timer finds MMF_OOM_SKIP and drops the request.
    let m = boot(delayed());
    let ready = Ready::default();
    let r2 = ready.clone();
    let (_, vmm) = m.process("victim", 0, move |mm| {
        populate(&mm, 100, 0);
        r2.done();
        pause();
    });
    m.run_until("set-up", |_| ready.count() == 1);
    let killed_at = kill(&m);
    let r = m.reaper().clone();
    let v2 = vmm.clone();
    m.run_until("exit", |_| v2.test_flag(MMF_TORN_DOWN));
    assert!(vmm.torn_down_ns().unwrap() < killed_at + 2000 * MS);
    assert_eq!(r.pending(), 1, "still waiting for its timer");
    let r2 = r.clone();
    m.run_until("timer", |_| r2.pending() == 0);
    assert!(
        m.sim().now_ns() >= killed_at + 2000 * MS,
        "dropped when the delay ran out"
    );
    let st = r.stats();
    assert_eq!(
        (
            load(&st.attempts),
            load(&st.reaped),
            load(&st.skipped),
            load(&st.gave_up)
        ),
        (0, 0, 0, 0)
    );
    assert!(m.grep("oom_reaper").is_empty());
    m.finish();
}

/// `oom_reaper_list` is pushed and popped at its head: three victims queued while the reaper
/// sleeps are reaped last-in first-out.
#[test]
fn reaper_list_is_lifo() {
    let m = boot(Boot::default());
    let a = stuck_process(&m, "a", 300, 3000);
    let b = stuck_process(&m, "b", 200, 3000);
    let c = stuck_process(&m, "c", 100, 3000);
    let (oom, reaper) = (m.oom.clone(), m.reaper().clone());
    let queued = m.run_in_task("kworker", move || {
        // Three manual OOM kills in one go (sysrq ignores the abort rule): a, b, c.
        for _ in 0..3 {
            assert!(oom.sysrq_force_oom());
        }
        reaper.pending()
    });
    assert_eq!(queued, 3);
    let want: Vec<u32> = [&a, &b, &c].iter().map(|x| x.0.tgid()).collect();
    let got: Vec<u32> = m.oom.victims().iter().map(|v| v.tgid).collect();
    assert_eq!(got, want, "killed a, b, c");
    let r = m.reaper().clone();
    m.run_until("reaps", |_| load(&r.stats().reaped) == 3);
    // All three are reaped in one reaper step (the same emulated ns): the log gives the order.
    assert!([&a, &b, &c].iter().all(|x| x.1.reaped_ns().is_some()));
    let re = reaped_line_re();
    let logged: Vec<String> = m
        .lines()
        .iter()
        .filter_map(|l| re.captures(l).map(|c| c[2].to_string()))
        .collect();
    assert_eq!(logged, vec!["c", "b", "a"], "LIFO");
    m.finish();
}

/// Queueing is deduplicated per mm (MMF_OOM_REAP_QUEUED, 5.18): two CLONE_VM processes that
/// both self-mark as dying victims queue one request, which is reaped once.
#[test]
fn queue_is_deduplicated_per_mm() {
    let m = boot(Boot {
        reaper: Some(ReaperConfig {
            delay_ms: 2000,
            ..ReaperConfig::default()
        }),
        ..Boot::default()
    });
    let ready = Ready::default();
    let done: Arc<std::sync::Mutex<Vec<(bool, usize)>>> = Default::default();
    let sharer: Arc<OnceLock<Arc<Task>>> = Arc::new(OnceLock::new());
    let (r2, d2, s2) = (ready.clone(), done.clone(), sharer.clone());
    let (oom, reaper) = (m.oom.clone(), m.reaper().clone());
    let (p, vmm) = m.process("first", 0, move |mm| {
        populate(&mm, 100, 0);
        let (oom2, reaper2, d3, r3) = (oom.clone(), reaper.clone(), d2.clone(), r2.clone());
        let q = clone_vm("second", move |_| {
            r3.done();
            pause();
            let prog = oom2.out_of_memory(&oc_kernel());
            d3.lock().unwrap().push((prog, reaper2.pending()));
            sleep_uninterruptible(3000);
        });
        s2.set(q).unwrap();
        r2.done();
        pause();
        let prog = oom.out_of_memory(&oc_kernel());
        d2.lock().unwrap().push((prog, reaper.pending()));
        drop(mm);
        sleep_uninterruptible(3000);
    });
    m.run_until("set-up", |_| ready.count() == 2);
    let q = sharer.get().unwrap().clone();
    kill_thread_group(Signal::Kill, p.group());
    kill_thread_group(Signal::Kill, q.group());
    let d3 = done.clone();
    m.run_until("both self-marked", |_| d3.lock().unwrap().len() == 2);
    assert_eq!(*done.lock().unwrap(), vec![(true, 1), (true, 1)]);
    assert_eq!(load(&m.oom.stats().self_marked), 2);
    assert!(p.group().is_oom_victim() && q.group().is_oom_victim());
    assert!(vmm.test_flag(MMF_OOM_VICTIM));
    let r = m.reaper().clone();
    m.run_until("reap", |_| load(&r.stats().reaped) == 1);
    m.finish();
    assert_eq!(load(&r.stats().attempts), 1);
    assert_eq!(m.grep("oom_reaper: reaped process").len(), 1);
}

/// §5 invariant: the reaper and the exit path never free the same frame twice. A victim with
/// three threads that fault, mmap and munmap is killed at a seed-dependent moment while the
/// reaper races its exit; the pool's state machine asserts on any double free, and at the end
/// every frame is accounted for and none is left allocated. Both orders (reaper first, exit
/// first) must occur across the seeds.
#[test]
fn reaper_and_exit_never_free_a_frame_twice() {
    let mut reaped_first = 0;
    let mut exit_first = 0;
    for seed in 0..24u64 {
        let knobs = MmKnobs {
            write_lock: if seed % 2 == 0 {
                LockWait::Uninterruptible
            } else {
                LockWait::Killable
            },
            ..MmKnobs::default()
        };
        let m = boot(Boot {
            knobs,
            seed,
            ..Boot::default()
        });
        let churn = |mm: Arc<MmStruct>| {
            for i in 0..40u64 {
                if sched::fatal_signal_pending() {
                    return;
                }
                let Ok(a) = mmap(
                    &mm,
                    0,
                    16 * PAGE_SIZE,
                    PROT_READ | PROT_WRITE,
                    MAP_ANONYMOUS | MAP_PRIVATE,
                ) else {
                    return;
                };
                for j in 0..16 {
                    if mm::memory::touch(&mm, a + j * PAGE_SIZE, true, 1).is_err() {
                        return;
                    }
                    sched::cond_resched();
                }
                if i % 3 == 0 && munmap(&mm, a, 16 * PAGE_SIZE).is_err() {
                    return;
                }
            }
            pause();
        };
        m.process("victim", 0, move |mm| {
            for _ in 0..2 {
                clone_thread(churn);
            }
            churn(mm);
        });
        let oom = m.oom.clone();
        m.kernel_task("driver", move || {
            sleep_uninterruptible(1 + seed % 4);
            assert!(oom.out_of_memory(&oc_kernel()));
        });
        m.finish();
        assert_eq!(m.oom_kills(), 1, "seed {seed}");
        let st = m.reaper().stats();
        assert_eq!(load(&st.gave_up), 0, "seed {seed}");
        // Reaped by the reaper, or MMF_OOM_SKIP set by exit_mmap first (then the reaper
        // backs off under the lock or its trylocks fail until exit is done).
        if load(&st.reaped) == 1 {
            reaped_first += 1;
        } else {
            exit_first += 1;
        }
    }
    assert!(
        reaped_first > 0 && exit_first > 0,
        "both orders covered: reaped first {reaped_first}, exit first {exit_first}"
    );
}
