//! Smoke test of an address space on the sim executor (the full suites are in address_space.rs).
use mm::memory::{access_process_vm, attach_mm, oom_reap_task_mm, touch, FaultError};
use mm::mm_types::*;
use mm::mmap::*;
use mm::page_alloc::{FramePool, PoolConfig};
use mm::sched::sim::{Sim, SimConfig, SimOutcome};
use mm::task::CloneKind;

#[test]
fn smoke() {
    let pool = FramePool::new(PoolConfig {
        bytes: 4 << 20,
        ..Default::default()
    })
    .unwrap();
    let mut sim = Sim::new(SimConfig::default());
    let p2 = pool.clone();
    sim.spawn(CloneKind::Process { comm: "a".into() }, move || {
        let mm = MmStruct::new(&p2, MmKnobs::default(), "pid 1");
        attach_mm(&mm);
        let a = mmap(
            &mm,
            0,
            64 * 4096,
            PROT_READ | PROT_WRITE,
            MAP_PRIVATE | MAP_ANONYMOUS,
        )
        .unwrap();
        for i in 0..64 {
            touch(&mm, a + i * 4096, true, 7).unwrap();
        }
        mm::sched::with_current(|t| t.sync_mm_rss());
        assert_eq!(mm.get_mm_counter(MM_ANONPAGES), 64);
        assert_eq!(p2.accounting().mapped, 64);
        let mut buf = [0u8; 8];
        assert_eq!(access_process_vm(&mm, a + 4096, &mut buf, false), Ok(8));
        assert_eq!(buf, [7, 0, 0, 0, 0, 0, 0, 0]);
        munmap(&mm, a + 8 * 4096, 8 * 4096).unwrap();
        assert_eq!(p2.accounting().mapped, 56);
        assert_eq!(touch(&mm, a + 9 * 4096, false, 0), Err(FaultError::Segv));
        {
            let g = mm.mmap_lock.read();
            assert_eq!(oom_reap_task_mm(&mm, &g), 56);
        }
        assert_eq!(
            access_process_vm(&mm, a, &mut buf, false),
            Err(mm::errno::Errno::EFAULT)
        );
        assert_eq!(touch(&mm, a, true, 1), Err(FaultError::Bus));
        assert_eq!(
            mmap(&mm, 0, 0, 0, MAP_PRIVATE | MAP_ANONYMOUS),
            Err(mm::errno::Errno::EINVAL)
        );
    })
    .unwrap();
    assert_eq!(sim.run(), SimOutcome::AllExited);
    let a = pool.accounting();
    assert_eq!(a.allocated + a.mapped, 0);
    pool.check_conservation().unwrap();
}
