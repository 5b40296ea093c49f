//! The load generator of `oomlab run`: many threads faulting pages and doing mmap/munmap in
//! tight loops until memory pressure sets in, remote readers that make the classic L1 chain
//! (docs/oom-rules.md §6: a foreign task holds the victim's `mmap_lock` for read while it
//! allocates), a supervisor that respawns killed processes so the pressure keeps coming, and
//! the driver that runs it all on either executor within the run's time bound.
//!
//! Shape of a run (everything emulated goes through the scheduler seam, so the sim executor
//! replays it exactly from the seed):
//!
//! - **worker processes** (`worker-N`): `threads_per_process` threads sharing one address
//!   space. Each thread loops: `mmap` a chunk of private anonymous memory, write every page
//!   (faults, allocations), and now and then `munmap` one of its chunks, keeping its resident
//!   set around a per-thread target; the targets add up to about twice the machine's memory,
//!   so the pool runs dry and the OOM killer has work. Thread 0 also keeps a *remote window*,
//!   a mapping it never touches, published for the readers and re-created (munmap + mmap,
//!   i.e. a `mmap_lock` write) every [`WINDOW_RECYCLE_EVERY`] iterations.
//! - **remote readers** (`reader-N`): processes that write into other processes' remote
//!   windows the way /proc/pid/mem or process_vm_writev do (`access_process_vm`): the
//!   target's `mmap_lock` held for read while the untouched pages are allocated.
//! - **the supervisor** (`loadgen`, a task without an address space, so never an OOM
//!   candidate — like init restarting services): starts every process and respawns a
//!   process once all its threads have exited, until the load stops. Pids and threads are
//!   recycled (the kernel's pid allocator, the threads executor's reaping of finished
//!   threads), so a run of any length keeps the same pressure.
//! - **the driver** ([`LoadRun::run`], on the thread that owns the executor, outside the
//!   machine): it keeps the schedule, so that no emulated task — however starved of CPU —
//!   can stretch the run. The load starts when the machine has booted (set-up is measured
//!   apart); at `start + load_ns` (or at an interrupt) the driver sets the stop flag and
//!   SIGKILLs every workload process; at `start + duration_ns` (or 2 s after an interrupt)
//!   the run's verdict is taken, with whatever tasks are left listed.
//!
//! Counters are per worker thread ([`WorkerStats`]: plain atomics that only their thread
//! writes, summed by whoever reads them), so every count is exact whatever ended the run, and
//! every task the load started is counted once: stopped, killed, or left.
//!
//! Randomness: each thread has its own SplitMix64 stream derived from the run's seed and the
//! thread's (slot, generation, index); nothing depends on host timing except, on the threads
//! executor, the interleaving itself.
//!
//! This module does no I/O: the binary prints the [`Report`].

use crate::report::{Report, Workload};
use crate::user::{ret_to_user, sleep_ms, touch_pages_counting, Exit, Step};
use mm::errno::Errno;
use mm::memory::access_process_vm;
use mm::mm_types::MmStruct;
use mm::mmap::{mmap, munmap, MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE};
use mm::page_alloc::PoolError;
use mm::pgtable::PAGE_SIZE;
use mm::sched::{self, Executor};
use mm::task::{kill_thread_group, CloneError, CloneKind, Signal, Tgid, ThreadGroup};
use parking_lot::Mutex;
use reaper::machine::{Kernel, Machine, MachineConfig, Verdict, WorkloadEnd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;

/// Pages in a process's remote window.
pub const WINDOW_PAGES: u64 = 64;
/// Thread 0 of a worker process re-creates its remote window every this many iterations.
pub const WINDOW_RECYCLE_EVERY: u64 = 64;
/// The supervisor's period, ms.
const SUPERVISOR_TICK_MS: u64 = 10;

const MS: u64 = 1_000_000;
const SEC: u64 = 1_000_000_000;

/// What to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadConfig {
    /// Worker threads in all (`--threads`).
    pub threads: u32,
    /// Threads per worker process (the last process gets the remainder).
    pub threads_per_process: u32,
    /// Remote-reader processes, in addition to the workers.
    pub remote_readers: u32,
    /// Seed of every thread's random stream.
    pub seed: u64,
}

impl LoadConfig {
    /// `threads` workers, 16 per process, a remote reader per two worker processes (1..=8).
    pub fn new(threads: u32, seed: u64) -> Self {
        let threads = threads.max(1);
        let threads_per_process = 16.min(threads);
        let processes = threads.div_ceil(threads_per_process);
        let remote_readers = (processes / 2).clamp(1, 8);
        LoadConfig {
            threads,
            threads_per_process,
            remote_readers,
            seed,
        }
    }

    /// Worker processes.
    pub fn processes(&self) -> u32 {
        self.threads.div_ceil(self.threads_per_process)
    }

    /// Tasks of the load at full strength: every worker thread and reader.
    pub fn tasks(&self) -> u64 {
        u64::from(self.threads + self.remote_readers)
    }

    /// Threads of worker process `slot`.
    fn threads_of(&self, slot: usize) -> u32 {
        let before = slot as u32 * self.threads_per_process;
        self.threads_per_process.min(self.threads - before)
    }
}

/// `oomlab run`, validated: the machine, the load, the seed and the time bound.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub machine: MachineConfig,
    pub load: LoadConfig,
    /// The seed of the workload (and of the sim executor's picker).
    pub seed: u64,
    /// The run's bound (`--duration`), executor time from the moment the load starts (the
    /// machine's boot before it is measured apart) to the verdict.
    pub duration_ns: u64,
    /// The host CPUs the tasks share on the threads executor; `None` on the sim, where the
    /// wind-down costs no host time.
    pub host_cpus: Option<usize>,
}

/// Host CPU time a killed task needs to get to exit on the threads executor, ns: with more
/// runnable threads than CPUs the host scheduler gives each a turn only every
/// `threads × slice / CPUs` (EEVDF's base slice is 0.75 ms × (1 + log2 CPUs)), and every
/// killed task needs one turn to see its SIGKILL and exit.
const EXIT_TURN_NS: u64 = MS;

impl RunConfig {
    /// The wind-down's share of the bound: 5% of it (between 50 ms and 3 s), or, when more
    /// tasks than that could get a host CPU turn each, `tasks × 1 ms / CPUs` (threads
    /// executor); at most half of the bound.
    pub fn winddown_ns(&self) -> u64 {
        let share = (self.duration_ns / 20).clamp(50 * MS, 3 * SEC);
        let turns = self.host_cpus.map_or(0, |cpus| {
            self.load.tasks() * EXIT_TURN_NS / cpus.max(1) as u64
        });
        share.max(turns).min(self.duration_ns / 2)
    }

    /// How long the load runs before it is stopped.
    pub fn load_ns(&self) -> u64 {
        self.duration_ns - self.winddown_ns()
    }
}

/// After an interrupt (SIGINT, SIGTERM, SIGHUP) the run winds down within this much executor
/// time, and its kthreads get [`INTERRUPT_KTHREADS_NS`] to stop: the report comes within 2 s.
pub const INTERRUPT_WINDDOWN_NS: u64 = 900 * MS;
/// See [`INTERRUPT_WINDDOWN_NS`].
pub const INTERRUPT_KTHREADS_NS: u64 = SEC;
/// Past the bound, the wind-down goes on while tasks are still exiting, for at most this
/// long (the bound is kept within a second)...
pub const GRACE_NS: u64 = SEC;
/// ...as long as at least one task exits in every this much time.
const GRACE_STEP_NS: u64 = 100 * MS;

/// The work counters of one worker thread. Only that thread writes them (a plain load and
/// store, no read-modify-write on the fault path); anyone may read them at any time, and once
/// the thread is gone or asleep they are exact.
#[derive(Debug, Default)]
pub struct WorkerStats {
    pub mmaps: AtomicU64,
    pub mmap_errors: AtomicU64,
    pub munmaps: AtomicU64,
    pub pages_touched: AtomicU64,
    pub remote_ok: AtomicU64,
    pub remote_failed: AtomicU64,
}

impl WorkerStats {
    /// Add `n` (single writer: this thread).
    #[inline]
    fn add(c: &AtomicU64, n: u64) {
        c.store(c.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    }

    fn counters(&self) -> [&AtomicU64; 6] {
        [
            &self.mmaps,
            &self.mmap_errors,
            &self.munmaps,
            &self.pages_touched,
            &self.remote_ok,
            &self.remote_failed,
        ]
    }
}

/// Work done, summed over every worker thread of the run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkTotals {
    pub mmaps: u64,
    pub mmap_errors: u64,
    pub munmaps: u64,
    pub pages_touched: u64,
    pub remote_ok: u64,
    pub remote_failed: u64,
}

impl WorkTotals {
    fn add(&mut self, w: &WorkerStats) {
        let v: Vec<u64> = w
            .counters()
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        self.mmaps += v[0];
        self.mmap_errors += v[1];
        self.munmaps += v[2];
        self.pages_touched += v[3];
        self.remote_ok += v[4];
        self.remote_failed += v[5];
    }
}

/// How the tasks of the load ended: every task started is in exactly one of `stopped`,
/// `killed` and `left`.
#[derive(Debug, Default)]
pub struct TaskStats {
    pub processes_started: AtomicU64,
    pub respawns: AtomicU64,
    /// Tasks created (processes and their threads).
    pub tasks_started: AtomicU64,
    /// Ended by the run's stop (the stop flag, or the wind-down's SIGKILL).
    pub tasks_stopped: AtomicU64,
    /// Ended during the load by SIGKILL (an OOM kill, a sysrq kill) or a fatal fault.
    pub tasks_killed: AtomicU64,
    /// Clones the host refused (`EAGAIN`: a thread limit such as `pids.max`).
    pub clones_refused: AtomicU64,
    /// Clones not made because the process was already being killed (`copy_process()`
    /// refuses a thread into an exiting group): not tasks, not errors.
    pub clones_into_dying: AtomicU64,
}

/// What the load did, for the report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    pub threads: u32,
    pub processes: u32,
    pub threads_per_process: u32,
    pub remote_readers: u32,
    /// Executor time the machine's boot took before the load started, ns.
    pub setup_ns: u64,
    /// Executor time at which the load started, was stopped, and the wind-down ended, ns.
    pub started_at_ns: u64,
    pub stopped_at_ns: u64,
    pub wound_down_at_ns: u64,
    /// The signal that interrupted the run, if one did.
    pub interrupted_by: Option<i32>,
    pub processes_started: u64,
    pub respawns: u64,
    pub tasks_started: u64,
    pub tasks_stopped: u64,
    pub tasks_killed: u64,
    /// Tasks still alive at the end (`tasks_started - tasks_stopped - tasks_killed`).
    pub tasks_left: u64,
    pub clones_refused: u64,
    pub clones_into_dying: u64,
    pub work: WorkTotals,
}

/// A remote window published by a worker process.
#[derive(Clone)]
struct Window {
    mm: Arc<MmStruct>,
    addr: u64,
    pages: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Worker,
    Reader,
}

struct Slot {
    role: Role,
    /// Index among the slots of its role.
    index: usize,
    generation: u64,
    group: Option<Arc<ThreadGroup>>,
}

impl Slot {
    /// The slot's process still has threads.
    fn alive(&self) -> bool {
        self.group.as_ref().is_some_and(|g| !g.threads().is_empty())
    }
}

/// A running load.
pub struct Load {
    cfg: LoadConfig,
    /// The machine it runs on (its knobs, pool and OOM killer).
    kernel: Arc<Kernel>,
    stop: AtomicBool,
    /// The processes, by slot. Held only for a read or a store, never across a fork: the
    /// driver takes it too, and a task thread preempted while holding it could keep it for
    /// seconds on a crowded host.
    slots: Mutex<Vec<Slot>>,
    /// Workload tasks alive (started, not yet ended): what the driver's wind-down watches,
    /// without a lock.
    alive: AtomicU64,
    tasks: TaskStats,
    /// Counter blocks of the live worker threads, and the sum of the exited ones'.
    workers: Mutex<(Vec<Arc<WorkerStats>>, WorkTotals)>,
    /// Remote windows by worker slot.
    windows: Mutex<Vec<Option<Window>>>,
    /// Per-thread resident-set target, pages (the fair share of the pool).
    fair_pages: u64,
}

impl Load {
    /// A load for the machine of `kernel`.
    pub fn new(cfg: LoadConfig, kernel: Arc<Kernel>) -> Arc<Load> {
        let fair_pages = (kernel.pool.total_pages() / u64::from(cfg.threads)).max(4);
        let slots = (0..cfg.processes() as usize)
            .map(|index| Slot {
                role: Role::Worker,
                index,
                generation: 0,
                group: None,
            })
            .chain((0..cfg.remote_readers as usize).map(|index| Slot {
                role: Role::Reader,
                index,
                generation: 0,
                group: None,
            }))
            .collect();
        Arc::new(Load {
            windows: Mutex::new(vec![None; cfg.processes() as usize]),
            slots: Mutex::new(slots),
            cfg,
            kernel,
            stop: AtomicBool::new(false),
            alive: AtomicU64::new(0),
            tasks: TaskStats::default(),
            workers: Mutex::new((Vec::new(), WorkTotals::default())),
            fair_pages,
        })
    }

    pub fn config(&self) -> &LoadConfig {
        &self.cfg
    }
    pub fn task_stats(&self) -> &TaskStats {
        &self.tasks
    }
    /// The stop flag is set (the loops end at their next check).
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Work so far, summed over every worker thread (exact once they are quiescent).
    pub fn work(&self) -> WorkTotals {
        let w = self.workers.lock();
        let mut t = w.1;
        for s in &w.0 {
            t.add(s);
        }
        t
    }

    /// Stop the load: the loops end at their next check, the supervisor starts nothing more
    /// (a process it publishes after this, it kills itself: see [`Load::supervise`]).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// SIGKILL every workload process published so far (the driver's wind-down; callable from
    /// outside the machine). Returns how many were alive.
    pub fn kill_all(&self) -> usize {
        let groups: Vec<Arc<ThreadGroup>> = self
            .slots
            .lock()
            .iter()
            .filter_map(|s| s.group.clone())
            .collect();
        let mut n = 0;
        for g in groups.iter().filter(|g| !g.threads().is_empty()) {
            kill_thread_group(Signal::Kill, g);
            n += 1;
        }
        n
    }

    /// Workload tasks alive: started and not yet ended.
    pub fn tasks_alive(&self) -> u64 {
        self.alive.load(Ordering::SeqCst)
    }

    /// The report (complete once the run is over).
    pub fn report(&self) -> LoadReport {
        let ld = |a: &AtomicU64| a.load(Ordering::SeqCst);
        let t = &self.tasks;
        let (started, stopped, killed) = (
            ld(&t.tasks_started),
            ld(&t.tasks_stopped),
            ld(&t.tasks_killed),
        );
        LoadReport {
            threads: self.cfg.threads,
            processes: self.cfg.processes(),
            threads_per_process: self.cfg.threads_per_process,
            remote_readers: self.cfg.remote_readers,
            processes_started: ld(&t.processes_started),
            respawns: ld(&t.respawns),
            tasks_started: started,
            tasks_stopped: stopped,
            tasks_killed: killed,
            tasks_left: started - stopped - killed,
            clones_refused: ld(&t.clones_refused),
            clones_into_dying: ld(&t.clones_into_dying),
            work: self.work(),
            ..LoadReport::default()
        }
    }

    /// The supervisor's body; run it in an emulated task without an address space.
    pub fn supervise(self: &Arc<Self>) {
        let n = self.slots.lock().len();
        for i in 0..n {
            if self.stopping() {
                break;
            }
            self.start(i, false);
        }
        let tick = sched::msecs_to_jiffies(SUPERVISOR_TICK_MS);
        // Respawn scans start one slot further each tick, so that no slot is favoured.
        let mut first = 0usize;
        loop {
            sched::schedule_timeout_interruptible(tick);
            if self.stopping() || self.kernel.panicked().is_some() {
                break;
            }
            for i in 0..n {
                let idx = (first + i) % n;
                if self.stopping() {
                    break;
                }
                if !self.slots.lock()[idx].alive() {
                    self.start(idx, true);
                }
            }
            first = (first + 1) % n;
        }
        // Drop the published address spaces (the struct references, not mm_users).
        self.windows.lock().iter_mut().for_each(|w| *w = None);
    }

    /// Start the process of slot `idx` (a fork from the supervisor), publish it, and kill
    /// it at once if the load was stopped meanwhile: the driver's [`Load::kill_all`] either
    /// saw it published or the stop flag is seen here (both sides use SeqCst).
    fn start(self: &Arc<Self>, idx: usize, respawn: bool) {
        let load = self.clone();
        let (role, index, generation) = {
            let mut slots = self.slots.lock();
            let slot = &mut slots[idx];
            if respawn {
                slot.generation += 1;
            }
            (slot.role, slot.index, slot.generation)
        };
        if respawn {
            self.tasks.respawns.fetch_add(1, Ordering::Relaxed);
        }
        let (comm, body): (String, Box<dyn FnOnce() + Send>) = match role {
            Role::Worker => (
                format!("worker-{index}"),
                Box::new(move || load.worker_process(index, generation)),
            ),
            Role::Reader => (
                format!("reader-{index}"),
                Box::new(move || load.reader_process(index, generation)),
            ),
        };
        // Counted alive before it can run (and end).
        self.alive.fetch_add(1, Ordering::SeqCst);
        match sched::spawn(CloneKind::Process { comm }, body) {
            Ok(t) => {
                self.tasks.processes_started.fetch_add(1, Ordering::Relaxed);
                self.tasks.tasks_started.fetch_add(1, Ordering::Relaxed);
                let g = t.group().clone();
                self.slots.lock()[idx].group = Some(g.clone());
                if self.stopping() {
                    kill_thread_group(Signal::Kill, &g);
                }
            }
            // The host refused the thread (or no pid is free): the slot stays empty and the
            // next tick tries again.
            Err(_) => {
                self.alive.fetch_sub(1, Ordering::SeqCst);
                self.tasks.clones_refused.fetch_add(1, Ordering::Relaxed);
                self.slots.lock()[idx].group = None;
            }
        }
    }

    /// A new address space for the current task (`execve`).
    fn exec(&self) -> Arc<MmStruct> {
        self.kernel.exec_new_mm()
    }

    /// Register a worker thread's counter block.
    fn worker_stats(&self) -> Arc<WorkerStats> {
        let s = Arc::new(WorkerStats::default());
        self.workers.lock().0.push(s.clone());
        s
    }

    /// A worker thread ended: fold its counters into the total and classify its end.
    fn worker_done(&self, stats: &Arc<WorkerStats>, end: Step) {
        {
            let mut w = self.workers.lock();
            w.1.add(stats);
            w.0.retain(|s| !Arc::ptr_eq(s, stats));
        }
        // After the stop every end is the run's doing (the stop flag, or the wind-down's
        // SIGKILL); before it, only a kill (an OOM kill) or a fatal fault ends a task.
        let class = match end {
            _ if self.stopping() => &self.tasks.tasks_stopped,
            Ok(()) => &self.tasks.tasks_stopped,
            Err(Exit) => &self.tasks.tasks_killed,
        };
        class.fetch_add(1, Ordering::SeqCst);
        self.alive.fetch_sub(1, Ordering::SeqCst);
    }

    fn worker_process(self: &Arc<Self>, index: usize, generation: u64) {
        let stats = self.worker_stats();
        let mm = self.exec();
        let tgid: Tgid = sched::with_current(|t| t.tgid());
        for thread in 1..self.cfg.threads_of(index) {
            let load = self.clone();
            self.alive.fetch_add(1, Ordering::SeqCst);
            let spawned = sched::spawn(CloneKind::Thread { tgid }, move || {
                let stats = load.worker_stats();
                let end = match sched::with_current(|t| t.mm()) {
                    Some(mm) => load.worker_loop(&mm, index, generation, thread, &stats),
                    // The group's address space is already gone: it is being killed.
                    None => Err(Exit),
                };
                load.worker_done(&stats, end);
            });
            match spawned {
                Ok(_) => {
                    self.tasks.tasks_started.fetch_add(1, Ordering::Relaxed);
                }
                // The process is being killed (copy_process refuses a group exit): stop cloning.
                Err(CloneError::NoSuchProcess(_)) => {
                    self.alive.fetch_sub(1, Ordering::SeqCst);
                    let rest = u64::from(self.cfg.threads_of(index) - thread);
                    self.tasks
                        .clones_into_dying
                        .fetch_add(rest, Ordering::Relaxed);
                    break;
                }
                // The host refused the thread: run with the threads there are.
                Err(CloneError::Again) => {
                    self.alive.fetch_sub(1, Ordering::SeqCst);
                    self.tasks.clones_refused.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        let end = self.worker_loop(&mm, index, generation, 0, &stats);
        self.worker_done(&stats, end);
    }

    fn worker_loop(
        &self,
        mm: &Arc<MmStruct>,
        index: usize,
        generation: u64,
        thread: u32,
        stats: &WorkerStats,
    ) -> Step {
        let mut rng = Rng::new(
            self.cfg.seed,
            1,
            index as u64,
            generation,
            u64::from(thread),
        );
        let keeps_window = thread == 0;
        // This thread's resident-set target: 1..=3 fair shares (2 on average), so the whole
        // load wants about twice the machine's memory.
        let target = self.fair_pages * (1 + rng.below(3));
        let chunk_max = (self.fair_pages / 4).clamp(1, 64);
        let mut held: Vec<(u64, u64)> = Vec::new();
        let mut held_pages = 0u64;
        let mut window: Option<u64> = None;
        let mut iteration = 0u64;
        loop {
            if self.stopping() {
                return Ok(());
            }
            if keeps_window && iteration.is_multiple_of(WINDOW_RECYCLE_EVERY) {
                window = self.recycle_window(mm, index, window, stats)?;
            }
            iteration += 1;
            let r = rng.next();
            if !held.is_empty() && (held_pages >= target || r.is_multiple_of(8)) {
                let (addr, pages) = held.swap_remove(rng.below(held.len() as u64) as usize);
                held_pages -= pages;
                self.munmap(mm, addr, pages, stats)?;
                continue;
            }
            let pages = 1 + rng.below(chunk_max);
            match self.mmap(mm, pages, stats)? {
                Ok(addr) => {
                    let touched = touch_pages_counting(mm, addr, pages);
                    WorkerStats::add(&stats.pages_touched, touched.pages);
                    touched.end?;
                    held.push((addr, pages));
                    held_pages += pages;
                }
                Err(_) => sleep_ms(1)?,
            }
        }
    }

    /// `mmap()` of `pages` private anonymous pages, counted as the kernel counts the call
    /// (before the return to user space, which may end the task).
    fn mmap(&self, mm: &MmStruct, pages: u64, stats: &WorkerStats) -> Step<Result<u64, Errno>> {
        let r = mmap(
            mm,
            0,
            pages * PAGE_SIZE,
            PROT_READ | PROT_WRITE,
            MAP_ANONYMOUS | MAP_PRIVATE,
        );
        match r {
            Ok(_) => WorkerStats::add(&stats.mmaps, 1),
            Err(_) => WorkerStats::add(&stats.mmap_errors, 1),
        }
        ret_to_user()?;
        Ok(r)
    }

    /// `munmap()`, counted as [`Load::mmap`] is.
    fn munmap(&self, mm: &MmStruct, addr: u64, pages: u64, stats: &WorkerStats) -> Step {
        let _ = munmap(mm, addr, pages * PAGE_SIZE);
        WorkerStats::add(&stats.munmaps, 1);
        ret_to_user()
    }

    /// Replace the remote window of worker slot `index`: munmap the old one (a `mmap_lock`
    /// write, the munmap of the L1 chain), map a fresh untouched one, publish it.
    fn recycle_window(
        &self,
        mm: &Arc<MmStruct>,
        index: usize,
        old: Option<u64>,
        stats: &WorkerStats,
    ) -> Step<Option<u64>> {
        if let Some(addr) = old {
            self.munmap(mm, addr, WINDOW_PAGES, stats)?;
        }
        let Ok(addr) = self.mmap(mm, WINDOW_PAGES, stats)? else {
            self.windows.lock()[index] = None;
            return Ok(None);
        };
        self.windows.lock()[index] = Some(Window {
            mm: mm.clone(),
            addr,
            pages: WINDOW_PAGES,
        });
        Ok(Some(addr))
    }

    fn reader_process(self: &Arc<Self>, index: usize, generation: u64) {
        let stats = self.worker_stats();
        // A process of its own (as a /proc reader or a debugger is), with an empty mm.
        let _mm = self.exec();
        let mut rng = Rng::new(self.cfg.seed, 2, index as u64, generation, 0);
        let end = self.reader_loop(&mut rng, &stats);
        self.worker_done(&stats, end);
    }

    fn reader_loop(&self, rng: &mut Rng, stats: &WorkerStats) -> Step {
        loop {
            if self.stopping() {
                return Ok(());
            }
            let target = {
                let w = self.windows.lock();
                let n = w.len();
                let start = rng.below(n as u64) as usize;
                (0..n).find_map(|i| w[(start + i) % n].clone())
            };
            let Some(win) = target else {
                sleep_ms(SUPERVISOR_TICK_MS)?;
                continue;
            };
            let first = rng.below(win.pages);
            let pages = 1 + rng.below(win.pages - first);
            let addr = win.addr + first * PAGE_SIZE;
            // process_vm_writev(): the target's untouched pages are allocated while its
            // mmap_lock is held for read.
            let mut buf = vec![0x5au8; (pages * PAGE_SIZE) as usize];
            match access_process_vm(&win.mm, addr, &mut buf, true) {
                Ok(_) => WorkerStats::add(&stats.remote_ok, 1),
                Err(_) => WorkerStats::add(&stats.remote_failed, 1),
            }
            drop(win);
            ret_to_user()?;
            sleep_ms(1 + rng.below(4))?;
        }
    }
}

/// A booted machine with its load, ready to run: [`LoadRun::boot`], then (optionally) watch
/// [`LoadRun::kernel`] and [`LoadRun::load`] from another thread, then [`LoadRun::run`].
pub struct LoadRun<E: Executor> {
    machine: Machine<E>,
    load: Arc<Load>,
    rc: RunConfig,
    setup_ns: u64,
}

impl<E: Executor> LoadRun<E> {
    /// Boot the machine of `rc` on `exec` (the frame pool is created and pre-faulted, the
    /// kthreads start); the load does not run yet.
    pub fn boot(exec: E, rc: &RunConfig) -> Result<Self, PoolError> {
        let machine = Machine::boot(exec, rc.machine.clone())?;
        let load = Load::new(rc.load.clone(), machine.kernel().clone());
        let setup_ns = machine.now_ns();
        Ok(LoadRun {
            machine,
            load,
            rc: rc.clone(),
            setup_ns,
        })
    }

    /// The machine's kernel (its counters, log and frame pool).
    pub fn kernel(&self) -> &Arc<Kernel> {
        self.machine.kernel()
    }

    /// The load (its counters).
    pub fn load(&self) -> &Arc<Load> {
        &self.load
    }

    /// The executor's clock (the load starts at about its value now, when [`LoadRun::run`]
    /// is called), readable from a watching host thread.
    pub fn clock(&self) -> mm::sched::Clock {
        self.machine.clock()
    }

    /// The run's configuration.
    pub fn config(&self) -> &RunConfig {
        &self.rc
    }

    /// Run the load within the bound and report. `interrupt` holds the number of a signal
    /// that asks the run to end early (0: none); it is looked at as the run goes.
    pub fn run(mut self, interrupt: &AtomicI32) -> Report {
        let rc = self.rc.clone();
        let load = self.load.clone();
        let k = self.machine.kernel().clone();
        let start = self.machine.now_ns();
        let l = load.clone();
        self.machine
            .spawn(
                CloneKind::Process {
                    comm: "loadgen".into(),
                },
                move || l.supervise(),
            )
            .expect("starting the load supervisor");
        // The load phase: until the load's share of the bound is used, an interrupt, or a
        // modelled panic.
        let interrupted = || interrupt.load(Ordering::SeqCst) != 0;
        let end = self
            .machine
            .run_workload(start.saturating_add(rc.load_ns()), |_| interrupted());
        let stopped_at = self.machine.now_ns();
        load.stop();
        // The wind-down: every workload process is SIGKILLed; their tasks exit (dying tasks
        // that allocate get the OOM victims' reserves, §2.1 step 3) until none is left or the
        // bound passes. After a panic the machine is dead: nothing would wind down.
        let end = match end {
            WorkloadEnd::Panicked | WorkloadEnd::Deadlock => end,
            WorkloadEnd::Done | WorkloadEnd::TimeLimit => {
                load.kill_all();
                let bound = if interrupted() {
                    stopped_at.saturating_add(INTERRUPT_WINDDOWN_NS)
                } else {
                    start.saturating_add(rc.duration_ns)
                };
                let l = load.clone();
                let mut end = self.machine.run_workload(bound, |_| l.tasks_alive() == 0);
                // Tasks still exiting at the bound (on a crowded host, killed tasks wait for a
                // CPU): up to GRACE_NS more, for as long as some exit in every GRACE_STEP_NS.
                let grace_end = bound.saturating_add(GRACE_NS);
                while end == WorkloadEnd::TimeLimit && self.machine.now_ns() < grace_end {
                    let before = l.tasks_alive();
                    let step = self.machine.now_ns().saturating_add(GRACE_STEP_NS);
                    end = self
                        .machine
                        .run_workload(step.min(grace_end), |_| l.tasks_alive() == 0);
                    if end == WorkloadEnd::TimeLimit && l.tasks_alive() == before {
                        break;
                    }
                }
                end
            }
        };
        let wound_down_at = self.machine.now_ns();
        // The kthreads exit at their next wake-up; a reaper in the middle of its retries
        // finishes them first. The sim's own time bound covers it there.
        let kthread_bound_ns = if self.machine.exec().is_deterministic() {
            u64::MAX
        } else if interrupted() {
            INTERRUPT_KTHREADS_NS
        } else {
            SEC + rc.machine.reaper().map_or(0, |r| {
                r.interval_ms
                    .saturating_mul(u64::from(r.retries))
                    .saturating_mul(MS)
            })
        };
        let mut report = load.report();
        drop(k);
        let mut f = self.machine.finish(end, kthread_bound_ns);
        // Counters again, now that every task that could exit has: exact.
        report.work = load.work();
        let after = load.report();
        report.tasks_stopped = after.tasks_stopped;
        report.tasks_killed = after.tasks_killed;
        report.tasks_left = after.tasks_left;
        report.setup_ns = self.setup_ns;
        report.started_at_ns = start;
        report.stopped_at_ns = stopped_at;
        report.wound_down_at_ns = wound_down_at;
        let signal = interrupt.load(Ordering::SeqCst);
        if signal != 0 {
            report.interrupted_by = Some(signal);
            if !matches!(f.verdict, Verdict::EmulatorBug { .. }) {
                f.verdict = Verdict::Interrupted { signal };
            }
        }
        drop(load);
        let wall_ns = (!f.deterministic).then_some(f.end_ns);
        Report::new(
            Workload::Run {
                load: report,
                bound_ns: rc.duration_ns,
            },
            rc.seed,
            f,
            Vec::new(),
            wall_ns,
        )
    }
}

/// Run the load of `rc` on a machine booted on `exec`, without interruption.
pub fn run<E: Executor>(exec: E, rc: &RunConfig) -> Result<Report, PoolError> {
    Ok(LoadRun::boot(exec, rc)?.run(&AtomicI32::new(0)))
}

/// SplitMix64 (Steele, Lea, Flood 2014): one small stream per thread.
struct Rng(u64);

impl Rng {
    fn new(seed: u64, role: u64, index: u64, generation: u64, thread: u64) -> Self {
        let mut r = Rng(seed);
        for part in [role, index, generation, thread] {
            r.0 ^= part;
            r.next();
        }
        r
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform-enough in `0..n` (`n` > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_are_spread_over_processes() {
        let c = LoadConfig::new(256, 0);
        assert_eq!((c.processes(), c.threads_per_process), (16, 16));
        assert_eq!(c.remote_readers, 8);
        let c = LoadConfig::new(40, 0);
        assert_eq!(c.processes(), 3);
        let per: Vec<u32> = (0..3).map(|s| c.threads_of(s)).collect();
        assert_eq!(per, [16, 16, 8]);
        let c = LoadConfig::new(5, 0);
        assert_eq!(
            (c.processes(), c.threads_of(0), c.remote_readers),
            (1, 5, 1)
        );
    }

    #[test]
    fn the_bound_keeps_a_winddown_share() {
        let rc = |d: u64| RunConfig {
            machine: MachineConfig::sim(16 << 20),
            load: LoadConfig::new(4, 0),
            seed: 0,
            duration_ns: d,
            host_cpus: None,
        };
        assert_eq!(rc(60 * SEC).winddown_ns(), 3 * SEC);
        assert_eq!(rc(60 * SEC).load_ns(), 57 * SEC);
        assert_eq!(rc(3 * SEC).load_ns(), 2850 * MS);
        assert_eq!(rc(60 * MS).load_ns(), 30 * MS);
        // 4096 + 8 tasks on 2 CPUs: a turn each needs about 2 s.
        let big = RunConfig {
            load: LoadConfig::new(4096, 0),
            host_cpus: Some(2),
            ..rc(5 * SEC)
        };
        assert_eq!(big.winddown_ns(), 2052 * MS);
        assert_eq!(
            RunConfig {
                duration_ns: 2 * SEC,
                ..big
            }
            .winddown_ns(),
            SEC
        );
    }

    #[test]
    fn rng_streams_differ_per_thread() {
        let a: Vec<u64> = (0..4).map(|_| Rng::new(1, 1, 0, 0, 0).next()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(
            Rng::new(1, 1, 0, 0, 0).next(),
            Rng::new(1, 1, 0, 0, 1).next()
        );
        assert_ne!(
            Rng::new(1, 1, 0, 0, 0).next(),
            Rng::new(2, 1, 0, 0, 0).next()
        );
    }
}
