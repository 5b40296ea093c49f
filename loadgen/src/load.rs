//! The load generator of `oomlab run`: many threads faulting pages and doing mmap/munmap in
//! tight loops until memory pressure sets in, remote readers that make the classic L1 chain
//! (docs/oom-rules.md §6: a foreign task holds the victim's `mmap_lock` for read while it
//! allocates), and a supervisor that respawns killed processes so the pressure keeps coming.
//!
//! Shape of a run, on either executor (everything goes through the scheduler seam, so the
//! sim executor replays it exactly from the seed):
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
//!   candidate — like init restarting services): starts every process, respawns a process
//!   once all its threads have exited, and at `load_end_ns` stops the load: sets the stop
//!   flag the loops check, SIGKILLs what is left one tick later, and waits (at most
//!   `drain_ns`) until every workload task has exited.
//!
//! Respawns are bounded by a budget of tasks created over the whole run (`tasks_max`),
//! released evenly over the load phase so that the pressure lasts until the end. The bound is
//! the threads executor's: every task is an OS thread whose stack stays mapped until the
//! executor joins it at the end of the run, two mappings each, under the host's
//! `vm.max_map_count` (65530 by default).
//!
//! Randomness: each thread has its own SplitMix64 stream derived from the run's seed and the
//! thread's (slot, generation, index); nothing depends on host timing except, on the threads
//! executor, the interleaving itself.
//!
//! This module does no I/O: the binary prints [`LoadReport`].

use crate::report::{Report, Workload};
use crate::user::{map, remote_write, sleep_ms, touch_pages, unmap, Exit, Step};
use mm::mm_types::MmStruct;
use mm::page_alloc::PoolError;
use mm::pgtable::PAGE_SIZE;
use mm::sched::{self, Executor};
use mm::task::{kill_thread_group, CloneKind, Signal, Tgid, ThreadGroup};
use parking_lot::Mutex;
use reaper::machine::{Kernel, Machine, MachineConfig, WorkloadEnd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// Pages in a process's remote window.
pub const WINDOW_PAGES: u64 = 64;
/// Thread 0 of a worker process re-creates its remote window every this many iterations.
pub const WINDOW_RECYCLE_EVERY: u64 = 64;
/// Threads publish their counters every this many iterations.
const FLUSH_EVERY: u64 = 64;
/// The supervisor's period, ms.
const SUPERVISOR_TICK_MS: u64 = 10;

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
    /// Executor time (ns since the executor started) at which the load stops.
    pub load_end_ns: u64,
    /// How long the wind-down may take before it is given up, ns.
    pub drain_ns: u64,
    /// Tasks the load may create over the whole run, initial ones included.
    pub tasks_max: u64,
}

/// Default [`LoadConfig::tasks_max`]: 2 × 12288 thread-stack mappings stay well under the
/// host's default `vm.max_map_count` of 65530.
pub const TASKS_MAX: u64 = 12_288;

impl LoadConfig {
    /// `threads` workers, 16 per process, a remote reader per two worker processes (1..=8),
    /// at most [`TASKS_MAX`] tasks created over the run.
    pub fn new(threads: u32, seed: u64, load_end_ns: u64, drain_ns: u64) -> Self {
        let threads = threads.max(1);
        let threads_per_process = 16.min(threads);
        let processes = threads.div_ceil(threads_per_process);
        let remote_readers = (processes / 2).clamp(1, 8);
        LoadConfig {
            threads,
            threads_per_process,
            remote_readers,
            seed,
            load_end_ns,
            drain_ns,
            tasks_max: TASKS_MAX,
        }
    }

    /// Worker processes.
    pub fn processes(&self) -> u32 {
        self.threads.div_ceil(self.threads_per_process)
    }

    /// Tasks of the initial processes.
    pub fn initial_tasks(&self) -> u64 {
        u64::from(self.threads + self.remote_readers)
    }

    /// Tasks the load may have created by executor time `now_ns`: the initial ones, plus the
    /// rest of the budget released evenly until `load_end_ns`.
    fn tasks_allowed(&self, now_ns: u64) -> u64 {
        let initial = self.initial_tasks();
        let rest = self.tasks_max.saturating_sub(initial) as u128;
        let t = now_ns.min(self.load_end_ns) as u128;
        let released = rest * t / (self.load_end_ns.max(1) as u128);
        initial + released as u64
    }

    /// Threads of worker process `slot`.
    fn threads_of(&self, slot: usize) -> u32 {
        let before = slot as u32 * self.threads_per_process;
        self.threads_per_process.min(self.threads - before)
    }
}

/// Load counters (plain atomics; threads add their local counts when they exit).
#[derive(Default, Debug)]
pub struct LoadStats {
    pub processes_spawned: AtomicU64,
    /// Tasks (threads) created, initial ones included.
    pub tasks_spawned: AtomicU64,
    pub respawns: AtomicU64,
    pub mmaps: AtomicU64,
    pub mmap_errors: AtomicU64,
    pub munmaps: AtomicU64,
    pub pages_touched: AtomicU64,
    pub remote_ok: AtomicU64,
    pub remote_failed: AtomicU64,
    /// Threads that ended because they were killed (SIGKILL or a fatal fault).
    pub threads_killed: AtomicU64,
    /// Threads that ended at the stop flag.
    pub threads_stopped: AtomicU64,
}

/// What the load did, for the report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    pub threads: u32,
    pub processes: u32,
    pub threads_per_process: u32,
    pub remote_readers: u32,
    pub processes_spawned: u64,
    pub tasks_spawned: u64,
    pub tasks_max: u64,
    pub respawns: u64,
    pub mmaps: u64,
    pub mmap_errors: u64,
    pub munmaps: u64,
    pub pages_touched: u64,
    pub remote_ok: u64,
    pub remote_failed: u64,
    pub threads_killed: u64,
    pub threads_stopped: u64,
    /// Executor time at which the load was stopped, ns.
    pub stopped_at_ns: u64,
    /// Executor time at which the wind-down ended, ns.
    pub wound_down_at_ns: u64,
    /// Workload processes still alive when the wind-down was given up (0 normally).
    pub processes_left: usize,
    /// The load stopped early because the machine panicked.
    pub stopped_by_panic: bool,
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

/// A running load.
pub struct Load {
    cfg: LoadConfig,
    /// The machine it runs on (its knobs, pool and OOM killer).
    kernel: Arc<Kernel>,
    stop: AtomicBool,
    finished: AtomicBool,
    stats: LoadStats,
    /// Remote windows by worker slot.
    windows: Mutex<Vec<Option<Window>>>,
    /// Per-thread resident-set target, pages (the fair share of the pool).
    fair_pages: u64,
    report: Mutex<LoadReport>,
}

impl Load {
    /// A load for the machine of `kernel`.
    pub fn new(cfg: LoadConfig, kernel: Arc<Kernel>) -> Arc<Load> {
        let fair_pages = (kernel.pool.total_pages() / u64::from(cfg.threads)).max(4);
        Arc::new(Load {
            windows: Mutex::new(vec![None; cfg.processes() as usize]),
            cfg,
            kernel,
            stop: AtomicBool::new(false),
            finished: AtomicBool::new(false),
            stats: LoadStats::default(),
            fair_pages,
            report: Mutex::new(LoadReport::default()),
        })
    }

    pub fn config(&self) -> &LoadConfig {
        &self.cfg
    }
    pub fn stats(&self) -> &LoadStats {
        &self.stats
    }
    /// The stop flag is set (the loops end at their next check).
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
    /// The supervisor has finished: the load is stopped and wound down (or given up on).
    pub fn finished(&self) -> bool {
        self.finished.load(Ordering::SeqCst)
    }

    /// The report; complete once [`Load::finished`].
    pub fn report(&self) -> LoadReport {
        let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let s = &self.stats;
        LoadReport {
            threads: self.cfg.threads,
            processes: self.cfg.processes(),
            threads_per_process: self.cfg.threads_per_process,
            remote_readers: self.cfg.remote_readers,
            processes_spawned: ld(&s.processes_spawned),
            tasks_spawned: ld(&s.tasks_spawned),
            tasks_max: self.cfg.tasks_max,
            respawns: ld(&s.respawns),
            mmaps: ld(&s.mmaps),
            mmap_errors: ld(&s.mmap_errors),
            munmaps: ld(&s.munmaps),
            pages_touched: ld(&s.pages_touched),
            remote_ok: ld(&s.remote_ok),
            remote_failed: ld(&s.remote_failed),
            threads_killed: ld(&s.threads_killed),
            threads_stopped: ld(&s.threads_stopped),
            ..self.report.lock().clone()
        }
    }

    /// The supervisor's body; run it in an emulated task without an address space.
    pub fn supervise(self: &Arc<Self>) {
        let mut slots: Vec<Slot> = (0..self.cfg.processes() as usize)
            .map(|index| Slot {
                role: Role::Worker,
                index,
                generation: 0,
                group: None,
            })
            .chain((0..self.cfg.remote_readers as usize).map(|index| Slot {
                role: Role::Reader,
                index,
                generation: 0,
                group: None,
            }))
            .collect();
        for slot in &mut slots {
            self.start(slot);
        }
        let tick = sched::msecs_to_jiffies(SUPERVISOR_TICK_MS);
        // Respawn scans start one slot further each tick, so that a short budget is shared.
        let mut first = 0usize;
        let panicked = loop {
            sched::schedule_timeout_interruptible(tick);
            if self.kernel.panicked().is_some() {
                break true;
            }
            if sched::ktime_get_ns() >= self.cfg.load_end_ns {
                break false;
            }
            let allowed = self.cfg.tasks_allowed(sched::ktime_get_ns());
            let n = slots.len();
            for i in 0..n {
                let slot = &mut slots[(first + i) % n];
                let cost = u64::from(self.tasks_of(slot));
                if alive(slot) {
                    continue;
                }
                if self.stats.tasks_spawned.load(Ordering::Relaxed) + cost > allowed {
                    break;
                }
                self.stats.respawns.fetch_add(1, Ordering::Relaxed);
                slot.generation += 1;
                self.start(slot);
            }
            first = (first + 1) % n;
        };
        self.stop.store(true, Ordering::SeqCst);
        let stopped_at_ns = sched::ktime_get_ns();
        let mut left = slots.iter().filter(|s| alive(s)).count();
        // After an emulated panic the machine is dead (the panicking task holds oom_lock
        // for good): nothing would wind down, so the run ends here.
        if !panicked {
            let give_up_ns = stopped_at_ns.saturating_add(self.cfg.drain_ns);
            // One tick for the loops to see the flag, then SIGKILL whatever is left.
            sched::schedule_timeout_interruptible(tick);
            for s in &slots {
                if let Some(g) = s.group.as_ref().filter(|_| alive(s)) {
                    kill_thread_group(Signal::Kill, g);
                }
            }
            loop {
                left = slots.iter().filter(|s| alive(s)).count();
                if left == 0 || sched::ktime_get_ns() >= give_up_ns {
                    break;
                }
                sched::schedule_timeout_interruptible(tick);
            }
        }
        // Drop the published address spaces (the struct references, not mm_users).
        self.windows.lock().iter_mut().for_each(|w| *w = None);
        {
            let mut r = self.report.lock();
            r.stopped_at_ns = stopped_at_ns;
            r.wound_down_at_ns = sched::ktime_get_ns();
            r.processes_left = left;
            r.stopped_by_panic = panicked;
        }
        self.finished.store(true, Ordering::SeqCst);
    }

    /// Tasks the process of `slot` runs.
    fn tasks_of(&self, slot: &Slot) -> u32 {
        match slot.role {
            Role::Worker => self.cfg.threads_of(slot.index),
            Role::Reader => 1,
        }
    }

    /// Start the process of `slot` (a fork from the supervisor). Its tasks are charged to
    /// the budget here, whether or not they all get created.
    fn start(self: &Arc<Self>, slot: &mut Slot) {
        self.stats
            .tasks_spawned
            .fetch_add(u64::from(self.tasks_of(slot)), Ordering::Relaxed);
        let load = self.clone();
        let (index, generation) = (slot.index, slot.generation);
        let (comm, body): (String, Box<dyn FnOnce() + Send>) = match slot.role {
            Role::Worker => (
                format!("worker-{index}"),
                Box::new(move || load.worker_process(index, generation)),
            ),
            Role::Reader => (
                format!("reader-{index}"),
                Box::new(move || load.reader_process(index, generation)),
            ),
        };
        match sched::spawn(CloneKind::Process { comm }, body) {
            Ok(t) => {
                self.stats.processes_spawned.fetch_add(1, Ordering::Relaxed);
                slot.group = Some(t.group().clone());
            }
            // A fork never fails for a new process; keep the slot empty if it ever does.
            Err(_) => slot.group = None,
        }
    }

    /// A new address space for the current task (`execve`).
    fn exec(&self) -> Arc<MmStruct> {
        self.kernel.exec_new_mm()
    }

    fn worker_process(self: &Arc<Self>, index: usize, generation: u64) {
        let mm = self.exec();
        let tgid: Tgid = sched::with_current(|t| t.tgid());
        for thread in 1..self.cfg.threads_of(index) {
            let load = self.clone();
            let spawned = sched::spawn(CloneKind::Thread { tgid }, move || {
                let Some(mm) = sched::with_current(|t| t.mm()) else {
                    return;
                };
                load.worker_thread(&mm, index, generation, thread);
            });
            // The process is being killed (copy_process refuses a group exit): stop cloning.
            if spawned.is_err() {
                break;
            }
        }
        self.worker_thread(&mm, index, generation, 0);
    }

    fn worker_thread(&self, mm: &Arc<MmStruct>, index: usize, generation: u64, thread: u32) {
        let mut rng = Rng::new(
            self.cfg.seed,
            1,
            index as u64,
            generation,
            u64::from(thread),
        );
        let mut local = Local::new(&self.stats);
        let end = self.worker_loop(mm, index, thread == 0, &mut rng, &mut local);
        match end {
            Ok(()) => local.threads_stopped += 1,
            Err(Exit) => local.threads_killed += 1,
        }
    }

    fn worker_loop(
        &self,
        mm: &Arc<MmStruct>,
        index: usize,
        keeps_window: bool,
        rng: &mut Rng,
        local: &mut Local,
    ) -> Step {
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
            if iteration % FLUSH_EVERY == 0 {
                local.flush();
            }
            if keeps_window && iteration % WINDOW_RECYCLE_EVERY == 0 {
                window = self.recycle_window(mm, index, window, local)?;
            }
            iteration += 1;
            let r = rng.next();
            if !held.is_empty() && (held_pages >= target || r % 8 == 0) {
                let (addr, pages) = held.swap_remove(rng.below(held.len() as u64) as usize);
                held_pages -= pages;
                let _ = unmap(mm, addr, pages)?;
                local.munmaps += 1;
                continue;
            }
            let pages = 1 + rng.below(chunk_max);
            match map(mm, pages, false)? {
                Ok(addr) => {
                    local.mmaps += 1;
                    touch_pages(mm, addr, pages)?;
                    local.pages_touched += pages;
                    held.push((addr, pages));
                    held_pages += pages;
                }
                Err(_) => {
                    local.mmap_errors += 1;
                    sleep_ms(1)?;
                }
            }
        }
    }

    /// Replace the remote window of worker slot `index`: munmap the old one (a `mmap_lock`
    /// write, the munmap of the L1 chain), map a fresh untouched one, publish it.
    fn recycle_window(
        &self,
        mm: &Arc<MmStruct>,
        index: usize,
        old: Option<u64>,
        local: &mut Local,
    ) -> Step<Option<u64>> {
        if let Some(addr) = old {
            let _ = unmap(mm, addr, WINDOW_PAGES)?;
            local.munmaps += 1;
        }
        let addr = match map(mm, WINDOW_PAGES, false)? {
            Ok(a) => a,
            Err(_) => {
                local.mmap_errors += 1;
                self.windows.lock()[index] = None;
                return Ok(None);
            }
        };
        local.mmaps += 1;
        self.windows.lock()[index] = Some(Window {
            mm: mm.clone(),
            addr,
            pages: WINDOW_PAGES,
        });
        Ok(Some(addr))
    }

    fn reader_process(self: &Arc<Self>, index: usize, generation: u64) {
        // A process of its own (as a /proc reader or a debugger is), with an empty mm.
        let _mm = self.exec();
        let mut rng = Rng::new(self.cfg.seed, 2, index as u64, generation, 0);
        let mut local = Local::new(&self.stats);
        match self.reader_loop(&mut rng, &mut local) {
            Ok(()) => local.threads_stopped += 1,
            Err(Exit) => local.threads_killed += 1,
        }
    }

    fn reader_loop(&self, rng: &mut Rng, local: &mut Local) -> Step {
        for iteration in 0u64.. {
            if self.stopping() {
                return Ok(());
            }
            if iteration % FLUSH_EVERY == 0 {
                local.flush();
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
            match remote_write(&win.mm, addr, (pages * PAGE_SIZE) as usize)? {
                Ok(_) => local.remote_ok += 1,
                Err(_) => local.remote_failed += 1,
            }
            drop(win);
            sleep_ms(1 + rng.below(4))?;
        }
        Ok(())
    }
}

/// `oomlab run`, validated: the machine, the load, the seed and the time bound.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub machine: MachineConfig,
    pub load: LoadConfig,
    /// The seed of the workload (and of the sim executor's picker).
    pub seed: u64,
    /// The whole run's bound (`--duration`), executor time.
    pub duration_ns: u64,
}

impl RunConfig {
    /// The executor-time bound past which the driver stops waiting for the supervisor (which
    /// bounds the run itself; this only catches a supervisor that never gets to run).
    pub fn hard_bound_ns(&self) -> u64 {
        self.load.load_end_ns.saturating_add(self.load.drain_ns)
    }
}

/// Slack past [`RunConfig::hard_bound_ns`] before the driver gives up on the supervisor, and
/// the time the kthreads get to exit, on the threads executor (wall clock).
const THREADS_SLACK_NS: u64 = 5_000_000_000;

/// Run the load of `rc` on a machine booted on `exec`: the supervisor starts the processes,
/// stops the load shortly before the bound and waits for the wind-down; then the machine is
/// finished (kthreads stopped, executor joined, invariants checked) and reported.
pub fn run<E: Executor>(exec: E, rc: &RunConfig) -> Result<Report, PoolError> {
    let deterministic = exec.is_deterministic();
    let mut m = Machine::boot(exec, rc.machine.clone())?;
    let load = Load::new(rc.load.clone(), m.kernel().clone());
    let l = load.clone();
    m.spawn(
        CloneKind::Process {
            comm: "loadgen".into(),
        },
        move || l.supervise(),
    )
    .expect("starting the load supervisor");
    let deadline = rc.hard_bound_ns().saturating_add(THREADS_SLACK_NS);
    let end = match m.run_workload(deadline, |_| load.finished()) {
        // The supervisor gave up on processes that would not exit.
        WorkloadEnd::Done if load.report().processes_left != 0 => WorkloadEnd::TimeLimit,
        end => end,
    };
    let report = load.report();
    // The kthreads exit at their next wake-up; a reaper in the middle of its retries
    // finishes them first. The sim's own time bound covers it there.
    let kthread_bound_ns = if deterministic {
        u64::MAX
    } else {
        THREADS_SLACK_NS
            + rc.machine.reaper().map_or(0, |r| {
                r.interval_ms
                    .saturating_mul(u64::from(r.retries))
                    .saturating_mul(1_000_000)
            })
    };
    drop(load);
    let f = m.finish(end, kthread_bound_ns);
    let wall_ns = (!f.deterministic).then_some(f.end_ns);
    Ok(Report::new(
        Workload::Run {
            load: report,
            bound_ns: rc.duration_ns,
        },
        rc.seed,
        f,
        Vec::new(),
        wall_ns,
    ))
}

/// A slot's process still has threads.
fn alive(slot: &Slot) -> bool {
    slot.group.as_ref().is_some_and(|g| !g.threads().is_empty())
}

/// Per-thread counters, added to the shared ones every [`FLUSH_EVERY`] iterations (so that a
/// task stuck for good still shows its work) and when the thread ends (also when it is
/// killed: the `?` returns run this `Drop`).
struct Local<'a> {
    shared: &'a LoadStats,
    mmaps: u64,
    mmap_errors: u64,
    munmaps: u64,
    pages_touched: u64,
    remote_ok: u64,
    remote_failed: u64,
    threads_killed: u64,
    threads_stopped: u64,
}

impl<'a> Local<'a> {
    fn new(shared: &'a LoadStats) -> Self {
        Local {
            shared,
            mmaps: 0,
            mmap_errors: 0,
            munmaps: 0,
            pages_touched: 0,
            remote_ok: 0,
            remote_failed: 0,
            threads_killed: 0,
            threads_stopped: 0,
        }
    }

    /// Add the local counts to the shared ones and start again from zero.
    fn flush(&mut self) {
        let s = self.shared;
        for (a, v) in [
            (&s.mmaps, &mut self.mmaps),
            (&s.mmap_errors, &mut self.mmap_errors),
            (&s.munmaps, &mut self.munmaps),
            (&s.pages_touched, &mut self.pages_touched),
            (&s.remote_ok, &mut self.remote_ok),
            (&s.remote_failed, &mut self.remote_failed),
            (&s.threads_killed, &mut self.threads_killed),
            (&s.threads_stopped, &mut self.threads_stopped),
        ] {
            if *v != 0 {
                a.fetch_add(std::mem::take(v), Ordering::Relaxed);
            }
        }
    }
}

impl Drop for Local<'_> {
    fn drop(&mut self) {
        self.flush();
    }
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
        let c = LoadConfig::new(256, 0, 0, 0);
        assert_eq!((c.processes(), c.threads_per_process), (16, 16));
        assert_eq!(c.remote_readers, 8);
        let c = LoadConfig::new(40, 0, 0, 0);
        assert_eq!(c.processes(), 3);
        let per: Vec<u32> = (0..3).map(|s| c.threads_of(s)).collect();
        assert_eq!(per, [16, 16, 8]);
        let c = LoadConfig::new(5, 0, 0, 0);
        assert_eq!(
            (c.processes(), c.threads_of(0), c.remote_readers),
            (1, 5, 1)
        );
    }

    #[test]
    fn the_task_budget_is_released_over_the_load_phase() {
        let c = LoadConfig::new(256, 0, 1000, 0);
        assert_eq!(c.initial_tasks(), 264);
        assert_eq!(c.tasks_allowed(0), 264);
        assert_eq!(c.tasks_allowed(500), 264 + (TASKS_MAX - 264) / 2);
        assert_eq!(c.tasks_allowed(1000), TASKS_MAX);
        assert_eq!(c.tasks_allowed(5000), TASKS_MAX);
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
