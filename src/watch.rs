//! Watching a run from outside the machine, on a host thread of its own: the kernel log
//! streamed to `--log` as it is printed, the metrics publisher (rare events drained every
//! tick, counters folded into the recorder once a second), and the progress line. It only
//! reads the kernel's counters, event stream and log, so it never changes what the run does,
//! on either executor (on the sim it runs beside the stepping thread).

use crate::telemetry::progress::Progress;
use crate::telemetry::publisher::{Publisher, Sample};
use mm::sched::Clock;
use reaper::machine::Kernel;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the watcher looks (the log, the event stream).
const PERIOD: Duration = Duration::from_millis(100);
/// How often it samples the counters (the publisher's and the progress line's rate: ≤ 1 Hz).
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Where the kernel log goes.
pub enum LogSink {
    Stdout,
    File(std::fs::File),
}

/// What to watch for.
#[derive(Default)]
pub struct Watch {
    pub log: Option<LogSink>,
    pub publisher: Option<Publisher>,
    pub progress: Option<Progress>,
}

impl Watch {
    fn is_empty(&self) -> bool {
        self.log.is_none() && self.publisher.is_none() && self.progress.is_none()
    }
}

/// A running watcher; [`Watcher::finish`] drains what is left, publishes the final values and
/// returns the first write error of the log, if any.
pub struct Watcher {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<std::io::Result<()>>>,
}

impl Watcher {
    /// Watch the machine of `kernel` (whose load starts now, by `clock`) until
    /// [`Watcher::finish`].
    pub fn start(kernel: Arc<Kernel>, clock: Clock, mut w: Watch) -> Watcher {
        let stop = Arc::new(AtomicBool::new(false));
        if w.is_empty() {
            return Watcher { stop, handle: None };
        }
        let s2 = stop.clone();
        let start_ns = clock();
        let handle = std::thread::Builder::new()
            .name("oomlab-watch".into())
            .spawn(move || {
                let mut log = w.log.take().map(|sink| {
                    let out: Box<dyn Write> = match sink {
                        LogSink::Stdout => Box::new(std::io::stdout()),
                        LogSink::File(f) => Box::new(std::io::BufWriter::new(f)),
                    };
                    (out, 0u64)
                });
                let mut next_sample = Instant::now();
                // A log that cannot be written stops; the rest of the watch goes on.
                let mut log_error = None;
                loop {
                    let last = s2.load(Ordering::SeqCst);
                    if let Some((out, seq)) = &mut log {
                        let mut write = || -> std::io::Result<u64> {
                            let (lines, next, missed) = kernel.log.since(*seq);
                            if missed > 0 {
                                writeln!(out, "[... {missed} kernel log lines dropped ...]")?;
                            }
                            for l in lines {
                                writeln!(out, "{l}")?;
                            }
                            out.flush()?;
                            Ok(next)
                        };
                        let written = match &w.progress {
                            Some(p) => p.suspend(write),
                            None => write(),
                        };
                        match written {
                            Ok(next) => *seq = next,
                            Err(e) => {
                                log_error = Some(e);
                                log = None;
                            }
                        }
                    }
                    if let Some(p) = &mut w.publisher {
                        p.drain_events();
                    }
                    if last || Instant::now() >= next_sample {
                        next_sample = Instant::now() + SAMPLE_EVERY;
                        let s = Sample::take(&kernel, clock().saturating_sub(start_ns));
                        if let Some(p) = &mut w.publisher {
                            p.publish(&s, last);
                        }
                        if let Some(p) = &mut w.progress {
                            if last {
                                p.finish();
                            } else {
                                p.update(&s);
                            }
                        }
                    }
                    if last {
                        return log_error.map_or(Ok(()), Err);
                    }
                    std::thread::sleep(PERIOD);
                }
            })
            .expect("starting the watcher thread");
        Watcher {
            stop,
            handle: Some(handle),
        }
    }

    /// Drain the rest of the log, publish the final values and stop.
    pub fn finish(self) -> std::io::Result<()> {
        self.stop.store(true, Ordering::SeqCst);
        match self.handle {
            Some(h) => h.join().expect("the watcher thread panicked"),
            None => Ok(()),
        }
    }
}
