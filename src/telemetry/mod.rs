//! What `oomlab run` shows of itself while it runs: Prometheus metrics on an HTTP endpoint
//! (`--metrics-addr`, `--no-metrics`, `--metrics-linger`), a live progress line (`--quiet`
//! turns it off), and the Grafana dashboard and Prometheus scrape config under `dashboards/`.
//!
//! - [`catalog`]: every metric, declared once.
//! - [`publisher`]: folds the machine's plain counters and rare events into the recorder, at
//!   most once a second, on the watcher thread (`watch.rs`).
//! - [`progress`]: the progress line (indicatif on a terminal, a plain line every 5 s
//!   otherwise).
//! - `dashboard` (tests only): generates the dashboard and scrape config from the catalog
//!   and checks the committed files.
//!
//! Architecture invariant: the library crates never call the metrics facade. They keep plain
//! counters (per-task event counters, the OOM killer's, the reaper's and the watchdog's
//! atomics) and one bounded stream of rare events (`reaper::events`); the publisher reads
//! them from outside the machine.

pub mod catalog;
// The generator of `dashboards/`, run as a test (rust-analyzer's `sourcegen` pattern).
#[cfg(test)]
mod dashboard;
pub mod progress;
pub mod publisher;

use crate::plan::UsageError;
use anyhow::{anyhow, Result};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

/// Tries at a free port when `--metrics-addr` has port 0 (another process may take the port
/// between the probe and the exporter's bind).
const PORT_0_TRIES: usize = 5;

/// Start the Prometheus exporter on `addr` (port 0: a free port the OS chooses), install it
/// as the process's recorder and describe every metric. Returns the address it listens on.
/// An address it cannot listen on is a usage error naming `--metrics-addr`.
pub fn serve(addr: SocketAddr) -> Result<SocketAddr> {
    let mut tries = 0;
    loop {
        tries += 1;
        let target = if addr.port() == 0 {
            let probe = TcpListener::bind(addr).map_err(|e| cannot_listen(addr, &e))?;
            probe.local_addr()?
        } else {
            addr
        };
        match builder().with_http_listener(target).install() {
            Ok(()) => {
                catalog::describe_all();
                return Ok(target);
            }
            Err(BuildError::FailedToCreateHTTPListener(e)) => {
                if addr.port() == 0 && tries < PORT_0_TRIES {
                    continue;
                }
                return Err(cannot_listen(addr, &e).into());
            }
            Err(e) => return Err(anyhow!("starting the metrics exporter: {e}")),
        }
    }
}

fn cannot_listen(addr: SocketAddr, why: &dyn std::fmt::Display) -> UsageError {
    UsageError(format!(
        "--metrics-addr {addr}: cannot listen there ({why}); give another address or --no-metrics"
    ))
}

/// The exporter with every histogram's buckets from the catalog (none is a summary).
fn builder() -> PrometheusBuilder {
    let mut b = PrometheusBuilder::new();
    for m in catalog::ALL
        .iter()
        .filter(|m| m.kind == catalog::Kind::Histogram)
    {
        b = b
            .set_buckets_for_metric(Matcher::Full(m.name.to_string()), m.buckets)
            .expect("every histogram declares its buckets");
    }
    b
}

/// Keep serving the final values for `linger` after the summary (`--metrics-linger`), so that
/// a scraper sees the end of a short run; a signal (see `run.rs`) cuts it short.
pub fn linger(linger: Duration, interrupt: &AtomicI32) {
    let start = Instant::now();
    let signal = interrupt.load(Ordering::SeqCst);
    while start.elapsed() < linger && interrupt.load(Ordering::SeqCst) == signal {
        std::thread::sleep(Duration::from_millis(50).min(linger - start.elapsed().min(linger)));
    }
}
