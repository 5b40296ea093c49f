//! `[expect]`: what a run of the file must show, for every configuration `--check` runs or
//! per configuration (`[[expect.when]]` with its own `kernel` table), and the check of one
//! run's report against it. Every expectation reads a figure the report already has; none
//! changes what runs.

use super::format::CountValue;
use crate::report::Report;
use crate::scenario::ScenarioConfig;
use reaper::knobs::KnobError;

/// Expectations of one configuration. `None` / empty = not checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expect {
    pub ending: Option<&'static str>,
    pub oom_kills: Option<CountValue>,
    /// Comms of the killed processes (OOM and sysrq kills), in order.
    pub killed: Option<Vec<String>>,
    pub livelocks: Option<CountValue>,
    pub sysrq_kills: Option<CountValue>,
    pub reaper_attempts: Option<CountValue>,
    pub reaper_reaped: Option<CountValue>,
    pub reaper_gave_up: Option<CountValue>,
    pub panicked: Option<bool>,
    /// Processes with a thread idle in `pause()` at the end, in pid order, each once.
    pub survivors: Option<Vec<String>>,
    /// Substrings some log line must contain.
    pub log: Vec<String>,
    /// Substrings no log line may contain.
    pub no_log: Vec<String>,
}

impl Expect {
    /// `self` with `case`'s keys taking precedence; log lists add up.
    fn overlaid(&self, case: &Expect) -> Expect {
        Expect {
            ending: case.ending.or(self.ending),
            oom_kills: case.oom_kills.or(self.oom_kills),
            killed: case.killed.clone().or_else(|| self.killed.clone()),
            livelocks: case.livelocks.or(self.livelocks),
            sysrq_kills: case.sysrq_kills.or(self.sysrq_kills),
            reaper_attempts: case.reaper_attempts.or(self.reaper_attempts),
            reaper_reaped: case.reaper_reaped.or(self.reaper_reaped),
            reaper_gave_up: case.reaper_gave_up.or(self.reaper_gave_up),
            panicked: case.panicked.or(self.panicked),
            survivors: case.survivors.clone().or_else(|| self.survivors.clone()),
            log: self.log.iter().chain(&case.log).cloned().collect(),
            no_log: self.no_log.iter().chain(&case.no_log).cloned().collect(),
        }
    }

    /// Every unmet expectation of `r`, one line each (`oom_kills: expected 1, got 2`), and
    /// one per ordering of the file that never held (`notes` of the trial).
    pub fn unmet(&self, r: &Report, notes: &[String]) -> Vec<String> {
        let mut out: Vec<String> = notes.iter().map(|n| format!("ordering: {n}")).collect();
        let mut count = |what: &str, want: Option<CountValue>, got: u64| {
            if let Some(w) = want {
                if got < w.min || w.max.is_some_and(|max| got > max) {
                    out.push(format!("{what}: expected {}, got {got}", count_text(w)));
                }
            }
        };
        let reaper = r.reaper.clone().unwrap_or_default();
        count("oom_kills", self.oom_kills, r.oom.kills);
        count("livelocks", self.livelocks, r.livelocks);
        count("sysrq_kills", self.sysrq_kills, r.oom.sysrq_kills);
        count("reaper.attempts", self.reaper_attempts, reaper.attempts);
        count("reaper.reaped", self.reaper_reaped, reaper.reaped);
        count("reaper.gave_up", self.reaper_gave_up, reaper.gave_up);
        if let Some(e) = self.ending {
            if r.verdict.name() != e {
                out.push(format!("ending: expected {e}, got {}", r.verdict.name()));
            }
        }
        if let Some(p) = self.panicked {
            let got = r.panic_message.is_some();
            if got != p {
                out.push(format!("panicked: expected {p}, got {got}"));
            }
        }
        if let Some(k) = &self.killed {
            let got: Vec<String> = r
                .victims
                .iter()
                .filter(|v| v.killed)
                .map(|v| v.comm.clone())
                .collect();
            if &got != k {
                out.push(format!(
                    "killed: expected [{}], got [{}]",
                    k.join(", "),
                    got.join(", ")
                ));
            }
        }
        if let Some(s) = &self.survivors {
            let got = survivor_processes(&r.survivors);
            if &got != s {
                out.push(format!(
                    "survivors: expected [{}], got [{}]",
                    s.join(", "),
                    got.join(", ")
                ));
            }
        }
        for needle in &self.log {
            if !r.log.iter().any(|l| l.contains(needle.as_str())) {
                out.push(format!("log: no line contains {needle:?}"));
            }
        }
        for needle in &self.no_log {
            if let Some(l) = r.log.iter().find(|l| l.contains(needle.as_str())) {
                out.push(format!("no_log: a line contains {needle:?}: {l}"));
            }
        }
        out
    }
}

/// `comm[tgid/tid]` survivor entries → process names, each once, in order.
fn survivor_processes(survivors: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in survivors {
        let comm = s
            .rsplit_once('[')
            .map_or(s.as_str(), |(c, _)| c)
            .to_string();
        if !out.contains(&comm) {
            out.push(comm);
        }
    }
    out
}

fn count_text(c: CountValue) -> String {
    match (c.min, c.max) {
        (min, Some(max)) if min == max => min.to_string(),
        (0, Some(max)) => format!("at most {max}"),
        (min, None) => format!("at least {min}"),
        (min, Some(max)) => format!("{min} to {max}"),
    }
}

/// One configuration `--check` runs (`[[expect.when]]`): its knobs, on top of the file's
/// `[kernel]` and the command line, and its expectations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Case {
    pub kernel: Vec<(String, String)>,
    pub expect: Expect,
}

/// A file's `[expect]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expectations {
    /// `seeds`: the seeds `--check` runs (empty: the command line's, default 0).
    pub seeds: Vec<u64>,
    /// The keys of `[expect]` itself, which hold in every configuration.
    pub common: Expect,
    /// `[[expect.when]]`; none = one configuration (the file's and the command line's).
    pub cases: Vec<Case>,
}

/// One run of `--check`.
#[derive(Clone, Debug)]
pub struct CheckRun {
    /// `write-lock=uninterruptible reaper=off, seed 1`.
    pub what: String,
    pub cfg: ScenarioConfig,
    pub expect: Expect,
}

impl Expectations {
    /// The runs of `--check`: each case (or the one configuration) × each seed, on top of
    /// `base` (memory, time limit, the file's `[kernel]` and the command line's knobs
    /// applied). `seeds`: the command line's `--seed`, which replaces the file's list.
    pub fn runs(
        &self,
        base: &ScenarioConfig,
        seeds: Option<u64>,
    ) -> Result<Vec<CheckRun>, KnobError> {
        let seeds: Vec<u64> = match seeds {
            Some(s) => vec![s],
            None if self.seeds.is_empty() => vec![base.seed],
            None => self.seeds.clone(),
        };
        let cases: Vec<Case> = if self.cases.is_empty() {
            vec![Case {
                kernel: Vec::new(),
                expect: Expect::default(),
            }]
        } else {
            self.cases.clone()
        };
        let mut out = Vec::new();
        for case in &cases {
            let mut cfg = base.clone();
            for (k, v) in &case.kernel {
                cfg.machine.set_knob(k, v)?;
            }
            let knobs: Vec<String> = case
                .kernel
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let expect = self.common.overlaid(&case.expect);
            for &seed in &seeds {
                let mut cfg = cfg.clone();
                cfg.seed = seed;
                let what = if knobs.is_empty() {
                    format!("seed {seed}")
                } else {
                    format!("{}, seed {seed}", knobs.join(" "))
                };
                out.push(CheckRun {
                    what,
                    cfg,
                    expect: expect.clone(),
                });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_print_their_range() {
        let c = |min, max| CountValue { min, max };
        assert_eq!(count_text(c(1, Some(1))), "1");
        assert_eq!(count_text(c(2, None)), "at least 2");
        assert_eq!(count_text(c(0, Some(3))), "at most 3");
        assert_eq!(count_text(c(1, Some(3))), "1 to 3");
    }

    #[test]
    fn survivors_are_process_names_once_each() {
        let s = [
            "shared-a[3/3]",
            "shared-b[5/5]",
            "victim[6/6]",
            "victim[6/7]",
        ];
        let s: Vec<String> = s.iter().map(|x| x.to_string()).collect();
        assert_eq!(
            survivor_processes(&s),
            ["shared-a", "shared-b", "victim"].map(String::from)
        );
    }

    #[test]
    fn a_case_overrides_the_common_keys_and_adds_log_lines() {
        let common = Expect {
            oom_kills: Some(CountValue {
                min: 1,
                max: Some(1),
            }),
            panicked: Some(false),
            log: vec!["a".into()],
            ..Expect::default()
        };
        let case = Expect {
            oom_kills: Some(CountValue { min: 2, max: None }),
            log: vec!["b".into()],
            ..Expect::default()
        };
        let m = common.overlaid(&case);
        assert_eq!(m.oom_kills, Some(CountValue { min: 2, max: None }));
        assert_eq!(m.panicked, Some(false));
        assert_eq!(m.log, ["a", "b"]);
    }
}
