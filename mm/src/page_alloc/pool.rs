//! How a [`FramePool`](super::FramePool) is configured and why building one fails. The kernel
//! counterpart is only the boot-time size of the one zone (what `mem=` sets before
//! `mm/page_alloc.c` frees the boot memory to the buddy allocator); the check against the
//! host's available memory is the emulator's own.

use std::fmt;

/// Default pool size: 256 MiB.
pub const DEFAULT_POOL_BYTES: u64 = 256 << 20;
/// Default [`PoolConfig::reclaim_cost_ns`].
pub const DEFAULT_RECLAIM_COST_NS: u64 = 100_000;

/// How to build a [`FramePool`](super::FramePool).
#[derive(Clone, Debug)]
pub struct PoolConfig {
    /// Pool size in bytes: a multiple of 4 KiB (default 256 MiB).
    pub bytes: u64,
    /// Fill freed frames with `PAGE_POISON` and check them on reuse.
    pub poison: bool,
    /// Refuse a pool larger than the host's available memory (sysinfo).
    pub check_host: bool,
    /// Emulated CPU time one round of direct reclaim costs (`shrink_node` + `shrink_slab`
    /// scanning with nothing to reclaim), ns; charged through `sched::cpu_work`, i.e. on the
    /// sim executor's clock only. An emulator choice (default 100 µs) that sets how fast
    /// virtual time runs while allocators loop.
    pub reclaim_cost_ns: u64,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            bytes: DEFAULT_POOL_BYTES,
            poison: false,
            check_host: true,
            reclaim_cost_ns: DEFAULT_RECLAIM_COST_NS,
        }
    }
}

/// Why a pool could not be built.
#[derive(Debug)]
pub enum PoolError {
    /// The pool would not fit in the host's available memory.
    TooLarge { requested: u64, available: u64 },
    /// Not a multiple of 4 KiB, too small for its watermarks, or too large for a `Pfn`.
    BadSize { bytes: u64, reason: String },
    /// sysinfo could not read the host's memory.
    HostQuery(String),
    /// The anonymous mapping failed.
    Map(std::io::Error),
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolError::TooLarge {
                requested,
                available,
            } => write!(
                f,
                "memory pool of {requested} bytes ({}) is larger than the host's available \
                 memory ({available} bytes, {}); choose a smaller --memory",
                mib(*requested),
                mib(*available)
            ),
            PoolError::BadSize { bytes, reason } => {
                write!(f, "bad memory pool size {bytes} bytes: {reason}")
            }
            PoolError::HostQuery(e) => write!(f, "cannot read the host's memory: {e}"),
            PoolError::Map(e) => write!(f, "cannot map the memory pool: {e}"),
        }
    }
}

impl std::error::Error for PoolError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PoolError::Map(e) => Some(e),
            _ => None,
        }
    }
}

/// The host's available memory in bytes: `MemAvailable`, capped by the cgroup's free memory.
pub(super) fn host_available_bytes() -> Result<u64, PoolError> {
    let mut sys = sysinfo::System::new().map_err(|e| PoolError::HostQuery(e.to_string()))?;
    sys.refresh_memory_specifics(sysinfo::MemoryRefreshKind::nothing().with_ram());
    let mut avail = sys.available_memory();
    if let Some(cg) = sys.cgroup_limits() {
        avail = avail.min(cg.free_memory);
    }
    Ok(avail)
}
