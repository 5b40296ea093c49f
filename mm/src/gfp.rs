//! Allocation flags (`gfp_t`).
//!
//! Models `include/linux/gfp.h` of Linux **v4.15** (the bit values are those of v4.11–v4.17:
//! `__GFP_COLD`'s 0x100 unused, `__GFP_DIRECT_RECLAIM` = 0x400000, `__GFP_KSWAPD_RECLAIM` =
//! 0x1000000; v4.18 slid the reclaim bits down, so a v5.x log prints `GFP_KERNEL` as 0x6000c0
//! where this one prints 0x14000c0), and the `%pGg` printer of `lib/vsprintf.c` with the name
//! table `__def_gfpflag_names` of `include/trace/events/mmflags.h` (v4.15).
//!
//! Every bit the kernel defines is here so that a mask prints exactly as the kernel prints it;
//! the allocator ([`crate::page_alloc`]) acts on `__GFP_HIGH`, `__GFP_ATOMIC`,
//! `__GFP_DIRECT_RECLAIM`, `__GFP_NORETRY`, `__GFP_NOFAIL`, `__GFP_NOMEMALLOC`,
//! `__GFP_MEMALLOC` and `__GFP_RETRY_MAYFAIL`; the OOM killer on `__GFP_FS`.
//!
//! Deviations: zone modifiers (`__GFP_DMA`, `__GFP_HIGHMEM`, ...) only print; there is one
//! zone. `__GFP_ZERO` is accepted but every frame is zeroed anyway (all emulated allocations
//! are anonymous user pages, which the kernel zeroes too).

use std::fmt;
use std::ops::{BitAnd, BitOr, BitOrAssign, Not};

/// A set of `__GFP_*` bits (`gfp_t`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Gfp(u32);

impl Gfp {
    // ---- single bits (`___GFP_*`, v4.15) ------------------------------------------------
    pub const __GFP_DMA: Gfp = Gfp(0x01);
    pub const __GFP_HIGHMEM: Gfp = Gfp(0x02);
    pub const __GFP_DMA32: Gfp = Gfp(0x04);
    pub const __GFP_MOVABLE: Gfp = Gfp(0x08);
    pub const __GFP_RECLAIMABLE: Gfp = Gfp(0x10);
    /// Access to part of the reserves (`ALLOC_HIGH`: the min watermark is halved).
    pub const __GFP_HIGH: Gfp = Gfp(0x20);
    /// May start physical I/O.
    pub const __GFP_IO: Gfp = Gfp(0x40);
    /// May call into the filesystem; the OOM killer only kills for allocations with it.
    pub const __GFP_FS: Gfp = Gfp(0x80);
    pub const __GFP_NOWARN: Gfp = Gfp(0x200);
    /// Retry hard but may fail; no OOM kill.
    pub const __GFP_RETRY_MAYFAIL: Gfp = Gfp(0x400);
    /// Never fails: loop forever.
    pub const __GFP_NOFAIL: Gfp = Gfp(0x800);
    /// Fail after one round of direct reclaim, without the OOM killer.
    pub const __GFP_NORETRY: Gfp = Gfp(0x1000);
    /// Ignore watermarks (`ALLOC_NO_WATERMARKS`).
    pub const __GFP_MEMALLOC: Gfp = Gfp(0x2000);
    pub const __GFP_COMP: Gfp = Gfp(0x4000);
    /// Return a zeroed page.
    pub const __GFP_ZERO: Gfp = Gfp(0x8000);
    /// Never use the reserves, even as an OOM victim.
    pub const __GFP_NOMEMALLOC: Gfp = Gfp(0x10000);
    pub const __GFP_HARDWALL: Gfp = Gfp(0x20000);
    pub const __GFP_THISNODE: Gfp = Gfp(0x40000);
    /// Cannot sleep and is high priority (`ALLOC_HARDER`: the min watermark lowered by 1/4).
    pub const __GFP_ATOMIC: Gfp = Gfp(0x80000);
    pub const __GFP_ACCOUNT: Gfp = Gfp(0x100000);
    /// May enter direct reclaim (and so may sleep).
    pub const __GFP_DIRECT_RECLAIM: Gfp = Gfp(0x400000);
    pub const __GFP_WRITE: Gfp = Gfp(0x800000);
    /// Wakes kswapd when the low watermark is reached.
    pub const __GFP_KSWAPD_RECLAIM: Gfp = Gfp(0x1000000);

    // ---- compositions ---------------------------------------------------------------------
    pub const __GFP_RECLAIM: Gfp = Gfp(Self::__GFP_DIRECT_RECLAIM.0 | Self::__GFP_KSWAPD_RECLAIM.0);
    /// `GFP_ATOMIC` = `__GFP_HIGH | __GFP_ATOMIC | __GFP_KSWAPD_RECLAIM`.
    pub const GFP_ATOMIC: Gfp =
        Gfp(Self::__GFP_HIGH.0 | Self::__GFP_ATOMIC.0 | Self::__GFP_KSWAPD_RECLAIM.0);
    /// `GFP_KERNEL` = `__GFP_RECLAIM | __GFP_IO | __GFP_FS`.
    pub const GFP_KERNEL: Gfp = Gfp(Self::__GFP_RECLAIM.0 | Self::__GFP_IO.0 | Self::__GFP_FS.0);
    pub const GFP_KERNEL_ACCOUNT: Gfp = Gfp(Self::GFP_KERNEL.0 | Self::__GFP_ACCOUNT.0);
    /// `GFP_NOWAIT` = `__GFP_KSWAPD_RECLAIM`.
    pub const GFP_NOWAIT: Gfp = Self::__GFP_KSWAPD_RECLAIM;
    /// `GFP_NOIO` = `__GFP_RECLAIM`.
    pub const GFP_NOIO: Gfp = Self::__GFP_RECLAIM;
    /// `GFP_NOFS` = `__GFP_RECLAIM | __GFP_IO`.
    pub const GFP_NOFS: Gfp = Gfp(Self::__GFP_RECLAIM.0 | Self::__GFP_IO.0);
    /// `GFP_USER` = `__GFP_RECLAIM | __GFP_IO | __GFP_FS | __GFP_HARDWALL`.
    pub const GFP_USER: Gfp = Gfp(Self::GFP_KERNEL.0 | Self::__GFP_HARDWALL.0);
    pub const GFP_DMA: Gfp = Self::__GFP_DMA;
    pub const GFP_DMA32: Gfp = Self::__GFP_DMA32;
    pub const GFP_HIGHUSER: Gfp = Gfp(Self::GFP_USER.0 | Self::__GFP_HIGHMEM.0);
    /// `GFP_HIGHUSER_MOVABLE`: what an anonymous page fault allocates with.
    pub const GFP_HIGHUSER_MOVABLE: Gfp = Gfp(Self::GFP_HIGHUSER.0 | Self::__GFP_MOVABLE.0);
    pub const GFP_TRANSHUGE_LIGHT: Gfp = Gfp((Self::GFP_HIGHUSER_MOVABLE.0
        | Self::__GFP_COMP.0
        | Self::__GFP_NOMEMALLOC.0
        | Self::__GFP_NOWARN.0)
        & !Self::__GFP_RECLAIM.0);
    pub const GFP_TRANSHUGE: Gfp = Gfp(Self::GFP_TRANSHUGE_LIGHT.0 | Self::__GFP_DIRECT_RECLAIM.0);

    /// The empty mask (`gfp_mask = 0`, as `pagefault_out_of_memory()` passes in 4.x).
    pub const NONE: Gfp = Gfp(0);

    /// A mask from raw bits (unknown bits are kept and printed in hex).
    pub const fn from_bits(bits: u32) -> Gfp {
        Gfp(bits)
    }
    pub const fn bits(self) -> u32 {
        self.0
    }
    /// Every bit of `other` is set.
    pub const fn contains(self, other: Gfp) -> bool {
        self.0 & other.0 == other.0
    }
    /// Some bit of `other` is set.
    pub const fn intersects(self, other: Gfp) -> bool {
        self.0 & other.0 != 0
    }
    pub const fn union(self, other: Gfp) -> Gfp {
        Gfp(self.0 | other.0)
    }
    pub const fn difference(self, other: Gfp) -> Gfp {
        Gfp(self.0 & !other.0)
    }
    /// `gfpflags_allow_blocking()`: `__GFP_DIRECT_RECLAIM` is set.
    pub const fn allows_blocking(self) -> bool {
        self.intersects(Gfp::__GFP_DIRECT_RECLAIM)
    }

    /// `%#x(%pGg)` as `dump_header()` prints it: `0x14000c0(GFP_KERNEL)`.
    pub fn log_form(self) -> impl fmt::Display {
        struct L(Gfp);
        impl fmt::Display for L {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:#x}({})", self.0 .0, self.0)
            }
        }
        L(self)
    }
}

impl Gfp {
    /// A mask written as the kernel writes it: names of [`GFP_NAMES`] joined by `|`
    /// (`GFP_KERNEL`, `GFP_NOFS|__GFP_NOFAIL`). The error names what is accepted.
    pub fn parse(s: &str) -> Result<Gfp, String> {
        let mut gfp = Gfp::NONE;
        for part in s.split('|') {
            let part = part.trim();
            match GFP_NAMES.iter().find(|(_, n)| *n == part) {
                Some((g, _)) => gfp |= *g,
                None => {
                    return Err(format!(
                        "unknown gfp flag '{part}': expected GFP_KERNEL, GFP_NOFS, GFP_NOIO, \
                         GFP_ATOMIC, GFP_NOWAIT, GFP_USER... or __GFP_* bits, joined by '|'"
                    ))
                }
            }
        }
        Ok(gfp)
    }
}

/// `__def_gfpflag_names` (include/trace/events/mmflags.h, v4.15), in the kernel's order:
/// `format_flags()` consumes the first entry whose bits are all present, then goes on with the
/// remaining bits, so composites print before single bits.
const GFP_NAMES: &[(Gfp, &str)] = &[
    (Gfp::GFP_TRANSHUGE, "GFP_TRANSHUGE"),
    (Gfp::GFP_TRANSHUGE_LIGHT, "GFP_TRANSHUGE_LIGHT"),
    (Gfp::GFP_HIGHUSER_MOVABLE, "GFP_HIGHUSER_MOVABLE"),
    (Gfp::GFP_HIGHUSER, "GFP_HIGHUSER"),
    (Gfp::GFP_USER, "GFP_USER"),
    (Gfp::GFP_KERNEL_ACCOUNT, "GFP_KERNEL_ACCOUNT"),
    (Gfp::GFP_KERNEL, "GFP_KERNEL"),
    (Gfp::GFP_NOFS, "GFP_NOFS"),
    (Gfp::GFP_ATOMIC, "GFP_ATOMIC"),
    (Gfp::GFP_NOIO, "GFP_NOIO"),
    (Gfp::GFP_NOWAIT, "GFP_NOWAIT"),
    (Gfp::GFP_DMA, "GFP_DMA"),
    (Gfp::__GFP_HIGHMEM, "__GFP_HIGHMEM"),
    (Gfp::GFP_DMA32, "GFP_DMA32"),
    (Gfp::__GFP_HIGH, "__GFP_HIGH"),
    (Gfp::__GFP_ATOMIC, "__GFP_ATOMIC"),
    (Gfp::__GFP_IO, "__GFP_IO"),
    (Gfp::__GFP_FS, "__GFP_FS"),
    (Gfp::__GFP_NOWARN, "__GFP_NOWARN"),
    (Gfp::__GFP_RETRY_MAYFAIL, "__GFP_RETRY_MAYFAIL"),
    (Gfp::__GFP_NOFAIL, "__GFP_NOFAIL"),
    (Gfp::__GFP_NORETRY, "__GFP_NORETRY"),
    (Gfp::__GFP_COMP, "__GFP_COMP"),
    (Gfp::__GFP_ZERO, "__GFP_ZERO"),
    (Gfp::__GFP_NOMEMALLOC, "__GFP_NOMEMALLOC"),
    (Gfp::__GFP_MEMALLOC, "__GFP_MEMALLOC"),
    (Gfp::__GFP_HARDWALL, "__GFP_HARDWALL"),
    (Gfp::__GFP_THISNODE, "__GFP_THISNODE"),
    (Gfp::__GFP_RECLAIMABLE, "__GFP_RECLAIMABLE"),
    (Gfp::__GFP_MOVABLE, "__GFP_MOVABLE"),
    (Gfp::__GFP_ACCOUNT, "__GFP_ACCOUNT"),
    (Gfp::__GFP_WRITE, "__GFP_WRITE"),
    (Gfp::__GFP_RECLAIM, "__GFP_RECLAIM"),
    (Gfp::__GFP_DIRECT_RECLAIM, "__GFP_DIRECT_RECLAIM"),
    (Gfp::__GFP_KSWAPD_RECLAIM, "__GFP_KSWAPD_RECLAIM"),
];

/// The `%pGg` form (`format_flags()`, lib/vsprintf.c v4.15): names joined by `|`, unknown bits
/// as a trailing hex number, nothing for an empty mask. `{:#}` gives [`Gfp::log_form`].
impl fmt::Display for Gfp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            return write!(f, "{}", self.log_form());
        }
        let mut flags = self.0;
        let mut first = true;
        for (mask, name) in GFP_NAMES {
            if flags == 0 {
                break;
            }
            if flags & mask.0 != mask.0 {
                continue;
            }
            flags &= !mask.0;
            if !first {
                f.write_str("|")?;
            }
            f.write_str(name)?;
            first = false;
        }
        if flags != 0 {
            if !first {
                f.write_str("|")?;
            }
            write!(f, "{flags:#x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Gfp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Gfp({})", self.log_form())
    }
}

impl BitOr for Gfp {
    type Output = Gfp;
    fn bitor(self, rhs: Gfp) -> Gfp {
        Gfp(self.0 | rhs.0)
    }
}
impl BitOrAssign for Gfp {
    fn bitor_assign(&mut self, rhs: Gfp) {
        self.0 |= rhs.0;
    }
}
impl BitAnd for Gfp {
    type Output = Gfp;
    fn bitand(self, rhs: Gfp) -> Gfp {
        Gfp(self.0 & rhs.0)
    }
}
impl Not for Gfp {
    type Output = Gfp;
    fn not(self) -> Gfp {
        Gfp(!self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_parse_as_the_kernel_writes_them() {
        assert_eq!(Gfp::parse("GFP_KERNEL"), Ok(Gfp::GFP_KERNEL));
        assert_eq!(Gfp::parse("GFP_NOFS"), Ok(Gfp::GFP_NOFS));
        assert_eq!(
            Gfp::parse("GFP_NOFS|__GFP_NOFAIL"),
            Ok(Gfp::GFP_NOFS | Gfp::__GFP_NOFAIL)
        );
        for m in [
            Gfp::GFP_KERNEL,
            Gfp::GFP_NOIO,
            Gfp::GFP_ATOMIC,
            Gfp::GFP_USER,
        ] {
            assert_eq!(Gfp::parse(&m.to_string()), Ok(m), "{m}");
        }
        let e = Gfp::parse("GFP_KERNEL|GFP_NOPE").unwrap_err();
        assert!(e.starts_with("unknown gfp flag 'GFP_NOPE'"), "{e}");
        assert!(Gfp::parse("").is_err());
    }

    #[test]
    fn compositions_have_the_v4_15_values() {
        assert_eq!(Gfp::GFP_KERNEL.bits(), 0x14000c0);
        assert_eq!(Gfp::GFP_NOFS.bits(), 0x1400040);
        assert_eq!(Gfp::GFP_NOIO.bits(), 0x1400000);
        assert_eq!(Gfp::GFP_ATOMIC.bits(), 0x1080020);
        assert_eq!(Gfp::GFP_USER.bits(), 0x14200c0);
        assert_eq!(Gfp::GFP_HIGHUSER_MOVABLE.bits(), 0x14200ca);
    }

    #[test]
    fn prints_as_pgg() {
        let cases = [
            (Gfp::GFP_KERNEL, "GFP_KERNEL"),
            (Gfp::GFP_NOFS, "GFP_NOFS"),
            (Gfp::GFP_NOIO, "GFP_NOIO"),
            (Gfp::GFP_ATOMIC, "GFP_ATOMIC"),
            (Gfp::GFP_USER, "GFP_USER"),
            (Gfp::GFP_HIGHUSER_MOVABLE, "GFP_HIGHUSER_MOVABLE"),
            (
                Gfp::GFP_KERNEL | Gfp::__GFP_NORETRY | Gfp::__GFP_ZERO,
                "GFP_KERNEL|__GFP_NORETRY|__GFP_ZERO",
            ),
            (Gfp::GFP_NOFS | Gfp::__GFP_NOFAIL, "GFP_NOFS|__GFP_NOFAIL"),
            (Gfp::__GFP_DIRECT_RECLAIM, "__GFP_DIRECT_RECLAIM"),
            (
                Gfp::__GFP_FS | Gfp::from_bits(1 << 30),
                "__GFP_FS|0x40000000",
            ),
            (Gfp::NONE, ""),
        ];
        for (g, s) in cases {
            assert_eq!(g.to_string(), s, "{:#x}", g.bits());
        }
    }

    #[test]
    fn log_form_is_dump_header_style() {
        assert_eq!(format!("{:#}", Gfp::GFP_KERNEL), "0x14000c0(GFP_KERNEL)");
        assert_eq!(Gfp::GFP_NOFS.log_form().to_string(), "0x1400040(GFP_NOFS)");
        assert_eq!(
            Gfp::GFP_HIGHUSER_MOVABLE.log_form().to_string(),
            "0x14200ca(GFP_HIGHUSER_MOVABLE)"
        );
        assert_eq!(Gfp::NONE.log_form().to_string(), "0x0()");
    }

    #[test]
    fn predicates() {
        assert!(Gfp::GFP_KERNEL.allows_blocking());
        assert!(!Gfp::GFP_ATOMIC.allows_blocking());
        assert!(Gfp::GFP_KERNEL.contains(Gfp::__GFP_FS));
        assert!(!Gfp::GFP_NOFS.contains(Gfp::__GFP_FS));
        assert_eq!(
            (Gfp::GFP_KERNEL & !Gfp::__GFP_FS).bits(),
            Gfp::GFP_NOFS.bits()
        );
        assert_eq!(Gfp::GFP_KERNEL.difference(Gfp::__GFP_FS), Gfp::GFP_NOFS);
    }
}
