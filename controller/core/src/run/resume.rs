//! Restarts: whether a persisted run can resume, and reconciling the live weights with
//! the record when it does (a write whose intent was recorded, a split the plan does not
//! name, a rollback cut short).

use std::time::SystemTime;

use super::*;

impl Run {
    /// Whether a persisted run can be resumed: unfinished, or stopped by a signal with
    /// traffic held at a stage.
    pub fn resumable(state: &RunState) -> bool {
        !state.phase.is_terminal() || (state.phase == Phase::Aborted && state.rollback.is_none())
    }

    /// Ends a persisted run as stopped by an operator's rollback (`cutover rollback` found
    /// it not running): no restart resumes it, and its record says who stopped it.
    pub fn mark_operator_rollback(state: &mut RunState, by: &str, now: SystemTime) {
        let reason = format!(
            "operator rollback by {by} while the run was not running; all traffic put on DR by the operator (verified by reading back)"
        );
        state.rollback = Some(RollbackProgress {
            cause: RollbackCause::Operator,
            reason: reason.clone(),
            remaining: Vec::new(),
        });
        state.pending = None;
        state.phase = Phase::Aborted;
        state.weights = Some(Weights::ALL_DR);
        state.history.push(WeightChange {
            at: now,
            weights: Weights::ALL_DR,
            stage: None,
        });
        state.outcome = Some(Outcome {
            phase: Phase::Aborted,
            reason,
        });
    }

    pub(super) fn on_resume(
        &mut self,
        now: SystemTime,
        live: Result<Weights, String>,
        ev: &mut Vec<Event>,
    ) -> Request {
        self.resuming = false;
        self.state.restarts += 1;
        if self.state.started.is_none() {
            self.state.started = Some(now);
        }
        let live = match live {
            Ok(w) => w,
            Err(e) => {
                let reason = format!("cannot read the live weights to resume the run: {e}");
                return self.preflight_failed(reason, now, ev);
            }
        };
        let recorded = self.state.weights;
        self.state.weights = Some(live);
        self.state.last_live = Some(live);
        let resumed = |stage: Option<usize>, detail: String, ev: &mut Vec<Event>| {
            ev.push(Event {
                at: now,
                kind: EventKind::Resumed {
                    live,
                    stage,
                    detail,
                },
            })
        };
        let index_of = |w: u8| self.plan.stages.iter().position(|s| s.weight.get() == w);
        if live.primary() != 0 && index_of(live.primary()).is_none() {
            resumed(None, format!("live {live} is not a weight of the plan"), ev);
            let reason = format!(
                "on restart the backend sends {live}, a weight the plan does not name ({}); rolling back",
                self.plan
                    .stages
                    .iter()
                    .map(|s| format!("{}%", s.weight))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            return self.begin_rollback(RollbackCause::Reconcile, reason, now, ev);
        }
        if self.state.phase == Phase::RollingBack {
            resumed(None, "continuing the rollback".into(), ev);
            if live.primary() == 0 {
                let (cause, reason) = self
                    .state
                    .rollback
                    .as_ref()
                    .map(|r| (r.cause, r.reason.clone()))
                    .unwrap_or((RollbackCause::Breach, "rollback".into()));
                self.state.pending = None;
                return self.finish(cause.outcome_phase(), format!("{reason}; all traffic is back on DR (verified by reading back after a restart)"));
            }
            let (cause, reason) = self
                .state
                .rollback
                .as_ref()
                .map(|r| (r.cause, r.reason.clone()))
                .unwrap_or((RollbackCause::Breach, "rollback".into()));
            return self.begin_rollback(cause, reason, now, ev);
        }
        // The stage the live weight shows, if the record explains it.
        let pending_stage = self
            .state
            .pending
            .as_ref()
            .filter(|p| p.weights == live)
            .and_then(|p| p.stage);
        let recorded_stage = self.state.stage;
        let live_stage = if live.primary() == 0 {
            None
        } else {
            index_of(live.primary())
        };
        let stage = match (pending_stage, live_stage, recorded_stage) {
            (Some(j), _, _) => Some(j),
            (None, None, None) => None,
            (None, None, Some(i)) => {
                let reason = format!(
                    "all traffic is on DR, but the recorded run {} was at stage {} ({}%): someone rolled back; \
                     not resuming — start over with --fresh",
                    self.state.run_id,
                    i + 1,
                    self.plan.stages[i].weight
                );
                return self.preflight_failed(reason, now, ev);
            }
            (None, Some(k), recorded) if recorded.is_some_and(|i| k <= i) => Some(k),
            (None, Some(k), _) => {
                resumed(
                    None,
                    format!("live {live} is ahead of the recorded run"),
                    ev,
                );
                let reason = format!(
                    "on restart the backend sends {live} (stage {}), ahead of what this run confirmed ({}); rolling back",
                    k + 1,
                    recorded
                        .map(|w| w.to_string())
                        .unwrap_or_else(|| "nothing".into())
                );
                return self.begin_rollback(RollbackCause::Reconcile, reason, now, ev);
            }
        };
        self.state.pending = None;
        let Some(i) = stage else {
            // Nothing was written yet: preflight again, then the first stage.
            resumed(
                None,
                "no weight was written yet; preflight again".into(),
                ev,
            );
            self.state.phase = Phase::Preflight;
            return Request::Preflight;
        };
        if pending_stage.is_some() {
            self.state.history.push(WeightChange {
                at: now,
                weights: live,
                stage: Some(i),
            });
        }
        resumed(
            Some(i),
            format!("re-baking stage {} from its start", i + 1),
            ev,
        );
        self.start_stage(i, now)
    }
}
