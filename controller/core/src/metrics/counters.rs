//! Counting from raw counter samples: what a Prometheus counter grew by between two times.
//!
//! Sequential gates need integer-like *counts* (errors out of requests) per analysis, not
//! rates: `increase()` extrapolates to the window's edges and gives non-integer results,
//! which an e-process must not be fed. So we read each series' raw samples and difference
//! them ourselves, partitioning time exactly: an analysis covering `(from, to]` counts every
//! growth between two consecutive samples of a series whose later sample lies in `(from, to]`.
//! Consecutive analyses therefore never count a sample twice and never skip one.
//!
//! * **Resets** (a pod restarted, the counter went back to zero): a sample lower than its
//!   predecessor counts as growth from zero, as Prometheus' `increase()` does.
//! * **Gaps** (missed scrapes): the growth across the gap is counted once, at the sample
//!   after it.
//! * **New series** (a new pod, or the first `status="500"` of a label set) with no sample at
//!   or before `from` in the look-back: its first sample counts from zero. Client libraries
//!   create a labelled counter at its first increment, so ignoring the first value (as
//!   `increase()` effectively does) would lose exactly the first errors of a broken primary.

/// What a set of counter series grew by over `(from, to]`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Growth {
    /// The summed growth.
    pub value: f64,
    /// Counter resets seen (a sample lower than the one before it).
    pub resets: u32,
    /// Series that contributed at least one sample inside the interval.
    pub series: u32,
}

/// The growth of one series' samples `(unix seconds, value)`, in time order, over `(from, to]`.
pub fn series_growth(samples: &[(f64, f64)], from: f64, to: f64) -> Growth {
    let mut g = Growth::default();
    let mut prev: Option<f64> = None;
    let mut inside = false;
    for &(t, v) in samples {
        if !v.is_finite() || t > to {
            continue;
        }
        if t > from {
            inside = true;
            g.value += match prev {
                Some(p) if v >= p => v - p,
                Some(_) => {
                    g.resets += 1;
                    v
                }
                // Born inside the interval: counts from zero.
                None => v,
            };
        }
        prev = Some(v);
    }
    g.series = u32::from(inside);
    g
}

/// The summed growth of several series over `(from, to]`.
pub fn growth<'a>(
    series: impl IntoIterator<Item = &'a [(f64, f64)]>,
    from: f64,
    to: f64,
) -> Growth {
    series
        .into_iter()
        .map(|s| series_growth(s, from, to))
        .fold(Growth::default(), |a, b| Growth {
            value: a.value + b.value,
            resets: a.resets + b.resets,
            series: a.series + b.series,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_growth_counts_only_samples_inside() {
        let s = [(0.0, 10.0), (15.0, 12.0), (30.0, 20.0), (45.0, 21.0)];
        // (15, 45]: 20-12 at t=30, 21-20 at t=45.
        assert_eq!(series_growth(&s, 15.0, 45.0).value, 9.0);
        // Adjacent intervals add up to the whole, nothing counted twice.
        let a = series_growth(&s, 0.0, 30.0).value;
        let b = series_growth(&s, 30.0, 45.0).value;
        assert_eq!(a + b, 11.0);
    }

    #[test]
    fn a_reset_counts_from_zero() {
        // The pod restarted between t=15 and t=30: 12 -> 3 means 3 new requests.
        let s = [(0.0, 10.0), (15.0, 12.0), (30.0, 3.0), (45.0, 7.0)];
        let g = series_growth(&s, 0.0, 45.0);
        assert_eq!(g.value, 2.0 + 3.0 + 4.0);
        assert_eq!(g.resets, 1);
    }

    #[test]
    fn a_gap_counts_once_and_new_series_count_from_zero() {
        // Missed scrapes between 15 and 60: the growth is counted once, at t=60.
        let s = [(0.0, 1.0), (15.0, 2.0), (60.0, 9.0)];
        assert_eq!(series_growth(&s, 15.0, 45.0).value, 0.0);
        assert_eq!(series_growth(&s, 45.0, 60.0).value, 7.0);
        // A series first seen inside the interval (first errors of a new label set).
        let born = [(30.0, 4.0), (45.0, 6.0)];
        let g = growth([&s[..], &born[..]], 15.0, 60.0);
        assert_eq!(g.value, 7.0 + 6.0);
        assert_eq!(g.series, 2);
        // NaN samples (staleness markers) are skipped.
        let stale = [(0.0, 1.0), (15.0, f64::NAN), (30.0, 5.0)];
        assert_eq!(series_growth(&stale, 0.0, 30.0).value, 4.0);
    }
}
