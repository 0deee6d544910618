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
    /// Overdispersion of errors: each second's error probability at each site is multiplied
    /// by a Gamma(k, 1/k) draw (mean 1) with this shape `k`; smaller is burstier. 0: none.
    #[serde(default)]
    pub error_burst_shape: f64,
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
