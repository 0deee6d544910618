//! Operator commands on a live run — pause, resume, promote, abort, approve — as they are
//! posted to the run's state store and acknowledged in its record.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// A command posted by `cutover pause|resume|promote|abort|approve` for one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// Unique id; the run acknowledges it by this id, once.
    pub id: String,
    /// The run it is for. A command for another run (an older one) is never applied.
    pub run_id: String,
    /// What to do.
    #[serde(flatten)]
    pub action: Action,
    /// Who asked (`--as`, else user@host).
    pub by: String,
    /// Why, as given with `--reason`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When it was posted.
    pub at: SystemTime,
}

/// What a [`Command`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Hold at the current planned weight (still judging, still rolling back on harm).
    Pause,
    /// Lift a pause.
    Resume,
    /// Skip the rest of the current stage's bake (`full`: go to the last stage), once its
    /// split is settled and no gate breaches.
    Promote {
        /// Go to the last stage (still judged) instead of the next.
        full: bool,
    },
    /// Roll back now (exit 4).
    Abort,
    /// Approve a stage (index into the plan) whose weight waits for approval.
    Approve {
        /// The stage, 0-based.
        stage: usize,
    },
}

impl Action {
    /// The command's name, as typed: `pause`, `promote --full`, `approve stage 3`.
    pub fn describe(&self) -> String {
        match self {
            Action::Pause => "pause".into(),
            Action::Resume => "resume".into(),
            Action::Promote { full: false } => "promote --to-next".into(),
            Action::Promote { full: true } => "promote --full".into(),
            Action::Abort => "abort".into(),
            Action::Approve { stage } => format!("approve stage {}", stage + 1),
        }
    }
}

/// A command as the run answered it, kept in the run's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorAction {
    /// The command.
    pub command: Command,
    /// When the run acknowledged it.
    pub acknowledged: SystemTime,
    /// Whether the run took it (a refused command changes nothing).
    pub accepted: bool,
    /// What the run did, or why it refused, in words.
    pub result: String,
}
