//! `query:` gates: any PromQL returning one number, held to `min`, `max` and `max_vs_dr`
//! (given at gate level). `{{site}}` and `{{service}}` in the query are replaced by the
//! site's label value and the service name.

use super::spec::{GateSpec, Problems};
use super::{Bounds, GateKind, Metric};

impl GateSpec {
    /// Checks a `query` gate's query and bounds; problems name the gate-level fields.
    pub(super) fn compile_query(&self, query: &str, p: &mut Problems) -> Option<GateKind> {
        if query.trim().is_empty() {
            p.push(
                "query",
                "the query is empty; write PromQL returning one number",
            );
        }
        if self.min.is_none() && self.max.is_none() && self.max_vs_dr.is_none() {
            p.push(
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
            p.push("min", format!("min {lo} is above max {hi}"));
        }
        if self.slack.is_some() && self.max_vs_dr.is_none() {
            p.push("slack", "slack goes with max_vs_dr");
        }
        if self.max_vs_dr.is_some() && !query.contains("{{site}}") {
            p.push(
                "max_vs_dr",
                "comparing with DR needs `{{site}}` in the query, so it can run once per site",
            );
        }
        Some(GateKind::Bounds {
            metric: Metric::Query(query.to_string()),
            bounds: Bounds {
                min: self.min,
                max: self.max,
                vs_dr: self
                    .max_vs_dr
                    .map(|r| (r.fraction(), self.slack.unwrap_or(0.0))),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{gate as spec, m, problems};
    use crate::judge::gate::{GateStatus, Unit};
    use crate::metrics::source::Reading;

    #[test]
    fn query_gate_min_and_errors() {
        let g = spec(serde_json::json!({"name": "g", "query": "up{site=\"{{site}}\"}", "min": 1}));
        let v = Reading::Value;
        assert_eq!(
            g.evaluate(&m(v(300.0), v(0.0), v(1.0)), None).status,
            GateStatus::Fail
        );
        assert_eq!(
            g.evaluate(&m(v(300.0), Reading::Error("down".into()), v(1.0)), None)
                .status,
            GateStatus::Error
        );
    }

    #[test]
    fn a_query_without_site_is_the_same_at_both_sites() {
        let g = spec(serde_json::json!({"name": "g", "query": "up", "max": 1}));
        assert!(!g.is_per_site());
        assert!(!g.is_relative());
        assert_eq!(g.unit(), Unit::Number);
        let g = spec(
            serde_json::json!({"name": "g", "query": "q{s=\"{{site}}\"}", "max_vs_dr": "10%", "slack": 2}),
        );
        assert!(g.is_per_site());
        assert_eq!(g.bounds().and_then(|b| b.vs_dr), Some((0.1, 2.0)));
    }

    #[test]
    fn problems_name_the_gate_level_field_in_order() {
        let e = problems(serde_json::json!({"name": "g", "query": "x"}));
        assert_eq!(e[0].field, "");
        assert!(e[0].message.contains("no bound"));
        let fields = |j| -> Vec<String> { problems(j).into_iter().map(|p| p.field).collect() };
        assert_eq!(
            fields(serde_json::json!({"name": "g", "query": " ", "min": 2, "max": 1, "slack": 1})),
            ["query", "min", "slack"]
        );
        assert_eq!(
            fields(serde_json::json!({"name": "g", "query": "up", "max_vs_dr": "10%"})),
            ["max_vs_dr"]
        );
    }
}
