//! Readiness in the run: preflight checks that may wait (`wait:`), and `guards:` re-checked
//! with every analysis — a failing guard holds the run at its weight (nothing advances)
//! until it holds again or `guard_failure_limit` passes (then `on_guard_failure`), and a
//! capacity guard keeps a stage's weight from being written until the primary's ready
//! capacity covers it. The decisions on results are in [`crate::readiness`].

use std::time::SystemTime;

use super::*;
use crate::readiness::{OnGuardFailure, blocking, preflight_retry};

impl Run {
    /// Preflight results seen before the first write: `None` when they all allow the first
    /// stage's weight (or when a check failed outright with no wait left: the caller says
    /// which); a sleep while a failing check has wait left; a failure when only capacity
    /// falls short of the first stage.
    pub(super) fn preflight_readiness(
        &mut self,
        now: SystemTime,
        results: &[PreflightResult],
        ev: &mut Vec<Event>,
    ) -> Option<Request> {
        let first = self.plan.stages.first()?.weight.get();
        let reason = blocking(results, first)?;
        let since = self.state.started.unwrap_or(now);
        if let Some(sleep) = preflight_retry(&self.plan.readiness, results, first, since, now) {
            ev.push(Event {
                at: now,
                kind: EventKind::PreflightWaiting {
                    results: results.to_vec(),
                    reason: format!("waiting, nothing changed: {reason}"),
                    retry_in: sleep.as_secs().max(1),
                },
            });
            return Some(Request::Sleep(sleep));
        }
        if results.iter().any(|r| !r.ok) {
            return None;
        }
        let reason = format!("preflight failed, nothing changed: {reason}");
        Some(self.preflight_failed(reason, now, ev))
    }

    /// The guards of one analysis at stage `i`: `Ok(None)` when they allow the stage to
    /// advance, `Ok(Some(why))` when it must hold, `Err(request)` when a guard has failed
    /// for `guard_failure_limit` (the run ends held, or rolls back).
    pub(super) fn on_guards(
        &mut self,
        now: SystemTime,
        i: usize,
        results: &[PreflightResult],
        ev: &mut Vec<Event>,
    ) -> Result<Option<String>, Request> {
        let guards = &self.plan.readiness.guards;
        if guards.is_empty() {
            return Ok(None);
        }
        let weight = self.plan.stages[i].weight.get();
        // A guard with no result was not checked: never a pass.
        let mut results = results.to_vec();
        for g in guards {
            if !results.iter().any(|r| r.name == g.name) {
                results.push(PreflightResult {
                    name: g.name.clone(),
                    kind: g.kind().into(),
                    detail: "not checked with this analysis; an unchecked guard never holds".into(),
                    ..PreflightResult::default()
                });
            }
        }
        let failing = blocking(&results, weight);
        let next = self.plan.stages.get(i + 1).map(|s| s.weight.get());
        let tell = |decision: String, ev: &mut Vec<Event>| {
            ev.push(Event {
                at: now,
                kind: EventKind::Guards {
                    stage: i,
                    results: results.clone(),
                    decision,
                },
            })
        };
        let Some(why) = failing else {
            let cleared = self.state.guard_failing_since.take().is_some();
            let blocked = next.and_then(|w| blocking(&results, w).map(|b| (w, b)));
            let hold = blocked.map(|(w, b)| {
                format!("the next stage's {w}% is not written until the primary can take it: {b}")
            });
            let decision = match (&hold, cleared) {
                (Some(h), _) => format!("guards hold at {weight}%; {h}"),
                (None, true) => "every guard holds again; the stage may advance".into(),
                (None, false) => "every guard holds".into(),
            };
            tell(decision, ev);
            return Ok(hold);
        };
        let since = *self.state.guard_failing_since.get_or_insert(now);
        let failed_for = now.duration_since(since).unwrap_or_default();
        let limit = self.plan.readiness.guard_failure_limit;
        if failed_for < limit {
            tell(
                format!(
                    "holding at {weight}%: a guard fails ({why}); failing for {} of guard_failure_limit {}",
                    fmt_d(failed_for),
                    fmt_d(limit)
                ),
                ev,
            );
            return Ok(Some(format!("guard failing: {why}")));
        }
        let reason = format!(
            "{}: a guard failed for {} (guard_failure_limit): {why}",
            self.stage_label(i),
            fmt_d(failed_for)
        );
        Err(match self.plan.readiness.on_guard_failure {
            OnGuardFailure::Hold => {
                tell(
                    "limit reached; the run ends held (on_guard_failure: hold)".into(),
                    ev,
                );
                self.finish(
                    Phase::Held,
                    format!(
                        "{reason}; traffic held at {} (on_guard_failure: hold)",
                        self.weights_text()
                    ),
                )
            }
            OnGuardFailure::Rollback => {
                tell(
                    "limit reached; rolling back (on_guard_failure: rollback)".into(),
                    ev,
                );
                self.begin_rollback(
                    RollbackCause::Breach,
                    format!("{reason} (on_guard_failure: rollback)"),
                    now,
                    ev,
                )
            }
        })
    }
}
