//! Watching a fleet run through its saved state (a folder or a ConfigMap, whoever drives
//! it): its metrics, the notifications at its boundaries, and its report at the end.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use cutover::fleet::store::FleetStore;
use cutover::fleet::watch::{FleetTelemetry, WATCH_EVERY, notifications, write_report};
use cutover::observe::notify::Notifier;
use cutover::observe::telemetry::serve_metrics;
use cutover_core::fleet::{FleetPlan, FleetState};
use cutover_core::run::RunState;

/// `fleet run`'s observability options, whatever the executor.
pub(crate) struct Watching {
    /// `--metrics-addr`.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// `--report`.
    pub report: Option<PathBuf>,
}

/// Watches a fleet run: metrics, notifications, and the report at the end.
pub(crate) struct Watcher {
    task: tokio::task::JoinHandle<()>,
    telemetry: Arc<FleetTelemetry>,
    notifier: Arc<Notifier>,
    last: Arc<Mutex<Option<FleetState>>>,
}

/// Starts watching the fleet run saved in `reader`: serves the metrics on `metrics_addr`.
pub(crate) async fn watch(
    plan: &FleetPlan,
    reader: Arc<dyn FleetStore>,
    metrics_addr: Option<std::net::SocketAddr>,
) -> anyhow::Result<Watcher> {
    let telemetry = Arc::new(FleetTelemetry::new(&plan.spec.fleet));
    if let Some(addr) = metrics_addr {
        let t = telemetry.clone();
        let bound = serve_metrics(addr, Arc::new(move || t.render())).await?;
        super::out::chatter(&format!(
            "fleet {}: metrics on http://{bound}/metrics",
            plan.spec.fleet
        ));
    }
    let urls: Vec<String> = plan.spec.notify.iter().map(|n| n.webhook.clone()).collect();
    let timeout = plan
        .spec
        .notify
        .iter()
        .map(|n| n.timeout.get())
        .max()
        .unwrap_or(std::time::Duration::from_secs(5));
    let notifier = Arc::new(Notifier::start(&urls, timeout));
    let last = Arc::new(Mutex::new(None::<FleetState>));
    let (p, n, l, t) = (
        plan.clone(),
        notifier.clone(),
        last.clone(),
        telemetry.clone(),
    );
    let task = tokio::spawn(async move {
        loop {
            tick(&p, reader.as_ref(), &t, &n, &l).await;
            tokio::time::sleep(WATCH_EVERY).await;
        }
    });
    Ok(Watcher {
        task,
        telemetry,
        notifier,
        last,
    })
}

/// One look at the saved state: metrics, and the notifications of what changed.
async fn tick(
    plan: &FleetPlan,
    reader: &dyn FleetStore,
    telemetry: &FleetTelemetry,
    notifier: &Notifier,
    last: &Mutex<Option<FleetState>>,
) -> Option<FleetState> {
    let now = reader.load().await.ok().flatten()?;
    telemetry.update(plan, &now);
    let mut last = last.lock().unwrap_or_else(|p| p.into_inner());
    let before = last.as_ref().filter(|b| b.run_id == now.run_id);
    for text in notifications(plan, before, &now) {
        notifier.send(text);
    }
    *last = Some(now.clone());
    Some(now)
}

impl Watcher {
    /// The last look, the report (into `runs_dir`, where the services' run records are when
    /// they are local, and into `report`), and the notifications out.
    pub(crate) async fn finish(
        self,
        plan: &FleetPlan,
        reader: &dyn FleetStore,
        runs_dir: Option<&Path>,
        report: Option<&Path>,
    ) {
        self.task.abort();
        let state = tick(plan, reader, &self.telemetry, &self.notifier, &self.last).await;
        if let Some(state) = state {
            let started = |name: &str| -> Option<SystemTime> {
                let dir = runs_dir?;
                let r: RunState = serde_json::from_slice(
                    &std::fs::read(dir.join(format!("{name}.state.json"))).ok()?,
                )
                .ok()?;
                r.started
            };
            for target in runs_dir.into_iter().chain(report) {
                let _ = std::fs::create_dir_all(target);
                match write_report(target, plan, &state, started) {
                    Ok(()) => super::out::chatter(&format!(
                        "fleet {}: report written to {}",
                        plan.spec.fleet,
                        target.join("fleet-report.md").display()
                    )),
                    Err(e) => super::out::err(&format!(
                        "cutover fleet: cannot write the report to {}: {e}",
                        target.display()
                    )),
                }
            }
        }
        if let Ok(n) = Arc::try_unwrap(self.notifier) {
            n.flush().await;
        }
    }
}
