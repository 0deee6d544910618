//! A simulated pair of sites, for the demo, the benchmark and tests of the state machine.
//!
//! Per-site Poisson request arrivals, a per-request error probability and a log-normal
//! latency distribution counted into histogram buckets, generated one virtual second at a
//! time from a seeded RNG (deterministic for a seed). The traffic split follows the weight
//! the controller writes, optionally converging slowly as DNS clients do. A scenario script
//! changes a site's behaviour at a virtual time or when the primary weight reaches a stage.

mod scenario;
mod traffic;
mod world;

use std::time::SystemTime;

use async_trait::async_trait;

use cutover_core::PromqlBuilder;
use cutover_core::metrics::source::{
    CountQuery, Counts as SiteCounts, Measure, MetricError, MetricSource, Sample,
};

pub use scenario::*;
pub use world::*;

/// [`MetricSource`] over a [`SimWorld`]; renders the PromQL a real run would send.
pub struct SimulatedSource {
    world: SimWorld,
    promql: PromqlBuilder,
}

impl SimulatedSource {
    /// A source measuring `world`, rendering queries with `promql`.
    pub fn new(world: SimWorld, promql: PromqlBuilder) -> SimulatedSource {
        SimulatedSource { world, promql }
    }
}

#[async_trait]
impl MetricSource for SimulatedSource {
    fn describe(&self) -> String {
        "simulated traffic".into()
    }

    fn render(&self, m: &Measure) -> String {
        self.promql.render(m)
    }

    async fn measure(&self, m: &Measure, now: SystemTime) -> Result<Sample, MetricError> {
        self.world.measure(m, now)
    }

    async fn count(&self, q: &CountQuery, now: SystemTime) -> Result<SiteCounts, MetricError> {
        self.world.count(q, now)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::{Duration, UNIX_EPOCH};

    use cutover_core::Site;

    use super::*;

    #[test]
    fn histogram_quantile_matches_prometheus_rules() {
        let b = [0.1, 0.5, 1.0];
        // 10 in (0,0.1], 80 in (0.1,0.5], 10 in (0.5,1]: p50 rank 50 -> 0.1 + 0.4*40/80.
        assert!((histogram_quantile(0.5, &b, &[10, 80, 10, 0]) - 0.3).abs() < 1e-12);
        // Rank in +Inf bucket: the highest finite bound.
        assert_eq!(histogram_quantile(0.99, &b, &[0, 0, 0, 5]), 1.0);
        assert!(histogram_quantile(0.5, &b, &[0, 0, 0, 0]).is_nan());
    }

    fn scenario() -> Scenario {
        Scenario {
            name: "t".into(),
            total_rps: 200.0,
            primary: SiteProfile::healthy(0.01),
            dr: SiteProfile::healthy(0.01),
            changes: vec![Change {
                when: Trigger::PrimaryWeightAtLeast(50),
                site: Some(Site::Primary),
                error_rate: Some(0.2),
                latency_factor: None,
                reachable: None,
                error_ramp: None,
                load_errors: None,
            }],
            convergence: Duration::ZERO,
            custom: BTreeMap::new(),
            seed: 7,
            scrape: ScrapeSpec::default(),
            error_burst_shape: 0.0,
            burst_period: Duration::ZERO,
            traffic_profile: Vec::new(),
            warmup: WARMUP,
        }
    }

    #[tokio::test]
    async fn split_follows_the_weight_and_changes_fire() {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let world = SimWorld::new(scenario(), t0);
        let w = Duration::from_secs(60);
        let m = |site| Measure::RequestRate { site, window: w };
        let t1 = t0 + Duration::from_secs(60);
        assert_eq!(world.measure(&m(Site::Primary), t1).unwrap(), Some(0.0));
        world.set_primary_weight(t1, 25);
        let t2 = t1 + Duration::from_secs(60);
        let p = world.measure(&m(Site::Primary), t2).unwrap().unwrap();
        assert!((p - 50.0).abs() < 8.0, "25% of 200 rps: {p}");
        let e = world
            .measure(
                &Measure::ErrorRatio {
                    site: Site::Primary,
                    window: w,
                },
                t2,
            )
            .unwrap()
            .unwrap();
        assert!(e < 0.05, "{e}");
        world.set_primary_weight(t2, 50);
        let t3 = t2 + Duration::from_secs(60);
        let e = world
            .measure(
                &Measure::ErrorRatio {
                    site: Site::Primary,
                    window: w,
                },
                t3,
            )
            .unwrap()
            .unwrap();
        assert!(e > 0.15, "change at 50% fired: {e}");
        let q = world
            .measure(
                &Measure::LatencyQuantile {
                    quantile: 0.5,
                    site: Site::Dr,
                    window: w,
                },
                t3,
            )
            .unwrap()
            .unwrap();
        assert!((0.06..0.1).contains(&q), "median near 80ms: {q}");
    }

    #[test]
    fn deterministic_for_a_seed() {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let run = || {
            let world = SimWorld::new(scenario(), t0);
            world.set_primary_weight(t0, 10);
            world
                .measure(
                    &Measure::RequestCount {
                        site: Site::Primary,
                        window: Duration::from_secs(300),
                    },
                    t0 + Duration::from_secs(300),
                )
                .unwrap()
        };
        assert_eq!(run(), run());
    }
}
