//! Taking one analysis: every gate measured at both sites, plus each site's request rate,
//! concurrently and under one deadline. The result, [`cutover_core::Analysis`], is judged by
//! the core.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, SystemTime};

use futures::StreamExt;

use cutover_core::Analysis;
use cutover_core::Site;
use cutover_core::judge::eprocess::{BLOCK, Dispersion, Tally};
use cutover_core::judge::gate::{Gate, GateKind, GateMeasurement, IntervalCounts};
use cutover_core::metrics::source::{
    CountQuery, CountReading, Measure, MetricError, MetricSource, Reading,
};

/// Where a gate's readings will be found among an analysis's answers.
enum Planned {
    /// A sequential gate: both sites' counts over `(from, now]`.
    Counts {
        from: SystemTime,
        primary: usize,
        dr: usize,
    },
    /// A gate with bounds: its value at the primary and, if it differs per site, at DR.
    Values { primary: usize, dr: Option<usize> },
}

/// The answer of one query of an analysis.
enum Answer {
    Read(Reading),
    Count(CountReading),
}

/// One query of an analysis, in flight.
type Job<'a> = Pin<Box<dyn Future<Output = Answer> + Send + 'a>>;

/// Runs `jobs` concurrently until all are done or `limit` has passed; unfinished jobs are
/// dropped (which cancels their requests) and give `None`.
async fn all_within<T>(
    jobs: Vec<Pin<Box<dyn Future<Output = T> + Send + '_>>>,
    limit: Duration,
) -> Vec<Option<T>> {
    let mut jobs: Vec<Option<_>> = jobs.into_iter().map(Some).collect();
    let mut out: Vec<Option<T>> = jobs.iter().map(|_| None).collect();
    let timer = tokio::time::sleep(limit);
    tokio::pin!(timer);
    std::future::poll_fn(|cx| {
        let mut waiting = false;
        for (slot, answer) in jobs.iter_mut().zip(out.iter_mut()) {
            if let Some(job) = slot {
                match job.as_mut().poll(cx) {
                    Poll::Ready(v) => {
                        *answer = Some(v);
                        *slot = None;
                    }
                    Poll::Pending => waiting = true,
                }
            }
        }
        if !waiting || timer.as_mut().poll(cx).is_ready() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    out
}

/// How many reads one analysis of `gates` at `interval` makes of the metric source: both
/// sites' request rates, the primary's request count per distinct window, and each gate's
/// reads (a counted gate: one count per site; otherwise one per site, or one for a query
/// without a site). The same planning as [`Analyzer::analyze`]; for `cutover fleet plan`'s
/// query load.
pub fn reads_per_analysis(gates: &[Gate], interval: Duration) -> usize {
    let windows: std::collections::BTreeSet<Duration> =
        gates.iter().map(|g| g.window(interval)).collect();
    2 + windows.len()
        + gates
            .iter()
            .map(|g| {
                if g.counted().is_some() || g.is_per_site() {
                    2
                } else {
                    1
                }
            })
            .sum::<usize>()
}

/// A gate's dispersion as measured, when, and whether on (nearly) all of its history.
#[derive(Debug, Clone, Copy)]
struct Calibration {
    dispersion: Dispersion,
    until: SystemTime,
    /// When the gate was first calibrated: once `history` has passed since, what is missing
    /// from the history is DR being idle, not Prometheus being young.
    first: SystemTime,
    complete: bool,
}

/// How long an incomplete calibration (a young Prometheus) is used before DR's history is
/// counted again.
const RECALIBRATE: Duration = Duration::from_secs(300);

/// How many of a calibration's one-minute blocks are counted at once.
pub const CALIBRATION_IN_FLIGHT: usize = 16;

/// Takes analyses: measures every gate through a [`MetricSource`].
#[derive(Clone)]
pub struct Analyzer {
    source: Arc<dyn MetricSource>,
    gates: Vec<Gate>,
    /// Each sequential gate's dispersion, when it was measured and whether on (nearly) all
    /// of its history.
    calibrated: Arc<Mutex<BTreeMap<String, Calibration>>>,
}

impl Analyzer {
    /// An analyzer of `gates` reading from `source`.
    pub fn new(source: Arc<dyn MetricSource>, gates: Vec<Gate>) -> Analyzer {
        Analyzer {
            source,
            gates,
            calibrated: Arc::default(),
        }
    }

    /// The gates, in policy order.
    pub fn gates(&self) -> &[Gate] {
        &self.gates
    }

    /// The metric source.
    pub fn source(&self) -> &Arc<dyn MetricSource> {
        &self.source
    }

    /// Measures every gate at both sites, and both sites' request rates, as of `now`.
    /// Sequential gates count over `(since[gate], now]` (default: the gate's window).
    /// Failures become [`Reading::Error`]; this never fails as a whole.
    ///
    /// Every query runs at once, under one deadline: the source's query timeout or the
    /// interval, whichever is shorter. A query still unanswered then is an error (and so its
    /// gate's result, which counts toward `consecutive_error_limit`): a slow source makes
    /// one analysis take at most the deadline, not the sum of its queries' timeouts.
    pub async fn analyze(
        &self,
        now: SystemTime,
        interval: Duration,
        since: &BTreeMap<String, SystemTime>,
    ) -> Analysis {
        let deadline = self
            .source
            .query_timeout()
            .map_or(interval, |t| t.min(interval));
        // Plan every query first: reads by index into `reads`, counts into `counts`.
        let rate = |site| Measure::RequestRate {
            site,
            window: interval,
        };
        let mut reads: Vec<Measure> = vec![rate(Site::Primary), rate(Site::Dr)];
        let mut counts: Vec<CountQuery> = Vec::new();
        let mut request_counts: BTreeMap<Duration, usize> = BTreeMap::new();
        let mut planned = Vec::with_capacity(self.gates.len());
        for g in &self.gates {
            let window = g.window(interval);
            let requests = *request_counts.entry(window).or_insert_with(|| {
                reads.push(Measure::RequestCount {
                    site: Site::Primary,
                    window,
                });
                reads.len() - 1
            });
            let mut read = |m: Measure| {
                reads.push(m);
                reads.len() - 1
            };
            let plan = if let Some(counted) = g.counted() {
                let from = since.get(&g.name).copied().unwrap_or(now - window).min(now);
                let mut count = |site| {
                    counts.push(CountQuery {
                        counted,
                        site,
                        from,
                    });
                    counts.len() - 1
                };
                let (primary, dr) = (count(Site::Primary), count(Site::Dr));
                Planned::Counts { from, primary, dr }
            } else {
                let primary = read(g.measure(Site::Primary, window));
                // A query that is the same for both sites gives DR no value of its own.
                let dr = g.is_per_site().then(|| read(g.measure(Site::Dr, window)));
                Planned::Values { primary, dr }
            };
            planned.push((g, window, requests, plan));
        }
        let mut dispersions: BTreeMap<String, Dispersion> = BTreeMap::new();
        for (g, _, _, plan) in &planned {
            if let Planned::Counts { from, .. } = plan
                && let Some(d) = self.dispersion(g, *from, deadline).await
            {
                dispersions.insert(g.name.clone(), d);
            }
        }

        let late = || {
            format!(
                "no answer within {}, the analysis deadline (the shorter of the query timeout and the interval)",
                cutover_core::units::Span(deadline)
            )
        };
        let mut jobs: Vec<Job<'_>> = Vec::with_capacity(reads.len() + counts.len());
        for m in &reads {
            jobs.push(Box::pin(
                async move { Answer::Read(self.read(m, now).await) },
            ));
        }
        for q in &counts {
            jobs.push(Box::pin(
                async move { Answer::Count(self.count(q, now).await) },
            ));
        }
        let mut answers = all_within(jobs, deadline).await.into_iter();
        let mut read_answers: Vec<Reading> = Vec::with_capacity(reads.len());
        for _ in &reads {
            read_answers.push(match answers.next().flatten() {
                Some(Answer::Read(r)) => r,
                _ => Reading::Error(late()),
            });
        }
        let count_answers: Vec<CountReading> = answers
            .map(|a| match a {
                Some(Answer::Count(c)) => c,
                _ => CountReading::Error(late()),
            })
            .collect();

        let gates = planned
            .into_iter()
            .map(|(g, window, requests, plan)| {
                let primary_requests = read_answers[requests].clone();
                match plan {
                    Planned::Counts { from, primary, dr } => GateMeasurement {
                        name: g.name.clone(),
                        window,
                        primary_requests,
                        primary: Reading::Empty,
                        dr: Reading::Empty,
                        counts: Some(IntervalCounts {
                            from,
                            primary: count_answers[primary].clone(),
                            dr: count_answers[dr].clone(),
                            dispersion: dispersions.get(&g.name).copied(),
                        }),
                    },
                    Planned::Values { primary, dr } => GateMeasurement {
                        name: g.name.clone(),
                        window,
                        primary_requests,
                        primary: read_answers[primary].clone(),
                        dr: dr.map_or(Reading::Empty, |i| read_answers[i].clone()),
                        counts: None,
                    },
                }
            })
            .collect();
        Analysis {
            at: now,
            window: interval,
            primary_rate: read_answers[0].clone(),
            dr_rate: read_answers[1].clone(),
            gates,
            guards: Vec::new(),
        }
    }

    /// A sequential gate's dispersion: measured on DR's counts over the gate's `history`
    /// before `until`, in one-minute blocks, and kept once the history was (nearly) all
    /// there; until then measured again every five minutes (a young Prometheus gains
    /// history as the run goes). `None` for a gate that assumes Poisson counts, or when counting the
    /// history failed (the gate then reports an error for the interval).
    /// The history's blocks are counted concurrently (at most [`CALIBRATION_IN_FLIGHT`] at
    /// once), under the analysis's `deadline`: a slow source delays the first analysis by at
    /// most that.
    async fn dispersion(
        &self,
        g: &Gate,
        until: SystemTime,
        deadline: Duration,
    ) -> Option<Dispersion> {
        let GateKind::Sequential { test, counted } = &g.kind else {
            return None;
        };
        let history = test.history?;
        if let Some(c) = self.lock().get(&g.name)
            && (c.complete || until.duration_since(c.until).unwrap_or_default() < RECALIBRATE)
        {
            return Some(c.dispersion);
        }
        let n = (history.as_secs() / BLOCK.as_secs()).max(1) as usize;
        let start = until - BLOCK * n as u32;
        let queries: Vec<CountQuery> = (0..n)
            .map(|k| CountQuery {
                counted: *counted,
                site: Site::Dr,
                from: start + BLOCK * k as u32,
            })
            .collect();
        // At most `CALIBRATION_IN_FLIGHT` blocks are asked at once: a day's history is 1440
        // blocks, and Prometheus queues queries past its own concurrency limit anyway.
        type Counted = Result<cutover_core::metrics::source::Counts, MetricError>;
        let jobs: Vec<Pin<Box<dyn Future<Output = Counted> + Send + '_>>> = queries
            .iter()
            .map(|q| {
                Box::pin(async move { self.source.count(q, q.from + BLOCK).await })
                    as Pin<Box<dyn Future<Output = Counted> + Send + '_>>
            })
            .collect();
        let answers = tokio::time::timeout(
            deadline,
            futures::stream::iter(jobs)
                .buffered(CALIBRATION_IN_FLIGHT)
                .collect::<Vec<_>>(),
        )
        .await;
        let Ok(answers) = answers else {
            tracing::warn!(gate = %g.name, "counting DR's history to calibrate dispersion took longer than the analysis deadline");
            return None;
        };
        let mut blocks = Vec::with_capacity(n);
        for answer in answers {
            match answer {
                Ok(c) => blocks.push(Tally {
                    total: c.total.max(0.0),
                    bad: c.bad.clamp(0.0, c.total.max(0.0)),
                }),
                Err(e) => {
                    tracing::warn!(gate = %g.name, error = %e, "counting DR's history to calibrate dispersion failed");
                    return None;
                }
            }
        }
        let d = Dispersion::estimate(&blocks);
        let first = self
            .lock()
            .get(&g.name)
            .map_or(until, |c| c.first.min(until));
        tracing::debug!(
            gate = %g.name,
            blocks = d.blocks,
            index = d.index,
            kappa = d.kappa,
            "dispersion of DR's bad requests measured"
        );
        self.lock().insert(
            g.name.clone(),
            Calibration {
                dispersion: d,
                until,
                first,
                complete: u64::from(d.blocks) * 10 >= n as u64 * 8
                    || until.duration_since(first).unwrap_or_default() >= history,
            },
        );
        Some(d)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Calibration>> {
        self.calibrated.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn count(&self, q: &CountQuery, now: SystemTime) -> CountReading {
        let r = self.source.count(q, now).await;
        if let Err(e) = &r {
            tracing::debug!(site = ?q.site, error = %e, "counting failed");
        }
        r.into()
    }

    async fn read(&self, m: &Measure, now: SystemTime) -> Reading {
        let r = self.source.measure(m, now).await;
        if let Err(e) = &r {
            tracing::debug!(query = %self.source.render(m), error = %e, "measurement failed");
        }
        r.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use cutover_core::judge::gate::{GateBudget, GateSpec, GateStatus};
    use cutover_core::metrics::source::{Counts, MetricError, Sample};

    /// Answers every query after `delay`, with a number that tells the query apart.
    struct Source {
        delay: Duration,
        timeout: Option<Duration>,
    }

    fn value_of(m: &Measure) -> f64 {
        let off = |s: &Site| if *s == Site::Primary { 0.0 } else { 1.0 };
        match m {
            Measure::RequestRate { site, .. } => 10.0 + off(site),
            Measure::RequestCount { site, .. } => 1000.0 + off(site),
            Measure::ErrorRatio { site, .. } => 0.001 + off(site) / 1000.0,
            Measure::LatencyQuantile { site, .. } => 0.1 + off(site) / 10.0,
            Measure::Custom { site, .. } => 7.0 + site.as_ref().map_or(0.0, off),
            Measure::BadShare { .. } => 0.5,
        }
    }

    #[async_trait]
    impl MetricSource for Source {
        fn describe(&self) -> String {
            "test source".into()
        }
        fn render(&self, m: &Measure) -> String {
            format!("{m:?}")
        }
        fn query_timeout(&self) -> Option<Duration> {
            self.timeout
        }
        async fn measure(&self, m: &Measure, _now: SystemTime) -> Result<Sample, MetricError> {
            tokio::time::sleep(self.delay).await;
            Ok(Some(value_of(m)))
        }
        async fn count(&self, q: &CountQuery, _now: SystemTime) -> Result<Counts, MetricError> {
            tokio::time::sleep(self.delay).await;
            let bad = if q.site == Site::Primary { 3.0 } else { 4.0 };
            Ok(Counts {
                total: 1000.0,
                bad,
                resets: 0,
            })
        }
    }

    fn gates() -> Vec<Gate> {
        [
            serde_json::json!({"name": "errors", "error_rate": {"max": "1%"}}),
            serde_json::json!({"name": "p99", "window": "1m", "latency": {"quantile": 0.99, "max_vs_dr": "50%"}}),
            serde_json::json!({"name": "depth", "query": "q{s=\"{{site}}\"}", "max": 100}),
            serde_json::json!({"name": "global", "query": "up", "max": 100}),
            serde_json::json!({"name": "seq", "error_rate": {"vs_dr": {"tolerance": "50%"}}}),
        ]
        .into_iter()
        .map(|j| {
            serde_json::from_value::<GateSpec>(j)
                .unwrap()
                .compile(&GateBudget::new(100, 5, 1))
                .unwrap()
        })
        .collect()
    }

    #[tokio::test]
    async fn every_reading_lands_at_its_gate_and_site() {
        let source = Source {
            delay: Duration::ZERO,
            timeout: None,
        };
        let a = Analyzer::new(Arc::new(source), gates())
            .analyze(SystemTime::now(), Duration::from_secs(30), &BTreeMap::new())
            .await;
        assert_eq!(a.primary_rate, Reading::Value(10.0));
        assert_eq!(a.dr_rate, Reading::Value(11.0));
        let g = |i: usize| &a.gates[i];
        assert_eq!(g(0).primary, Reading::Value(0.001));
        assert_eq!(g(0).dr, Reading::Value(0.002));
        assert_eq!(g(0).primary_requests, Reading::Value(1000.0));
        assert_eq!(g(1).window, Duration::from_secs(60));
        assert_eq!(g(1).primary, Reading::Value(0.1));
        assert_eq!(g(1).dr, Reading::Value(0.2));
        assert_eq!(g(2).primary, Reading::Value(7.0));
        assert_eq!(g(2).dr, Reading::Value(8.0));
        assert_eq!(g(3).dr, Reading::Empty, "a site-less query has no DR value");
        let c = g(4).counts.as_ref().unwrap();
        let bad = |r: &CountReading| match r {
            CountReading::Counted(c) => c.bad,
            CountReading::Error(e) => panic!("{e}"),
        };
        assert_eq!((bad(&c.primary), bad(&c.dr)), (3.0, 4.0));
    }

    #[test]
    fn a_negative_rate_gives_no_share() {
        let a = |p: f64, d: f64| Analysis {
            at: SystemTime::UNIX_EPOCH,
            window: Duration::from_secs(30),
            primary_rate: Reading::Value(p),
            dr_rate: Reading::Value(d),
            gates: Vec::new(),
            guards: Vec::new(),
        };
        assert_eq!(a(1.0, 3.0).primary_share(), Some(0.25));
        assert_eq!(a(-1.0, 3.0).primary_share(), None);
        assert_eq!(a(5.0, -1.0).primary_share(), None);
    }

    #[tokio::test]
    async fn a_slow_source_makes_one_analysis_take_the_deadline_and_its_gates_errors() {
        // Each answer takes 20 s; the query timeout is 300 ms. Run one after another, the
        // 13 queries would take minutes; under one deadline the analysis takes 300 ms.
        let source = Source {
            delay: Duration::from_secs(20),
            timeout: Some(Duration::from_millis(300)),
        };
        let analyzer = Analyzer::new(Arc::new(source), gates());
        let t = std::time::Instant::now();
        let a = analyzer
            .analyze(SystemTime::now(), Duration::from_secs(30), &BTreeMap::new())
            .await;
        let took = t.elapsed();
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(3),
            "{took:?}"
        );
        assert!(a.primary_rate.is_error());
        let results = a.evaluate(analyzer.gates(), &BTreeMap::new(), &mut BTreeMap::new());
        for r in &results {
            assert_eq!(r.status, GateStatus::Error, "{r:?}");
            assert!(r.reason.contains("no answer within 300ms"), "{r:?}");
        }
        // The interval bounds the deadline too, when it is the shorter.
        let source = Source {
            delay: Duration::from_secs(20),
            timeout: None,
        };
        let t = std::time::Instant::now();
        let a = Analyzer::new(Arc::new(source), gates())
            .analyze(
                SystemTime::now(),
                Duration::from_millis(200),
                &BTreeMap::new(),
            )
            .await;
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
        assert!(a.gates[0].primary.is_error());
    }
}
