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

/// Poll `cond` (a test-side observation, outside the emulation) until it holds or `timeout`
/// passes; panics with `what` on timeout. This is a watchdog that turns a hang (a lost
/// wake-up) into a test failure, not a timing assumption: the condition is what is asserted.
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
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
