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
use crate::Weights;
use crate::judge::eprocess::EProcess;
use crate::judge::gate::GateResult;
use crate::judge::preflight::PreflightResult;
use crate::judge::verdict::{AnalysisVerdict, StageCounters, StageVerdict, judge, summarize};
use serde::{Deserialize, Serialize};

use crate::policy::{OnDrift, OnInconclusive, OnSignal, Plan, RollbackMode};

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Checking that a cutover may start; nothing changed yet.
    Preflight,
    /// A stage's weight is written; waiting until the observed share is near it.
    Settling,
    /// Analysing the primary at the current stage.
    Judging,
    /// Putting traffic back on DR.
    RollingBack,
    /// All traffic on the primary; done (exit 0).
    Promoted,
    /// All traffic back on DR after a breach (exit 1).
    RolledBack,
    /// Preflight failed; nothing was changed (exit 3).
    PreflightFailed,
    /// Stopped by a signal or operator; traffic held or restored as configured (exit 4).
    Aborted,
    /// Inconclusive or global incident; traffic held at a planned weight (exit 5).
    Held,
    /// A rollback could not be applied (exit 10): page now.
    RollbackFailed,
}

impl Phase {
    /// Whether the run is over.
    pub fn is_terminal(self) -> bool {
        !matches!(
            self,
            Phase::Preflight | Phase::Settling | Phase::Judging | Phase::RollingBack
        )
    }

    /// A small number per phase, for the `cutover_phase` metric.
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// The terminal phase.
    pub phase: Phase,
    /// Why, in words.
    pub reason: String,
}

impl Outcome {
    /// The process exit code a runbook reads (DESIGN.md).
    pub fn exit_code(&self) -> i32 {
        match self.phase {
            Phase::Promoted => 0,
            Phase::RolledBack => 1,
            Phase::PreflightFailed => 3,
            Phase::Aborted => 4,
            Phase::Held => 5,
            Phase::RollbackFailed => 10,
            // Not terminal: never an outcome.
            Phase::Preflight | Phase::Settling | Phase::Judging | Phase::RollingBack => 10,
        }
    }
}

/// Why a rollback started; decides the outcome once traffic is on DR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RollbackCause {
    /// A gate breached or the error limit was reached.
    Breach,
    /// A stage stayed undecided and `on_inconclusive: rollback`.
    Inconclusive,
    /// A weight write kept failing.
    WriteFailed,
    /// A signal with `on_signal: rollback`.
    Signal,
    /// The policy's overall `deadline` passed.
    Deadline,
    /// A restarted run found traffic at a weight the plan does not name, or ahead of it.
    Reconcile,
    /// An operator pulled the emergency brake (`cutover rollback`).
    Operator,
    /// The live weights differed from the last confirmed write (`on_drift: rollback`).
    Drift,
}

impl RollbackCause {
    /// The phase a finished rollback of this cause ends in: a stop asked for by people
    /// (signal, operator) is `Aborted` (exit 4); everything else `RolledBack` (exit 1).
    pub fn outcome_phase(self) -> Phase {
        match self {
            RollbackCause::Signal | RollbackCause::Operator => Phase::Aborted,
            _ => Phase::RolledBack,
        }
    }
}

/// A write the run is waiting on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingWrite {
    /// The weights to write.
    pub weights: Weights,
    /// The stage it starts, or `None` for a rollback step.
    pub stage: Option<usize>,
    /// Failed attempts so far.
    pub attempts: u32,
}

/// A rollback in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackProgress {
    /// Why.
    pub cause: RollbackCause,
    /// The breach or reason, in words.
    pub reason: String,
    /// Primary weights still to write, in order; the last is 0.
    pub remaining: Vec<u8>,
}

/// One change of the live weights, as confirmed by reading back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightChange {
    /// When it was confirmed.
    pub at: SystemTime,
    /// The weights.
    pub weights: Weights,
    /// The stage it started, or `None` for a rollback step.
    pub stage: Option<usize>,
}

/// The whole state of a run: persisted after every step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    /// A unique id of this run.
    pub run_id: String,
    /// The service.
    pub service: String,
    /// The phase.
    pub phase: Phase,
    /// The current stage (index into the plan).
    pub stage: Option<usize>,
    /// When the current stage's weight was confirmed.
    pub stage_started: Option<SystemTime>,
    /// When the current stage settled and judging began.
    pub judging_started: Option<SystemTime>,
    /// The current stage's counters.
    pub counters: StageCounters,
    /// DR's last good value per relative gate, for stages where DR serves nothing.
    pub dr_baselines: BTreeMap<String, f64>,
    /// The current stage's e-process per sequential gate; reset at every weight change.
    #[serde(default)]
    pub evidence: BTreeMap<String, EProcess>,
    /// The last weights confirmed live.
    pub weights: Option<Weights>,
    /// A write under way or to retry.
    pub pending: Option<PendingWrite>,
    /// A rollback under way.
    pub rollback: Option<RollbackProgress>,
    /// Every confirmed weight change.
    pub history: Vec<WeightChange>,
    /// When the run started.
    pub started: Option<SystemTime>,
    /// How often the run was restarted and resumed.
    #[serde(default)]
    pub restarts: u32,
    /// How the run ended.
    pub outcome: Option<Outcome>,
    /// The drift under way: the live weights (or why they cannot be read) when they are
    /// not the last confirmed write. While set, the stage does not advance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<String>,
    /// Analyses in a row whose read of the live weights failed.
    #[serde(default)]
    pub unreadable: u32,
    /// The last live weights read with an analysis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_live: Option<Weights>,
    /// When the current stage's bake restarted after a drift (its `max_duration` still
    /// counts from the stage's start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebake_from: Option<SystemTime>,
}

/// What the driver saw, with the time it saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    /// The run starts; the backend's live weights, or why they could not be read.
    Started {
        /// Now.
        now: SystemTime,
        /// The live weights.
        live: Result<Weights, String>,
    },
    /// Preflight checks ran.
    PreflightDone {
        /// Now.
        now: SystemTime,
        /// Each check.
        results: Vec<PreflightResult>,
    },
    /// The requested weights were written and read back.
    WeightsSet {
        /// Now.
        now: SystemTime,
        /// The weights read back.
        weights: Weights,
    },
    /// The write failed, or read back something else.
    WeightsFailed {
        /// Now.
        now: SystemTime,
        /// What went wrong.
        error: String,
        /// Whether a retry may succeed.
        retryable: bool,
        /// The live weights read after the failure (`None`: not read). A rollback whose
        /// write failed but whose live split is already the one asked for is done; "page
        /// now" is said only when the last read is not all-DR, and it states what was read.
        live: Option<Result<Weights, String>>,
    },
    /// A requested sleep is over.
    Slept {
        /// Now.
        now: SystemTime,
    },
    /// An analysis was taken.
    Analyzed {
        /// Now.
        now: SystemTime,
        /// Its readings.
        analysis: Analysis,
        /// The live weights read at the same time (`None`: not read).
        live: Option<Result<Weights, String>>,
    },
    /// An operator pulled the emergency brake on this run (`cutover rollback`).
    Braked {
        /// Now.
        now: SystemTime,
        /// Who, when.
        by: String,
    },
    /// The object's lock is no longer this run's: another run took it over.
    LockLost {
        /// Now.
        now: SystemTime,
        /// Who holds it now, in words.
        detail: String,
    },
    /// A termination signal arrived.
    Interrupted {
        /// Now.
        now: SystemTime,
        /// Which signal.
        signal: String,
    },
}

impl Observation {
    fn now(&self) -> SystemTime {
        match self {
            Observation::Started { now, .. }
            | Observation::PreflightDone { now, .. }
            | Observation::WeightsSet { now, .. }
            | Observation::WeightsFailed { now, .. }
            | Observation::Slept { now }
            | Observation::Analyzed { now, .. }
            | Observation::Braked { now, .. }
            | Observation::LockLost { now, .. }
            | Observation::Interrupted { now, .. } => *now,
        }
    }
}

/// The one thing the run asks the driver to do next.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// Run the preflight checks.
    Preflight,
    /// Write these weights, wait until applied, read back.
    SetWeights(Weights),
    /// Wait this long.
    Sleep(Duration),
    /// Take an analysis over this interval.
    Analyze {
        /// The analysis window.
        interval: Duration,
        /// Per sequential gate: where its counting resumes (the end of its last interval).
        since: BTreeMap<String, SystemTime>,
    },
    /// Stop with this outcome.
    Finish(Outcome),
}

/// Something worth telling people, with the numbers behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// When.
    pub at: SystemTime,
    /// What.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// The kinds of [`Event`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    /// The run started from these live weights.
    RunStarted {
        /// Live weights.
        live: Weights,
        /// The plan's weights.
        stages: Vec<u8>,
    },
    /// A restarted run picked up a persisted one.
    Resumed {
        /// Live weights found.
        live: Weights,
        /// The stage resumed (re-baked from its start), if any.
        stage: Option<usize>,
        /// What was reconciled, in words.
        detail: String,
    },
    /// Preflight passed.
    PreflightPassed {
        /// Each check.
        results: Vec<PreflightResult>,
    },
    /// Preflight failed; nothing changed.
    PreflightFailed {
        /// Why.
        reason: String,
    },
    /// A weight write is requested.
    WeightRequested {
        /// The weights.
        weights: Weights,
        /// The stage it starts, or `None` for a rollback step.
        stage: Option<usize>,
    },
    /// A weight write was confirmed by reading back.
    WeightConfirmed {
        /// The weights.
        weights: Weights,
        /// The stage it starts, or `None`.
        stage: Option<usize>,
    },
    /// A weight write failed.
    WriteFailed {
        /// Why.
        error: String,
        /// Attempts so far.
        attempts: u32,
    },
    /// An analysis and what the run made of it.
    Analyzed {
        /// Stage index.
        stage: usize,
        /// The phase it was taken in.
        phase: Phase,
        /// Observed primary share of requests.
        share: Option<f64>,
        /// Each gate.
        results: Vec<GateResult>,
        /// The analysis verdict.
        verdict: AnalysisVerdict,
        /// What the stage does now, in words.
        decision: String,
    },
    /// The observed share reached the target; judging begins.
    Settled {
        /// Stage index.
        stage: usize,
        /// Observed share.
        share: f64,
    },
    /// The live weights are not the last confirmed write (someone else changed them, or
    /// they cannot be read), and what the run does about it (`on_drift`).
    Drift {
        /// The last confirmed weights.
        expected: Option<Weights>,
        /// What was read instead, or why nothing could be read.
        found: String,
        /// What the run does, in words.
        action: String,
    },
    /// The live weights are the confirmed ones again; the stage re-bakes from now.
    DriftCleared {
        /// The weights read.
        live: Weights,
    },
    /// An operator pulled the emergency brake on this run.
    Braked {
        /// Who, when.
        by: String,
    },
    /// The object's lock was taken over by another run; this run writes nothing more.
    LockLost {
        /// Who holds it now.
        detail: String,
    },
    /// An observation that cannot happen in the phase it came in: a driver bug. The run
    /// fails safe (rolls back); this event says what was seen, for the bug report.
    Internal {
        /// What happened, in words.
        what: String,
    },
    /// The stage passed its gates and its bake.
    StagePassed {
        /// Stage index.
        stage: usize,
    },
    /// A rollback started.
    RollbackStarted {
        /// Why.
        cause: RollbackCause,
        /// The breach, in words.
        reason: String,
    },
    /// The run ended.
    Finished {
        /// How.
        outcome: Outcome,
    },
}

/// The events of one step and its one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Things to tell.
    pub events: Vec<Event>,
    /// The next thing to do.
    pub request: Request,
}

/// A run of one plan.
#[derive(Debug, Clone)]
pub struct Run {
    plan: Plan,
    state: RunState,
    resuming: bool,
}

/// The longest pause between two retries of a failed write.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(30);
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
        };
        Run {
            plan,
            state,
            resuming: false,
        }
    }

    /// Resumes a persisted, unfinished run (a restarted Job). On start it reconciles the
    /// live weights with the record, resumes the recorded stage and re-bakes it from the
    /// start; it never advances past a stage whose analysis did not finish.
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
        }
    }

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

    /// The state, for persisting and reporting.
    pub fn state(&self) -> &RunState {
        &self.state
    }

    /// The plan.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Sets how long clients may keep an old split (the DNS TTL), once the backend has
    /// read its records: settling never judges before it has passed.
    pub fn set_propagation(&mut self, d: std::time::Duration) {
        self.plan.propagation = d;
    }

    /// Takes one observation and decides the next request. Pure: no I/O, no clock.
    pub fn step(&mut self, obs: Observation) -> Step {
        let now = obs.now();
        let mut ev = Vec::new();
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
            let request = self.begin_rollback(RollbackCause::Deadline, reason, now, &mut ev);
            return Step {
                events: ev,
                request,
            };
        }
        let request = match obs {
            Observation::Started { now, live } if self.resuming => {
                self.on_resume(now, live, &mut ev)
            }
            Observation::Started { now, live } => self.on_started(now, live, &mut ev),
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
        };
        if let Request::Finish(o) = &request {
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

    fn on_resume(
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
        let index_of = |w: u8| self.plan.stages.iter().position(|s| s.weight == w);
        if live.primary != 0 && index_of(live.primary).is_none() {
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
            if live.primary == 0 {
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
        let live_stage = if live.primary == 0 {
            None
        } else {
            index_of(live.primary)
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

    fn on_started(
        &mut self,
        now: SystemTime,
        live: Result<Weights, String>,
        ev: &mut Vec<Event>,
    ) -> Request {
        self.state.started = Some(now);
        if self.state.phase != Phase::Preflight {
            return self.unexpected(now, "a second start", ev);
        }
        let live = match live {
            Ok(w) => w,
            Err(e) => {
                let reason = format!("cannot read the live weights: {e}");
                return self.preflight_failed(reason, now, ev);
            }
        };
        self.state.weights = Some(live);
        self.state.last_live = Some(live);
        ev.push(Event {
            at: now,
            kind: EventKind::RunStarted {
                live,
                stages: self.plan.stages.iter().map(|s| s.weight).collect(),
            },
        });
        if live != Weights::ALL_DR {
            let reason = format!(
                "the backend sends {live}, but a cutover starts with all traffic on DR; \
                 if an earlier run stopped half-way, run `cutover rollback` first"
            );
            return self.preflight_failed(reason, now, ev);
        }
        Request::Preflight
    }

    fn on_preflight(
        &mut self,
        now: SystemTime,
        results: Vec<PreflightResult>,
        ev: &mut Vec<Event>,
    ) -> Request {
        if self.state.phase != Phase::Preflight {
            return self.unexpected(now, "preflight results", ev);
        }
        let failed: Vec<String> = results
            .iter()
            .filter(|r| !r.ok)
            .map(|r| format!("{}: {} (query: {})", r.name, r.detail, r.query))
            .collect();
        if !failed.is_empty() {
            let reason = format!("preflight failed, nothing changed: {}", failed.join("; "));
            return self.preflight_failed(reason, now, ev);
        }
        ev.push(Event {
            at: now,
            kind: EventKind::PreflightPassed { results },
        });
        self.request_stage(0, now, ev)
    }

    /// Records the intent to write `weights` (persisted before the write happens).
    fn pend_write(
        &mut self,
        weights: Weights,
        stage: Option<usize>,
        now: SystemTime,
        ev: &mut Vec<Event>,
    ) {
        self.state.pending = Some(PendingWrite {
            weights,
            stage,
            attempts: 0,
        });
        ev.push(Event {
            at: now,
            kind: EventKind::WeightRequested { weights, stage },
        });
    }

    fn request_stage(&mut self, i: usize, now: SystemTime, ev: &mut Vec<Event>) -> Request {
        let weights = Weights {
            primary: self.plan.stages[i].weight,
            dr: 100 - self.plan.stages[i].weight,
        };
        self.pend_write(weights, Some(i), now, ev);
        Request::SetWeights(weights)
    }

    fn on_weights_set(
        &mut self,
        now: SystemTime,
        weights: Weights,
        ev: &mut Vec<Event>,
    ) -> Request {
        let Some(pending) = self.state.pending.take() else {
            return self.unexpected(now, "a weight confirmation with no write pending", ev);
        };
        if weights != pending.weights {
            // The driver reads back and reports mismatches as failures; keep it that way.
            self.state.pending = Some(pending);
            return self.on_write_failed(
                now,
                format!("read back {weights} after a write of a different split"),
                true,
                Some(Ok(weights)),
                ev,
            );
        }
        self.state.weights = Some(weights);
        // What is live now, for a stepped rollback that steps down from it.
        self.state.last_live = Some(weights);
        self.state.history.push(WeightChange {
            at: now,
            weights,
            stage: pending.stage,
        });
        ev.push(Event {
            at: now,
            kind: EventKind::WeightConfirmed {
                weights,
                stage: pending.stage,
            },
        });
        if self.state.phase == Phase::RollingBack {
            return self.rollback_step_done(now, ev);
        }
        let Some(i) = pending.stage else {
            return self.unexpected(now, "a rollback weight outside a rollback", ev);
        };
        if self.state.stage == Some(i)
            && matches!(self.state.phase, Phase::Settling | Phase::Judging)
        {
            // The current stage written again after a drift (`reassert`): its bake starts
            // over, its max_duration does not, so a weight reverted again and again ends
            // as inconclusive instead of re-baking forever.
            self.state.rebake_from = Some(now);
            self.state.counters.consecutive_passes = 0;
            return Request::Sleep(self.plan.stages[i].interval);
        }
        self.start_stage(i, now)
    }

    /// Stage `i` (re)starts at `now`: counters and evidence start from nothing, and sequential
    /// gates count from the end of the burn-in (the split they condition on is measured, so
    /// the settling period's data is valid evidence). Settling's first look comes after an
    /// interval, the propagation delay and the burn-in, whichever is longest.
    fn start_stage(&mut self, i: usize, now: SystemTime) -> Request {
        self.state.stage = Some(i);
        self.state.stage_started = Some(now);
        self.state.drift = None;
        self.state.unreadable = 0;
        self.state.rebake_from = None;
        self.state.judging_started = None;
        self.state.counters = StageCounters::default();
        self.state.phase = Phase::Settling;
        self.state.evidence = self
            .plan
            .gates
            .iter()
            .filter(|g| g.is_sequential())
            .map(|g| {
                let ep = EProcess {
                    counted_to: Some(now + self.plan.burn_in),
                    ..EProcess::default()
                };
                (g.name.clone(), ep)
            })
            .collect();
        Request::Sleep(
            self.plan.stages[i]
                .interval
                .max(self.plan.propagation)
                .max(self.plan.burn_in),
        )
    }

    fn on_write_failed(
        &mut self,
        now: SystemTime,
        error: String,
        retryable: bool,
        live: Option<Result<Weights, String>>,
        ev: &mut Vec<Event>,
    ) -> Request {
        let Some(pending) = self.state.pending.as_mut() else {
            return self.unexpected(now, "a write failure with no write pending", ev);
        };
        pending.attempts += 1;
        let attempts = pending.attempts;
        ev.push(Event {
            at: now,
            kind: EventKind::WriteFailed {
                error: error.clone(),
                attempts,
            },
        });
        let wait = self.retry_wait(attempts);
        if self.state.phase == Phase::RollingBack {
            let wanted = self.state.pending.as_ref().map(|p| p.weights);
            if let (Some(Ok(w)), Some(want)) = (&live, wanted)
                && *w == want
            {
                // The write failed, but the live split read back is the one asked for.
                return self.on_weights_set(now, *w, ev);
            }
            if let Some(Ok(w)) = &live
                && *w == Weights::ALL_DR
            {
                // A step failed, but everything is on DR already: the rollback is done.
                if let Some(rb) = self.state.rollback.as_mut() {
                    rb.remaining = vec![0];
                }
                if let Some(p) = self.state.pending.as_mut() {
                    p.weights = Weights::ALL_DR;
                }
                return self.on_weights_set(now, *w, ev);
            }
            // A rollback is retried whatever the error, until it sticks or attempts run out.
            if attempts >= self.plan.rollback.max_attempts {
                let read = match &live {
                    Some(Ok(w)) => {
                        format!("the live weights read {w}: traffic still reaches the primary")
                    }
                    Some(Err(e)) => format!(
                        "the live weights cannot be read ({e}): traffic may still reach the primary"
                    ),
                    None => {
                        "the live weights were not read: traffic may still reach the primary".into()
                    }
                };
                return self.finish(
                    Phase::RollbackFailed,
                    format!(
                        "ROLLBACK COULD NOT BE APPLIED after {attempts} attempts; {read}. Last error: {error}"
                    ),
                );
            }
            return Request::Sleep(wait);
        }
        if retryable && attempts < FORWARD_WRITE_ATTEMPTS {
            return Request::Sleep(wait);
        }
        let reason =
            format!("could not write the next stage's weights after {attempts} attempts: {error}");
        self.begin_rollback(RollbackCause::WriteFailed, reason, now, ev)
    }

    fn retry_wait(&self, attempts: u32) -> Duration {
        let base = self.plan.rollback.retry_interval.get();
        let factor = 1u32 << attempts.saturating_sub(1).min(10);
        (base * factor).min(MAX_RETRY_WAIT)
    }

    fn on_slept(&mut self, now: SystemTime, ev: &mut Vec<Event>) -> Request {
        if let Some(p) = &self.state.pending {
            return Request::SetWeights(p.weights);
        }
        match (self.state.phase, self.state.stage) {
            (Phase::Settling | Phase::Judging, Some(i)) => Request::Analyze {
                interval: self.plan.stages[i].interval,
                since: self
                    .state
                    .evidence
                    .iter()
                    .filter_map(|(name, ep)| Some((name.clone(), ep.counted_to?)))
                    .collect(),
            },
            _ => self.unexpected(now, "the end of a sleep", ev),
        }
    }

    fn on_analyzed(
        &mut self,
        now: SystemTime,
        analysis: Analysis,
        live: Option<Result<Weights, String>>,
        ev: &mut Vec<Event>,
    ) -> Request {
        let (Some(i), Some(started)) = (self.state.stage, self.state.stage_started) else {
            return self.unexpected(now, "an analysis outside a stage", ev);
        };
        if !matches!(self.state.phase, Phase::Settling | Phase::Judging) {
            return self.unexpected(now, "an analysis", ev);
        }
        let stage = self.plan.stages[i];
        let dr_serves = stage.weight < 100;
        let empty = BTreeMap::new();
        let baselines = if dr_serves {
            &empty
        } else {
            &self.state.dr_baselines
        };
        let results = analysis.evaluate(&self.plan.gates, baselines, &mut self.state.evidence);
        if dr_serves {
            for (g, r) in self.plan.gates.iter().zip(&results) {
                if let (true, Some(d)) = (g.is_relative(), r.dr) {
                    self.state.dr_baselines.insert(g.name.clone(), d);
                }
            }
        }
        let verdict = summarize(&results);
        let share = analysis.primary_share();
        let elapsed = now.duration_since(started).unwrap_or_default();
        let phase = self.state.phase;
        let sv = judge(&mut self.state.counters, &verdict, self.plan.limits);
        let push = |decision: String, ev: &mut Vec<Event>| {
            ev.push(Event {
                at: now,
                kind: EventKind::Analyzed {
                    stage: i,
                    phase,
                    share,
                    results: results.clone(),
                    verdict: verdict.clone(),
                    decision,
                },
            })
        };
        // A breach is acted on in either phase: settling never hides a failing primary.
        match &sv {
            StageVerdict::Rollback { reason } => {
                push("roll back".into(), ev);
                let reason = format!("{} {reason}", self.stage_label(i));
                return self.begin_rollback(RollbackCause::Breach, reason, now, ev);
            }
            StageVerdict::Freeze { reason } => {
                push("freeze".into(), ev);
                return self.finish(
                    Phase::Held,
                    format!(
                        "{}: {reason}; traffic held at {}",
                        self.stage_label(i),
                        self.weights_text()
                    ),
                );
            }
            _ => {}
        }
        let mut drift_events = Vec::new();
        if let Some(request) = self.on_live(now, i, live, &mut drift_events) {
            push("drift".into(), ev);
            ev.extend(drift_events);
            return request;
        }
        ev.extend(drift_events);
        // The bake restarts after a drift (even one cleared just now); max_duration counts
        // from the stage's start.
        let baked = self
            .state
            .rebake_from
            .map_or(elapsed, |r| now.duration_since(r).unwrap_or_default());
        if phase == Phase::Settling {
            let target = f64::from(stage.weight) / 100.0;
            let converged =
                share.is_some_and(|s| (s - target).abs() <= self.plan.settle_tolerance + 1e-9);
            if converged && elapsed >= self.plan.burn_in {
                push("settled; judging starts".into(), ev);
                self.state.phase = Phase::Judging;
                self.state.judging_started = Some(now);
                self.state.counters.consecutive_passes = 0;
                ev.push(Event {
                    at: now,
                    kind: EventKind::Settled {
                        stage: i,
                        share: share.unwrap_or_default(),
                    },
                });
                return Request::Sleep(stage.interval);
            }
            let failed = [&analysis.primary_rate, &analysis.dr_rate]
                .into_iter()
                .find_map(|r| match r {
                    crate::Reading::Error(e) => Some(e.clone()),
                    _ => None,
                });
            let why = match (share, failed) {
                (None, Some(e)) => format!("the traffic split cannot be measured: {e}"),
                (None, None) => "no traffic observed at either site".to_string(),
                (Some(s), _) => format!(
                    "observed primary share {:.1}% is not within {:.1} points of the target {}%",
                    s * 100.0,
                    self.plan.settle_tolerance * 100.0,
                    stage.weight
                ),
            };
            if elapsed >= stage.max_duration {
                push("inconclusive".into(), ev);
                return self.inconclusive(
                    format!(
                        "{} never settled within max_duration {}: {why}",
                        self.stage_label(i),
                        fmt_d(stage.max_duration)
                    ),
                    now,
                    ev,
                );
            }
            push(format!("settling: {why}"), ev);
            return Request::Sleep(stage.interval);
        }
        let sv = match (sv, share) {
            // Judging at a split other than the stage's is judging something else.
            (StageVerdict::Passing, s) if !self.share_near(stage.weight, s, &analysis) => {
                StageVerdict::Hold {
                    reason: format!(
                        "the observed primary share {} is not within {:.1} points of the stage's {}%; never a pass",
                        s.map(|s| format!("{:.1}%", s * 100.0))
                            .unwrap_or_else(|| "(none)".into()),
                        self.plan.settle_tolerance * 100.0,
                        stage.weight
                    ),
                }
            }
            (StageVerdict::Passing, _) if self.state.drift.is_some() => StageVerdict::Hold {
                reason: format!(
                    "drift: {} (on_drift: hold); nothing advances while the live split is not the run's",
                    self.state.drift.clone().unwrap_or_default()
                ),
            },
            (sv, _) => sv,
        };
        match sv {
            StageVerdict::Passing if baked >= stage.bake => {
                push("advance".into(), ev);
                ev.push(Event {
                    at: now,
                    kind: EventKind::StagePassed { stage: i },
                });
                if i + 1 == self.plan.stages.len() {
                    return self.finish(
                        Phase::Promoted,
                        format!(
                            "all {} stages passed; the primary serves 100% of traffic",
                            self.plan.stages.len()
                        ),
                    );
                }
                self.request_stage(i + 1, now, ev)
            }
            StageVerdict::Passing | StageVerdict::Hold { .. } if elapsed >= stage.max_duration => {
                push("inconclusive".into(), ev);
                let why = match &sv {
                    StageVerdict::Hold { reason } => reason.clone(),
                    _ => "gates passing but bake not over".into(),
                };
                self.inconclusive(
                    format!(
                        "{} undecided after max_duration {}: {why}",
                        self.stage_label(i),
                        fmt_d(stage.max_duration)
                    ),
                    now,
                    ev,
                )
            }
            StageVerdict::Passing => {
                let left = stage.bake.saturating_sub(baked);
                push(format!("passing; bake ends in {}", fmt_d(left)), ev);
                Request::Sleep(stage.interval)
            }
            StageVerdict::Hold { reason } => {
                push(format!("hold: {reason}"), ev);
                Request::Sleep(stage.interval)
            }
            StageVerdict::Rollback { .. } | StageVerdict::Freeze { .. } => {
                unreachable!("handled above")
            }
        }
    }

    /// Whether an observed share is the stage's weight, give or take the settle tolerance and
    /// three standard errors of a share measured on this many requests (a quiet service's
    /// share is noisy; noise alone must not hold a healthy stage).
    fn share_near(&self, weight: u8, share: Option<f64>, analysis: &Analysis) -> bool {
        let Some(s) = share else {
            return false;
        };
        let target = f64::from(weight) / 100.0;
        let n = (analysis.primary_rate.finite().unwrap_or(0.0)
            + analysis.dr_rate.finite().unwrap_or(0.0))
            * analysis.window.as_secs_f64();
        let noise = if n >= 1.0 {
            3.0 * (target * (1.0 - target) / n).sqrt()
        } else {
            1.0
        };
        (s - target).abs() <= self.plan.settle_tolerance + noise + 1e-9
    }

    /// Compares the live weights read with this analysis with the last confirmed write.
    /// Returns the request to make instead of judging on, if the drift policy asks for one.
    fn on_live(
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
        self.state.drift = Some(found);
        match (self.plan.on_drift, act) {
            (OnDrift::Hold, _) | (_, false) => None,
            (OnDrift::Reassert, true) => Some(self.request_stage(stage, now, ev)),
            (OnDrift::Rollback, true) => Some(self.begin_rollback(
                RollbackCause::Drift,
                format!("{what} (on_drift: rollback)"),
                now,
                ev,
            )),
        }
    }

    /// The operator's emergency brake: never write forward again; make sure traffic is on DR.
    fn on_braked(&mut self, now: SystemTime, by: String, ev: &mut Vec<Event>) -> Request {
        ev.push(Event {
            at: now,
            kind: EventKind::Braked { by: by.clone() },
        });
        let reason = format!("operator rollback by {by}");
        if self.state.phase == Phase::Preflight && self.state.history.is_empty() {
            // Recorded as a finished rollback, so that no restart resumes this run.
            self.state.rollback = Some(RollbackProgress {
                cause: RollbackCause::Operator,
                reason: reason.clone(),
                remaining: Vec::new(),
            });
            return self.finish(
                Phase::Aborted,
                format!("{reason} during preflight; nothing was changed"),
            );
        }
        // Whatever was under way (a stage, a stepped rollback): one write to 0 %.
        let reason = match &self.state.rollback {
            Some(rb) if self.state.phase == Phase::RollingBack => {
                format!("{reason}, during a rollback ({})", rb.reason)
            }
            _ => reason,
        };
        self.begin_rollback(RollbackCause::Operator, reason, now, ev)
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

    fn inconclusive(&mut self, reason: String, now: SystemTime, ev: &mut Vec<Event>) -> Request {
        // A drift under way is part of why: say it, whatever the last verdict was.
        let reason = match &self.state.drift {
            Some(d) if !reason.contains("drift") => {
                format!("{reason}; drift: {d} (on_drift: hold)")
            }
            _ => reason,
        };
        match self.plan.on_inconclusive {
            OnInconclusive::Hold => {
                let r = format!(
                    "{reason}; traffic held at {} (on_inconclusive: hold)",
                    self.weights_text()
                );
                self.finish(Phase::Held, r)
            }
            OnInconclusive::Rollback => self.begin_rollback(
                RollbackCause::Inconclusive,
                format!("{reason} (on_inconclusive: rollback)"),
                now,
                ev,
            ),
        }
    }

    /// Starts a rollback: immediate (one write to 0 %) or stepped down the plan's lower stages.
    fn begin_rollback(
        &mut self,
        cause: RollbackCause,
        reason: String,
        now: SystemTime,
        ev: &mut Vec<Event>,
    ) -> Request {
        // Step down from what is live if it is lower than what was confirmed: a stepped
        // rollback never raises the primary's share.
        let current = [self.state.weights, self.state.last_live]
            .into_iter()
            .flatten()
            .map(|w| w.primary)
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
                .map(|s| s.weight)
                .filter(|w| *w < current)
                .collect(),
        };
        remaining.push(0);
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

    fn request_rollback_write(&mut self, now: SystemTime, ev: &mut Vec<Event>) -> Request {
        let next = self
            .state
            .rollback
            .as_ref()
            .and_then(|r| r.remaining.first().copied())
            .unwrap_or(0);
        let weights = Weights {
            primary: next,
            dr: 100 - next,
        };
        self.pend_write(weights, None, now, ev);
        Request::SetWeights(weights)
    }

    fn rollback_step_done(&mut self, now: SystemTime, ev: &mut Vec<Event>) -> Request {
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
        let weights = Weights {
            primary: next,
            dr: 100 - next,
        };
        self.pend_write(weights, None, now, ev);
        // Stepped: pause before the next step; the pending write is issued after the sleep.
        Request::Sleep(self.plan.rollback.step_interval.get())
    }

    fn on_signal(&mut self, now: SystemTime, signal: String, ev: &mut Vec<Event>) -> Request {
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
