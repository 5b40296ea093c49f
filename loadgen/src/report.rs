//! One report for every front end: built once from a finished machine
//! ([`reaper::machine::Finished`]: the verdict, the counters, the kernel log) and the workload
//! that ran on it; renders the summary and the JSON of `oomlab run`, `oomlab scenario` and the
//! livelock-rate bench's trials. The binary prints it and maps its verdict to an exit status.
//!
//! Building a report extracts plain values: the machine (and its frame pool) can go right
//! after, which matters when thousands of trials run in one process.

use crate::load::LoadReport;
use mm::mmap_lock::{MmapLockWait, WaitHistogram, NR_MMAP_LOCK_WAITS, WAIT_SLOTS};
use mm::page_alloc::FrameAccounting;
use reaper::machine::{secs, Checks, Finished, MachineConfig, Verdict};
use reaper::watchdog::LivelockReport;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};

/// What ran on the machine.
#[derive(Clone, Debug)]
pub enum Workload {
    /// `oomlab run`'s load generator.
    Run {
        load: LoadReport,
        /// The run's time bound (`--duration`), ns of the executor's clock.
        bound_ns: u64,
    },
    /// A canonical scenario.
    Scenario {
        name: String,
        /// The trial's emulated time limit, ns.
        time_limit_ns: u64,
    },
}

/// OOM killer figures.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OomFigures {
    /// `/proc/vmstat oom_kill` (sysrq kills included, as in the kernel).
    pub kills: u64,
    /// `out_of_memory()` calls.
    pub invocations: u64,
    /// Processes SIGKILLed because they share a victim's mm.
    pub sharer_kills: u64,
    /// Dying tasks marked as victims without a kill.
    pub self_marked: u64,
    /// Selections aborted for a pending victim.
    pub aborts: u64,
    /// Kills by the watchdog's sysrq-f recovery.
    pub sysrq_kills: u64,
}

impl OomFigures {
    /// The OOM killer's counters now.
    pub fn of(oom: &reaper::oom_kill::Oom) -> Self {
        let st = oom.stats();
        OomFigures {
            kills: ld(&st.oom_kill),
            invocations: ld(&st.calls),
            sharer_kills: ld(&st.sharer_kills),
            self_marked: ld(&st.self_marked),
            aborts: ld(&st.aborts),
            sysrq_kills: ld(&st.sysrq_kills),
        }
    }
}

/// oom_reaper figures.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReaperFigures {
    pub attempts: u64,
    pub reaped: u64,
    pub gave_up: u64,
    /// Victims already `MMF_OOM_SKIP` (exit got there first).
    pub skipped: u64,
    pub pages_reaped: u64,
}

impl ReaperFigures {
    /// The oom_reaper's counters now.
    pub fn of(r: &reaper::oom_reaper::ReaperQueue) -> Self {
        let s = r.stats();
        ReaperFigures {
            attempts: ld(&s.attempts),
            reaped: ld(&s.reaped),
            gave_up: ld(&s.gave_up),
            skipped: ld(&s.skipped),
            pages_reaped: ld(&s.pages_reaped),
        }
    }
}

/// One OOM victim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VictimRecord {
    pub pid: u32,
    pub comm: String,
    /// Killed (false: a dying task that self-marked).
    pub killed: bool,
    pub sysrq: bool,
    pub at_ns: u64,
    /// When its memory came back (reaped or torn down), executor ns; `None`: it did not.
    pub reclaimed_ns: Option<u64>,
}

/// The report of one machine's life.
#[derive(Clone, Debug)]
pub struct Report {
    pub workload: Workload,
    pub config: MachineConfig,
    pub seed: u64,
    /// `sim` | `threads`.
    pub executor: &'static str,
    /// The same seed replays the run.
    pub deterministic: bool,
    pub verdict: Verdict,
    pub checks: Checks,
    /// Executor clock when the workload phase ended, ns.
    pub workload_end_ns: u64,
    /// Executor clock when the machine was finished, ns.
    pub end_ns: u64,
    /// Host wall-clock time of the whole run (threads executor only: a sim report must not
    /// depend on the host).
    pub wall_ns: Option<u64>,
    pub panic_message: Option<String>,
    pub oom: OomFigures,
    pub reaper: Option<ReaperFigures>,
    pub livelocks: u64,
    pub stalled_episodes: u64,
    pub livelock_chains: Vec<LivelockReport>,
    pub victims: Vec<VictimRecord>,
    /// Victims too old to be kept in `victims` (a long run keeps the most recent 100,000).
    pub victims_dropped: u64,
    /// Kill → reclaim of every killed victim whose memory came back, ns.
    pub kill_to_reclaim_ns: Vec<u64>,
    pub frames: FrameAccounting,
    pub frames_leaked: Option<u64>,
    pub tasks_left: Vec<String>,
    /// The OOM victims' `mmap_lock` states, when tasks were left.
    pub victim_locks: Vec<String>,
    /// (lock, why) of every `mmap_lock` that cannot make progress.
    pub stuck_locks: Vec<(String, String)>,
    /// Scenario processes idle in `pause()` at the end, sent away afterwards.
    pub survivors: Vec<String>,
    /// The kernel log (dmesg format).
    pub log: Vec<String>,
    /// `/proc/vmstat`-style event totals of the machine ([`mm::vmstat::VmEvent`] order).
    pub vm_events: [u64; mm::vmstat::NR_VM_EVENTS],
    /// Lock event totals ([`mm::locking::lock_events::LockEvent`] order).
    pub lock_events: [u64; mm::locking::lock_events::NR_LOCK_EVENTS],
    /// `mmap_lock` wait histograms of the machine ([`WaitHistogram::of`] reads one kind).
    pub mmap_lock_waits: [u64; NR_MMAP_LOCK_WAITS * WAIT_SLOTS],
}

fn ld(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

/// Livelock chains printed in full up to this many.
const CHAINS_SHOWN: usize = 3;
/// Tasks listed in full up to this many.
const TASKS_SHOWN: usize = 20;

impl Report {
    /// Build the report of a finished machine.
    pub fn new(
        workload: Workload,
        seed: u64,
        f: Finished,
        survivors: Vec<String>,
        wall_ns: Option<u64>,
    ) -> Report {
        let k = &f.kernel;
        let (livelocks, stalled_episodes, livelock_chains) = match &k.watchdog {
            Some(w) => (
                ld(&w.stats().livelocks),
                ld(&w.stats().stalled_episodes),
                w.reports(),
            ),
            None => (0, 0, Vec::new()),
        };
        let (records, victims_dropped) = k.oom.victim_records();
        let victim_locks = if f.tasks_left.is_empty() {
            Vec::new()
        } else {
            k.oom
                .victims()
                .iter()
                .map(|v| {
                    let raw = v.mm.mmap_lock.raw();
                    format!(
                        "victim {} mmap_lock: count={:#x} owner={:?} waiters={:?} mm_users={}",
                        v.tgid,
                        raw.count(),
                        raw.owner(),
                        raw.waiters(),
                        v.mm.mm_users()
                    )
                })
                .collect()
        };
        Report {
            workload,
            config: k.cfg.clone(),
            seed,
            executor: f.executor,
            deterministic: f.deterministic,
            checks: f.checks.clone(),
            workload_end_ns: f.workload_end_ns,
            end_ns: f.end_ns,
            wall_ns,
            panic_message: k.panicked(),
            oom: OomFigures::of(&k.oom),
            reaper: k.reaper.as_deref().map(ReaperFigures::of),
            livelocks,
            stalled_episodes,
            livelock_chains,
            kill_to_reclaim_ns: records
                .iter()
                .filter_map(|r| r.kill_to_reclaim_ns)
                .collect(),
            victims: records
                .into_iter()
                .map(|v| VictimRecord {
                    pid: v.tgid,
                    comm: v.comm,
                    killed: v.killed,
                    sysrq: v.by_sysrq,
                    at_ns: v.marked_ns,
                    reclaimed_ns: v.reclaimed_ns,
                })
                .collect(),
            victims_dropped,
            frames: f.frames,
            frames_leaked: f.frames_leaked,
            tasks_left: f.tasks_left.clone(),
            victim_locks,
            stuck_locks: f
                .stuck_locks
                .iter()
                .map(|(mm, why)| (mm.name().to_string(), why.clone()))
                .collect(),
            survivors,
            log: k.log.lines().iter().map(|l| l.to_string()).collect(),
            vm_events: k.tasks.vm_events(),
            lock_events: k.tasks.lock_events(),
            mmap_lock_waits: k.tasks.mmap_lock_waits(),
            verdict: f.verdict,
        }
    }

    /// One VM event total.
    pub fn vm_event(&self, ev: mm::vmstat::VmEvent) -> u64 {
        self.vm_events[ev as usize]
    }

    /// One lock event total.
    pub fn lock_event(&self, ev: mm::locking::lock_events::LockEvent) -> u64 {
        self.lock_events[ev as usize]
    }

    /// The histogram of one kind of `mmap_lock` wait.
    pub fn mmap_lock_wait(&self, kind: MmapLockWait) -> WaitHistogram {
        WaitHistogram::of(&self.mmap_lock_waits, kind)
    }

    /// Killed victims.
    pub fn killed(&self) -> usize {
        self.victims.iter().filter(|v| v.killed).count()
    }

    /// The report as one JSON object. The keys of `oomlab scenario --json` are always there
    /// (a scenario adds `scenario`, its name).
    pub fn json(&self) -> Value {
        let c = &self.config;
        let mut v = json!({
            "config": {
                "write_lock": c.knobs.write_lock.name(),
                "read_lock": c.knobs.read_lock.name(),
                "rwsem_model": c.knobs.rwsem_model.name(),
                "rwsem_spin": c.knobs.rwsem_spin.name(),
                "reaper": if c.reaper_on { "on" } else { "off" },
                "reaper_delay_ms": c.reaper().map_or(0, |r| r.delay_ms),
                "panic_on_oom": c.oom.panic_on_oom,
                "oom_kill_allocating_task": c.oom.oom_kill_allocating_task,
                "oom_dump_tasks": c.oom.oom_dump_tasks,
                "victim_gone_rule": c.oom.victim_gone_rule.name(),
                "memory_bytes": c.memory_bytes,
                "livelock_window_ms": c.livelock_window_ns() / 1_000_000,
            },
            "seed": self.seed,
            "ending": self.verdict.name(),
            "end_time_ms": self.workload_end_ns as f64 / 1e6,
            "oom_kills": self.oom.kills,
            "reaper": {
                "attempts": self.reaper.as_ref().map_or(0, |r| r.attempts),
                "reaped": self.reaper.as_ref().map_or(0, |r| r.reaped),
                "gave_up": self.reaper.as_ref().map_or(0, |r| r.gave_up),
            },
            "livelocks": self.livelocks,
            "stalled_episodes": self.stalled_episodes,
            "sysrq_kills": self.oom.sysrq_kills,
            "panicked": self.panic_message.is_some(),
            "frames_leaked": self.frames_leaked,
            "kill_to_reclaim_ms": self.kill_to_reclaim_ns.iter().map(|&ns| ns as f64 / 1e6).collect::<Vec<_>>(),
            "victims": self.victims.iter().map(|v| json!({"pid": v.pid, "comm": v.comm, "killed": v.killed, "sysrq": v.sysrq, "at_ms": v.at_ns as f64 / 1e6})).collect::<Vec<_>>(),
            "tasks_left": self.tasks_left,
            "survivors": self.survivors,
            "stuck_locks": self.stuck_locks.iter().map(|(lock, why)| json!({"lock": lock, "why": why})).collect::<Vec<_>>(),
            "livelock_chains": self.livelock_chains.iter().map(|r| json!({"at_ms": r.at_ns as f64 / 1e6, "chain": r.chain})).collect::<Vec<_>>(),
            "log": self.log,
        });
        if let Workload::Scenario { name, .. } = &self.workload {
            v["scenario"] = json!(name);
        }
        if let Verdict::EmulatorBug { what } = &self.verdict {
            v["emulator_bug"] = json!(what);
        }
        if self.victims_dropped > 0 {
            v["victims_dropped"] = json!(self.victims_dropped);
        }
        if let Workload::Run { load, .. } = &self.workload {
            self.add_run_keys(&mut v, load);
        }
        v
    }

    /// `oomlab run --json`: the run's figures on top of the shared keys. Kill → reclaim
    /// becomes `{count, p50, p99, max}` in ms (nearest rank over every killed victim whose
    /// memory came back: a long run has thousands); `log` is left out (`--log` streams it);
    /// `rwsem_wait_seconds` has the `mmap_lock` waits that slept, by op and wait kind, with
    /// percentiles estimated from the histogram's buckets as Prometheus'
    /// `histogram_quantile()` does.
    fn add_run_keys(&self, v: &mut Value, l: &LoadReport) {
        use mm::vmstat::VmEvent;
        let mut k2r = self.kill_to_reclaim_ns.clone();
        k2r.sort_unstable();
        let ms = |ns: Option<&u64>| ns.map(|&ns| ns as f64 / 1e6);
        v["kill_to_reclaim_ms"] = json!({
            "count": k2r.len(),
            "p50": ms(nearest_rank(&k2r, 0.50)),
            "p99": ms(nearest_rank(&k2r, 0.99)),
            "max": ms(k2r.last()),
        });
        if let Some(obj) = v.as_object_mut() {
            obj.remove("log");
        }
        v["duration_s"] = json!(l.wound_down_at_ns.saturating_sub(l.started_at_ns) as f64 / 1e9);
        v["faults"] = json!(self.vm_event(VmEvent::Pgfault));
        v["mmaps"] = json!(self.vm_event(VmEvent::MmapCalls));
        v["munmaps"] = json!(self.vm_event(VmEvent::MunmapCalls));
        let mut waits = serde_json::Map::new();
        for &kind in MmapLockWait::ALL {
            let h = self.mmap_lock_wait(kind);
            let s = |q: f64| h.quantile_ns(q).map(|ns| ns / 1e9);
            let entry = waits
                .entry(kind.op())
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("an object");
            entry.insert(
                kind.wait().to_string(),
                json!({
                    "count": h.count(),
                    "sum": h.sum_ns() as f64 / 1e9,
                    "p50": s(0.50),
                    "p90": s(0.90),
                    "p99": s(0.99),
                }),
            );
        }
        v["rwsem_wait_seconds"] = Value::Object(waits);
    }

    /// The summary, line by line.
    pub fn summary(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mib = self.config.memory_bytes >> 20;
        match &self.workload {
            Workload::Run { load: l, .. } => out.push(format!(
                "oomlab run: {} worker threads ({} of up to {} threads) + {}, {} executor, {} MiB, seed {}",
                l.threads,
                plural(u64::from(l.processes), "process", "processes"),
                l.threads_per_process,
                plural(u64::from(l.remote_readers), "remote reader", "remote readers"),
                self.executor,
                mib,
                self.seed
            )),
            Workload::Scenario { name, .. } => out.push(format!(
                "oomlab scenario {name}: {} executor, {mib} MiB, seed {}",
                self.executor, self.seed
            )),
        }
        out.push(format!("kernel: {}", self.config.describe()));
        if let Some(msg) = &self.panic_message {
            out.push(format!("Kernel panic - not syncing: {msg}"));
        }
        for r in self.livelock_chains.iter().take(CHAINS_SHOWN) {
            out.push(format!("livelock at {}:", secs(r.at_ns)));
            out.extend(r.chain.iter().map(|l| format!("  {l}")));
        }
        if self.livelock_chains.len() > CHAINS_SHOWN {
            out.push(format!(
                "... {} more livelocks",
                self.livelock_chains.len() - CHAINS_SHOWN
            ));
        }
        let mut row = |k: &str, v: String| out.push(format!("  {k:<17} {v}"));
        row("ending", self.verdict_text());
        row("duration", self.duration_text());
        if let Workload::Run { load: l, .. } = &self.workload {
            row(
                "tasks",
                format!(
                    "{} workers in {} + {}; {} started ({} processes, {} respawns): \
                     {} stopped, {} killed, {} left",
                    l.threads,
                    plural(u64::from(l.processes), "process", "processes"),
                    plural(
                        u64::from(l.remote_readers),
                        "remote reader",
                        "remote readers"
                    ),
                    l.tasks_started,
                    l.processes_started,
                    l.respawns,
                    l.tasks_stopped,
                    l.tasks_killed,
                    l.tasks_left
                ),
            );
            let w = &l.work;
            row(
                "work",
                format!(
                    "{} mmaps ({} failed), {} munmaps, {} pages touched, {} remote writes ({} failed)",
                    w.mmaps,
                    w.mmap_errors,
                    w.munmaps,
                    w.pages_touched,
                    w.remote_ok + w.remote_failed,
                    w.remote_failed
                ),
            );
        }
        let o = &self.oom;
        row(
            "OOM kills",
            format!(
                "{} (+ {} sharers; {} dying tasks self-marked; {} selections aborted for a \
                 pending victim)",
                o.kills, o.sharer_kills, o.self_marked, o.aborts
            ),
        );
        row(
            "oom_reaper",
            match &self.reaper {
                Some(r) => format!(
                    "{} attempts, {} reaped, {} gave up, {} already done by exit \
                     ({} pages reaped)",
                    r.attempts, r.reaped, r.gave_up, r.skipped, r.pages_reaped
                ),
                None => "off".into(),
            },
        );
        row(
            "livelocks",
            format!("{} detected, {} sysrq kills", self.livelocks, o.sysrq_kills),
        );
        row(
            "stalled episodes",
            format!(
                "{} (victims neither reaped nor torn down within {})",
                self.stalled_episodes,
                secs(self.config.livelock_window_ns())
            ),
        );
        let mut k2r = self.kill_to_reclaim_ns.clone();
        k2r.sort_unstable();
        row(
            "kill→reclaim",
            match (k2r.last(), k2r.get(k2r.len() / 2)) {
                (Some(max), Some(median)) => format!(
                    "max {:.1}ms, median {:.1}ms ({} of {} killed victims)",
                    *max as f64 / 1e6,
                    *median as f64 / 1e6,
                    k2r.len(),
                    self.killed()
                ),
                _ => "no victim's memory came back (none killed)".into(),
            },
        );
        row("frames", self.frames.to_string());
        row("conservation", self.conservation_text());
        if let Workload::Run { load: l, .. } = &self.workload {
            if l.clones_refused > 0 {
                out.push(format!(
                    "warning: the host refused {} thread creations (EAGAIN: a limit such as a \
                     pids cgroup's pids.max or ulimit -u); the load ran with fewer tasks",
                    l.clones_refused
                ));
            }
        }
        if !self.survivors.is_empty() {
            out.push(format!(
                "survivors (idle in pause(), sent away after the trial): {}",
                self.survivors.join(" ")
            ));
        }
        if !self.tasks_left.is_empty() {
            out.push("tasks left:".into());
            out.extend(
                self.tasks_left
                    .iter()
                    .take(TASKS_SHOWN)
                    .map(|t| format!("  {t}")),
            );
            if self.tasks_left.len() > TASKS_SHOWN {
                out.push(format!(
                    "  ... and {} more",
                    self.tasks_left.len() - TASKS_SHOWN
                ));
            }
            out.extend(self.victim_locks.iter().map(|l| format!("  {l}")));
        }
        if !self.stuck_locks.is_empty() {
            out.push("stuck locks:".into());
            out.extend(
                self.stuck_locks
                    .iter()
                    .map(|(lock, why)| format!("  {lock}: {why}")),
            );
        }
        if self.deterministic {
            out.push(match &self.workload {
                Workload::Run { .. } => format!(
                    "reproduce with: oomlab run --executor sim --seed {} (and the same flags)",
                    self.seed
                ),
                Workload::Scenario { name, .. } => format!(
                    "reproduce with: oomlab scenario {name} --seed {} (and the same flags)",
                    self.seed
                ),
            });
        }
        out
    }

    fn verdict_text(&self) -> String {
        match &self.verdict {
            Verdict::Completed => "completed".into(),
            Verdict::Panicked { .. } => "panicked".into(),
            Verdict::TimeLimit => "time-limit (tasks left that could not exit)".into(),
            Verdict::Deadlock => "deadlock (no task runnable, no timer pending)".into(),
            Verdict::Interrupted { signal } => format!(
                "interrupted by {} and wound down{}",
                signal_name(*signal),
                if self.tasks_left.is_empty() {
                    ""
                } else {
                    " (tasks left that could not exit)"
                }
            ),
            Verdict::EmulatorBug { what } => format!("EMULATOR BUG: {what}"),
        }
    }

    fn duration_text(&self) -> String {
        let clock = |ns: u64| match self.wall_ns {
            Some(_) => format!("{} wall clock", secs(ns)),
            None => format!("{} emulated", secs(ns)),
        };
        match &self.workload {
            Workload::Run { load: l, bound_ns } => format!(
                "{} from the load's start to the verdict (bound {}): load {}, wind-down {}; \
                 set-up before it {}",
                clock(l.wound_down_at_ns.saturating_sub(l.started_at_ns)),
                secs(*bound_ns),
                secs(l.stopped_at_ns.saturating_sub(l.started_at_ns)),
                secs(l.wound_down_at_ns.saturating_sub(l.stopped_at_ns)),
                secs(l.setup_ns)
            ),
            Workload::Scenario { time_limit_ns, .. } => format!(
                "{} (workload ended at {}; time limit {})",
                clock(self.end_ns),
                secs(self.workload_end_ns),
                secs(*time_limit_ns)
            ),
        }
    }

    fn conservation_text(&self) -> String {
        if let Verdict::EmulatorBug { what } = &self.verdict {
            return format!("BROKEN: {what}");
        }
        match &self.checks {
            Checks::Full => "ok (free + pcp + allocated + mapped == total; nothing left \
                             allocated; every task exited)"
                .into(),
            Checks::ConservationOnly => "ok (free + pcp + allocated + mapped == total); leaks \
                                         not checked: tasks are still alive"
                .into(),
            Checks::NotChecked(why) => format!("not checked: {why}"),
        }
    }
}

/// `SIGINT` for 2, and so on (the signals that end a run).
pub fn signal_name(signal: i32) -> String {
    match signal {
        1 => "SIGHUP".into(),
        2 => "SIGINT".into(),
        15 => "SIGTERM".into(),
        n => format!("signal {n}"),
    }
}

/// The `q` quantile of `sorted` by the nearest-rank method (`None` when empty).
pub fn nearest_rank(sorted: &[u64], q: f64) -> Option<&u64> {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len().max(1)) - 1)
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
