//! Preflight: what must hold before any weight changes.
//!
//! The policy's own checks (e.g. replication lag below 60 s) must each return one number
//! within bounds, the metric source must answer, and every gate's query must return data
//! for the DR site — a gate that cannot see DR now will not see the primary later.

use std::time::{Duration, SystemTime};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::gate::Gate;
use crate::promql::Site;
use crate::source::{Measure, MetricSource};

/// One `preflight:` check of a policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PreflightCheck {
    /// A name for logs and reports.
    pub name: String,
    /// PromQL returning one number; `{{service}}` is replaced by the service name.
    pub query: String,
    /// The lowest acceptable value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// The highest acceptable value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

/// The result of one preflight check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreflightResult {
    /// What was checked.
    pub name: String,
    /// The query run.
    pub query: String,
    /// Whether it held.
    pub ok: bool,
    /// The value, or why there is none, and the verdict in words.
    pub detail: String,
}

/// Runs every preflight check and the gates' DR data check. Never changes anything.
pub async fn run_preflight(
    source: &dyn MetricSource,
    checks: &[PreflightCheck],
    gates: &[Gate],
    interval: Duration,
    now: SystemTime,
) -> Vec<PreflightResult> {
    let mut out = Vec::new();
    for c in checks {
        let m = Measure::Custom {
            template: c.query.clone(),
            site: None,
        };
        let query = source.render(&m);
        let (ok, detail) = match source.measure(&m, now).await {
            Err(e) => (false, e.to_string()),
            Ok(None) => (
                false,
                "returned no data (an empty vector); no data is never a pass".into(),
            ),
            Ok(Some(v)) if !v.is_finite() => (false, format!("returned {v}, not a finite number")),
            Ok(Some(v)) => {
                if c.min.is_some_and(|lo| v < lo) {
                    (
                        false,
                        format!("{v} is below min {}", c.min.unwrap_or_default()),
                    )
                } else if c.max.is_some_and(|hi| v > hi) {
                    (
                        false,
                        format!("{v} is above max {}", c.max.unwrap_or_default()),
                    )
                } else {
                    (true, format!("{v} within bounds"))
                }
            }
        };
        out.push(PreflightResult {
            name: c.name.clone(),
            query,
            ok,
            detail,
        });
    }
    for g in gates {
        let site = if g.is_per_site() {
            Site::Dr
        } else {
            Site::Primary
        };
        let m = g.measure(site, g.window(interval));
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
        });
    }
    out
}
