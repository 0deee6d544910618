//! Gates: the policy's checks of the primary, and their pure evaluation.
//!
//! A gate is of one of two kinds ([`GateKind`]). One with *bounds* reads a value at each
//! site: absolute bounds (`min`/`max`, an SLO on the primary) and one relative to DR
//! (`max_vs_dr`: `primary <= dr * (1 + max_vs_dr) + slack`). A *sequential* gate counts
//! bad requests at both sites and tests the primary against DR over the stage (`vs_dr`).
//! Evaluation is pure: it takes readings and gives [`GateResult`]. No data — too few
//! requests, an empty vector, NaN or ±Inf — is [`GateStatus::NoData`], never a pass.
//!
//! * `spec` — the policy's model ([`GateSpec`]) and the checks every gate shares;
//! * `error_rate`, `latency`, `query` — each kind of `gates:` entry, checked and compiled;
//! * `bounds` — evaluation against bounds; `sequential` — the sequential test.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::metrics::promql::render_template;
use crate::metrics::source::{CountReading, Counted, Measure, Reading};
use crate::weights::Site;

mod bounds;
mod error_rate;
mod latency;
mod query;
mod sequential;
mod spec;

pub use bounds::Bounds;
pub use sequential::Sequential;
pub use spec::{
    DEFAULT_HISTORY, DispersionSpec, ErrorRateGate, GateBudget, GateProblem, GateSpec, LatencyGate,
    MAX_HISTORY, MAX_WINDOW, MIN_HISTORY, MIN_WINDOW, SequentialSpec,
};

/// What a gate's numbers are, for display.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// A fraction shown as percent.
    Ratio,
    /// Seconds shown as milliseconds.
    Seconds,
    /// A plain number.
    Number,
}

impl Unit {
    /// Formats a value in this unit: `1.25%`, `420ms`, `17`.
    pub fn format(self, v: f64) -> String {
        match self {
            Unit::Ratio => format!("{:.3}%", v * 100.0),
            Unit::Seconds => format!("{:.1}ms", v * 1000.0),
            Unit::Number => format!("{v}"),
        }
    }
}

/// What a gate with bounds reads at each site.
#[derive(Debug, Clone, PartialEq)]
pub enum Metric {
    /// Errors over requests.
    ErrorRate,
    /// A latency quantile in seconds.
    Latency(f64),
    /// A policy's PromQL template.
    Query(String),
}

impl Metric {
    /// The unit of its values.
    pub fn unit(&self) -> Unit {
        match self {
            Metric::ErrorRate => Unit::Ratio,
            Metric::Latency(_) => Unit::Seconds,
            Metric::Query(_) => Unit::Number,
        }
    }
}

/// How a gate judges.
#[derive(Debug, Clone, PartialEq)]
pub enum GateKind {
    /// A value read at each site, held to bounds.
    Bounds {
        /// What is read.
        metric: Metric,
        /// The bounds it is held to.
        bounds: Bounds,
    },
    /// Bad requests counted at both sites, and a sequential test of the primary against DR.
    Sequential {
        /// What is bad.
        counted: Counted,
        /// The test.
        test: Sequential,
    },
}

/// A gate checked and turned into numbers, ready to measure and evaluate.
#[derive(Debug, Clone, PartialEq)]
pub struct Gate {
    /// The gate's name.
    pub name: String,
    /// Its own window, if it has one.
    pub window: Option<Duration>,
    /// Primary requests (in its window; for a sequential gate, in the stage) before it may
    /// pass: `analysis.min_requests`.
    pub min_requests: u64,
    /// How it judges.
    pub kind: GateKind,
}

impl Gate {
    /// The window this gate looks back over, given the stage's analysis interval.
    pub fn window(&self, interval: Duration) -> Duration {
        self.window.unwrap_or(interval)
    }

    /// Display unit of its values.
    pub fn unit(&self) -> Unit {
        match &self.kind {
            GateKind::Bounds { metric, .. } => metric.unit(),
            GateKind::Sequential { .. } => Unit::Ratio,
        }
    }

    /// The bounds of a gate with bounds; `None` for a sequential gate.
    pub fn bounds(&self) -> Option<&Bounds> {
        match &self.kind {
            GateKind::Bounds { bounds, .. } => Some(bounds),
            GateKind::Sequential { .. } => None,
        }
    }

    /// Whether the gate is a sequential test.
    pub fn is_sequential(&self) -> bool {
        matches!(self.kind, GateKind::Sequential { .. })
    }

    /// A sequential gate's test (its rates and budgets); `None` for a bounds gate.
    pub fn sequential_test(&self) -> Option<crate::judge::eprocess::Test> {
        match &self.kind {
            GateKind::Sequential { test, .. } => Some(test.test()),
            GateKind::Bounds { .. } => None,
        }
    }

    /// The measurement of this gate at a site (for a sequential gate: its bad share over
    /// the window, as preflight reads it).
    pub fn measure(&self, site: Site, window: Duration) -> Measure {
        match &self.kind {
            GateKind::Bounds { metric, .. } => match metric {
                Metric::ErrorRate => Measure::ErrorRatio { site, window },
                Metric::Latency(q) => Measure::LatencyQuantile {
                    quantile: *q,
                    site,
                    window,
                },
                Metric::Query(t) => Measure::Custom {
                    template: t.clone(),
                    site: Some(site),
                },
            },
            GateKind::Sequential { counted, .. } => match counted {
                Counted::Errors => Measure::ErrorRatio { site, window },
                Counted::SlowerThan(_) => Measure::BadShare {
                    counted: *counted,
                    site,
                    window,
                },
            },
        }
    }

    /// What a sequential gate counts as bad; `None` for other gates.
    pub fn counted(&self) -> Option<Counted> {
        match self.kind {
            GateKind::Sequential { counted, .. } => Some(counted),
            GateKind::Bounds { .. } => None,
        }
    }

    /// Whether the gate compares the primary with DR.
    pub fn is_relative(&self) -> bool {
        match &self.kind {
            GateKind::Bounds { bounds, .. } => bounds.vs_dr.is_some(),
            GateKind::Sequential { .. } => true,
        }
    }

    /// Whether the gate's query differs per site (custom queries without `{{site}}` do not).
    pub fn is_per_site(&self) -> bool {
        match &self.kind {
            GateKind::Bounds {
                metric: Metric::Query(t),
                ..
            } => render_template(t, "a", "s") != render_template(t, "b", "s"),
            _ => true,
        }
    }

    /// A human description of the bounds, e.g. `<= 1.000% and <= DR x1.5 + 0.100%`.
    pub fn describe_bounds(&self) -> String {
        match &self.kind {
            GateKind::Bounds { bounds, .. } => bounds.describe(self.unit()),
            GateKind::Sequential { counted, test } => test.describe(*counted, self.unit()),
        }
    }

    /// A result with nothing measured yet (no data), to fill in.
    fn no_result(&self) -> GateResult {
        GateResult {
            name: self.name.clone(),
            status: GateStatus::NoData,
            primary: None,
            dr: None,
            min: None,
            max: None,
            dr_breaching: false,
            unit: self.unit(),
            reason: String::new(),
            decisive: false,
            evidence: None,
            no_worse: None,
            suspect: false,
        }
    }
}

/// The readings one gate needs for one analysis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateMeasurement {
    /// The gate's name.
    pub name: String,
    /// The window the readings cover.
    #[serde(with = "crate::serde_secs")]
    pub window: Duration,
    /// Primary requests in that window (for `min_requests`).
    pub primary_requests: Reading,
    /// The gate's value at the primary.
    pub primary: Reading,
    /// The gate's value at DR.
    pub dr: Reading,
    /// Sequential gates: both sites' counts over the interval since the last analysis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<IntervalCounts>,
}

/// Both sites' counts over `(from, at]`, for a sequential gate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntervalCounts {
    /// The start of the interval (exclusive).
    pub from: SystemTime,
    /// The primary's counts.
    pub primary: CountReading,
    /// DR's counts.
    pub dr: CountReading,
    /// The gate's dispersion, measured on DR's history (`None`: not calibrated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dispersion: Option<crate::judge::eprocess::Dispersion>,
}

/// A gate's result in one analysis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateStatus {
    /// Within bounds, with enough data.
    Pass,
    /// Out of bounds.
    Fail,
    /// Not enough data to judge: never a pass.
    NoData,
    /// A sequential gate still collecting evidence either way.
    Undecided,
    /// The query failed.
    Error,
}

/// One gate's verdict in one analysis, with the numbers behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateResult {
    /// The gate.
    pub name: String,
    /// Its status.
    pub status: GateStatus,
    /// The primary's value, if it was a number.
    pub primary: Option<f64>,
    /// DR's value, if it was a number.
    pub dr: Option<f64>,
    /// The lower bound applied.
    pub min: Option<f64>,
    /// The upper bound applied (the tighter of absolute and relative).
    pub max: Option<f64>,
    /// On a failure: DR breaches the same absolute bound (a global incident).
    pub dr_breaching: bool,
    /// The unit of the values, for display.
    pub unit: Unit,
    /// Why, in words.
    pub reason: String,
    /// A failure that rolls back at once (a sequential gate's evidence of harm), rather
    /// than counting toward `failure_limit`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub decisive: bool,
    /// Sequential gates: evidence of harm, 1 at the rollback boundary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<f64>,
    /// Sequential gates: evidence of "no worse", 1 at the certification boundary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_worse: Option<f64>,
    /// Sequential gates at a final holdout's stage: above DR's earlier rate, not (yet) above
    /// DR's concurrent holdout. Decides nothing; with `analysis.probe` it sets off a probe.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspect: bool,
}

impl GateResult {
    fn no_data(mut self, why: String) -> GateResult {
        self.status = GateStatus::NoData;
        self.reason = why;
        self
    }
    fn error(mut self, why: String) -> GateResult {
        self.status = GateStatus::Error;
        self.reason = why;
        self
    }
}

/// Helpers of the gate tests.
#[cfg(test)]
mod testing {
    use super::*;

    /// The budget of the tests: min_requests 200, alpha unsplit.
    pub(crate) const BUDGET: GateBudget = GateBudget {
        min_requests: 200,
        alpha_shares: 1.0,
    };

    /// A gate compiled from its policy text (as JSON) with `budget`; panics on a problem.
    pub(crate) fn gate_with(j: serde_json::Value, budget: GateBudget) -> Gate {
        serde_json::from_value::<GateSpec>(j)
            .unwrap()
            .compile(&budget)
            .unwrap()
    }

    /// A gate compiled from its policy text (as JSON) with [`BUDGET`]; panics on a problem.
    pub(crate) fn gate(j: serde_json::Value) -> Gate {
        gate_with(j, BUDGET)
    }

    /// The problems of a gate's policy text (as JSON); panics if it compiles.
    pub(crate) fn problems(j: serde_json::Value) -> Vec<GateProblem> {
        serde_json::from_value::<GateSpec>(j)
            .unwrap()
            .compile(&BUDGET)
            .unwrap_err()
    }

    /// A measurement of requests, the primary's value and DR's.
    pub(crate) fn m(req: Reading, p: Reading, d: Reading) -> GateMeasurement {
        GateMeasurement {
            name: "g".into(),
            window: Duration::from_secs(30),
            primary_requests: req,
            primary: p,
            dr: d,
            counts: None,
        }
    }
}
