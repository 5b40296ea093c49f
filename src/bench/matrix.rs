//! The matrix of kernel configurations: axes `KNOB=V1,V2,...` (any knob of
//! [`reaper::knobs::KNOBS`], so knobs added later are axes at once), crossed in the order given,
//! the first axis outermost.

use crate::plan::UsageError;
use reaper::knobs::{self, KNOBS};
use reaper::machine::MachineConfig;

/// The default matrix: the 2016 RFC's question, write waits × the oom_reaper.
pub const DEFAULT_AXES: &[&str] = &["write-lock=uninterruptible,killable", "reaper=off,on"];

/// One axis: a knob and the values it takes, in the order given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Axis {
    pub knob: &'static str,
    pub values: Vec<String>,
}

impl Axis {
    /// `KNOB=V1,V2`.
    pub fn spec(&self) -> String {
        format!("{}={}", self.knob, self.values.join(","))
    }
}

/// One configuration of the matrix: a value per axis, and the machine it makes.
#[derive(Clone, Debug)]
pub struct Config {
    /// (knob, value) per axis, in axis order.
    pub knobs: Vec<(&'static str, String)>,
    /// The machine configuration: the bench's base with these knobs applied.
    pub machine: MachineConfig,
}

impl Config {
    /// `write-lock=uninterruptible reaper=off`: names the configuration everywhere.
    pub fn label(&self) -> String {
        label(&self.knobs)
    }
}

/// `k1=v1 k2=v2`.
pub fn label<S: AsRef<str>>(knobs: &[(S, String)]) -> String {
    let parts: Vec<String> = knobs
        .iter()
        .map(|(k, v)| format!("{}={v}", k.as_ref()))
        .collect();
    parts.join(" ")
}

/// Parse the `--matrix` flags (the default matrix when none is given). Every value is checked
/// by its knob.
pub fn parse_axes(specs: &[String]) -> Result<Vec<Axis>, UsageError> {
    let defaults: Vec<String>;
    let specs = if specs.is_empty() {
        defaults = DEFAULT_AXES.iter().map(|s| s.to_string()).collect();
        &defaults
    } else {
        specs
    };
    let mut axes: Vec<Axis> = Vec::new();
    for spec in specs {
        let bad = |why: String| UsageError(format!("--matrix '{spec}': {why}"));
        let Some((name, values)) = spec.split_once('=') else {
            return Err(bad(
                "expected KNOB=V1,V2,... (e.g. write-lock=uninterruptible,killable)".into(),
            ));
        };
        let Some(knob) = knobs::find(name) else {
            let names: Vec<&str> = KNOBS.iter().map(|k| k.name).collect();
            return Err(bad(format!(
                "unknown knob '{name}' (known: {})",
                names.join(", ")
            )));
        };
        if axes.iter().any(|a| a.knob == knob.name) {
            return Err(bad(format!(
                "{name} is already an axis; give all its values in one --matrix"
            )));
        }
        let mut vals: Vec<String> = Vec::new();
        for v in values.split(',') {
            if v.is_empty() {
                return Err(bad("an empty value".into()));
            }
            if vals.iter().any(|x| x == v) {
                return Err(bad(format!("value '{v}' given twice")));
            }
            knob.set(&mut MachineConfig::sim(16 << 20), v)
                .map_err(|e| bad(e.to_string()))?;
            vals.push(v.to_string());
        }
        axes.push(Axis {
            knob: knob.name,
            values: vals,
        });
    }
    Ok(axes)
}

/// Cross `axes` over `base`: every combination, the first axis outermost.
pub fn configs(axes: &[Axis], base: &MachineConfig) -> Result<Vec<Config>, UsageError> {
    let mut out = vec![Config {
        knobs: Vec::new(),
        machine: base.clone(),
    }];
    for axis in axes {
        let mut next = Vec::with_capacity(out.len() * axis.values.len());
        for c in &out {
            for v in &axis.values {
                let mut machine = c.machine.clone();
                machine
                    .set_knob(axis.knob, v)
                    .map_err(|e| UsageError(format!("--matrix {}: {e}", axis.spec())))?;
                let mut knobs = c.knobs.clone();
                knobs.push((axis.knob, v.clone()));
                next.push(Config { knobs, machine });
            }
        }
        out = next;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mm::mm_types::LockWait;

    fn specs(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn the_default_matrix_is_write_waits_by_reaper() {
        let axes = parse_axes(&[]).unwrap();
        let cs = configs(&axes, &MachineConfig::sim(8 << 20)).unwrap();
        let labels: Vec<String> = cs.iter().map(Config::label).collect();
        assert_eq!(
            labels,
            [
                "write-lock=uninterruptible reaper=off",
                "write-lock=uninterruptible reaper=on",
                "write-lock=killable reaper=off",
                "write-lock=killable reaper=on",
            ]
        );
        assert_eq!(cs[0].machine.knobs.write_lock, LockWait::Uninterruptible);
        assert!(!cs[0].machine.reaper_on);
        assert_eq!(cs[3].machine.knobs.write_lock, LockWait::Killable);
        assert!(cs[3].machine.reaper_on);
    }

    #[test]
    fn any_knob_is_an_axis() {
        for k in KNOBS {
            let v = k.get(&MachineConfig::sim(8 << 20));
            let axes = parse_axes(&specs(&[&format!("{}={v}", k.name)])).unwrap();
            assert_eq!(axes[0].knob, k.name);
        }
        let axes = parse_axes(&specs(&[
            "rwsem-model=a,rfc-v1",
            "reaper-delay=0,2s",
            "reaper=on",
        ]))
        .unwrap();
        let cs = configs(&axes, &MachineConfig::sim(8 << 20)).unwrap();
        assert_eq!(cs.len(), 4);
        assert_eq!(
            cs[3].label(),
            "rwsem-model=rfc-v1 reaper-delay=2s reaper=on"
        );
        assert_eq!(cs[3].machine.reaper.delay_ms, 2000);
    }

    #[test]
    fn bad_axes_say_what_was_wrong() {
        for (s, needle) in [
            ("frob=1,2", "unknown knob 'frob' (known: write-lock"),
            ("write-lock", "expected KNOB=V1,V2"),
            ("reaper=on,,off", "an empty value"),
            ("reaper=", "an empty value"),
            ("reaper=on,on", "value 'on' given twice"),
            (
                "reaper=maybe",
                "invalid value 'maybe' for reaper: expected on or off",
            ),
            ("reaper-retries=-1", "from 0 to 10000"),
        ] {
            let e = parse_axes(&specs(&[s])).unwrap_err().0;
            assert!(e.starts_with(&format!("--matrix '{s}': ")), "{e}");
            assert!(e.contains(needle), "{s}: {e}");
        }
        let e = parse_axes(&specs(&["reaper=on", "reaper=off"]))
            .unwrap_err()
            .0;
        assert!(e.contains("already an axis"), "{e}");
    }
}
