//! Rolling back: immediate or stepped down the plan, each step written and read back, and
//! what a termination signal does.

use std::time::SystemTime;

use super::*;

impl Run {
    /// Starts a rollback: immediate (one write to 0 %) or stepped down the plan's lower stages.
    pub(super) fn begin_rollback(
        &mut self,
        cause: RollbackCause,
        reason: String,
        now: SystemTime,
        ev: &mut Vec<Event>,
    ) -> Request {
        if self.state.dry_run {
            // Nothing was written, so nothing is rolled back: say what a run would do.
            return self.finish(
                cause.outcome_phase(),
                format!("a run would roll back now: {reason}"),
            );
        }
        // Step down from what is live if it is lower than what was confirmed: a stepped
        // rollback never raises the primary's share.
        let current = [self.state.weights, self.state.last_live]
            .into_iter()
            .flatten()
            .map(|w| w.primary())
            .min()
            .unwrap_or(100);
        let mut remaining: Vec<u8> = match self.plan.rollback.mode {
            // An operator's brake is never stepped: they asked for DR now.
            _ if cause == RollbackCause::Operator => Vec::new(),
            RollbackMode::Immediate => Vec::new(),
            RollbackMode::Stepped => self
                .plan
                .stages
                .iter()
                .rev()
                .map(|s| s.weight.get())
                .filter(|w| *w < current)
                .collect(),
        };
        remaining.push(0);
        // A probe under way ends with the rollback.
        self.state.probe = None;
        self.state.phase = Phase::RollingBack;
        self.state.rollback = Some(RollbackProgress {
            cause,
            reason: reason.clone(),
            remaining,
        });
        ev.push(Event {
            at: now,
            kind: EventKind::RollbackStarted { cause, reason },
        });
        self.request_rollback_write(now, ev)
    }

    pub(super) fn request_rollback_write(
        &mut self,
        now: SystemTime,
        ev: &mut Vec<Event>,
    ) -> Request {
        let next = self
            .state
            .rollback
            .as_ref()
            .and_then(|r| r.remaining.first().copied())
            .unwrap_or(0);
        let weights = rollback_step(next);
        self.pend_write(weights, None, now, ev);
        Request::SetWeights(weights)
    }

    pub(super) fn rollback_step_done(&mut self, now: SystemTime, ev: &mut Vec<Event>) -> Request {
        let Some(rb) = self.state.rollback.as_mut() else {
            return self.unexpected(now, "a rollback step outside a rollback", ev);
        };
        if !rb.remaining.is_empty() {
            rb.remaining.remove(0);
        }
        if rb.remaining.is_empty() {
            let (cause, reason) = (rb.cause, rb.reason.clone());
            return self.finish(
                cause.outcome_phase(),
                format!("{reason}; all traffic is back on DR (verified by reading back)"),
            );
        }
        let next = rb.remaining[0];
        let weights = rollback_step(next);
        self.pend_write(weights, None, now, ev);
        // Stepped: pause before the next step; the pending write is issued after the sleep.
        Request::Sleep(self.plan.rollback.step_interval.get())
    }

    pub(super) fn on_signal(
        &mut self,
        now: SystemTime,
        signal: String,
        ev: &mut Vec<Event>,
    ) -> Request {
        match self.state.phase {
            Phase::RollingBack => {
                // Already restoring DR: keep going; a second signal must not stop a rollback.
                match &self.state.pending {
                    Some(p) => Request::SetWeights(p.weights),
                    None => self.request_rollback_write(now, ev),
                }
            }
            Phase::Preflight => self.finish(
                Phase::Aborted,
                format!("{signal} during preflight; nothing was changed"),
            ),
            _ => match self.plan.on_signal {
                OnSignal::Hold => self.finish(
                    Phase::Aborted,
                    format!(
                        "{signal} received; traffic held at {} (on_signal: hold); a restarted run resumes",
                        self.weights_text()
                    ),
                ),
                OnSignal::Rollback => self.begin_rollback(
                    RollbackCause::Signal,
                    format!("{signal} received (on_signal: rollback)"),
                    now,
                    ev,
                ),
            },
        }
    }
}

/// The split of one rollback step. A step is a stage weight below the current one, or 0;
/// anything else (only a corrupted state record could hold it) puts all traffic on DR.
pub(super) fn rollback_step(primary: u8) -> Weights {
    Weights::from_primary(primary).unwrap_or(Weights::ALL_DR)
}
