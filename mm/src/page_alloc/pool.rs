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

/// Bytes one pre-faulting thread takes at a time.
const PREFAULT_CHUNK: usize = 64 << 20;

/// Pre-fault the pool's `len` bytes at `base` (or poison them: boot-time frames count as freed,
/// and writing the poison faults them in too) on every host CPU, so that set-up takes the time
/// of the host's page zeroing divided by its CPUs rather than one `MAP_POPULATE` pass.
///
/// Host work at boot, before any emulated code runs: it uses scoped host threads, the one
/// place in `mm` besides the executors that does (ARCHITECTURE.md). Faulting is
/// `MADV_POPULATE_WRITE` (Linux 5.14+), or one write per page where the host refuses it.
pub(super) fn prefault(base: *mut u8, len: usize, poison: bool) {
    let chunks = len.div_ceil(PREFAULT_CHUNK);
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(chunks);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let base = base as usize;
    let work = || loop {
        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if i >= chunks {
            return;
        }
        let start = i * PREFAULT_CHUNK;
        let n = PREFAULT_CHUNK.min(len - start);
        let p = (base + start) as *mut u8;
        // SAFETY: [p, p + n) lies inside the pool's mapping, which the caller owns and
        // nobody else refers to yet; chunks are disjoint.
        unsafe {
            if poison {
                std::ptr::write_bytes(p, super::PAGE_POISON, n);
            } else if libc::madvise(p.cast(), n, MADV_POPULATE_WRITE) != 0 {
                let mut off = 0;
                while off < n {
                    std::ptr::write_volatile(p.add(off), 0);
                    off += crate::pgtable::PAGE_SIZE as usize;
                }
            }
        }
    };
    if threads <= 1 {
        work();
    } else {
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(work);
            }
        });
    }
}

/// `MADV_POPULATE_WRITE` (uapi/asm-generic/mman-common.h, Linux 5.14).
const MADV_POPULATE_WRITE: libc::c_int = 23;
