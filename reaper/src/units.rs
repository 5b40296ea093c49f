//! The one grammar for sizes and durations, wherever a user writes them: command-line flags,
//! `bench --matrix`, scenario files. Errors say what was wrong and what would be accepted; the
//! caller adds which flag or key it was.
//!
//! - SIZE: digits, then an optional binary unit: `B`, `K`/`KiB`, `M`/`MiB`, `G`/`GiB`,
//!   `T`/`TiB` (any case), as the kernel's `memparse()` reads `mem=256M`. `256MB` is refused
//!   with a hint: MB means 10⁶ bytes to some readers and 2²⁰ to others.
//! - DURATION: `0`, or digits then `ns`, `us`, `ms`, `s`, `m` or `h` (`100ms`, `2s`, `10m`).
//!   No fractions, no spaces.

use std::time::Duration;

/// Split `s` into its digits and its unit, refusing spaces, fractions and a missing number
/// with an error that says what is `accepted`.
fn split_number<'a>(s: &'a str, accepted: &str) -> Result<(&'a str, &'a str), String> {
    if s.chars().any(char::is_whitespace) {
        return Err(format!("no spaces allowed: expected {accepted}"));
    }
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let (num, unit) = s.split_at(digits);
    if unit.starts_with('.') || unit.starts_with(',') {
        return Err(format!("fractions are not accepted: expected {accepted}"));
    }
    if num.is_empty() {
        return Err(format!("expected {accepted}"));
    }
    Ok((num, unit))
}

/// Parse a SIZE in bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    const ACCEPTED: &str =
        "a whole number of bytes with an optional binary unit, e.g. 256MiB, 256M, 1GiB, 65536KiB";
    let (num, unit) = split_number(s, ACCEPTED)?;
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        "t" | "tib" => 40,
        u @ ("kb" | "mb" | "gb" | "tb") => {
            let bin = format!("{}iB", u[..1].to_ascii_uppercase());
            return Err(format!(
                "'{unit}' is ambiguous (10^n or 2^n bytes?): write {num}{bin} or {num}{} (binary units)",
                &bin[..1]
            ));
        }
        _ => return Err(format!("unknown unit '{unit}': expected {ACCEPTED}")),
    };
    let num: u64 = num.parse().map_err(|_| format!("too large: {s}"))?;
    num.checked_mul(1 << shift)
        .ok_or_else(|| format!("too large: {s}"))
}

/// Parse a DURATION.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    const ACCEPTED: &str =
        "0, or a whole number with a unit: ns, us, ms, s, m or h (e.g. 100ms, 2s, 10m)";
    let (num, unit) = split_number(s, ACCEPTED)?;
    let num: u64 = num.parse().map_err(|_| format!("too long: {s}"))?;
    let per_unit_ns: u64 = match unit {
        "" if num == 0 => 0,
        "ns" => 1,
        "us" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60 * 1_000_000_000,
        "h" => 3_600 * 1_000_000_000,
        "" => return Err(format!("a unit is required: expected {ACCEPTED}")),
        _ => return Err(format!("unknown unit '{unit}': expected {ACCEPTED}")),
    };
    let ns = num
        .checked_mul(per_unit_ns)
        .ok_or_else(|| format!("too long: {s}"))?;
    Ok(Duration::from_nanos(ns))
}

/// Parse a DURATION in whole milliseconds (knobs that count ms or jiffies).
pub fn parse_duration_ms(s: &str) -> Result<u64, String> {
    let d = parse_duration(s)?;
    if d.subsec_nanos() % 1_000_000 != 0 {
        return Err("must be a whole number of milliseconds (e.g. 100ms, 2s)".to_string());
    }
    Ok(d.as_millis() as u64)
}

/// A byte count as the grammar writes it, as short as exact: 256MiB, 12KiB, 4097B.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (1 << 40, "TiB"),
        (1 << 30, "GiB"),
        (1 << 20, "MiB"),
        (1 << 10, "KiB"),
    ];
    for (size, unit) in UNITS {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{}{unit}", bytes / size);
        }
    }
    format!("{bytes}B")
}

/// Milliseconds as the grammar writes them, as short as exact: 0, 100ms, 2s, 10m.
pub fn format_ms(ms: u64) -> String {
    match ms {
        0 => "0".into(),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1_000 == 0 => format!("{}s", ms / 1_000),
        ms => format!("{ms}ms"),
    }
}

/// A duration as the grammar writes it, as short as exact: 0, 250ns, 99ms, 2s, 10m, 1h.
pub fn format_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0".into();
    }
    for (unit, per) in [
        ("h", 3_600_000_000_000u128),
        ("m", 60_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
        ("us", 1_000),
    ] {
        if ns.is_multiple_of(per) {
            return format!("{}{unit}", ns / per);
        }
    }
    format!("{ns}ns")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        for (s, want) in [
            ("256MiB", 256 << 20),
            ("256m", 256 << 20),
            ("256M", 256 << 20),
            ("256mib", 256 << 20),
            ("1G", 1 << 30),
            ("1g", 1 << 30),
            ("65536KiB", 64 << 20),
            ("8192", 8192),
            ("8192B", 8192),
            ("2TiB", 2 << 40),
        ] {
            assert_eq!(parse_size(s), Ok(want), "{s}");
        }
        for (s, needle) in [
            ("", "expected"),
            ("MiB", "expected"),
            ("256MB", "256MiB or 256M"),
            ("1GB", "1GiB or 1G"),
            ("256 MiB", "no spaces"),
            ("1.5GiB", "fractions"),
            ("12XB", "unknown unit 'XB'"),
            ("99999999999T", "too large"),
            ("-1M", "expected"),
            ("18446744073709551616", "too large"),
        ] {
            let e = parse_size(s).expect_err(s);
            assert!(e.contains(needle), "{s}: {e}");
        }
        assert_eq!(format_size(256 << 20), "256MiB");
        assert_eq!(format_size(12288), "12KiB");
        assert_eq!(format_size(4097), "4097B");
    }

    #[test]
    fn durations() {
        for (s, want) in [
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("2s", Duration::from_secs(2)),
            ("100ms", Duration::from_millis(100)),
            ("10m", Duration::from_secs(600)),
            ("1h", Duration::from_secs(3600)),
            ("5us", Duration::from_micros(5)),
        ] {
            assert_eq!(parse_duration(s), Ok(want), "{s}");
        }
        for (s, needle) in [
            ("", "expected"),
            ("s", "expected"),
            ("2", "a unit is required"),
            ("1.5s", "fractions"),
            ("3d", "unknown unit 'd'"),
            ("-1s", "expected"),
            ("99999999999999h", "too long"),
            ("2 s", "no spaces"),
        ] {
            let e = parse_duration(s).expect_err(s);
            assert!(e.contains(needle), "{s}: {e}");
        }
        assert_eq!(parse_duration_ms("2s"), Ok(2000));
        assert!(parse_duration_ms("1500us").is_err());
        for s in ["0", "250ns", "99ms", "2s", "10m", "1h", "1500us"] {
            assert_eq!(format_duration(parse_duration(s).unwrap()), s);
        }
        for ms in [0, 1, 100, 1000, 2500, 60_000, 90_000] {
            assert_eq!(parse_duration_ms(&format_ms(ms)), Ok(ms), "{ms}");
        }
    }
}
