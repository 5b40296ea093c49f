//! The rare-event stream (`reaper::events`) on the sim executor: every OOM kill, reap result,
//! livelock and kill → reclaim reaches a subscriber once, with the values the counters and the
//! victim records hold, whichever of the reaper and the victim's exit brings the memory back.

use crate::common::*;
use mm::page_alloc::OomKiller;
use mm::pgtable::PAGE_SIZE;
use mm::sched;
use reaper::events::{KernelEvent, ReapResult};
use reaper::watchdog::WatchdogConfig;

/// One `out_of_memory(GFP_KERNEL)` from an mm-less driver.
fn kill(m: &Machine) {
    let oom = m.oom.clone();
    assert!(m.run_in_task("driver", move || oom.out_of_memory(&oc_kernel())));
}

/// The reaper gets there first: a kill, a reap, one kill → reclaim by the reaper; the victim's
/// exit later reports nothing more.
#[test]
fn kill_reap_and_reclaim_reach_the_stream_once_each() {
    let m = boot(Boot::default());
    let rx = m.events.subscribe(64).expect("first subscriber");
    assert!(
        m.events.subscribe(64).is_none(),
        "one subscriber per machine"
    );
    let ready = Ready::default();
    let r2 = ready.clone();
    let (_, vmm) = m.process("victim", 0, move |mm| {
        populate(&mm, 200, 0);
        r2.done();
        sleep_uninterruptible(3000);
    });
    m.run_until("set-up", |_| ready.count() == 1);
    kill(&m);
    let r = m.reaper().clone();
    m.run_until("reap", |_| load(&r.stats().reaped) == 1);
    m.finish();
    let marked = m.oom.victims()[0].marked_ns;
    let reaped = vmm.reaped_ns().expect("reaped");
    let got: Vec<KernelEvent> = rx.try_iter().collect();
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(
        matches!(
            got[0],
            KernelEvent::OomKill { at_ns, by_sysrq: false, rss_pages: 200 } if at_ns == marked
        ),
        "{got:?}"
    );
    assert!(
        matches!(
            got[1],
            KernelEvent::Reap {
                result: ReapResult::Reaped,
                pages: 200,
                ..
            }
        ),
        "{got:?}"
    );
    assert_eq!(
        got[2],
        KernelEvent::Reclaimed {
            at_ns: reaped,
            kill_to_reclaim_ns: reaped - marked,
            by_reaper: true
        }
    );
    assert_eq!(
        m.kill_to_reclaim_ns(),
        vec![reaped - marked],
        "the reports' value"
    );
    assert_eq!((m.events.sent(), m.events.dropped()), (3, 0));
}

/// Without a reaper the victim's exit brings the memory back: reported once, by exit, with
/// the records' kill → reclaim.
#[test]
fn a_victim_whose_exit_frees_its_memory_is_reported_by_exit() {
    let m = boot(Boot {
        reaper: None,
        ..Boot::default()
    });
    let rx = m.events.subscribe(64).unwrap();
    let ready = Ready::default();
    let r2 = ready.clone();
    let (_, vmm) = m.process("victim", 0, move |mm| {
        populate(&mm, 100, 0);
        r2.done();
        // Killable: SIGKILL ends it after 20 ms of emulated time in the exit path.
        sleep_killable(20);
        pause();
    });
    m.run_until("set-up", |_| ready.count() == 1);
    kill(&m);
    m.finish();
    let marked = m.oom.victims()[0].marked_ns;
    let torn = vmm.torn_down_ns().expect("torn down");
    let got: Vec<KernelEvent> = rx.try_iter().collect();
    assert!(
        matches!(
            got[0],
            KernelEvent::OomKill {
                by_sysrq: false,
                rss_pages: 100,
                ..
            }
        ),
        "{got:?}"
    );
    assert_eq!(
        got[1..],
        [KernelEvent::Reclaimed {
            at_ns: torn,
            kill_to_reclaim_ns: torn - marked,
            by_reaper: false
        }]
    );
    assert_eq!(m.kill_to_reclaim_ns(), vec![torn - marked]);
}

/// A livelock and its sysrq-f recovery: the stream counts what the counters count, kind by
/// kind, and every killed victim's memory coming back.
#[test]
fn livelocks_and_sysrq_kills_reach_the_stream() {
    let m = boot(Boot {
        memory_bytes: 4 * MIB,
        reaper: None,
        watchdog: Some(WatchdogConfig {
            window_ns: 2 * SEC,
            ..WatchdogConfig::sim()
        }),
        ..Boot::default()
    });
    let rx = m.events.subscribe(1024).unwrap();
    let ready = Ready::default();
    let r2 = ready.clone();
    m.process("victim", 0, move |mm| {
        populate(&mm, 800, 0);
        r2.done();
        sleep_uninterruptible(10_000);
    });
    let r3 = ready.clone();
    m.process("hog", 0, move |mm| {
        while r3.count() == 0 {
            sleep_ms(1);
        }
        loop {
            let a = mm::mmap::mmap(
                &mm,
                0,
                16 * PAGE_SIZE,
                mm::mmap::PROT_READ | mm::mmap::PROT_WRITE,
                mm::mmap::MAP_ANONYMOUS | mm::mmap::MAP_PRIVATE,
            )
            .unwrap();
            for i in 0..16 {
                let _ = mm::memory::touch(&mm, a + i * PAGE_SIZE, true, 1);
                if sched::fatal_signal_pending() {
                    return;
                }
            }
        }
    });
    let w = m.watchdog().clone();
    m.run_until("livelock", |_| load(&w.stats().livelocks) == 1);
    m.finish();
    let got: Vec<KernelEvent> = rx.try_iter().collect();
    let count = |f: fn(&KernelEvent) -> bool| got.iter().filter(|e| f(e)).count() as u64;
    assert_eq!(
        count(|e| matches!(e, KernelEvent::OomKill { .. })),
        m.oom_kills()
    );
    assert_eq!(
        count(|e| matches!(e, KernelEvent::OomKill { by_sysrq: true, .. })),
        load(&m.oom.stats().sysrq_kills)
    );
    assert_eq!(
        count(|e| matches!(e, KernelEvent::Livelock { waiters: 1, .. })),
        load(&w.stats().livelocks)
    );
    let mut reclaimed: Vec<u64> = got
        .iter()
        .filter_map(|e| match e {
            KernelEvent::Reclaimed {
                kill_to_reclaim_ns, ..
            } => Some(*kill_to_reclaim_ns),
            _ => None,
        })
        .collect();
    let mut records = m.kill_to_reclaim_ns();
    reclaimed.sort_unstable();
    records.sort_unstable();
    assert_eq!(reclaimed, records, "every killed victim, once");
    assert_eq!(records.len(), 2, "the victim and the hog");
    assert_eq!(m.events.dropped(), 0);
}
