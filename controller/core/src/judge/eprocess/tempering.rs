//! Overdispersion: how bursty a gate's bad requests are, measured on DR's own history, and
//! the tempering that keeps every likelihood ratio of the e-processes an e-value under it.
//!
//! # The model
//!
//! Real errors burst: a pod restarts, a client retries, one customer hammers one endpoint.
//! Counted over a block of [`BLOCK`] (one minute), a site's bad requests have mean `μ` and
//! variance `μ + κ μ²` (a Gamma-mixed Poisson count: the rate itself wanders, with squared
//! coefficient of variation `κ` from block to block). `κ = 0` is the Poisson model the
//! likelihood ratios are written for. The null hypotheses are about *mean* rates — "the
//! primary is no worse on average" — and bursts are noise around them.
//!
//! # Tempering (a quasi-likelihood with a measured dispersion)
//!
//! Each e-process multiplies, per interval, a likelihood ratio `L = exp(ℓ)` with
//! `ℓ = x_p ln a + x_d ln b` (relative) or `ℓ = x ln a + n ln b` (absolute). Under Poisson
//! counts at the null's boundary `E[L] = 1`. Under Gamma-mixed counts `E[L]` exceeds 1, and
//! a product of such factors is no longer a supermartingale: bursts then read as harm. The
//! factor taken instead is `L^η`, with the largest `η ∈ (0, 1]` such that
//!
//! ```text
//!     g(η) = K_p(η ln a) + K_d(η ln b) <= 0,      K(s) = -ln(1 - κ μ (e^s - 1)) / κ,
//! ```
//!
//! `K` the cumulant generating function of a Gamma-mixed Poisson (negative binomial) count
//! with the block's mean at the null boundary. So `E[L^η] <= 1` over a block under the
//! model, for every alternative of the grid separately (each gets its own `η`), and the
//! mixtures stay e-processes. `g` is convex with `g(0) = 0` and `g'(0) < 0`: `η` is its root,
//! found by Newton's method from the right (which stays on the safe side). With `κ = 0`
//! `g(1) = 0` exactly: a Poisson service loses no power.
//!
//! # Calibration from DR's history
//!
//! `κ` is measured per gate from DR's own counts over the last `history` (default two hours)
//! in one-minute blocks, before the first analysis. Bursts can last longer than a block, so
//! it is measured at one and two minutes (pairs of blocks) and the larger dispersion is
//! used. The estimate is an upper confidence bound (90 %, chi-square on the blocks' Pearson
//! statistic), so a short history tempers more, not less. DR's traffic is the same service
//! as the primary's; a primary burstier than DR is not covered (the primary has no history).
//! Not covered either: correlation beyond two minutes (bursts lasting many minutes), which
//! a history of hours cannot measure with any precision.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use statrs::distribution::{ChiSquared, ContinuousCDF};

use super::Tally;

/// The block over which dispersion is measured and over which tempering holds.
pub const BLOCK: Duration = Duration::from_secs(60);

/// The confidence of the upper bound on the dispersion.
pub const CONFIDENCE: f64 = 0.9;

/// How bursty a gate's bad requests are: the calibration of its tempering.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Dispersion {
    /// `κ`: a block's bad-request count has variance `μ + κ μ²` (0: Poisson).
    pub kappa: f64,
    /// DR's bad-request rate over the history: the reference rate before the stage has its own.
    pub rate: f64,
    /// One-minute blocks of history the estimate rests on (0: none; assumed Poisson).
    pub blocks: u32,
    /// The dispersion index (variance / mean) of DR's bad requests per block at its mean
    /// block count, as measured (not the upper bound): 1 is Poisson.
    pub index: f64,
}

impl Dispersion {
    /// No overdispersion: the Poisson model, untempered.
    pub const POISSON: Dispersion = Dispersion {
        kappa: 0.0,
        rate: 0.0,
        blocks: 0,
        index: 1.0,
    };

    /// Estimates the dispersion from consecutive one-minute blocks of DR's counts (oldest
    /// first; blocks without requests are skipped). Fewer than 3 blocks with requests, or no
    /// bad request at all, give the Poisson model with what rate there is.
    pub fn estimate(blocks: &[Tally]) -> Dispersion {
        let used: Vec<Tally> = blocks.iter().copied().filter(|b| b.total > 0.0).collect();
        // Pairs of *adjacent* minutes (a pair with an empty minute is left out).
        let pairs: Vec<Tally> = blocks
            .chunks_exact(2)
            .filter(|c| c[0].total > 0.0 && c[1].total > 0.0)
            .map(|c| Tally {
                total: c[0].total + c[1].total,
                bad: c[0].bad + c[1].bad,
            })
            .collect();
        let (n, x) = used
            .iter()
            .fold((0.0, 0.0), |(n, x), b| (n + b.total, x + b.bad));
        let rate = if n > 0.0 { x / n } else { 0.0 };
        let mut d = Dispersion {
            rate,
            blocks: used.len() as u32,
            ..Dispersion::POISSON
        };
        if used.len() < 3 || x <= 0.0 {
            return d;
        }
        // κ at one minute directly; at two minutes, the κ at one minute that gives the same
        // index at the two-minute mean (κ₂ μ₂ = κ₁ μ₁ with μ₂ = 2 μ₁).
        let (k1, i1) = kappa_upper(&used, rate);
        let (k2, _) = kappa_upper(&pairs, rate);
        d.kappa = k1.max(2.0 * k2);
        d.index = i1;
        d
    }
}

/// The upper confidence bound on `κ` from blocks at a common rate, and the measured index.
fn kappa_upper(blocks: &[Tally], rate: f64) -> (f64, f64) {
    if blocks.len() < 3 || !(rate > 0.0 && rate < 1.0) {
        return (0.0, 1.0);
    }
    let df = (blocks.len() - 1) as f64;
    let (mut pearson, mut mu1, mut mu2) = (0.0, 0.0, 0.0);
    for b in blocks {
        let mu = b.total * rate;
        pearson += (b.bad - mu).powi(2) / (mu * (1.0 - rate));
        mu1 += mu;
        mu2 += mu * mu;
    }
    // The mean block count, weighted as the excess variance weighs it.
    let mu_bar = mu2 / mu1;
    let index = pearson / df;
    let lower = ChiSquared::new(df)
        .map(|c| c.inverse_cdf(1.0 - CONFIDENCE))
        .unwrap_or(df);
    let upper = pearson / lower.max(1e-9);
    (((upper - 1.0) / mu_bar).max(0.0), index)
}

/// `K(s)` of a Gamma-mixed Poisson count with mean `mu` and excess `kappa`; `+∞` outside its
/// domain. With `kappa = 0`, the Poisson `μ (e^s - 1)`.
fn cgf(s: f64, mu: f64, kappa: f64) -> (f64, f64) {
    let e = s.exp_m1();
    if kappa <= 0.0 || mu <= 0.0 {
        return (mu * e, mu * s.exp());
    }
    let z = kappa * mu * e;
    if z >= 1.0 {
        return (f64::INFINITY, f64::INFINITY);
    }
    (-(-z).ln_1p() / kappa, mu * s.exp() / (1.0 - z))
}

/// The largest `η ∈ (0, 1]` with `g(η) <= 0`, for a convex `g` (given with its derivative)
/// with `g(0) = 0`, `g'(0) < 0`; `hi` bounds `g`'s domain.
fn root(g: impl Fn(f64) -> (f64, f64), hi: f64) -> f64 {
    let mut eta = hi.min(1.0);
    let (v, _) = g(eta);
    if v <= 0.0 {
        return eta;
    }
    // Newton from the right of the root stays on the right of it (convexity), so each
    // iterate is still where g > 0 until it converges; stop a hair to the left.
    for _ in 0..30 {
        let (v, dv) = g(eta);
        if !(v.is_finite() && dv.is_finite()) || dv <= 0.0 {
            eta *= 0.5;
            continue;
        }
        let next = eta - v / dv;
        if (eta - next).abs() < 1e-9 {
            eta = next;
            break;
        }
        eta = next;
    }
    let eta = eta * (1.0 - 1e-6);
    if g(eta).0 <= 0.0 {
        return eta.min(1.0);
    }
    // Not converged (or left of nothing): bisect on [0, eta] for a point where g <= 0.
    let (mut lo, mut hi) = (0.0, eta);
    for _ in 0..60 {
        let mid = 0.5 * (lo + hi);
        if g(mid).0 <= 0.0 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

/// The largest `s / ln(ratio)`-scale keeping `κ μ (e^s - 1) < 1` for `s = η ln_a > 0`.
fn domain(ln_a: f64, mu: f64, kappa: f64) -> f64 {
    if ln_a <= 0.0 || kappa <= 0.0 || mu <= 0.0 {
        return 1.0;
    }
    0.999 * (1.0 / (kappa * mu)).ln_1p() / ln_a
}

/// The tempering `η` of a relative likelihood ratio `x_p ln_a + x_d ln_b`, with the block's
/// null means `mu_p`, `mu_d`.
pub(super) fn eta_relative(ln_a: f64, ln_b: f64, mu_p: f64, mu_d: f64, kappa: f64) -> f64 {
    if kappa <= 0.0 {
        return 1.0;
    }
    let hi = domain(ln_a, mu_p, kappa).min(domain(ln_b, mu_d, kappa));
    root(
        |eta| {
            let (kp, dp) = cgf(eta * ln_a, mu_p, kappa);
            let (kd, dd) = cgf(eta * ln_b, mu_d, kappa);
            (kp + kd, ln_a * dp + ln_b * dd)
        },
        hi,
    )
}

/// The tempering `η` of an absolute likelihood ratio `x ln_a + n ln_b` of `n` requests at the
/// null's boundary rate `r`: binomial, plus the Gamma mixing's excess.
pub(super) fn eta_absolute(ln_a: f64, ln_b: f64, n: f64, r: f64, kappa: f64) -> f64 {
    if kappa <= 0.0 {
        return 1.0;
    }
    let mu = n * r;
    let hi = domain(ln_a, mu, kappa);
    root(
        |eta| {
            let s = eta * ln_a;
            let (knb, dnb) = cgf(s, mu, kappa);
            let (kpo, dpo) = cgf(s, mu, 0.0);
            let e = s.exp();
            let kb = n * (r * s.exp_m1()).ln_1p();
            let db = n * r * e / (1.0 + r * (e - 1.0));
            (
                kb + knb - kpo + eta * n * ln_b,
                ln_a * (db + dnb - dpo) + n * ln_b,
            )
        },
        hi,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use rand_distr::{Distribution, Gamma, Poisson};

    fn t(total: f64, bad: f64) -> Tally {
        Tally { total, bad }
    }

    #[test]
    fn poisson_counts_are_not_tempered() {
        let a: f64 = 2.0;
        assert_eq!(eta_relative(a.ln(), 0.9f64.ln(), 5.0, 20.0, 0.0), 1.0);
        assert_eq!(eta_absolute(a.ln(), 0.99f64.ln(), 1000.0, 0.01, 0.0), 1.0);
    }

    /// The defining property: at the null's boundary, `E[L^η] = 1` for Gamma-mixed counts,
    /// computed from the closed-form negative-binomial generating function, and `η < 1`.
    #[test]
    fn tempered_ratios_have_mean_one_at_the_boundary() {
        let (n_p, n_d, r, rho0, kappa) = (600.0, 5400.0, 0.01, 1.5, 0.2);
        let theta = |rho: f64| rho * n_p / (rho * n_p + n_d);
        for c in [1.2, 2.0, 5.0, 10.0] {
            let (t0, t1) = (theta(rho0), theta(rho0 * c));
            let (la, lb) = ((t1 / t0).ln(), ((1.0 - t1) / (1.0 - t0)).ln());
            let (mp, md) = (rho0 * r * n_p, r * n_d);
            let eta = eta_relative(la, lb, mp, md, kappa);
            assert!(eta > 0.0 && eta < 1.0, "c {c}: η {eta}");
            let m = cgf(eta * la, mp, kappa).0 + cgf(eta * lb, md, kappa).0;
            assert!(m <= 1e-6 && m > -1e-3, "c {c}: ln E = {m}");
        }
    }

    /// Monte Carlo under Gamma-mixed counts: the tempered ratio's mean is at most 1, the
    /// untempered one's well above.
    #[test]
    fn tempering_restores_the_mean_under_simulated_bursts() {
        let (n_p, n_d, r, rho0, k) = (600.0, 5400.0, 0.01, 1.5, 2.0);
        let kappa = 1.0 / k;
        let theta = |rho: f64| rho * n_p / (rho * n_p + n_d);
        let (t0, t1) = (theta(rho0), theta(rho0 * 2.0));
        let (la, lb) = ((t1 / t0).ln(), ((1.0 - t1) / (1.0 - t0)).ln());
        let (mp, md) = (rho0 * r * n_p, r * n_d);
        let eta = eta_relative(la, lb, mp, md, kappa);
        let mut rng = StdRng::seed_from_u64(7);
        let g = Gamma::new(k, 1.0 / k).unwrap();
        let (mut raw, mut tempered) = (0.0, 0.0);
        let runs = 200_000;
        for _ in 0..runs {
            let xp = Poisson::new(mp * g.sample(&mut rng))
                .unwrap()
                .sample(&mut rng);
            let xd = Poisson::new(md * g.sample(&mut rng))
                .unwrap()
                .sample(&mut rng);
            let l = xp * la + xd * lb;
            raw += l.exp();
            tempered += (eta * l).exp();
        }
        let (raw, tempered) = (raw / runs as f64, tempered / runs as f64);
        assert!(raw > 1.5, "untempered mean {raw}");
        assert!(tempered < 1.03, "tempered mean {tempered} (η {eta})");
    }

    #[test]
    fn estimate_sees_bursts_and_not_poisson() {
        let mut rng = StdRng::seed_from_u64(3);
        let g = Gamma::new(2.0, 0.5).unwrap();
        let blocks = |burst: bool, rng: &mut StdRng| -> Vec<Tally> {
            (0..60)
                .map(|_| {
                    let m = if burst { g.sample(rng) } else { 1.0 };
                    t(6000.0, Poisson::new(60.0 * m).unwrap().sample(rng))
                })
                .collect()
        };
        let calm = Dispersion::estimate(&blocks(false, &mut rng));
        let bursty = Dispersion::estimate(&blocks(true, &mut rng));
        assert_eq!(calm.blocks, 60);
        assert!((calm.rate - 0.01).abs() < 0.002, "{calm:?}");
        // Poisson: an index near 1 and a small upper bound on κ.
        assert!(calm.index < 1.6 && calm.kappa < 0.02, "{calm:?}");
        // Gamma(2) minute rates: κ = 0.5, an index near 1 + 0.5·60 = 31, bounded above.
        assert!(bursty.index > 15.0, "{bursty:?}");
        assert!(bursty.kappa >= 0.4, "{bursty:?}");
        // No history, or no errors: Poisson, with what rate there is.
        assert_eq!(Dispersion::estimate(&[]), Dispersion::POISSON);
        let none = Dispersion::estimate(&[t(100.0, 0.0); 10]);
        assert_eq!((none.kappa, none.rate, none.blocks), (0.0, 0.0, 10));
    }
}
