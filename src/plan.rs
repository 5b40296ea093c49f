//! The command line, stage two: raw flags (cli.rs) checked and turned into plans that name
//! library types only: a machine configuration, a scenario with its trial configuration, a
//! load with its time bounds. Every error here is a usage error: one line, exit status 2.
//! The host is checked here too (a pool the host cannot hold is refused before anything
//! starts).

use crate::cli::{Executor, KernelArgs, RunArgs, ScenarioArgs};
use crate::host;
use loadgen::load::{LoadConfig, RunConfig};
use loadgen::scenario::{Scenario, ScenarioConfig};
use loadgen::scenario_file::{self, expect::CheckRun};
use loadgen::scenarios;
use reaper::machine::MachineConfig;
use std::fmt;
use std::path::Path;
use std::time::Duration;

/// A command line that parsed but cannot be run as asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for UsageError {}

/// `oomlab run`, validated.
#[derive(Debug)]
pub struct RunPlan {
    pub executor: Executor,
    pub run: RunConfig,
    /// Where `--log` writes the kernel log.
    pub log: Option<LogTarget>,
    /// Where the metrics are served (`--metrics-addr`; `None`: `--no-metrics`).
    pub metrics: Option<std::net::SocketAddr>,
    /// `--metrics-linger`.
    pub metrics_linger: Duration,
    /// Where `--json` writes the summary.
    pub json: Option<JsonTarget>,
    /// `--quiet`: no progress line.
    pub quiet: bool,
}

/// `--json PATH`: a temporary file beside PATH, created before the run (so that a path that
/// cannot be written is a usage error before anything starts), renamed onto PATH once the
/// JSON is written whole; removed if the run never gets there.
#[derive(Debug)]
pub struct JsonTarget {
    path: std::path::PathBuf,
    tmp: std::path::PathBuf,
    file: Option<std::fs::File>,
}

impl JsonTarget {
    fn create(path: &std::path::Path) -> Result<JsonTarget, UsageError> {
        let bad = |why: String| UsageError(format!("--json {}: {why}", path.display()));
        if path.is_dir() {
            return Err(bad("is a directory; give a file path".into()));
        }
        let name = path
            .file_name()
            .ok_or_else(|| bad("give a file path".into()))?
            .to_string_lossy();
        let tmp = path.with_file_name(format!(".{name}.oomlab-{}.tmp", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| bad(format!("cannot write a file there: {e}")))?;
        Ok(JsonTarget {
            path: path.to_path_buf(),
            tmp,
            file: Some(file),
        })
    }

    /// The final path.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Write `text` to the temporary file, flush it to disk and rename it onto the path.
    pub fn commit(mut self, text: &str) -> std::io::Result<()> {
        use std::io::Write;
        let mut f = self.file.take().expect("committed once");
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&self.tmp, &self.path)
    }
}

impl Drop for JsonTarget {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// `--log PATH` (created, or truncated, before the run starts) or `--log -`.
#[derive(Debug)]
pub enum LogTarget {
    Stdout,
    File(std::fs::File),
}

impl LogTarget {
    /// The watcher's sink (a file handle is moved, not reopened).
    pub fn open(&self) -> crate::watch::LogSink {
        match self {
            LogTarget::Stdout => crate::watch::LogSink::Stdout,
            LogTarget::File(f) => crate::watch::LogSink::File(
                f.try_clone().expect("duplicating the --log file handle"),
            ),
        }
    }
}

fn log_target(path: &std::path::Path) -> Result<LogTarget, UsageError> {
    if path.as_os_str() == "-" {
        return Ok(LogTarget::Stdout);
    }
    std::fs::File::create(path)
        .map(LogTarget::File)
        .map_err(|e| UsageError(format!("--log {}: cannot create it: {e}", path.display())))
}

/// `oomlab scenario NAME|--file PATH`, validated.
pub struct ScenarioPlan {
    pub scenario: Scenario,
    pub cfg: ScenarioConfig,
    pub json: bool,
    /// `--file PATH`, as given.
    pub file: Option<String>,
}

/// `oomlab scenario NAME|--file PATH --check`, validated: every run to make.
pub struct CheckPlan {
    /// The file as `--check` names it in its output.
    pub label: String,
    pub scenario: Scenario,
    pub runs: Vec<CheckRun>,
}

/// What `oomlab scenario` was asked to do.
pub enum ScenarioCommand {
    List { json: bool },
    Run(ScenarioPlan),
    Check(CheckPlan),
}

const MS: u64 = 1_000_000;
#[cfg(test)]
const SEC: u64 = 1_000_000_000;

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Apply the kernel knobs given on the command line to a machine configuration (whose
/// defaults already suit its executor). The flags' values were validated by the knobs.
fn apply_kernel(k: &KernelArgs, m: &mut MachineConfig) -> Result<(), UsageError> {
    for (name, value) in &k.given {
        m.set_knob(name, value)
            .map_err(|e| UsageError(format!("--{name}: {e}")))?;
    }
    Ok(())
}

/// A frame pool of `bytes` can be built (large enough for its watermarks) and the host can
/// hold it (it is pre-faulted real memory, on either executor). The pool's own checks then
/// only fail for host reasons (a refused mapping: a runtime error, exit 1).
pub(crate) fn check_memory(bytes: u64, tasks: u64) -> Result<(), UsageError> {
    let frames = bytes / mm::pgtable::PAGE_SIZE;
    let w = mm::page_alloc::compute_watermarks(frames);
    if w.high * 2 > frames {
        let min_bytes = (1..).map(|mib: u64| mib << 20).find(|b| {
            let f = b / mm::pgtable::PAGE_SIZE;
            mm::page_alloc::compute_watermarks(f).high * 2 <= f
        });
        return Err(UsageError(format!(
            "--memory {}: too small for the page allocator's watermarks (high {} pages); use at least {}",
            reaper::units::format_size(bytes),
            w.high,
            reaper::units::format_size(min_bytes.unwrap_or(4 << 20))
        )));
    }
    host::check_pool_fits(bytes, tasks)
}

/// The shortest `--duration`: the load needs a few scheduler ticks to start its processes.
const DURATION_MIN_NS: u64 = 100 * MS;

/// Plan `oomlab run`.
///
/// Time: `--duration` bounds the run from the moment the load starts (the machine's boot
/// before it is reported apart) to the verdict. The load stops a reserve before the end (5%
/// of the bound, between 50 ms and 3 s); the wind-down has the reserve; tasks still alive at
/// the bound are reported with the verdict.
pub fn run(a: &RunArgs) -> Result<RunPlan, UsageError> {
    let mut machine = match a.executor {
        Executor::Threads => MachineConfig::threads(a.memory.0),
        Executor::Sim => MachineConfig::sim(a.memory.0),
    };
    apply_kernel(&a.kernel, &mut machine)?;
    let duration_ns = ns(a.duration);
    if duration_ns < DURATION_MIN_NS {
        return Err(UsageError(format!(
            "invalid value '{}' for '--duration <DURATION>': must be at least 100ms \
             (the load needs a few scheduler ticks to start)",
            reaper::units::format_duration(a.duration)
        )));
    }
    let load = LoadConfig::new(a.threads, a.seed);
    check_memory(a.memory.0, load.tasks())?;
    if a.executor == Executor::Threads {
        // The load's tasks, the supervisor and two kthreads, each an OS thread.
        host::check_threads_fit(u64::from(a.threads), load.tasks() + 3)?;
    }
    let log = a.log.as_deref().map(log_target).transpose()?;
    let json = a.json.as_deref().map(JsonTarget::create).transpose()?;
    Ok(RunPlan {
        executor: a.executor,
        log,
        metrics: (!a.no_metrics).then_some(a.metrics_addr),
        metrics_linger: a.metrics_linger,
        json,
        quiet: a.quiet,
        run: RunConfig {
            machine,
            load,
            seed: a.seed,
            duration_ns,
            host_cpus: match a.executor {
                Executor::Threads => {
                    Some(std::thread::available_parallelism().map_or(1, |n| n.get()))
                }
                Executor::Sim => None,
            },
        },
    })
}

/// Read and check `--file PATH`: any problem is one line (with the file's line and column
/// when it is in the file), and nothing runs.
fn scenario_from_file(path: &Path) -> Result<Scenario, UsageError> {
    let label = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| UsageError(format!("--file {label}: {e}")))?;
    let stem = path.file_stem().map_or_else(
        || "scenario".to_string(),
        |s| s.to_string_lossy().into_owned(),
    );
    let file =
        scenario_file::parse_bytes(&label, &stem, &bytes).map_err(|e| UsageError(e.to_string()))?;
    Ok(Scenario::from_file(file, format!("--file {label}")))
}

/// Plan `oomlab scenario`.
///
/// The kernel configuration is built in layers: the sim defaults, the file's `[kernel]`, the
/// knob flags given on the command line; with `--check`, each `[[expect.when]]` case's own
/// `kernel` table goes last (its expectations are about that configuration).
pub fn scenario(a: &ScenarioArgs) -> Result<ScenarioCommand, UsageError> {
    if a.list {
        return Ok(ScenarioCommand::List { json: a.json });
    }
    let sc = match &a.file {
        Some(path) => scenario_from_file(path)?,
        None => {
            let name = a.name.as_deref().unwrap_or_default();
            let Some(sc) = scenarios::find(name) else {
                let known: Vec<&str> = scenarios::all().iter().map(|s| s.name.as_str()).collect();
                return Err(UsageError(format!(
                    "unknown scenario '{name}' (known: {}; see 'oomlab scenario --list')",
                    known.join(", ")
                )));
            };
            sc.clone()
        }
    };
    let memory = a.memory.map_or(sc.memory_bytes, |b| b.0);
    if let (Some(f), Some(m)) = (sc.file(), a.memory) {
        f.check_memory(memory)
            .map_err(|e| UsageError(format!("{e} (with --memory {m})")))?;
    }
    let mut cfg = sc.config_with_memory(memory);
    apply_kernel(&a.kernel, &mut cfg.machine)?;
    check_memory(memory, 64)?;
    cfg.seed = a.seed.unwrap_or(0);
    if let Some(t) = a.time_limit {
        cfg.max_time_ns = ns(t);
    }
    if a.check {
        let f = sc
            .file()
            .expect("every scenario of the command line is a file");
        let label = f.label().to_string();
        let Some(expect) = &f.expect else {
            return Err(UsageError(format!(
                "{label} has no [expect] table: nothing to check (docs/scenario-format.md)"
            )));
        };
        // The cases' knobs were checked when the file was read.
        let runs = expect
            .runs(&cfg, a.seed)
            .map_err(|e| UsageError(format!("{label}: {e}")))?;
        return Ok(ScenarioCommand::Check(CheckPlan {
            label,
            scenario: sc,
            runs,
        }));
    }
    Ok(ScenarioCommand::Run(ScenarioPlan {
        scenario: sc,
        cfg,
        json: a.json,
        file: a.file.as_ref().map(|p| p.display().to_string()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;
    use mm::locking::rwsem::RwSemModel;
    use mm::mm_types::LockWait;
    use reaper::oom_kill::VictimGoneRule;

    fn run_plan(args: &[&str]) -> RunPlan {
        let cli = Cli::try_parse_from(["oomlab", "run"].iter().chain(args)).unwrap();
        let Command::Run(a) = cli.command else {
            panic!("not run")
        };
        run(&a).unwrap()
    }

    #[test]
    fn run_defaults_fit_in_their_duration() {
        let p = run_plan(&[]);
        assert_eq!(p.executor, Executor::Threads);
        assert_eq!(p.run.duration_ns, 60 * SEC);
        assert_eq!(p.run.load_ns(), 57 * SEC);
        let m = &p.run.machine;
        assert_eq!(m.livelock_window_ns(), 5 * SEC);
        assert_eq!(m.knobs.write_lock, LockWait::Killable);
        assert_eq!(m.knobs.read_lock, LockWait::Uninterruptible);
        let r = m.reaper().expect("reaper on by default");
        assert_eq!((r.retries, r.interval_ms, r.delay_ms), (10, 100, 0));
        assert_eq!(p.run.load.threads, 256);
    }

    #[test]
    fn run_knobs_reach_the_machine() {
        let p = run_plan(&[
            "--executor",
            "sim",
            "--write-lock",
            "uninterruptible",
            "--read-lock",
            "killable",
            "--rwsem-model",
            "rfc-v1",
            "--reaper-delay",
            "2s",
            "--reaper-retries",
            "3",
            "--reaper-interval",
            "250ms",
            "--panic-on-oom",
            "2",
            "--oom-kill-allocating-task",
            "1",
            "--oom-dump-tasks",
            "0",
            "--victim-gone-rule",
            "process-released",
            "--livelock-window",
            "10s",
            "--duration",
            "1s",
        ]);
        let m = &p.run.machine;
        assert_eq!(p.executor, Executor::Sim);
        assert_eq!(m.knobs.write_lock, LockWait::Uninterruptible);
        assert_eq!(m.knobs.read_lock, LockWait::Killable);
        assert_eq!(m.knobs.rwsem_model, RwSemModel::RfcV1);
        let r = m.reaper().unwrap();
        assert_eq!((r.retries, r.interval_ms, r.delay_ms), (3, 250, 2000));
        assert_eq!(m.oom.panic_on_oom, 2);
        assert!(m.oom.oom_kill_allocating_task);
        assert!(!m.oom.oom_dump_tasks);
        assert_eq!(m.oom.victim_gone_rule, VictimGoneRule::ProcessReleased);
        assert_eq!(m.livelock_window_ns(), 10 * SEC);
        assert_eq!(p.run.load_ns(), 950 * MS);
        assert!(run_plan(&["--reaper", "off"])
            .run
            .machine
            .reaper()
            .is_none());
        assert_eq!(
            run_plan(&["--executor", "sim"])
                .run
                .machine
                .livelock_window_ns(),
            30 * SEC
        );
    }

    #[test]
    fn json_paths_are_checked_before_the_run_and_written_whole() {
        let dir = std::env::temp_dir().join(format!("oomlab-plan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("out.json");
        let p = run_plan(&["--json", out.to_str().unwrap()]);
        let target = p.json.expect("a target");
        assert!(!out.exists(), "nothing at the path before the end");
        target.commit("{}\n").unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "{}\n");
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("out.json")]);
        // Abandoned: the temporary file goes.
        drop(run_plan(&["--json", dir.join("b.json").to_str().unwrap()]));
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        for (path, why) in [
            (dir.clone(), "is a directory"),
            (dir.join("no/such/dir/x.json"), "cannot write a file there"),
        ] {
            let cli = Cli::try_parse_from(["oomlab", "run", "--json", path.to_str().unwrap()]);
            let Command::Run(a) = cli.unwrap().command else {
                panic!("not run")
            };
            let e = run(&a).unwrap_err().to_string();
            assert!(e.starts_with("--json ") && e.contains(why), "{e}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn durations_below_100ms_are_refused() {
        let cli = Cli::try_parse_from(["oomlab", "run", "--duration", "99ms"]).unwrap();
        let Command::Run(a) = cli.command else {
            panic!("not run")
        };
        let e = run(&a).unwrap_err().to_string();
        assert!(e.contains("'99ms'") && e.contains("at least 100ms"), "{e}");
        assert_eq!(run_plan(&["--duration", "100ms"]).run.load_ns(), 50 * MS);
    }
}
