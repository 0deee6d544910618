//! Restarts: whether a persisted run can resume, and reconciling the live weights with
//! the record when it does (a write whose intent was recorded, a split the plan does not
//! name, a rollback cut short); a resumed stage re-bakes, and continues its sequential
//! gates' evidence where it was gathered.

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
        if let Some(request) = self.resume_probe(live, now, ev) {
            return request;
        }
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
            let (cause, reason) = self
                .state
                .rollback
                .as_ref()
                .map(|r| (r.cause, r.reason.clone()))
                .unwrap_or((RollbackCause::Breach, "rollback".into()));
            if live.primary() == 0 {
                self.state.pending = None;
                return self.finish(cause.outcome_phase(), format!("{reason}; all traffic is back on DR (verified by reading back after a restart)"));
            }
            return self.begin_rollback(cause, reason, now, ev);
        }
        // The stage the live weight shows, if the record explains it.
        let pending_stage = self
            .state
            .pending
            .as_ref()
            // A probe's split that landed was resumed above; one left here (its gates
            // changed since) is an earlier stage's split: that stage is resumed.
            .filter(|p| p.weights == live && !p.probe)
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
                     not resuming it (run `cutover run` again to start a new run)",
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
        let (continued, evidence) = self.evidence_to_continue(i, live, now);
        let request = self.start_stage(i, now);
        self.state.evidence.extend(continued);
        resumed(
            Some(i),
            format!("re-baking stage {} from its start{evidence}", i + 1),
            ev,
        );
        request
    }

    /// The persisted e-processes that resumed stage `i` continues, and what to say about
    /// them. Evidence continues only where it was gathered: the record's stage is `i`, its
    /// evidence was gathered at stage `i` and at the weight live now (any other weight is a
    /// new stage, with fresh evidence, as in a run never restarted), and each gate still
    /// tests what it tested then. A restart then neither re-spends the stage's
    /// false-rollback budget (one e-process per gate and stage, however often the pod is
    /// restarted) nor throws away evidence of harm.
    ///
    /// Counting resumes where it stopped (`counted_to`), so each request between the last
    /// analysis and the next is counted exactly once: the downtime is the same stage at the
    /// same weight, and its counts are evidence like any interval's (the test conditions on
    /// the split measured over the interval). But it looks back at most the stage's
    /// `max_duration` before the restart: after a longer stop (a run held by a signal and
    /// resumed the next day) the time before that is left out. Leaving out intervals chosen
    /// by the clock alone, without looking at their counts, keeps the e-process valid; and
    /// it spares the first analysis a count over hours when nobody watched the weights, of
    /// raw samples Prometheus may no longer keep (a series whose older samples are gone
    /// would look newly born and count its whole life), in a query that must answer within
    /// one interval.
    pub(super) fn evidence_to_continue(
        &mut self,
        i: usize,
        live: Weights,
        now: SystemTime,
    ) -> (BTreeMap<String, EProcess>, String) {
        let here = self.evidence_of(i);
        if here.tests.is_empty() {
            return (BTreeMap::new(), String::new());
        }
        let recorded = self.state.evidence_of.take();
        let mut persisted = std::mem::take(&mut self.state.evidence);
        // A probe's split, live as recorded: the same stage, judged at the probe.
        let probe_live = self.state.probe.as_ref().is_some_and(|p| p.weights == live);
        let same_stage = self.state.stage == Some(i)
            && (live.primary() == here.weight || probe_live)
            && recorded
                .as_ref()
                .is_some_and(|r| r.stage == here.stage && r.weight == here.weight);
        if !same_stage {
            let why = match recorded {
                None if self.state.stage == Some(i) => {
                    "the record, written by an earlier version, does not say where its evidence was gathered"
                }
                _ => "the record's evidence is about another stage or weight",
            };
            return (
                BTreeMap::new(),
                format!("; its sequential evidence starts from nothing ({why})"),
            );
        }
        let tested = recorded.map(|r| r.tests).unwrap_or_default();
        let max_duration = self.plan.stages[i].max_duration;
        let floor = now
            .checked_sub(max_duration)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let mut continued = BTreeMap::new();
        let mut changed = Vec::new();
        let mut from: Option<SystemTime> = None;
        let mut left_out = false;
        for (name, test) in &here.tests {
            match persisted.remove(name) {
                Some(mut ep) if tested.get(name) == Some(test) => {
                    left_out |= ep.counted_to.is_some_and(|c| c < floor);
                    let at = ep.counted_to.map_or(now, |c| c.max(floor));
                    ep.counted_to = Some(at);
                    // A record written before the certification budget's split was
                    // recorded: keep the rule it was gathered under (half each), rather than
                    // choose one now from a history that overlaps the stage's own data.
                    if ep.intervals > 0 && ep.ok_share.is_none() {
                        ep.ok_share = Some(0.5);
                    }
                    // A probe whose split never landed: the stage goes on at its own split,
                    // with its no-worse evidence as it was before the probe.
                    if ep.probe.is_some() && !probe_live {
                        ep.probe_cleared();
                    }
                    from = Some(from.map_or(at, |f| f.min(at)));
                    continued.insert(name.clone(), ep);
                }
                _ => changed.push(name.as_str()),
            }
        }
        let mut said = String::new();
        if let Some(from) = from {
            let gap = now.duration_since(from).unwrap_or_default();
            said = format!(
                "; the sequential gates' evidence continues, counting from where it stopped ({} before the restart",
                fmt_d(gap)
            );
            if left_out {
                said.push_str(&format!(
                    ", at most the stage's max_duration {}: anything earlier is left out",
                    fmt_d(max_duration)
                ));
            }
            said.push(')');
        }
        if !changed.is_empty() {
            said.push_str(&format!(
                "; {} start{} from nothing (new to the policy, or its test changed since the evidence was gathered)",
                changed.join(", "),
                if changed.len() == 1 { "s" } else { "" }
            ));
        }
        (continued, said)
    }
}
