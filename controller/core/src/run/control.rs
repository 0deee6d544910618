//! The operator in the loop: commands on a live run (pause, resume, promote, abort,
//! approve), approval gates before a stage's weight is written, runs that follow earlier
//! ones in the same record, a held run continued, and dry runs that write nothing.

use std::time::SystemTime;

use super::*;
use crate::policy::{ApprovalRule, StageApproval};

impl Run {
    /// A new run that follows `previous` (a finished run of the same service, or one
    /// replaced with `--fresh`) in the same record: the earlier runs are kept, newest last.
    pub fn new_after(plan: Plan, run_id: String, previous: Option<RunState>) -> Run {
        let mut run = Run::new(plan, run_id);
        if let Some(prev) = previous {
            let mut runs = prev.earlier_runs.clone();
            runs.push(prev.summary());
            let excess = runs.len().saturating_sub(RUNS_KEPT);
            runs.drain(..excess);
            run.state.earlier_runs = runs;
        }
        run
    }

    /// A dry run: judges the stage whose weight is live now, exactly as a run would, and
    /// writes nothing. It ends with what a run would do next: advance (exit 0), roll back
    /// (exit 1), hold (exit 5); or, when the live weight is no stage of the plan, exit 3.
    pub fn dry(plan: Plan, run_id: String) -> Run {
        let mut run = Run::new(plan, run_id);
        run.state.dry_run = true;
        run
    }

    /// Continues a held run (exit 5) at its weight: `cutover resume` on a held record. The
    /// held stage is judged again from its start (its sequential evidence continues), and
    /// the operator's command is recorded. `None` if the record is not a held run.
    pub fn continue_held(plan: Plan, mut state: RunState, command: Command) -> Option<Run> {
        if state.phase != Phase::Held {
            return None;
        }
        let at = command.at;
        let result = format!(
            "continuing held run {} at {}",
            state.run_id,
            state
                .weights
                .map(|w| w.to_string())
                .unwrap_or_else(|| "its last split".into())
        );
        state.operator.push(OperatorAction {
            command: command.clone(),
            acknowledged: at,
            accepted: true,
            result: result.clone(),
        });
        state.phase = Phase::Judging;
        state.outcome = None;
        state.ended = None;
        // The policy's `deadline` bounds a run's stretch of driving traffic: a held run
        // continued by an operator starts a new one (else it would roll back at once).
        state.started = None;
        state.awaiting = None;
        state.paused = None;
        state.promote = None;
        let mut run = Run::resume(plan, state);
        run.told.push(Event {
            at,
            kind: EventKind::Operator {
                action: command.action.describe(),
                by: command.by,
                reason: command.reason,
                accepted: true,
                result,
            },
        });
        Some(run)
    }

    /// An operator command: acknowledged (taken or refused, and why), then the run carries
    /// on as after the sleep it arrived at.
    pub(super) fn on_command(
        &mut self,
        now: SystemTime,
        cmd: Command,
        ev: &mut Vec<Event>,
    ) -> Request {
        if self.state.operator.iter().any(|a| a.command.id == cmd.id) {
            return self.on_slept(now, ev);
        }
        let verdict = self.answer(&cmd, now);
        let (accepted, result) = match &verdict {
            Ok(r) => (true, r.clone()),
            Err(r) => (false, r.clone()),
        };
        self.state.operator.push(OperatorAction {
            command: cmd.clone(),
            acknowledged: now,
            accepted,
            result: result.clone(),
        });
        ev.push(Event {
            at: now,
            kind: EventKind::Operator {
                action: cmd.action.describe(),
                by: cmd.by.clone(),
                reason: cmd.reason.clone(),
                accepted,
                result,
            },
        });
        if accepted && cmd.action == Action::Abort {
            let why = cmd
                .reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default();
            return self.operator_stop(format!("aborted by {}{why}", cmd.by), now, ev);
        }
        self.on_slept(now, ev)
    }

    /// Whether a command is taken, with what it does; or why it is refused.
    fn answer(&mut self, cmd: &Command, now: SystemTime) -> Result<String, String> {
        if cmd.run_id != self.state.run_id {
            return Err(format!(
                "the command is for run {}, not for run {} (the one under way)",
                cmd.run_id, self.state.run_id
            ));
        }
        let rolling_back = self.state.phase == Phase::RollingBack;
        let weights = self.weights_text();
        match cmd.action {
            Action::Pause => {
                if rolling_back {
                    return Err("the run is rolling back; there is nothing to pause".into());
                }
                if let Some(p) = &self.state.paused {
                    return Err(format!("already paused by {}", p.by));
                }
                self.state.paused = Some(cmd.clone());
                Ok(format!(
                    "paused at {weights}: nothing advances until `cutover resume`; the stage is still judged and a breach still rolls back"
                ))
            }
            Action::Resume => match self.state.paused.take() {
                Some(p) => {
                    // The bake the pause held back is over only if it was: judging goes on.
                    Ok(format!(
                        "pause by {} lifted; the stage advances once it passes",
                        p.by
                    ))
                }
                None => Err("the run is not paused".into()),
            },
            Action::Promote { full } => {
                if rolling_back {
                    return Err("the run is rolling back".into());
                }
                if let Some(p) = &self.state.paused {
                    return Err(format!(
                        "paused by {}; `cutover resume` first (a promote never lifts a pause)",
                        p.by
                    ));
                }
                if let Some(a) = self.state.awaiting {
                    return Err(format!(
                        "{} waits for approval ({}); approve it: a promote never bypasses an approval",
                        self.stage_label(a.stage),
                        self.approval_missing(a.stage).unwrap_or_default()
                    ));
                }
                let Some(i) = self.state.stage else {
                    return Err("no stage's weight is written yet; there is no bake to skip".into());
                };
                if self.state.pending.is_some() {
                    return Err(
                        "a weight write is under way; promote once its stage is judged".into(),
                    );
                }
                let capacity = self
                    .plan
                    .readiness
                    .preflight
                    .iter()
                    .chain(&self.plan.readiness.guards)
                    .any(|c| c.kubernetes_capacity.is_some());
                if full && capacity {
                    return Err("--full would write a weight whose capacity (kubernetes_capacity) is not checked; promote --to-next, stage by stage".into());
                }
                let target = self.promote_target(i, full);
                if let Some(j) = (i + 1..=target.min(self.plan.stages.len() - 1))
                    .find(|&j| j < target && self.approval_missing(j).is_some())
                {
                    return Err(format!(
                        "--full would skip {}, which needs {}; approve it first (`cutover approve --stage {}`) or promote --to-next",
                        self.stage_label(j),
                        self.approval_missing(j).unwrap_or_default(),
                        j + 1
                    ));
                }
                self.state.promote = Some(PendingPromote {
                    command: cmd.clone(),
                    stage: Some(i),
                });
                let to = if target >= self.plan.stages.len() {
                    "promotion".to_string()
                } else {
                    self.stage_label(target)
                };
                Ok(format!(
                    "{} skips the rest of its bake: on to {to} at its next analysis, once its split is settled and no gate breaches",
                    self.stage_label(i)
                ))
            }
            Action::Abort => {
                if rolling_back
                    && self.state.rollback.as_ref().map(|r| r.cause)
                        == Some(RollbackCause::Operator)
                {
                    return Err("already rolling back for an operator".into());
                }
                Ok(format!("rolling back now from {weights}, in one step"))
            }
            Action::Approve { stage } => self.approve(stage, &cmd.by, now),
        }
    }

    fn approve(&mut self, stage: usize, by: &str, now: SystemTime) -> Result<String, String> {
        let Some(rule) = self.plan.approvals.get(&stage).cloned() else {
            return Err(if stage < self.plan.stages.len() {
                format!("{} needs no approval", self.stage_label(stage))
            } else {
                format!(
                    "the plan has {} stages; there is no stage {}",
                    self.plan.stages.len(),
                    stage + 1
                )
            });
        };
        if let ApprovalRule::Webhook { .. } = rule.rule {
            return Err(format!(
                "{} is approved by its webhook ({}), not by people",
                self.stage_label(stage),
                rule.describe()
            ));
        }
        if self.state.rollback.is_some() {
            return Err("the run is rolling back".into());
        }
        let written = self.state.history.iter().any(|h| h.stage == Some(stage))
            || self.state.stage.is_some_and(|i| i >= stage);
        if written {
            return Err(format!(
                "{} is already under way or past",
                self.stage_label(stage)
            ));
        }
        let given = self.state.approvals.entry(stage).or_default();
        if given.iter().any(|a| a.by == by) {
            return Err(format!(
                "{by} already approved {}; the next approval must come from someone else",
                self.stage_label(stage)
            ));
        }
        let needed = match rule.rule {
            ApprovalRule::Manual { approvals } => usize::from(approvals),
            ApprovalRule::Webhook { .. } => 1,
        };
        if given.len() >= needed {
            return Err(format!(
                "{} already has its approvals",
                self.stage_label(stage)
            ));
        }
        given.push(Approval {
            by: by.to_string(),
            at: now,
        });
        let have = given.len();
        Ok(if have >= needed {
            format!(
                "{} approved ({have}/{needed}); its weight is written once the stage before passes",
                self.stage_label(stage)
            )
        } else {
            format!(
                "{} has {have} of {needed} approvals; {} more from someone else",
                self.stage_label(stage),
                needed - have
            )
        })
    }

    /// Where a promote from stage `i` goes: the next stage, or with `full` the last judged
    /// one (the final stage is still judged: a promote never writes an unjudged 100 %
    /// except the one that ends a passed final holdout).
    fn promote_target(&self, i: usize, full: bool) -> usize {
        let last_judged = self
            .plan
            .stages
            .iter()
            .rposition(|s| s.judged)
            .unwrap_or(self.plan.stages.len() - 1);
        if full { last_judged.max(i + 1) } else { i + 1 }
    }

    /// What stage `j` still needs before its weight may be written, in words; `None` when
    /// it needs nothing (no rule, or approved).
    pub(super) fn approval_missing(&self, j: usize) -> Option<String> {
        let rule: &StageApproval = self.plan.approvals.get(&j)?;
        let have = self.state.approvals.get(&j).map_or(0, Vec::len);
        match rule.rule {
            ApprovalRule::Manual { approvals } if have < usize::from(approvals) => {
                Some(format!("{} ({have} of {approvals} given)", rule.describe()))
            }
            ApprovalRule::Webhook { .. } if have == 0 => Some(rule.describe()),
            _ => None,
        }
    }

    /// The run moves on to stage `j` (or is promoted past the last): unless it waits for an
    /// approval, in which case the stage before keeps being judged.
    pub(super) fn advance_to(&mut self, j: usize, now: SystemTime, ev: &mut Vec<Event>) -> Request {
        if self.state.dry_run {
            let next = if j >= self.plan.stages.len() {
                "promote (all traffic on the primary)".to_string()
            } else {
                format!("write {} next", self.stage_label(j))
            };
            let at = self
                .state
                .stage
                .map(|i| self.stage_label(i))
                .unwrap_or_else(|| "preflight".into());
            return self.finish(
                Phase::Promoted,
                format!("{at} passed its gates and bake; a run would {next}"),
            );
        }
        if self.state.paused.is_some() {
            // Nothing advances while paused; the next look (an analysis, or preflight again
            // before the first stage) tries again.
            return Request::Sleep(self.wait_interval());
        }
        if j >= self.plan.stages.len() {
            return self.finish(
                Phase::Promoted,
                format!(
                    "all {} stages passed; the primary serves 100% of traffic",
                    self.plan.stages.len()
                ),
            );
        }
        if let Some(needs) = self.approval_missing(j) {
            if self.state.awaiting.map(|a| a.stage) != Some(j) {
                self.state.awaiting = Some(Awaiting {
                    stage: j,
                    since: now,
                });
                ev.push(Event {
                    at: now,
                    kind: EventKind::AwaitingApproval {
                        stage: j,
                        weight: self.plan.stages[j].weight.get(),
                        needs,
                    },
                });
            }
            return Request::Sleep(self.wait_interval());
        }
        self.state.awaiting = None;
        self.request_stage(j, now, ev)
    }

    /// The pause between two looks while waiting: the current stage's interval, or the
    /// first stage's before any weight is written.
    fn wait_interval(&self) -> Duration {
        let i = self
            .state
            .stage
            .or(self.state.awaiting.map(|a| a.stage))
            .unwrap_or(0);
        self.plan.stages[i].interval
    }

    /// After a sleep while a stage waits for approval: the approval's timeout, its webhook,
    /// or the move once approved. `None`: judge the current stage as usual.
    pub(super) fn awaiting_request(&mut self, now: SystemTime) -> Option<Request> {
        let a = self.state.awaiting?;
        let rule = self.plan.approvals.get(&a.stage)?.clone();
        if let Some(t) = rule.timeout
            && now.duration_since(a.since).unwrap_or_default() >= t
            && self.approval_missing(a.stage).is_some()
        {
            let reason = format!(
                "{} was not approved within approval_timeout {} (it needs {}); traffic held at {}; `cutover resume` waits again",
                self.stage_label(a.stage),
                fmt_d(t),
                rule.describe(),
                self.weights_text()
            );
            return Some(self.finish(Phase::Held, reason));
        }
        if self.approval_missing(a.stage).is_none() {
            // Approved: the first stage is written now; a later one when the stage before
            // passes its next analysis (an approval never bypasses a gate).
            if self.state.stage.is_none() {
                // Hours may have passed since preflight: check readiness again first.
                return Some(Request::Preflight);
            }
            return None;
        }
        if let ApprovalRule::Webhook { url } = rule.rule {
            return Some(Request::AskApproval {
                stage: a.stage,
                url,
            });
        }
        self.state
            .stage
            .is_none()
            .then(|| Request::Sleep(self.wait_interval()))
    }

    /// A webhook answered: a 2xx approves the stage; otherwise it is asked again after the
    /// next interval.
    pub(super) fn on_approval_answer(
        &mut self,
        now: SystemTime,
        stage: usize,
        granted: bool,
        detail: String,
        ev: &mut Vec<Event>,
    ) -> Request {
        if self.state.awaiting.map(|a| a.stage) != Some(stage) {
            return self.unexpected(now, "an approval answer for a stage not waiting", ev);
        }
        if granted {
            // Named by its stage, never by its URL (which may hold a token).
            let by = format!("the approval webhook of stage {}", stage + 1);
            self.state
                .approvals
                .entry(stage)
                .or_default()
                .push(Approval {
                    by: by.clone(),
                    at: now,
                });
            ev.push(Event {
                at: now,
                kind: EventKind::Operator {
                    action: Action::Approve { stage }.describe(),
                    by,
                    reason: Some(detail),
                    accepted: true,
                    result: format!("{} approved", self.stage_label(stage)),
                },
            });
            if self.state.stage.is_none() {
                // Readiness may have changed while it waited: preflight again, then the write.
                return Request::Preflight;
            }
        }
        match self.state.stage {
            Some(_) => self.next_look(now, ev),
            None => Request::Sleep(self.wait_interval()),
        }
    }

    /// A stop asked for by people (`cutover abort`, the brake): before any write, the run
    /// ends with nothing changed; otherwise one write to 0 %, never stepped.
    pub(super) fn operator_stop(
        &mut self,
        reason: String,
        now: SystemTime,
        ev: &mut Vec<Event>,
    ) -> Request {
        if self.state.phase == Phase::Preflight && self.state.history.is_empty() {
            // Recorded as a finished rollback, so that no restart resumes this run.
            self.state.rollback = Some(RollbackProgress {
                cause: RollbackCause::Operator,
                reason: reason.clone(),
                remaining: Vec::new(),
            });
            self.state.awaiting = None;
            return self.finish(
                Phase::Aborted,
                format!("{reason} before any weight was written; nothing was changed"),
            );
        }
        let reason = match &self.state.rollback {
            Some(rb) if self.state.phase == Phase::RollingBack => {
                format!("{reason}, during a rollback ({})", rb.reason)
            }
            _ => reason,
        };
        self.state.awaiting = None;
        self.state.paused = None;
        self.state.promote = None;
        self.begin_rollback(RollbackCause::Operator, reason, now, ev)
    }
}
