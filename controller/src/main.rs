//! The `cutover` command line.
#![deny(warnings, rust_2018_idioms)]
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use cutover::clock::RealClock;
use cutover::demo::{DemoOptions, DemoScenario};
use cutover::driver::{Driver, Shutdown, write_and_verify};
use cutover::lock::{Ownership, hostname, operator, unix_now};
use cutover::observe::Observer;
use cutover::observe::announce::Announcer;
use cutover::observe::console::{Console, LogObserver};
use cutover::observe::notify::Notifier;
use cutover::observe::report::Report;
use cutover::observe::telemetry::{Pushing, Telemetry};
use cutover_analyzers::Analyzer;
use cutover_analyzers::prometheus::PrometheusSource;
use cutover_backends::ConnectOptions;
use cutover_backends::state::{ConfigMapStore, FileStore};
use cutover_core::Span;
use cutover_core::lock::LockHolder;
use cutover_core::policy::{self, LoadedPolicy};
use cutover_core::run::{Outcome, Phase, Run};
use cutover_core::store::StateStore;
use cutover_core::{TrafficBackend, Weights};
use tokio::sync::watch;

/// Moves traffic back from the DR site to the repaired primary in stages, judging the
/// primary from Prometheus after each step, and puts everything back on DR on a breach.
///
/// Exit codes: 0 promoted · 1 rolled back on a breach · 2 bad policy or usage ·
/// 3 preflight failed, nothing changed · 4 aborted by a signal · 5 held (inconclusive or
/// global incident) · 10 rollback could not be applied: page now.
#[derive(Parser)]
#[command(name = "cutover", version, about, long_about)]
struct Cli {
    /// Log format: `text` for people (lines and, in a terminal, a live progress line),
    /// `json` for log pipelines; `auto` is text in a terminal and JSON otherwise (a pod).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Auto)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Auto,
    Text,
    Json,
}

impl LogFormat {
    fn resolve(self) -> LogFormat {
        use std::io::IsTerminal;
        match self {
            LogFormat::Auto if std::io::stdout().is_terminal() => LogFormat::Text,
            LogFormat::Auto => LogFormat::Json,
            f => f,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Check policy files; prints every problem found. Exit 0 if all are valid, else 2.
    Validate {
        /// Policy files.
        #[arg(required = true)]
        policies: Vec<PathBuf>,
    },
    /// Show what a run would do: stages, timings, worst-case duration, each gate's PromQL.
    Plan {
        /// The policy file.
        policy: PathBuf,
    },
    /// Run a cutover: preflight, then each stage, judged from Prometheus.
    Run {
        /// The policy file.
        policy: PathBuf,
        #[command(flatten)]
        common: Common,
    },
    /// Show the live weights and the persisted run.
    Status {
        /// The policy file.
        policy: PathBuf,
        #[command(flatten)]
        common: Common,
    },
    /// The emergency brake: stop the run driving this traffic (live, hung or on another
    /// machine: it never writes a forward weight again), put all traffic on DR now and verify
    /// by reading back. Exit 0, or 10 if it did not stick.
    Rollback {
        /// The policy file.
        policy: PathBuf,
        /// How long to watch, after the write, that a braked run does not put traffic back
        /// before it acknowledges the brake.
        #[arg(long, default_value = "90s")]
        watch: Span,
        #[command(flatten)]
        common: Common,
    },
    /// Play a cutover on simulated traffic and the file backend, in accelerated time.
    Demo {
        /// What the simulated primary does.
        #[arg(long, value_enum, default_value_t = DemoScenario::Healthy)]
        scenario: DemoScenario,
        /// Virtual seconds per real second; 0 plays as fast as possible.
        #[arg(long, default_value_t = 60.0)]
        speed: f64,
        /// Seed of the simulated traffic (same seed, same run).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Folder for the demo's weights and state files (default: a temporary folder).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Write report.json, report.md and chart.svg into this folder at the end.
        #[arg(long)]
        report: Option<PathBuf>,
    },
    /// Compare four judges (Flagger-, Argo-, Kayenta-style and cutover's sequential gates)
    /// on the same seeded simulated cutovers, in virtual time; prints a Markdown table
    /// (BENCHMARKS.md) and the acceptance checks.
    Bench {
        /// Seeded runs per scenario and judge.
        #[arg(long, default_value_t = 1000)]
        runs: usize,
        /// The first seed; run i uses seed + i.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Only these scenarios (comma-separated names); default: all.
        #[arg(long, value_delimiter = ',')]
        scenario: Vec<String>,
        /// Only these judges; default: all four.
        #[arg(long, value_enum, value_delimiter = ',')]
        judge: Vec<cutover::bench::judges::Judge>,
        /// Runs in flight at once.
        #[arg(long, default_value_t = 32)]
        jobs: usize,
        /// Exit 1 if an acceptance check fails.
        #[arg(long)]
        check: bool,
    },
    /// Print the policy JSON Schema (policies/policy.schema.json).
    Schema,
}

#[derive(clap::Args)]
struct Common {
    /// Where the run state is kept (default: <state dir>/<service>.state.json, where the
    /// state dir is $CUTOVER_STATE_DIR, else $XDG_STATE_HOME/cutover, else
    /// ~/.local/state/cutover, else /var/lib/cutover — never relative to the working directory).
    #[arg(long)]
    state_file: Option<PathBuf>,
    /// Kubeconfig for the istio and gateway_api backends (default: in-cluster, then ~/.kube/config).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Kubeconfig context.
    #[arg(long)]
    context: Option<String>,
    /// AWS endpoint override for the route53 backend (emulators).
    #[arg(long)]
    aws_endpoint_url: Option<String>,
    /// Keep the run state in this ConfigMap (NAMESPACE/NAME) instead of a state file (for Jobs).
    /// The run's lock is the traffic object's own, whatever the state store.
    #[arg(long, conflicts_with = "state_file")]
    state_configmap: Option<String>,
    /// How long a run lock lives without renewal (default 30s).
    #[arg(long, hide = true)]
    lock_ttl: Option<Span>,
    /// Ignore a persisted unfinished run and start over (`run` only).
    #[arg(long)]
    fresh: bool,
    /// Serve Prometheus metrics on this address (default in a pod: 0.0.0.0:9102; else off).
    #[arg(long)]
    metrics_addr: Option<std::net::SocketAddr>,
    /// Push metrics to this Pushgateway at every transition and at exit.
    #[arg(long)]
    pushgateway_url: Option<String>,
    /// Write report.json, report.md and chart.svg into this folder at the end.
    #[arg(long)]
    report: Option<PathBuf>,
}

impl Common {
    fn connect_options(&self) -> ConnectOptions {
        ConnectOptions {
            kubeconfig: self.kubeconfig.clone(),
            context: self.context.clone(),
            aws_endpoint_url: self.aws_endpoint_url.clone(),
        }
    }
    fn file_store(&self, service: &str) -> FileStore {
        FileStore::new(
            self.state_file
                .clone()
                .unwrap_or_else(|| state_dir().join(format!("{service}.state.json"))),
        )
    }

    fn configmap(&self) -> anyhow::Result<Option<(&str, &str)>> {
        match &self.state_configmap {
            None => Ok(None),
            Some(at) => at.split_once('/').map(Some).ok_or_else(|| {
                anyhow::anyhow!(
                    "--state-configmap `{at}`: write NAMESPACE/NAME, e.g. cutover/checkout-run"
                )
            }),
        }
    }

    /// The state store: the ConfigMap of `--state-configmap`, else the state file.
    async fn store(&self, service: &str) -> anyhow::Result<Box<dyn StateStore>> {
        Ok(match self.configmap()? {
            Some((ns, name)) => {
                let client = cutover_backends::k8s::client(&self.connect_options()).await?;
                Box::new(ConfigMapStore::new(
                    cutover_backends::k8s_state::ConfigMapBlob::new(client, ns, name),
                ))
            }
            None => Box::new(self.file_store(service)),
        })
    }
}

/// The default folder of run state files: absolute, the same for every working directory.
fn state_dir() -> PathBuf {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("CUTOVER_STATE_DIR")
        .or_else(|| env("XDG_STATE_HOME").map(|d| d.join("cutover")))
        .or_else(|| env("HOME").map(|h| h.join(".local/state/cutover")))
        .unwrap_or_else(|| PathBuf::from("/var/lib/cutover"))
}

const EXIT_USAGE: u8 = 2;
const EXIT_ROLLBACK_FAILED: u8 = 10;

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    cli.log_format = cli.log_format.resolve();
    init_logging(cli.log_format);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cutover: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match rt.block_on(dispatch(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("cutover: {e:#}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

fn init_logging(format: LogFormat) {
    // In text mode the console prints every event; JSON logs carry them as info events.
    let default = if format == LogFormat::Json {
        "cutover=info,warn"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text | LogFormat::Auto => builder.init(),
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Validate { policies } => Ok(validate(&policies)),
        Command::Plan { policy } => {
            let Some(p) = load_or_report(&policy) else {
                return Ok(EXIT_USAGE);
            };
            print!(
                "{}",
                cutover::plan::render(&p.policy, &policy.display().to_string())
            );
            Ok(0)
        }
        Command::Run { policy, common } => {
            let Some(p) = load_or_report(&policy) else {
                return Ok(EXIT_USAGE);
            };
            run(p, common, cli.log_format).await
        }
        Command::Status { policy, common } => {
            let Some(p) = load_or_report(&policy) else {
                return Ok(EXIT_USAGE);
            };
            status(p, common).await
        }
        Command::Rollback {
            policy,
            watch,
            common,
        } => {
            let Some(p) = load_or_report(&policy) else {
                return Ok(EXIT_USAGE);
            };
            rollback(p, common, watch.get()).await
        }
        Command::Demo {
            scenario,
            speed,
            seed,
            dir,
            report,
        } => demo(scenario, speed, seed, dir, report).await,
        Command::Schema => {
            print!("{}", policy::json_schema());
            Ok(0)
        }
        Command::Bench {
            runs,
            seed,
            scenario,
            judge,
            jobs,
            check,
        } => bench(runs, seed, scenario, judge, jobs, check).await,
    }
}

async fn bench(
    runs: usize,
    seed: u64,
    only: Vec<String>,
    judges: Vec<cutover::bench::judges::Judge>,
    jobs: usize,
    check: bool,
) -> anyhow::Result<u8> {
    use cutover::bench::{self, judges, scenarios};
    let all = scenarios::all();
    for name in &only {
        if !all.iter().any(|s| s.name == name) {
            let names: Vec<&str> = all.iter().map(|s| s.name).collect();
            eprintln!(
                "error: --scenario {name}: no such scenario; choose from {}",
                names.join(", ")
            );
            return Ok(EXIT_USAGE);
        }
    }
    let judges = if judges.is_empty() {
        judges::ALL.to_vec()
    } else {
        judges
    };
    let started = std::time::Instant::now();
    println!(
        "cutover bench --runs {runs} --seed {seed}: {} runs per scenario and judge, 100/1000 rps as named, 15 s scrape and analysis interval, stages 10/25/50/75/100 %\n",
        runs
    );
    println!("{}", bench::TABLE_HEADER);
    let mut results = Vec::new();
    for sc in all
        .iter()
        .filter(|s| only.is_empty() || only.iter().any(|n| n == s.name))
    {
        for j in &judges {
            let records = bench::run_many(*j, sc, runs, seed, jobs).await?;
            let s = bench::summarize(sc, *j, &records);
            println!("{}", bench::table_row(&s));
            results.push(s);
        }
    }
    println!("\nScenarios:\n");
    for sc in all
        .iter()
        .filter(|s| only.is_empty() || only.iter().any(|n| n == s.name))
    {
        println!("* `{}`: {}", sc.name, sc.description);
    }
    let checks = bench::acceptance(&results);
    let mut failed = 0;
    if !checks.is_empty() {
        println!("\nAcceptance checks:\n");
        for (what, ok) in &checks {
            println!("* {} {what}", if *ok { "PASS" } else { "FAIL" });
            failed += usize::from(!ok);
        }
    }
    println!(
        "\n({} runs in {:.0} s of wall time)",
        results.iter().map(|s| s.runs).sum::<usize>(),
        started.elapsed().as_secs_f64()
    );
    Ok(if check && failed > 0 { 1 } else { 0 })
}

fn validate(paths: &[PathBuf]) -> u8 {
    let mut bad = 0;
    for p in paths {
        match policy::load(p) {
            Ok(_) => println!("{}: ok", p.display()),
            Err(errors) => {
                bad += 1;
                eprintln!("{errors}");
            }
        }
    }
    if bad == 0 { 0 } else { EXIT_USAGE }
}

fn load_or_report(path: &Path) -> Option<LoadedPolicy> {
    match policy::load(path) {
        Ok(p) => Some(p),
        Err(errors) => {
            eprintln!("{errors}");
            None
        }
    }
}

fn signals() -> Shutdown {
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                tracing::error!("cannot install signal handlers");
                return;
            };
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            let _ = tx.send(Some(name.to_string()));
            // Keep the sender alive so receivers never see a closed channel.
            std::future::pending::<()>().await;
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            let _ = tx.send(Some("Ctrl-C".to_string()));
            std::future::pending::<()>().await;
        }
    });
    rx
}

fn run_id(service: &str) -> String {
    let t = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{service}-{}-{}", t.as_secs(), std::process::id())
}

/// Progress for people: a live line in a terminal, plain lines otherwise.
fn console() -> Arc<dyn Observer> {
    use std::io::IsTerminal;
    if std::io::stdout().is_terminal() {
        Arc::new(Console::terminal())
    } else {
        Arc::new(Console::new(Box::new(std::io::stdout())))
    }
}

fn observers(format: LogFormat) -> Vec<Arc<dyn Observer>> {
    match format {
        LogFormat::Text => vec![
            Arc::new(Console::new(Box::new(std::io::stdout()))),
            Arc::new(LogObserver),
        ],
        LogFormat::Json | LogFormat::Auto => vec![Arc::new(LogObserver)],
    }
}

async fn connect(p: &LoadedPolicy, common: &Common) -> anyhow::Result<Arc<dyn TrafficBackend>> {
    cutover_backends::connect(&p.policy.backend, &common.connect_options())
        .await
        .with_context(|| format!("{}: backend", p.path.display()))
}

/// How long a run lock lives without renewal.
const LOCK_TTL: Duration = Duration::from_secs(30);

async fn run(p: LoadedPolicy, common: Common, format: LogFormat) -> anyhow::Result<u8> {
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
        eprintln!(
            "cutover: {}: {} holds the unfinished run {} of service `{}`, not `{}`; \
             give this service its own --state-file (or --state-configmap)",
            policy.service,
            store.describe(),
            other.run_id,
            other.service,
            policy.service
        );
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
            eprintln!("cutover: {}: {e}", policy.service);
            return Ok(EXIT_USAGE);
        }
    };
    let code = run_locked(&p, &common, format, store, backend, owner.clone(), id).await;
    match Arc::try_unwrap(owner) {
        Ok(o) => o.release().await,
        Err(_) => tracing::warn!("the lock is still in use; it expires by itself"),
    }
    code
}

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
    let source = PrometheusSource::new(&policy.prometheus, policy.promql())
        .map_err(|e| anyhow::anyhow!("{}: {e}", p.path.display()))?;
    let analyzer = Analyzer::new(Arc::new(source), policy.compiled_gates());
    let plan = policy.plan(backend.propagation_delay());
    let stored = if common.fresh {
        None
    } else {
        store.load().await.map_err(|e| {
            anyhow::anyhow!("{e}; move the record away or pass --fresh to start over")
        })?
    };
    let mut run = match stored {
        Some(s) if s.service == policy.service && s.run_id == id && Run::resumable(&s) => {
            tracing::info!(run_id = %s.run_id, phase = ?s.phase, "resuming a persisted run");
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
            println!(
                "run {} already finished: {:?} (exit {}): {}",
                s.run_id,
                o.phase,
                o.exit_code(),
                o.reason
            );
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
        tracing::info!(%bound, "serving /metrics");
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
        eprintln!(
            "cutover: {:?} (exit {}): {}",
            outcome.phase,
            outcome.exit_code(),
            outcome.reason
        );
    }
    if let Some(dir) = &common.report {
        match report.write(dir, run.state(), &outcome) {
            Ok(()) => eprintln!("cutover: report written to {}", dir.display()),
            Err(e) => eprintln!("cutover: cannot write the report to {}: {e}", dir.display()),
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

fn report_outcome(o: &Outcome) -> u8 {
    let code = o.exit_code();
    if code == i32::from(EXIT_ROLLBACK_FAILED) {
        tracing::error!("PAGE NOW: {}", o.reason);
        eprintln!("cutover: PAGE NOW: {}", o.reason);
    }
    code as u8
}

async fn status(p: LoadedPolicy, common: Common) -> anyhow::Result<u8> {
    let backend = connect(&p, &common).await?;
    let store = common.store(&p.policy.service).await?;
    match backend.get_weights().await {
        Ok(w) => println!("live:   {w} ({})", backend.describe()),
        Err(e) => println!("live:   cannot read: {e} ({})", backend.describe()),
    }
    if let Some(lock) = backend.object_lock() {
        match lock.read().await {
            Ok(Some(v)) => {
                match &v.record.holder {
                    Some(h) if h.expired(unix_now()) => {
                        println!("lock:   expired: {} ({})", h.describe(), lock.describe())
                    }
                    Some(h) => println!("lock:   held by {} ({})", h.describe(), lock.describe()),
                    None => println!("lock:   free ({})", lock.describe()),
                }
                if let Some(b) = &v.record.brake {
                    println!(
                        "brake:  run {} braked by {} at {}{}",
                        b.run_id,
                        b.by,
                        cutover_core::lock::rfc3339(b.at),
                        if b.acknowledged {
                            " (acknowledged)"
                        } else {
                            " (not yet acknowledged)"
                        }
                    );
                }
            }
            Ok(None) => println!("lock:   free ({})", lock.describe()),
            Err(e) => println!("lock:   cannot read: {e}"),
        }
    }
    match store.load().await {
        Ok(None) => println!("run:    none recorded in {}", store.describe()),
        Ok(Some(s)) => {
            println!("run:    {} phase {:?}", s.run_id, s.phase);
            if let Some(i) = s.stage {
                println!("stage:  {}/{} ", i + 1, p.policy.stages.len());
            }
            if let Some(o) = &s.outcome {
                println!(
                    "result: {:?} (exit {}): {}",
                    o.phase,
                    o.exit_code(),
                    o.reason
                );
            }
            for h in &s.history {
                println!(
                    "  {}  {}",
                    humantime::format_rfc3339_seconds(h.at),
                    h.weights
                );
            }
        }
        Err(e) => println!("run:    {e}"),
    }
    Ok(0)
}

/// `cutover rollback`: brake, write 0 %, verify, and watch until the braked run has stopped.
async fn rollback(p: LoadedPolicy, common: Common, watch: Duration) -> anyhow::Result<u8> {
    let backend = connect(&p, &common).await?;
    let by = operator();
    // 1. The brake, where the run must look before every write: the object's lock.
    let mut braked_run = None;
    let mut brake_failed = None;
    let mut stopped_record = None;
    if let Some(lock) = backend.object_lock() {
        match cutover::lock::brake(lock.as_ref(), &by).await {
            Ok(b) => {
                if let Some(h) = &b.braked {
                    println!("braked:  {} ({})", h.describe(), lock.describe());
                }
                braked_run = b.braked;
            }
            Err(e) => {
                eprintln!("cutover: cannot brake through the lock: {e}; rolling back anyway");
                brake_failed = Some(e.to_string());
            }
        }
        // 2. A run recorded in the state store but not holding the lock (killed, not yet
        //    restarted) is braked by id, and its record is finished: no restart resumes it.
        if let Ok(store) = common.store(&p.policy.service).await
            && let Ok(Some(state)) = store.load().await
            && state.service == p.policy.service
            && Run::resumable(&state)
            // A live run braked above keeps its brake: one brake per object at a time.
            && braked_run.is_none()
            && brake_failed.is_none()
        {
            if let Err(e) = cutover::lock::brake_run(lock.as_ref(), &state.run_id, &by).await {
                eprintln!("cutover: cannot brake run {}: {e}", state.run_id);
            }
            stopped_record = Some((store, state));
        }
    }
    // 3. The write, retried with backoff until it sticks.
    let spec = &p.policy.rollback;
    let mut wait = spec.retry_interval.get();
    let mut done = false;
    for attempt in 1..=spec.max_attempts {
        match write_and_verify(backend.as_ref(), Weights::ALL_DR).await {
            Ok(w) => {
                println!(
                    "rolled back: {w} on {} (verified by reading back)",
                    backend.describe()
                );
                done = true;
                break;
            }
            Err((e, _)) => {
                eprintln!(
                    "rollback attempt {attempt}/{} failed: {e}",
                    spec.max_attempts
                );
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(30));
            }
        }
    }
    // The stopped run's record says how it ended, once traffic is verified on DR.
    if let (true, Some((store, mut state))) = (done, stopped_record) {
        Run::mark_operator_rollback(&mut state, &by, SystemTime::now());
        match store.save(&state).await {
            Ok(()) => println!(
                "recorded: run {} ended by this operator rollback ({})",
                state.run_id,
                store.describe()
            ),
            Err(e) => eprintln!("cutover: cannot record the rollback in the run state: {e}"),
        }
    }
    if !done {
        let live = match backend.get_weights().await {
            Ok(w) => format!("the live weights read {w}"),
            Err(e) => format!("the live weights cannot be read: {e}"),
        };
        eprintln!(
            "cutover: PAGE NOW: rollback to DR could not be applied on {}; {live}",
            backend.describe()
        );
        return Ok(EXIT_ROLLBACK_FAILED);
    }
    if let Some(e) = brake_failed {
        eprintln!(
            "cutover: PAGE NOW: all traffic is on DR (verified), but a running cutover could not be braked ({e}); \
             it may write a forward weight again: stop its Job or process"
        );
        return Ok(EXIT_ROLLBACK_FAILED);
    }
    // 4. A braked live run may have had a forward write in flight: watch until it says it
    //    has stopped (releases the lock, acknowledging the brake), putting DR back if needed.
    let (Some(h), Some(lock)) = (braked_run, backend.object_lock()) else {
        return Ok(0);
    };
    let until = tokio::time::Instant::now() + watch;
    loop {
        let record = lock.read().await.ok().flatten().map(|v| v.record);
        let stopped = record.as_ref().is_none_or(|r| {
            r.holder
                .as_ref()
                .is_none_or(|x| x.run_id != h.run_id || x.expired(unix_now()))
        });
        match backend.get_weights().await {
            Ok(w) if w != Weights::ALL_DR => {
                eprintln!(
                    "cutover: the braked run's write landed ({w}); putting all traffic on DR again"
                );
                if let Err((e, _)) = write_and_verify(backend.as_ref(), Weights::ALL_DR).await {
                    eprintln!("cutover: rewrite failed: {e}");
                }
            }
            _ if stopped => {
                println!(
                    "stopped:  run {} has stopped; traffic stays on DR",
                    h.run_id
                );
                return Ok(0);
            }
            _ => {}
        }
        if tokio::time::Instant::now() >= until {
            match backend.get_weights().await {
                Ok(w) if w == Weights::ALL_DR => {}
                other => {
                    let read = match other {
                        Ok(w) => format!("the live weights read {w}"),
                        Err(e) => format!("the live weights cannot be read: {e}"),
                    };
                    eprintln!(
                        "cutover: PAGE NOW: run {} has not stopped within {} and {read}",
                        h.run_id,
                        humantime::format_duration(watch)
                    );
                    return Ok(EXIT_ROLLBACK_FAILED);
                }
            }
            println!(
                "waiting:  run {} has not acknowledged the brake within {} (hung, or on another machine); \
                 it checks the brake before every write and will roll back instead of advancing",
                h.run_id,
                humantime::format_duration(watch)
            );
            return Ok(0);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn demo(
    scenario: DemoScenario,
    speed: f64,
    seed: u64,
    dir: Option<PathBuf>,
    report_dir: Option<PathBuf>,
) -> anyhow::Result<u8> {
    let dir = dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("cutover-demo-{}", std::process::id()))
    });
    let speed = if speed <= 0.0 { f64::INFINITY } else { speed };
    println!(
        "cutover demo: scenario {scenario:?}, simulated traffic, file backend in {}, {}x time",
        dir.display(),
        speed
    );
    let wall = std::time::Instant::now();
    let opts = DemoOptions {
        scenario,
        speed,
        seed,
        dir,
    };
    let console = console();
    let report = Arc::new(Report::default());
    let result = cutover::demo::run_demo(opts, vec![console, report.clone()], signals()).await?;
    if let Some(d) = &report_dir {
        report
            .write(d, result.run.state(), &result.outcome)
            .with_context(|| format!("cannot write the report to {}", d.display()))?;
        println!("report:   {}", d.join("report.md").display());
    }
    let (outcome, state) = (&result.outcome, result.run.state());
    let outcome: &Outcome = outcome;
    println!();
    println!(
        "verdict:  {:?} (exit {})",
        outcome.phase,
        outcome.exit_code()
    );
    println!("why:      {}", outcome.reason);
    println!(
        "weights:  {}",
        std::iter::once("0".to_string())
            .chain(state.history.iter().map(|h| h.weights.primary.to_string()))
            .collect::<Vec<_>>()
            .join(" -> ")
    );
    println!(
        "time:     {} of simulated cutover in {:.1}s",
        cutover_core::run::fmt_d(result.elapsed),
        wall.elapsed().as_secs_f64()
    );
    Ok(report_outcome(outcome))
}
