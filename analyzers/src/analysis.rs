//! One analysis: every gate measured at both sites, plus each site's request rate.
//!
//! Measuring is the only effectful part; [`Analysis::evaluate`] is pure.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::eprocess::EProcess;
use crate::gate::{Gate, GateMeasurement, GateResult, IntervalCounts};
use crate::promql::Site;
use crate::source::{CountQuery, CountReading, Measure, MetricSource, Reading};

/// The readings of one analysis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    /// When it was taken.
    pub at: SystemTime,
    /// The analysis window (the stage's interval).
    #[serde(with = "crate::serde_secs")]
    pub window: Duration,
    /// Requests per second at the primary over the window.
    pub primary_rate: Reading,
    /// Requests per second at DR over the window.
    pub dr_rate: Reading,
    /// Each gate's readings.
    pub gates: Vec<GateMeasurement>,
}

impl Analysis {
    /// The primary's observed share of requests, in [0, 1]; `None` without traffic data.
    /// A site with no series at all counts as serving nothing; a failed query gives `None`.
    pub fn primary_share(&self) -> Option<f64> {
        if self.primary_rate.is_error() || self.dr_rate.is_error() {
            return None;
        }
        let p = self.primary_rate.finite().unwrap_or(0.0);
        let d = self.dr_rate.finite().unwrap_or(0.0);
        if p + d <= 0.0 {
            None
        } else {
            Some(p / (p + d))
        }
    }

    /// Evaluates every gate against its readings. Pure, apart from the sequential gates'
    /// e-processes in `evidence` (the stage's state, keyed by gate name), which take the
    /// interval's counts.
    pub fn evaluate(
        &self,
        gates: &[Gate],
        min_requests: u64,
        dr_baselines: &BTreeMap<String, f64>,
        evidence: &mut BTreeMap<String, EProcess>,
    ) -> Vec<GateResult> {
        gates
            .iter()
            .zip(&self.gates)
            .map(|(g, m)| {
                let baseline = dr_baselines.get(&g.name).copied();
                if g.sequential.is_some() {
                    let ep = evidence.entry(g.name.clone()).or_default();
                    g.evaluate_sequential(m, self.at, ep, min_requests, baseline)
                } else {
                    g.evaluate(m, min_requests, baseline)
                }
            })
            .collect()
    }
}

/// Takes analyses: measures every gate through a [`MetricSource`].
#[derive(Clone)]
pub struct Analyzer {
    source: Arc<dyn MetricSource>,
    gates: Vec<Gate>,
}

impl Analyzer {
    /// An analyzer of `gates` reading from `source`.
    pub fn new(source: Arc<dyn MetricSource>, gates: Vec<Gate>) -> Analyzer {
        Analyzer { source, gates }
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
    pub async fn analyze(
        &self,
        now: SystemTime,
        interval: Duration,
        since: &BTreeMap<String, SystemTime>,
    ) -> Analysis {
        let rate = |site| Measure::RequestRate {
            site,
            window: interval,
        };
        let primary_rate = self.read(&rate(Site::Primary), now).await;
        let dr_rate = self.read(&rate(Site::Dr), now).await;
        let mut counts: BTreeMap<Duration, Reading> = BTreeMap::new();
        let mut gates = Vec::with_capacity(self.gates.len());
        for g in &self.gates {
            let window = g.window(interval);
            let primary_requests = match counts.get(&window) {
                Some(r) => r.clone(),
                None => {
                    let r = self
                        .read(
                            &Measure::RequestCount {
                                site: Site::Primary,
                                window,
                            },
                            now,
                        )
                        .await;
                    counts.insert(window, r.clone());
                    r
                }
            };
            if let Some(counted) = g.counted() {
                let from = since.get(&g.name).copied().unwrap_or(now - window).min(now);
                let count = |site| CountQuery {
                    counted,
                    site,
                    from,
                };
                let primary = self.count(&count(Site::Primary), now).await;
                let dr = self.count(&count(Site::Dr), now).await;
                gates.push(GateMeasurement {
                    name: g.name.clone(),
                    window,
                    primary_requests,
                    primary: Reading::Empty,
                    dr: Reading::Empty,
                    counts: Some(IntervalCounts { from, primary, dr }),
                });
                continue;
            }
            let primary = self.read(&g.measure(Site::Primary, window), now).await;
            let dr = if g.is_per_site() {
                self.read(&g.measure(Site::Dr, window), now).await
            } else {
                // The query is the same for both sites: DR has no value of its own.
                Reading::Empty
            };
            gates.push(GateMeasurement {
                name: g.name.clone(),
                window,
                primary_requests,
                primary,
                dr,
                counts: None,
            });
        }
        Analysis {
            at: now,
            window: interval,
            primary_rate,
            dr_rate,
            gates,
        }
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
