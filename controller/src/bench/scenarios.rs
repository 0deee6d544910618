//! The benchmark's simulated worlds: healthy, boundary, regressions, traffic levels and the
//! things that fool judges (a spike on both sites, bursty errors, counter resets), and issue
//! 12's families: per-site bursts at three time scales and Gamma-mixed minute rates, onsets in
//! the middle and at the end of a stage, the last stage, a zero-error DR, traffic that varies
//! over time and a load-dependent regression.

use std::collections::BTreeMap;
use std::time::Duration;

use cutover_analyzers::simulated::{
    Change, LoadCurve, LoadOf, Scenario, ScrapeSpec, SiteProfile, TrafficPhase, Trigger, WARMUP,
};
use cutover_core::Site;
use cutover_core::metrics::source::Counted;

/// The bucket edge the latency gates count above: near DR's p99 (80 ms median, σ 0.5).
pub const SLOW_EDGE: f64 = 0.25;

/// Every judge's `max_duration` per stage, unless a scenario's [`StageTiming`] overrides it.
pub const MAX_DURATION: Duration = Duration::from_secs(15 * 60);

/// A scenario's own bake and `max_duration` for the stage at one weight, which every judge's
/// policy honours (e.g. a stage that must last past a mid-stage onset even when certified
/// healthy in a few minutes).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StageTiming {
    /// The stage's weight, percent.
    pub weight: u8,
    /// Its bake: the least time it lasts.
    pub bake: Duration,
    /// Its `max_duration`.
    pub max_duration: Duration,
}

/// One benchmark scenario.
#[derive(Debug, Clone)]
pub struct BenchScenario {
    /// Its name, as given to `--scenario`.
    pub name: &'static str,
    /// What happens, in words.
    pub description: &'static str,
    /// Whether the primary is acceptable (within 50 % of DR): a rollback is then false.
    pub acceptable: bool,
    /// What the regression makes bad, for "bad requests served".
    pub counted: Counted,
    /// Requests per second over both sites.
    pub rps: f64,
    /// DR's (and the primary's starting) error rate.
    pub error_rate: f64,
    /// The primary's own starting error rate, if different.
    pub primary_error_rate: Option<f64>,
    /// Scripted changes.
    pub changes: Vec<Change>,
    /// Error overdispersion (Gamma shape; 0 none).
    pub burst_shape: f64,
    /// How long one burst draw holds (zero: redrawn every second).
    pub burst_period: Duration,
    /// A cyclic profile of the total request rate (empty: constant).
    pub traffic_profile: Vec<TrafficPhase>,
    /// Mean time between pod restarts (counter resets); zero for none.
    pub resets: Duration,
    /// A stage with its own bake and `max_duration`, for every judge.
    pub stage_timing: Option<StageTiming>,
    /// History before the run (DR at 100 %).
    pub warmup: Duration,
    /// The sequential judges' `beta` (per-stage false-certification budget); `None`: the
    /// policy default.
    pub beta: Option<f64>,
}

fn at_weight(w: u8, site: Option<Site>) -> Change {
    Change {
        when: Trigger::PrimaryWeightAtLeast(w),
        site,
        error_rate: None,
        latency_factor: None,
        reachable: None,
        error_ramp: None,
        load_errors: None,
    }
}

/// A change `after` the primary's weight first reached `w` (stage-relative).
fn into_stage(w: u8, after: Duration, site: Option<Site>) -> Change {
    Change {
        when: Trigger::AfterWeight { weight: w, after },
        ..at_weight(0, site)
    }
}

fn after(secs: u64) -> Change {
    Change {
        when: Trigger::After(Duration::from_secs(secs)),
        ..at_weight(0, None)
    }
}

impl BenchScenario {
    fn base(name: &'static str, description: &'static str, rps: f64, error_rate: f64) -> Self {
        BenchScenario {
            name,
            description,
            acceptable: true,
            counted: Counted::Errors,
            rps,
            error_rate,
            primary_error_rate: None,
            changes: Vec::new(),
            burst_shape: 0.0,
            burst_period: Duration::ZERO,
            traffic_profile: Vec::new(),
            resets: Duration::ZERO,
            stage_timing: None,
            warmup: WARMUP,
            beta: None,
        }
    }

    fn bursts(mut self, shape: f64, period: u64) -> Self {
        self.burst_shape = shape;
        self.burst_period = Duration::from_secs(period);
        self
    }

    fn timing(mut self, weight: u8, bake: Duration, max_duration: Duration) -> Self {
        self.stage_timing = Some(StageTiming {
            weight,
            bake,
            max_duration,
        });
        self
    }

    fn regression(mut self, changes: Vec<Change>) -> Self {
        self.acceptable = false;
        self.changes = changes;
        self
    }

    /// The simulated world of one seeded run.
    pub fn world(&self, seed: u64) -> Scenario {
        let dr = SiteProfile::healthy(self.error_rate);
        let primary = SiteProfile::healthy(self.primary_error_rate.unwrap_or(self.error_rate));
        Scenario {
            name: self.name.into(),
            total_rps: self.rps,
            primary,
            dr,
            changes: self.changes.clone(),
            convergence: Duration::ZERO,
            custom: BTreeMap::new(),
            seed,
            scrape: ScrapeSpec {
                interval: Duration::from_secs(15),
                pods: 3,
                mean_time_between_resets: self.resets,
            },
            error_burst_shape: self.burst_shape,
            burst_period: self.burst_period,
            traffic_profile: self.traffic_profile.clone(),
            warmup: self.warmup,
        }
    }

    /// DR's p99 latency in seconds (log-normal, 80 ms median, σ 0.5).
    pub fn dr_p99(&self) -> f64 {
        let p = SiteProfile::healthy(self.error_rate);
        p.latency_median * (2.326_347_874 * p.latency_sigma).exp()
    }
}

fn errors_to(rate: f64, w: u8) -> Vec<Change> {
    vec![Change {
        error_rate: Some(rate),
        ..at_weight(w, Some(Site::Primary))
    }]
}

fn latency_times(f: f64) -> Vec<Change> {
    vec![Change {
        latency_factor: Some(f),
        ..at_weight(10, Some(Site::Primary))
    }]
}

/// Every scenario, in report order.
pub fn all() -> Vec<BenchScenario> {
    let b = BenchScenario::base;
    let slow = |mut s: BenchScenario| {
        s.counted = Counted::SlowerThan(SLOW_EDGE);
        s
    };
    let mut out = vec![
        b(
            "healthy-0.1pct",
            "both sites at 0.1 % errors, 100 rps",
            100.0,
            0.001,
        ),
        b(
            "healthy-1pct",
            "both sites at 1 % errors, 100 rps",
            100.0,
            0.01,
        ),
        BenchScenario {
            primary_error_rate: Some(0.015),
            ..b(
                "boundary",
                "primary at 1.5 % vs DR 1 %: exactly at the 50 % tolerance, 100 rps",
                100.0,
                0.01,
            )
        },
        b(
            "step-1-2",
            "primary 1 % -> 2 % from the 10 % stage, 100 rps",
            100.0,
            0.01,
        )
        .regression(errors_to(0.02, 10)),
        b(
            "step-1-3",
            "primary 1 % -> 3 % from the 10 % stage, 100 rps",
            100.0,
            0.01,
        )
        .regression(errors_to(0.03, 10)),
        b(
            "step-1-5",
            "primary 1 % -> 5 % from the 10 % stage, 100 rps",
            100.0,
            0.01,
        )
        .regression(errors_to(0.05, 10)),
        b(
            "slow-leak",
            "primary errors grow from 1 % by 0.25 points a minute from the 10 % stage, 100 rps",
            100.0,
            0.01,
        )
        .regression(vec![Change {
            error_ramp: Some(0.0025),
            ..at_weight(10, Some(Site::Primary))
        }]),
        b(
            "slow-leak-1000rps",
            "as slow-leak, at 1000 rps",
            1000.0,
            0.01,
        )
        .regression(vec![Change {
            error_ramp: Some(0.0025),
            ..at_weight(10, Some(Site::Primary))
        }]),
        b(
            "regress-at-50",
            "primary 1 % -> 3 % only once it takes >= 50 % of traffic, 100 rps",
            100.0,
            0.01,
        )
        .regression(errors_to(0.03, 50)),
        slow(
            b(
                "latency-x1.2",
                "primary latency x1.2 from the 10 % stage, 100 rps",
                100.0,
                0.01,
            )
            .regression(latency_times(1.2)),
        ),
        slow(
            b(
                "latency-x2",
                "primary latency x2 from the 10 % stage, 100 rps",
                100.0,
                0.01,
            )
            .regression(latency_times(2.0)),
        ),
        b("traffic-5rps", "both sites at 1 % errors, 5 rps", 5.0, 0.01),
        b(
            "traffic-1000rps",
            "both sites at 1 % errors, 1000 rps",
            1000.0,
            0.01,
        ),
        b(
            "step-1-5-1000rps",
            "primary 1 % -> 5 % from the 10 % stage, 1000 rps",
            1000.0,
            0.01,
        )
        .regression(errors_to(0.05, 10)),
        b(
            "spike-both-sites",
            "both sites jump to 5 % errors for 2 minutes, 4 minutes in, 100 rps",
            100.0,
            0.01,
        )
        .with_changes(vec![
            Change {
                error_rate: Some(0.05),
                ..after(240)
            },
            Change {
                error_rate: Some(0.01),
                ..after(360)
            },
        ]),
        b(
            "zero-baseline",
            "DR at 0 % errors; the primary 0 % -> 0.5 % from the 10 % stage, 100 rps",
            100.0,
            0.0,
        )
        .regression(errors_to(0.005, 10)),
        b(
            "common-rise-at-100",
            "both sites 1 % -> 3 % errors once the primary takes >= 98 % (a shared cause), 100 rps",
            100.0,
            0.01,
        )
        .with_changes(vec![Change {
            error_rate: Some(0.03),
            ..at_weight(98, None)
        }]),
        BenchScenario {
            resets: Duration::from_secs(300),
            ..b(
                "counter-resets",
                "both at 1 % errors, each pod restarts every 5 minutes on average, 100 rps",
                100.0,
                0.01,
            )
        },
    ];
    out.extend(bursts());
    out.extend(issue12());
    out
}

/// Per-site independent bursts (same long-run 1 % at both sites: acceptable), at three time
/// scales and as Gamma-mixed minute rates, at 100 and 1000 rps.
fn bursts() -> Vec<BenchScenario> {
    let b = BenchScenario::base;
    vec![
        b(
            "bursts-1s",
            "both at 1 % errors; each site's rate x its own Gamma(0.5) draw, redrawn every second, 100 rps",
            100.0,
            0.01,
        )
        .bursts(0.5, 1),
        b(
            "bursts-30s",
            "both at 1 % errors; each site's rate x its own Gamma(0.5) draw, held 30 s, 100 rps",
            100.0,
            0.01,
        )
        .bursts(0.5, 30),
        b(
            "bursts-60s",
            "both at 1 % errors; each site's rate x its own Gamma(0.5) draw, held a minute, 100 rps",
            100.0,
            0.01,
        )
        .bursts(0.5, 60),
        b(
            "gamma-minute",
            "both at 1 % errors; each site's rate wanders from minute to minute (x Gamma(4), CV 0.5), 100 rps",
            100.0,
            0.01,
        )
        .bursts(4.0, 60),
        b(
            "bursts-1s-1000rps",
            "as bursts-1s, at 1000 rps",
            1000.0,
            0.01,
        )
        .bursts(0.5, 1),
        b(
            "bursts-30s-1000rps",
            "as bursts-30s, at 1000 rps",
            1000.0,
            0.01,
        )
        .bursts(0.5, 30),
        b(
            "bursts-60s-1000rps",
            "as bursts-60s, at 1000 rps",
            1000.0,
            0.01,
        )
        .bursts(0.5, 60),
        b(
            "gamma-minute-1000rps",
            "as gamma-minute, at 1000 rps",
            1000.0,
            0.01,
        )
        .bursts(4.0, 60),
    ]
}

/// Ten minutes at 160 rps, ten at 40 (100 rps on average), from the run's start.
fn high_low_traffic() -> Vec<TrafficPhase> {
    vec![
        TrafficPhase {
            duration: Duration::from_secs(600),
            factor: 1.6,
        },
        TrafficPhase {
            duration: Duration::from_secs(600),
            factor: 0.4,
        },
    ]
}

/// Issue 12's other families: DR worse, late onsets, the last stage, traffic that varies.
fn issue12() -> Vec<BenchScenario> {
    let b = BenchScenario::base;
    let five = |c: Change| Change {
        error_rate: Some(0.05),
        ..c
    };
    let minutes = |m: u64| Duration::from_secs(60 * m);
    // Both sites at 10 % errors for 20 s every 2 minutes, from 30 s into the last stage.
    let spikes: Vec<Change> = (0..8u64)
        .flat_map(|k| {
            let at = 30 + 120 * k;
            [
                Change {
                    error_rate: Some(0.10),
                    ..into_stage(98, Duration::from_secs(at), None)
                },
                Change {
                    error_rate: Some(0.01),
                    ..into_stage(98, Duration::from_secs(at + 20), None)
                },
            ]
        })
        .collect();
    vec![
        BenchScenario {
            primary_error_rate: Some(0.01),
            ..b(
                "dr-worse",
                "DR at 2 % errors, the primary at 1 %, 100 rps",
                100.0,
                0.02,
            )
        },
        b(
            "onset-mid-stage",
            "primary 1 % -> 5 % 12 minutes into the 10 % stage (bake 20m, max_duration 30m there for every judge), 100 rps",
            100.0,
            0.01,
        )
        .regression(vec![five(into_stage(10, minutes(12), Some(Site::Primary)))])
        .timing(10, minutes(20), minutes(30)),
        b(
            "onset-end-of-stage",
            "primary 1 % -> 5 % 30 s before the 10 % stage's max_duration (bake = max_duration = 15m there for every judge), 100 rps",
            100.0,
            0.01,
        )
        .regression(vec![five(into_stage(
            10,
            MAX_DURATION - Duration::from_secs(30),
            Some(Site::Primary),
        ))])
        .timing(10, MAX_DURATION, MAX_DURATION),
        b(
            "step-1-5-at-100",
            "primary 1 % -> 5 % once it takes >= 98 % (the last judged stage), 100 rps",
            100.0,
            0.01,
        )
        .regression(errors_to(0.05, 98)),
        b(
            "spikes-aligned-at-100",
            "both sites at 10 % errors for 20 s every 2 minutes, from 30 s after the primary takes >= 98 %, 100 rps",
            100.0,
            0.01,
        )
        .with_changes(spikes),
        BenchScenario {
            traffic_profile: high_low_traffic(),
            ..b(
                "varying-traffic",
                "both at 1 % errors; 10 minutes at 160 rps, 10 at 40 rps, in turn",
                100.0,
                0.01,
            )
        },
        BenchScenario {
            traffic_profile: high_low_traffic(),
            ..b(
                "worse-at-low-traffic",
                "as varying-traffic; the primary at 5 % errors in the 40 rps periods (1.8 % per request on average)",
                100.0,
                0.01,
            )
        }
        .regression(vec![Change {
            load_errors: Some(LoadCurve {
                of: LoadOf::Total,
                points: vec![(0.5, 5.0), (1.0, 1.0)],
            }),
            ..at_weight(0, Some(Site::Primary))
        }]),
        b(
            "load-dependent",
            "primary 1 % up to a 25 % share, 3 % from 50 % (x3 with its load), 100 rps",
            100.0,
            0.01,
        )
        .regression(vec![Change {
            load_errors: Some(LoadCurve {
                of: LoadOf::Site,
                points: vec![(0.25, 1.0), (0.5, 3.0)],
            }),
            ..at_weight(0, Some(Site::Primary))
        }]),
    ]
}

impl BenchScenario {
    fn with_changes(mut self, changes: Vec<Change>) -> Self {
        self.changes = changes;
        self
    }
}
