//! `cutover demo`: the real state machine and analyzers on the file backend and simulated
//! traffic, in accelerated virtual time. Nothing outside a temporary folder is touched.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use clap::ValueEnum;
use cutover_analyzers::Analyzer;
use cutover_analyzers::simulated::{
    Change, Scenario, SimWorld, SimulatedSource, SiteProfile, Trigger,
};
use cutover_backends::FileBackend;
use cutover_core::Site;

use crate::clock::{Clock, SimClock};
use crate::driver::{Driver, Shutdown};
use crate::observe::Observer;
use crate::simulated_backend::SimulatedBackend;
use cutover_backends::state::FileStore;
use cutover_core::policy::backend::Backend;
use cutover_core::policy::{self, LoadedPolicy};
use cutover_core::run::{Outcome, Run};

/// The demo's policy, a real policy file (validated with the others).
pub const DEMO_POLICY: &str = include_str!("../../policies/demo.yaml");

/// What the simulated primary does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DemoScenario {
    /// The primary is as healthy as DR: promoted to 100 %, exit 0.
    Healthy,
    /// At 25 % the primary's error rate jumps to 5 %: rolled back, exit 1.
    ErrorSpike,
    /// At 50 % the primary's latency quadruples: rolled back, exit 1.
    LatencyRegression,
    /// Requests never reach the primary: never settles, held at 10 %, exit 5.
    NoTraffic,
    /// At 25 % both sites fail at 5 %: frozen, not rolled back, exit 5.
    GlobalIncident,
}

impl DemoScenario {
    /// The simulated world of this scenario.
    pub fn scenario(self, seed: u64) -> Scenario {
        let change = |at: u8,
                      site: Option<Site>,
                      error_rate: Option<f64>,
                      latency_factor: Option<f64>,
                      reachable: Option<bool>| Change {
            when: Trigger::PrimaryWeightAtLeast(at),
            site,
            error_rate,
            latency_factor,
            reachable,
            error_ramp: None,
            load_errors: None,
        };
        let (name, changes) = match self {
            DemoScenario::Healthy => ("healthy", vec![]),
            DemoScenario::ErrorSpike => (
                "error-spike",
                vec![change(25, Some(Site::Primary), Some(0.05), None, None)],
            ),
            DemoScenario::LatencyRegression => (
                "latency-regression",
                vec![change(50, Some(Site::Primary), None, Some(4.0), None)],
            ),
            DemoScenario::NoTraffic => (
                "no-traffic",
                vec![change(0, Some(Site::Primary), None, None, Some(false))],
            ),
            DemoScenario::GlobalIncident => (
                "global-incident",
                vec![change(25, None, Some(0.05), None, None)],
            ),
        };
        let mut custom = BTreeMap::new();
        custom.insert("max(pg_replication_lag_seconds)".to_string(), 3.0);
        Scenario {
            name: name.into(),
            total_rps: 200.0,
            primary: SiteProfile::healthy(0.002),
            dr: SiteProfile::healthy(0.002),
            changes,
            convergence: Duration::ZERO,
            custom,
            seed,
            scrape: Default::default(),
            error_burst_shape: 0.0,
            burst_period: Duration::ZERO,
            traffic_profile: Vec::new(),
            warmup: cutover_analyzers::simulated::WARMUP,
        }
    }
}

/// Options of a demo run.
pub struct DemoOptions {
    /// The scenario.
    pub scenario: DemoScenario,
    /// Virtual seconds per real second (infinite: no real waiting).
    pub speed: f64,
    /// RNG seed of the simulated traffic.
    pub seed: u64,
    /// Where the weights and state files go.
    pub dir: PathBuf,
}

/// The demo policy with its weights file moved into `dir` (created there if missing).
pub fn demo_policy(dir: &Path) -> LoadedPolicy {
    let file = "policies/demo.yaml";
    let mut model = policy::parse(file, DEMO_POLICY, Default::default())
        .expect("the built-in demo policy is valid")
        .policy;
    if let Some(f) = model.backend.file.as_mut() {
        f.path = dir.join("weights.json");
        f.create = true;
    }
    policy::from_model(file, model).expect("the demo policy with its weights moved is valid")
}

/// How a demo ended.
pub struct DemoResult {
    /// The outcome.
    pub outcome: Outcome,
    /// The run, with its history.
    pub run: Run,
    /// Virtual time the cutover took.
    pub elapsed: Duration,
}

/// Runs a demo to its end.
pub async fn run_demo(
    opts: DemoOptions,
    observers: Vec<Arc<dyn Observer>>,
    shutdown: Shutdown,
) -> anyhow::Result<DemoResult> {
    std::fs::create_dir_all(&opts.dir)?;
    let policy = demo_policy(&opts.dir);
    let Backend::File(file) = &policy.backend else {
        anyhow::bail!("the demo policy must use the file backend");
    };
    // Always start from all traffic on DR.
    let _ = std::fs::remove_file(&file.path);
    let start = SystemTime::now();
    let clock: Arc<dyn Clock> = Arc::new(SimClock::new(start, opts.speed));
    let world = SimWorld::new(opts.scenario.scenario(opts.seed), start);
    let backend = Arc::new(SimulatedBackend::on_file(
        FileBackend::new(file),
        world.clone(),
        clock.clone(),
    ));
    let source = Arc::new(SimulatedSource::new(world, policy.promql.clone()));
    let analyzer = Analyzer::new(source, policy.plan.gates.clone());
    let mut run = Run::new(policy.plan.clone(), format!("demo-{}", opts.seed));
    let mut driver = Driver {
        backend,
        analyzer,
        preflight: policy.policy.preflight.clone(),
        clock: clock.clone(),
        store: Some(Box::new(FileStore::new(opts.dir.join("state.json")))),
        observers,
        shutdown,
        owner: None,
    };
    let outcome = driver.drive(&mut run).await;
    let elapsed = clock.now().duration_since(start).unwrap_or_default();
    Ok(DemoResult {
        outcome,
        run,
        elapsed,
    })
}
