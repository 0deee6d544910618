//! Evaluation of a gate with bounds: one reading per site, held to absolute bounds and to
//! one relative to DR.

use super::{Gate, GateKind, GateMeasurement, GateResult, GateStatus, Metric, Unit};
use crate::metrics::source::Reading;

/// A gate's bounds; any may be absent, but a compiled gate has at least one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bounds {
    /// Absolute lower bound.
    pub min: Option<f64>,
    /// Absolute upper bound.
    pub max: Option<f64>,
    /// Relative bound to DR: `(ratio, slack)` meaning `primary <= dr * (1 + ratio) + slack`.
    pub vs_dr: Option<(f64, f64)>,
}

impl Bounds {
    /// A human description, e.g. `<= 1.000% and <= DR x1.5 + 0.100%`.
    pub fn describe(&self, unit: Unit) -> String {
        let mut parts = Vec::new();
        if let Some(lo) = self.min {
            parts.push(format!(">= {}", unit.format(lo)));
        }
        if let Some(hi) = self.max {
            parts.push(format!("<= {}", unit.format(hi)));
        }
        if let Some((r, s)) = self.vs_dr {
            parts.push(format!("<= DR x{} + {}", 1.0 + r, unit.format(s)));
        }
        parts.join(" and ")
    }
}

impl Metric {
    /// Why a finite value is impossible for this metric, if it is: a rate, a ratio or a
    /// latency is never negative (a broken query or counter is, and must not pass).
    fn impossible(&self, v: f64) -> Option<&'static str> {
        if v >= 0.0 {
            return None;
        }
        match self {
            Metric::ErrorRate => Some(
                "below zero, and an error rate never is: check that traffic.requests and traffic.errors select counters",
            ),
            Metric::Latency(_) => Some(
                "below zero, and a latency never is: check that traffic.latency selects a histogram's _bucket counters",
            ),
            Metric::Query(_) => None,
        }
    }
}

impl Gate {
    /// Evaluates one measurement of a gate with bounds. Pure.
    ///
    /// `dr_baseline` is DR's last good value, used only when DR serves no traffic (the
    /// 100 % stage) so that relative gates still have something to compare with.
    pub fn evaluate(&self, m: &GateMeasurement, dr_baseline: Option<f64>) -> GateResult {
        let min_requests = self.min_requests;
        let mut r = self.no_result();
        let GateKind::Bounds { metric, bounds } = &self.kind else {
            return r.error("not a gate with bounds: a sequential gate judges counts".into());
        };
        let unit = self.unit();
        r.primary = m.primary.finite();
        r.dr = m.dr.finite();
        r.min = bounds.min;
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
                && let Some(why) = metric.impossible(v)
            {
                return r.error(format!("the {site} value {v} is {why}"));
            }
        }
        let mut upper = bounds.max;
        if let Some((ratio, slack)) = bounds.vs_dr {
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
            r.reason = format!("{from} {}", unit.format(dr));
        }
        r.max = upper;
        if r.reason.is_empty()
            && let Some(d) = m.dr.finite()
        {
            r.reason = format!("DR {}", unit.format(d));
        }
        let low = bounds.min.is_some_and(|lo| value < lo);
        let high = upper.is_some_and(|hi| value > hi);
        if low || high {
            r.status = GateStatus::Fail;
            r.dr_breaching = m.dr.finite().is_some_and(|d| {
                bounds.min.is_some_and(|lo| d < lo) || bounds.max.is_some_and(|hi| d > hi)
            });
            r.reason = format!(
                "primary {} is {} {}{}",
                unit.format(value),
                if low { "below" } else { "above" },
                unit.format(if low {
                    bounds.min.unwrap_or(0.0)
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
                unit.format(value),
                bounds.describe(unit)
            );
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

#[cfg(test)]
mod tests {
    use super::super::testing::{gate as spec, m};
    use super::*;
    use crate::judge::gate::GateStatus;

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
            let r = g.evaluate(&meas, None);
            assert_eq!(r.status, GateStatus::NoData, "{case}: {r:?}");
        }
        let r = g.evaluate(&m(v(200.0), v(0.0), v(0.0)), None);
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
            let r = g.evaluate(&meas, None);
            assert_eq!(r.status, GateStatus::Error, "{case}: {r:?}");
            assert!(r.reason.contains("below zero"), "{case}: {}", r.reason);
        }
        // A custom query may well be negative (a difference, a temperature).
        let q = spec(serde_json::json!({"name": "q", "query": "x", "min": -5}));
        assert_eq!(
            q.evaluate(&m(v(500.0), v(-1.0), Reading::Empty), None)
                .status,
            GateStatus::Pass
        );
    }

    #[test]
    fn no_data_says_what_came_back() {
        let g = spec(serde_json::json!({"name": "g", "error_rate": {"max": "1%"}}));
        let v = Reading::Value;
        let r = g.evaluate(&m(Reading::Empty, v(0.0), v(0.0)), None);
        assert_eq!(
            r.reason,
            "no data: counting primary requests returned an empty vector (no series matched)"
        );
        let r = g.evaluate(&m(v(f64::NAN), v(0.0), v(0.0)), None);
        assert_eq!(
            r.reason,
            "no data: counting primary requests returned NaN (not a finite number)"
        );
        let r = g.evaluate(&m(v(500.0), v(f64::NAN), v(0.0)), None);
        assert!(
            r.reason
                .starts_with("no data: the primary query returned NaN"),
            "{r:?}"
        );
        let r = g.evaluate(&m(v(12.0), v(0.0), v(0.0)), None);
        assert!(r.reason.starts_with("12 primary requests"), "{r:?}");
    }

    #[test]
    fn relative_gate_uses_baseline_only_when_dr_is_silent() {
        let g = spec(
            serde_json::json!({"name": "g", "latency": {"quantile": 0.99, "max_vs_dr": "20%"}}),
        );
        let v = Reading::Value;
        let r = g.evaluate(&m(v(1000.0), v(0.3), Reading::Empty), None);
        assert_eq!(r.status, GateStatus::NoData);
        let r = g.evaluate(&m(v(1000.0), v(0.3), Reading::Empty), Some(0.2));
        assert_eq!(r.status, GateStatus::Fail, "0.3 > 0.2*1.2+0.01: {r:?}");
        let r = g.evaluate(&m(v(1000.0), v(0.3), Reading::Error("x".into())), Some(0.2));
        assert_eq!(r.status, GateStatus::Error);
    }

    #[test]
    fn a_sequential_gate_has_no_bounds_to_evaluate() {
        let g =
            spec(serde_json::json!({"name": "s", "error_rate": {"vs_dr": {"tolerance": "50%"}}}));
        let v = Reading::Value;
        let r = g.evaluate(&m(v(500.0), v(0.0), v(0.0)), None);
        assert_eq!(r.status, GateStatus::Error, "{r:?}");
    }
}
