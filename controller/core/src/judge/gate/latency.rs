//! `latency:` gates: a latency quantile of the primary held to bounds (`quantile` with `max`,
//! `max_vs_dr`) or, with `above` and `vs_dr`, the share of requests slower than a histogram
//! bucket edge tested sequentially on counts.

use super::spec::{GateBudget, LatencyGate, Problems};
use super::{Bounds, GateKind, Metric};
use crate::metrics::source::Counted;
use crate::units::Span;

/// The allowance added to DR's quantile in `max_vs_dr` unless `slack` says: 10ms.
const DEFAULT_SLACK: f64 = 0.010;

fn secs(s: Span) -> f64 {
    s.get().as_secs_f64()
}

impl LatencyGate {
    /// Checks the bounds or the sequential test; problems name `latency.*`. `window` is the
    /// gate's, which a sequential gate may not have.
    pub(super) fn compile(
        &self,
        budget: &GateBudget,
        window: Option<Span>,
        p: &mut Problems,
    ) -> Option<GateKind> {
        let kind = if let Some(v) = &self.vs_dr {
            if self.max.is_some() || self.max_vs_dr.is_some() || self.slack.is_some() {
                p.push(
                    "latency.vs_dr",
                    "a sequential gate (vs_dr) judges alone; put quantile/max/max_vs_dr in a gate of its own",
                );
            }
            if self.quantile.is_some() {
                p.push(
                    "latency.quantile",
                    "a sequential latency gate counts requests slower than `above`; it has no quantile",
                );
            }
            let edge = match self.above {
                Some(a) if !a.get().is_zero() => Some(secs(a)),
                _ => {
                    p.push(
                        "latency.above",
                        "a sequential latency gate needs `above`: a bucket edge of traffic.latency, e.g. 250ms (near DR's p99)",
                    );
                    None
                }
            };
            let test = v.compile("latency.vs_dr", budget, window, p);
            edge.zip(test).map(|(edge, test)| GateKind::Sequential {
                counted: Counted::SlowerThan(edge),
                test,
            })
        } else {
            let quantile = match self.quantile {
                Some(q) if q > 0.0 && q < 1.0 => Some(q),
                Some(q) => {
                    p.push(
                        "latency.quantile",
                        format!("{q} is not strictly between 0 and 1; write e.g. 0.99 for p99"),
                    );
                    None
                }
                None => {
                    p.push(
                        "latency.quantile",
                        "missing; write e.g. quantile: 0.99 for p99",
                    );
                    None
                }
            };
            if self.max.is_none() && self.max_vs_dr.is_none() {
                p.push(
                    "latency",
                    "give max (e.g. 500ms), max_vs_dr (e.g. 20%), or above with vs_dr",
                );
            }
            if self.above.is_some() {
                p.push("latency.above", "above goes with vs_dr");
            }
            quantile.map(|q| GateKind::Bounds {
                metric: Metric::Latency(q),
                bounds: Bounds {
                    min: None,
                    max: self.max.map(secs),
                    vs_dr: self
                        .max_vs_dr
                        .map(|r| (r.fraction(), self.slack.map(secs).unwrap_or(DEFAULT_SLACK))),
                },
            })
        };
        if self.slack.is_some() && self.max_vs_dr.is_none() {
            p.push("latency.slack", "slack goes with max_vs_dr");
        }
        kind
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{gate, problems};
    use crate::judge::gate::{GateKind, Metric, Unit};
    use crate::metrics::source::{Counted, Measure};
    use crate::weights::Site;
    use std::time::Duration;

    #[test]
    fn a_quantile_gate_reads_seconds() {
        let g = gate(
            serde_json::json!({"name": "p99", "latency": {"quantile": 0.99, "max": "500ms", "max_vs_dr": "20%"}}),
        );
        assert!(matches!(
            g.kind,
            GateKind::Bounds {
                metric: Metric::Latency(q),
                ..
            } if q == 0.99
        ));
        assert_eq!(g.unit(), Unit::Seconds);
        let b = g.bounds().unwrap();
        assert_eq!((b.max, b.vs_dr), (Some(0.5), Some((0.2, 0.010))));
        assert_eq!(g.counted(), None);
    }

    #[test]
    fn a_sequential_gate_counts_requests_slower_than_above() {
        let g = gate(
            serde_json::json!({"name": "slow", "latency": {"above": "250ms", "vs_dr": {"tolerance": "50%"}}}),
        );
        assert_eq!(g.counted(), Some(Counted::SlowerThan(0.25)));
        assert_eq!(g.unit(), Unit::Ratio);
        assert_eq!(
            g.measure(Site::Dr, Duration::from_secs(30)),
            Measure::BadShare {
                counted: Counted::SlowerThan(0.25),
                site: Site::Dr,
                window: Duration::from_secs(30)
            }
        );
        assert!(
            g.describe_bounds()
                .starts_with("share slower than 250.0ms <= DR x1.5")
        );
    }

    #[test]
    fn problems_name_the_latency_field_in_order() {
        let fields = |j| -> Vec<String> { problems(j).into_iter().map(|p| p.field).collect() };
        let e =
            problems(serde_json::json!({"name": "g", "latency": {"quantile": 1.5, "max": "1s"}}));
        assert_eq!(e[0].field, "latency.quantile");
        assert!(e[0].message.contains("strictly between 0 and 1"), "{e:?}");
        assert_eq!(
            fields(serde_json::json!({"name": "g", "latency": {"above": "1s", "slack": "1ms"}})),
            [
                "latency.quantile",
                "latency",
                "latency.above",
                "latency.slack"
            ]
        );
        // Without `above`, the test's numbers still valid: the window is still reported.
        assert_eq!(
            fields(serde_json::json!({"name": "g", "window": "1m",
                "latency": {"quantile": 0.9, "max": "1s", "vs_dr": {"tolerance": "50%"}}})),
            [
                "latency.vs_dr",
                "latency.quantile",
                "latency.above",
                "window"
            ]
        );
        assert_eq!(
            fields(
                serde_json::json!({"name": "g", "latency": {"above": "0s", "vs_dr": {"tolerance": "50%"}}})
            ),
            ["latency.above"]
        );
    }
}
