//! Integration tests of the scheduler seam on the threads executor (one OS thread per task).
//!
//! Real parallelism, so no exact interleavings: the tests assert protocol outcomes (every task
//! exits, wake-up return values, counters) and turn would-be hangs into failures with a
//! watchdog ([`common::wait_until`]) before calling `join()`.

use crate::common::{panic_message, process, thread, wait_progress, wait_until, Log, STALL};
use mm::sched::threads::{ThreadsConfig, ThreadsExecutor};
use mm::sched::{
    self, current, fatal_signal_pending, hz, jiffies, ktime_get_ns, schedule, schedule_timeout,
    schedule_timeout_interruptible, schedule_timeout_killable, schedule_timeout_uninterruptible,
    set_current_state, wake_up_process,
};
use mm::task::state::*;
use mm::task::{kill_thread_group, send_sig, Signal, Task, Tid};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, OnceLock};
use std::time::{Duration, Instant};

/// Single-event waits: a hang detector ([`common::wait_until`]).
const WATCHDOG: Duration = STALL;

fn exec(hz: u32) -> ThreadsExecutor {
    ThreadsExecutor::new(ThreadsConfig {
        hz,
        ..Default::default()
    })
}

/// Wait until every task of `ex` exited (failing only if tasks stop exiting), then join.
fn finish(ex: &ThreadsExecutor, what: &str) {
    let tl = ex.tasks().clone();
    let t2 = tl.clone();
    wait_progress(
        STALL,
        what,
        || u64::MAX - t2.nr_tasks() as u64,
        || tl.nr_tasks() == 0,
    );
    ex.join();
}

#[test]
fn many_killable_sleepers_are_all_woken() {
    const GROUPS: u32 = 64;
    const PER_GROUP: u32 = 64; // 4096 tasks
    let ex = exec(1000);
    let go = Arc::new(AtomicBool::new(false));
    let by_kill = Arc::new(AtomicUsize::new(0));
    let by_wake = Arc::new(AtomicUsize::new(0));
    let body = {
        let (go, by_kill, by_wake) = (go.clone(), by_kill.clone(), by_wake.clone());
        move || {
            let (go, by_kill, by_wake) = (go.clone(), by_kill.clone(), by_wake.clone());
            // `go` is only checked after schedule() returned: the task leaves TASK_KILLABLE
            // only when a waker (the kill or wake_up_process) moved it to TASK_RUNNING, which
            // makes the wake_up_process() return values below exact.
            move || {
                loop {
                    set_current_state(TASK_KILLABLE);
                    if fatal_signal_pending() {
                        by_kill.fetch_add(1, Ordering::SeqCst);
                        break;
                    }
                    schedule();
                    if fatal_signal_pending() {
                        by_kill.fetch_add(1, Ordering::SeqCst);
                        break;
                    }
                    if go.load(Ordering::SeqCst) {
                        by_wake.fetch_add(1, Ordering::SeqCst);
                        break;
                    }
                }
                set_current_state(TASK_RUNNING);
            }
        }
    };
    let mut groups: Vec<Vec<Arc<Task>>> = Vec::new();
    for g in 0..GROUPS {
        let leader = ex.spawn(process(&format!("g{g}")), body()).unwrap();
        let mut members = vec![leader.clone()];
        for _ in 1..PER_GROUP {
            members.push(ex.spawn(thread(leader.tgid()), body()).unwrap());
        }
        groups.push(members);
    }
    let all: Vec<Arc<Task>> = groups.iter().flatten().cloned().collect();
    assert_eq!(all.len(), 4096);
    let tids: Vec<Tid> = all.iter().map(|t| t.tid()).collect();
    assert_eq!(
        tids,
        (1..=4096).collect::<Vec<_>>(),
        "pids sequential from 1"
    );
    let asleep = || all.iter().filter(|t| t.state() == TASK_KILLABLE).count() as u64;
    wait_progress(STALL, "all 4096 tasks in TASK_KILLABLE", asleep, || {
        asleep() == 4096
    });

    // Odd groups: SIGKILL to one (non-leader) thread takes the whole group.
    for (g, members) in groups.iter().enumerate() {
        if g % 2 == 1 {
            send_sig(Signal::Kill, &members[1 + g % (PER_GROUP as usize - 1)]);
        }
    }
    for (g, members) in groups.iter().enumerate() {
        if g % 2 == 1 {
            assert!(members[0].group().group_exit());
            for t in members {
                assert!(t.fatal_signal_pending());
                // Already woken by the kill: nothing left to wake.
                assert!(
                    !wake_up_process(t),
                    "task {} still asleep after SIGKILL",
                    t.tid()
                );
            }
        }
    }
    // Even groups: the condition, then wake_up_process(); each must still have been asleep.
    go.store(true, Ordering::SeqCst);
    let mut woken = 0;
    for (g, members) in groups.iter().enumerate() {
        if g % 2 == 0 {
            assert!(!members[0].group().group_exit());
            for t in members {
                woken += wake_up_process(t) as usize;
            }
        }
    }
    assert_eq!(woken, 2048, "every unkilled sleeper was asleep when woken");
    finish(&ex, "all 4096 tasks exit");
    assert_eq!(by_kill.load(Ordering::SeqCst), 2048);
    assert_eq!(by_wake.load(Ordering::SeqCst), 2048);
    assert!(all.iter().all(|t| t.has_exited() && t.state() == TASK_DEAD));
    assert!(ex.tasks().processes().is_empty());
}

#[test]
fn ping_pong_never_loses_a_wakeup() {
    const ROUNDS: u32 = 100_000;
    let ex = exec(1000);
    // turn: whose move it is (0 or 1); moves: total moves made.
    let turn = Arc::new(AtomicU32::new(0));
    let moves = Arc::new(AtomicU32::new(0));
    let peers: Arc<OnceLock<[Arc<Task>; 2]>> = Arc::new(OnceLock::new());
    let start = Arc::new(Barrier::new(3));
    for me in 0..2u32 {
        let (turn, moves, peers, start) =
            (turn.clone(), moves.clone(), peers.clone(), start.clone());
        ex.spawn(process(&format!("p{me}")), move || {
            start.wait();
            let other = peers.get().unwrap()[1 - me as usize].clone();
            for _ in 0..ROUNDS {
                loop {
                    set_current_state(TASK_UNINTERRUPTIBLE);
                    if turn.load(Ordering::SeqCst) == me {
                        break;
                    }
                    schedule();
                }
                set_current_state(TASK_RUNNING);
                moves.fetch_add(1, Ordering::SeqCst);
                turn.store(1 - me, Ordering::SeqCst);
                wake_up_process(&other);
            }
        })
        .unwrap();
    }
    let tl = ex.tasks().clone();
    peers
        .set([tl.find_task(1).unwrap(), tl.find_task(2).unwrap()])
        .unwrap_or_else(|_| unreachable!());
    start.wait();
    let (t0, m) = (Instant::now(), moves.clone());
    let what = format!("{} ping-pong moves", 2 * ROUNDS);
    let m2 = m.clone();
    wait_progress(
        STALL,
        &what,
        || u64::from(m2.load(Ordering::SeqCst)),
        || m.load(Ordering::SeqCst) == 2 * ROUNDS,
    );
    finish(&ex, "both ping-pong tasks exit");
    assert_eq!(moves.load(Ordering::SeqCst), 2 * ROUNDS);
    eprintln!("ping-pong: {} round trips in {:?}", ROUNDS, t0.elapsed());
}

#[test]
fn schedule_timeout_sleeps_at_least_the_timeout() {
    // (HZ, jiffies): each at least 30 ms of wall-clock time.
    let cases = [(1000u32, 30u64), (1000, 45), (100, 3), (250, 10)];
    let results = Log::new();
    let mut exs = Vec::new();
    for (k, (hz_cfg, j)) in cases.into_iter().enumerate() {
        let ex = exec(hz_cfg);
        let r = results.clone();
        ex.spawn(process("sleeper"), move || {
            let (t0, n0, j0) = (Instant::now(), ktime_get_ns(), jiffies());
            let left = match k % 2 {
                0 => schedule_timeout_uninterruptible(j),
                _ => schedule_timeout_killable(j),
            };
            r.push((
                hz(),
                j,
                left,
                t0.elapsed(),
                ktime_get_ns() - n0,
                jiffies() - j0,
            ));
        })
        .unwrap();
        exs.push(ex);
    }
    for ex in &exs {
        finish(ex, "sleepers exit");
    }
    let rs = results.snapshot();
    assert_eq!(rs.len(), cases.len());
    for (hz_cfg, j, left, wall, ns, dj) in rs {
        let want = Duration::from_nanos(j * (1_000_000_000 / hz_cfg as u64));
        assert_eq!(left, 0, "HZ={hz_cfg} j={j}: the timer fired");
        assert!(wall >= want, "HZ={hz_cfg} j={j}: slept {wall:?} < {want:?}");
        assert!(
            ns >= want.as_nanos() as u64,
            "HZ={hz_cfg} j={j}: ktime {ns}"
        );
        assert!(dj >= j, "HZ={hz_cfg} j={j}: jiffies advanced {dj}");
    }
}

#[test]
fn schedule_timeout_woken_early_returns_remaining() {
    let ex = exec(1000);
    let left = Arc::new(AtomicU64::new(u64::MAX));
    let l = left.clone();
    let t = ex
        .spawn(process("sleeper"), move || {
            l.store(schedule_timeout_interruptible(20_000), Ordering::SeqCst); // 20 s
        })
        .unwrap();
    wait_until(WATCHDOG, "sleeper in TASK_INTERRUPTIBLE", || {
        t.state() == TASK_INTERRUPTIBLE
    });
    assert!(wake_up_process(&t), "it was asleep");
    finish(&ex, "woken sleeper exits");
    let left = left.load(Ordering::SeqCst);
    assert!(left > 0 && left <= 20_000, "left {left}");
}

#[test]
fn sigkill_wakes_a_killable_sleeper() {
    let ex = exec(1000);
    let seen = Log::new();
    let s = seen.clone();
    let t = ex
        .spawn(process("victim"), move || {
            set_current_state(TASK_KILLABLE);
            schedule();
            let me = current();
            s.push((me.state(), me.fatal_signal_pending()));
        })
        .unwrap();
    let left = Arc::new(AtomicU64::new(u64::MAX));
    let l = left.clone();
    let t2 = ex
        .spawn(process("timed-victim"), move || {
            l.store(schedule_timeout_killable(20_000), Ordering::SeqCst);
        })
        .unwrap();
    wait_until(WATCHDOG, "victims in TASK_KILLABLE", || {
        t.state() == TASK_KILLABLE && t2.state() == TASK_KILLABLE
    });
    send_sig(Signal::Kill, &t);
    kill_thread_group(Signal::Kill, t2.group());
    // The kill already moved them to TASK_RUNNING: an explicit wake finds nothing to do.
    assert!(!wake_up_process(&t));
    assert!(!wake_up_process(&t2));
    finish(&ex, "killed sleepers exit");
    assert_eq!(seen.snapshot(), vec![(TASK_RUNNING, true)]);
    let left = left.load(Ordering::SeqCst);
    assert!(
        left > 0,
        "killed long before the 20 s timeout (left {left})"
    );
}

#[test]
fn sigkill_does_not_wake_an_uninterruptible_sleeper() {
    let ex = exec(1000);
    let seen = Log::new();
    let s = seen.clone();
    let t = ex
        .spawn(process("d-sleeper"), move || {
            set_current_state(TASK_UNINTERRUPTIBLE);
            schedule();
            s.push(fatal_signal_pending());
        })
        .unwrap();
    wait_until(WATCHDOG, "sleeper in TASK_UNINTERRUPTIBLE", || {
        t.state() == TASK_UNINTERRUPTIBLE
    });
    send_sig(Signal::Kill, &t);
    assert!(t.fatal_signal_pending());
    assert_eq!(t.state(), TASK_UNINTERRUPTIBLE, "SIGKILL left it asleep");
    // Only wakers change a sleeper's state: true here proves the kill did not wake it.
    assert!(wake_up_process(&t));
    finish(&ex, "sleeper exits");
    assert_eq!(seen.snapshot(), vec![true]);
}

#[test]
fn other_signal_wakes_interruptible_not_killable() {
    let ex = exec(1000);
    let body = |st: u32| {
        move || {
            set_current_state(st);
            schedule();
        }
    };
    let s = ex.spawn(process("S"), body(TASK_INTERRUPTIBLE)).unwrap();
    let d = ex.spawn(process("D"), body(TASK_KILLABLE)).unwrap();
    wait_until(WATCHDOG, "both asleep", || {
        s.state() == TASK_INTERRUPTIBLE && d.state() == TASK_KILLABLE
    });
    send_sig(Signal::Other, &s);
    send_sig(Signal::Other, &d);
    assert!(!wake_up_process(&s), "S sleeper was woken by the signal");
    assert_eq!(d.state(), TASK_KILLABLE);
    assert!(wake_up_process(&d), "killable sleeper ignored SIGUSR1");
    finish(&ex, "both exit");
}

#[test]
fn spawn_from_inside_a_task() {
    let ex = exec(1000);
    let seen = Log::new();
    let child_done = Arc::new(AtomicBool::new(false));
    let (s, cd) = (seen.clone(), child_done.clone());
    let parent = ex
        .spawn(process("parent"), move || {
            let me = current();
            let (s1, s2) = (s.clone(), s.clone());
            let child = sched::spawn(process("child"), move || {
                // Outlives the parent: join() must wait for it too.
                schedule_timeout_uninterruptible(20);
                let c = current();
                s1.push(("child", c.tid(), c.tgid(), c.comm().to_string()));
                cd.store(true, Ordering::SeqCst);
            })
            .unwrap();
            let thr = sched::spawn(thread(me.tgid()), move || {
                let c = current();
                s2.push(("thread", c.tid(), c.tgid(), c.comm().to_string()));
            })
            .unwrap();
            s.push(("parent", child.tid(), thr.tid(), String::new()));
        })
        .unwrap();
    assert_eq!(parent.tid(), 1);
    ex.join();
    assert!(
        child_done.load(Ordering::SeqCst),
        "join() returned before a task-spawned task exited"
    );
    let mut s = seen.snapshot();
    s.sort();
    assert_eq!(
        s,
        vec![
            ("child", 2, 2, "child".to_string()),
            ("parent", 2, 3, String::new()),
            ("thread", 3, 1, "parent".to_string()),
        ]
    );
    let tl = ex.tasks();
    assert_eq!(tl.nr_tasks(), 0);
    assert!(tl.processes().is_empty());
    assert!(tl.find_task(2).is_none());
    let late = ex.spawn(process("late"), || {}).unwrap();
    assert_eq!(late.tid(), 4, "pids are never reused");
    ex.join();
}

#[test]
fn task_list_tracks_live_tasks() {
    let ex = exec(1000);
    let release = Arc::new(AtomicBool::new(false));
    let mut ts = Vec::new();
    for i in 0..3 {
        let r = release.clone();
        ts.push(
            ex.spawn(process(&format!("p{i}")), move || loop {
                set_current_state(TASK_UNINTERRUPTIBLE);
                if r.load(Ordering::SeqCst) {
                    set_current_state(TASK_RUNNING);
                    break;
                }
                schedule();
            })
            .unwrap(),
        );
    }
    let tl = ex.tasks().clone();
    let tgids: Vec<u32> = tl.processes().iter().map(|g| g.tgid()).collect();
    assert_eq!(tgids, vec![1, 2, 3]);
    assert_eq!(tl.find_process(2).unwrap().comm(), "p1");
    assert!(Arc::ptr_eq(&tl.find_task(3).unwrap(), &ts[2]));
    release.store(true, Ordering::SeqCst);
    for t in &ts {
        wake_up_process(t);
    }
    finish(&ex, "tasks exit");
    assert!(ts.iter().all(|t| t.has_exited()));
    assert!(tl.find_task(1).is_none());
}

#[test]
fn current_and_clock_inside_a_task() {
    let ex = exec(250);
    let ok = Arc::new(AtomicBool::new(false));
    let o = ok.clone();
    let t = ex
        .spawn(process("me"), move || {
            assert!(sched::in_task());
            let me = current();
            let p = 1_000_000_000 / hz() as u64;
            let (j, ns) = (jiffies(), ktime_get_ns());
            // Read in that order, jiffies can only lag ktime's jiffy.
            assert!(j <= ns / p);
            // schedule() while TASK_RUNNING returns (a yield); timeout 0 too.
            schedule();
            set_current_state(TASK_INTERRUPTIBLE);
            assert_eq!(schedule_timeout(0), 0);
            assert_eq!(me.state(), TASK_RUNNING);
            o.store(hz() == 250 && me.comm() == "me", Ordering::SeqCst);
        })
        .unwrap();
    assert!(!sched::in_task());
    finish(&ex, "task exits");
    assert!(ok.load(Ordering::SeqCst));
    assert!(t.has_exited());
}

#[test]
fn panic_in_a_task_propagates_out_of_join() {
    let ex = exec(1000);
    let fine = Arc::new(AtomicBool::new(false));
    let f = fine.clone();
    ex.spawn(process("fine"), move || f.store(true, Ordering::SeqCst))
        .unwrap();
    let bad = ex
        .spawn(process("bad"), || {
            schedule_timeout_uninterruptible(5);
            panic!("emulated task exploded 4242");
        })
        .unwrap();
    let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ex.join()))
        .expect_err("join() must re-raise the task's panic");
    assert!(
        panic_message(&*err).contains("4242"),
        "got {:?}",
        panic_message(&*err)
    );
    // The panicking task was still torn down as an exited task.
    assert!(bad.has_exited());
    assert!(ex.tasks().find_task(bad.tid()).is_none());
    wait_until(WATCHDOG, "the other task ran", || {
        fine.load(Ordering::SeqCst)
    });
}

/// SIGKILL to a thread group racing with `clone(CLONE_THREAD)` into that group: once
/// `send_sig(SIGKILL)` has returned, every thread of the group must have SIGKILL pending, or
/// its clone must have failed. (The kernel serialises `copy_process()`'s fatal-signal check and
/// its linking into the thread list with `complete_signal()` under `sighand->siglock`.)
///
/// The forker clones in a tight loop and the test thread kills the group the moment the second
/// clone is published, which lands the kill inside a clone most of the time.
#[test]
fn sigkill_racing_with_clone_thread_reaches_every_thread() {
    const TRIALS: usize = 200;
    for trial in 0..TRIALS {
        let ex = exec(1000);
        let created: Log<Arc<Task>> = Log::new();
        let count = Arc::new(AtomicUsize::new(0));
        let (c2, n2) = (created.clone(), count.clone());
        let forker = ex
            .spawn(process("forker"), move || {
                let tgid = current().tgid();
                let body = || loop {
                    set_current_state(TASK_KILLABLE);
                    if fatal_signal_pending() {
                        set_current_state(TASK_RUNNING);
                        break;
                    }
                    schedule();
                };
                while let Ok(t) = sched::spawn(thread(tgid), body) {
                    c2.push(t);
                    n2.fetch_add(1, Ordering::SeqCst);
                }
            })
            .unwrap();
        while count.load(Ordering::SeqCst) < 2 {
            std::hint::spin_loop();
        }
        send_sig(Signal::Kill, &forker);
        wait_until(WATCHDOG, "forker sees its clone fail and exits", || {
            forker.has_exited()
        });
        let missed: Vec<Tid> = created
            .snapshot()
            .iter()
            .filter(|t| !t.fatal_signal_pending())
            .map(|t| t.tid())
            .collect();
        if !missed.is_empty() {
            // Rescue the survivors (the group list now holds them) so the executor can be
            // joined, then fail.
            send_sig(Signal::Kill, &created.snapshot()[0]);
            finish(&ex, "rescued threads exit");
            panic!(
                "trial {trial}: threads {missed:?} were cloned into the group while it was \
                 being killed and never got SIGKILL (group_exit={}): kill_thread_group() \
                 snapshots the thread list without excluding a concurrent TaskList::create()",
                forker.group().group_exit()
            );
        }
        finish(&ex, "all threads exit");
    }
}

/// `join()` promises to wait for every task; when it re-raises a task's panic it drops the
/// `JoinHandle`s it had not joined yet (they are detached), so neither a second `join()` nor
/// the executor's `Drop` waits for the remaining tasks any more.
#[test]
fn join_after_a_task_panic_still_waits_for_the_other_tasks() {
    let ex = exec(1000);
    ex.spawn(process("bad"), || panic!("first task panics at once"))
        .unwrap();
    let slow = ex
        .spawn(process("slow"), || {
            set_current_state(TASK_UNINTERRUPTIBLE);
            schedule(); // until the test wakes it
        })
        .unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ex.join()));
    assert!(r.is_err(), "the panic is re-raised");
    assert!(!slow.has_exited());
    let joined = AtomicBool::new(false);
    let exited_when_join_returned = std::thread::scope(|s| {
        let joiner = s.spawn(|| {
            ex.join();
            let e = slow.has_exited();
            joined.store(true, Ordering::SeqCst);
            e
        });
        // Wake the slow task once the second join() returned, or after 1 s if it (correctly)
        // waits. Either way the verdict is what join() saw, not a timing window.
        let t0 = Instant::now();
        while !joined.load(Ordering::SeqCst) && t0.elapsed() < Duration::from_secs(1) {
            std::thread::sleep(Duration::from_millis(1));
        }
        wait_until(WATCHDOG, "slow task asleep", || {
            slow.state() == TASK_UNINTERRUPTIBLE
        });
        wake_up_process(&slow);
        joiner.join().unwrap()
    });
    wait_until(WATCHDOG, "slow task exits", || slow.has_exited());
    assert!(
        exited_when_join_returned,
        "join() returned while task {} was still running: its JoinHandle was dropped when \
         the first join() re-raised the other task's panic",
        slow.tid()
    );
}

/// Regression (issue 13, `oomlab run` under `pids.max=200`): when the host refuses a thread,
/// `copy_process()` fails after `copy_mm()` took an address-space reference. That reference
/// must be dropped (`mmput()` in the kernel's `bad_fork_cleanup_mm` path); before the fix
/// the address space outlived its users, `exit_mmap()` never ran and freeing its page tables
/// found live PTEs (an emulator panic). Here the executor's thread cap stands in for the host.
#[test]
fn refused_clone_drops_its_mm_reference() {
    use mm::memory::{attach_mm, mmput, touch};
    use mm::mm_types::{MmKnobs, MmStruct};
    use mm::mmap::{mmap, MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE};
    use mm::page_alloc::{FramePool, PoolConfig};
    use mm::task::{CloneError, CloneKind};

    let pool = FramePool::new(PoolConfig {
        bytes: 4 << 20,
        ..Default::default()
    })
    .unwrap();
    let ex = ThreadsExecutor::new(ThreadsConfig {
        max_threads: Some(2),
        ..Default::default()
    });
    let results: Arc<parking_lot::Mutex<Vec<Result<(), CloneError>>>> = Default::default();
    let (p2, r2) = (pool.clone(), results.clone());
    ex.spawn(CloneKind::Process { comm: "p".into() }, move || {
        let mm = MmStruct::new(&p2, MmKnobs::default(), "pid 1");
        attach_mm(&mm);
        mmput(&mm);
        let a = mmap(
            &mm,
            0,
            16 * 4096,
            PROT_READ | PROT_WRITE,
            MAP_PRIVATE | MAP_ANONYMOUS,
        )
        .unwrap();
        for i in 0..16 {
            touch(&mm, a + i * 4096, true, 1).unwrap();
        }
        let tgid = current().tgid();
        let hold = Arc::new(AtomicBool::new(true));
        for _ in 0..3 {
            let h = hold.clone();
            let r = sched::spawn(CloneKind::Thread { tgid }, move || {
                while h.load(Ordering::SeqCst) {
                    schedule_timeout_interruptible(1);
                }
            });
            r2.lock().push(r.map(|_| ()));
        }
        hold.store(false, Ordering::SeqCst);
    })
    .unwrap();
    finish(&ex, "the process and its threads exit");
    assert_eq!(
        *results.lock(),
        vec![Ok(()), Err(CloneError::Again), Err(CloneError::Again)],
        "the cap (2 threads: the process and one clone) refuses the rest with EAGAIN"
    );
    assert_eq!(ex.spawns_refused(), 2);
    drop(ex);
    pool.check_conservation().unwrap();
    let a = pool.accounting();
    assert_eq!(
        a.allocated + a.mapped,
        0,
        "the address space was torn down: {a}"
    );
}
