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
use cutover_core::run::{Command, Run, RunState};
use cutover_core::store::StateStore;

use super::common::{Common, connect, signals};
use super::output::{LogFormat, observers};
use super::{EXIT_USAGE, LOG_TARGET, report_outcome};

/// How long a run lock lives without renewal.
const LOCK_TTL: Duration = Duration::from_secs(30);

/// `cutover run`'s own options.
#[derive(clap::Args, Debug, Clone, Default)]
pub(crate) struct RunArgs {
    /// This run's id (default: $CUTOVER_RUN_ID, which the generated Job sets to the Job's
    /// UID, so that a restarted pod of the same Job resumes its run; else a new id). A
    /// finished record with another id is kept in the run history and a new run starts.
    #[arg(long, env = "CUTOVER_RUN_ID")]
    pub run_id: Option<String>,
    /// Judge exactly as a run would, at the split live now, and write nothing: no weight,
    /// no lock, no run state. Prints the verdicts and what a run would do next; exit 0
    /// (advance), 1 (roll back), 5 (hold) or 3 (nothing to judge at this split).
    #[arg(long)]
    pub dry_run: bool,
}

/// How a run begins, decided from the record in the state store.
#[derive(Debug)]
pub(crate) enum Begin {
    /// Continue an unfinished run (a restarted pod; or a new invocation while a run is
    /// mid-way: traffic is where that run left it, and only it can be continued).
    Resume(RunState),
    /// A new run with this id, after the earlier runs of the record.
    New(String, Option<RunState>),
    /// This run (same id) already finished: say its outcome again, change nothing.
    Replay(RunState),
    /// `cutover resume` on a held record: continue it at its weight.
    ContinueHeld(RunState, Command),
}

/// What to do with `stored` for a run of `service` with `run_id` (`None`: a new id).
/// Refuses (with the message to print) a record of another service that is unfinished.
pub(crate) fn begin(
    stored: Option<RunState>,
    service: &str,
    run_id: Option<String>,
    fresh: bool,
) -> Result<Begin, String> {
    let new_id = || run_id.clone().unwrap_or_else(|| new_run_id(service));
    let Some(s) = stored else {
        return Ok(Begin::New(new_id(), None));
    };
    if s.service != service {
        if Run::resumable(&s) {
            return Err(format!(
                "holds the unfinished run {} of service `{}`, not `{service}`; give this service its own --state-file (or --state-configmap)",
                s.run_id, s.service
            ));
        }
        return Ok(Begin::New(new_id(), None));
    }
    if Run::resumable(&s) {
        if fresh {
            return Ok(Begin::New(new_id(), Some(s)));
        }
        return Ok(Begin::Resume(s));
    }
    if run_id.as_deref() == Some(s.run_id.as_str()) {
        return Ok(Begin::Replay(s));
    }
    Ok(Begin::New(new_id(), Some(s)))
}

/// Runs a cutover of a loaded policy: takes the lock, drives the run, releases the lock.
pub(crate) async fn run(
    p: LoadedPolicy,
    common: Common,
    format: LogFormat,
    args: RunArgs,
) -> anyhow::Result<u8> {
    if args.dry_run {
        return dry_run(p, common, format, args).await;
    }
    let policy = &p.policy;
    let store = common.store(&policy.service).await?;
    let stored = match store.load().await {
        Ok(s) => s,
        Err(e) if common.fresh => {
            tracing::warn!(target: LOG_TARGET, error = %e, "ignoring an unreadable run record (--fresh)");
            None
        }
        Err(e) => anyhow::bail!("{e}; move the record away or pass --fresh to start over"),
    };
    let begin = match begin(stored, &policy.service, args.run_id, common.fresh) {
        Ok(b) => b,
        Err(why) => {
            super::out::err(&format!(
                "cutover: {}: {} {why}",
                policy.service,
                store.describe()
            ));
            return Ok(EXIT_USAGE);
        }
    };
    if let Begin::Replay(s) = &begin {
        // This run ended before (a restarted pod of a finished Job): say so again.
        let o = s.outcome.clone().unwrap_or(cutover_core::run::Outcome {
            phase: s.phase,
            reason: "the run had already ended".into(),
        });
        super::out::line(&format!(
            "run {} already finished: {:?} (exit {}): {}",
            s.run_id,
            o.phase,
            o.exit_code(),
            o.reason
        ));
        return Ok(report_outcome(&o));
    }
    if let Begin::New(_, Some(prev)) = &begin
        && prev.phase == cutover_core::run::Phase::Held
        && prev
            .weights
            .is_some_and(|w| w != cutover_core::Weights::ALL_DR)
    {
        // Traffic is still where the held run left it: the held record is what says so,
        // and a new run (which starts only from all-DR) must not replace it.
        // Only a live split read as all-DR lets a new run replace it (an unreadable one
        // does not: the record would be lost while traffic may still be split).
        let backend = connect(&p, &common).await?;
        let live = backend.get_weights().await;
        if live
            .as_ref()
            .map_or(true, |w| *w != cutover_core::Weights::ALL_DR)
        {
            let at = match &live {
                Ok(w) => w.to_string(),
                Err(e) => format!("its last split (the live weights cannot be read: {e})"),
            };
            super::out::err(&format!(
                "cutover: {}: run {} is held at {at} (exit 5); `cutover resume {}` continues it at that weight, \
                 `cutover rollback {}` puts all traffic on DR; a new run starts only from all traffic on DR. Nothing was changed",
                policy.service,
                prev.run_id,
                p.path.display(),
                p.path.display()
            ));
            return Ok(3);
        }
    }
    drive_locked(p, common, format, store, begin).await
}

/// Takes the traffic object's lock for the run `begin` names, drives it, releases the lock.
pub(crate) async fn drive_locked(
    p: LoadedPolicy,
    common: Common,
    format: LogFormat,
    store: Box<dyn StateStore>,
    begin: Begin,
) -> anyhow::Result<u8> {
    let policy = &p.policy;
    let id = match &begin {
        Begin::Resume(s) | Begin::Replay(s) | Begin::ContinueHeld(s, _) => s.run_id.clone(),
        Begin::New(id, _) => id.clone(),
    };
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
    let plan = p.plan.clone();
    let run = match begin {
        Begin::Resume(s) => {
            if s.run_id != id {
                tracing::info!(target: LOG_TARGET, run_id = %s.run_id, "continuing the unfinished run of this record");
            }
            tracing::info!(target: LOG_TARGET, run_id = %s.run_id, phase = ?s.phase, "resuming a persisted run");
            Run::resume(plan, s)
        }
        Begin::New(id, previous) => Run::new_after(plan, id, previous),
        Begin::ContinueHeld(s, cmd) => {
            // Read again under the lock: a `cutover rollback` (or another resume) between
            // the caller's read and the lock has changed the record, and wins.
            let now = store.load().await.ok().flatten();
            match now
                .filter(|n| n.run_id == s.run_id && n.phase == s.phase && n.history == s.history)
            {
                Some(fresh) => match Run::continue_held(plan, fresh, cmd) {
                    Some(r) => r,
                    None => unreachable!("a held record, checked above"),
                },
                None => {
                    super::out::err(&format!(
                        "cutover resume: {}: run {} changed while this command took the lock (a rollback or another resume); nothing was changed: look at `cutover status`",
                        policy.service, s.run_id
                    ));
                    if let Ok(o) = Arc::try_unwrap(owner) {
                        o.release().await;
                    }
                    return Ok(EXIT_USAGE);
                }
            }
        }
        Begin::Replay(_) => unreachable!("said by the caller"),
    };
    let code = run_locked(
        &p,
        &common,
        format,
        Some(store),
        backend,
        Some(owner.clone()),
        run,
    )
    .await;
    match Arc::try_unwrap(owner) {
        Ok(o) => o.release().await,
        Err(_) => {
            tracing::warn!(target: LOG_TARGET, "the lock is still in use; it expires by itself")
        }
    }
    code
}

/// `--dry-run`: the real analyzers and state machine at the live split, on a backend that
/// refuses writes, with no lock, no state store, no notifications.
async fn dry_run(
    p: LoadedPolicy,
    common: Common,
    format: LogFormat,
    args: RunArgs,
) -> anyhow::Result<u8> {
    let backend: Arc<dyn TrafficBackend> = Arc::new(ReadOnly(connect(&p, &common).await?));
    let id = args
        .run_id
        .unwrap_or_else(|| format!("dry-{}", new_run_id(&p.policy.service)));
    let run = Run::dry(p.plan.clone(), id);
    run_locked(&p, &common, format, None, backend, None, run).await
}

/// A backend that reads and never writes: what a dry run drives.
struct ReadOnly(Arc<dyn TrafficBackend>);

#[async_trait::async_trait]
impl TrafficBackend for ReadOnly {
    fn describe(&self) -> String {
        format!("{} (dry run: read only)", self.0.describe())
    }
    async fn get_weights(&self) -> Result<cutover_core::Weights, cutover_core::BackendError> {
        self.0.get_weights().await
    }
    async fn set_weights(
        &self,
        weights: cutover_core::Weights,
        _note: &str,
    ) -> Result<cutover_core::Applied, cutover_core::BackendError> {
        Err(cutover_core::BackendError::Invalid(format!(
            "dry run: not writing {weights}"
        )))
    }
    fn propagation_delay(&self) -> Duration {
        self.0.propagation_delay()
    }
}

/// The run, once the lock is held: resumed, new, or already finished (said again).
async fn run_locked(
    p: &LoadedPolicy,
    common: &Common,
    format: LogFormat,
    store: Option<Box<dyn StateStore>>,
    backend: Arc<dyn TrafficBackend>,
    owner: Option<Arc<Ownership>>,
    mut run: Run,
) -> anyhow::Result<u8> {
    let policy = &p.policy;
    let source = PrometheusSource::new(&policy.prometheus, p.promql.clone())
        .map_err(|e| anyhow::anyhow!("{}: {e}", p.path.display()))?;
    let analyzer = Analyzer::new(Arc::new(source), p.plan.gates.clone());
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
    // A dry run tells nobody but the operator who started it.
    let dry = run.state().dry_run;
    let webhooks = if dry { Vec::new() } else { webhooks };
    let notifier = Arc::new(Notifier::start(&webhooks, webhook_timeout));
    let announcer = Arc::new(Announcer::start(backend.clone()));
    let mut obs = observers(format);
    obs.push(telemetry.clone());
    obs.push(report.clone());
    obs.push(notifier.clone());
    if !dry {
        obs.push(announcer.clone());
    }
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
        store,
        observers: obs,
        shutdown: signals(),
        owner,
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
pub(crate) fn new_run_id(service: &str) -> String {
    let t = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{service}-{}-{}", t.as_secs(), std::process::id())
}
