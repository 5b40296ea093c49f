//! Rule tests of the OOM killer (mm/oom_kill.c, v4.19 logic, v5.x log wording) on the sim
//! executor: `oom_badness`, the order of checks in `out_of_memory` (docs/oom-rules.md §2.1), the
//! abort rule (§3.3, M4) with both `victim_gone_rule`s, and `oom_kill_process` with its log
//! lines (§4.1, §7). Each test names the rule it pins; each assertion would fail if that rule
//! were broken.

use crate::common::*;
use mm::gfp::Gfp;
use mm::memory::mmput;
use mm::mm_types::{
    add_mm_counter, MmStruct, MMF_OOM_SKIP, MMF_OOM_VICTIM, MMF_TORN_DOWN, MM_SWAPENTS,
};
use mm::mmap::{mmap, MAP_ANONYMOUS, MAP_PRIVATE, MAP_SHARED, PROT_READ, PROT_WRITE};
use mm::page_alloc::{OomControl, OomKiller};
use mm::pgtable::PAGE_SIZE;
use mm::sched;
use mm::task::{kill_thread_group, state, Signal, Task};
use reaper::oom_kill::{Oom, OomConfig, VictimGoneRule};
use regex::Regex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// What a set-up process does once its memory is populated.
#[derive(Clone, Copy)]
enum After {
    /// `pause()`: SIGKILL ends it at once.
    Pause,
    /// Stuck in TASK_UNINTERRUPTIBLE for this many ms (SIGKILL cannot reach it), then exits.
    Stuck(u64),
}

#[derive(Clone, Copy)]
struct P {
    comm: &'static str,
    adj: i32,
    anon: u64,
    shared: u64,
    after: After,
}

fn p(comm: &'static str, adj: i32, anon: u64, after: After) -> P {
    P {
        comm,
        adj,
        anon,
        shared: 0,
        after,
    }
}

/// Spawn the processes and run until all populated their memory.
fn spawn_all(m: &Machine, ps: &[P]) -> Vec<(Arc<Task>, Arc<MmStruct>)> {
    let ready = Ready::default();
    let out: Vec<_> = ps
        .iter()
        .map(|p| {
            let p = *p;
            let ready = ready.clone();
            m.process(p.comm, p.adj, move |mm| {
                if p.anon > 0 {
                    populate(&mm, p.anon, 0);
                }
                if p.shared > 0 {
                    populate(&mm, p.shared, MAP_SHARED);
                }
                ready.done();
                match p.after {
                    After::Pause => pause(),
                    After::Stuck(ms) => sleep_uninterruptible(ms),
                }
            })
        })
        .collect();
    let n = ps.len();
    m.run_until("set-up", |_| ready.count() == n);
    out
}

/// One `out_of_memory(GFP_KERNEL)` call from an mm-less task `driver`.
fn oom_call(m: &Machine) -> bool {
    let oom = m.oom.clone();
    m.run_in_task("driver", move || oom.out_of_memory(&oc_kernel()))
}

fn victim_tgids(m: &Machine) -> Vec<u32> {
    m.oom.victims().iter().map(|v| v.tgid).collect()
}

fn killed_line_re() -> Regex {
    Regex::new(
        r"^(Out of memory(?: \(oom_kill_allocating_task\))?): Killed process (\d+) \((\S+)\) total-vm:(\d+)kB, anon-rss:(\d+)kB, file-rss:(\d+)kB, shmem-rss:(\d+)kB, UID:(\d+) pgtables:(\d+)kB oom_score_adj:(-?\d+)$",
    )
    .unwrap()
}

/// The "Killed process" lines: (prefix, pid, comm).
fn killed(m: &Machine) -> Vec<(String, u32, String)> {
    let re = killed_line_re();
    m.lines()
        .iter()
        .filter_map(|l| re.captures(l))
        .map(|c| (c[1].to_string(), c[2].parse().unwrap(), c[3].to_string()))
        .collect()
}

fn kill_all(ts: &[(Arc<Task>, Arc<MmStruct>)]) {
    for (t, _) in ts {
        kill_thread_group(Signal::Kill, t.group());
    }
}

// ---- oom_badness (§3.1) ---------------------------------------------------------------------

/// `oom_badness()` = rss (anon + file + shmem) + swap entries + page-table pages, and
/// /proc/pid/oom_score = badness × 1000 / totalpages (4.x).
#[test]
fn oom_badness_is_rss_plus_swap_plus_page_tables() {
    let m = boot(Boot {
        reaper: None,
        ..Boot::default()
    });
    let total = m.pool.total_pages();
    assert_eq!(total, 4096);
    let ps = spawn_all(
        &m,
        &[P {
            comm: "mixed",
            adj: 0,
            anon: 100,
            shared: 20,
            after: After::Pause,
        }],
    );
    // A sparse process: one page in each of 10 separate 2 MiB regions = 10 PTE tables.
    let ready = Ready::default();
    let r2 = ready.clone();
    let (sparse, smm) = m.process("sparse", 0, move |mm| {
        let span = 512 * PAGE_SIZE;
        let a = mmap(
            &mm,
            0,
            10 * span,
            PROT_READ | PROT_WRITE,
            MAP_ANONYMOUS | MAP_PRIVATE,
        )
        .unwrap();
        for i in 0..10 {
            mm::memory::touch(&mm, a + i * span, true, 1).unwrap();
        }
        sched::with_current(|t| t.sync_mm_rss());
        r2.done();
        pause();
    });
    m.run_until("sparse set-up", |_| ready.count() == 1);

    let (mixed, mm) = &ps[0];
    assert_eq!(mm.get_mm_rss(), 120, "anon 100 + shmem 20");
    let ptes = mm.nr_ptes();
    assert!(ptes >= 1);
    // Swap entries count too (no swap is modelled: charge the counter directly).
    add_mm_counter(mm, MM_SWAPENTS, 7);
    assert_eq!(Oom::oom_badness(mixed.group(), total), Some(120 + 7 + ptes));
    assert_eq!(
        m.oom.oom_score(mixed.group()),
        (120 + 7 + ptes) * 1000 / total
    );
    add_mm_counter(mm, MM_SWAPENTS, -7);
    assert_eq!(Oom::oom_badness(mixed.group(), total), Some(120 + ptes));

    assert_eq!(smm.get_mm_rss(), 10);
    assert_eq!(smm.nr_ptes(), 10, "one PTE table per 2 MiB region");
    assert_eq!(
        Oom::oom_badness(sparse.group(), total),
        Some(20),
        "10 resident pages + 10 page-table pages"
    );
    kill_all(&ps);
    kill_thread_group(Signal::Kill, sparse.group());
    m.finish();
}

/// `points += oom_score_adj × (totalpages / 1000)`; an eligible task scores at least 1;
/// adj −1000 is never chosen, even as the biggest process; selection follows the scaled
/// points, not rss.
#[test]
fn oom_score_adj_scales_points_and_minus_1000_is_never_chosen() {
    let m = boot(Boot {
        reaper: None,
        ..Boot::default()
    });
    let total = m.pool.total_pages();
    let per_mille = (total / 1000) as i64;
    assert_eq!(per_mille, 4);
    let ps = spawn_all(
        &m,
        &[
            p("plain", 0, 200, After::Pause),
            p("boosted", 500, 50, After::Pause),
            p("demoted", -100, 300, After::Pause),
            p("protected", -1000, 600, After::Pause),
        ],
    );
    let bad = |i: usize| Oom::oom_badness(ps[i].0.group(), total);
    let ptes = |i: usize| ps[i].1.nr_ptes();
    assert_eq!(bad(0), Some(200 + ptes(0)));
    assert_eq!(bad(1), Some(50 + ptes(1) + 500 * per_mille as u64));
    assert_eq!(bad(2), Some(1), "300 − 400 < 0: an eligible task scores 1");
    assert_eq!(bad(3), None, "OOM_SCORE_ADJ_MIN");
    assert_eq!(m.oom.oom_score(ps[3].0.group()), 0);
    assert_eq!(
        m.oom.oom_score(ps[1].0.group()),
        bad(1).unwrap() * 1000 / total
    );

    // Kill order: boosted (2050+), plain (200+), demoted (1); protected never.
    let tg = |i: usize| ps[i].0.tgid();
    for (round, want) in [1usize, 0, 2].into_iter().enumerate() {
        assert!(oom_call(&m));
        assert_eq!(victim_tgids(&m)[round], tg(want), "round {round}");
        let vmm = ps[want].1.clone();
        m.run_until("victim torn down", |_| vmm.test_flag(MMF_TORN_DOWN));
    }
    assert_eq!(m.oom_kills(), 3);
    assert!(!ps[3].0.group().is_oom_victim());
    kill_thread_group(Signal::Kill, ps[3].0.group());
    m.finish();
}

/// Ties keep the first process in pid order (4.19 `oom_evaluate_task`: "prefer thread group
/// leaders for display purposes" — the earlier leader stays chosen; 5.x would take the later).
#[test]
fn ties_keep_the_first_process_in_pid_order() {
    let m = boot(Boot {
        reaper: None,
        ..Boot::default()
    });
    let ps = spawn_all(
        &m,
        &[
            p("small", 0, 50, After::Pause),
            p("first", 0, 100, After::Pause),
            p("second", 0, 100, After::Pause),
        ],
    );
    let total = m.pool.total_pages();
    assert_eq!(
        Oom::oom_badness(ps[1].0.group(), total),
        Oom::oom_badness(ps[2].0.group(), total)
    );
    assert!(ps[1].0.tgid() < ps[2].0.tgid());
    assert!(oom_call(&m));
    assert_eq!(victim_tgids(&m), vec![ps[1].0.tgid()]);
    kill_all(&ps);
    m.finish();
}

/// Never chosen: adj −1000, an `MMF_OOM_SKIP` mm, a process without an mm. A small eligible
/// process is killed instead of all of them; once nothing is eligible, `out_of_memory()`
/// prints "Out of memory and no killable processes..." and panics with "System is
/// deadlocked on memory" (§2.1 step 7, 5.x text).
#[test]
fn skipped_processes_are_never_chosen_and_nothing_eligible_panics() {
    let m = boot(Boot {
        reaper: None,
        ..Boot::default()
    });
    let ps = spawn_all(
        &m,
        &[
            p("protected", -1000, 600, After::Pause),
            p("skipped", 0, 500, After::Pause),
            p("eligible", 0, 5, After::Pause),
        ],
    );
    ps[1].1.set_flag(MMF_OOM_SKIP);
    let nomm = m.kernel_task("kworker", pause);
    let total = m.pool.total_pages();
    assert_eq!(Oom::oom_badness(ps[0].0.group(), total), None);
    assert_eq!(Oom::oom_badness(ps[1].0.group(), total), None);
    assert_eq!(Oom::oom_badness(nomm.group(), total), None);
    assert!(Oom::oom_badness(ps[2].0.group(), total).is_some());

    assert!(oom_call(&m));
    assert_eq!(victim_tgids(&m), vec![ps[2].0.tgid()]);
    let emm = ps[2].1.clone();
    m.run_until("eligible torn down", |_| emm.test_flag(MMF_TORN_DOWN));

    // Nothing eligible is left: the driver panics and never returns.
    let returned = Arc::new(AtomicBool::new(false));
    let r2 = returned.clone();
    let oom = m.oom.clone();
    let driver = m.kernel_task("driver", move || {
        oom.out_of_memory(&oc_kernel());
        r2.store(true, Ordering::SeqCst);
    });
    let oom = m.oom.clone();
    m.run_until("panic", |_| oom.panicked().is_some());
    assert_eq!(
        m.oom.panicked().as_deref(),
        Some("System is deadlocked on memory")
    );
    assert!(!returned.load(Ordering::SeqCst));
    assert_eq!(driver.state(), state::TASK_UNINTERRUPTIBLE);
    assert_eq!(m.oom_kills(), 1);
    let lines = m.lines();
    let at = |s: &str| {
        lines
            .iter()
            .rposition(|l| l == s)
            .unwrap_or_else(|| panic!("no line {s:?}\n{}", m.dmesg()))
    };
    let header = lines
        .iter()
        .rposition(|l| {
            l == "driver invoked oom-killer: gfp_mask=0x14000c0(GFP_KERNEL), order=0, oom_score_adj=0"
        })
        .expect("dump_header");
    let none = at("Out of memory and no killable processes...");
    let panic = at("Kernel panic - not syncing: System is deadlocked on memory");
    assert!(header < none && none < panic);
    // The task table lists processes with an mm, −1000 and MMF_OOM_SKIP ones included.
    let table: Vec<&String> = lines[header..none]
        .iter()
        .filter(|l| l.starts_with('[') && !l.starts_with("[  pid  ]"))
        .collect();
    let comms: Vec<&str> = table
        .iter()
        .map(|l| l.rsplit(' ').next().unwrap())
        .collect();
    assert_eq!(comms, vec!["protected", "skipped"], "{table:?}");
    m.pool.check_conservation().unwrap();
}

// ---- out_of_memory() order of checks (§2.1) ------------------------------------------------

/// §2.1 step 3: a dying current task (SIGKILL pending, i.e. group exit, and no live sharer)
/// is marked a victim and gets the reaper, without SIGKILL, report or oom_kill count.
#[test]
fn dying_current_marks_itself_without_a_kill() {
    let m = boot(Boot::default());
    let ready = Ready::default();
    let r2 = ready.clone();
    let (oom, reaper) = (m.oom.clone(), m.reaper().clone());
    let result: Arc<OnceLock<(bool, usize, bool)>> = Arc::new(OnceLock::new());
    let res2 = result.clone();
    let (t, mm) = m.process("dying", 0, move |mm| {
        populate(&mm, 100, 0);
        r2.done();
        pause();
        // Killed: back into the allocator, which finds no memory.
        let progress = oom.out_of_memory(&oc_kernel());
        let queued = reaper.pending();
        let victim = sched::with_current(|t| t.group().is_oom_victim());
        res2.set((progress, queued, victim)).unwrap();
        drop(mm);
        sleep_uninterruptible(100);
    });
    m.run_until("set-up", |_| ready.count() == 1);
    kill_thread_group(Signal::Kill, t.group());
    let r3 = result.clone();
    m.run_until("self-mark", |_| r3.get().is_some());
    let (progress, queued, victim) = *result.get().unwrap();
    assert!(progress, "a self-marked task counts as progress");
    assert!(victim, "tsk_is_oom_victim(current)");
    assert_eq!(queued, 1, "the reaper is queued for current");
    assert!(mm.test_flag(MMF_OOM_VICTIM));
    let st = m.oom.stats();
    assert_eq!(load(&st.self_marked), 1);
    assert_eq!(m.oom_kills(), 0, "no oom_kill count for a self-marked task");
    let v = m.oom.victims();
    assert_eq!(v.len(), 1);
    assert!(!v[0].killed);
    assert!(m.grep("invoked oom-killer").is_empty(), "{}", m.dmesg());
    assert!(m.grep("Killed process").is_empty());
    m.finish();
    assert_eq!(
        m.grep("oom_reaper: reaped process").len(),
        1,
        "{}",
        m.dmesg()
    );
}

/// §2.1 step 3 requires every process sharing the mm to be dying too (≈4.8, the L3 fix):
/// with a live CLONE_VM sharer the dying task is *not* self-marked; selection kills it (the
/// first of two equal candidates) and SIGKILLs the sharer, which gets no reserves until it
/// re-enters the OOM killer and marks itself.
#[test]
fn dying_current_with_a_live_sharer_is_killed_and_the_sharer_follows() {
    let m = boot(Boot::default());
    let ready = Ready::default();
    let sharer: Arc<OnceLock<Arc<Task>>> = Arc::new(OnceLock::new());
    let first: Arc<OnceLock<(bool, bool, bool)>> = Arc::new(OnceLock::new());
    let second: Arc<OnceLock<bool>> = Arc::new(OnceLock::new());
    let (r2, sh2, f2, s2) = (ready.clone(), sharer.clone(), first.clone(), second.clone());
    let oom = m.oom.clone();
    let (t, mm) = m.process("dying", 0, move |mm| {
        populate(&mm, 100, 0);
        let oom2 = oom.clone();
        let r3 = r2.clone();
        let q = clone_vm("sharer", move |_mm| {
            r3.done();
            pause();
            let progress = oom2.out_of_memory(&oc_kernel());
            s2.set(progress).unwrap();
            sleep_uninterruptible(100);
        });
        sh2.set(q.clone()).unwrap();
        r2.done();
        pause();
        let progress = oom.out_of_memory(&oc_kernel());
        let q_killed = q.fatal_signal_pending();
        let q_victim = q.group().is_oom_victim();
        f2.set((progress, q_killed, q_victim)).unwrap();
        drop(mm);
        sleep_uninterruptible(100);
    });
    m.run_until("set-up", |_| ready.count() == 2);
    let q = sharer.get().unwrap().clone();
    assert!(q.mm_is(&mm));
    kill_thread_group(Signal::Kill, t.group());
    let (f3, s3) = (first.clone(), second.clone());
    m.run_until("both calls", |_| f3.get().is_some() && s3.get().is_some());
    let (progress, q_killed, q_victim_then) = *first.get().unwrap();
    assert!(progress);
    assert!(q_killed, "the CLONE_VM sharer got SIGKILL with the victim");
    assert!(
        !q_victim_then,
        "sharers get no reserves of their own at the kill"
    );
    let st = m.oom.stats();
    assert_eq!(m.oom_kills(), 1, "one kill: the sharer is not counted");
    assert_eq!(load(&st.sharer_kills), 1);
    assert_eq!(load(&st.self_marked), 1, "only the sharer self-marked");
    assert!(*second.get().unwrap());
    assert!(q.group().is_oom_victim());
    assert_eq!(
        killed(&m),
        vec![("Out of memory".to_string(), t.tgid(), "dying".to_string())]
    );
    m.finish();
}

/// §2.1 step 4: a non-zero gfp mask without `__GFP_FS` never kills (returns true, so GFP_NOFS
/// allocators just loop); the page-fault path's mask 0 is not "NOFS" and does kill.
#[test]
fn gfp_without_fs_never_kills_but_gfp_zero_does() {
    let m = boot(Boot {
        reaper: None,
        ..Boot::default()
    });
    let ps = spawn_all(&m, &[p("hog", 0, 100, After::Pause)]);
    let oom = m.oom.clone();
    let progress = m.run_in_task("driver", move || {
        oom.out_of_memory(&OomControl {
            gfp: Gfp::GFP_NOFS,
            order: 0,
        })
    });
    assert!(progress, "NOFS: reported as progress");
    assert_eq!(m.oom_kills(), 0);
    assert_eq!(load(&m.oom.stats().nofs), 1);
    assert!(m.oom.victims().is_empty());
    assert!(m.lines().is_empty(), "no report at all:\n{}", m.dmesg());
    assert!(!ps[0].0.fatal_signal_pending());

    let oom = m.oom.clone();
    let progress = m.run_in_task("driver", move || {
        oom.out_of_memory(&OomControl {
            gfp: Gfp::NONE,
            order: 0,
        })
    });
    assert!(progress);
    assert_eq!(victim_tgids(&m), vec![ps[0].0.tgid()]);
    assert_eq!(
        m.grep("invoked oom-killer"),
        vec!["driver invoked oom-killer: gfp_mask=0x0(), order=0, oom_score_adj=0"]
    );
    m.finish();
}

/// §2.2: panic_on_oom 1 and 2 panic with the kernel's exact line, before (and instead of)
/// `oom_kill_allocating_task`; nothing is killed and the caller never returns.
#[test]
fn panic_on_oom_panics_with_the_kernel_line() {
    for (mode, word) in [(1u8, "system-wide"), (2, "compulsory")] {
        let m = boot(Boot {
            oom: OomConfig {
                panic_on_oom: mode,
                oom_kill_allocating_task: true,
                ..OomConfig::default()
            },
            ..Boot::default()
        });
        spawn_all(&m, &[p("hog", 0, 100, After::Pause)]);
        let returned = Arc::new(AtomicBool::new(false));
        let r2 = returned.clone();
        let oom = m.oom.clone();
        m.process("alloc", 0, move |mm| {
            populate(&mm, 10, 0);
            oom.out_of_memory(&oc_kernel());
            r2.store(true, Ordering::SeqCst);
        });
        let oom = m.oom.clone();
        m.run_until("panic", |_| oom.panicked().is_some());
        let msg = format!("Out of memory: {word} panic_on_oom is enabled");
        assert_eq!(m.oom.panicked(), Some(msg.clone()), "panic_on_oom={mode}");
        let lines = m.lines();
        let panic_at = lines
            .iter()
            .position(|l| *l == format!("Kernel panic - not syncing: {msg}"))
            .unwrap_or_else(|| panic!("no panic line\n{}", m.dmesg()));
        let header_at = lines
            .iter()
            .position(|l| l.starts_with("alloc invoked oom-killer: gfp_mask=0x14000c0(GFP_KERNEL)"))
            .expect("dump_header before the panic");
        assert!(header_at < panic_at);
        assert_eq!(panic_at, lines.len() - 1, "nothing after the panic");
        assert_eq!(m.oom_kills(), 0);
        assert!(m.oom.victims().is_empty());
        assert!(!returned.load(Ordering::SeqCst), "panic() does not return");
    }
}

/// §2.2: the sysrq-f manual OOM never panics, even with panic_on_oom=2, and ignores the
/// abort rule (a second sysrq kills a second process while the first victim is pending).
#[test]
fn sysrq_oom_never_panics_and_ignores_the_abort_rule() {
    let m = boot(Boot {
        oom: OomConfig {
            panic_on_oom: 2,
            ..OomConfig::default()
        },
        reaper: None,
        ..Boot::default()
    });
    let ps = spawn_all(
        &m,
        &[
            p("stuck", 0, 300, After::Stuck(2000)),
            p("other", 0, 100, After::Pause),
        ],
    );
    let oom = m.oom.clone();
    let r = m.run_in_task("kworker", move || {
        (
            oom.sysrq_force_oom(),
            oom.sysrq_force_oom(),
            oom.sysrq_force_oom(),
        )
    });
    assert_eq!(r, (true, true, false));
    assert_eq!(m.oom.panicked(), None);
    assert_eq!(victim_tgids(&m), vec![ps[0].0.tgid(), ps[1].0.tgid()]);
    assert!(m.oom.victims().iter().all(|v| v.by_sysrq && v.killed));
    assert_eq!(load(&m.oom.stats().sysrq_kills), 2);
    assert_eq!(m.oom_kills(), 2);
    assert_eq!(
        m.grep("invoked oom-killer")[0],
        "kworker invoked oom-killer: gfp_mask=0x14000c0(GFP_KERNEL), order=-1, oom_score_adj=0"
    );
    // The third request: header, "no killable processes" (no panic), then moom_callback's
    // line, in that order.
    let lines = m.lines();
    let none = lines
        .iter()
        .position(|l| l == "Out of memory and no killable processes...")
        .unwrap_or_else(|| panic!("{}", m.dmesg()));
    assert_eq!(lines[none + 1], "OOM request ignored. No task eligible");
    assert_eq!(m.grep("invoked oom-killer").len(), 3);
    assert_eq!(m.grep("OOM request ignored. No task eligible").len(), 1);
    assert!(m.grep("Kernel panic").is_empty());
    m.finish();
}

/// §2.1 step 6: `oom_kill_allocating_task` kills current (with the
/// "Out of memory (oom_kill_allocating_task)" prefix) without scanning and without
/// consulting the abort rule; an allocating task with adj −1000 or without an mm falls
/// through to the scan.
#[test]
fn oom_kill_allocating_task_kills_current_and_ignores_the_abort_rule() {
    let m = boot(Boot {
        oom: OomConfig {
            oom_kill_allocating_task: true,
            ..OomConfig::default()
        },
        reaper: None,
        ..Boot::default()
    });
    let ps = spawn_all(&m, &[p("big", 0, 500, After::Stuck(1000))]);
    let caller = |m: &Machine, comm: &'static str, adj: i32| {
        let oom = m.oom.clone();
        let done: Arc<OnceLock<bool>> = Arc::new(OnceLock::new());
        let d2 = done.clone();
        let (t, _) = m.process(comm, adj, move |mm| {
            populate(&mm, 10, 0);
            d2.set(oom.out_of_memory(&oc_kernel())).unwrap();
            sleep_uninterruptible(10);
        });
        m.run_until(comm, |_| done.get().is_some());
        (t, *done.get().unwrap())
    };
    // An mm-less caller (a kworker) scans: the biggest process goes.
    assert!(oom_call(&m));
    assert_eq!(victim_tgids(&m), vec![ps[0].0.tgid()]);
    assert!(!m.oom.victims()[0].resolved());

    // The allocating task is killed although a victim is pending.
    let (alloc, progress) = caller(&m, "alloc", 0);
    assert!(progress);
    assert!(
        !m.oom.victims()[0].resolved(),
        "the first victim is still pending"
    );
    assert_eq!(victim_tgids(&m), vec![ps[0].0.tgid(), alloc.tgid()]);
    assert_eq!(m.oom_kills(), 2);
    assert_eq!(
        killed(&m),
        vec![
            (
                "Out of memory".to_string(),
                ps[0].0.tgid(),
                "big".to_string()
            ),
            (
                "Out of memory (oom_kill_allocating_task)".to_string(),
                alloc.tgid(),
                "alloc".to_string()
            ),
        ]
    );

    // adj −1000: not killed; the scan runs and aborts on the pending victim.
    let aborts = load(&m.oom.stats().aborts);
    let (prot, progress) = caller(&m, "protected", -1000);
    assert!(progress);
    assert!(!prot.group().is_oom_victim());
    assert_eq!(m.oom_kills(), 2);
    assert_eq!(load(&m.oom.stats().aborts), aborts + 1);
    m.finish();
}

// ---- the abort rule (§3.3, M4) --------------------------------------------------------------

/// While a victim's mm is neither torn down nor `MMF_OOM_SKIP`, no new victim is chosen and
/// `out_of_memory()` still reports progress; after its teardown selection resumes.
#[test]
fn abort_rule_blocks_new_victims_until_the_victim_mm_is_torn_down() {
    let m = boot(Boot {
        reaper: None,
        ..Boot::default()
    });
    let ps = spawn_all(
        &m,
        &[
            p("stuck", 0, 300, After::Stuck(2000)),
            p("next", 0, 100, After::Pause),
        ],
    );
    assert!(oom_call(&m));
    assert_eq!(victim_tgids(&m), vec![ps[0].0.tgid()]);
    for _ in 0..3 {
        assert!(oom_call(&m), "an aborted selection counts as progress");
    }
    assert_eq!(load(&m.oom.stats().aborts), 3);
    assert_eq!(m.oom_kills(), 1);
    assert!(!ps[1].0.fatal_signal_pending(), "nobody new is killed");
    let vmm = ps[0].1.clone();
    assert!(!vmm.test_flag(MMF_OOM_SKIP) && !vmm.test_flag(MMF_TORN_DOWN));

    m.run_until("victim torn down", |_| vmm.test_flag(MMF_TORN_DOWN));
    assert!(m.oom.victims()[0].resolved());
    assert!(oom_call(&m));
    assert_eq!(victim_tgids(&m), vec![ps[0].0.tgid(), ps[1].0.tgid()]);
    assert_eq!(m.oom_kills(), 2);
    m.finish();
}

/// `victim_gone_rule` (M4, L11): the victim's only thread exits but a remote pin (mm_users)
/// keeps its mm alive. `process-released` (the kernel once the zombie is reaped) resumes
/// selection at once — a premature next victim; `mm-teardown` keeps aborting until the pin
/// is dropped and the mm torn down.
#[test]
fn victim_gone_rule_decides_whether_a_remote_pin_keeps_the_abort() {
    for rule in [VictimGoneRule::MmTeardown, VictimGoneRule::ProcessReleased] {
        let m = boot(Boot {
            oom: OomConfig {
                victim_gone_rule: rule,
                ..OomConfig::default()
            },
            reaper: None,
            ..Boot::default()
        });
        let ps = spawn_all(
            &m,
            &[
                p("victim", 0, 300, After::Pause),
                p("next", 0, 100, After::Pause),
            ],
        );
        let vmm = ps[0].1.clone();
        // A /proc reader's pin (get_task_mm), dropped after 3 s.
        let pin = vmm.clone();
        vmm.mmget();
        m.kernel_task("procfs", move || {
            sleep_ms(3000);
            mmput(&pin);
        });
        // Kill, and select again before the victim could run: while it is still listed,
        // both rules abort.
        let oom = m.oom.clone();
        let (killed, again) = m.run_in_task("driver", move || {
            (
                oom.out_of_memory(&oc_kernel()),
                oom.out_of_memory(&oc_kernel()),
            )
        });
        assert!(killed && again);
        let vtgid = ps[0].0.tgid();
        assert_eq!(victim_tgids(&m), vec![vtgid]);
        assert_eq!(load(&m.oom.stats().aborts), 1, "{rule:?}: listed victim");
        let tasks = m.tasks.clone();
        m.run_until("victim released", |_| tasks.find_process(vtgid).is_none());
        assert_eq!(vmm.mm_users(), 1, "only the remote pin is left");
        assert!(!vmm.test_flag(MMF_TORN_DOWN) && !vmm.test_flag(MMF_OOM_SKIP));

        assert!(oom_call(&m));
        match rule {
            VictimGoneRule::ProcessReleased => {
                assert_eq!(
                    victim_tgids(&m),
                    vec![vtgid, ps[1].0.tgid()],
                    "L11: the next victim while the first mm is still pinned"
                );
                assert!(!vmm.test_flag(MMF_TORN_DOWN));
            }
            VictimGoneRule::MmTeardown => {
                assert_eq!(victim_tgids(&m), vec![vtgid], "still aborting");
                assert_eq!(load(&m.oom.stats().aborts), 2);
                m.run_until("pin dropped", |_| vmm.test_flag(MMF_TORN_DOWN));
                assert!(oom_call(&m));
                assert_eq!(victim_tgids(&m), vec![vtgid, ps[1].0.tgid()]);
            }
        }
        assert_eq!(m.oom_kills(), 2, "{rule:?}");
        m.finish();
    }
}

// ---- oom_kill_process() and its report (§4.1, §7) -------------------------------------------

struct KillSetup {
    victim: Arc<Task>,
    thread: Arc<Task>,
    sharer: Arc<Task>,
    bystander: Arc<Task>,
    vmm: Arc<MmStruct>,
}

/// A victim process (two threads; 100 private + 20 shared pages) with a CLONE_VM sharer
/// process, and an unrelated smaller process. Pids: oom_reaper 1, victim 2, bystander 3,
/// victim's thread 4, sharer 5.
fn kill_setup(m: &Machine) -> KillSetup {
    let ready = Ready::default();
    let (r2, r3) = (ready.clone(), ready.clone());
    let others: Arc<OnceLock<(Arc<Task>, Arc<Task>)>> = Arc::new(OnceLock::new());
    let o2 = others.clone();
    let (victim, vmm) = m.process("victim", 0, move |mm| {
        populate(&mm, 100, 0);
        populate(&mm, 20, MAP_SHARED);
        let r = r2.clone();
        let th = clone_thread(move |_| {
            r.done();
            pause();
        });
        let r = r2.clone();
        let sh = clone_vm("sharer", move |_| {
            r.done();
            pause();
        });
        o2.set((th, sh)).unwrap();
        r2.done();
        pause();
    });
    let (bystander, _) = m.process("bystander", 0, move |mm| {
        populate(&mm, 30, 0);
        r3.done();
        pause();
    });
    m.run_until("set-up", |_| ready.count() == 4);
    let (thread, sharer) = others.get().unwrap().clone();
    KillSetup {
        victim,
        thread,
        sharer,
        bystander,
        vmm,
    }
}

/// `oom_kill_process()`: SIGKILL to every thread of the victim and to every process sharing
/// its mm, `mark_oom_victim()` (MMF_OOM_VICTIM, `tsk_is_oom_victim`) on the victim only,
/// `oom_kill` +1 (not per sharer), the reaper queued.
#[test]
fn oom_kill_process_kills_the_group_and_every_mm_sharer() {
    let m = boot(Boot::default());
    let s = kill_setup(&m);
    assert_eq!(
        (
            s.victim.tgid(),
            s.bystander.tgid(),
            s.thread.tid(),
            s.sharer.tgid()
        ),
        (2, 3, 4, 5)
    );
    let (oom, reaper) = (m.oom.clone(), m.reaper().clone());
    let (progress, queued) = m.run_in_task("driver", move || {
        let p = oom.out_of_memory(&oc_kernel());
        (p, reaper.pending())
    });
    assert!(progress);
    assert_eq!(queued, 1, "wake_oom_reaper()");
    assert_eq!(victim_tgids(&m), vec![s.victim.tgid()]);
    assert!(s.victim.group().group_exit());
    assert!(
        s.sharer.group().group_exit(),
        "the CLONE_VM sharer is killed too"
    );
    assert!(!s.bystander.group().group_exit());
    assert!(!s.bystander.fatal_signal_pending());
    assert!(s.victim.group().is_oom_victim());
    assert!(!s.sharer.group().is_oom_victim());
    assert!(s.vmm.test_flag(MMF_OOM_VICTIM));
    assert!(s
        .victim
        .group()
        .oom_mm()
        .is_some_and(|mm| Arc::ptr_eq(&mm, &s.vmm)));
    assert_eq!(m.oom_kills(), 1);
    assert_eq!(load(&m.oom.stats().sharer_kills), 1);
    kill_thread_group(Signal::Kill, s.bystander.group());
    m.finish();
    // Threads that were asleep when the signal came died of it.
    assert!(s.thread.has_exited() && s.sharer.has_exited());
}

/// The report of one kill, line by line, in the kernel's formats and order (dump_header,
/// dump_tasks, dump_oom_summary, __oom_kill_process; 5.x wording), stamped with emulated
/// time; with `oom_dump_tasks` off the task table is left out.
#[test]
fn kill_report_lines_match_the_kernel_formats() {
    check_kill_report(true);
    check_kill_report(false);
}

fn check_kill_report(dump_tasks: bool) {
    let m = boot(Boot {
        oom: OomConfig {
            oom_dump_tasks: dump_tasks,
            ..OomConfig::default()
        },
        ..Boot::default()
    });
    let s = kill_setup(&m);
    assert_eq!(s.vmm.nr_ptes(), 1);
    assert!(oom_call(&m));
    let lines = m.lines();
    let find = |re: &Regex| lines.iter().position(|l| re.is_match(l));

    let invoked = Regex::new(
        r"^(\S+) invoked oom-killer: gfp_mask=(0x[0-9a-f]+)\(([A-Z_|]*)\), order=(-?\d+), oom_score_adj=(-?\d+)$",
    )
    .unwrap();
    let i_inv = find(&invoked).unwrap_or_else(|| panic!("{}", m.dmesg()));
    let c = invoked.captures(&lines[i_inv]).unwrap();
    assert_eq!(
        (&c[1], &c[2], &c[3], &c[4], &c[5]),
        ("driver", "0x14000c0", "GFP_KERNEL", "0", "0")
    );

    let i_mem = lines
        .iter()
        .position(|l| l == "Mem-Info:")
        .expect("Mem-Info");
    let summary = Regex::new(
        r"^oom-kill:constraint=CONSTRAINT_NONE,nodemask=\(null\),cpuset=/,mems_allowed=0,global_oom,task_memcg=/,task=(\S+),pid=(\d+),uid=(\d+)$",
    )
    .unwrap();
    let i_sum = find(&summary).expect("oom-kill summary");
    let c = summary.captures(&lines[i_sum]).unwrap();
    assert_eq!((&c[1], &c[2], &c[3]), ("victim", "2", "0"));

    let i_kill = find(&killed_line_re()).expect("Killed process");
    let c = killed_line_re().captures(&lines[i_kill]).unwrap();
    let fields: Vec<&str> = (1..=10).map(|i| c.get(i).unwrap().as_str()).collect();
    assert_eq!(
        fields,
        vec![
            "Out of memory",
            "2",
            "victim",
            "480",
            "400",
            "0",
            "80",
            "0",
            "4",
            "0"
        ],
        "pid, comm, total-vm 120 pages, anon-rss 100 pages, file-rss 0, shmem-rss 20 \
         pages, UID 0, pgtables 1 table, adj"
    );
    assert_eq!(
        lines[i_kill],
        "Out of memory: Killed process 2 (victim) total-vm:480kB, anon-rss:400kB, \
         file-rss:0kB, shmem-rss:80kB, UID:0 pgtables:4kB oom_score_adj:0"
    );

    let i_tasks = lines
        .iter()
        .position(|l| l == "Tasks state (memory values in pages):");
    let row = Regex::new(r"^\[ *(\d+)\] +(\d+) +(\d+) +(\d+) +(\d+) +(\d+) +(\d+) +(-?\d+) (\S+)$")
        .unwrap();
    let rows: Vec<&String> = lines.iter().filter(|l| row.is_match(l)).collect();
    if dump_tasks {
        let i_tasks = i_tasks.expect("task table");
        assert_eq!(
            lines[i_tasks + 1],
            "[  pid  ]   uid  tgid total_vm      rss pgtables_bytes swapents oom_score_adj name"
        );
        assert!(i_inv < i_mem && i_mem < i_tasks && i_tasks < i_sum && i_sum < i_kill);
        // One row per process with an mm (the sharer included; the mm-less driver and
        // the reaper kthread not), with printf widths [%7d] %5d %5d %8lu %8lu %8ld %8lu
        // then 9 spaces and %5hd %s.
        let comms: Vec<&str> = rows.iter().map(|l| l.rsplit(' ').next().unwrap()).collect();
        assert_eq!(comms, vec!["victim", "bystander", "sharer"]);
        assert_eq!(
            rows[0].as_str(),
            "[      2]     0     2      120      120     4096        0             0 victim"
        );
        assert_eq!(
            rows[2].as_str(),
            "[      5]     0     5      120      120     4096        0             0 sharer"
        );
    } else {
        assert!(i_tasks.is_none() && rows.is_empty(), "{}", m.dmesg());
        assert!(i_inv < i_mem && i_mem < i_sum && i_sum < i_kill);
    }

    // dmesg stamps: [%5lu.%06lu], the emulated time of the kill.
    let raw = m.log.lines();
    let kl = &raw[i_kill];
    assert_eq!(kl.ts_ns, m.oom.victims()[0].marked_ns);
    let stamp = Regex::new(r"^\[ *(\d+)\.(\d{6})\] Out of memory: Killed process 2 ").unwrap();
    let c = stamp
        .captures(&kl.to_string())
        .unwrap_or_else(|| panic!("{kl}"))
        .iter()
        .skip(1)
        .map(|g| g.unwrap().as_str().parse::<u64>().unwrap())
        .collect::<Vec<_>>();
    assert_eq!(c[0] * 1_000_000 + c[1], kl.ts_ns / 1000);
    kill_thread_group(Signal::Kill, s.bystander.group());
    m.finish();
}
