//! `cutover run`: takes the traffic object's lock, then drives a run (new, resumed, or
//! already finished) to its end, with every observer the options ask for.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use cutover::clock::RealClock;
use cutover::driver::Driver;
use cutover::lock::{Ownership, hostname};
use cutover::observe::announce::Announcer;
use cutover::observe::notify::Notifier;
use cutover::observe::report::Report;
use cutover::observe::telemetry::{Pushing, Telemetry};
use cutover_analyzers::Analyzer;
use cutover_analyzers::prometheus::PrometheusSource;
use cutover_core::Span;
use cutover_core::TrafficBackend;
use cutover_core::lock::LockHolder;
use cutover_core::policy::LoadedPolicy;
use cutover_core::run::{Phase, Run};
use cutover_core::store::StateStore;

use super::common::{Common, connect, signals};
use super::output::{LogFormat, observers};
use super::{EXIT_USAGE, LOG_TARGET, report_outcome};

/// How long a run lock lives without renewal.
const LOCK_TTL: Duration = Duration::from_secs(30);

/// Runs a cutover of a loaded policy: takes the lock, drives the run, releases the lock.
pub(crate) async fn run(p: LoadedPolicy, common: Common, format: LogFormat) -> anyhow::Result<u8> {
    let policy = &p.policy;
    let store = common.store(&policy.service).await?;
    // A persisted unfinished run keeps its id (and may wait for its own earlier lock).
    let peek = if common.fresh {
        None
    } else {
        store.load().await.ok().flatten()
    };
    if let Some(other) = peek
        .as_ref()
        .filter(|s| s.service != policy.service && Run::resumable(s))
    {
        super::out::err(&format!(
            "cutover: {}: {} holds the unfinished run {} of service `{}`, not `{}`; \
             give this service its own --state-file (or --state-configmap)",
            policy.service,
            store.describe(),
            other.run_id,
            other.service,
            policy.service
        ));
        return Ok(EXIT_USAGE);
    }
    let resumed_id = peek
        .filter(|s| s.service == policy.service && Run::resumable(s))
        .map(|s| s.run_id);
    let id = resumed_id
        .clone()
        .unwrap_or_else(|| run_id(&policy.service));
    let backend = connect(&p, &common).await?;
    let Some(lock) = backend.object_lock() else {
        anyhow::bail!(
            "{}: backend {} has no lock; cutover drives only objects it can lock",
            p.path.display(),
            backend.describe()
        );
    };
    let me = LockHolder {
        run_id: id.clone(),
        host: hostname(),
        pid: std::process::id(),
        state: store.describe(),
        acquired: 0,
        renewed: 0,
        ttl: common
            .lock_ttl
            .map(Span::get)
            .unwrap_or(LOCK_TTL)
            .as_secs()
            .max(3),
    };
    let owner = match Ownership::acquire(lock, me).await {
        Ok(o) => Arc::new(o),
        Err(e) => {
            super::out::err(&format!("cutover: {}: {e}", policy.service));
            return Ok(EXIT_USAGE);
        }
    };
    let code = run_locked(&p, &common, format, store, backend, owner.clone(), id).await;
    match Arc::try_unwrap(owner) {
        Ok(o) => o.release().await,
        Err(_) => {
            tracing::warn!(target: LOG_TARGET, "the lock is still in use; it expires by itself")
        }
    }
    code
}

/// The run, once the lock is held: resumed, new, or already finished (said again).
async fn run_locked(
    p: &LoadedPolicy,
    common: &Common,
    format: LogFormat,
    store: Box<dyn StateStore>,
    backend: Arc<dyn TrafficBackend>,
    owner: Arc<Ownership>,
    id: String,
) -> anyhow::Result<u8> {
    let policy = &p.policy;
    let source = PrometheusSource::new(&policy.prometheus, p.promql.clone())
        .map_err(|e| anyhow::anyhow!("{}: {e}", p.path.display()))?;
    let analyzer = Analyzer::new(Arc::new(source), p.plan.gates.clone());
    let plan = p.plan.clone();
    let stored = if common.fresh {
        None
    } else {
        store.load().await.map_err(|e| {
            anyhow::anyhow!("{e}; move the record away or pass --fresh to start over")
        })?
    };
    let mut run = match stored {
        Some(s) if s.service == policy.service && s.run_id == id && Run::resumable(&s) => {
            tracing::info!(target: LOG_TARGET, run_id = %s.run_id, phase = ?s.phase, "resuming a persisted run");
            Run::resume(plan, s)
        }
        Some(s)
            if s.service == policy.service
                // A preflight that failed before any write is no outcome to repeat; one that
                // refused to resume a run that had changed traffic is, at every retry.
                && s.outcome
                    .as_ref()
                    .is_some_and(|o| o.phase != Phase::PreflightFailed || !s.history.is_empty())
                && s.weights.is_some()
                && backend.get_weights().await.ok() == s.weights =>
        {
            // Finished before, and traffic is where it left it: say so again, change nothing.
            let o = s.outcome.clone().expect("checked");
            super::out::line(&format!(
                "run {} already finished: {:?} (exit {}): {}",
                s.run_id,
                o.phase,
                o.exit_code(),
                o.reason
            ));
            return Ok(report_outcome(&o));
        }
        _ => Run::new(plan, id),
    };
    let telemetry = Arc::new(Telemetry::new(
        &policy.service,
        &run.state().run_id,
        &backend.describe(),
        common.pushgateway_url.as_deref(),
        policy.analysis.failure_limit,
    ));
    let in_pod = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
    let metrics_addr = common
        .metrics_addr
        .or_else(|| in_pod.then(|| std::net::SocketAddr::from(([0, 0, 0, 0], 9102))));
    if let Some(addr) = metrics_addr {
        let bound = telemetry
            .clone()
            .serve(addr)
            .await
            .with_context(|| format!("cannot serve metrics on {addr}"))?;
        tracing::info!(target: LOG_TARGET, %bound, "serving /metrics");
    }
    let report = Arc::new(Report::default());
    let webhooks: Vec<String> = policy.notify.iter().map(|n| n.webhook.clone()).collect();
    let webhook_timeout = policy
        .notify
        .iter()
        .map(|n| n.timeout.get())
        .max()
        .unwrap_or(Duration::from_secs(5));
    let notifier = Arc::new(Notifier::start(&webhooks, webhook_timeout));
    let announcer = Arc::new(Announcer::start(backend.clone()));
    let mut obs = observers(format);
    obs.push(telemetry.clone());
    obs.push(report.clone());
    obs.push(notifier.clone());
    obs.push(announcer.clone());
    let mut push_task = None;
    if common.pushgateway_url.is_some() {
        let (pushing, task) = Pushing::start(telemetry.clone());
        obs.push(Arc::new(pushing));
        push_task = Some(task);
    }
    let mut driver = Driver {
        backend,
        analyzer,
        preflight: policy.preflight.clone(),
        clock: Arc::new(RealClock),
        store: Some(store),
        observers: obs,
        shutdown: signals(),
        owner: Some(owner),
    };
    let outcome = driver.drive(&mut run).await;
    drop(driver);
    if run.state().outcome.is_none() {
        // Ended before the first step (the store could not be written).
        super::out::err(&format!(
            "cutover: {:?} (exit {}): {}",
            outcome.phase,
            outcome.exit_code(),
            outcome.reason
        ));
    }
    if let Some(dir) = &common.report {
        match report.write(dir, run.state(), &outcome) {
            Ok(()) => super::out::err(&format!("cutover: report written to {}", dir.display())),
            Err(e) => super::out::err(&format!(
                "cutover: cannot write the report to {}: {e}",
                dir.display()
            )),
        }
    }
    if let Some(task) = push_task {
        task.abort();
        telemetry.push_now().await;
    }
    if let Ok(n) = Arc::try_unwrap(notifier) {
        n.flush().await;
    }
    if let Ok(a) = Arc::try_unwrap(announcer) {
        a.flush(Duration::from_secs(5)).await;
    }
    Ok(report_outcome(&outcome))
}

/// A new run's id: the service, the time and the process.
fn run_id(service: &str) -> String {
    let t = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{service}-{}-{}", t.as_secs(), std::process::id())
}
