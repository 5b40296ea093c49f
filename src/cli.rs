//! The command line, stage one: raw flags exactly as typed (clap derive), with their defaults
//! and value syntax, and nothing else. Turning them into a validated plan (a machine
//! configuration, a scenario, a load) happens in `plan.rs` (ripgrep's lowargs → hiargs split).

use clap::builder::{PossibleValue, PossibleValuesParser};
use clap::{Arg, ArgAction, ArgMatches, Args, FromArgMatches, Parser, Subcommand, ValueEnum};
use reaper::knobs::KNOBS;
use reaper::machine::MachineConfig;
use reaper::units;
use std::fmt;
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
  1    runtime error of the tool
  2    bad usage (one line on stderr names what was wrong), or not implemented yet
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
    /// Run one canonical OOM scenario on the deterministic sim executor.
    Scenario(ScenarioArgs),
    /// Run a benchmark and write its medians and ratios to `target/oomlab-bench/<bench>.json`.
    Bench(BenchArgs),
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
    #[arg(long, value_name = "SIZE", default_value = "256MiB", value_parser = parse_memory)]
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
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_positive_duration)]
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
    #[arg(long, value_name = "DURATION", default_value = "0", value_parser = parse_duration)]
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
    /// Scenario to run (see --list), e.g. remote-reader.
    #[arg(value_name = "NAME", required_unless_present = "list")]
    pub name: Option<String>,

    /// List the scenarios, one line each, and exit.
    #[arg(long, conflicts_with = "name")]
    pub list: bool,

    /// Print one JSON object instead of the kernel log and summary (with --list: an array).
    #[arg(long)]
    pub json: bool,

    /// Seed of the sim executor's picker, 0 to 2^64-1.
    #[arg(long, value_name = "N", default_value_t = 0, allow_negative_numbers = true,
          value_parser = parse_seed)]
    pub seed: u64,

    /// Emulated physical memory [default: the scenario's own, 16MiB for most].
    #[arg(long, value_name = "SIZE", value_parser = parse_memory)]
    pub memory: Option<Bytes>,

    /// End the trial at this emulated time even if tasks remain (exit status 4).
    #[arg(long, value_name = "DURATION", default_value = "600s", value_parser = parse_positive_duration)]
    pub time_limit: Duration,

    #[command(flatten)]
    pub kernel: KernelArgs,
}

/// Flags of `oomlab bench`.
#[derive(Clone, Debug, PartialEq, Eq, Args)]
pub struct BenchArgs {
    /// Which benchmark; all of them when omitted.
    #[arg(value_enum, value_name = "BENCH")]
    pub bench: Option<Bench>,
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Bench {
    /// rw_semaphore against std and parking_lot RwLock, uncontended and 90/10 contended.
    Rwsem,
    /// The sim executor's task switch rate.
    SimSwitch,
    /// Emulated anonymous page fault against the host kernel's.
    PageFault,
    /// Emulated mmap+munmap pair against the host kernel's.
    Mmap,
    /// Livelock rate per kernel configuration over many sim trials.
    LivelockRate,
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
        assert_eq!(a.time_limit, Duration::from_secs(600));
        assert_eq!(a.seed, 7);
        assert!(a.json);
    }
}
