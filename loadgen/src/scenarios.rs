//! The canonical scenarios: the files of `scenarios/` (repository root), embedded in the
//! binary, named after the chains of docs/oom-rules.md §6 they reproduce.
//!
//! Each only sets up processes and what they do; every outcome (who is killed, whether the
//! reaper reaps or gives up, whether the machine livelocks) emerges from the model under the
//! run's configuration. Each file's `[expect]` says what docs/oom-rules.md predicts for the
//! four configurations {write lock uninterruptible, killable} × {oom_reaper off, on}.

use crate::scenario::Scenario;
use crate::scenario_file;
use std::sync::OnceLock;

/// (name, text) of every canonical scenario, in `--list` order.
pub const FILES: [(&str, &str); 17] = [
    (
        "single-hog",
        include_str!("../../scenarios/single-hog.toml"),
    ),
    (
        "oom-score-adj",
        include_str!("../../scenarios/oom-score-adj.toml"),
    ),
    ("oom-lock", include_str!("../../scenarios/oom-lock.toml")),
    (
        "dying-allocator",
        include_str!("../../scenarios/dying-allocator.toml"),
    ),
    ("shared-mm", include_str!("../../scenarios/shared-mm.toml")),
    (
        "remote-reader",
        include_str!("../../scenarios/remote-reader.toml"),
    ),
    (
        "slow-reader",
        include_str!("../../scenarios/slow-reader.toml"),
    ),
    (
        "writer-stuck",
        include_str!("../../scenarios/writer-stuck.toml"),
    ),
    (
        "writer-stuck-nobody-left",
        include_str!("../../scenarios/writer-stuck-nobody-left.toml"),
    ),
    ("fs-lock", include_str!("../../scenarios/fs-lock.toml")),
    (
        "unreapable",
        include_str!("../../scenarios/unreapable.toml"),
    ),
    (
        "clone-vm-exit",
        include_str!("../../scenarios/clone-vm-exit.toml"),
    ),
    ("nofs-only", include_str!("../../scenarios/nofs-only.toml")),
    (
        "panic-on-oom",
        include_str!("../../scenarios/panic-on-oom.toml"),
    ),
    (
        "kill-allocating-task",
        include_str!("../../scenarios/kill-allocating-task.toml"),
    ),
    (
        "reaper-delay",
        include_str!("../../scenarios/reaper-delay.toml"),
    ),
    (
        "exit-vs-reaper",
        include_str!("../../scenarios/exit-vs-reaper.toml"),
    ),
];

/// The repository path of a canonical scenario's file (how errors and `--check` name it).
pub fn path_of(name: &str) -> String {
    format!("scenarios/{name}.toml")
}

/// All scenarios, in `--list` order (read once).
pub fn all() -> &'static [Scenario] {
    static ALL: OnceLock<Vec<Scenario>> = OnceLock::new();
    ALL.get_or_init(|| {
        FILES
            .iter()
            .map(|(name, text)| {
                let f = scenario_file::parse(&path_of(name), name, text)
                    .unwrap_or_else(|e| panic!("oomlab: embedded scenario file broken: {e}"));
                Scenario::from_file(f, name.to_string())
            })
            .collect()
    })
}

/// Look a scenario up by name.
pub fn find(name: &str) -> Option<&'static Scenario> {
    all().iter().find(|s| s.name == name)
}
