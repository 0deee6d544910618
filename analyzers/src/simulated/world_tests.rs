//! Tests of the simulated world: the simulator and the Prometheus path count alike.
use std::collections::BTreeMap;

use cutover_core::metrics::source::Counts as SiteCounts;

use super::*;
use crate::prometheus::{Series, count_errors, count_slow};

const EDGE: usize = 5;

fn scenario(pods: u32, resets: Duration) -> Scenario {
    Scenario {
        name: "resets".into(),
        total_rps: 100.0,
        primary: SiteProfile::healthy(0.01),
        dr: SiteProfile::healthy(0.01),
        changes: Vec::new(),
        convergence: Duration::ZERO,
        custom: BTreeMap::new(),
        seed: 11,
        scrape: ScrapeSpec {
            interval: Duration::from_secs(15),
            pods,
            mean_time_between_resets: resets,
        },
        error_burst_shape: 0.0,
        burst_period: Duration::ZERO,
        traffic_profile: Vec::new(),
        warmup: WARMUP,
    }
}

/// The series a Prometheus scraping the simulated pods of `site` would hold for a count
/// of `(from, to]`: per pod a `status="200"` and a `status="500"` requests series (the
/// latter the errors) and the histogram's `+Inf` and edge buckets.
fn as_prometheus(
    w: &World,
    site: usize,
    from: f64,
    to: f64,
) -> (Vec<Series>, Vec<Series>, Vec<Series>) {
    let scrapes: Vec<_> = w
        .scrapes
        .iter()
        .filter(|(s, _)| (*s as f64) > from - MAX_GAP && (*s as f64) <= to)
        .collect();
    let one = |name: &str, p: usize, label: (&str, String), f: &dyn Fn(&PodCounters) -> f64| {
        let mut labels: BTreeMap<String, String> = [
            ("__name__", name.to_string()),
            ("job", "sim".to_string()),
            ("instance", format!("pod-{p}:8080")),
            ("site", ["primary", "dr"][site].to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        labels.insert(label.0.into(), label.1);
        Series {
            labels,
            samples: scrapes
                .iter()
                .map(|(s, pods)| (*s as f64, f(&pods[site][p])))
                .collect(),
        }
    };
    let (mut total, mut bad, mut buckets) = (Vec::new(), Vec::new(), Vec::new());
    for p in 0..w.scenario.scrape.pods as usize {
        let requests = "http_requests_total";
        total.push(one(requests, p, ("status", "200".into()), &|c| {
            c.requests - c.errors
        }));
        let errors = one(requests, p, ("status", "500".into()), &|c| c.errors);
        total.push(errors.clone());
        bad.push(errors);
        let histogram = "http_request_duration_seconds_bucket";
        buckets.push(one(histogram, p, ("le", "+Inf".into()), &|c| {
            c.le[BUCKETS.len()]
        }));
        buckets.push(one(histogram, p, ("le", BUCKETS[EDGE].to_string()), &|c| {
            c.le[EDGE]
        }));
    }
    (total, bad, buckets)
}

fn query(counted: Counted, site: Site, from: u64) -> CountQuery {
    CountQuery {
        counted,
        site,
        from: UNIX_EPOCH + Duration::from_secs(from),
    }
}

fn both(w: &World, site: Site, from: u64, to: u64) -> [(SiteCounts, SiteCounts); 2] {
    let (total, bad, buckets) = as_prometheus(w, idx(site), from as f64, to as f64);
    let slow = Counted::SlowerThan(BUCKETS[EDGE]);
    [
        (
            w.count(&query(Counted::Errors, site, from), to).unwrap(),
            count_errors(&total, &bad, from as f64, to as f64),
        ),
        (
            w.count(&query(slow, site, from), to).unwrap(),
            count_slow(&buckets, from as f64, to as f64).unwrap(),
        ),
    ]
}

/// Issue 12 (a) in the simulator and on the Prometheus path alike: a pod going from 10
/// requests of which 9 fast to 9 of 9 restarted and served 9 fast ones, none slow.
#[test]
fn the_simulator_and_prometheus_count_a_restart_alike() {
    let t0 = 1_000_000;
    let world = SimWorld::new(
        scenario(1, Duration::ZERO),
        UNIX_EPOCH + Duration::from_secs(t0),
    );
    let mut w = world.lock();
    let pod = |requests: f64, fast: f64| {
        let mut c = PodCounters {
            requests,
            ..PodCounters::default()
        };
        c.le[EDGE] = fast;
        c.le[BUCKETS.len()] = requests;
        c
    };
    let (a, b) = (t0 + 15, t0 + 30);
    w.scrapes.clear();
    w.scrapes
        .push_back((a, [vec![pod(10.0, 9.0)], vec![pod(10.0, 9.0)]]));
    w.scrapes
        .push_back((b, [vec![pod(9.0, 9.0)], vec![pod(9.0, 9.0)]]));
    let [errors, slow] = both(&w, Site::Primary, a, b);
    assert_eq!(slow.0, slow.1, "simulator vs Prometheus path");
    assert_eq!((slow.0.total, slow.0.bad, slow.0.resets), (9.0, 0.0, 1));
    assert_eq!(errors.0, errors.1, "simulator vs Prometheus path");
    assert_eq!(errors.0.total, 9.0);
}

/// Pods restarting every 20 s on average: every interval's counts agree.
#[test]
fn the_simulator_and_prometheus_agree_through_frequent_restarts() {
    let t0 = 1_000_000;
    let start = UNIX_EPOCH + Duration::from_secs(t0);
    let world = SimWorld::new(scenario(3, Duration::from_secs(20)), start);
    world.set_primary_weight(start, 50);
    world.advance_to(start + Duration::from_secs(1800));
    let w = world.lock();
    let mut resets = 0;
    for from in (t0 + 300..t0 + 1785).step_by(15) {
        for site in [Site::Primary, Site::Dr] {
            for (sim, prom) in both(&w, site, from, from + 15) {
                assert_eq!(sim, prom, "({from}, {}] at the {site:?}", from + 15);
                assert!(sim.bad <= sim.total && sim.bad >= 0.0, "{sim:?}");
                resets += sim.resets;
            }
        }
    }
    assert!(resets > 50, "restarts were seen: {resets}");
}
