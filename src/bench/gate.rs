//! The regression gate: compare each configuration's livelock rate with a baseline `--json`.
//!
//! **Rule.** A configuration regressed when its livelock rate rose beyond what chance explains:
//! the 95 % Newcombe hybrid score interval of the rise (`rate now − rate in the baseline`,
//! [`super::stats::newcombe`], built from the two Wilson intervals) lies entirely above 0 —
//! a one-sided test at the 2.5 % level that behaves at rates of 0 and with few trials, where
//! the normal-approximation two-proportion z-test does not. With `--threshold T`, a rise of
//! the rate itself by more than T (e.g. 0.05 = 5 percentage points) is a regression too, even
//! when chance could explain it. A fall or an equal rate never is.
//!
//! Configurations are matched by their knob values (whatever the axis order). Those present in
//! only one of the two files are listed, never silently dropped; they do not fail the gate.

use super::doc::{BenchDoc, ConfigKey, Summary};
use super::stats::{newcombe, Interval, Z95};
use crate::plan::UsageError;

/// Read a complete bench result from `path` for `flag` (`--baseline`, or merge's inputs).
pub fn read_doc(flag: &str, path: &str) -> Result<BenchDoc, UsageError> {
    let bytes = std::fs::read(path)
        .map_err(|e| UsageError(format!("{flag} {path}: cannot read it ({e})")))?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
        UsageError(format!(
            "{flag} {path}: not JSON ({e}); expected the --json file of oomlab bench"
        ))
    })?;
    BenchDoc::from_json(&v).map_err(|e| {
        UsageError(format!(
            "{flag} {path}: not an oomlab bench --json file: {e}"
        ))
    })
}

/// The baseline can be compared with `current`: a whole bench (not a shard), the same
/// workload and executor, the same axes, and at least one configuration in common.
pub fn check_comparable(current: &BenchDoc, base: &BenchDoc, path: &str) -> Result<(), UsageError> {
    let bad = |why: String| UsageError(format!("--baseline {path}: {why}"));
    if let Some(s) = base.shard {
        return Err(bad(format!(
            "holds only shard {s}; merge the shards first (oomlab bench merge)"
        )));
    }
    let mut a = current.axes.clone();
    let mut b = base.axes.clone();
    a.sort();
    b.sort();
    if a != b {
        return Err(bad(format!(
            "another matrix (axes {} there, {} here)",
            base.axes.join(", "),
            current.axes.join(", ")
        )));
    }
    let about = |d: &BenchDoc| {
        format!(
            "{} executor, {}",
            d.identity["executor"].as_str().unwrap_or("?"),
            d.identity["workload"]["about"].as_str().unwrap_or("?")
        )
    };
    if current.identity["executor"] != base.identity["executor"]
        || current.identity["workload"] != base.identity["workload"]
    {
        return Err(bad(format!(
            "ran another workload ({} there; {} here); rates compare only on the same one",
            about(base),
            about(current)
        )));
    }
    if !current
        .configs
        .iter()
        .any(|c| base.configs.iter().any(|b| b.same_as(c)))
    {
        return Err(bad(
            "another matrix (no configuration in common)".to_string()
        ));
    }
    Ok(())
}

/// The verdict on one configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// Rise of the rate (now − baseline).
    pub rise: f64,
    /// 95 % Newcombe interval of the rise.
    pub interval: Interval,
    /// Why it is a regression, or `None`.
    pub regression: Option<String>,
}

/// Judge one configuration: `now` against `base` (livelocked, trials each).
pub fn judge(now: (u64, u64), base: (u64, u64), threshold: Option<f64>) -> Verdict {
    let interval = newcombe(now.0, now.1, base.0, base.1, Z95);
    let rate = |(k, n): (u64, u64)| super::stats::rate(k, n);
    let rise = rate(now) - rate(base);
    let regression = if interval.lo > 0.0 {
        Some("the rise is beyond chance: its 95% Newcombe interval lies above 0".to_string())
    } else {
        threshold
            .filter(|&t| rise > t)
            .map(|t| format!("the rise is beyond --threshold {}", points(t)))
    };
    Verdict {
        rise,
        interval,
        regression,
    }
}

/// `5.0 points` (percentage points).
fn points(x: f64) -> String {
    format!("{:.1} points", x * 100.0)
}

fn signed_points(x: f64) -> String {
    format!("{:+.1}", x * 100.0)
}

/// The comparison: lines for stdout, and one line per regression (for stderr).
pub struct Comparison {
    pub lines: Vec<String>,
    pub regressions: Vec<String>,
}

/// Compare every configuration of `current` with `base`.
pub fn compare(
    current: &BenchDoc,
    base: &BenchDoc,
    path: &str,
    threshold: Option<f64>,
) -> Comparison {
    let now_s = current.summaries();
    let base_s = base.summaries();
    let mut lines = vec![format!(
        "baseline {path} (oomlab {}): livelock rate now vs then; a regression is a rise beyond \
         chance (95% Newcombe interval of the rise above 0){}",
        base.identity["version"].as_str().unwrap_or("?"),
        threshold.map_or(String::new(), |t| format!(" or beyond {}", points(t)))
    )];
    let mut regressions = Vec::new();
    let found = |c: &ConfigKey| base.configs.iter().position(|b| b.same_as(c));
    let width = current
        .configs
        .iter()
        .chain(&base.configs)
        .map(|c| c.label().chars().count())
        .max()
        .unwrap_or(0);
    for (c, s) in current.configs.iter().zip(&now_s) {
        let label = c.label();
        let Some(j) = found(c) else {
            lines.push(format!(
                "  {label:<width$}  only in this run (not compared)"
            ));
            continue;
        };
        let b: &Summary = &base_s[j];
        let v = judge(
            (s.livelocked, s.trials),
            (b.livelocked, b.trials),
            threshold,
        );
        let what = format!(
            "{}/{} -> {}/{} ({} points; 95% interval of the rise {} to {})",
            b.livelocked,
            b.trials,
            s.livelocked,
            s.trials,
            signed_points(v.rise),
            signed_points(v.interval.lo),
            signed_points(v.interval.hi)
        );
        match &v.regression {
            Some(why) => {
                lines.push(format!("  {label:<width$}  {what}  REGRESSION"));
                regressions.push(format!("regression: {label}: livelock rate {what}: {why}"));
            }
            None => lines.push(format!("  {label:<width$}  {what}  ok")),
        }
    }
    for b in &base.configs {
        if !current.configs.iter().any(|c| c.same_as(b)) {
            lines.push(format!(
                "  {:<width$}  only in the baseline (not compared)",
                b.label()
            ));
        }
    }
    Comparison { lines, regressions }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_that_rose_beyond_chance_is_caught() {
        let v = judge((30, 100), (10, 100), None);
        assert!(v.regression.is_some(), "{v:?}");
        assert!(v.interval.lo > 0.0);
        // From nothing: 9 of 100 after 0 of 100 is beyond chance too.
        assert!(judge((9, 100), (0, 100), None).regression.is_some());
    }

    #[test]
    fn an_equal_or_lower_rate_is_not() {
        for (now, base) in [
            ((10, 100), (10, 100)),
            ((0, 100), (0, 100)),
            ((5, 100), (30, 100)),
        ] {
            let v = judge(now, base, None);
            assert_eq!(v.regression, None, "{now:?} vs {base:?}");
        }
        // A small rise that chance explains.
        assert_eq!(judge((12, 100), (10, 100), None).regression, None);
        // ... unless it exceeds the threshold.
        let v = judge((12, 100), (10, 100), Some(0.01));
        assert!(v.regression.unwrap().contains("--threshold 1.0 points"));
        assert_eq!(judge((12, 100), (10, 100), Some(0.05)).regression, None);
    }
}
