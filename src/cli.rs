//! The command line, stage one: raw flags exactly as typed (clap derive), with their defaults
//! and value syntax, and nothing else. Turning them into a validated plan (a machine
//! configuration, a scenario, a load) happens in `plan.rs` (ripgrep's lowargs → hiargs split).

use clap::builder::{PossibleValue, PossibleValuesParser};
use clap::{Arg, ArgAction, ArgMatches, Args, FromArgMatches, Parser, Subcommand, ValueEnum};
use reaper::knobs::KNOBS;
use reaper::machine::MachineConfig;
use reaper::units;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Emulates the Linux memory manager under memory pressure: a killable mmap_lock
/// rw_semaphore, the OOM killer and the oom_reaper, in one user-space process.
#[derive(Debug, Parser)]
#[command(name = "oomlab", version, subcommand_required = true)]
#[command(after_help = EXIT_STATUS_HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The exit statuses, as `--help` prints them (main.rs defines the codes).
pub const EXIT_STATUS_HELP: &str = "\
Exit status:
  0    the run or scenario completed (OOM kills and livelocks are results, not errors)
  1    runtime error of the tool, or scenario --check found unmet expectations, or a bench
       regression against its --baseline
  2    bad usage (one line on stderr names what was wrong)
  3    the modelled kernel panicked (panic_on_oom, or nothing left to kill)
  4    the time bound passed with tasks left (scenario --time-limit; run: the wind-down
       could not finish)
  5    the modelled kernel deadlocked: no task runnable, no timer pending (sim executor)
  101  emulator bug: its own bookkeeping broke (frame conservation, leaked frames)
Reproduce any sim-executor run with the same --seed.";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the load generator against the emulated kernel for --duration.
    Run(RunArgs),
    /// Run an OOM scenario (canonical, or from a file) on the deterministic sim executor.
    Scenario(ScenarioArgs),
    /// The livelock-rate benchmark: livelock rate (and kills, give-ups, kill→reclaim) per
    /// kernel configuration over many seeded sim trials, with a regression gate and sharding.
    /// (The micro-benchmarks are `cargo bench`.)
    #[command(long_about = BENCH_ABOUT)]
    Bench(Box<BenchArgs>),
}

/// Flags of `oomlab run`.
#[derive(Clone, Debug, PartialEq, Eq, Args)]
#[command(after_help = EXIT_STATUS_HELP)]
pub struct RunArgs {
    /// Load-generator worker threads (emulated tasks), 1 to 4096, 16 per process; a few
    /// remote-reader processes come on top.
    #[arg(long, value_name = "N", default_value_t = 256, allow_negative_numbers = true,
          value_parser = parse_threads)]
    pub threads: u32,

    /// Emulated physical memory, e.g. 256MiB, 1GiB, 65536KiB (a multiple of 4 KiB; at most
    /// the host's available memory).
    #[arg(long, allow_hyphen_values = true, value_name = "SIZE", default_value = "256MiB", value_parser = parse_memory)]
    pub memory: Bytes,

    /// Executor: OS threads with wall-clock time, or the deterministic simulator.
    #[arg(long, value_enum, default_value_t = Executor::Threads)]
    pub executor: Executor,

    /// Seed of the workload's choices (and of the sim executor's picker), 0 to 2^64-1.
    #[arg(long, value_name = "N", default_value_t = 0, allow_negative_numbers = true,
          value_parser = parse_seed)]
    pub seed: u64,

    /// The run's bound, at least 100ms: from the moment the load starts (the machine's
    /// set-up before it is reported apart) to the verdict. The load stops 5% earlier (between
    /// 50ms and 3s; longer with many threads per host CPU), then what is left is SIGKILLed
    /// and waited for; tasks still alive at the bound are reported (exit status 4).
    /// Wall-clock time on the threads executor, emulated time on the sim executor.
    #[arg(long, allow_hyphen_values = true, value_name = "DURATION", default_value = "60s", value_parser = parse_positive_duration)]
    pub duration: Duration,

    /// Write the kernel log (dmesg format) to PATH as the run goes; `-` writes it to standard
    /// output, before the summary.
    #[arg(long, value_name = "PATH")]
    pub log: Option<std::path::PathBuf>,

    /// Serve Prometheus metrics on http://ADDR/metrics while the run goes (IP:PORT; port 0:
    /// a free port, printed on stderr).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9464", value_parser = parse_socket_addr)]
    pub metrics_addr: std::net::SocketAddr,

    /// Serve no metrics.
    #[arg(long, conflicts_with_all = ["metrics_addr", "metrics_linger"])]
    pub no_metrics: bool,

    /// Keep serving the final metrics this long after the summary (so that a scraper sees
    /// the end of a short run).
    #[arg(long, allow_hyphen_values = true, value_name = "DURATION", default_value = "0", value_parser = parse_duration)]
    pub metrics_linger: Duration,

    /// Write the summary as one JSON object to PATH (written whole at the end: a temporary
    /// file renamed into place).
    #[arg(long, value_name = "PATH")]
    pub json: Option<std::path::PathBuf>,

    /// No progress line on stderr.
    #[arg(long, short)]
    pub quiet: bool,

    #[command(flatten)]
    pub kernel: KernelArgs,
}

/// Flags of `oomlab scenario`.
#[derive(Clone, Debug, PartialEq, Eq, Args)]
#[command(after_help = EXIT_STATUS_HELP)]
pub struct ScenarioArgs {
    /// Canonical scenario to run (see --list), e.g. remote-reader.
    #[arg(value_name = "NAME", required_unless_present_any = ["list", "file"])]
    pub name: Option<String>,

    /// Run the scenario described in this file instead (TOML; docs/scenario-format.md).
    #[arg(long, value_name = "PATH", conflicts_with_all = ["name", "list"])]
    pub file: Option<PathBuf>,

    /// List the canonical scenarios, one line each, and exit.
    #[arg(long, conflicts_with = "name")]
    pub list: bool,

    /// Run every configuration and seed the scenario's expect table names and check its
    /// expectations: one line per unmet one and exit status 1, or 0 when all hold.
    #[arg(long, conflicts_with_all = ["list", "json"])]
    pub check: bool,

    /// Print one JSON object instead of the kernel log and summary (with --list: an array).
    #[arg(long)]
    pub json: bool,

    /// Seed of the sim executor's picker, 0 to 2^64-1 [default: 0; with --check, the file's
    /// seeds].
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = parse_seed)]
    pub seed: Option<u64>,

    /// Emulated physical memory [default: the scenario's own, 16MiB for most].
    #[arg(long, allow_hyphen_values = true, value_name = "SIZE", value_parser = parse_memory)]
    pub memory: Option<Bytes>,

    /// End the trial at this emulated time even if tasks remain (exit status 4) [default:
    /// the scenario's time_limit, else 600s].
    #[arg(long, allow_hyphen_values = true, value_name = "DURATION", value_parser = parse_positive_duration)]
    pub time_limit: Option<Duration>,

    #[command(flatten)]
    pub kernel: KernelArgs,
}

/// `oomlab bench --help`, at length.
pub const BENCH_ABOUT: &str = "\
The livelock-rate benchmark. Runs a matrix of kernel configurations (default: --write-lock \
uninterruptible,killable x --reaper off,on) x --trials seeds; each trial is one randomised \
workload on the deterministic sim executor (the `run` load in small, or a canonical scenario), \
so every figure is the same on every machine. Per configuration it reports the livelock rate \
(trials with at least one livelock) with its 95% Wilson interval, livelocks per 1000 OOM \
kills, OOM kills, collateral kills, reaper give-ups and sysrq recoveries per trial, kill->reclaim \
p50/p99, and the trials ended by a panic, the time bound or a deadlock.

The micro-benchmarks (rw_semaphore, sim switch rate, page faults, mmap) are not here: run \
`cargo bench` (see BENCHMARKS.md).";

/// `oomlab bench`'s exit statuses.
pub const BENCH_EXIT_HELP: &str = "\
Exit status:
  0    done; with --baseline, no configuration's livelock rate rose
  1    --baseline: a livelock rate rose beyond chance or --threshold (one line per configuration
       on stderr); or a runtime error of the tool
  2    bad usage (one line on stderr names what was wrong); nothing is written
  101  a trial broke the emulator (its seed and the command that reproduces it are printed)";

/// Flags of `oomlab bench`.
#[derive(Clone, Debug, PartialEq, Args)]
#[command(args_conflicts_with_subcommands = true, after_help = BENCH_EXIT_HELP)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: Option<BenchCommand>,

    /// Trials (seeds) per configuration.
    #[arg(long, value_name = "N", default_value_t = 100, allow_negative_numbers = true,
          value_parser = parse_trials)]
    pub trials: u32,

    /// The first seed: trial i of every configuration runs seed SEED+i (the same seeds for
    /// every configuration, so configurations are compared on the same interleavings).
    #[arg(long, value_name = "N", default_value_t = 0, allow_negative_numbers = true,
          value_parser = parse_seed)]
    pub seed: u64,

    /// A matrix axis: a kernel knob (any flag of the Kernel configuration of `run` and
    /// `scenario`, without --) and its values; repeat for more axes, which are crossed.
    /// Replaces the default matrix write-lock=uninterruptible,killable x reaper=off,on.
    #[arg(long = "matrix", value_name = "KNOB=V1,V2,...")]
    pub matrix: Vec<String>,

    /// What each trial runs: `run` (the `oomlab run` load in small, sized by the flags
    /// below) or `scenario:NAME` (a canonical scenario; see `oomlab scenario --list`).
    #[arg(long, value_name = "run|scenario:NAME", default_value = "run")]
    pub workload: String,

    /// Executor of the trials: the deterministic simulator, or OS threads with wall-clock
    /// time (real races; the rates are not reproducible; `run` workload only).
    #[arg(long, value_enum, default_value_t = Executor::Sim)]
    pub executor: Executor,

    /// Worker processes of the `run` load [default: 4].
    #[arg(long, value_name = "N", value_parser = parse_processes)]
    pub processes: Option<u32>,

    /// Threads of each worker process [default: 4].
    #[arg(long, value_name = "N", value_parser = parse_threads_per_process)]
    pub threads_per_process: Option<u32>,

    /// Remote-reader processes (`access_process_vm` into the workers' memory: the L1 chain)
    /// [default: 2].
    #[arg(long, value_name = "N", value_parser = parse_remote_readers)]
    pub remote_readers: Option<u32>,

    /// Emulated physical memory of each trial [default: 8MiB for `run`; the scenario's own].
    #[arg(long, allow_hyphen_values = true, value_name = "SIZE", value_parser = parse_memory)]
    pub memory: Option<Bytes>,

    /// Emulated length of each `run` trial, wind-down included [default: 3s]; for a
    /// scenario, its time limit [default: 600s].
    #[arg(long, allow_hyphen_values = true, value_name = "DURATION", value_parser = parse_positive_duration)]
    pub duration: Option<Duration>,

    /// No progress this long while tasks wait for memory is a livelock [default: 1500ms,
    /// half again the reaper's 1 s give-up];
    /// also a matrix axis (--matrix livelock-window=...).
    #[arg(long, allow_hyphen_values = true, value_name = "DURATION")]
    pub livelock_window: Option<String>,

    /// Trials run at once, one per host thread [default: every host CPU for the sim
    /// executor, 1 for threads]. The results do not depend on it.
    #[arg(long, value_name = "N", value_parser = parse_jobs)]
    pub jobs: Option<usize>,

    /// Run only the K-th of N disjoint slices of the trials (1 <= K <= N), or `auto`: K and N
    /// from a Kubernetes Indexed Job (JOB_COMPLETION_INDEX, JOB_COMPLETIONS) or a Slurm job
    /// array (SLURM_ARRAY_TASK_ID, SLURM_ARRAY_TASK_COUNT). Combine the slices' --json files
    /// with `oomlab bench merge`.
    #[arg(long, value_name = "K/N|auto")]
    pub shard: Option<String>,

    /// Print each trial's summary (as `oomlab run` prints it: OOM figures, the livelocks'
    /// wait-for chains) before the table, to see why a configuration livelocks.
    #[arg(long)]
    pub trial_summaries: bool,

    #[command(flatten)]
    pub out: BenchOutputArgs,
}

/// Subcommands of `oomlab bench`.
#[derive(Clone, Debug, PartialEq, Subcommand)]
pub enum BenchCommand {
    /// Combine the --json files of shards (--shard K/N) into the result of the whole bench,
    /// identical to an unsharded run's; refuses files of different benchmarks or versions,
    /// and missing or overlapping slices.
    #[command(after_help = BENCH_EXIT_HELP)]
    Merge(MergeArgs),
}

/// Flags of `oomlab bench merge`.
#[derive(Clone, Debug, PartialEq, Args)]
pub struct MergeArgs {
    /// The shards' --json files, one per slice, in any order.
    #[arg(value_name = "SHARD.json", required = true)]
    pub files: Vec<String>,

    #[command(flatten)]
    pub out: BenchOutputArgs,
}

/// What `oomlab bench` (and `bench merge`) write, and the regression gate.
#[derive(Clone, Debug, PartialEq, Args)]
pub struct BenchOutputArgs {
    /// Write everything (per trial and per configuration, the command, version and matrix)
    /// as JSON; the same command gives the same bytes, apart from the `host` object
    /// (timestamps, host facts).
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,

    /// Write the per-configuration figures in Bencher Metric Format.
    #[arg(long, value_name = "PATH")]
    pub bmf: Option<PathBuf>,

    /// Write github-action-benchmark's customSmallerIsBetter array.
    #[arg(long, value_name = "PATH")]
    pub gab: Option<PathBuf>,

    /// Draw the livelock rate of each configuration with its 95% interval as an SVG bar chart.
    #[arg(long, value_name = "PATH.svg")]
    pub plot: Option<PathBuf>,

    /// Compare with an earlier --json: exit 1 if a configuration's livelock rate rose beyond
    /// chance (its 95% Newcombe interval of the rise lies above 0).
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<String>,

    /// With --baseline: also fail on a rise of the rate by more than this, as a fraction
    /// (0.05) or in percentage points (5%), even if chance could explain it.
    #[arg(long, value_name = "RISE", requires = "baseline", value_parser = parse_threshold)]
    pub threshold: Option<f64>,
}

/// The kernel configuration of a run: the knobs shared by `run` and `scenario`, one flag per
/// knob of [`reaper::knobs::KNOBS`] (built from that list, so every knob is a flag).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelArgs {
    /// The knobs given on the command line, in `KNOBS` order: (name, value).
    pub given: Vec<(&'static str, String)>,
}

impl FromArgMatches for KernelArgs {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let given = KNOBS
            .iter()
            .filter_map(|k| m.get_one::<String>(k.name).map(|v| (k.name, v.clone())))
            .collect();
        Ok(KernelArgs { given })
    }
    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

impl Args for KernelArgs {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        let defaults = MachineConfig::sim(0);
        let mut cmd = cmd.next_help_heading("Kernel configuration");
        for k in KNOBS {
            let default = k
                .default_note
                .map_or_else(|| k.get(&defaults), str::to_string);
            let arg = Arg::new(k.name)
                .long(k.name)
                .value_name(k.value_name)
                .action(ArgAction::Set)
                // A value that starts with '-' (`-1s`) reaches the parser, which says what is
                // accepted, instead of clap calling it an unknown flag.
                .allow_hyphen_values(true)
                .help(format!("{} [default: {default}]", k.help));
            let arg = if k.choices.is_empty() {
                // Validated by the knob itself, so the flag accepts exactly what a matrix
                // axis or a scenario file accepts.
                arg.value_parser(move |v: &str| -> Result<String, String> {
                    k.set(&mut MachineConfig::sim(0), v)
                        .map(|()| v.to_string())
                        .map_err(|e| e.why)
                })
            } else {
                arg.value_parser(PossibleValuesParser::new(
                    k.choices
                        .iter()
                        .map(|(v, h)| PossibleValue::new(*v).help(*h)),
                ))
            };
            cmd = cmd.arg(arg);
        }
        cmd
    }
    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Executor {
    /// One OS thread per emulated task; wall-clock time; real races.
    Threads,
    /// Stackful coroutines on one OS thread; virtual time; seeded, reproducible.
    Sim,
}

impl Executor {
    /// The flag's value: `threads` or `sim`.
    pub fn name(self) -> &'static str {
        match self {
            Executor::Threads => "threads",
            Executor::Sim => "sim",
        }
    }
}

/// A byte count given on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bytes(pub u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&units::format_size(self.0))
    }
}

/// The emulated page size; `--memory` must be a whole number of frames.
const PAGE_SIZE: u64 = mm::pgtable::PAGE_SIZE;

/// `--memory`: a SIZE ([`reaper::units`]) that is a positive multiple of the page size.
pub fn parse_memory(s: &str) -> Result<Bytes, String> {
    let bytes = units::parse_size(s)?;
    if bytes == 0 || bytes % PAGE_SIZE != 0 {
        return Err(format!(
            "must be a positive multiple of {PAGE_SIZE} bytes (4KiB), e.g. 256MiB"
        ));
    }
    Ok(Bytes(bytes))
}

/// `--threads`: 1 to 4096.
pub fn parse_threads(s: &str) -> Result<u32, String> {
    s.parse::<u32>()
        .ok()
        .filter(|n| (1..=4096).contains(n))
        .ok_or_else(|| "expected a whole number from 1 to 4096".to_string())
}

/// A whole number from `lo` to `hi`.
fn whole(s: &str, lo: u64, hi: u64) -> Result<u64, String> {
    s.parse::<u64>()
        .ok()
        .filter(|n| (lo..=hi).contains(n))
        .ok_or_else(|| format!("expected a whole number from {lo} to {hi}"))
}

/// `bench --trials`: 1 to 1000000.
pub fn parse_trials(s: &str) -> Result<u32, String> {
    whole(s, 1, 1_000_000).map(|n| n as u32)
}

/// `bench --processes`: 1 to 64.
pub fn parse_processes(s: &str) -> Result<u32, String> {
    whole(s, 1, 64).map(|n| n as u32)
}

/// `bench --threads-per-process`: 1 to 64.
pub fn parse_threads_per_process(s: &str) -> Result<u32, String> {
    whole(s, 1, 64).map(|n| n as u32)
}

/// `bench --remote-readers`: 0 to 64.
pub fn parse_remote_readers(s: &str) -> Result<u32, String> {
    whole(s, 0, 64).map(|n| n as u32)
}

/// `bench --jobs`: 1 to 1024.
pub fn parse_jobs(s: &str) -> Result<usize, String> {
    whole(s, 1, 1024).map(|n| n as usize)
}

/// `bench --threshold`: a rise of the livelock rate, `0.05` or `5%`, from 0 to 1 (100%).
pub fn parse_threshold(s: &str) -> Result<f64, String> {
    let accepted = "expected a rise of the rate from 0 to 1, as a fraction (0.05) or in \
                    percentage points (5%)";
    let (num, scale) = match s.strip_suffix('%') {
        Some(n) => (n, 100.0),
        None => (s, 1.0),
    };
    let x = num
        .parse::<f64>()
        .ok()
        .filter(|x| x.is_finite())
        .map(|x| x / scale)
        .ok_or_else(|| accepted.to_string())?;
    if !(0.0..=1.0).contains(&x) {
        return Err(accepted.to_string());
    }
    Ok(x)
}

/// `--seed`: 0 to 2^64-1.
pub fn parse_seed(s: &str) -> Result<u64, String> {
    s.parse::<u64>()
        .map_err(|_| format!("expected a whole number from 0 to {}", u64::MAX))
}

/// `--metrics-addr`: an IP address and a port.
pub fn parse_socket_addr(s: &str) -> Result<std::net::SocketAddr, String> {
    s.parse().map_err(|_| {
        "expected IP:PORT, e.g. 127.0.0.1:9464 or [::1]:9464 (port 0: any free port)".to_string()
    })
}

/// `DURATION` ([`reaper::units`]).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    units::parse_duration(s)
}

/// `DURATION` that must be more than zero.
pub fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err("must be more than zero".to_string());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn memory_is_a_positive_number_of_pages() {
        assert_eq!(parse_memory("256MiB"), Ok(Bytes(256 << 20)));
        assert_eq!(parse_memory("8192"), Ok(Bytes(8192)));
        for (s, needle) in [
            ("0", "positive multiple of 4096"),
            ("4097", "positive multiple of 4096"),
            ("256MB", "256MiB or 256M"),
            ("1.5G", "fractions"),
        ] {
            let e = parse_memory(s).expect_err(s);
            assert!(e.contains(needle), "{s}: {e}");
        }
        assert_eq!(Bytes(256 << 20).to_string(), "256MiB");
    }

    #[test]
    fn numbers_say_what_is_accepted() {
        assert_eq!(parse_threads("4096"), Ok(4096));
        for s in ["0", "4097", "-1", "many"] {
            assert_eq!(
                parse_threads(s),
                Err("expected a whole number from 1 to 4096".into()),
                "{s}"
            );
        }
        assert_eq!(parse_seed("18446744073709551615"), Ok(u64::MAX));
        for s in ["-1", "18446744073709551616", "x"] {
            assert!(parse_seed(s)
                .unwrap_err()
                .contains("0 to 18446744073709551615"));
        }
    }

    #[test]
    fn run_defaults() {
        let cli = Cli::try_parse_from(["oomlab", "run"]).unwrap();
        let Command::Run(a) = cli.command else {
            panic!("not run")
        };
        assert_eq!(a.threads, 256);
        assert_eq!(a.memory, Bytes(256 << 20));
        assert_eq!(a.executor, Executor::Threads);
        assert_eq!(a.kernel, KernelArgs::default(), "no knob given");
        assert_eq!(a.duration, Duration::from_secs(60));
        assert_eq!(
            a.metrics_addr.to_string(),
            "127.0.0.1:9464",
            "loopback by default"
        );
        assert!(!a.no_metrics && !a.quiet && a.json.is_none());
        assert_eq!(a.metrics_linger, Duration::ZERO);
    }

    #[test]
    fn metrics_flags() {
        let run = |args: &[&str]| {
            Cli::try_parse_from(["oomlab", "run"].iter().chain(args)).map(|c| match c.command {
                Command::Run(a) => a,
                _ => panic!("not run"),
            })
        };
        let a = run(&["--metrics-addr", "[::1]:0", "--metrics-linger", "15s", "-q"]).unwrap();
        assert_eq!(a.metrics_addr.to_string(), "[::1]:0");
        assert_eq!(a.metrics_linger, Duration::from_secs(15));
        assert!(a.quiet);
        assert!(run(&["--no-metrics"]).unwrap().no_metrics);
        let e = run(&["--metrics-addr", "localhost"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--metrics-addr") && e.contains("IP:PORT"), "{e}");
        assert!(run(&["--no-metrics", "--metrics-addr", "127.0.0.1:1"]).is_err());
        assert!(run(&["--no-metrics", "--metrics-linger", "1s"]).is_err());
    }

    #[test]
    fn every_knob_is_a_flag_of_run_and_scenario() {
        for sub in ["run", "scenario"] {
            let cmd = Cli::command();
            let sc = cmd.find_subcommand(sub).unwrap();
            for k in KNOBS {
                let arg = sc
                    .get_arguments()
                    .find(|a| a.get_long() == Some(k.name))
                    .unwrap_or_else(|| panic!("{sub} has no --{}", k.name));
                assert_eq!(arg.get_help_heading(), Some("Kernel configuration"));
            }
        }
    }

    #[test]
    fn scenario_needs_a_name_or_list() {
        assert!(Cli::try_parse_from(["oomlab", "scenario"]).is_err());
        assert!(Cli::try_parse_from(["oomlab", "scenario", "--list"]).is_ok());
        assert!(Cli::try_parse_from(["oomlab", "scenario", "x", "--list"]).is_err());
        let cli = Cli::try_parse_from([
            "oomlab",
            "scenario",
            "remote-reader",
            "--write-lock",
            "uninterruptible",
            "--reaper",
            "off",
            "--reaper-delay",
            "2s",
            "--seed",
            "7",
            "--json",
        ])
        .unwrap();
        let Command::Scenario(a) = cli.command else {
            panic!("not scenario")
        };
        assert_eq!(a.name.as_deref(), Some("remote-reader"));
        assert_eq!(
            a.kernel.given,
            vec![
                ("write-lock", "uninterruptible".to_string()),
                ("reaper", "off".to_string()),
                ("reaper-delay", "2s".to_string()),
            ]
        );
        assert_eq!(a.memory, None);
        assert_eq!(a.time_limit, None);
        assert_eq!(a.seed, Some(7));
        assert!(a.json);
        assert!(!a.check);
    }

    #[test]
    fn scenario_takes_a_file_or_a_name_and_checks_either() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from(["oomlab", "scenario"].iter().chain(args)).map(|c| {
                match c.command {
                    Command::Scenario(a) => a,
                    _ => panic!("not scenario"),
                }
            })
        };
        let a = parse(&["--file", "x.toml", "--check"]).unwrap();
        assert_eq!(a.file, Some(PathBuf::from("x.toml")));
        assert!(a.check && a.name.is_none());
        assert!(parse(&["remote-reader", "--check"]).unwrap().check);
        for bad in [
            &["--file", "x.toml", "remote-reader"][..],
            &["--file", "x.toml", "--list"],
            &["--check", "--list"],
            &["x", "--check", "--json"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
