//! Watching a run from outside the machine, on a host thread of its own: the kernel log
//! streamed to `--log` as it is printed. (The metrics publisher joins it.) It only reads the
//! kernel's counters and log, so it never changes what the run does, on either executor.

use reaper::klog::KernelLog;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the watcher looks.
const PERIOD: Duration = Duration::from_millis(100);

/// Where the kernel log goes.
pub enum LogSink {
    Stdout,
    File(std::fs::File),
}

/// A running watcher; [`Watcher::finish`] drains what is left and returns the first write
/// error, if any.
pub struct Watcher {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<std::io::Result<()>>,
}

impl Watcher {
    /// Stream `log` to `sink` until [`Watcher::finish`].
    pub fn start(log: Arc<KernelLog>, sink: LogSink) -> Watcher {
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let handle = std::thread::Builder::new()
            .name("oomlab-watch".into())
            .spawn(move || {
                let mut out: Box<dyn Write> = match sink {
                    LogSink::Stdout => Box::new(std::io::stdout()),
                    LogSink::File(f) => Box::new(std::io::BufWriter::new(f)),
                };
                let mut seq = 0;
                loop {
                    let last = s2.load(Ordering::SeqCst);
                    let (lines, next, missed) = log.since(seq);
                    if missed > 0 {
                        writeln!(out, "[... {missed} kernel log lines dropped ...]")?;
                    }
                    for l in lines {
                        writeln!(out, "{l}")?;
                    }
                    out.flush()?;
                    seq = next;
                    if last {
                        return Ok(());
                    }
                    std::thread::sleep(PERIOD);
                }
            })
            .expect("starting the watcher thread");
        Watcher { stop, handle }
    }

    /// Drain the rest of the log and stop.
    pub fn finish(self) -> std::io::Result<()> {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().expect("the watcher thread panicked")
    }
}
