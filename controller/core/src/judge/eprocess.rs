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
//! With `S` bad out of `S + F` primary requests and the boundary `δ`, each alternative
//! rate `r₁` has the per-request likelihood ratio `(r₁/δ)^S ((1-r₁)/(1-δ))^F`, a
//! supermartingale under every `r <= δ` when `r₁ > δ` (and under every `r >= δ` when
//! `r₁ < δ`).
//!
//! * **harm** averages the alternatives `r₁ = δ·c` over the same grid as the relative test,
//!   `c ∈ {1.2, 1.5, 2, 3, 5, 10}` (points with `r₁ >= 1` dropped), with equal weights:
//!   the prior is concentrated where regressions are, a few times the tolerance. A uniform
//!   prior over `[δ, 1]` (the earlier choice) puts almost all its mass on error rates no
//!   service has: against `δ` = 0.1 %, a primary at 0.5 % took it a median 19 intervals of
//!   150 requests (95 % within 43) to cross `1/α` at `α` = 0.2 %; the grid takes 13 (28).
//! * **no worse** keeps the conjugate uniform prior on `[0, δ]`, whose closed form is
//!
//! ```text
//!   M = ∫₀^δ r^S (1-r)^F dr / (δ · δ^S (1-δ)^F)
//!     = B(S+1, F+1) · I_δ(S+1, F+1) / (δ^(S+1) (1-δ)^F)
//! ```
//!
//! with `B` the beta function and `I` the regularized incomplete beta function (`statrs`).
//! Each is a mixture of per-request likelihood ratios, each a supermartingale under its null.
//!
//! # Combining them, and the alpha budget
//!
//! A gate's `alpha` is split evenly over the plan's stages and over the policy's sequential
//! gates: each (gate, stage) pair gets `α_s = α / (stages × sequential gates)`, so by a union
//! bound a whole run of an acceptable primary rolls back with probability at most `α`.
//!
//! * Rollback when relative harm `>= 1/α_s` **and** (with `δ > 0`) absolute harm `>= 1/α_s`:
//!   if the primary is acceptable, one of the two nulls (`r_p <= ρ₀ r_d` or `r_p <= δ`) is
//!   true, and that e-process crosses with probability at most `α_s`.
//! * Certify when relative no-worse `>= 2/β` **or** absolute no-worse `>= 2/β` (each at
//!   half the budget; `1/β` for the relative one alone when `δ = 0`).
//! * When DR serves nothing (the 100 % stage), the relative test has no data: both sides use
//!   the absolute test against `max(ρ₀ · r̂_d, δ)`, with `r̂_d` DR's rate as the last
//!   analysis of the stage before measured it — one estimate, taken as exact (its
//!   uncertainty is not accounted for) and older than the data it is compared with. This
//!   stage's guarantee is therefore approximate, and a rise common to both sites that starts
//!   once the primary serves 100 % reads as harm: nothing concurrent tells it apart. A
//!   policy's `final_holdout` avoids the case (the last judged stage keeps DR traffic).
//!
//! The reported *evidence* is `ln(e) / ln(boundary)`: 0 is none, 1 is the boundary.
//! Certification sticks for the rest of the stage (the test stopped there); harm is still
//! monitored and overrides it.
//!
//! # Assumptions, stated
//!
//! Bad requests are Poisson given the requests served (the binomial-conditional model is
//! exact for Poisson counts and close for per-request Bernoulli failures at rates well below
//! 50 %). Overdispersed (bursty) failures violate it and raise the false-rollback rate; the
//! benchmark measures by how much.
//!
//! # References
//!
//! * M. Lindon, A. Malek. *Anytime-Valid Inference for Multinomial Count Data.* NeurIPS 2022,
//!   §4 (time-inhomogeneous Poisson processes, conditioning on the total).
//! * S. R. Howard, A. Ramdas, J. McAuliffe, J. Sekhon. *Time-uniform, nonparametric,
//!   nonasymptotic confidence sequences.* Annals of Statistics 49(2), 2021 (method of mixtures).
//! * A. Ramdas, P. Grünwald, V. Vovk, G. Shafer. *Game-theoretic statistics and safe anytime-valid
//!   inference.* Statistical Science 38(4), 2023 (e-processes, Ville's inequality).

use serde::{Deserialize, Serialize};
use statrs::function::beta::{checked_beta_reg, ln_beta};

/// Multipliers of the boundary ratio that the relative mixture averages over.
pub const GRID: [f64; 6] = [1.2, 1.5, 2.0, 3.0, 5.0, 10.0];

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

/// The state of a sequential gate within one stage. Starts empty at each weight change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EProcess {
    /// `ln ∏ L_k(ρ₀·c)` per grid point: harm.
    pub harm: Vec<f64>,
    /// No worse: `ln ∏ L_k(1)` ("as good as DR") first, then `ln ∏ L_k(ρ₀/c)` per grid point.
    pub ok: Vec<f64>,
    /// The primary's totals over the stage.
    pub primary: Tally,
    /// DR's totals over the stage.
    pub dr: Tally,
    /// Intervals observed.
    pub intervals: u32,
    /// Whether "no worse" crossed its boundary in this stage (it stays certified).
    pub certified: bool,
    /// The end of the last interval counted: the next one starts here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counted_to: Option<std::time::SystemTime>,
}

impl Default for EProcess {
    fn default() -> Self {
        EProcess {
            harm: vec![0.0; GRID.len()],
            ok: vec![0.0; GRID.len() + 1],
            primary: Tally::default(),
            dr: Tally::default(),
            intervals: 0,
            certified: false,
            counted_to: None,
        }
    }
}

/// `ln(mean(exp(x)))`, computed without overflow.
fn ln_mean_exp(xs: &[f64]) -> f64 {
    let m = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !m.is_finite() {
        return m;
    }
    m + (xs.iter().map(|x| (x - m).exp()).sum::<f64>() / xs.len() as f64).ln()
}

/// `ln L_k(ρ₁)` against `ρ₀` for one interval.
pub fn ln_ratio(rho1: f64, rho0: f64, p: Tally, d: Tally) -> f64 {
    let theta = |rho: f64| rho * p.total / (rho * p.total + d.total);
    let (t1, t0) = (theta(rho1), theta(rho0));
    let mut l = 0.0;
    if p.bad > 0.0 {
        l += p.bad * (t1 / t0).ln();
    }
    if d.bad > 0.0 {
        l += d.bad * ((1.0 - t1) / (1.0 - t0)).ln();
    }
    l
}

impl EProcess {
    /// Takes one interval's counts at both sites. `ratio` is `ρ₀`.
    pub fn observe(&mut self, ratio: f64, p: Tally, d: Tally) {
        self.intervals += 1;
        self.primary.total += p.total;
        self.primary.bad += p.bad;
        self.dr.total += d.total;
        self.dr.bad += d.bad;
        if p.total <= 0.0 || d.total <= 0.0 || p.bad + d.bad <= 0.0 {
            return; // no information on the ratio
        }
        self.ok[0] += ln_ratio(1.0, ratio, p, d);
        for (j, c) in GRID.iter().enumerate() {
            self.harm[j] += ln_ratio(ratio * c, ratio, p, d);
            self.ok[j + 1] += ln_ratio(ratio / c, ratio, p, d);
        }
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

    /// `ln e` of the absolute no-worse mixture against `r_p >= bound`, on the primary's totals.
    pub fn ln_absolute_ok(&self, bound: f64) -> f64 {
        ln_absolute(self.primary, bound, false)
    }

    /// `ln e` of the absolute harm mixture against `r_p <= bound`, on the primary's totals.
    pub fn ln_absolute_harm(&self, bound: f64) -> f64 {
        ln_absolute(self.primary, bound, true)
    }
}

/// The absolute mixtures (module docs): against `r_p <= bound` (`harm`, the grid mixture
/// anchored at `bound`) or against `r_p >= bound` (no worse, the truncated-uniform one).
pub fn ln_absolute(t: Tally, bound: f64, harm: bool) -> f64 {
    if !(bound > 0.0 && bound < 1.0) {
        return f64::NEG_INFINITY;
    }
    let s = t.bad.max(0.0);
    let f = (t.total - t.bad).max(0.0);
    if harm {
        let terms: Vec<f64> = GRID
            .iter()
            .map(|c| bound * c)
            .filter(|r1| *r1 < 1.0)
            .map(|r1| s * (r1 / bound).ln() + f * ((1.0 - r1) / (1.0 - bound)).ln())
            .collect();
        if terms.is_empty() {
            return f64::NEG_INFINITY;
        }
        return ln_mean_exp(&terms);
    }
    let tail = match checked_beta_reg(s + 1.0, f + 1.0, bound) {
        Ok(v) if v > 0.0 => v.ln(),
        _ => return f64::NEG_INFINITY,
    };
    ln_beta(s + 1.0, f + 1.0) + tail - (s + 1.0) * bound.ln() - f * (1.0 - bound).ln()
}

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
    /// Evidence of harm, `ln e / ln(1/α_s)`.
    pub harm: f64,
    /// Evidence of "no worse", scaled to its boundary the same way.
    pub no_worse: f64,
}

impl EProcess {
    /// Judges the stage so far. `dr_baseline` is given for a stage where DR serves nothing by
    /// plan (100 %): DR's rate from earlier stages, the one-sample tests' reference (DR's few
    /// requests still counted while the split switched carry too little to compare with).
    /// Without it, a stage where DR served nothing uses the absolute tolerance alone. Marks
    /// the stage certified once "no worse" crosses its boundary.
    pub fn judge(&mut self, test: Test, dr_baseline: Option<f64>) -> Judgement {
        let boundary = (1.0 / test.alpha).ln();
        let ok_boundary = (1.0 / test.beta).ln();
        let scaled = |ln_e: f64, b: f64| (ln_e / b).max(0.0);
        let one_sample = dr_baseline.is_some() || self.dr.total <= 0.0;
        let (harm, no_worse) = if one_sample {
            let bound = match dr_baseline {
                Some(r) => (test.ratio * r).max(test.absolute),
                None => test.absolute,
            };
            if bound <= 0.0 {
                (0.0, 0.0)
            } else {
                (
                    scaled(self.ln_absolute_harm(bound), boundary),
                    scaled(self.ln_absolute_ok(bound), ok_boundary),
                )
            }
        } else if test.absolute > 0.0 {
            let half = (2.0 / test.beta).ln();
            (
                scaled(self.ln_relative_harm(), boundary)
                    .min(scaled(self.ln_absolute_harm(test.absolute), boundary)),
                scaled(self.ln_relative_ok(), half)
                    .max(scaled(self.ln_absolute_ok(test.absolute), half)),
            )
        } else {
            (
                scaled(self.ln_relative_harm(), boundary),
                scaled(self.ln_relative_ok(), ok_boundary),
            )
        };
        if no_worse >= 1.0 {
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use rand_distr::{Binomial, Distribution, Poisson};

    fn t(total: f64, bad: f64) -> Tally {
        Tally { total, bad }
    }

    #[test]
    fn one_interval_matches_the_hand_computed_ratio() {
        // n_p = 100, n_d = 900, ρ₀ = 1.5: θ₀ = 150/1050 = 1/7. For c = 2, ρ₁ = 3:
        // θ₁ = 300/1200 = 1/4. With x_p = 5, x_d = 10:
        // ln L = 5 ln(7/4) + 10 ln((3/4)/(6/7)) = 2.798080 - 1.335314 = 1.462766.
        let l = ln_ratio(3.0, 1.5, t(100.0, 5.0), t(900.0, 10.0));
        assert!((l - 1.462_766).abs() < 1e-5, "{l}");
        let mut e = EProcess::default();
        e.observe(1.5, t(100.0, 5.0), t(900.0, 10.0));
        assert_eq!(e.harm[2], l, "the grid's c = 2 entry");
        // The mixture is the mean of the grid's ratios.
        let mean = e.harm.iter().map(|x| x.exp()).sum::<f64>() / GRID.len() as f64;
        assert!((e.ln_relative_harm() - mean.ln()).abs() < 1e-12);
    }

    #[test]
    fn intervals_without_information_change_nothing() {
        let mut e = EProcess::default();
        e.observe(1.5, t(100.0, 0.0), t(900.0, 0.0)); // nobody failed
        e.observe(1.5, t(0.0, 0.0), t(900.0, 9.0)); // the primary served nothing
        assert!(e.harm.iter().chain(&e.ok).all(|x| *x == 0.0));
        assert_eq!(e.ln_relative_harm(), 0.0);
        assert_eq!(e.intervals, 2);
        assert_eq!(e.dr, t(1800.0, 9.0));
    }

    #[test]
    fn absolute_mixture_matches_its_closed_form() {
        // S = 0 bad of 100, δ = 5 %: M_ok = (1 - 0.95^101) / (101 · 0.05 · 0.95^100) ≈ 33.26.
        let want = (1.0 - 0.95f64.powi(101)) / (101.0 * 0.05 * 0.95f64.powi(100));
        let got = ln_absolute(t(100.0, 0.0), 0.05, false).exp();
        assert!((got - want).abs() / want < 1e-9, "{got} vs {want}");
        // Harm with S = 10 of 20 against δ = 5 %: the mean over the grid r₁ = δ·c of
        // (r₁/δ)^10 ((1-r₁)/(1-δ))^10, by hand.
        let want = GRID
            .iter()
            .map(|c| c.powi(10) * ((1.0 - 0.05 * c) / 0.95).powi(10))
            .sum::<f64>()
            / GRID.len() as f64;
        let got = ln_absolute(t(20.0, 10.0), 0.05, true).exp();
        assert!((got - want).abs() / want < 1e-9, "{got} vs {want}");
        // Grid points at or above a rate of 1 are dropped: δ = 15 % keeps 1.2 .. 5.
        let want = GRID[..5]
            .iter()
            .map(|c| c.powi(3) * ((1.0 - 0.15 * c) / 0.85).powi(2))
            .sum::<f64>()
            / 5.0;
        let got = ln_absolute(t(5.0, 3.0), 0.15, true).exp();
        assert!((got - want).abs() / want < 1e-9, "{got} vs {want}");
        // Nothing observed: no evidence either way.
        assert!(ln_absolute(t(0.0, 0.0), 0.05, false).abs() < 1e-12);
        assert!(ln_absolute(t(0.0, 0.0), 0.05, true).abs() < 1e-12);
    }

    #[test]
    fn a_clear_regression_is_harm_and_a_healthy_primary_is_certified() {
        let test = Test {
            ratio: 1.5,
            absolute: 0.0,
            alpha: 0.002,
            beta: 0.002,
        };
        let mut bad = EProcess::default();
        let mut good = EProcess::default();
        for _ in 0..20 {
            bad.observe(1.5, t(150.0, 8.0), t(1350.0, 14.0)); // 5.3 % vs 1 %
            good.observe(1.5, t(1500.0, 15.0), t(13500.0, 135.0)); // 1 % vs 1 %
        }
        assert_eq!(bad.judge(test, None).conclusion, Conclusion::Harm);
        let j = good.judge(test, None);
        assert_eq!(j.conclusion, Conclusion::NoWorse, "{j:?}");
        assert!(j.harm < 0.1);
    }

    #[test]
    fn certification_sticks_within_the_stage_but_harm_still_wins() {
        let test = Test {
            ratio: 1.5,
            absolute: 0.0,
            alpha: 0.01,
            beta: 0.01,
        };
        let mut e = EProcess::default();
        for _ in 0..20 {
            e.observe(1.5, t(1500.0, 15.0), t(13500.0, 135.0));
        }
        assert_eq!(e.judge(test, None).conclusion, Conclusion::NoWorse);
        // Later the primary breaks: harm overrides the certificate.
        for _ in 0..10 {
            e.observe(1.5, t(1500.0, 300.0), t(13500.0, 135.0));
        }
        assert_eq!(e.judge(test, None).conclusion, Conclusion::Harm);
        // A new stage starts from nothing.
        let mut fresh = EProcess::default();
        assert_eq!(fresh.judge(test, None).conclusion, Conclusion::Undecided);
    }

    #[test]
    fn absolute_tolerance_certifies_a_service_without_errors() {
        // No errors anywhere: the relative test has nothing to go on.
        let mut e = EProcess::default();
        for _ in 0..10 {
            e.observe(1.5, t(1000.0, 0.0), t(9000.0, 0.0));
        }
        let rel_only = Test {
            ratio: 1.5,
            absolute: 0.0,
            alpha: 0.002,
            beta: 0.002,
        };
        assert_eq!(
            e.clone().judge(rel_only, None).conclusion,
            Conclusion::Undecided
        );
        let with_abs = Test {
            absolute: 0.005,
            ..rel_only
        };
        assert_eq!(e.judge(with_abs, None).conclusion, Conclusion::NoWorse);
    }

    #[test]
    fn the_full_stage_uses_drs_earlier_rate() {
        let test = Test {
            ratio: 1.5,
            absolute: 0.0,
            alpha: 0.002,
            beta: 0.002,
        };
        let mut e = EProcess::default();
        for _ in 0..10 {
            e.observe(1.5, t(6000.0, 60.0), t(0.0, 0.0)); // 1 %, DR serves nothing
        }
        // Against DR's earlier 1 %: bound 1.5 %, 1 % is well below it.
        assert_eq!(
            e.clone().judge(test, Some(0.01)).conclusion,
            Conclusion::NoWorse
        );
        // Without a baseline or an absolute tolerance there is nothing to compare with.
        assert_eq!(e.judge(test, None).conclusion, Conclusion::Undecided);
    }

    /// A/A under the null: many seeded stages of identical sites, each looked at every
    /// interval for 60 intervals. The false-harm rate must stay within alpha.
    /// The absolute harm test at its boundary (the primary exactly at `δ`, nothing to
    /// compare with): false harm within alpha over a long stage.
    #[test]
    fn absolute_harm_at_the_boundary_stays_within_alpha() {
        let alpha: f64 = 0.05;
        let runs = 2000;
        let mut harms = 0;
        for seed in 0..runs {
            let mut rng = StdRng::seed_from_u64(50_000 + seed);
            let mut tally = Tally::default();
            for _ in 0..120 {
                let n = 1500.0;
                let x = Binomial::new(1500, 0.005).unwrap().sample(&mut rng) as f64;
                tally.total += n;
                tally.bad += x;
                if ln_absolute(tally, 0.005, true) >= (1.0 / alpha).ln() {
                    harms += 1;
                    break;
                }
            }
        }
        let rate = harms as f64 / runs as f64;
        assert!(rate <= alpha, "false harm rate {rate} > alpha {alpha}");
    }

    /// A primary at 0.5 % against a DR at 0 % with `δ` = 0.1 %, at 10 % of 100 rps (150
    /// requests per 15 s interval): the grid prior crosses in a median 13 intervals, 95 %
    /// within 28; the uniform prior on `[δ, 1]` took 19 and 43 in the same simulation.
    #[test]
    fn a_regression_over_a_zero_error_baseline_is_seen_in_minutes() {
        let alpha: f64 = 0.01 / 5.0;
        let mut took = Vec::new();
        for seed in 0..400 {
            let mut rng = StdRng::seed_from_u64(70_000 + seed);
            let mut tally = Tally::default();
            // 15 s intervals of 150 primary requests, for at most 20 minutes.
            let at = (1..=80).find(|_| {
                tally.total += 150.0;
                tally.bad += Binomial::new(150, 0.005).unwrap().sample(&mut rng) as f64;
                ln_absolute(tally, 0.001, true) >= (1.0 / alpha).ln()
            });
            took.push(at.unwrap_or(u32::MAX));
        }
        took.sort_unstable();
        let median = took[took.len() / 2];
        let p95 = took[took.len() * 95 / 100];
        assert!(median <= 16, "median {median} intervals of 15 s");
        assert!(p95 <= 36, "95th percentile {p95} intervals of 15 s");
    }

    #[test]
    fn aa_false_rollback_rate_stays_within_alpha() {
        let alpha = 0.05;
        let test = Test {
            ratio: 1.5,
            absolute: 0.0,
            alpha,
            beta: alpha,
        };
        let runs = 2000;
        let mut harms = 0;
        for seed in 0..runs {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut e = EProcess::default();
            for _ in 0..60 {
                // 100 rps for 15 s, primary at 10 %, both at 1 % errors.
                let n = Poisson::new(1500.0).unwrap().sample(&mut rng) as u64;
                let np = Binomial::new(n, 0.1).unwrap().sample(&mut rng);
                let nd = n - np;
                let xp = Binomial::new(np, 0.01).unwrap().sample(&mut rng);
                let xd = Binomial::new(nd, 0.01).unwrap().sample(&mut rng);
                e.observe(1.5, t(np as f64, xp as f64), t(nd as f64, xd as f64));
                if e.judge(test, None).conclusion == Conclusion::Harm {
                    harms += 1;
                    break;
                }
            }
        }
        let rate = harms as f64 / runs as f64;
        assert!(rate <= alpha, "A/A false harm rate {rate} > alpha {alpha}");
        // And at the boundary itself (ρ = ρ₀ exactly), where both nulls hold: false harm
        // within alpha, false certification within beta.
        let (mut harms, mut certified) = (0, 0);
        for seed in 0..runs {
            let mut rng = StdRng::seed_from_u64(10_000 + seed);
            let mut e = EProcess::default();
            for _ in 0..60 {
                let (np, nd) = (150u64, 1350u64);
                let xp = Poisson::new(150.0 * 0.015).unwrap().sample(&mut rng);
                let xd = Poisson::new(1350.0 * 0.01).unwrap().sample(&mut rng);
                e.observe(1.5, t(np as f64, xp), t(nd as f64, xd));
                match e.judge(test, None).conclusion {
                    Conclusion::Harm => {
                        harms += 1;
                        break;
                    }
                    Conclusion::NoWorse => {
                        certified += 1;
                        break;
                    }
                    Conclusion::Undecided => {}
                }
            }
        }
        let rate = harms as f64 / runs as f64;
        assert!(
            rate <= alpha,
            "boundary false harm rate {rate} > alpha {alpha}"
        );
        let rate = certified as f64 / runs as f64;
        assert!(
            rate <= test.beta,
            "boundary false certification {rate} > beta"
        );
    }
}
