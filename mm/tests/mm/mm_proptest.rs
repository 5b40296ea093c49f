//! Property test: random syscall sequences on one address space against a sequential model
//! (issue 3 "Tests").
//!
//! One sim task execs a fresh address space on a 2 MiB pool and runs up to 40 operations:
//! `mmap` (fixed, fixed-noreplace, top-down; private or shared; `MAP_LOCKED`/`MAP_POPULATE`),
//! `munmap`, `mprotect`, `mlock`, `munlock` (sometimes with an unaligned address, a zero
//! length or bad prot bits), user reads and writes (`touch`), `access_remote_vm` reads and
//! writes, and the oom_reaper's unmap (`oom_reap_task_mm`, which makes the address space
//! unstable for good). Addresses come from two windows: one at a fixed address for the
//! `MAP_FIXED` calls, one just below `mmap_base` where top-down mappings land.
//!
//! The model is a map page → {prot, shared, locked, resident: none | zero page | frame,
//! the byte at offset 0}, plus the set of VMA boundaries ("cuts": the emulator never merges
//! VMAs, so a boundary stays wherever an mmap or a split put one) and the unstable bit. It
//! encodes the kernel's rules: a read fault of private memory maps the zero page, a write or
//! any shmem fault allocates, faults on an unstable mm get SIGBUS, remote access to reaped
//! memory is EFAULT, mlock populates and reports ENOMEM for PROT_NONE, and so on.
//!
//! After every operation: the result (errno, fault kind, byte read) equals the model's; the
//! VMA tree (start, end, flags) equals the model's; `total_vm`; rss by type after
//! `sync_mm_rss` equals the model's resident frames by type; the pool has exactly that many
//! frames mapped and none allocated-but-unmapped, and `check_conservation()` holds. At the
//! end every byte the model knows is read back, the task exits, and the pool must be whole.

use mm::errno::Errno::{self, *};
use mm::memory::{access_remote_vm, attach_mm, mmput, oom_reap_task_mm, touch, FaultError};
use mm::mm_types::{vm, MmKnobs, MmStruct, DEFAULT_MMAP_BASE, MM_ANONPAGES, MM_SHMEMPAGES};
use mm::mmap::*;
use mm::page_alloc::{FramePool, PoolConfig};
use mm::pgtable::PAGE_SIZE;
use mm::sched::sim::{Sim, SimConfig, SimOutcome};
use mm::sched::{self};
use mm::task::CloneKind;
use parking_lot::Mutex;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

const P: u64 = PAGE_SIZE;
/// The window for MAP_FIXED mappings.
const FIXED_BASE: u64 = 0x4000_0000;
const FIXED_PAGES: u64 = 12;
/// The window just below `mmap_base`, where top-down mappings land.
const TOP_PAGES: u64 = 12;
const TOP_BASE: u64 = DEFAULT_MMAP_BASE - TOP_PAGES * P;

// ---- operations ---------------------------------------------------------------------------

/// Where an operation applies. Most operations target a page the model knows to be mapped
/// (`Mapped`: the `idx % n`-th of the n mapped pages, resolved against the model before the
/// step), the others an address in one of the two windows (`Raw`, which may be a hole).
/// `unaligned` adds one byte (syscalls only).
#[derive(Clone, Copy)]
enum At {
    Raw {
        top: bool,
        page: u64,
        unaligned: bool,
    },
    Mapped {
        idx: u16,
        unaligned: bool,
    },
    /// After resolution.
    Abs(u64),
}

impl At {
    fn addr(self) -> u64 {
        match self {
            At::Raw {
                top,
                page,
                unaligned,
            } => {
                let base = if top { TOP_BASE } else { FIXED_BASE };
                base + page * P + unaligned as u64
            }
            At::Abs(a) => a,
            At::Mapped { .. } => unreachable!("unresolved address"),
        }
    }

    fn unaligned(self) -> bool {
        !self.addr().is_multiple_of(P)
    }

    fn resolve(self, model: &Model) -> At {
        match self {
            At::Mapped { idx, unaligned } => {
                let n = model.pages.len();
                let page = if n == 0 {
                    FIXED_BASE
                } else {
                    *model.pages.keys().nth(idx as usize % n).unwrap()
                };
                At::Abs(page + unaligned as u64)
            }
            At::Raw { .. } => At::Abs(self.addr()),
            abs => abs,
        }
    }
}

impl fmt::Debug for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            At::Raw {
                top,
                page,
                unaligned,
            } => write!(
                f,
                "{}+{page}p{}",
                if top { "top" } else { "fix" },
                if unaligned { "+1" } else { "" }
            ),
            At::Mapped { idx, unaligned } => {
                write!(f, "mapped#{idx}{}", if unaligned { "+1" } else { "" })
            }
            At::Abs(a) => write!(f, "{a:#x}"),
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    MmapFixed {
        page: u64,
        pages: u64,
        prot: u32,
        shared: bool,
        locked: bool,
        populate: bool,
        noreplace: bool,
    },
    Mmap {
        pages: u64,
        prot: u32,
        shared: bool,
        populate: bool,
    },
    Munmap {
        at: At,
        pages: u64,
    },
    Mprotect {
        at: At,
        pages: u64,
        prot: u32,
    },
    Mlock {
        at: At,
        pages: u64,
    },
    Munlock {
        at: At,
        pages: u64,
    },
    Touch {
        at: At,
        write: bool,
        val: u8,
    },
    Remote {
        at: At,
        write: bool,
        val: u8,
    },
    Reap,
}

fn prot() -> impl Strategy<Value = u32> {
    prop_oneof![
        6 => Just(PROT_READ | PROT_WRITE),
        2 => Just(PROT_READ),
        2 => Just(PROT_NONE),
        1 => Just(PROT_WRITE),
        1 => Just(PROT_EXEC),
    ]
}

fn at(unaligned_ok: bool) -> impl Strategy<Value = At> {
    let unaligned = if unaligned_ok {
        prop::bool::weighted(0.05).boxed()
    } else {
        Just(false).boxed()
    };
    let raw = (any::<bool>(), unaligned.clone()).prop_flat_map(|(top, unaligned)| {
        let n = if top { TOP_PAGES } else { FIXED_PAGES };
        (0..n).prop_map(move |page| At::Raw {
            top,
            page,
            unaligned,
        })
    });
    let mapped =
        (any::<u16>(), unaligned).prop_map(|(idx, unaligned)| At::Mapped { idx, unaligned });
    prop_oneof![1 => raw, 3 => mapped]
}

/// Mostly 1..=6 pages, sometimes 0 (an errno path).
fn pages() -> impl Strategy<Value = u64> {
    prop_oneof![20 => 1..=6u64, 1 => Just(0u64)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => (0..FIXED_PAGES, pages(), prot(), any::<bool>(), prop::bool::weighted(0.15),
              prop::bool::weighted(0.2), prop::bool::weighted(0.2))
            .prop_map(|(page, pages, prot, shared, locked, populate, noreplace)| Op::MmapFixed {
                page, pages, prot, shared, locked, populate, noreplace,
            }),
        9 => (pages(), prot(), any::<bool>(), prop::bool::weighted(0.2))
            .prop_map(|(pages, prot, shared, populate)| Op::Mmap { pages, prot, shared, populate }),
        6 => (at(true), pages()).prop_map(|(at, pages)| Op::Munmap { at, pages }),
        9 => (at(true), pages(), prop_oneof![20 => prot(), 1 => Just(0x8u32)])
            .prop_map(|(at, pages, prot)| Op::Mprotect { at, pages, prot }),
        6 => (at(true), pages()).prop_map(|(at, pages)| Op::Mlock { at, pages }),
        3 => (at(true), pages()).prop_map(|(at, pages)| Op::Munlock { at, pages }),
        30 => (at(false), any::<bool>(), any::<u8>())
            .prop_map(|(at, write, val)| Op::Touch { at, write, val }),
        12 => (at(false), any::<bool>(), any::<u8>())
            .prop_map(|(at, write, val)| Op::Remote { at, write, val }),
        1 => Just(Op::Reap),
    ]
}

// ---- the model ----------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Res {
    None,
    Zero,
    Frame,
}

#[derive(Clone, Copy, Debug)]
struct Page {
    prot: u32,
    shared: bool,
    locked: bool,
    res: Res,
    /// The byte at offset 0 (meaningful for `Res::Frame`).
    val: u8,
}

impl Page {
    fn readable(&self) -> bool {
        self.prot & (PROT_READ | PROT_WRITE | PROT_EXEC) != 0
    }
    fn writable(&self) -> bool {
        self.prot & PROT_WRITE != 0
    }
    fn vm_flags(&self) -> u64 {
        let mut f = 0;
        if self.prot & PROT_READ != 0 {
            f |= vm::VM_READ;
        }
        if self.prot & PROT_WRITE != 0 {
            f |= vm::VM_WRITE;
        }
        if self.prot & PROT_EXEC != 0 {
            f |= vm::VM_EXEC;
        }
        if self.shared {
            f |= vm::VM_SHARED | vm::VM_MAYSHARE;
        }
        if self.locked {
            f |= vm::VM_LOCKED;
        }
        f
    }
}

#[derive(Default)]
struct Model {
    pages: BTreeMap<u64, Page>,
    /// VMA boundaries: where an mmap or a split put one (a boundary next to an unmapped page
    /// is meaningless and harmless).
    cuts: BTreeSet<u64>,
    unstable: bool,
}

/// What one operation returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Out {
    Addr(Result<u64, Errno>),
    Unit(Result<(), Errno>),
    Fault(Result<(), FaultError>),
    Byte(Result<u8, Errno>),
    Reaped(u64),
}

fn page_range(start: u64, end: u64) -> impl Iterator<Item = u64> {
    (start..end).step_by(P as usize)
}

fn align_up(len: u64) -> Option<u64> {
    len.checked_add(P - 1).map(|l| l & !(P - 1))
}

impl Model {
    fn covered(&self, start: u64, end: u64) -> bool {
        page_range(start, end).all(|a| self.pages.contains_key(&a))
    }

    fn unmap(&mut self, start: u64, end: u64) {
        let keys: Vec<u64> = self.pages.range(start..end).map(|(k, _)| *k).collect();
        for k in keys {
            self.pages.remove(&k);
        }
        self.cuts.insert(start);
        self.cuts.insert(end);
    }

    fn map(&mut self, start: u64, end: u64, prot: u32, shared: bool, locked: bool) {
        self.unmap(start, end);
        let inner: Vec<u64> = self.cuts.range(start + 1..end).copied().collect();
        for c in inner {
            self.cuts.remove(&c);
        }
        for a in page_range(start, end) {
            self.pages.insert(
                a,
                Page {
                    prot,
                    shared,
                    locked,
                    res: Res::None,
                    val: 0,
                },
            );
        }
    }

    /// `unmapped_area_topdown()`: the highest free run of `len` below `mmap_base`; its end
    /// is `mmap_base` or the start of a mapped page.
    fn topdown(&self, len: u64) -> Option<u64> {
        let ends = std::iter::once(DEFAULT_MMAP_BASE)
            .chain(self.pages.range(..DEFAULT_MMAP_BASE).rev().map(|(a, _)| *a));
        for end in ends {
            let start = end.checked_sub(len)?;
            if start < mm::mm_types::MMAP_MIN_ADDR {
                return None;
            }
            if self.pages.range(start..end).next().is_none() {
                return Some(start);
            }
        }
        None
    }

    /// The fault handler, on a page whose VMA allows the access.
    fn fault(&mut self, a: u64, write: bool) -> Result<(), FaultError> {
        let unstable = self.unstable;
        let p = self.pages.get_mut(&a).expect("mapped");
        match (p.res, write) {
            (Res::Frame, _) | (Res::Zero, false) => Ok(()),
            (Res::None, false) if !p.shared => {
                if unstable {
                    return Err(FaultError::Bus);
                }
                p.res = Res::Zero;
                Ok(())
            }
            _ => {
                if unstable {
                    return Err(FaultError::Bus);
                }
                p.res = Res::Frame;
                p.val = 0;
                Ok(())
            }
        }
    }

    fn touch(&mut self, a: u64, write: bool, val: u8) -> Result<(), FaultError> {
        let Some(p) = self.pages.get(&a) else {
            return Err(FaultError::Segv);
        };
        if !p.readable() || (write && !p.writable()) {
            return Err(FaultError::Segv);
        }
        self.fault(a, write)?;
        if write {
            self.pages.get_mut(&a).unwrap().val = val;
        }
        Ok(())
    }

    fn remote(&mut self, a: u64, write: bool, val: u8) -> Result<u8, Errno> {
        let Some(p) = self.pages.get(&a) else {
            return Err(EFAULT);
        };
        if !p.readable() || (write && !p.writable()) {
            return Err(EFAULT);
        }
        if !(p.res == Res::Frame || (p.res == Res::Zero && !write)) {
            self.fault(a, write).map_err(|_| EFAULT)?;
        }
        let p = self.pages.get_mut(&a).unwrap();
        if write {
            p.val = val;
        }
        Ok(if p.res == Res::Frame { p.val } else { 0 })
    }

    /// `__mm_populate()`: page by page, write faults for writable memory; stops at the first
    /// failure (a PROT_NONE VMA, SIGBUS).
    fn populate(&mut self, start: u64, end: u64) -> Result<(), FaultError> {
        for a in page_range(start, end) {
            let Some(p) = self.pages.get(&a) else {
                return Err(FaultError::Segv);
            };
            if !p.readable() {
                return Err(FaultError::Segv);
            }
            let w = p.writable();
            if p.res == Res::None || (w && p.res == Res::Zero) {
                self.fault(a, w)?;
            }
        }
        Ok(())
    }

    fn reap(&mut self) -> u64 {
        self.unstable = true;
        let mut n = 0;
        for p in self.pages.values_mut() {
            if !p.shared && !p.locked {
                n += (p.res == Res::Frame) as u64;
                p.res = Res::None;
                p.val = 0;
            }
        }
        n
    }

    fn vmas(&self) -> Vec<(u64, u64, u64)> {
        let mut out: Vec<(u64, u64, u64)> = Vec::new();
        for (&a, p) in &self.pages {
            match out.last_mut() {
                Some(last) if last.1 == a && !self.cuts.contains(&a) => {
                    assert_eq!(last.2, p.vm_flags(), "model: mixed flags inside a VMA");
                    last.1 = a + P;
                }
                _ => out.push((a, a + P, p.vm_flags())),
            }
        }
        out
    }

    /// Resident frames: (anon, shmem).
    fn rss(&self) -> (i64, i64) {
        let mut r = (0, 0);
        for p in self.pages.values().filter(|p| p.res == Res::Frame) {
            if p.shared {
                r.1 += 1;
            } else {
                r.0 += 1;
            }
        }
        r
    }

    /// Apply `op` to the model; returns what the emulator must return.
    fn apply(&mut self, op: &Op) -> Out {
        match *op {
            Op::MmapFixed {
                page,
                pages,
                prot,
                shared,
                locked,
                populate,
                noreplace,
            } => {
                let start = FIXED_BASE + page * P;
                if pages == 0 {
                    return Out::Addr(Err(EINVAL));
                }
                let end = start + pages * P;
                if noreplace && self.pages.range(start..end).next().is_some() {
                    return Out::Addr(Err(EEXIST));
                }
                self.map(start, end, prot, shared, locked);
                if locked || populate {
                    let _ = self.populate(start, end);
                }
                Out::Addr(Ok(start))
            }
            Op::Mmap {
                pages,
                prot,
                shared,
                populate,
            } => {
                if pages == 0 {
                    return Out::Addr(Err(EINVAL));
                }
                let Some(start) = self.topdown(pages * P) else {
                    return Out::Addr(Err(ENOMEM));
                };
                self.map(start, start + pages * P, prot, shared, false);
                if populate {
                    let _ = self.populate(start, start + pages * P);
                }
                Out::Addr(Ok(start))
            }
            Op::Munmap { at, pages } => {
                if at.unaligned() || pages == 0 {
                    return Out::Unit(Err(EINVAL));
                }
                let start = at.addr();
                self.unmap(start, start + pages * P);
                Out::Unit(Ok(()))
            }
            Op::Mprotect { at, pages, prot } => {
                if at.unaligned() {
                    return Out::Unit(Err(EINVAL));
                }
                if pages == 0 {
                    return Out::Unit(Ok(()));
                }
                if prot & !(PROT_READ | PROT_WRITE | PROT_EXEC) != 0 {
                    return Out::Unit(Err(EINVAL));
                }
                let (start, end) = (at.addr(), at.addr() + pages * P);
                if !self.covered(start, end) {
                    return Out::Unit(Err(ENOMEM));
                }
                self.cuts.insert(start);
                self.cuts.insert(end);
                for a in page_range(start, end) {
                    self.pages.get_mut(&a).unwrap().prot = prot;
                }
                Out::Unit(Ok(()))
            }
            Op::Mlock { at, pages } | Op::Munlock { at, pages } => {
                let lock = matches!(op, Op::Mlock { .. });
                let addr = at.addr();
                let start = addr & !(P - 1);
                let len = align_up(pages * P + (addr - start)).unwrap();
                if len == 0 {
                    return Out::Unit(Ok(()));
                }
                let end = start + len;
                if !self.covered(start, end) {
                    return Out::Unit(Err(ENOMEM));
                }
                self.cuts.insert(start);
                self.cuts.insert(end);
                for a in page_range(start, end) {
                    self.pages.get_mut(&a).unwrap().locked = lock;
                }
                if lock && self.populate(start, end).is_err() {
                    return Out::Unit(Err(ENOMEM));
                }
                Out::Unit(Ok(()))
            }
            Op::Touch { at, write, val } => Out::Fault(self.touch(at.addr(), write, val)),
            Op::Remote { at, write, val } => Out::Byte(self.remote(at.addr(), write, val)),
            Op::Reap => Out::Reaped(self.reap()),
        }
    }
}

/// `op` with its address resolved against the model's current state.
fn resolve(op: &Op, model: &Model) -> Op {
    let mut op = op.clone();
    match &mut op {
        Op::Munmap { at, .. }
        | Op::Mprotect { at, .. }
        | Op::Mlock { at, .. }
        | Op::Munlock { at, .. }
        | Op::Touch { at, .. }
        | Op::Remote { at, .. } => *at = at.resolve(model),
        Op::MmapFixed { .. } | Op::Mmap { .. } | Op::Reap => {}
    }
    op
}

// ---- the emulator side --------------------------------------------------------------------

fn run_op(mm: &MmStruct, op: &Op) -> Out {
    match *op {
        Op::MmapFixed {
            page,
            pages,
            prot,
            shared,
            locked,
            populate,
            noreplace,
        } => {
            let mut flags = MAP_ANONYMOUS | if shared { MAP_SHARED } else { MAP_PRIVATE };
            flags |= if noreplace {
                MAP_FIXED_NOREPLACE
            } else {
                MAP_FIXED
            };
            if locked {
                flags |= MAP_LOCKED;
            }
            if populate {
                flags |= MAP_POPULATE;
            }
            Out::Addr(mmap(mm, FIXED_BASE + page * P, pages * P, prot, flags))
        }
        Op::Mmap {
            pages,
            prot,
            shared,
            populate,
        } => {
            let mut flags = MAP_ANONYMOUS | if shared { MAP_SHARED } else { MAP_PRIVATE };
            if populate {
                flags |= MAP_POPULATE;
            }
            Out::Addr(mmap(mm, 0, pages * P, prot, flags))
        }
        Op::Munmap { at, pages } => Out::Unit(munmap(mm, at.addr(), pages * P)),
        Op::Mprotect { at, pages, prot } => Out::Unit(mprotect(mm, at.addr(), pages * P, prot)),
        Op::Mlock { at, pages } => Out::Unit(mlock(mm, at.addr(), pages * P)),
        Op::Munlock { at, pages } => Out::Unit(munlock(mm, at.addr(), pages * P)),
        Op::Touch { at, write, val } => Out::Fault(touch(mm, at.addr(), write, val)),
        Op::Remote { at, write, val } => {
            let mut b = [val];
            Out::Byte(access_remote_vm(mm, at.addr(), &mut b, write).map(|n| {
                assert_eq!(n, 1);
                b[0]
            }))
        }
        Op::Reap => Out::Reaped(oom_reap_task_mm(mm, &mm.mmap_lock.read())),
    }
}

/// Compare the emulator's state with the model's after an operation.
fn check_state(mm: &MmStruct, pool: &FramePool, model: &Model) -> Result<(), String> {
    let got: Vec<(u64, u64, u64)> = mm
        .mmap_lock
        .read()
        .iter()
        .map(|v| (v.start, v.end, v.flags))
        .collect();
    let want = model.vmas();
    if got != want {
        return Err(format!("VMAs\n  got  {got:x?}\n  want {want:x?}"));
    }
    if mm.total_vm() != model.pages.len() as u64 {
        return Err(format!(
            "total_vm {} != {}",
            mm.total_vm(),
            model.pages.len()
        ));
    }
    sched::with_current(|t| t.sync_mm_rss());
    let rss = (
        mm.mm_counter_raw(MM_ANONPAGES),
        mm.mm_counter_raw(MM_SHMEMPAGES),
    );
    let (anon, shmem) = model.rss();
    if rss != (anon, shmem) {
        return Err(format!(
            "rss (anon, shmem) = {rss:?}, model {:?}",
            (anon, shmem)
        ));
    }
    let a = pool.accounting();
    if (a.allocated, a.mapped) != (0, (anon + shmem) as u64) {
        return Err(format!("pool {a}, model has {} frames", anon + shmem));
    }
    pool.check_conservation()
}

/// Run `ops` in one sim task; `Err` names the first divergence.
fn run_case(ops: &[Op]) -> Result<(), String> {
    let pool = FramePool::new(PoolConfig {
        bytes: 2 << 20,
        poison: true,
        ..Default::default()
    })
    .unwrap();
    let mut sim = Sim::new(SimConfig::default());
    let verdict: Arc<Mutex<Option<Result<(), String>>>> = Arc::default();
    let slot: Arc<Mutex<Option<Arc<MmStruct>>>> = Arc::default();
    let (p, v, s, ops) = (pool.clone(), verdict.clone(), slot.clone(), ops.to_vec());
    sim.spawn(
        CloneKind::Process {
            comm: "prop".into(),
        },
        move || {
            let mm = MmStruct::new(&p, MmKnobs::default(), "pid 1");
            attach_mm(&mm);
            mmput(&mm);
            *s.lock() = Some(mm.clone());
            let mut model = Model::default();
            let mut run = || -> Result<(), String> {
                for (i, op) in ops.iter().enumerate() {
                    let op = &resolve(op, &model);
                    let want = model.apply(op);
                    let got = run_op(&mm, op);
                    if got != want {
                        return Err(format!("step {i} {op:?}: got {got:?}, model {want:?}"));
                    }
                    check_state(&mm, &p, &model)
                        .map_err(|e| format!("after step {i} {op:?}: {e}"))?;
                }
                // Every byte the model knows reads back.
                for (&a, pg) in &model.pages {
                    if pg.res == Res::Frame && pg.readable() {
                        let mut b = [0u8];
                        let r = access_remote_vm(&mm, a, &mut b, false).map(|_| b[0]);
                        if r != Ok(pg.val) {
                            return Err(format!("final read of {a:#x}: {r:?}, model {}", pg.val));
                        }
                    }
                }
                Ok(())
            };
            *v.lock() = Some(run());
        },
    )
    .unwrap();
    match sim.run() {
        SimOutcome::AllExited => {}
        other => return Err(format!("sim: {other:?}")),
    }
    verdict.lock().take().expect("the task ran")?;
    let mm = slot.lock().take().unwrap();
    if mm.torn_down_ns().is_none() || mm.get_mm_rss() != 0 {
        return Err("the address space was not torn down at exit".into());
    }
    let a = pool.accounting();
    if a.allocated + a.mapped != 0 {
        return Err(format!("frames left after exit: {a}"));
    }
    pool.check_conservation()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        max_shrink_iters: 4096,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_syscall_sequences_match_the_sequential_model(
        ops in prop::collection::vec(op(), 10..=40)
    ) {
        if let Err(e) = run_case(&ops) {
            prop_assert!(false, "{}", e);
        }
    }
}

/// Named regressions, found by the property test or written along with it.
#[test]
fn regression_sequences() {
    let fix = |page, unaligned| At::Raw {
        top: false,
        page,
        unaligned,
    };
    let cases: Vec<Vec<Op>> = vec![
        // mprotect(PROT_NONE) on present pages, then a read: SIGSEGV, not a TLB-style hit.
        vec![
            Op::MmapFixed {
                page: 0,
                pages: 2,
                prot: PROT_READ | PROT_WRITE,
                shared: false,
                locked: false,
                populate: false,
                noreplace: false,
            },
            Op::Touch {
                at: fix(0, false),
                write: true,
                val: 5,
            },
            Op::Touch {
                at: fix(1, false),
                write: false,
                val: 0,
            },
            Op::Mprotect {
                at: fix(0, false),
                pages: 2,
                prot: PROT_NONE,
            },
            Op::Touch {
                at: fix(0, false),
                write: false,
                val: 0,
            },
            Op::Touch {
                at: fix(1, false),
                write: false,
                val: 0,
            },
            Op::Mlock {
                at: fix(0, true),
                pages: 1,
            },
        ],
        // Write-protect, unprotect, write (user and remote), after the reaper.
        vec![
            Op::MmapFixed {
                page: 3,
                pages: 2,
                prot: PROT_READ | PROT_WRITE,
                shared: true,
                locked: true,
                populate: false,
                noreplace: false,
            },
            Op::Reap,
            Op::Mprotect {
                at: fix(3, false),
                pages: 2,
                prot: PROT_READ,
            },
            Op::Mprotect {
                at: fix(3, false),
                pages: 2,
                prot: PROT_READ | PROT_WRITE,
            },
            Op::Touch {
                at: fix(3, false),
                write: true,
                val: 1,
            },
            Op::Remote {
                at: fix(4, false),
                write: true,
                val: 2,
            },
        ],
    ];
    for ops in cases {
        run_case(&ops).unwrap_or_else(|e| panic!("{e}"));
    }
}
