//! How long a sequential gate takes to certify a healthy primary at each stage, predicted
//! by simulating its e-process (the code the run judges with) on Poisson traffic: for
//! `cutover plan`, so that `max_duration` and `bake` can be set from the service's own
//! traffic rather than found out during the failback.
//!
//! The simulated primary is exactly as good as DR (the usual truth of a repaired primary):
//! both sites serve `bad_rate` bad requests, at the stage's split of `rps`. Counts are
//! Poisson, so bursty traffic (which the gates temper for) certifies later than predicted.

use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Binomial, Distribution, Poisson};

use cutover_core::judge::eprocess::{
    CUMULATIVE_SCARCE_DR_OK_SHARE, Conclusion, Dispersion, EProcess, Tally, Test,
};
use cutover_core::policy::model::Certify;
use cutover_core::policy::plan::Stage;

/// The traffic a prediction assumes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Traffic {
    /// Requests per second over both sites.
    pub rps: f64,
    /// Both sites' share of bad requests (errors, or slower than the gate's edge).
    pub bad_rate: f64,
}

/// The predicted certification of one gate at one stage.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    /// Primary requests per second at the stage.
    pub primary_rps: f64,
    /// Median time from the stage's first analysis to certification, over the simulated
    /// stages that certified within `max_duration`.
    pub median: Option<Duration>,
    /// 90th percentile of the same.
    pub p90: Option<Duration>,
    /// Share of simulated stages certified within `max_duration`.
    pub certified: f64,
    /// Share falsely rolled back (should be near 0: the primary is as good as DR).
    pub harm: f64,
}

/// Where a simulated stage sits in its plan.
#[derive(Debug, Clone, Copy, Default)]
pub struct Context<'a> {
    /// The stage before it and how the plan certifies: with `certify: cumulative` that
    /// stage's evidence is carried.
    pub carried: Option<(&'a Stage, Certify)>,
    /// Whether it is a final holdout's stage: "no worse" may then also be shown against
    /// DR's pooled earlier stages.
    pub holdout: bool,
    /// Whether the gate assumes Poisson counts (`dispersion: poisson`): it has no
    /// calibration, so no DR history to split the certification budget by.
    pub poisson: bool,
}

/// Simulates `runs` stages of a gate's `test` at `stage` (judged against DR's concurrent
/// traffic, or at 100 % against DR's rate), at most `min_requests` primary requests before a
/// certificate counts. With `context.carried` (certify: cumulative), each stage starts with
/// the "no worse" evidence of a previous simulated stage at that stage's weight.
pub fn certify_times(
    test: Test,
    stage: &Stage,
    min_requests: u64,
    traffic: Traffic,
    context: Context<'_>,
    runs: u32,
    seed: u64,
) -> Prediction {
    let w = f64::from(stage.weight.get()) / 100.0;
    let dt = stage.interval.as_secs_f64().max(1.0);
    let looks = (stage.max_duration.as_secs_f64() / dt).ceil().max(1.0) as u32;
    let mut times = Vec::new();
    let mut harms = 0u32;
    for r in 0..runs {
        let mut rng = StdRng::seed_from_u64(seed.wrapping_add(u64::from(r)));
        let mut ep = EProcess {
            looks,
            // Where DR serves nothing, or only a final holdout: DR's earlier stages pooled,
            // taken as ten minutes of DR at the whole rate.
            reference: (w >= 1.0 || context.holdout).then(|| {
                let total = traffic.rps * 600.0;
                Tally {
                    total,
                    bad: total * traffic.bad_rate,
                }
            }),
            ..EProcess::default()
        };
        if let Some((before, Certify::Cumulative)) = context.carried {
            let looks = before_looks(before);
            let prev = simulate(&mut rng, test, before, traffic, looks, context.poisson);
            ep.ok = prev.ok;
            ep.ok_share = if w < 1.0 && !context.holdout {
                prev.ok_share
            } else {
                Some(CUMULATIVE_SCARCE_DR_OK_SHARE)
            };
            // As the run does: the absolute evidence carries only where it is tested against
            // the same rate (`absolute_tolerance`).
            if ep.tests_absolute_against_tolerance(&test) {
                ep.abs_ok = prev.abs_ok;
            }
        }
        for k in 1..=looks {
            let counts = draw(&mut rng, traffic, w, dt);
            let baseline = (w >= 1.0).then_some(traffic.bad_rate);
            observe(
                &mut ep,
                test,
                traffic,
                context,
                baseline,
                counts,
                stage.interval,
            );
            match ep.judge(test, baseline).conclusion {
                Conclusion::Harm => {
                    harms += 1;
                    break;
                }
                Conclusion::NoWorse if ep.primary.total >= min_requests as f64 => {
                    times.push(Duration::from_secs_f64(f64::from(k) * dt));
                    break;
                }
                _ => {}
            }
        }
    }
    times.sort();
    let q = |f: f64| {
        (!times.is_empty())
            .then(|| times[((times.len() as f64 * f).ceil() as usize).clamp(1, times.len()) - 1])
    };
    Prediction {
        primary_rps: traffic.rps * w,
        median: q(0.5),
        p90: q(0.9),
        certified: times.len() as f64 / f64::from(runs.max(1)),
        harm: f64::from(harms) / f64::from(runs.max(1)),
    }
}

fn before_looks(stage: &Stage) -> u32 {
    (stage.max_duration.as_secs_f64() / stage.interval.as_secs_f64().max(1.0)).ceil() as u32
}

/// One whole simulated stage (its evidence, for carrying over).
fn simulate(
    rng: &mut StdRng,
    test: Test,
    stage: &Stage,
    traffic: Traffic,
    looks: u32,
    poisson: bool,
) -> EProcess {
    let w = f64::from(stage.weight.get()) / 100.0;
    let dt = stage.interval.as_secs_f64().max(1.0);
    let mut ep = EProcess {
        looks,
        ..EProcess::default()
    };
    // A stage the run leaves once certified: carry what it had then, at most its
    // max_duration.
    for _ in 0..looks {
        let counts = draw(rng, traffic, w, dt);
        let context = Context {
            poisson,
            ..Context::default()
        };
        observe(
            &mut ep,
            test,
            traffic,
            context,
            None,
            counts,
            stage.interval,
        );
        if ep.judge(test, None).conclusion != Conclusion::Undecided {
            break;
        }
    }
    ep
}

/// One interval, untempered, with DR's history taken to be at the traffic's bad rate (which
/// sets the certification budget's split as a live run's calibration would).
fn observe(
    ep: &mut EProcess,
    test: Test,
    traffic: Traffic,
    context: Context<'_>,
    baseline: Option<f64>,
    (p, d): (Tally, Tally),
    dt: Duration,
) {
    let history = Dispersion {
        rate: traffic.bad_rate,
        blocks: u32::from(!context.poisson),
        ..Dispersion::POISSON
    };
    ep.observe(&test, baseline, p, d, &history, dt);
}

/// One interval's counts at the primary (share `w`) and DR.
fn draw(rng: &mut StdRng, traffic: Traffic, w: f64, dt: f64) -> (Tally, Tally) {
    let mut site = |share: f64| {
        let lambda = traffic.rps * share * dt;
        if lambda <= 0.0 {
            return Tally::default();
        }
        let n = Poisson::new(lambda).map_or(0.0, |p| p.sample(rng));
        let bad = Binomial::new(n as u64, traffic.bad_rate.clamp(0.0, 1.0))
            .map_or(0, |b| b.sample(rng)) as f64;
        Tally { total: n, bad }
    };
    let p = site(w);
    let d = site(1.0 - w);
    (p, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cutover_core::StageWeight;

    fn stage(weight: u32, max_minutes: u64) -> Stage {
        Stage {
            weight: StageWeight::new(weight).unwrap(),
            bake: Duration::from_secs(60),
            interval: Duration::from_secs(15),
            max_duration: Duration::from_secs(60 * max_minutes),
            judged: true,
        }
    }

    fn test() -> Test {
        Test {
            ratio: 1.5,
            absolute: 0.0,
            alpha: 0.001,
            beta: 0.05,
        }
    }

    #[test]
    fn busier_services_certify_sooner_and_a_short_max_duration_holds() {
        let t = |rps| Traffic {
            rps,
            bad_rate: 0.01,
        };
        let slow = certify_times(
            test(),
            &stage(10, 15),
            20,
            t(100.0),
            Context::default(),
            200,
            1,
        );
        let fast = certify_times(
            test(),
            &stage(10, 15),
            20,
            t(1000.0),
            Context::default(),
            200,
            1,
        );
        assert!(fast.median < slow.median, "{fast:?} vs {slow:?}");
        assert!(fast.certified > 0.95, "{fast:?}");
        assert_eq!(slow.primary_rps, 10.0);
        let short = certify_times(
            test(),
            &stage(10, 2),
            20,
            t(100.0),
            Context::default(),
            200,
            1,
        );
        assert!(short.certified < slow.certified, "{short:?} vs {slow:?}");
        assert!(slow.harm < 0.02, "{slow:?}");
    }

    #[test]
    fn carried_evidence_certifies_the_next_stage_sooner() {
        let t = Traffic {
            rps: 100.0,
            bad_rate: 0.01,
        };
        let first = stage(10, 15);
        let alone = certify_times(test(), &stage(25, 15), 20, t, Context::default(), 200, 3);
        let carried = certify_times(
            test(),
            &stage(25, 15),
            20,
            t,
            Context {
                carried: Some((&first, Certify::Cumulative)),
                ..Context::default()
            },
            200,
            3,
        );
        assert!(carried.median < alone.median, "{carried:?} vs {alone:?}");
    }

    #[test]
    fn a_final_holdout_certifies_against_drs_pooled_stages() {
        let t = Traffic {
            rps: 100.0,
            bad_rate: 0.01,
        };
        let at_98 = stage(98, 15);
        let alone = certify_times(test(), &at_98, 20, t, Context::default(), 200, 5);
        let holdout = Context {
            holdout: true,
            ..Context::default()
        };
        let pooled = certify_times(test(), &at_98, 20, t, holdout, 200, 5);
        assert!(
            pooled.certified > 0.9 && pooled.certified > alone.certified + 0.2,
            "{pooled:?} vs {alone:?}"
        );
    }
}
