//! The live progress of `oomlab run` on stderr: elapsed of the bound, faults/s, free memory,
//! OOM kills, reaps, give-ups and livelocks. On a terminal an indicatif line redrawn every
//! second and cleared before the summary; otherwise (a pipe, a file, CI) a plain line every
//! 5 s. `--quiet` turns both off.

use super::publisher::Sample;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use mm::vmstat::VmEvent;
use reaper::units::format_size;
use std::io::Write;
use std::time::{Duration, Instant};

/// How often the plain line is printed.
pub const PLAIN_EVERY: Duration = Duration::from_secs(5);

enum Out {
    Bar(ProgressBar),
    /// When the last line was printed (the first comes after [`PLAIN_EVERY`]).
    Plain {
        last: Instant,
    },
}

/// The progress display of one run.
pub struct Progress {
    out: Out,
    bound_ns: u64,
    total_bytes: u64,
    /// (elapsed ns, faults) at the previous update, for the rate.
    prev: Option<(u64, u64)>,
}

impl Progress {
    /// A progress display for a run of `bound_ns` on a machine of `total_bytes`: a redrawn
    /// line if `terminal`, plain lines otherwise.
    pub fn new(terminal: bool, bound_ns: u64, total_bytes: u64) -> Progress {
        let out = if terminal {
            let bar = ProgressBar::with_draw_target(
                Some(bound_ns / 1_000_000),
                ProgressDrawTarget::stderr(),
            );
            bar.set_style(
                ProgressStyle::with_template("{bar:24} {msg}")
                    .expect("a valid template")
                    .progress_chars("=> "),
            );
            Out::Bar(bar)
        } else {
            Out::Plain {
                last: Instant::now(),
            }
        };
        Progress {
            out,
            bound_ns,
            total_bytes,
            prev: None,
        }
    }

    /// The line for sample `s`.
    pub fn line(&mut self, s: &Sample) -> String {
        let faults = s.vm_event(VmEvent::Pgfault);
        let rate = match self.prev {
            Some((t0, f0)) if s.elapsed_ns > t0 => {
                (faults - f0) as f64 / ((s.elapsed_ns - t0) as f64 / 1e9)
            }
            _ => 0.0,
        };
        self.prev = Some((s.elapsed_ns, faults));
        format!(
            "{:.0}s/{:.0}s  {} faults/s  free {} of {}  {} OOM kills  {} reaps  {} give-ups  {} livelocks",
            s.elapsed_ns as f64 / 1e9,
            self.bound_ns as f64 / 1e9,
            si(rate),
            format_size(s.free_bytes()),
            format_size(self.total_bytes),
            s.oom.kills,
            s.reaper.reaped,
            s.reaper.gave_up,
            s.livelocks
        )
    }

    /// Show sample `s` (the plain line only every [`PLAIN_EVERY`]).
    pub fn update(&mut self, s: &Sample) {
        let line = self.line(s);
        match &mut self.out {
            Out::Bar(bar) => {
                bar.set_position(s.elapsed_ns / 1_000_000);
                bar.set_message(line);
            }
            Out::Plain { last } => {
                if last.elapsed() >= PLAIN_EVERY {
                    *last = Instant::now();
                    let _ = writeln!(std::io::stderr(), "oomlab run: {line}");
                }
            }
        }
    }

    /// Run `f` (which writes to the terminal) with the redrawn line out of the way.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.out {
            Out::Bar(bar) => bar.suspend(f),
            Out::Plain { .. } => f(),
        }
    }

    /// The run ended: clear the redrawn line (the summary follows).
    pub fn finish(&self) {
        if let Out::Bar(bar) = &self.out {
            bar.finish_and_clear();
        }
    }
}

/// `n` with an SI prefix: 950, 12.3k, 1.23M.
fn si(n: f64) -> String {
    if n >= 1e6 {
        format!("{:.2}M", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1}k", n / 1e3)
    } else {
        format!("{n:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn si_prefixes() {
        assert_eq!(si(950.4), "950");
        assert_eq!(si(12_345.0), "12.3k");
        assert_eq!(si(1_234_567.0), "1.23M");
    }
}
