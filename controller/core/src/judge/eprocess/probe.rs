//! A sequential gate during and after a probe (`analysis.probe`, `run/probe.rs`): at a stage
//! where DR serves nothing, the one-sample harm test only sets probes off; during a probe the
//! gate is judged against DR's concurrent traffic, and its no-worse evidence is put back as
//! it was when the probe ends.

use serde::{Deserialize, Serialize};

use super::{EProcess, Test, detector_start, rate_bound, zeros};

/// The no-worse side of an e-process, kept aside while a probe runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Certification {
    /// Relative no worse, as [`EProcess::ok`].
    pub ok: Vec<f64>,
    /// Absolute no worse, as [`EProcess::abs_ok`].
    pub abs_ok: Vec<f64>,
    /// Whether the stage was certified.
    pub certified: bool,
    /// DR's bad requests over the stage's earlier probes, when this one started.
    #[serde(default)]
    pub dr_bad: f64,
}

/// A probe clears only once DR has served this many bad requests at it, for each gate that
/// set it off: fewer tell too little about DR's concurrent rate to go back to 100 % on.
pub const PROBE_MIN_DR_BAD: f64 = 10.0;

impl EProcess {
    /// `ρ₀` times an upper bound of DR's rate over the stage's probes, once its lower bound
    /// is above `earlier_upper` (an upper bound of DR's earlier rate; both at `1 - α_s`): a
    /// cause common to both sites. 0 otherwise — a regression whose probe was too short to
    /// see it then sets off the next probe, and the relative evidence, never reset, grows
    /// over both.
    pub(super) fn probed_bound(&self, test: &Test, earlier_upper: f64) -> f64 {
        let (Some(t), None) = (self.probed, &self.probe) else {
            return 0.0;
        };
        let confidence = 1.0 - test.alpha;
        if t.total > 0.0 && rate_bound(t, confidence, false) > earlier_upper {
            test.ratio * rate_bound(t, confidence, true)
        } else {
            0.0
        }
    }

    /// A probe starts: the gate is judged against DR's concurrent traffic only, and its
    /// no-worse evidence is kept aside.
    pub fn probe_started(&mut self) {
        self.probe = Some(Certification {
            ok: self.ok.clone(),
            abs_ok: self.abs_ok.clone(),
            certified: self.certified,
            dr_bad: self.probed.map_or(0.0, |t| t.bad),
        });
    }

    /// DR's bad requests at the probe under way (over the stage's probes, if none is).
    pub fn probed_bad(&self) -> f64 {
        let all = self.probed.map_or(0.0, |t| t.bad);
        all - self.probe.as_ref().map_or(0.0, |c| c.dr_bad)
    }

    /// A probe found the primary no worse than DR's concurrent traffic: the no-worse
    /// evidence is put back as it was when the probe started (leaving out intervals chosen
    /// before their data is seen keeps it an e-process), and the one-sample harm test, which
    /// decides nothing at this stage, starts afresh. The relative harm tests, the only ones
    /// that may roll back there, go on: their budget is spent once however many probes.
    pub fn probe_cleared(&mut self) {
        if let Some(c) = self.probe.take() {
            self.ok = c.ok;
            self.abs_ok = c.abs_ok;
            self.certified = c.certified;
        }
        self.abs_harm = zeros();
        self.abs_detect = detector_start();
    }
}
