//! `oomlab bench` as a user and a CI job meet it: results that do not depend on `--jobs` or on
//! sharding, the output files' shapes, the regression gate, and bad input.
//!
//! Every bench here is tiny (a few trials of a 1 s emulated load): the figures themselves are
//! not asserted, only how they are produced and written.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A small bench: 4 configurations × 3 seeds of a 1 s load.
const SMALL: &[&str] = &[
    "--trials",
    "3",
    "--duration",
    "1s",
    "--livelock-window",
    "500ms",
];

fn oomlab(args: &[&str]) -> Output {
    oomlab_env(args, &[])
}

/// Run oomlab with the scheduler variables of `--shard auto` cleared, plus `env`.
fn oomlab_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_oomlab"));
    c.args(args);
    for v in [
        "JOB_COMPLETION_INDEX",
        "JOB_COMPLETIONS",
        "SLURM_ARRAY_TASK_ID",
        "SLURM_ARRAY_TASK_COUNT",
        "SLURM_ARRAY_TASK_MIN",
    ] {
        c.env_remove(v);
    }
    c.envs(env.iter().copied());
    c.output().expect("spawning oomlab")
}

fn text(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).expect("oomlab wrote non-UTF-8")
}

/// A fresh, empty directory for one test.
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("oomlab-bench-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Run a bench that must succeed; returns its stdout.
fn ok(args: &[&str]) -> String {
    let out = oomlab(args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{args:?}: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// The file's text with its `host` object (the one part allowed to differ) cut out.
fn without_host(p: &Path) -> String {
    let t = std::fs::read_to_string(p).unwrap();
    let start = t.find(",\"host\":").expect("a host object");
    let end = t.find(",\"shard\":").expect("a shard key after host");
    assert!(start < end);
    format!("{}{}", &t[..start], &t[end..])
}

/// The table without the footer line of timings (wall, CPU, RSS).
fn table(stdout: &str) -> String {
    stdout
        .lines()
        .filter(|l| !l.contains(" s wall ("))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn results_do_not_depend_on_jobs_and_repeat_byte_for_byte() {
    let d = scratch("jobs");
    let run = |jobs: &str, name: &str| {
        let p = d.join(name);
        let mut args = vec!["bench", "--jobs", jobs, "--json", s(&p)];
        args.extend_from_slice(SMALL);
        let stdout = ok(&args);
        (without_host(&p), table(&stdout))
    };
    let (j1, t1) = run("1", "j1.json");
    let (j2, t2) = run("2", "j2.json");
    let (j2b, t2b) = run("2", "j2b.json");
    assert_eq!(j1, j2, "--jobs 1 and --jobs 2 differ");
    assert_eq!(j2, j2b, "the same command twice differs");
    assert_eq!(t1, t2);
    assert_eq!(t2, t2b);
    let v = read_json(&d.join("j1.json"));
    assert_eq!(v["trials"].as_array().unwrap().len(), 12);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn four_shards_merge_into_the_unsharded_result() {
    let d = scratch("shards");
    let whole = d.join("whole.json");
    let mut args = vec!["bench", "--json", s(&whole)];
    args.extend_from_slice(SMALL);
    let whole_stdout = ok(&args);
    // Four slices as separate processes, at the same time, as four machines would run them.
    let shard_path = |k: u32| d.join(format!("shard-{k}.json"));
    let children: Vec<_> = (1..=4)
        .map(|k| {
            let p = shard_path(k);
            let mut c = Command::new(env!("CARGO_BIN_EXE_oomlab"));
            c.args([
                "bench",
                "--jobs",
                "1",
                "--shard",
                &format!("{k}/4"),
                "--json",
                s(&p),
            ])
            .args(SMALL)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
            c.spawn().expect("spawning a shard")
        })
        .collect();
    for (k, c) in children.into_iter().enumerate() {
        let out = c.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "shard {}: {}",
            k + 1,
            text(&out.stderr)
        );
        assert!(text(&out.stdout).contains(&format!("shard {}/4: 3 of 12 trials", k + 1)));
    }
    let merged = d.join("merged.json");
    // In any order.
    let (p1, p2, p3, p4) = (shard_path(1), shard_path(2), shard_path(3), shard_path(4));
    let merge_stdout = ok(&[
        "bench",
        "merge",
        s(&p3),
        s(&p1),
        s(&p4),
        s(&p2),
        "--json",
        s(&merged),
    ]);
    assert_eq!(without_host(&merged), without_host(&whole));
    assert_eq!(table(&merge_stdout), table(&whole_stdout));
    let host = &read_json(&merged)["host"];
    assert_eq!(host["shards"].as_array().unwrap().len(), 4);

    // Refused: a missing slice, a slice twice, a shard of another bench.
    let other = d.join("other.json");
    // The same bench but for the number of trials.
    let mut args = vec![
        "bench",
        "--trials",
        "2",
        "--shard",
        "2/4",
        "--json",
        s(&other),
    ];
    args.extend_from_slice(&SMALL[2..]);
    ok(&args);
    for (files, needles) in [
        (vec![&p1, &p2, &p4], &["missing slices: 3/4"][..]),
        (
            vec![&p1, &p2, &p2, &p3, &p4],
            &["overlapping slices", "2/4"][..],
        ),
        (
            vec![&p1, &other, &p3, &p4],
            &["different benchmarks", "trials_per_config"][..],
        ),
        (vec![&p1, &whole], &["different splits"][..]),
    ] {
        let out_file = d.join("refused.json");
        let mut args = vec!["bench", "merge"];
        args.extend(files.iter().map(|p| s(p)));
        args.extend(["--json", s(&out_file)]);
        check_usage_error(&args, needles);
        assert!(!out_file.exists(), "{args:?} wrote its output");
    }
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn shard_auto_reads_the_schedulers_environment() {
    let d = scratch("auto");
    let (a, b) = (d.join("a.json"), d.join("b.json"));
    let mut args = vec!["bench", "--shard", "auto", "--json", s(&a)];
    args.extend_from_slice(SMALL);
    let out = oomlab_env(
        &args,
        &[("JOB_COMPLETION_INDEX", "1"), ("JOB_COMPLETIONS", "3")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mut args = vec!["bench", "--shard", "auto", "--json", s(&b)];
    args.extend_from_slice(SMALL);
    let out = oomlab_env(
        &args,
        &[
            ("SLURM_ARRAY_TASK_ID", "2"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    for p in [&a, &b] {
        let v = read_json(p);
        assert_eq!(v["shard"]["index"], 2);
        assert_eq!(v["shard"]["count"], 3);
    }
    assert_eq!(without_host(&a), without_host(&b));
    let _ = std::fs::remove_dir_all(&d);
}

fn number(v: &Value, what: &str) -> f64 {
    v.as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {v}"))
}

#[test]
fn outputs_have_their_shapes() {
    let d = scratch("shapes");
    let (json, bmf, gab, svg) = (
        d.join("b.json"),
        d.join("b.bmf.json"),
        d.join("b.gab.json"),
        d.join("b.svg"),
    );
    let mut args = vec![
        "bench",
        "--json",
        s(&json),
        "--bmf",
        s(&bmf),
        "--gab",
        s(&gab),
        "--plot",
        s(&svg),
    ];
    args.extend_from_slice(SMALL);
    let stdout = ok(&args);
    for l in [
        "write-lock / reaper",
        "uninterruptible / off",
        "killable / on",
        "rate [95% Wilson]",
    ] {
        assert!(stdout.contains(l), "the table lacks {l:?}:\n{stdout}");
    }

    // --json: the command, version and matrix; every trial; the aggregates.
    let v = read_json(&json);
    let b = &v["bench"];
    assert_eq!(b["format"], 1);
    assert_eq!(b["version"], env!("CARGO_PKG_VERSION"));
    let command = b["command"].as_str().unwrap();
    assert!(
        command.starts_with("oomlab bench --trials 3 --seed 0"),
        "{command}"
    );
    assert!(command.contains("--matrix write-lock=uninterruptible,killable --matrix reaper=off,on"));
    assert_eq!(b["matrix"][0]["knob"], "write-lock");
    assert_eq!(b["configs"].as_array().unwrap().len(), 4);
    assert_eq!(b["configs"][3]["kernel"]["reaper"], "on");
    assert_eq!(v["shard"], Value::Null);
    let trials = v["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 12);
    for (i, t) in trials.iter().enumerate() {
        assert_eq!(t["index"], i);
        assert_eq!(t["config"], i / 3);
        assert_eq!(t["seed"], i % 3);
        for k in [
            "livelocks",
            "oom_kills",
            "collateral_kills",
            "reaper_give_ups",
            "sysrq_kills",
            "stalled_episodes",
            "end_ns",
        ] {
            assert!(t[k].is_u64(), "trial {i} {k}: {}", t[k]);
        }
        assert!(t["ending"].is_string());
        assert!(t["kill_to_reclaim_ns"].is_array());
    }
    for c in v["configs"].as_array().unwrap() {
        let n = c["trials"].as_u64().unwrap();
        let k = c["trials_with_livelock"].as_u64().unwrap();
        assert_eq!(n, 3);
        assert!(k <= n);
        let rate = number(&c["livelock_rate"], "rate");
        let lo = number(&c["livelock_rate_wilson95"][0], "lo");
        let hi = number(&c["livelock_rate_wilson95"][1], "hi");
        assert!(0.0 <= lo && lo <= rate && rate <= hi && hi <= 1.0, "{c}");
        for key in [
            "oom_kills_per_trial",
            "collateral_kills_per_trial",
            "reaper_give_ups_per_trial",
            "sysrq_kills_per_trial",
        ] {
            number(&c[key], key);
        }
        let endings = &c["endings"];
        let total: u64 = ["completed", "panicked", "time-limit", "deadlock"]
            .iter()
            .map(|e| endings[*e].as_u64().unwrap())
            .sum();
        assert_eq!(total, n);
    }
    for k in ["started_at", "finished_at", "wall_s", "cpu_s", "argv"] {
        assert!(!v["host"][k].is_null(), "host.{k}");
    }

    // Bencher Metric Format: {benchmark: {measure: {value, lower_value?, upper_value?}}}.
    let v = read_json(&bmf);
    let benches = v.as_object().unwrap();
    assert_eq!(benches.len(), 4);
    assert!(benches.contains_key("write-lock=killable reaper=on"));
    for (name, measures) in benches {
        let measures = measures.as_object().unwrap();
        for m in [
            "livelock-rate",
            "livelock-rate-upper95",
            "oom-kills-per-trial",
        ] {
            assert!(measures.contains_key(m), "{name} lacks {m}");
        }
        for (m, x) in measures {
            let x = x.as_object().unwrap();
            for k in x.keys() {
                assert!(
                    ["value", "lower_value", "upper_value"].contains(&k.as_str()),
                    "{m}.{k}"
                );
            }
            let value = number(&x["value"], m);
            if let Some(lo) = x.get("lower_value") {
                assert!(number(lo, m) <= value);
            }
            if let Some(hi) = x.get("upper_value") {
                assert!(value <= number(hi, m));
            }
        }
    }

    // github-action-benchmark customSmallerIsBetter: [{name, unit, value, range?, extra?}].
    let v = read_json(&gab);
    let entries = v.as_array().unwrap();
    assert!(entries.len() >= 4 * 3);
    for e in entries {
        let e = e.as_object().unwrap();
        assert!(e["name"].is_string() && e["unit"].is_string(), "{e:?}");
        number(&e["value"], "value");
        for k in e.keys() {
            assert!(
                ["name", "unit", "value", "range", "extra"].contains(&k.as_str()),
                "{k}"
            );
        }
    }
    let names: Vec<&str> = entries
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"write-lock=uninterruptible reaper=off: livelock rate, 95% upper bound")
    );

    // The SVG parses as XML, and names every configuration and the axes.
    let svg_text = std::fs::read_to_string(&svg).unwrap();
    let doc = roxmltree::Document::parse(&svg_text).expect("the SVG is XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let texts: Vec<String> = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| n.text().unwrap_or("").trim().to_string())
        .collect();
    for want in [
        "uninterruptible / off",
        "uninterruptible / on",
        "killable / off",
        "killable / on",
        "write-lock / reaper",
    ] {
        assert!(
            texts.iter().any(|t| t == want),
            "no text {want:?} in {texts:?}"
        );
    }
    let bars = doc.descendants().filter(|n| n.has_tag_name("rect")).count();
    assert!(bars > 4, "background + a bar per configuration: {bars}");
    let _ = std::fs::remove_dir_all(&d);
}

/// A copy of the bench result at `from` in which configuration `config` never livelocked: a
/// baseline with a lower rate than the run that wrote `from`.
fn without_livelocks(from: &Path, to: &Path, config: u64) {
    let mut v = read_json(from);
    for t in v["trials"].as_array_mut().unwrap() {
        if t["config"] == config {
            t["livelocks"] = 0.into();
        }
    }
    std::fs::write(to, serde_json::to_vec(&v).unwrap()).unwrap();
}

#[test]
fn the_gate_catches_a_rate_that_rose_and_passes_an_equal_one() {
    let d = scratch("gate");
    let now = d.join("now.json");
    let mut args = vec!["bench", "--trials", "8", "--json", s(&now)];
    args.extend_from_slice(&SMALL[2..]);
    let stdout = ok(&args);
    let v = read_json(&now);
    // The configurations that livelocked in every trial (without the reaper, this load's L1
    // chain does; see BENCHMARKS.md).
    let always: Vec<u64> = v["configs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["trials_with_livelock"] == 8)
        .map(|c| c["index"].as_u64().unwrap())
        .collect();
    assert!(
        !always.is_empty(),
        "no configuration livelocked in every trial:\n{stdout}"
    );

    // An equal rate: the same command as its own baseline passes.
    let mut args = vec!["bench", "--trials", "8", "--baseline", s(&now)];
    args.extend_from_slice(&SMALL[2..]);
    let out = oomlab(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!text(&out.stderr).contains("regression"));
    let stdout = text(&out.stdout);
    assert_eq!(stdout.matches("  ok").count(), 4, "{stdout}");

    // A rate that rose from 0 of 8 to 8 of 8 fails, one line per configuration that rose.
    let base = d.join("base.json");
    without_livelocks(&now, &base, always[0]);
    let out = oomlab(&["bench", "merge", s(&now), "--baseline", s(&base)]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let label = v["configs"][always[0] as usize]["label"].as_str().unwrap();
    assert!(
        stderr.starts_with(&format!(
            "oomlab: regression: {label}: livelock rate 0/8 -> 8/8"
        )),
        "{stderr}"
    );
    assert!(text(&out.stdout).contains("REGRESSION"));

    // A small rise within chance passes, unless it is beyond --threshold.
    let mut v2 = read_json(&now);
    let mut flipped = 0;
    for t in v2["trials"].as_array_mut().unwrap() {
        if t["config"] == always[0] && flipped < 1 {
            t["livelocks"] = 0.into();
            flipped += 1;
        }
    }
    std::fs::write(&base, serde_json::to_vec(&v2).unwrap()).unwrap();
    let out = oomlab(&["bench", "merge", s(&now), "--baseline", s(&base)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = oomlab(&[
        "bench",
        "merge",
        s(&now),
        "--baseline",
        s(&base),
        "--threshold",
        "5%",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("beyond --threshold 5.0 points"));

    // A configuration only in one of the two files is listed, not dropped.
    let partial = d.join("partial.json");
    let mut args = vec![
        "bench",
        "--trials",
        "2",
        "--matrix",
        "write-lock=killable",
        "--matrix",
        "reaper=off,on",
        "--json",
        s(&partial),
    ];
    args.extend_from_slice(&SMALL[2..]);
    ok(&args);
    let out = oomlab(&["bench", "merge", s(&partial), "--baseline", s(&now)]);
    let stdout = text(&out.stdout);
    assert_eq!(
        stdout
            .matches("only in the baseline (not compared)")
            .count(),
        2,
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(&d);
}

/// Runs `oomlab args`, expects exit status 2, nothing on stdout and one line on stderr
/// containing every one of `needles`.
fn check_usage_error(args: &[&str], needles: &[&str]) {
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
}

#[test]
fn bad_input_is_one_line_exit_2_and_writes_nothing() {
    let d = scratch("bad");
    // A baseline of another matrix (a bench with other axes).
    let other = d.join("other-matrix.json");
    ok(&[
        "bench",
        "--trials",
        "1",
        "--duration",
        "200ms",
        "--matrix",
        "rwsem-model=a",
        "--json",
        s(&other),
    ]);
    let garbage = d.join("garbage.json");
    std::fs::write(&garbage, "{\"not\": \"a bench\"}").unwrap();
    let missing = d.join("no-such-file.json");
    let out_dir = d.join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let (json, bmf, gab, svg) = (
        out_dir.join("o.json"),
        out_dir.join("o.bmf"),
        out_dir.join("o.gab"),
        out_dir.join("o.svg"),
    );
    let outputs = [
        "--json",
        s(&json),
        "--bmf",
        s(&bmf),
        "--gab",
        s(&gab),
        "--plot",
        s(&svg),
    ];
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec!["--matrix", "frob=1,2"],
            vec!["--matrix 'frob=1,2'", "unknown knob 'frob'", "write-lock"],
        ),
        (
            vec!["--matrix", "reaper=maybe"],
            vec!["invalid value 'maybe'", "on or off"],
        ),
        (vec!["--matrix", "reaper"], vec!["KNOB=V1,V2"]),
        (
            vec!["--shard", "3/2"],
            vec!["--shard '3/2'", "K must be from 1 to 2"],
        ),
        (
            vec!["--shard", "auto"],
            vec![
                "--shard auto",
                "JOB_COMPLETION_INDEX",
                "SLURM_ARRAY_TASK_ID",
            ],
        ),
        (
            vec!["--baseline", s(&other)],
            vec!["--baseline", "another matrix"],
        ),
        (
            vec!["--baseline", s(&missing)],
            vec!["--baseline", "cannot read"],
        ),
        (
            vec!["--baseline", s(&garbage)],
            vec!["--baseline", "not an oomlab bench --json file"],
        ),
        (vec!["--baseline", s(&d)], vec!["--baseline", "cannot read"]),
        (
            vec!["--shard", "1/2", "--baseline", s(&other)],
            vec!["--baseline with --shard"],
        ),
        (vec!["--threshold", "5%"], vec!["--baseline"]),
        (
            vec!["--baseline", s(&other), "--threshold", "150%"],
            vec!["--threshold", "150%"],
        ),
        (vec!["--trials", "0"], vec!["--trials", "'0'"]),
        (vec!["--jobs", "0"], vec!["--jobs"]),
        (
            vec!["--workload", "scenario:nope"],
            vec!["unknown scenario 'nope'", "single-hog"],
        ),
        (
            vec!["--workload", "script"],
            vec!["--workload 'script'", "scenario:NAME"],
        ),
        (
            vec!["--workload", "scenario:single-hog", "--processes", "2"],
            vec!["--processes"],
        ),
        (
            vec![
                "--livelock-window",
                "1s",
                "--matrix",
                "livelock-window=1s,2s",
            ],
            vec!["both given"],
        ),
        (
            vec!["--livelock-window", "0"],
            vec!["--livelock-window", "more than zero"],
        ),
        (vec!["--memory", "1024TiB"], vec!["--memory"]),
        (
            vec!["--seed", "18446744073709551615", "--trials", "2"],
            vec!["--seed", "2^64-1"],
        ),
    ];
    for (extra, needles) in &cases {
        let mut args = vec!["bench"];
        args.extend(extra.iter().copied());
        args.extend(outputs);
        check_usage_error(&args, needles);
        let left: Vec<_> = std::fs::read_dir(&out_dir).unwrap().collect();
        assert!(left.is_empty(), "{args:?} left {left:?}");
    }
    // Outputs that cannot be written are refused before any trial runs.
    let nowhere = d.join("no-such-dir").join("o.json");
    for (args, needles) in [
        (
            vec!["bench", "--json", s(&nowhere)],
            vec!["--json", "cannot write there"],
        ),
        (vec!["bench", "--plot", s(&json)], vec!["--plot", ".svg"]),
        (
            vec!["bench", "--json", s(&out_dir)],
            vec!["--json", "is a directory"],
        ),
        (
            vec!["bench", "--json", s(&json), "--bmf", s(&json)],
            vec!["--bmf", "same file as --json"],
        ),
        (
            vec!["bench", "merge", s(&missing), "--json", s(&json)],
            vec!["merge", "cannot read"],
        ),
        (
            vec!["bench", "merge", s(&garbage), "--json", s(&json)],
            vec!["merge", "not an oomlab bench"],
        ),
    ] {
        check_usage_error(&args, &needles);
        let left: Vec<_> = std::fs::read_dir(&out_dir).unwrap().collect();
        assert!(left.is_empty(), "{args:?} left {left:?}");
    }
    let _ = std::fs::remove_dir_all(&d);
}
