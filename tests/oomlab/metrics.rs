//! `oomlab run`'s metrics, checked with the real thing: a short run on a loopback port the OS
//! chooses; its `/metrics` through `promtool check metrics`; a real Prometheus (Debian's
//! `prometheus` package, which `.ci/run` installs) scraping it every second from a temporary
//! directory; every query of `dashboards/oomlab.json` evaluated through Prometheus' HTTP API;
//! counters monotonic; the final values equal to the printed summary and the `--json` file.
//!
//! Skipped, with a message, only when `prometheus`/`promtool` are not installed locally; under
//! CI (`CI` set) their absence fails the test. Every wait is a hang detector for one event (a
//! process starting, a scrape arriving), never a time budget for an amount of work; every
//! process it starts is stopped at the end, even when an assertion fails.

use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long one awaited event (a process up, a scrape in) may take before it is a hang.
const STALL: Duration = Duration::from_secs(120);

fn find_in_path(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(bin))
            .find(|p| p.is_file())
    })
}

/// Children killed on drop (a failed assertion must not leave a Prometheus behind).
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("oomlab-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `GET path` on `addr` (HTTP/1.0, loopback); the status and the body.
fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_string()))
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Poll `f` until it returns `Some`; a hang if it does not within [`STALL`].
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < STALL, "no {what} within {STALL:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The samples of a text exposition: series (name and labels) → value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// The series of cumulative types in an exposition: counters and histogram parts.
fn cumulative_series(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            if let (Some(name), Some(kind)) = (it.next(), it.next()) {
                if kind == "counter" {
                    names.push(name.to_string());
                } else if kind == "histogram" {
                    for s in ["_bucket", "_sum", "_count"] {
                        names.push(format!("{name}{s}"));
                    }
                }
            }
        }
    }
    names
}

fn series_name(series: &str) -> &str {
    series.split('{').next().unwrap_or(series)
}

struct Prometheus {
    addr: SocketAddr,
}

impl Prometheus {
    /// `/api/v1/query` of `q`: the result vector (panics on a query error).
    fn query(&self, q: &str) -> Vec<Value> {
        let (status, body) = http_get(self.addr, &format!("/api/v1/query?query={}", urlencode(q)))
            .unwrap_or_else(|e| panic!("query {q}: {e}"));
        let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{q}: {e}: {body}"));
        assert_eq!(
            (status, v["status"].as_str()),
            (200, Some("success")),
            "{q}: {body}"
        );
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// The one value of `q` (a single series).
    fn value(&self, q: &str) -> f64 {
        let r = self.query(q);
        assert_eq!(r.len(), 1, "{q}: {r:?}");
        r[0]["value"][1].as_str().unwrap().parse().unwrap()
    }
}

/// A row of the summary: the numbers in the line starting with `row`.
fn summary_numbers(summary: &str, row: &str) -> Vec<u64> {
    let line = summary
        .lines()
        .find(|l| l.trim_start().starts_with(row))
        .unwrap_or_else(|| panic!("no {row} row in:\n{summary}"));
    line.trim_start()[row.len()..]
        .split(|c: char| !c.is_ascii_digit())
        .filter(|w| !w.is_empty())
        .map(|w| w.parse().unwrap())
        .collect()
}

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

#[test]
fn a_real_prometheus_scrapes_the_run_and_every_dashboard_query_answers() {
    let (Some(prometheus), Some(promtool)) = (find_in_path("prometheus"), find_in_path("promtool"))
    else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but prometheus/promtool are not installed (.ci/run installs Debian's prometheus package)"
        );
        eprintln!(
            "SKIPPED a_real_prometheus_scrapes_the_run_and_every_dashboard_query_answers: \
             prometheus and promtool are not installed (apt-get install prometheus)"
        );
        return;
    };
    let tmp = TempDir::new("metrics-test");
    let json_path = tmp.0.join("run.json");
    let mut procs = Procs(Vec::new());

    // 1. The run, on a port the OS chooses; its final values served until we are done.
    let mut run = Command::new(env!("CARGO_BIN_EXE_oomlab"))
        .args([
            "run",
            "--duration",
            "15s",
            "--threads",
            "32",
            "--memory",
            "32MiB",
            "--metrics-addr",
            "127.0.0.1:0",
            "--metrics-linger",
            "10m",
            "--json",
        ])
        .arg(&json_path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning oomlab");
    let stdout = run.stdout.take().unwrap();
    let stderr = run.stderr.take().unwrap();
    procs.0.push(run);
    let (addr_tx, addr_rx) = mpsc::channel();
    let stderr_text = Arc::new(Mutex::new(String::new()));
    let st = stderr_text.clone();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = l.strip_prefix("oomlab: serving metrics at http://") {
                let addr: SocketAddr = rest.trim_end_matches("/metrics").parse().unwrap();
                let _ = addr_tx.send(addr);
            }
            st.lock().unwrap().push_str(&format!("{l}\n"));
        }
    });
    let summary = Arc::new(Mutex::new(String::new()));
    let (done_tx, done_rx) = mpsc::channel();
    let sm = summary.clone();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            let last = l.trim_start().starts_with("conservation");
            sm.lock().unwrap().push_str(&format!("{l}\n"));
            if last {
                let _ = done_tx.send(());
            }
        }
    });
    let metrics_addr = addr_rx.recv_timeout(STALL).unwrap_or_else(|_| {
        panic!(
            "no metrics address on stderr: {}",
            stderr_text.lock().unwrap()
        )
    });
    assert!(metrics_addr.ip().is_loopback());

    // 2. A real Prometheus scraping it every second.
    let web = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = tmp.0.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: oomlab\n    static_configs:\n      - targets: [\"{metrics_addr}\"]\n"
        ),
    )
    .unwrap();
    let prom_log = std::fs::File::create(tmp.0.join("prometheus.log")).unwrap();
    procs.0.push(
        Command::new(&prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                tmp.0.join("data").display()
            ))
            .arg(format!("--web.listen-address={web}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(prom_log)
            .spawn()
            .expect("spawning prometheus"),
    );

    // 3. /metrics during the run: promtool finds nothing to say; counters never go back.
    let promtool_check = |body: &str| {
        let mut c = Command::new(&promtool)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
        let out = c.wait_with_output().unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && said.trim().is_empty(),
            "promtool check metrics: {said}\n{body}"
        );
    };
    let mut scrapes = Vec::new();
    let mut checked = false;
    while done_rx.try_recv().is_err() {
        let (status, body) = http_get(metrics_addr, "/metrics").expect("scraping /metrics");
        assert_eq!(status, 200);
        if !checked {
            promtool_check(&body);
            checked = true;
        }
        scrapes.push(body);
        std::thread::sleep(Duration::from_millis(250));
        assert!(scrapes.len() < 100_000, "the run does not end");
    }
    assert!(checked, "the run ended before /metrics could be checked");
    let summary = summary.lock().unwrap().clone();
    let (_, final_body) = http_get(metrics_addr, "/metrics").unwrap();
    // Again with every histogram filled.
    promtool_check(&final_body);
    scrapes.push(final_body.clone());
    let cumulative = cumulative_series(&final_body);
    assert!(cumulative.len() > 20, "{final_body}");
    for pair in scrapes.windows(2) {
        let (a, b) = (samples(&pair[0]), samples(&pair[1]));
        for (series, v) in &a {
            if cumulative.iter().any(|n| n == series_name(series)) {
                let w = b
                    .get(series)
                    .unwrap_or_else(|| panic!("{series} disappeared"));
                assert!(w >= v, "{series} went back from {v} to {w}");
            }
        }
    }

    // 4. Prometheus has scraped the final values.
    let prom = Prometheus { addr: web };
    let prom_log = tmp.0.join("prometheus.log");
    wait_for("Prometheus ready", || {
        if let Some(st) = procs.0[1].try_wait().unwrap() {
            panic!(
                "prometheus exited ({st}):\n{}",
                std::fs::read_to_string(&prom_log).unwrap_or_default()
            );
        }
        http_get(web, "/-/ready").ok().filter(|(s, _)| *s == 200)
    });
    wait_for("a scrape of the finished run", || {
        let r = prom.query("oomlab_run_finished == 1");
        (!r.is_empty()).then_some(())
    });
    // At least two scrapes in the window the queries use.
    wait_for("two scrapes", || {
        let r = prom.query("count_over_time(oomlab_page_faults_total[10s])");
        r.first()
            .and_then(|s| s["value"][1].as_str()?.parse::<f64>().ok())
            .filter(|n| *n >= 2.0)
    });
    for name in &cumulative {
        let r = prom.query(&format!("resets({name}[10m]) > 0"));
        assert!(r.is_empty(), "{name} went back in Prometheus' view: {r:?}");
    }

    // 5. Every query of the dashboard parses and answers with at least one series.
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_file("dashboards/oomlab.json")).unwrap(),
    )
    .unwrap();
    let mut n = 0;
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().unwrap();
            let q = expr
                .replace("$__rate_interval", "10s")
                .replace("$__range", "10m")
                .replace("$instance", ".*");
            let r = prom.query(&q);
            assert!(!r.is_empty(), "panel {:?}: no series for {q}", p["title"]);
            n += 1;
        }
    }
    assert!(n >= 30, "only {n} queries");
    for v in dash["templating"]["list"].as_array().unwrap() {
        if v["type"] == "query" {
            let def = v["definition"].as_str().unwrap();
            let (metric, label) = def
                .strip_prefix("label_values(")
                .and_then(|r| r.strip_suffix(')'))
                .and_then(|r| r.split_once(", "))
                .unwrap_or_else(|| panic!("{def}"));
            let (status, body) = http_get(
                web,
                &format!("/api/v1/label/{label}/values?match[]={}", urlencode(metric)),
            )
            .unwrap();
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(status, 200, "{body}");
            assert!(!v["data"].as_array().unwrap().is_empty(), "{def}: {body}");
        }
    }

    // 6. The final values are the summary's and the --json file's.
    let kills = summary_numbers(&summary, "OOM kills");
    let reaper = summary_numbers(&summary, "oom_reaper");
    let livelocks = summary_numbers(&summary, "livelocks");
    let f = |q: &str| prom.value(q) as u64;
    assert_eq!(f("oomlab_oom_kills_total"), kills[0], "{summary}");
    assert_eq!(f("oomlab_oom_sharer_kills_total"), kills[1], "{summary}");
    assert_eq!(f("oomlab_oom_self_marked_total"), kills[2], "{summary}");
    assert_eq!(f("oomlab_oom_aborted_total"), kills[3], "{summary}");
    assert_eq!(f("oomlab_reaper_attempts_total"), reaper[0], "{summary}");
    assert_eq!(
        f("oomlab_reaper_results_total{result=\"reaped\"}"),
        reaper[1]
    );
    assert_eq!(
        f("oomlab_reaper_results_total{result=\"gave_up\"}"),
        reaper[2]
    );
    assert_eq!(
        f("oomlab_reaper_results_total{result=\"already_done\"}"),
        reaper[3]
    );
    assert_eq!(f("oomlab_reaped_bytes_total"), reaper[4] * 4096);
    assert_eq!(f("oomlab_livelocks_total"), livelocks[0], "{summary}");
    assert_eq!(f("oomlab_sysrq_kills_total"), livelocks[1], "{summary}");
    assert!(kills[0] > 0, "the run killed nothing:\n{summary}");

    let json: Value = serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    assert_eq!(json["oom_kills"], kills[0]);
    assert_eq!(json["faults"].as_u64(), Some(f("oomlab_page_faults_total")));
    assert_eq!(json["mmaps"].as_u64(), Some(f("oomlab_mmap_calls_total")));
    assert_eq!(
        json["munmaps"].as_u64(),
        Some(f("oomlab_munmap_calls_total"))
    );
    for op in ["read", "write"] {
        for wait in ["killable", "uninterruptible"] {
            let sel = format!("{{op=\"{op}\",wait=\"{wait}\"}}");
            assert_eq!(
                json["rwsem_wait_seconds"][op][wait]["count"].as_u64(),
                Some(f(&format!("oomlab_rwsem_wait_seconds_count{sel}"))),
                "{op} {wait}"
            );
            let sum = json["rwsem_wait_seconds"][op][wait]["sum"]
                .as_f64()
                .unwrap();
            let prom_sum = prom.value(&format!("oomlab_rwsem_wait_seconds_sum{sel}"));
            assert!(
                (sum - prom_sum).abs() <= 1e-6 * sum.max(1.0),
                "{op} {wait}: {sum} vs {prom_sum}"
            );
        }
    }
    // The event stream: nothing dropped, so every counted event arrived.
    assert_eq!(f("oomlab_kernel_events_dropped_total"), 0);
    assert_eq!(
        f("oomlab_kernel_events_total{event=\"oom_kill\"}"),
        kills[0]
    );
    assert_eq!(
        f("oomlab_kernel_events_total{event=\"reap\"}"),
        reaper[1] + reaper[2] + reaper[3]
    );
    assert_eq!(
        f("oomlab_kernel_events_total{event=\"livelock\"}"),
        livelocks[0]
    );
    let reclaimed = json["kill_to_reclaim_ms"]["count"].as_u64().unwrap();
    assert_eq!(
        f("oomlab_kernel_events_total{event=\"reclaimed\"}"),
        reclaimed
    );
    assert_eq!(f("oomlab_kill_to_reclaim_seconds_count"), reclaimed);
    assert_eq!(f("oomlab_oom_victim_rss_bytes_count"), kills[0]);

    // 7. A signal ends the linger; the run's status stands.
    let run = &mut procs.0[0];
    // SAFETY: kill(2) of our own child, which has not been waited for yet.
    unsafe {
        libc::kill(run.id() as i32, libc::SIGINT);
    }
    let status = wait_for("oomlab to exit after SIGINT", || run.try_wait().unwrap());
    assert_eq!(status.code(), Some(0), "{}", stderr_text.lock().unwrap());
}
