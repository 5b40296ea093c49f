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
            reclaim_cost_ns: DEFAULT_RECLAIM_COST_NS,
        }
    }
}

/// Why a pool could not be built.
#[derive(Debug)]
pub enum PoolError {
    /// Not a multiple of 4 KiB, too small for its watermarks, or too large for a `Pfn`.
    BadSize { bytes: u64, reason: String },
    /// The anonymous mapping failed.
    Map(std::io::Error),
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolError::BadSize { bytes, reason } => {
                write!(f, "bad memory pool size {bytes} bytes: {reason}")
            }
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
