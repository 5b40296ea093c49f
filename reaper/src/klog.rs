//! The emulated kernel log (`printk` ring buffer, as `dmesg` prints it).
//!
//! Lines carry the emulated time of the task that printed them, formatted as dmesg does:
//! `[    12.345678] text`. The buffer is bounded (oldest lines dropped, counted), like the
//! kernel's ring buffer.

use parking_lot::Mutex;
use std::collections::VecDeque;
use std::fmt;

/// One log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    pub ts_ns: u64,
    pub text: String,
}

impl fmt::Display for LogLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{:5}.{:06}] {}",
            self.ts_ns / 1_000_000_000,
            (self.ts_ns % 1_000_000_000) / 1000,
            self.text
        )
    }
}

/// The log buffer: the newest `cap` lines, and how many older ones were dropped. Line `n`
/// of the machine's life (from 0) is at index `n - dropped` while it is kept.
pub struct KernelLog {
    lines: Mutex<(VecDeque<LogLine>, u64)>,
    cap: usize,
}

impl Default for KernelLog {
    fn default() -> Self {
        Self::new(100_000)
    }
}

impl KernelLog {
    /// A buffer of at most `cap` lines (the binary prints them; the library does no I/O).
    pub fn new(cap: usize) -> Self {
        KernelLog {
            lines: Mutex::new((VecDeque::new(), 0)),
            cap,
        }
    }

    /// `printk()`: append a line stamped with the current task's emulated time (0 outside
    /// tasks).
    pub fn printk(&self, text: impl Into<String>) {
        let ts_ns = if mm::sched::in_task() {
            mm::sched::ktime_get_ns()
        } else {
            0
        };
        let line = LogLine {
            ts_ns,
            text: text.into(),
        };
        let mut g = self.lines.lock();
        if g.0.len() >= self.cap {
            g.0.pop_front();
            g.1 += 1;
        }
        g.0.push_back(line);
    }

    /// A copy of the buffer.
    pub fn lines(&self) -> Vec<LogLine> {
        self.lines.lock().0.iter().cloned().collect()
    }

    /// The lines from number `seq` on (0 = the first line ever printed), the number to ask
    /// for next time, and how many lines from `seq` on were already dropped (a reader that
    /// falls more than the buffer behind misses them).
    pub fn since(&self, seq: u64) -> (Vec<LogLine>, u64, u64) {
        let g = self.lines.lock();
        let dropped = g.1;
        let next = dropped + g.0.len() as u64;
        let missed = dropped.saturating_sub(seq);
        let from = seq.saturating_sub(dropped) as usize;
        (g.0.iter().skip(from).cloned().collect(), next, missed)
    }

    /// Lines dropped because the buffer was full.
    pub fn dropped(&self) -> u64 {
        self.lines.lock().1
    }

    /// Lines containing `pat`.
    pub fn grep(&self, pat: &str) -> Vec<LogLine> {
        self.lines
            .lock()
            .0
            .iter()
            .filter(|l| l.text.contains(pat))
            .cloned()
            .collect()
    }
}

/// `___ratelimit()` with `DEFAULT_RATELIMIT_INTERVAL` (5 s) and `DEFAULT_RATELIMIT_BURST` (10),
/// as `oom_rs` uses for `dump_header()`.
pub struct RateLimit {
    state: Mutex<(u64, u32)>,
    interval_ns: u64,
    burst: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            state: Mutex::new((0, 0)),
            interval_ns: 5_000_000_000,
            burst: 10,
        }
    }
}

impl RateLimit {
    /// True if the caller may print now.
    pub fn allow(&self, now_ns: u64) -> bool {
        let mut g = self.state.lock();
        if g.1 == 0 || now_ns >= g.0 + self.interval_ns {
            *g = (now_ns, 0);
        }
        if g.1 < self.burst {
            g.1 += 1;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_reads_on_from_a_cursor_and_counts_what_was_missed() {
        let log = KernelLog::new(3);
        let texts = |v: Vec<LogLine>| v.into_iter().map(|l| l.text).collect::<Vec<_>>();
        log.printk("a");
        log.printk("b");
        let (l, next, missed) = log.since(0);
        assert_eq!(
            (texts(l), next, missed),
            (vec!["a".into(), "b".into()], 2, 0)
        );
        for t in ["c", "d", "e"] {
            log.printk(t);
        }
        // The buffer keeps c, d, e; a and b were dropped, and from 2 on nothing was missed.
        let (l, next, missed) = log.since(2);
        assert_eq!(
            (texts(l), next, missed),
            (vec!["c".into(), "d".into(), "e".into()], 5, 0)
        );
        log.printk("f");
        log.printk("g");
        // A reader at 5 missed f? No: f and g are kept (e, f, g).
        assert_eq!(texts(log.since(5).0), vec!["f", "g"]);
        // A reader still at 1 missed b, c, d.
        let (l, next, missed) = log.since(1);
        assert_eq!((texts(l).len(), next, missed), (3, 7, 3));
        assert_eq!(log.dropped(), 4);
    }
}
