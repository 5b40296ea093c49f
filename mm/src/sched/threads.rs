//! The threads executor: one OS thread per emulated task.
//!
//! Sleeping is a futex wait on the task's state word (`FUTEX_WAIT_PRIVATE` while the word
//! still holds the sleep state); waking is the state CAS of `try_to_wake_up()` followed by
//! `FUTEX_WAKE_PRIVATE`, skipped while the sleeper has not parked yet (it spins first: briefly
//! always, up to 200 µs on an untimed sleep when the host has a CPU for every live task).
//! Time is the host's monotonic clock since the executor was created.
//! Stacks are small (128 KiB by default) so that 4096 tasks stay cheap.

use crate::sync::{AtomicU32, Ordering};
use crate::task::{state::*, CloneError, CloneKind, ExecHandle, Task, TaskList};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Configuration of a [`ThreadsExecutor`].
#[derive(Clone, Debug)]
pub struct ThreadsConfig {
    /// Timer frequency for `jiffies`.
    pub hz: u32,
    /// Stack size of each task's OS thread, bytes.
    pub stack_size: usize,
    /// At most this many task threads alive at once: a spawn beyond it fails as the host's
    /// refusal does (`EAGAIN`, e.g. a pids cgroup's `pids.max`). `None`: only the host's limits.
    /// Lets tests inject the refusal.
    pub max_threads: Option<usize>,
}

impl Default for ThreadsConfig {
    fn default() -> Self {
        ThreadsConfig {
            hz: 1000,
            stack_size: 128 << 10,
            max_threads: None,
        }
    }
}

pub struct ThreadsShared {
    pub(crate) hz: u32,
    boot: Instant,
    stack_size: usize,
    pub(crate) tasks: Arc<TaskList>,
    /// Tasks started and not yet exited, and the host's CPUs.
    live: std::sync::atomic::AtomicUsize,
    /// Task threads created and not yet finished, and their cap ([`ThreadsConfig::max_threads`]).
    threads: std::sync::atomic::AtomicUsize,
    max_threads: usize,
    /// Spawns the host (or the cap) refused.
    refused: std::sync::atomic::AtomicU64,
    host_cpus: usize,
    handles: parking_lot::Mutex<Vec<JoinHandle<()>>>,
    /// Panics of tasks reaped early by `spawn_on`, re-raised by `join()`.
    panics: parking_lot::Mutex<Vec<Box<dyn std::any::Any + Send>>>,
}

impl ThreadsShared {
    pub(crate) fn now_ns(&self) -> u64 {
        self.boot.elapsed().as_nanos() as u64
    }

    /// Spin until `t` is woken (true) or the spin budget is spent (false).
    fn spin_until_woken(&self, t: &Task, long: bool) -> bool {
        let woken = || t.state.load(Ordering::Acquire) == TASK_RUNNING;
        for _ in 0..SPIN_BEFORE_PARK {
            if woken() {
                return true;
            }
            std::hint::spin_loop();
        }
        // Spin on only for an untimed sleep (a lock wait: timed sleeps are long by design)
        // and while every live task has a host CPU of its own: then spinning never takes a
        // CPU from a task that runs (and might be the one to wake us).
        if !long || self.live.load(Ordering::Relaxed) > self.host_cpus {
            return false;
        }
        let start = Instant::now();
        while (start.elapsed().as_nanos() as u64) < SPIN_BEFORE_PARK_NS {
            if (0..64).any(|_| {
                std::hint::spin_loop();
                woken()
            }) {
                return true;
            }
        }
        false
    }

    pub(crate) fn block(&self, t: &Task, deadline_ns: Option<u64>) {
        loop {
            // A spin before sleeping: a wake-up that comes within a few microseconds then
            // costs neither a FUTEX_WAIT nor (see `PARKED`) a FUTEX_WAKE. The task is asleep
            // for the model all along (its state says so); only the host's cost changes. Past
            // `SPIN_BEFORE_PARK` iterations a task without a timeout spins on (up to
            // `SPIN_BEFORE_PARK_NS`) only when the host has a CPU for every live task.
            if self.spin_until_woken(t, deadline_ns.is_none()) {
                return;
            }
            let s = t.state.load(Ordering::SeqCst);
            if s == TASK_RUNNING {
                return;
            }
            let timeout = match deadline_ns {
                None => None,
                Some(d) => {
                    let now = self.now_ns();
                    if now >= d {
                        // process_timeout(): the timer wakes the task.
                        super::wake_up_process(t);
                        continue;
                    }
                    Some(Duration::from_nanos(d - now))
                }
            };
            // Announce the futex sleep, so that wakers know they must issue FUTEX_WAKE.
            let parked = s | PARKED;
            if s != parked
                && t.state
                    .compare_exchange(s, parked, Ordering::SeqCst, Ordering::SeqCst)
                    .is_err()
            {
                continue;
            }
            futex_wait(&t.state, parked, timeout);
        }
    }
}

/// Spin iterations in `block` before the futex sleep, always.
const SPIN_BEFORE_PARK: u32 = 50;
/// Longest spin past `SPIN_BEFORE_PARK` of a task with no timeout while the host has a CPU
/// for every live task, ns.
const SPIN_BEFORE_PARK_NS: u64 = 200_000;

/// Bit of the task state word set by a task about to sleep in FUTEX_WAIT (never one of the
/// kernel's state bits; masked off by `Task::state()`).
pub(crate) const PARKED: u32 = 1 << 30;

/// Wait while `*word == val`, at most `timeout` (`FUTEX_WAIT_PRIVATE`; public for the
/// benchmarks' host yardsticks).
pub fn futex_wait(word: &AtomicU32, val: u32, timeout: Option<Duration>) {
    let ts;
    let tsp = match timeout {
        None => std::ptr::null(),
        Some(d) => {
            ts = libc::timespec {
                tv_sec: d.as_secs() as libc::time_t,
                tv_nsec: d.subsec_nanos() as libc::c_long,
            };
            &ts as *const libc::timespec
        }
    };
    // SAFETY: `word` is a valid, aligned u32 for the duration of the call.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word as *const AtomicU32,
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            val,
            tsp,
        );
    }
}

/// Wake all waiters on `word` (`FUTEX_WAKE_PRIVATE`).
pub fn futex_wake(word: &AtomicU32) {
    // SAFETY: as above; FUTEX_WAKE only uses the address as a key.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word as *const AtomicU32,
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            i32::MAX,
        );
    }
}

/// Runs emulated tasks as OS threads.
pub struct ThreadsExecutor {
    shared: Arc<ThreadsShared>,
}

impl ThreadsExecutor {
    pub fn new(cfg: ThreadsConfig) -> Self {
        assert!(cfg.hz > 0 && cfg.hz <= 1_000_000_000, "HZ out of range");
        ThreadsExecutor {
            shared: Arc::new(ThreadsShared {
                hz: cfg.hz,
                boot: Instant::now(),
                stack_size: cfg.stack_size,
                tasks: Arc::new(TaskList::new()),
                live: std::sync::atomic::AtomicUsize::new(0),
                threads: std::sync::atomic::AtomicUsize::new(0),
                max_threads: cfg.max_threads.unwrap_or(usize::MAX),
                refused: std::sync::atomic::AtomicU64::new(0),
                host_cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
                handles: parking_lot::Mutex::new(Vec::new()),
                panics: parking_lot::Mutex::new(Vec::new()),
            }),
        }
    }

    /// The process list of this emulated machine.
    pub fn tasks(&self) -> &Arc<TaskList> {
        &self.shared.tasks
    }

    /// `kernel_clone()`: create a task and start it running `f`.
    pub fn spawn(
        &self,
        kind: CloneKind,
        f: impl FnOnce() + Send + 'static,
    ) -> Result<Arc<Task>, CloneError> {
        spawn_on(&self.shared, kind, Box::new(f))
    }

    /// Spawns refused by the host (or by [`ThreadsConfig::max_threads`]) so far.
    pub fn spawns_refused(&self) -> u64 {
        self.shared.refused.load(Ordering::Relaxed)
    }

    /// Emulated time since the executor started, ns.
    pub fn now_ns(&self) -> u64 {
        self.shared.now_ns()
    }
    /// The part every task (and a watching host thread) can reach.
    pub(crate) fn shared(&self) -> &Arc<ThreadsShared> {
        &self.shared
    }

    /// Wait for every task (including those spawned by tasks) to exit.
    /// Re-raises the first panic of a task.
    pub fn join(&self) {
        loop {
            if let Some(e) = self.shared.panics.lock().pop() {
                std::panic::resume_unwind(e);
            }
            let hs: Vec<_> = std::mem::take(&mut *self.shared.handles.lock());
            if hs.is_empty() {
                return;
            }
            let mut hs = hs.into_iter();
            while let Some(h) = hs.next() {
                if let Err(e) = h.join() {
                    // Keep the rest joinable (a later join()/Drop still waits for them).
                    self.shared.handles.lock().extend(hs);
                    std::panic::resume_unwind(e);
                }
            }
        }
    }
}

impl Drop for ThreadsExecutor {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.join();
        }
        self.shared.tasks.clear();
    }
}

pub(crate) fn spawn_on(
    shared: &Arc<ThreadsShared>,
    kind: CloneKind,
    f: Box<dyn FnOnce() + Send>,
) -> Result<Arc<Task>, CloneError> {
    let task = shared
        .tasks
        .create(&kind, |_| ExecHandle::Threads(shared.clone()))?;
    let t2 = task.clone();
    let sh = shared.clone();
    let over_cap = shared.threads.fetch_add(1, Ordering::Relaxed) >= shared.max_threads;
    let h = if over_cap {
        Err(std::io::Error::from_raw_os_error(libc::EAGAIN))
    } else {
        std::thread::Builder::new()
            .name(format!("{}/{}", task.comm(), task.tid()))
            .stack_size(shared.stack_size)
            .spawn(move || {
                struct Exit(Arc<Task>, Arc<ThreadsShared>);
                impl Drop for Exit {
                    fn drop(&mut self) {
                        self.1.live.fetch_sub(1, Ordering::Relaxed);
                        self.1.threads.fetch_sub(1, Ordering::Relaxed);
                        super::set_current_ptr(std::ptr::null());
                        self.0.mark_exited();
                        self.1.tasks.release(&self.0);
                    }
                }
                sh.live.fetch_add(1, Ordering::Relaxed);
                super::set_current_ptr(Arc::as_ptr(&t2));
                let _exit = Exit(t2, sh);
                f();
                // do_exit(): release the address space in task context.
                crate::memory::exit_mm();
            })
    };
    let h = match h {
        Ok(h) => h,
        Err(_) => {
            // copy_process() failing late (its bad_fork_cleanup_* path): the task never ran,
            // so drop the address-space reference copy_mm() took (`mmput()`; the cloner
            // still holds one, so this is never the last) and unlink the task.
            shared.threads.fetch_sub(1, Ordering::Relaxed);
            shared.refused.fetch_add(1, Ordering::Relaxed);
            if let Some(mm) = task.swap_mm(None) {
                crate::memory::mmput(&mm);
            }
            task.mark_exited();
            shared.tasks.release(&task);
            return Err(CloneError::Again);
        }
    };
    let mut hs = shared.handles.lock();
    // Reap threads that already finished, so that their stacks go back to the host (a long
    // run creates tens of thousands of tasks); keep their panics for join() to re-raise.
    if hs.len() >= 64 {
        let (done, live): (Vec<_>, Vec<_>) = std::mem::take(&mut *hs)
            .into_iter()
            .partition(|h| h.is_finished());
        *hs = live;
        for d in done {
            if let Err(e) = d.join() {
                shared.panics.lock().push(e);
            }
        }
    }
    hs.push(h);
    Ok(task)
}
