//! The canonical scenarios under every kernel configuration ({write lock uninterruptible,
//! killable} × {oom_reaper off, on}) and the sysctl variants, each checked against what
//! docs/oom-rules.md §2–§8 implies. Every assertion carries a comment naming
//! the chain (§6 L1–L11) or rule it follows from.
//!
//! Runs use a 3 s livelock window (`WINDOW_MS`) instead of the default 30 s so that the
//! livelocking configurations end quickly; timings in the comments are emulated time.

use loadgen::scenario::{run, Ctx, Scenario, ScenarioConfig};
use loadgen::scenarios;
use loadgen::user::sleep_ms;
use mm::mm_types::LockWait;
use mm::page_alloc::FramePool;
use reaper::oom_kill::VictimGoneRule;
use serde_json::Value;
use std::cell::RefCell;
use std::fmt;
use std::sync::{Arc, Weak};

/// The livelock window of every run here, ms.
const WINDOW_MS: u64 = 3_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reaper {
    Off,
    On,
}

/// One kernel configuration of the four.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Kc {
    write: LockWait,
    reaper: Reaper,
}

const UW_R0: Kc = Kc {
    write: LockWait::Uninterruptible,
    reaper: Reaper::Off,
};
const UW_R1: Kc = Kc {
    write: LockWait::Uninterruptible,
    reaper: Reaper::On,
};
const KW_R0: Kc = Kc {
    write: LockWait::Killable,
    reaper: Reaper::Off,
};
const KW_R1: Kc = Kc {
    write: LockWait::Killable,
    reaper: Reaper::On,
};
const ALL: [Kc; 4] = [UW_R0, UW_R1, KW_R0, KW_R1];

impl fmt::Display for Kc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = match self.write {
            LockWait::Uninterruptible => "UW",
            LockWait::Killable => "KW",
        };
        let r = match self.reaper {
            Reaper::Off => "R0",
            Reaper::On => "R1",
        };
        write!(f, "{w}+{r}")
    }
}

/// The configuration of a run of `name` under `kc` (seed 0, 3 s window).
fn config(name: &str, kc: Kc) -> ScenarioConfig {
    let sc = scenarios::find(name).unwrap_or_else(|| panic!("no scenario {name}"));
    let mut cfg = sc.config();
    cfg.machine.knobs.write_lock = kc.write;
    if kc.reaper == Reaper::Off {
        cfg.machine.reaper_on = false;
    }
    cfg.machine.watchdog.as_mut().expect("watchdog").window_ns = WINDOW_MS * 1_000_000;
    cfg
}

/// What a run produced, read from its JSON report.
struct Outcome {
    what: String,
    json: Value,
    summary: Vec<String>,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.what)?;
        for l in &self.summary {
            writeln!(f, "  {l}")?;
        }
        Ok(())
    }
}

#[derive(Debug)]
struct VictimRec {
    comm: String,
    killed: bool,
    sysrq: bool,
    at_ms: f64,
}

impl Outcome {
    fn u(&self, path: &[&str]) -> u64 {
        let mut v = &self.json;
        for p in path {
            v = &v[p];
        }
        v.as_u64()
            .unwrap_or_else(|| panic!("{path:?} is not a number in\n{self}"))
    }
    fn ending(&self) -> &str {
        self.json["ending"].as_str().expect("ending")
    }
    /// `/proc/vmstat oom_kill` (manual sysrq kills included, as in the kernel).
    fn kills(&self) -> u64 {
        self.u(&["oom_kills"])
    }
    fn sysrq(&self) -> u64 {
        self.u(&["sysrq_kills"])
    }
    fn livelocks(&self) -> u64 {
        self.u(&["livelocks"])
    }
    fn reaped(&self) -> u64 {
        self.u(&["reaper", "reaped"])
    }
    fn gave_up(&self) -> u64 {
        self.u(&["reaper", "gave_up"])
    }
    fn attempts(&self) -> u64 {
        self.u(&["reaper", "attempts"])
    }
    fn panicked(&self) -> bool {
        self.json["panicked"].as_bool().expect("panicked")
    }
    fn victims(&self) -> Vec<VictimRec> {
        self.json["victims"]
            .as_array()
            .expect("victims")
            .iter()
            .map(|v| VictimRec {
                comm: v["comm"].as_str().expect("comm").to_string(),
                killed: v["killed"].as_bool().expect("killed"),
                sysrq: v["sysrq"].as_bool().expect("sysrq"),
                at_ms: v["at_ms"].as_f64().expect("at_ms"),
            })
            .collect()
    }
    /// Comms of the processes the OOM killer (or sysrq) killed, in order.
    fn killed(&self) -> Vec<String> {
        self.victims()
            .into_iter()
            .filter(|v| v.killed)
            .map(|v| v.comm)
            .collect()
    }
    fn kill_to_reclaim_ms(&self) -> Vec<f64> {
        self.json["kill_to_reclaim_ms"]
            .as_array()
            .expect("kill_to_reclaim_ms")
            .iter()
            .map(|v| v.as_f64().expect("ms"))
            .collect()
    }
    fn log(&self) -> Vec<&str> {
        self.json["log"]
            .as_array()
            .expect("log")
            .iter()
            .map(|l| l.as_str().expect("log line"))
            .collect()
    }
    /// The first livelock's wait-for chain, one string.
    fn first_chain(&self) -> String {
        self.json["livelock_chains"][0]["chain"]
            .as_array()
            .unwrap_or_else(|| panic!("no livelock chain\n{self}"))
            .iter()
            .map(|l| l.as_str().expect("chain line"))
            .collect::<Vec<_>>()
            .join("\n")
    }
    fn log_has(&self, needle: &str) -> bool {
        self.log().iter().any(|l| l.contains(needle))
    }
    fn log_count(&self, needle: &str) -> usize {
        self.log().iter().filter(|l| l.contains(needle)).count()
    }
    /// Every workload task exited and every frame came back (the runner also asserts frame
    /// conservation and panics on any leak or double free).
    fn assert_completed_clean(&self) {
        assert_eq!(self.ending(), "completed", "{self}");
        assert_eq!(self.json["frames_leaked"].as_u64(), Some(0), "{self}");
    }
}

fn run_cfg(name: &str, what: &str, cfg: &ScenarioConfig) -> Outcome {
    let sc = scenarios::find(name).unwrap_or_else(|| panic!("no scenario {name}"));
    let r = run(sc, cfg).unwrap_or_else(|e| panic!("{name} {what}: {e}"));
    let json = r.json();
    assert_eq!(json["ending"].as_str(), Some(r.verdict.name()));
    Outcome {
        what: format!("{name} {what} seed {}", cfg.seed),
        json,
        summary: r.summary(),
    }
}

fn run_kc(name: &str, kc: Kc) -> Outcome {
    run_cfg(name, &kc.to_string(), &config(name, kc))
}

/// Run `name` under the four configurations.
fn each_config(name: &str, mut check: impl FnMut(Kc, &Outcome)) {
    for kc in ALL {
        let o = run_kc(name, kc);
        check(kc, &o);
    }
}

// ---- the registry -------------------------------------------------------------------------

#[test]
fn registry_lists_the_issues_scenarios_in_order() {
    let names: Vec<&str> = scenarios::all().iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "single-hog",
            "oom-score-adj",
            "oom-lock",
            "dying-allocator",
            "shared-mm",
            "remote-reader",
            "slow-reader",
            "writer-stuck",
            "writer-stuck-nobody-left",
            "fs-lock",
            "unreapable",
            "clone-vm-exit",
            "nofs-only",
            "panic-on-oom",
            "kill-allocating-task",
            "reaper-delay",
            "exit-vs-reaper",
        ]
    );
    for s in scenarios::all() {
        assert!(
            s.memory_bytes <= 16 << 20,
            "{} is larger than 16 MiB",
            s.name
        );
        assert!(
            !s.about.is_empty() && !s.about.contains('\n'),
            "{}: --list wants one line",
            s.name
        );
        assert!(scenarios::find(&s.name).is_some());
    }
    assert!(scenarios::find("no-such-scenario").is_none());
}

// ---- scenarios, each under the four configurations ----------------------------------------

#[test]
fn single_hog_kills_the_hog_only() {
    each_config("single-hog", |kc, o| {
        o.assert_completed_clean();
        // §3.1: the hog has by far the largest rss; once it is gone nobody needs more memory.
        assert_eq!(o.killed(), ["hog"], "{o}");
        assert_eq!(o.kills(), 1, "{o}");
        // Nothing holds a lock across the kill: no livelock, no recovery kill.
        assert_eq!((o.livelocks(), o.sysrq()), (0, 0), "{o}");
        if kc.reaper == Reaper::On {
            // §4.2: the hog holds mmap_lock only inside a fault; ten failed trylocks are impossible.
            assert_eq!(o.gave_up(), 0, "{o}");
        }
    });
}

#[test]
fn oom_score_adj_scales_badness() {
    each_config("oom-score-adj", |_, o| {
        o.assert_completed_clean();
        // §3.1: +500 adds 500 × totalpages/1000 points, −1000 is never chosen; the other two
        // fit once the +500 process is gone.
        assert_eq!(o.killed(), ["adj-plus500"], "{o}");
        assert_eq!((o.kills(), o.livelocks(), o.sysrq()), (1, 0, 0), "{o}");
    });
}

#[test]
fn oom_lock_nine_allocators_one_kill() {
    each_config("oom-lock", |kc, o| {
        o.assert_completed_clean();
        // §2.1/§3.3: the nine allocators reach the slow path together (100 ms); whoever wins
        // oom_lock first kills the largest (the hog), every later out_of_memory() aborts
        // while the hog's mm is pending, and the hog's memory then serves all eight small
        // allocators: exactly one kill.
        assert_eq!(o.killed(), ["hog"], "{o}");
        assert!(o.victims()[0].at_ms >= 100.0, "{o}");
        assert_eq!((o.kills(), o.livelocks(), o.sysrq()), (1, 0, 0), "{o}");
        if kc.reaper == Reaper::On {
            // The hog only read-locks its mmap_lock in faults: the reaper never gives up.
            assert_eq!(o.gave_up(), 0, "{o}");
        }
    });
}

#[test]
fn dying_allocator_marks_itself_without_a_kill() {
    each_config("dying-allocator", |kc, o| {
        o.assert_completed_clean();
        let v = o.victims();
        // §3.1: `stuck` is the largest process and the only one the OOM killer kills.
        assert_eq!(o.killed(), ["stuck"], "{o}");
        // §2.1 step 3: the SIGKILLed allocator's next out_of_memory() finds it dying
        // (task_will_free_mem), marks it a victim and returns, without SIGKILL, without the
        // oom_kill counter and without a "Killed process" line (§7).
        assert_eq!(v.len(), 2, "{o}");
        assert_eq!(
            (v[1].comm.as_str(), v[1].killed),
            ("allocator", false),
            "{o}"
        );
        assert_eq!(o.kills(), 1, "{o}");
        assert_eq!(o.log_count("Killed process"), 1, "{o}");
        assert!(!o.log_has("(allocator) total-vm"), "{o}");
        // The supervisor's SIGKILL (600 ms) lands while `stuck` still blocks selection
        // (§3.3): it holds its mmap_lock for write until 750 ms.
        assert!(v[1].at_ms >= 600.0 && v[1].at_ms < 750.0, "{o}");
        assert_eq!((o.livelocks(), o.sysrq()), (0, 0), "{o}");
        if kc.reaper == Reaper::On {
            // §4.2: `stuck` drops the write lock 650 ms after its kill, inside the reaper's
            // 10 × 100 ms of retries: no give-up.
            assert_eq!(o.gave_up(), 0, "{o}");
        }
    });
}

#[test]
fn shared_mm_kill_reaches_both_processes() {
    each_config("shared-mm", |kc, o| {
        // `shared-b` only exits when SIGKILLed and nothing but the OOM kill signals it: the
        // run completing without a sysrq kill means the kill reached it (§4.1 step 5).
        o.assert_completed_clean();
        assert_eq!(o.sysrq(), 0, "{o}");
        // §3.1 ties keep the first of equal badness (same mm); the sharer is signalled but
        // not counted (§7: oom_kill counts __oom_kill_process calls).
        assert_eq!(o.killed(), ["shared-a"], "{o}");
        assert_eq!(o.kills(), 1, "{o}");
        assert_eq!(o.log_count("Killed process"), 1, "{o}");
        assert_eq!(o.livelocks(), 0, "{o}");
        if kc.reaper == Reaper::On {
            assert_eq!(o.gave_up(), 0, "{o}");
        }
    });
}

#[test]
fn remote_reader_l1() {
    each_config("remote-reader", |kc, o| {
        o.assert_completed_clean();
        match kc {
            // L1 R0: the reader loops in the allocator holding the victim's mmap_lock (and
            // an mm_users pin) while selection aborts on the victim: livelock, ended only by
            // the watchdog's sysrq-f. (KW: the writer leaves, but the pinned mm still waits
            // for the reader — the per-mm rule M4.)
            UW_R0 | KW_R0 => {
                assert!(o.livelocks() >= 1, "{o}");
                assert!(o.sysrq() >= 1, "{o}");
            }
            // L1 reaper alone: the queued writer defeats every trylock → "unable to reap" →
            // MMF_OOM_SKIP → collateral kills; no livelock.
            UW_R1 => {
                assert!(o.gave_up() >= 1, "{o}");
                assert!(o.log_has("oom_reaper: unable to reap pid:"), "{o}");
                assert!(o.kills() > 1, "{o}");
                assert_eq!((o.livelocks(), o.sysrq()), (0, 0), "{o}");
            }
            // L1 both: the killed writer dequeues, the trylock succeeds, the reader proceeds
            // (or fails with EFAULT on the MMF_UNSTABLE mm): one kill.
            KW_R1 => {
                assert_eq!(o.killed(), ["victim"], "{o}");
                assert_eq!(o.kills(), 1, "{o}");
                assert!(o.reaped() >= 1, "{o}");
                assert_eq!((o.gave_up(), o.livelocks(), o.sysrq()), (0, 0, 0), "{o}");
            }
        }
    });
}

#[test]
fn slow_reader_l2() {
    each_config("slow-reader", |kc, o| {
        o.assert_completed_clean();
        assert_eq!(o.killed()[0], "victim", "{o}");
        match kc {
            // L2 R0: nothing is circular; the victim's memory comes back when its reader's
            // I/O ends (2.1 s), well inside the window: one kill, no livelock.
            UW_R0 | KW_R0 => {
                assert_eq!((o.kills(), o.livelocks(), o.sysrq()), (1, 0, 0), "{o}");
                let v = &o.victims()[0];
                assert!(v.at_ms + o.kill_to_reclaim_ms()[0] >= 2_100.0, "{o}");
            }
            // L2 UW+reaper: the uninterruptible writer stays queued behind the reader, every
            // trylock fails → give up after ~1 s → the bystander is the collateral kill.
            UW_R1 => {
                assert_eq!(o.gave_up(), 1, "{o}");
                assert_eq!(o.killed(), ["victim", "bystander"], "{o}");
                assert_eq!((o.kills(), o.livelocks(), o.sysrq()), (2, 0, 0), "{o}");
            }
            // L2 KW+reaper: the killed writer leaves the queue, the reaper's read trylock
            // shares with the stalled reader and reaps: no collateral kill.
            KW_R1 => {
                assert_eq!(o.reaped(), 1, "{o}");
                assert!(o.log_has("(victim), now anon-rss:"), "{o}");
                assert_eq!(
                    (o.kills(), o.gave_up(), o.livelocks(), o.sysrq()),
                    (1, 0, 0, 0),
                    "{o}"
                );
            }
        }
    });
}

#[test]
fn writer_stuck_l5() {
    each_config("writer-stuck", |kc, o| {
        o.assert_completed_clean();
        // L5 is unsolved by both mechanisms: the write lock is held, not awaited (KW is
        // irrelevant), so every configuration ends with the bystander killed too.
        assert_eq!(o.killed(), ["victim", "bystander"], "{o}");
        assert_eq!(o.kills(), 2, "{o}");
        match kc.reaper {
            // R0: silent livelock (the writer loops, selection aborts on the victim) until
            // the watchdog's sysrq-f kills the bystander.
            Reaper::Off => {
                assert_eq!((o.livelocks(), o.sysrq()), (1, 1), "{o}");
                assert!(o.victims()[1].sysrq, "{o}");
                // The chain: the victim's idle thread waits in exit_mm behind the write lock
                // its other thread holds while sleeping on the inode mutex of the allocating
                // writer.
                let chain = o.first_chain();
                assert!(chain.contains("mmap_lock[pid"), "{chain}");
                assert!(chain.contains("is held for write by"), "{chain}");
                assert!(chain.contains("&inode->i_mutex is held"), "{chain}");
            }
            // R1: ten failed trylocks → "unable to reap" → MMF_OOM_SKIP → the next victim
            // is chosen by the OOM killer itself; the livelock becomes an extra kill.
            Reaper::On => {
                assert_eq!(o.gave_up(), 1, "{o}");
                assert!(o.log_has("oom_reaper: unable to reap pid:"), "{o}");
                assert_eq!((o.livelocks(), o.sysrq()), (0, 0), "{o}");
            }
        }
    });
}

#[test]
fn writer_stuck_nobody_left_l5() {
    for kc in ALL {
        let mut cfg = config("writer-stuck-nobody-left", kc);
        // Bound the livelocking configurations (they can only end at the time limit).
        cfg.max_time_ns = 10_000_000_000;
        let o = run_cfg("writer-stuck-nobody-left", &kc.to_string(), &cfg);
        assert_eq!(o.killed(), ["victim"], "{o}");
        match kc.reaper {
            // L5 R0: the victim never gets unstuck and the manual OOM finds nothing to kill
            // (the victim is pending, the writer is −1000): livelock after livelock.
            Reaper::Off => {
                assert_eq!(o.ending(), "time-limit", "{o}");
                assert!(!o.panicked(), "{o}");
                assert!(o.livelocks() >= 2, "{o}");
                assert_eq!((o.sysrq(), o.kills()), (0, 1), "{o}");
                assert!(o.log_has("OOM request ignored. No task eligible"), "{o}");
            }
            // L5 R1: give-up sets MMF_OOM_SKIP; the next selection finds no eligible task:
            // "Out of memory and no killable processes..." and panic (§2.1 step 7).
            Reaper::On => {
                assert_eq!(o.ending(), "panicked", "{o}");
                assert!(o.panicked(), "{o}");
                assert_eq!((o.gave_up(), o.kills(), o.livelocks()), (1, 1, 0), "{o}");
                assert!(
                    o.log_has("Out of memory and no killable processes..."),
                    "{o}"
                );
                assert!(
                    o.log_has("Kernel panic - not syncing: System is deadlocked on memory"),
                    "{o}"
                );
            }
        }
    }
}

#[test]
fn fs_lock_l4() {
    each_config("fs-lock", |kc, o| {
        o.assert_completed_clean();
        assert_eq!(o.killed()[0], "victim", "{o}");
        match kc.reaper {
            // L4 R0 (KW irrelevant: no mmap_lock wait): the victim sleeps on the inode mutex
            // held by an allocator that loops on the abort rule: livelock, sysrq-f kills the
            // bystander, whose memory lets the writer finish and release the mutex.
            Reaper::Off => {
                assert_eq!((o.livelocks(), o.sysrq(), o.kills()), (1, 1, 2), "{o}");
                assert_eq!(o.killed(), ["victim", "bystander"], "{o}");
                // The chain: the victim sleeps on the inode mutex, whose holder waits for
                // memory.
                let chain = o.first_chain();
                assert!(chain.contains("on &inode->i_mutex"), "{chain}");
                assert!(chain.contains("&inode->i_mutex is held"), "{chain}");
                assert!(chain.contains("writer"), "{chain}");
            }
            // L4 R1: the victim holds no mmap_lock, the first trylock succeeds and reaps;
            // solved by the reaper alone with one kill.
            Reaper::On => {
                assert_eq!((o.reaped(), o.attempts(), o.gave_up()), (1, 1, 0), "{o}");
                assert_eq!((o.kills(), o.livelocks(), o.sysrq()), (1, 0, 0), "{o}");
            }
        }
    });
}

#[test]
fn unreapable_l7() {
    each_config("unreapable", |kc, o| {
        o.assert_completed_clean();
        assert_eq!(o.killed()[0], "victim", "{o}");
        match kc.reaper {
            // R0: only the victim's exit frees its memory, after its thread's I/O (2.05 s):
            // one kill, a stall, no livelock within the window.
            Reaper::Off => {
                assert_eq!((o.kills(), o.livelocks(), o.sysrq()), (1, 0, 0), "{o}");
                let v = &o.victims()[0];
                assert!(v.at_ms + o.kill_to_reclaim_ms()[0] >= 2_050.0, "{o}");
            }
            // L7 R1: the reaper "succeeds" at once but skips mlocked and shared VMAs (§4.2),
            // sets MMF_OOM_SKIP, and the allocator, still short, gets a premature second
            // victim while the first one's memory is still held.
            Reaper::On => {
                assert!(o.reaped() >= 1, "{o}");
                assert_eq!(o.gave_up(), 0, "{o}");
                let line = o
                    .log()
                    .into_iter()
                    .find(|l| l.contains("oom_reaper: reaped process") && l.contains("(victim)"))
                    .unwrap_or_else(|| panic!("no reap line for the victim\n{o}"))
                    .to_string();
                assert!(
                    !line.contains("now anon-rss:0kB"),
                    "mlocked pages stay: {line}"
                );
                assert!(!line.contains("shmem-rss:0kB"), "shared pages stay: {line}");
                assert_eq!(o.killed(), ["victim", "bystander"], "{o}");
                assert_eq!((o.kills(), o.livelocks(), o.sysrq()), (2, 0, 0), "{o}");
                let v = o.victims();
                assert!(
                    v[1].at_ms < 2_050.0,
                    "second victim before the first exits\n{o}"
                );
            }
        }
    });
}

#[test]
fn clone_vm_exit_l3() {
    each_config("clone-vm-exit", |kc, o| {
        o.assert_completed_clean();
        let v = o.victims();
        // L3 as fixed in ≈4.8: p1 (exiting, first of equal badness) is killed and its sharer
        // p2 SIGKILLed; p2, holding mmap_lock for write, re-enters out_of_memory(), finds
        // itself and every sharer dying (task_will_free_mem) and marks itself, gets reserves,
        // unwinds and unlocks. One counted kill; the bystander survives.
        assert_eq!(o.killed(), ["p1"], "{o}");
        assert_eq!(v.len(), 2, "{o}");
        assert_eq!((v[1].comm.as_str(), v[1].killed), ("p2", false), "{o}");
        assert_eq!((o.kills(), o.livelocks(), o.sysrq()), (1, 0, 0), "{o}");
        if kc.reaper == Reaper::On {
            // The reaper's trylock fails only while p2 holds the lock (milliseconds).
            assert_eq!(o.gave_up(), 0, "{o}");
        }
    });
}

#[test]
fn nofs_only_l9() {
    each_config("nofs-only", |_, o| {
        o.assert_completed_clean();
        // L9 (§2.1 step 4): out_of_memory() never kills for allocations without __GFP_FS;
        // neither KW nor the reaper changes that. Only the watchdog's sysrq-f (GFP_KERNEL,
        // ignoring the abort rule) kills, once, and the filler's memory is enough.
        assert_eq!((o.livelocks(), o.sysrq(), o.kills()), (1, 1, 1), "{o}");
        let v = o.victims();
        assert_eq!(v.len(), 1, "{o}");
        assert_eq!((v[0].comm.as_str(), v[0].sysrq), ("filler", true), "{o}");
        assert!(v[0].at_ms >= WINDOW_MS as f64, "{o}");
        let log = o.log();
        let sysrq = log
            .iter()
            .position(|l| l.contains("sysrq: Manual OOM execution"))
            .expect("sysrq line");
        let first_invocation = log
            .iter()
            .position(|l| l.contains("invoked oom-killer"))
            .expect("the sysrq OOM report");
        assert!(
            sysrq < first_invocation,
            "no OOM report before sysrq-f\n{o}"
        );
    });
}

#[test]
fn panic_on_oom_default_just_kills() {
    each_config("panic-on-oom", |_, o| {
        o.assert_completed_clean();
        // §2.2 panic_on_oom = 0 (default): select by badness; the idle cache is the largest.
        assert_eq!(o.killed(), ["cache"], "{o}");
        assert_eq!(
            (o.kills(), o.livelocks(), o.panicked()),
            (1, 0, false),
            "{o}"
        );
    });
}

#[test]
fn kill_allocating_task_default_kills_the_largest() {
    each_config("kill-allocating-task", |_, o| {
        o.assert_completed_clean();
        // §2.2 oom_kill_allocating_task = 0: scan and pick by badness.
        assert_eq!(o.killed(), ["big"], "{o}");
        assert_eq!((o.kills(), o.livelocks()), (1, 0), "{o}");
    });
}

#[test]
fn reaper_delay_default_reaps_at_once() {
    each_config("reaper-delay", |kc, o| {
        o.assert_completed_clean();
        assert_eq!(o.killed(), ["victim"], "{o}");
        assert_eq!((o.kills(), o.livelocks(), o.sysrq()), (1, 0, 0), "{o}");
        let k2r = o.kill_to_reclaim_ms()[0];
        match kc.reaper {
            // R0: only the victim's exit, after its thread's I/O ends at 2.55 s, frees memory.
            Reaper::Off => assert!(o.victims()[0].at_ms + k2r >= 2_550.0, "{o}"),
            // M6 with delay 0: the first trylock succeeds (no lock held), before any retry.
            Reaper::On => {
                assert_eq!((o.reaped(), o.gave_up()), (1, 0), "{o}");
                assert!(k2r < 100.0, "{o}");
            }
        }
    });
}

#[test]
fn exit_vs_reaper_many_seeds() {
    // §5: reaper and exit (exit_mmap's own reap, munmap, faults, the remote reader's pins)
    // never free a frame twice and lose none: the runner checks frame conservation after
    // every run and panics otherwise; here every run must also complete with nothing left.
    let seeds: u64 = if cfg!(debug_assertions) { 12 } else { 48 };
    for kc in ALL {
        for seed in 0..seeds {
            let mut cfg = config("exit-vs-reaper", kc);
            cfg.seed = seed;
            let o = run_cfg("exit-vs-reaper", &kc.to_string(), &cfg);
            o.assert_completed_clean();
            // The victim's private memory outweighs what the allocator still needs: one kill.
            assert_eq!(o.killed(), ["victim"], "{o}");
            assert_eq!((o.kills(), o.livelocks(), o.sysrq()), (1, 0, 0), "{o}");
            if kc.reaper == Reaper::On {
                // Nothing holds or awaits the victim's mmap_lock for long (no allocation under
                // it): ten failed trylocks in a row cannot happen.
                assert_eq!(o.gave_up(), 0, "{o}");
            }
        }
    }
}

// ---- sysctls and knobs --------------------------------------------------------------------

#[test]
fn panic_on_oom_1_and_2_panic_at_the_first_oom() {
    for (mode, text) in [(1u8, "system-wide"), (2, "compulsory")] {
        for kc in [UW_R1, KW_R0] {
            let mut cfg = config("panic-on-oom", kc);
            cfg.machine.oom.panic_on_oom = mode;
            let o = run_cfg("panic-on-oom", &format!("{kc} panic_on_oom={mode}"), &cfg);
            // §2.1 step 5 / §2.2: check_panic_on_oom() runs before any selection.
            assert!(o.panicked(), "{o}");
            assert_eq!(o.ending(), "panicked", "{o}");
            assert_eq!(o.json["config"]["panic_on_oom"].as_u64(), Some(mode as u64));
            let want = format!(
                "Kernel panic - not syncing: Out of memory: {text} panic_on_oom is enabled"
            );
            assert!(o.log_has(&want), "{want:?} missing\n{o}");
            assert!(o.log_has("allocator invoked oom-killer:"), "{o}");
            assert_eq!((o.kills(), o.victims().len()), (0, 0), "{o}");
            assert!(o.json["frames_leaked"].is_null(), "{o}");
        }
    }
}

#[test]
fn oom_kill_allocating_task_kills_the_allocator() {
    for kc in ALL {
        let mut cfg = config("kill-allocating-task", kc);
        cfg.machine.oom.oom_kill_allocating_task = true;
        let o = run_cfg(
            "kill-allocating-task",
            &format!("{kc} kill-allocating"),
            &cfg,
        );
        o.assert_completed_clean();
        // §2.1 step 6: the allocating task is killed without a scan; `big` survives.
        assert_eq!(o.killed(), ["allocator"], "{o}");
        assert_eq!((o.kills(), o.livelocks()), (1, 0), "{o}");
        assert!(
            o.log_has("Out of memory (oom_kill_allocating_task): Killed process"),
            "{o}"
        );
    }
}

/// A process that only pauses until it is killed is a survivor when the OOM killer picks
/// someone else: with `oom_kill_allocating_task = 1` in `shared-mm` the allocator dies and the
/// two CLONE_VM processes idle on. The trial ends as soon as nothing but them is left (not at
/// the time limit), lists them as survivors, sends them away, and every frame comes back.
#[test]
fn idle_survivors_end_the_trial_and_are_listed() {
    for kc in ALL {
        let mut cfg = config("shared-mm", kc);
        cfg.machine.oom.oom_kill_allocating_task = true;
        let o = run_cfg("shared-mm", &format!("{kc} kill-allocating"), &cfg);
        o.assert_completed_clean();
        assert_eq!(o.killed(), ["allocator"], "{o}");
        let survivors: Vec<&str> = o.json["survivors"]
            .as_array()
            .expect("survivors")
            .iter()
            .map(|v| v.as_str().unwrap().split('[').next().unwrap())
            .collect();
        assert_eq!(survivors, ["shared-a", "shared-b"], "{o}");
        // Ended right after the kill, not at the 600 s bound.
        assert!(o.json["end_time_ms"].as_f64().unwrap() < 5_000.0, "{o}");
    }
    // With the default sysctls the same processes are the victims, never survivors.
    let o = run_cfg("shared-mm", "default", &config("shared-mm", KW_R1));
    o.assert_completed_clean();
    assert_eq!(o.json["survivors"].as_array().map(Vec::len), Some(0), "{o}");
}

#[test]
fn oom_dump_tasks_off_drops_the_task_table() {
    let mut cfg = config("single-hog", UW_R1);
    let on = run_cfg("single-hog", "dump on", &cfg);
    cfg.machine.oom.oom_dump_tasks = false;
    let off = run_cfg("single-hog", "dump off", &cfg);
    // §2.2 oom_dump_tasks: the per-task table is part of the report only when set.
    assert!(on.log_has("Tasks state (memory values in pages):"), "{on}");
    assert!(
        !off.log_has("Tasks state (memory values in pages):"),
        "{off}"
    );
    assert_eq!(off.killed(), ["hog"], "{off}");
}

#[test]
fn victim_gone_rule_on_a_pinned_mm() {
    // remote-reader, KW+R0: the victim's threads all exit (killable writer), but the remote
    // reader's mm_users pin keeps its mm alive and the reader still needs memory.
    let mut cfg = config("remote-reader", KW_R0);
    let o = run_cfg("remote-reader", "KW+R0 mm-teardown", &cfg);
    // M4 MmTeardown: the abort rule holds until the pinned mm is torn down: livelock.
    assert!(o.livelocks() >= 1 && o.sysrq() >= 1, "{o}");
    assert!(o.log_has("only a remote pin keeps the mm alive"), "{o}");
    cfg.machine.oom.victim_gone_rule = VictimGoneRule::ProcessReleased;
    let o = run_cfg("remote-reader", "KW+R0 process-released", &cfg);
    o.assert_completed_clean();
    // L11 / M4 ProcessReleased: once the victim's threads are released selection resumes
    // while its memory is still pinned: premature next victims, no livelock.
    assert_eq!(o.json["config"]["victim_gone_rule"], "process-released");
    assert_eq!((o.livelocks(), o.sysrq()), (0, 0), "{o}");
    assert!(o.kills() >= 2, "{o}");
    assert_eq!(o.killed()[0], "victim", "{o}");
}

#[test]
fn reaper_delay_2000_ms() {
    for write in [LockWait::Uninterruptible, LockWait::Killable] {
        let kc = Kc {
            write,
            reaper: Reaper::On,
        };
        let mut cfg = config("reaper-delay", kc);
        cfg.machine.reaper.delay_ms = 2000;
        let o = run_cfg("reaper-delay", &format!("{kc} delay 2000"), &cfg);
        o.assert_completed_clean();
        assert_eq!(o.json["config"]["reaper_delay_ms"].as_u64(), Some(2000));
        // M6 (≥ 5.18 OOM_REAPER_DELAY): the victim cannot exit before 2.55 s (its thread is
        // in I/O), so the memory comes back when the delayed reaper runs, 2 s after the kill.
        let k2r = o.kill_to_reclaim_ms();
        assert_eq!(k2r.len(), 1, "{o}");
        assert!(k2r[0] >= 2000.0, "{o}");
        assert_eq!(
            (o.reaped(), o.gave_up(), o.kills(), o.livelocks()),
            (1, 0, 1, 0),
            "{o}"
        );
    }
}

// ---- determinism --------------------------------------------------------------------------

#[test]
fn same_seed_same_json_for_every_scenario() {
    for sc in scenarios::all() {
        for (kc, seed) in [(UW_R1, 7), (KW_R0, 11)] {
            let mut cfg = config(&sc.name, kc);
            cfg.seed = seed;
            // Every scenario ends by 40 s except the livelock of writer-stuck-nobody-left.
            cfg.max_time_ns = 45_000_000_000;
            let a = run_cfg(&sc.name, &kc.to_string(), &cfg);
            let b = run_cfg(&sc.name, &kc.to_string(), &cfg);
            assert_eq!(
                a.json, b.json,
                "{} {kc} seed {seed} is not deterministic",
                sc.name
            );
        }
    }
}

// ---- emulator resources ---------------------------------------------------------------------

thread_local! {
    static POOL_PROBE: RefCell<Option<Weak<FramePool>>> = const { RefCell::new(None) };
}

fn probe_pool(c: &mut Ctx) {
    POOL_PROBE.with(|p| *p.borrow_mut() = Some(Arc::downgrade(&c.m.pool)));
    c.process("idle", 0, |_| sleep_ms(10));
}

/// A run that completes gives its machine back: the frame pool (and its host mapping) does
/// not outlive `run()` (regression: the FramePool <-> OOM killer `Arc` cycle leaked 16 MiB per
/// run).
#[test]
fn machine_frame_pool_freed_after_its_run() {
    let probe = Scenario::rust("pool-probe", "one idle process", 16 << 20, probe_pool);
    let r = run(&probe, &ScenarioConfig::new(16 << 20)).expect("run");
    assert_eq!(r.verdict.name(), "completed");
    let pool = POOL_PROBE
        .with(|p| p.borrow_mut().take())
        .expect("setup ran");
    assert!(pool.upgrade().is_none(), "the frame pool outlived its run");
}

/// The 2016 RFC as first posted (`rwsem_model = rfc-v1`) in L2: the victim's killed writer
/// leaves its waiting bias behind and the readers queued on the victim's mmap_lock are never
/// woken, so the trial can only end at the time bound; the report names the stale bias. Model
/// A on the same seed completes (the bystander's service ends later than 30 s) and reports no
/// stuck lock.
#[test]
fn rfc_v1_stale_bias_is_diagnosed_in_the_report() {
    let mut cfg = config("slow-reader", KW_R1);
    cfg.max_time_ns = 30_000_000_000;
    cfg.machine.knobs.rwsem_model = mm::locking::rwsem::RwSemModel::RfcV1;
    let o = run_cfg("slow-reader", "KW+R1 rfc-v1", &cfg);
    assert_eq!(o.ending(), "time-limit", "{o}");
    let stuck = o.json["stuck_locks"].as_array().expect("stuck_locks");
    assert_eq!(stuck.len(), 1, "{o}");
    let why = stuck[0]["why"].as_str().unwrap();
    assert!(
        why.contains("stale bias") && why.contains("2016 RFC"),
        "{o}"
    );
    assert!(o.summary.iter().any(|l| l == "stuck locks:"), "{o}");

    cfg.machine.knobs.rwsem_model = mm::locking::rwsem::RwSemModel::A;
    cfg.max_time_ns = config("slow-reader", KW_R1).max_time_ns;
    let a = run_cfg("slow-reader", "KW+R1 model A", &cfg);
    a.assert_completed_clean();
    assert_eq!(
        a.json["stuck_locks"].as_array().map(Vec::len),
        Some(0),
        "{a}"
    );
}
