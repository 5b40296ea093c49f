//! The livelock watchdog, its wait-for chain explanations, the sysrq-f recovery and a
//! khungtaskd-style hung-task report.
//!
//! A **livelock** (docs/oom-rules.md §8 M8) is declared when, for a whole window (default 30 s of
//! emulated time on the sim executor, 5 s of wall-clock time on the threads executor), no
//! allocation in the slow path succeeded, no task was killed and no victim's address space was
//! torn down or marked `MMF_OOM_SKIP`, while at least one task waits for memory. Each is
//! explained by a wait-for chain computed from the live state, logged, counted and — so that
//! every run ends — recovered from with a sysrq-f style manual OOM kill that ignores the abort
//! rule (counted separately).
//!
//! Separately, an OOM episode whose victim is not torn down or skipped within the window is a
//! **stalled episode**, even when other frees happen to end the stall.
//!
//! The watchdog is an emulated kthread: it samples counters every `tick` and sleeps through
//! the scheduler seam. It is not part of the modelled kernel (khungtaskd is; its report is
//! modelled on `check_hung_task()`, kernel/hung_task.c v4.19: tasks in exactly
//! TASK_UNINTERRUPTIBLE longer than the timeout, at most `hung_task_warnings` = 10 reports).

use crate::events::KernelEvent;
use crate::oom_kill::{Oom, Victim};
use mm::page_alloc::AllocStat;
use mm::sched;
use mm::task::{state, Task, Tid};
use parking_lot::Mutex;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// Watchdog knobs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WatchdogConfig {
    /// The livelock window, emulated ns.
    pub window_ns: u64,
    /// Sampling period, emulated ns.
    pub tick_ns: u64,
    /// Recover from a livelock with a sysrq-f kill.
    pub recover: bool,
    /// khungtaskd's `hung_task_timeout_secs`, ns (0 = off).
    pub hung_task_timeout_ns: u64,
}

impl WatchdogConfig {
    /// Defaults for the sim executor: 30 s window.
    pub fn sim() -> Self {
        WatchdogConfig {
            window_ns: 30_000_000_000,
            tick_ns: 100_000_000,
            recover: true,
            hung_task_timeout_ns: 120_000_000_000,
        }
    }
    /// Defaults for the threads executor: 5 s window.
    pub fn threads() -> Self {
        WatchdogConfig {
            window_ns: 5_000_000_000,
            tick_ns: 100_000_000,
            recover: true,
            hung_task_timeout_ns: 120_000_000_000,
        }
    }
}

/// One detected livelock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LivelockReport {
    pub at_ns: u64,
    /// Tasks waiting for memory at detection.
    pub waiters: usize,
    /// The wait-for chain, one line per link, indented by depth.
    pub chain: Vec<String>,
}

/// Watchdog counters.
#[derive(Default, Debug)]
pub struct WatchdogStats {
    pub livelocks: AtomicU64,
    pub stalled_episodes: AtomicU64,
    pub hung_task_reports: AtomicU64,
}

/// The watchdog of one emulated machine.
pub struct Watchdog {
    cfg: WatchdogConfig,
    oom: Arc<Oom>,
    stats: WatchdogStats,
    reports: Mutex<Vec<LivelockReport>>,
    stop: AtomicBool,
    task: Mutex<Option<Arc<Task>>>,
}

#[derive(PartialEq, Eq, Clone, Copy)]
struct Progress {
    slow_success: u64,
    kills: u64,
    resolved: u64,
}

impl Watchdog {
    pub fn new(cfg: WatchdogConfig, oom: Arc<Oom>) -> Arc<Watchdog> {
        Arc::new(Watchdog {
            cfg,
            oom,
            stats: WatchdogStats::default(),
            reports: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            task: Mutex::new(None),
        })
    }

    pub fn config(&self) -> &WatchdogConfig {
        &self.cfg
    }
    pub fn stats(&self) -> &WatchdogStats {
        &self.stats
    }
    pub fn reports(&self) -> Vec<LivelockReport> {
        self.reports.lock().clone()
    }

    /// Ask the kthread to finish.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.task.lock().clone() {
            sched::wake_up_process(&t);
        }
    }

    fn progress(&self) -> Progress {
        let s = self.oom.pool().stats();
        Progress {
            slow_success: s.get(AllocStat::SlowpathSuccess),
            kills: self.oom.stats().oom_kill.load(Ordering::Relaxed),
            resolved: self.oom.victims_resolved(),
        }
    }

    fn memory_waiters(&self) -> Vec<Arc<Task>> {
        self.oom
            .tasks()
            .tasks()
            .into_iter()
            .filter(|t| t.memalloc_waiting_since().is_some())
            .collect()
    }

    /// The kthread body; run it in an emulated task without an address space.
    pub fn run(&self) {
        *self.task.lock() = Some(sched::current());
        let per_jiffy = 1_000_000_000 / sched::hz() as u64;
        let tick = self.cfg.tick_ns.div_ceil(per_jiffy).max(1);
        let mut last = self.progress();
        let mut last_change = sched::ktime_get_ns();
        let mut stalled_seen: HashSet<u64> = HashSet::new();
        let mut hung_seen: HashSet<(Tid, u64)> = HashSet::new();
        let mut hung_warnings = 10u32;
        while !self.stop.load(Ordering::SeqCst) {
            sched::schedule_timeout_interruptible(tick);
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            let now = sched::ktime_get_ns();
            let p = self.progress();
            let waiters = self.memory_waiters();
            if p != last || waiters.is_empty() {
                last = p;
                last_change = now;
            } else if now.saturating_sub(last_change) >= self.cfg.window_ns {
                self.livelock(now, &waiters);
                last = self.progress();
                last_change = sched::ktime_get_ns();
            }
            for v in self.oom.victims() {
                if !v.resolved()
                    && now.saturating_sub(v.marked_ns) >= self.cfg.window_ns
                    && stalled_seen.insert(v.mm.id())
                {
                    self.stats.stalled_episodes.fetch_add(1, Ordering::Relaxed);
                }
            }
            if self.cfg.hung_task_timeout_ns > 0 && hung_warnings > 0 {
                for t in self.oom.tasks().tasks() {
                    if t.state() == state::TASK_UNINTERRUPTIBLE
                        && now.saturating_sub(t.sleep_since_ns()) > self.cfg.hung_task_timeout_ns
                        && hung_seen.insert((t.tid(), t.sleep_since_ns()))
                        && hung_warnings > 0
                    {
                        hung_warnings -= 1;
                        self.stats.hung_task_reports.fetch_add(1, Ordering::Relaxed);
                        self.oom.log().printk(format!(
                            "INFO: task {}:{} blocked for more than {} seconds.",
                            t.comm(),
                            t.tid(),
                            self.cfg.hung_task_timeout_ns / 1_000_000_000
                        ));
                    }
                }
            }
        }
    }

    fn livelock(&self, now: u64, waiters: &[Arc<Task>]) {
        self.stats.livelocks.fetch_add(1, Ordering::Relaxed);
        self.oom.events().emit(KernelEvent::Livelock {
            at_ns: now,
            waiters: waiters.len() as u64,
        });
        let chain = explain(&self.oom, waiters);
        let log = self.oom.log();
        log.printk(format!(
            "oomlab: livelock: no slow-path allocation, kill or victim teardown for {}s while {} task(s) wait for memory",
            self.cfg.window_ns as f64 / 1e9,
            waiters.len()
        ));
        for l in &chain {
            log.printk(format!("oomlab:   {l}"));
        }
        self.reports.lock().push(LivelockReport {
            at_ns: now,
            waiters: waiters.len(),
            chain,
        });
        if self.cfg.recover {
            log.printk("sysrq: Manual OOM execution");
            self.oom.sysrq_force_oom();
        }
    }
}

fn secs(ns: u64) -> String {
    format!("{:.3}s", ns as f64 / 1e9)
}

fn name(t: &Task) -> String {
    format!("{}[{}/{}]", t.comm(), t.tgid(), t.tid())
}

/// What `t` is doing, in one line.
fn doing(t: &Task) -> String {
    if t.has_exited() {
        return "has exited".into();
    }
    if let Some(since) = t.memalloc_waiting_since() {
        return format!(
            "waits for memory in the allocator slow path since {}",
            secs(since)
        );
    }
    let s = t.state();
    let killable = match s {
        state::TASK_KILLABLE => "killable",
        state::TASK_UNINTERRUPTIBLE => "uninterruptible",
        state::TASK_INTERRUPTIBLE => "interruptible",
        _ => "",
    };
    match t.wchan() {
        Some(w) if s != state::TASK_RUNNING => {
            let mode = if w.func.contains("write") {
                "write"
            } else if w.func.contains("read") {
                "read"
            } else {
                "exclusive"
            };
            format!(
                "sleeps in {} on {} ({mode}, {killable}){}",
                w.func,
                w.object,
                if t.fatal_signal_pending() {
                    ", SIGKILL pending"
                } else {
                    ""
                }
            )
        }
        _ if s == state::TASK_RUNNING => "is runnable".into(),
        _ => format!(
            "sleeps ({}){}",
            state::name(s),
            if t.fatal_signal_pending() {
                ", SIGKILL pending"
            } else {
                ""
            }
        ),
    }
}

/// Describe `t` and, recursively, the holders of the lock it waits on.
fn chain_of(oom: &Oom, t: &Task, depth: usize, seen: &mut HashSet<Tid>, out: &mut Vec<String>) {
    let pad = "  ".repeat(depth);
    out.push(format!("{pad}{} {}", name(t), doing(t)));
    if !seen.insert(t.tid()) || depth > 6 {
        if depth > 0 {
            out.push(format!("{pad}  (cycle back to {})", name(t)));
        }
        return;
    }
    let Some(w) = t.wchan() else { return };
    if t.state() == state::TASK_RUNNING {
        return;
    }
    for h in oom.tasks().tasks() {
        if h.tid() == t.tid() {
            continue;
        }
        if let Some(hl) = h
            .held_locks()
            .into_iter()
            .find(|l| l.object_id == w.object_id)
        {
            out.push(if w.func.contains("mutex") {
                format!("{pad}  -> {} is held by:", w.object)
            } else {
                format!(
                    "{pad}  -> {} is held for {} by:",
                    w.object,
                    if hl.write { "write" } else { "read" }
                )
            });
            chain_of(oom, &h, depth + 2, seen, out);
        }
    }
}

/// The wait-for chain of a stuck machine, computed from the live state: who waits for memory,
/// which victim that waits for, what the victim's tasks are blocked on, who holds those locks
/// (recursively), and what pins the victim's address space.
pub fn explain(oom: &Oom, waiters: &[Arc<Task>]) -> Vec<String> {
    let mut out = Vec::new();
    let shown = waiters.len().min(4);
    for t in &waiters[..shown] {
        out.push(format!("{} {}", name(t), doing(t)));
    }
    if waiters.len() > shown {
        out.push(format!(
            "... and {} more tasks waiting for memory",
            waiters.len() - shown
        ));
    }
    let pending: Vec<Victim> = oom
        .victims()
        .into_iter()
        .filter(|v| !v.resolved())
        .collect();
    if pending.is_empty() {
        let lock = oom.pool().oom_lock();
        out.push(match lock.owner() {
            Some(o) => format!(
                "no OOM victim is pending; oom_lock is held by tid {o} (allocators that fail the trylock sleep a jiffy and retry)"
            ),
            None => "no OOM victim is pending and the OOM killer did not kill (e.g. GFP_NOFS-only pressure, or nothing eligible)".into(),
        });
    }
    let mut seen = HashSet::new();
    for v in &pending {
        let threads = v.group.threads();
        let own_users = oom
            .tasks()
            .tasks()
            .iter()
            .filter(|t| t.mm_is(&v.mm))
            .count() as i32;
        out.push(format!(
            "-> they wait for OOM victim {}[{}] (marked at {}): its mm is neither reaped nor torn down; mm_users={} ({} task(s) using it, {} remote pin(s))",
            v.comm,
            v.tgid,
            secs(v.marked_ns),
            v.mm.mm_users(),
            own_users,
            (v.mm.mm_users() - own_users).max(0)
        ));
        if threads.is_empty() {
            out.push(
                "  every thread of the victim has exited; only a remote pin keeps the mm alive"
                    .into(),
            );
        }
        for t in threads {
            chain_of(oom, &t, 1, &mut seen, &mut out);
        }
        // Tasks of other processes that still use the mm (CLONE_VM sharers).
        for t in oom.tasks().tasks() {
            if t.tgid() != v.tgid && t.mm_is(&v.mm) {
                out.push(format!("  shares the victim's mm: {}", name(&t)));
                chain_of(oom, &t, 2, &mut seen, &mut out);
            }
        }
    }
    out
}
