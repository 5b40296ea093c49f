//! A bench result as data: what was benchmarked (the identity: version, command, workload,
//! matrix, seeds), which slice of the trials it holds, the trials, and the per-configuration
//! summaries computed from them. The `--json` file is this, plus one object of host facts
//! (`host`: timestamps, wall and CPU time, argv) that is the only part that differs between two
//! runs of the same command.
//!
//! Summaries are always recomputed from the trials, so a merge of shards gives the same
//! summaries, byte for byte, as the unsharded run.

use super::shard::Shard;
use super::stats::{self, Interval, Z95};
use super::trial::TrialResult;
use serde_json::{json, Value};

/// Version of the JSON layout (`bench.format`); a reader refuses other versions.
pub const FORMAT: u64 = 1;

/// One configuration as the documents know it: (knob, value) per axis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigKey {
    pub knobs: Vec<(String, String)>,
}

impl ConfigKey {
    /// `write-lock=uninterruptible reaper=off`.
    pub fn label(&self) -> String {
        super::matrix::label(&self.knobs)
    }
    /// `uninterruptible / off`.
    pub fn short_label(&self) -> String {
        let v: Vec<&str> = self.knobs.iter().map(|(_, v)| v.as_str()).collect();
        v.join(" / ")
    }
    /// The same configuration whatever the axis order.
    pub fn same_as(&self, other: &ConfigKey) -> bool {
        let mut a = self.knobs.clone();
        let mut b = other.knobs.clone();
        a.sort();
        b.sort();
        a == b
    }
}

/// A bench result: a whole run, a shard of one, or a merge of shards.
#[derive(Clone, Debug)]
pub struct BenchDoc {
    /// The `bench` object: everything that decides the trials' results.
    pub identity: Value,
    pub configs: Vec<ConfigKey>,
    /// The axes' knob names, in order.
    pub axes: Vec<String>,
    pub trials_per_config: u64,
    pub first_seed: u64,
    /// `None`: every trial.
    pub shard: Option<Shard>,
    /// Sorted by index.
    pub trials: Vec<TrialResult>,
}

/// The figures of one configuration over the trials held.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    pub trials: u64,
    /// Trials with at least one livelock.
    pub livelocked: u64,
    pub rate: f64,
    pub wilson: Interval,
    pub livelocks: u64,
    pub oom_kills: u64,
    pub collateral_kills: u64,
    pub reaper_give_ups: u64,
    pub sysrq_kills: u64,
    pub stalled_episodes: u64,
    pub kill_to_reclaim_p50_ns: Option<u64>,
    pub kill_to_reclaim_p99_ns: Option<u64>,
    pub completed: u64,
    pub panicked: u64,
    pub time_limit: u64,
    pub deadlock: u64,
}

impl Summary {
    /// Summarise `trials` (of one configuration).
    pub fn of<'a>(trials: impl Iterator<Item = &'a TrialResult>) -> Summary {
        let mut s = Summary {
            trials: 0,
            livelocked: 0,
            rate: 0.0,
            wilson: Interval { lo: 0.0, hi: 1.0 },
            livelocks: 0,
            oom_kills: 0,
            collateral_kills: 0,
            reaper_give_ups: 0,
            sysrq_kills: 0,
            stalled_episodes: 0,
            kill_to_reclaim_p50_ns: None,
            kill_to_reclaim_p99_ns: None,
            completed: 0,
            panicked: 0,
            time_limit: 0,
            deadlock: 0,
        };
        let mut k2r: Vec<u64> = Vec::new();
        for t in trials {
            s.trials += 1;
            s.livelocked += u64::from(t.livelocks > 0);
            s.livelocks += t.livelocks;
            s.oom_kills += t.oom_kills;
            s.collateral_kills += t.collateral_kills;
            s.reaper_give_ups += t.reaper_give_ups;
            s.sysrq_kills += t.sysrq_kills;
            s.stalled_episodes += t.stalled_episodes;
            k2r.extend_from_slice(&t.kill_to_reclaim_ns);
            match t.ending.as_str() {
                "completed" => s.completed += 1,
                "panicked" => s.panicked += 1,
                "time-limit" => s.time_limit += 1,
                _ => s.deadlock += 1,
            }
        }
        k2r.sort_unstable();
        s.rate = stats::rate(s.livelocked, s.trials);
        s.wilson = stats::wilson(s.livelocked, s.trials, Z95);
        s.kill_to_reclaim_p50_ns = stats::percentile(&k2r, 0.50);
        s.kill_to_reclaim_p99_ns = stats::percentile(&k2r, 0.99);
        s
    }

    /// `x / trials`.
    pub fn per_trial(&self, x: u64) -> f64 {
        stats::rate(x, self.trials)
    }

    /// Trials that did not complete: the modelled kernel panicked, tasks were left at the
    /// time bound (e.g. stuck for good on a lock), or it deadlocked.
    pub fn ended_early_rate(&self) -> f64 {
        stats::rate(self.panicked + self.time_limit + self.deadlock, self.trials)
    }

    /// Livelocks per 1000 OOM kills (`None` without kills).
    pub fn livelocks_per_1000_kills(&self) -> Option<f64> {
        (self.oom_kills > 0).then(|| self.livelocks as f64 * 1000.0 / self.oom_kills as f64)
    }

    pub fn json(&self) -> Value {
        let ms = |ns: Option<u64>| ns.map(|n| n as f64 / 1e6);
        json!({
            "trials": self.trials,
            "trials_with_livelock": self.livelocked,
            "livelock_rate": self.rate,
            "livelock_rate_wilson95": [self.wilson.lo, self.wilson.hi],
            "livelocks": self.livelocks,
            "livelocks_per_1000_oom_kills": self.livelocks_per_1000_kills(),
            "oom_kills": self.oom_kills,
            "oom_kills_per_trial": self.per_trial(self.oom_kills),
            "collateral_kills": self.collateral_kills,
            "collateral_kills_per_trial": self.per_trial(self.collateral_kills),
            "reaper_give_ups": self.reaper_give_ups,
            "reaper_give_ups_per_trial": self.per_trial(self.reaper_give_ups),
            "sysrq_kills": self.sysrq_kills,
            "sysrq_kills_per_trial": self.per_trial(self.sysrq_kills),
            "stalled_episodes": self.stalled_episodes,
            "kill_to_reclaim_ms_p50": ms(self.kill_to_reclaim_p50_ns),
            "kill_to_reclaim_ms_p99": ms(self.kill_to_reclaim_p99_ns),
            "endings": {
                "completed": self.completed,
                "panicked": self.panicked,
                "time-limit": self.time_limit,
                "deadlock": self.deadlock,
            },
        })
    }
}

impl BenchDoc {
    /// The summary of every configuration, in configuration order.
    pub fn summaries(&self) -> Vec<Summary> {
        (0..self.configs.len())
            .map(|c| Summary::of(self.trials.iter().filter(|t| t.spec.config == c)))
            .collect()
    }

    /// The trial indices this document must hold: its slice of the bench.
    pub fn expected_indices(&self) -> Vec<usize> {
        let total = self.configs.len() * self.trials_per_config as usize;
        (0..total)
            .filter(|&i| self.shard.is_none_or(|s| s.contains(i)))
            .collect()
    }

    /// The document as JSON, with `host` as its one varying object.
    pub fn json(&self, host: Value) -> Value {
        let summaries = self.summaries();
        json!({
            "bench": self.identity,
            "shard": self.shard.map(|s| json!({"index": s.index, "count": s.count})),
            "trials": self.trials.iter().map(TrialResult::json).collect::<Vec<_>>(),
            "configs": self.configs.iter().zip(&summaries).enumerate().map(|(i, (c, s))| {
                let mut v = s.json();
                v["index"] = json!(i);
                v["label"] = json!(c.label());
                v
            }).collect::<Vec<_>>(),
            "host": host,
        })
    }

    /// Read a `--json` file's document (`what` names it in errors). Checks that the trials are
    /// exactly the slice the document says it holds.
    pub fn from_json(v: &Value) -> Result<BenchDoc, String> {
        let id = &v["bench"];
        let format = id["format"].as_u64().ok_or("no bench.format")?;
        if format != FORMAT {
            return Err(format!(
                "bench.format {format}; this oomlab reads format {FORMAT}"
            ));
        }
        let axes: Vec<String> = id["matrix"]
            .as_array()
            .ok_or("no bench.matrix")?
            .iter()
            .map(|a| a["knob"].as_str().map(str::to_string))
            .collect::<Option<_>>()
            .ok_or("malformed bench.matrix")?;
        let configs: Vec<ConfigKey> = id["configs"]
            .as_array()
            .ok_or("no bench.configs")?
            .iter()
            .map(|c| {
                let knobs = c["knobs"]
                    .as_array()?
                    .iter()
                    .map(|p| {
                        Some((
                            p.get(0)?.as_str()?.to_string(),
                            p.get(1)?.as_str()?.to_string(),
                        ))
                    })
                    .collect::<Option<Vec<_>>>()?;
                Some(ConfigKey { knobs })
            })
            .collect::<Option<_>>()
            .ok_or("malformed bench.configs")?;
        let trials_per_config = id["trials_per_config"]
            .as_u64()
            .filter(|&n| n >= 1)
            .ok_or("no bench.trials_per_config")?;
        let first_seed = id["first_seed"].as_u64().ok_or("no bench.first_seed")?;
        let shard = match &v["shard"] {
            Value::Null => None,
            s => {
                let (Some(index), Some(count)) = (s["index"].as_u64(), s["count"].as_u64()) else {
                    return Err("malformed shard".into());
                };
                let ok = count >= 1 && index >= 1 && index <= count && count <= u64::from(u32::MAX);
                if !ok {
                    return Err(format!("shard {index}/{count} is not a slice"));
                }
                Some(Shard {
                    index: index as u32,
                    count: count as u32,
                })
            }
        };
        let mut trials: Vec<TrialResult> = v["trials"]
            .as_array()
            .ok_or("no trials")?
            .iter()
            .enumerate()
            .map(|(i, t)| TrialResult::from_json(t).map_err(|e| format!("trials[{i}]: bad {e}")))
            .collect::<Result<_, _>>()?;
        trials.sort_by_key(|t| t.spec.index);
        let doc = BenchDoc {
            identity: id.clone(),
            configs,
            axes,
            trials_per_config,
            first_seed,
            shard,
            trials,
        };
        let held: Vec<usize> = doc.trials.iter().map(|t| t.spec.index).collect();
        if held != doc.expected_indices() {
            return Err(format!(
                "its trials are not exactly those of {} ({} held, {} expected)",
                doc.shard
                    .map_or("the whole bench".to_string(), |s| format!("shard {s}")),
                held.len(),
                doc.expected_indices().len()
            ));
        }
        for t in &doc.trials {
            let per = doc.trials_per_config as usize;
            let seed_ok =
                doc.first_seed.checked_add((t.spec.index % per) as u64) == Some(t.spec.seed);
            if t.spec.config != t.spec.index / per || !seed_ok {
                return Err(format!(
                    "trial {} has configuration {} and seed {}, not those of its index",
                    t.spec.index, t.spec.config, t.spec.seed
                ));
            }
        }
        Ok(doc)
    }
}
