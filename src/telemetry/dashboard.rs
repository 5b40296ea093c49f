//! The Grafana dashboard (`dashboards/oomlab.json`) and the Prometheus scrape config
//! (`dashboards/prometheus.yml`), generated from the metric catalog so that a panel cannot
//! name a metric that is not exported (tikv's `metrics/grafana`, generated and checked).
//! The files are committed; a test compares them with what this module generates
//! (`UPDATE_DASHBOARDS=1 cargo test -p oomlab dashboard` rewrites them) and checks the
//! committed JSON against the catalog both ways, and every counter for `rate()`/`increase()`.
//!
//! Queries filter on the `instance` variable; `$__rate_interval` and `$__range` are Grafana's.

use super::catalog::{self as c, Metric};
use serde_json::{json, Value};

/// The dashboard's fixed uid (links and provisioning keep working across imports).
pub const UID: &str = "oomlab-run";
/// Grafana 10.4 / 11.
pub const SCHEMA_VERSION: u64 = 39;
/// `--metrics-addr`'s default, which the scrape config targets.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9464";

/// `metric{instance=~"$instance"}`, or a histogram's `metric_<suffix>{...}`.
fn sel(m: &Metric) -> String {
    format!("{}{{instance=~\"$instance\"}}", m.name)
}
fn sel_suffix(m: &Metric, suffix: &str) -> String {
    format!("{}_{suffix}{{instance=~\"$instance\"}}", m.name)
}
/// `sum by (instance) (rate(counter[$__rate_interval]))`.
fn rate(m: &Metric) -> String {
    format!("sum by (instance) (rate({}[$__rate_interval]))", sel(m))
}
fn rate_by(m: &Metric, by: &str) -> String {
    format!(
        "sum by (instance, {by}) (rate({}[$__rate_interval]))",
        sel(m)
    )
}
/// The total over the dashboard's time range.
fn increase_range(m: &Metric) -> String {
    format!("sum(increase({}[$__range]))", sel(m))
}
fn quantile(q: f64, m: &Metric, by: &str) -> String {
    format!(
        "histogram_quantile({q}, sum by (le, instance{by}) (rate({}[$__rate_interval])))",
        sel_suffix(m, "bucket")
    )
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Viz {
    Timeseries,
    /// Timeseries, stacked.
    Stacked,
    Stat,
}

struct Panel {
    title: &'static str,
    description: &'static str,
    viz: Viz,
    /// Grafana unit id.
    unit: &'static str,
    /// (expr, legend).
    targets: Vec<(String, &'static str)>,
}

fn panel(
    title: &'static str,
    viz: Viz,
    unit: &'static str,
    description: &'static str,
    targets: Vec<(String, &'static str)>,
) -> Panel {
    Panel {
        title,
        description,
        viz,
        unit,
        targets,
    }
}

struct Row {
    title: &'static str,
    panels: Vec<Panel>,
}

use Viz::{Stacked, Stat, Timeseries};

/// Every row and panel, top to bottom (the README lists them).
fn rows() -> Vec<Row> {
    vec![
        Row {
            title: "Run",
            panels: vec![
                panel(
                    "Elapsed of the bound",
                    Stat,
                    "s",
                    "Executor time since the load started, and the run's bound (--duration).",
                    vec![
                        (format!("max by (instance) ({})", sel(&c::RUN_ELAPSED)), "elapsed"),
                        (format!("max by (instance) ({})", sel(&c::RUN_BOUND)), "bound"),
                    ],
                ),
                panel(
                    "Run finished",
                    Stat,
                    "none",
                    "1 once the run ended and the values are final.",
                    vec![(format!("max by (instance) ({})", sel(&c::RUN_FINISHED)), "finished")],
                ),
                panel(
                    "Configuration",
                    Stat,
                    "none",
                    "The executor and kernel configuration of the run (labels of oomlab_build_info).",
                    vec![(
                        sel(&c::BUILD_INFO),
                        "{{executor}} write_lock={{write_lock}} read_lock={{read_lock}} rwsem={{rwsem_model}} reaper={{reaper}} v{{version}}",
                    )],
                ),
                panel(
                    "Emulator resident memory",
                    Timeseries,
                    "bytes",
                    "RSS of the oomlab process (the emulated frame pool is real memory).",
                    vec![(sel(&c::PROCESS_RESIDENT), "{{instance}}")],
                ),
                panel(
                    "Kernel event stream",
                    Timeseries,
                    "ops",
                    "Rare events received by the publisher per second, by kind, and events lost to a full channel.",
                    vec![
                        (rate_by(&c::KERNEL_EVENTS, "event"), "{{event}}"),
                        (rate(&c::KERNEL_EVENTS_DROPPED), "dropped"),
                    ],
                ),
            ],
        },
        Row {
            title: "Throughput",
            panels: vec![
                panel(
                    "Page faults",
                    Timeseries,
                    "ops",
                    "Page faults per second (every task).",
                    vec![(rate(&c::PAGE_FAULTS), "faults/s")],
                ),
                panel(
                    "mmap and munmap calls",
                    Timeseries,
                    "ops",
                    "mm syscalls per second, failed ones included.",
                    vec![
                        (rate(&c::MMAP_CALLS), "mmap/s"),
                        (rate(&c::MUNMAP_CALLS), "munmap/s"),
                    ],
                ),
                panel(
                    "Tasks by state",
                    Stacked,
                    "short",
                    "Tasks of the emulated machine by scheduler state.",
                    vec![(
                        format!("sum by (instance, state) ({})", sel(&c::TASKS)),
                        "{{state}}",
                    )],
                ),
            ],
        },
        Row {
            title: "Memory",
            panels: vec![
                panel(
                    "Memory by frame state",
                    Stacked,
                    "bytes",
                    "Emulated memory: free lists, per-CPU lists, allocated, mapped.",
                    vec![(
                        format!("sum by (instance, state) ({})", sel(&c::MEMORY)),
                        "{{state}}",
                    )],
                ),
                panel(
                    "Free memory",
                    Timeseries,
                    "bytes",
                    "Free emulated memory (free + per-CPU lists) against the total.",
                    vec![
                        (sel(&c::MEMORY_FREE), "free"),
                        (sel(&c::MEMORY_TOTAL), "total"),
                    ],
                ),
                panel(
                    "Allocator slow path",
                    Timeseries,
                    "ops",
                    "Slow-path entries per second, and their results.",
                    vec![
                        (rate(&c::ALLOC_SLOWPATH), "entries"),
                        (rate_by(&c::ALLOC_SLOWPATH_RESULTS, "result"), "{{result}}"),
                    ],
                ),
                panel(
                    "Tasks waiting for memory",
                    Timeseries,
                    "short",
                    "Tasks inside the allocator's slow path.",
                    vec![(sel(&c::TASKS_WAITING_FOR_MEMORY), "waiting")],
                ),
            ],
        },
        Row {
            title: "OOM killer and oom_reaper",
            panels: vec![
                panel(
                    "OOM kills",
                    Timeseries,
                    "ops",
                    "Kills per second: by the OOM killer (sysrq kills included), by the watchdog's sysrq-f recovery, sharers of a victim's mm, and dying tasks marked without a kill.",
                    vec![
                        (rate(&c::OOM_KILLS), "kills"),
                        (rate(&c::SYSRQ_KILLS), "sysrq kills"),
                        (rate(&c::OOM_SHARER_KILLS), "sharer kills"),
                        (rate(&c::OOM_SELF_MARKED), "self-marked"),
                    ],
                ),
                panel(
                    "OOM kills in range",
                    Stat,
                    "none",
                    "OOM kills over the dashboard's time range.",
                    vec![(increase_range(&c::OOM_KILLS), "kills")],
                ),
                panel(
                    "OOM killer invocations",
                    Timeseries,
                    "ops",
                    "out_of_memory() calls per second, and selections aborted for a pending victim.",
                    vec![
                        (rate(&c::OOM_INVOCATIONS), "invocations"),
                        (rate(&c::OOM_ABORTED), "aborted"),
                    ],
                ),
                panel(
                    "Victims pending",
                    Timeseries,
                    "short",
                    "OOM victims whose memory has not come back yet.",
                    vec![(sel(&c::OOM_VICTIMS_PENDING), "pending")],
                ),
                panel(
                    "Kill → reclaim",
                    Timeseries,
                    "s",
                    "From an OOM kill to the victim's memory coming back (reap or exit): quantiles.",
                    vec![
                        (quantile(0.5, &c::KILL_TO_RECLAIM, ""), "p50"),
                        (quantile(0.9, &c::KILL_TO_RECLAIM, ""), "p90"),
                        (quantile(0.99, &c::KILL_TO_RECLAIM, ""), "p99"),
                    ],
                ),
                panel(
                    "Victim RSS at kill",
                    Timeseries,
                    "bytes",
                    "Resident memory of the killed processes: quantiles.",
                    vec![
                        (quantile(0.5, &c::OOM_VICTIM_RSS, ""), "p50"),
                        (quantile(0.99, &c::OOM_VICTIM_RSS, ""), "p99"),
                    ],
                ),
                panel(
                    "oom_reaper results",
                    Timeseries,
                    "ops",
                    "Victims per second by the reaper's result, and its mmap_lock trylock attempts.",
                    vec![
                        (rate_by(&c::REAPER_RESULTS, "result"), "{{result}}"),
                        (rate(&c::REAPER_ATTEMPTS), "attempts"),
                    ],
                ),
                panel(
                    "Memory reaped",
                    Timeseries,
                    "Bps",
                    "Memory the oom_reaper unmapped, per second.",
                    vec![(rate(&c::REAPED_BYTES), "reaped")],
                ),
            ],
        },
        Row {
            title: "Livelocks",
            panels: vec![
                panel(
                    "Livelocks in range",
                    Stat,
                    "none",
                    "Livelocks detected over the dashboard's time range.",
                    vec![(increase_range(&c::LIVELOCKS), "livelocks")],
                ),
                panel(
                    "Stalled episodes in range",
                    Stat,
                    "none",
                    "OOM victims neither reaped nor torn down within the livelock window, over the time range.",
                    vec![(increase_range(&c::STALLED_EPISODES), "stalled")],
                ),
                panel(
                    "Livelocks and stalls",
                    Timeseries,
                    "short",
                    "Livelocks, stalled episodes and sysrq recoveries per rate interval.",
                    vec![
                        (
                            format!("sum by (instance) (increase({}[$__rate_interval]))", sel(&c::LIVELOCKS)),
                            "livelocks",
                        ),
                        (
                            format!(
                                "sum by (instance) (increase({}[$__rate_interval]))",
                                sel(&c::STALLED_EPISODES)
                            ),
                            "stalled episodes",
                        ),
                        (
                            format!("sum by (instance) (increase({}[$__rate_interval]))", sel(&c::SYSRQ_KILLS)),
                            "sysrq recoveries",
                        ),
                    ],
                ),
            ],
        },
        Row {
            title: "mmap_lock waits",
            panels: vec![
                panel(
                    "Wait latency p99",
                    Timeseries,
                    "s",
                    "99th percentile of mmap_lock waits that slept, by operation and sleep state.",
                    vec![(quantile(0.99, &c::RWSEM_WAIT, ", op, wait"), "{{op}} {{wait}}")],
                ),
                panel(
                    "Wait latency p50",
                    Timeseries,
                    "s",
                    "Median of mmap_lock waits that slept, by operation and sleep state.",
                    vec![(quantile(0.5, &c::RWSEM_WAIT, ", op, wait"), "{{op}} {{wait}}")],
                ),
                panel(
                    "Mean wait",
                    Timeseries,
                    "s",
                    "Mean mmap_lock wait that slept, by operation and sleep state.",
                    vec![(
                        format!(
                            "sum by (instance, op, wait) (rate({}[$__rate_interval])) / sum by (instance, op, wait) (rate({}[$__rate_interval]))",
                            sel_suffix(&c::RWSEM_WAIT, "sum"),
                            sel_suffix(&c::RWSEM_WAIT, "count")
                        ),
                        "{{op}} {{wait}}",
                    )],
                ),
                panel(
                    "Waits that slept",
                    Timeseries,
                    "ops",
                    "mmap_lock waits that slept per second, and killable waits ended by SIGKILL.",
                    vec![
                        (
                            format!(
                                "sum by (instance, op, wait) (rate({}[$__rate_interval]))",
                                sel_suffix(&c::RWSEM_WAIT, "count")
                            ),
                            "{{op}} {{wait}}",
                        ),
                        (rate_by(&c::RWSEM_WAIT_KILLED, "op"), "{{op}} killed"),
                    ],
                ),
            ],
        },
    ]
}

fn datasource() -> Value {
    json!({"type": "prometheus", "uid": "${datasource}"})
}

fn panel_json(p: &Panel, id: u64, x: u64, y: u64, w: u64, h: u64) -> Value {
    let refs = ["A", "B", "C", "D", "E", "F"];
    let stat = p.viz == Stat;
    let targets: Vec<Value> = p
        .targets
        .iter()
        .zip(refs)
        .map(|((expr, legend), r)| {
            json!({
                "datasource": datasource(),
                "refId": r,
                "expr": expr,
                "legendFormat": legend,
                "range": !stat,
                "instant": stat,
            })
        })
        .collect();
    let mut v = json!({
        "id": id,
        "type": if stat { "stat" } else { "timeseries" },
        "title": p.title,
        "description": p.description,
        "datasource": datasource(),
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "targets": targets,
        "fieldConfig": {"defaults": {"unit": p.unit}, "overrides": []},
    });
    if stat {
        v["options"] = json!({
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": false},
            "colorMode": "value",
            "graphMode": "none",
            "textMode": "value_and_name",
        });
    } else {
        v["fieldConfig"]["defaults"]["custom"] = json!({
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": if p.viz == Stacked { 30 } else { 10 },
            "stacking": {"mode": if p.viz == Stacked { "normal" } else { "none" }, "group": "A"},
        });
        v["options"] = json!({
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": true},
            "tooltip": {"mode": "multi", "sort": "none"},
        });
    }
    v
}

/// The dashboard.
pub fn dashboard() -> Value {
    let mut panels = Vec::new();
    let mut id = 1;
    let mut y = 0;
    for row in rows() {
        panels.push(json!({
            "id": id,
            "type": "row",
            "title": row.title,
            "collapsed": false,
            "gridPos": {"x": 0, "y": y, "w": 24, "h": 1},
            "panels": [],
        }));
        id += 1;
        y += 1;
        // Stats are small: 4 columns; time series: 3 per line.
        let mut x = 0;
        let mut line_h = 0;
        // The row's stats on the first line(s), its time series below.
        let stats = row.panels.iter().filter(|p| p.viz == Stat);
        let series = row.panels.iter().filter(|p| p.viz != Stat);
        let mut prev_stat = true;
        for p in stats.chain(series) {
            if prev_stat && p.viz != Stat && x > 0 {
                x = 24;
            }
            prev_stat = p.viz == Stat;
            let (w, h) = if p.viz == Stat { (6, 4) } else { (8, 8) };
            if x + w > 24 {
                x = 0;
                y += line_h;
                line_h = 0;
            }
            panels.push(panel_json(p, id, x, y, w, h));
            id += 1;
            x += w;
            line_h = line_h.max(h);
        }
        y += line_h;
    }
    json!({
        "uid": UID,
        "title": "oomlab run",
        "description": "oomlab run: memory pressure, OOM kills, oom_reaper outcomes, livelocks, mmap_lock waits and throughput of the emulated kernel. Generated from oomlab's metric catalog (src/telemetry/dashboard.rs).",
        "tags": ["oomlab"],
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "editable": true,
        "graphTooltip": 1,
        "time": {"from": "now-15m", "to": "now"},
        "refresh": "5s",
        "timezone": "",
        "annotations": {"list": [{
            "builtIn": 1,
            "datasource": {"type": "grafana", "uid": "-- Grafana --"},
            "enable": true,
            "hide": true,
            "iconColor": "rgba(0, 211, 255, 1)",
            "name": "Annotations & Alerts",
            "type": "dashboard",
        }]},
        "templating": {"list": [
            {
                "name": "datasource",
                "label": "Data source",
                "type": "datasource",
                "query": "prometheus",
                "current": {},
                "hide": 0,
                "options": [],
                "refresh": 1,
                "regex": "",
            },
            {
                "name": "instance",
                "label": "Instance",
                "type": "query",
                "datasource": datasource(),
                "definition": format!("label_values({}, instance)", c::BUILD_INFO.name),
                "query": {
                    "query": format!("label_values({}, instance)", c::BUILD_INFO.name),
                    "refId": "PrometheusVariableQueryEditor-VariableQuery",
                },
                "current": {},
                "hide": 0,
                "includeAll": true,
                "allValue": ".*",
                "multi": true,
                "options": [],
                "refresh": 2,
                "regex": "",
                "sort": 1,
            },
        ]},
        "panels": panels,
    })
}

/// The dashboard as committed: pretty JSON and a final newline.
pub fn dashboard_text() -> String {
    let mut s = serde_json::to_string_pretty(&dashboard()).expect("JSON");
    s.push('\n');
    s
}

/// `dashboards/prometheus.yml`: scrape a local `oomlab run` on the default address.
pub fn prometheus_yml() -> String {
    format!(
        "# Prometheus scrape config for a local `oomlab run` (its default --metrics-addr).\n\
         # Generated by oomlab (src/telemetry/dashboard.rs); see dashboards/README.md.\n\
         #   prometheus --config.file=dashboards/prometheus.yml --storage.tsdb.path=/tmp/oomlab-prometheus\n\
         global:\n  scrape_interval: 5s\n  evaluation_interval: 5s\n\
         scrape_configs:\n  - job_name: oomlab\n    static_configs:\n      - targets: [\"{DEFAULT_ADDR}\"]\n"
    )
}

/// Every query of a dashboard JSON (panels' targets and templating queries), with the
/// template's own variables left in.
pub fn expressions(dashboard: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for p in dashboard["panels"].as_array().into_iter().flatten() {
        for t in p["targets"].as_array().into_iter().flatten() {
            if let Some(e) = t["expr"].as_str() {
                out.push(e.to_string());
            }
        }
    }
    out
}

/// The panel list for the README: `row: panel, panel, ...`, one line per row.
pub fn panel_list() -> Vec<String> {
    rows()
        .iter()
        .map(|r| {
            let names: Vec<&str> = r.panels.iter().map(|p| p.title).collect();
            format!("- **{}**: {}", r.title, names.join(", "))
        })
        .collect()
}

/// The metric list for the README: a table of every metric of the catalog.
pub fn metric_list() -> Vec<String> {
    let mut out = vec![
        "| metric | type | labels | meaning |".to_string(),
        "|---|---|---|---|".to_string(),
    ];
    for m in c::ALL {
        let labels: Vec<String> = m
            .labels
            .iter()
            .map(|l| match l.values {
                // Described, not listed: the list follows the knobs and the version.
                c::Values::Knob(k) => format!("`{}`: the `--{k}` choices", l.name),
                c::Values::Version => format!("`{}`: oomlab's version", l.name),
                _ => format!("`{}`: {}", l.name, l.values().join("\\|")),
            })
            .collect();
        let kind = match m.kind {
            c::Kind::Counter => "counter",
            c::Kind::Gauge => "gauge",
            c::Kind::Histogram => "histogram",
        };
        let shown = match m.shown {
            c::Shown::Panel => String::new(),
            c::Shown::Not(why) => format!(" (not on the dashboard: {why})"),
        };
        out.push(format!(
            "| `{}` | {kind} | {} | {}{shown} |",
            m.name,
            labels.join("; "),
            m.help
        ));
    }
    out
}

/// `text` with the lines between `<!-- {tag}:begin -->` and `<!-- {tag}:end -->` replaced.
pub fn splice(text: &str, tag: &str, lines: &[String]) -> Option<String> {
    let begin = format!("<!-- {tag}:begin -->\n");
    let end = format!("<!-- {tag}:end -->");
    let a = text.find(&begin)? + begin.len();
    let b = a + text[a..].find(&end)?;
    let mut body = lines.join("\n");
    body.push('\n');
    Some(format!("{}{body}{}", &text[..a], &text[b..]))
}

/// Every `oomlab_*` metric name in `expr` (histogram series suffixes stripped to the
/// histogram's name when the catalog declares it so).
pub fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr[i..].find("oomlab_") {
        let start = i + at;
        let mut end = start;
        while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_') {
            end += 1;
        }
        let word = &expr[start..end];
        let hist = c::ALL
            .iter()
            .find(|m| m.kind == c::Kind::Histogram && m.series().iter().any(|s| s == word));
        out.push(hist.map_or(word.to_string(), |m| m.name.to_string()));
        i = end;
    }
    out
}

/// The function applied to each `oomlab_*` selector of `expr`: (series name, the name of the
/// innermost function call whose parentheses enclose it, if any).
pub fn enclosing_functions(expr: &str) -> Vec<(String, Option<String>)> {
    let b = expr.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(at) = expr[i..].find("oomlab_") {
        let start = i + at;
        let mut end = start;
        while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_') {
            end += 1;
        }
        // Walk back to the unmatched '(' that opens the innermost enclosing group.
        let mut depth = 0i32;
        let mut func = None;
        let mut j = start;
        while j > 0 {
            j -= 1;
            match b[j] {
                b')' => depth += 1,
                b'(' if depth > 0 => depth -= 1,
                b'(' => {
                    let mut k = j;
                    while k > 0 && (b[k - 1].is_ascii_alphanumeric() || b[k - 1] == b'_') {
                        k -= 1;
                    }
                    let name = expr[k..j].trim();
                    // `sum by (instance) (` : the group belongs to the aggregation.
                    func = Some(if name.is_empty() {
                        let before = expr[..j].trim_end();
                        if before.ends_with(')') {
                            // skip the `by (...)` clause: its aggregation name is earlier
                            let open = before.rfind('(').unwrap_or(0);
                            let agg = before[..open].trim_end().trim_end_matches("by").trim_end();
                            let k = agg
                                .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                                .map_or(0, |p| p + 1);
                            agg[k..].to_string()
                        } else {
                            String::new()
                        }
                    } else {
                        name.to_string()
                    });
                    break;
                }
                _ => {}
            }
        }
        out.push((expr[start..end].to_string(), func));
        i = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::path::PathBuf;

    fn repo_file(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("dashboards")
            .join(name)
    }

    /// The committed files are what this module generates (`UPDATE_DASHBOARDS=1` rewrites
    /// them).
    #[test]
    fn dashboard_files_are_generated() {
        for (name, text) in [
            ("oomlab.json", dashboard_text()),
            ("prometheus.yml", prometheus_yml()),
        ] {
            let path = repo_file(name);
            if std::env::var_os("UPDATE_DASHBOARDS").is_some() {
                std::fs::write(&path, &text).unwrap();
            }
            let committed = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                committed == text,
                "dashboards/{name} differs from what src/telemetry/dashboard.rs generates; \
                 regenerate with: UPDATE_DASHBOARDS=1 cargo test -p oomlab dashboard"
            );
        }
    }

    /// The committed dashboard (what is being written, while `UPDATE_DASHBOARDS` rewrites it).
    /// The README's panel and metric lists are generated too.
    #[test]
    fn readme_lists_are_generated() {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("README.md");
        let text = std::fs::read_to_string(&path).unwrap();
        let want = splice(&text, "panels", &panel_list())
            .and_then(|t| splice(&t, "metrics", &metric_list()))
            .expect("README.md has the panels and metrics markers");
        if std::env::var_os("UPDATE_DASHBOARDS").is_some() {
            std::fs::write(&path, &want).unwrap();
        } else {
            assert!(
                text == want,
                "README.md's panel or metric list is stale; regenerate with: \
                 UPDATE_DASHBOARDS=1 cargo test -p oomlab dashboard"
            );
        }
    }

    fn committed() -> Value {
        if std::env::var_os("UPDATE_DASHBOARDS").is_some() {
            return dashboard();
        }
        serde_json::from_str(&std::fs::read_to_string(repo_file("oomlab.json")).unwrap()).unwrap()
    }

    /// Every metric a panel names is declared; every declared metric is in a panel, or
    /// listed as not shown (and then in none).
    #[test]
    fn dashboard_and_catalog_name_the_same_metrics() {
        let d = committed();
        let used: BTreeSet<String> = expressions(&d)
            .iter()
            .flat_map(|e| metric_names(e))
            .collect();
        let declared: BTreeSet<String> = c::ALL.iter().map(|m| m.name.to_string()).collect();
        let undeclared: Vec<&String> = used.difference(&declared).collect();
        assert!(
            undeclared.is_empty(),
            "panels name undeclared metrics: {undeclared:?}"
        );
        for m in c::ALL {
            match m.shown {
                c::Shown::Panel => assert!(used.contains(m.name), "{} is in no panel", m.name),
                c::Shown::Not(_) => assert!(
                    !used.contains(m.name),
                    "{} is listed as not shown but a panel shows it",
                    m.name
                ),
            }
        }
    }

    /// Counters only through `rate()`/`increase()`; histogram series only through `rate()`
    /// (under `histogram_quantile` for buckets); gauges never through either.
    #[test]
    fn counters_are_rated_and_gauges_are_not() {
        let d = committed();
        for e in expressions(&d) {
            for (series, func) in enclosing_functions(&e) {
                let m = c::ALL
                    .iter()
                    .find(|m| m.series().contains(&series))
                    .unwrap_or_else(|| panic!("{e}: {series} is not a declared series"));
                let f = func.as_deref().unwrap_or("");
                match m.kind {
                    c::Kind::Counter => assert!(
                        f == "rate" || f == "increase",
                        "{e}: counter {series} under {f:?}"
                    ),
                    c::Kind::Histogram => {
                        assert_eq!(f, "rate", "{e}: {series}");
                        if series.ends_with("_bucket") {
                            assert!(e.contains("histogram_quantile("), "{e}");
                            assert!(e.contains("by (le"), "{e}: buckets summed by le");
                        }
                    }
                    c::Kind::Gauge => assert!(
                        f != "rate" && f != "increase",
                        "{e}: gauge {series} under {f}"
                    ),
                }
            }
        }
    }

    #[test]
    fn the_dashboard_has_what_grafana_needs() {
        let d = committed();
        assert_eq!(d["uid"], UID);
        assert!(d["schemaVersion"].as_u64().unwrap() >= 39);
        assert!(
            d.get("__inputs").is_none(),
            "no __inputs: import without a prompt"
        );
        let vars = d["templating"]["list"].as_array().unwrap();
        let ds = vars.iter().find(|v| v["name"] == "datasource").unwrap();
        assert_eq!(
            (ds["type"].as_str(), ds["query"].as_str()),
            (Some("datasource"), Some("prometheus"))
        );
        let rows: Vec<&str> = d["panels"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["type"] == "row")
            .map(|p| p["title"].as_str().unwrap())
            .collect();
        for want in [
            "Memory",
            "OOM killer and oom_reaper",
            "Livelocks",
            "mmap_lock waits",
            "Throughput",
        ] {
            assert!(rows.contains(&want), "no row {want}: {rows:?}");
        }
        let mut ids = BTreeSet::new();
        for p in d["panels"].as_array().unwrap() {
            assert!(ids.insert(p["id"].as_u64().unwrap()), "duplicate panel id");
            if p["type"] != "row" {
                assert_eq!(p["datasource"]["uid"], "${datasource}");
                for t in p["targets"].as_array().unwrap() {
                    assert_eq!(t["datasource"]["uid"], "${datasource}");
                    let e = t["expr"].as_str().unwrap();
                    assert!(e.contains("instance=~\"$instance\""), "{e}");
                }
            }
        }
    }

    #[test]
    fn the_function_finder_sees_aggregations_and_calls() {
        let f = enclosing_functions(
            "sum by (instance) (rate(oomlab_a_total{x=\"y\"}[5m])) / max(oomlab_b) + oomlab_c",
        );
        assert_eq!(
            f,
            vec![
                ("oomlab_a_total".into(), Some("rate".into())),
                ("oomlab_b".into(), Some("max".into())),
                ("oomlab_c".into(), None),
            ]
        );
        let f = enclosing_functions("sum by (le, op) (rate(oomlab_h_bucket[1m]))");
        assert_eq!(f[0].1.as_deref(), Some("rate"));
        let f = enclosing_functions("sum by (instance) (oomlab_g)");
        assert_eq!(f[0].1.as_deref(), Some("sum"));
    }
}
