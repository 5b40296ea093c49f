//! The interim `oomlab run`: a token ring on the sim executor, exercising the scheduler seam
//! end to end until the memory manager (issue 3) gives `run` its real workload.
//!
//! `TASKS` emulated processes pass one token around a ring `ROUNDS` times. A task waits for
//! the token with the kernel's sleep protocol (`set_current_state(TASK_UNINTERRUPTIBLE)`,
//! re-check, `schedule()`), hands it on with `wake_up_process()`, then sleeps a few jiffies
//! with `schedule_timeout_uninterruptible()` so that timers and the virtual clock take part,
//! and several tasks are runnable at once for the seeded picker to choose among. The result
//! is a pure function of the seed; this module does no I/O (main.rs prints it).

use mm::sched::sim::{Sim, SimConfig, SimOutcome};
use mm::sched::{
    __set_current_state, cond_resched, schedule, schedule_timeout_uninterruptible,
    set_current_state, wake_up_process,
};
use mm::task::state::{TASK_RUNNING, TASK_UNINTERRUPTIBLE};
use mm::task::{CloneKind, Task};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// Processes in the ring.
pub const TASKS: usize = 64;
/// Times the token goes round.
pub const ROUNDS: usize = 16;

/// What one demo run did.
#[derive(Debug, PartialEq, Eq)]
pub struct DemoSummary {
    pub seed: u64,
    pub tasks: usize,
    pub token_passes: usize,
    pub steps: u64,
    pub virtual_ns: u64,
    pub trace_hash: u64,
    pub outcome: SimOutcome,
}

struct Ring {
    /// Index of the task that may take the token next.
    token: AtomicUsize,
    passes: AtomicUsize,
    tasks: OnceLock<Vec<Arc<Task>>>,
}

/// Run the token ring once on a fresh sim executor seeded with `seed`.
pub fn run_token_ring(seed: u64) -> DemoSummary {
    let mut sim = Sim::new(SimConfig {
        seed,
        // Bounds far above what the ring needs (about 4 steps per pass): every run ends.
        max_steps: 1_000_000,
        max_time_ns: 60 * 1_000_000_000,
        ..SimConfig::default()
    });
    let ring = Arc::new(Ring {
        token: AtomicUsize::new(0),
        passes: AtomicUsize::new(0),
        tasks: OnceLock::new(),
    });
    let tasks = (0..TASKS)
        .map(|me| {
            let ring = ring.clone();
            sim.spawn(
                CloneKind::Process {
                    comm: format!("ring/{me}"),
                },
                move || ring_task(&ring, me),
            )
            .expect("creating a process on a fresh sim")
        })
        .collect();
    // Tasks only start running inside `sim.run()`, after the ring is complete.
    assert!(ring.tasks.set(tasks).is_ok(), "ring filled twice");
    let outcome = sim.run();
    DemoSummary {
        seed,
        tasks: TASKS,
        token_passes: ring.passes.load(Ordering::SeqCst),
        steps: sim.steps(),
        virtual_ns: sim.now_ns(),
        trace_hash: sim.trace_hash(),
        outcome,
    }
}

fn ring_task(ring: &Ring, me: usize) {
    let tasks = ring.tasks.get().expect("ring started before it was filled");
    let next = &tasks[(me + 1) % TASKS];
    for _ in 0..ROUNDS {
        loop {
            set_current_state(TASK_UNINTERRUPTIBLE);
            if ring.token.load(Ordering::SeqCst) == me {
                break;
            }
            schedule();
        }
        __set_current_state(TASK_RUNNING);
        cond_resched();
        ring.passes.fetch_add(1, Ordering::SeqCst);
        ring.token.store((me + 1) % TASKS, Ordering::SeqCst);
        wake_up_process(next);
        schedule_timeout_uninterruptible(1 + (me % 3) as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_completes_every_pass() {
        let s = run_token_ring(0);
        assert_eq!(s.outcome, SimOutcome::AllExited);
        assert_eq!(s.token_passes, TASKS * ROUNDS);
        assert!(s.virtual_ns > 0);
    }

    #[test]
    fn same_seed_same_run_other_seed_other_interleaving() {
        assert_eq!(run_token_ring(42), run_token_ring(42));
        assert_ne!(run_token_ring(1).trace_hash, run_token_ring(2).trace_hash);
    }
}
