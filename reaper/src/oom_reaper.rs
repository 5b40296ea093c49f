//! The oom_reaper kthread (mm/oom_kill.c): reclaims an OOM victim's private anonymous memory
//! under `mmap_lock` held for read, without the victim's cooperation.
//!
//! Models `oom_reaper()`, `oom_reap_task()` and `oom_reap_task_mm()` of Linux **v4.19**, with
//! the optional start delay of **v5.18** (`queue_oom_reaper()` arming a timer of
//! `OOM_REAPER_DELAY` = 2 s whose callback drops the request if the mm is already
//! `MMF_OOM_SKIP`). Queueing is deduplicated per mm (`MMF_OOM_REAP_QUEUED`, 5.18). The list is
//! LIFO, as `oom_reaper_list` is.
//!
//! Architecture invariant: the reaper only ever *try*-locks `mmap_lock` (it never waits for it).
//!
//! Deviations: the delay timer is kept by the reaper task itself (it sleeps until the earliest
//! due request) instead of a per-task timer; the "unable to reap" path prints no lock dump;
//! 4.7–4.18's `oom_lock` around the attempt is not taken (af5679fbc669 removed it in 4.19).

use crate::events::{EventStream, KernelEvent, ReapResult};
use crate::klog::KernelLog;
use mm::mm_types::{MmStruct, MMF_OOM_SKIP, MM_ANONPAGES, MM_FILEPAGES, MM_SHMEMPAGES};
use mm::sched;
use mm::task::{state, Tgid};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::oom_kill::k;

/// `MAX_OOM_REAP_RETRIES`.
pub const MAX_OOM_REAP_RETRIES: u32 = 10;

/// Reaper knobs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ReaperConfig {
    /// Trylock attempts per victim (`MAX_OOM_REAP_RETRIES`).
    pub retries: u32,
    /// Sleep after each failed attempt, ms (`HZ/10`).
    pub interval_ms: u64,
    /// Start delay, ms (0 = 2016 behaviour; 2000 = `OOM_REAPER_DELAY` of ≥ 5.18).
    pub delay_ms: u64,
}

impl Default for ReaperConfig {
    fn default() -> Self {
        ReaperConfig {
            retries: MAX_OOM_REAP_RETRIES,
            interval_ms: 100,
            delay_ms: 0,
        }
    }
}

/// Reaper counters.
#[derive(Default, Debug)]
pub struct ReaperStats {
    /// `mmap_lock` read-trylock attempts.
    pub attempts: AtomicU64,
    /// Victims whose memory was reaped ("oom_reaper: reaped process").
    pub reaped: AtomicU64,
    /// Victims given up on after all retries ("unable to reap").
    pub gave_up: AtomicU64,
    /// Victims found already `MMF_OOM_SKIP` (exit got there first).
    pub skipped: AtomicU64,
    /// Frames unmapped by the reaper.
    pub pages_reaped: AtomicU64,
}

struct Request {
    tgid: Tgid,
    comm: String,
    mm: Arc<MmStruct>,
    due_ns: u64,
}

struct QueueInner {
    /// Requests whose delay has not run out yet.
    delayed: Vec<Request>,
    /// `oom_reaper_list` (LIFO).
    list: Vec<Request>,
    /// mm ids queued or being reaped (`MMF_OOM_REAP_QUEUED`).
    queued: Vec<u64>,
    task: Option<Arc<mm::task::Task>>,
}

/// The reaper's queue; shared by the OOM killer (producer) and the kthread (consumer).
pub struct ReaperQueue {
    cfg: ReaperConfig,
    log: Arc<KernelLog>,
    inner: Mutex<QueueInner>,
    stop: AtomicBool,
    stats: ReaperStats,
    events: Arc<EventStream>,
}

impl ReaperQueue {
    pub fn new(
        cfg: ReaperConfig,
        log: Arc<KernelLog>,
        events: Arc<EventStream>,
    ) -> Arc<ReaperQueue> {
        Arc::new(ReaperQueue {
            cfg,
            log,
            events,
            inner: Mutex::new(QueueInner {
                delayed: Vec::new(),
                list: Vec::new(),
                queued: Vec::new(),
                task: None,
            }),
            stop: AtomicBool::new(false),
            stats: ReaperStats::default(),
        })
    }

    pub fn config(&self) -> &ReaperConfig {
        &self.cfg
    }
    pub fn stats(&self) -> &ReaperStats {
        &self.stats
    }
    /// The reaper kthread, once it runs.
    pub fn task(&self) -> Option<Arc<mm::task::Task>> {
        self.inner.lock().task.clone()
    }
    /// Requests not yet finished.
    pub fn pending(&self) -> usize {
        let g = self.inner.lock();
        g.delayed.len() + g.list.len()
    }

    /// `queue_oom_reaper()` / `wake_oom_reaper()`: called by the OOM killer in task context.
    pub fn queue(&self, tgid: Tgid, comm: &str, mm: Arc<MmStruct>) {
        let task = {
            let mut g = self.inner.lock();
            if g.queued.contains(&mm.id()) {
                return;
            }
            g.queued.push(mm.id());
            mm.mmgrab();
            let due_ns = sched::ktime_get_ns() + self.cfg.delay_ms * 1_000_000;
            let req = Request {
                tgid,
                comm: comm.to_string(),
                mm,
                due_ns,
            };
            if self.cfg.delay_ms == 0 {
                g.list.push(req);
            } else {
                g.delayed.push(req);
            }
            g.task.clone()
        };
        if let Some(t) = task {
            // wake_up(&oom_reaper_wait) (v4.19 wake_oom_reaper()): reaches the kthread only
            // while it waits for work (TASK_INTERRUPTIBLE), never in the retry sleep between
            // trylocks (schedule_timeout_idle), which must last the full interval.
            sched::try_to_wake_up(&t, state::TASK_INTERRUPTIBLE);
        }
    }

    /// `kthread_stop()`: ask the kthread to finish; it exits at its next wait.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.task() {
            sched::wake_up_process(&t);
        }
    }

    /// The kthread body (`oom_reaper()`); run it in an emulated task with no address space.
    pub fn run(self: &Arc<Self>) {
        self.inner.lock().task = Some(sched::current());
        loop {
            let req = loop {
                if self.stop.load(Ordering::SeqCst) {
                    return;
                }
                let now = sched::ktime_get_ns();
                let (req, next_due) = {
                    let mut g = self.inner.lock();
                    // The delay timers that ran out: drop requests whose mm is already
                    // MMF_OOM_SKIP (the victim exited by itself), queue the others.
                    let mut i = 0;
                    while i < g.delayed.len() {
                        if g.delayed[i].due_ns <= now {
                            let r = g.delayed.remove(i);
                            if r.mm.test_flag(MMF_OOM_SKIP) {
                                let id = r.mm.id();
                                g.queued.retain(|x| *x != id);
                                r.mm.mmdrop();
                            } else {
                                g.list.push(r);
                            }
                        } else {
                            i += 1;
                        }
                    }
                    (g.list.pop(), g.delayed.iter().map(|r| r.due_ns).min())
                };
                if let Some(r) = req {
                    break r;
                }
                // wait_event_freezable(oom_reaper_wait, oom_reaper_list != NULL)
                sched::set_current_state(state::TASK_INTERRUPTIBLE);
                let ready = {
                    let g = self.inner.lock();
                    !g.list.is_empty()
                        || g.delayed.iter().any(|r| r.due_ns <= sched::ktime_get_ns())
                } || self.stop.load(Ordering::SeqCst);
                if ready {
                    sched::__set_current_state(state::TASK_RUNNING);
                    continue;
                }
                match next_due {
                    Some(d) => {
                        let now = sched::ktime_get_ns();
                        let ns = d.saturating_sub(now);
                        let per_jiffy = 1_000_000_000 / sched::hz() as u64;
                        sched::schedule_timeout(ns.div_ceil(per_jiffy).max(1));
                    }
                    None => sched::schedule(),
                }
            };
            self.oom_reap_task(&req);
            let mut g = self.inner.lock();
            let id = req.mm.id();
            g.queued.retain(|x| *x != id);
            drop(g);
            req.mm.mmdrop();
        }
    }

    /// `oom_reap_task()` (v4.19): up to `retries` attempts `interval` apart; afterwards
    /// `MMF_OOM_SKIP` in every case.
    fn oom_reap_task(&self, req: &Request) {
        let mm = &req.mm;
        let mut attempts = 0;
        let interval = sched::msecs_to_jiffies(self.cfg.interval_ms);
        loop {
            attempts += 1;
            if attempts > self.cfg.retries || self.oom_reap_task_mm(req) {
                break;
            }
            // schedule_timeout_idle(HZ/10)
            sched::schedule_timeout_uninterruptible(interval);
        }
        if attempts > self.cfg.retries && !mm.test_flag(MMF_OOM_SKIP) {
            self.log.printk(format!(
                "oom_reaper: unable to reap pid:{} ({})",
                req.tgid, req.comm
            ));
            self.stats.gave_up.fetch_add(1, Ordering::Relaxed);
            self.reap_result(ReapResult::GaveUp, 0);
        }
        // Hide this mm from the OOM killer: reaped, or somebody sits on mmap_lock.
        mm.set_flag(MMF_OOM_SKIP);
    }

    /// Onto the event stream: the result of one victim, as its counter was just counted.
    fn reap_result(&self, result: ReapResult, pages: u64) {
        self.events.emit(KernelEvent::Reap {
            at_ns: sched::ktime_get_ns(),
            result,
            pages,
        });
    }

    /// `oom_reap_task_mm()` (v4.19): `down_read_trylock`; under the lock, done if exit already
    /// set `MMF_OOM_SKIP`; otherwise unmap and report.
    fn oom_reap_task_mm(&self, req: &Request) -> bool {
        let mm = &req.mm;
        self.stats.attempts.fetch_add(1, Ordering::Relaxed);
        let Some(g) = mm::mmap_lock::mmap_read_trylock(mm) else {
            return false;
        };
        if mm.test_flag(MMF_OOM_SKIP) {
            self.stats.skipped.fetch_add(1, Ordering::Relaxed);
            self.reap_result(ReapResult::AlreadyDone, 0);
            return true;
        }
        let n = mm::memory::oom_reap_task_mm(mm, &g);
        self.stats.pages_reaped.fetch_add(n, Ordering::Relaxed);
        self.stats.reaped.fetch_add(1, Ordering::Relaxed);
        self.reap_result(ReapResult::Reaped, n);
        mm.set_reaped(sched::ktime_get_ns());
        self.log.printk(format!(
            "oom_reaper: reaped process {} ({}), now anon-rss:{}kB, file-rss:{}kB, shmem-rss:{}kB",
            req.tgid,
            req.comm,
            k(mm.get_mm_counter(MM_ANONPAGES) as u64),
            k(mm.get_mm_counter(MM_FILEPAGES) as u64),
            k(mm.get_mm_counter(MM_SHMEMPAGES) as u64),
        ));
        drop(g);
        true
    }
}
