//! What a run records after every step: its phase, stage, counters, evidence, pending
//! write and history; and how it ended.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::*;
use crate::metrics::source::Counted;

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
    /// A probe's weights (`analysis.probe`): an earlier stage's split written while `stage`
    /// (where DR serves nothing) is judged. A run restarted before it is read back goes on
    /// with the probe if it landed, else with the stage at its own split.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub probe: bool,
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

/// What a stage's evidence is about: the stage, its weight, and what each sequential gate
/// tests. A restart continues the persisted e-processes only where all of it is still so
/// (an edited policy may have moved a stage or changed a gate's tolerance, and evidence
/// against one `ρ₀` is not evidence against another).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvidenceOf {
    /// The stage (index into the plan).
    pub stage: usize,
    /// The primary's weight at that stage, in percent.
    pub weight: u8,
    /// Per sequential gate (by name), what its e-process tests.
    pub tests: BTreeMap<String, EvidenceTest>,
}

/// What one sequential gate's e-process tests.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EvidenceTest {
    /// What is counted as a bad request.
    pub counted: Counted,
    /// `ρ₀ = 1 + tolerance`, the ratio the relative evidence is measured against. (Alpha
    /// and beta are boundaries: changing those keeps the evidence valid.)
    pub ratio: f64,
    /// `δ`, the rate the absolute evidence is measured against.
    #[serde(default)]
    pub absolute: f64,
    /// How the evidence is computed: records of an earlier model (untempered, the absolute
    /// test from totals, no change detector) are not continued.
    #[serde(default = "first_model")]
    pub model: u32,
}

/// A probe under way (`analysis.probe`): at a stage where DR serves nothing, the primary's
/// rate rose above DR's earlier one, and the primary is judged at an earlier stage's weight
/// against DR's concurrent traffic before anything is rolled back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    /// The probe's split.
    pub weights: Weights,
    /// When it was read back; `None` while its write is pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<SystemTime>,
    /// What set it off: the evidence against DR's earlier rate.
    pub reason: String,
    /// The sequential gates whose evidence set it off: it clears only once DR's traffic at
    /// it says enough about each ([`crate::judge::eprocess::PROBE_MIN_DR_BAD`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gates: Vec<String>,
}

/// A held stage that is still being watched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldWatch {
    /// When the stage was held.
    pub since: SystemTime,
    /// Why: the inconclusive stage's reason.
    pub reason: String,
}

/// The evidence model of this version: tempered ratios, absolute grid, change detector.
pub const EVIDENCE_MODEL: u32 = 2;

fn first_model() -> u32 {
    1
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
    /// The current stage's e-process per sequential gate; reset at every weight change,
    /// continued by a restart that resumes the same stage at the same weight.
    #[serde(default)]
    pub evidence: BTreeMap<String, EProcess>,
    /// What `evidence` was gathered at, so that a restart continues it only there. `None` in
    /// a record written before restarts kept evidence: such a record's evidence starts over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence_of: Option<EvidenceOf>,
    /// Per sequential gate, DR's counts pooled over the stages it served so far.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dr_pooled: BTreeMap<String, crate::judge::eprocess::Tally>,
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
    /// Since when a guard has been failing (`None`: every guard holds); see `guards.rs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guard_failing_since: Option<SystemTime>,
    /// When the run ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<SystemTime>,
    /// Every operator command the run acknowledged, in order, with what it did.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operator: Vec<OperatorAction>,
    /// A stage held inconclusive and still watched (`analysis.watch_held`): since when,
    /// and why it was held. It advances only on `cutover promote`; harm still rolls back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<HeldWatch>,
    /// The pause in force (`cutover pause`): nothing advances until `cutover resume`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<Command>,
    /// A `cutover promote` waiting for its stage's next analysis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promote: Option<PendingPromote>,
    /// Approvals given, per stage index: who and when (given ahead of time, or while the
    /// run waits).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub approvals: BTreeMap<usize, Vec<Approval>>,
    /// The stage whose weight waits for approval, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub awaiting: Option<Awaiting>,
    /// A probe under way at the current stage (`analysis.probe`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<Probe>,
    /// A dry run: judges, writes nothing, persists nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// Earlier runs of this service recorded in the same store, oldest first (at most
    /// [`RUNS_KEPT`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub earlier_runs: Vec<RunSummary>,
}

/// A promote taken for one stage: it applies to that stage only (a stage that starts drops it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingPromote {
    /// The command.
    pub command: Command,
    /// The stage it skips the bake of.
    pub stage: Option<usize>,
}

/// How many earlier runs a record keeps.
pub const RUNS_KEPT: usize = 20;

/// One approval of a stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// Who approved (`--as`, user@host, or the webhook).
    pub by: String,
    /// When.
    pub at: SystemTime,
}

/// A stage waiting for its approval before its weight is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Awaiting {
    /// The stage (index into the plan).
    pub stage: usize,
    /// Since when.
    pub since: SystemTime,
}

/// An earlier run, as `cutover status` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSummary {
    /// Its id.
    pub run_id: String,
    /// When it started.
    pub started: Option<SystemTime>,
    /// When it ended.
    pub ended: Option<SystemTime>,
    /// How it ended (`None`: it never finished, and was replaced by `--fresh`).
    pub outcome: Option<Outcome>,
    /// The last weights it confirmed.
    pub weights: Option<Weights>,
    /// The highest stage it wrote (0-based).
    pub highest_stage: Option<usize>,
}

impl RunState {
    /// This run as a line of history.
    pub fn summary(&self) -> RunSummary {
        RunSummary {
            run_id: self.run_id.clone(),
            started: self.started,
            ended: self.ended,
            outcome: self.outcome.clone(),
            weights: self.weights,
            highest_stage: self.history.iter().filter_map(|h| h.stage).max(),
        }
    }

    /// The phase as people read it: `awaiting_approval` and `paused` where they apply.
    pub fn display_phase(&self) -> String {
        if !self.phase.is_terminal() {
            if self.awaiting.is_some() {
                return "awaiting_approval".into();
            }
            if self.paused.is_some() {
                return "paused".into();
            }
            if self.held.is_some() {
                return "held_watching".into();
            }
            if self.probe.is_some() {
                return "probing".into();
            }
        }
        serde_json::to_value(self.phase)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| format!("{:?}", self.phase))
    }
}
