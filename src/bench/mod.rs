//! `oomlab bench`: the livelock-rate regression benchmark.
//!
//! A matrix of kernel configurations ([`matrix`]) × seeds; each (configuration, seed) is a
//! trial ([`trial`]): a whole emulated machine running a small randomised workload on the sim
//! executor, so that every figure is the same on every machine. Trials run on `--jobs` host
//! threads and are kept by index, so the result does not depend on `--jobs`. Per
//! configuration the bench reports the livelock rate with its Wilson interval ([`stats`]) and
//! the OOM figures ([`doc::Summary`]), as a table, JSON, Bencher Metric Format,
//! github-action-benchmark's format and an SVG chart ([`output`], [`plot`]); it gates on a
//! baseline ([`gate`]); and it runs as disjoint slices on many machines, merged afterwards
//! ([`shard`], `oomlab bench merge`).
//!
//! Every check of the command line happens before the first trial: bad input costs nothing
//! and writes nothing.

pub mod doc;
pub mod gate;
pub mod matrix;
pub mod output;
pub mod plot;
pub mod shard;
pub mod stats;
pub mod trial;

use crate::cli::{BenchArgs, BenchCommand, BenchOutputArgs, Executor, MergeArgs};
use crate::plan::UsageError;
use anyhow::Result;
use doc::{BenchDoc, ConfigKey, FORMAT};
use matrix::Axis;
use reaper::knobs;
use reaper::machine::MachineConfig;
use reaper::units::{format_ms, format_size};
use serde_json::{json, Value};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};
use trial::{LoadShape, Outcome, TrialSpec, Workload};

/// Defaults of the `run` trial workload (see BENCHMARKS.md for why these).
pub const DEFAULT_PROCESSES: u32 = 4;
pub const DEFAULT_THREADS_PER_PROCESS: u32 = 4;
pub const DEFAULT_REMOTE_READERS: u32 = 2;
pub const DEFAULT_MEMORY: u64 = 8 << 20;
pub const DEFAULT_DURATION_NS: u64 = 3_000_000_000;
pub const DEFAULT_LIVELOCK_WINDOW: &str = "1500ms";
/// A scenario trial's time limit by default (`oomlab scenario`'s).
pub const DEFAULT_SCENARIO_TIME_LIMIT_NS: u64 = 600_000_000_000;
/// Trials in one bench at most (results are kept in memory).
const TRIALS_MAX: usize = 10_000_000;

/// `oomlab bench [merge]`.
pub fn bench(args: &BenchArgs) -> Result<u8> {
    match &args.command {
        Some(BenchCommand::Merge(m)) => merge(m),
        None => run(args),
    }
}

/// A duration as the grammar writes it, exactly: `5s`, `250ms`, `1500us`.
fn format_duration_ns(ns: u64) -> String {
    if ns.is_multiple_of(1_000_000) {
        format_ms(ns / 1_000_000)
    } else if ns.is_multiple_of(1_000) {
        format!("{}us", ns / 1_000)
    } else {
        format!("{ns}ns")
    }
}

/// A validated `oomlab bench`.
struct Plan {
    /// The result to fill: identity, configurations, slice; no trials yet.
    doc: BenchDoc,
    machines: Vec<MachineConfig>,
    workload: Workload,
    executor: Executor,
    jobs: usize,
    /// The trials of this slice.
    specs: Vec<TrialSpec>,
    axes: Vec<Axis>,
    /// The flags that fix the workload (for the commands printed).
    workload_args: Vec<String>,
}

fn ns(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Check the command line and plan the bench.
fn plan(a: &BenchArgs) -> Result<Plan, UsageError> {
    let axes = matrix::parse_axes(&a.matrix)?;
    let window_axis = axes.iter().any(|x| x.knob == "livelock-window");
    if window_axis && a.livelock_window.is_some() {
        return Err(UsageError(
            "--livelock-window and --matrix livelock-window=... both given; keep one".into(),
        ));
    }
    let scenario = match a.workload.as_str() {
        "run" => None,
        w => match w.strip_prefix("scenario:") {
            Some(name) => Some(loadgen::scenarios::find(name).ok_or_else(|| {
                let known: Vec<&str> = loadgen::scenarios::all()
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect();
                UsageError(format!(
                    "--workload '{w}': unknown scenario '{name}' (known: {})",
                    known.join(", ")
                ))
            })?),
            None => {
                return Err(UsageError(format!(
                    "--workload '{w}': expected run or scenario:NAME (e.g. scenario:remote-reader)"
                )))
            }
        },
    };
    let mut workload_args: Vec<String> = vec!["--workload".into(), a.workload.clone()];
    let mut push = |flag: &str, v: String| {
        workload_args.push(flag.into());
        workload_args.push(v);
    };
    let workload = match scenario {
        None => {
            let shape = LoadShape {
                processes: a.processes.unwrap_or(DEFAULT_PROCESSES),
                threads_per_process: a.threads_per_process.unwrap_or(DEFAULT_THREADS_PER_PROCESS),
                remote_readers: a.remote_readers.unwrap_or(DEFAULT_REMOTE_READERS),
                memory_bytes: a.memory.map_or(DEFAULT_MEMORY, |b| b.0),
                duration_ns: a.duration.map_or(DEFAULT_DURATION_NS, ns),
            };
            push("--processes", shape.processes.to_string());
            push(
                "--threads-per-process",
                shape.threads_per_process.to_string(),
            );
            push("--remote-readers", shape.remote_readers.to_string());
            push("--memory", format_size(shape.memory_bytes));
            push("--duration", format_duration_ns(shape.duration_ns));
            Workload::Run(shape)
        }
        Some(sc) => {
            for (given, flag) in [
                (a.processes.is_some(), "--processes"),
                (a.threads_per_process.is_some(), "--threads-per-process"),
                (a.remote_readers.is_some(), "--remote-readers"),
            ] {
                if given {
                    return Err(UsageError(format!(
                        "{flag} sizes the run workload; a scenario sets up its own processes"
                    )));
                }
            }
            if a.executor == Executor::Threads {
                return Err(UsageError(
                    "--executor threads: scenarios run on the sim executor only".into(),
                ));
            }
            let memory_bytes = a.memory.map_or(sc.memory_bytes, |b| b.0);
            let time_limit_ns = a.duration.map_or(DEFAULT_SCENARIO_TIME_LIMIT_NS, ns);
            push("--memory", format_size(memory_bytes));
            push("--duration", format_duration_ns(time_limit_ns));
            Workload::Scenario {
                scenario: sc.clone(),
                memory_bytes,
                time_limit_ns,
            }
        }
    };
    let memory = workload.memory_bytes();
    let mut base = match (&workload, a.executor) {
        // A scenario file's own [kernel] knobs first; the matrix goes on top.
        (Workload::Scenario { scenario, .. }, _) => scenario.config_with_memory(memory).machine,
        (Workload::Run(_), Executor::Sim) => MachineConfig::sim(memory),
        (Workload::Run(_), Executor::Threads) => MachineConfig::threads(memory),
    };
    let window_knob = knobs::find("livelock-window").expect("the livelock-window knob");
    if !window_axis {
        let w = a
            .livelock_window
            .as_deref()
            .unwrap_or(DEFAULT_LIVELOCK_WINDOW);
        window_knob
            .set(&mut base, w)
            .map_err(|e| UsageError(format!("--livelock-window: {e}")))?;
        push("--livelock-window", window_knob.get(&base));
    }
    let configs = matrix::configs(&axes, &base)?;
    let trials = a.trials as usize;
    let total = configs.len().saturating_mul(trials);
    if total > TRIALS_MAX {
        return Err(UsageError(format!(
            "{} configurations x {trials} trials = {total} trials; at most {TRIALS_MAX}",
            configs.len()
        )));
    }
    if a.seed.checked_add(u64::from(a.trials) - 1).is_none() {
        return Err(UsageError(format!(
            "--seed {} with --trials {}: the seeds would pass 2^64-1",
            a.seed, a.trials
        )));
    }
    let jobs = a.jobs.unwrap_or(match a.executor {
        Executor::Sim => std::thread::available_parallelism().map_or(1, |n| n.get()),
        Executor::Threads => 1,
    });
    // One trial's pool must be a valid pool; `jobs` of them at once must fit in the host.
    let tasks = workload.tasks();
    crate::plan::check_memory(memory, tasks)?;
    let parallel = jobs.min(total) as u64;
    crate::host::check_fits(
        &format!("--jobs {jobs} x --memory {}", format_size(memory)),
        memory.saturating_mul(parallel),
        tasks.saturating_mul(parallel),
        "lower --jobs or --memory",
    )?;
    let shard = match &a.shard {
        None => None,
        Some(s) => Some(shard::parse(s, |k| std::env::var(k).ok())?),
    }
    .filter(|s| s.count > 1);
    if shard.is_some() && a.out.baseline.is_some() {
        return Err(UsageError(
            "--baseline with --shard: gate the whole result (oomlab bench merge ... --baseline)"
                .into(),
        ));
    }
    let executor_name = match a.executor {
        Executor::Sim => "sim",
        Executor::Threads => "threads",
    };
    let command = command_line(a.trials, a.seed, executor_name, &workload_args, &axes);
    let about_workload = match &workload {
        Workload::Run(s) => format!(
            "run load: {} processes x {} threads + {} remote readers, {}, {} {} each",
            s.processes,
            s.threads_per_process,
            s.remote_readers,
            format_size(s.memory_bytes),
            format_duration_ns(s.duration_ns),
            if a.executor == Executor::Sim {
                "emulated"
            } else {
                "wall clock"
            }
        ),
        Workload::Scenario {
            scenario,
            memory_bytes,
            time_limit_ns,
        } => format!(
            "scenario {}, {}, time limit {}",
            scenario.name,
            format_size(*memory_bytes),
            format_duration_ns(*time_limit_ns)
        ),
    };
    let window = if window_axis {
        "livelock window per configuration".to_string()
    } else {
        format!("livelock window {}", window_knob.get(&base))
    };
    let reproducible = a.executor == Executor::Sim;
    let identity = json!({
        "format": FORMAT,
        "version": env!("CARGO_PKG_VERSION"),
        "command": command,
        "executor": executor_name,
        "reproducible": reproducible,
        "workload": {
            "args": workload_args,
            "about": format!("{about_workload}; {window}"),
        },
        "matrix": axes.iter().map(|x| json!({"knob": x.knob, "values": x.values})).collect::<Vec<_>>(),
        "configs": configs.iter().map(|c| json!({
            "label": c.label(),
            "knobs": c.knobs.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
            "kernel": c.machine.knob_values().into_iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        })).collect::<Vec<_>>(),
        "trials_per_config": a.trials,
        "first_seed": a.seed,
    });
    let doc = BenchDoc {
        identity,
        configs: configs
            .iter()
            .map(|c| ConfigKey {
                knobs: c
                    .knobs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect(),
            })
            .collect(),
        axes: axes.iter().map(|x| x.knob.to_string()).collect(),
        trials_per_config: u64::from(a.trials),
        first_seed: a.seed,
        shard,
        trials: Vec::new(),
    };
    let specs: Vec<TrialSpec> = doc
        .expected_indices()
        .into_iter()
        .map(|index| TrialSpec {
            index,
            config: index / trials,
            seed: a.seed + (index % trials) as u64,
        })
        .collect();
    Ok(Plan {
        doc,
        machines: configs.into_iter().map(|c| c.machine).collect(),
        workload,
        executor: a.executor,
        jobs,
        specs,
        axes,
        workload_args,
    })
}

/// The whole bench as one explicit command (every default spelled out), independent of how
/// it was typed, of `--jobs`, `--shard` and the outputs.
fn command_line(
    trials: u32,
    seed: u64,
    executor: &str,
    workload_args: &[String],
    axes: &[Axis],
) -> String {
    let mut v: Vec<String> = vec![
        "oomlab".into(),
        "bench".into(),
        "--trials".into(),
        trials.to_string(),
        "--seed".into(),
        seed.to_string(),
        "--executor".into(),
        executor.into(),
    ];
    v.extend(workload_args.iter().cloned());
    for a in axes {
        v.push("--matrix".into());
        v.push(a.spec());
    }
    v.join(" ")
}

/// The command that runs exactly one trial again.
fn reproduce_command(plan: &Plan, spec: &TrialSpec) -> String {
    let axes: Vec<Axis> = plan.doc.configs[spec.config]
        .knobs
        .iter()
        .zip(&plan.axes)
        .map(|((_, v), a)| Axis {
            knob: a.knob,
            values: vec![v.clone()],
        })
        .collect();
    let executor = plan.doc.identity["executor"].as_str().unwrap_or("sim");
    format!(
        "{} --jobs 1",
        command_line(1, spec.seed, executor, &plan.workload_args, &axes)
    )
}

/// The output files asked for, with their flags.
fn outputs(o: &BenchOutputArgs) -> Vec<(&'static str, &Path)> {
    let mut v: Vec<(&'static str, &Path)> = Vec::new();
    for (flag, p) in [
        ("--json", &o.json),
        ("--bmf", &o.bmf),
        ("--gab", &o.gab),
        ("--plot", &o.plot),
    ] {
        if let Some(p) = p {
            v.push((flag, p.as_path()));
        }
    }
    v
}

/// Check the outputs and read the baseline, before any work.
fn check_outputs(o: &BenchOutputArgs) -> Result<Option<BenchDoc>, UsageError> {
    if let Some(p) = &o.plot {
        if p.extension().and_then(|e| e.to_str()) != Some("svg") {
            return Err(UsageError(format!(
                "--plot {}: only SVG is drawn; give a path ending in .svg",
                p.display()
            )));
        }
    }
    output::preflight(&outputs(o))?;
    o.baseline
        .as_deref()
        .map(|p| gate::read_doc("--baseline", p))
        .transpose()
}

fn run(a: &BenchArgs) -> Result<u8> {
    let started = SystemTime::now();
    let t0 = Instant::now();
    let plan = plan(a)?;
    let baseline = check_outputs(&a.out)?;
    if let (Some(b), Some(path)) = (&baseline, &a.out.baseline) {
        gate::check_comparable(&plan.doc, b, path)?;
    }
    if let Some(note) = window_note(&plan.machines) {
        eprintln!("oomlab: note: {note}");
    }
    if let Workload::Run(shape) = &plan.workload {
        let longest = plan
            .machines
            .iter()
            .map(MachineConfig::livelock_window_ns)
            .max();
        if longest.is_some_and(|w| w >= shape.duration_ns) {
            eprintln!(
                "oomlab: note: a livelock window is not shorter than the trial ({}): no \
                 livelock can be detected in it (raise --duration)",
                format_duration_ns(shape.duration_ns)
            );
        }
    }
    let bar = progress_bar(plan.specs.len() as u64);
    let runner = trial::Runner {
        machines: &plan.machines,
        workload: &plan.workload,
        executor: plan.executor,
        jobs: plan.jobs,
        summaries: a.trial_summaries,
    };
    let outcomes = trial::run_all(&plan.specs, &runner, |n| bar.set_position(n as u64));
    bar.finish_and_clear();
    let mut trials = Vec::with_capacity(outcomes.len());
    let mut bugs = Vec::new();
    let mut summaries = Vec::new();
    for o in outcomes.into_iter().flatten() {
        match o {
            Outcome::Done(t, summary) => {
                if let Some(lines) = summary {
                    summaries.push(format!(
                        "trial {} ({}, seed {}):",
                        t.spec.index,
                        plan.doc.configs[t.spec.config].label(),
                        t.spec.seed
                    ));
                    // The report's own "reproduce with" names `oomlab run`, which cannot set
                    // the bench's load shape; the bench's command reproduces the trial.
                    summaries.extend(
                        lines
                            .into_iter()
                            .filter(|l| !l.starts_with("reproduce with:"))
                            .map(|l| format!("  {l}")),
                    );
                    summaries.push(format!(
                        "  reproduce with: {}",
                        reproduce_command(&plan, &t.spec)
                    ));
                }
                trials.push(t)
            }
            Outcome::Bug(b) => bugs.push(b),
            Outcome::HostError(e) => anyhow::bail!("{e}"),
        }
    }
    if !bugs.is_empty() {
        bugs.sort_by_key(|b| b.spec.index);
        for b in &bugs {
            eprintln!(
                "oomlab: emulator bug in trial {} ({}, seed {}): {}",
                b.spec.index,
                plan.doc.configs[b.spec.config].label(),
                b.spec.seed,
                b.what
            );
            for l in &b.summary {
                eprintln!("  {l}");
            }
            eprintln!(
                "oomlab: reproduce with: {}",
                reproduce_command(&plan, &b.spec)
            );
        }
        return Ok(crate::EXIT_BUG);
    }
    let mut doc = plan.doc;
    doc.trials = trials;
    let wall = t0.elapsed();
    let (cpu, peak_rss) = output::rusage();
    let n = doc.trials.len();
    let host = json!({
        "argv": std::env::args().collect::<Vec<_>>(),
        "started_at": output::utc(started),
        "finished_at": output::utc(SystemTime::now()),
        "wall_s": wall.as_secs_f64(),
        "cpu_s": cpu.as_secs_f64(),
        "peak_rss_bytes": peak_rss,
        "trials_per_s": n as f64 / wall.as_secs_f64().max(1e-9),
        "jobs": plan.jobs,
        "host_cpus": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
    });
    let footer = format!(
        "{n} trials in {:.1} s wall ({:.1} trials/s, {} jobs), {:.1} s CPU, peak RSS {} MiB",
        wall.as_secs_f64(),
        n as f64 / wall.as_secs_f64().max(1e-9),
        plan.jobs,
        cpu.as_secs_f64(),
        peak_rss >> 20
    );
    if !summaries.is_empty() {
        let mut out = std::io::stdout().lock();
        for l in summaries.iter().chain([&String::new()]) {
            writeln!(out, "{l}")?;
        }
    }
    emit(&doc, host, &a.out, baseline.as_ref(), Some(footer))
}

/// A warning when the livelock window is not longer than the time the oom_reaper may take to
/// give up on a victim (its delay plus its retries): the watchdog could then call a stall
/// that the reaper is about to end a livelock, which is not what the bench means to count.
fn window_note(machines: &[MachineConfig]) -> Option<String> {
    let slow: Vec<(u64, u64)> = machines
        .iter()
        .filter_map(|m| {
            let r = m.reaper()?;
            let give_up_ms = r.delay_ms + u64::from(r.retries) * r.interval_ms;
            let window_ms = m.livelock_window_ns() / 1_000_000;
            (give_up_ms >= window_ms).then_some((give_up_ms, window_ms))
        })
        .collect();
    let (give_up_ms, window_ms) = *slow.iter().max()?;
    Some(format!(
        "in {} of {} configurations the oom_reaper may take {} to give up (--reaper-delay + \
         --reaper-retries x --reaper-interval), not less than the livelock window {}: a stall \
         the reaper would end can count as a livelock (raise --livelock-window)",
        slow.len(),
        machines.len(),
        format_ms(give_up_ms),
        format_ms(window_ms)
    ))
}

/// The progress bar: on stderr when it is a terminal, hidden otherwise.
fn progress_bar(len: u64) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{elapsed_precise} [{bar:40}] {pos}/{len} trials ({per_sec}, eta {eta})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Print the table, write the outputs, and gate on the baseline: the end of `bench` and of
/// `bench merge`.
fn emit(
    doc: &BenchDoc,
    host: Value,
    o: &BenchOutputArgs,
    baseline: Option<&BenchDoc>,
    footer: Option<String>,
) -> Result<u8> {
    let mut files: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    let json_bytes = |v: &Value| {
        let mut b = serde_json::to_vec(v).expect("JSON of plain values");
        b.push(b'\n');
        b
    };
    if let Some(p) = &o.json {
        files.push((p.clone(), json_bytes(&doc.json(host))));
    }
    if let Some(p) = &o.bmf {
        files.push((p.clone(), json_bytes(&output::bmf(doc))));
    }
    if let Some(p) = &o.gab {
        files.push((p.clone(), json_bytes(&output::gab(doc))));
    }
    if let Some(p) = &o.plot {
        let svg = plot::svg(doc).map_err(|e| anyhow::anyhow!("drawing the plot: {e}"))?;
        files.push((p.clone(), svg.into_bytes()));
    }
    let plural = |n: u64, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    let mut lines = vec![format!(
        "oomlab bench: {} x {} from {}; {}; {} executor{}",
        plural(doc.configs.len() as u64, "configuration"),
        plural(doc.trials_per_config, "seed"),
        doc.first_seed,
        doc.identity["workload"]["about"].as_str().unwrap_or(""),
        doc.identity["executor"].as_str().unwrap_or(""),
        if doc.identity["reproducible"] == json!(true) {
            " (reproducible by seed)"
        } else {
            " (real threads: not reproducible)"
        }
    )];
    if let Some(s) = doc.shard {
        lines.push(format!(
            "shard {s}: {} of {} trials (combine the shards with oomlab bench merge)",
            doc.trials.len(),
            doc.configs.len() as u64 * doc.trials_per_config
        ));
    }
    lines.push(String::new());
    lines.extend(output::table(doc));
    if let Some(f) = footer {
        lines.push(f);
    }
    let comparison = baseline.map(|b| {
        gate::compare(
            doc,
            b,
            o.baseline.as_deref().unwrap_or_default(),
            o.threshold,
        )
    });
    if let Some(c) = &comparison {
        lines.push(String::new());
        lines.extend(c.lines.iter().cloned());
    }
    output::write_all(&files)?;
    let mut out = std::io::stdout().lock();
    for l in &lines {
        writeln!(out, "{l}")?;
    }
    out.flush()?;
    match comparison {
        Some(c) if !c.regressions.is_empty() => {
            for r in &c.regressions {
                eprintln!("oomlab: {r}");
            }
            Ok(crate::EXIT_ERROR)
        }
        _ => Ok(crate::EXIT_OK),
    }
}

/// `oomlab bench merge A.json B.json ...`.
fn merge(m: &MergeArgs) -> Result<u8> {
    let baseline = check_outputs(&m.out)?;
    let mut docs: Vec<(&str, BenchDoc, Value)> = Vec::new();
    for f in &m.files {
        let doc = gate::read_doc("merge", f)?;
        // The host object is carried over as is (read_doc validated the rest).
        let host = std::fs::read(f)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .map_or(Value::Null, |v| v["host"].clone());
        docs.push((f.as_str(), doc, host));
    }
    let merged = combine(&docs)?;
    if let (Some(b), Some(path)) = (&baseline, &m.out.baseline) {
        gate::check_comparable(&merged, b, path)?;
    }
    let host = json!({
        "argv": std::env::args().collect::<Vec<_>>(),
        "merged_at": output::utc(SystemTime::now()),
        "shards": docs.iter().map(|(f, _, h)| json!({"file": f, "host": h})).collect::<Vec<_>>(),
    });
    emit(&merged, host, &m.out, baseline.as_ref(), None)
}

/// Combine shard documents into the whole bench's: the same benchmark and version, the same
/// split, every slice exactly once.
fn combine(docs: &[(&str, BenchDoc, Value)]) -> Result<BenchDoc, UsageError> {
    let (first_file, first, _) = &docs[0];
    for (f, d, _) in &docs[1..] {
        if d.identity != first.identity {
            let key = [
                "version", "format", "matrix", "configs", "workload", "executor",
            ]
            .into_iter()
            .chain(["trials_per_config", "first_seed", "command"])
            .find(|k| d.identity[*k] != first.identity[*k])
            .unwrap_or("bench");
            let why = if key == "version" {
                format!(
                    "different oomlab versions ({} in {first_file}, {} in {f})",
                    first.identity["version"], d.identity["version"]
                )
            } else {
                format!("different benchmarks ({key} differs between {first_file} and {f})")
            };
            return Err(UsageError(format!(
                "merge: {why}; only shards of one bench merge"
            )));
        }
    }
    let slice = |d: &BenchDoc| d.shard.map_or((1, 1), |s| (s.index, s.count));
    let n = slice(first).1;
    let mut owner: Vec<Option<&str>> = vec![None; n as usize];
    for (f, d, _) in docs {
        let (k, count) = slice(d);
        if count != n {
            return Err(UsageError(format!(
                "merge: shards of different splits ({first_file} is shard {}/{n}, {f} is \
                 {k}/{count})",
                slice(first).0
            )));
        }
        if let Some(other) = owner[(k - 1) as usize] {
            return Err(UsageError(format!(
                "merge: overlapping slices: {f} and {other} both hold shard {k}/{n}"
            )));
        }
        owner[(k - 1) as usize] = Some(f);
    }
    let missing: Vec<String> = owner
        .iter()
        .enumerate()
        .filter(|(_, o)| o.is_none())
        .map(|(k, _)| format!("{}/{n}", k + 1))
        .collect();
    if !missing.is_empty() {
        return Err(UsageError(format!(
            "merge: missing slices: {} (give the --json file of every shard)",
            missing.join(", ")
        )));
    }
    let mut trials: Vec<_> = docs.iter().flat_map(|(_, d, _)| d.trials.clone()).collect();
    trials.sort_by_key(|t| t.spec.index);
    Ok(BenchDoc {
        shard: None,
        trials,
        ..first.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn plan_of(args: &[&str]) -> Plan {
        let cli = Cli::try_parse_from(["oomlab", "bench"].iter().chain(args)).unwrap();
        let Command::Bench(a) = cli.command else {
            panic!("not bench")
        };
        plan(&a).unwrap()
    }

    #[test]
    fn the_reproduce_command_reruns_exactly_that_trial() {
        let p = plan_of(&[
            "--trials",
            "5",
            "--seed",
            "7",
            "--matrix",
            "write-lock=killable,uninterruptible",
            "--matrix",
            "reaper=on",
            "--processes",
            "3",
        ]);
        let spec = p.specs[6];
        assert_eq!((spec.config, spec.seed), (1, 8));
        let cmd = reproduce_command(&p, &spec);
        assert_eq!(
            cmd,
            "oomlab bench --trials 1 --seed 8 --executor sim --workload run --processes 3 \
             --threads-per-process 4 --remote-readers 2 --memory 8MiB --duration 3s \
             --livelock-window 1500ms --matrix write-lock=uninterruptible --matrix reaper=on \
             --jobs 1"
        );
        let args: Vec<&str> = cmd.split(' ').skip(2).collect();
        let again = plan_of(&args);
        assert_eq!(again.specs.len(), 1);
        assert_eq!(again.specs[0].seed, 8);
        assert_eq!(again.machines[0], p.machines[1]);
        assert_eq!(again.jobs, 1);
    }

    #[test]
    fn the_command_in_the_json_spells_every_default_out() {
        let typed = plan_of(&[]);
        let explicit: Vec<String> = typed.doc.identity["command"]
            .as_str()
            .unwrap()
            .split(' ')
            .skip(2)
            .map(str::to_string)
            .collect();
        let explicit: Vec<&str> = explicit.iter().map(String::as_str).collect();
        let again = plan_of(&explicit);
        assert_eq!(again.doc.identity, typed.doc.identity);
    }

    #[test]
    fn the_window_note_names_a_reaper_slower_than_the_window() {
        assert_eq!(window_note(&plan_of(&[]).machines), None);
        let note = window_note(&plan_of(&["--livelock-window", "1s"]).machines).unwrap();
        assert!(
            note.starts_with("in 2 of 4 configurations the oom_reaper may take 1s"),
            "{note}"
        );
        let delayed = |w: &str| {
            let p = plan_of(&["--matrix", "reaper-delay=2s", "--livelock-window", w]);
            window_note(&p.machines)
        };
        assert!(delayed("3s").unwrap().contains("take 3s to give up"));
        assert_eq!(delayed("4s"), None);
    }
}
