//! The world of one end-to-end test: a temporary folder with a weights file (all traffic on
//! DR), the logs of the processes it starts, and, for most tests, a workload whose traffic
//! follows the weights file and a real Prometheus scraping it, with data already in.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::{Cutover, Finished, Policy, file_backend};
use crate::exporter::Exporter;
use crate::logs::Logs;
use crate::prometheus::Prometheus;
use crate::{ALL_ON_DR, TempDir, primary_in};

/// The query that says a fresh workload's data is in: DR serves, at a rate.
pub const DR_SERVING: &str = "sum(rate(http_requests_total{site=\"dr\"}[8s])) > 0";

/// How long a `cutover run` of a test policy may take at the most.
pub const RUN_LIMIT: Duration = Duration::from_secs(180);

/// A test's folder, weights file, child-process logs and, if started with one, workload and
/// Prometheus. Everything it started stops when it drops; the logs are printed then if the
/// test is failing.
pub struct Env {
    /// Where the processes of the test write their output.
    pub logs: Logs,
    /// The test's folder.
    pub dir: TempDir,
    exporter: Option<Exporter>,
    prom: Option<Prometheus>,
    followers: Vec<tokio::task::JoinHandle<()>>,
}

/// How to start an [`Env`] with a workload and a Prometheus.
pub struct EnvBuilder {
    name: String,
    rps: f64,
    targets: Vec<String>,
    ready: String,
}

impl EnvBuilder {
    /// Requests per second of the workload (200 unless said).
    pub fn rps(mut self, rps: f64) -> Self {
        self.rps = rps;
        self
    }

    /// Another target for the Prometheus to scrape (`host:port`).
    pub fn scrape(mut self, target: String) -> Self {
        self.targets.push(target);
        self
    }

    /// The query whose first series says the data is in ([`DR_SERVING`] unless said).
    pub fn ready_when(mut self, query: &str) -> Self {
        self.ready = query.into();
        self
    }

    /// Starts the workload and the Prometheus, and waits (bounded) until the data is in.
    pub async fn start(self) -> Env {
        let mut env = Env::new(&self.name);
        let exporter = Exporter::start(env.weights_file(), self.rps).await;
        let mut targets = vec![exporter.target()];
        targets.extend(self.targets);
        let prom = Prometheus::start(&targets).await;
        // Poll, never sleep a fixed time: the first scrape comes a few seconds after start.
        prom.wait_for_data(&self.ready, Duration::from_secs(40))
            .await;
        env.exporter = Some(exporter);
        env.prom = Some(prom);
        env
    }
}

impl Env {
    /// A folder named after `name` with `weights.json` all on DR; no workload.
    pub fn new(name: &str) -> Env {
        let env = Env {
            logs: Logs::new(name),
            dir: TempDir::new(name),
            exporter: None,
            prom: None,
            followers: Vec::new(),
        };
        env.reset_weights();
        env
    }

    /// [`Env::new`] with a workload of 200 requests/s following `weights.json` and a
    /// Prometheus scraping it every second, its data in.
    pub async fn with_prometheus(name: &str) -> Env {
        Env::builder(name).start().await
    }

    /// [`Env::with_prometheus`], said otherwise.
    pub fn builder(name: &str) -> EnvBuilder {
        EnvBuilder {
            name: name.into(),
            rps: 200.0,
            targets: Vec::new(),
            ready: DR_SERVING.into(),
        }
    }

    /// A path in the test's folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The weights file: the `file` backend's, or the one a follower writes.
    pub fn weights_file(&self) -> PathBuf {
        self.path("weights.json")
    }

    /// The weights file's text.
    pub fn weights(&self) -> String {
        std::fs::read_to_string(self.weights_file()).expect("the weights file")
    }

    /// The primary weight in the weights file.
    pub fn primary(&self) -> u64 {
        primary_in(&self.weights_file())
    }

    /// Puts all traffic back on DR in the weights file.
    pub fn reset_weights(&self) {
        std::fs::write(self.weights_file(), ALL_ON_DR).expect("write the weights file");
    }

    /// The workload.
    pub fn exporter(&self) -> &Exporter {
        self.exporter.as_ref().expect("an Env with a workload")
    }

    /// The Prometheus.
    pub fn prom(&self) -> &Prometheus {
        self.prom.as_ref().expect("an Env with a Prometheus")
    }

    /// The Prometheus, to kill or restart.
    pub fn prom_mut(&mut self) -> &mut Prometheus {
        self.prom.as_mut().expect("an Env with a Prometheus")
    }

    /// The test policy at `checkout.yaml` on the `file` backend of the weights file, judged
    /// by the Prometheus.
    pub fn policy(&self) -> Policy {
        self.policy_judged_by(&self.prom().url())
    }

    /// [`Env::policy`] judged by the Prometheus at `url`.
    pub fn policy_judged_by(&self, url: &str) -> Policy {
        Policy::new(
            self.path("checkout.yaml"),
            &file_backend(&self.weights_file()),
            url,
        )
    }

    /// `cutover ARGS`, its output in the test's logs.
    pub fn cutover<I, S>(&self, args: I) -> Cutover<'_>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.logs.cutover(args)
    }

    /// `cutover SUBCOMMAND POLICY --state-file STATE`, its output in the test's logs.
    pub fn cutover_on(&self, subcommand: &str, policy: &Path, state: &Path) -> Cutover<'_> {
        self.cutover([subcommand]).arg(policy).state_file(state)
    }

    /// `cutover run POLICY --state-file state.json`, to its end (bounded by [`RUN_LIMIT`]).
    pub async fn run(&self, policy: &Path) -> Finished {
        self.cutover_on("run", policy, &self.path("state.json"))
            .finish(RUN_LIMIT)
            .await
    }

    /// Keeps the weights file following the live weights, as the traffic would: `read`
    /// returns the (primary, DR) weights, read every `period`, until the Env drops.
    pub fn follow<F, Fut>(&mut self, period: Duration, mut read: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Option<(u64, u64)>> + Send,
    {
        let file = self.weights_file();
        self.followers.push(tokio::spawn(async move {
            loop {
                if let Some((p, d)) = read().await
                    && let Some(pp) = (p * 100).checked_div(p + d)
                {
                    let json = format!("{{\"primary\":{pp},\"dr\":{}}}", 100 - pp);
                    let _ = std::fs::write(&file, json);
                }
                tokio::time::sleep(period).await;
            }
        }));
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for f in &self.followers {
            f.abort();
        }
    }
}
