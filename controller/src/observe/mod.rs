//! Who hears about a run's events: the [`Observer`] trait and its implementations.
//!
//! * [`console`] — progress lines for people, and every event as a `tracing` event;
//! * [`jsonlog`] — the JSON log line, with a run's event nested;
//! * [`report`], [`report_chart`] — the post-mortem report (`report.json`, `report.md`,
//!   `chart.svg`);
//! * [`telemetry`] — Prometheus metrics: `/metrics`, and pushes to a Pushgateway;
//! * [`notify`] — webhook notifications (Slack-compatible);
//! * [`announce`] — Kubernetes Events on the routed object.
//!
//! Each observer is told every event, in order, with the state after the step that produced
//! it; none may block the run (slow work goes to a queue of its own).

pub mod announce;
pub mod console;
pub mod jsonlog;
pub mod notify;
pub mod readiness;
pub mod report;
pub mod report_chart;
pub mod telemetry;

use cutover_core::run::{Event, RunState};

/// Something that wants to hear about every event (console, logs, notifications, report).
pub trait Observer: Send + Sync {
    /// Called for each event, with the state after the step that produced it.
    fn event(&self, event: &Event, state: &RunState);
}

/// An operator's command as one phrase, the same in every observer: `pause by sre (CHG-1):
/// refused: already paused by dba`.
pub fn operator_action(
    action: &str,
    by: &str,
    reason: Option<&str>,
    accepted: bool,
    result: &str,
) -> String {
    format!(
        "{action} by {by}{}: {}{result}",
        reason.map(|r| format!(" ({r})")).unwrap_or_default(),
        if accepted { "" } else { "REFUSED: " }
    )
}
