//! One analysis: every gate measured at both sites, plus each site's request rate, and
//! its pure evaluation, [`Analysis::evaluate`]. Taking it is the analyzers' job.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::judge::eprocess::EProcess;
use crate::judge::gate::{Gate, GateMeasurement, GateResult};
use crate::metrics::source::Reading;

/// The readings of one analysis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    /// When it was taken.
    pub at: SystemTime,
    /// The analysis window (the stage's interval).
    #[serde(with = "crate::serde_secs")]
    pub window: Duration,
    /// Requests per second at the primary over the window.
    pub primary_rate: Reading,
    /// Requests per second at DR over the window.
    pub dr_rate: Reading,
    /// Each gate's readings.
    pub gates: Vec<GateMeasurement>,
    /// The policy's `guards:`, checked with the analysis.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub guards: Vec<crate::judge::preflight::PreflightResult>,
}

impl Analysis {
    /// The primary's observed share of requests, in [0, 1]; `None` without traffic data.
    /// A site with no series at all counts as serving nothing; a failed query or a negative
    /// rate gives `None`.
    pub fn primary_share(&self) -> Option<f64> {
        if self.primary_rate.is_error() || self.dr_rate.is_error() {
            return None;
        }
        let p = self.primary_rate.finite().unwrap_or(0.0);
        let d = self.dr_rate.finite().unwrap_or(0.0);
        // A negative rate is a broken query, not a share.
        if p < 0.0 || d < 0.0 || p + d <= 0.0 {
            None
        } else {
            Some(p / (p + d))
        }
    }

    /// Evaluates every gate against its readings. Pure, apart from the sequential gates'
    /// e-processes in `evidence` (the stage's state, keyed by gate name), which take the
    /// interval's counts.
    pub fn evaluate(
        &self,
        gates: &[Gate],
        dr_baselines: &BTreeMap<String, f64>,
        evidence: &mut BTreeMap<String, EProcess>,
    ) -> Vec<GateResult> {
        gates
            .iter()
            .zip(&self.gates)
            .map(|(g, m)| {
                let baseline = dr_baselines.get(&g.name).copied();
                if g.is_sequential() {
                    let ep = evidence.entry(g.name.clone()).or_default();
                    g.evaluate_sequential(m, self.at, ep, baseline)
                } else {
                    g.evaluate(m, baseline)
                }
            })
            .collect()
    }
}
