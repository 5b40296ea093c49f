//! Every kernel knob of a machine, declared once: its name (the command-line flag without
//! `--`, the key of `bench --matrix` and of a scenario file's `[kernel]` table), its values,
//! its meaning, how a value sets [`MachineConfig`] and how the configuration prints it.
//!
//! The command line builds its kernel flags from this list, so a knob added here (a kernel
//! preset, a lock model) is at once a flag of `run` and `scenario`, a matrix axis and a file
//! key. Knobs set independent fields, so they compose in any order.

use crate::machine::MachineConfig;
use crate::oom_kill::VictimGoneRule;
use crate::units::{format_ms, parse_duration, parse_duration_ms};
use mm::locking::rwsem::{RwSemModel, RwSemSpin};
use mm::mm_types::LockWait;
use std::fmt;

/// One kernel knob.
pub struct Knob {
    /// `write-lock`.
    pub name: &'static str,
    /// How a value is written, for help: `DURATION`, `N`, `0|1|2`.
    pub value_name: &'static str,
    /// For enumerated knobs: every value with its meaning; empty for free-form ones.
    pub choices: &'static [(&'static str, &'static str)],
    /// What the knob models.
    pub help: &'static str,
    /// The default when it depends on the executor (else the default machine's value).
    pub default_note: Option<&'static str>,
    set: fn(&mut MachineConfig, &str) -> Result<(), String>,
    get: fn(&MachineConfig) -> String,
}

impl Knob {
    /// Set this knob of `cfg` from `value`.
    pub fn set(&self, cfg: &mut MachineConfig, value: &str) -> Result<(), KnobError> {
        if !self.choices.is_empty() && !self.choices.iter().any(|(v, _)| *v == value) {
            return Err(KnobError {
                knob: self.name.to_string(),
                value: value.to_string(),
                why: format!("expected {}", self.choice_list()),
            });
        }
        (self.set)(cfg, value).map_err(|why| KnobError {
            knob: self.name.to_string(),
            value: value.to_string(),
            why,
        })
    }

    /// This knob's value in `cfg`, as it would be written.
    pub fn get(&self, cfg: &MachineConfig) -> String {
        (self.get)(cfg)
    }

    /// `a, b or c`.
    pub fn choice_list(&self) -> String {
        let v: Vec<&str> = self.choices.iter().map(|(v, _)| *v).collect();
        match v.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
            _ => v.join(""),
        }
    }
}

/// A knob value that cannot be applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnobError {
    pub knob: String,
    pub value: String,
    pub why: String,
}

impl fmt::Display for KnobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.why.starts_with("unknown knob") {
            return f.write_str(&self.why);
        }
        write!(
            f,
            "invalid value '{}' for {}: {}",
            self.value, self.knob, self.why
        )
    }
}

impl std::error::Error for KnobError {}

fn lock_wait(v: &str) -> LockWait {
    match v {
        "killable" => LockWait::Killable,
        _ => LockWait::Uninterruptible,
    }
}

fn number<T>(v: &str, lo: T, hi: T) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
{
    let n: T = v
        .parse()
        .map_err(|_| format!("expected a whole number from {lo} to {hi}"))?;
    if n < lo || n > hi {
        return Err(format!("expected a whole number from {lo} to {hi}"));
    }
    Ok(n)
}

/// Every knob, in the order help and reports list them.
pub const KNOBS: &[Knob] = &[
    Knob {
        name: "write-lock",
        value_name: "WAIT",
        choices: &[
            ("killable", "down_write_killable(): a SIGKILL ends the wait with -EINTR (v4.7+)"),
            ("uninterruptible", "down_write(): the wait ignores SIGKILL (before the 2016 RFC)"),
        ],
        help: "How mmap/munmap/mprotect/mlock wait for mmap_lock for write (the 2016 RFC's question)",
        default_note: None,
        set: |c, v| {
            c.knobs.write_lock = lock_wait(v);
            Ok(())
        },
        get: |c| c.knobs.write_lock.name().into(),
    },
    Knob {
        name: "read-lock",
        value_name: "WAIT",
        choices: &[
            ("uninterruptible", "down_read() in the fault path (before v6.5)"),
            ("killable", "down_read_killable() in the fault path (v6.5+)"),
        ],
        help: "How page faults wait for mmap_lock for read",
        default_note: None,
        set: |c, v| {
            c.knobs.read_lock = lock_wait(v);
            Ok(())
        },
        get: |c| c.knobs.read_lock.name().into(),
    },
    Knob {
        name: "rwsem-model",
        value_name: "MODEL",
        choices: &[
            ("a", "v4.7 rwsem-xadd with the May-2016 down_write_killable() fix"),
            ("rfc-v1", "the 2016 RFC's bail-out before the May-2016 fix: a killed writer leaves a stale waiting bias"),
            ("b", "v6.6 rwsem.c: handoff, reader lock stealing, phase-fair reader wake"),
        ],
        help: "The rw_semaphore model behind mmap_lock",
        default_note: None,
        set: |c, v| {
            c.knobs.rwsem_model = match v {
                "rfc-v1" => RwSemModel::RfcV1,
                "b" => RwSemModel::B,
                _ => RwSemModel::A,
            };
            Ok(())
        },
        get: |c| c.knobs.rwsem_model.name().into(),
    },
    Knob {
        name: "rwsem-spin",
        value_name: "on|off",
        choices: &[
            ("off", "CONFIG_RWSEM_SPIN_ON_OWNER=n: every contended writer queues and sleeps"),
            ("on", "CONFIG_RWSEM_SPIN_ON_OWNER=y: writers spin on a running owner first (the SMP kernels distributions ship)"),
        ],
        help: "Writer optimistic spinning on mmap_lock (CONFIG_RWSEM_SPIN_ON_OWNER; def_bool y on SMP since v3.16, 4fc828e24cd9)",
        default_note: None,
        set: |c, v| {
            c.knobs.rwsem_spin = if v == "on" {
                RwSemSpin::On
            } else {
                RwSemSpin::Off
            };
            Ok(())
        },
        get: |c| c.knobs.rwsem_spin.name().into(),
    },
    Knob {
        name: "reaper",
        value_name: "on|off",
        choices: &[
            ("on", "the oom_reaper kthread runs (v4.6+)"),
            ("off", "no oom_reaper: a victim's memory comes back only when it exits"),
        ],
        help: "Run the oom_reaper kthread",
        default_note: None,
        set: |c, v| {
            c.reaper_on = v == "on";
            Ok(())
        },
        get: |c| if c.reaper_on { "on" } else { "off" }.into(),
    },
    Knob {
        name: "reaper-delay",
        value_name: "DURATION",
        choices: &[],
        help: "Delay before the reaper starts on a victim: 0 as in 2016, 2s as in >= 5.18 (OOM_REAPER_DELAY)",
        default_note: None,
        set: |c, v| {
            c.reaper.delay_ms = parse_duration_ms(v)?;
            Ok(())
        },
        get: |c| format_ms(c.reaper.delay_ms),
    },
    Knob {
        name: "reaper-retries",
        value_name: "N",
        choices: &[],
        help: "mmap_lock read-trylock attempts per victim before the reaper gives up (MAX_OOM_REAP_RETRIES), 0 to 10000",
        default_note: None,
        set: |c, v| {
            c.reaper.retries = number(v, 0u32, 10_000)?;
            Ok(())
        },
        get: |c| c.reaper.retries.to_string(),
    },
    Knob {
        name: "reaper-interval",
        value_name: "DURATION",
        choices: &[],
        help: "Sleep between two reaper attempts on one victim (HZ/10), at least 1ms",
        default_note: None,
        set: |c, v| {
            let ms = parse_duration_ms(v)?;
            if ms == 0 {
                return Err("must be at least 1ms".into());
            }
            c.reaper.interval_ms = ms;
            Ok(())
        },
        get: |c| format_ms(c.reaper.interval_ms),
    },
    Knob {
        name: "panic-on-oom",
        value_name: "0|1|2",
        choices: &[
            ("0", "kill a victim"),
            ("1", "panic on a system-wide OOM"),
            ("2", "always panic"),
        ],
        help: "vm.panic_on_oom (an emulated panic ends the run with exit status 3)",
        default_note: None,
        set: |c, v| {
            c.oom.panic_on_oom = number(v, 0u8, 2)?;
            Ok(())
        },
        get: |c| c.oom.panic_on_oom.to_string(),
    },
    Knob {
        name: "oom-kill-allocating-task",
        value_name: "0|1",
        choices: &[
            ("0", "select the victim by badness"),
            ("1", "kill the task whose allocation failed"),
        ],
        help: "vm.oom_kill_allocating_task",
        default_note: None,
        set: |c, v| {
            c.oom.oom_kill_allocating_task = v == "1";
            Ok(())
        },
        get: |c| u8::from(c.oom.oom_kill_allocating_task).to_string(),
    },
    Knob {
        name: "oom-dump-tasks",
        value_name: "0|1",
        choices: &[
            ("1", "print the task table at each OOM kill"),
            ("0", "do not"),
        ],
        help: "vm.oom_dump_tasks",
        default_note: None,
        set: |c, v| {
            c.oom.oom_dump_tasks = v == "1";
            Ok(())
        },
        get: |c| u8::from(c.oom.oom_dump_tasks).to_string(),
    },
    Knob {
        name: "victim-gone-rule",
        value_name: "RULE",
        choices: &[
            ("mm-teardown", "wait until the victim's address space is torn down or MMF_OOM_SKIP"),
            ("process-released", "wait only while the victim process exists (a premature next victim is possible)"),
        ],
        help: "When the OOM killer stops waiting for a victim (the abort rule)",
        default_note: None,
        set: |c, v| {
            c.oom.victim_gone_rule = match v {
                "process-released" => VictimGoneRule::ProcessReleased,
                _ => VictimGoneRule::MmTeardown,
            };
            Ok(())
        },
        get: |c| c.oom.victim_gone_rule.name().into(),
    },
    Knob {
        name: "livelock-window",
        value_name: "DURATION",
        choices: &[],
        help: "No progress for this long while tasks wait for memory is a livelock (explained, then recovered with a sysrq-f kill)",
        default_note: Some("30s emulated on the sim executor, 5s wall clock on the threads executor"),
        set: |c, v| {
            let d = parse_duration(v)?;
            if d.is_zero() {
                return Err("must be more than zero".into());
            }
            if let Some(w) = c.watchdog.as_mut() {
                w.window_ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
            }
            Ok(())
        },
        get: |c| {
            let ns = c.livelock_window_ns();
            if ns % 1_000_000 == 0 {
                format_ms(ns / 1_000_000)
            } else {
                format!("{ns}ns")
            }
        },
    },
];

/// The knob called `name`.
pub fn find(name: &str) -> Option<&'static Knob> {
    KNOBS.iter().find(|k| k.name == name)
}

impl MachineConfig {
    /// Set knob `name` to `value`.
    pub fn set_knob(&mut self, name: &str, value: &str) -> Result<(), KnobError> {
        let Some(k) = find(name) else {
            let names: Vec<&str> = KNOBS.iter().map(|k| k.name).collect();
            return Err(KnobError {
                knob: name.to_string(),
                value: value.to_string(),
                why: format!("unknown knob '{name}' (known: {})", names.join(", ")),
            });
        };
        k.set(self, value)
    }

    /// Every knob with its value, in [`KNOBS`] order.
    pub fn knob_values(&self) -> Vec<(&'static str, String)> {
        KNOBS.iter().map(|k| (k.name, k.get(self))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_knob_round_trips_its_values() {
        for k in KNOBS {
            let mut c = MachineConfig::sim(16 << 20);
            let values: Vec<&str> = if k.choices.is_empty() {
                match k.value_name {
                    "DURATION" => vec!["1ms", "250ms", "2s", "10m"],
                    _ => vec!["1", "3", "10"],
                }
            } else {
                k.choices.iter().map(|(v, _)| *v).collect()
            };
            for v in values {
                c.set_knob(k.name, v).unwrap();
                assert_eq!(k.get(&c), v, "{}", k.name);
            }
        }
    }

    #[test]
    fn knobs_are_independent() {
        let mut a = MachineConfig::sim(16 << 20);
        a.set_knob("reaper", "off").unwrap();
        a.set_knob("reaper-delay", "2s").unwrap();
        let mut b = MachineConfig::sim(16 << 20);
        b.set_knob("reaper-delay", "2s").unwrap();
        b.set_knob("reaper", "off").unwrap();
        assert_eq!(a, b);
        assert!(!a.reaper_on);
        assert_eq!(a.reaper.delay_ms, 2000);
    }

    #[test]
    fn bad_values_say_what_is_accepted() {
        let mut c = MachineConfig::sim(16 << 20);
        let e = c.set_knob("write-lock", "sometimes").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid value 'sometimes' for write-lock: expected killable or uninterruptible"
        );
        let e = c.set_knob("reaper-retries", "-1").unwrap_err();
        assert!(e.to_string().contains("from 0 to 10000"), "{e}");
        let e = c.set_knob("reaper-interval", "0").unwrap_err();
        assert!(e.to_string().contains("at least 1ms"), "{e}");
        let e = c.set_knob("no-such", "1").unwrap_err();
        assert!(e.to_string().starts_with("unknown knob 'no-such'"), "{e}");
        assert_eq!(c, MachineConfig::sim(16 << 20), "nothing half-applied");
    }
}
