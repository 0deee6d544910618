//! Tells the people watching the routed object what happens to it (Kubernetes Events on the
//! VirtualService or HTTPRoute): start, each stage, rollback, the end. In order, off the
//! run's path: a slow API server never delays a step.

use std::sync::Arc;
use std::time::Duration;

use cutover_core::TrafficBackend;
use tokio::sync::mpsc;

use super::Observer;
use cutover_core::run::{Event, EventKind, Phase, RunState};

/// Announces run events through the backend.
pub struct Announcer {
    tx: mpsc::UnboundedSender<(String, String, bool)>,
    worker: tokio::task::JoinHandle<()>,
}

impl Announcer {
    /// Starts the worker announcing through `backend`.
    pub fn start(backend: Arc<dyn TrafficBackend>) -> Announcer {
        let (tx, mut rx) = mpsc::unbounded_channel::<(String, String, bool)>();
        let worker = tokio::spawn(async move {
            while let Some((reason, note, warning)) = rx.recv().await {
                backend.announce(&reason, &note, warning).await;
            }
        });
        Announcer { tx, worker }
    }

    /// Lets queued announcements go out, for at most `within`.
    pub async fn flush(self, within: Duration) {
        drop(self.tx);
        let _ = tokio::time::timeout(within, self.worker).await;
    }
}

impl Observer for Announcer {
    fn event(&self, e: &Event, state: &RunState) {
        let item = match &e.kind {
            EventKind::RunStarted { stages, .. } => Some((
                "CutoverStarted",
                format!(
                    "run {}: cutover from DR starts, plan {stages:?} % primary",
                    state.run_id
                ),
                false,
            )),
            EventKind::WeightConfirmed {
                weights,
                stage: Some(i),
            } => Some((
                "StageStarted",
                format!("run {}: stage {}: {weights}", state.run_id, i + 1),
                false,
            )),
            EventKind::RollbackStarted { reason, .. } => Some((
                "RollingBack",
                format!("run {}: {reason}", state.run_id),
                true,
            )),
            EventKind::Drift { found, action, .. } => Some((
                "Drift",
                format!(
                    "run {}: the live split is not the run's: {found}; {action}",
                    state.run_id
                ),
                true,
            )),
            EventKind::Operator {
                action,
                by,
                reason,
                accepted,
                result,
            } => Some((
                "OperatorAction",
                format!(
                    "run {}: {}",
                    state.run_id,
                    super::operator_action(action, by, reason.as_deref(), *accepted, result)
                ),
                false,
            )),
            EventKind::HeldWatching {
                stage,
                reason,
                until,
            } => Some((
                "HeldWatching",
                format!(
                    "run {}: stage {} held: {reason}; still judged until {}",
                    state.run_id,
                    stage + 1,
                    humantime::format_rfc3339_seconds(*until)
                ),
                true,
            )),
            EventKind::ProbeStarted {
                stage,
                weights,
                reason,
            } => Some((
                "Probing",
                format!(
                    "run {}: stage {}: {weights} to judge against DR's concurrent traffic: {reason}",
                    state.run_id,
                    stage + 1
                ),
                true,
            )),
            EventKind::ProbeCleared { stage, detail } => Some((
                "ProbeCleared",
                format!("run {}: stage {}: {detail}", state.run_id, stage + 1),
                false,
            )),
            EventKind::AwaitingApproval {
                stage,
                weight,
                needs,
            } => Some((
                "AwaitingApproval",
                format!(
                    "run {}: stage {} ({weight}%) waits for {needs}",
                    state.run_id,
                    stage + 1
                ),
                false,
            )),
            EventKind::Braked { by } => Some((
                "OperatorRollback",
                format!("run {}: operator rollback by {by}", state.run_id),
                true,
            )),
            EventKind::Finished { outcome } => Some((
                if outcome.phase == Phase::Promoted {
                    "Promoted"
                } else {
                    "CutoverEnded"
                },
                format!(
                    "run {}: {:?} (exit {}): {}",
                    state.run_id,
                    outcome.phase,
                    outcome.exit_code(),
                    outcome.reason
                ),
                outcome.phase != Phase::Promoted,
            )),
            _ => None,
        };
        if let Some((r, n, w)) = item {
            let _ = self.tx.send((r.to_string(), n, w));
        }
    }
}
