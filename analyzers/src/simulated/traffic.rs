//! Traffic models of the simulated world beyond Poisson arrivals: per-site error bursts with
//! a time scale. (The traffic profile and load curves are in [`super::scenario`]; the world
//! applies them second by second.)

use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Gamma};

/// Per-site error-burst multipliers: a Gamma(k, 1/k) draw (mean 1) per site, held for one
/// burst period, drawn independently per site from an RNG stream of its own. The stream
/// depends on the seed only, never on the traffic split, so every judge sees the same
/// bursts for a seed.
pub(super) struct Bursts {
    rng: StdRng,
    /// Per site: the period index of the current draw and the draw.
    current: [(u64, f64); 2],
}

impl Bursts {
    /// Bursts for a world seeded with `seed`.
    pub(super) fn new(seed: u64) -> Bursts {
        Bursts {
            rng: StdRng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15),
            current: [(u64::MAX, 1.0); 2],
        }
    }

    /// Both sites' multipliers for `second` (Unix): redrawn at the start of every period
    /// (aligned to multiples of `period` in Unix time; at least 1 s). `[1, 1]` when
    /// `shape` is not positive.
    pub(super) fn factors(&mut self, shape: f64, period: Duration, second: u64) -> [f64; 2] {
        if shape <= 0.0 || !shape.is_finite() {
            return [1.0, 1.0];
        }
        let index = second / period.as_secs().max(1);
        if self.current[0].0 != index {
            let gamma = Gamma::new(shape, 1.0 / shape).ok();
            for c in &mut self.current {
                let draw = gamma.map(|g| g.sample(&mut self.rng)).unwrap_or(1.0);
                *c = (index, draw);
            }
        }
        [self.current[0].1, self.current[1].1]
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use cutover_core::Site;
    use cutover_core::metrics::source::{CountQuery, Counted, Counts};

    use super::super::scenario::*;
    use super::super::world::SimWorld;

    const T0: u64 = 1_800_000_000;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn scenario(rps: f64, shape: f64, period: u64) -> Scenario {
        Scenario {
            name: "traffic".into(),
            total_rps: rps,
            primary: SiteProfile::healthy(0.01),
            dr: SiteProfile::healthy(0.01),
            changes: Vec::new(),
            convergence: Duration::ZERO,
            custom: BTreeMap::new(),
            seed: 5,
            scrape: ScrapeSpec::default(),
            error_burst_shape: shape,
            burst_period: Duration::from_secs(period),
            traffic_profile: Vec::new(),
            warmup: WARMUP,
        }
    }

    fn count(world: &SimWorld, site: Site, from: u64, to: u64) -> Counts {
        world
            .count(
                &CountQuery {
                    counted: Counted::Errors,
                    site,
                    from: at(from),
                },
                at(to),
            )
            .unwrap()
    }

    /// DR's errors over `minutes` aligned one-minute blocks (the world advanced as it goes),
    /// and their dispersion index (variance / mean).
    fn dispersion(sc: Scenario, minutes: u64) -> (f64, f64) {
        let world = SimWorld::new(sc, at(T0));
        let xs: Vec<f64> = (0..minutes)
            .map(|m| count(&world, Site::Dr, T0 + 60 * m, T0 + 60 * (m + 1)).bad)
            .collect();
        let n = xs.len() as f64;
        let mean = xs.iter().sum::<f64>() / n;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
        (mean, var / mean)
    }

    /// Minute-scale bursts: a minute's error count is Poisson with a Gamma(k, 1/k)-mixed
    /// mean `μ` (DR at 100 rps and 1 %: μ = 60), i.e. negative binomial with dispersion
    /// index `1 + μ/k`: 31 for k = 2. Without bursts it is Poisson's 1.
    #[test]
    fn minute_bursts_give_the_dispersion_the_model_says() {
        let (mean, d) = dispersion(scenario(100.0, 2.0, 60), 1200);
        assert!((mean - 60.0).abs() < 3.0, "mean {mean}");
        assert!((22.0..40.0).contains(&d), "dispersion index {d}, model 31");
        let (_, d) = dispersion(scenario(100.0, 0.0, 60), 1200);
        assert!((0.8..1.25).contains(&d), "Poisson: {d}");
        // Second-scale bursts (redrawn every second) average out over a minute: the index
        // is 1 + (μ/60)/k = 1.5 per the model for k = 2.
        let (_, d) = dispersion(scenario(100.0, 2.0, 1), 1200);
        assert!((1.2..1.85).contains(&d), "1 s bursts: {d}, model 1.5");
    }

    /// Bursts are independent per site: minute counts of the two sites are uncorrelated.
    #[test]
    fn bursts_are_independent_per_site() {
        let world = SimWorld::new(scenario(200.0, 1.0, 60), at(T0));
        world.set_primary_weight(at(T0), 50);
        let pairs: Vec<(f64, f64)> = (0..600)
            .map(|m| {
                let (a, b) = (T0 + 60 * m, T0 + 60 * (m + 1));
                (
                    count(&world, Site::Primary, a, b).bad,
                    count(&world, Site::Dr, a, b).bad,
                )
            })
            .collect();
        let n = pairs.len() as f64;
        let (mx, my) = (
            pairs.iter().map(|p| p.0).sum::<f64>() / n,
            pairs.iter().map(|p| p.1).sum::<f64>() / n,
        );
        let cov = pairs.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum::<f64>() / n;
        let sx = (pairs.iter().map(|p| (p.0 - mx).powi(2)).sum::<f64>() / n).sqrt();
        let sy = (pairs.iter().map(|p| (p.1 - my).powi(2)).sum::<f64>() / n).sqrt();
        let r = cov / (sx * sy);
        assert!(r.abs() < 0.12, "correlation {r}");
        assert!(sx * sx / mx > 20.0, "each site is bursty: {}", sx * sx / mx);
    }

    /// A change 720 s after the 10 % weight was written is in force from that second on.
    #[test]
    fn a_stage_relative_trigger_fires_at_the_right_second() {
        let mut sc = scenario(100.0, 0.0, 0);
        sc.changes = vec![Change {
            when: Trigger::AfterWeight {
                weight: 10,
                after: Duration::from_secs(720),
            },
            site: Some(Site::Primary),
            error_rate: Some(0.5),
            latency_factor: None,
            reachable: None,
            error_ramp: None,
            load_errors: None,
        }];
        let world = SimWorld::new(sc, at(T0));
        world.set_primary_weight(at(T0 + 100), 5);
        world.advance_to(at(T0 + 900));
        assert_eq!(world.onset(), None, "5 % is not 10 %");
        world.set_primary_weight(at(T0 + 1000), 10);
        world.advance_to(at(T0 + 1000 + 719));
        assert_eq!(world.onset(), None);
        world.advance_to(at(T0 + 1000 + 720));
        assert_eq!(world.onset(), Some(at(T0 + 1720)));
        // Written again later (a later stage), the trigger does not move.
        world.set_primary_weight(at(T0 + 1800), 25);
        assert_eq!(world.onset(), Some(at(T0 + 1720)));
        let after = count(&world, Site::Primary, T0 + 1725, T0 + 1800);
        assert!(after.bad > 0.3 * after.total, "{after:?}");
    }

    /// The total rate follows the profile (from the start, and cyclically back into the
    /// warmup), and a primary worse only at low total load is worse only then.
    #[test]
    fn traffic_profile_and_load_curves() {
        let mut sc = scenario(100.0, 0.0, 0);
        sc.traffic_profile = vec![
            TrafficPhase {
                duration: Duration::from_secs(600),
                factor: 1.6,
            },
            TrafficPhase {
                duration: Duration::from_secs(600),
                factor: 0.4,
            },
        ];
        assert_eq!(sc.traffic_factor(T0, T0), 1.6);
        assert_eq!(sc.traffic_factor(T0 + 600, T0), 0.4);
        assert_eq!(sc.traffic_factor(T0 - 1, T0), 0.4);
        assert_eq!(sc.traffic_factor(T0 - 1200, T0), 1.6);
        sc.changes = vec![Change {
            when: Trigger::PrimaryWeightAtLeast(0),
            site: Some(Site::Primary),
            error_rate: None,
            latency_factor: None,
            reachable: None,
            error_ramp: None,
            load_errors: Some(LoadCurve {
                of: LoadOf::Total,
                points: vec![(0.5, 5.0), (1.0, 1.0)],
            }),
        }];
        let world = SimWorld::new(sc, at(T0));
        assert_eq!(world.onset(), None, "no primary traffic in the warmup");
        world.set_primary_weight(at(T0), 50);
        let high = count(&world, Site::Primary, T0, T0 + 585);
        assert_eq!(world.onset(), None, "fine at high load");
        let low = count(&world, Site::Primary, T0 + 600, T0 + 1200);
        assert_eq!(world.onset(), Some(at(T0 + 600)), "the first low second");
        assert!((high.total / 585.0 - 80.0).abs() < 3.0, "{high:?}");
        assert!((low.total / 600.0 - 20.0).abs() < 2.0, "{low:?}");
        assert!(high.bad / high.total < 0.015, "{high:?}");
        assert!(low.bad / low.total > 0.04, "{low:?}");
        let curve = LoadCurve {
            of: LoadOf::Site,
            points: vec![(0.25, 1.0), (0.5, 3.0)],
        };
        assert_eq!(curve.factor(0.1), 1.0);
        assert_eq!(curve.factor(0.375), 2.0);
        assert_eq!(curve.factor(0.75), 3.0);
    }

    /// Counts over blocks of the warmup, from its very first second, add up to every
    /// request DR served in it: nothing is lost at the warmup's start.
    #[test]
    fn counts_over_the_warmup_are_exact() {
        let sc = scenario(100.0, 0.5, 30);
        let first = T0 - WARMUP.as_secs();
        let world = SimWorld::new(sc, at(T0));
        let mut total = 0.0;
        for b in 0..WARMUP.as_secs() / 300 {
            total += count(&world, Site::Dr, first + 300 * b, first + 300 * (b + 1)).total;
        }
        let served = world.measure_at(
            &cutover_core::metrics::source::Measure::RequestCount {
                site: Site::Dr,
                window: WARMUP,
            },
            at(T0),
        );
        assert_eq!(Some(total), served.unwrap());
        assert!(total > 0.9 * 100.0 * WARMUP.as_secs_f64(), "{total}");
    }
}
