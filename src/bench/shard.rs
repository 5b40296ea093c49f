//! Slices of the trials for running one bench on many machines: `--shard K/N` runs the K-th of
//! N disjoint slices; `--shard auto` takes K and N from the scheduler's environment.
//!
//! Trial `i` (configuration-major index over the whole bench) belongs to slice `i mod N + 1`:
//! round robin, so that every slice gets a share of every configuration (configurations differ
//! a lot in cost) and the slices' sizes differ by at most one trial.

use crate::plan::UsageError;

/// The K-th of N slices (1 ≤ K ≤ N).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// Trial `i` is in this slice.
    pub fn contains(&self, i: usize) -> bool {
        i % self.count as usize == (self.index - 1) as usize
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// What `--shard auto` reads: a Kubernetes Indexed Job sets `JOB_COMPLETION_INDEX` (0-based;
/// the manifest passes `.spec.completions` as `JOB_COMPLETIONS`), a Slurm job array sets
/// `SLURM_ARRAY_TASK_ID`, `SLURM_ARRAY_TASK_COUNT` and `SLURM_ARRAY_TASK_MIN`.
pub const AUTO_VARS: &str = "JOB_COMPLETION_INDEX with JOB_COMPLETIONS (Kubernetes Indexed Job), \
                             or SLURM_ARRAY_TASK_ID with SLURM_ARRAY_TASK_COUNT (Slurm job array)";

/// Parse `--shard K/N` or `--shard auto` (`env` looks a variable up).
pub fn parse(s: &str, env: impl Fn(&str) -> Option<String>) -> Result<Shard, UsageError> {
    if s == "auto" {
        return auto(env);
    }
    let bad = |why: &str| {
        UsageError(format!(
            "--shard '{s}': {why} (expected K/N with 1 <= K <= N, e.g. 2/4, or auto)"
        ))
    };
    let (k, n) = s.split_once('/').ok_or_else(|| bad("not K/N"))?;
    let k: u32 = k.parse().map_err(|_| bad("K is not a whole number"))?;
    let n: u32 = n.parse().map_err(|_| bad("N is not a whole number"))?;
    if n == 0 {
        return Err(bad("N must be at least 1"));
    }
    if k == 0 || k > n {
        return Err(bad(&format!("K must be from 1 to {n}")));
    }
    Ok(Shard { index: k, count: n })
}

fn auto(env: impl Fn(&str) -> Option<String>) -> Result<Shard, UsageError> {
    let number = |var: &str| -> Result<Option<u64>, UsageError> {
        match env(var) {
            None => Ok(None),
            Some(v) => v.trim().parse::<u64>().map(Some).map_err(|_| {
                UsageError(format!("--shard auto: {var}='{v}' is not a whole number"))
            }),
        }
    };
    let (k0, n, source) = if let Some(index) = number("JOB_COMPLETION_INDEX")? {
        let n = number("JOB_COMPLETIONS")?.ok_or_else(|| {
            UsageError(
                "--shard auto: JOB_COMPLETION_INDEX is set but JOB_COMPLETIONS is not \
                 (set it to the Job's .spec.completions)"
                    .into(),
            )
        })?;
        (index, n, "JOB_COMPLETION_INDEX/JOB_COMPLETIONS")
    } else if let Some(id) = number("SLURM_ARRAY_TASK_ID")? {
        let n = number("SLURM_ARRAY_TASK_COUNT")?.ok_or_else(|| {
            UsageError(
                "--shard auto: SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not".into(),
            )
        })?;
        let min = number("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
        let k0 = id.checked_sub(min).ok_or_else(|| {
            UsageError(format!(
                "--shard auto: SLURM_ARRAY_TASK_ID {id} is below SLURM_ARRAY_TASK_MIN {min}"
            ))
        })?;
        (
            k0,
            n,
            "SLURM_ARRAY_TASK_ID-SLURM_ARRAY_TASK_MIN/SLURM_ARRAY_TASK_COUNT",
        )
    } else {
        return Err(UsageError(format!(
            "--shard auto: no scheduler environment found (set {AUTO_VARS}; on a GitHub \
             Actions matrix give --shard K/N)"
        )));
    };
    let n32 = u32::try_from(n).ok().filter(|&n| n >= 1);
    match n32 {
        Some(n) if k0 < u64::from(n) => Ok(Shard {
            index: k0 as u32 + 1,
            count: n,
        }),
        _ => Err(UsageError(format!(
            "--shard auto: {source} gives slice {} of {n}, not one of 1..={n} (the array \
             must be contiguous, step 1)",
            k0.saturating_add(1)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn explicit_slices() {
        assert_eq!(parse("2/4", env(&[])), Ok(Shard { index: 2, count: 4 }));
        for (s, needle) in [
            ("3/2", "K must be from 1 to 2"),
            ("0/2", "K must be from 1 to 2"),
            ("1/0", "N must be at least 1"),
            ("2", "not K/N"),
            ("a/2", "K is not"),
            ("1/-2", "N is not"),
        ] {
            let e = parse(s, env(&[])).unwrap_err().0;
            assert!(e.starts_with(&format!("--shard '{s}'")), "{e}");
            assert!(e.contains(needle), "{s}: {e}");
        }
    }

    #[test]
    fn auto_reads_kubernetes_and_slurm() {
        let k8s = [("JOB_COMPLETION_INDEX", "0"), ("JOB_COMPLETIONS", "4")];
        assert_eq!(parse("auto", env(&k8s)), Ok(Shard { index: 1, count: 4 }));
        let slurm = [
            ("SLURM_ARRAY_TASK_ID", "7"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
            ("SLURM_ARRAY_TASK_MIN", "5"),
        ];
        assert_eq!(parse("auto", env(&slurm)), Ok(Shard { index: 3, count: 4 }));
        for (vars, needle) in [
            (&[][..], "no scheduler environment"),
            (
                &[("JOB_COMPLETION_INDEX", "1")][..],
                "JOB_COMPLETIONS is not",
            ),
            (
                &[("JOB_COMPLETION_INDEX", "4"), ("JOB_COMPLETIONS", "4")][..],
                "slice 5 of 4",
            ),
            (
                &[("JOB_COMPLETION_INDEX", "x"), ("JOB_COMPLETIONS", "4")][..],
                "JOB_COMPLETION_INDEX='x'",
            ),
            (
                &[("SLURM_ARRAY_TASK_ID", "1")][..],
                "SLURM_ARRAY_TASK_COUNT",
            ),
        ] {
            let e = parse("auto", env(vars)).unwrap_err().0;
            assert!(e.contains(needle), "{vars:?}: {e}");
        }
    }

    #[test]
    fn slices_are_disjoint_and_cover_everything() {
        let n = 4;
        for i in 0..103 {
            let owners: Vec<u32> = (1..=n)
                .filter(|&k| Shard { index: k, count: n }.contains(i))
                .collect();
            assert_eq!(owners.len(), 1, "trial {i}");
        }
    }
}
