//! Zone watermarks and per-CPU pageset sizing: `init_per_zone_wmark_min()`,
//! `__setup_per_zone_wmarks()`, `zone_batchsize()` and `pageset_set_batch()` of
//! `mm/page_alloc.c` v4.7, and the order-0 `__zone_watermark_ok()` with the `alloc_flags` of
//! `mm/internal.h` v4.15.

use crate::pgtable::{PAGE_SHIFT, PAGE_SIZE};

/// `watermark_scale_factor` default (v4.6+).
pub const WATERMARK_SCALE_FACTOR: u64 = 10;

// ---- alloc_flags (mm/internal.h, v4.15) ----------------------------------------------------
pub(super) const ALLOC_WMARK_MIN: u32 = 0;
pub(super) const ALLOC_WMARK_LOW: u32 = 1;
pub(super) const ALLOC_WMARK_HIGH: u32 = 2;
/// Don't check watermarks at all.
pub(super) const ALLOC_NO_WATERMARKS: u32 = 0x04;
pub(super) const ALLOC_WMARK_MASK: u32 = ALLOC_NO_WATERMARKS - 1;
/// OOM victims: the min watermark lowered by half.
pub(super) const ALLOC_OOM: u32 = 0x08;
/// `__GFP_ATOMIC` (or rt tasks): the min watermark lowered by a quarter.
pub(super) const ALLOC_HARDER: u32 = 0x10;
/// `__GFP_HIGH`: the min watermark halved (same value as `__GFP_HIGH`).
pub(super) const ALLOC_HIGH: u32 = 0x20;
/// Check cpusets (no-op here; kept so that flag values compare as in the kernel).
pub(super) const ALLOC_CPUSET: u32 = 0x40;

/// `zone->watermark[]`, in pages.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Watermarks {
    pub min: u64,
    pub low: u64,
    pub high: u64,
}

/// `int_sqrt()`: floor of the square root.
fn int_sqrt(x: u64) -> u64 {
    x.isqrt()
}

/// `init_per_zone_wmark_min()` (v4.7): `min_free_kbytes` for `lowmem_kbytes` of lowmem.
pub fn min_free_kbytes(lowmem_kbytes: u64) -> u64 {
    int_sqrt(lowmem_kbytes * 16).clamp(128, 65536)
}

/// `mult_frac(x, numer, denom)` (include/linux/kernel.h).
fn mult_frac(x: u64, numer: u64, denom: u64) -> u64 {
    let q = x / denom;
    let r = x % denom;
    q * numer + r * numer / denom
}

/// Watermarks of a single zone of `managed_pages` 4 KiB pages: `init_per_zone_wmark_min()`
/// then `__setup_per_zone_wmarks()` (v4.7, `watermark_scale_factor` = 10). See the
/// [`page_alloc`](super) documentation for the formula.
pub fn compute_watermarks(managed_pages: u64) -> Watermarks {
    let lowmem_kbytes = managed_pages * (PAGE_SIZE >> 10);
    let pages_min = min_free_kbytes(lowmem_kbytes) >> (PAGE_SHIFT - 10);
    // One lowmem zone: tmp = pages_min * managed / lowmem_pages = pages_min.
    let min = pages_min;
    let tmp = (min >> 2).max(mult_frac(managed_pages, WATERMARK_SCALE_FACTOR, 10000));
    Watermarks {
        min,
        low: min + tmp,
        high: min + tmp * 2,
    }
}

/// `zone_batchsize()` (v4.7, CONFIG_MMU).
pub fn zone_batchsize(managed_pages: u64) -> u32 {
    let mut batch = managed_pages / 1024;
    if batch * PAGE_SIZE > 512 * 1024 {
        batch = (512 * 1024) / PAGE_SIZE;
    }
    batch /= 4; // We effectively *= 4 below.
    if batch < 1 {
        batch = 1;
    }
    // Clamp the batch to a 2^n - 1 value (cache aliasing, see the kernel's comment).
    let x = batch + batch / 2;
    let pow = 1u64 << (63 - x.leading_zeros());
    (pow - 1) as u32
}

/// `per_cpu_pages` parameters from `pageset_set_batch(p, zone_batchsize(zone))` (v4.7):
/// `(high, batch)` = `(6 * batch, max(1, batch))`.
pub fn pcp_high_batch(managed_pages: u64) -> (u32, u32) {
    let b = zone_batchsize(managed_pages);
    (6 * b, b.max(1))
}

/// `__zone_watermark_ok()` (v4.15) for order 0, without highatomic reserves, CMA and
/// `lowmem_reserve`: ALLOC_HIGH halves `min`; then ALLOC_OOM halves it again, or ALLOC_HARDER
/// takes a quarter off; the check fails when `free_pages <= min`.
pub(super) fn zone_watermark_ok(free_pages: i64, mark: u64, alloc_flags: u32) -> bool {
    let mut min = mark as i64;
    if alloc_flags & ALLOC_HIGH != 0 {
        min -= min / 2;
    }
    if alloc_flags & (ALLOC_HARDER | ALLOC_OOM) != 0 {
        if alloc_flags & ALLOC_OOM != 0 {
            min -= min / 2;
        } else {
            min -= min / 4;
        }
    }
    free_pages > min
}
