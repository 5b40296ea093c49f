//! The kernel's sleeping mutex (`mm::locking::kmutex`, v4.10 `kernel/locking/mutex.c`) on the
//! sim executor: mutual exclusion, FIFO wake-ups and the wait channel, lock stealing without
//! handoff, and the killable cancel path. (The non-owner unlock test stays in kmutex.rs: it
//! needs the private owner word.)

use mm::locking::kmutex::{KMutex, MUTEX_FLAG_WAITERS, NO_TASK_OWNER, OWNER_SHIFT};
use mm::locking::rwsem::Killed;
use mm::sched::sim::{Sim, SimConfig, SimOutcome, StepResult};
use mm::sched::{self};
use mm::task::{send_sig, CloneKind, Signal};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;

fn proc(c: &str) -> CloneKind {
    CloneKind::Process { comm: c.into() }
}

fn sim(seed: u64) -> Sim {
    Sim::new(SimConfig {
        seed,
        ..Default::default()
    })
}

#[test]
fn trylock_and_unlock_outside_tasks() {
    let m = KMutex::new("m");
    assert!(!m.is_locked());
    assert!(m.mutex_trylock());
    assert_eq!(m.owner(), Some(NO_TASK_OWNER));
    assert!(!m.mutex_trylock());
    m.mutex_unlock();
    assert!(!m.is_locked());
    {
        let _g = m.try_lock().unwrap();
        assert!(m.try_lock().is_none());
    }
    assert_eq!(m.owner_word(), 0);
}

#[test]
fn mutual_exclusion_across_seeds() {
    for seed in 0..40 {
        let mut s = sim(seed);
        let m = Arc::new(KMutex::new("m"));
        let inside = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicUsize::new(0));
        for i in 0..8 {
            let (m, inside, done) = (m.clone(), inside.clone(), done.clone());
            s.spawn(proc(&format!("t{i}")), move || {
                for _ in 0..10 {
                    let g = if i % 2 == 0 {
                        m.lock()
                    } else {
                        m.lock_killable().unwrap()
                    };
                    assert_eq!(g.mutex().owner(), Some(sched::current().tid()));
                    assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0);
                    sched::cond_resched();
                    sched::schedule_timeout_uninterruptible(1);
                    assert_eq!(inside.fetch_sub(1, Ordering::SeqCst), 1);
                    drop(g);
                    sched::cond_resched();
                }
                done.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap();
        }
        assert_eq!(s.run(), SimOutcome::AllExited, "seed {seed}");
        assert_eq!(done.load(Ordering::SeqCst), 8);
        assert_eq!(m.owner_word(), 0, "seed {seed}: flags left behind");
        assert!(m.waiters().is_empty());
    }
}

/// Holder H, then waiters W1, W2 queue in order; unlock wakes W1 first (FIFO), W1's unlock
/// wakes W2. Waiters publish their wchan while asleep.
#[test]
fn fifo_wakeup_and_wchan() {
    let mut s = sim(1);
    let m = Arc::new(KMutex::new("oom_lock"));
    let order = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let release = Arc::new(AtomicU32::new(0));
    let h = {
        let (m, release) = (m.clone(), release.clone());
        s.spawn(proc("h"), move || {
            let _g = m.lock();
            while release.load(Ordering::SeqCst) == 0 {
                sched::schedule_timeout_uninterruptible(1);
            }
        })
        .unwrap()
    };
    assert_eq!(s.step(h.tid()), Ok(StepResult::Blocked));
    let mut ws = Vec::new();
    for name in ["w1", "w2"] {
        let (m, order) = (m.clone(), order.clone());
        let t = s
            .spawn(proc(name), move || {
                let _g = m.lock();
                order.lock().push(sched::current().comm().to_string());
            })
            .unwrap();
        assert_eq!(s.step(t.tid()), Ok(StepResult::Blocked));
        ws.push(t);
    }
    assert_eq!(m.waiters(), vec![ws[0].tid(), ws[1].tid()]);
    assert_eq!(m.owner_word() & MUTEX_FLAG_WAITERS, MUTEX_FLAG_WAITERS);
    let w = ws[0].wchan().expect("wchan while asleep");
    assert_eq!(w.func, "__mutex_lock_slowpath");
    assert_eq!(&*w.object, "oom_lock");
    assert_eq!(w.object_id, Arc::as_ptr(&m) as usize);
    release.store(1, Ordering::SeqCst);
    assert_eq!(s.run(), SimOutcome::AllExited);
    assert_eq!(*order.lock(), vec!["w1".to_string(), "w2".to_string()]);
    assert_eq!(m.owner_word(), 0);
    assert!(ws[0].wchan().is_none());
}

/// The wait channel follows the object waited on: a task that sleeps on one mutex, then
/// on another, then on the first again reports each in turn (name and identity), and
/// nothing while it runs. (The task keeps the last object's name cached; switching
/// objects must not leave the old name behind.)
#[test]
fn wchan_follows_the_object_across_sleeps() {
    let mut s = sim(3);
    let a = Arc::new(KMutex::new("lock_a"));
    let b = Arc::new(KMutex::new("lock_b"));
    let phase = Arc::new(AtomicU32::new(0));
    // The holder takes `a` and `b` and releases one per phase.
    let h = {
        let (a, b, phase) = (a.clone(), b.clone(), phase.clone());
        s.spawn(proc("h"), move || {
            let ga = a.lock();
            let gb = b.lock();
            while phase.load(Ordering::SeqCst) < 1 {
                sched::cond_resched();
            }
            drop(ga);
            while phase.load(Ordering::SeqCst) < 2 {
                sched::cond_resched();
            }
            drop(gb);
        })
        .unwrap()
    };
    assert_eq!(s.step(h.tid()), Ok(StepResult::Yielded));
    let w = {
        let (a, b) = (a.clone(), b.clone());
        s.spawn(proc("w"), move || {
            drop(a.lock());
            drop(b.lock());
        })
        .unwrap()
    };
    assert_eq!(s.step(w.tid()), Ok(StepResult::Blocked));
    let c = w.wchan().expect("asleep on a");
    assert_eq!(
        (&*c.object, c.object_id),
        ("lock_a", Arc::as_ptr(&a) as usize)
    );
    phase.store(1, Ordering::SeqCst);
    // h releases a (waking w); w takes a, releases it and sleeps on b.
    assert_eq!(s.step(h.tid()), Ok(StepResult::Yielded));
    assert_eq!(s.step(w.tid()), Ok(StepResult::Blocked));
    let c = w.wchan().expect("asleep on b");
    assert_eq!(
        (&*c.object, c.object_id),
        ("lock_b", Arc::as_ptr(&b) as usize)
    );
    assert_eq!(c.func, "__mutex_lock_slowpath");
    phase.store(2, Ordering::SeqCst);
    assert_eq!(s.run(), SimOutcome::AllExited);
    assert!(w.wchan().is_none());
}

/// mutex_trylock succeeds on an unowned lock even while a woken waiter has not run yet
/// (lock stealing; no handoff).
#[test]
fn trylock_steals_from_woken_waiter() {
    let mut s = sim(2);
    let m = Arc::new(KMutex::new("m"));
    let stage = Arc::new(AtomicU32::new(0));
    let h = {
        let (m, stage) = (m.clone(), stage.clone());
        s.spawn(proc("h"), move || {
            m.mutex_lock();
            while stage.load(Ordering::SeqCst) == 0 {
                sched::cond_resched();
            }
            m.mutex_unlock();
        })
        .unwrap()
    };
    assert_eq!(s.step(h.tid()), Ok(StepResult::Yielded));
    let w = {
        let m = m.clone();
        s.spawn(proc("w"), move || {
            m.mutex_lock();
            m.mutex_unlock();
        })
        .unwrap()
    };
    assert_eq!(s.step(w.tid()), Ok(StepResult::Blocked));
    stage.store(1, Ordering::SeqCst);
    assert_eq!(s.step(h.tid()), Ok(StepResult::Exited));
    // w is woken (runnable) but has not taken the lock.
    assert!(s.is_runnable(w.tid()));
    assert!(!m.is_locked());
    let thief = {
        let m = m.clone();
        s.spawn(proc("thief"), move || {
            assert!(m.mutex_trylock());
            sched::cond_resched();
            m.mutex_unlock();
        })
        .unwrap()
    };
    assert_eq!(s.step(thief.tid()), Ok(StepResult::Yielded));
    assert_eq!(m.owner(), Some(thief.tid()));
    // w runs, fails its trylock and sleeps again.
    assert_eq!(s.step(w.tid()), Ok(StepResult::Blocked));
    assert_eq!(s.step(thief.tid()), Ok(StepResult::Exited));
    assert_eq!(s.step(w.tid()), Ok(StepResult::Exited));
    assert_eq!(m.owner_word(), 0);
}

/// The cancel path: a killed killable waiter between two others leaves the queue with
/// -EINTR; the remaining waiters still get the lock in order; the flag is cleared at the end.
#[test]
fn killed_waiter_leaves_the_queue() {
    let mut s = sim(3);
    let m = Arc::new(KMutex::new("m"));
    let release = Arc::new(AtomicU32::new(0));
    let results = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let h = {
        let (m, release) = (m.clone(), release.clone());
        s.spawn(proc("h"), move || {
            let _g = m.lock();
            while release.load(Ordering::SeqCst) == 0 {
                sched::schedule_timeout_uninterruptible(1);
            }
        })
        .unwrap()
    };
    assert_eq!(s.step(h.tid()), Ok(StepResult::Blocked));
    let mut ws = Vec::new();
    for (name, killable) in [("a", false), ("b", true), ("c", true)] {
        let (m, results) = (m.clone(), results.clone());
        let t = s
            .spawn(proc(name), move || {
                let r = if killable {
                    m.mutex_lock_killable()
                } else {
                    m.mutex_lock();
                    Ok(())
                };
                results
                    .lock()
                    .push((sched::current().comm().to_string(), r.is_ok()));
                if r.is_ok() {
                    m.mutex_unlock();
                }
            })
            .unwrap();
        assert_eq!(s.step(t.tid()), Ok(StepResult::Blocked));
        ws.push(t);
    }
    assert_eq!(
        ws[1].wchan().unwrap().func,
        "__mutex_lock_killable_slowpath"
    );
    // SIGKILL to b: it wakes, leaves the queue and returns -EINTR.
    send_sig(Signal::Kill, &ws[1]);
    assert!(s.is_runnable(ws[1].tid()));
    assert_eq!(s.step(ws[1].tid()), Ok(StepResult::Exited));
    assert_eq!(m.waiters(), vec![ws[0].tid(), ws[2].tid()]);
    // SIGKILL to the uninterruptible waiter a: ignored.
    send_sig(Signal::Kill, &ws[0]);
    assert!(s.is_blocked(ws[0].tid()));
    release.store(1, Ordering::SeqCst);
    assert_eq!(s.run(), SimOutcome::AllExited);
    assert_eq!(
        *results.lock(),
        vec![
            ("b".to_string(), false),
            ("a".to_string(), true),
            ("c".to_string(), true)
        ]
    );
    assert_eq!(m.owner_word(), 0);
}

/// The last waiter killed: the queue empties and MUTEX_FLAG_WAITERS is cleared, so the
/// owner's unlock takes the fast path.
#[test]
fn killed_last_waiter_clears_the_flag() {
    let mut s = sim(4);
    let m = Arc::new(KMutex::new("m"));
    let h = {
        let m = m.clone();
        s.spawn(proc("h"), move || {
            m.mutex_lock();
            sched::cond_resched();
            m.mutex_unlock();
        })
        .unwrap()
    };
    assert_eq!(s.step(h.tid()), Ok(StepResult::Yielded));
    let w = {
        let m = m.clone();
        s.spawn(proc("w"), move || {
            assert_eq!(m.mutex_lock_killable(), Err(Killed));
            assert!(sched::fatal_signal_pending());
        })
        .unwrap()
    };
    assert_eq!(s.step(w.tid()), Ok(StepResult::Blocked));
    assert_ne!(m.owner_word() & MUTEX_FLAG_WAITERS, 0);
    send_sig(Signal::Kill, &w);
    assert_eq!(s.step(w.tid()), Ok(StepResult::Exited));
    assert_eq!(m.owner_word(), (h.tid() as i64) << OWNER_SHIFT);
    assert_eq!(s.step(h.tid()), Ok(StepResult::Exited));
    assert_eq!(m.owner_word(), 0);
}

/// A task whose SIGKILL is already pending never sleeps in mutex_lock_killable on a held
/// lock; it also does not fail when the lock is free (the fast path ignores signals).
#[test]
fn pending_kill_before_waiting() {
    let mut s = sim(5);
    let m = Arc::new(KMutex::new("m"));
    let m2 = m.clone();
    let t = s
        .spawn(proc("t"), move || {
            let me = sched::current();
            send_sig(Signal::Kill, &me);
            assert!(m2.mutex_lock_killable().is_ok());
            let m3 = m2.clone();
            sched::spawn(proc("u"), move || {
                let me = sched::current();
                send_sig(Signal::Kill, &me);
                assert_eq!(m3.mutex_lock_killable(), Err(Killed));
                assert!(m3.waiters().is_empty());
            })
            .unwrap();
            sched::schedule_timeout_uninterruptible(5);
            m2.mutex_unlock();
        })
        .unwrap();
    assert_eq!(s.run(), SimOutcome::AllExited);
    assert!(t.has_exited());
    assert_eq!(m.owner_word(), 0);
}
