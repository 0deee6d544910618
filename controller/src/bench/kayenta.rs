//! The Kayenta-style judge: a fixed-horizon one-sided Mann-Whitney U test, answered as a
//! custom query the way an external judge is wired into a rollout (Argo's Kayenta provider).
//!
//! Before the horizon the query has no data (the stage holds); after it, `1` means "High"
//! (roll back) and `0` means pass. The answer looks only at the horizon's data, so it is
//! the same however often it is asked.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use cutover_analyzers::simulated::SimWorld;
use cutover_core::Site;
use cutover_core::metrics::source::{
    CountQuery, Counts, Measure, MetricError, MetricSource, Sample,
};
use statrs::distribution::{ContinuousCDF, Normal};

/// The query the Kayenta error-rate gate sends.
pub const ERRORS: &str = "kayenta:errors";
/// The query the Kayenta p99 gate sends.
pub const LATENCY: &str = "kayenta:latency";
/// The fixed horizon.
pub const HORIZON: Duration = Duration::from_secs(300);
/// The width of one per-interval value.
pub const STEP: Duration = Duration::from_secs(15);
/// The test's significance level.
pub const ALPHA: f64 = 0.05;
/// The effect that matters: the primary's mean above DR's by more than 50 %.
pub const EFFECT: f64 = 1.5;

/// One-sided Mann-Whitney U test that `x` tends to be larger than `y`: the p-value by the
/// normal approximation with tie correction (Kayenta's judge uses the same test).
pub fn mann_whitney_greater(x: &[f64], y: &[f64]) -> f64 {
    let (n1, n2) = (x.len() as f64, y.len() as f64);
    if x.is_empty() || y.is_empty() {
        return 1.0;
    }
    let mut all: Vec<(f64, bool)> = x
        .iter()
        .map(|v| (*v, true))
        .chain(y.iter().map(|v| (*v, false)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n = all.len();
    let mut rank_sum_x = 0.0;
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        let t = (j - i + 1) as f64;
        tie_term += t * t * t - t;
        for item in &all[i..=j] {
            if item.1 {
                rank_sum_x += rank;
            }
        }
        i = j + 1;
    }
    let u = rank_sum_x - n1 * (n1 + 1.0) / 2.0;
    let mean = n1 * n2 / 2.0;
    let nn = n1 + n2;
    let var = n1 * n2 / 12.0 * ((nn + 1.0) - tie_term / (nn * (nn - 1.0)));
    if var <= 0.0 {
        return 1.0;
    }
    let z = (u - mean - 0.5) / var.sqrt(); // continuity correction
    1.0 - Normal::standard().cdf(z)
}

/// A metric source answering the Kayenta queries from the simulated world, and every other
/// measurement from the wrapped source.
pub struct KayentaSource {
    /// The wrapped source.
    pub inner: Arc<dyn MetricSource>,
    /// The world, for per-interval values.
    pub world: SimWorld,
    /// When the current stage's weight was written (shared with the bench backend).
    pub stage_start: Arc<Mutex<Option<SystemTime>>>,
}

impl KayentaSource {
    fn verdict(&self, template: &str, now: SystemTime) -> Result<Sample, MetricError> {
        let start = *self.stage_start.lock().unwrap_or_else(|p| p.into_inner());
        let Some(start) = start else {
            return Ok(Some(0.0)); // before the first stage (preflight): nothing to judge
        };
        if now < start + HORIZON {
            return Ok(None);
        }
        let values = |site, from: SystemTime| -> Vec<f64> {
            let steps = (HORIZON.as_secs() / STEP.as_secs()) as u32;
            (1..=steps)
                .filter_map(|k| {
                    let m = if template == LATENCY {
                        Measure::LatencyQuantile {
                            quantile: 0.99,
                            site,
                            window: STEP,
                        }
                    } else {
                        Measure::ErrorRatio { site, window: STEP }
                    };
                    self.world_measure(&m, from + STEP * k)
                })
                .filter(|v| v.is_finite())
                .collect()
        };
        let p = values(Site::Primary, start);
        let mut d = values(Site::Dr, start);
        if d.len() < 3 {
            // DR serves nothing (the 100 % stage): its values from before the stage.
            d = values(Site::Dr, start - HORIZON);
        }
        if p.len() < 3 || d.len() < 3 {
            return Ok(None);
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let high = mann_whitney_greater(&p, &d) < ALPHA && mean(&p) > EFFECT * mean(&d);
        Ok(Some(if high { 1.0 } else { 0.0 }))
    }

    fn world_measure(&self, m: &Measure, at: SystemTime) -> Option<f64> {
        self.world.measure_at(m, at).ok().flatten()
    }
}

#[async_trait]
impl MetricSource for KayentaSource {
    fn describe(&self) -> String {
        format!("{} with a Kayenta-style judge", self.inner.describe())
    }
    fn render(&self, m: &Measure) -> String {
        self.inner.render(m)
    }
    async fn measure(&self, m: &Measure, now: SystemTime) -> Result<Sample, MetricError> {
        match m {
            Measure::Custom { template, .. } if template == ERRORS || template == LATENCY => {
                self.verdict(template, now)
            }
            _ => self.inner.measure(m, now).await,
        }
    }
    async fn count(&self, q: &CountQuery, now: SystemTime) -> Result<Counts, MetricError> {
        self.inner.count(q, now).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mann_whitney_matches_hand_computed_values() {
        // x = {4, 5, 6}, y = {1, 2, 3}: ranks of x are 4, 5, 6 -> U = 15 - 6 = 9 (the maximum).
        // mean 4.5, var = 3*3*7/12 = 5.25, z = (9 - 4.5 - 0.5)/sqrt(5.25) = 1.7457.
        let p = mann_whitney_greater(&[4.0, 5.0, 6.0], &[1.0, 2.0, 3.0]);
        let want = 1.0 - Normal::standard().cdf(4.0 / 5.25f64.sqrt());
        assert!((p - want).abs() < 1e-12, "{p} vs {want}");
        assert!((p - 0.0404).abs() < 1e-3);
        // Reversed: no evidence that x is larger.
        assert!(mann_whitney_greater(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]) > 0.9);
        // All tied: no evidence.
        assert!(mann_whitney_greater(&[1.0, 1.0], &[1.0, 1.0]) >= 0.5);
    }
}
