//! Running preflight: the policy's checks and the gates' DR data check, against a metric
//! source. Never changes anything.

use std::time::{Duration, SystemTime};

use cutover_core::Site;
use cutover_core::judge::gate::Gate;
use cutover_core::judge::preflight::{PreflightCheck, PreflightResult};
use cutover_core::metrics::source::MetricSource;

/// Runs every preflight check and the gates' DR data check. Never changes anything.
pub async fn run_preflight(
    source: &dyn MetricSource,
    checks: &[PreflightCheck],
    gates: &[Gate],
    interval: Duration,
    now: SystemTime,
) -> Vec<PreflightResult> {
    // The policy's checks, of every kind (`readiness/`), then the gates' data checks.
    let mut out = crate::readiness::run_checks(source, checks, now).await;
    for g in gates {
        let window = g.window(interval);
        let site = if g.is_per_site() {
            Site::Dr
        } else {
            Site::Primary
        };
        let m = g.measure(site, window);
        let query = source.render(&m);
        let (ok, detail) = match source.measure(&m, now).await {
            Err(e) => (false, e.to_string()),
            Ok(Some(v)) if v.is_finite() => (true, format!("DR value {v}")),
            Ok(Some(v)) => (
                false,
                format!(
                    "DR value is {v}: does DR serve traffic, and do the selectors in traffic: match it?"
                ),
            ),
            Ok(None) => (
                false,
                "no data for DR: check traffic: selectors and sites: label values".into(),
            ),
        };
        out.push(PreflightResult {
            name: format!("gate {} has DR data", g.name),
            query,
            ok,
            detail,
            kind: "gate".into(),
            ..PreflightResult::default()
        });
        if !g.is_per_site() {
            continue;
        }
        // The primary serves nothing yet, so no data is expected; but its query must run:
        // one that Prometheus refuses would only show once traffic has moved.
        let m = g.measure(Site::Primary, window);
        let query = source.render(&m);
        let (ok, detail) = match source.measure(&m, now).await {
            Err(e) => (false, e.to_string()),
            Ok(Some(v)) => (true, format!("the query runs (primary value {v})")),
            Ok(None) => (
                true,
                "the query runs (no data yet, as expected before traffic moves)".into(),
            ),
        };
        out.push(PreflightResult {
            name: format!("gate {} runs for the primary", g.name),
            query,
            ok,
            detail,
            kind: "gate".into(),
            ..PreflightResult::default()
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use cutover_core::judge::gate::{GateBudget, GateSpec};
    use cutover_core::metrics::source::{MetricError, Sample};

    /// Answers DR's queries; refuses every query of the primary.
    struct BrokenPrimary;

    #[async_trait]
    impl MetricSource for BrokenPrimary {
        fn describe(&self) -> String {
            "test source".into()
        }
        fn render(&self, m: &Measure) -> String {
            format!("{m:?}")
        }
        async fn measure(&self, m: &Measure, _now: SystemTime) -> Result<Sample, MetricError> {
            let primary = match m {
                Measure::ErrorRatio { site, .. } | Measure::LatencyQuantile { site, .. } => {
                    *site == Site::Primary
                }
                Measure::Custom { template, site } => {
                    *site == Some(Site::Primary) && template.contains("{{site}}")
                }
                _ => false,
            };
            if primary {
                Err(MetricError::Refused {
                    source_name: self.describe(),
                    query: self.render(m),
                    message: "bad_data: unknown escape sequence".into(),
                })
            } else {
                Ok(Some(0.01))
            }
        }
    }

    fn gate(j: serde_json::Value) -> Gate {
        serde_json::from_value::<GateSpec>(j)
            .unwrap()
            .compile(&GateBudget::new(100, 5, 0))
            .unwrap()
    }

    use cutover_core::metrics::source::Measure;

    #[tokio::test]
    async fn a_primary_query_the_source_refuses_fails_preflight() {
        let gates = [
            gate(serde_json::json!({"name": "errors", "error_rate": {"max": "1%"}})),
            gate(serde_json::json!({"name": "depth", "query": "q{s=\"{{site}}\"}", "max": 1})),
            gate(serde_json::json!({"name": "global", "query": "up", "max": 1})),
        ];
        let results = run_preflight(
            &BrokenPrimary,
            &[],
            &gates,
            Duration::from_secs(30),
            SystemTime::now(),
        )
        .await;
        let failed: Vec<&str> = results
            .iter()
            .filter(|r| !r.ok)
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(
            failed,
            [
                "gate errors runs for the primary",
                "gate depth runs for the primary"
            ],
            "{results:#?}"
        );
        let r = results
            .iter()
            .find(|r| r.name == "gate errors runs for the primary")
            .unwrap();
        assert!(r.detail.contains("unknown escape sequence"), "{r:?}");
        // A site-less query runs once, and DR's data is checked for every gate.
        assert_eq!(results.len(), 5, "{results:#?}");
    }
}
