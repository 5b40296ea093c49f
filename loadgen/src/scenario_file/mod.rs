//! Scenario files: OOM scenarios as data (`oomlab scenario --file PATH`, and the canonical
//! scenarios embedded from `scenarios/*.toml`). docs/scenario-format.md is the reference for
//! every key; this module reads a file, checks it, and runs it on a machine.
//!
//! - [`format`](mod@format): the TOML schema as serde reads it (unknown keys refused, spans kept);
//! - [`validate`]: names resolved, sizes checked, orderings checked for cycles and for
//!   conditions that can never hold; the result is a [`ScenarioFile`];
//! - [`interp`]: the processes and their scripts, run as emulated tasks; orderings are polled
//!   against the kernel's own state at the scheduler seam;
//! - [`expect`]: `[expect]` tables and their evaluation against a run's report.
//!
//! A file sets up processes and what they do, nothing else: no key can kill, reap or declare
//! a livelock; those emerge from the model. (A process may `kill` another, as `kill(2)` does:
//! that is a signal from user space, not an OOM kill.)

pub mod expect;
pub mod format;
pub mod interp;
pub mod validate;

use format::{DurValue, ModeValue, SizeValue};
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

/// Bad input: the file, the 1-based line and column, and what is wrong. Displayed as
/// `file:line:column: what`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub what: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.what
        )
    }
}

impl std::error::Error for FileError {}

/// Where a byte offset of `text` is: 1-based line and column (in characters).
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// The source of a file: its label (the path as given) and text, for positions.
#[derive(Clone, Debug)]
pub(crate) struct Source {
    pub label: String,
    pub text: Arc<str>,
}

impl Source {
    pub fn error(&self, span: Range<usize>, what: impl Into<String>) -> FileError {
        let (line, column) = line_col(&self.text, span.start);
        FileError {
            file: self.label.clone(),
            line,
            column,
            what: what.into(),
        }
    }

    /// `line:column` of a span, for messages that point at a second place.
    pub fn at(&self, span: &Range<usize>) -> String {
        let (l, c) = line_col(&self.text, span.start);
        format!("{l}:{c}")
    }
}

/// Read and check a scenario file. `label` names it in errors (the path as the user gave it);
/// `stem` is the name used when the file has no `name` key. Nothing runs.
pub fn parse(label: &str, stem: &str, text: &str) -> Result<ScenarioFile, FileError> {
    let src = Source {
        label: label.to_string(),
        text: Arc::from(text),
    };
    let raw: format::RawFile = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        // toml's messages can span lines (a snippet); keep the first. A scenario file has
        // keys, not serde's "fields".
        let msg = e
            .message()
            .lines()
            .next()
            .unwrap_or("malformed TOML")
            .trim();
        let msg = msg
            .replace("unknown field", "unknown key")
            .replace("missing field", "missing key")
            .replace('`', "'");
        src.error(span, msg)
    })?;
    validate::build(src, stem, raw)
}

/// [`parse`] for a file's bytes: text that is not UTF-8 (which TOML requires) is reported at
/// its first bad byte.
pub fn parse_bytes(label: &str, stem: &str, bytes: &[u8]) -> Result<ScenarioFile, FileError> {
    match std::str::from_utf8(bytes) {
        Ok(text) => parse(label, stem, text),
        Err(e) => {
            let good = std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default();
            let (line, column) = line_col(good, good.len());
            Err(FileError {
                file: label.to_string(),
                line,
                column,
                what: "invalid UTF-8 (TOML files are UTF-8 text)".to_string(),
            })
        }
    }
}

/// Index of a process in [`ScenarioFile`] (file order).
pub type ProcId = usize;
/// Index of a thread in [`ScenarioFile`]: every process's main thread and its
/// `[[process.thread]]`s.
pub type ThreadId = usize;

/// A checked scenario file, ready to run on any machine that fits it
/// ([`ScenarioFile::check_memory`]).
#[derive(Debug)]
pub struct ScenarioFile {
    pub(crate) src: Source,
    /// `name`, or the file's stem.
    pub name: String,
    /// `about`: one line.
    pub about: String,
    /// `memory`, bytes (default 16 MiB).
    pub memory_bytes: u64,
    /// `time_limit`, ns, if the file sets one.
    pub time_limit_ns: Option<u64>,
    /// `[kernel]`: (knob, value), applied with `MachineConfig::set_knob`.
    pub kernel: Vec<(String, String)>,
    pub(crate) procs: Vec<Proc>,
    pub(crate) threads: Vec<Thread>,
    /// Mutex names (each one kernel `struct mutex`, named as lockdep would).
    pub(crate) mutexes: Vec<String>,
    /// `[expect]`, if any.
    pub expect: Option<expect::Expectations>,
}

impl ScenarioFile {
    /// The file as it was given (`scenarios/remote-reader.toml`, or the user's path).
    pub fn label(&self) -> &str {
        &self.src.label
    }

    /// Thread name as files write it: `proc` for a main thread, `proc.thread` otherwise.
    pub fn thread_ref(&self, t: ThreadId) -> String {
        let th = &self.threads[t];
        let p = &self.procs[th.proc].name;
        match &th.name {
            None => p.clone(),
            Some(n) => format!("{p}.{n}"),
        }
    }

    /// Every size of the file resolved on a machine of `memory_bytes` still makes sense (a
    /// mapping of at least a page, a resident part no larger than the mapping, a remote
    /// access inside its target): the check made at parse time for the file's own `memory`,
    /// to repeat when `--memory` overrides it.
    pub fn check_memory(&self, memory_bytes: u64) -> Result<(), FileError> {
        validate::check_sizes(self, memory_bytes / mm::pgtable::PAGE_SIZE)
    }
}

/// `[[process]]`, resolved.
#[derive(Debug)]
pub(crate) struct Proc {
    pub name: String,
    /// `pid`: the pid it must get (`ns_last_pid` is set before its fork).
    pub pid: Option<u32>,
    pub oom_score_adj: i32,
    /// `clone_vm`: created with `clone(CLONE_VM)` by this process's main thread.
    pub clone_vm: Option<ProcId>,
    /// The process whose `execve()` created the address space this one uses.
    pub mm_owner: ProcId,
    pub mappings: Vec<Mapping>,
    pub main: ThreadId,
    /// `[[process.thread]]`s, in file order.
    pub threads: Vec<ThreadId>,
    /// Processes created from this one with `clone_vm`, in file order.
    pub children: Vec<ProcId>,
    pub span: Range<usize>,
}

/// `[[process.mapping]]`, resolved.
#[derive(Debug)]
pub(crate) struct Mapping {
    pub name: String,
    pub size: SizeValue,
    pub size_span: Range<usize>,
    pub shared: bool,
    pub locked: bool,
    /// `None` = all of it.
    pub resident: Option<SizeValue>,
    pub resident_span: Range<usize>,
}

/// A thread: a process's main thread or one of its `[[process.thread]]`s.
#[derive(Debug)]
pub(crate) struct Thread {
    pub proc: ProcId,
    /// `None` for the main thread.
    pub name: Option<String>,
    pub script: Vec<Action>,
}

/// One action of a script.
#[derive(Debug)]
pub(crate) struct Action {
    pub kind: ActionKind,
    /// `after`: wait (in user space) until this holds.
    pub after: Option<Cond>,
    pub on_error: OnError,
    /// Unique within the file (per-action state such as `advance`).
    pub id: usize,
    pub span: Range<usize>,
}

/// What to do when a fallible action fails with an errno.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OnError {
    Continue,
    Break,
    Exit,
}

#[derive(Debug)]
pub(crate) enum ActionKind {
    Pause,
    Exit,
    Sleep {
        ms: u64,
    },
    Populate {
        size: SizeValue,
        shared: bool,
        locked: bool,
    },
    Mmap {
        name: String,
        size: SizeValue,
        shared: bool,
        prot: u32,
    },
    Touch {
        name: String,
        offset: SizeValue,
        pages: Option<SizeValue>,
    },
    Munmap {
        name: String,
    },
    Mprotect {
        name: String,
        prot: u32,
    },
    Mlock {
        name: String,
    },
    Remote {
        write: bool,
        target: ProcId,
        mapping: usize,
        size: Option<SizeValue>,
        offset: SizeValue,
        advance: bool,
        stall: Option<Stall>,
    },
    Kill {
        target: ProcId,
    },
    Repeat {
        times: Option<u64>,
        body: Vec<Action>,
    },
    InKernel {
        steps: Vec<KernelStep>,
    },
}

/// `stall` / `stall_until` of a remote access.
#[derive(Debug)]
pub(crate) enum Stall {
    For { ms: u64 },
    Until(Cond),
}

/// One step of an `in_kernel` trip.
#[derive(Debug)]
pub(crate) struct KernelStep {
    pub kind: KernelStepKind,
    pub span: Range<usize>,
}

#[derive(Debug)]
pub(crate) enum KernelStepKind {
    MmapLock {
        write: bool,
    },
    Mutex {
        index: usize,
    },
    IoWait {
        ms: u64,
    },
    WaitUntil(Cond),
    Kalloc {
        /// `None` = until an allocation fails.
        size: Option<SizeValue>,
        gfp: mm::gfp::Gfp,
    },
}

/// A lock a condition names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LockRef {
    /// The `mmap_lock` of the address space of this process (its `mm_owner`).
    MmapLock(ProcId),
    Mutex(usize),
}

/// An ordering condition, resolved.
#[derive(Debug)]
pub(crate) struct Cond {
    pub kind: CondKind,
    /// As written, for messages (`victim.v1 is blocked on mmap_lock:victim`).
    pub text: String,
    pub span: Range<usize>,
}

#[derive(Debug)]
pub(crate) enum CondKind {
    At(DurValue),
    BlockedOnLock {
        thread: ThreadId,
        lock: LockRef,
        mode: Option<ModeValue>,
    },
    BlockedOnMemory {
        thread: ThreadId,
    },
    Holds {
        thread: ThreadId,
        lock: LockRef,
        mode: Option<ModeValue>,
    },
    MemoryExhausted,
    /// The process's `[[process.mapping]]`s are in place (they are published together).
    Mapped {
        proc: ProcId,
    },
}

impl CondKind {
    /// The thread the condition watches, if it watches one.
    pub fn thread(&self) -> Option<ThreadId> {
        match self {
            CondKind::BlockedOnLock { thread, .. }
            | CondKind::BlockedOnMemory { thread }
            | CondKind::Holds { thread, .. } => Some(*thread),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_lines_and_characters() {
        let t = "a = 1\nbé = 2\n";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 6), (2, 1));
        assert_eq!(line_col(t, 9), (2, 3), "é is one column");
        assert_eq!(line_col(t, 8), (2, 2), "inside é: its start");
        assert_eq!(line_col(t, 1000), (3, 1));
    }
}
