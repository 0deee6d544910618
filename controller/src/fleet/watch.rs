//! What people see of a fleet run: its metrics (`cutover_fleet_*`), notifications at its
//! boundaries (start, each layer promoted, a service that does not promote, the end) and its
//! report (which service did what, when, and the critical path). Fed the fleet's saved
//! state, so it watches any fleet run through its store, whoever drives it.

use std::fmt::Write as _;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime};

use cutover_core::fleet::{FleetPlan, FleetState, SvcStatus};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};

type Labels = Vec<(String, String)>;
type FGauge = Gauge<f64, AtomicU64>;

/// The phases a service of a fleet is counted in.
pub const PHASES: [&str; 7] = [
    "waiting",
    "running",
    "promoted",
    "rolled_back",
    "held",
    "failed",
    "rolled_back_by_fleet",
];

/// The phase a service's status is counted as.
pub fn phase_of(s: &SvcStatus) -> &'static str {
    match s {
        SvcStatus::Waiting => "waiting",
        SvcStatus::Running { .. } => "running",
        SvcStatus::Ended { exit: 0, .. } => "promoted",
        SvcStatus::Ended { exit: 1, .. } => "rolled_back",
        SvcStatus::Ended { exit: 5, .. } => "held",
        SvcStatus::Ended { .. } => "failed",
        SvcStatus::RolledBack { .. } => "rolled_back_by_fleet",
    }
}

/// The fleet's metrics.
pub struct FleetTelemetry {
    registry: Registry,
    fleet: String,
    services: Family<Labels, FGauge>,
    exit: Family<Labels, FGauge>,
    layer: Family<Labels, FGauge>,
}

impl FleetTelemetry {
    /// Metrics of `fleet`, every phase at 0.
    pub fn new(fleet: &str) -> FleetTelemetry {
        let mut registry = Registry::default();
        let services = Family::<Labels, FGauge>::default();
        registry.register(
            "cutover_fleet_services",
            "Services of the fleet in each phase (waiting, running, promoted, rolled_back, held, failed, rolled_back_by_fleet)",
            services.clone(),
        );
        let exit = Family::<Labels, FGauge>::default();
        registry.register(
            "cutover_fleet_service_exit",
            "Each ended service's exit code (0 promoted, 1 rolled back, 3, 4, 5, 10)",
            exit.clone(),
        );
        let layer = Family::<Labels, FGauge>::default();
        registry.register(
            "cutover_fleet_layer",
            "The lowest layer with a service not yet promoted (the layer under way)",
            layer.clone(),
        );
        let t = FleetTelemetry {
            registry,
            fleet: fleet.to_string(),
            services,
            exit,
            layer,
        };
        for p in PHASES {
            t.services
                .get_or_create(&t.labels(&[("phase", p)]))
                .set(0.0);
        }
        t.layer.get_or_create(&t.labels(&[])).set(0.0);
        t
    }

    fn labels(&self, extra: &[(&str, &str)]) -> Labels {
        let mut l = vec![("fleet".to_string(), self.fleet.clone())];
        l.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        l
    }

    /// Sets the metrics from the fleet's state.
    pub fn update(&self, plan: &FleetPlan, state: &FleetState) {
        for p in PHASES {
            let n = state
                .services
                .iter()
                .filter(|(_, s)| phase_of(s) == p)
                .count();
            self.services
                .get_or_create(&self.labels(&[("phase", p)]))
                .set(n as f64);
        }
        for (name, s) in &state.services {
            if let SvcStatus::Ended { exit, .. } = s {
                self.exit
                    .get_or_create(&self.labels(&[("service", name)]))
                    .set(f64::from(*exit));
            }
        }
        let under_way = plan
            .services
            .iter()
            .zip(&state.services)
            .filter(|(_, (_, s))| phase_of(s) != "promoted")
            .map(|(svc, _)| svc.layer)
            .min()
            .unwrap_or_else(|| plan.layers().last().copied().unwrap_or(0));
        self.layer
            .get_or_create(&self.labels(&[]))
            .set(f64::from(under_way));
    }

    /// The metrics in the text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// What changed between two states of a fleet run, as notification texts.
pub fn notifications(
    plan: &FleetPlan,
    before: Option<&FleetState>,
    now: &FleetState,
) -> Vec<String> {
    let f = &now.fleet;
    let mut out = Vec::new();
    if before.is_none() {
        out.push(format!(
            ":arrows_counterclockwise: fleet {f}: failback of {} services in {} layers starting (run {})",
            plan.services.len(),
            plan.layers().len(),
            now.run_id
        ));
    }
    let done_before = before.map_or(0, |b| b.layer_done.len());
    for (layer, _) in now.layer_done.iter().skip(done_before) {
        let soak = plan.soak.get(layer).copied().unwrap_or_default();
        out.push(format!(
            ":white_check_mark: fleet {f}: layer {layer} promoted{}",
            if soak.is_zero() {
                String::new()
            } else {
                format!(
                    "; soaking {} before the next layer",
                    humantime::format_duration(soak)
                )
            }
        ));
    }
    for (k, (name, s)) in now.services.iter().enumerate() {
        let was = before.and_then(|b| b.services.get(k)).map(|(_, s)| s);
        if let SvcStatus::Ended { exit, reason, .. } = s
            && *exit != 0
            && !matches!(was, Some(SvcStatus::Ended { .. }))
        {
            out.push(format!(
                ":warning: fleet {f}: {name} did not promote (exit {exit}): {reason}"
            ));
        }
    }
    if let (Some(o), None) = (&now.outcome, before.and_then(|b| b.outcome.as_ref())) {
        let icon = match o.exit {
            0 => ":white_check_mark:",
            10 => ":sos:",
            _ => ":warning:",
        };
        out.push(format!(
            "{icon} fleet {f}: finished (exit {}): {}",
            o.exit, o.reason
        ));
    }
    out
}

fn secs(t: SystemTime, start: SystemTime) -> f64 {
    t.duration_since(start).unwrap_or_default().as_secs_f64()
}

/// The critical path: from the service that ended last, back through the dependency (an
/// `after` or a service of a lower layer) that ended last before it started.
pub fn critical_path(plan: &FleetPlan, state: &FleetState) -> Vec<String> {
    let ended = |i: usize| match &state.services[i].1 {
        SvcStatus::Ended { at, .. } => Some(*at),
        _ => None,
    };
    let n = plan.services.len();
    let Some(mut at) = (0..n)
        .filter(|&i| ended(i).is_some())
        .max_by_key(|&i| ended(i))
    else {
        return Vec::new();
    };
    let mut path = vec![plan.services[at].name.clone()];
    for _ in 0..n {
        let s = &plan.services[at];
        let prev = (0..n)
            .filter(|&j| s.after.contains(&j) || plan.services[j].layer < s.layer)
            .filter(|&j| ended(j).is_some())
            .max_by_key(|&j| ended(j));
        let Some(prev) = prev else {
            break;
        };
        path.push(plan.services[prev].name.clone());
        at = prev;
    }
    path.reverse();
    path
}

/// The fleet report: `fleet-report.json` and `fleet-report.md` in `dir`. `started` gives
/// each service's start (from its run record), when known.
pub fn write_report(
    dir: &std::path::Path,
    plan: &FleetPlan,
    state: &FleetState,
    started: impl Fn(&str) -> Option<SystemTime>,
) -> std::io::Result<()> {
    let t0 = state.started;
    let rows: Vec<Value> = plan
        .services
        .iter()
        .zip(&state.services)
        .map(|(svc, (_, s))| {
            let (exit, reason, ended) = match s {
                SvcStatus::Ended { exit, reason, at } => (Some(*exit), reason.clone(), Some(*at)),
                SvcStatus::RolledBack { ok, detail, at } => (
                    None,
                    format!(
                        "rolled back by the fleet ({}): {detail}",
                        if *ok { "verified" } else { "NOT VERIFIED" }
                    ),
                    Some(*at),
                ),
                _ => (None, String::new(), None),
            };
            json!({
                "service": svc.name, "layer": svc.layer, "phase": phase_of(s),
                "started_s": started(&svc.name).map(|t| secs(t, t0)),
                "ended_s": ended.map(|t| secs(t, t0)),
                "exit": exit, "reason": reason,
            })
        })
        .collect();
    let path = critical_path(plan, state);
    let doc = json!({
        "fleet": state.fleet, "run_id": state.run_id,
        "started": humantime::format_rfc3339_seconds(t0).to_string(),
        "outcome": state.outcome, "reason": state.reason,
        "services": rows, "critical_path": path,
    });
    std::fs::write(
        dir.join("fleet-report.json"),
        serde_json::to_vec_pretty(&doc).unwrap_or_default(),
    )?;
    let mut md = format!("# Fleet `{}`, run `{}`\n\n", state.fleet, state.run_id);
    if let Some(o) = &state.outcome {
        let _ = writeln!(md, "**Outcome:** exit {} — {}\n", o.exit, o.reason);
    }
    let _ = writeln!(md, "**Critical path:** {}\n", path.join(" → "));
    md.push_str("| layer | service | phase | started (s) | ended (s) | exit | why |\n|---|---|---|---|---|---|---|\n");
    for r in doc["services"].as_array().into_iter().flatten() {
        let n = |v: &Value| {
            v.as_f64()
                .map(|x| format!("{x:.0}"))
                .unwrap_or_else(|| "-".into())
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} |",
            r["layer"],
            r["service"].as_str().unwrap_or(""),
            r["phase"].as_str().unwrap_or(""),
            n(&r["started_s"]),
            n(&r["ended_s"]),
            r["exit"]
                .as_i64()
                .map(|e| e.to_string())
                .unwrap_or_else(|| "-".into()),
            r["reason"].as_str().unwrap_or("").replace('|', "\\|")
        );
    }
    std::fs::write(dir.join("fleet-report.md"), md)
}

/// How often the watcher reads the fleet's state.
pub const WATCH_EVERY: Duration = Duration::from_secs(1);
