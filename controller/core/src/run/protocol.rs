//! The protocol between the run and its driver: an [`Observation`] in, a [`Step`] (events
//! and one [`Request`]) out.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::*;

/// What the driver saw, with the time it saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    /// The run starts; the backend's live weights, or why they could not be read.
    Started {
        /// Now.
        now: SystemTime,
        /// The live weights.
        live: Result<Weights, String>,
        /// How long clients may keep an old split after a change (the DNS TTL the backend
        /// read with the live weights; zero where there is none): settling never judges
        /// before it has passed.
        propagation: Duration,
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
    /// An operator command for this run, found after a sleep. The run answers it (records
    /// it as acknowledged), then carries on as after the sleep.
    Command {
        /// Now.
        now: SystemTime,
        /// The command.
        command: Command,
    },
    /// The answer of a stage's approval webhook.
    ApprovalAnswered {
        /// Now.
        now: SystemTime,
        /// The stage asked about.
        stage: usize,
        /// A 2xx answer.
        granted: bool,
        /// The status or error, in words.
        detail: String,
    },
}

impl Observation {
    pub(super) fn now(&self) -> SystemTime {
        match self {
            Observation::Started { now, .. }
            | Observation::PreflightDone { now, .. }
            | Observation::WeightsSet { now, .. }
            | Observation::WeightsFailed { now, .. }
            | Observation::Slept { now }
            | Observation::Analyzed { now, .. }
            | Observation::Braked { now, .. }
            | Observation::LockLost { now, .. }
            | Observation::Interrupted { now, .. }
            | Observation::Command { now, .. }
            | Observation::ApprovalAnswered { now, .. } => *now,
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
    /// POST the run's state to a stage's approval webhook and answer with
    /// [`Observation::ApprovalAnswered`].
    AskApproval {
        /// The stage waiting.
        stage: usize,
        /// The webhook.
        url: String,
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
    /// Preflight checks that do not hold yet have time left to wait (`wait:`); they are
    /// checked again after `retry_in` seconds. Nothing changed.
    PreflightWaiting {
        /// Each check.
        results: Vec<PreflightResult>,
        /// What does not hold yet, in words.
        reason: String,
        /// Seconds until the next check.
        retry_in: u64,
    },
    /// The guards, checked with an analysis, and what they mean for the stage.
    Guards {
        /// Stage index.
        stage: usize,
        /// Each guard.
        results: Vec<PreflightResult>,
        /// What the run does about them, in words.
        decision: String,
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
    /// An operator command, and what the run made of it.
    Operator {
        /// The command, as typed.
        action: String,
        /// Who.
        by: String,
        /// Why, if they said.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// Whether the run took it.
        accepted: bool,
        /// What it did, or why not.
        result: String,
    },
    /// A stage undecided at its `max_duration` is held at its weight and still judged
    /// until `until` (`analysis.watch_held`): harm rolls back, `cutover promote` advances.
    HeldWatching {
        /// The stage held (0-based).
        stage: usize,
        /// Why it was held.
        reason: String,
        /// When the watch ends and the run exits 5 if nothing happened.
        until: SystemTime,
    },
    /// At a stage where DR serves nothing, the primary's rate rose above DR's earlier one:
    /// the run writes an earlier stage's split to judge it against DR's concurrent traffic
    /// (`analysis.probe`) before anything is rolled back.
    ProbeStarted {
        /// The stage judged (0-based).
        stage: usize,
        /// The probe's split.
        weights: Weights,
        /// The evidence that set it off.
        reason: String,
    },
    /// A probe found the primary no worse than DR's concurrent traffic for its whole length:
    /// the stage's split is written again (or, past `max_duration`, the stage is held).
    ProbeCleared {
        /// The stage judged (0-based).
        stage: usize,
        /// What the probe saw, in words.
        detail: String,
    },
    /// A stage's weight waits for approval; the stage before keeps being judged.
    AwaitingApproval {
        /// The stage waiting (0-based).
        stage: usize,
        /// Its weight.
        weight: u8,
        /// What it needs, in words.
        needs: String,
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
