//! `cutover status`: the live weights, the lock of the traffic object, the current run
//! (phase, stage, pause, approvals, operator actions) and the earlier runs; as text for
//! people, or as JSON or YAML for scripts.

use cutover::lock::unix_now;
use cutover_core::policy::LoadedPolicy;
use cutover_core::run::RunState;
use serde_json::{Value, json};

use super::common::{Common, connect};

/// `status`'s output formats.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// Lines for people.
    Text,
    /// One JSON document.
    Json,
    /// The same document as YAML.
    Yaml,
}

fn time(t: Option<std::time::SystemTime>) -> Value {
    t.map(|t| json!(humantime::format_rfc3339_seconds(t).to_string()))
        .unwrap_or(Value::Null)
}

/// Prints what is live, who holds the lock (and any brake), and the runs recorded; exit 0.
pub(crate) async fn status(p: LoadedPolicy, common: Common, format: Format) -> anyhow::Result<u8> {
    let backend = connect(&p, &common).await?;
    let store = common.store(&p.policy.service).await?;
    let live = match backend.get_weights().await {
        Ok(w) => json!({"weights": w.to_string(), "primary": w.primary(), "dr": w.dr()}),
        Err(e) => json!({"error": e.to_string()}),
    };
    let lock = match backend.object_lock() {
        None => Value::Null,
        Some(lock) => match lock.read().await {
            Ok(Some(v)) => {
                let holder = match &v.record.holder {
                    Some(h) => json!({
                        "holder": h.describe(),
                        "run_id": h.run_id,
                        "expired": h.expired(unix_now()),
                    }),
                    None => json!({"holder": null}),
                };
                let brake = v.record.brake.as_ref().map(|b| {
                    json!({"run_id": b.run_id, "by": b.by, "at": cutover_core::lock::rfc3339(b.at), "acknowledged": b.acknowledged})
                });
                json!({"object": lock.describe(), "lock": holder, "brake": brake})
            }
            Ok(None) => json!({"object": lock.describe(), "lock": {"holder": null}}),
            Err(e) => json!({"object": lock.describe(), "error": e.to_string()}),
        },
    };
    let (run, earlier) = match store.load().await {
        Ok(None) => (Value::Null, Vec::new()),
        Ok(Some(s)) => (run_json(&s, &p), s.earlier_runs.clone()),
        Err(e) => (json!({"error": e.to_string()}), Vec::new()),
    };
    let earlier: Vec<Value> = earlier
        .iter()
        .rev()
        .map(|r| {
            json!({
                "run_id": r.run_id,
                "started": time(r.started),
                "ended": time(r.ended),
                "outcome": r.outcome.as_ref().map(|o| json!({"phase": o.phase, "exit_code": o.exit_code(), "reason": o.reason})),
                "weights": r.weights.map(|w| w.to_string()),
                "highest_stage": r.highest_stage.map(|i| i + 1),
            })
        })
        .collect();
    let doc = json!({
        "service": p.policy.service,
        "backend": backend.describe(),
        "store": store.describe(),
        "live": live,
        "object": lock,
        "run": run,
        "earlier_runs": earlier,
    });
    match format {
        Format::Json => super::out::line(&serde_json::to_string_pretty(&doc)?),
        Format::Yaml => super::out::print(&to_yaml(&doc)),
        Format::Text => print_text(&doc),
    }
    Ok(0)
}

fn run_json(s: &RunState, p: &LoadedPolicy) -> Value {
    let n = p.plan.stages.len();
    json!({
        "run_id": s.run_id,
        "service": s.service,
        "phase": s.display_phase(),
        "stage": s.stage.map(|i| json!({"number": i + 1, "of": n, "weight": p.plan.stages.get(i).map(|st| st.weight.get())})),
        "weights": s.weights.map(|w| w.to_string()),
        "started": time(s.started),
        "ended": time(s.ended),
        "restarts": s.restarts,
        "outcome": s.outcome.as_ref().map(|o| json!({"phase": o.phase, "exit_code": o.exit_code(), "reason": o.reason})),
        "paused": s.paused.as_ref().map(|c| json!({"by": c.by, "reason": c.reason, "at": time(Some(c.at))})),
        "probe": s.probe.as_ref().filter(|_| !s.phase.is_terminal()).map(|pr| json!({
            "weights": pr.weights.to_string(), "since": time(pr.since), "reason": pr.reason,
        })),
        "awaiting_approval": s.awaiting.filter(|_| !s.phase.is_terminal()).map(|a| json!({
            "stage": a.stage + 1,
            "since": time(Some(a.since)),
            "needs": p.plan.approvals.get(&a.stage).map(|r| r.describe()),
        })),
        "approvals": s.approvals.iter().map(|(i, g)| json!({"stage": i + 1, "by": g.iter().map(|a| a.by.clone()).collect::<Vec<_>>()})).collect::<Vec<_>>(),
        "operator": s.operator.iter().map(|a| json!({
            "at": time(Some(a.acknowledged)), "action": a.command.action.describe(), "by": a.command.by,
            "reason": a.command.reason, "accepted": a.accepted, "result": a.result,
        })).collect::<Vec<_>>(),
        "history": s.history.iter().map(|h| json!({"at": time(Some(h.at)), "weights": h.weights.to_string(), "stage": h.stage.map(|i| i + 1)})).collect::<Vec<_>>(),
    })
}

fn print_text(d: &Value) {
    let st = |v: &Value| v.as_str().unwrap_or("").to_string();
    match d["live"]["weights"].as_str() {
        Some(w) => super::out::line(&format!("live:   {w} ({})", st(&d["backend"]))),
        None => super::out::line(&format!(
            "live:   cannot read: {} ({})",
            st(&d["live"]["error"]),
            st(&d["backend"])
        )),
    }
    let o = &d["object"];
    if !o.is_null() {
        if let Some(e) = o["error"].as_str() {
            super::out::line(&format!("lock:   cannot read: {e}"));
        } else if o["lock"]["holder"].is_null() {
            super::out::line(&format!("lock:   free ({})", st(&o["object"])));
        } else if o["lock"]["expired"] == Value::Bool(true) {
            super::out::line(&format!(
                "lock:   expired: {} ({})",
                st(&o["lock"]["holder"]),
                st(&o["object"])
            ));
        } else {
            super::out::line(&format!(
                "lock:   held by {} ({})",
                st(&o["lock"]["holder"]),
                st(&o["object"])
            ));
        }
        if let Some(b) = o["brake"].as_object() {
            super::out::line(&format!(
                "brake:  run {} braked by {} at {}{}",
                st(&b["run_id"]),
                st(&b["by"]),
                st(&b["at"]),
                if b["acknowledged"] == Value::Bool(true) {
                    " (acknowledged)"
                } else {
                    " (not yet acknowledged)"
                }
            ));
        }
    }
    let r = &d["run"];
    if r.is_null() {
        super::out::line(&format!("run:    none recorded in {}", st(&d["store"])));
    } else if let Some(e) = r["error"].as_str() {
        super::out::line(&format!("run:    {e}"));
    } else {
        super::out::line(&format!(
            "run:    {} phase {} (started {})",
            st(&r["run_id"]),
            st(&r["phase"]),
            st(&r["started"])
        ));
        if let Some(s) = r["stage"].as_object() {
            super::out::line(&format!(
                "stage:  {}/{} ({}%)",
                s["number"], s["of"], s["weight"]
            ));
        }
        if let Some(a) = r["awaiting_approval"].as_object() {
            super::out::line(&format!(
                "waiting: stage {} since {} for {}: `cutover approve`",
                a["stage"],
                st(&a["since"]),
                st(&a["needs"])
            ));
        }
        if let Some(p) = r["probe"].as_object() {
            super::out::line(&format!(
                "probing: at {} since {}: judged against DR's concurrent traffic before any rollback (analysis.probe); set off by: {}",
                st(&p["weights"]),
                st(&p["since"]),
                st(&p["reason"])
            ));
        }
        if let Some(p) = r["paused"].as_object() {
            super::out::line(&format!(
                "paused:  by {} at {}{}: `cutover resume` lifts it",
                st(&p["by"]),
                st(&p["at"]),
                p["reason"]
                    .as_str()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            ));
        }
        for a in r["approvals"].as_array().into_iter().flatten() {
            super::out::line(&format!(
                "approved: stage {} by {}",
                a["stage"],
                a["by"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(st)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if let Some(o) = r["outcome"].as_object() {
            super::out::line(&format!(
                "result: {} (exit {}): {}",
                st(&o["phase"]),
                o["exit_code"],
                st(&o["reason"])
            ));
        }
        for h in r["history"].as_array().into_iter().flatten() {
            super::out::line(&format!("  {}  {}", st(&h["at"]), st(&h["weights"])));
        }
        for a in r["operator"].as_array().into_iter().flatten() {
            super::out::line(&format!(
                "  {}  {} by {}: {}{}",
                st(&a["at"]),
                st(&a["action"]),
                st(&a["by"]),
                if a["accepted"] == Value::Bool(true) {
                    ""
                } else {
                    "refused: "
                },
                st(&a["result"])
            ));
        }
    }
    let earlier = d["earlier_runs"].as_array().cloned().unwrap_or_default();
    if !earlier.is_empty() {
        super::out::line("earlier runs (newest first):");
        for e in earlier {
            let o = &e["outcome"];
            super::out::line(&format!(
                "  {}  {} .. {}  {}",
                st(&e["run_id"]),
                st(&e["started"]),
                st(&e["ended"]),
                if o.is_null() {
                    "never finished (replaced with --fresh)".to_string()
                } else {
                    format!(
                        "{} (exit {}): {}",
                        st(&o["phase"]),
                        o["exit_code"],
                        st(&o["reason"])
                    )
                }
            ));
        }
    }
}

/// A JSON document as YAML (block style), through yaml-rust2's emitter.
pub(crate) fn to_yaml(v: &Value) -> String {
    use yaml_rust2::{Yaml, YamlEmitter, yaml::Hash};
    fn conv(v: &Value) -> Yaml {
        match v {
            Value::Null => Yaml::Null,
            Value::Bool(b) => Yaml::Boolean(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Yaml::Integer(i),
                None => Yaml::Real(n.to_string()),
            },
            Value::String(s) => Yaml::String(s.clone()),
            Value::Array(a) => Yaml::Array(a.iter().map(conv).collect()),
            Value::Object(o) => {
                let mut h = Hash::new();
                for (k, v) in o {
                    h.insert(Yaml::String(k.clone()), conv(v));
                }
                Yaml::Hash(h)
            }
        }
    }
    let mut out = String::new();
    let mut em = YamlEmitter::new(&mut out);
    let _ = em.dump(&conv(v));
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_output_parses_back_to_the_same_document() {
        let doc = json!({"a": [1, 2.5, "x: y"], "b": {"c": null, "d": true}, "e": "3"});
        let y = to_yaml(&doc);
        let back = yaml_rust2::YamlLoader::load_from_str(&y).unwrap();
        assert_eq!(back[0]["a"][2].as_str(), Some("x: y"));
        assert_eq!(back[0]["e"].as_str(), Some("3"), "{y}");
        assert_eq!(back[0]["a"][1].as_f64(), Some(2.5));
        assert!(back[0]["b"]["c"].is_null());
    }
}
