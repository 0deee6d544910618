//! The run: a pure state machine. `Run::step(observation) -> Step` has no I/O and no clock;
//! time comes in with each observation, and the driver performs the one request a step
//! makes and feeds its result back. Every decision is therefore unit-testable and runs the
//! same in virtual time (demo, benchmark) as in a real cutover.
//!
//! Phases: `Preflight → Stage(i) {Settling → Judging} → Promoted | RolledBack | Held | Aborted`.
//! The only weights ever requested are 0 and the plan's stage weights.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use crate::Analysis;
use crate::judge::eprocess::EProcess;
use crate::judge::gate::{GateKind, GateResult};
use crate::judge::preflight::PreflightResult;
use crate::judge::verdict::{AnalysisVerdict, StageCounters, StageVerdict, judge, summarize};
use crate::weights::{StageWeight, Weights};

use crate::policy::{OnDrift, OnInconclusive, OnSignal, Plan, RollbackMode};

mod command;
mod control;
mod drift;
mod guards;
mod judging;
mod probe;
mod protocol;
mod resume;
mod rollback;
mod stage;
mod state;

pub use command::*;
pub use protocol::*;
pub use state::*;

/// A run of one plan.
#[derive(Debug, Clone)]
pub struct Run {
    plan: Plan,
    state: RunState,
    resuming: bool,
    /// From [`Observation::Started`].
    propagation: Duration,
    /// Events to tell with the first step (a held run continued by an operator).
    told: Vec<Event>,
}

/// The longest pause between two retries of a failed write.
pub const MAX_RETRY_WAIT: Duration = Duration::from_secs(30);

/// The pause after the `failed`-th failed write in a row (1-based): `first` (the policy's
/// `rollback.retry_interval`), doubled with every failure, at most [`MAX_RETRY_WAIT`]. The
/// one backoff of cutover: the run's retries and `cutover rollback`'s.
///
/// One small function, not a retry crate (`backon`, `backoff`): the run's waits are requests
/// of this pure state machine, slept by the driver on the run's clock (virtual in the demo
/// and benchmark), so a crate's own retry loop and jitter could serve `cutover rollback`
/// only, and would make its schedule differ from the run's.
pub fn retry_backoff(first: Duration, failed: u32) -> Duration {
    let factor = 1u32 << failed.saturating_sub(1).min(10);
    (first * factor).min(MAX_RETRY_WAIT)
}
/// Forward (advancing) writes tried this often before rolling back.
const FORWARD_WRITE_ATTEMPTS: u32 = 3;
impl Run {
    /// A fresh run of `plan`.
    pub fn new(plan: Plan, run_id: String) -> Run {
        let state = RunState {
            run_id,
            service: plan.service.clone(),
            phase: Phase::Preflight,
            stage: None,
            stage_started: None,
            judging_started: None,
            counters: StageCounters::default(),
            dr_baselines: BTreeMap::new(),
            evidence: BTreeMap::new(),
            evidence_of: None,
            dr_pooled: BTreeMap::new(),
            weights: None,
            pending: None,
            rollback: None,
            history: Vec::new(),
            started: None,
            restarts: 0,
            outcome: None,
            drift: None,
            unreadable: 0,
            last_live: None,
            rebake_from: None,
            guard_failing_since: None,
            ended: None,
            operator: Vec::new(),
            paused: None,
            held: None,
            promote: None,
            approvals: BTreeMap::new(),
            awaiting: None,
            probe: None,
            dry_run: false,
            earlier_runs: Vec::new(),
        };
        Run {
            plan,
            state,
            resuming: false,
            propagation: Duration::ZERO,
            told: Vec::new(),
        }
    }

    /// Resumes a persisted, unfinished run (a restarted Job). On start it reconciles the
    /// live weights with the record, resumes the recorded stage and re-bakes it from the
    /// start (its sequential gates' evidence continues when the stage and weight are the
    /// ones it was gathered at); it never advances past a stage whose analysis did not
    /// finish.
    pub fn resume(plan: Plan, mut state: RunState) -> Run {
        if state.phase == Phase::Aborted && state.rollback.is_none() {
            // Stopped by a signal with traffic held at its stage: pick the stage up again.
            state.phase = Phase::Judging;
            state.outcome = None;
        }
        Run {
            plan,
            state,
            resuming: true,
            propagation: Duration::ZERO,
            told: Vec::new(),
        }
    }

    /// The state, for persisting and reporting.
    pub fn state(&self) -> &RunState {
        &self.state
    }

    /// The plan.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Takes one observation and decides the next request. Pure: no I/O, no clock.
    pub fn step(&mut self, obs: Observation) -> Step {
        let now = obs.now();
        let mut ev = std::mem::take(&mut self.told);
        if self.state.phase.is_terminal() {
            let outcome = self.state.outcome.clone().unwrap_or(Outcome {
                phase: self.state.phase,
                reason: "the run had already ended".into(),
            });
            return Step {
                events: ev,
                request: Request::Finish(outcome),
            };
        }
        if let (Some(deadline), Some(started)) = (self.plan.deadline, self.state.started)
            && matches!(self.state.phase, Phase::Settling | Phase::Judging)
            && matches!(
                obs,
                Observation::Slept { .. } | Observation::Analyzed { .. }
            )
            && now.duration_since(started).unwrap_or_default() >= deadline
            && self.state.pending.is_none()
        {
            let reason = format!(
                "the run's deadline of {} has passed without promotion",
                fmt_d(deadline)
            );
            // A held stage being watched was already held: the deadline ends the watch, as
            // it would have found the run held without one.
            let request = match self.state.held.take() {
                Some(h) => self.finish(
                    Phase::Held,
                    format!(
                        "{}; watched until {reason}: no harm seen; traffic held at {}",
                        h.reason,
                        self.weights_text()
                    ),
                ),
                None => self.begin_rollback(RollbackCause::Deadline, reason, now, &mut ev),
            };
            return Step {
                events: ev,
                request,
            };
        }
        let request = match obs {
            Observation::Started {
                now,
                live,
                propagation,
            } => {
                self.propagation = propagation;
                if self.resuming {
                    self.on_resume(now, live, &mut ev)
                } else {
                    self.on_started(now, live, &mut ev)
                }
            }
            Observation::PreflightDone { now, results } => self.on_preflight(now, results, &mut ev),
            Observation::WeightsSet { now, weights } => self.on_weights_set(now, weights, &mut ev),
            Observation::WeightsFailed {
                now,
                error,
                retryable,
                live,
            } => self.on_write_failed(now, error, retryable, live, &mut ev),
            Observation::Slept { now } => self.on_slept(now, &mut ev),
            Observation::Analyzed {
                now,
                analysis,
                live,
            } => self.on_analyzed(now, analysis, live, &mut ev),
            Observation::Braked { now, by } => self.on_braked(now, by, &mut ev),
            Observation::LockLost { now, detail } => {
                ev.push(Event {
                    at: now,
                    kind: EventKind::LockLost {
                        detail: detail.clone(),
                    },
                });
                if self.state.phase == Phase::RollingBack {
                    // A rollback left unfinished is a page, whoever holds the object now.
                    self.finish(
                        Phase::RollbackFailed,
                        format!(
                            "ROLLBACK NOT FINISHED: {detail}; this run writes nothing more, and its last confirmed split was {}",
                            self.weights_text()
                        ),
                    )
                } else {
                    self.finish(
                        Phase::Aborted,
                        format!(
                            "{detail}; this run writes nothing more (its last confirmed split was {})",
                            self.weights_text()
                        ),
                    )
                }
            }
            Observation::Interrupted { now, signal } => self.on_signal(now, signal, &mut ev),
            Observation::Command { now, command } => self.on_command(now, command, &mut ev),
            Observation::ApprovalAnswered {
                now,
                stage,
                granted,
                detail,
            } => self.on_approval_answer(now, stage, granted, detail, &mut ev),
        };
        let request = match request {
            Request::Finish(mut o) if self.state.dry_run && !o.reason.starts_with("dry run") => {
                o.reason = format!("dry run, nothing written: {}", o.reason);
                Request::Finish(o)
            }
            r => r,
        };
        if let Request::Finish(o) = &request {
            self.state.ended = Some(now);
            self.state.phase = o.phase;
            self.state.outcome = Some(o.clone());
            ev.push(Event {
                at: now,
                kind: EventKind::Finished { outcome: o.clone() },
            });
        }
        Step {
            events: ev,
            request,
        }
    }

    /// Preflight failed: tell, and stop with nothing changed.
    fn preflight_failed(&self, reason: String, now: SystemTime, ev: &mut Vec<Event>) -> Request {
        ev.push(Event {
            at: now,
            kind: EventKind::PreflightFailed {
                reason: reason.clone(),
            },
        });
        self.finish(Phase::PreflightFailed, reason)
    }

    fn finish(&self, phase: Phase, reason: String) -> Request {
        Request::Finish(Outcome { phase, reason })
    }

    fn stage_label(&self, i: usize) -> String {
        format!(
            "stage {}/{} ({}%)",
            i + 1,
            self.plan.stages.len(),
            self.plan.stages[i].weight
        )
    }

    fn weights_text(&self) -> String {
        let confirmed = self
            .state
            .weights
            .map(|w| w.to_string())
            .unwrap_or_else(|| "an unread split".into());
        match &self.state.drift {
            Some(d) => format!("{confirmed} as last confirmed (but {d})"),
            None => confirmed,
        }
    }

    /// An observation that cannot happen in this phase: a driver bug. Fail safe: roll back.
    fn unexpected(&mut self, now: SystemTime, what: &str, ev: &mut Vec<Event>) -> Request {
        let reason = format!(
            "internal error: {what} in phase {:?}; rolling back to be safe",
            self.state.phase
        );
        ev.push(Event {
            at: now,
            kind: EventKind::Internal {
                what: reason.clone(),
            },
        });
        if self.state.phase == Phase::Preflight {
            return self.finish(Phase::PreflightFailed, reason);
        }
        if self.state.phase == Phase::RollingBack {
            return self.request_rollback_write(now, ev);
        }
        self.begin_rollback(RollbackCause::Breach, reason, now, ev)
    }
}

/// Formats a duration for people: `2m 30s`.
pub fn fmt_d(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

#[cfg(test)]
mod tests;
