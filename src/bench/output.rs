//! What the bench writes: the table on stdout, the Bencher Metric Format and
//! github-action-benchmark files, the host facts of the `--json` file, and the writing of every
//! output file through a temporary file and a rename (nothing half-written).

use super::doc::{BenchDoc, Summary};
use crate::plan::UsageError;
use serde_json::{json, Map, Value};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `12.3%`.
fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// The table of a document, one row per configuration, and the legend under it.
pub fn table(doc: &BenchDoc) -> Vec<String> {
    let head = [
        doc.axes.join(" / "),
        "trials".into(),
        "livelocked".into(),
        "rate [95% Wilson]".into(),
        "ll/1k kills".into(),
        "kills/trial".into(),
        "collateral/trial".into(),
        "give-ups/trial".into(),
        "sysrq/trial".into(),
        "k→r p50/p99 ms".into(),
        "panicked".into(),
        "time-limit".into(),
        "deadlock".into(),
    ];
    let ms = |ns: Option<u64>| ns.map_or("-".to_string(), |n| format!("{:.1}", n as f64 / 1e6));
    let rows: Vec<Vec<String>> = doc
        .configs
        .iter()
        .zip(doc.summaries())
        .map(|(c, s): (_, Summary)| {
            vec![
                c.short_label(),
                s.trials.to_string(),
                s.livelocked.to_string(),
                format!(
                    "{} [{}, {}]",
                    pct(s.rate),
                    pct(s.wilson.lo),
                    pct(s.wilson.hi)
                ),
                s.livelocks_per_1000_kills()
                    .map_or("-".into(), |x| format!("{x:.1}")),
                format!("{:.2}", s.per_trial(s.oom_kills)),
                format!("{:.2}", s.per_trial(s.collateral_kills)),
                format!("{:.2}", s.per_trial(s.reaper_give_ups)),
                format!("{:.2}", s.per_trial(s.sysrq_kills)),
                format!(
                    "{} / {}",
                    ms(s.kill_to_reclaim_p50_ns),
                    ms(s.kill_to_reclaim_p99_ns)
                ),
                s.panicked.to_string(),
                s.time_limit.to_string(),
                s.deadlock.to_string(),
            ]
        })
        .collect();
    let width = |i: usize| {
        rows.iter()
            .map(|r| r[i].chars().count())
            .chain([head[i].chars().count()])
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..head.len()).map(width).collect();
    let line = |cells: &[String]| {
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate() {
            let pad = widths[i] - c.chars().count();
            if i == 0 {
                out.push_str(c);
                out.push_str(&" ".repeat(pad));
            } else {
                out.push_str("  ");
                out.push_str(&" ".repeat(pad));
                out.push_str(c);
            }
        }
        out
    };
    let mut out = vec![line(&head)];
    out.extend(rows.iter().map(|r| line(r)));
    out.push(String::new());
    out.push(
        "livelocked: trials with at least one livelock; rate: livelocked / trials, with its 95% \
         Wilson interval; ll/1k kills: livelocks per 1000 OOM kills"
            .into(),
    );
    out.push(
        "collateral: OOM kills made while an earlier victim's memory had not come back; \
         give-ups: 'unable to reap'; sysrq: the watchdog's recovery kills; k→r: kill to \
         memory back, ms of the executor's clock (emulated on sim), nearest rank"
            .into(),
    );
    out
}

/// Bencher Metric Format: `{benchmark: {measure: {value, lower_value?, upper_value?}}}`, one
/// benchmark per configuration. The livelock rate carries its Wilson interval as its bounds;
/// `livelock-rate-upper95` is the interval's upper bound alone, which still moves when the rate
/// is 0 (it shrinks with more trials and grows with the first livelock).
pub fn bmf(doc: &BenchDoc) -> Value {
    let mut out = Map::new();
    for (c, s) in doc.configs.iter().zip(doc.summaries()) {
        let mut m = Map::new();
        m.insert(
            "livelock-rate".into(),
            json!({"value": s.rate, "lower_value": s.wilson.lo, "upper_value": s.wilson.hi}),
        );
        m.insert(
            "livelock-rate-upper95".into(),
            json!({"value": s.wilson.hi}),
        );
        m.insert(
            "oom-kills-per-trial".into(),
            json!({"value": s.per_trial(s.oom_kills)}),
        );
        m.insert(
            "collateral-kills-per-trial".into(),
            json!({"value": s.per_trial(s.collateral_kills)}),
        );
        m.insert(
            "reaper-give-ups-per-trial".into(),
            json!({"value": s.per_trial(s.reaper_give_ups)}),
        );
        m.insert(
            "sysrq-recoveries-per-trial".into(),
            json!({"value": s.per_trial(s.sysrq_kills)}),
        );
        m.insert(
            "ended-early-rate".into(),
            json!({"value": s.ended_early_rate()}),
        );
        if let Some(ns) = s.kill_to_reclaim_p99_ns {
            m.insert(
                "kill-to-reclaim-p99-ms".into(),
                json!({"value": ns as f64 / 1e6}),
            );
        }
        out.insert(c.label(), Value::Object(m));
    }
    Value::Object(out)
}

/// github-action-benchmark's `customSmallerIsBetter`: an array of `{name, unit, value,
/// extra}`. The livelock measure is the Wilson upper bound in percent (meaningful at a rate of
/// 0; a rise of the rate raises it).
pub fn gab(doc: &BenchDoc) -> Value {
    let mut out = Vec::new();
    for (c, s) in doc.configs.iter().zip(doc.summaries()) {
        let label = c.label();
        out.push(json!({
            "name": format!("{label}: livelock rate, 95% upper bound"),
            "unit": "%",
            "value": s.wilson.hi * 100.0,
            "extra": format!(
                "{} of {} trials livelocked ({}; 95% Wilson {} to {})",
                s.livelocked, s.trials, pct(s.rate), pct(s.wilson.lo), pct(s.wilson.hi)
            ),
        }));
        out.push(json!({
            "name": format!("{label}: collateral kills per trial"),
            "unit": "kills",
            "value": s.per_trial(s.collateral_kills),
        }));
        out.push(json!({
            "name": format!("{label}: reaper give-ups per trial"),
            "unit": "give-ups",
            "value": s.per_trial(s.reaper_give_ups),
        }));
        out.push(json!({
            "name": format!("{label}: trials ended by a panic, the time bound or a deadlock"),
            "unit": "%",
            "value": s.ended_early_rate() * 100.0,
        }));
        if let Some(ns) = s.kill_to_reclaim_p99_ns {
            out.push(json!({
                "name": format!("{label}: kill to reclaim p99"),
                "unit": "ms",
                "value": ns as f64 / 1e6,
            }));
        }
    }
    Value::Array(out)
}

/// `2026-12-06T04:47:22Z`.
pub fn utc(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// This process's CPU time (user + system) and peak resident set, from `getrusage`.
pub fn rusage() -> (Duration, u64) {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return (Duration::ZERO, 0);
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    (
        tv(ru.ru_utime) + tv(ru.ru_stime),
        ru.ru_maxrss as u64 * 1024,
    )
}

/// The temporary file next to `path` that becomes it.
fn temp_of(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or("out".into(), |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.oomlab-{}.tmp", std::process::id()))
}

/// Check, before any work, that every output can be written where it is asked for (the
/// directory exists and takes a new file) and that no two outputs share a path.
pub fn preflight(outputs: &[(&str, &Path)]) -> Result<(), UsageError> {
    for (i, (flag, path)) in outputs.iter().enumerate() {
        if let Some((other, _)) = outputs[..i].iter().find(|(_, p)| p == path) {
            return Err(UsageError(format!(
                "{flag} {}: the same file as {other}",
                path.display()
            )));
        }
        if path.is_dir() {
            return Err(UsageError(format!(
                "{flag} {}: is a directory; give a file name",
                path.display()
            )));
        }
        let tmp = temp_of(path);
        match fs::File::create(&tmp) {
            Ok(_) => {
                let _ = fs::remove_file(&tmp);
            }
            Err(e) => {
                return Err(UsageError(format!(
                    "{flag} {}: cannot write there ({e})",
                    path.display()
                )))
            }
        }
    }
    Ok(())
}

/// Write every `(path, contents)`: all to temporary files first, then each renamed into place,
/// so that a failure leaves no output half-written.
pub fn write_all(files: &[(PathBuf, Vec<u8>)]) -> std::io::Result<()> {
    let mut temps: Vec<PathBuf> = Vec::new();
    let result = (|| {
        for (path, bytes) in files {
            let tmp = temp_of(path);
            temps.push(tmp.clone());
            let mut f = fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
        }
        for ((path, _), tmp) in files.iter().zip(&temps) {
            fs::rename(tmp, path)?;
        }
        Ok(())
    })();
    if result.is_err() {
        for t in &temps {
            let _ = fs::remove_file(t);
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400 + 3_723); // 2000-02-29
        assert_eq!(utc(t), "2000-02-29T01:02:03Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_796_532_442);
        assert_eq!(utc(t), "2026-12-06T04:47:22Z");
    }
}
