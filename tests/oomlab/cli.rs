//! The `oomlab` command line as a user meets it: help, exit statuses, one-line errors.

use std::process::{Command, Output};

fn oomlab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_oomlab"))
        .args(args)
        .output()
        .expect("spawning oomlab")
}

fn text(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).expect("oomlab wrote non-UTF-8")
}

/// Runs `oomlab args`, expects exit status 2, nothing on stdout and exactly one line on stderr
/// containing every one of `needles`; returns that line.
fn check_usage_error(args: &[&str], needles: &[&str]) -> String {
    let out = oomlab(args);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "{args:?}: stderr {stderr:?}");
    assert_eq!(stdout, "", "{args:?}");
    assert_eq!(
        stderr.lines().count(),
        1,
        "{args:?}: not one line: {stderr:?}"
    );
    assert!(stderr.starts_with("oomlab: "), "{args:?}: {stderr:?}");
    for n in needles {
        assert!(stderr.contains(n), "{args:?}: {stderr:?} lacks {n:?}");
    }
    stderr
}

#[test]
fn help_shows_the_subcommands() {
    for args in [&["--help"][..], &["help"], &["-h"]] {
        let out = oomlab(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        let help = text(&out.stdout);
        for sub in ["run", "scenario", "bench"] {
            assert!(
                help.lines().any(|l| l.trim_start().starts_with(sub)),
                "{args:?}: no {sub} in {help}"
            );
        }
    }
}

/// The flags every kernel configuration takes, on `run` and `scenario` alike.
const KERNEL_FLAGS: &[&str] = &[
    "--write-lock",
    "--read-lock",
    "--rwsem-model",
    "--reaper",
    "--reaper-delay",
    "--reaper-retries",
    "--reaper-interval",
    "--panic-on-oom",
    "--oom-kill-allocating-task",
    "--oom-dump-tasks",
    "--victim-gone-rule",
    "--livelock-window",
];

#[test]
fn subcommand_help_shows_the_flags_and_exit_statuses() {
    for (sub, flags) in [
        (
            "run",
            &[
                "--threads",
                "--memory",
                "--executor",
                "--seed",
                "--duration",
                "--metrics-addr",
                "--no-metrics",
                "--metrics-linger",
                "--json",
                "--quiet",
            ][..],
        ),
        (
            "scenario",
            &[
                "[NAME]",
                "--list",
                "--json",
                "--seed",
                "--memory",
                "--time-limit",
            ],
        ),
        (
            "bench",
            &[
                "--trials",
                "--matrix",
                "--workload",
                "--jobs",
                "--shard",
                "--json",
                "--bmf",
                "--gab",
                "--plot",
                "--baseline",
                "--threshold",
                "merge",
                "cargo bench",
            ],
        ),
    ] {
        let out = oomlab(&[sub, "--help"]);
        assert_eq!(out.status.code(), Some(0), "{sub}");
        let help = text(&out.stdout);
        let kernel = if sub == "bench" {
            &[][..]
        } else {
            KERNEL_FLAGS
        };
        for f in flags.iter().chain(kernel) {
            assert!(help.contains(f), "{sub} --help lacks {f}:\n{help}");
        }
        let codes: &[&str] = if sub == "bench" {
            &["101", "rose", "bad usage"]
        } else {
            &["101", "panicked", "time bound", "deadlocked"]
        };
        for code in codes {
            assert!(help.contains(code), "{sub} --help lacks {code}:\n{help}");
        }
    }
}

#[test]
fn version_succeeds() {
    let out = oomlab(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).starts_with("oomlab "));
}

#[test]
fn bad_input_is_one_line_naming_what_was_wrong() {
    for (args, needles) in [
        (&[][..], &["subcommand"][..]),
        (&["frob"], &["frob"]),
        (&["--frob"], &["--frob"]),
        (&["run", "--thread", "3"], &["--thread"]),
        (&["run", "--threads", "0"], &["--threads", "'0'"]),
        (&["run", "--threads", "many"], &["--threads", "many"]),
        (&["run", "--memory", "1.5G"], &["--memory", "1.5G"]),
        (&["run", "--memory", "4097"], &["--memory", "4097"]),
        (&["run", "--executor", "fibers"], &["--executor", "fibers"]),
        (&["run", "--seed"], &["--seed"]),
        (&["run", "--seed", "-1"], &["-1"]),
        (&["run", "--reaper-delay", "2"], &["--reaper-delay", "unit"]),
        (
            &["run", "--reaper-delay", "1500us"],
            &["--reaper-delay", "milliseconds"],
        ),
        (&["run", "--reaper-interval", "0"], &["--reaper-interval"]),
        (
            &["run", "--reaper-retries", "x"],
            &["--reaper-retries", "x"],
        ),
        (&["run", "--duration", "soon"], &["--duration", "soon"]),
        (&["run", "--duration", "0"], &["--duration", "zero"]),
        // Values that start with '-' reach the value's parser, which says what is accepted.
        (
            &["run", "--duration", "-1s"],
            &["--duration", "-1s", "unit"],
        ),
        (&["run", "--memory", "-5M"], &["--memory", "-5M", "MiB"]),
        (
            &["run", "--metrics-linger", "-1s"],
            &["--metrics-linger", "-1s", "unit"],
        ),
        (
            &["run", "--reaper-delay", "-1s"],
            &["--reaper-delay", "-1s", "unit"],
        ),
        (
            &["run", "--panic-on-oom", "-1"],
            &["--panic-on-oom", "-1", "possible values"],
        ),
        (&["bench", "--memory", "-1M"], &["--memory", "-1M", "MiB"]),
        (
            &["scenario", "single-hog", "--time-limit", "-2s"],
            &["--time-limit", "-2s", "unit"],
        ),
        (&["run", "--panic-on-oom", "3"], &["--panic-on-oom", "3"]),
        (
            &["run", "--oom-kill-allocating-task", "yes"],
            &["--oom-kill-allocating-task", "yes"],
        ),
        (
            &["run", "--rwsem-model", "c"],
            &["--rwsem-model", "rfc-v1", "b"],
        ),
        (&["run", "extra"], &["extra"]),
        (&["scenario"], &["<NAME>"]),
        (&["scenario", "x", "--list"], &["--list"]),
        (
            &["scenario", "x", "--write-lock", "maybe"],
            &["--write-lock", "maybe", "killable"],
        ),
        (&["scenario", "x", "--reaper", "yes"], &["--reaper", "yes"]),
        (
            &["scenario", "single-hog", "--victim-gone-rule", "soon"],
            &["--victim-gone-rule", "soon", "mm-teardown"],
        ),
        (
            &["scenario", "single-hog", "--oom-dump-tasks", "2"],
            &["--oom-dump-tasks", "2"],
        ),
        (
            &["scenario", "single-hog", "--livelock-window", "0"],
            &["--livelock-window"],
        ),
        (
            &["scenario", "single-hog", "--time-limit", "1x"],
            &["--time-limit", "1x"],
        ),
        (
            &["scenario", "no-such-scenario"],
            &["unknown scenario", "no-such-scenario", "single-hog"],
        ),
        (
            &["scenario", "no-such-scenario", "--json"],
            &["unknown scenario", "no-such-scenario"],
        ),
        // The pool must fit in the host's available memory (a usage error, not a crash).
        (&["run", "--memory", "1024TiB"], &["memory", "--memory"]),
        (
            &["run", "--executor", "sim", "--memory", "1024TiB"],
            &["memory", "--memory"],
        ),
        (
            &["scenario", "single-hog", "--memory", "1024TiB"],
            &["memory", "--memory"],
        ),
        (&["bench", "nope"], &["nope"]),
    ] {
        check_usage_error(args, needles);
    }
}

#[test]
fn scenario_list_names_every_scenario_with_one_line() {
    let out = oomlab(&["scenario", "--list"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let list = text(&out.stdout);
    for name in ["single-hog", "oom-score-adj", "remote-reader"] {
        let line = list
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("--list lacks {name}:\n{list}"));
        assert!(line.len() > name.len() + 10, "no description: {line:?}");
    }
    let out = oomlab(&["scenario", "--list", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("--list --json");
    let names: Vec<&str> = v
        .as_array()
        .expect("an array")
        .iter()
        .map(|s| s["name"].as_str().expect("a name"))
        .collect();
    assert_eq!(
        names,
        list.lines()
            .map(|l| l.split_whitespace().next().unwrap())
            .collect::<Vec<_>>()
    );
}

#[test]
fn scenario_json_has_every_key_and_is_deterministic() {
    let json = || {
        let out = oomlab(&["scenario", "single-hog", "--json", "--seed", "1"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert_eq!(text(&out.stderr), "");
        text(&out.stdout)
    };
    let a = json();
    assert_eq!(a.lines().count(), 1, "not one JSON line: {a}");
    let v: serde_json::Value = serde_json::from_str(&a).expect("valid JSON");
    for key in [
        "scenario",
        "config",
        "seed",
        "oom_kills",
        "reaper",
        "livelocks",
        "sysrq_kills",
        "panicked",
        "frames_leaked",
        "kill_to_reclaim_ms",
        "log",
    ] {
        assert!(v.get(key).is_some(), "no {key} in {a}");
    }
    for key in ["attempts", "reaped", "gave_up"] {
        assert!(v["reaper"].get(key).is_some(), "no reaper.{key} in {a}");
    }
    assert_eq!(v["scenario"], "single-hog");
    assert_eq!(v["seed"], 1);
    assert!(v["config"].is_object());
    assert!(v["log"].is_array());
    assert!(v["kill_to_reclaim_ms"].is_array());
    assert_eq!(v["panicked"], false);
    // The hog is the one the model kills, once; nothing leaks.
    assert_eq!(v["oom_kills"], 1);
    assert_eq!(v["frames_leaked"], 0);
    assert_eq!(a, json(), "same scenario and seed, different JSON");
}

#[test]
fn scenario_flags_reach_the_model() {
    let out = oomlab(&[
        "scenario",
        "single-hog",
        "--json",
        "--write-lock",
        "uninterruptible",
        "--read-lock",
        "killable",
        "--reaper",
        "off",
        "--victim-gone-rule",
        "process-released",
        "--memory",
        "32MiB",
        "--livelock-window",
        "10s",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    let c = &v["config"];
    assert_eq!(c["write_lock"], "uninterruptible");
    assert_eq!(c["read_lock"], "killable");
    assert_eq!(c["reaper"], "off");
    assert_eq!(c["victim_gone_rule"], "process-released");
    assert_eq!(c["memory_bytes"], 32 << 20);
    assert_eq!(c["livelock_window_ms"], 10_000);
    assert_eq!(v["reaper"]["attempts"], 0);
}

#[test]
fn scenario_prints_the_kernel_log_then_the_summary() {
    let out = oomlab(&["scenario", "single-hog"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    let kill = s
        .find("Out of memory: Killed process")
        .unwrap_or_else(|| panic!("no kill line:\n{s}"));
    let summary = s
        .find("oomlab scenario single-hog: sim executor, 16 MiB, seed 0")
        .unwrap_or_else(|| panic!("no summary:\n{s}"));
    assert!(kill < summary, "{s}");
    assert!(
        s[summary..].contains("\n  ending            completed\n"),
        "{s}"
    );
}

#[test]
fn scenario_panic_on_oom_exits_3() {
    let out = oomlab(&["scenario", "single-hog", "--panic-on-oom", "1"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("Kernel panic - not syncing"));
}

/// The summary rows every `oomlab run` prints.
const RUN_ROWS: &[&str] = &[
    "ending",
    "duration",
    "tasks",
    "OOM kills",
    "oom_reaper",
    "livelocks",
    "stalled episodes",
    "kill→reclaim",
    "frames",
    "conservation",
];

/// `oomlab run` with `args` and `--no-metrics` (tests run in parallel: they would all want the
/// default metrics port).
fn oomlab_run(args: &[&str]) -> Output {
    let all: Vec<&str> = args.iter().copied().chain(["--no-metrics"]).collect();
    oomlab(&all)
}

fn check_run_summary(args: &[&str]) -> String {
    let out = oomlab_run(args);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{args:?}: {}\n{stdout}",
        text(&out.stderr)
    );
    for row in RUN_ROWS {
        assert!(
            stdout.lines().any(|l| l.trim_start().starts_with(row)),
            "{args:?}: no {row} row:\n{stdout}"
        );
    }
    assert!(stdout.contains("ending            completed"), "{stdout}");
    assert!(stdout.contains("conservation      ok"), "{stdout}");
    stdout
}

#[test]
fn run_on_threads_completes_and_conserves_frames() {
    let s = check_run_summary(&[
        "run",
        "--duration",
        "3s",
        "--threads",
        "32",
        "--memory",
        "32MiB",
    ]);
    assert!(s.contains("32 worker threads"), "{s}");
    assert!(s.contains("wall clock"), "{s}");
}

#[test]
fn run_on_sim_is_deterministic() {
    let args = [
        "run",
        "--executor",
        "sim",
        "--duration",
        "5s",
        "--threads",
        "16",
        "--memory",
        "16MiB",
        "--seed",
        "3",
    ];
    let a = check_run_summary(&args);
    assert!(a.contains("emulated"), "{a}");
    assert!(!a.contains("wall clock"), "{a}");
    assert!(a.contains("--seed 3"), "{a}");
    assert_eq!(a, check_run_summary(&args), "same seed, different run");
}

/// `oomlab run` names the locks that can never make progress. Under the RFC before its fix a
/// killed writer leaves its waiting bias behind and the faulting threads of that process hang
/// for good: the sim run ends at its bound (exit 4) and the report explains the stuck
/// mmap_lock. The same run with Model A completes and reports no stuck lock.
#[test]
fn run_reports_stuck_locks() {
    let base = [
        "run",
        "--executor",
        "sim",
        "--duration",
        "20s",
        "--threads",
        "32",
        "--memory",
        "32MiB",
        "--seed",
        "0",
    ];
    let rfc: Vec<&str> = base
        .iter()
        .copied()
        .chain(["--rwsem-model", "rfc-v1"])
        .collect();
    let out = oomlab_run(&rfc);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(4), "{stdout}");
    let stuck = stdout
        .split("stuck locks:\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no stuck locks section:\n{stdout}"));
    assert!(stuck.starts_with("  mmap_lock[pid "), "{stdout}");
    assert!(stuck.contains("stale bias"), "{stdout}");
    assert!(stuck.contains("2016 RFC"), "{stdout}");

    let out = oomlab_run(&base);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(!stdout.contains("stuck locks:"), "{stdout}");
}

// ---- scenario files ---------------------------------------------------------------------

/// A scenario file written for one test (removed when dropped).
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(name: &str, text: &str) -> TempFile {
        let p = std::env::temp_dir().join(format!("oomlab-cli-{}-{name}", std::process::id()));
        std::fs::write(&p, text).expect("writing a temp file");
        TempFile(p)
    }
    fn path(&self) -> &str {
        self.0.to_str().expect("a UTF-8 temp path")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

const EXAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/scenarios/examples/inode-lock.toml"
);

#[test]
fn scenario_file_runs_like_a_named_scenario() {
    let out = oomlab(&["scenario", "--file", EXAMPLE, "--json", "--seed", "1"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    assert_eq!(v["scenario"], "inode-lock");
    assert_eq!(v["file"], EXAMPLE);
    assert_eq!(v["seed"], 1);
    assert!(v.get("notes").is_none(), "no ordering was missed");
    let out = oomlab(&["scenario", "--file", EXAMPLE]);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "oomlab scenario --file {EXAMPLE}: sim executor, 16 MiB, seed 0"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "reproduce with: oomlab scenario --file {EXAMPLE} --seed 0"
        )),
        "{stdout}"
    );
}

#[test]
fn command_line_knobs_override_the_files_kernel_table() {
    let f = TempFile::new(
        "knobs.toml",
        "[kernel]\nreaper = \"off\"\nwrite-lock = \"uninterruptible\"\n[[process]]\nname = \"a\"\n",
    );
    let config = |extra: &[&str]| {
        let mut args = vec!["scenario", "--file", f.path(), "--json"];
        args.extend(extra);
        let out = oomlab(&args);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        serde_json::from_str::<serde_json::Value>(&text(&out.stdout)).unwrap()["config"].clone()
    };
    let c = config(&[]);
    assert_eq!(
        (c["reaper"].as_str(), c["write_lock"].as_str()),
        (Some("off"), Some("uninterruptible"))
    );
    let c = config(&["--reaper", "on"]);
    assert_eq!(
        (c["reaper"].as_str(), c["write_lock"].as_str()),
        (Some("on"), Some("uninterruptible"))
    );
}

#[test]
fn check_exits_0_when_every_expectation_holds() {
    let out = oomlab(&["scenario", "--file", EXAMPLE, "--check", "--seed", "0"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert_eq!(
        text(&out.stdout),
        format!("{EXAMPLE}: 4 runs, every expectation holds\n")
    );
    // A canonical scenario carries its expectations too.
    let out = oomlab(&["scenario", "single-hog", "--check", "--seed", "0"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert_eq!(
        text(&out.stdout),
        "scenarios/single-hog.toml: 4 runs, every expectation holds\n"
    );
}

#[test]
fn check_exits_1_with_one_line_per_unmet_expectation() {
    let f = TempFile::new(
        "unmet.toml",
        r#"
[[process]]
name = "big"
mapping = [{ name = "heap", size = "60%" }]
script = ["pause"]

[[process]]
name = "allocator"
script = [{ populate = "50%" }]

[expect]
seeds = [0, 1]
killed = ["allocator"]
oom_kills = 1

[[expect.when]]
kernel = { reaper = ["off", "on"] }
"#,
    );
    let out = oomlab(&["scenario", "--file", f.path(), "--check"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    for (line, (reaper, seed)) in lines
        .iter()
        .zip([("off", 0), ("off", 1), ("on", 0), ("on", 1)])
    {
        assert_eq!(
            *line,
            format!(
                "{}: reaper={reaper}, seed {seed}: killed: expected [allocator], got [big]",
                f.path()
            )
        );
    }
}

#[test]
fn bad_scenario_files_are_one_line_at_their_place() {
    let bad = TempFile::new(
        "bad.toml",
        "[[process]]\nname = \"a\"\nscript = [{ kill = \"b\" }]\n",
    );
    check_usage_error(
        &["scenario", "--file", bad.path()],
        &[&format!(
            "{}:3:20: kill names an undefined process 'b'",
            bad.path()
        )],
    );
    check_usage_error(&["scenario", "--file", bad.path(), "--check"], &[":3:20:"]);
    let no_expect = TempFile::new("noexpect.toml", "[[process]]\nname = \"a\"\n");
    check_usage_error(
        &["scenario", "--file", no_expect.path(), "--check"],
        &["has no [expect] table"],
    );
    let sizes = TempFile::new(
        "sizes.toml",
        "[[process]]\nname = \"a\"\nmapping = [{ name = \"h\", size = \"10%\", resident = 300 }]\n",
    );
    check_usage_error(
        &["scenario", "--file", sizes.path(), "--memory", "1MiB"],
        &[
            ":3:51: impossible size: resident 300 pages",
            "(with --memory 1MiB)",
        ],
    );
    check_usage_error(
        &["scenario", "--file", "/nonexistent/oomlab.toml"],
        &["--file /nonexistent/oomlab.toml"],
    );
}

/// README's table of kernel knobs names every knob the command line has (the knob registry,
/// `reaper::knobs::KNOBS`, builds the flags), so the documentation cannot fall behind.
#[test]
fn readme_lists_every_kernel_knob() {
    let readme = include_str!("../../README.md");
    for k in reaper::knobs::KNOBS {
        assert!(
            readme.contains(&format!("| `--{}` |", k.name)),
            "README.md's knob table lacks --{}",
            k.name
        );
    }
}

/// The metrics flags' bad input: one line naming the flag, exit 2, before the load starts
/// (nothing on stdout: no summary).
#[test]
fn metrics_addresses_that_cannot_be_served_are_usage_errors() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let line = check_usage_error(
        &[
            "run",
            "--duration",
            "1s",
            "--memory",
            "16MiB",
            "--metrics-addr",
            &addr,
        ],
        &["--metrics-addr", &addr, "--no-metrics"],
    );
    assert!(line.to_lowercase().contains("in use"), "{line}");
    for (args, needles) in [
        (
            &["run", "--metrics-addr", "localhost:9464"][..],
            &["--metrics-addr", "IP:PORT"][..],
        ),
        (&["run", "--metrics-addr", "127.0.0.1"], &["--metrics-addr"]),
        (
            &["run", "--metrics-linger", "soon"],
            &["--metrics-linger", "soon"],
        ),
        (
            &["run", "--no-metrics", "--metrics-addr", "127.0.0.1:1"],
            &["--no-metrics", "--metrics-addr"],
        ),
        (
            &["run", "--json", "/nonexistent-oomlab-dir/x.json"],
            &["--json", "/nonexistent-oomlab-dir/x.json"],
        ),
    ] {
        check_usage_error(args, needles);
    }
}

/// `--json PATH` writes one object with the scenario keys that apply and the run's own; the
/// temporary file is gone; `--quiet` leaves stderr empty, while without it a run that is not on
/// a terminal prints a plain progress line every 5 s.
#[test]
fn run_json_and_progress() {
    let dir = std::env::temp_dir().join(format!("oomlab-cli-json-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("run.json");
    let run = |quiet: bool| {
        let mut args = vec![
            "run",
            "--duration",
            "7s",
            "--threads",
            "16",
            "--memory",
            "16MiB",
        ];
        args.extend(["--json", path.to_str().unwrap()]);
        if quiet {
            args.push("--quiet");
        }
        oomlab_run(&args)
    };
    let out = run(true);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        "",
        "--quiet --no-metrics: nothing on stderr"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for key in [
        "config",
        "seed",
        "ending",
        "oom_kills",
        "reaper",
        "livelocks",
        "sysrq_kills",
        "frames_leaked",
        "victims",
        "stuck_locks",
        "duration_s",
        "faults",
        "mmaps",
        "munmaps",
    ] {
        assert!(v.get(key).is_some(), "no {key} in {v}");
    }
    assert!(v.get("log").is_none(), "the kernel log goes to --log");
    assert_eq!(v["ending"], "completed");
    let k2r = &v["kill_to_reclaim_ms"];
    assert!(
        k2r["count"].as_u64().is_some()
            && k2r.get("p50").is_some()
            && k2r.get("p99").is_some()
            && k2r.get("max").is_some(),
        "{k2r}"
    );
    for op in ["read", "write"] {
        for wait in ["killable", "uninterruptible"] {
            let w = &v["rwsem_wait_seconds"][op][wait];
            assert!(
                w["count"].is_u64() && w["sum"].is_number() && w.get("p99").is_some(),
                "{op} {wait}: {w}"
            );
        }
    }
    assert!(v["faults"].as_u64().unwrap() > 0);
    let summary = text(&out.stdout);
    assert!(
        summary.contains(&format!("OOM kills         {} ", v["oom_kills"])),
        "{summary}"
    );
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        vec![std::ffi::OsString::from("run.json")],
        "temporary file left"
    );

    let out = run(false);
    assert_eq!(out.status.code(), Some(0));
    let stderr = text(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(!lines.is_empty(), "no progress line in a 7s run");
    for l in lines {
        assert!(
            l.starts_with("oomlab run: ")
                && l.contains("faults/s")
                && l.contains("OOM kills")
                && l.contains("/7s"),
            "{l}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
