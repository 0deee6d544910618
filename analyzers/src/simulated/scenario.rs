//! What a simulation runs: each site's profile, the changes a scenario script makes and
//! when, and how the simulated Prometheus scrapes.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use cutover_core::Site;

/// Upper bounds (seconds) of the simulated latency histogram; `+Inf` is implied.
pub const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How one site behaves.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SiteProfile {
    /// Probability that a request fails.
    pub error_rate: f64,
    /// Median latency in seconds.
    pub latency_median: f64,
    /// Log-normal shape (sigma of the log); 0.5 gives p99 ~ 3.2x the median.
    pub latency_sigma: f64,
    /// Whether requests routed here arrive at all (false: a broken route, no traffic).
    pub reachable: bool,
}

impl SiteProfile {
    /// A healthy site: the given error rate, 80 ms median latency.
    pub fn healthy(error_rate: f64) -> SiteProfile {
        SiteProfile {
            error_rate,
            latency_median: 0.08,
            latency_sigma: 0.5,
            reachable: true,
        }
    }
}

/// When a scenario change happens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// Once the primary's target weight reaches this percent.
    PrimaryWeightAtLeast(u8),
    /// This long after the simulation starts.
    After(#[serde(with = "cutover_core::serde_secs")] Duration),
    /// `after` this long once the primary's target weight has first reached `weight`
    /// percent (stage-relative: e.g. 12 minutes into the 10 % stage). The change is in force
    /// from the second `weight reached + after` on, like [`Trigger::After`].
    AfterWeight {
        /// The primary weight, percent.
        weight: u8,
        /// How long after the weight was first written.
        #[serde(with = "cutover_core::serde_secs")]
        after: Duration,
    },
}

/// What the load of a [`LoadCurve`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadOf {
    /// The site's own arrival rate as a fraction of the scenario's `total_rps` (its
    /// share of traffic, times the traffic profile's factor).
    Site,
    /// The total arrival rate as a fraction of `total_rps`: the traffic profile's factor.
    Total,
}

/// A load-dependent multiplier of a site's error probability: piecewise linear through
/// `points` (`(load, factor)`, sorted by load), constant beyond the first and last point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadCurve {
    /// What the load is.
    pub of: LoadOf,
    /// `(load, factor)` points, sorted by load.
    pub points: Vec<(f64, f64)>,
}

impl LoadCurve {
    /// The multiplier at `load`.
    pub fn factor(&self, load: f64) -> f64 {
        let pts = &self.points;
        let (Some(first), Some(last)) = (pts.first(), pts.last()) else {
            return 1.0;
        };
        if load <= first.0 {
            return first.1;
        }
        if load >= last.0 {
            return last.1;
        }
        for w in pts.windows(2) {
            let ((x0, y0), (x1, y1)) = (w[0], w[1]);
            if load <= x1 {
                if x1 <= x0 {
                    return y1;
                }
                return y0 + (y1 - y0) * (load - x0) / (x1 - x0);
            }
        }
        last.1
    }
}

/// One phase of a cyclic traffic profile: the total request rate is `total_rps × factor`
/// for `duration`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrafficPhase {
    /// How long the phase lasts.
    #[serde(with = "cutover_core::serde_secs")]
    pub duration: Duration,
    /// The multiplier of `total_rps` during it.
    pub factor: f64,
}

/// One scripted change of a site's behaviour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// When it happens.
    pub when: Trigger,
    /// Which site; `None` for both.
    pub site: Option<Site>,
    /// New error probability.
    pub error_rate: Option<f64>,
    /// Multiplies the median latency.
    pub latency_factor: Option<f64>,
    /// New reachability.
    pub reachable: Option<bool>,
    /// From now on the error probability grows by this much per minute (a slow leak).
    #[serde(default)]
    pub error_ramp: Option<f64>,
    /// From now on the error probability is multiplied by this load-dependent factor. Not
    /// an onset by itself: the world's onset is the first second the factor exceeds 1 at a
    /// site serving traffic.
    #[serde(default)]
    pub load_errors: Option<LoadCurve>,
}

impl Change {
    /// Whether the change alters a site's behaviour the moment it applies (an onset).
    pub fn is_immediate(&self) -> bool {
        self.error_rate.is_some()
            || self.latency_factor.is_some()
            || self.reachable.is_some()
            || self.error_ramp.is_some()
    }
}

/// A whole simulated world: traffic, both sites, and what changes when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scenario {
    /// Its name.
    pub name: String,
    /// Requests per second over both sites.
    pub total_rps: f64,
    /// The primary at the start.
    pub primary: SiteProfile,
    /// DR at the start.
    pub dr: SiteProfile,
    /// Scripted changes.
    pub changes: Vec<Change>,
    /// Time constant of the traffic split following a weight change (0: at once).
    #[serde(with = "cutover_core::serde_secs")]
    pub convergence: Duration,
    /// Answers to custom queries, by query template.
    pub custom: BTreeMap<String, f64>,
    /// RNG seed.
    pub seed: u64,
    /// How the simulated Prometheus scrapes the counters that sequential gates count.
    #[serde(default)]
    pub scrape: ScrapeSpec,
    /// Overdispersion of errors: the error probability at each site is multiplied by a
    /// Gamma(k, 1/k) draw (mean 1, variance 1/k) with this shape `k`, drawn independently per
    /// site and held for [`Scenario::burst_period`]; smaller is burstier. 0: none.
    #[serde(default)]
    pub error_burst_shape: f64,
    /// How long one burst draw holds (periods aligned to multiples of it in Unix time);
    /// zero or 1 s: redrawn every second.
    #[serde(default, with = "cutover_core::serde_secs")]
    pub burst_period: Duration,
    /// A cyclic profile of the total request rate, starting at the world's start (and
    /// running backwards into the warmup); empty: `total_rps` throughout.
    #[serde(default)]
    pub traffic_profile: Vec<TrafficPhase>,
    /// History generated before the world's start (DR serving everything); counts over
    /// any part of it work as they do during the run. Default [`WARMUP`].
    #[serde(default = "default_warmup", with = "cutover_core::serde_secs")]
    pub warmup: Duration,
}

/// The default history generated before a world's start: two hours (the sequential gates'
/// default `vs_dr.history`).
pub const WARMUP: Duration = Duration::from_secs(7200);

fn default_warmup() -> Duration {
    WARMUP
}

impl Scenario {
    /// The traffic profile's factor at `second` (Unix), counting phases from `start`.
    pub fn traffic_factor(&self, second: u64, start: u64) -> f64 {
        let cycle: u64 = self
            .traffic_profile
            .iter()
            .map(|p| p.duration.as_secs())
            .sum();
        if cycle == 0 {
            return 1.0;
        }
        let mut t = (second as i64 - start as i64).rem_euclid(cycle as i64) as u64;
        for p in &self.traffic_profile {
            let d = p.duration.as_secs();
            if t < d {
                return p.factor;
            }
            t -= d;
        }
        1.0
    }
}

/// The simulated scrape of each site's counters: several pods, each its own series.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScrapeSpec {
    /// Time between two scrapes.
    #[serde(with = "cutover_core::serde_secs")]
    pub interval: Duration,
    /// Pods per site; each second's requests go to one of them in turn.
    pub pods: u32,
    /// Mean time between restarts of a pod (its counters start again from 0); none if zero.
    #[serde(with = "cutover_core::serde_secs")]
    pub mean_time_between_resets: Duration,
}

impl Default for ScrapeSpec {
    fn default() -> Self {
        ScrapeSpec {
            interval: Duration::from_secs(15),
            pods: 3,
            mean_time_between_resets: Duration::ZERO,
        }
    }
}
