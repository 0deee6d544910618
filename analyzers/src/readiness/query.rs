//! `query`: PromQL returning one number within `min`/`max` (the original preflight check).

use std::time::SystemTime;

use async_trait::async_trait;
use cutover_core::judge::preflight::PreflightCheck;
use cutover_core::metrics::source::{Measure, MetricSource};

use super::{Finding, ReadinessCheck};

/// A PromQL check against the run's metric source.
pub struct Query<'a> {
    /// The metric source.
    pub source: &'a dyn MetricSource,
    /// The policy's entry.
    pub check: &'a PreflightCheck,
}

impl Query<'_> {
    fn measure(&self) -> Measure {
        Measure::Custom {
            template: self.check.query.clone().unwrap_or_default(),
            site: None,
        }
    }
}

#[async_trait]
impl ReadinessCheck for Query<'_> {
    fn asked(&self) -> String {
        self.source.render(&self.measure())
    }

    async fn check(&self, now: SystemTime) -> Finding {
        let c = self.check;
        match self.source.measure(&self.measure(), now).await {
            Err(e) => Finding::fail(e.to_string()),
            Ok(None) => {
                Finding::fail("returned no data (an empty vector); no data is never a pass")
            }
            Ok(Some(v)) if !v.is_finite() => {
                Finding::fail(format!("returned {v}, not a finite number"))
            }
            Ok(Some(v)) => {
                let (ok, detail) = if c.min.is_some_and(|lo| v < lo) {
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
                };
                Finding {
                    ok,
                    value: Some(v),
                    covers: None,
                    detail,
                }
            }
        }
    }
}
