//! Rare kernel events, streamed to a watcher outside the machine (the binary's metrics
//! publisher): OOM kills (sysrq ones included), the oom_reaper's result per victim, livelocks,
//! and kill → reclaim as each victim's memory comes back.
//!
//! The counters stay the source of truth ([`crate::oom_kill::OomStats`],
//! [`crate::oom_reaper::ReaperStats`], [`crate::watchdog::WatchdogStats`]): every event is sent
//! where its counter is incremented, so a subscriber that lost none has seen exactly as many
//! as the counters say. The stream carries what the counters cannot: the values (kill →
//! reclaim time, pages reaped, waiters at a livelock) and when.
//!
//! Architecture invariant: the kernel side never blocks on the stream and never allocates for
//! it beyond the event itself. The channel is bounded (`crossbeam-channel`, sized by the
//! subscriber) and written with `try_send` only; an event that finds it full, or finds the
//! subscriber gone, is counted in [`EventStream::dropped`] and lost. Before anyone subscribes,
//! emitting is one atomic load. None of the emitters is on a fault, lock or allocation fast
//! path: they run once per OOM kill, per reaped victim, per livelock.

use crossbeam_channel::{Receiver, Sender, TrySendError};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// How the oom_reaper finished with one victim (`oom_reap_task()`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReapResult {
    /// "oom_reaper: reaped process": its private anonymous memory was unmapped.
    Reaped,
    /// "oom_reaper: unable to reap": every trylock of `mmap_lock` failed.
    GaveUp,
    /// The victim's exit got there first (`MMF_OOM_SKIP` under the lock).
    AlreadyDone,
}

impl ReapResult {
    /// Every result, for label sets.
    pub const ALL: [ReapResult; 3] = [
        ReapResult::Reaped,
        ReapResult::GaveUp,
        ReapResult::AlreadyDone,
    ];
    /// `reaped`, `gave_up`, `already_done`.
    pub const fn name(self) -> &'static str {
        match self {
            ReapResult::Reaped => "reaped",
            ReapResult::GaveUp => "gave_up",
            ReapResult::AlreadyDone => "already_done",
        }
    }
}

/// One rare kernel event. Times are the executor's clock, ns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelEvent {
    /// `oom_kill_process()` SIGKILLed a process; `by_sysrq`: the watchdog's sysrq-f recovery.
    OomKill {
        at_ns: u64,
        by_sysrq: bool,
        /// The victim's resident pages at the kill (`get_mm_rss()`).
        rss_pages: u64,
    },
    /// The oom_reaper finished with a victim.
    Reap {
        at_ns: u64,
        result: ReapResult,
        /// Frames it unmapped (0 unless `Reaped`).
        pages: u64,
    },
    /// The watchdog declared a livelock (docs/oom-rules.md §8 M8).
    Livelock { at_ns: u64, waiters: u64 },
    /// A killed victim's memory came back: `kill_to_reclaim_ns` after its kill, by the
    /// oom_reaper or by `exit_mmap()` (whichever came first).
    Reclaimed {
        at_ns: u64,
        kill_to_reclaim_ns: u64,
        by_reaper: bool,
    },
}

/// The stream of one machine's rare events; shared by the OOM killer, the oom_reaper and the
/// watchdog ([`crate::machine::Kernel::events`]).
#[derive(Debug, Default)]
pub struct EventStream {
    tx: OnceLock<Sender<KernelEvent>>,
    sent: AtomicU64,
    dropped: AtomicU64,
}

impl EventStream {
    /// Start streaming into a new bounded channel of `capacity` events and return its
    /// receiving end; `None` if somebody already subscribed (one subscriber per machine).
    pub fn subscribe(&self, capacity: usize) -> Option<Receiver<KernelEvent>> {
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        self.tx.set(tx).ok()?;
        Some(rx)
    }

    /// Send `ev` if somebody subscribed; never blocks (a full channel or a gone subscriber
    /// counts a drop).
    pub(crate) fn emit(&self, ev: KernelEvent) {
        let Some(tx) = self.tx.get() else { return };
        match tx.try_send(ev) {
            Ok(()) => {
                self.sent.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Events sent into the channel so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Events lost so far (the channel was full, or the subscriber had gone).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn livelock(n: u64) -> KernelEvent {
        KernelEvent::Livelock {
            at_ns: n,
            waiters: 1,
        }
    }

    #[test]
    fn nothing_is_sent_before_a_subscriber() {
        let s = EventStream::default();
        s.emit(livelock(0));
        assert_eq!((s.sent(), s.dropped()), (0, 0));
    }

    #[test]
    fn a_full_channel_drops_and_counts_without_blocking() {
        let s = EventStream::default();
        let rx = s.subscribe(2).unwrap();
        assert!(s.subscribe(2).is_none(), "one subscriber");
        for n in 0..5 {
            s.emit(livelock(n));
        }
        assert_eq!((s.sent(), s.dropped()), (2, 3));
        let got: Vec<KernelEvent> = rx.try_iter().collect();
        assert_eq!(
            got,
            vec![livelock(0), livelock(1)],
            "the first ones, in order"
        );
        s.emit(livelock(5));
        assert_eq!(rx.try_recv(), Ok(livelock(5)), "room again once drained");
        drop(rx);
        s.emit(livelock(6));
        assert_eq!((s.sent(), s.dropped()), (3, 4), "a gone subscriber drops");
    }
}
