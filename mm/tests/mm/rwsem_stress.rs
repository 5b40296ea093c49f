//! A locktorture-style stress of the rw_semaphore on the threads executor
//! (docs/rwsem-rules.md §7; `kernel/locking/locktorture.c`, `torture_type=rwsem_lock`).
//!
//! Reader and writer tasks (one emulated process each) take the lock in a loop with every
//! variant: `down_read`, `down_read_killable`, `down_read_trylock`, `down_write`,
//! `down_write_killable`, `down_write_trylock` and `downgrade_write`. Killer tasks send SIGKILL
//! to the tasks that use the killable variants, preferring those asleep in the lock's slow
//! path, and fork replacements. On every acquisition the checker verifies, with counters that
//! do not depend on the lock (locktorture's `lock_is_write_held` / `lock_is_read_held`), that no
//! writer coexists with anyone; readers also check that they never see a half-done write.
//!
//! Every configuration runs for each lock model and spin setting: Model A and Model B, each with
//! `CONFIG_RWSEM_SPIN_ON_OWNER` off and on (RfcV1 is left out: its bail-out strands waiters by
//! design, see rwsem_rules.rs).
//!
//! Deviations from locktorture: the lock is also taken with the killable and trylock variants
//! and downgraded; tasks get killed; violations are counted and the test fails at the end (no
//! WARN); the run is a fixed amount of work (an operation count per task), not a duration.
//!
//! Every run ends or fails: workers stop after `iters` operations (or at the first violation
//! with `stop_on_failure`); a progress watchdog fails the run, with the lock's state and every
//! task's, when no operation completed for `stall_after`. There is no time budget for the work
//! itself: a slow host makes the run longer, never red. A task that never acquired the lock and
//! was not killed counts as starved and fails the test.
//!
//! `lock_busted` (a wrapper whose writers take the read side, so nothing excludes them) is run
//! through the same checker to show that the checker sees violations.
//!
//! Seed: `OOMLAB_STRESS_SEED` (default fixed); the threads executor is not deterministic, the
//! seed only fixes each task's sequence of operations.

use mm::locking::lock_events::LockEvent;
use mm::locking::rwsem::{Killed, RawRwSem, RwSemConfig, RwSemModel, RwSemSpin};
use mm::sched::threads::{ThreadsConfig, ThreadsExecutor};
use mm::sched::{self};
use mm::task::{send_sig, CloneKind, Signal, Task};
use parking_lot::Mutex;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::Arc;
use std::time::{Duration, Instant};

// ---- the lock under test ------------------------------------------------------------------

/// The lock operations the torture loop uses (locktorture's `lock_torture_ops`).
trait TortureLock: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    fn raw(&self) -> &RawRwSem;
    fn down_read(&self);
    fn down_read_killable(&self) -> Result<(), Killed>;
    fn down_read_trylock(&self) -> bool;
    fn up_read(&self);
    fn down_write(&self);
    fn down_write_killable(&self) -> Result<(), Killed>;
    fn down_write_trylock(&self) -> bool;
    fn up_write(&self);
    fn downgrade_write(&self);
}

/// oomlab's rw_semaphore (`rwsem_lock`).
struct RwSemLock(RawRwSem);

impl TortureLock for RwSemLock {
    fn name(&self) -> &'static str {
        "rwsem_lock"
    }
    fn raw(&self) -> &RawRwSem {
        &self.0
    }
    fn down_read(&self) {
        self.0.down_read()
    }
    fn down_read_killable(&self) -> Result<(), Killed> {
        self.0.down_read_killable()
    }
    fn down_read_trylock(&self) -> bool {
        self.0.down_read_trylock()
    }
    fn up_read(&self) {
        self.0.up_read()
    }
    fn down_write(&self) {
        self.0.down_write()
    }
    fn down_write_killable(&self) -> Result<(), Killed> {
        self.0.down_write_killable()
    }
    fn down_write_trylock(&self) -> bool {
        self.0.down_write_trylock()
    }
    fn up_write(&self) {
        self.0.up_write()
    }
    fn downgrade_write(&self) {
        self.0.downgrade_write()
    }
}

/// locktorture's `lock_busted`: a deliberately broken lock. Writers take the *read* side of
/// a real rwsem, so writers exclude nobody, yet the count word still returns to 0 at the end
/// (only the checker can tell).
struct LockBusted(RawRwSem);

impl TortureLock for LockBusted {
    fn name(&self) -> &'static str {
        "lock_busted"
    }
    fn raw(&self) -> &RawRwSem {
        &self.0
    }
    fn down_read(&self) {
        self.0.down_read()
    }
    fn down_read_killable(&self) -> Result<(), Killed> {
        self.0.down_read_killable()
    }
    fn down_read_trylock(&self) -> bool {
        self.0.down_read_trylock()
    }
    fn up_read(&self) {
        self.0.up_read()
    }
    fn down_write(&self) {
        self.0.down_read()
    }
    fn down_write_killable(&self) -> Result<(), Killed> {
        self.0.down_read_killable()
    }
    fn down_write_trylock(&self) -> bool {
        self.0.down_read_trylock()
    }
    fn up_write(&self) {
        self.0.up_read()
    }
    fn downgrade_write(&self) {}
}

// ---- configuration ------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct Config {
    /// `down_read` / `down_read_trylock` tasks (never killed).
    readers: usize,
    /// `down_write` / `down_write_trylock` / `downgrade_write` tasks (never killed).
    writers: usize,
    /// `down_read_killable`-mostly tasks, targets of the killers.
    killable_readers: usize,
    /// `down_write_killable`-mostly tasks, targets of the killers.
    killable_writers: usize,
    /// Tasks that SIGKILL killable workers and fork replacements.
    killers: usize,
    /// Upper bound on the replacements forked over the whole run.
    respawn_max: usize,
    /// Lock operations per worker.
    iters: u32,
    /// The watchdog fails the run when no operation completed for this long.
    stall_after: Duration,
    /// Stop everyone at the first violation (for `lock_busted`).
    stop_on_failure: bool,
    seed: u64,
}

impl Config {
    fn nr_tasks(&self) -> usize {
        self.readers + self.writers + self.killable_readers + self.killable_writers + self.killers
    }
}

fn base_seed() -> u64 {
    std::env::var("OOMLAB_STRESS_SEED")
        .ok()
        .map(|s| s.parse().expect("OOMLAB_STRESS_SEED must be an integer"))
        .unwrap_or(0x5eed_f00a)
}

/// xorshift64*: one per task.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        // splitmix64 of the seed, never 0.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

// ---- workers ------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Reader,
    Writer,
    KillableReader,
    KillableWriter,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Writer => "writer",
            Role::KillableReader => "kreader",
            Role::KillableWriter => "kwriter",
        }
    }
    fn killable(self) -> bool {
        matches!(self, Role::KillableReader | Role::KillableWriter)
    }
    /// The next operation: mostly the role's blocking variant, sometimes a trylock; writers
    /// sometimes downgrade; killable tasks now and then use the uninterruptible variant too.
    fn pick(self, rng: &mut Rng) -> Op {
        let r = rng.below(16);
        match self {
            Role::Reader => match r {
                0..=11 => Op::Read,
                _ => Op::ReadTrylock,
            },
            Role::Writer => match r {
                0..=9 => Op::Write,
                10..=12 => Op::WriteTrylock,
                _ => Op::WriteDowngrade,
            },
            Role::KillableReader => match r {
                0..=11 => Op::ReadKillable,
                12..=13 => Op::ReadTrylock,
                _ => Op::Read,
            },
            Role::KillableWriter => match r {
                0..=11 => Op::WriteKillable,
                12..=13 => Op::WriteTrylock,
                _ => Op::Write,
            },
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Read,
    ReadKillable,
    ReadTrylock,
    Write,
    WriteKillable,
    WriteTrylock,
    WriteDowngrade,
}

/// Per-task counters (locktorture's `lock_stress_stats`).
struct WorkerStats {
    comm: String,
    role: Role,
    reads: AtomicU64,
    writes: AtomicU64,
    trylock_fail: AtomicU64,
    eintr: AtomicU64,
    /// SIGKILL was pending when the task exited.
    killed: AtomicBool,
    finished: AtomicBool,
}

impl WorkerStats {
    fn acquisitions(&self) -> u64 {
        self.reads.load(Relaxed) + self.writes.load(Relaxed)
    }
}

/// The shared state of one torture run.
struct Torture<L> {
    cfg: Config,
    lock: L,
    /// `lock_is_write_held`.
    writer_inside: AtomicUsize,
    /// `lock_is_read_held`.
    readers_inside: AtomicUsize,
    /// Written by writers (first, hold, second); readers must always see them equal.
    pair: (AtomicU64, AtomicU64),
    n_lock_fail: AtomicU64,
    first_fail: Mutex<Option<String>>,
    stop: AtomicBool,
    /// Operations completed by all workers (acquisitions, failed trylocks, EINTRs): what the
    /// progress watchdog watches.
    progress: AtomicU64,
    stats: Mutex<Vec<Arc<WorkerStats>>>,
    /// Live killable workers.
    victims: Mutex<Vec<(Arc<Task>, Arc<WorkerStats>)>>,
    live_workers: AtomicUsize,
    kills: AtomicU64,
    kills_queued: AtomicU64,
    respawns: AtomicUsize,
    next_worker: AtomicU64,
}

impl<L: TortureLock> Torture<L> {
    fn fail(&self, who: &str, what: &str) {
        self.n_lock_fail.fetch_add(1, SeqCst);
        let mut f = self.first_fail.lock();
        if f.is_none() {
            *f = Some(format!("{who}: {what}"));
        }
        if self.cfg.stop_on_failure {
            self.stop.store(true, SeqCst);
        }
    }

    /// A hold of the lock: mostly a short busy loop; sometimes a yield; rarely a jiffy asleep
    /// with the lock held (locktorture's long hold).
    fn hold(&self, rng: &mut Rng) {
        match rng.below(512) {
            0 => {
                sched::schedule_timeout_uninterruptible(1);
            }
            1..=31 => std::thread::yield_now(),
            _ => {
                for _ in 0..rng.below(64) {
                    std::hint::spin_loop();
                }
            }
        }
    }

    fn read_section(&self, st: &WorkerStats, rng: &mut Rng) {
        self.readers_inside.fetch_add(1, SeqCst);
        if self.writer_inside.load(SeqCst) != 0 {
            self.fail(&st.comm, "reader got in while a writer held the lock");
        }
        let a = self.pair.0.load(Relaxed);
        self.hold(rng);
        let b = self.pair.1.load(Relaxed);
        if a != b {
            self.fail(&st.comm, "reader saw a half-done write");
        }
        st.reads.fetch_add(1, Relaxed);
        self.readers_inside.fetch_sub(1, SeqCst);
    }

    fn write_section(&self, st: &WorkerStats, rng: &mut Rng) {
        if self.writer_inside.fetch_add(1, SeqCst) != 0 {
            self.fail(&st.comm, "two writers held the lock");
        }
        if self.readers_inside.load(SeqCst) != 0 {
            self.fail(&st.comm, "writer got in while readers held the lock");
        }
        let v = self.pair.0.load(Relaxed) + 1;
        self.pair.0.store(v, Relaxed);
        self.hold(rng);
        self.pair.1.store(v, Relaxed);
        st.writes.fetch_add(1, Relaxed);
        self.writer_inside.fetch_sub(1, SeqCst);
    }

    fn killed_while_waiting(&self, st: &WorkerStats) {
        st.eintr.fetch_add(1, Relaxed);
        if !sched::fatal_signal_pending() {
            self.fail(
                &st.comm,
                "killable lock returned EINTR without SIGKILL pending",
            );
        }
    }

    fn do_op(&self, st: &WorkerStats, op: Op, rng: &mut Rng) {
        let l = &self.lock;
        match op {
            Op::Read => {
                l.down_read();
                self.read_section(st, rng);
                l.up_read();
            }
            Op::ReadKillable => match l.down_read_killable() {
                Ok(()) => {
                    self.read_section(st, rng);
                    l.up_read();
                }
                Err(Killed) => self.killed_while_waiting(st),
            },
            Op::ReadTrylock => {
                if l.down_read_trylock() {
                    self.read_section(st, rng);
                    l.up_read();
                } else {
                    st.trylock_fail.fetch_add(1, Relaxed);
                }
            }
            Op::Write => {
                l.down_write();
                self.write_section(st, rng);
                l.up_write();
            }
            Op::WriteKillable => match l.down_write_killable() {
                Ok(()) => {
                    self.write_section(st, rng);
                    l.up_write();
                }
                Err(Killed) => self.killed_while_waiting(st),
            },
            Op::WriteTrylock => {
                if l.down_write_trylock() {
                    self.write_section(st, rng);
                    l.up_write();
                } else {
                    st.trylock_fail.fetch_add(1, Relaxed);
                }
            }
            Op::WriteDowngrade => {
                l.down_write();
                self.write_section(st, rng);
                l.downgrade_write();
                self.read_section(st, rng);
                l.up_read();
            }
        }
    }

    /// locktorture's `lock_torture_writer` / `lock_torture_reader`.
    fn worker(self: &Arc<Self>, st: Arc<WorkerStats>, seed: u64) {
        let mut rng = Rng::new(seed);
        for _ in 0..self.cfg.iters {
            if sched::fatal_signal_pending() {
                break;
            }
            if self.stop.load(Relaxed) && st.acquisitions() > 0 {
                break;
            }
            let op = st.role.pick(&mut rng);
            self.do_op(&st, op, &mut rng);
            self.progress.fetch_add(1, Relaxed);
            // Between acquisitions: usually run on, sometimes yield, rarely sleep a jiffy.
            match rng.below(128) {
                0 if st.role.killable() => {
                    sched::schedule_timeout_killable(1);
                }
                0 => {
                    sched::schedule_timeout_uninterruptible(1);
                }
                1..=15 => std::thread::yield_now(),
                _ => {}
            }
        }
        // Leave the victim list first, so that no SIGKILL can arrive after the check below.
        let me = sched::current().tid();
        self.victims.lock().retain(|(t, _)| t.tid() != me);
        st.killed.store(sched::fatal_signal_pending(), SeqCst);
        st.finished.store(true, SeqCst);
        self.live_workers.fetch_sub(1, SeqCst);
    }

    /// Fork a worker: from the test thread through the executor, or from a killer task
    /// through `sched::spawn` (a replacement for a killed task).
    fn fork_worker(self: &Arc<Self>, exec: Option<&ThreadsExecutor>, role: Role) {
        let n = self.next_worker.fetch_add(1, Relaxed);
        let st = Arc::new(WorkerStats {
            comm: format!("{}-{n}", role.name()),
            role,
            reads: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            trylock_fail: AtomicU64::new(0),
            eintr: AtomicU64::new(0),
            killed: AtomicBool::new(false),
            finished: AtomicBool::new(false),
        });
        self.stats.lock().push(st.clone());
        self.live_workers.fetch_add(1, SeqCst);
        let kind = CloneKind::Process {
            comm: st.comm.clone(),
        };
        let (t, st2) = (self.clone(), st.clone());
        let seed = self.cfg.seed ^ n.wrapping_mul(0x9e37_79b9);
        let f = move || t.worker(st2, seed);
        let task = match exec {
            Some(e) => e.spawn(kind, f),
            None => sched::spawn(kind, f),
        }
        .expect("fork of a torture task");
        if role.killable() {
            // The task may already have finished (and not found itself in the list).
            if !st.finished.load(SeqCst) {
                self.victims.lock().push((task, st));
            }
        }
    }

    /// Pick a victim (prefer one asleep in a killable wait of the lock) and SIGKILL it, under
    /// the victims lock so that it cannot be exiting concurrently.
    fn kill_one(self: &Arc<Self>, rng: &mut Rng) -> Option<Role> {
        let mut v = self.victims.lock();
        v.retain(|(_, st)| !st.finished.load(SeqCst));
        if v.is_empty() {
            return None;
        }
        let lock_id = self.lock.raw() as *const RawRwSem as usize;
        let queued: Vec<usize> = v
            .iter()
            .enumerate()
            .filter(|(_, (t, _))| {
                t.state() == mm::task::state::TASK_KILLABLE
                    && t.wchan().is_some_and(|w| w.object_id == lock_id)
            })
            .map(|(i, _)| i)
            .collect();
        let i = if queued.is_empty() {
            rng.below(v.len() as u64) as usize
        } else {
            self.kills_queued.fetch_add(1, Relaxed);
            queued[rng.below(queued.len() as u64) as usize]
        };
        let (task, st) = v.swap_remove(i);
        send_sig(Signal::Kill, &task);
        self.kills.fetch_add(1, Relaxed);
        Some(st.role)
    }

    /// A killer task: kill a killable worker every 1–3 jiffies, fork a replacement.
    fn killer(self: &Arc<Self>, seed: u64) {
        let mut rng = Rng::new(seed);
        while !self.stop.load(Relaxed) {
            sched::schedule_timeout_uninterruptible(1 + rng.below(3));
            if let Some(role) = self.kill_one(&mut rng) {
                let ok = self
                    .respawns
                    .fetch_update(SeqCst, SeqCst, |n| {
                        (n < self.cfg.respawn_max).then_some(n + 1)
                    })
                    .is_ok();
                if ok && !self.stop.load(Relaxed) {
                    self.fork_worker(None, role);
                }
            }
        }
    }
}

// ---- a run and its report -----------------------------------------------------------------

struct Report {
    name: String,
    cfg: Config,
    elapsed: Duration,
    n_lock_fail: u64,
    first_fail: Option<String>,
    /// Non-killed workers that never acquired the lock.
    starved: Vec<String>,
    reads: (u64, u64, u64),
    writes: (u64, u64, u64),
    trylock_fail: u64,
    eintr: u64,
    kills: u64,
    kills_queued: u64,
    respawns: usize,
    killed_tasks: usize,
    workers: usize,
    rwsem_rlock_fail: u64,
    rwsem_wlock_fail: u64,
    final_count: i64,
    final_contended: bool,
}

impl Report {
    /// locktorture's statistics lines (`Total`, `Max/Min`, `???` unfair, `Fail`).
    fn print(&self) {
        let line = |what: &str, (total, max, min): (u64, u64, u64)| {
            let unfair = if max / 2 > min { " ???" } else { "" };
            let bang = if self.n_lock_fail > 0 { " !!!" } else { "" };
            format!(
                "{what}:  Total: {total}  Max/Min: {max}/{min}{unfair}  Fail: {}{bang}",
                (self.n_lock_fail > 0) as u8
            )
        };
        eprintln!(
            "{} ({} tasks, seed {:#x}, {:.2?}):\n  {}\n  {}\n  trylock failures {}, EINTR {} \
             (rwsem_rlock_fail {}, rwsem_wlock_fail {}), kills {} ({} while queued), \
             respawns {}, workers {} ({} killed), starved {}\n  End of test: {}",
            self.name,
            self.cfg.nr_tasks(),
            self.cfg.seed,
            self.elapsed,
            line("Writes", self.writes),
            line("Reads ", self.reads),
            self.trylock_fail,
            self.eintr,
            self.rwsem_rlock_fail,
            self.rwsem_wlock_fail,
            self.kills,
            self.kills_queued,
            self.respawns,
            self.workers,
            self.killed_tasks,
            self.starved.len(),
            if self.n_lock_fail == 0 && self.starved.is_empty() {
                "SUCCESS"
            } else {
                "FAILURE"
            }
        );
    }

    /// Every check of a correct lock.
    fn assert_success(&self) {
        let ctx = format!(
            "{} (set OOMLAB_STRESS_SEED={} to rerun the same operation sequences)",
            self.name, self.cfg.seed
        );
        assert_eq!(
            self.n_lock_fail, 0,
            "{ctx}: exclusion violated: {:?}",
            self.first_fail
        );
        assert!(
            self.starved.is_empty(),
            "{ctx}: starved tasks: {:?}",
            self.starved
        );
        assert_eq!(self.final_count, 0, "{ctx}: count word not back to 0");
        assert!(
            !self.final_contended,
            "{ctx}: wait list not empty at the end"
        );
        assert!(self.writes.0 > 0 && self.reads.0 > 0, "{ctx}: no progress");
        if self.cfg.killers > 0 {
            assert!(self.kills > 0, "{ctx}: the killers killed nobody");
        }
        assert_eq!(
            self.eintr,
            self.rwsem_rlock_fail + self.rwsem_wlock_fail,
            "{ctx}: EINTR seen by tasks vs the lock's fail events"
        );
    }
}

/// Describe the lock and every live task (for a hang).
fn dump_state<L: TortureLock>(t: &Torture<L>, exec: &ThreadsExecutor) -> String {
    let mut s = format!("{:?} waiters {:?}\n", t.lock.raw(), t.lock.raw().waiters());
    for task in exec.tasks().tasks() {
        let _ = writeln!(
            s,
            "  {task:?} state {} wchan {:?}",
            mm::task::state::name(task.state()),
            task.wchan().map(|w| w.to_string())
        );
    }
    s
}

/// Run one torture test of `lock` and return its report. Panics if the run hangs.
fn torture<L: TortureLock>(lock: L, cfg: Config) -> Report {
    let name = format!(
        "{} (model {}, spin {})",
        lock.name(),
        lock.raw().model().name(),
        lock.raw().spin().name()
    );
    let exec = ThreadsExecutor::new(ThreadsConfig::default());
    let t = Arc::new(Torture {
        cfg: cfg.clone(),
        lock,
        writer_inside: AtomicUsize::new(0),
        readers_inside: AtomicUsize::new(0),
        pair: (AtomicU64::new(0), AtomicU64::new(0)),
        n_lock_fail: AtomicU64::new(0),
        first_fail: Mutex::new(None),
        stop: AtomicBool::new(false),
        progress: AtomicU64::new(0),
        stats: Mutex::new(Vec::new()),
        victims: Mutex::new(Vec::new()),
        live_workers: AtomicUsize::new(0),
        kills: AtomicU64::new(0),
        kills_queued: AtomicU64::new(0),
        respawns: AtomicUsize::new(0),
        next_worker: AtomicU64::new(0),
    });
    let start = Instant::now();

    // Interleave the roles as locktorture interleaves writers and readers.
    let mut left = [
        (Role::Writer, cfg.writers),
        (Role::KillableWriter, cfg.killable_writers),
        (Role::Reader, cfg.readers),
        (Role::KillableReader, cfg.killable_readers),
    ];
    while left.iter().any(|(_, n)| *n > 0) {
        for (role, n) in left.iter_mut() {
            if *n > 0 {
                *n -= 1;
                t.fork_worker(Some(&exec), *role);
            }
        }
    }
    for i in 0..cfg.killers {
        let t2 = t.clone();
        let seed = cfg.seed ^ 0x6b69_6c6c ^ i as u64;
        exec.spawn(
            CloneKind::Process {
                comm: format!("killer-{i}"),
            },
            move || t2.killer(seed),
        )
        .expect("fork of a killer");
    }

    // The progress watchdog: the run may take as long as the host needs, but some operation
    // must complete every `stall_after`.
    let mut last = (0, Instant::now());
    loop {
        std::thread::sleep(Duration::from_millis(5));
        if t.live_workers.load(SeqCst) == 0 {
            break;
        }
        let p = t.progress.load(SeqCst);
        if p != last.0 {
            last = (p, Instant::now());
        } else if last.1.elapsed() >= cfg.stall_after {
            panic!(
                "{name}: no lock operation completed for {:?} ({} workers left, {p} \
                 operations done, seed {:#x}):\n{}",
                cfg.stall_after,
                t.live_workers.load(SeqCst),
                cfg.seed,
                dump_state(&t, &exec)
            );
        }
    }
    // All workers are done: let the killers go.
    t.stop.store(true, SeqCst);
    exec.join();
    let elapsed = start.elapsed();

    let events = exec.tasks().lock_events();
    let stats = t.stats.lock().clone();
    let minmax = |f: &dyn Fn(&WorkerStats) -> Option<u64>| {
        let v: Vec<u64> = stats.iter().filter_map(|s| f(s)).collect();
        (
            v.iter().copied().max().unwrap_or(0),
            v.iter().copied().min().unwrap_or(0),
        )
    };
    // Max/Min per class over the tasks that were not killed (a killed task's count is cut short).
    let is_reader = |s: &WorkerStats| matches!(s.role, Role::Reader | Role::KillableReader);
    let reads =
        minmax(&|s| (is_reader(s) && !s.killed.load(SeqCst)).then(|| s.reads.load(Relaxed)));
    let writes =
        minmax(&|s| (!is_reader(s) && !s.killed.load(SeqCst)).then(|| s.writes.load(Relaxed)));
    let total_reads: u64 = stats.iter().map(|s| s.reads.load(Relaxed)).sum();
    let total_writes: u64 = stats.iter().map(|s| s.writes.load(Relaxed)).sum();
    let report = Report {
        name,
        cfg: cfg.clone(),
        elapsed,
        n_lock_fail: t.n_lock_fail.load(SeqCst),
        first_fail: t.first_fail.lock().clone(),
        starved: stats
            .iter()
            .filter(|s| !s.killed.load(SeqCst) && s.acquisitions() == 0)
            .map(|s| s.comm.clone())
            .collect(),
        reads: (total_reads, reads.0, reads.1),
        writes: (total_writes, writes.0, writes.1),
        trylock_fail: stats.iter().map(|s| s.trylock_fail.load(Relaxed)).sum(),
        eintr: stats.iter().map(|s| s.eintr.load(Relaxed)).sum(),
        kills: t.kills.load(Relaxed),
        kills_queued: t.kills_queued.load(Relaxed),
        respawns: t.respawns.load(Relaxed),
        killed_tasks: stats.iter().filter(|s| s.killed.load(SeqCst)).count(),
        workers: stats.len(),
        rwsem_rlock_fail: events[LockEvent::RwsemRlockFail as usize],
        rwsem_wlock_fail: events[LockEvent::RwsemWlockFail as usize],
        final_count: t.lock.raw().count(),
        final_contended: t.lock.raw().is_contended(),
    };
    report.print();
    report
}

/// The lock configurations every stress configuration runs with.
const CONFIGS: [RwSemConfig; 4] = [
    RwSemConfig {
        model: RwSemModel::A,
        spin: RwSemSpin::Off,
    },
    RwSemConfig {
        model: RwSemModel::A,
        spin: RwSemSpin::On,
    },
    RwSemConfig {
        model: RwSemModel::B,
        spin: RwSemSpin::Off,
    },
    RwSemConfig {
        model: RwSemModel::B,
        spin: RwSemSpin::On,
    },
];

fn rwsem(config: RwSemConfig) -> RwSemLock {
    RwSemLock(RawRwSem::with_config("torture", config))
}

/// No operation completing for this long fails a run (a lost wake-up, a livelock).
const STALL_AFTER: Duration = Duration::from_secs(30);

// ---- the tests ----------------------------------------------------------------------------

/// A few tasks of every kind, with one killer: most operations contend.
fn mixed(config: RwSemConfig) {
    let r = torture(
        rwsem(config),
        Config {
            readers: 3,
            writers: 2,
            killable_readers: 2,
            killable_writers: 3,
            killers: 1,
            respawn_max: 400,
            iters: 4_000,
            stall_after: STALL_AFTER,
            stop_on_failure: false,
            seed: base_seed(),
        },
    );
    r.assert_success();
    assert!(
        r.eintr > 0,
        "{}: no killable wait ended in EINTR: the kill-while-queued path was not exercised",
        r.name
    );
}

#[test]
fn torture_rwsem_mixed_model_a() {
    mixed(CONFIGS[0]);
}
#[test]
fn torture_rwsem_mixed_model_a_spin() {
    mixed(CONFIGS[1]);
}
#[test]
fn torture_rwsem_mixed_model_b() {
    mixed(CONFIGS[2]);
}
#[test]
fn torture_rwsem_mixed_model_b_spin() {
    mixed(CONFIGS[3]);
}

/// Writers only (exclusive use, like locktorture's exclusive lock types): writer wake-up,
/// writer stealing (AR6), spinning writers, B's writer handoff, and killed writers in the
/// queue.
fn writers_only(config: RwSemConfig) {
    torture(
        rwsem(config),
        Config {
            readers: 0,
            writers: 3,
            killable_readers: 0,
            killable_writers: 3,
            killers: 1,
            respawn_max: 200,
            iters: 3_000,
            stall_after: STALL_AFTER,
            stop_on_failure: false,
            seed: base_seed() ^ 1,
        },
    )
    .assert_success();
}

#[test]
fn torture_rwsem_writers_only_model_a() {
    writers_only(CONFIGS[0]);
}
#[test]
fn torture_rwsem_writers_only_model_a_spin() {
    writers_only(CONFIGS[1]);
}
#[test]
fn torture_rwsem_writers_only_model_b() {
    writers_only(CONFIGS[2]);
}
#[test]
fn torture_rwsem_writers_only_model_b_spin() {
    writers_only(CONFIGS[3]);
}

/// 256 tasks: 248 workers (¾ readers, as the mmap_lock sees), 8 killers.
fn tasks_256(config: RwSemConfig) {
    let r = torture(
        rwsem(config),
        Config {
            readers: 136,
            writers: 32,
            killable_readers: 48,
            killable_writers: 32,
            killers: 8,
            respawn_max: 1024,
            iters: 150,
            stall_after: STALL_AFTER,
            stop_on_failure: false,
            seed: base_seed() ^ 256,
        },
    );
    assert_eq!(r.cfg.nr_tasks(), 256);
    r.assert_success();
}

#[test]
fn torture_rwsem_256_tasks_model_a() {
    tasks_256(CONFIGS[0]);
}
#[test]
fn torture_rwsem_256_tasks_model_a_spin() {
    tasks_256(CONFIGS[1]);
}
#[test]
fn torture_rwsem_256_tasks_model_b() {
    tasks_256(CONFIGS[2]);
}
#[test]
fn torture_rwsem_256_tasks_model_b_spin() {
    tasks_256(CONFIGS[3]);
}

/// locktorture's `lock_busted`: the checker must catch a lock whose writers exclude nobody.
/// The count word still ends at 0 and nobody starves, so only the witness counters see it.
#[test]
fn torture_lock_busted_is_detected() {
    let r = torture(
        LockBusted(RawRwSem::new("busted", RwSemModel::A)),
        Config {
            readers: 2,
            writers: 4,
            killable_readers: 0,
            killable_writers: 2,
            killers: 0,
            respawn_max: 0,
            iters: 1_000_000,
            stall_after: STALL_AFTER,
            stop_on_failure: true,
            seed: base_seed() ^ 0xb05,
        },
    );
    assert!(
        r.n_lock_fail > 0,
        "the checker missed a lock that lets writers in with everyone"
    );
    eprintln!("lock_busted: first violation: {:?}", r.first_fail);
    assert_eq!(r.final_count, 0);
    assert!(r.starved.is_empty());
}
