//! Webhook notifications (Slack-compatible `{"text": ...}`) on start, each stage, rollback,
//! hold and finish. Each webhook has its own ordered queue and worker: sending never blocks
//! the run, a slow or failing webhook never delays a rollback, and failures are logged with
//! the webhook's host only (its path usually holds a token).

use std::time::Duration;

use tokio::sync::mpsc;

use super::Observer;
use cutover_core::run::{Event, EventKind, Phase, RunState};

/// Sends notifications to the policy's webhooks.
pub struct Notifier {
    queues: Vec<mpsc::UnboundedSender<String>>,
    workers: Vec<tokio::task::JoinHandle<()>>,
    timeout: Duration,
}

const ATTEMPTS: u32 = 3;

/// The webhook's host, for logs.
fn host_of(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_else(|| "webhook".into())
}

impl Notifier {
    /// Starts one worker per webhook URL; each request is bounded by `timeout`.
    pub fn start(urls: &[String], timeout: Duration) -> Notifier {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .expect("http client");
        let mut queues = Vec::new();
        let mut workers = Vec::new();
        for url in urls {
            let (tx, mut rx) = mpsc::unbounded_channel::<String>();
            let (http, url) = (http.clone(), url.clone());
            workers.push(tokio::spawn(async move {
                while let Some(text) = rx.recv().await {
                    let body = serde_json::json!({ "text": text, "username": "cutover" });
                    for attempt in 1..=ATTEMPTS {
                        match http.post(&url).json(&body).send().await {
                            Ok(r) if r.status().is_success() => break,
                            Ok(r) => tracing::warn!(target: "cutover::notify", webhook = %host_of(&url), status = %r.status(), attempt, "webhook refused a notification"),
                            Err(e) => tracing::warn!(target: "cutover::notify", webhook = %host_of(&url), error = %e.without_url(), attempt, "webhook failed"),
                        }
                        if attempt < ATTEMPTS {
                            tokio::time::sleep(Duration::from_millis(500) * attempt).await;
                        }
                    }
                }
            }));
            queues.push(tx);
        }
        Notifier {
            queues,
            workers,
            timeout,
        }
    }

    /// Queues a text for every webhook (the fleet's notifications; a run's come as events).
    pub fn send(&self, text: String) {
        for q in &self.queues {
            let _ = q.send(text.clone());
        }
    }

    /// Lets queued notifications go out, waiting at most one webhook timeout.
    pub async fn flush(self) {
        drop(self.queues);
        let all = futures_join(self.workers);
        let _ = tokio::time::timeout(self.timeout, all).await;
    }
}

async fn futures_join(workers: Vec<tokio::task::JoinHandle<()>>) {
    for w in workers {
        let _ = w.await;
    }
}

/// The notification text of an event, or `None` for events not notified.
pub fn message(e: &Event, state: &RunState) -> Option<String> {
    let s = &state.service;
    Some(match &e.kind {
        EventKind::RunStarted { stages, .. } => format!(
            ":arrows_counterclockwise: cutover {s}: failback cutover starting (run {}), plan {}",
            state.run_id,
            stages
                .iter()
                .map(|w| format!("{w}%"))
                .collect::<Vec<_>>()
                .join(" → ")
        ),
        EventKind::Resumed { live, detail, .. } => format!(
            "cutover {s}: run {} resumed after a restart at {live}: {detail}",
            state.run_id
        ),
        EventKind::WeightConfirmed {
            weights,
            stage: Some(i),
        } => format!("cutover {s}: stage {} — {weights}", i + 1),
        EventKind::RollbackStarted { reason, .. } => {
            format!(":rotating_light: cutover {s}: ROLLING BACK to DR — {reason}")
        }
        EventKind::Drift { found, action, .. } => format!(
            ":warning: cutover {s}: DRIFT — the live split is not the run's: {found}; {action}"
        ),
        EventKind::Braked { by } => {
            format!(
                ":octagonal_sign: cutover {s}: operator rollback by {by}; run {} stops",
                state.run_id
            )
        }
        EventKind::Operator {
            action,
            by,
            reason,
            accepted,
            result,
        } => format!(
            ":bust_in_silhouette: cutover {s}: {}",
            super::operator_action(action, by, reason.as_deref(), *accepted, result)
        ),
        EventKind::HeldWatching {
            stage,
            reason,
            until,
        } => format!(
            ":pause_button: cutover {s}: stage {} held: {reason}; still judged until {} — harm rolls back, `cutover promote` advances (run {})",
            stage + 1,
            humantime::format_rfc3339_seconds(*until),
            state.run_id
        ),
        EventKind::ProbeStarted {
            stage,
            weights,
            reason,
        } => format!(
            ":mag: cutover {s}: stage {} PROBE at {weights} — judged against DR's concurrent traffic before any rollback: {reason} (run {})",
            stage + 1,
            state.run_id
        ),
        EventKind::ProbeCleared { stage, detail } => format!(
            "cutover {s}: stage {} probe cleared — {detail} (run {})",
            stage + 1,
            state.run_id
        ),
        EventKind::AwaitingApproval {
            stage,
            weight,
            needs,
        } => format!(
            ":raised_hand: cutover {s}: stage {} ({weight}%) waits for {needs} (run {})",
            stage + 1,
            state.run_id
        ),
        EventKind::LockLost { detail } => {
            format!(
                ":warning: cutover {s}: run {} lost its lock: {detail}",
                state.run_id
            )
        }
        EventKind::Finished { outcome } => {
            let icon = match outcome.phase {
                Phase::Promoted => ":white_check_mark:",
                Phase::Held => ":double_vertical_bar:",
                Phase::RollbackFailed => ":sos:",
                _ => ":warning:",
            };
            format!(
                "{icon} cutover {s}: {:?} (exit {}) — {}",
                outcome.phase,
                outcome.exit_code(),
                outcome.reason
            )
        }
        _ => return None,
    })
}

impl Observer for Notifier {
    fn event(&self, e: &Event, state: &RunState) {
        if let Some(text) = message(e, state) {
            for q in &self.queues {
                let _ = q.send(text.clone());
            }
        }
    }
}
