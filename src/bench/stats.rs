//! The statistics of the livelock-rate bench: the Wilson score interval of one rate, the
//! Newcombe hybrid score interval of the difference of two rates (the regression rule), and
//! nearest-rank percentiles.
//!
//! All at 95 % (two-sided). The formulas are the published ones; the tests check them against
//! the published worked examples.

/// The standard normal quantile for a two-sided 95 % interval (Φ⁻¹(0.975)).
pub const Z95: f64 = 1.959_963_984_540_054;

/// A closed interval `[lo, hi]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Interval {
    pub lo: f64,
    pub hi: f64,
}

/// The Wilson score interval (Wilson 1927) of a proportion: `k` successes in `n` trials, at
/// normal quantile `z`, without continuity correction (Newcombe 1998a, method 3). Stays inside
/// [0, 1] and is informative at `k = 0` (upper bound z²/(n + z²)), which is why the bench
/// reports and gates on it. `n = 0` gives [0, 1] (nothing is known).
pub fn wilson(k: u64, n: u64, z: f64) -> Interval {
    if n == 0 {
        return Interval { lo: 0.0, hi: 1.0 };
    }
    let (k, n) = (k.min(n) as f64, n as f64);
    let p = k / n;
    let z2 = z * z;
    let denom = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denom;
    let half = z / denom * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    // At k = 0 (k = n) the bound is exactly 0 (1); rounding would leave a few ulps.
    Interval {
        lo: if k == 0.0 {
            0.0
        } else {
            (centre - half).max(0.0)
        },
        hi: if k == n {
            1.0
        } else {
            (centre + half).min(1.0)
        },
    }
}

/// The Newcombe hybrid score interval (Newcombe 1998b, method 10) of the difference
/// `k1/n1 − k2/n2` of two independent proportions, built from their Wilson intervals:
/// `L = d − √((p1 − l1)² + (u2 − p2)²)`, `U = d + √((u1 − p1)² + (p2 − l2)²)`.
pub fn newcombe(k1: u64, n1: u64, k2: u64, n2: u64, z: f64) -> Interval {
    let p1 = rate(k1, n1);
    let p2 = rate(k2, n2);
    let w1 = wilson(k1, n1, z);
    let w2 = wilson(k2, n2, z);
    let d = p1 - p2;
    Interval {
        lo: d - ((p1 - w1.lo).powi(2) + (w2.hi - p2).powi(2)).sqrt(),
        hi: d + ((w1.hi - p1).powi(2) + (p2 - w2.lo).powi(2)).sqrt(),
    }
}

/// `k / n`, 0 when `n` is 0.
pub fn rate(k: u64, n: u64) -> f64 {
    if n == 0 {
        0.0
    } else {
        k as f64 / n as f64
    }
}

/// The nearest-rank percentile `q` (0 < q ≤ 1) of sorted `values`: the value at 1-based rank
/// ⌈q·n⌉. `None` when there are no values. Always one of the values, so it is exact and the
/// same however the values were split across shards.
pub fn percentile(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    debug_assert!(sorted.windows(2).all(|w| w[0] <= w[1]), "not sorted");
    let n = sorted.len();
    let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
    Some(sorted[rank - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round4(x: f64) -> f64 {
        (x * 1e4).round() / 1e4
    }

    /// Newcombe RG (1998a), "Two-sided confidence intervals for the single proportion:
    /// comparison of seven methods", Statistics in Medicine 17:857–872, Table I, method 3
    /// (score interval without continuity correction).
    #[test]
    fn wilson_matches_newcombe_1998_table_1() {
        for (k, n, lo, hi) in [
            (81, 263, 0.2553, 0.3662),
            (15, 148, 0.0624, 0.1605),
            (0, 20, 0.0, 0.1611),
            (1, 29, 0.0061, 0.1718),
            (29, 29, 0.8830, 1.0),
        ] {
            let w = wilson(k, n, Z95);
            assert_eq!((round4(w.lo), round4(w.hi)), (lo, hi), "{k}/{n}");
        }
    }

    /// Newcombe RG (1998b), "Interval estimation for the difference between independent
    /// proportions: comparison of eleven methods", Statistics in Medicine 17:873–890,
    /// Table II, method 10 (hybrid score, no continuity correction).
    #[test]
    fn newcombe_matches_newcombe_1998_table_2() {
        for ((k1, n1, k2, n2), lo, hi) in [
            ((56, 70, 48, 80), 0.0524, 0.3339),
            ((9, 10, 3, 10), 0.1705, 0.8090),
            ((5, 56, 0, 29), -0.0381, 0.1926),
            ((0, 10, 0, 20), -0.1611, 0.2775),
            ((0, 10, 0, 10), -0.2775, 0.2775),
            ((10, 10, 0, 20), 0.6791, 1.0),
            ((10, 10, 0, 10), 0.6075, 1.0),
        ] {
            let d = newcombe(k1, n1, k2, n2, Z95);
            assert_eq!(
                (round4(d.lo), round4(d.hi)),
                (lo, hi),
                "{k1}/{n1} - {k2}/{n2}"
            );
        }
    }

    #[test]
    fn wilson_of_nothing_is_everything() {
        assert_eq!(wilson(0, 0, Z95), Interval { lo: 0.0, hi: 1.0 });
        assert_eq!(wilson(0, 100, Z95).lo, 0.0);
        assert_eq!(wilson(100, 100, Z95).hi, 1.0);
        assert_eq!(rate(0, 0), 0.0);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), Some(50));
        assert_eq!(percentile(&v, 0.99), Some(99));
        assert_eq!(percentile(&[7], 0.99), Some(7));
        assert_eq!(percentile(&[1, 2, 3], 0.5), Some(2));
        assert_eq!(percentile(&[], 0.5), None);
    }
}
