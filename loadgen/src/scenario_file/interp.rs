//! Running a [`ScenarioFile`]: its processes become emulated tasks and their scripts run as
//! user space would, through the helpers of [`crate::user`] (syscalls, faults, remote
//! accesses) and the kernel paths they model.
//!
//! A process started at boot is forked by the runner (`execve()` gives it a fresh address
//! space). Its main thread then maps its `[[process.mapping]]`s in order, publishes them (as
//! `/proc/PID/maps` would show them), clones its `[[process.thread]]`s
//! (`clone(CLONE_THREAD|CLONE_VM)`) and its `clone_vm` children (`clone(CLONE_VM)`), in file
//! order, and runs its script. Every other thread runs its script from its start.
//!
//! # Orderings
//!
//! A condition (`after`, `wait_until`, `stall_until`) is evaluated against the emulated
//! kernel's own state: a watched thread's wait channel ([`mm::task::Task::wchan`]: which lock
//! it sleeps on, for read or write), the locks it holds ([`mm::task::Task::held_locks`]),
//! whether it waits in the allocator slow path
//! ([`mm::task::Task::memalloc_waiting_since`]), the frame pool's free count against its min
//! watermark, the clock. The waiting thread checks, sleeps one jiffy at the scheduler seam
//! (`schedule_timeout_interruptible(1)` in user space, `_uninterruptible` inside the kernel),
//! and checks again; `at = T` sleeps until T directly. The conditions are states that persist
//! while the chain is being built (a thread stays queued on a lock until the holder lets go),
//! so a check every jiffy sees them whatever the seed's interleaving.
//!
//! A condition that can no longer hold (the watched thread exited, or never started because
//! its process died first) ends the wait: the waiting thread skips the rest of its script
//! (leaving the kernel first if it waited there) and exits, and the trial's notes say so —
//! `--check` reports each such note as an unmet expectation.

use super::format::ModeValue;
use super::*;
use crate::scenario::Ctx;
use crate::user::{
    io_wait_ms, kill, kmutex_lock, map, pause_until_killed, populate, remote_access_stalled,
    remote_read, remote_write, ret_to_user, sleep_ms, syscall_write_lock, touch_pages, unmap, Exit,
    KernelPages, Step,
};
use mm::locking::kmutex::KMutex;
use mm::memory::{attach_mm, fault_read_lock, mmput};
use mm::mm_types::MmStruct;
use mm::mmap::{mlock, mmap, mprotect, MAP_ANONYMOUS, MAP_PRIVATE, MAP_SHARED};
use mm::page_alloc::FramePool;
use mm::pgtable::PAGE_SIZE;
use mm::sched;
use mm::task::{CloneKind, Task};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;

/// Whether a thread of the file runs.
#[derive(Clone)]
enum Slot {
    /// Not cloned yet.
    NotYet,
    Started(Arc<Task>),
    /// Its creator exited first.
    NeverStarted,
}

/// The state of one run of a file, shared by its tasks.
pub(crate) struct Runtime {
    file: Arc<ScenarioFile>,
    /// Frames of the machine (what `45%` means).
    frames: u64,
    pool: Arc<FramePool>,
    /// Per thread of the file.
    tasks: Mutex<Vec<Slot>>,
    /// Per process: its address space, once its main thread runs.
    mms: Mutex<Vec<Option<Arc<MmStruct>>>>,
    /// Per process: its `[[process.mapping]]`s are in place (published all together).
    mapped: Mutex<Vec<bool>>,
    /// Process-wide mappings by (process, name): (address, pages).
    maps: Mutex<HashMap<(ProcId, String), (u64, u64)>>,
    mutexes: Vec<Arc<KMutex>>,
    notes: Mutex<Vec<String>>,
}

/// What a condition says now.
enum Eval {
    Holds,
    NotYet,
    /// It can no longer hold, and why.
    Never(String),
}

impl Runtime {
    /// What the trial noted (orderings that could no longer hold, pids not granted).
    pub fn notes(&self) -> Vec<String> {
        self.notes.lock().clone()
    }

    fn note(&self, n: String) {
        self.notes.lock().push(n);
    }

    fn slot(&self, t: ThreadId) -> Slot {
        self.tasks.lock()[t].clone()
    }

    fn started(&self, t: ThreadId, task: Arc<Task>) {
        self.tasks.lock()[t] = Slot::Started(task);
    }

    /// Threads and `clone_vm` children of `p` that were never cloned (its main thread
    /// exited first) will never run; nor will theirs.
    fn abandon_unstarted(&self, p: ProcId) {
        let f = &self.file;
        let mut tasks = self.tasks.lock();
        let mut todo: Vec<ThreadId> = f.procs[p].threads.clone();
        let mut procs: Vec<ProcId> = f.procs[p].children.clone();
        while let Some(c) = procs.pop() {
            todo.push(f.procs[c].main);
            todo.extend(&f.procs[c].threads);
            procs.extend(&f.procs[c].children);
        }
        for t in todo {
            if matches!(tasks[t], Slot::NotYet) {
                tasks[t] = Slot::NeverStarted;
            }
        }
    }

    fn mm_of(&self, p: ProcId) -> Option<Arc<MmStruct>> {
        self.mms.lock()[p].clone()
    }

    /// The identity lockdep and wait channels use for a lock.
    fn lock_id(&self, l: LockRef) -> Option<usize> {
        match l {
            LockRef::MmapLock(p) => self
                .mm_of(p)
                .map(|mm| mm.mmap_lock.raw() as *const _ as usize),
            LockRef::Mutex(i) => Some(Arc::as_ptr(&self.mutexes[i]) as usize),
        }
    }

    fn eval(&self, c: &Cond) -> Eval {
        let mode_ok = |mode: Option<ModeValue>, write: bool| match mode {
            None => true,
            Some(ModeValue::Write) => write,
            Some(ModeValue::Read) => !write,
        };
        let task = match c.kind.thread() {
            None => None,
            Some(t) => match self.slot(t) {
                Slot::NotYet => return Eval::NotYet,
                Slot::NeverStarted => {
                    return Eval::Never(format!("{} never started", self.file.thread_ref(t)))
                }
                Slot::Started(task) => Some(task),
            },
        };
        let holds = match &c.kind {
            CondKind::At(d) => sched::ktime_get_ns() >= d.0,
            CondKind::MemoryExhausted => self.pool.nr_free_pages() <= self.pool.watermarks().min,
            CondKind::Mapped { proc, .. } => {
                if self.mapped.lock()[*proc] {
                    true
                } else {
                    let main = self.file.procs[*proc].main;
                    return match self.slot(main) {
                        Slot::NeverStarted => {
                            Eval::Never(format!("{} never started", self.file.procs[*proc].name))
                        }
                        Slot::Started(t) if t.has_exited() => Eval::Never(format!(
                            "{} exited before its mappings were in place",
                            self.file.procs[*proc].name
                        )),
                        _ => Eval::NotYet,
                    };
                }
            }
            CondKind::BlockedOnMemory { .. } => task
                .as_ref()
                .is_some_and(|t| t.memalloc_waiting_since().is_some()),
            CondKind::BlockedOnLock { lock, mode, .. } => {
                let Some(id) = self.lock_id(*lock) else {
                    return Eval::NotYet;
                };
                task.as_ref().and_then(|t| t.wchan()).is_some_and(|w| {
                    let write = match lock {
                        LockRef::Mutex(_) => true,
                        LockRef::MmapLock(_) => w.func.contains("write"),
                    };
                    w.object_id == id && mode_ok(*mode, write)
                })
            }
            CondKind::Holds { lock, mode, .. } => {
                let Some(id) = self.lock_id(*lock) else {
                    return Eval::NotYet;
                };
                task.as_ref().is_some_and(|t| {
                    t.held_locks()
                        .iter()
                        .any(|h| h.object_id == id && mode_ok(*mode, h.write))
                })
            }
        };
        if holds {
            return Eval::Holds;
        }
        match (&task, c.kind.thread()) {
            (Some(t), Some(tid)) if t.has_exited() => {
                Eval::Never(format!("{} exited", self.file.thread_ref(tid)))
            }
            _ => Eval::NotYet,
        }
    }
}

/// Start the file's processes on the machine being set up. Returns the run's state, for its
/// notes.
pub(crate) fn setup(file: &Arc<ScenarioFile>, ctx: &mut Ctx) -> Arc<Runtime> {
    let rt = Arc::new(Runtime {
        file: file.clone(),
        frames: ctx.m.pool.total_pages(),
        pool: ctx.m.pool.clone(),
        tasks: Mutex::new(vec![Slot::NotYet; file.threads.len()]),
        mms: Mutex::new(vec![None; file.procs.len()]),
        mapped: Mutex::new(vec![false; file.procs.len()]),
        maps: Mutex::new(HashMap::new()),
        mutexes: file
            .mutexes
            .iter()
            .map(|n| Arc::new(KMutex::new(n.as_str())))
            .collect(),
        notes: Mutex::new(Vec::new()),
    });
    for (id, p) in file.procs.iter().enumerate() {
        if p.clone_vm.is_some() {
            continue;
        }
        if let Some(pid) = p.pid {
            if let Err(last) = ctx.m.tasks.set_ns_last_pid(pid - 1) {
                rt.note(format!(
                    "{}: pid {pid} is taken (pids up to {last} are), it got the next free one",
                    p.name
                ));
            }
        }
        let r = rt.clone();
        let task = ctx.process(&p.name, p.oom_score_adj, move |mm| {
            process_main(r, id, mm);
            Ok(())
        });
        rt.started(p.main, task);
    }
    rt
}

/// The main thread of process `p`, with its address space attached.
fn process_main(rt: Arc<Runtime>, p: ProcId, mm: Arc<MmStruct>) {
    rt.mms.lock()[p] = Some(mm.clone());
    let main = rt.file.procs[p].main;
    let mut t = ThreadCtx::new(rt.clone(), main, mm);
    let _ = t.start_process();
    rt.abandon_unstarted(p);
}

/// What a block of actions ended in.
enum Flow {
    Next,
    /// Leave the innermost `repeat` (`on_error = "break"`).
    Break,
}

/// One running thread of the file.
struct ThreadCtx {
    rt: Arc<Runtime>,
    tid: ThreadId,
    proc: ProcId,
    mm: Arc<MmStruct>,
    /// Mappings this thread mmapped by name: (address, pages).
    own: HashMap<String, (u64, u64)>,
    /// Executions of each `advance`-ing remote access so far.
    rounds: HashMap<usize, u64>,
}

impl ThreadCtx {
    fn new(rt: Arc<Runtime>, tid: ThreadId, mm: Arc<MmStruct>) -> ThreadCtx {
        let proc = rt.file.threads[tid].proc;
        ThreadCtx {
            rt,
            tid,
            proc,
            mm,
            own: HashMap::new(),
            rounds: HashMap::new(),
        }
    }

    fn file(&self) -> &ScenarioFile {
        &self.rt.file
    }

    fn pages(&self, s: SizeValue) -> u64 {
        s.pages(self.rt.frames)
    }

    /// A main thread: mappings, clones, then the script.
    fn start_process(&mut self) -> Step {
        let rt = self.rt.clone();
        let proc = &rt.file.procs[self.proc];
        let mut placed = Vec::new();
        for m in &proc.mappings {
            let size = self.pages(m.size).max(1);
            let resident = m.resident.map_or(size, |r| self.pages(r).min(size));
            let addr = populate(&self.mm, size, m.shared, m.locked, resident)?;
            placed.push(((self.proc, m.name.clone()), (addr, size)));
        }
        if !placed.is_empty() {
            rt.maps.lock().extend(placed);
        }
        rt.mapped.lock()[self.proc] = true;
        for &t in &proc.threads {
            // copy_process() refuses to fork a task with a fatal signal pending.
            ret_to_user()?;
            let tgid = sched::with_current(|c| c.tgid());
            let r = rt.clone();
            let task = sched::spawn(CloneKind::Thread { tgid }, move || {
                let Some(mm) = sched::with_current(|c| c.mm()) else {
                    return;
                };
                let mut t = ThreadCtx::new(r, t, mm);
                let _ = t.run_script();
            })
            .map_err(|_| Exit)?;
            rt.started(t, task);
        }
        for &c in &proc.children {
            ret_to_user()?;
            let task = self.clone_vm(c)?;
            rt.started(rt.file.procs[c].main, task);
        }
        self.run_script()
    }

    /// `clone(CLONE_VM)` without `CLONE_THREAD`: process `c` sharing this address space; it
    /// inherits `oom_score_adj` (`copy_signal()`).
    fn clone_vm(&self, c: ProcId) -> Step<Arc<Task>> {
        let adj = sched::with_current(|t| t.group().oom_score_adj());
        let mm = self.mm.clone();
        mm.mmget();
        let rt = self.rt.clone();
        let comm = rt.file.procs[c].name.clone();
        let r = sched::spawn(CloneKind::Process { comm }, move || {
            sched::with_current(|t| t.group().set_oom_score_adj(adj));
            attach_mm(&mm);
            mmput(&mm);
            process_main(rt, c, mm);
        });
        match r {
            Ok(t) => Ok(t),
            Err(_) => {
                mmput(&self.mm);
                Err(Exit)
            }
        }
    }

    fn run_script(&mut self) -> Step {
        let rt = self.rt.clone();
        self.block(&rt.file.threads[self.tid].script)?;
        Ok(())
    }

    fn block(&mut self, actions: &[Action]) -> Step<Flow> {
        for a in actions {
            if let Some(c) = &a.after {
                if !self.wait_user(c)? {
                    return Err(Exit);
                }
            }
            if let Flow::Break = self.act(a)? {
                return Ok(Flow::Break);
            }
        }
        Ok(Flow::Next)
    }

    fn on_error(&self, a: &Action) -> Step<Flow> {
        match a.on_error {
            OnError::Continue => Ok(Flow::Next),
            OnError::Break => Ok(Flow::Break),
            OnError::Exit => Err(Exit),
        }
    }

    /// A mapping by name: this thread's own, else its process's.
    fn binding(&self, name: &str) -> Option<(u64, u64)> {
        self.own.get(name).copied().or_else(|| {
            self.rt
                .maps
                .lock()
                .get(&(self.proc, name.to_string()))
                .copied()
        })
    }

    fn unbind(&mut self, name: &str) {
        if self.own.remove(name).is_none() {
            self.rt.maps.lock().remove(&(self.proc, name.to_string()));
        }
    }

    fn act(&mut self, a: &Action) -> Step<Flow> {
        let mm = self.mm.clone();
        match &a.kind {
            ActionKind::Pause => {
                pause_until_killed(1000)?;
            }
            ActionKind::Exit => return Err(Exit),
            ActionKind::Sleep { ms } => sleep_ms(*ms)?,
            ActionKind::Populate {
                size,
                shared,
                locked,
            } => {
                let n = self.pages(*size);
                populate(&mm, n, *shared, *locked, n)?;
            }
            ActionKind::Mmap {
                name,
                size,
                shared,
                prot,
            } => {
                let n = self.pages(*size);
                let r = if *prot == mm::mmap::PROT_READ | mm::mmap::PROT_WRITE {
                    map(&mm, n, *shared)?
                } else {
                    let flags = MAP_ANONYMOUS | if *shared { MAP_SHARED } else { MAP_PRIVATE };
                    let r = mmap(&mm, 0, n * PAGE_SIZE, *prot, flags);
                    ret_to_user()?;
                    r
                };
                match r {
                    Ok(addr) => {
                        self.own.insert(name.clone(), (addr, n));
                    }
                    Err(_) => return self.on_error(a),
                }
            }
            ActionKind::Touch {
                name,
                offset,
                pages,
            } => {
                // A name another thread unmapped: the access faults (SIGSEGV).
                let (addr, len) = self.binding(name).ok_or(Exit)?;
                let off = self.pages(*offset);
                let n = pages.map_or(len.saturating_sub(off), |p| self.pages(p));
                touch_pages(&mm, addr.saturating_add(off.saturating_mul(PAGE_SIZE)), n)?;
            }
            ActionKind::Munmap { name } => {
                let Some((addr, len)) = self.binding(name) else {
                    return self.on_error(a);
                };
                self.unbind(name);
                if unmap(&mm, addr, len)?.is_err() {
                    return self.on_error(a);
                }
            }
            ActionKind::Mprotect { name, prot } => {
                let Some((addr, len)) = self.binding(name) else {
                    return self.on_error(a);
                };
                let r = mprotect(&mm, addr, len * PAGE_SIZE, *prot);
                ret_to_user()?;
                if r.is_err() {
                    return self.on_error(a);
                }
            }
            ActionKind::Mlock { name } => {
                let Some((addr, len)) = self.binding(name) else {
                    return self.on_error(a);
                };
                let r = mlock(&mm, addr, len * PAGE_SIZE);
                ret_to_user()?;
                if r.is_err() {
                    return self.on_error(a);
                }
            }
            ActionKind::Remote {
                write,
                target,
                mapping,
                size,
                offset,
                advance,
                stall,
            } => {
                if self.remote(
                    a, *write, *target, *mapping, *size, *offset, *advance, stall,
                )? {
                    return self.on_error(a);
                }
            }
            ActionKind::Kill { target } => {
                let main = self.file().procs[*target].main;
                if let Slot::Started(t) = self.rt.slot(main) {
                    kill(&t);
                }
            }
            ActionKind::Repeat { times, body } => {
                let mut round = 0u64;
                while times.is_none_or(|n| round < n) {
                    round += 1;
                    if let Flow::Break = self.block(body)? {
                        break;
                    }
                }
            }
            ActionKind::InKernel { steps } => {
                self.trip(steps)?;
                ret_to_user()?;
            }
        }
        Ok(Flow::Next)
    }

    /// A remote access; `Ok(true)` when it failed with an errno (the action's `on_error`
    /// decides what follows).
    #[allow(clippy::too_many_arguments)]
    fn remote(
        &mut self,
        a: &Action,
        write: bool,
        target: ProcId,
        mapping: usize,
        size: Option<SizeValue>,
        offset: SizeValue,
        advance: bool,
        stall: &Option<Stall>,
    ) -> Step<bool> {
        let rt = self.rt.clone();
        let mname = &rt.file.procs[target].mappings[mapping].name;
        let place = rt.maps.lock().get(&(target, mname.clone())).copied();
        // Not mapped (yet, or any more): nothing to pin; /proc/PID/mem gives EFAULT/EIO.
        let (Some(mm), Some((base, len))) = (rt.mm_of(target), place) else {
            return Ok(true);
        };
        let off = self.pages(offset);
        let n = size.map_or(len.saturating_sub(off), |s| self.pages(s));
        let bytes = n * PAGE_SIZE;
        let mut start = off * PAGE_SIZE;
        if advance {
            let i = self.rounds.entry(a.id).or_insert(0);
            start = (start + *i * bytes) % (len * PAGE_SIZE);
            *i += 1;
        }
        let addr = base + start;
        let r = match stall {
            None if write => remote_write(&mm, addr, bytes as usize)?,
            None => remote_read(&mm, addr, bytes as usize)?,
            Some(s) => {
                let stalled =
                    remote_access_stalled(&mm, addr, bytes as usize, write, || match s {
                        Stall::For { ms } => {
                            io_wait_ms(*ms);
                            true
                        }
                        Stall::Until(c) => self.wait_kernel(c),
                    })?;
                // None: the stall's condition can no longer hold (noted); the access was
                // abandoned and the script ends.
                stalled.ok_or(Exit)?
            }
        };
        Ok(r.is_err())
    }

    /// One trip into the kernel: each step in order, holding what it takes until the trip
    /// ends (released in reverse order), then the return to user space.
    fn trip(&self, steps: &[KernelStep]) -> Step {
        let Some((first, rest)) = steps.split_first() else {
            return Ok(());
        };
        match &first.kind {
            KernelStepKind::MmapLock { write: true } => {
                let _w = syscall_write_lock(&self.mm)?;
                self.trip(rest)
            }
            KernelStepKind::MmapLock { write: false } => {
                let _r = fault_read_lock(&self.mm).map_err(|_| Exit)?;
                self.trip(rest)
            }
            KernelStepKind::Mutex { index } => {
                let _g = kmutex_lock(&self.rt.mutexes[*index]);
                self.trip(rest)
            }
            KernelStepKind::IoWait { ms } => {
                io_wait_ms(*ms);
                self.trip(rest)
            }
            KernelStepKind::WaitUntil(c) => {
                if !self.wait_kernel(c) {
                    return Err(Exit);
                }
                self.trip(rest)
            }
            KernelStepKind::Kalloc { size, gfp } => {
                let mut pages = KernelPages::new(&self.rt.pool);
                match size {
                    Some(s) => {
                        let _ = pages.alloc(*gfp, self.pages(*s));
                    }
                    None => while pages.alloc(*gfp, 1).is_ok() {},
                }
                self.trip(rest)
            }
        }
    }

    /// Wait in user space (`TASK_INTERRUPTIBLE`) until `c` holds: `Ok(false)` if it never
    /// will (noted).
    fn wait_user(&self, c: &Cond) -> Step<bool> {
        loop {
            match self.rt.eval(c) {
                Eval::Holds => return Ok(true),
                Eval::Never(why) => {
                    self.never(c, &why);
                    return Ok(false);
                }
                Eval::NotYet => {}
            }
            sched::schedule_timeout_interruptible(self.jiffies_to_wait(c));
            ret_to_user()?;
        }
    }

    /// Wait inside the kernel (`TASK_UNINTERRUPTIBLE`, as an I/O wait) until `c` holds:
    /// false if it never will (noted).
    fn wait_kernel(&self, c: &Cond) -> bool {
        loop {
            match self.rt.eval(c) {
                Eval::Holds => return true,
                Eval::Never(why) => {
                    self.never(c, &why);
                    return false;
                }
                Eval::NotYet => {}
            }
            sched::schedule_timeout_uninterruptible(self.jiffies_to_wait(c));
        }
    }

    /// One jiffy, or until the time a condition names.
    fn jiffies_to_wait(&self, c: &Cond) -> u64 {
        match &c.kind {
            CondKind::At(t) => {
                let per_jiffy = 1_000_000_000 / u64::from(sched::hz());
                t.0.saturating_sub(sched::ktime_get_ns())
                    .div_ceil(per_jiffy)
                    .max(1)
            }
            _ => 1,
        }
    }

    fn never(&self, c: &Cond, why: &str) {
        self.rt.note(format!(
            "{} waited for '{}' ({}), which can no longer hold: {why}; the rest of its script was skipped",
            self.file().thread_ref(self.tid),
            c.text,
            self.file().src.at(&c.span),
        ));
    }
}
