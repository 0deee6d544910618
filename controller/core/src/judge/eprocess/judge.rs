//! What a sequential gate concludes from its e-processes after an analysis: harm (the
//! stage's e-process and its change detector), no worse, or neither yet.

use serde::{Deserialize, Serialize};

use super::{DETECTOR_SHARE, EProcess, Test, ln_add_exp, ln_mean_exp};

/// What a sequential gate concludes after an analysis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Conclusion {
    /// Evidence of harm crossed its boundary: roll back.
    Harm,
    /// The primary is certified no worse than DR within tolerance.
    NoWorse,
    /// Neither yet.
    Undecided,
}

/// The conclusion and both evidences (0 none, 1 at the boundary).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Judgement {
    /// What to conclude.
    pub conclusion: Conclusion,
    /// Evidence of harm, `ln e / ln(boundary)`: the larger of the stage's e-process and the
    /// change detector's.
    pub harm: f64,
    /// Evidence of "no worse", scaled to its boundary the same way.
    pub no_worse: f64,
    /// Whether harm was seen by the change detector (a regression that started after the
    /// stage did) rather than by the stage's e-process.
    pub detector: bool,
    /// At a final holdout's stage: the comparison with DR's pooled earlier stages crossed
    /// its harm boundary, the one with DR's concurrent holdout not yet. It decides nothing
    /// (a cause common to both sites looks the same); it may set off a probe.
    pub suspect: bool,
}

impl EProcess {
    /// Scaled harm of one test from its e-process's and its change detector's grid
    /// (`ln` values): `ln M / ln(1/α)` with `M = mean_c((1 - DETECTOR_SHARE)·E_c + W_c)`,
    /// and whether the detector's part is the larger.
    fn scaled_harm(e: &[f64], w: &[f64], alpha: f64) -> (f64, bool) {
        let keep = (1.0 - DETECTOR_SHARE).ln();
        let both: Vec<f64> = e
            .iter()
            .zip(w)
            .map(|(e, w)| ln_add_exp(keep + e, *w))
            .collect();
        let m = ln_mean_exp(&both);
        let from_detector = ln_mean_exp(w) > keep + ln_mean_exp(e);
        // A NaN must never read as "no evidence": it is as much harm as can be said.
        let scaled = m / (1.0 / alpha).ln();
        (
            if scaled.is_nan() {
                1.0
            } else {
                scaled.max(0.0)
            },
            from_detector,
        )
    }

    /// Judges the stage so far. `dr_baseline` is given for a stage where DR serves nothing by
    /// plan (100 %): DR's rate from earlier stages, the one-sample tests' reference (DR's few
    /// requests still counted while the split switched carry too little to compare with).
    /// Without it, a stage where DR served nothing uses the absolute tolerance alone. Marks
    /// the stage certified once "no worse" crosses its boundary.
    pub fn judge(&mut self, test: Test, dr_baseline: Option<f64>) -> Judgement {
        let ok_boundary = (1.0 / test.beta).ln();
        let scaled = |ln_e: f64, b: f64| (ln_e / b).max(0.0);
        // During a probe, or at a final holdout, harm is judged against DR's concurrent
        // traffic only (an interval without any is no evidence), never on the one-sample
        // test alone.
        let probing = self.probe.is_some();
        let one_sample = !probing
            && (dr_baseline.is_some() || (self.dr.total <= 0.0 && !self.is_holdout(dr_baseline)));
        let (bound, _) = self.bounds(&test, dr_baseline);
        let points = self.abs_points(bound);
        let absolute = || {
            Self::scaled_harm(
                &self.abs_harm[..points],
                &self.abs_detect[..points],
                test.alpha,
            )
        };
        let relative = || Self::scaled_harm(&self.harm, &self.detect, test.alpha);
        // Certification by either test, each at its share of `β`; against DR's pooled
        // earlier stages the absolute test spends half of its share on the reference's
        // lower bound ([`EProcess::reference_confidence`]).
        let share = self.ok_share.unwrap_or(0.5).clamp(0.01, 0.99);
        let reference = if self.against_reference(dr_baseline) {
            2.0
        } else {
            1.0
        };
        let either = || {
            scaled(self.ln_relative_ok(), (1.0 / (share * test.beta)).ln()).max(scaled(
                self.ln_absolute_ok(),
                (reference / ((1.0 - share) * test.beta)).ln(),
            ))
        };
        let mut suspect = false;
        let ((harm, detector), no_worse) = if one_sample {
            if bound <= 0.0 {
                ((0.0, false), 0.0)
            } else {
                // Relative "no worse" evidence counts too: DR's few requests while the
                // split switched, or evidence carried from earlier stages
                // (`certify: cumulative`).
                (absolute(), either())
            }
        } else if test.absolute > 0.0 || self.is_holdout(dr_baseline) || probing {
            // Harm needs both nulls rejected (the relative one against DR's concurrent
            // traffic); with no absolute bound, the relative test alone.
            let r = relative();
            let a = absolute();
            suspect =
                !probing && self.is_holdout(dr_baseline) && bound > 0.0 && a.0 >= 1.0 && r.0 < 1.0;
            (
                match a {
                    _ if bound <= 0.0 => r,
                    a if a.0 < r.0 => a,
                    _ => r,
                },
                either(),
            )
        } else {
            (relative(), scaled(self.ln_relative_ok(), ok_boundary))
        };
        if no_worse >= 1.0 && !probing {
            self.certified = true;
        }
        let conclusion = if harm >= 1.0 {
            Conclusion::Harm
        } else if self.certified {
            Conclusion::NoWorse
        } else {
            Conclusion::Undecided
        };
        Judgement {
            conclusion,
            harm,
            no_worse: if self.certified {
                no_worse.max(1.0)
            } else {
                no_worse
            },
            detector,
            suspect,
        }
    }
}
