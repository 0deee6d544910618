use super::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Binomial, Distribution, Gamma, Poisson};

fn t(total: f64, bad: f64) -> Tally {
    Tally { total, bad }
}

const DT: Duration = Duration::from_secs(15);

fn test(alpha: f64, beta: f64, absolute: f64) -> Test {
    Test {
        ratio: 1.5,
        absolute,
        alpha,
        beta,
    }
}

/// One interval of Poisson (untempered) counts, against the test's own bound.
fn see(e: &mut EProcess, test: &Test, p: Tally, d: Tally) {
    e.observe(test, None, p, d, &Dispersion::POISSON, DT);
}

#[test]
fn one_interval_matches_the_hand_computed_ratio() {
    // n_p = 100, n_d = 900, ρ₀ = 1.5: θ₀ = 150/1050 = 1/7. For c = 2, ρ₁ = 3:
    // θ₁ = 300/1200 = 1/4. With x_p = 5, x_d = 10:
    // ln L = 5 ln(7/4) + 10 ln((3/4)/(6/7)) = 2.798080 - 1.335314 = 1.462766.
    let l = ln_ratio(3.0, 1.5, t(100.0, 5.0), t(900.0, 10.0));
    assert!((l - 1.462_766).abs() < 1e-5, "{l}");
    let mut e = EProcess::default();
    see(
        &mut e,
        &test(0.01, 0.05, 0.0),
        t(100.0, 5.0),
        t(900.0, 10.0),
    );
    assert_eq!(e.harm[2], l, "the grid's c = 2 entry, untempered");
    // The mixture is the mean of the grid's ratios.
    let mean = e.harm.iter().map(|x| x.exp()).sum::<f64>() / GRID.len() as f64;
    assert!((e.ln_relative_harm() - mean.ln()).abs() < 1e-12);
    // The change detector's first change starts with the stage: its weight times the same
    // ratio.
    let w = ln_change_weight(1, 0);
    assert!((e.detect[2] - (w + l)).abs() < 1e-9);
}

#[test]
fn intervals_without_information_change_no_evidence() {
    let mut e = EProcess::default();
    let tt = test(0.01, 0.05, 0.0);
    see(&mut e, &tt, t(100.0, 0.0), t(900.0, 0.0)); // nobody failed
    see(&mut e, &tt, t(0.0, 0.0), t(900.0, 9.0)); // the primary served nothing
    assert!(e.harm.iter().chain(&e.ok).all(|x| *x == 0.0));
    assert_eq!(e.ln_relative_harm(), 0.0);
    assert_eq!(e.intervals, 2);
    assert_eq!(e.dr, t(1800.0, 9.0));
}

#[test]
fn absolute_mixtures_match_their_hand_computed_values() {
    // Harm with S = 10 of 20 against δ = 5 %: the mean over the grid r₁ = δ·c of
    // (r₁/δ)^10 ((1-r₁)/(1-δ))^10.
    let tt = test(0.01, 0.05, 0.05);
    let mut e = EProcess::default();
    see(&mut e, &tt, t(20.0, 10.0), t(0.0, 0.0));
    let want = GRID
        .iter()
        .map(|c| c.powi(10) * ((1.0 - 0.05 * c) / 0.95).powi(10))
        .sum::<f64>()
        / GRID.len() as f64;
    let got = e.ln_absolute_harm(0.05).exp();
    assert!((got - want).abs() / want < 1e-9, "{got} vs {want}");
    // No worse with S = 0 of 100 against δ = 5 %: the grid r₁ = δ/c of ((1-r₁)/(1-δ))^100.
    let mut e = EProcess::default();
    see(&mut e, &tt, t(100.0, 0.0), t(0.0, 0.0));
    let want = GRID
        .iter()
        .map(|c| ((1.0 - 0.05 / c) / 0.95).powi(100))
        .sum::<f64>()
        / GRID.len() as f64;
    let got = e.ln_absolute_ok().exp();
    assert!((got - want).abs() / want < 1e-9, "{got} vs {want}");
    // Grid points at or above a rate of 1 are dropped: δ = 15 % keeps 1.2 .. 5.
    let tt = test(0.01, 0.05, 0.15);
    let mut e = EProcess::default();
    see(&mut e, &tt, t(5.0, 3.0), t(0.0, 0.0));
    let want = GRID[..5]
        .iter()
        .map(|c| c.powi(3) * ((1.0 - 0.15 * c) / 0.85).powi(2))
        .sum::<f64>()
        / 5.0;
    let got = e.ln_absolute_harm(0.15).exp();
    assert!((got - want).abs() / want < 1e-9, "{got} vs {want}");
}

#[test]
fn a_clear_regression_is_harm_and_a_healthy_primary_is_certified() {
    let tt = test(0.002, 0.002, 0.0);
    let mut bad = EProcess::default();
    let mut good = EProcess::default();
    for _ in 0..20 {
        see(&mut bad, &tt, t(150.0, 8.0), t(1350.0, 14.0)); // 5.3 % vs 1 %
        see(&mut good, &tt, t(1500.0, 15.0), t(13500.0, 135.0)); // 1 % vs 1 %
    }
    assert_eq!(bad.judge(tt, None).conclusion, Conclusion::Harm);
    let j = good.judge(tt, None);
    assert_eq!(j.conclusion, Conclusion::NoWorse, "{j:?}");
    assert!(j.harm < 0.1);
}

#[test]
fn certification_sticks_within_the_stage_but_harm_still_wins() {
    let tt = test(0.01, 0.01, 0.0);
    let mut e = EProcess::default();
    for _ in 0..20 {
        see(&mut e, &tt, t(1500.0, 15.0), t(13500.0, 135.0));
    }
    assert_eq!(e.judge(tt, None).conclusion, Conclusion::NoWorse);
    // Later the primary breaks: harm overrides the certificate.
    for _ in 0..10 {
        see(&mut e, &tt, t(1500.0, 300.0), t(13500.0, 135.0));
    }
    assert_eq!(e.judge(tt, None).conclusion, Conclusion::Harm);
    // A new stage starts from nothing.
    let mut fresh = EProcess::default();
    assert_eq!(fresh.judge(tt, None).conclusion, Conclusion::Undecided);
}

#[test]
fn absolute_tolerance_certifies_a_service_without_errors() {
    // No errors anywhere: the relative test has nothing to go on.
    let rel_only = test(0.002, 0.002, 0.0);
    let with_abs = test(0.002, 0.002, 0.005);
    let (mut a, mut b) = (EProcess::default(), EProcess::default());
    for _ in 0..10 {
        see(&mut a, &rel_only, t(1000.0, 0.0), t(9000.0, 0.0));
        see(&mut b, &with_abs, t(1000.0, 0.0), t(9000.0, 0.0));
    }
    assert_eq!(a.judge(rel_only, None).conclusion, Conclusion::Undecided);
    assert_eq!(b.judge(with_abs, None).conclusion, Conclusion::NoWorse);
}

#[test]
fn the_full_stage_uses_drs_earlier_rate() {
    let tt = test(0.002, 0.002, 0.0);
    let mut e = EProcess::default();
    for _ in 0..10 {
        // 1 %, DR serves nothing; against DR's earlier 1 %: bound 1.5 %.
        e.observe(
            &tt,
            Some(0.01),
            t(6000.0, 60.0),
            t(0.0, 0.0),
            &Dispersion::POISSON,
            DT,
        );
    }
    assert_eq!(
        e.clone().judge(tt, Some(0.01)).conclusion,
        Conclusion::NoWorse
    );
    // Without a baseline or an absolute tolerance there is nothing to compare with.
    assert_eq!(e.judge(tt, None).conclusion, Conclusion::Undecided);
}

#[test]
fn the_change_weights_never_sum_past_the_detectors_share() {
    for n in [1, 4, 60, 240] {
        let sum: f64 = (1..=n * 64).map(|t| ln_change_weight(t, n).exp()).sum();
        assert!(sum <= DETECTOR_SHARE + 1e-12, "n {n}: {sum}");
        assert!(sum >= DETECTOR_SHARE * 0.9, "n {n}: {sum}");
    }
}

/// The absolute harm test at its boundary (the primary exactly at `δ`, nothing to compare
/// with): false harm within alpha over a long stage.
#[test]
fn absolute_harm_at_the_boundary_stays_within_alpha() {
    let alpha: f64 = 0.05;
    let tt = test(alpha, 0.05, 0.005);
    let runs = 2000;
    let mut harms = 0;
    for seed in 0..runs {
        let mut rng = StdRng::seed_from_u64(50_000 + seed);
        let mut e = EProcess {
            looks: 120,
            ..EProcess::default()
        };
        for _ in 0..120 {
            let x = Binomial::new(1500, 0.005).unwrap().sample(&mut rng) as f64;
            see(&mut e, &tt, t(1500.0, x), t(0.0, 0.0));
            if e.judge(tt, None).conclusion == Conclusion::Harm {
                harms += 1;
                break;
            }
        }
    }
    let rate = harms as f64 / runs as f64;
    assert!(rate <= alpha, "false harm rate {rate} > alpha {alpha}");
}

/// A primary at 0.5 % against a DR at 0 % with `δ` = 0.1 %, at 10 % of 100 rps (150
/// requests per 15 s interval): the absolute test crosses in a median of about 13 intervals.
#[test]
fn a_regression_over_a_zero_error_baseline_is_seen_in_minutes() {
    let alpha: f64 = 0.01 / 5.0;
    let tt = test(alpha, 0.05, 0.001);
    let mut took = Vec::new();
    for seed in 0..400 {
        let mut rng = StdRng::seed_from_u64(70_000 + seed);
        let mut e = EProcess {
            looks: 60,
            ..EProcess::default()
        };
        let at = (1..=80).find(|_| {
            let x = Binomial::new(150, 0.005).unwrap().sample(&mut rng) as f64;
            see(&mut e, &tt, t(150.0, x), t(0.0, 0.0));
            e.judge(tt, None).conclusion == Conclusion::Harm
        });
        took.push(at.unwrap_or(u32::MAX));
    }
    took.sort_unstable();
    let median = took[took.len() / 2];
    let p95 = took[took.len() * 95 / 100];
    assert!(median <= 16, "median {median} intervals of 15 s");
    assert!(p95 <= 36, "95th percentile {p95} intervals of 15 s");
}

/// One stage of 60 intervals at 10 % of 100 rps, both sites at 1 % errors (or the primary
/// at `primary_rate` from interval `onset`), each site's rate multiplied per minute by its
/// own Gamma(`shape`) draw (0: Poisson). Returns the interval harm was concluded at.
fn stage(
    seed: u64,
    shape: f64,
    disp: &Dispersion,
    primary: (f64, usize),
    tt: Test,
) -> Option<usize> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut e = EProcess {
        looks: 60,
        ..EProcess::default()
    };
    let (mut mp, mut md) = (1.0, 1.0);
    for k in 0..60 {
        if shape > 0.0 && k % 4 == 0 {
            let g = Gamma::new(shape, 1.0 / shape).unwrap();
            (mp, md) = (g.sample(&mut rng), g.sample(&mut rng));
        }
        let rp = if k >= primary.1 { primary.0 } else { 0.01 };
        let xp = Poisson::new(150.0 * rp * mp).unwrap().sample(&mut rng);
        let xd = Poisson::new(1350.0 * 0.01 * md).unwrap().sample(&mut rng);
        e.observe(&tt, None, t(150.0, xp), t(1350.0, xd), disp, DT);
        if e.judge(tt, None).conclusion == Conclusion::Harm {
            return Some(k);
        }
    }
    None
}

/// The DR history a calibration sees: `blocks` minutes of DR at 100 rps and 1 % errors with
/// the same bursts.
fn history(seed: u64, shape: f64, blocks: usize) -> Dispersion {
    let mut rng = StdRng::seed_from_u64(seed);
    let h: Vec<Tally> = (0..blocks)
        .map(|_| {
            let m = if shape > 0.0 {
                Gamma::new(shape, 1.0 / shape).unwrap().sample(&mut rng)
            } else {
                1.0
            };
            t(6000.0, Poisson::new(60.0 * m).unwrap().sample(&mut rng))
        })
        .collect();
    Dispersion::estimate(&h)
}

#[test]
fn aa_false_rollback_rate_stays_within_alpha() {
    let alpha = 0.05;
    let tt = test(alpha, alpha, 0.0);
    let runs = 2000;
    let harms = (0..runs)
        .filter(|s| stage(*s, 0.0, &Dispersion::POISSON, (0.01, 0), tt).is_some())
        .count();
    let rate = harms as f64 / runs as f64;
    assert!(rate <= alpha, "A/A false harm rate {rate} > alpha {alpha}");
    // And at the boundary itself (ρ = ρ₀ exactly), where both nulls hold: false harm
    // within alpha, false certification within beta.
    let (mut harms, mut certified) = (0, 0);
    for seed in 0..runs {
        let mut rng = StdRng::seed_from_u64(10_000 + seed);
        let mut e = EProcess {
            looks: 60,
            ..EProcess::default()
        };
        for _ in 0..60 {
            let xp = Poisson::new(150.0 * 0.015).unwrap().sample(&mut rng);
            let xd = Poisson::new(1350.0 * 0.01).unwrap().sample(&mut rng);
            see(&mut e, &tt, t(150.0, xp), t(1350.0, xd));
            match e.judge(tt, None).conclusion {
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
        rate <= tt.beta,
        "boundary false certification {rate} > beta"
    );
}

/// Minute-scale bursts, independent at each site, same long-run rate: untempered, false harm
/// far above alpha; tempered with the dispersion measured on an hour of DR's history, within
/// alpha.
#[test]
fn aa_under_minute_bursts_is_within_alpha_only_when_tempered() {
    let alpha = 0.05;
    let tt = test(alpha, alpha, 0.0);
    let runs = 1000u64;
    let rate = |temper: bool| {
        (0..runs)
            .filter(|s| {
                let d = if temper {
                    history(900_000 + s, 2.0, 60)
                } else {
                    Dispersion::POISSON
                };
                stage(20_000 + s, 2.0, &d, (0.01, 0), tt).is_some()
            })
            .count() as f64
            / runs as f64
    };
    let raw = rate(false);
    let tempered = rate(true);
    eprintln!("minute bursts, Gamma(2): false harm untempered {raw}, tempered {tempered}");
    assert!(raw > 2.0 * alpha, "untempered false harm {raw}");
    assert!(
        tempered <= alpha,
        "tempered false harm {tempered} > alpha {alpha}"
    );
}

/// A regression that starts after 12 minutes of healthy data (interval 48 of 60): the change
/// detector sees it within a few intervals, where the stage's e-process alone would first
/// have to undo 12 minutes of evidence against harm.
#[test]
fn a_late_regression_is_seen_within_minutes_of_its_onset() {
    let tt = test(0.001, 0.05, 0.0);
    let mut delays: Vec<usize> = (0..400)
        .map(|s| {
            stage(40_000 + s, 0.0, &Dispersion::POISSON, (0.05, 48), tt)
                .map_or(usize::MAX, |k| k.saturating_sub(48) + 1)
        })
        .collect();
    delays.sort_unstable();
    let median = delays[delays.len() / 2];
    let p90 = delays[delays.len() * 9 / 10];
    eprintln!("late onset: median {median}, p90 {p90} intervals");
    assert!(median <= 6, "median {median} intervals after the onset");
    assert!(p90 <= 10, "90th percentile {p90}");
}

/// At a stage where DR serves nothing, a DR estimate from few earlier requests (2 errors of
/// 500: 0.4 %) is no reason to roll back a primary at DR's true 1 %: with DR's pooled counts
/// as the reference, harm is judged above the estimate's upper confidence bound.
#[test]
fn the_full_stage_takes_the_uncertainty_of_drs_pooled_counts() {
    let tt = test(0.001, 0.05, 0.0);
    let feed = |reference: Option<Tally>| {
        let mut rng = StdRng::seed_from_u64(5);
        let mut e = EProcess {
            looks: 60,
            reference,
            ..EProcess::default()
        };
        for _ in 0..40 {
            let x = Binomial::new(1500, 0.01).unwrap().sample(&mut rng) as f64;
            e.observe(
                &tt,
                Some(0.004),
                t(1500.0, x),
                t(0.0, 0.0),
                &Dispersion::POISSON,
                DT,
            );
        }
        e.judge(tt, Some(0.004)).conclusion
    };
    assert_eq!(
        feed(None),
        Conclusion::Harm,
        "the point estimate, taken as exact"
    );
    assert_ne!(feed(Some(t(500.0, 2.0))), Conclusion::Harm);
    // The bounds: an upper one well above the estimate, a lower one below it.
    let r = t(500.0, 2.0);
    assert!(rate_bound(r, 0.999, true) > 0.015);
    assert!(rate_bound(r, 0.95, false) < 0.004);
    assert_eq!(rate_bound(t(500.0, 0.0), 0.95, false), 0.0);
}

#[test]
fn certification_budget_goes_to_the_test_that_can_certify() {
    let tt = test(0.01, 0.05, 0.002);
    // DR at 1 % over its history: a primary as good as DR is above δ = 0.2 %.
    assert_eq!(ok_share(&tt, Some(0.01)), 0.9);
    // DR without errors: only the absolute test can certify.
    assert_eq!(ok_share(&tt, Some(0.0)), 0.1);
    // In between, or without history: half each; without δ, all of it is the relative one's.
    assert_eq!(ok_share(&tt, Some(0.001)), 0.5);
    assert_eq!(ok_share(&tt, None), 0.5);
    assert_eq!(ok_share(&test(0.01, 0.05, 0.0), Some(0.01)), 1.0);
    // Fixed at the stage's first interval, from the history alone.
    let mut e = EProcess::default();
    let disp = Dispersion {
        rate: 0.01,
        blocks: 60,
        ..Dispersion::POISSON
    };
    e.observe(&tt, None, t(150.0, 1.0), t(1350.0, 14.0), &disp, DT);
    assert_eq!(e.ok_share, Some(0.9));
    let later = Dispersion { rate: 0.0, ..disp };
    e.observe(&tt, None, t(150.0, 1.0), t(1350.0, 14.0), &later, DT);
    assert_eq!(e.ok_share, Some(0.9));
}

/// A primary at the relative boundary (ρ = ρ₀, above δ) is not acceptable: with the
/// certification budget weighted towards the relative test, false certification stays
/// within β over many seeds.
#[test]
fn weighted_certification_at_the_boundary_stays_within_beta() {
    let tt = test(0.01, 0.05, 0.002);
    let disp = Dispersion {
        rate: 0.01,
        blocks: 120,
        ..Dispersion::POISSON
    };
    let runs: u32 = 3000;
    let mut certified: u32 = 0;
    for seed in 0..runs {
        let mut rng = StdRng::seed_from_u64(20_000 + u64::from(seed));
        let mut e = EProcess {
            looks: 60,
            ..EProcess::default()
        };
        for _ in 0..240 {
            let xp = Poisson::new(150.0 * 0.015).unwrap().sample(&mut rng);
            let xd = Poisson::new(1350.0 * 0.01).unwrap().sample(&mut rng);
            e.observe(&tt, None, t(150.0, xp), t(1350.0, xd), &disp, DT);
            if e.judge(tt, None).conclusion == Conclusion::NoWorse {
                certified += 1;
                break;
            }
        }
    }
    let rate = f64::from(certified) / f64::from(runs);
    assert!(
        rate <= tt.beta,
        "boundary false certification {rate} > beta"
    );
}

/// A final holdout's stage: 98 rps at the primary, DR's 2 rps holdout, DR's earlier stages
/// pooled (`reference`). Harm is judged against the concurrent holdout only, so a rise
/// common to both sites is not harm; no worse is certified against the pooled stages too.
#[test]
fn a_holdout_stage_ignores_a_common_rise_and_certifies_against_the_pooled_stages() {
    let tt = test(0.001, 0.05, 0.002);
    let pooled = t(200_000.0, 2000.0); // DR at 1 % over the earlier stages
    let feed = |seed: u64, rate: f64, reference: Option<Tally>| {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut e = EProcess {
            looks: 60,
            reference,
            ..EProcess::default()
        };
        let disp = Dispersion {
            rate: 0.01,
            blocks: 120,
            ..Dispersion::POISSON
        };
        for k in 0..60 {
            let xp = Binomial::new(1470, rate).unwrap().sample(&mut rng) as f64;
            let xd = Binomial::new(30, rate).unwrap().sample(&mut rng) as f64;
            e.observe(&tt, None, t(1470.0, xp), t(30.0, xd), &disp, DT);
            match e.judge(tt, None).conclusion {
                Conclusion::Undecided => {}
                c => return (c, k),
            }
        }
        (Conclusion::Undecided, 60)
    };
    // Both sites at 3 %, three times DR's pooled rate: never harm (certified only when the
    // small concurrent holdout shows it, which it may: the primary is as good as DR now).
    for seed in 0..50 {
        assert_ne!(
            feed(seed, 0.03, Some(pooled)).0,
            Conclusion::Harm,
            "seed {seed}"
        );
    }
    // Both at 1 %: certified through the pooled stages in most seeds; without them, the
    // holdout alone rarely certifies in a stage.
    let with: usize = (0..50)
        .filter(|s| feed(*s, 0.01, Some(pooled)).0 == Conclusion::NoWorse)
        .count();
    let without: usize = (0..50)
        .filter(|s| feed(*s, 0.01, None).0 == Conclusion::NoWorse)
        .count();
    assert!(
        with >= 45 && without <= 15,
        "certified {with} of 50 with the pooled stages, {without} on the holdout alone"
    );
    // The budget's split: most of it to the pooled comparison.
    let mut e = EProcess {
        reference: Some(pooled),
        ..EProcess::default()
    };
    e.observe(
        &tt,
        None,
        t(1470.0, 15.0),
        t(30.0, 0.0),
        &Dispersion::POISSON,
        DT,
    );
    assert_eq!(e.ok_share, Some(SCARCE_DR_OK_SHARE));
    // Harm at the holdout: both nulls, the absolute one at DR's pooled rate's upper bound
    // (never below δ), so DR's few concurrent requests never leave δ alone to judge by.
    assert!(e.bounds(&tt, None).0 > tt.ratio * 0.01);
    // With δ = 0 and no bad request in the reference, only the relative test can certify:
    // all of β is its.
    let mut none = EProcess {
        reference: Some(t(200_000.0, 0.0)),
        ..EProcess::default()
    };
    let tt0 = test(0.001, 0.05, 0.0);
    none.observe(
        &tt0,
        None,
        t(1470.0, 0.0),
        t(30.0, 0.0),
        &Dispersion::POISSON,
        DT,
    );
    assert_eq!(none.ok_share, Some(1.0));
    let mut full = EProcess::default();
    full.observe(
        &tt,
        Some(0.01),
        t(1500.0, 15.0),
        t(0.0, 0.0),
        &Dispersion::POISSON,
        DT,
    );
    assert_eq!(full.ok_share, Some(SCARCE_DR_OK_SHARE));
}

/// A probe: judged against DR's concurrent traffic only, its no-worse evidence kept aside
/// and put back, the one-sample harm test (which only sets probes off) restarted and, DR
/// having clearly risen at the probe, compared with DR's rate there too.
#[test]
fn a_probe_keeps_certification_aside_and_restarts_only_the_one_sample_harm_test() {
    let tt = test(0.001, 0.05, 0.002);
    let mut e = EProcess {
        reference: Some(t(100_000.0, 1000.0)),
        ..EProcess::default()
    };
    let full = |e: &mut EProcess| {
        e.observe(
            &tt,
            Some(0.01),
            t(1500.0, 45.0),
            t(0.0, 0.0),
            &Dispersion::POISSON,
            DT,
        )
    };
    // At 100 %: the primary at 3 % against DR's earlier 1 % crosses the one-sample boundary.
    for _ in 0..8 {
        full(&mut e);
    }
    assert_eq!(e.judge(tt, Some(0.01)).conclusion, Conclusion::Harm);
    let (ok, abs_ok, harm_bound) = (e.ok.clone(), e.abs_ok.clone(), e.bounds(&tt, Some(0.01)));
    e.probe_started();
    // An interval of the probe without DR traffic is no evidence: never the one-sample test.
    e.observe(
        &tt,
        None,
        t(750.0, 22.0),
        t(0.0, 0.0),
        &Dispersion::POISSON,
        DT,
    );
    assert_ne!(e.judge(tt, None).conclusion, Conclusion::Harm);
    // Both sites at 3 % at 50/50.
    for _ in 0..8 {
        e.observe(
            &tt,
            None,
            t(750.0, 22.0),
            t(750.0, 23.0),
            &Dispersion::POISSON,
            DT,
        );
    }
    assert_ne!(e.judge(tt, None).conclusion, Conclusion::Harm);
    assert_eq!(
        e.probed,
        Some(t(6000.0, 184.0)),
        "DR's counts at the probe only"
    );
    let relative = e.harm.clone();
    e.probe_cleared();
    assert_eq!(
        (&e.ok, &e.abs_ok),
        (&ok, &abs_ok),
        "no-worse as before the probe"
    );
    assert!(!e.certified);
    assert!(e.abs_harm.iter().all(|x| *x == 0.0), "{:?}", e.abs_harm);
    assert!(e.abs_detect.iter().all(|x| *x == LN_ZERO));
    assert_eq!(e.harm, relative, "the deciding test goes on");
    // Harm is now only above DR's rate at the probe (3 %, its upper bound, x1.5);
    // certification still compares with DR's earlier stages.
    let raised = e.bounds(&tt, Some(0.01));
    assert!(
        raised.0 > 0.045 && raised.0 > harm_bound.0,
        "{raised:?} {harm_bound:?}"
    );
    assert_eq!(raised.1, harm_bound.1);
    for _ in 0..40 {
        full(&mut e);
    }
    assert_ne!(
        e.judge(tt, Some(0.01)).conclusion,
        Conclusion::Harm,
        "the same common rise sets off no second probe"
    );
    // DR at its earlier rate at the probe: nothing is raised (a regression the probe was
    // too short to see sets off the next one).
    let mut quiet = EProcess {
        reference: Some(t(100_000.0, 1000.0)),
        ..EProcess::default()
    };
    quiet.probe_started();
    quiet.observe(
        &tt,
        None,
        t(750.0, 40.0),
        t(750.0, 8.0),
        &Dispersion::POISSON,
        DT,
    );
    quiet.probe_cleared();
    let before = EProcess {
        reference: Some(t(100_000.0, 1000.0)),
        ..EProcess::default()
    };
    assert_eq!(
        quiet.bounds(&tt, Some(0.01)),
        before.bounds(&tt, Some(0.01))
    );
}
