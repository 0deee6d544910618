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
//! * **Gaps** (missed scrapes) of at most [`MAX_GAP`] (5 minutes, Prometheus' look-back
//!   delta): the growth across the gap is counted once, at the sample after it.
//! * **Longer gaps**: a sample more than [`MAX_GAP`] after the one before it starts the
//!   series again as a *baseline*: only the growth after it is counted. When the growth
//!   across such a gap happened is unknown (a pod Prometheus could not scrape for six
//!   minutes served those requests while earlier intervals were judged without them), and
//!   a series whose previous sample fell out of the 5-minute look-back must not have its
//!   whole lifetime counted in one interval.
//! * **New series** (a new pod, or the first `status="500"` of a label set) with no sample
//!   in the [`MAX_GAP`] before their first one: counted from zero only when *proven new*,
//!   i.e. when their target was scraped successfully in those 5 minutes and the series was
//!   not in that scrape ([`with_births`]: a zero sample is put at that scrape, as
//!   Prometheus' created-timestamp zero ingestion would). Client libraries create a labelled
//!   counter at its first increment, so a primary whose pods were scraped before they served
//!   (the usual failback: pods ready, weight 0) has its first errors counted in full.
//!   Otherwise the first sample is a baseline, as for a long gap.
//!
//! The trade-off of that last rule: without the proof (a brand-new pod at its very first
//! scrape, a target whose scrapes failed for more than 5 minutes, series without `job` and
//! `instance` labels such as recording rules) what a series counted before its first sample
//! is lost — at most one scrape interval of one pod, in the numerator and the denominator
//! alike — rather than a whole lifetime being invented in one interval. Whether a sample
//! counts depends only on its series and its target's scrapes in the 5 minutes before it,
//! never on the interval's bounds, so counting still partitions time.
//!
//! * **Pairs** ([`pair_growth`]): slow requests are `growth(+Inf) − growth(le)` of one
//!   histogram's buckets, two counters of one pod that restart together. A reset seen on
//!   either of them (or on their difference, the requests above the edge, which never
//!   falls either) is a reset of both: with resets judged per series, a pod going from 10
//!   requests of which 9 fast to 9 of 9 (it restarted and served 9 fast ones) would count
//!   `9 − 0 = 9` slow requests that never happened.

/// The longest gap between two samples of a series across which its growth is counted:
/// Prometheus' default look-back delta (a series without a sample for 5 minutes is stale).
/// Counting queries look this far back before an interval for each series' previous sample.
pub const MAX_GAP: f64 = 300.0;

/// Sample times closer than this (seconds) are the same scrape (Prometheus stores
/// milliseconds).
const SAME_TIME: f64 = 1e-3;

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

impl Growth {
    fn add(self, o: Growth) -> Growth {
        Growth {
            value: self.value + o.value,
            resets: self.resets + o.resets,
            series: self.series + o.series,
        }
    }
}

/// One step of a series: from its previous sample `(from, before)` to a sample
/// `(at, value)`, at most [`MAX_GAP`] later.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Step {
    from: f64,
    at: f64,
    before: f64,
    value: f64,
}

impl Step {
    fn fell(&self) -> bool {
        self.value < self.before
    }

    /// What the counter grew by in this step: from zero across a reset.
    fn growth(&self, reset: bool) -> f64 {
        if reset {
            self.value
        } else {
            self.value - self.before
        }
    }
}

/// The steps of a series' finite samples up to `to`: a sample without a predecessor at
/// most [`MAX_GAP`] before it is a baseline and makes no step.
fn steps(samples: &[(f64, f64)], to: f64) -> impl Iterator<Item = Step> + '_ {
    let mut prev: Option<(f64, f64)> = None;
    samples
        .iter()
        .filter(move |(t, v)| v.is_finite() && *t <= to)
        .filter_map(move |&(t, v)| {
            let step = prev.filter(|(p, _)| t - p <= MAX_GAP).map(|(p, pv)| Step {
                from: p,
                at: t,
                before: pv,
                value: v,
            });
            prev = Some((t, v));
            step
        })
}

/// Whether a series has a finite sample in `(from, to]`.
fn has_sample_inside(samples: &[(f64, f64)], from: f64, to: f64) -> bool {
    samples
        .iter()
        .any(|(t, v)| v.is_finite() && *t > from && *t <= to)
}

/// The growth of one series' samples `(unix seconds, value)`, in time order, over `(from, to]`.
pub fn series_growth(samples: &[(f64, f64)], from: f64, to: f64) -> Growth {
    let mut g = Growth::default();
    for s in steps(samples, to).filter(|s| s.at > from) {
        let reset = s.fell();
        g.resets += u32::from(reset);
        g.value += s.growth(reset);
    }
    g.series = u32::from(has_sample_inside(samples, from, to));
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
        .fold(Growth::default(), Growth::add)
}

/// Whether a series has a sample in `(from, to]` without a predecessor at most
/// [`MAX_GAP`] before it: a first sample (or one after a long gap) that only
/// [`with_births`] can count.
pub fn first_seen_in(samples: &[(f64, f64)], from: f64, to: f64) -> bool {
    let mut prev: Option<f64> = None;
    for &(t, v) in samples {
        if !v.is_finite() || t > to {
            continue;
        }
        if t > from && prev.is_none_or(|p| t - p > MAX_GAP) {
            return true;
        }
        prev = Some(t);
    }
    false
}

/// A series' samples with its proven births: before each sample that has no predecessor
/// at most [`MAX_GAP`] before it, a `0` at the latest scrape of its target in those
/// [`MAX_GAP`] seconds, if there is one. `scrapes` are the times, in order, at which the
/// series' target was scraped successfully (Prometheus' `up == 1`): the series was not in
/// that scrape, so the counter did not exist then and all of its value was counted since.
///
/// Nothing is proven for a series whose samples are not at scrape times (a target that
/// exposes its own timestamps, or `scrapes` of another target): such a series' absence
/// from a scrape says nothing.
pub fn with_births(samples: &[(f64, f64)], scrapes: &[f64]) -> Vec<(f64, f64)> {
    let scraped_at = |t: f64| {
        let i = scrapes.partition_point(|s| *s < t - SAME_TIME);
        scrapes.get(i).is_some_and(|s| (s - t).abs() <= SAME_TIME)
    };
    let aligned = samples
        .iter()
        .filter(|(_, v)| v.is_finite())
        .all(|(t, _)| scraped_at(*t));
    if !aligned {
        return samples.to_vec();
    }
    let mut out = Vec::with_capacity(samples.len() + 1);
    let mut prev: Option<f64> = None;
    for &(t, v) in samples {
        if v.is_finite() {
            if prev.is_none_or(|p| t - p > MAX_GAP) {
                // The latest scrape strictly before this sample, if within MAX_GAP of it.
                let i = scrapes.partition_point(|s| *s < t - SAME_TIME);
                if let Some(q) = i.checked_sub(1).map(|i| scrapes[i])
                    && t - q <= MAX_GAP
                {
                    out.push((q, 0.0));
                }
            }
            prev = Some(t);
        }
        out.push((t, v));
    }
    out
}

/// What one pod's pair of counters grew by over `(from, to]`: `whole` (a histogram's
/// `+Inf` bucket: requests) and `part` (its bucket at an edge: the requests at most that
/// slow), with `part <= whole` at every scrape.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PairGrowth {
    /// The growth of `whole`; its `resets` are the pair's.
    pub whole: Growth,
    /// The growth of `part`.
    pub part: Growth,
}

impl PairGrowth {
    /// `whole − part`: the requests outside the part (slower than the edge). Never below
    /// zero nor above `whole`; with resets judged per pair that bound is only a guard
    /// (against samples of the two that are not from the same scrapes).
    pub fn rest(&self) -> f64 {
        (self.whole.value - self.part.value).clamp(0.0, self.whole.value.max(0.0))
    }
}

/// The growth of one pod's pair of counters that restart together (`part <= whole` at
/// every scrape) over `(from, to]`, counted between the scrapes that sampled both: a
/// reset seen on either of them, or on `whole − part` (which never falls either), is a
/// reset of both — a step of the pair that spans the two scrapes a reset was seen between
/// counts both from zero. So `whole` grows at least as much as `part` in every step.
pub fn pair_growth(whole: &[(f64, f64)], part: &[(f64, f64)], from: f64, to: f64) -> PairGrowth {
    // Both, at the scrapes where both have a sample.
    let mut both: Vec<(f64, f64, f64)> = Vec::with_capacity(whole.len());
    let mut j = 0;
    for &(t, w) in whole.iter().filter(|(t, v)| v.is_finite() && *t <= to) {
        while j < part.len() && part[j].0 < t - SAME_TIME {
            j += 1;
        }
        if let Some(&(pt, p)) = part.get(j)
            && (pt - t).abs() <= SAME_TIME
            && p.is_finite()
        {
            both.push((t, w, p));
        }
    }
    let diff: Vec<(f64, f64)> = both.iter().map(|&(t, w, p)| (t, w - p)).collect();
    // Where a restart happened: between the two samples of a step that fell.
    let restarts: Vec<(f64, f64)> = steps(whole, to)
        .chain(steps(part, to))
        .chain(steps(&diff, to))
        .filter(Step::fell)
        .map(|s| (s.from, s.at))
        .collect();
    let mut g = PairGrowth::default();
    let mut prev: Option<(f64, f64, f64)> = None;
    for &(t, w, p) in &both {
        if let Some((pt, pw, pp)) = prev.filter(|(pt, ..)| t - pt <= MAX_GAP)
            && t > from
        {
            let reset = restarts
                .iter()
                .any(|&(a, b)| pt <= a + SAME_TIME && b <= t + SAME_TIME);
            let grew = |now: f64, before: f64| if reset { now } else { now - before };
            g.whole.resets += u32::from(reset);
            g.whole.value += grew(w, pw);
            g.part.value += grew(p, pp);
        }
        prev = Some((t, w, p));
    }
    let inside = u32::from(both.iter().any(|(t, ..)| *t > from));
    g.whole.series = inside;
    g.part.series = inside;
    g
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
    fn a_short_gap_counts_once_and_stale_markers_are_skipped() {
        // Missed scrapes between 15 and 60: the growth is counted once, at t=60.
        let s = [(0.0, 1.0), (15.0, 2.0), (60.0, 9.0)];
        assert_eq!(series_growth(&s, 15.0, 45.0).value, 0.0);
        assert_eq!(series_growth(&s, 45.0, 60.0).value, 7.0);
        // NaN samples (staleness markers) are skipped.
        let stale = [(0.0, 1.0), (15.0, f64::NAN), (30.0, 5.0)];
        assert_eq!(series_growth(&stale, 0.0, 30.0).value, 4.0);
    }

    /// Issue 12 (b): a 6-minute scrape gap counts only the growth after the gap, never the
    /// lifetime value before it.
    #[test]
    fn a_six_minute_gap_counts_only_the_growth_after_it() {
        // A pod with 100 000 requests in its lifetime, not scraped from t=15 to t=375.
        let s = [
            (0.0, 100_000.0),
            (15.0, 100_010.0),
            (375.0, 100_500.0),
            (390.0, 100_510.0),
            (405.0, 100_530.0),
        ];
        // What the counting query of (360, 420] reads: the 5-minute look-back before 360
        // holds no sample, so 375 is the first one.
        let seen: Vec<_> = s.iter().copied().filter(|(t, _)| *t > 60.0).collect();
        assert_eq!(series_growth(&seen, 360.0, 420.0).value, 10.0 + 20.0);
        // Nothing proves the series new: its target was not scraped during the gap.
        let scrapes = [0.0, 15.0, 375.0, 390.0, 405.0];
        assert!(first_seen_in(&seen, 360.0, 420.0));
        assert_eq!(with_births(&seen, &scrapes), seen);
        // With the sample before the gap in the window, the growth across it is not
        // counted either: the interval's bounds do not change what counts.
        assert_eq!(series_growth(&s, 0.0, 420.0).value, 10.0 + 10.0 + 20.0);
        let parts = series_growth(&s, 0.0, 380.0).value + series_growth(&s, 380.0, 420.0).value;
        assert_eq!(parts, 40.0);
        // A gap of exactly 5 minutes is still a gap, counted once.
        let five = [(0.0, 10.0), (300.0, 40.0)];
        assert_eq!(series_growth(&five, 0.0, 300.0).value, 30.0);
    }

    #[test]
    fn a_new_series_counts_from_zero_only_when_proven_new() {
        // The first errors of a label set: the counter appears at t=30 with 4.
        let born = [(30.0, 4.0), (45.0, 6.0)];
        assert!(first_seen_in(&born, 15.0, 60.0));
        assert!(!first_seen_in(&born, 30.0, 60.0));
        // Unproven, its first value is a baseline.
        assert_eq!(series_growth(&born, 15.0, 60.0).value, 2.0);
        // Its target was scraped at 15 without it: born after 15, all 6 counted, the 4 in
        // the interval holding t=30.
        let scrapes = [0.0, 15.0, 30.0, 45.0, 60.0];
        let proven = with_births(&born, &scrapes);
        assert_eq!(proven, vec![(15.0, 0.0), (30.0, 4.0), (45.0, 6.0)]);
        assert_eq!(series_growth(&proven, 15.0, 60.0).value, 6.0);
        assert_eq!(series_growth(&proven, 15.0, 30.0).value, 4.0);
        assert_eq!(series_growth(&proven, 0.0, 15.0).value, 0.0);
        // A target first scraped at 30 (a new pod) proves nothing.
        assert_eq!(with_births(&born, &[30.0, 45.0]), born.to_vec());
        // A target scraped more than 5 minutes before proves nothing either.
        let late = [(400.0, 4.0)];
        assert_eq!(with_births(&late, &[0.0, 400.0]), late.to_vec());
        // Samples that are not at the target's scrape times (own timestamps) prove nothing.
        let own = [(31.0, 4.0), (46.0, 6.0)];
        assert_eq!(with_births(&own, &scrapes), own.to_vec());
        // A series back after 6 minutes away while its target was scraped was created
        // again (the pod restarted and the label set came back): counted from zero.
        let back = [(0.0, 50.0), (405.0, 3.0)];
        let every: Vec<f64> = (0..=27).map(|i| f64::from(i) * 15.0).collect();
        let proven = with_births(&back, &every);
        assert_eq!(proven, vec![(0.0, 50.0), (390.0, 0.0), (405.0, 3.0)]);
        assert_eq!(series_growth(&proven, 0.0, 405.0).value, 3.0);
        // Several series add up.
        let s = [(0.0, 1.0), (15.0, 2.0), (60.0, 9.0)];
        let g = growth([&s[..], &with_births(&born, &scrapes)[..]], 15.0, 60.0);
        assert_eq!(g.value, 7.0 + 6.0);
        assert_eq!(g.series, 2);
    }

    /// Issue 12 (a): 10 requests of which 9 fast, then 9 of 9 (the pod restarted and served
    /// 9 fast ones): no slow request, where resets judged per series counted 9.
    #[test]
    fn a_reset_of_either_counter_of_a_pair_resets_both() {
        let inf = [(0.0, 10.0), (15.0, 9.0)];
        let le = [(0.0, 9.0), (15.0, 9.0)];
        // The flaw: the +Inf counter fell (reset, 9 counted), the le counter did not (0).
        let per_series = series_growth(&inf, 0.0, 15.0).value - series_growth(&le, 0.0, 15.0).value;
        assert_eq!(per_series, 9.0);
        let g = pair_growth(&inf, &le, 0.0, 15.0);
        assert_eq!(g.whole.value, 9.0);
        assert_eq!(g.part.value, 9.0);
        assert_eq!(g.rest(), 0.0);
        assert_eq!(g.whole.resets, 1);
        // The same seen from the other counter: le fell, +Inf did not.
        let g = pair_growth(
            &[(0.0, 10.0), (15.0, 12.0)],
            &[(0.0, 9.0), (15.0, 3.0)],
            0.0,
            15.0,
        );
        assert_eq!((g.whole.value, g.part.value, g.rest()), (12.0, 3.0, 9.0));
        // Neither fell but their difference did (10/5 -> 12/11: 5 slow before, 1 after).
        let g = pair_growth(
            &[(0.0, 10.0), (15.0, 12.0)],
            &[(0.0, 5.0), (15.0, 11.0)],
            0.0,
            15.0,
        );
        assert_eq!((g.whole.value, g.part.value, g.rest()), (12.0, 11.0, 1.0));
        // Without a reset, the plain differences.
        let g = pair_growth(
            &[(0.0, 10.0), (15.0, 20.0)],
            &[(0.0, 9.0), (15.0, 17.0)],
            0.0,
            15.0,
        );
        assert_eq!(
            (g.whole.value, g.part.value, g.rest(), g.whole.resets),
            (10.0, 8.0, 2.0, 0)
        );
    }

    #[test]
    fn a_pair_counts_between_the_scrapes_of_both_and_a_reset_spans_them() {
        // The le counter missed the scrape at 15, where +Inf was at 30; +Inf fell by 30:
        // the pod restarted between 0 and 30 and served 12 requests, 10 of them fast. What
        // it served before the restart has no le sample: its speed is unknown, not slow.
        let inf = [(0.0, 10.0), (15.0, 30.0), (30.0, 12.0), (45.0, 20.0)];
        let le = [(0.0, 9.0), (30.0, 10.0), (45.0, 17.0)];
        let g = pair_growth(&inf, &le, 0.0, 45.0);
        assert_eq!((g.whole.value, g.part.value), (12.0 + 8.0, 10.0 + 7.0));
        assert_eq!(g.rest(), 3.0);
        assert_eq!(g.whole.resets, 1);
        // Adjacent intervals add up.
        let a = pair_growth(&inf, &le, 0.0, 30.0);
        let b = pair_growth(&inf, &le, 30.0, 45.0);
        assert_eq!(a.rest() + b.rest(), g.rest());
        assert_eq!(a.whole.value + b.whole.value, g.whole.value);
        // A reset in the look-back, before the interval, resets nothing inside it.
        assert_eq!((b.whole.value, b.part.value, b.whole.resets), (8.0, 7.0, 0));
        // Proven births of both (one target, one scrape) pair up.
        let scrapes = [0.0, 15.0, 30.0];
        let (inf, le) = ([(15.0, 4.0), (30.0, 6.0)], [(15.0, 3.0), (30.0, 5.0)]);
        let g = pair_growth(
            &with_births(&inf, &scrapes),
            &with_births(&le, &scrapes),
            0.0,
            30.0,
        );
        assert_eq!((g.whole.value, g.part.value, g.rest()), (6.0, 5.0, 1.0));
    }
}
