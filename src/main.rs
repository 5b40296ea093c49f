//! `oomlab`: the binary. Parses the command line (cli.rs), turns it into work on the library
//! crates, and does all of the project's I/O: terminal output today; files, the metrics
//! endpoint and reports as later issues land.

mod cli;
mod demo;

use anyhow::Result;
use clap::Parser;
use cli::{Bench, BenchArgs, Cli, Command, RunArgs, ScenarioArgs};
use mm::sched::sim::SimOutcome;
use std::io::{self, Write};
use std::process::ExitCode;

/// Exit statuses, one per verdict. Later issues add the modelled kernel's verdicts
/// (livelock, emulated panic) as distinct codes from 3 up.
const EXIT_OK: u8 = 0;
/// A runtime error of the tool (I/O), or a run that did not finish as it must.
const EXIT_ERROR: u8 = 1;
/// Bad command line, or a feature that is not implemented yet.
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    let result = match cli.command {
        Command::Run(args) => run(&args),
        Command::Scenario(args) => scenario(&args),
        Command::Bench(args) => bench(&args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) if is_broken_pipe(&e) => ExitCode::from(EXIT_OK),
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

fn not_implemented(what: &str, issue: u32) -> Result<u8> {
    eprintln!("oomlab: '{what}' is not implemented yet (see issue {issue})");
    Ok(EXIT_USAGE)
}

/// The interim `run`: honours `--seed`, and runs on the sim executor whatever `--executor`
/// says (both values are accepted); any other flag that differs from its default belongs to
/// the real run and is refused.
fn run(args: &RunArgs) -> Result<u8> {
    let defaults = match Cli::try_parse_from(["oomlab", "run"]) {
        Ok(Cli {
            command: Command::Run(d),
        }) => d,
        other => panic!("the bare `oomlab run` must parse to run defaults: {other:?}"),
    };
    let refused = [
        ("run --threads", 3, args.threads != defaults.threads),
        ("run --memory", 3, args.memory != defaults.memory),
        ("run --write-lock", 3, args.knobs != defaults.knobs),
        ("run --read-lock", 3, args.read_lock != defaults.read_lock),
        ("run --duration", 3, args.duration != defaults.duration),
        (
            "run --reaper",
            4,
            args.reaper.reaper != defaults.reaper.reaper,
        ),
        (
            "run --reaper-delay",
            4,
            args.reaper.reaper_delay != defaults.reaper.reaper_delay,
        ),
    ];
    if let Some((what, issue, _)) = refused.iter().find(|(_, _, differs)| *differs) {
        return not_implemented(what, *issue);
    }

    let s = demo::run_token_ring(args.seed);
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "oomlab run: interim demo until the memory manager lands (issue 3): \
         a token ring on the sim executor"
    )?;
    writeln!(out, "  seed          {}", s.seed)?;
    writeln!(
        out,
        "  tasks         {} ({} token passes)",
        s.tasks, s.token_passes
    )?;
    writeln!(out, "  steps         {}", s.steps)?;
    writeln!(out, "  virtual time  {:.6}s", s.virtual_ns as f64 / 1e9)?;
    writeln!(out, "  trace hash    {:#018x}", s.trace_hash)?;
    match &s.outcome {
        SimOutcome::AllExited => {
            writeln!(out, "  outcome       all tasks exited")?;
            writeln!(out, "reproduce with: oomlab run --seed {}", s.seed)?;
            Ok(EXIT_OK)
        }
        // The ring cannot block for good; if it did, the seam or the executor is broken.
        other => {
            writeln!(out, "  outcome       {other:?}")?;
            if let SimOutcome::Deadlock(report) = other {
                write!(out, "{report}")?;
            }
            anyhow::bail!(
                "the interim demo did not finish (seed {}): emulator bug",
                s.seed
            )
        }
    }
}

fn scenario(_args: &ScenarioArgs) -> Result<u8> {
    not_implemented("scenario", 4)
}

fn bench(args: &BenchArgs) -> Result<u8> {
    match args.bench {
        None => not_implemented("bench", 2),
        Some(Bench::Rwsem) => not_implemented("bench rwsem", 2),
        Some(Bench::SimSwitch) => not_implemented("bench sim-switch", 2),
        Some(Bench::PageFault) => not_implemented("bench page-fault", 3),
        Some(Bench::Mmap) => not_implemented("bench mmap", 3),
        Some(Bench::LivelockRate) => not_implemented("bench livelock-rate", 4),
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.downcast_ref::<io::Error>()
        .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
}
