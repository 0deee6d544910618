//! The simulated world: both sites' per-pod counters, generated one virtual second at a
//! time, and what a Prometheus scraping them would answer.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Binomial, Distribution, Poisson};

use cutover_core::Site;
use cutover_core::metrics::counters::{MAX_GAP, pair_growth, series_growth};
use cutover_core::metrics::source::{
    CountQuery, Counted, Counts as SiteCounts, Measure, MetricError, Sample,
};

use super::scenario::*;
use super::traffic::Bursts;

/// One pod's counters as a scrape sees them: requests, errors and cumulative buckets.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct PodCounters {
    requests: f64,
    errors: f64,
    /// Cumulative per bucket edge (`le`), the last being `+Inf`.
    le: [f64; BUCKETS.len() + 1],
}

/// Counts of one site in one second.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Counts {
    requests: u64,
    errors: u64,
    /// Non-cumulative counts per bucket; the last is above the highest bound.
    buckets: [u64; BUCKETS.len() + 1],
}

impl Counts {
    /// The bad requests among these: errors, or requests above a bucket edge.
    fn bad(&self, counted: Counted) -> u64 {
        match counted {
            Counted::Errors => self.errors,
            Counted::SlowerThan(e) => {
                let below: u64 = BUCKETS
                    .iter()
                    .zip(self.buckets.iter())
                    .filter(|(b, _)| **b <= e + 1e-12)
                    .map(|(_, k)| *k)
                    .sum();
                self.requests - below
            }
        }
    }

    fn add(&mut self, o: &Counts) {
        self.requests += o.requests;
        self.errors += o.errors;
        for (a, b) in self.buckets.iter_mut().zip(o.buckets.iter()) {
            *a += b;
        }
    }
}

struct World {
    scenario: Scenario,
    rng: StdRng,
    start: u64,
    /// The last second generated.
    last: u64,
    share: f64,
    target: f64,
    target_weight: u8,
    sites: [SiteProfile; 2],
    applied: Vec<bool>,
    seconds: VecDeque<(u64, [Counts; 2])>,
    /// Per site, per pod: the live counters.
    pods: [Vec<PodCounters>; 2],
    /// Scrapes: the second and every pod's counters at both sites.
    scrapes: VecDeque<(u64, [Vec<PodCounters>; 2])>,
    /// Per site: a slow leak `(start second, growth per minute)`.
    ramps: [Option<(u64, f64)>; 2],
    /// When the first scripted change happened.
    onset: Option<u64>,
    /// Per site: the error bursts' multipliers (their own RNG stream, so every judge sees
    /// the same bursts for a seed).
    bursts: Bursts,
    /// Per site: a load-dependent error multiplier, once a change installs one.
    load_curves: [Option<LoadCurve>; 2],
    /// Per change: when the primary's target weight first reached its
    /// [`Trigger::AfterWeight`] weight.
    reached: Vec<Option<u64>>,
    /// How long generated seconds and scrapes are kept: [`RETAIN_SECS`] after the warmup.
    retain: u64,
}

/// How long generated seconds are kept for queries, beyond the warmup.
const RETAIN_SECS: u64 = 3 * 3600;

fn unix_f64(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn idx(site: Site) -> usize {
    match site {
        Site::Primary => 0,
        Site::Dr => 1,
    }
}

impl World {
    fn advance_to(&mut self, now: u64) {
        // Bounded: at most `retain` seconds are generated per call.
        let retain = self.retain;
        let from = self.last.max(now.saturating_sub(retain));
        for s in from + 1..=now {
            self.apply_changes(s);
            self.step_share();
            let counts = self.generate(s);
            self.count_into_pods(s, &counts);
            self.seconds.push_back((s, counts));
        }
        self.last = self.last.max(now);
        while let Some((s, _)) = self.seconds.front() {
            if *s + retain < now {
                self.seconds.pop_front();
            } else {
                break;
            }
        }
        while let Some((s, _)) = self.scrapes.front() {
            if *s + retain < now {
                self.scrapes.pop_front();
            } else {
                break;
            }
        }
    }

    /// Adds one second's counts to the pod serving it, restarts pods now and then, and
    /// scrapes every pod on the scrape interval.
    fn count_into_pods(&mut self, second: u64, counts: &[Counts; 2]) {
        let spec = self.scenario.scrape;
        let pods = spec.pods.max(1) as usize;
        let mtbr = spec.mean_time_between_resets.as_secs_f64();
        for (site, c) in counts.iter().enumerate() {
            if self.pods[site].len() != pods {
                self.pods[site] = vec![PodCounters::default(); pods];
            }
            if mtbr > 0.0 {
                for p in 0..pods {
                    if rand::Rng::random_bool(&mut self.rng, (1.0 / mtbr).min(1.0)) {
                        self.pods[site][p] = PodCounters::default();
                    }
                }
            }
            let pod = &mut self.pods[site][(second % pods as u64) as usize];
            pod.requests += c.requests as f64;
            pod.errors += c.errors as f64;
            let mut cum = 0.0;
            for (b, k) in c.buckets.iter().enumerate() {
                cum += *k as f64;
                pod.le[b] += cum;
            }
        }
        let every = spec.interval.as_secs().max(1);
        if second.is_multiple_of(every) {
            self.scrapes
                .push_back((second, [self.pods[0].clone(), self.pods[1].clone()]));
        }
    }

    /// Counts over `(from, to]` from the scraped samples, as Prometheus would serve them.
    pub(super) fn count(&self, q: &CountQuery, to: u64) -> Result<SiteCounts, MetricError> {
        let from = unix_f64(q.from).min(to as f64);
        let site = idx(q.site);
        let edge = match q.counted {
            Counted::Errors => None,
            Counted::SlowerThan(e) => Some(
                BUCKETS
                    .iter()
                    .position(|b| (b - e).abs() < 1e-9)
                    .ok_or_else(|| {
                        MetricError::Unsupported(format!(
                            "the simulated histogram has no bucket with le={e}; edges are {BUCKETS:?}"
                        ))
                    })?,
            ),
        };
        let lookback = from - MAX_GAP;
        let pods = self.scenario.scrape.pods.max(1) as usize;
        // One pod's series: `f` of its counters at every scrape in the counting window.
        let series = |p: usize, f: &dyn Fn(&PodCounters) -> f64| -> Vec<(f64, f64)> {
            self.scrapes
                .iter()
                .filter(|(s, _)| (*s as f64) > lookback && *s <= to)
                .filter_map(|(s, pods)| pods[site].get(p).map(|c| (*s as f64, f(c))))
                .collect()
        };
        let to = to as f64;
        let mut counts = SiteCounts::default();
        for p in 0..pods {
            match edge {
                // As Prometheus holds them: a series of non-errors and one of errors per
                // pod, both requests, counted each on its own.
                None => {
                    let ok = series_growth(&series(p, &|c| c.requests - c.errors), from, to);
                    let errors = series_growth(&series(p, &|c| c.errors), from, to);
                    counts.total += ok.value + errors.value;
                    counts.bad += errors.value;
                    counts.resets += ok.resets + errors.resets;
                }
                // The pod's +Inf bucket and its bucket at the edge, a pair.
                Some(b) => {
                    let g = pair_growth(
                        &series(p, &|c| c.le[BUCKETS.len()]),
                        &series(p, &|c| c.le[b]),
                        from,
                        to,
                    );
                    counts.total += g.whole.value;
                    counts.bad += g.rest();
                    counts.resets += g.whole.resets;
                }
            }
        }
        Ok(counts)
    }

    fn apply_changes(&mut self, second: u64) {
        for i in 0..self.scenario.changes.len() {
            if self.applied[i] {
                continue;
            }
            let c = self.scenario.changes[i].clone();
            let due = match c.when {
                Trigger::PrimaryWeightAtLeast(w) => self.target_weight >= w,
                Trigger::After(d) => second >= self.start + d.as_secs(),
                Trigger::AfterWeight { after, .. } => {
                    self.reached[i].is_some_and(|r| second >= r + after.as_secs())
                }
            };
            if !due {
                continue;
            }
            self.applied[i] = true;
            let sites: Vec<usize> = match c.site {
                Some(s) => vec![idx(s)],
                None => vec![0, 1],
            };
            for s in sites {
                let p = &mut self.sites[s];
                if let Some(e) = c.error_rate {
                    p.error_rate = e;
                }
                if let Some(f) = c.latency_factor {
                    p.latency_median *= f;
                }
                if let Some(r) = c.reachable {
                    p.reachable = r;
                }
                if let Some(r) = c.error_ramp {
                    self.ramps[s] = Some((second, r));
                }
                if let Some(curve) = &c.load_errors {
                    self.load_curves[s] = Some(curve.clone());
                }
            }
            if c.is_immediate() {
                self.onset.get_or_insert(second);
            }
        }
    }

    fn step_share(&mut self) {
        let tau = self.scenario.convergence.as_secs_f64();
        if tau <= 0.0 {
            self.share = self.target;
        } else {
            self.share += (self.target - self.share) * (1.0 - (-1.0 / tau).exp());
        }
    }

    fn generate(&mut self, second: u64) -> [Counts; 2] {
        let factor = self.scenario.traffic_factor(second, self.start);
        let rps = self.scenario.total_rps * factor;
        let bursts = self.bursts.factors(
            self.scenario.error_burst_shape,
            self.scenario.burst_period,
            second,
        );
        let mut share = self.share;
        if !self.sites[0].reachable {
            share = 0.0;
        }
        if !self.sites[1].reachable {
            share = 1.0;
        }
        let mut out = [Counts::default(); 2];
        for (i, lambda) in [rps * share, rps * (1.0 - share)].into_iter().enumerate() {
            if lambda <= 0.0 || !self.sites[i].reachable {
                continue;
            }
            let n = Poisson::new(lambda)
                .map(|p| p.sample(&mut self.rng) as u64)
                .unwrap_or(0);
            let prof = self.sites[i];
            out[i].requests = n;
            let mut p_err = prof.error_rate;
            if let Some((start, per_min)) = self.ramps[i] {
                p_err += per_min * second.saturating_sub(start) as f64 / 60.0;
            }
            if let Some(curve) = &self.load_curves[i] {
                let load = match curve.of {
                    LoadOf::Site => lambda / self.scenario.total_rps.max(f64::MIN_POSITIVE),
                    LoadOf::Total => factor,
                };
                let f = curve.factor(load);
                if f > 1.0 + 1e-9 {
                    self.onset.get_or_insert(second);
                }
                p_err *= f;
            }
            p_err *= bursts[i];
            out[i].errors = binomial(&mut self.rng, n, p_err.min(1.0));
            // Multinomial over buckets as a chain of binomials.
            let mut left = n;
            let mut prev_cdf = 0.0;
            for (b, bound) in BUCKETS.iter().enumerate() {
                let cdf = lognormal_cdf(*bound, prof.latency_median, prof.latency_sigma);
                let p = if prev_cdf >= 1.0 {
                    0.0
                } else {
                    ((cdf - prev_cdf) / (1.0 - prev_cdf)).clamp(0.0, 1.0)
                };
                let k = binomial(&mut self.rng, left, p);
                out[i].buckets[b] = k;
                left -= k;
                prev_cdf = cdf;
            }
            out[i].buckets[BUCKETS.len()] = left;
        }
        out
    }

    fn window(&self, site: Site, now: u64, window: Duration) -> Counts {
        let w = window.as_secs().max(1);
        let mut c = Counts::default();
        for (s, counts) in self.seconds.iter().rev() {
            if *s > now {
                continue;
            }
            if *s + w <= now {
                break;
            }
            c.add(&counts[idx(site)]);
        }
        c
    }
}

fn binomial(rng: &mut StdRng, n: u64, p: f64) -> u64 {
    if n == 0 || p <= 0.0 {
        return 0;
    }
    if p >= 1.0 {
        return n;
    }
    Binomial::new(n, p).map(|b| b.sample(rng)).unwrap_or(0)
}

fn lognormal_cdf(x: f64, median: f64, sigma: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if sigma <= 0.0 {
        return if x >= median { 1.0 } else { 0.0 };
    }
    let z = (x.ln() - median.ln()) / sigma;
    0.5 * (1.0 + statrs::function::erf::erf(z / std::f64::consts::SQRT_2))
}

/// Prometheus' `histogram_quantile` on non-cumulative bucket counts: linear interpolation
/// inside the bucket holding the rank; the `+Inf` bucket answers the highest finite bound.
pub fn histogram_quantile(q: f64, bounds: &[f64], counts: &[u64]) -> f64 {
    let total: u64 = counts.iter().sum();
    if total == 0 || !(0.0..=1.0).contains(&q) {
        return f64::NAN;
    }
    let rank = q * total as f64;
    let mut cum = 0u64;
    for (i, c) in counts.iter().enumerate() {
        let before = cum;
        cum += c;
        if cum as f64 >= rank {
            if i >= bounds.len() {
                return bounds[bounds.len() - 1];
            }
            let lo = if i == 0 { 0.0 } else { bounds[i - 1] };
            let hi = bounds[i];
            if *c == 0 {
                return hi;
            }
            return lo + (hi - lo) * (rank - before as f64) / *c as f64;
        }
    }
    bounds[bounds.len() - 1]
}

/// The simulated world, shared by the source that measures it and whoever moves its split.
#[derive(Clone)]
pub struct SimWorld {
    inner: Arc<Mutex<World>>,
}

impl SimWorld {
    /// Starts a world at `start` with all traffic on DR, and the scenario's `warmup` of
    /// history before it (DR has been serving all along). Every pod is scraped at the
    /// warmup's first second with its counters at zero, so counts over any part of the
    /// warmup are exact, as during the run.
    pub fn new(scenario: Scenario, start: SystemTime) -> SimWorld {
        let s = unix(start);
        let n = scenario.changes.len();
        let sites = [scenario.primary, scenario.dr];
        let first = s.saturating_sub(scenario.warmup.as_secs());
        let pods = vec![PodCounters::default(); scenario.scrape.pods.max(1) as usize];
        let reached = scenario
            .changes
            .iter()
            .map(|c| match c.when {
                Trigger::AfterWeight { weight: 0, .. } => Some(s),
                _ => None,
            })
            .collect();
        let world = SimWorld {
            inner: Arc::new(Mutex::new(World {
                rng: StdRng::seed_from_u64(scenario.seed),
                bursts: Bursts::new(scenario.seed),
                load_curves: [None, None],
                reached,
                retain: RETAIN_SECS + scenario.warmup.as_secs(),
                scenario,
                start: s,
                last: first,
                share: 0.0,
                target: 0.0,
                target_weight: 0,
                sites,
                applied: vec![false; n],
                seconds: VecDeque::new(),
                pods: [pods.clone(), pods.clone()],
                scrapes: VecDeque::from([(first, [pods.clone(), pods])]),
                ramps: [None, None],
                onset: None,
            })),
        };
        world.advance_to(start);
        world
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, World> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Generates traffic up to `now` under the current split, then moves the split's target.
    pub fn set_primary_weight(&self, now: SystemTime, weight: u8) {
        let mut w = self.lock();
        let t = unix(now);
        w.advance_to(t);
        w.target_weight = weight;
        w.target = f64::from(weight) / 100.0;
        for i in 0..w.scenario.changes.len() {
            if let Trigger::AfterWeight { weight: at, .. } = w.scenario.changes[i].when
                && weight >= at
                && w.reached[i].is_none()
            {
                w.reached[i] = Some(t);
            }
        }
    }

    /// Generates traffic up to `now`.
    pub fn advance_to(&self, now: SystemTime) {
        self.lock().advance_to(unix(now));
    }

    /// Takes a measurement as of `at` (which may be in the generated past).
    pub fn measure_at(&self, m: &Measure, at: SystemTime) -> Result<Sample, MetricError> {
        self.measure(m, at)
    }

    /// Counts a site's requests over `(query.from, now]` from the simulated scrapes.
    pub fn count(&self, q: &CountQuery, now: SystemTime) -> Result<SiteCounts, MetricError> {
        let mut w = self.lock();
        let t = unix(now);
        w.advance_to(t);
        w.count(q, t)
    }

    /// When the first scripted change happened (a regression's onset), if one did.
    pub fn onset(&self) -> Option<SystemTime> {
        self.lock()
            .onset
            .map(|s| UNIX_EPOCH + Duration::from_secs(s))
    }

    /// Bad requests (errors, or slower than a bucket edge) a site served in `(from, to]`
    /// seconds: what users suffered.
    pub fn bad_served(
        &self,
        site: Site,
        counted: Counted,
        from: SystemTime,
        to: SystemTime,
    ) -> u64 {
        let w = self.lock();
        let (from, to) = (unix(from), unix(to));
        w.seconds
            .iter()
            .filter(|(s, _)| *s > from && *s <= to)
            .map(|(_, c)| c[idx(site)].bad(counted))
            .sum()
    }

    /// The primary's actual share of traffic now (after convergence).
    pub fn actual_share(&self) -> f64 {
        self.lock().share
    }

    pub(super) fn measure(&self, m: &Measure, now: SystemTime) -> Result<Sample, MetricError> {
        let mut w = self.lock();
        let t = unix(now);
        w.advance_to(t);
        let (site, window) = match m {
            Measure::RequestRate { site, window }
            | Measure::RequestCount { site, window }
            | Measure::ErrorRatio { site, window }
            | Measure::LatencyQuantile { site, window, .. }
            | Measure::BadShare { site, window, .. } => (*site, *window),
            Measure::Custom { template, .. } => {
                return match w.scenario.custom.get(template) {
                    Some(v) => Ok(Some(*v)),
                    None => Err(MetricError::Unsupported(format!(
                        "the simulator has no value for custom query `{template}`; add it to the scenario's `custom` answers"
                    ))),
                };
            }
        };
        // A site that cannot be reached and served nothing for an hour has no series at all.
        if !w.sites[idx(site)].reachable
            && w.window(site, t, Duration::from_secs(3600)).requests == 0
        {
            return Ok(None);
        }
        let c = w.window(site, t, window);
        Ok(Some(match m {
            Measure::RequestRate { .. } => c.requests as f64 / window.as_secs_f64().max(1.0),
            Measure::RequestCount { .. } => c.requests as f64,
            Measure::LatencyQuantile { quantile, .. } => {
                histogram_quantile(*quantile, &BUCKETS, &c.buckets)
            }
            Measure::ErrorRatio { .. } => c.bad(Counted::Errors) as f64 / c.requests as f64,
            Measure::BadShare { counted, .. } => c.bad(*counted) as f64 / c.requests as f64,
            Measure::Custom { .. } => unreachable!("answered above"),
        }))
    }
}

#[cfg(test)]
#[path = "world_tests.rs"]
mod tests;
