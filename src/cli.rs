//! The command line, stage one: raw flags exactly as typed (clap derive), with their defaults
//! and value syntax, and nothing else. Turning them into a validated plan (a machine
//! configuration, a scenario, a load) happens in `plan.rs` (ripgrep's lowargs → hiargs split).

use clap::{Args, Parser, Subcommand, ValueEnum};
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
    /// Run a benchmark and write its medians and ratios to target/oomlab-bench/<bench>.json.
    Bench(BenchArgs),
}

/// Flags of `oomlab run`.
#[derive(Clone, Debug, PartialEq, Eq, Args)]
#[command(after_help = EXIT_STATUS_HELP)]
pub struct RunArgs {
    /// Load-generator worker threads (emulated tasks), 16 per process; a few remote-reader
    /// processes come on top.
    #[arg(long, value_name = "N", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub threads: u32,

    /// Emulated physical memory, e.g. 256MiB, 1GiB, 65536KiB (a multiple of 4 KiB; at most
    /// the host's available memory).
    #[arg(long, value_name = "SIZE", default_value = "256MiB", value_parser = parse_size)]
    pub memory: Bytes,

    /// Executor: OS threads with wall-clock time, or the deterministic simulator.
    #[arg(long, value_enum, default_value_t = Executor::Threads)]
    pub executor: Executor,

    /// Seed of the workload's choices (and of the sim executor's picker).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,

    /// How long the run lasts, wind-down included: the load stops 5% earlier (at most 3s
    /// earlier), then what is left is SIGKILLed and waited for. Wall-clock time on the
    /// threads executor, emulated time on the sim executor.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_positive_duration)]
    pub duration: Duration,

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

    /// Seed of the sim executor's picker.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,

    /// Emulated physical memory [default: the scenario's own, 16MiB for most].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
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

/// The kernel configuration of a run: knobs shared by `run` and `scenario`.
#[derive(Clone, Debug, PartialEq, Eq, Args)]
#[command(next_help_heading = "Kernel configuration")]
pub struct KernelArgs {
    /// How mmap/munmap/mprotect/mlock wait for mmap_lock for write (the 2016 RFC's question).
    #[arg(long, value_enum, default_value_t = WriteLock::Killable)]
    pub write_lock: WriteLock,

    /// How page faults wait for mmap_lock for read; killable is the v6.5 behaviour.
    #[arg(long, value_enum, default_value_t = ReadLock::Uninterruptible)]
    pub read_lock: ReadLock,

    /// The rw_semaphore model behind mmap_lock.
    #[arg(long, value_enum, default_value_t = RwsemModel::A)]
    pub rwsem_model: RwsemModel,

    /// Run the oom_reaper kthread.
    #[arg(long = "reaper", value_name = "on|off", value_enum, default_value_t = Reaper::On)]
    pub reaper: Reaper,

    /// Delay before the reaper starts on a victim: 0 as in 2016, 2s as in >= 5.18.
    #[arg(long, value_name = "DURATION", default_value = "0", value_parser = parse_duration_ms)]
    pub reaper_delay: Duration,

    /// mmap_lock read-trylock attempts per victim before the reaper gives up
    /// (MAX_OOM_REAP_RETRIES).
    #[arg(long, value_name = "N", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(0..=10_000))]
    pub reaper_retries: u32,

    /// Sleep between two reaper attempts on one victim (HZ/10).
    #[arg(long, value_name = "DURATION", default_value = "100ms", value_parser = parse_positive_duration_ms)]
    pub reaper_interval: Duration,

    /// vm.panic_on_oom: 0 kill, 1 or 2 panic (emulated; the run ends with exit status 3).
    #[arg(long, value_name = "0|1|2", default_value_t = 0,
          value_parser = clap::value_parser!(u8).range(0..=2))]
    pub panic_on_oom: u8,

    /// vm.oom_kill_allocating_task: kill the task whose allocation failed.
    #[arg(long, value_name = "0|1", default_value_t = 0,
          value_parser = clap::value_parser!(u8).range(0..=1))]
    pub oom_kill_allocating_task: u8,

    /// vm.oom_dump_tasks: print the task table at each OOM kill.
    #[arg(long, value_name = "0|1", default_value_t = 1,
          value_parser = clap::value_parser!(u8).range(0..=1))]
    pub oom_dump_tasks: u8,

    /// When the OOM killer stops waiting for a victim (the abort rule).
    #[arg(long, value_enum, default_value_t = VictimGoneRule::MmTeardown)]
    pub victim_gone_rule: VictimGoneRule,

    /// No progress for this long while tasks wait for memory is a livelock (explained, then
    /// recovered with a sysrq-f kill) [default: 30s emulated on the sim executor, 5s wall
    /// clock on the threads executor].
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_duration)]
    pub livelock_window: Option<Duration>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Executor {
    /// One OS thread per emulated task; wall-clock time; real races.
    Threads,
    /// Stackful coroutines on one OS thread; virtual time; seeded, reproducible.
    Sim,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum WriteLock {
    /// down_write_killable(): a SIGKILL ends the wait with -EINTR (v4.7+).
    Killable,
    /// down_write(): the wait ignores SIGKILL (before the 2016 RFC).
    Uninterruptible,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReadLock {
    /// down_read() in the fault path (before v6.5).
    Uninterruptible,
    /// down_read_killable() in the fault path (v6.5+).
    Killable,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RwsemModel {
    /// v4.7 rwsem-xadd with the May-2016 down_write_killable() fix.
    A,
    /// The 2016 RFC as first posted: a killed writer leaves a stale waiting bias.
    #[value(name = "rfc-v1")]
    RfcV1,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Reaper {
    On,
    Off,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum VictimGoneRule {
    /// Wait until the victim's address space is torn down or MMF_OOM_SKIP.
    MmTeardown,
    /// Wait only while the victim process exists (a premature next victim is possible).
    ProcessReleased,
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
        const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
        for (size, unit) in UNITS {
            if self.0 >= size && self.0 % size == 0 {
                return write!(f, "{}{unit}", self.0 / size);
            }
        }
        write!(f, "{}B", self.0)
    }
}

/// The emulated page size; `--memory` must be a whole number of frames.
const PAGE_SIZE: u64 = 4096;

/// `SIZE`: digits, then an optional binary unit (B, K/KiB, M/MiB, G/GiB, T/TiB; any case).
pub fn parse_size(s: &str) -> Result<Bytes, String> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let (num, unit) = s.split_at(digits);
    let num: u64 = num
        .parse()
        .map_err(|_| "expected a size such as 256MiB or 1GiB".to_string())?;
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        "t" | "tib" => 40,
        _ => {
            return Err(format!(
                "unknown unit '{unit}' (use B, KiB, MiB, GiB or TiB)"
            ))
        }
    };
    let bytes = num
        .checked_mul(1 << shift)
        .ok_or_else(|| "size too large".to_string())?;
    if bytes == 0 || bytes % PAGE_SIZE != 0 {
        return Err(format!("must be a positive multiple of {PAGE_SIZE} bytes"));
    }
    Ok(Bytes(bytes))
}

/// `DURATION`: `0`, or digits followed by ns, us, ms, s, m or h.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let (num, unit) = s.split_at(digits);
    let num: u64 = num
        .parse()
        .map_err(|_| "expected a duration such as 0, 100ms, 2s or 10m".to_string())?;
    let per_unit_ns: u64 = match unit {
        "" if num == 0 => 0,
        "ns" => 1,
        "us" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60 * 1_000_000_000,
        "h" => 3_600 * 1_000_000_000,
        "" => return Err("a unit is required (ns, us, ms, s, m or h)".to_string()),
        _ => return Err(format!("unknown unit '{unit}' (use ns, us, ms, s, m or h)")),
    };
    let ns = num
        .checked_mul(per_unit_ns)
        .ok_or_else(|| "duration too long".to_string())?;
    Ok(Duration::from_nanos(ns))
}

/// `DURATION` that must be more than zero.
pub fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err("must be more than zero".to_string());
    }
    Ok(d)
}

/// `DURATION` in whole milliseconds (the kernel knobs behind it count ms or jiffies).
pub fn parse_duration_ms(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.subsec_nanos() % 1_000_000 != 0 {
        return Err("must be a whole number of milliseconds".to_string());
    }
    Ok(d)
}

/// `DURATION` in whole milliseconds, more than zero.
pub fn parse_positive_duration_ms(s: &str) -> Result<Duration, String> {
    let d = parse_duration_ms(s)?;
    if d.is_zero() {
        return Err("must be at least 1ms".to_string());
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
    fn sizes() {
        for (s, want) in [
            ("256MiB", 256 << 20),
            ("256m", 256 << 20),
            ("1G", 1 << 30),
            ("65536KiB", 64 << 20),
            ("8192", 8192),
        ] {
            assert_eq!(parse_size(s), Ok(Bytes(want)), "{s}");
        }
        for s in [
            "",
            "MiB",
            "0",
            "4097",
            "1.5G",
            "12XB",
            "99999999999T",
            "-1M",
        ] {
            assert!(parse_size(s).is_err(), "{s} accepted");
        }
        assert_eq!(Bytes(256 << 20).to_string(), "256MiB");
        assert_eq!(Bytes(12288).to_string(), "12KiB");
    }

    #[test]
    fn durations() {
        for (s, want) in [
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("2s", Duration::from_secs(2)),
            ("100ms", Duration::from_millis(100)),
            ("10m", Duration::from_secs(600)),
            ("1h", Duration::from_secs(3600)),
            ("5us", Duration::from_micros(5)),
        ] {
            assert_eq!(parse_duration(s), Ok(want), "{s}");
        }
        for s in ["", "s", "2", "1.5s", "3d", "-1s", "99999999999999h"] {
            assert!(parse_duration(s).is_err(), "{s} accepted");
        }
        assert!(parse_positive_duration("0").is_err());
        assert_eq!(parse_duration_ms("2s"), Ok(Duration::from_secs(2)));
        assert!(parse_duration_ms("1500us").is_err());
        assert!(parse_positive_duration_ms("0ms").is_err());
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
        assert_eq!(a.kernel.write_lock, WriteLock::Killable);
        assert_eq!(a.kernel.read_lock, ReadLock::Uninterruptible);
        assert_eq!(a.kernel.rwsem_model, RwsemModel::A);
        assert_eq!(a.kernel.reaper, Reaper::On);
        assert_eq!(a.kernel.reaper_delay, Duration::ZERO);
        assert_eq!(a.kernel.reaper_retries, 10);
        assert_eq!(a.kernel.reaper_interval, Duration::from_millis(100));
        assert_eq!(
            (
                a.kernel.panic_on_oom,
                a.kernel.oom_kill_allocating_task,
                a.kernel.oom_dump_tasks
            ),
            (0, 0, 1)
        );
        assert_eq!(a.kernel.victim_gone_rule, VictimGoneRule::MmTeardown);
        assert_eq!(a.kernel.livelock_window, None);
        assert_eq!(a.duration, Duration::from_secs(60));
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
        assert_eq!(a.kernel.write_lock, WriteLock::Uninterruptible);
        assert_eq!(a.kernel.reaper, Reaper::Off);
        assert_eq!(a.kernel.reaper_delay, Duration::from_secs(2));
        assert_eq!(a.memory, None);
        assert_eq!(a.time_limit, Duration::from_secs(600));
        assert_eq!(a.seed, 7);
        assert!(a.json);
    }
}
