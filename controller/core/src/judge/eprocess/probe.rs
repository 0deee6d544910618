//! The one-sample harm test at a stage where DR serves nothing, once a probe found the
//! primary no worse than DR's concurrent traffic (`analysis.probe`, `run/probe.rs`).

use super::{EProcess, Test, detector_start, rate_bound, zeros};

impl EProcess {
    /// `ρ₀` times an upper bound of DR's rate over the stage's cleared probes (0: none).
    pub(super) fn probed_bound(&self, test: &Test) -> f64 {
        match self.probed {
            Some(t) if t.total > 0.0 => test.ratio * rate_bound(t, 1.0 - test.alpha, true),
            _ => 0.0,
        }
    }

    /// A probe found the primary no worse than DR's concurrent traffic (`analysis.probe`):
    /// the one-sample harm test, which only sets off probes at this stage and decides
    /// nothing, starts afresh against the larger of DR's earlier rate and its rate over
    /// the probes so far. The relative tests, the only ones that may roll back there, and
    /// the no-worse tests, which certify, go on unchanged: their budgets are spent once.
    pub fn probe_cleared(&mut self) {
        self.abs_harm = zeros();
        self.abs_detect = detector_start();
        if self.dr.total > 0.0 {
            self.probed = Some(self.dr);
        }
    }
}
