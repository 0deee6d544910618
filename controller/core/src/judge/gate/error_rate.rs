//! `error_rate:` gates: the primary's share of requests that are errors, held to bounds
//! (`max`, `max_vs_dr`) or, with `vs_dr`, tested sequentially on error counts.

use super::spec::{ErrorRateGate, GateBudget, Problems};
use super::{Bounds, GateKind, Metric};
use crate::metrics::source::Counted;
use crate::units::{Percent, Span};

/// The allowance added to DR's rate in `max_vs_dr` unless `slack` says: 0.1 points.
const DEFAULT_SLACK: f64 = 0.001;

impl ErrorRateGate {
    /// Checks the bounds or the sequential test; problems name `error_rate.*`. `window` is
    /// the gate's, which a sequential gate may not have.
    pub(super) fn compile(
        &self,
        budget: &GateBudget,
        window: Option<Span>,
        p: &mut Problems,
    ) -> Option<GateKind> {
        let kind = if let Some(v) = &self.vs_dr {
            if self.max.is_some() || self.max_vs_dr.is_some() || self.slack.is_some() {
                p.push(
                    "error_rate.vs_dr",
                    "a sequential gate (vs_dr) judges alone; put max/max_vs_dr/slack in a gate of its own",
                );
            }
            v.compile("error_rate.vs_dr", budget, window, p)
                .map(|test| GateKind::Sequential {
                    counted: Counted::Errors,
                    test,
                })
        } else {
            if self.max.is_none() && self.max_vs_dr.is_none() {
                p.push(
                    "error_rate",
                    "give max (e.g. 1%), max_vs_dr (e.g. 50%) or vs_dr (e.g. { tolerance: 50%, alpha: 0.01 })",
                );
            }
            Some(GateKind::Bounds {
                metric: Metric::ErrorRate,
                bounds: Bounds {
                    min: None,
                    max: self.max.map(Percent::fraction),
                    vs_dr: self.max_vs_dr.map(|r| {
                        (
                            r.fraction(),
                            self.slack.map(Percent::fraction).unwrap_or(DEFAULT_SLACK),
                        )
                    }),
                },
            })
        };
        if let Some(m) = self.max
            && m.fraction() > 1.0
        {
            p.push(
                "error_rate.max",
                format!("{m} is above 100%; an error rate is at most 100%"),
            );
        }
        if self.slack.is_some() && self.max_vs_dr.is_none() {
            p.push("error_rate.slack", "slack goes with max_vs_dr");
        }
        kind
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{gate as spec, m, problems};
    use crate::judge::gate::{GateKind, GateStatus};
    use crate::metrics::source::{Counted, Reading};
    #[test]
    fn absolute_and_relative_bounds() {
        let g =
            spec(serde_json::json!({"name": "g", "error_rate": {"max": "1%", "max_vs_dr": "50%"}}));
        let v = Reading::Value;
        // DR at 0.4%: relative bound 0.4*1.5+0.1 = 0.7% is tighter than 1%.
        let r = g.evaluate(&m(v(1000.0), v(0.008), v(0.004)), None);
        assert_eq!(r.status, GateStatus::Fail, "{r:?}");
        assert!((r.max.unwrap() - 0.007).abs() < 1e-12);
        assert!(!r.dr_breaching);
        let r = g.evaluate(&m(v(1000.0), v(0.006), v(0.004)), None);
        assert_eq!(r.status, GateStatus::Pass, "{r:?}");
        // DR also above 1%: a failing primary is part of a global incident.
        let r = g.evaluate(&m(v(1000.0), v(0.05), v(0.04)), None);
        assert_eq!(r.status, GateStatus::Fail);
        assert!(r.dr_breaching);
    }

    #[test]
    fn a_relative_bound_allows_a_tenth_of_a_point_by_default() {
        let g = spec(serde_json::json!({"name": "g", "error_rate": {"max_vs_dr": "50%"}}));
        assert_eq!(g.bounds().and_then(|b| b.vs_dr), Some((0.5, 0.001)));
        let g = spec(
            serde_json::json!({"name": "g", "error_rate": {"max_vs_dr": "50%", "slack": "1%"}}),
        );
        assert_eq!(g.bounds().and_then(|b| b.vs_dr), Some((0.5, 0.01)));
        assert_eq!(g.describe_bounds(), "<= DR x1.5 + 1.000%");
    }

    #[test]
    fn vs_dr_makes_a_sequential_gate_on_errors() {
        let g =
            spec(serde_json::json!({"name": "g", "error_rate": {"vs_dr": {"tolerance": "50%"}}}));
        assert!(matches!(
            g.kind,
            GateKind::Sequential {
                counted: Counted::Errors,
                ..
            }
        ));
        assert_eq!(g.counted(), Some(Counted::Errors));
        assert!(g.is_relative());
    }

    #[test]
    fn problems_name_the_error_rate_field_in_order() {
        let fields = |j| -> Vec<String> { problems(j).into_iter().map(|p| p.field).collect() };
        assert_eq!(
            fields(serde_json::json!({"name": "g", "error_rate": {}})),
            ["error_rate"]
        );
        assert_eq!(
            fields(serde_json::json!({"name": "g", "error_rate": {"max": "150%", "slack": "1%"}})),
            ["error_rate.max", "error_rate.slack"]
        );
        assert_eq!(
            fields(serde_json::json!({"name": "g", "window": "1m",
                "error_rate": {"max": "150%", "vs_dr": {"tolerance": "50%"}}})),
            ["error_rate.vs_dr", "error_rate.max", "window"]
        );
    }
}
