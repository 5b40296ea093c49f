//! Helpers shared by the `mm` bench binaries: command-line mode, medians, and the JSON results
//! file `<target>/oomlab-bench/<bench>.json` that a script checks for regressions.
#![allow(dead_code)]

use serde_json::{Map, Value};
use std::path::PathBuf;

/// How `cargo` invoked the bench binary (the flags criterion also reads).
pub struct BenchArgs {
    /// `cargo bench` (`--bench` without `--test`/`--list`): measure for real. Otherwise this is
    /// `cargo test --benches` (or a listing): run a tiny smoke version and write no JSON.
    pub bench_mode: bool,
    /// The positional FILTER, if any.
    pub filter: Option<String>,
}

impl BenchArgs {
    pub fn parse() -> BenchArgs {
        // criterion's options that take a value (their value is not the FILTER).
        const WITH_VALUE: &[&str] = &[
            "-c",
            "--color",
            "--colour",
            "-s",
            "--save-baseline",
            "-b",
            "--baseline",
            "--baseline-lenient",
            "--load-baseline",
            "--sample-size",
            "--warm-up-time",
            "--measurement-time",
            "--nresamples",
            "--noise-threshold",
            "--confidence-level",
            "--significance-level",
            "--profile-time",
            "--format",
            "--plotting-backend",
            "--output-format",
        ];
        let args: Vec<String> = std::env::args().skip(1).collect();
        let has = |f: &str| args.iter().any(|a| a == f);
        let mut filter = None;
        let mut skip_next = false;
        for a in &args {
            if skip_next {
                skip_next = false;
                continue;
            }
            if a.starts_with('-') {
                skip_next = WITH_VALUE.contains(&a.as_str());
                continue;
            }
            filter = Some(a.clone());
            break;
        }
        BenchArgs {
            bench_mode: has("--bench")
                && !has("--test")
                && !has("--list")
                && !has("--profile-time"),
            filter,
        }
    }

    /// Whether the section `name` passes the FILTER (a substring match, as criterion does).
    pub fn selects(&self, name: &str) -> bool {
        self.filter.as_deref().is_none_or(|f| name.contains(f))
    }
}

/// The workspace's target directory: `$CARGO_TARGET_DIR` (a relative one is taken from the
/// workspace root), else `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = manifest.parent().unwrap_or(manifest).to_path_buf();
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                d
            } else {
                root.join(d)
            }
        }
        None => root.join("target"),
    }
}

/// Median of `xs` (mean of the middle two for an even count); NaN if empty.
pub fn median(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// A float for JSON: finite numbers as they are, anything else as null.
pub fn num(x: f64) -> Value {
    serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
}

/// Merge `sections` into `<target>/oomlab-bench/<bench>.json` (sections not run this time,
/// e.g. under a FILTER, keep their previous values). Each section written now is stamped with
/// the `command` that produced it and the time.
pub fn write_json(bench: &str, command: &str, sections: Map<String, Value>) {
    let dir = target_dir().join("oomlab-bench");
    let path = dir.join(format!("{bench}.json"));
    let mut root = std::fs::read_to_string(&path)
        .ok()
        .and_then(|s| serde_json::from_str::<Value>(&s).ok())
        .and_then(|v| match v {
            Value::Object(m) => Some(m),
            _ => None,
        })
        .unwrap_or_default();
    root.insert("bench".into(), Value::from(bench));
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    root.insert("unix_time_s".into(), Value::from(now_s));
    root.insert(
        "host_cpus".into(),
        Value::from(std::thread::available_parallelism().map_or(0, |n| n.get())),
    );
    for (k, mut v) in sections {
        if let Value::Object(m) = &mut v {
            m.insert("command".into(), Value::from(command));
            m.insert("unix_time_s".into(), Value::from(now_s));
        }
        root.insert(k, v);
    }
    std::fs::create_dir_all(&dir).expect("creating the oomlab-bench directory");
    let text = serde_json::to_string_pretty(&Value::Object(root)).expect("serialising results");
    std::fs::write(&path, text + "\n").expect("writing the bench JSON");
    println!("results written to {}", path.display());
}

/// `OOMLAB_BENCH_SECS` (a positive number of seconds), else `default`.
pub fn env_secs(default: f64) -> f64 {
    match std::env::var("OOMLAB_BENCH_SECS") {
        Ok(s) => match s.trim().parse::<f64>() {
            Ok(v) if v > 0.0 && v.is_finite() => v,
            _ => panic!("OOMLAB_BENCH_SECS={s:?} is not a positive number of seconds"),
        },
        Err(_) => default,
    }
}

/// A positive integer from the environment variable `var`, else `default`.
pub fn env_usize(var: &str, default: usize) -> usize {
    match std::env::var(var) {
        Ok(s) => match s.trim().parse::<usize>() {
            Ok(v) if v > 0 => v,
            _ => panic!("{var}={s:?} is not a positive integer"),
        },
        Err(_) => default,
    }
}

/// Start gate for the contended benches: every worker blocks on a condvar (a futex) until the
/// driver opens it — no `yield_now` spinning and no `Barrier`, both of which make threads look
/// starved at the start of a window.
pub struct Gate {
    state: std::sync::Mutex<(usize, bool)>,
    arrived: std::sync::Condvar,
    opened: std::sync::Condvar,
}

impl Default for Gate {
    fn default() -> Self {
        Self::new()
    }
}

impl Gate {
    pub fn new() -> Gate {
        Gate {
            state: std::sync::Mutex::new((0, false)),
            arrived: std::sync::Condvar::new(),
            opened: std::sync::Condvar::new(),
        }
    }
    /// Report arrival, then sleep until the gate opens.
    pub fn arrive_and_wait(&self) {
        let mut g = self.state.lock().unwrap();
        g.0 += 1;
        self.arrived.notify_one();
        while !g.1 {
            g = self.opened.wait(g).unwrap();
        }
    }
    /// Wait until `n` workers have arrived; false on timeout.
    pub fn wait_arrived(&self, n: usize, timeout: std::time::Duration) -> bool {
        let g = self.state.lock().unwrap();
        let (g, r) = self
            .arrived
            .wait_timeout_while(g, timeout, |s| s.0 < n)
            .unwrap();
        drop(g);
        !r.timed_out()
    }
    /// Let every waiting worker go.
    pub fn open(&self) {
        self.state.lock().unwrap().1 = true;
        self.opened.notify_all();
    }
}
