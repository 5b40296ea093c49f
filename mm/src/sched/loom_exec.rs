//! The loom executor (only with `--cfg oomlab_loom`): every emulated task is a loom thread;
//! `schedule()` parks until the state word is TASK_RUNNING, `try_to_wake_up()` unparks.
//! Time stands still unless the model moves it ([`LoomKernel::advance_time`], e.g. to expire an
//! rwsem waiter's handoff timeout); timed sleeps are not modelled under loom.

use crate::sync::Ordering;
use crate::task::{state::*, CloneKind, ExecHandle, Task, TaskList};
use std::sync::Arc;

pub struct LoomShared {
    pub(crate) tasks: TaskList,
    /// The model's clock, moved only by [`LoomKernel::advance_time`].
    now_ns: std::sync::atomic::AtomicU64,
}

impl LoomShared {
    pub(crate) fn now_ns(&self) -> u64 {
        self.now_ns.load(std::sync::atomic::Ordering::SeqCst)
    }
    pub(crate) fn block(&self, t: &Task, deadline_ns: Option<u64>) {
        assert!(
            deadline_ns.is_none(),
            "timeouts are not modelled under loom"
        );
        while t.state.load(Ordering::SeqCst) != TASK_RUNNING {
            loom::thread::park();
        }
    }
}

/// A loom model's emulated machine.
#[derive(Clone)]
pub struct LoomKernel(Arc<LoomShared>);

impl Default for LoomKernel {
    fn default() -> Self {
        Self::new()
    }
}

impl LoomKernel {
    pub fn new() -> Self {
        LoomKernel(Arc::new(LoomShared {
            tasks: TaskList::new(),
            now_ns: std::sync::atomic::AtomicU64::new(0),
        }))
    }

    /// Move the model's clock forward by `ns` (`jiffies` follow at HZ=1000). A plain std
    /// atomic, not a loom one: moving time is not a synchronisation point of the model, and
    /// each execution sees the clock its own schedule produced.
    pub fn advance_time(&self, ns: u64) {
        self.0
            .now_ns
            .fetch_add(ns, std::sync::atomic::Ordering::SeqCst);
    }

    /// Turn the calling loom thread into a new process's task until the guard drops.
    pub fn enter(&self, comm: &str) -> LoomTaskGuard {
        let t = self
            .0
            .tasks
            .create(
                &CloneKind::Process {
                    comm: comm.to_string(),
                },
                |_| ExecHandle::Loom(loom::thread::current(), self.0.clone()),
            )
            .expect("creating a loom task");
        super::set_current_ptr(Arc::as_ptr(&t));
        LoomTaskGuard(t, self.0.clone())
    }
}

/// Keeps the loom thread's task current; on drop the task exits.
pub struct LoomTaskGuard(Arc<Task>, Arc<LoomShared>);

impl LoomTaskGuard {
    pub fn task(&self) -> &Arc<Task> {
        &self.0
    }
}

impl Drop for LoomTaskGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // loom is unwinding (e.g. it found a deadlock): leave its thread-locals alone.
            return;
        }
        super::set_current_ptr(std::ptr::null());
        self.0.mark_exited();
        self.1.tasks.release(&self.0);
    }
}
