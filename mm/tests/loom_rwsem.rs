#![cfg(oomlab_loom)]
//! loom models of the rw_semaphore (`mm::locking::rwsem::RawRwSem`), Model A, Model B and writer
//! optimistic spinning: every interleaving of the count word, `wait_lock`, the OSQ, the task
//! state words and the signal bits, up to a preemption bound.
//!
//! Command (as in README.md):
//!
//! ```text
//! RUSTFLAGS="--cfg oomlab_loom" CARGO_TARGET_DIR=target/loom LOOM_MAX_PREEMPTIONS=2 \
//!     cargo test -p mm --release --test loom_rwsem
//! ```
//!
//! Without `LOOM_MAX_PREEMPTIONS` the models use a preemption bound of 2 (`model()` below).
//!
//! What each model checks:
//! - mutual exclusion with a lock-independent witness ([`Witness`]): loom counters of readers
//!   and writers inside, checked on every acquisition as locktorture does, plus a
//!   `loom::cell::UnsafeCell` the writers mutate, so loom also reports a missing
//!   release/acquire edge between a release and the next acquisition;
//! - lost wake-ups: a waiter nobody wakes leaves every thread blocked, which loom reports as
//!   "deadlock";
//! - the bail-out obligations (docs/rwsem-rules.md §5.2): at the end `count() == 0` and the wait
//!   list is empty ([`assert_quiescent`]), whether the killed waiter acquired or gave up;
//! - both outcomes of each kill race are reached by some execution ([`Outcomes`]).
//!
//! Threads that may sleep in the lock are emulated tasks (`LoomKernel::enter`); a killer needs
//! no task, nor does a thread that only takes a free lock on the fast path and releases it.
//! A victim publishes its `Arc<Task>` through a loom mutex before it locks; the killer spins on
//! it with `loom::thread::yield_now()`.

use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use loom::sync::Mutex;
use loom::thread;
use mm::locking::lock_events::LockEvent;
use mm::locking::rwsem::{Interrupted, Killed, RawRwSem, RwSemConfig, RwSemModel, RwSemSpin};
use mm::sched::loom_exec::LoomKernel;
use mm::task::{send_sig, Signal, Task};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// Preemption bound used when `LOOM_MAX_PREEMPTIONS` is not set.
const DEFAULT_PREEMPTIONS: usize = 2;

/// `loom::model` with a bounded number of preemptions (`LOOM_MAX_PREEMPTIONS` wins if set).
/// Prints the number of executions explored (visible with `--nocapture`).
fn model<F: Fn() + Sync + Send + 'static>(f: F) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(DEFAULT_PREEMPTIONS);
    }
    let bound = b.preemption_bound;
    let executions = Arc::new(AtomicU64::new(0));
    let n = executions.clone();
    b.check(move || {
        n.fetch_add(1, Relaxed);
        f()
    });
    eprintln!(
        "{}: {} executions, preemption bound {bound:?}",
        std::thread::current().name().unwrap_or("?"),
        executions.load(Relaxed)
    );
}

/// Who is inside the critical section, independent of the lock under test
/// (locktorture's `lock_is_write_held` / `lock_is_read_held`).
struct Witness {
    readers: AtomicUsize,
    writers: AtomicUsize,
    /// Written by writers only; loom flags any access not ordered by the lock.
    data: UnsafeCell<u64>,
}

// SAFETY: `data` is accessed only inside the lock under test; loom's `UnsafeCell` tracking
// reports any access the lock does not order (`loom::thread::spawn` itself does not require
// `Send`, so this is what makes sharing `Shared` explicit).
unsafe impl Sync for Witness {}

impl Witness {
    fn new() -> Self {
        Witness {
            readers: AtomicUsize::new(0),
            writers: AtomicUsize::new(0),
            data: UnsafeCell::new(0),
        }
    }
    fn read_enter(&self) {
        self.readers.fetch_add(1, SeqCst);
        assert_eq!(
            self.writers.load(SeqCst),
            0,
            "a reader got in while a writer held the lock"
        );
        // SAFETY: loom checks that no writer's access races with this read.
        self.data.with(|p| unsafe { std::ptr::read(p) });
    }
    fn read_exit(&self) {
        self.readers.fetch_sub(1, SeqCst);
    }
    fn write_enter(&self) {
        assert_eq!(
            self.writers.fetch_add(1, SeqCst),
            0,
            "two writers held the lock"
        );
        assert_eq!(
            self.readers.load(SeqCst),
            0,
            "a writer got in while readers held the lock"
        );
        // SAFETY: loom checks that this write races with no other access.
        self.data.with_mut(|p| unsafe { *p += 1 });
    }
    fn write_exit(&self) {
        self.writers.fetch_sub(1, SeqCst);
    }
    /// Number of completed write sections (call when every thread has been joined).
    fn writes(&self) -> u64 {
        // SAFETY: all threads joined.
        self.data.with(|p| unsafe { *p })
    }
}

/// The lock, its witness and the victim slot, behind a `std::sync::Arc`: a `loom::sync::Arc`
/// would add leak checking but cannot be dropped while loom unwinds from a detected deadlock
/// (it aborts the test process), which the `should_panic(expected = "deadlock")` model needs.
struct Shared {
    sem: RawRwSem,
    w: Witness,
    /// The victim's task, published before it locks, for the killer.
    victim: Mutex<Option<Arc<Task>>>,
}

fn shared(model: RwSemModel) -> Arc<Shared> {
    shared_with(model.into())
}

fn shared_with(config: RwSemConfig) -> Arc<Shared> {
    Arc::new(Shared {
        sem: RawRwSem::with_config("loom", config),
        w: Witness::new(),
        victim: Mutex::new(None),
    })
}

impl Shared {
    fn read(&self) {
        self.sem.down_read();
        self.w.read_enter();
        self.w.read_exit();
        self.sem.up_read();
    }
    fn write(&self) {
        self.sem.down_write();
        self.w.write_enter();
        self.w.write_exit();
        self.sem.up_write();
    }
    fn publish_victim(&self, t: &Arc<Task>) {
        *self.victim.lock().unwrap() = Some(t.clone());
    }
    /// Spin (loom-style, with `yield_now`) until the victim published its task, then SIGKILL it.
    fn kill_victim(&self) {
        let t = loop {
            if let Some(t) = self.victim.lock().unwrap().clone() {
                break t;
            }
            thread::yield_now();
        };
        send_sig(Signal::Kill, &t);
    }
}

/// Nothing held, nobody queued or spinning, no stale waiting bias or flag
/// (docs/rwsem-rules.md §2.1, §5.2).
fn assert_quiescent(sem: &RawRwSem) {
    assert_eq!(sem.count(), 0, "count word not back to 0: {sem:?}");
    assert!(!sem.is_contended(), "wait list not empty: {sem:?}");
    assert!(sem.waiters().is_empty());
    assert_eq!(sem.owner(), None);
    let snap = sem.snapshot();
    assert!(snap.is_idle(), "lock not idle: {snap:?}");
}

/// How often each outcome of a race was reached, over all executions of one model.
struct Outcomes {
    acquired: AtomicU64,
    killed: AtomicU64,
}

impl Outcomes {
    const fn new() -> Self {
        Outcomes {
            acquired: AtomicU64::new(0),
            killed: AtomicU64::new(0),
        }
    }
    fn record(&self, r: Result<(), Killed>) {
        match r {
            Ok(()) => self.acquired.fetch_add(1, Relaxed),
            Err(Killed) => self.killed.fetch_add(1, Relaxed),
        };
    }
    fn assert_both_reached(&self, what: &str) {
        let (a, k) = (self.acquired.load(Relaxed), self.killed.load(Relaxed));
        assert!(
            a > 0 && k > 0,
            "{what}: acquired in {a} executions, killed in {k}; both must be explored"
        );
    }
}

// ---- the executor itself ----------------------------------------------------------------

/// `sched::current()` must be the calling loom thread's task. loom runs all model threads as
/// coroutines on one OS thread, so a `std::thread_local!` is shared between them; the CURRENT
/// pointer of `mm::sched` must be a `loom::thread_local!` under `--cfg oomlab_loom`.
#[test]
fn loom_current_is_per_thread() {
    model(|| {
        let k = LoomKernel::new();
        let k2 = k.clone();
        let h = thread::spawn(move || {
            let t = k2.enter("b");
            thread::yield_now();
            assert_eq!(mm::sched::current().tid(), t.task().tid());
        });
        let t = k.enter("a");
        thread::yield_now();
        assert_eq!(mm::sched::current().tid(), t.task().tid());
        drop(t);
        h.join().unwrap();
    });
}

// ---- (a) fast paths -----------------------------------------------------------------------

/// AR1: two readers on a free lock both take the fast path, concurrently.
#[test]
fn fast_path_two_readers() {
    model(|| {
        let k = LoomKernel::new();
        let s = shared(RwSemModel::A);
        let (k2, s2) = (k.clone(), s.clone());
        let h = thread::spawn(move || {
            let t = k2.enter("r2");
            s2.read();
            assert_eq!(t.task().lock_events().get(LockEvent::RwsemRlockFast), 1);
        });
        let t = k.enter("r1");
        s.read();
        assert_eq!(t.task().lock_events().get(LockEvent::RwsemRlockFast), 1);
        drop(t);
        h.join().unwrap();
        assert_quiescent(&s.sem);
    });
}

/// A reader and a writer race for a free lock (fast paths, and the slow paths when they meet).
#[test]
fn reader_vs_writer() {
    model(|| {
        let k = LoomKernel::new();
        let s = shared(RwSemModel::A);
        let (k2, s2) = (k.clone(), s.clone());
        let h = thread::spawn(move || {
            let _t = k2.enter("w");
            s2.write();
        });
        let t = k.enter("r");
        s.read();
        drop(t);
        h.join().unwrap();
        assert_eq!(s.w.writes(), 1);
        assert_quiescent(&s.sem);
    });
}

/// Two writers race for a free lock: one wins the fast path, the other is excluded.
#[test]
fn two_writers() {
    model(|| {
        let k = LoomKernel::new();
        let s = shared(RwSemModel::A);
        let (k2, s2) = (k.clone(), s.clone());
        let h = thread::spawn(move || {
            let _t = k2.enter("w2");
            s2.write();
        });
        let t = k.enter("w1");
        s.write();
        drop(t);
        h.join().unwrap();
        assert_eq!(s.w.writes(), 2);
        assert_quiescent(&s.sem);
    });
}

/// AR7: the trylocks exclude each other, never queue, and at least one of the two succeeds.
#[test]
fn trylocks() {
    model(|| {
        let k = LoomKernel::new();
        let s = shared(RwSemModel::A);
        let (k2, s2) = (k.clone(), s.clone());
        let h = thread::spawn(move || {
            let _t = k2.enter("tw");
            let ok = s2.sem.down_write_trylock();
            if ok {
                s2.w.write_enter();
                s2.w.write_exit();
                s2.sem.up_write();
            }
            ok
        });
        let t = k.enter("tr");
        let r_ok = s.sem.down_read_trylock();
        if r_ok {
            s.w.read_enter();
            s.w.read_exit();
            s.sem.up_read();
        }
        drop(t);
        let w_ok = h.join().unwrap();
        assert!(
            r_ok || w_ok,
            "both trylocks failed on a lock nobody else used"
        );
        assert_quiescent(&s.sem);
    });
}

// ---- (b) slow paths ---------------------------------------------------------------------

/// AR5 + WK1: a writer arriving while a reader holds the lock queues; the reader's `up_read`
/// (the last active locker leaving) wakes it, or it takes the lock itself if the release came
/// first. A lost wake-up shows as a loom deadlock.
#[test]
fn writer_blocks_on_reader_then_woken() {
    model(|| {
        let k = LoomKernel::new();
        let s = shared(RwSemModel::A);
        let t = k.enter("r");
        s.sem.down_read();
        s.w.read_enter();
        let (k2, s2) = (k.clone(), s.clone());
        let h = thread::spawn(move || {
            let _t = k2.enter("w");
            s2.write();
        });
        s.w.read_exit();
        s.sem.up_read();
        drop(t);
        h.join().unwrap();
        assert_eq!(s.w.writes(), 1);
        assert_quiescent(&s.sem);
    });
}

/// AR2 + WK2/WK3: a reader arriving while a writer holds the lock queues and is *granted* by
/// `up_write` (its bias added by the waker, `rwsem_granted` set before it runs).
#[test]
fn reader_blocks_on_writer_then_granted() {
    model(|| {
        let k = LoomKernel::new();
        let s = shared(RwSemModel::A);
        let t = k.enter("w");
        s.sem.down_write();
        s.w.write_enter();
        let (k2, s2) = (k.clone(), s.clone());
        let h = thread::spawn(move || {
            let _t = k2.enter("r");
            s2.read();
        });
        s.w.write_exit();
        s.sem.up_write();
        drop(t);
        h.join().unwrap();
        assert_quiescent(&s.sem);
    });
}

/// WK3: two readers queued behind a writer are granted together by one `up_write`.
#[test]
fn two_readers_granted_by_up_write() {
    model(|| {
        let k = LoomKernel::new();
        let s = shared(RwSemModel::A);
        let t = k.enter("w");
        s.sem.down_write();
        s.w.write_enter();
        let hs: Vec<_> = ["r1", "r2"]
            .into_iter()
            .map(|c| {
                let (k2, s2) = (k.clone(), s.clone());
                thread::spawn(move || {
                    let _t = k2.enter(c);
                    s2.read();
                })
            })
            .collect();
        s.w.write_exit();
        s.sem.up_write();
        drop(t);
        for h in hs {
            h.join().unwrap();
        }
        assert_quiescent(&s.sem);
    });
}

/// Free-for-all: a reader and two writers on a free lock. Covers the second writer queueing
/// behind the first, writer wake (not grant) on release, and writer stealing in the wake
/// window (AR6).
#[test]
fn reader_and_two_writers() {
    model(|| {
        let k = LoomKernel::new();
        let s = shared(RwSemModel::A);
        let hs: Vec<_> = ["w1", "w2"]
            .into_iter()
            .map(|c| {
                let (k2, s2) = (k.clone(), s.clone());
                thread::spawn(move || {
                    let _t = k2.enter(c);
                    s2.write();
                })
            })
            .collect();
        let t = k.enter("r");
        s.read();
        drop(t);
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(s.w.writes(), 2);
        assert_quiescent(&s.sem);
    });
}

/// Free-for-all: two readers and a writer on a free lock. Covers readers queueing behind a
/// queued writer (AR3) and being granted together afterwards.
#[test]
fn two_readers_and_writer() {
    model(|| {
        let k = LoomKernel::new();
        let s = shared(RwSemModel::A);
        let hs: Vec<_> = ["r1", "r2"]
            .into_iter()
            .map(|c| {
                let (k2, s2) = (k.clone(), s.clone());
                thread::spawn(move || {
                    let _t = k2.enter(c);
                    s2.read();
                })
            })
            .collect();
        let t = k.enter("w");
        s.write();
        drop(t);
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(s.w.writes(), 1);
        assert_quiescent(&s.sem);
    });
}

/// WK2/WK3 + AR5: a writer queued behind a writer is woken (not granted) by `up_write` and
/// takes the lock itself.
#[test]
fn writer_blocks_on_writer_then_woken() {
    model(|| {
        let k = LoomKernel::new();
        let s = shared(RwSemModel::A);
        let t = k.enter("w1");
        s.sem.down_write();
        s.w.write_enter();
        let (k2, s2) = (k.clone(), s.clone());
        let h = thread::spawn(move || {
            let _t = k2.enter("w2");
            s2.write();
        });
        s.w.write_exit();
        s.sem.up_write();
        drop(t);
        h.join().unwrap();
        assert_eq!(s.w.writes(), 2);
        assert_quiescent(&s.sem);
    });
}

/// WK5: `downgrade_write` grants a reader queued behind the writer; the downgraded holder and
/// the reader then share the lock.
#[test]
fn downgrade_grants_queued_reader() {
    model(|| {
        let k = LoomKernel::new();
        let s = shared(RwSemModel::A);
        let t = k.enter("w");
        s.sem.down_write();
        s.w.write_enter();
        let (k2, s2) = (k.clone(), s.clone());
        let h = thread::spawn(move || {
            let _t = k2.enter("r");
            s2.read();
        });
        s.w.write_exit();
        s.sem.downgrade_write();
        s.w.read_enter();
        s.w.read_exit();
        s.sem.up_read();
        drop(t);
        h.join().unwrap();
        assert_quiescent(&s.sem);
    });
}

// ---- (c) a writer killed while queued -----------------------------------------------------

/// What the main thread holds while the victim queues.
#[derive(Clone, Copy)]
enum Holder {
    Reader,
    Writer,
}

/// A killable writer queued behind a holder while a third thread sends SIGKILL, the holder
/// releasing concurrently: the writer either acquires (then releases) or gets `Killed`; in
/// both cases the lock ends free with an empty queue (§5.1, §5.2 obligation 2). Behind a
/// writer this is also the wake-vs-kill race: `up_write` wakes the victim (WK3), which may
/// find the lock free and take it although SIGKILL is pending (§5.1: try first, then signal).
fn kill_queued_writer(model_kind: RwSemModel, holder: Holder, outcomes: &'static Outcomes) {
    model(move || {
        let k = LoomKernel::new();
        let s = shared(model_kind);
        let t = k.enter("holder");
        match holder {
            Holder::Reader => {
                s.sem.down_read();
                s.w.read_enter();
            }
            Holder::Writer => {
                s.sem.down_write();
                s.w.write_enter();
            }
        }
        let (k2, s2) = (k.clone(), s.clone());
        let victim = thread::spawn(move || {
            let t = k2.enter("victim");
            s2.publish_victim(t.task());
            let r = s2.sem.down_write_killable();
            if r.is_ok() {
                s2.w.write_enter();
                s2.w.write_exit();
                s2.sem.up_write();
            } else {
                assert!(t.task().fatal_signal_pending(), "EINTR without SIGKILL");
            }
            r
        });
        let s3 = s.clone();
        let killer = thread::spawn(move || s3.kill_victim());
        match holder {
            Holder::Reader => {
                s.w.read_exit();
                s.sem.up_read();
            }
            Holder::Writer => {
                s.w.write_exit();
                s.sem.up_write();
            }
        }
        drop(t);
        let r = victim.join().unwrap();
        killer.join().unwrap();
        outcomes.record(r);
        assert_quiescent(&s.sem);
    });
}

#[test]
fn kill_queued_writer_behind_reader() {
    static OUTCOMES: Outcomes = Outcomes::new();
    kill_queued_writer(RwSemModel::A, Holder::Reader, &OUTCOMES);
    OUTCOMES.assert_both_reached("killable writer vs SIGKILL vs up_read");
}

#[test]
fn kill_queued_writer_behind_writer() {
    static OUTCOMES: Outcomes = Outcomes::new();
    kill_queued_writer(RwSemModel::A, Holder::Writer, &OUTCOMES);
    OUTCOMES.assert_both_reached("killable writer vs SIGKILL vs up_write");
}

/// The unfixed 2016 bail-out (docs/rwsem-rules.md §5.3, symptom a): the last waiter leaves a stale
/// `WAITING_BIAS`. The same model must catch it.
#[test]
#[should_panic(expected = "count word not back to 0")]
fn kill_queued_writer_rfc_v1_leaves_stale_waiting_bias() {
    static OUTCOMES: Outcomes = Outcomes::new();
    kill_queued_writer(RwSemModel::RfcV1, Holder::Reader, &OUTCOMES);
}

/// §5.2 obligation 3 / §5.3 symptom b: a reader queued behind a killable writer (AR3) while
/// the lock is only read-held must be granted when that writer is killed; nobody else would
/// wake it. The main thread holds the read lock until both have finished, so the writer can
/// only end `Killed`, and a missing wake-up is a loom deadlock.
///
/// The main thread is no emulated task here: it takes the read lock on the fast path of a free
/// lock (no task needed) and never sleeps in the lock, so no task guard of its own has to be
/// dropped while loom unwinds from a deadlock.
fn kill_writer_with_reader_behind(model_kind: RwSemModel) {
    model(move || {
        let k = LoomKernel::new();
        let s = shared(model_kind);
        s.sem.down_read();
        s.w.read_enter();
        let (k2, s2) = (k.clone(), s.clone());
        let writer = thread::spawn(move || {
            let t = k2.enter("victim");
            s2.publish_victim(t.task());
            s2.sem.down_write_killable()
        });
        let (k3, s3) = (k.clone(), s.clone());
        let reader = thread::spawn(move || {
            let _t = k3.enter("r2");
            s3.read();
        });
        s.kill_victim();
        assert_eq!(writer.join().unwrap(), Err(Killed));
        reader.join().unwrap();
        s.w.read_exit();
        s.sem.up_read();
        assert_quiescent(&s.sem);
    });
}

#[test]
fn kill_writer_grants_reader_behind_it_model_a() {
    kill_writer_with_reader_behind(RwSemModel::A);
}

/// The unfixed bail-out does not wake the reader behind the killed writer: loom must see the
/// hang.
#[test]
#[should_panic(expected = "deadlock")]
fn kill_writer_rfc_v1_strands_reader_behind_it() {
    kill_writer_with_reader_behind(RwSemModel::RfcV1);
}

// ---- (d) a reader killed while queued ------------------------------------------------------

/// A killable reader queued behind a writer, SIGKILL from a third thread, and the writer's
/// `up_write` granting the reader concurrently: the reader re-checks the grant under
/// `wait_lock` after seeing the signal (§5.1), so it either returns success holding a read
/// lock or bails out with no bias of its own left in the count.
#[test]
fn kill_queued_reader_vs_up_write() {
    static OUTCOMES: Outcomes = Outcomes::new();
    model(|| {
        let k = LoomKernel::new();
        let s = shared(RwSemModel::A);
        let t = k.enter("w");
        s.sem.down_write();
        s.w.write_enter();
        let (k2, s2) = (k.clone(), s.clone());
        let victim = thread::spawn(move || {
            let t = k2.enter("victim");
            s2.publish_victim(t.task());
            let r = s2.sem.down_read_killable();
            if r.is_ok() {
                s2.w.read_enter();
                s2.w.read_exit();
                s2.sem.up_read();
            } else {
                assert!(t.task().fatal_signal_pending(), "EINTR without SIGKILL");
            }
            r
        });
        let s3 = s.clone();
        let killer = thread::spawn(move || s3.kill_victim());
        s.w.write_exit();
        s.sem.up_write();
        drop(t);
        let r = victim.join().unwrap();
        killer.join().unwrap();
        OUTCOMES.record(r);
        assert_quiescent(&s.sem);
    });
    OUTCOMES.assert_both_reached("killable reader vs SIGKILL vs up_write");
}

/// `down_read_interruptible` (v5.11 API on Model A's reader slow path): a non-fatal signal
/// races with `up_write`'s grant; the reader either holds the lock or returns `Interrupted`
/// with nothing of its own left in the count.
#[test]
fn interrupt_queued_reader_vs_up_write() {
    static INTERRUPTED: AtomicU64 = AtomicU64::new(0);
    static ACQUIRED: AtomicU64 = AtomicU64::new(0);
    model(|| {
        let k = LoomKernel::new();
        let s = shared(RwSemModel::A);
        let t = k.enter("w");
        s.sem.down_write();
        s.w.write_enter();
        let (k2, s2) = (k.clone(), s.clone());
        let victim = thread::spawn(move || {
            let t = k2.enter("victim");
            s2.publish_victim(t.task());
            match s2.sem.down_read_interruptible() {
                Ok(()) => {
                    s2.w.read_enter();
                    s2.w.read_exit();
                    s2.sem.up_read();
                    ACQUIRED.fetch_add(1, Relaxed);
                }
                Err(Interrupted) => {
                    assert!(t.task().signal_pending(), "EINTR without a signal");
                    INTERRUPTED.fetch_add(1, Relaxed);
                }
            }
        });
        let s3 = s.clone();
        let signaller = thread::spawn(move || {
            let t = loop {
                if let Some(t) = s3.victim.lock().unwrap().clone() {
                    break t;
                }
                thread::yield_now();
            };
            send_sig(Signal::Other, &t);
        });
        s.w.write_exit();
        s.sem.up_write();
        drop(t);
        victim.join().unwrap();
        signaller.join().unwrap();
        assert_quiescent(&s.sem);
    });
    assert!(INTERRUPTED.load(Relaxed) > 0 && ACQUIRED.load(Relaxed) > 0);
}

// ---- (e) Model B: the bail-out (rwsem_del_wake_waiter) --------------------------------------

/// §5.2/§5.5 [B]: a killable writer queued behind a reader, SIGKILL and the release racing;
/// it acquires or leaves, and the lock ends idle with WAITERS and HANDOFF clear.
#[test]
fn b_kill_queued_writer_behind_reader() {
    static OUTCOMES: Outcomes = Outcomes::new();
    kill_queued_writer(RwSemModel::B, Holder::Reader, &OUTCOMES);
    OUTCOMES.assert_both_reached("B: killable writer vs SIGKILL vs up_read");
}

#[test]
fn b_kill_queued_writer_behind_writer() {
    static OUTCOMES: Outcomes = Outcomes::new();
    kill_queued_writer(RwSemModel::B, Holder::Writer, &OUTCOMES);
    OUTCOMES.assert_both_reached("B: killable writer vs SIGKILL vs up_write");
}

/// §5.5 [B] (1ee326196c66): the killed first waiter wakes the reader queued behind it while
/// only readers hold; nobody else would. A missing wake-up is a loom deadlock.
#[test]
fn b_kill_writer_grants_reader_behind_it() {
    kill_writer_with_reader_behind(RwSemModel::B);
}

/// §5.1 [B]: the killable reader's re-check of its grant under `wait_lock` against
/// `up_write`'s grant; `rwsem_del_wake_waiter` on the way out.
#[test]
fn b_kill_queued_reader_vs_up_write() {
    static OUTCOMES: Outcomes = Outcomes::new();
    model(|| {
        let k = LoomKernel::new();
        let s = shared(RwSemModel::B);
        let t = k.enter("w");
        s.sem.down_write();
        s.w.write_enter();
        let (k2, s2) = (k.clone(), s.clone());
        let victim = thread::spawn(move || {
            let t = k2.enter("victim");
            s2.publish_victim(t.task());
            let r = s2.sem.down_read_killable();
            if r.is_ok() {
                s2.w.read_enter();
                s2.w.read_exit();
                s2.sem.up_read();
            } else {
                assert!(t.task().fatal_signal_pending(), "EINTR without SIGKILL");
            }
            r
        });
        let s3 = s.clone();
        let killer = thread::spawn(move || s3.kill_victim());
        s.w.write_exit();
        s.sem.up_write();
        drop(t);
        let r = victim.join().unwrap();
        killer.join().unwrap();
        OUTCOMES.record(r);
        assert_quiescent(&s.sem);
    });
    OUTCOMES.assert_both_reached("B: killable reader vs SIGKILL vs up_write");
}

// ---- (f) Model B: handoff -------------------------------------------------------------------

/// AR8 [B]: two writers queued behind a reader whose hold outlasts their timeouts (the model's
/// clock jumps 10 ms while it holds), so that every retry may set or honour HANDOFF; the
/// release races with the retries. Both writers get the lock in turn and the lock ends idle
/// with HANDOFF and WAITERS clear.
#[test]
fn b_handoff_two_timed_out_writers_vs_release() {
    model(|| {
        let k = LoomKernel::new();
        let s = shared(RwSemModel::B);
        let t = k.enter("r");
        s.sem.down_read();
        s.w.read_enter();
        let writers: Vec<_> = ["w1", "w2"]
            .into_iter()
            .map(|name| {
                let (k2, s2) = (k.clone(), s.clone());
                thread::spawn(move || {
                    let _t = k2.enter(name);
                    s2.write();
                })
            })
            .collect();
        k.advance_time(10_000_000);
        s.w.read_exit();
        s.sem.up_read();
        drop(t);
        for h in writers {
            h.join().unwrap();
        }
        assert_eq!(s.w.writes(), 2);
        assert_quiescent(&s.sem);
    });
}

/// AR8 + §5.5 [B]: a timed-out reader queued behind a killable writer, behind a writer
/// holder. The writer is killed while the holder releases: its bail-out's WAKE_ANY either
/// finds the holder still there (HANDOFF for the reader, or inherited from the killed writer's
/// last try) or grants the reader; the holder's own wake-up grants it otherwise.
#[test]
fn b_handoff_reader_behind_killed_writer_vs_release() {
    static OUTCOMES: Outcomes = Outcomes::new();
    model(|| {
        let k = LoomKernel::new();
        let s = shared(RwSemModel::B);
        let t = k.enter("h");
        s.sem.down_write();
        s.w.write_enter();
        let (k2, s2) = (k.clone(), s.clone());
        let victim = thread::spawn(move || {
            let t = k2.enter("victim");
            s2.publish_victim(t.task());
            let r = s2.sem.down_write_killable();
            if r.is_ok() {
                s2.w.write_enter();
                s2.w.write_exit();
                s2.sem.up_write();
            }
            r
        });
        let (k3, s3) = (k.clone(), s.clone());
        let reader = thread::spawn(move || {
            let _t = k3.enter("r");
            s3.read();
        });
        k.advance_time(10_000_000);
        let s4 = s.clone();
        let killer = thread::spawn(move || s4.kill_victim());
        s.w.write_exit();
        s.sem.up_write();
        drop(t);
        let r = victim.join().unwrap();
        reader.join().unwrap();
        killer.join().unwrap();
        OUTCOMES.record(r);
        assert_quiescent(&s.sem);
    });
    OUTCOMES.assert_both_reached("B: killed writer with a timed-out reader behind it");
}

// ---- (g) Model B: reader optimistic lock stealing --------------------------------------------

/// AR2 [B]: a reader queued behind a writer holder; a second reader arrives while the holder
/// releases. In the window between the release of WRITER_LOCKED and the holder's wake-up the
/// newcomer steals the lock and, being the only reader with WAITERS set, grants the queued
/// reader itself (WAKE_READ_OWNED); otherwise the holder's wake-up does. Every execution ends
/// idle; some execution must reach the stealer's grant.
#[test]
fn b_stealing_reader_grants_the_queued_readers() {
    static STEALER_GRANTED: AtomicU64 = AtomicU64::new(0);
    model(|| {
        let k = LoomKernel::new();
        let s = shared(RwSemModel::B);
        let t = k.enter("h");
        s.sem.down_write();
        s.w.write_enter();
        let (k2, s2) = (k.clone(), s.clone());
        let queued = thread::spawn(move || {
            let _t = k2.enter("r1");
            s2.read();
        });
        // Let r1 queue first (a loom-style wait on the observable queue).
        while !s.sem.is_contended() {
            thread::yield_now();
        }
        let (k3, s3) = (k.clone(), s.clone());
        let stealer = thread::spawn(move || {
            let t = k3.enter("r2");
            s3.sem.down_read();
            // Looked at before up_read, whose own wake-up may grant r1 too. It stole (kept its
            // bias in the slow path) and granted r1 itself; a reader that queued can grant r1
            // too, through rwsem_cond_wake_waiter(), which is not this rule.
            let ev = t.task().lock_events();
            let stole_and_granted =
                ev.get(LockEvent::RwsemRlockSteal) > 0 && ev.get(LockEvent::RwsemWakeReader) > 0;
            s3.w.read_enter();
            s3.w.read_exit();
            s3.sem.up_read();
            stole_and_granted
        });
        s.w.write_exit();
        s.sem.up_write();
        drop(t);
        queued.join().unwrap();
        if stealer.join().unwrap() {
            STEALER_GRANTED.fetch_add(1, Relaxed);
        }
        assert_quiescent(&s.sem);
    });
    assert!(
        STEALER_GRANTED.load(Relaxed) > 0,
        "no execution had a stealing reader grant the queued one (WAKE_READ_OWNED)"
    );
}

// ---- (h) optimistic spinning ------------------------------------------------------------------

/// AR9, v4.7: `rwsem_wake()` skips the wake-up when a spinner is present and `wait_lock` is
/// busy, relying on the spinner's later try. Two spinning writers (two spin iterations at most
/// under loom) against a releasing writer holder: nobody may be left asleep with the lock free.
#[test]
fn a_spin_wake_skipped_for_a_spinner_is_not_lost() {
    model(|| {
        let k = LoomKernel::new();
        let s = shared_with(RwSemConfig::new(RwSemModel::A, RwSemSpin::On));
        let t = k.enter("h");
        s.sem.down_write();
        s.w.write_enter();
        let writers: Vec<_> = ["w1", "w2"]
            .into_iter()
            .map(|name| {
                let (k2, s2) = (k.clone(), s.clone());
                thread::spawn(move || {
                    let _t = k2.enter(name);
                    s2.write();
                })
            })
            .collect();
        s.w.write_exit();
        s.sem.up_write();
        drop(t);
        for h in writers {
            h.join().unwrap();
        }
        assert_eq!(s.w.writes(), 3);
        assert_quiescent(&s.sem);
    });
}

/// AR9, v6.6: a spinning writer against a reader holder and a queued writer; the spinner's
/// unqueued try and the queued writer's try race for the released lock.
#[test]
fn b_spin_spinner_vs_queued_writer_vs_release() {
    model(|| {
        let k = LoomKernel::new();
        let s = shared_with(RwSemConfig::new(RwSemModel::B, RwSemSpin::On));
        let t = k.enter("r");
        s.sem.down_read();
        s.w.read_enter();
        let writers: Vec<_> = ["w1", "w2"]
            .into_iter()
            .map(|name| {
                let (k2, s2) = (k.clone(), s.clone());
                thread::spawn(move || {
                    let _t = k2.enter(name);
                    s2.write();
                })
            })
            .collect();
        s.w.read_exit();
        s.sem.up_read();
        drop(t);
        for h in writers {
            h.join().unwrap();
        }
        assert_eq!(s.w.writes(), 2);
        assert_quiescent(&s.sem);
    });
}
