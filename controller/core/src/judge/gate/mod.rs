//! Gates: the policy's checks of the primary, and their pure evaluation.
//!
//! A gate has bounds: absolute (`min`/`max`, an SLO on the primary) and relative to DR
//! (`max_vs_dr`: `primary <= dr * (1 + max_vs_dr) + slack`). Evaluation is pure: it takes
//! readings and gives [`GateResult`]. No data — too few requests, an empty vector, NaN or
//! ±Inf — is [`GateStatus::NoData`], never a pass.

use std::time::{Duration, SystemTime};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::judge::eprocess::{Conclusion, EProcess, Tally};
use crate::metrics::promql::render_template;
use crate::metrics::source::{CountReading, Counted, Counts, Measure, Reading};
use crate::units::{Percent, Span};
use crate::weights::Site;

/// The shortest gate window: Prometheus resolves time in milliseconds and scrapes every few
/// seconds, so a shorter window holds no two samples to rate.
pub const MIN_WINDOW: Duration = Duration::from_secs(1);
/// The longest gate window: 30 days, past any usual retention (Prometheus's default is 15).
pub const MAX_WINDOW: Duration = Duration::from_secs(30 * 86_400);

/// One gate of a policy (`gates:`): exactly one of `error_rate`, `latency` or `query`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GateSpec {
    /// A unique name, used in logs, metrics and reports.
    pub name: String,
    /// Look-back window of the gate's queries, `1s` to `30d`; default: the stage's analysis
    /// interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Span>,
    /// The primary's share of requests that are errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<ErrorRateGate>,
    /// A latency quantile of the primary, from the `traffic.latency` histogram.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<LatencyGate>,
    /// Any PromQL returning one number; `{{site}}` and `{{service}}` are replaced by the
    /// site's label value and the service name, escaped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// With `query`: the lowest passing value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// With `query`: the highest passing value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// With `query`: how far above DR's value the primary's may be, e.g. `20%`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_vs_dr: Option<Percent>,
    /// With `query` and `max_vs_dr`: an absolute allowance added to DR's value. Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack: Option<f64>,
}

/// `error_rate:` bounds: `max` and/or `max_vs_dr`, or a sequential `vs_dr`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorRateGate {
    /// The highest passing error rate of the primary, e.g. `1%`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<Percent>,
    /// How far the primary's error rate may exceed DR's, relatively: `50%` allows 1.5x DR's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_vs_dr: Option<Percent>,
    /// With `max_vs_dr`: an absolute allowance in percentage points added to DR's rate, so
    /// that a DR at 0 % errors does not fail the primary on its first error. Default `0.1%`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack: Option<Percent>,
    /// A sequential test against DR on error *counts* (anytime-valid; see `eprocess`):
    /// rolls back on evidence of harm, certifies the stage on evidence of "no worse".
    /// Judges alone: not together with `max`/`max_vs_dr` in the same gate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vs_dr: Option<SequentialSpec>,
}

/// `vs_dr:` of a sequential gate: the primary is acceptable while its bad-request rate is
/// at most `max(DR's x (1 + tolerance), absolute_tolerance)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SequentialSpec {
    /// How much worse than DR is still acceptable, relatively: `50%` accepts 1.5x DR's rate.
    pub tolerance: Percent,
    /// The false-rollback budget of this gate over the whole run, e.g. `0.01`. Split evenly
    /// over the stages and the policy's sequential gates. Default `0.01`.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// The chance, per stage, of certifying a primary that is in truth worse than the
    /// tolerance (and so advancing). A false certificate only moves to the next stage, where
    /// harm is tested again with more traffic. Default `0.05`.
    #[serde(default = "default_beta")]
    pub beta: f64,
    /// A rate that is acceptable whatever DR's, e.g. `0.1%`: lets a service with almost no
    /// errors be certified without waiting for errors to compare. Default `0%` (none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub absolute_tolerance: Option<Percent>,
}

fn default_alpha() -> f64 {
    0.01
}

fn default_beta() -> f64 {
    0.05
}

impl SequentialSpec {
    /// Checks the test's numbers; problems name `field.*`.
    fn compile(&self, field: &str, p: &mut impl FnMut(&str, String)) -> Option<Sequential> {
        let mut ok = true;
        let tol = self.tolerance.fraction();
        if !(tol > 0.0 && tol <= 10.0) {
            p(
                &format!("{field}.tolerance"),
                format!(
                    "{} is not a tolerance; write how much worse than DR is acceptable, between 1% and 1000%, e.g. 50%",
                    self.tolerance
                ),
            );
            ok = false;
        }
        for (name, v, what, example) in [
            ("alpha", self.alpha, "false-rollback", "0.01"),
            ("beta", self.beta, "false-certification", "0.05"),
        ] {
            if !(v > 0.0 && v <= 0.5) {
                p(
                    &format!("{field}.{name}"),
                    format!(
                        "{v} is not a {what} budget; write a probability above 0 and at most 0.5, e.g. {example}"
                    ),
                );
                ok = false;
            }
        }
        let absolute = self
            .absolute_tolerance
            .map(Percent::fraction)
            .unwrap_or(0.0);
        if absolute >= 1.0 {
            p(
                &format!("{field}.absolute_tolerance"),
                format!(
                    "{} accepts every rate; write a rate below 100%, e.g. 0.1%",
                    self.absolute_tolerance
                        .map(|a| a.to_string())
                        .unwrap_or_default()
                ),
            );
            ok = false;
        }
        ok.then_some(Sequential {
            tolerance: tol,
            absolute,
            alpha: self.alpha,
            alpha_stage: self.alpha,
            beta: self.beta,
        })
    }
}

/// `latency:` bounds: `quantile` with `max` and/or `max_vs_dr`, or `above` with `vs_dr`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LatencyGate {
    /// The quantile, strictly between 0 and 1, e.g. `0.99`; with `max` or `max_vs_dr`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantile: Option<f64>,
    /// The highest passing latency of the primary at that quantile, e.g. `500ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<Span>,
    /// How far the primary's quantile may exceed DR's, relatively, e.g. `20%`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_vs_dr: Option<Percent>,
    /// With `max_vs_dr`: an absolute allowance added to DR's quantile. Default `10ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack: Option<Span>,
    /// With `vs_dr`: the histogram bucket edge that makes a request "slow", e.g. `250ms`
    /// (pick an edge near DR's p99). Must be an `le` of `traffic.latency`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub above: Option<Span>,
    /// A sequential test against DR on counts of requests slower than `above`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vs_dr: Option<SequentialSpec>,
}

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

/// What a gate measures.
#[derive(Debug, Clone, PartialEq)]
pub enum Metric {
    /// Errors over requests.
    ErrorRate,
    /// A latency quantile in seconds.
    Latency(f64),
    /// A policy's PromQL template.
    Query(String),
    /// The share of requests slower than this bucket edge, in seconds (sequential gates).
    SlowShare(f64),
}

/// A compiled sequential test (see [`crate::eprocess`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sequential {
    /// Relative tolerance: `ρ₀ = 1 + tolerance`.
    pub tolerance: f64,
    /// Absolute tolerance `δ` (0: none).
    pub absolute: f64,
    /// The gate's alpha over the whole run.
    pub alpha: f64,
    /// This gate's alpha per stage: `alpha / (stages x sequential gates)`; set by the plan.
    pub alpha_stage: f64,
    /// The false-certification budget per stage.
    pub beta: f64,
}

impl Sequential {
    /// The test of one stage.
    pub fn test(&self) -> crate::judge::eprocess::Test {
        crate::judge::eprocess::Test {
            ratio: 1.0 + self.tolerance,
            absolute: self.absolute,
            alpha: self.alpha_stage,
            beta: self.beta,
        }
    }
}

/// A gate checked and turned into numbers, ready to measure and evaluate.
#[derive(Debug, Clone, PartialEq)]
pub struct Gate {
    /// The gate's name.
    pub name: String,
    /// What it measures.
    pub metric: Metric,
    /// Its own window, if it has one.
    pub window: Option<Duration>,
    /// Absolute lower bound.
    pub min: Option<f64>,
    /// Absolute upper bound.
    pub max: Option<f64>,
    /// Relative bound to DR: `(ratio, slack)` meaning `primary <= dr * (1 + ratio) + slack`.
    pub vs_dr: Option<(f64, f64)>,
    /// A sequential test instead of bounds.
    pub sequential: Option<Sequential>,
    /// Display unit.
    pub unit: Unit,
}

/// A problem in a gate's definition: the field under `gates[i]` and what is wrong with it.
pub type GateProblem = (String, String);

impl GateSpec {
    /// Checks the gate and turns it into a [`Gate`]; every problem names its field.
    pub fn compile(&self) -> Result<Gate, Vec<GateProblem>> {
        let mut problems: Vec<GateProblem> = Vec::new();
        let mut p = |field: &str, msg: String| problems.push((field.to_string(), msg));
        if self.name.trim().is_empty() {
            p("name", "a gate needs a name".into());
        }
        let kinds = [
            self.error_rate.is_some(),
            self.latency.is_some(),
            self.query.is_some(),
        ]
        .iter()
        .filter(|k| **k)
        .count();
        if kinds != 1 {
            p(
                "",
                format!(
                    "gate `{}` has {kinds} kinds; give exactly one of error_rate, latency or query",
                    self.name
                ),
            );
        }
        if self.query.is_none() {
            for (field, set) in [
                ("min", self.min.is_some()),
                ("max", self.max.is_some()),
                ("max_vs_dr", self.max_vs_dr.is_some()),
                ("slack", self.slack.is_some()),
            ] {
                if set {
                    p(
                        field,
                        format!(
                            "`{field}` at gate level belongs to a `query` gate; put it inside error_rate: or latency:"
                        ),
                    );
                }
            }
        }
        if let Some(w) = self.window {
            if w.get() < MIN_WINDOW {
                p(
                    "window",
                    format!(
                        "{w} is shorter than 1s: Prometheus cannot rate over it; write e.g. 1m"
                    ),
                );
            } else if w.get() > MAX_WINDOW {
                p(
                    "window",
                    format!(
                        "{w} is longer than 30 days: past any usual Prometheus retention, and every sample in it would be loaded; write e.g. 5m"
                    ),
                );
            }
        }
        let window = self.window.map(Span::get);
        let mut gate = Gate {
            name: self.name.clone(),
            metric: Metric::ErrorRate,
            window,
            min: None,
            max: None,
            vs_dr: None,
            sequential: None,
            unit: Unit::Ratio,
        };
        if let Some(e) = &self.error_rate {
            if let Some(v) = &e.vs_dr {
                if e.max.is_some() || e.max_vs_dr.is_some() || e.slack.is_some() {
                    p(
                        "error_rate.vs_dr",
                        "a sequential gate (vs_dr) judges alone; put max/max_vs_dr/slack in a gate of its own"
                            .into(),
                    );
                }
                gate.sequential = v.compile("error_rate.vs_dr", &mut p);
            } else if e.max.is_none() && e.max_vs_dr.is_none() {
                p(
                    "error_rate",
                    "give max (e.g. 1%), max_vs_dr (e.g. 50%) or vs_dr (e.g. { tolerance: 50%, alpha: 0.01 })"
                        .into(),
                );
            }
            if let Some(m) = e.max
                && m.fraction() > 1.0
            {
                p(
                    "error_rate.max",
                    format!("{m} is above 100%; an error rate is at most 100%"),
                );
            }
            if e.slack.is_some() && e.max_vs_dr.is_none() {
                p("error_rate.slack", "slack goes with max_vs_dr".into());
            }
            gate.max = e.max.map(Percent::fraction);
            gate.vs_dr = e.max_vs_dr.map(|r| {
                (
                    r.fraction(),
                    e.slack.map(Percent::fraction).unwrap_or(0.001),
                )
            });
        } else if let Some(l) = &self.latency {
            if let Some(v) = &l.vs_dr {
                if l.max.is_some() || l.max_vs_dr.is_some() || l.slack.is_some() {
                    p(
                        "latency.vs_dr",
                        "a sequential gate (vs_dr) judges alone; put quantile/max/max_vs_dr in a gate of its own"
                            .into(),
                    );
                }
                if l.quantile.is_some() {
                    p(
                        "latency.quantile",
                        "a sequential latency gate counts requests slower than `above`; it has no quantile"
                            .into(),
                    );
                }
                match l.above {
                    Some(a) if !a.get().is_zero() => {
                        gate.metric = Metric::SlowShare(a.get().as_secs_f64());
                    }
                    _ => p(
                        "latency.above",
                        "a sequential latency gate needs `above`: a bucket edge of traffic.latency, e.g. 250ms (near DR's p99)"
                            .into(),
                    ),
                }
                gate.sequential = v.compile("latency.vs_dr", &mut p);
                gate.unit = Unit::Ratio;
            } else {
                match l.quantile {
                    Some(q) if q > 0.0 && q < 1.0 => gate.metric = Metric::Latency(q),
                    Some(q) => p(
                        "latency.quantile",
                        format!("{q} is not strictly between 0 and 1; write e.g. 0.99 for p99"),
                    ),
                    None => p(
                        "latency.quantile",
                        "missing; write e.g. quantile: 0.99 for p99".into(),
                    ),
                }
                if l.max.is_none() && l.max_vs_dr.is_none() {
                    p(
                        "latency",
                        "give max (e.g. 500ms), max_vs_dr (e.g. 20%), or above with vs_dr".into(),
                    );
                }
                if l.above.is_some() {
                    p("latency.above", "above goes with vs_dr".into());
                }
                gate.unit = Unit::Seconds;
            }
            if l.slack.is_some() && l.max_vs_dr.is_none() {
                p("latency.slack", "slack goes with max_vs_dr".into());
            }
            gate.max = l.max.map(|m| m.get().as_secs_f64());
            gate.vs_dr = l.max_vs_dr.map(|r| {
                (
                    r.fraction(),
                    l.slack.map(|s| s.get().as_secs_f64()).unwrap_or(0.010),
                )
            });
        } else if let Some(q) = &self.query {
            if q.trim().is_empty() {
                p(
                    "query",
                    "the query is empty; write PromQL returning one number".into(),
                );
            }
            if self.min.is_none() && self.max.is_none() && self.max_vs_dr.is_none() {
                p(
                    "",
                    format!(
                        "query gate `{}` has no bound; give min, max or max_vs_dr",
                        self.name
                    ),
                );
            }
            if let (Some(lo), Some(hi)) = (self.min, self.max)
                && lo > hi
            {
                p("min", format!("min {lo} is above max {hi}"));
            }
            if self.slack.is_some() && self.max_vs_dr.is_none() {
                p("slack", "slack goes with max_vs_dr".into());
            }
            if self.max_vs_dr.is_some() && !q.contains("{{site}}") {
                p(
                    "max_vs_dr",
                    "comparing with DR needs `{{site}}` in the query, so it can run once per site"
                        .into(),
                );
            }
            gate.metric = Metric::Query(q.clone());
            gate.unit = Unit::Number;
            gate.min = self.min;
            gate.max = self.max;
            gate.vs_dr = self
                .max_vs_dr
                .map(|r| (r.fraction(), self.slack.unwrap_or(0.0)));
        }
        if gate.sequential.is_some() && self.window.is_some() {
            problems.push((
                "window".to_string(),
                "a sequential gate has no window: it counts every request since the stage began; remove window"
                    .to_string(),
            ));
        }
        if problems.is_empty() {
            Ok(gate)
        } else {
            Err(problems)
        }
    }
}

impl Gate {
    /// The window this gate looks back over, given the stage's analysis interval.
    pub fn window(&self, interval: Duration) -> Duration {
        self.window.unwrap_or(interval)
    }

    /// The measurement of this gate at a site.
    pub fn measure(&self, site: Site, window: Duration) -> Measure {
        match &self.metric {
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
            Metric::SlowShare(edge) => Measure::BadShare {
                counted: Counted::SlowerThan(*edge),
                site,
                window,
            },
        }
    }

    /// What a sequential gate counts as bad; `None` for other gates.
    pub fn counted(&self) -> Option<Counted> {
        self.sequential?;
        Some(match self.metric {
            Metric::SlowShare(edge) => Counted::SlowerThan(edge),
            _ => Counted::Errors,
        })
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
            unit: self.unit,
            reason: String::new(),
            decisive: false,
            evidence: None,
            no_worse: None,
        }
    }

    /// Why a finite value is impossible for this gate's metric, if it is: a rate, a ratio or
    /// a latency is never negative (a broken query or counter is, and must not pass).
    fn impossible(&self, v: f64) -> Option<&'static str> {
        if v >= 0.0 {
            return None;
        }
        match self.metric {
            Metric::ErrorRate => Some(
                "below zero, and an error rate never is: check that traffic.requests and traffic.errors select counters",
            ),
            Metric::Latency(_) => Some(
                "below zero, and a latency never is: check that traffic.latency selects a histogram's _bucket counters",
            ),
            Metric::SlowShare(_) => Some(
                "below zero, and a share of requests never is: check that traffic.latency selects a histogram's _bucket counters",
            ),
            Metric::Query(_) => None,
        }
    }

    /// Whether the gate compares the primary with DR.
    pub fn is_relative(&self) -> bool {
        self.vs_dr.is_some() || self.sequential.is_some()
    }

    /// Whether the gate's query differs per site (custom queries without `{{site}}` do not).
    pub fn is_per_site(&self) -> bool {
        match &self.metric {
            Metric::Query(t) => render_template(t, "a", "s") != render_template(t, "b", "s"),
            _ => true,
        }
    }

    /// A human description of the bounds, e.g. `<= 1.000% and <= DR x1.5 + 0.100%`.
    pub fn describe_bounds(&self) -> String {
        let mut parts = Vec::new();
        if let Some(lo) = self.min {
            parts.push(format!(">= {}", self.unit.format(lo)));
        }
        if let Some(hi) = self.max {
            parts.push(format!("<= {}", self.unit.format(hi)));
        }
        if let Some((r, s)) = self.vs_dr {
            parts.push(format!("<= DR x{} + {}", 1.0 + r, self.unit.format(s)));
        }
        if let Some(q) = self.sequential {
            let what = match self.metric {
                Metric::SlowShare(e) => format!("share slower than {}", Unit::Seconds.format(e)),
                _ => "error rate".into(),
            };
            parts.push(format!(
                "{what} <= DR x{}{} (sequential: rollback at alpha {} over the run, {:.2e} per stage; certify at beta {} per stage)",
                1.0 + q.tolerance,
                if q.absolute > 0.0 {
                    format!(" or {}", self.unit.format(q.absolute))
                } else {
                    String::new()
                },
                q.alpha,
                q.alpha_stage,
                q.beta
            ));
        }
        parts.join(" and ")
    }

    /// Evaluates one measurement of this gate. Pure.
    ///
    /// `dr_baseline` is DR's last good value, used only when DR serves no traffic (the
    /// 100 % stage) so that relative gates still have something to compare with.
    pub fn evaluate(
        &self,
        m: &GateMeasurement,
        min_requests: u64,
        dr_baseline: Option<f64>,
    ) -> GateResult {
        let mut r = self.no_result();
        r.primary = m.primary.finite();
        r.dr = m.dr.finite();
        r.min = self.min;
        if let Reading::Error(e) = &m.primary_requests {
            return r.error(format!("counting primary requests failed: {e}"));
        }
        if let Reading::Error(e) = &m.primary {
            return r.error(format!("primary query failed: {e}"));
        }
        if self.is_relative()
            && let Reading::Error(e) = &m.dr
        {
            return r.error(format!("DR query failed: {e}"));
        }
        let requests = match &m.primary_requests {
            Reading::Value(v) if *v < 0.0 => {
                return r.error(format!(
                    "the primary's request count is {v}, below zero: a count never is; check that traffic.requests selects a counter"
                ));
            }
            Reading::Value(v) if v.is_finite() => *v,
            other => {
                return r.no_data(format!(
                    "no data: counting primary requests returned {}",
                    describe_nodata(other)
                ));
            }
        };
        if requests < min_requests as f64 {
            return r.no_data(format!(
                "{} primary requests in the window, fewer than min_requests {min_requests}",
                requests.round()
            ));
        }
        let Some(value) = m.primary.finite() else {
            return r.no_data(format!(
                "no data: the primary query returned {}",
                describe_nodata(&m.primary)
            ));
        };
        for (site, v) in [("primary", Some(value)), ("DR", m.dr.finite())] {
            if let Some(v) = v
                && let Some(why) = self.impossible(v)
            {
                return r.error(format!("the {site} value {v} is {why}"));
            }
        }
        let mut upper = self.max;
        if let Some((ratio, slack)) = self.vs_dr {
            let (dr, from) = match (m.dr.finite(), dr_baseline) {
                (Some(d), _) => (d, "DR"),
                (None, Some(b)) => (b, "DR's last value"),
                (None, None) => {
                    return r.no_data(format!(
                        "DR query gave {}: nothing to compare with",
                        describe_nodata(&m.dr)
                    ));
                }
            };
            let bound = dr * (1.0 + ratio) + slack;
            upper = Some(upper.map_or(bound, |u| u.min(bound)));
            r.reason = format!("{from} {}", self.unit.format(dr));
        }
        r.max = upper;
        if r.reason.is_empty()
            && let Some(d) = m.dr.finite()
        {
            r.reason = format!("DR {}", self.unit.format(d));
        }
        let low = self.min.is_some_and(|lo| value < lo);
        let high = upper.is_some_and(|hi| value > hi);
        if low || high {
            r.status = GateStatus::Fail;
            r.dr_breaching = m.dr.finite().is_some_and(|d| {
                self.min.is_some_and(|lo| d < lo) || self.max.is_some_and(|hi| d > hi)
            });
            r.reason = format!(
                "primary {} is {} {}{}",
                self.unit.format(value),
                if low { "below" } else { "above" },
                self.unit.format(if low {
                    self.min.unwrap_or(0.0)
                } else {
                    upper.unwrap_or(0.0)
                }),
                if r.reason.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", r.reason)
                }
            );
        } else {
            r.status = GateStatus::Pass;
            r.reason = format!(
                "primary {} within {}",
                self.unit.format(value),
                self.describe_bounds()
            );
        }
        r
    }
}

impl Gate {
    /// Evaluates a sequential gate: feeds the interval's counts to the stage's e-process and
    /// reads its conclusion. `dr_baseline` is DR's earlier rate, for a stage where DR serves
    /// nothing. Pure apart from `ep`, which is the gate's state within the stage.
    pub fn evaluate_sequential(
        &self,
        m: &GateMeasurement,
        at: SystemTime,
        ep: &mut EProcess,
        min_requests: u64,
        dr_baseline: Option<f64>,
    ) -> GateResult {
        let mut r = self.no_result();
        let Some(seq) = self.sequential else {
            return r.error("not a sequential gate".into());
        };
        let Some(c) = &m.counts else {
            return r.error("no counts were taken".into());
        };
        let (p, d) = match (&c.primary, &c.dr) {
            (CountReading::Error(e), _) => {
                return r.error(format!(
                    "counting at the primary failed: {e}; the interval is counted with the next analysis"
                ));
            }
            (_, CountReading::Error(e)) => {
                return r.error(format!(
                    "counting at DR failed: {e}; the interval is counted with the next analysis"
                ));
            }
            (CountReading::Counted(p), CountReading::Counted(d)) => (*p, *d),
        };
        for (site, c) in [("primary", p), ("DR", d)] {
            if c.total < 0.0 || c.bad < 0.0 || !c.total.is_finite() || !c.bad.is_finite() {
                return r.error(format!(
                    "counted {} requests ({} bad) at the {site}: a count is a finite number of zero or more; check that the traffic: selectors select counters",
                    c.total, c.bad
                ));
            }
        }
        let tally = |c: Counts| Tally {
            total: c.total.max(0.0),
            bad: c.bad.clamp(0.0, c.total.max(0.0)),
        };
        let test = seq.test();
        ep.observe(test.ratio, tally(p), tally(d));
        ep.counted_to = Some(at);
        let j = ep.judge(test, dr_baseline);
        r.primary = ep.primary.rate();
        r.dr = dr_baseline.or(ep.dr.rate());
        r.max = r.dr.map(|d| (d * test.ratio).max(test.absolute));
        r.evidence = Some(j.harm);
        r.no_worse = Some(j.no_worse);
        let fmt = |t: Tally| match t.rate() {
            Some(x) => format!("{} ({}/{})", self.unit.format(x), t.bad, t.total),
            None => "no requests".into(),
        };
        let numbers = format!(
            "primary {} vs DR {} this stage",
            fmt(ep.primary),
            match dr_baseline {
                Some(b) => format!("{} (earlier stages)", self.unit.format(b)),
                None => fmt(ep.dr),
            }
        );
        let bound = format!(
            "DR x{}{}",
            test.ratio,
            if test.absolute > 0.0 {
                format!(" or {}", self.unit.format(test.absolute))
            } else {
                String::new()
            }
        );
        match j.conclusion {
            Conclusion::Harm => {
                r.status = GateStatus::Fail;
                r.decisive = true;
                r.reason = format!(
                    "evidence of harm crossed its boundary (e >= 1/{:.2e}): the primary is worse than {bound}; {numbers}",
                    test.alpha
                );
            }
            Conclusion::NoWorse if p.total <= 0.0 => {
                r.reason = format!(
                    "certified no worse than {bound}, but no primary requests in the last interval; {numbers}"
                );
            }
            Conclusion::NoWorse if ep.primary.total < min_requests as f64 => {
                r.status = GateStatus::Undecided;
                r.reason = format!(
                    "certified, but {} primary requests this stage, fewer than min_requests {min_requests}; {numbers}",
                    ep.primary.total
                );
            }
            Conclusion::NoWorse => {
                r.status = GateStatus::Pass;
                r.reason = format!("certified no worse than {bound}; {numbers}");
            }
            Conclusion::Undecided if ep.primary.total <= 0.0 => {
                r.reason = format!("no primary requests counted yet; {numbers}");
            }
            Conclusion::Undecided => {
                r.status = GateStatus::Undecided;
                r.reason = format!(
                    "collecting evidence (harm {:.2}, no worse {:.2} of their boundaries); {numbers}",
                    j.harm, j.no_worse
                );
            }
        }
        r
    }
}

fn describe_nodata(r: &Reading) -> String {
    match r {
        Reading::Value(v) => format!("{v} (not a finite number)"),
        Reading::Empty => "an empty vector (no series matched)".into(),
        other => other.to_string(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml_like: serde_json::Value) -> Gate {
        serde_json::from_value::<GateSpec>(yaml_like)
            .unwrap()
            .compile()
            .unwrap()
    }

    fn m(req: Reading, p: Reading, d: Reading) -> GateMeasurement {
        GateMeasurement {
            name: "g".into(),
            window: Duration::from_secs(30),
            primary_requests: req,
            primary: p,
            dr: d,
            counts: None,
        }
    }

    #[test]
    fn no_data_is_never_a_pass() {
        let g = spec(serde_json::json!({"name": "g", "error_rate": {"max": "1%"}}));
        let v = Reading::Value;
        for (case, meas) in [
            ("NaN", m(v(500.0), v(f64::NAN), v(0.0))),
            ("+Inf", m(v(500.0), v(f64::INFINITY), v(0.0))),
            ("empty", m(v(500.0), Reading::Empty, v(0.0))),
            ("too few requests", m(v(199.0), v(0.0), v(0.0))),
            ("no requests at all", m(Reading::Empty, v(0.0), v(0.0))),
            ("NaN requests", m(v(f64::NAN), v(0.0), v(0.0))),
        ] {
            let r = g.evaluate(&meas, 200, None);
            assert_eq!(r.status, GateStatus::NoData, "{case}: {r:?}");
        }
        let r = g.evaluate(&m(v(200.0), v(0.0), v(0.0)), 200, None);
        assert_eq!(r.status, GateStatus::Pass);
    }

    #[test]
    fn negative_values_are_errors_not_passes() {
        let v = Reading::Value;
        let err = spec(serde_json::json!({"name": "g", "error_rate": {"max": "1%"}}));
        let p99 = spec(
            serde_json::json!({"name": "p", "latency": {"quantile": 0.99, "max": "500ms", "max_vs_dr": "20%"}}),
        );
        for (case, g, meas) in [
            ("error rate -1", &err, m(v(500.0), v(-1.0), v(0.0))),
            ("latency -1s", &p99, m(v(500.0), v(-1.0), v(0.2))),
            ("DR latency -1s", &p99, m(v(500.0), v(0.2), v(-1.0))),
            ("request count -1", &err, m(v(-1.0), v(0.0), v(0.0))),
        ] {
            let r = g.evaluate(&meas, 200, None);
            assert_eq!(r.status, GateStatus::Error, "{case}: {r:?}");
            assert!(r.reason.contains("below zero"), "{case}: {}", r.reason);
        }
        // A custom query may well be negative (a difference, a temperature).
        let q = spec(serde_json::json!({"name": "q", "query": "x", "min": -5}));
        assert_eq!(
            q.evaluate(&m(v(500.0), v(-1.0), Reading::Empty), 200, None)
                .status,
            GateStatus::Pass
        );
    }

    #[test]
    fn no_data_says_what_came_back() {
        let g = spec(serde_json::json!({"name": "g", "error_rate": {"max": "1%"}}));
        let v = Reading::Value;
        let r = g.evaluate(&m(Reading::Empty, v(0.0), v(0.0)), 200, None);
        assert_eq!(
            r.reason,
            "no data: counting primary requests returned an empty vector (no series matched)"
        );
        let r = g.evaluate(&m(v(f64::NAN), v(0.0), v(0.0)), 200, None);
        assert_eq!(
            r.reason,
            "no data: counting primary requests returned NaN (not a finite number)"
        );
        let r = g.evaluate(&m(v(500.0), v(f64::NAN), v(0.0)), 200, None);
        assert!(
            r.reason
                .starts_with("no data: the primary query returned NaN"),
            "{r:?}"
        );
        let r = g.evaluate(&m(v(12.0), v(0.0), v(0.0)), 200, None);
        assert!(r.reason.starts_with("12 primary requests"), "{r:?}");
    }

    #[test]
    fn absolute_and_relative_bounds() {
        let g =
            spec(serde_json::json!({"name": "g", "error_rate": {"max": "1%", "max_vs_dr": "50%"}}));
        let v = Reading::Value;
        // DR at 0.4%: relative bound 0.4*1.5+0.1 = 0.7% is tighter than 1%.
        let r = g.evaluate(&m(v(1000.0), v(0.008), v(0.004)), 200, None);
        assert_eq!(r.status, GateStatus::Fail, "{r:?}");
        assert!((r.max.unwrap() - 0.007).abs() < 1e-12);
        assert!(!r.dr_breaching);
        let r = g.evaluate(&m(v(1000.0), v(0.006), v(0.004)), 200, None);
        assert_eq!(r.status, GateStatus::Pass, "{r:?}");
        // DR also above 1%: a failing primary is part of a global incident.
        let r = g.evaluate(&m(v(1000.0), v(0.05), v(0.04)), 200, None);
        assert_eq!(r.status, GateStatus::Fail);
        assert!(r.dr_breaching);
    }

    #[test]
    fn relative_gate_uses_baseline_only_when_dr_is_silent() {
        let g = spec(
            serde_json::json!({"name": "g", "latency": {"quantile": 0.99, "max_vs_dr": "20%"}}),
        );
        let v = Reading::Value;
        let r = g.evaluate(&m(v(1000.0), v(0.3), Reading::Empty), 200, None);
        assert_eq!(r.status, GateStatus::NoData);
        let r = g.evaluate(&m(v(1000.0), v(0.3), Reading::Empty), 200, Some(0.2));
        assert_eq!(r.status, GateStatus::Fail, "0.3 > 0.2*1.2+0.01: {r:?}");
        let r = g.evaluate(
            &m(v(1000.0), v(0.3), Reading::Error("x".into())),
            200,
            Some(0.2),
        );
        assert_eq!(r.status, GateStatus::Error);
    }

    #[test]
    fn query_gate_min_and_errors() {
        let g = spec(serde_json::json!({"name": "g", "query": "up{site=\"{{site}}\"}", "min": 1}));
        let v = Reading::Value;
        assert_eq!(
            g.evaluate(&m(v(300.0), v(0.0), v(1.0)), 200, None).status,
            GateStatus::Fail
        );
        assert_eq!(
            g.evaluate(
                &m(v(300.0), Reading::Error("down".into()), v(1.0)),
                200,
                None
            )
            .status,
            GateStatus::Error
        );
    }

    #[test]
    fn compile_names_the_field_at_fault() {
        let bad = |j: serde_json::Value| {
            serde_json::from_value::<GateSpec>(j)
                .unwrap()
                .compile()
                .unwrap_err()
        };
        let e = bad(serde_json::json!({"name": "g", "latency": {"quantile": 1.5, "max": "1s"}}));
        assert_eq!(e[0].0, "latency.quantile");
        let e = bad(serde_json::json!({"name": "g", "error_rate": {"max": "1%"}, "query": "x"}));
        assert!(e[0].1.contains("exactly one"));
        let e = bad(serde_json::json!({"name": "g", "query": "x"}));
        assert!(e[0].1.contains("no bound"));
        let e = bad(serde_json::json!({"name": "g", "error_rate": {}}));
        assert_eq!(e[0].0, "error_rate");
    }
}
