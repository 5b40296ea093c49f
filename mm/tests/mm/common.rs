//! Helpers shared by the executor integration tests.
#![allow(dead_code)]

use mm::task::CloneKind;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `fork()` of a new process named `comm`.
pub fn process(comm: &str) -> CloneKind {
    CloneKind::Process {
        comm: comm.to_string(),
    }
}

/// `clone(CLONE_THREAD)` into process `tgid`.
pub fn thread(tgid: u32) -> CloneKind {
    CloneKind::Thread { tgid }
}

/// An append-only event log shared between tasks and the test.
#[derive(Clone, Default)]
pub struct Log<T>(Arc<parking_lot::Mutex<Vec<T>>>);

impl<T: Clone> Log<T> {
    pub fn new() -> Self {
        Log(Arc::new(parking_lot::Mutex::new(Vec::new())))
    }
    pub fn push(&self, v: T) {
        self.0.lock().push(v);
    }
    pub fn snapshot(&self) -> Vec<T> {
        self.0.lock().clone()
    }
    pub fn len(&self) -> usize {
        self.0.lock().len()
    }
}

/// How long nothing may move before a wait below declares a hang.
pub const STALL: Duration = Duration::from_secs(60);

/// Poll `cond` (a test-side observation, outside the emulation) until it holds; panics with
/// `what` if it stays false for `stall`. For a single event (a task reaching a sleep state, a
/// wake-up arriving): a hang detector that turns a lost wake-up into a failure, not a time
/// budget for work. Waits for many steps use [`wait_progress`], which only fails when the
/// steps stop coming.
pub fn wait_until(stall: Duration, what: &str, cond: impl FnMut() -> bool) {
    wait_progress(stall, what, || 0, cond);
}

/// Poll until `done` holds. A watchdog, not a time budget: it fails only when `progress` (a
/// measure of the work done so far, e.g. a counter of moves or of tasks that reached a state)
/// stays unchanged for `stall`, i.e. when the system stopped moving, however slow or loaded
/// the host is.
pub fn wait_progress(
    stall: Duration,
    what: &str,
    mut progress: impl FnMut() -> u64,
    mut done: impl FnMut() -> bool,
) {
    let mut last = progress();
    let mut since = Instant::now();
    loop {
        if done() {
            return;
        }
        let now = progress();
        if now != last {
            (last, since) = (now, Instant::now());
        } else if since.elapsed() >= stall {
            panic!("no progress for {stall:?} (stuck at {last}) waiting for: {what}");
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// The message of a panic payload.
pub fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".to_string()
    }
}
