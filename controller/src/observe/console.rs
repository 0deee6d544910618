//! Human-readable progress lines, and structured `tracing` events, for every run event.

use std::io::Write;
use std::sync::Mutex;
use std::time::SystemTime;

use cutover_core::judge::gate::{GateResult, GateStatus};

use super::Observer;
use cutover_core::run::{Event, EventKind, Phase, RunState};

/// Prints one line per event, with the time since the run started; in a terminal, also a
/// live progress line (stage, weight, what the stage waits for, each gate's last value).
pub struct Console {
    out: Mutex<Box<dyn Write + Send>>,
    start: Mutex<Option<SystemTime>>,
    bar: Option<indicatif::ProgressBar>,
    stages: Mutex<usize>,
}

impl Console {
    /// A console printing to `out`, without a live line.
    pub fn new(out: Box<dyn Write + Send>) -> Console {
        Console {
            out: Mutex::new(out),
            start: Mutex::new(None),
            bar: None,
            stages: Mutex::new(0),
        }
    }

    /// A console on stdout with a live progress line (for a terminal).
    pub fn terminal() -> Console {
        let bar = indicatif::ProgressBar::new_spinner();
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{spinner} {elapsed_precise} {wide_msg}")
        {
            bar.set_style(style);
        }
        bar.enable_steady_tick(std::time::Duration::from_millis(250));
        bar.set_message("starting");
        Console {
            bar: Some(bar),
            ..Console::new(Box::new(std::io::stdout()))
        }
    }

    fn live(&self, e: &Event, state: &RunState) {
        let Some(bar) = &self.bar else { return };
        let mut n = self.stages.lock().unwrap_or_else(|p| p.into_inner());
        match &e.kind {
            EventKind::RunStarted { stages, .. } => *n = stages.len(),
            EventKind::Analyzed {
                stage,
                results,
                decision,
                share,
                ..
            } => {
                let w = state.weights.map(|w| w.to_string()).unwrap_or_default();
                let gates: Vec<String> = results.iter().map(gate_brief).collect();
                let share = share
                    .map(|s| format!("share {:.1}%", s * 100.0))
                    .unwrap_or_default();
                bar.set_message(format!(
                    "stage {}/{} · {w} · {share} · {decision} · {}",
                    stage + 1,
                    *n,
                    gates.join(" | ")
                ));
            }
            EventKind::RollbackStarted { .. } => bar.set_message("ROLLING BACK to DR"),
            EventKind::Finished { .. } => bar.finish_and_clear(),
            _ => {}
        }
    }
}

fn mark(r: &GateResult) -> &'static str {
    match r.status {
        GateStatus::Pass => "ok",
        GateStatus::Fail => "FAIL",
        GateStatus::NoData => "no data",
        GateStatus::Undecided => "undecided",
        GateStatus::Error => "ERROR",
    }
}

/// One gate in a few words: `error-rate 0.210%<=1.000% ok`.
pub fn gate_brief(r: &GateResult) -> String {
    let value = r
        .primary
        .map(|v| r.unit.format(v))
        .unwrap_or_else(|| "-".into());
    let bound = match (r.min, r.max) {
        (_, Some(hi)) => format!("<={}", r.unit.format(hi)),
        (Some(lo), None) => format!(">={}", r.unit.format(lo)),
        (None, None) => String::new(),
    };
    let evidence = match (r.evidence, r.no_worse) {
        (Some(h), Some(n)) => format!(" (harm {h:.2}, no worse {n:.2})"),
        _ => String::new(),
    };
    format!("{} {value}{bound} {}{evidence}", r.name, mark(r))
}

/// The line an event prints as, or `None` for events not worth a line.
pub fn describe(e: &Event, state: &RunState) -> Option<String> {
    let stages = |i: usize| format!("stage {}", i + 1);
    Some(match &e.kind {
        EventKind::RunStarted { live, stages } => format!(
            "start      {} live {live}; plan {}",
            state.service,
            stages
                .iter()
                .map(|w| format!("{w}%"))
                .collect::<Vec<_>>()
                .join(" -> ")
        ),
        EventKind::Resumed { live, detail, .. } => {
            format!(
                "resumed    run {} (restart {}) live {live}: {detail}",
                state.run_id, state.restarts
            )
        }
        EventKind::PreflightPassed { results } => {
            format!("preflight  passed ({} checks)", results.len())
        }
        EventKind::PreflightFailed { .. } => "preflight  FAILED; nothing was changed".into(),
        EventKind::PreflightWaiting {
            reason, retry_in, ..
        } => format!("preflight  WAITING {reason}; checking again in {retry_in}s"),
        EventKind::Guards { decision, .. } if decision == "every guard holds" => return None,
        EventKind::Guards {
            stage, decision, ..
        } => format!("{:<10} guards: {decision}", stages(*stage)),
        EventKind::WeightRequested { .. } => return None,
        EventKind::WeightConfirmed { weights, stage } => match stage {
            Some(i) => format!("{:<10} {weights} written and read back", stages(*i)),
            None => format!("rollback   {weights} written and read back"),
        },
        EventKind::WriteFailed { error, attempts } => {
            format!("write      failed (attempt {attempts}): {error}")
        }
        EventKind::Internal { what } => format!("INTERNAL   {what}"),
        EventKind::Analyzed {
            stage,
            phase,
            share,
            results,
            decision,
            ..
        } => {
            let what = if *phase == Phase::Settling {
                "settling"
            } else {
                "judging"
            };
            let share = share
                .map(|s| format!("share {:.1}%", s * 100.0))
                .unwrap_or_else(|| "share -".into());
            let gates: Vec<String> = results.iter().map(gate_brief).collect();
            format!(
                "{:<10} {what}: {share} | {} | {decision}",
                stages(*stage),
                gates.join(" | ")
            )
        }
        EventKind::Settled { .. } | EventKind::StagePassed { .. } => return None,
        EventKind::Drift {
            expected,
            found,
            action,
        } => format!(
            "DRIFT      expected {} but {found}; {action}",
            expected
                .map(|w| w.to_string())
                .unwrap_or_else(|| "nothing yet".into())
        ),
        EventKind::DriftCleared { live } => {
            format!("drift      over: live {live} again; the stage re-bakes from now")
        }
        EventKind::Braked { by } => format!("BRAKE      operator rollback by {by}"),
        EventKind::Operator {
            action,
            by,
            reason,
            accepted,
            result,
        } => format!(
            "operator   {}",
            super::operator_action(action, by, reason.as_deref(), *accepted, result)
        ),
        EventKind::AwaitingApproval {
            stage,
            weight,
            needs,
        } => format!(
            "approval   {} ({weight}%) waits for {needs}; the stage before is still judged",
            stages(*stage)
        ),
        EventKind::HeldWatching {
            stage,
            reason,
            until,
        } => format!(
            "HELD       {}: {reason}; still judged until {} (harm rolls back; `cutover promote` advances)",
            stages(*stage),
            humantime::format_rfc3339_seconds(*until)
        ),
        EventKind::ProbeStarted {
            stage,
            weights,
            reason,
        } => format!(
            "PROBE      {}: {weights} to judge against DR's concurrent traffic before any rollback: {reason}",
            stages(*stage)
        ),
        EventKind::ProbeCleared { stage, detail } => {
            format!("probe ok   {}: {detail}", stages(*stage))
        }
        EventKind::LockLost { detail } => format!("LOCK LOST  {detail}"),
        EventKind::RollbackStarted { cause, reason } => format!("ROLLBACK   ({cause:?}) {reason}"),
        EventKind::Finished { outcome } => format!(
            "finished   {:?} (exit {}): {}",
            outcome.phase,
            outcome.exit_code(),
            outcome.reason
        ),
    })
}

impl Observer for Console {
    fn event(&self, e: &Event, state: &RunState) {
        let start = {
            let mut s = self.start.lock().unwrap_or_else(|p| p.into_inner());
            *s.get_or_insert(e.at)
        };
        self.live(e, state);
        let Some(line) = describe(e, state) else {
            return;
        };
        let t = e.at.duration_since(start).unwrap_or_default().as_secs();
        let line = format!("+{}:{:02}:{:02}  {line}", t / 3600, (t / 60) % 60, t % 60);
        match &self.bar {
            Some(bar) if !bar.is_finished() => bar.println(line),
            _ => {
                let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
            }
        }
    }
}

/// The `tracing` target of the events, as before this module moved into `observe`: log
/// filters (`RUST_LOG=cutover::console=info`) and pipelines select on it.
const TARGET: &str = "cutover::console";

/// Logs every event through `tracing` as structured data (JSON in a pod).
pub struct LogObserver;

impl Observer for LogObserver {
    fn event(&self, e: &Event, state: &RunState) {
        let json = super::jsonlog::event_json(e);
        match &e.kind {
            EventKind::Internal { .. } => {
                tracing::error!(target: TARGET, service = %state.service, run_id = %state.run_id, event = json.as_str(), "{}", describe(e, state).unwrap_or_default())
            }
            EventKind::RollbackStarted { .. }
            | EventKind::PreflightFailed { .. }
            | EventKind::WriteFailed { .. } => {
                tracing::warn!(target: TARGET, service = %state.service, run_id = %state.run_id, event = json.as_str(), "{}", describe(e, state).unwrap_or_default())
            }
            _ => {
                tracing::info!(target: TARGET, service = %state.service, run_id = %state.run_id, event = json.as_str(), "{}", describe(e, state).unwrap_or_default())
            }
        }
    }
}

/// `--quiet`: prints the run's final outcome line, and nothing else.
pub struct FinalLine {
    out: Mutex<Box<dyn Write + Send>>,
}

impl FinalLine {
    /// Prints the outcome line to `out`.
    pub fn new(out: Box<dyn Write + Send>) -> FinalLine {
        FinalLine {
            out: Mutex::new(out),
        }
    }
}

impl Observer for FinalLine {
    fn event(&self, e: &Event, state: &RunState) {
        if let EventKind::Finished { .. } = &e.kind
            && let Some(line) = describe(e, state)
        {
            let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }
}
