//! The `oomlab` binary as a user meets it, one test binary (one link): the command line (help,
//! exit statuses, one-line errors, run, scenario and scenario files), the livelock-rate bench
//! (jobs, shards and merge, outputs, the gate), and the metrics endpoint against a real
//! Prometheus.

mod bench;
mod cli;
mod metrics;
