//! The arithmetic of `cutover tune`: quantiles, the dispersion of counts, and bounds rounded
//! up to numbers a person writes in a policy.

/// The `q` quantile (0..=1) of `values` (nearest rank); `None` when empty.
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 * q.clamp(0.0, 1.0)).ceil() as usize).clamp(1, v.len()) - 1;
    Some(v[i])
}

/// Pearson's dispersion of per-interval bad counts against a binomial of the pooled rate:
/// about 1 when intervals differ only by chance, above 1 when the service's error rate moves
/// between intervals more than counting explains (what a count-based test assumes away).
/// `None` with fewer than two intervals with requests, or no bad request at all.
pub fn dispersion(intervals: &[(f64, f64)]) -> Option<f64> {
    let used: Vec<(f64, f64)> = intervals
        .iter()
        .copied()
        .filter(|(n, b)| *n > 0.0 && b.is_finite() && *b >= 0.0)
        .collect();
    let n: f64 = used.iter().map(|x| x.0).sum();
    let b: f64 = used.iter().map(|x| x.1).sum();
    if used.len() < 2 || n <= 0.0 || b <= 0.0 || b >= n {
        return None;
    }
    let p = b / n;
    let chi2: f64 = used
        .iter()
        .map(|(ni, bi)| (bi - p * ni).powi(2) / (p * (1.0 - p) * ni))
        .sum();
    Some(chi2 / (used.len() - 1) as f64)
}

/// `x` rounded up to two significant digits (0.01234 -> 0.013): a bound never below what
/// was asked, written as a person would.
pub fn round_up(x: f64) -> f64 {
    if !(x.is_finite() && x > 0.0) {
        return x;
    }
    let mag = 10f64.powf(x.log10().floor() - 1.0);
    let r = (x / mag - 1e-9).ceil() * mag;
    // Print-friendly: drop binary noise.
    (r / mag).round() * mag
}

/// `x` rounded down to two significant digits (1234 -> 1200): a count never above what is
/// there.
pub fn round_down(x: f64) -> f64 {
    if !(x.is_finite() && x > 0.0) {
        return x;
    }
    let mag = 10f64.powf(x.log10().floor() - 1.0);
    ((x / mag + 1e-9).floor() * mag).round()
}

/// A fraction as a policy percent, e.g. `2.1%`.
pub fn percent(x: f64) -> String {
    let p = x * 100.0;
    let s = format!("{p:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}%")
}

/// Seconds as a policy span: whole minutes as `12m`, else milliseconds as `750ms`.
pub fn span(secs: f64) -> String {
    if secs >= 60.0 && (secs % 60.0).abs() < 1e-9 {
        format!("{}m", (secs / 60.0) as u64)
    } else if secs >= 1.0 && (secs.fract()).abs() < 1e-9 {
        format!("{}s", secs as u64)
    } else {
        format!("{}ms", (secs * 1000.0).ceil() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.99), Some(99.0));
        assert_eq!(quantile(&v, 1.0), Some(100.0));
        assert_eq!(quantile(&v, 0.0), Some(1.0));
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(quantile(&[f64::NAN, 2.0], 0.5), Some(2.0));
    }

    #[test]
    fn binomial_counts_have_a_dispersion_near_one_and_mixed_rates_more() {
        // Exactly the expected count everywhere: no spread at all.
        assert!(dispersion(&[(1000.0, 10.0), (1000.0, 10.0), (2000.0, 20.0)]).unwrap() < 1e-9);
        // Rates of 0.5 % and 1.5 % alternating over 1000 requests: far more than chance.
        let mixed: Vec<(f64, f64)> = (0..100)
            .map(|i| (1000.0, if i % 2 == 0 { 5.0 } else { 15.0 }))
            .collect();
        assert!(dispersion(&mixed).unwrap() > 2.0);
        assert_eq!(dispersion(&[(10.0, 0.0), (10.0, 0.0)]), None);
    }

    #[test]
    fn bounds_round_up_to_two_digits_and_print_as_policies_write_them() {
        assert!((round_up(0.01234) - 0.013).abs() < 1e-12);
        assert!((round_up(0.021) - 0.021).abs() < 1e-12);
        assert!((round_up(0.4801) - 0.49).abs() < 1e-12);
        assert_eq!(round_down(1234.0), 1200.0);
        assert_eq!(round_down(405.0), 400.0);
        assert_eq!(percent(0.021), "2.1%");
        assert_eq!(percent(0.03), "3%");
        assert_eq!(span(720.0), "12m");
        assert_eq!(span(0.49), "490ms");
        assert_eq!(span(45.0), "45s");
    }
}
