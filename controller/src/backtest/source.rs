//! The metric source of a replay: the real Prometheus, asked about the past.
//!
//! Every measurement is evaluated at the replay's virtual time. Gate queries are answered
//! from range queries over the window (one per query and chunk, at the policy's interval,
//! so a replay asks the server a few hundred times, not once per analysis); a time off that
//! grid is an instant query at that time. Chunks are sized under the server's
//! `--query.max-samples` and halved when it still refuses. Sequential gates' counts are the
//! live source's own (raw samples, resets, gaps and births), at the virtual time.
//!
//! With `--assume-plan`, the sites' request counts are re-weighted to the replayed run's
//! split by *thinning* the over-represented site (each request kept with a probability, the
//! way a load balancer would have sent it elsewhere): requests are never invented, so the
//! sequential tests keep their guarantees. Ratios and quantiles are kept as measured.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use cutover_analyzers::prometheus::PrometheusSource;
use cutover_core::Site;
use cutover_core::Weights;
use cutover_core::metrics::source::{
    CountQuery, Counted, Counts, Measure, MetricError, MetricSource, Sample,
};
use rand::SeedableRng;
use rand_distr::Distribution;

/// The most points Prometheus returns per series of a range query.
const MAX_POINTS: usize = 11_000;
/// How many series a gate query is assumed to touch when sizing chunks under
/// `--max-samples`.
const ASSUMED_SERIES: usize = 64;
/// The longest chunk read during a replay, under an analysis's deadline.
const ON_DEMAND_STEPS: usize = 240;
/// How many times a refused chunk is halved before the error is the answer.
const MAX_HALVINGS: u32 = 12;

/// What a replay could not see, for the summary.
#[derive(Debug, Default, Clone)]
pub struct Blind {
    /// Range queries the server refused as too large, answered in smaller chunks.
    pub chunks_halved: u32,
    /// Queries that failed, by message (first few kept), and how often.
    pub errors: BTreeMap<String, u64>,
    /// Counter resets seen while counting.
    pub resets: u64,
    /// Counts where a site had no requests series at all.
    pub empty_counts: u64,
    /// Range queries made, instant queries made, counts made.
    pub queries: (u64, u64, u64),
}

/// Points of one query already fetched: value by unix second (`None`: no data there).
#[derive(Default)]
struct Fetched {
    values: HashMap<i64, Option<f64>>,
}

/// Prometheus, asked about the replay's virtual time.
pub struct HistorySource {
    prom: Arc<PrometheusSource>,
    step: i64,
    end: i64,
    chunk: AtomicUsize,
    cache: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Fetched>>>>,
    split: Option<Arc<Mutex<Weights>>>,
    pairs: Mutex<HashMap<PairKey, Arc<tokio::sync::OnceCell<PairResult>>>>,
    blind: Mutex<Blind>,
}

/// Both sites' counts of one interval.
type PairResult = Result<(Counts, Counts), MetricError>;
/// What is counted, and the interval's ends (nanoseconds).
type PairKey = (String, u128, u128);
/// Intervals whose pair of counts is kept: one analysis needs its own only.
const PAIRS_KEPT: usize = 256;

fn secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn nanos(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// Whether an error says the query was too large for the server (samples, points, time).
fn too_large(e: &MetricError) -> bool {
    let m = e.to_string();
    m.contains("too many samples")
        || m.contains("maximum resolution")
        || m.contains("timed out")
        || m.contains("timeout")
}

/// How much of each site's traffic to keep so that the split is `w`'s (the larger share
/// kept whole): `(primary, dr)` in `[0, 1]`, from what each site really served.
pub fn keep(primary: f64, dr: f64, w: Weights) -> (f64, f64) {
    let w = f64::from(w.primary()) / 100.0;
    if !(primary >= 0.0 && dr >= 0.0) || primary + dr <= 0.0 {
        return (1.0, 1.0);
    }
    if w <= 0.0 {
        return (0.0, 1.0);
    }
    if w >= 1.0 {
        return (1.0, 0.0);
    }
    let a = primary * (1.0 - w);
    let b = dr * w;
    if a > b {
        (b / a, 1.0)
    } else if b > 0.0 {
        (1.0, a / b)
    } else {
        (1.0, 1.0)
    }
}

/// `counts` thinned: each request kept with probability `p`, errors among them alike.
fn thin(c: Counts, p: f64, rng: &mut rand::rngs::StdRng) -> Counts {
    if p >= 1.0 {
        return c;
    }
    let draw = |n: f64, rng: &mut rand::rngs::StdRng| -> f64 {
        let n = n.max(0.0).round() as u64;
        match rand_distr::Binomial::new(n, p.clamp(0.0, 1.0)) {
            Ok(b) => b.sample(rng) as f64,
            Err(_) => 0.0,
        }
    };
    let bad = draw(c.bad, rng);
    let good = draw((c.total - c.bad).max(0.0), rng);
    Counts {
        total: bad + good,
        bad,
        resets: c.resets,
    }
}

impl HistorySource {
    /// Prometheus asked about a window ending at `end`, on a grid of `step` (the policy's
    /// interval); with `split`, counts are re-weighted to it (`--assume-plan`).
    pub fn new(
        prom: Arc<PrometheusSource>,
        step: Duration,
        end: SystemTime,
        max_samples: usize,
        split: Option<Arc<Mutex<Weights>>>,
    ) -> HistorySource {
        let chunk = (max_samples / ASSUMED_SERIES).clamp(1, MAX_POINTS);
        HistorySource {
            prom,
            step: step.as_secs().max(1) as i64,
            end: secs(end).ceil() as i64,
            chunk: AtomicUsize::new(chunk),
            cache: Mutex::new(HashMap::new()),
            split,
            pairs: Mutex::new(HashMap::new()),
            blind: Mutex::new(Blind::default()),
        }
    }

    /// Whether the server answers a query about `at` at all (before a replay: a server
    /// that cannot be reached would make every analysis an error).
    pub async fn check(&self, at: SystemTime) -> Result<(), MetricError> {
        self.prom
            .query_one_at("vector(1)", Some(secs(at)))
            .await
            .map(|_| ())
    }

    /// What could not be seen so far.
    pub fn blind(&self) -> Blind {
        self.blind.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn note_error(&self, e: &MetricError) {
        let mut b = self.blind.lock().unwrap_or_else(|p| p.into_inner());
        let n = b.errors.len();
        let msg = e.to_string();
        if n < 20 || b.errors.contains_key(&msg) {
            *b.errors.entry(msg).or_default() += 1;
        }
    }

    /// The value of `promql` at `t` (unix seconds): from the fetched chunk that holds `t`,
    /// else a new chunk from `t` on (or one instant query, off whole seconds).
    async fn value_at(&self, promql: &str, t: f64) -> Result<Sample, MetricError> {
        if t.fract() != 0.0 {
            self.blind
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .queries
                .1 += 1;
            return self.prom.query_one_at(promql, Some(t)).await;
        }
        let t = t as i64;
        let entry = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(promql.to_string())
            .or_default()
            .clone();
        let mut fetched = entry.lock().await;
        if let Some(v) = fetched.values.get(&t) {
            return Ok(*v);
        }
        // Off the prefetched grid (a stage whose burn-in shifted its analyses, a count of
        // history before the window): a short chunk from here, quick to answer.
        self.fetch(promql, t, ON_DEMAND_STEPS, &mut fetched).await?;
        Ok(fetched.values.get(&t).copied().flatten())
    }

    /// Fetches `promql` over the grid from `t` (at most `max_steps` points, fewer when the
    /// server refuses) into `fetched`; returns the last grid point fetched.
    async fn fetch(
        &self,
        promql: &str,
        t: i64,
        max_steps: usize,
        fetched: &mut Fetched,
    ) -> Result<i64, MetricError> {
        let mut halvings = 0;
        loop {
            let steps = self
                .chunk
                .load(Ordering::Relaxed)
                .clamp(1, max_steps.max(1)) as i64;
            let last = (t + self.step * (steps - 1)).min(self.end.max(t));
            self.blind
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .queries
                .0 += 1;
            match self
                .prom
                .query_range(promql, t, last, Duration::from_secs(self.step as u64))
                .await
            {
                Ok(series) => {
                    if series.len() > 1 {
                        return Err(MetricError::NotOneNumber {
                            query: promql.to_string(),
                            found: format!("{} series", series.len()),
                        });
                    }
                    let mut k = t;
                    while k <= last {
                        fetched.values.insert(k, None);
                        k += self.step;
                    }
                    for s in series {
                        for (at, v) in s.samples {
                            fetched.values.insert(at.round() as i64, Some(v));
                        }
                    }
                    return Ok(last);
                }
                Err(e) if too_large(&e) && steps > 1 && halvings < MAX_HALVINGS => {
                    halvings += 1;
                    self.chunk.store((steps / 2) as usize, Ordering::Relaxed);
                    self.blind
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .chunks_halved += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads each of `queries` over the whole window from `from`, on the grid, in chunks,
    /// before a replay: the replay's analyses then find their values without waiting under
    /// their deadline. A query that fails here is asked again when an analysis needs it
    /// (and its error is that analysis's).
    pub async fn prefetch(&self, queries: &[String], from: SystemTime) {
        for q in queries {
            let entry = self
                .cache
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(q.clone())
                .or_default()
                .clone();
            let mut fetched = entry.lock().await;
            let mut t = secs(from).ceil() as i64;
            // Bounded: every pass moves `t` past a fetched chunk, up to the end.
            while t <= self.end {
                if fetched.values.contains_key(&t) {
                    t += self.step;
                    continue;
                }
                match self.fetch(q, t, MAX_POINTS, &mut fetched).await {
                    Ok(last) => t = last + self.step,
                    Err(e) => {
                        self.note_error(&e);
                        break;
                    }
                }
            }
        }
    }

    /// `promql` at every grid point of `[from, to]` (the policy's interval apart), as it
    /// really was (never re-weighted): `(unix seconds, value)` where it had a finite value.
    /// For `cutover tune`'s distributions; chunked like every other range query.
    pub async fn series(
        &self,
        promql: &str,
        from: SystemTime,
        to: SystemTime,
    ) -> Result<Vec<(i64, f64)>, MetricError> {
        self.prefetch(&[promql.to_string()], from).await;
        let (mut t, end) = (secs(from).ceil() as i64, secs(to).floor() as i64);
        let mut out = Vec::new();
        while t <= end {
            if let Some(v) = self.value_at(promql, t as f64).await?
                && v.is_finite()
            {
                out.push((t, v));
            }
            t += self.step;
        }
        Ok(out)
    }

    /// Both sites' counts over `(from, now]`, asked once for the two sites' queries.
    async fn pair(&self, counted: Counted, from: SystemTime, now: SystemTime) -> PairResult {
        let key = (format!("{counted:?}"), nanos(from), nanos(now));
        let cell = {
            let mut pairs = self.pairs.lock().unwrap_or_else(|p| p.into_inner());
            if pairs.len() >= PAIRS_KEPT && !pairs.contains_key(&key) {
                pairs.clear();
            }
            pairs.entry(key).or_default().clone()
        };
        cell.get_or_init(|| async {
            let q = |site| CountQuery {
                counted,
                site,
                from,
            };
            let (qp, qd) = (q(Site::Primary), q(Site::Dr));
            let (p, d) = tokio::join!(self.raw_count(&qp, now), self.raw_count(&qd, now));
            Ok((p?, d?))
        })
        .await
        .clone()
    }

    async fn raw_count(&self, q: &CountQuery, now: SystemTime) -> Result<Counts, MetricError> {
        self.blind
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .queries
            .2 += 1;
        let c = self.prom.count(q, now).await;
        let mut b = self.blind.lock().unwrap_or_else(|p| p.into_inner());
        if let Ok(c) = &c {
            b.resets += u64::from(c.resets);
            if c.total == 0.0 {
                b.empty_counts += 1;
            }
        }
        c
    }

    fn weights(&self) -> Option<Weights> {
        self.split
            .as_ref()
            .map(|s| *s.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The share of a site's traffic kept at `t` under `--assume-plan` (1 without it), from
    /// both sites' request rates over `window`.
    async fn kept(&self, site: Site, window: Duration, t: f64) -> Result<f64, MetricError> {
        let Some(w) = self.weights() else {
            return Ok(1.0);
        };
        let rate = |site| self.prom.render(&Measure::RequestRate { site, window });
        let (rp, rd) = (rate(Site::Primary), rate(Site::Dr));
        let (p, d) = tokio::join!(self.value_at(&rp, t), self.value_at(&rd, t));
        let (p, d) = (p?.unwrap_or(0.0), d?.unwrap_or(0.0));
        let (kp, kd) = keep(p, d, w);
        Ok(match site {
            Site::Primary => kp,
            Site::Dr => kd,
        })
    }
}

#[async_trait]
impl MetricSource for HistorySource {
    fn describe(&self) -> String {
        format!("{} (replayed)", self.prom.describe())
    }

    fn render(&self, m: &Measure) -> String {
        self.prom.render(m)
    }

    fn query_timeout(&self) -> Option<Duration> {
        // A chunk is one larger query: give it longer than a live analysis would.
        self.prom.query_timeout().map(|t| t * 4)
    }

    async fn measure(&self, m: &Measure, now: SystemTime) -> Result<Sample, MetricError> {
        let t = secs(now);
        let r = self.value_at(&self.prom.render(m), t).await;
        let r = match (m, r) {
            (
                Measure::RequestRate { site, window } | Measure::RequestCount { site, window },
                Ok(Some(v)),
            ) => Ok(Some(v * self.kept(*site, *window, t).await?)),
            (_, r) => r,
        };
        if let Err(e) = &r {
            self.note_error(e);
        }
        r
    }

    async fn count(&self, q: &CountQuery, now: SystemTime) -> Result<Counts, MetricError> {
        let r = match self.weights() {
            None => self.raw_count(q, now).await,
            Some(w) => self.pair(q.counted, q.from, now).await.map(|(p, d)| {
                let (kp, kd) = keep(p.total, d.total, w);
                let (c, k) = match q.site {
                    Site::Primary => (p, kp),
                    Site::Dr => (d, kd),
                };
                // Seeded by the interval and the site: the same replay draws the same.
                let seed = (nanos(now) ^ nanos(q.from).rotate_left(17)) as u64
                    ^ matches!(q.site, Site::Dr) as u64;
                thin(c, k, &mut rand::rngs::StdRng::seed_from_u64(seed))
            }),
        };
        if let Err(e) = &r {
            self.note_error(e);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeping_thins_the_over_represented_site_to_the_plan() {
        let w = |p| Weights::new(p, 100 - p).unwrap();
        // 50/50 really; the plan says 10 %: keep a ninth of the primary, all of DR.
        let (kp, kd) = keep(500.0, 500.0, w(10));
        assert!((kp - 1.0 / 9.0).abs() < 1e-12 && kd == 1.0);
        assert!(((500.0 * kp) / (500.0 * kp + 500.0) - 0.1).abs() < 1e-12);
        // 10/90 really; the plan says 50 %: keep a ninth of DR.
        let (kp, kd) = keep(100.0, 900.0, w(50));
        assert!(kp == 1.0 && (kd - 1.0 / 9.0).abs() < 1e-12);
        assert_eq!(keep(100.0, 900.0, Weights::ALL_DR), (0.0, 1.0));
        assert_eq!(keep(0.0, 0.0, w(50)), (1.0, 1.0));
    }

    #[test]
    fn thinning_never_invents_requests() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let c = Counts {
            total: 1000.0,
            bad: 10.0,
            resets: 1,
        };
        for _ in 0..100 {
            let t = thin(c, 0.3, &mut rng);
            assert!(t.total <= 1000.0 && t.bad <= 10.0 && t.bad <= t.total);
        }
        assert_eq!(thin(c, 1.0, &mut rng), c);
        assert_eq!(thin(c, 0.0, &mut rng).total, 0.0);
    }
}
