//! The fixed-window runner shared by the address-space benches (`fault`, `mmap`): N workers
//! run one operation in a loop, either as emulated tasks of one process (one address space,
//! a [`ThreadsExecutor`]) or as plain OS threads of this process against the host kernel,
//! for a window of wall-clock time; the result is operations per second. Diagnostics: the
//! host page faults of the workers, and from `/proc/thread-self/schedstat` how each worker
//! spent the window: on a CPU, runnable but waiting for one (other load on the machine: the
//! figures are then CPU-starved), or asleep (blocked on a lock, for emulated tasks a sleep in
//! the rwsem slow path).
//!
//! Protocol: every worker does its set-up (attach the address space, ...), then calls
//! [`Worker::ready`], which blocks on a Mutex+Condvar gate (no spinning) until the driver
//! opens it; the window starts then. The worker loops while [`Worker::running`] (one relaxed
//! load of a flag the driver sets when the window ends) and returns its operation count; its
//! clean-up after the window (the last munmap) is not timed.
#![allow(dead_code)]

use crate::common::Gate;
use mm::locking::lock_events::{LockEvent, NR_LOCK_EVENTS};
use mm::sched::threads::{ThreadsConfig, ThreadsExecutor};
use mm::task::CloneKind;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// Stack of every worker (emulated task or OS thread).
pub const STACK: usize = 256 << 10;

struct Shared {
    gate: Gate,
    stop: AtomicBool,
}

/// A worker's handle on the window.
pub struct Worker {
    sh: Arc<Shared>,
    minflt0: u64,
    sched0: SchedStat,
}

impl Worker {
    /// Set-up done: wait for the window to open.
    pub fn ready(&mut self) {
        self.sh.gate.arrive_and_wait();
        self.minflt0 = thread_minflt();
        self.sched0 = SchedStat::thread();
    }
    /// Still inside the window.
    #[inline(always)]
    pub fn running(&self) -> bool {
        !self.sh.stop.load(Ordering::Relaxed)
    }
}

/// One worker's loop: set-up, [`Worker::ready`], loop while [`Worker::running`], clean up,
/// return the operations done inside the window.
pub type Body = Box<dyn FnOnce(&mut Worker) -> u64 + Send>;

/// Who runs the workers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runner {
    /// Emulated tasks of one process (`CloneKind::Process` for the first, `CloneKind::Thread`
    /// of it for the others) on a fresh [`ThreadsExecutor`].
    Tasks,
    /// OS threads of this process (the host kernel's side).
    OsThreads,
}

/// One window.
#[derive(Clone, Debug)]
pub struct Sample {
    /// Operations done inside the window, all workers.
    pub ops: u64,
    pub per_worker_ops: Vec<u64>,
    pub secs: f64,
    /// Process CPU time (user + system) during the window / wall time, in cores.
    pub cpu_cores: f64,
    /// Host minor page faults of the workers from `ready()` to the end of their loop.
    pub host_minflt: u64,
    /// Σ over workers of the time on a CPU, and of the time runnable but waiting for a CPU,
    /// from `ready()` to the end of their loop, seconds.
    pub worker_cpu_s: f64,
    pub worker_runq_wait_s: f64,
    /// Emulated tasks only: rwsem acquisitions that took the slow path, and slow-path sleeps.
    pub rwsem_slow: Option<u64>,
    pub rwsem_sleeps: Option<u64>,
    /// Earlier windows of this sample that were thrown away as CPU-starved ([`retake`]).
    pub retakes: u32,
}

impl Sample {
    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.secs
    }
    pub fn ops_per_sec_per_worker(&self) -> f64 {
        self.ops_per_sec() / self.per_worker_ops.len().max(1) as f64
    }
    fn worker_secs(&self) -> f64 {
        self.secs * self.per_worker_ops.len().max(1) as f64
    }
    /// Operations per second per worker, counting only the time the workers were not kept
    /// off a CPU by other load (window − run-queue wait): the per-thread rate on a machine
    /// with a CPU free for each worker. Time asleep (blocked on a lock) still counts.
    pub fn ops_per_available_sec_per_worker(&self) -> f64 {
        self.ops as f64 / (self.worker_secs() - self.worker_runq_wait_s).max(1e-9)
    }
    /// Share of the workers' window spent on a CPU.
    pub fn on_cpu_share(&self) -> f64 {
        self.worker_cpu_s / self.worker_secs()
    }
    /// Share of the workers' window spent runnable but waiting for a CPU (other load).
    pub fn runq_wait_share(&self) -> f64 {
        self.worker_runq_wait_s / self.worker_secs()
    }
    /// Share of the workers' window spent asleep (neither on a CPU nor waiting for one).
    pub fn asleep_share(&self) -> f64 {
        (1.0 - self.on_cpu_share() - self.runq_wait_share()).max(0.0)
    }
}

/// "on-cpu a% runq b% asleep c%": how the workers spent the window.
pub fn time_split(s: &Sample) -> String {
    format!(
        "on-cpu {:>3.0}% runq {:>3.0}% asleep {:>3.0}%{}",
        s.on_cpu_share() * 100.0,
        s.runq_wait_share() * 100.0,
        s.asleep_share() * 100.0,
        if s.retakes > 0 {
            format!(
                " ({} retake{})",
                s.retakes,
                if s.retakes > 1 { "s" } else { "" }
            )
        } else {
            String::new()
        }
    )
}

/// `/proc/thread-self/schedstat`: time on a CPU and time waiting on a run queue, ns.
#[derive(Clone, Copy, Debug, Default)]
struct SchedStat {
    cpu_ns: u64,
    runq_wait_ns: u64,
}

impl SchedStat {
    fn thread() -> SchedStat {
        let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
        let mut f = s.split_whitespace().map(|x| x.parse::<u64>().unwrap_or(0));
        SchedStat {
            cpu_ns: f.next().unwrap_or(0),
            runq_wait_ns: f.next().unwrap_or(0),
        }
    }
}

struct Out {
    ops: u64,
    minflt: u64,
    cpu_ns: u64,
    runq_wait_ns: u64,
}

/// Run `n` workers built by `make(i)` for `window`.
pub fn run_window(
    runner: Runner,
    comm: &str,
    n: usize,
    window: Duration,
    mut make: impl FnMut(usize) -> Body,
) -> Sample {
    let sh = Arc::new(Shared {
        gate: Gate::new(),
        stop: AtomicBool::new(false),
    });
    let (tx, rx) = mpsc::channel::<Out>();
    let wrap = |body: Body| {
        let sh = sh.clone();
        let tx = tx.clone();
        move || {
            let mut w = Worker {
                sh,
                minflt0: 0,
                sched0: SchedStat::default(),
            };
            let ops = body(&mut w);
            let minflt = thread_minflt().saturating_sub(w.minflt0);
            let st = SchedStat::thread();
            tx.send(Out {
                ops,
                minflt,
                cpu_ns: st.cpu_ns.saturating_sub(w.sched0.cpu_ns),
                runq_wait_ns: st.runq_wait_ns.saturating_sub(w.sched0.runq_wait_ns),
            })
            .expect("sending a worker result");
        }
    };
    let mut exec = None;
    let mut threads = Vec::new();
    match runner {
        Runner::Tasks => {
            let ex = ThreadsExecutor::new(ThreadsConfig {
                hz: 1000,
                stack_size: STACK,
                ..Default::default()
            });
            let leader = ex
                .spawn(
                    CloneKind::Process {
                        comm: comm.to_string(),
                    },
                    wrap(make(0)),
                )
                .expect("spawning the bench process");
            for i in 1..n {
                ex.spawn(
                    CloneKind::Thread {
                        tgid: leader.tgid(),
                    },
                    wrap(make(i)),
                )
                .expect("spawning a bench thread");
            }
            exec = Some(ex);
        }
        Runner::OsThreads => {
            for i in 0..n {
                let f = wrap(make(i));
                threads.push(
                    std::thread::Builder::new()
                        .name(format!("{comm}{i}"))
                        .stack_size(STACK)
                        .spawn(f)
                        .expect("spawning a bench thread"),
                );
            }
        }
    }
    drop(tx);
    assert!(
        sh.gate.wait_arrived(n, Duration::from_secs(60)),
        "{comm}: not all {n} workers reached the start gate within 60 s"
    );
    let cpu0 = process_cpu_time();
    let t0 = Instant::now();
    sh.gate.open();
    std::thread::sleep(window);
    sh.stop.store(true, Ordering::Relaxed);
    let secs = t0.elapsed().as_secs_f64();
    let cpu = process_cpu_time().saturating_sub(cpu0).as_secs_f64();

    let grace = Duration::from_secs(60);
    let mut outs = Vec::with_capacity(n);
    for _ in 0..n {
        match rx.recv_timeout(grace) {
            Ok(o) => outs.push(o),
            Err(e) => {
                eprintln!(
                    "{comm}: only {} of {n} workers finished within {grace:?} after the window \
                     ({e})",
                    outs.len()
                );
                std::process::exit(3);
            }
        }
    }
    let (mut slow, mut sleeps) = (None, None);
    if let Some(ex) = exec {
        ex.join();
        let ev: [u64; NR_LOCK_EVENTS] = ex.tasks().lock_events();
        slow = Some(ev[LockEvent::RwsemRlock as usize] + ev[LockEvent::RwsemWlock as usize]);
        sleeps = Some(
            ev[LockEvent::RwsemSleepReader as usize] + ev[LockEvent::RwsemSleepWriter as usize],
        );
    }
    for t in threads {
        t.join().expect("bench thread panicked");
    }
    Sample {
        ops: outs.iter().map(|o| o.ops).sum(),
        per_worker_ops: outs.iter().map(|o| o.ops).collect(),
        secs,
        cpu_cores: cpu / secs,
        host_minflt: outs.iter().map(|o| o.minflt).sum(),
        worker_cpu_s: outs.iter().map(|o| o.cpu_ns).sum::<u64>() as f64 / 1e9,
        worker_runq_wait_s: outs.iter().map(|o| o.runq_wait_ns).sum::<u64>() as f64 / 1e9,
        rwsem_slow: slow,
        rwsem_sleeps: sleeps,
        retakes: 0,
    }
}

/// What the "runq_adjusted" JSON figures are.
pub const RUNQ_ADJUSTED_NOTE: &str = "rates per second of window minus run-queue wait (time \
     other load kept the workers off a CPU); diagnostics, not the targets";

/// Printed under `cargo test --benches`.
pub const SMOKE_NOTE: &str =
    "(smoke run under `cargo test --benches`: debug build, tiny windows; not a measurement)";

/// A window whose workers waited for a CPU (other load on the machine) for more than this
/// share of it is retaken.
pub const MAX_RUNQ_SHARE: f64 = 0.10;
/// At most this many retakes per sample; the last window is kept whatever its run-queue wait
/// (its `runq` share says how disturbed it was).
pub const MAX_RETAKES: u32 = 3;

/// Retakes CPU-starved windows within a time budget. Other engineers' builds share this
/// machine's two CPUs: a window in which they kept the workers off a CPU measures them, not
/// the code.
pub struct Retaker {
    budget: Duration,
    spent: std::cell::Cell<Duration>,
}

impl Retaker {
    /// Retakes may take `budget` of wall-clock time in all.
    pub fn new(budget: Duration) -> Retaker {
        Retaker {
            budget,
            spent: std::cell::Cell::new(Duration::ZERO),
        }
    }
    /// Run `f` (one window) until its run-queue wait share is at most [`MAX_RUNQ_SHARE`], at
    /// most [`MAX_RETAKES`] + 1 times, and no retake once the budget is spent.
    pub fn run(&self, mut f: impl FnMut() -> Sample) -> Sample {
        let mut retakes = 0;
        loop {
            let t = Instant::now();
            let mut s = f();
            if retakes > 0 {
                self.spent.set(self.spent.get() + t.elapsed());
            }
            if s.runq_wait_share() <= MAX_RUNQ_SHARE
                || retakes == MAX_RETAKES
                || self.spent.get() >= self.budget
            {
                s.retakes = retakes;
                return s;
            }
            retakes += 1;
        }
    }
}

/// Minor page faults of the calling OS thread so far (`getrusage(RUSAGE_THREAD)`).
pub fn thread_minflt() -> u64 {
    // SAFETY: a zeroed rusage is a valid out-parameter.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_THREAD with a valid pointer.
    let r = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    if r == 0 {
        ru.ru_minflt as u64
    } else {
        0
    }
}

/// User + system CPU time of this process so far (`/proc/self/stat`, clock-tick resolution).
pub fn process_cpu_time() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    // Fields after the parenthesised comm: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    let hz = 100u64; // USER_HZ, fixed by the Linux ABI
    Duration::from_nanos((ticks(11) + ticks(12)) * (1_000_000_000 / hz))
}

/// The host's transparent-hugepage mode (the bracketed word), for the record.
pub fn host_thp_mode() -> String {
    std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
        .ok()
        .and_then(|s| {
            let a = s.find('[')?;
            let b = s[a..].find(']')?;
            Some(s[a + 1..a + b].to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The 1-minute load average when the run started (other work on the machine).
pub fn loadavg_1m() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// This process's scheduling priority as the host sees it: its nice value and its autogroup
/// (`/proc/self/autogroup`, e.g. "/autogroup-34 nice -10"), for the record.
pub fn host_priority() -> String {
    // SAFETY: getpriority has no memory preconditions.
    let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
    let ag = std::fs::read_to_string("/proc/self/autogroup")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "no autogroup".into());
    format!("nice {nice}, {ag}")
}

/// The host kernel's release (`uname -r`).
pub fn host_kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// Real-kernel `mmap(NULL, len, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS)`.
#[inline]
pub fn host_mmap_anon(len: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping at a kernel-chosen address touches nothing of ours.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert!(
        p != libc::MAP_FAILED,
        "host mmap of {len} bytes failed: {}",
        std::io::Error::last_os_error()
    );
    p.cast()
}

/// Real-kernel `munmap(p, len)` of a mapping made by [`host_mmap_anon`].
#[inline]
pub fn host_munmap(p: *mut u8, len: usize) {
    // SAFETY: `p`/`len` name a whole mapping this worker made and no longer uses.
    let r = unsafe { libc::munmap(p.cast(), len) };
    assert!(
        r == 0,
        "host munmap failed: {}",
        std::io::Error::last_os_error()
    );
}
