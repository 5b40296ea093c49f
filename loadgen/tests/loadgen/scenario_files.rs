//! Scenario files (docs/scenario-format.md): bad input is one line at its place and nothing
//! runs; orderings are set up from the kernel's state, whatever the seed; expectations are
//! checked and their failures reported; the canonical files and the worked examples hold
//! what docs/oom-rules.md predicts for them.

use loadgen::report::Report;
use loadgen::scenario::{run_trial, Scenario, Trial};
use loadgen::scenario_file::{parse, parse_bytes};
use loadgen::scenarios;

const RFC_CHAIN: &str = include_str!("../../../scenarios/examples/rfc-chain.toml");
const INODE_LOCK: &str = include_str!("../../../scenarios/examples/inode-lock.toml");

fn scenario(text: &str) -> Scenario {
    let f = parse("t.toml", "t", text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    Scenario::from_file(f, "--file t.toml".into())
}

fn error(text: &str) -> String {
    match parse("t.toml", "t", text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

fn trial(sc: &Scenario, seed: u64, knobs: &[(&str, &str)]) -> Trial {
    let mut cfg = sc.config();
    cfg.seed = seed;
    for (k, v) in knobs {
        cfg.machine.set_knob(k, v).unwrap();
    }
    run_trial(sc, &cfg).expect("a 16 MiB pool")
}

/// Seconds of the first log line containing `needle`, from its `[    0.300123]` stamp.
fn stamp(r: &Report, needle: &str) -> Option<f64> {
    let l = r.log.iter().find(|l| l.contains(needle))?;
    let inner = l.strip_prefix('[')?.split(']').next()?;
    inner.trim().parse().ok()
}

// ---- bad input ------------------------------------------------------------------------------

#[test]
fn bad_input_is_one_line_at_its_place() {
    let cases: &[(&str, &str)] = &[
        // Malformed TOML.
        ("name = \"x\n", "t.toml:1:10: invalid basic string"),
        ("[[process]]\nname = \n", "t.toml:2:8:"),
        // Unknown keys, at every level.
        ("nmae = \"x\"\n", "t.toml:1:1: unknown key 'nmae'"),
        (
            "[[process]]\nname = \"a\"\nbogus = 1\n",
            "t.toml:3:1: unknown key 'bogus', expected one of 'name'",
        ),
        (
            "[[process]]\nname = \"a\"\nscript = [{ slep = \"1s\" }]\n",
            "t.toml:3:13: unknown key 'slep'",
        ),
        (
            "[[process]]\nname = \"a\"\nscript = [{ sleep = \"1s\", after = { att = \"1s\" } }]\n",
            "t.toml:3:37: unknown key 'att'",
        ),
        (
            "[[process]]\nname = \"a\"\nscript = [{ in_kernel = [{ mutx = \"m\" }] }]\n",
            "t.toml:3:28: unknown key 'mutx'",
        ),
        ("[expect]\nkiled = []\n", "t.toml:2:1: unknown key 'kiled'"),
        // Keys that do not go together.
        (
            "[[process]]\nname = \"a\"\nscript = [{ sleep = \"1s\", advance = true }]\n",
            "t.toml:3:37: 'advance' does not apply to sleep",
        ),
        (
            "[[process]]\nname = \"a\"\nscript = [{ sleep = \"1s\", populate = 1 }]\n",
            "t.toml:3:38: one verb per action",
        ),
        (
            "[[process]]\nname = \"a\"\nscript = [\"nap\"]\n",
            "t.toml:3:11: unknown action 'nap'",
        ),
        // Undefined references.
        (
            "[[process]]\nname = \"a\"\nscript = [{ kill = \"b\" }]\n",
            "t.toml:3:20: kill names an undefined process 'b'",
        ),
        (
            "[[process]]\nname = \"a\"\nclone_vm = \"zz\"\n",
            "t.toml:3:12: clone_vm names an undefined process 'zz'",
        ),
        (
            "[[process]]\nname = \"a\"\nscript = [{ sleep = \"1s\", after = { thread = \"a.t9\", holds = \"mmap_lock:a\" } }]\n",
            "t.toml:3:46: process 'a' has no thread 't9'",
        ),
        (
            "[[process]]\nname = \"a\"\nscript = [{ remote_read = \"a.heap\" }]\n",
            "t.toml:3:27: process 'a' declares no mapping 'heap'",
        ),
        (
            "[[process]]\nname = \"a\"\nscript = [{ touch = \"nope\" }]\n",
            "t.toml:3:21: no mapping 'nope' here",
        ),
        (
            "[[process]]\nname = \"a\"\nscript = [{ munmap = \"b\" }, { touch = \"b\" }]\n",
            "t.toml:3:22: no mapping 'b' here",
        ),
        ("[expect]\nkilled = [\"ghost\"]\n", "t.toml:2:11: undefined process 'ghost'"),
        (
            "[[process]]\nname = \"a\"\n[[process]]\nname = \"a\"\n",
            "t.toml:4:8: process 'a' is defined twice",
        ),
        // Orderings that are cyclic or can never hold.
        (
            "[[process]]\nname = \"a\"\nscript = [{ in_kernel = [{ mutex = \"m1\" }], after = { thread = \"b\", holds = \"mutex:m2\" } }]\n\
             [[process]]\nname = \"b\"\nscript = [{ in_kernel = [{ mutex = \"m2\" }], after = { thread = \"a\", holds = \"mutex:m1\" } }]\n",
            "cyclic ordering: these conditions wait on each other: 'b holds mutex:m2' (3:53) -> 'a holds mutex:m1' (6:53)",
        ),
        (
            "[[process]]\nname = \"a\"\nscript = [{ sleep = \"1s\" }]\n\
             [[process]]\nname = \"b\"\nscript = [{ populate = 1, after = { thread = \"a\", blocked_on = \"mmap_lock:a\" } }]\n",
            "t.toml:6:35: 'a is blocked on mmap_lock:a' can never hold: no action of a takes that lock",
        ),
        (
            "[[process]]\nname = \"a\"\nscript = [{ in_kernel = [{ mmap_lock = \"read\" }] }]\n\
             [[process]]\nname = \"b\"\nscript = [{ populate = 1, after = { thread = \"a\", holds = \"mmap_lock:a\", mode = \"write\" } }]\n",
            "'a holds mmap_lock:a for write' can never hold: no action of a takes that lock for write",
        ),
        (
            "[[process]]\nname = \"a\"\nscript = [{ sleep = \"1s\" }]\n\
             [[process]]\nname = \"b\"\nscript = [{ populate = 1, after = { thread = \"a\", blocked_on = \"memory\" } }]\n",
            "no action of a allocates memory",
        ),
        (
            "[[process]]\nname = \"a\"\nscript = [{ populate = 1, after = { at = \"700s\" } }]\n",
            "t.toml:3:35: 't = 700s' can never hold: the time limit is 600s",
        ),
        (
            "[[process]]\nname = \"a\"\nscript = [{ populate = 1, after = { thread = \"a\", blocked_on = \"memory\" } }]\n",
            "a condition cannot watch the thread that waits for it",
        ),
        // Impossible sizes.
        (
            "[[process]]\nname = \"a\"\nmapping = [{ name = \"h\", size = 10, resident = 11 }]\n",
            "t.toml:3:48: impossible size: resident 11 pages is more than the mapping's 10 pages",
        ),
        (
            "[[process]]\nname = \"a\"\nmapping = [{ name = \"h\", size = \"150%\" }]\n",
            "t.toml:3:33: impossible size '150%'",
        ),
        (
            "[[process]]\nname = \"a\"\nmapping = [{ name = \"h\", size = \"6000B\" }]\n",
            "6000 bytes is not a whole number of 4KiB pages",
        ),
        (
            "[[process]]\nname = \"a\"\nmapping = [{ name = \"h\", size = 0 }]\n",
            "impossible size: mapping 0 pages is 0 pages",
        ),
        ("memory = 10\n", "t.toml:1:10: impossible memory size 40KiB"),
        ("memory = \"1.5MiB\"\n", "fractions are not accepted"),
        (
            "[[process]]\nname = \"a\"\nmapping = [{ name = \"h\", size = 8 }]\nscript = [{ remote_read = \"a.h\", size = 4, offset = 6 }]\n",
            "does not fit in a.h (8 pages)",
        ),
        (
            "[[process]]\nname = \"a\"\nmapping = [{ name = \"h\", size = \"1GiB\", resident = 0 }]\nscript = [{ remote_read = \"a.h\" }]\n",
            "t.toml:4:11: impossible size: a remote access of 262144 pages is larger than the machine (4096 pages)",
        ),
        // Knobs go through the knob table.
        (
            "[kernel]\nwrite-lock = \"sometimes\"\n",
            "t.toml:2:14: invalid value 'sometimes' for write-lock: expected killable or uninterruptible",
        ),
        ("[kernel]\nwrite-lok = \"killable\"\n", "t.toml:2:1: unknown knob 'write-lok'"),
        (
            "[[expect.when]]\nkernel = { reaper = [\"on\", \"maybe\"] }\n",
            "invalid value 'maybe' for reaper",
        ),
        // Values.
        (
            "[[process]]\nname = \"a\"\noom_score_adj = 1001\n",
            "t.toml:3:17: invalid oom_score_adj 1001",
        ),
        (
            "[[process]]\nname = \"a\"\nscript = [{ sleep = \"1500us\" }]\n",
            "is not a whole number of milliseconds",
        ),
        (
            "[[process]]\nname = \"a-name-far-too-long\"\n",
            "invalid process name 'a-name-far-too-long'",
        ),
        (
            "[[process]]\nname = \"a\"\npid = 2\n",
            "pid 2 of 'a' is taken by then",
        ),
        (
            "[[process]]\nname = \"a\"\nscript = [{ in_kernel = [{ mmap_lock = \"read\" }, { mmap_lock = \"write\" }] }]\n",
            "mmap_lock is already held in this in_kernel trip",
        ),
        (
            "[[process]]\nname = \"a\"\nscript = [{ in_kernel = [{ kalloc = 1, gfp = \"GFP_NOPE\" }] }]\n",
            "unknown gfp flag 'GFP_NOPE'",
        ),
    ];
    for (text, want) in cases {
        let e = error(text);
        assert!(!e.contains('\n'), "not one line: {e:?}");
        assert!(e.starts_with("t.toml:"), "{e}");
        assert!(e.contains(want), "{text}\n got: {e}\nwant: {want}");
    }
}

#[test]
fn non_utf8_is_reported_at_its_first_bad_byte() {
    let e = parse_bytes("t.toml", "t", b"name = \"x\"\nabout = \"\xff\"\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "t.toml:2:10: invalid UTF-8 (TOML files are UTF-8 text)"
    );
}

#[test]
fn memory_overrides_are_checked_against_the_sizes() {
    let sc = scenario(
        "[[process]]\nname = \"a\"\nmapping = [{ name = \"h\", size = \"10%\", resident = 300 }]\n",
    );
    let f = sc.file().unwrap();
    assert!(f.check_memory(16 << 20).is_ok());
    // 10% of 1 MiB is 25 pages: fewer than the 300 resident ones.
    let e = f.check_memory(1 << 20).unwrap_err().to_string();
    assert!(
        e.starts_with("t.toml:3:51: impossible size: resident 300 pages"),
        "{e}"
    );
}

// ---- orderings --------------------------------------------------------------------------------

/// A trigger process that provokes an OOM the moment its condition holds: its
/// `invoked oom-killer` line dates the condition.
const TRIGGER: &str = r#"
[[process]]
name = "victim"
mapping = [{ name = "heap", size = "40%" }]
script = ["pause"]
"#;

fn trigger_at(extra: &str, cond: &str, seeds: &[u64]) -> Vec<f64> {
    let text = format!(
        "{TRIGGER}{extra}\n[[process]]\nname = \"trigger\"\nscript = [{{ populate = \"60%\", after = {cond} }}]\n"
    );
    let sc = scenario(&text);
    seeds
        .iter()
        .map(|&seed| {
            let t = trial(&sc, seed, &[("reaper", "on")]);
            assert!(t.notes.is_empty(), "{:?}", t.notes);
            stamp(&t.report, "trigger invoked oom-killer").unwrap_or_else(|| {
                panic!("seed {seed}: no OOM by the trigger\n{:#?}", t.report.log)
            })
        })
        .collect()
}

#[test]
fn at_waits_for_the_clock() {
    for s in trigger_at("", "{ at = \"250ms\" }", &[0, 1, 2]) {
        assert!((0.250..0.300).contains(&s), "{s}");
    }
}

#[test]
fn holds_waits_until_the_lock_is_taken() {
    // `a` takes the mutex at 300 ms and keeps it 500 ms.
    let a = r#"
[[process]]
name = "a"
script = [{ sleep = "300ms" }, { in_kernel = [{ mutex = "m" }, { io_wait = "500ms" }] }]
"#;
    for s in trigger_at(
        a,
        "{ thread = \"a\", holds = \"mutex:m\" }",
        &[0, 1, 2, 3, 7],
    ) {
        assert!((0.300..0.800).contains(&s), "{s}");
    }
}

#[test]
fn blocked_on_waits_until_the_thread_sleeps_on_the_lock() {
    // `a` holds its mmap_lock for write from 0 to 400 ms; its thread `t` calls munmap at
    // 100 ms and queues for write until then.
    let a = r#"
[[process]]
name = "a"
mapping = [{ name = "buf", size = 1 }]
script = [{ in_kernel = [{ mmap_lock = "write" }, { io_wait = "400ms" }] }, "pause"]

[[process.thread]]
name = "t"
script = [{ sleep = "100ms" }, { munmap = "buf" }, "pause"]
"#;
    let cond = "{ thread = \"a.t\", blocked_on = \"mmap_lock:a\", mode = \"write\" }";
    for s in trigger_at(a, cond, &[0, 1, 2, 3, 7]) {
        assert!((0.100..0.400).contains(&s), "{s}");
    }
}

#[test]
fn memory_conditions_wait_for_the_allocator() {
    // From 200 ms `nofs` allocates GFP_NOFS pages until one fails: it drains memory to the
    // min watermark and then loops in the slow path (a NOFS allocation never kills).
    let nofs = r#"
[[process]]
name = "nofs"
script = [{ sleep = "200ms" }, { in_kernel = [{ kalloc = "until-failure", gfp = "GFP_NOFS" }] }]
"#;
    for cond in [
        "{ memory = \"exhausted\" }",
        "{ thread = \"nofs\", blocked_on = \"memory\" }",
    ] {
        for s in trigger_at(nofs, cond, &[0, 1, 2]) {
            assert!((0.200..0.400).contains(&s), "{cond}: {s}");
        }
    }
}

#[test]
fn a_condition_that_can_no_longer_hold_is_noted_and_stops_the_waiter() {
    // `a` exits before it ever takes the mutex (statically it could, so the file is valid).
    let sc = scenario(
        r#"
[[process]]
name = "a"
script = [{ sleep = "10ms" }, "exit", { in_kernel = [{ mutex = "m" }] }]

[[process]]
name = "b"
script = [{ populate = "90%", after = { thread = "a", holds = "mutex:m" } }]

[expect]
oom_kills = 0
"#,
    );
    let t = trial(&sc, 0, &[]);
    assert_eq!(t.report.verdict.name(), "completed");
    assert_eq!(t.report.oom.kills, 0, "b never allocated");
    assert_eq!(
        t.notes,
        ["b waited for 'a holds mutex:m' (8:39), which can no longer hold: a exited; the rest of its script was skipped"]
    );
    let f = sc.file().unwrap();
    let unmet = f.expect.as_ref().unwrap().common.unmet(&t.report, &t.notes);
    assert_eq!(unmet.len(), 1, "{unmet:?}");
    assert!(unmet[0].starts_with("ordering: b waited for"), "{unmet:?}");
}

/// The worked example of docs/scenario-format.md: the RFC's chain, whatever the seed. When
/// memory runs out, the reader holds the victim's mmap_lock for read and v1 is queued for
/// write behind it: the first OOM is the reader's, and without the reaper the livelock's
/// wait-for chain shows exactly that.
#[test]
fn rfc_chain_is_set_up_exactly_whatever_the_seed() {
    let sc = scenario(RFC_CHAIN);
    let seeds: &[u64] = if cfg!(debug_assertions) {
        &[0, 1, 2]
    } else {
        &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    };
    for &seed in seeds {
        let t = trial(
            &sc,
            seed,
            &[("write-lock", "uninterruptible"), ("reaper", "off")],
        );
        let r = &t.report;
        assert!(t.notes.is_empty(), "{:?}", t.notes);
        let first = r
            .log
            .iter()
            .find(|l| l.contains("invoked oom-killer"))
            .expect("an OOM");
        assert!(
            first.contains("reader invoked oom-killer"),
            "seed {seed}: {first}"
        );
        let chain = r.livelock_chains[0].chain.join("\n");
        assert!(
            chain.contains("reader[") && chain.contains("waits for memory"),
            "seed {seed}:\n{chain}"
        );
        assert!(
            chain.contains("sleeps in rwsem_down_write_failed on mmap_lock[pid"),
            "seed {seed}: v1 is not queued for write\n{chain}"
        );
        assert!(
            chain.contains("is held for read by:"),
            "seed {seed}:\n{chain}"
        );
    }
}

// ---- expectations ---------------------------------------------------------------------------

/// Every `[expect]` of the canonical files and the worked examples holds, for every
/// configuration and seed they name (in debug builds, their first seed). The runs are
/// independent trials, spread over the host's CPUs.
#[test]
fn every_shipped_file_holds_its_expectations() {
    let mut files: Vec<Scenario> = scenarios::all().to_vec();
    files.push(scenario(RFC_CHAIN));
    files.push(scenario(INODE_LOCK));
    let mut runs = Vec::new();
    for sc in &files {
        let f = sc.file().expect("a file");
        let expect = f
            .expect
            .as_ref()
            .unwrap_or_else(|| panic!("{} has no [expect]", f.label()));
        assert!(!expect.cases.is_empty(), "{}: no configurations", f.label());
        let seed = cfg!(debug_assertions).then(|| expect.seeds.first().copied().unwrap_or(0));
        for run in expect.runs(&sc.config(), seed).unwrap() {
            runs.push((sc, run));
        }
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let mut failed = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some((sc, run)) = runs.get(i) else { break };
                        let t = run_trial(sc, &run.cfg).unwrap();
                        let unmet = run.expect.unmet(&t.report, &t.notes);
                        if !unmet.is_empty() {
                            failed.push(format!(
                                "{} {}:\n{}\n{}",
                                sc.file().unwrap().label(),
                                run.what,
                                unmet.join("\n"),
                                t.report.summary().join("\n")
                            ));
                        }
                    }
                    failed
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a worker"))
            .collect()
    });
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn unmet_expectations_are_reported_one_line_each() {
    let text = scenarios::FILES
        .iter()
        .find(|(n, _)| *n == "single-hog")
        .unwrap()
        .1
        .replace("killed = [\"hog\"]", "killed = [\"idle-a\"]")
        .replace("oom_kills = 1", "oom_kills = { min = 2, max = 3 }")
        .replace(
            "survivors = []",
            "survivors = [\"idle-b\"]\nlog = [\"no such line\"]\nno_log = [\"invoked oom-killer\"]",
        );
    let sc = scenario(&text);
    let expect = sc.file().unwrap().expect.clone().unwrap();
    let runs = expect.runs(&sc.config(), Some(0)).unwrap();
    assert_eq!(runs.len(), 4, "two cases of two write-lock values each");
    assert_eq!(
        runs[0].what,
        "reaper=off write-lock=uninterruptible, seed 0"
    );
    let t = run_trial(&sc, &runs[0].cfg).unwrap();
    let unmet = runs[0].expect.unmet(&t.report, &t.notes);
    assert_eq!(unmet.len(), 5, "{unmet:#?}");
    assert!(unmet.contains(&"oom_kills: expected 2 to 3, got 1".to_string()));
    assert!(unmet.contains(&"killed: expected [idle-a], got [hog]".to_string()));
    assert!(unmet.contains(&"survivors: expected [idle-b], got []".to_string()));
    assert!(unmet.contains(&"log: no line contains \"no such line\"".to_string()));
    assert!(unmet
        .iter()
        .any(|u| u.starts_with("no_log: a line contains \"invoked oom-killer\": [")));
}

// ---- the format's features --------------------------------------------------------------------

#[test]
fn pids_are_given_as_asked() {
    let sc = scenario(
        r#"
[[process]]
name = "victim"
pid = 100
mapping = [{ name = "heap", size = "60%" }]
script = ["pause"]

[[process]]
name = "allocator"
script = [{ populate = "50%" }]
"#,
    );
    for reaper in ["on", "off"] {
        let t = trial(&sc, 0, &[("reaper", reaper)]);
        assert!(t.notes.is_empty(), "{:?}", t.notes);
        assert_eq!(t.report.victims[0].pid, 100);
        assert!(
            t.report
                .log
                .iter()
                .any(|l| l.contains("Killed process 100 (victim)")),
            "{:#?}",
            t.report.log
        );
    }
}

/// Every action and key of the format in one file: it runs to completion with every frame
/// back, across seeds and configurations (the emulator's invariants are checked by the runner).
#[test]
fn every_action_runs_and_gives_every_frame_back() {
    let sc = scenario(
        r#"
memory = 4096
time_limit = "20s"
[kernel]
livelock-window = "2s"
reaper-delay = "10ms"

[[process]]
name = "a"
oom_score_adj = 100
mapping = [
    { name = "anon", size = "10%", resident = "5%" },
    { name = "shm", size = 64, kind = "shared" },
    { name = "locked", size = "64KiB", locked = true },
]
script = [
    { mmap = "ro", size = 8, prot = "PROT_READ" },
    { mprotect = "ro", prot = "PROT_READ|PROT_WRITE" },
    { touch = "ro", offset = 2, pages = 4 },
    { mlock = "ro" },
    { munmap = "ro" },
    { populate = 32, kind = "shared", locked = true },
    { in_kernel = [{ mmap_lock = "read" }, { io_wait = "5ms" }, { kalloc = 8 }] },
    { in_kernel = [{ mutex = "m" }, { wait_until = { thread = "b", blocked_on = "mutex:m" } }] },
    { sleep = "50ms" },
    "pause",
]

[[process.thread]]
name = "t"
script = [
    { repeat = 20, do = [{ mmap = "x", size = 2 }, { touch = "x" }, { munmap = "x" }, { sleep = "1ms" }] },
    { in_kernel = [{ mmap_lock = "write" }, { io_wait = "3ms" }] },
]

[[process]]
name = "c"
clone_vm = "a"
mapping = [{ name = "more", size = 16 }]
script = [{ sleep = "30ms" }, { touch = "more", pages = 4 }, "pause"]

[[process]]
name = "b"
script = [
    { in_kernel = [{ mutex = "m" }], after = { thread = "a", holds = "mutex:m" } },
    { remote_write = "a.anon", size = 8, stall = "2ms" },
    { remote_read = "a.shm", size = 4, offset = 8, stall_until = { at = "60ms" } },
    { repeat = 5, do = [{ remote_read = "a.anon", size = 16, advance = true, on_error = "break" }] },
    { populate = "90%", after = { mapped = "c.more" } },
    { kill = "a" },
    "exit",
]
"#,
    );
    for seed in 0..4 {
        for (w, r) in [("uninterruptible", "off"), ("killable", "on")] {
            let t = trial(&sc, seed, &[("write-lock", w), ("reaper", r)]);
            let rep = &t.report;
            assert!(t.notes.is_empty(), "{:?}", t.notes);
            assert_eq!(
                rep.verdict.name(),
                "completed",
                "{}",
                rep.summary().join("\n")
            );
            assert_eq!(rep.frames_leaked, Some(0));
            assert!(rep.oom.kills >= 1, "b's 90% forces an OOM kill");
        }
    }
}

/// docs/scenario-format.md shows the worked examples as they are shipped (and so as this file
/// tests them).
#[test]
fn the_format_reference_shows_the_shipped_examples() {
    let doc = include_str!("../../../docs/scenario-format.md");
    for (name, text) in [("rfc-chain", RFC_CHAIN), ("inode-lock", INODE_LOCK)] {
        assert!(
            doc.contains(&format!("```toml\n{text}```")),
            "docs/scenario-format.md does not show scenarios/examples/{name}.toml verbatim"
        );
    }
}
