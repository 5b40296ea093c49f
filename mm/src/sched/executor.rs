//! What a machine's lifecycle needs of an executor, so that boot → run → finish is written once
//! for both executors (`reaper::machine::Machine` is generic over this trait).
//!
//! The two executors differ in who moves the tasks: the sim runs them itself, step by step, in
//! [`Executor::run_until`]; the threads executor's tasks run on their own OS threads and
//! `run_until` only watches them. Either way the caller sees the same four ways a phase ends.

use super::sim::{DeadlockReport, Sim, SimOutcome};
use super::threads::ThreadsExecutor;
use crate::task::{CloneError, CloneKind, Task, TaskList};
use std::sync::Arc;
use std::time::Duration;

/// How [`Executor::run_until`] ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunStop {
    /// The caller's condition held.
    Reached,
    /// Every task exited.
    AllExited,
    /// The executor's clock passed the deadline (or the sim's own time/step bound) with tasks
    /// left.
    Deadline,
    /// Sim only: tasks remain, none is runnable and no timer is pending.
    Deadlock(DeadlockReport),
}

/// The executor's clock ([`Executor::now_ns`]) for a host thread that watches a run from
/// outside (a metrics publisher, a progress line): it only reads, on either executor.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// An executor of emulated tasks, as the machine lifecycle drives it.
pub trait Executor {
    /// `"sim"` or `"threads"`.
    fn name(&self) -> &'static str;
    /// The same seed replays the same run, byte for byte.
    fn is_deterministic(&self) -> bool;
    /// The process list of this emulated machine.
    fn tasks(&self) -> &Arc<TaskList>;
    /// The executor's clock: emulated ns since it started.
    fn now_ns(&self) -> u64;
    /// The same clock, readable from any host thread.
    fn clock(&self) -> Clock;
    /// Create a task running `f` (`kernel_clone()` from outside the machine).
    fn spawn_task(
        &mut self,
        kind: CloneKind,
        f: Box<dyn FnOnce() + Send>,
    ) -> Result<Arc<Task>, CloneError>;
    /// Let the tasks run until `until()` holds, every task exited, or the clock passes
    /// `deadline_ns`. `until` is checked before anything runs.
    fn run_until(&mut self, deadline_ns: u64, until: &mut dyn FnMut() -> bool) -> RunStop;
    /// Every task exited: give their host resources back (join the threads).
    fn join(self);
    /// Tasks are left that will never exit: stop driving them and give back what can be
    /// given back without waiting for them (the threads executor leaks their threads, which
    /// end with the process; the sim drops their stacks unwound).
    fn abandon(self);
}

impl Executor for Sim {
    fn name(&self) -> &'static str {
        "sim"
    }
    fn is_deterministic(&self) -> bool {
        true
    }
    fn tasks(&self) -> &Arc<TaskList> {
        Sim::tasks(self)
    }
    fn now_ns(&self) -> u64 {
        Sim::now_ns(self)
    }
    fn clock(&self) -> Clock {
        let shared = self.shared().clone();
        Arc::new(move || shared.now_ns())
    }
    fn spawn_task(
        &mut self,
        kind: CloneKind,
        f: Box<dyn FnOnce() + Send>,
    ) -> Result<Arc<Task>, CloneError> {
        self.spawn(kind, f)
    }
    fn run_until(&mut self, deadline_ns: u64, until: &mut dyn FnMut() -> bool) -> RunStop {
        match self.run_until_deadline(deadline_ns, |_| until()) {
            SimOutcome::Stopped => RunStop::Reached,
            SimOutcome::AllExited => RunStop::AllExited,
            SimOutcome::TimeLimit | SimOutcome::StepLimit => RunStop::Deadline,
            SimOutcome::Deadlock(r) => RunStop::Deadlock(r),
        }
    }
    fn join(self) {}
    fn abandon(self) {}
}

/// How often the threads executor's [`Executor::run_until`] looks at the condition.
const POLL: Duration = Duration::from_millis(10);

impl Executor for ThreadsExecutor {
    fn name(&self) -> &'static str {
        "threads"
    }
    fn is_deterministic(&self) -> bool {
        false
    }
    fn tasks(&self) -> &Arc<TaskList> {
        ThreadsExecutor::tasks(self)
    }
    fn now_ns(&self) -> u64 {
        ThreadsExecutor::now_ns(self)
    }
    fn clock(&self) -> Clock {
        let shared = self.shared().clone();
        Arc::new(move || shared.now_ns())
    }
    fn spawn_task(
        &mut self,
        kind: CloneKind,
        f: Box<dyn FnOnce() + Send>,
    ) -> Result<Arc<Task>, CloneError> {
        self.spawn(kind, f)
    }
    fn run_until(&mut self, deadline_ns: u64, until: &mut dyn FnMut() -> bool) -> RunStop {
        loop {
            if until() {
                return RunStop::Reached;
            }
            if self.tasks().nr_tasks() == 0 {
                return RunStop::AllExited;
            }
            let now = self.now_ns();
            if now >= deadline_ns {
                return RunStop::Deadline;
            }
            std::thread::sleep(POLL.min(Duration::from_nanos(deadline_ns - now)));
        }
    }
    fn join(self) {
        ThreadsExecutor::join(&self);
    }
    fn abandon(self) {
        // The tasks left sleep for good; joining would wait forever, and dropping would join.
        std::mem::forget(self);
    }
}
