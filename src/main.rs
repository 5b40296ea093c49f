//! `oomlab`: the binary. Parses the command line in two stages (cli.rs: raw flags; plan.rs:
//! a validated plan), turns it into work on the library crates (run.rs: `oomlab run`; here:
//! `oomlab scenario`), and does all of the project's I/O: terminal output, the kernel log and
//! JSON files, the metrics endpoint and the progress line (telemetry/).

mod bench;
mod cli;
mod host;
mod plan;
mod run;
mod telemetry;
mod watch;

use anyhow::{Context, Result};
use clap::Parser;
use cli::{Cli, Command, RunArgs, ScenarioArgs};
use loadgen::report::Report;
use loadgen::scenarios;
use plan::{ScenarioCommand, UsageError};
use reaper::machine::Verdict;
use std::io::{self, Write};
use std::process::ExitCode;

/// Exit statuses, one per verdict (listed for users in `cli::EXIT_STATUS_HELP`).
const EXIT_OK: u8 = 0;
/// A runtime error of the tool (I/O).
const EXIT_ERROR: u8 = 1;
/// `scenario --check` found unmet expectations (one line each on stdout).
const EXIT_CHECK_FAILED: u8 = 1;
/// Bad command line (including a pool the host cannot hold), or a feature that is not
/// implemented yet.
const EXIT_USAGE: u8 = 2;
/// The modelled kernel panicked (panic_on_oom, or "System is deadlocked on memory").
const EXIT_PANIC: u8 = 3;
/// The time bound passed with tasks left: a scenario's `--time-limit`, or a `run` whose
/// wind-down could not finish.
const EXIT_TIME_LIMIT: u8 = 4;
/// The modelled kernel deadlocked outright: no task runnable, no timer pending (sim).
const EXIT_DEADLOCK: u8 = 5;
/// The emulator's own bookkeeping broke (a bug; the same status as a Rust panic).
const EXIT_BUG: u8 = 101;

/// The one map from a machine's verdict to the exit status.
fn exit_status(v: &Verdict) -> u8 {
    match v {
        Verdict::Completed => EXIT_OK,
        Verdict::Panicked { .. } => EXIT_PANIC,
        Verdict::TimeLimit => EXIT_TIME_LIMIT,
        Verdict::Deadlock => EXIT_DEADLOCK,
        // As a shell reports a process its signal ended: 130 for SIGINT, 143 for SIGTERM.
        Verdict::Interrupted { signal } => 128 + *signal as u8,
        Verdict::EmulatorBug { .. } => EXIT_BUG,
    }
}

/// Print `lines`, then say loudly on stderr if the emulator broke, with the seed to replay it;
/// return the verdict's exit status.
fn finish_report(r: &Report, lines: &[String]) -> Result<u8> {
    let mut out = io::stdout().lock();
    for l in lines {
        writeln!(out, "{l}")?;
    }
    out.flush()?;
    if let Verdict::EmulatorBug { what } = &r.verdict {
        eprintln!(
            "oomlab: emulator invariant broken (seed {}): {what}",
            r.seed
        );
    }
    Ok(exit_status(&r.verdict))
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    let result = match cli.command {
        Command::Run(args) => run(&args),
        Command::Scenario(args) => scenario(&args),
        Command::Bench(args) => bench::bench(&args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) if is_broken_pipe(&e) => ExitCode::from(EXIT_OK),
        Err(e) if e.downcast_ref::<UsageError>().is_some() => {
            eprintln!("oomlab: {e}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(e) => {
            eprintln!("oomlab: {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// `--help` and `--version` print as clap renders them and succeed; every real parse error
/// becomes one line on stderr: clap's first paragraph (what was wrong, and the possible values
/// when it lists them) joined into one line, without its usage block and tips.
fn usage_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        eprintln!("oomlab: a subcommand is required: run, scenario or bench (see 'oomlab --help')");
        return ExitCode::from(EXIT_USAGE);
    }
    if !e.use_stderr() {
        // Nothing sensible is left to do if stdout is gone.
        let _ = e.print();
        return ExitCode::from(EXIT_OK);
    }
    let rendered = e.render().to_string();
    let first: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .take_while(|l| !l.is_empty())
        .collect();
    let line = first.join(" ");
    let line = line.strip_prefix("error: ").unwrap_or(&line);
    eprintln!("oomlab: {line}");
    ExitCode::from(EXIT_USAGE)
}

fn run(args: &RunArgs) -> Result<u8> {
    let mut plan = plan::run(args)?;
    let r = run::run(&plan)?;
    let code = finish_report(&r, &r.summary())?;
    if let Some(target) = plan.json.take() {
        let path = target.path().display().to_string();
        target
            .commit(&format!("{}\n", r.json()))
            .with_context(|| format!("writing --json {path}"))?;
    }
    run::linger(&plan);
    Ok(code)
}

fn scenario(args: &ScenarioArgs) -> Result<u8> {
    let plan = match plan::scenario(args)? {
        ScenarioCommand::List { json } => return list_scenarios(json),
        ScenarioCommand::Check(c) => return check_scenario(&c),
        ScenarioCommand::Run(p) => p,
    };
    let trial = loadgen::scenario::run_trial(&plan.scenario, &plan.cfg)?;
    let r = &trial.report;
    let lines = if plan.json {
        let mut v = r.json();
        if let Some(path) = &plan.file {
            // The summary names the scenario as the command line does (`--file PATH`); the
            // JSON keeps the two apart.
            v["scenario"] = serde_json::json!(plan.scenario.name);
            v["file"] = serde_json::json!(path);
        }
        if !trial.notes.is_empty() {
            v["notes"] = serde_json::json!(trial.notes);
        }
        vec![v.to_string()]
    } else {
        let mut lines: Vec<String> = r
            .log
            .iter()
            .cloned()
            .chain([String::new()])
            .chain(r.summary())
            .collect();
        if !trial.notes.is_empty() {
            lines.push("notes:".to_string());
            lines.extend(trial.notes.iter().map(|n| format!("  {n}")));
        }
        lines
    };
    finish_report(r, &lines)
}

/// `oomlab scenario ... --check`: run every configuration × seed of the file's `[expect]`,
/// print one line per unmet expectation (exit 1), or one line saying that all hold (0). An
/// emulator bug in any run is reported as such (101).
fn check_scenario(c: &plan::CheckPlan) -> Result<u8> {
    let mut out = io::stdout().lock();
    let mut unmet = 0usize;
    let mut bug = false;
    for run in &c.runs {
        let t = loadgen::scenario::run_trial(&c.scenario, &run.cfg)?;
        if let Verdict::EmulatorBug { what } = &t.report.verdict {
            eprintln!(
                "oomlab: emulator invariant broken ({}, {}): {what}",
                c.label, run.what
            );
            bug = true;
        }
        for u in run.expect.unmet(&t.report, &t.notes) {
            writeln!(out, "{}: {}: {u}", c.label, run.what)?;
            unmet += 1;
        }
    }
    if unmet == 0 {
        writeln!(
            out,
            "{}: {} every expectation holds",
            c.label,
            match c.runs.len() {
                1 => "1 run,".to_string(),
                n => format!("{n} runs,"),
            }
        )?;
    }
    out.flush()?;
    Ok(if bug {
        EXIT_BUG
    } else if unmet > 0 {
        EXIT_CHECK_FAILED
    } else {
        EXIT_OK
    })
}

/// `oomlab scenario --list`: one line per scenario, or a JSON array with `--json`.
fn list_scenarios(json: bool) -> Result<u8> {
    let mut out = io::stdout().lock();
    let all = scenarios::all();
    if json {
        let v: Vec<serde_json::Value> = all
            .iter()
            .map(|s| {
                serde_json::json!({
                    "name": s.name,
                    "about": s.about,
                    "memory_bytes": s.memory_bytes,
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::Value::Array(v))?;
    } else {
        let width = all.iter().map(|s| s.name.len()).max().unwrap_or(0);
        for s in all {
            writeln!(out, "{:<width$}  {}", s.name, s.about)?;
        }
    }
    out.flush()?;
    Ok(EXIT_OK)
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.downcast_ref::<io::Error>()
        .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
}
