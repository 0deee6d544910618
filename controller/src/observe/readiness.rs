//! The report's readiness section: every preflight check and guard result, when it was
//! taken and what the run did about it (waited, held, went on), in `report.json` under
//! `readiness` and as a table in `report.md`.

use serde_json::{Value, json};

use cutover_core::run::{Event, EventKind};

/// One entry per preflight result set and guard check: `{at, when, stage, decision,
/// checks: [{name, kind, ok, value, covers, detail}]}`; `at` renders a time.
pub fn section(events: &[Event], at: impl Fn(std::time::SystemTime) -> Value) -> Value {
    let mut out = Vec::new();
    for e in events {
        let (when, stage, decision, results) = match &e.kind {
            EventKind::PreflightPassed { results } => ("preflight", None, "passed", results),
            EventKind::PreflightWaiting {
                results, reason, ..
            } => ("preflight", None, reason.as_str(), results),
            EventKind::Guards {
                stage,
                results,
                decision,
            } => ("guard", Some(stage + 1), decision.as_str(), results),
            _ => continue,
        };
        let checks: Vec<Value> = results
            .iter()
            .filter(|r| r.kind != "gate")
            .map(|r| json!({"name": r.name, "kind": r.kind, "ok": r.ok, "value": r.value, "covers": r.covers, "detail": r.detail}))
            .collect();
        if checks.is_empty() {
            continue;
        }
        out.push(json!({"at": at(e.at), "when": when, "stage": stage, "decision": decision, "checks": checks}));
    }
    Value::Array(out)
}

/// The section as a Markdown table (empty when there were no readiness checks).
pub fn markdown(section: &Value) -> String {
    let rows = section.as_array().map(Vec::as_slice).unwrap_or_default();
    if rows.is_empty() {
        return String::new();
    }
    let mut md = String::from(
        "\n## Readiness (preflight checks and guards)\n\n| t (s) | when | stage | checks | decision |\n|---|---|---|---|---|\n",
    );
    for r in rows {
        let checks: Vec<String> = r["checks"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                format!(
                    "{} ({}) {}: {}",
                    c["name"].as_str().unwrap_or(""),
                    c["kind"].as_str().unwrap_or(""),
                    if c["ok"].as_bool() == Some(true) {
                        "holds"
                    } else {
                        "FAILS"
                    },
                    c["detail"].as_str().unwrap_or("")
                )
            })
            .collect();
        md.push_str(&format!(
            "| {:.0} | {} | {} | {} | {} |\n",
            r["at"]["t"].as_f64().unwrap_or(0.0),
            r["when"].as_str().unwrap_or(""),
            r["stage"]
                .as_u64()
                .map(|s| s.to_string())
                .unwrap_or_else(|| "-".into()),
            checks.join("<br>").replace('|', "\\|"),
            r["decision"].as_str().unwrap_or("").replace('|', "\\|")
        ));
    }
    md
}
