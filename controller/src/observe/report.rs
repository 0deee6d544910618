//! The run report for the post-mortem: `report.json` (machine-readable: timeline, every
//! weight change, every gate value at every decision, the verdict and why) and `report.md`
//! linking `chart.svg` (target weight and observed share; gates against their bounds; stages
//! shaded; the rollback marked).

use std::path::Path;
use std::sync::Mutex;
use std::time::SystemTime;

use cutover_core::GateStatus;
use serde_json::{Value, json};

use super::Observer;
use cutover_core::run::{Event, EventKind, Outcome, RunState};

/// Collects every event of a run; writes the report at the end.
#[derive(Default)]
pub struct Report {
    events: Mutex<Vec<Event>>,
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

fn secs(t: SystemTime, start: SystemTime) -> f64 {
    t.duration_since(start)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Observer for Report {
    fn event(&self, e: &Event, _state: &RunState) {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(e.clone());
    }
}

impl Report {
    /// The events so far, and when the run started (or its first event).
    fn events_since_start(&self, state: &RunState) -> (Vec<Event>, SystemTime) {
        let events = self
            .events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let start = state
            .started
            .or(events.first().map(|e| e.at))
            .unwrap_or(SystemTime::UNIX_EPOCH);
        (events, start)
    }

    /// The report as JSON.
    pub fn json(&self, state: &RunState, outcome: &Outcome) -> Value {
        let (events, start) = self.events_since_start(state);
        let at = |t: SystemTime| json!({ "time": rfc3339(t), "t": secs(t, start) });
        let weights: Vec<Value> = state
            .history
            .iter()
            .map(|h| json!({ "at": at(h.at), "primary": h.weights.primary(), "dr": h.weights.dr(), "stage": h.stage.map(|i| i + 1) }))
            .collect();
        let mut decisions = Vec::new();
        let mut breach = Value::Null;
        let mut last_failing: Option<Value> = None;
        for e in &events {
            match &e.kind {
                EventKind::Analyzed {
                    stage,
                    phase,
                    share,
                    results,
                    verdict,
                    decision,
                } => {
                    let failing = results.iter().find(|r| r.status == GateStatus::Fail).map(|r| {
                        json!({ "gate": r.name, "value": r.primary, "threshold": r.max.or(r.min), "dr": r.dr, "reason": r.reason, "at": at(e.at) })
                    });
                    if failing.is_some() {
                        last_failing = failing;
                    }
                    decisions.push(json!({
                        "at": at(e.at), "stage": stage + 1, "phase": phase, "share": share,
                        "verdict": verdict, "decision": decision, "gates": results,
                    }));
                }
                EventKind::RollbackStarted { cause, reason } => {
                    breach = json!({ "at": at(e.at), "cause": cause, "reason": reason, "gate": last_failing.clone() });
                }
                _ => {}
            }
        }
        let timeline: Vec<Value> = events
            .iter()
            .map(|e| {
                let mut v = serde_json::to_value(e).unwrap_or(Value::Null);
                if let Some(o) = v.as_object_mut() {
                    o.insert("at".into(), at(e.at));
                }
                v
            })
            .collect();
        json!({
            "service": state.service,
            "run_id": state.run_id,
            "started": rfc3339(start),
            "finished": events.last().map(|e| rfc3339(e.at)),
            "restarts": state.restarts,
            "outcome": { "phase": outcome.phase, "exit_code": outcome.exit_code(), "reason": outcome.reason },
            "rollback": breach,
            "weights": weights,
            "decisions": decisions,
            "readiness": super::readiness::section(&events, at),
            "operator": state.operator.iter().map(|a| json!({
                "at": at(a.acknowledged), "posted": rfc3339(a.command.at), "action": a.command.action.describe(),
                "by": a.command.by, "reason": a.command.reason, "accepted": a.accepted, "result": a.result,
            })).collect::<Vec<_>>(),
            "approvals": state.approvals.iter().map(|(i, given)| json!({
                "stage": i + 1, "by": given.iter().map(|a| json!({"by": a.by, "at": rfc3339(a.at)})).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "timeline": timeline,
        })
    }

    /// The chart as SVG ([`super::report_chart`]): weights on top, gates against their
    /// bounds below, stages shaded, the rollback marked, wall-clock time.
    pub fn svg(&self, state: &RunState) -> String {
        let (events, start) = self.events_since_start(state);
        super::report_chart::svg(&events, start, state)
    }

    /// Writes `report.json`, `chart.svg` and `report.md` into `dir`.
    pub fn write(&self, dir: &Path, state: &RunState, outcome: &Outcome) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let json = self.json(state, outcome);
        std::fs::write(
            dir.join("report.json"),
            serde_json::to_vec_pretty(&json).unwrap_or_default(),
        )?;
        let svg = self.svg(state);
        std::fs::write(dir.join("chart.svg"), &svg)?;
        let mut md = format!(
            "# cutover run `{}` of `{}`: {:?}\n\n**Verdict:** {:?}, exit {} — {}\n\n",
            state.run_id,
            state.service,
            outcome.phase,
            outcome.phase,
            outcome.exit_code(),
            outcome.reason
        );
        if let Some(r) = json["rollback"].as_object() {
            md.push_str(&format!(
                "**Rollback** at {} ({}): {}\n\n",
                r["at"]["time"].as_str().unwrap_or("?"),
                r["cause"].as_str().unwrap_or("?"),
                r["reason"].as_str().unwrap_or("?")
            ));
        }
        md.push_str("## Chart\n\n![weights and gates over time](chart.svg)\n\n");
        md.push_str("The chart is `chart.svg` beside this file, linked rather than inlined: most Markdown viewers strip inline SVG.\n\n## Weight changes\n\n| time | t (s) | stage | primary | dr |\n|---|---|---|---|---|\n");
        for w in json["weights"].as_array().into_iter().flatten() {
            md.push_str(&format!(
                "| {} | {:.0} | {} | {}% | {}% |\n",
                w["at"]["time"].as_str().unwrap_or(""),
                w["at"]["t"].as_f64().unwrap_or(0.0),
                w["stage"]
                    .as_u64()
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "rollback".into()),
                w["primary"],
                w["dr"]
            ));
        }
        md.push_str("\n## Decisions\n\n| t (s) | stage | phase | share | gates | decision |\n|---|---|---|---|---|---|\n");
        for d in json["decisions"].as_array().into_iter().flatten() {
            let gates: Vec<String> = d["gates"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|g| {
                    format!(
                        "{} {} {}",
                        g["name"].as_str().unwrap_or(""),
                        g["status"].as_str().unwrap_or(""),
                        g["reason"].as_str().unwrap_or("")
                    )
                })
                .collect();
            md.push_str(&format!(
                "| {:.0} | {} | {} | {} | {} | {} |\n",
                d["at"]["t"].as_f64().unwrap_or(0.0),
                d["stage"],
                d["phase"].as_str().unwrap_or(""),
                d["share"]
                    .as_f64()
                    .map(|s| format!("{:.1}%", s * 100.0))
                    .unwrap_or_else(|| "-".into()),
                gates.join("<br>").replace('|', "\\|"),
                d["decision"].as_str().unwrap_or("").replace('|', "\\|")
            ));
        }
        md.push_str(&super::readiness::markdown(&json["readiness"]));
        let operator = json["operator"].as_array().cloned().unwrap_or_default();
        if !operator.is_empty() {
            md.push_str("\n## Operator actions\n\n| time | action | by | reason | result |\n|---|---|---|---|---|\n");
            for a in operator {
                let cell = |v: &Value| v.as_str().unwrap_or("").replace('|', "\\|");
                md.push_str(&format!(
                    "| {} | {} | {} | {} | {}{} |\n",
                    cell(&a["at"]["time"]),
                    cell(&a["action"]),
                    cell(&a["by"]),
                    cell(&a["reason"]),
                    if a["accepted"] == Value::Bool(true) {
                        ""
                    } else {
                        "refused: "
                    },
                    cell(&a["result"]),
                ));
            }
        }
        std::fs::write(dir.join("report.md"), md)
    }
}
