//! Facts about the host that decide whether a plan can run: the memory the emulated frame
//! pool may take, and the threads the threads executor may create. Limits come from the
//! host (`/proc/meminfo`), the control groups the process is in (v1 and v2: a container's or
//! a systemd slice's limit is lower than the machine's), and `ulimit -u`.

use crate::plan::UsageError;
use reaper::units::format_size;
use std::path::{Path, PathBuf};

/// Memory the emulator needs besides the pool, as a fraction of the pool: one cache line of
/// frame metadata per 4 KiB frame (1/64, the kernel's `struct page`), the host's page tables
/// for the pool (1/512), free lists and the emulated page tables. Measured: 1 GiB → 35 MB,
/// 4 GiB → 80 MB beyond the pool (BENCHMARKS.md).
const OVERHEAD_DIVISOR: u64 = 48;
/// Fixed memory of the emulator (code, the kernel log, reports).
const BASE_BYTES: u64 = 64 << 20;
/// Per task: its OS thread's stack (threads executor) or coroutine stack (sim), both touched
/// only partly, and its `task_struct`.
const PER_TASK_BYTES: u64 = 128 << 10;
/// Left to the rest of the host: the pool is never allowed the last 5% of what is available.
const HOST_SHARE_PERCENT: u64 = 5;

/// The memory `bytes` of pool and `tasks` tasks need in all.
pub fn memory_needed(bytes: u64, tasks: u64) -> u64 {
    bytes + bytes / OVERHEAD_DIVISOR + BASE_BYTES + tasks * PER_TASK_BYTES
}

/// The largest pool (a multiple of 1 MiB) that fits in `available` with `tasks` tasks.
fn largest_pool(available: u64, tasks: u64) -> u64 {
    let usable = available / 100 * (100 - HOST_SHARE_PERCENT);
    let rest = usable.saturating_sub(BASE_BYTES + tasks * PER_TASK_BYTES);
    let pool = rest / (OVERHEAD_DIVISOR + 1) * OVERHEAD_DIVISOR;
    pool & !((1 << 20) - 1)
}

/// `MemAvailable` from `/proc/meminfo`, bytes.
fn mem_available() -> Result<u64, String> {
    let text = std::fs::read_to_string("/proc/meminfo").map_err(|e| e.to_string())?;
    text.lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| "no MemAvailable in /proc/meminfo".to_string())
}

/// The cgroup directories of controller `controller` that apply to this process, innermost
/// first (its own group, then every ancestor up to the root), for the hierarchies mounted
/// under `sys_root` (normally `/sys/fs/cgroup`), given `/proc/self/cgroup`'s text.
/// v1: the line naming the controller, under `sys_root/<controller>`; v2: the `0::` line,
/// under `sys_root` itself (or `sys_root/unified` on hybrid hosts).
fn cgroup_dirs(proc_cgroup: &str, sys_root: &Path, controller: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for line in proc_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_id), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let bases: Vec<PathBuf> = if ctrls.is_empty() {
            vec![sys_root.to_path_buf(), sys_root.join("unified")]
        } else if ctrls.split(',').any(|c| c == controller) {
            vec![sys_root.join(ctrls)]
        } else {
            continue;
        };
        for base in bases {
            let mut p = PathBuf::from(path.trim_start_matches('/'));
            loop {
                let dir = base.join(&p);
                if dir.is_dir() {
                    out.push(dir);
                }
                if !p.pop() {
                    break;
                }
            }
        }
    }
    out
}

fn read_u64(path: &Path) -> Option<u64> {
    let t = std::fs::read_to_string(path).ok()?;
    let t = t.trim();
    if t == "max" {
        return Some(u64::MAX);
    }
    t.parse().ok()
}

/// The tightest `limit - usage` over the cgroups in `dirs` for the files of one controller
/// (v2 names first, then v1).
fn cgroup_headroom(dirs: &[PathBuf], files: &[(&str, &str)]) -> Option<(u64, PathBuf, u64)> {
    let mut best: Option<(u64, PathBuf, u64)> = None;
    for d in dirs {
        for (limit_file, usage_file) in files {
            let Some(limit) = read_u64(&d.join(limit_file)) else {
                continue;
            };
            // v1 reports "no limit" as a huge page-aligned number.
            if limit >= (1 << 60) {
                continue;
            }
            let usage = read_u64(&d.join(usage_file)).unwrap_or(0);
            let room = limit.saturating_sub(usage);
            if best.as_ref().is_none_or(|b| room < b.0) {
                best = Some((room, d.clone(), limit));
            }
        }
    }
    best
}

const MEMORY_FILES: &[(&str, &str)] = &[
    ("memory.max", "memory.current"),
    ("memory.limit_in_bytes", "memory.usage_in_bytes"),
];
const PIDS_FILES: &[(&str, &str)] = &[("pids.max", "pids.current")];

/// What the host lets this process use: `MemAvailable`, capped by the memory cgroups it is
/// in. Returns the bytes and where the cap comes from.
fn memory_available(proc_cgroup: &str, sys_root: &Path) -> Result<(u64, String), String> {
    let host = mem_available()?;
    let dirs = cgroup_dirs(proc_cgroup, sys_root, "memory");
    Ok(match cgroup_headroom(&dirs, MEMORY_FILES) {
        Some((room, dir, limit)) if room < host => (
            room,
            format!(
                "the memory cgroup {} (limit {})",
                dir.display(),
                format_size(limit)
            ),
        ),
        _ => (host, "the host's MemAvailable".to_string()),
    })
}

/// Refuse a frame pool of `bytes` that the host cannot hold together with the emulator's own
/// memory for `tasks` tasks (the pool is pre-faulted real memory).
pub fn check_pool_fits(bytes: u64, tasks: u64) -> Result<(), UsageError> {
    check_fits(
        &format!("--memory {}", format_size(bytes)),
        bytes,
        tasks,
        "",
    )
}

/// [`check_pool_fits`] for `bytes` of pools in all (several trials at once), the error naming
/// `what` was asked and ending with `hint` (or, when empty, the largest `--memory` that fits).
pub fn check_fits(what: &str, bytes: u64, tasks: u64, hint: &str) -> Result<(), UsageError> {
    let proc_cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    check_fits_in(
        what,
        bytes,
        tasks,
        hint,
        &proc_cgroup,
        Path::new("/sys/fs/cgroup"),
    )
}

fn check_fits_in(
    what: &str,
    bytes: u64,
    tasks: u64,
    hint: &str,
    proc_cgroup: &str,
    sys_root: &Path,
) -> Result<(), UsageError> {
    let (available, source) = memory_available(proc_cgroup, sys_root)
        .map_err(|e| UsageError(format!("cannot read the host's memory: {e}")))?;
    let need = memory_needed(bytes, tasks);
    if need > available / 100 * (100 - HOST_SHARE_PERCENT) {
        let hint = if hint.is_empty() {
            format!(
                "use --memory {} or less",
                format_size(largest_pool(available, tasks).max(1 << 20))
            )
        } else {
            hint.to_string()
        };
        return Err(UsageError(format!(
            "{what}: with the emulator's own memory it needs {} MiB, more than {} allows \
             ({} MiB available, 5% kept for the rest of the host); {hint}",
            need >> 20,
            source,
            available >> 20,
        )));
    }
    Ok(())
}

#[cfg(test)]
fn check_pool_fits_in(
    bytes: u64,
    tasks: u64,
    proc_cgroup: &str,
    sys_root: &Path,
) -> Result<(), UsageError> {
    check_fits_in(
        &format!("--memory {}", format_size(bytes)),
        bytes,
        tasks,
        "",
        proc_cgroup,
        sys_root,
    )
}

/// Refuse a threads-executor run whose `needed` OS threads the host would not let it create:
/// a pids cgroup's `pids.max` (less what it already holds), or `ulimit -u` for a non-root
/// user. `threads` is the `--threads` value, for the message.
pub fn check_threads_fit(threads: u64, needed: u64) -> Result<(), UsageError> {
    let proc_cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    check_threads_fit_in(
        threads,
        needed,
        &proc_cgroup,
        Path::new("/sys/fs/cgroup"),
        nproc_limit(),
    )
}

/// `RLIMIT_NPROC` when it applies (not for root, which the kernel exempts).
fn nproc_limit() -> Option<u64> {
    // SAFETY: getuid has no preconditions; getrlimit writes only into `r`.
    unsafe {
        if libc::getuid() == 0 {
            return None;
        }
        let mut r = std::mem::zeroed::<libc::rlimit>();
        if libc::getrlimit(libc::RLIMIT_NPROC, &mut r) != 0 || r.rlim_cur == libc::RLIM_INFINITY {
            return None;
        }
        Some(r.rlim_cur)
    }
}

fn check_threads_fit_in(
    threads: u64,
    needed: u64,
    proc_cgroup: &str,
    sys_root: &Path,
    nproc: Option<u64>,
) -> Result<(), UsageError> {
    // This process's own threads so far (the main thread) are already counted in usage.
    let dirs = cgroup_dirs(proc_cgroup, sys_root, "pids");
    let mut room: Option<(u64, String)> = cgroup_headroom(&dirs, PIDS_FILES)
        .map(|(r, d, l)| (r, format!("the pids cgroup {} (pids.max {l})", d.display())));
    if let Some(n) = nproc {
        if room.as_ref().is_none_or(|(r, _)| n < *r) {
            room = Some((n, format!("ulimit -u ({n})")));
        }
    }
    if let Some((room, source)) = room {
        if needed > room {
            let fits = threads.saturating_sub(needed - room);
            return Err(UsageError(format!(
                "--threads {threads}: the run needs {needed} threads but {source} allows \
                 {room} more; use --threads {} or less, or --executor sim",
                fits.max(1)
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake `/sys/fs/cgroup` with the files given, relative to a fresh temp dir.
    fn fake_root(files: &[(&str, &str)]) -> PathBuf {
        let root = std::env::temp_dir().join(format!(
            "oomlab-cg-{}-{}",
            std::process::id(),
            files.len() + files.iter().map(|f| f.0.len()).sum::<usize>()
        ));
        let _ = std::fs::remove_dir_all(&root);
        for (path, content) in files {
            let p = root.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        root
    }

    #[test]
    fn v1_memory_limit_of_an_ancestor_applies() {
        let root = fake_root(&[
            ("memory/box/memory.limit_in_bytes", "3221225472\n"),
            ("memory/box/memory.usage_in_bytes", "1073741824\n"),
            (
                "memory/box/job/memory.limit_in_bytes",
                "9223372036854771712\n",
            ),
            ("memory/box/job/memory.usage_in_bytes", "1000\n"),
        ]);
        let dirs = cgroup_dirs("4:memory:/box/job\n1:cpu:/\n", &root, "memory");
        let (room, dir, limit) = cgroup_headroom(&dirs, MEMORY_FILES).unwrap();
        assert_eq!((room, limit), (2 << 30, 3 << 30));
        assert!(dir.ends_with("memory/box"), "{dir:?}");
        let e = check_pool_fits_in(4 << 30, 16, "4:memory:/box/job\n", &root).unwrap_err();
        assert!(e.0.starts_with("--memory 4GiB: "), "{e}");
        assert!(
            e.0.contains("memory cgroup") && e.0.contains("limit 3GiB"),
            "{e}"
        );
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn v2_memory_max_and_pids_max() {
        let root = fake_root(&[
            ("user.slice/memory.max", "max\n"),
            ("user.slice/run/memory.max", "536870912\n"),
            ("user.slice/run/memory.current", "0\n"),
            ("user.slice/run/pids.max", "200\n"),
            ("user.slice/run/pids.current", "3\n"),
        ]);
        let pc = "0::/user.slice/run\n";
        let dirs = cgroup_dirs(pc, &root, "memory");
        assert_eq!(
            cgroup_headroom(&dirs, MEMORY_FILES).map(|x| x.0),
            Some(512 << 20)
        );
        assert!(check_pool_fits_in(256 << 20, 16, pc, &root).is_ok());
        let e = check_pool_fits_in(512 << 20, 16, pc, &root).unwrap_err();
        assert!(e.0.contains("use --memory"), "{e}");
        // 197 threads of room: 256 workers + 8 readers + 3 do not fit.
        let e = check_threads_fit_in(256, 267, pc, &root, None).unwrap_err();
        assert_eq!(
            e.0,
            format!(
                "--threads 256: the run needs 267 threads but the pids cgroup {} (pids.max 200) \
                 allows 197 more; use --threads 186 or less, or --executor sim",
                root.join("user.slice/run").display()
            )
        );
        assert!(check_threads_fit_in(186, 197, pc, &root, None).is_ok());
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn ulimit_u_applies_to_non_root() {
        let root = fake_root(&[]);
        let e = check_threads_fit_in(256, 267, "", &root, Some(100)).unwrap_err();
        assert!(e.0.contains("ulimit -u (100)"), "{e}");
        assert!(check_threads_fit_in(16, 27, "", &root, Some(100)).is_ok());
    }

    #[test]
    fn the_largest_pool_fits() {
        for avail in [1u64 << 30, 3 << 30, 23 << 30] {
            let p = largest_pool(avail, 300);
            assert!(memory_needed(p, 300) <= avail / 100 * 95, "{avail}");
            assert!(
                memory_needed(p + (2 << 20), 300) > avail / 100 * 95,
                "{avail}"
            );
        }
    }
}
