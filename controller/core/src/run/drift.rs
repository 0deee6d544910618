//! The live weights seen with each analysis (drift: someone else changed them, or they
//! cannot be read) and an operator's brake.

use std::time::SystemTime;

use super::*;

impl Run {
    /// Compares the live weights read with this analysis with the last confirmed write.
    /// Returns the request to make instead of judging on, if the drift policy asks for one.
    pub(super) fn on_live(
        &mut self,
        now: SystemTime,
        stage: usize,
        live: Option<Result<Weights, String>>,
        ev: &mut Vec<Event>,
    ) -> Option<Request> {
        let expected = self.state.weights;
        let unreadable = "the live weights cannot be read";
        let found = match live? {
            Ok(w) if Some(w) == expected => {
                self.state.last_live = Some(w);
                self.state.unreadable = 0;
                if self.state.drift.take().is_some() {
                    ev.push(Event {
                        at: now,
                        kind: EventKind::DriftCleared { live: w },
                    });
                    // What was measured during the drift was another split: the bake
                    // starts over (max_duration does not).
                    self.state.rebake_from = Some(now);
                    self.state.counters.consecutive_passes = 0;
                }
                return None;
            }
            Ok(w) => {
                self.state.last_live = Some(w);
                self.state.unreadable = 0;
                format!("the backend sends {w}")
            }
            Err(e) => {
                self.state.unreadable += 1;
                format!("{unreadable}: {e}")
            }
        };
        // One failed read holds; the policy's action waits for as many failed reads in a row
        // as consecutive_error_limit allows failed queries (an API blip is not a drift).
        let act = !found.starts_with(unreadable)
            || self.state.unreadable >= self.plan.limits.consecutive_error_limit;
        let action = match (self.plan.on_drift, act) {
            (OnDrift::Hold, _) => {
                "hold: no stage advances; judging goes on and harm still rolls back".to_string()
            }
            (OnDrift::Reassert, true) => {
                "reassert: writing the stage's weights again, then re-baking".to_string()
            }
            (OnDrift::Rollback, true) => "rollback: putting all traffic back on DR".to_string(),
            (_, false) => format!(
                "hold for now: read {}/{} (consecutive_error_limit) before on_drift acts",
                self.state.unreadable, self.plan.limits.consecutive_error_limit
            ),
        };
        // Told once per kind of drift (not at every analysis, nor per error text).
        let same =
            |a: &str, b: &str| a == b || (a.starts_with(unreadable) && b.starts_with(unreadable));
        if !self.state.drift.as_deref().is_some_and(|d| same(d, &found)) {
            ev.push(Event {
                at: now,
                kind: EventKind::Drift {
                    expected,
                    found: found.clone(),
                    action,
                },
            });
        }
        let what = format!(
            "{}: expected {} (the last confirmed write), but {found}",
            self.stage_label(stage),
            expected
                .map(|w| w.to_string())
                .unwrap_or_else(|| "an unread split".into())
        );
        self.state.drift = Some(found.clone());
        if self.state.dry_run && act && self.plan.on_drift != OnDrift::Hold {
            // What was judged is no longer the split it started at: say so, write nothing.
            return Some(self.finish(
                Phase::Held,
                format!(
                    "{what}: the live split moved during the dry run; a run would {} (on_drift); nothing was judged to the end",
                    match self.plan.on_drift {
                        OnDrift::Reassert => "write the stage's weights again",
                        _ => "roll back",
                    }
                ),
            ));
        }
        match (self.plan.on_drift, act) {
            (OnDrift::Hold, _) | (_, false) => None,
            (OnDrift::Reassert, true) => Some(self.request_current(stage, now, ev)),
            (OnDrift::Rollback, true) => Some(self.begin_rollback(
                RollbackCause::Drift,
                format!("{what} (on_drift: rollback)"),
                now,
                ev,
            )),
        }
    }

    /// The operator's emergency brake: never write forward again; make sure traffic is on DR.
    pub(super) fn on_braked(
        &mut self,
        now: SystemTime,
        by: String,
        ev: &mut Vec<Event>,
    ) -> Request {
        ev.push(Event {
            at: now,
            kind: EventKind::Braked { by: by.clone() },
        });
        self.operator_stop(format!("operator rollback by {by}"), now, ev)
    }
}
