//! Anytime-valid sequential tests of the primary against DR on *counts*: e-processes.
//!
//! # What is tested
//!
//! A sequential gate (`error_rate: { vs_dr: ... }` or `latency: { vs_dr: { above: ... } }`)
//! looks at "bad" requests — errors, or requests slower than a histogram bucket edge — out of
//! all requests, at both sites. With `r_p`, `r_d` the primary's and DR's bad-request rates,
//! `ρ₀ = 1 + tolerance` and `δ` the absolute tolerance, the primary is **acceptable** when
//!
//! ```text
//!     r_p <= max(ρ₀ · r_d, δ)
//! ```
//!
//! ("no worse than DR within the tolerance, or below δ anyway"). Two e-processes run side by
//! side, both reset when the weight changes (and continued, not reset, by a restart that
//! resumes the same stage at the same weight: `run/resume.rs`):
//!
//! * **harm** (→ Rollback): evidence *against* "acceptable". Crossing `1/α` rolls back; if the
//!   primary is acceptable this happens with probability at most `α` (Ville's inequality),
//!   however often we look.
//! * **no worse** (→ may Advance): evidence *for* "acceptable", i.e. against
//!   `r_p >= max(ρ₀ r_d, δ)`. Crossing `1/β` certifies the stage; certifying a primary that
//!   is not acceptable happens with probability at most `β` per stage. A false certificate
//!   only moves traffic to the next stage, where harm is tested afresh with more traffic, so
//!   `β` (default 0.05) is per stage and larger than the rollback budget.
//!
//! # The relative part: conditioned on the measured split (Lindon & Malek 2022, §4)
//!
//! In analysis interval `k` the sites served `n_p`, `n_d` requests and `x_p`, `x_d` bad ones.
//! Bad requests are modelled as Poisson with intensity proportional to requests served;
//! conditioned on the interval's total `E = x_p + x_d`, the primary's share is binomial:
//!
//! ```text
//!     x_p | E  ~  Binomial(E, θ_k(ρ)),      θ_k(ρ) = ρ n_p / (ρ n_p + n_d),   ρ = r_p / r_d.
//! ```
//!
//! The traffic split `n_p / n_d` is whatever was *measured* in that interval — a DNS split
//! that has not converged, or Poisson noise in arrivals, changes `θ_k`, not the validity.
//! For an alternative `ρ₁` the likelihood ratio against the boundary `ρ₀` is
//!
//! ```text
//!     L_k(ρ₁) = (θ_k(ρ₁)/θ_k(ρ₀))^x_p · ((1-θ_k(ρ₁))/(1-θ_k(ρ₀)))^x_d .
//! ```
//!
//! For `ρ₁ > ρ₀` its conditional expectation is `(θ θ₁/θ₀ + (1-θ)(1-θ₁)/(1-θ₀))^E`, which is
//! increasing in the true `θ` and equals 1 at `θ₀`: so `∏_k L_k(ρ₁)` is a non-negative
//! supermartingale under *every* `ρ <= ρ₀`, even a ratio that drifts from interval to
//! interval. The same holds mirrored for `ρ₁ < ρ₀` under `ρ >= ρ₀`. Averaging over a grid of
//! alternatives keeps the supermartingale property (the method of mixtures; Howard et al.
//! 2021) and adapts to the size of the effect without knowing it in advance: harm averages
//! `ρ₁ = ρ₀·c`, `c ∈ {1.2, 1.5, 2, 3, 5, 10}` with equal weights; no worse puts half its
//! weight on `ρ₁ = 1` (as good as DR, the usual truth of a repaired primary) and half on
//! `ρ₀/c` over the same grid. Intervals where
//! one site served nothing, or nobody failed, carry no information and change nothing.
//!
//! # The absolute part: mixtures on the primary alone
//!
//! With `x` bad out of `n` primary requests in an interval and the boundary `δ`, each
//! alternative rate `r₁` has the ratio `(r₁/δ)^x ((1-r₁)/(1-δ))^(n-x)`, a supermartingale
//! under every `r <= δ` when `r₁ > δ` (and under every `r >= δ` when `r₁ < δ`). Harm averages
//! `r₁ = δ·c` and no worse `r₁ = δ/c` over the same grid as the relative test (points with
//! `r₁ >= 1` dropped), with equal weights: the prior is concentrated where regressions and
//! healthy services are. (A uniform prior over `[δ, 1]`, the earlier choice, took a median
//! 19 intervals of 150 requests against `δ` = 0.1 % for a primary at 0.5 %; the grid, 13.)
//!
//! # Bursts and late regressions
//!
//! Every ratio is tempered, `L^η`, with `η` chosen from the gate's dispersion measured on
//! DR's history so that it stays an e-value when counts are Gamma-mixed Poisson
//! (`tempering.rs`; `η = 1` for Poisson counts). Beside the harm e-process runs a weighted
//! Shiryaev–Roberts change detector (Shin, Ramdas & Rinaldo 2024): with `Λ_{s,t}` the product
//! of the ratios from interval `s` to `t`, the harm statistic is
//! `M_t = mean_c((1 - ε) E_{c,t} + Σ_s π_s Λ_{c,s,t})`, the prior weights `π_s` of a change
//! starting at interval `s` summing to at most `ε` ([`ln_change_weight`]); `M_t` plus the
//! weight of changes not yet started is a non-negative supermartingale starting at 1, so
//! `P(sup M_t >= 1/α) <= α` even for a held stage watched without end.
//!
//! # Combining them, and the alpha budget
//!
//! A gate's `alpha` is split evenly over the plan's stages and over the policy's sequential
//! gates: each (gate, stage) pair gets `α_s = α / (stages × sequential gates)`, so by a union
//! bound a whole run of an acceptable primary rolls back with probability at most `α`.
//!
//! * Rollback when the relative harm statistic `M_t >= 1/α_s` **and** (with `δ > 0`) the
//!   absolute one does: if the primary is acceptable, one of the two nulls (`r_p <= ρ₀ r_d`
//!   or `r_p <= δ`) is true, and its statistic crosses with probability at most `α_s`.
//! * Certify when relative no-worse `>= 1/(w β)` **or** absolute no-worse
//!   `>= 1/((1 - w) β)`, by a union bound at most `β` together. The share `w` is fixed at
//!   the stage's first interval from data the stage has not seen ([`ok_share`]): with
//!   `δ = 0` all of `β` (`w = 1`); when DR's rate over its history is at or above `δ`,
//!   where only the relative test can certify a primary as good as DR, `w = 0.9`; with no
//!   bad request in DR's history, `w = 0.1`; otherwise half each. Where DR serves nothing
//!   or only a final holdout, `w = 0.1` ([`SCARCE_DR_OK_SHARE`]). `certify: cumulative`
//!   carries `w` with the evidence it carries between stages judged alike; at a stage where
//!   DR serves nothing or only a holdout it takes `w = 0.5`
//!   ([`CUMULATIVE_SCARCE_DR_OK_SHARE`]): the carried relative evidence may certify as much
//!   as the pooled comparison. Against DR's pooled stages, the absolute test spends half of
//!   its share on the pooled rate's lower bound.
//! * When DR serves nothing (the 100 % stage), the relative test has no data: both sides use
//!   the absolute test against `max(ρ₀ · r̂_d, δ)`, with DR's counts pooled over every
//!   earlier stage and their uncertainty: an upper `1 - α_s` confidence bound of `r̂_d` for
//!   harm, a lower one for no worse whose error is charged to the absolute test's share of
//!   `β` (half of it; [`EProcess::bounds`]). The pooled rate is older
//!   than the data it is compared with, so a rise common to both sites that starts once
//!   the primary serves 100 % reads as harm: nothing concurrent tells it apart. With
//!   `analysis.probe` (the default) that one-sample harm therefore decides nothing: it sets
//!   off a probe, an earlier stage's split at which the relative test (and `δ`) judges the
//!   primary against DR's *concurrent* traffic, as at a final holdout. The relative tests
//!   are one e-process per stage with data only while DR serves, so however many probes a
//!   stage has, it rolls back an acceptable primary with probability at most `α_s`; after
//!   a probe that found no harm, the one-sample test restarts (it spends no budget) against
//!   the larger of the pooled rate and DR's rate over the probes
//!   ([`EProcess::probe_cleared`]). Certification is unchanged.
//! * A policy's `final_holdout` avoids that: its stage keeps DR's holdout, and harm is
//!   judged against the concurrent holdout only (with `δ`), so a common cause is never
//!   harm; no worse may also be shown against DR's pooled earlier stages (the holdout alone
//!   is too small to certify against). The price: a regression at that stage is seen
//!   through the holdout's few requests, minutes rather than seconds (BENCHMARKS.md).
//!
//! The reported *evidence* is `ln(e) / ln(boundary)`: 0 is none, 1 is the boundary.
//! Certification sticks for the rest of the stage (the test stopped there); harm is still
//! monitored and overrides it.
//!
//! # Assumptions, stated
//!
//! Bad requests are Poisson given the requests served, up to the Gamma mixing the tempering
//! measures on DR's history (one- and two-minute blocks). Not covered: a primary burstier
//! than DR, correlation beyond two minutes, tails much heavier than the negative binomial's;
//! the benchmark measures per-site bursts at several time scales.
//!
//! # References
//!
//! * M. Lindon, A. Malek. *Anytime-Valid Inference for Multinomial Count Data.* NeurIPS 2022,
//!   §4 (time-inhomogeneous Poisson processes, conditioning on the total).
//! * S. R. Howard, A. Ramdas, J. McAuliffe, J. Sekhon. *Time-uniform, nonparametric,
//!   nonasymptotic confidence sequences.* Annals of Statistics 49(2), 2021 (method of mixtures).
//! * A. Ramdas, P. Grünwald, V. Vovk, G. Shafer. *Game-theoretic statistics and safe anytime-valid
//!   inference.* Statistical Science 38(4), 2023 (e-processes, Ville's inequality).

use std::time::Duration;

use serde::{Deserialize, Serialize};

mod judge;
mod probe;
mod tempering;
pub use judge::{Conclusion, Judgement};
pub use probe::{Certification, PROBE_MIN_DR_BAD};
pub use tempering::{BLOCK, CONFIDENCE, Dispersion};
use tempering::{eta_absolute, eta_relative};

/// Multipliers of the boundary ratio that the relative mixture averages over.
pub const GRID: [f64; 6] = [1.2, 1.5, 2.0, 3.0, 5.0, 10.0];

/// A change detector's start, `ln 0`, kept finite so that a record can be written as JSON.
const LN_ZERO: f64 = -1e300;

/// The share of the rollback budget given to regressions that start after the stage does
/// (the change detector); the rest goes to the stage's e-process.
pub const DETECTOR_SHARE: f64 = 0.3;

/// Of the detector's share, what the changes within the stage's `max_duration` get; the
/// rest is spread over the doubling epochs a held stage keeps watching for.
const FIRST_EPOCH: f64 = 0.9;

/// Requests and bad requests at one site in one interval (or summed over a stage).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    /// Requests served.
    pub total: f64,
    /// Of those, bad ones (errors, or slower than the bucket edge).
    pub bad: f64,
}

impl Tally {
    /// The bad share, if any request was served.
    pub fn rate(&self) -> Option<f64> {
        (self.total > 0.0).then(|| self.bad / self.total)
    }
}

/// The parameters of one sequential test, for one stage.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Test {
    /// `ρ₀ = 1 + tolerance`.
    pub ratio: f64,
    /// `δ`, the absolute tolerance (0: none).
    pub absolute: f64,
    /// `α_s`, this stage's share of the gate's alpha (false rollback).
    pub alpha: f64,
    /// `β`, this stage's false-certification budget (advancing a primary that is worse).
    pub beta: f64,
}

impl Test {
    /// The rate the absolute tests compare the primary with: `δ`, or at a stage where DR
    /// serves nothing by plan, `max(ρ₀ · r̂_d, δ)` with DR's earlier rate `r̂_d`. 0: none.
    pub fn bound(&self, dr_baseline: Option<f64>) -> f64 {
        match dr_baseline {
            Some(r) => (self.ratio * r).max(self.absolute),
            None => self.absolute,
        }
    }
}

fn zeros() -> Vec<f64> {
    vec![0.0; GRID.len()]
}

fn ok_zeros() -> Vec<f64> {
    vec![0.0; GRID.len() + 1]
}

fn detector_start() -> Vec<f64> {
    vec![LN_ZERO; GRID.len()]
}

/// The state of a sequential gate within one stage. Starts empty at each weight change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EProcess {
    /// `ln ∏ L_k(ρ₀·c)^η` per grid point: relative harm.
    pub harm: Vec<f64>,
    /// Relative no worse: `ln ∏ L_k(1)^η` ("as good as DR") first, then `ln ∏ L_k(ρ₀/c)^η`
    /// per grid point.
    pub ok: Vec<f64>,
    /// Absolute harm, `ln ∏` of the tempered ratios of `r₁ = bound·c` per grid point.
    #[serde(default = "zeros")]
    pub abs_harm: Vec<f64>,
    /// Absolute no worse, `ln ∏` of the tempered ratios of `r₁ = bound/c` per grid point.
    #[serde(default = "zeros")]
    pub abs_ok: Vec<f64>,
    /// The relative change detector: `ln R` per grid point (Shiryaev–Roberts).
    #[serde(default = "detector_start")]
    pub detect: Vec<f64>,
    /// The absolute change detector: `ln R` per grid point.
    #[serde(default = "detector_start")]
    pub abs_detect: Vec<f64>,
    /// The primary's totals over the stage.
    pub primary: Tally,
    /// DR's totals over the stage.
    pub dr: Tally,
    /// Intervals observed.
    pub intervals: u32,
    /// Intervals the stage's `max_duration` holds: the change detector's first epoch.
    #[serde(default)]
    pub looks: u32,
    /// Whether "no worse" crossed its boundary in this stage (it stays certified).
    pub certified: bool,
    /// The end of the last interval counted: the next one starts here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counted_to: Option<std::time::SystemTime>,
    /// The dispersion the last interval was tempered with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dispersion: Option<Dispersion>,
    /// At a stage where DR serves nothing by plan, or only a final holdout: DR's counts
    /// pooled over the earlier stages, whose uncertainty the absolute tests' bounds take
    /// into account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<Tally>,
    /// The relative test's share of `β` where both tests can certify ([`ok_share`]), fixed
    /// at the stage's first interval from DR's history alone (so it is predictable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok_share: Option<f64>,
    /// At a stage where DR serves nothing: DR's counts over the stage's probes
    /// (`analysis.probe`). Once a probe has cleared, the one-sample harm test, which only
    /// sets off probes there, also allows DR's rate at the probes when it is clearly above
    /// DR's earlier one (a cause common to both sites then sets off no probe after probe).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probed: Option<Tally>,
    /// While a probe is under way: the no-worse evidence as the probe found it, put back
    /// when it ends (the probe's split is not the stage's, and what it shows certifies
    /// nothing about the stage). Also: judged against DR's concurrent traffic only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<Certification>,
}

impl Default for EProcess {
    fn default() -> Self {
        EProcess {
            harm: zeros(),
            ok: ok_zeros(),
            abs_harm: zeros(),
            abs_ok: zeros(),
            detect: detector_start(),
            abs_detect: detector_start(),
            primary: Tally::default(),
            dr: Tally::default(),
            intervals: 0,
            looks: 0,
            certified: false,
            counted_to: None,
            dispersion: None,
            reference: None,
            ok_share: None,
            probed: None,
            probe: None,
        }
    }
}

/// `ln(mean(exp(x)))`, computed without overflow.
fn ln_mean_exp(xs: &[f64]) -> f64 {
    let m = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !m.is_finite() || xs.is_empty() {
        return m;
    }
    m + (xs.iter().map(|x| (x - m).exp()).sum::<f64>() / xs.len() as f64).ln()
}

/// `ln(1 + e^x)`.
fn softplus(x: f64) -> f64 {
    if x > 30.0 {
        x + (-x).exp()
    } else {
        x.exp().ln_1p()
    }
}

/// `ln L_k(ρ₁)` against `ρ₀` for one interval, with its `ln a`, `ln b`.
fn relative_terms(rho1: f64, rho0: f64, p: Tally, d: Tally) -> (f64, f64, f64) {
    let theta = |rho: f64| rho * p.total / (rho * p.total + d.total);
    let (t1, t0) = (theta(rho1), theta(rho0));
    let (la, lb) = ((t1 / t0).ln(), ((1.0 - t1) / (1.0 - t0)).ln());
    let mut l = 0.0;
    if p.bad > 0.0 {
        l += p.bad * la;
    }
    if d.bad > 0.0 {
        l += d.bad * lb;
    }
    (l, la, lb)
}

/// `ln L_k(ρ₁)` against `ρ₀` for one interval (untempered).
pub fn ln_ratio(rho1: f64, rho0: f64, p: Tally, d: Tally) -> f64 {
    relative_terms(rho1, rho0, p, d).0
}

/// `ln` of one absolute ratio of `r₁` against `bound` on `t`, with its `ln a`, `ln b`
/// (`x ln a + n ln b`).
fn absolute_terms(r1: f64, bound: f64, t: Tally) -> (f64, f64, f64) {
    let la = (r1 / bound).ln() - ((1.0 - r1) / (1.0 - bound)).ln();
    let lb = ((1.0 - r1) / (1.0 - bound)).ln();
    let mut l = t.total * lb;
    if t.bad > 0.0 {
        l += t.bad * la;
    }
    (l, la, lb)
}

/// `ln π_t`: the prior weight of a change starting at interval `t` (1-based), with `n` of
/// them in the stage's first epoch. Within it each gets `DETECTOR_SHARE · FIRST_EPOCH / n`;
/// the `n·2^(m-1)` changes of epoch `m >= 1` share `DETECTOR_SHARE · (1 - FIRST_EPOCH) · 2^-m`.
/// The weights sum to `DETECTOR_SHARE` over an unbounded stage.
pub fn ln_change_weight(t: u32, n: u32) -> f64 {
    let n = f64::from(n.max(1));
    let t = f64::from(t.max(1));
    if t <= n {
        (DETECTOR_SHARE * FIRST_EPOCH / n).ln()
    } else {
        let m = (t / n).log2().ceil();
        (DETECTOR_SHARE * (1.0 - FIRST_EPOCH) * 2f64.powf(-m) / (n * 2f64.powf(m - 1.0))).ln()
    }
}

/// The relative no-worse test's share of `β` when the absolute one can certify too (`δ > 0`),
/// from DR's bad-request rate over its history (`None`: no history). A primary as good as DR
/// is certified by the test that can see it: at or above `δ` only the relative test can
/// (0.9 of `β`); with no bad request at DR only the absolute one can (0.1); in between, or
/// without history, half each. Chosen before the stage's data, so by a union bound the stage
/// still certifies a primary that is not acceptable with probability at most `β`.
pub fn ok_share(test: &Test, dr_history_rate: Option<f64>) -> f64 {
    match dr_history_rate {
        _ if test.absolute <= 0.0 => 1.0,
        Some(r) if r >= test.absolute => 0.9,
        Some(r) if r <= 0.0 => 0.1,
        _ => 0.5,
    }
}

/// At a stage where DR serves nothing by plan, or only a final holdout, the relative
/// no-worse test's share of `β` (unless `certify: cumulative` carried the run's share): DR's
/// traffic there is little or none, so most of the budget goes to the comparison with DR's
/// pooled earlier stages.
pub const SCARCE_DR_OK_SHARE: f64 = 0.1;

/// With `certify: cumulative`, at a stage where DR serves nothing or only a holdout: the
/// relative test's share of `β`. Its evidence, carried from the stages before, may certify
/// as much as the comparison with DR's pooled stages.
pub const CUMULATIVE_SCARCE_DR_OK_SHARE: f64 = 0.5;

/// `ln(e^a + e^b)`.
fn ln_add_exp(a: f64, b: f64) -> f64 {
    let m = a.max(b);
    m + softplus(a.min(b) - m)
}

/// A Poisson confidence bound on a rate from `t`'s counts: the upper one at `confidence`
/// (`upper`), or the lower one.
pub fn rate_bound(t: Tally, confidence: f64, upper: bool) -> f64 {
    use statrs::distribution::{ContinuousCDF, Gamma};
    if t.total <= 0.0 {
        return if upper { 1.0 } else { 0.0 };
    }
    let (shape, q) = if upper {
        (t.bad + 1.0, confidence)
    } else if t.bad <= 0.0 {
        return 0.0;
    } else {
        (t.bad, 1.0 - confidence)
    };
    Gamma::new(shape, 1.0)
        .map(|g| g.inverse_cdf(q) / t.total)
        .unwrap_or(if upper { 1.0 } else { 0.0 })
        .clamp(0.0, 1.0)
}

impl EProcess {
    /// The absolute tests' rates: `(harm, no worse)`. `δ`; or, with DR's pooled earlier
    /// counts (`reference`: where DR serves nothing by plan, or at a final holdout),
    /// `max(ρ₀ · r̂_d, δ)` with an upper confidence bound of `r̂_d` (at `1 - α_s`) for harm
    /// and a lower one for no worse (its error charged to `β`), so that the estimate's own
    /// uncertainty is never read as the primary's harm nor as its health. Without a
    /// reference, where DR serves nothing: `max(ρ₀ · dr_baseline, δ)`.
    pub fn bounds(&self, test: &Test, dr_baseline: Option<f64>) -> (f64, f64) {
        match (dr_baseline, self.reference) {
            // Where DR serves nothing; and at a final holdout, where harm needs the
            // concurrent relative test too (so a common cause is never read as harm), and
            // no worse may be shown against the pooled earlier stages (DR's holdout is too
            // small to certify against alone).
            (_, Some(r)) if r.total > 0.0 => (
                (test.ratio * rate_bound(r, 1.0 - test.alpha, true))
                    .max(self.probed_bound(test, rate_bound(r, 1.0 - test.alpha, true)))
                    .max(test.absolute),
                (test.ratio * rate_bound(r, self.reference_confidence(test), false))
                    .max(test.absolute),
            ),
            _ => (
                test.bound(dr_baseline)
                    .max(self.probed_bound(test, dr_baseline.unwrap_or(0.0))),
                test.bound(dr_baseline),
            ),
        }
    }

    /// Takes one interval's counts at both sites, `dt` long. `dr_baseline` is DR's earlier
    /// rate at a stage where DR serves nothing by plan ([`EProcess::bounds`]) and
    /// `dispersion` the gate's calibration (tempering).
    pub fn observe(
        &mut self,
        test: &Test,
        dr_baseline: Option<f64>,
        p: Tally,
        d: Tally,
        dispersion: &Dispersion,
        dt: Duration,
    ) {
        if self.ok_share.is_none() {
            // Where DR serves nothing or only a holdout, the relative test has little to
            // compare with: most of `β` goes to the absolute one, if it can certify at all
            // (not with `δ = 0` and a reference without bad requests).
            let history = (dispersion.blocks > 0).then_some(dispersion.rate);
            let absolute_can = test.absolute > 0.0 || self.reference.is_some_and(|r| r.bad > 0.0);
            self.ok_share = Some(if dr_baseline.is_some() || self.is_holdout(dr_baseline) {
                if absolute_can {
                    SCARCE_DR_OK_SHARE
                } else {
                    1.0
                }
            } else {
                ok_share(test, history)
            });
        }
        let (bound, ok_bound) = self.bounds(test, dr_baseline);
        // Predictable, and on the safe side: the larger of DR's rate before this interval
        // and its history's (a larger rate needs more tempering, and a stage's first bursty
        // intervals often underestimate it).
        let r_ref = self.dr.rate().unwrap_or(0.0).max(dispersion.rate);
        let kappa = dispersion.kappa;
        let scale = (BLOCK.as_secs_f64() / dt.as_secs_f64().max(1e-3)).max(1.0);
        self.dispersion = Some(*dispersion);
        self.intervals += 1;
        let w = ln_change_weight(self.intervals, self.looks);
        self.primary.total += p.total;
        self.primary.bad += p.bad;
        self.dr.total += d.total;
        self.dr.bad += d.bad;
        if self.probe.is_some() {
            let probed = self.probed.get_or_insert_default();
            probed.total += d.total;
            probed.bad += d.bad;
        }
        let rho0 = test.ratio;
        let informative = p.total > 0.0 && d.total > 0.0 && p.bad + d.bad > 0.0;
        let (mu_p, mu_d) = (rho0 * r_ref * p.total * scale, r_ref * d.total * scale);
        let rel = |rho1: f64| -> f64 {
            if !informative {
                return 0.0;
            }
            let (l, la, lb) = relative_terms(rho1, rho0, p, d);
            eta_relative(la, lb, mu_p, mu_d, kappa) * l
        };
        self.ok[0] += rel(1.0);
        for (j, c) in GRID.iter().enumerate() {
            let h = rel(rho0 * c);
            self.harm[j] += h;
            self.detect[j] = ln_add_exp(self.detect[j], w) + h;
            self.ok[j + 1] += rel(rho0 / c);
        }
        if p.total <= 0.0 {
            return;
        }
        let abs = |r1: f64, bound: f64| -> f64 {
            let (l, la, lb) = absolute_terms(r1, bound, p);
            eta_absolute(la, lb, p.total * scale, bound, kappa) * l
        };
        for (j, c) in GRID.iter().enumerate() {
            if bound > 0.0 && bound * c < 1.0 {
                let h = abs(bound * c, bound);
                self.abs_harm[j] += h;
                self.abs_detect[j] = ln_add_exp(self.abs_detect[j], w) + h;
            }
            if ok_bound > 0.0 && ok_bound < 1.0 {
                self.abs_ok[j] += abs(ok_bound / c, ok_bound);
            }
        }
    }

    /// The confidence of the lower bound on DR's pooled rate that certification against the
    /// pooled earlier stages compares with: it spends half of the absolute no-worse test's
    /// share of `β` (the test itself the other half), so that the bound's own error is
    /// charged to the budget.
    fn reference_confidence(&self, test: &Test) -> f64 {
        let w = self.ok_share.unwrap_or(SCARCE_DR_OK_SHARE).clamp(0.0, 1.0);
        1.0 - (1.0 - w) * test.beta / 2.0
    }

    /// Whether this stage's absolute no-worse test is against `absolute_tolerance` itself,
    /// as at every stage where DR serves: there, and only there, `certify: cumulative`
    /// carries the absolute evidence of the stage before (gathered against the same rate).
    /// Against DR's pooled stages the rate is `max(ρ₀ · lower bound, δ)`, fixed when the
    /// stage starts; when that is above `δ` the evidence would be tested against another
    /// rate, and a primary above `δ` (as good as a DR above it) would bring its deficit into
    /// a test it could otherwise pass. Call after `reference` and `ok_share` are set.
    pub fn tests_absolute_against_tolerance(&self, test: &Test) -> bool {
        match self.reference {
            None => true,
            Some(r) if r.total > 0.0 => self.bounds(test, None).1 <= test.absolute,
            // No pooled DR count: the rate depends on the baseline given at each analysis.
            Some(_) => false,
        }
    }

    /// Whether "no worse" is shown against DR's pooled earlier stages here.
    fn against_reference(&self, dr_baseline: Option<f64>) -> bool {
        self.reference.is_some_and(|r| r.total > 0.0)
            && (dr_baseline.is_some() || self.is_holdout(dr_baseline))
    }

    /// Whether this is a final holdout's stage: DR serves (no `dr_baseline`) and its pooled
    /// earlier counts are the no-worse side's second reference.
    fn is_holdout(&self, dr_baseline: Option<f64>) -> bool {
        dr_baseline.is_none() && self.reference.is_some_and(|r| r.total > 0.0)
    }

    /// `ln e` of the relative harm mixture.
    pub fn ln_relative_harm(&self) -> f64 {
        ln_mean_exp(&self.harm)
    }

    /// `ln e` of the relative no-worse mixture: half its weight on "as good as DR", half
    /// spread over the grid.
    pub fn ln_relative_ok(&self) -> f64 {
        ln_mean_exp(&[self.ok[0], ln_mean_exp(&self.ok[1..])])
    }

    /// The grid points of the absolute harm mixture that are rates below 1.
    fn abs_points(&self, bound: f64) -> usize {
        GRID.iter().filter(|c| bound * *c < 1.0).count()
    }

    /// `ln e` of the absolute harm mixture against `r_p <= bound`.
    pub fn ln_absolute_harm(&self, bound: f64) -> f64 {
        ln_mean_exp(&self.abs_harm[..self.abs_points(bound)])
    }

    /// `ln e` of the absolute no-worse mixture against `r_p >= bound`.
    pub fn ln_absolute_ok(&self) -> f64 {
        ln_mean_exp(&self.abs_ok)
    }
}

#[cfg(test)]
mod tests;
