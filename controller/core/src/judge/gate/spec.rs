//! The policy's model of a gate (`gates:` in the policy file) and its compilation into a
//! [`Gate`]: the checks every gate shares here, each kind's own in its file.
//!
//! The serde and JSON-schema shape of these types is the policy file's contract
//! (`policies/policy.schema.json`): change it only on purpose.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Gate;
use crate::units::{Percent, Span};

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
    /// How bursty bad requests are taken to be. `auto` (default): measured on DR's own
    /// counts over `history` before the first analysis, and every likelihood ratio tempered
    /// so that bursts are not read as harm (see `analyzers/README.md`). `poisson`: no
    /// tempering, for counts known to be Poisson (a quiet service, a simulator).
    #[serde(default, skip_serializing_if = "DispersionSpec::is_auto")]
    pub dispersion: DispersionSpec,
    /// How far back DR's history is counted, in one-minute blocks, to measure the
    /// dispersion: `10m` to `24h`. Default `2h` (120 blocks: the 90 % upper bound on a
    /// Poisson service's dispersion index is then 1.19, against 1.29 at `1h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<Span>,
}

/// `vs_dr.dispersion`: how bursty bad requests are taken to be.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DispersionSpec {
    /// Measured on DR's history; likelihood ratios tempered accordingly.
    #[default]
    Auto,
    /// Poisson counts assumed: no tempering.
    Poisson,
}

impl DispersionSpec {
    fn is_auto(&self) -> bool {
        *self == DispersionSpec::Auto
    }
}

/// The default `vs_dr.history`.
pub const DEFAULT_HISTORY: Duration = Duration::from_secs(7200);
/// The shortest `vs_dr.history`: ten one-minute blocks.
pub const MIN_HISTORY: Duration = Duration::from_secs(600);
/// The longest `vs_dr.history`.
pub const MAX_HISTORY: Duration = Duration::from_secs(86_400);

fn default_alpha() -> f64 {
    0.01
}

fn default_beta() -> f64 {
    0.05
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

/// What every gate of a run is compiled with, besides its own spec.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GateBudget {
    /// `analysis.min_requests`: primary requests before a gate may pass.
    pub min_requests: u64,
    /// How many shares a sequential gate's `alpha` is split into: the stages times the
    /// sequential gates, at least 1. Each stage's test gets `alpha / alpha_shares`.
    pub alpha_shares: f64,
}

impl GateBudget {
    /// The budget of a run of `stages` stages with `sequential_gates` sequential gates: each
    /// gate's alpha is split evenly over both, so that a whole run of an acceptable primary
    /// rolls back with probability at most the largest gate alpha.
    pub fn new(min_requests: u64, stages: usize, sequential_gates: usize) -> GateBudget {
        GateBudget {
            min_requests,
            alpha_shares: (sequential_gates * stages).max(1) as f64,
        }
    }
}

/// A problem in a gate's definition: the field under `gates[i]` and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", if field.is_empty() { String::new() } else { format!("{field}: ") })]
pub struct GateProblem {
    /// The field at fault, relative to the gate, e.g. `error_rate.max`; empty: the gate.
    pub field: String,
    /// What is wrong with it, and the fix.
    pub message: String,
}

/// The problems found while compiling one gate, in the order they are reported.
#[derive(Debug, Default)]
pub(super) struct Problems {
    found: Vec<GateProblem>,
    last: Vec<GateProblem>,
}

impl Problems {
    /// A problem with `field` (relative to the gate; empty: the gate itself).
    pub(super) fn push(&mut self, field: &str, message: impl Into<String>) {
        self.found.push(GateProblem {
            field: field.to_string(),
            message: message.into(),
        });
    }

    /// A problem reported after every other (that the gate's kind found).
    pub(super) fn push_last(&mut self, field: &str, message: impl Into<String>) {
        self.last.push(GateProblem {
            field: field.to_string(),
            message: message.into(),
        });
    }

    fn into_vec(mut self) -> Vec<GateProblem> {
        self.found.append(&mut self.last);
        self.found
    }
}

impl GateSpec {
    /// Whether the gate is a sequential test (`vs_dr:` in `error_rate:` or `latency:`).
    pub fn is_sequential(&self) -> bool {
        self.error_rate.as_ref().is_some_and(|e| e.vs_dr.is_some())
            || self.latency.as_ref().is_some_and(|l| l.vs_dr.is_some())
    }

    /// Checks the gate and turns it into a [`Gate`] that holds everything it is judged with
    /// (its share of `budget` included); every problem names its field.
    pub fn compile(&self, budget: &GateBudget) -> Result<Gate, Vec<GateProblem>> {
        let mut p = Problems::default();
        if self.name.trim().is_empty() {
            p.push("name", "a gate needs a name");
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
            p.push(
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
                    p.push(
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
                p.push(
                    "window",
                    format!(
                        "{w} is shorter than 1s: Prometheus cannot rate over it; write e.g. 1m"
                    ),
                );
            } else if w.get() > MAX_WINDOW {
                p.push(
                    "window",
                    format!(
                        "{w} is longer than 30 days: past any usual Prometheus retention, and every sample in it would be loaded; write e.g. 5m"
                    ),
                );
            }
        }
        let kind = if let Some(e) = &self.error_rate {
            e.compile(budget, self.window, &mut p)
        } else if let Some(l) = &self.latency {
            l.compile(budget, self.window, &mut p)
        } else if let Some(q) = &self.query {
            self.compile_query(q, &mut p)
        } else {
            None
        };
        let problems = p.into_vec();
        match kind {
            Some(kind) if problems.is_empty() => Ok(Gate {
                name: self.name.clone(),
                window: self.window.map(Span::get),
                min_requests: budget.min_requests,
                kind,
            }),
            _ => Err(problems),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::problems;
    use super::*;
    use crate::judge::gate::GateKind;

    #[test]
    fn compile_names_the_field_at_fault() {
        let e =
            problems(serde_json::json!({"name": "g", "error_rate": {"max": "1%"}, "query": "x"}));
        assert_eq!(e[0].field, "");
        assert!(e[0].message.contains("exactly one"));
        let e = problems(
            serde_json::json!({"name": " ", "latency": {"quantile": 0.9, "max": "1s"}, "max": 1}),
        );
        assert_eq!((e[0].field.as_str(), e[1].field.as_str()), ("name", "max"));
        assert!(e[1].message.contains("belongs to a `query` gate"), "{e:?}");
        let e = problems(
            serde_json::json!({"name": "g", "window": "500ms", "error_rate": {"max": "1%"}}),
        );
        assert_eq!(e[0].field, "window");
        assert!(e[0].message.contains("shorter than 1s"));
        let e = problems(
            serde_json::json!({"name": "g", "window": "31d", "error_rate": {"max": "1%"}}),
        );
        assert!(e[0].message.contains("longer than 30 days"));
        let e = problems(serde_json::json!({"name": "g"}));
        assert_eq!(e.len(), 1);
        assert!(e[0].message.contains("has 0 kinds"));
        assert_eq!(
            e[0].to_string(),
            "gate `g` has 0 kinds; give exactly one of error_rate, latency or query"
        );
        let e =
            problems(serde_json::json!({"name": "g", "error_rate": {"max": "1%", "slack": "1%"}}));
        assert_eq!(
            e[0].to_string(),
            "error_rate.slack: slack goes with max_vs_dr"
        );
    }

    #[test]
    fn the_gate_holds_min_requests_and_its_share_of_alpha() {
        let s: GateSpec = serde_json::from_value(
            serde_json::json!({"name": "s", "error_rate": {"vs_dr": {"tolerance": "50%", "alpha": 0.03}}}),
        )
        .unwrap();
        let budget = GateBudget::new(250, 5, 2);
        assert_eq!(budget.alpha_shares, 10.0);
        assert_eq!(GateBudget::new(1, 5, 0).alpha_shares, 1.0);
        let g = s.compile(&budget).unwrap();
        assert_eq!(g.min_requests, 250);
        let GateKind::Sequential { test, .. } = g.kind else {
            panic!("{g:?}")
        };
        assert_eq!(test.alpha, 0.03);
        assert_eq!(test.alpha_stage.to_bits(), (0.03 / 10.0f64).to_bits());
        assert_eq!(test.test().alpha, test.alpha_stage);
    }

    #[test]
    fn is_sequential_agrees_with_the_compiled_gate() {
        for j in [
            serde_json::json!({"name": "a", "error_rate": {"max": "1%"}}),
            serde_json::json!({"name": "b", "error_rate": {"vs_dr": {"tolerance": "50%"}}}),
            serde_json::json!({"name": "c", "latency": {"quantile": 0.99, "max": "1s"}}),
            serde_json::json!({"name": "d", "latency": {"above": "1s", "vs_dr": {"tolerance": "50%"}}}),
            serde_json::json!({"name": "e", "query": "up", "min": 1}),
        ] {
            let s: GateSpec = serde_json::from_value(j).unwrap();
            let g = s.compile(&GateBudget::new(100, 5, 1)).unwrap();
            assert_eq!(s.is_sequential(), g.is_sequential(), "{s:?}");
        }
    }
}
