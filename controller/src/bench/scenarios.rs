//! The benchmark's simulated worlds: healthy, boundary, regressions, traffic levels and the
//! things that fool judges (a spike on both sites, bursty errors, counter resets).

use std::collections::BTreeMap;
use std::time::Duration;

use cutover_analyzers::simulated::{Change, Scenario, ScrapeSpec, SiteProfile, Trigger};
use cutover_core::Site;
use cutover_core::metrics::source::Counted;

/// The bucket edge the latency gates count above: near DR's p99 (80 ms median, σ 0.5).
pub const SLOW_EDGE: f64 = 0.25;

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
    /// Mean time between pod restarts (counter resets); zero for none.
    pub resets: Duration,
}

fn at_weight(w: u8, site: Option<Site>) -> Change {
    Change {
        when: Trigger::PrimaryWeightAtLeast(w),
        site,
        error_rate: None,
        latency_factor: None,
        reachable: None,
        error_ramp: None,
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
            resets: Duration::ZERO,
        }
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
    vec![
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
        BenchScenario {
            burst_shape: 0.5,
            ..b(
                "bursty-errors",
                "both at 1 % errors, overdispersed (per-second rate x Gamma(0.5)), 100 rps",
                100.0,
                0.01,
            )
        },
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
    ]
}

impl BenchScenario {
    fn with_changes(mut self, changes: Vec<Change>) -> Self {
        self.changes = changes;
        self
    }
}
