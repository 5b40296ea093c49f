//! From the TOML schema ([`super::format`]) to a checked [`ScenarioFile`]: names resolved to
//! indices, each action's keys checked against its verb, sizes checked against the machine,
//! and the orderings checked as a graph: every condition must be able to hold (the thread it
//! watches takes that lock, allocates, ...), and no set of conditions may wait on each other
//! in a cycle. Every error is one line at the offending key or value.

use super::expect::{Case, Expect, Expectations};
use super::format::*;
use super::*;
use mm::pgtable::{PAGE_SIZE, TASK_SIZE};
use reaper::machine::MachineConfig;
use std::collections::{BTreeSet, HashMap};
use toml::Spanned;

/// Memory when the file does not say.
pub const DEFAULT_MEMORY_BYTES: u64 = 16 << 20;
/// The time limit when neither the file nor the command line says (as `--time-limit`).
pub const DEFAULT_TIME_LIMIT_NS: u64 = 600_000_000_000;
/// `TASK_COMM_LEN` − 1: the longest process name.
const COMM_MAX: usize = 15;
/// `PID_MAX_LIMIT` on 64-bit.
const PID_MAX: i64 = 4_194_304;
/// Kthreads a machine may boot before the workload (oom_reaper, watchdog): pids 1 and 2.
const KTHREAD_PIDS: u32 = 2;

type R<T> = Result<T, FileError>;

fn name_ok(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

struct Builder {
    src: Source,
    memory_bytes: u64,
    time_limit_ns: u64,
    procs: Vec<Proc>,
    threads: Vec<Thread>,
    mutexes: Vec<String>,
    next_action: usize,
    /// Raw scripts, taken out while converting.
    raw_scripts: Vec<Vec<Spanned<RawAction>>>,
}

pub(crate) fn build(src: Source, stem: &str, raw: RawFile) -> R<ScenarioFile> {
    let name = match &raw.name {
        Some(n) => {
            if !name_ok(n.get_ref(), 64) {
                return Err(src.error(
                    n.span(),
                    format!(
                        "invalid name '{}': 1 to 64 letters, digits, '-' or '_'",
                        n.get_ref()
                    ),
                ));
            }
            n.get_ref().clone()
        }
        None => stem.to_string(),
    };
    let about = match &raw.about {
        Some(a) if a.get_ref().contains('\n') => {
            return Err(src.error(a.span(), "about must be one line"))
        }
        Some(a) => a.get_ref().clone(),
        None => String::new(),
    };
    let memory_bytes = match &raw.memory {
        None => DEFAULT_MEMORY_BYTES,
        Some(m) => memory_value(&src, m)?,
    };
    let time_limit_ns = match &raw.time_limit {
        Some(t) if t.get_ref().0 == 0 => {
            return Err(src.error(t.span(), "time_limit must be more than zero"))
        }
        Some(t) => Some(t.get_ref().0),
        None => None,
    };
    let kernel = match &raw.kernel {
        Some(k) => knob_table(&src, k, memory_bytes)?,
        None => Vec::new(),
    };
    let mut b = Builder {
        src,
        memory_bytes,
        time_limit_ns: time_limit_ns.unwrap_or(DEFAULT_TIME_LIMIT_NS),
        procs: Vec::new(),
        threads: Vec::new(),
        mutexes: Vec::new(),
        next_action: 0,
        raw_scripts: Vec::new(),
    };
    let RawFile {
        process, expect, ..
    } = raw;
    b.declare_processes(process)?;
    b.convert_scripts()?;
    let expect = match expect {
        Some(e) => Some(b.expectations(e)?),
        None => None,
    };
    let file = ScenarioFile {
        src: b.src,
        name,
        about,
        memory_bytes,
        time_limit_ns,
        kernel,
        procs: b.procs,
        threads: b.threads,
        mutexes: b.mutexes,
        expect,
    };
    check_sizes(&file, memory_bytes / PAGE_SIZE)?;
    check_orderings(&file, b.time_limit_ns)?;
    Ok(file)
}

/// `memory`: pages or bytes, a whole number of pages, large enough for the watermarks.
fn memory_value(src: &Source, m: &Spanned<SizeValue>) -> R<u64> {
    let bytes = match *m.get_ref() {
        SizeValue::Pages(p) => p.checked_mul(PAGE_SIZE),
        SizeValue::Bytes(b) => Some(b),
        SizeValue::Percent(_) => {
            return Err(src.error(
                m.span(),
                "memory cannot be a share of memory: give pages or a size such as \"16MiB\"",
            ))
        }
    };
    let Some(bytes) = bytes.filter(|b| *b > 0) else {
        return Err(src.error(
            m.span(),
            "impossible memory size: must be at least one page",
        ));
    };
    let fits = |bytes: u64| {
        let frames = bytes / PAGE_SIZE;
        mm::page_alloc::compute_watermarks(frames).high * 2 <= frames
    };
    if !fits(bytes) {
        let least = (1..=4096u64)
            .map(|pages| pages * PAGE_SIZE)
            .find(|b| fits(*b))
            .unwrap_or(4 << 20);
        return Err(src.error(
            m.span(),
            format!(
                "impossible memory size {}: too small for the page allocator's watermarks; \
                 use at least {}",
                reaper::units::format_size(bytes),
                reaper::units::format_size(least)
            ),
        ));
    }
    Ok(bytes)
}

/// A table of knobs: each set on a scratch machine so that a bad name or value is reported
/// at its place.
fn knob_table(src: &Source, t: &Spanned<KnobTable>, memory_bytes: u64) -> R<Vec<(String, String)>> {
    let mut scratch = MachineConfig::sim(memory_bytes);
    let mut out = Vec::new();
    for (k, v) in t.get_ref() {
        if reaper::knobs::find(k.get_ref()).is_none() {
            let names: Vec<&str> = reaper::knobs::KNOBS.iter().map(|k| k.name).collect();
            return Err(src.error(
                k.span(),
                format!(
                    "unknown knob '{}' (known: {})",
                    k.get_ref(),
                    names.join(", ")
                ),
            ));
        }
        scratch
            .set_knob(k.get_ref(), &v.get_ref().0)
            .map_err(|e| src.error(v.span(), e.to_string()))?;
        out.push((k.get_ref().clone(), v.get_ref().0.clone()));
    }
    Ok(out)
}

/// A case's `kernel` table, each knob checked, expanded into every combination of the values
/// listed (knobs in table order, values in the order given).
fn case_knobs(
    src: &Source,
    t: &Spanned<CaseKnobTable>,
    memory_bytes: u64,
) -> R<Vec<Vec<(String, String)>>> {
    let mut scratch = MachineConfig::sim(memory_bytes);
    let mut combos: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for (k, vs) in t.get_ref() {
        if reaper::knobs::find(k.get_ref()).is_none() {
            let names: Vec<&str> = reaper::knobs::KNOBS.iter().map(|k| k.name).collect();
            return Err(src.error(
                k.span(),
                format!(
                    "unknown knob '{}' (known: {})",
                    k.get_ref(),
                    names.join(", ")
                ),
            ));
        }
        for v in &vs.get_ref().0 {
            scratch
                .set_knob(k.get_ref(), v)
                .map_err(|e| src.error(vs.span(), e.to_string()))?;
        }
        combos = combos
            .into_iter()
            .flat_map(|c| {
                vs.get_ref().0.iter().map(move |v| {
                    let mut c = c.clone();
                    c.push((k.get_ref().clone(), v.clone()));
                    c
                })
            })
            .collect();
        if combos.len() > 4096 {
            return Err(src.error(t.span(), "more than 4096 configurations in one case"));
        }
    }
    Ok(combos)
}

/// Which verb an action table has, with its span.
fn verbs(t: &RawActionTable) -> Vec<(&'static str, Range<usize>)> {
    let mut v = Vec::new();
    macro_rules! verb {
        ($($f:ident),*) => {
            $( if let Some(x) = &t.$f { v.push((stringify!($f), x.span())); } )*
        };
    }
    verb!(
        sleep,
        populate,
        mmap,
        touch,
        munmap,
        mprotect,
        mlock,
        remote_read,
        remote_write,
        kill,
        repeat,
        in_kernel
    );
    v
}

/// The modifiers an action table has, with their spans.
fn modifiers(t: &RawActionTable) -> Vec<(&'static str, Range<usize>)> {
    let mut v = Vec::new();
    macro_rules! modifier {
        ($($f:ident),*) => {
            $( if let Some(x) = &t.$f { v.push((stringify!($f), x.span())); } )*
        };
    }
    modifier!(
        size,
        offset,
        pages,
        kind,
        locked,
        prot,
        advance,
        on_error,
        stall,
        stall_until,
        after
    );
    if let Some(x) = &t.body {
        v.push(("do", x.span()));
    }
    v
}

/// The modifiers each verb takes (`after` is common to all).
fn allowed(verb: &str) -> &'static [&'static str] {
    match verb {
        "populate" => &["kind", "locked"],
        "mmap" => &["size", "kind", "prot", "on_error"],
        "touch" => &["offset", "pages"],
        "munmap" | "mlock" => &["on_error"],
        "mprotect" => &["prot", "on_error"],
        "remote_read" | "remote_write" => &[
            "size",
            "offset",
            "advance",
            "on_error",
            "stall",
            "stall_until",
        ],
        "repeat" => &["do"],
        _ => &[],
    }
}

impl Builder {
    fn err(&self, span: Range<usize>, what: impl Into<String>) -> FileError {
        self.src.error(span, what)
    }

    fn proc_by_name(&self, name: &str) -> Option<ProcId> {
        self.procs.iter().position(|p| p.name == name)
    }

    fn declare_processes(&mut self, raw: Vec<Spanned<RawProcess>>) -> R<()> {
        // Names and threads first, so that later references resolve in any order.
        let mut clone_of: Vec<Option<Spanned<String>>> = Vec::new();
        for rp in raw {
            let span = rp.span();
            let rp = rp.into_inner();
            let name = rp.name.get_ref().clone();
            if !name_ok(&name, COMM_MAX) {
                return Err(self.err(
                    rp.name.span(),
                    format!(
                        "invalid process name '{name}': 1 to {COMM_MAX} letters, digits, '-' or '_' (TASK_COMM_LEN)"
                    ),
                ));
            }
            if self.proc_by_name(&name).is_some() {
                return Err(self.err(rp.name.span(), format!("process '{name}' is defined twice")));
            }
            let id = self.procs.len();
            let pid = match &rp.pid {
                None => None,
                Some(p) => {
                    if rp.clone_vm.is_some() {
                        return Err(self.err(
                            p.span(),
                            "pid can only be set for processes started at boot, not for a clone_vm child",
                        ));
                    }
                    let v = *p.get_ref();
                    if !(1..=PID_MAX).contains(&v) {
                        return Err(self.err(
                            p.span(),
                            format!("invalid pid {v}: expected 1 to {PID_MAX} (PID_MAX_LIMIT)"),
                        ));
                    }
                    Some(v as u32)
                }
            };
            let oom_score_adj = match &rp.oom_score_adj {
                None => 0,
                Some(a) => {
                    if rp.clone_vm.is_some() {
                        return Err(self.err(
                            a.span(),
                            "a clone_vm child inherits oom_score_adj from the process that clones it",
                        ));
                    }
                    let v = *a.get_ref();
                    if !(-1000..=1000).contains(&v) {
                        return Err(self.err(
                            a.span(),
                            format!("invalid oom_score_adj {v}: expected -1000 to 1000"),
                        ));
                    }
                    v as i32
                }
            };
            let mut mappings: Vec<Mapping> = Vec::new();
            for m in &rp.mapping {
                let m = m.get_ref();
                let mname = m.name.get_ref();
                if !name_ok(mname, 64) {
                    return Err(self.err(
                        m.name.span(),
                        format!("invalid mapping name '{mname}': letters, digits, '-' or '_'"),
                    ));
                }
                if mappings.iter().any(|x| &x.name == mname) {
                    return Err(self.err(
                        m.name.span(),
                        format!("mapping '{mname}' is defined twice in process '{name}'"),
                    ));
                }
                let locked = m.locked.as_ref().is_some_and(|l| *l.get_ref());
                let resident = match m.resident.as_ref().map(|r| *r.get_ref()) {
                    None | Some(ResidentValue::All) => None,
                    Some(ResidentValue::Size(s)) => Some(s),
                };
                if locked && resident.is_some() {
                    return Err(self.err(
                        m.resident.as_ref().expect("resident").span(),
                        "a locked mapping is all resident (mlock faults it in): leave resident out",
                    ));
                }
                mappings.push(Mapping {
                    name: mname.clone(),
                    size: *m.size.get_ref(),
                    size_span: m.size.span(),
                    shared: m
                        .kind
                        .as_ref()
                        .is_some_and(|k| *k.get_ref() == KindValue::Shared),
                    locked,
                    resident,
                    resident_span: m.resident.as_ref().map_or(m.size.span(), |r| r.span()),
                });
            }
            let main = self.threads.len();
            self.threads.push(Thread {
                proc: id,
                name: None,
                script: Vec::new(),
            });
            self.raw_scripts.push(rp.script);
            let mut threads = Vec::new();
            for t in rp.thread {
                let t = t.into_inner();
                let tname = t.name.get_ref().clone();
                if !name_ok(&tname, 64) || tname == "main" {
                    return Err(self.err(
                        t.name.span(),
                        format!(
                            "invalid thread name '{tname}': letters, digits, '-' or '_', and not 'main' (the process's own thread)"
                        ),
                    ));
                }
                if threads
                    .iter()
                    .any(|&x: &ThreadId| self.threads[x].name.as_deref() == Some(&tname))
                {
                    return Err(self.err(
                        t.name.span(),
                        format!("thread '{tname}' is defined twice in process '{name}'"),
                    ));
                }
                threads.push(self.threads.len());
                self.threads.push(Thread {
                    proc: id,
                    name: Some(tname),
                    script: Vec::new(),
                });
                self.raw_scripts.push(t.script);
            }
            clone_of.push(rp.clone_vm);
            self.procs.push(Proc {
                name,
                pid,
                oom_score_adj,
                clone_vm: None,
                mm_owner: id,
                mappings,
                main,
                threads,
                children: Vec::new(),
                span,
            });
        }
        // clone_vm links, checked for unknown names and cycles.
        for (id, c) in clone_of.iter().enumerate() {
            let Some(c) = c else { continue };
            let Some(parent) = self.proc_by_name(c.get_ref()) else {
                return Err(self.err(
                    c.span(),
                    format!("clone_vm names an undefined process '{}'", c.get_ref()),
                ));
            };
            if parent == id {
                return Err(self.err(c.span(), "a process cannot clone_vm itself"));
            }
            self.procs[id].clone_vm = Some(parent);
        }
        for (id, clone) in clone_of.iter().enumerate() {
            let mut owner = id;
            let mut steps = 0;
            while let Some(p) = self.procs[owner].clone_vm {
                owner = p;
                steps += 1;
                if steps > self.procs.len() {
                    let span = clone.as_ref().map_or(0..0, |c| c.span());
                    return Err(self.err(
                        span,
                        format!(
                            "cyclic clone_vm: '{}' would be cloned by a process it clones",
                            self.procs[id].name
                        ),
                    ));
                }
            }
            self.procs[id].mm_owner = owner;
            if let Some(p) = self.procs[id].clone_vm {
                self.procs[p].children.push(id);
            }
        }
        // Pids: processes started at boot are forked in file order after the kthreads.
        let mut last = KTHREAD_PIDS;
        for p in self.procs.iter().filter(|p| p.clone_vm.is_none()) {
            match p.pid {
                Some(pid) if pid <= last => {
                    let span = p.span.clone();
                    return Err(self.err(
                        span,
                        format!(
                            "pid {pid} of '{}' is taken by then (the kthreads have 1-{KTHREAD_PIDS}, processes are forked in file order): use a pid above {last}",
                            p.name
                        ),
                    ));
                }
                Some(pid) => last = pid,
                None => last += 1,
            }
        }
        Ok(())
    }

    fn convert_scripts(&mut self) -> R<()> {
        let raw = std::mem::take(&mut self.raw_scripts);
        for (tid, script) in raw.into_iter().enumerate() {
            let proc = self.threads[tid].proc;
            let mut bound: BTreeSet<String> = self.procs[proc]
                .mappings
                .iter()
                .map(|m| m.name.clone())
                .collect();
            let actions = self.actions(tid, script, &mut bound)?;
            self.threads[tid].script = actions;
        }
        Ok(())
    }

    fn actions(
        &mut self,
        tid: ThreadId,
        raw: Vec<Spanned<RawAction>>,
        bound: &mut BTreeSet<String>,
    ) -> R<Vec<Action>> {
        raw.into_iter()
            .map(|a| self.action(tid, a, bound))
            .collect()
    }

    fn action(
        &mut self,
        tid: ThreadId,
        raw: Spanned<RawAction>,
        bound: &mut BTreeSet<String>,
    ) -> R<Action> {
        let span = raw.span();
        let id = self.next_action;
        self.next_action += 1;
        let t = match raw.into_inner() {
            RawAction::Word(w) => {
                let kind = match w.as_str() {
                    "pause" => ActionKind::Pause,
                    "exit" => ActionKind::Exit,
                    _ => {
                        return Err(self.err(
                            span,
                            format!("unknown action '{w}': a bare action is \"pause\" or \"exit\"; others are tables such as {{ sleep = \"100ms\" }}"),
                        ))
                    }
                };
                return Ok(Action {
                    kind,
                    after: None,
                    on_error: OnError::Continue,
                    id,
                    span,
                });
            }
            RawAction::Table(t) => *t,
        };
        let vs = verbs(&t);
        let verb = match vs.as_slice() {
            [] => {
                return Err(self.err(
                    span,
                    "an action needs a verb: sleep, populate, mmap, touch, munmap, mprotect, mlock, remote_read, remote_write, kill, repeat or in_kernel",
                ))
            }
            [(v, _)] => *v,
            [_, (v2, s2), ..] => {
                return Err(self.err(
                    s2.clone(),
                    format!("one verb per action: '{}' and '{v2}' are both given", vs[0].0),
                ))
            }
        };
        for (m, s) in modifiers(&t) {
            if m != "after" && !allowed(verb).contains(&m) {
                let takes: Vec<&str> = allowed(verb).iter().copied().chain(["after"]).collect();
                return Err(self.err(
                    s,
                    format!(
                        "'{m}' does not apply to {verb} ({verb} takes: {})",
                        takes.join(", ")
                    ),
                ));
            }
        }
        let after = match &t.after {
            Some(c) => Some(self.condition(tid, c)?),
            None => None,
        };
        let on_error = match t.on_error.as_ref().map(|o| *o.get_ref()) {
            Some(OnErrorValue::Continue) => OnError::Continue,
            Some(OnErrorValue::Break) => OnError::Break,
            Some(OnErrorValue::Exit) => OnError::Exit,
            None if verb == "mmap" => OnError::Exit,
            None => OnError::Continue,
        };
        let shared = t
            .kind
            .as_ref()
            .is_some_and(|k| *k.get_ref() == KindValue::Shared);
        let kind = match verb {
            "sleep" => {
                let d = t.sleep.as_ref().expect("verb");
                ActionKind::Sleep {
                    ms: self.whole_ms(d)?,
                }
            }
            "populate" => ActionKind::Populate {
                size: *t.populate.as_ref().expect("verb").get_ref(),
                shared,
                locked: t.locked.as_ref().is_some_and(|l| *l.get_ref()),
            },
            "mmap" => {
                let n = t.mmap.as_ref().expect("verb");
                let name = self.binding_name(n)?;
                let Some(size) = &t.size else {
                    return Err(self.err(span, "mmap needs a size"));
                };
                bound.insert(name.clone());
                ActionKind::Mmap {
                    name,
                    size: *size.get_ref(),
                    shared,
                    prot: t
                        .prot
                        .as_ref()
                        .map_or(mm::mmap::PROT_READ | mm::mmap::PROT_WRITE, |p| {
                            p.get_ref().0
                        }),
                }
            }
            "touch" => ActionKind::Touch {
                name: self.bound_name(t.touch.as_ref().expect("verb"), bound)?,
                offset: t
                    .offset
                    .as_ref()
                    .map_or(SizeValue::Pages(0), |o| *o.get_ref()),
                pages: t.pages.as_ref().map(|p| *p.get_ref()),
            },
            "munmap" => {
                let name = self.bound_name(t.munmap.as_ref().expect("verb"), bound)?;
                bound.remove(&name);
                ActionKind::Munmap { name }
            }
            "mprotect" => {
                let name = self.bound_name(t.mprotect.as_ref().expect("verb"), bound)?;
                let Some(prot) = &t.prot else {
                    return Err(self.err(span, "mprotect needs a prot"));
                };
                ActionKind::Mprotect {
                    name,
                    prot: prot.get_ref().0,
                }
            }
            "mlock" => ActionKind::Mlock {
                name: self.bound_name(t.mlock.as_ref().expect("verb"), bound)?,
            },
            "remote_read" | "remote_write" => {
                let write = verb == "remote_write";
                let target = if write {
                    t.remote_write.as_ref()
                } else {
                    t.remote_read.as_ref()
                }
                .expect("verb");
                let (tp, tm) = self.mapping_ref(target)?;
                let stall = match (&t.stall, &t.stall_until) {
                    (Some(_), Some(c)) => {
                        return Err(self.err(c.span(), "give stall or stall_until, not both"))
                    }
                    (Some(d), _) => Some(Stall::For {
                        ms: self.whole_ms(d)?,
                    }),
                    (_, Some(c)) => Some(Stall::Until(self.condition(tid, c)?)),
                    _ => None,
                };
                ActionKind::Remote {
                    write,
                    target: tp,
                    mapping: tm,
                    size: t.size.as_ref().map(|s| *s.get_ref()),
                    offset: t
                        .offset
                        .as_ref()
                        .map_or(SizeValue::Pages(0), |o| *o.get_ref()),
                    advance: t.advance.as_ref().is_some_and(|a| *a.get_ref()),
                    stall,
                }
            }
            "kill" => {
                let k = t.kill.as_ref().expect("verb");
                let Some(target) = self.proc_by_name(k.get_ref()) else {
                    return Err(self.err(
                        k.span(),
                        format!("kill names an undefined process '{}'", k.get_ref()),
                    ));
                };
                ActionKind::Kill { target }
            }
            "repeat" => {
                let r = t.repeat.as_ref().expect("verb");
                let Some(body) = t.body else {
                    return Err(self.err(span, "repeat needs a do = [ ... ] list of actions"));
                };
                let body_span = body.span();
                let body = body.into_inner();
                if body.is_empty() {
                    return Err(self.err(body_span, "repeat's do list is empty"));
                }
                let body = self.actions(tid, body, bound)?;
                ActionKind::Repeat {
                    times: match r.get_ref() {
                        RepeatValue::Times(n) => Some(*n),
                        RepeatValue::Forever => None,
                    },
                    body,
                }
            }
            "in_kernel" => {
                let steps = t.in_kernel.expect("verb");
                let steps_span = steps.span();
                let steps = steps.into_inner();
                if steps.is_empty() {
                    return Err(self.err(steps_span, "in_kernel's list is empty"));
                }
                let mut out = Vec::new();
                for s in steps {
                    out.push(self.kernel_step(tid, s, &out)?);
                }
                ActionKind::InKernel { steps: out }
            }
            _ => unreachable!("verbs() lists only these"),
        };
        Ok(Action {
            kind,
            after,
            on_error,
            id,
            span,
        })
    }

    fn kernel_step(
        &mut self,
        tid: ThreadId,
        raw: Spanned<RawKernelAction>,
        before: &[KernelStep],
    ) -> R<KernelStep> {
        let span = raw.span();
        let k = raw.into_inner();
        let mut given: Vec<(&str, Range<usize>)> = Vec::new();
        if let Some(x) = &k.mmap_lock {
            given.push(("mmap_lock", x.span()));
        }
        if let Some(x) = &k.mutex {
            given.push(("mutex", x.span()));
        }
        if let Some(x) = &k.io_wait {
            given.push(("io_wait", x.span()));
        }
        if let Some(x) = &k.wait_until {
            given.push(("wait_until", x.span()));
        }
        if let Some(x) = &k.kalloc {
            given.push(("kalloc", x.span()));
        }
        if given.is_empty() {
            return Err(self.err(
                span,
                "an in_kernel step needs one of mmap_lock, mutex, io_wait, wait_until or kalloc",
            ));
        }
        if given.len() > 1 {
            return Err(self.err(
                given[1].1.clone(),
                format!(
                    "one step per table: '{}' and '{}' are both given",
                    given[0].0, given[1].0
                ),
            ));
        }
        if let Some(g) = &k.gfp {
            if k.kalloc.is_none() {
                return Err(self.err(g.span(), "'gfp' applies to kalloc only"));
            }
        }
        let kind = if let Some(m) = &k.mmap_lock {
            if before
                .iter()
                .any(|s| matches!(s.kind, KernelStepKind::MmapLock { .. }))
            {
                return Err(self.err(
                    m.span(),
                    "mmap_lock is already held in this in_kernel trip (an rw_semaphore does not nest: it would deadlock)",
                ));
            }
            KernelStepKind::MmapLock {
                write: *m.get_ref() == ModeValue::Write,
            }
        } else if let Some(m) = &k.mutex {
            let index = self.mutex(m)?;
            if before
                .iter()
                .any(|s| matches!(s.kind, KernelStepKind::Mutex { index: i } if i == index))
            {
                return Err(self.err(
                    m.span(),
                    format!(
                        "mutex '{}' is already held in this in_kernel trip (mutexes do not nest: it would deadlock)",
                        m.get_ref()
                    ),
                ));
            }
            KernelStepKind::Mutex { index }
        } else if let Some(d) = &k.io_wait {
            KernelStepKind::IoWait {
                ms: self.whole_ms(d)?,
            }
        } else if let Some(c) = &k.wait_until {
            KernelStepKind::WaitUntil(self.condition(tid, c)?)
        } else {
            let a = k.kalloc.as_ref().expect("one step");
            KernelStepKind::Kalloc {
                size: match a.get_ref() {
                    KallocValue::Size(s) => Some(*s),
                    KallocValue::UntilFailure => None,
                },
                gfp: k
                    .gfp
                    .as_ref()
                    .map_or(mm::gfp::Gfp::GFP_KERNEL, |g| g.get_ref().0),
            }
        };
        Ok(KernelStep { kind, span })
    }

    fn whole_ms(&self, d: &Spanned<DurValue>) -> R<u64> {
        d.get_ref().whole_ms().ok_or_else(|| {
            self.err(
                d.span(),
                format!(
                    "{} is not a whole number of milliseconds (waits are counted in jiffies)",
                    d.get_ref()
                ),
            )
        })
    }

    fn binding_name(&self, n: &Spanned<String>) -> R<String> {
        if !name_ok(n.get_ref(), 64) {
            return Err(self.err(
                n.span(),
                format!(
                    "invalid mapping name '{}': letters, digits, '-' or '_'",
                    n.get_ref()
                ),
            ));
        }
        Ok(n.get_ref().clone())
    }

    fn bound_name(&self, n: &Spanned<String>, bound: &BTreeSet<String>) -> R<String> {
        if !bound.contains(n.get_ref()) {
            return Err(self.err(
                n.span(),
                format!(
                    "no mapping '{}' here: declare it in [[process.mapping]] or mmap it earlier in this script",
                    n.get_ref()
                ),
            ));
        }
        Ok(n.get_ref().clone())
    }

    fn mutex(&mut self, m: &Spanned<String>) -> R<usize> {
        let name = m.get_ref();
        if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
            return Err(self.err(
                m.span(),
                "a mutex name is 1 to 64 printable characters (e.g. \"&inode->i_mutex\")",
            ));
        }
        Ok(match self.mutexes.iter().position(|x| x == name) {
            Some(i) => i,
            None => {
                self.mutexes.push(name.clone());
                self.mutexes.len() - 1
            }
        })
    }

    /// `proc.mapping`: a declared mapping of a process.
    fn mapping_ref(&self, r: &Spanned<String>) -> R<(ProcId, usize)> {
        let s = r.get_ref();
        let Some((p, m)) = s.split_once('.') else {
            return Err(self.err(
                r.span(),
                format!(
                    "'{s}' is not a mapping reference: write process.mapping, e.g. victim.heap"
                ),
            ));
        };
        let Some(pid) = self.proc_by_name(p) else {
            return Err(self.err(r.span(), format!("undefined process '{p}' in '{s}'")));
        };
        let Some(mid) = self.procs[pid].mappings.iter().position(|x| x.name == m) else {
            return Err(self.err(
                r.span(),
                format!("process '{p}' declares no mapping '{m}' in '{s}'"),
            ));
        };
        Ok((pid, mid))
    }

    /// `proc` or `proc.thread`.
    fn thread_ref(&self, r: &Spanned<String>) -> R<ThreadId> {
        let s = r.get_ref();
        let (p, t) = match s.split_once('.') {
            Some((p, t)) => (p, Some(t)),
            None => (s.as_str(), None),
        };
        let Some(pid) = self.proc_by_name(p) else {
            return Err(self.err(r.span(), format!("undefined process '{p}' in '{s}'")));
        };
        let proc = &self.procs[pid];
        match t {
            None | Some("main") => Ok(proc.main),
            Some(t) => proc
                .threads
                .iter()
                .copied()
                .find(|&x| self.threads[x].name.as_deref() == Some(t))
                .ok_or_else(|| {
                    self.err(
                        r.span(),
                        format!("process '{p}' has no thread '{t}' in '{s}'"),
                    )
                }),
        }
    }

    /// `mmap_lock:PROC` or `mutex:NAME`.
    fn lock_ref(&mut self, r: &Spanned<String>) -> R<LockRef> {
        let s = r.get_ref();
        if let Some(p) = s.strip_prefix("mmap_lock:") {
            let Some(pid) = self.proc_by_name(p) else {
                return Err(self.err(r.span(), format!("undefined process '{p}' in '{s}'")));
            };
            return Ok(LockRef::MmapLock(self.procs[pid].mm_owner));
        }
        if let Some(m) = s.strip_prefix("mutex:") {
            let name = Spanned::new(r.span(), m.to_string());
            return Ok(LockRef::Mutex(self.mutex(&name)?));
        }
        Err(self.err(
            r.span(),
            format!("'{s}' is not a lock: write mmap_lock:PROCESS or mutex:NAME"),
        ))
    }

    fn condition(&mut self, tid: ThreadId, c: &Spanned<RawCondition>) -> R<Cond> {
        let span = c.span();
        let rc = c.get_ref();
        let mut kinds: Vec<(&str, Range<usize>)> = Vec::new();
        if let Some(x) = &rc.at {
            kinds.push(("at", x.span()));
        }
        if let Some(x) = &rc.thread {
            kinds.push(("thread", x.span()));
        }
        if let Some(x) = &rc.memory {
            kinds.push(("memory", x.span()));
        }
        if let Some(x) = &rc.mapped {
            kinds.push(("mapped", x.span()));
        }
        if kinds.is_empty() {
            return Err(self.err(
                span,
                "a condition needs one of at, thread (with blocked_on or holds), memory or mapped",
            ));
        }
        if kinds.len() > 1 {
            return Err(self.err(
                kinds[1].1.clone(),
                format!(
                    "one condition per table: '{}' and '{}' are both given",
                    kinds[0].0, kinds[1].0
                ),
            ));
        }
        let stray = |k: &Option<Spanned<String>>, what: &str| -> R<()> {
            match k {
                Some(x) if rc.thread.is_none() => {
                    Err(self.err(x.span(), format!("'{what}' goes with thread = \"...\"")))
                }
                _ => Ok(()),
            }
        };
        stray(&rc.blocked_on, "blocked_on")?;
        stray(&rc.holds, "holds")?;
        if let (Some(m), true) = (&rc.mode, rc.blocked_on.is_none() && rc.holds.is_none()) {
            return Err(self.err(m.span(), "'mode' goes with blocked_on or holds"));
        }
        let (kind, text) = if let Some(at) = &rc.at {
            (CondKind::At(*at.get_ref()), format!("t = {}", at.get_ref()))
        } else if let Some(m) = &rc.memory {
            if m.get_ref() != "exhausted" {
                return Err(self.err(
                    m.span(),
                    format!(
                        "unknown memory condition '{}': expected \"exhausted\"",
                        m.get_ref()
                    ),
                ));
            }
            (CondKind::MemoryExhausted, "memory is exhausted".to_string())
        } else if let Some(m) = &rc.mapped {
            let (p, mi) = self.mapping_ref(m)?;
            (
                CondKind::Mapped { proc: p },
                format!(
                    "{} has mapped {}",
                    self.procs[p].name, self.procs[p].mappings[mi].name
                ),
            )
        } else {
            let t = rc.thread.as_ref().expect("thread");
            let thread = self.thread_ref(t)?;
            if thread == tid {
                return Err(self.err(
                    t.span(),
                    "a condition cannot watch the thread that waits for it",
                ));
            }
            let mode = rc.mode.as_ref().map(|m| *m.get_ref());
            let mode_text = match mode {
                Some(ModeValue::Read) => " for read",
                Some(ModeValue::Write) => " for write",
                None => "",
            };
            match (&rc.blocked_on, &rc.holds) {
                (Some(b), None) if b.get_ref() == "memory" => {
                    if let Some(m) = &rc.mode {
                        return Err(self.err(m.span(), "'mode' applies to locks, not to memory"));
                    }
                    (
                        CondKind::BlockedOnMemory { thread },
                        format!("{} is blocked on memory", t.get_ref()),
                    )
                }
                (Some(b), None) => (
                    CondKind::BlockedOnLock {
                        thread,
                        lock: self.lock_ref(b)?,
                        mode,
                    },
                    format!("{} is blocked on {}{mode_text}", t.get_ref(), b.get_ref()),
                ),
                (None, Some(h)) => (
                    CondKind::Holds {
                        thread,
                        lock: self.lock_ref(h)?,
                        mode,
                    },
                    format!("{} holds {}{mode_text}", t.get_ref(), h.get_ref()),
                ),
                (Some(_), Some(h)) => {
                    return Err(self.err(h.span(), "give blocked_on or holds, not both"))
                }
                (None, None) => {
                    return Err(self.err(
                        t.span(),
                        "a thread condition needs blocked_on = \"...\" or holds = \"...\"",
                    ))
                }
            }
        };
        Ok(Cond { kind, text, span })
    }

    fn expectations(&mut self, raw: Spanned<RawExpect>) -> R<Expectations> {
        let raw = raw.into_inner();
        if let Some(k) = &raw.kernel {
            return Err(self.err(
                k.span(),
                "[expect] holds for every configuration: put a kernel table in an [[expect.when]]",
            ));
        }
        let seeds = raw
            .seeds
            .as_ref()
            .map_or(Vec::new(), |s| s.get_ref().clone());
        if let Some(s) = &raw.seeds {
            if s.get_ref().is_empty() {
                return Err(self.err(s.span(), "seeds is empty"));
            }
        }
        let common = self.expect(&raw)?;
        let mut cases = Vec::new();
        for w in &raw.when {
            let wr = w.get_ref();
            if let Some(s) = &wr.seeds {
                return Err(self.err(s.span(), "seeds belongs to [expect], for every case"));
            }
            if let Some(x) = wr.when.first() {
                return Err(self.err(x.span(), "[[expect.when]] cases do not nest"));
            }
            let Some(k) = &wr.kernel else {
                return Err(self.err(
                    w.span(),
                    "an [[expect.when]] case needs kernel = { ... }: the configuration it is about",
                ));
            };
            let expect = self.expect(wr)?;
            for kernel in case_knobs(&self.src, k, self.memory_bytes)? {
                cases.push(Case {
                    kernel,
                    expect: expect.clone(),
                });
            }
        }
        Ok(Expectations {
            seeds,
            common,
            cases,
        })
    }

    fn expect(&self, e: &RawExpect) -> R<Expect> {
        let names = |l: &Option<Spanned<Vec<Spanned<String>>>>| -> R<Option<Vec<String>>> {
            let Some(l) = l else { return Ok(None) };
            let mut out = Vec::new();
            for n in l.get_ref() {
                if self.proc_by_name(n.get_ref()).is_none() {
                    return Err(self.err(n.span(), format!("undefined process '{}'", n.get_ref())));
                }
                out.push(n.get_ref().clone());
            }
            Ok(Some(out))
        };
        let reaper = e.reaper.as_ref().map(|r| r.get_ref());
        Ok(Expect {
            ending: e.ending.as_ref().map(|x| x.get_ref().name()),
            oom_kills: e.oom_kills.as_ref().map(|x| *x.get_ref()),
            killed: names(&e.killed)?,
            livelocks: e.livelocks.as_ref().map(|x| *x.get_ref()),
            sysrq_kills: e.sysrq_kills.as_ref().map(|x| *x.get_ref()),
            reaper_attempts: reaper.and_then(|r| r.attempts),
            reaper_reaped: reaper.and_then(|r| r.reaped),
            reaper_gave_up: reaper.and_then(|r| r.gave_up),
            panicked: e.panicked.as_ref().map(|x| *x.get_ref()),
            survivors: names(&e.survivors)?,
            log: e.log.as_ref().map_or(Vec::new(), |l| l.get_ref().clone()),
            no_log: e
                .no_log
                .as_ref()
                .map_or(Vec::new(), |l| l.get_ref().clone()),
        })
    }
}

// ---- sizes ----------------------------------------------------------------------------------

/// Resolves a size on the machine and refuses an impossible one (what, for the message).
type SizeCheck<'a> = dyn Fn(SizeValue, &Range<usize>, &str) -> R<u64> + 'a;

/// Every size resolved on a machine of `frames` pages is possible.
pub(crate) fn check_sizes(f: &ScenarioFile, frames: u64) -> R<()> {
    let task_pages = TASK_SIZE / PAGE_SIZE;
    let at_least_a_page = |v: SizeValue, span: &Range<usize>, what: &str| -> R<u64> {
        let p = v.pages(frames);
        if p == 0 {
            return Err(f.src.error(
                span.clone(),
                format!("impossible size: {what} {v} is 0 pages on a machine of {frames} pages"),
            ));
        }
        if p > task_pages {
            return Err(f.src.error(
                span.clone(),
                format!("impossible size: {what} {v} is larger than the address space"),
            ));
        }
        Ok(p)
    };
    for p in &f.procs {
        for m in &p.mappings {
            let size = at_least_a_page(m.size, &m.size_span, "mapping")?;
            if let Some(r) = m.resident {
                if r.pages(frames) > size {
                    return Err(f.src.error(
                        m.resident_span.clone(),
                        format!(
                            "impossible size: resident {r} is more than the mapping's {size} pages"
                        ),
                    ));
                }
            }
        }
    }
    fn walk(f: &ScenarioFile, acts: &[Action], frames: u64, check: &SizeCheck<'_>) -> R<()> {
        for a in acts {
            match &a.kind {
                ActionKind::Populate { size, .. } => {
                    check(*size, &a.span, "populate")?;
                }
                ActionKind::Mmap { size, .. } => {
                    check(*size, &a.span, "mmap")?;
                }
                ActionKind::Touch { pages: Some(p), .. } => {
                    check(*p, &a.span, "touch")?;
                }
                ActionKind::Remote {
                    target,
                    mapping,
                    size,
                    offset,
                    ..
                } => {
                    let m = &f.procs[*target].mappings[*mapping];
                    let len = m.size.pages(frames);
                    let off = offset.pages(frames);
                    let n = match size {
                        Some(s) => check(*s, &a.span, "remote access")?,
                        None => len.saturating_sub(off),
                    };
                    if n > frames {
                        return Err(f.src.error(
                            a.span.clone(),
                            format!(
                                "impossible size: a remote access of {n} pages is larger than the machine ({frames} pages): its buffer could not be resident"
                            ),
                        ));
                    }
                    if n == 0 || off.saturating_add(n) > len {
                        return Err(f.src.error(
                            a.span.clone(),
                            format!(
                                "impossible size: the access ({n} pages at page {off}) does not fit in {}.{} ({len} pages)",
                                f.procs[*target].name, m.name
                            ),
                        ));
                    }
                }
                ActionKind::Repeat { body, .. } => walk(f, body, frames, check)?,
                ActionKind::InKernel { steps } => {
                    for s in steps {
                        if let KernelStepKind::Kalloc { size: Some(sz), .. } = &s.kind {
                            check(*sz, &s.span, "kalloc")?;
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
    for t in &f.threads {
        walk(f, &t.script, frames, &at_least_a_page)?;
    }
    Ok(())
}

// ---- orderings ------------------------------------------------------------------------------

/// One point of a thread's life in the ordering graph: what it takes or does there and what
/// it waits for before getting there.
struct Node<'a> {
    takes: Vec<(LockRef, bool)>,
    allocates: bool,
    cond: Option<&'a Cond>,
}

/// Flatten scripts into nodes, in program order (repeat bodies once).
fn nodes_of<'a>(f: &'a ScenarioFile, tid: ThreadId) -> Vec<Node<'a>> {
    let th = &f.threads[tid];
    let own = LockRef::MmapLock(f.procs[th.proc].mm_owner);
    let mut out = vec![Node {
        takes: Vec::new(),
        allocates: false,
        cond: None,
    }];
    if f.procs[th.proc].main == tid {
        // Node 1 of a main thread: its mappings are set up (mmap, mlock, faults).
        let any = !f.procs[th.proc].mappings.is_empty();
        out.push(Node {
            takes: if any {
                vec![(own, true), (own, false)]
            } else {
                Vec::new()
            },
            allocates: any,
            cond: None,
        });
    }
    fn walk<'a>(acts: &'a [Action], own: LockRef, f: &ScenarioFile, out: &mut Vec<Node<'a>>) {
        for a in acts {
            let mut n = Node {
                takes: Vec::new(),
                allocates: false,
                cond: a.after.as_ref(),
            };
            match &a.kind {
                ActionKind::Populate { .. } | ActionKind::Mlock { .. } => {
                    n.takes = vec![(own, true), (own, false)];
                    n.allocates = true;
                }
                ActionKind::Mmap { .. }
                | ActionKind::Munmap { .. }
                | ActionKind::Mprotect { .. } => {
                    n.takes = vec![(own, true)];
                }
                ActionKind::Touch { .. } => {
                    n.takes = vec![(own, false)];
                    n.allocates = true;
                }
                ActionKind::Remote { target, stall, .. } => {
                    n.takes = vec![(LockRef::MmapLock(f.procs[*target].mm_owner), false)];
                    out.push(n);
                    // The walk (allocating), after the stall, with the lock still held.
                    out.push(Node {
                        takes: Vec::new(),
                        allocates: true,
                        cond: match stall {
                            Some(Stall::Until(c)) => Some(c),
                            _ => None,
                        },
                    });
                    continue;
                }
                ActionKind::Repeat { body, .. } => {
                    out.push(n);
                    walk(body, own, f, out);
                    continue;
                }
                ActionKind::InKernel { steps } => {
                    out.push(n);
                    for s in steps {
                        let mut sn = Node {
                            takes: Vec::new(),
                            allocates: false,
                            cond: None,
                        };
                        match &s.kind {
                            KernelStepKind::MmapLock { write } => sn.takes = vec![(own, *write)],
                            KernelStepKind::Mutex { index } => {
                                sn.takes = vec![(LockRef::Mutex(*index), true)]
                            }
                            KernelStepKind::WaitUntil(c) => sn.cond = Some(c),
                            KernelStepKind::Kalloc { .. } => sn.allocates = true,
                            KernelStepKind::IoWait { .. } => {}
                        }
                        out.push(sn);
                    }
                    continue;
                }
                _ => {}
            }
            out.push(n);
        }
    }
    walk(&th.script, own, f, &mut out);
    out
}

/// Every condition can hold, and no conditions wait on each other in a cycle.
fn check_orderings(f: &ScenarioFile, time_limit_ns: u64) -> R<()> {
    let nodes: Vec<Vec<Node>> = (0..f.threads.len()).map(|t| nodes_of(f, t)).collect();
    // Index of (thread, k) in one flat numbering.
    let base: Vec<usize> = nodes
        .iter()
        .scan(0, |acc, n| {
            let b = *acc;
            *acc += n.len();
            Some(b)
        })
        .collect();
    let total: usize = nodes.iter().map(Vec::len).sum();
    let mut deps: Vec<Vec<usize>> = vec![Vec::new(); total];
    let mut waits: HashMap<usize, &Cond> = HashMap::new();
    for (t, ns) in nodes.iter().enumerate() {
        let th = &f.threads[t];
        let p = &f.procs[th.proc];
        for (k, n) in ns.iter().enumerate() {
            let me = base[t] + k;
            if k > 0 {
                deps[me].push(me - 1);
            } else if p.main != t {
                // A thread is cloned once its process's mappings are in place.
                deps[me].push(base[p.main] + 1);
            } else if let Some(parent) = p.clone_vm {
                deps[me].push(base[f.procs[parent].main] + 1);
            }
            let Some(c) = n.cond else { continue };
            let target = match &c.kind {
                CondKind::At(d) => {
                    if d.0 >= time_limit_ns {
                        return Err(f.src.error(
                            c.span.clone(),
                            format!(
                                "'{}' can never hold: the time limit is {}",
                                c.text,
                                reaper::machine::secs(time_limit_ns)
                            ),
                        ));
                    }
                    None
                }
                CondKind::MemoryExhausted => None,
                CondKind::Mapped { proc, .. } => Some(base[f.procs[*proc].main] + 1),
                CondKind::BlockedOnMemory { thread } => {
                    let Some(k) = nodes[*thread].iter().position(|n| n.allocates) else {
                        return Err(f.src.error(
                            c.span.clone(),
                            format!(
                                "'{}' can never hold: no action of {} allocates memory",
                                c.text,
                                f.thread_ref(*thread)
                            ),
                        ));
                    };
                    Some(base[*thread] + k)
                }
                CondKind::BlockedOnLock { thread, lock, mode }
                | CondKind::Holds { thread, lock, mode } => {
                    let want = |w: bool| match mode {
                        None => true,
                        Some(ModeValue::Write) => w,
                        Some(ModeValue::Read) => !w,
                    };
                    let Some(k) = nodes[*thread]
                        .iter()
                        .position(|n| n.takes.iter().any(|(l, w)| l == lock && want(*w)))
                    else {
                        return Err(f.src.error(
                            c.span.clone(),
                            format!(
                                "'{}' can never hold: no action of {} takes that lock{}",
                                c.text,
                                f.thread_ref(*thread),
                                match mode {
                                    Some(ModeValue::Read) => " for read",
                                    Some(ModeValue::Write) => " for write",
                                    None => "",
                                }
                            ),
                        ));
                    };
                    Some(base[*thread] + k)
                }
            };
            if let Some(target) = target {
                deps[me].push(target);
                waits.insert(me, c);
            }
        }
    }
    // Depth-first search for a cycle (iterative: scripts can be long).
    let mut state = vec![0u8; total]; // 0 new, 1 on the stack, 2 done
    for start in 0..total {
        if state[start] != 0 {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        state[start] = 1;
        while let Some(&mut (v, ref mut i)) = stack.last_mut() {
            if *i < deps[v].len() {
                let w = deps[v][*i];
                *i += 1;
                match state[w] {
                    0 => {
                        state[w] = 1;
                        stack.push((w, 0));
                    }
                    1 => {
                        // The cycle is the stack from w to v.
                        let from = stack.iter().position(|(x, _)| *x == w).expect("on stack");
                        // A wait edge is a node's second dependency (the first is program
                        // order); `i` is one past the dependency the search followed.
                        let conds: Vec<&Cond> = stack[from..]
                            .iter()
                            .filter(|(_, i)| *i == 2)
                            .filter_map(|(x, _)| waits.get(x).copied())
                            .collect();
                        let first = conds.first().expect("a cycle has a wait");
                        let chain: Vec<String> = conds
                            .iter()
                            .map(|c| format!("'{}' ({})", c.text, f.src.at(&c.span)))
                            .collect();
                        return Err(f.src.error(
                            first.span.clone(),
                            format!(
                                "cyclic ordering: these conditions wait on each other: {}",
                                chain.join(" -> ")
                            ),
                        ));
                    }
                    _ => {}
                }
            } else {
                state[v] = 2;
                stack.pop();
            }
        }
    }
    Ok(())
}
