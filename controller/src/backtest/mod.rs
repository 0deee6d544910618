//! `cutover backtest`: the real run state machine and analyzers replayed over a past window
//! of a real Prometheus, in virtual time.
//!
//! Runs are replayed back to back from the start of the window (a new run starts where the
//! last one ended) until the window ends, so an ordinary day says how often the policy would
//! have rolled back a healthy primary, and a past incident says when the run under way
//! would have caught it. Each run is a [`Run`] driven by the real [`Driver`] through the real
//! [`Analyzer`]; only three things are replaced: the clock ([`replay::WindowClock`]), the
//! backend (the run's own weights in memory, [`replay::ReplayBackend`]) and the metric source
//! (Prometheus asked about the virtual time, [`source::HistorySource`]).
//!
//! Readiness checks that read live systems (databases, Kubernetes, HTTP) cannot be asked
//! about the past and are left out; query checks are replayed. Approvals are taken as
//! granted. Both are said in the summary.

pub mod replay;
pub mod source;
pub mod time;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use cutover_analyzers::Analyzer;
use cutover_analyzers::prometheus::PrometheusSource;
use cutover_core::GateStatus;
use cutover_core::Weights;
use cutover_core::policy::LoadedPolicy;
use cutover_core::run::{Event, EventKind, Outcome, Phase, Run, RunState};

use crate::clock::Clock;
use crate::driver::Driver;
use crate::observe::Observer;
use crate::observe::report::Report;
use replay::{Recorder, ReplayBackend, WindowClock};
use source::{Blind, HistorySource};

/// What to replay.
#[derive(Debug, Clone)]
pub struct Options {
    /// The start of the window.
    pub from: SystemTime,
    /// The end of the window.
    pub to: SystemTime,
    /// Re-weight each site's counts to the replayed run's split (`--assume-plan`); else the
    /// split is what really happened.
    pub assume_plan: bool,
    /// Replay one run only (a past failback), not runs back to back.
    pub once: bool,
    /// The server's `--query.max-samples`: range queries are chunked under it.
    pub max_samples: usize,
    /// At most this many runs (a bound on the loop).
    pub max_runs: usize,
    /// Keep every run's events for its report (`--report`).
    pub reports: bool,
    /// Keep every analysis for the timeline, not only those with a gate that did not pass.
    pub every_analysis: bool,
}

/// One replayed run.
pub struct ReplayedRun {
    /// Its id, `backtest-N`.
    pub id: String,
    /// When it started (virtual time).
    pub started: SystemTime,
    /// When it ended, or the end of the window.
    pub ended: SystemTime,
    /// How it ended; `None` when the window ended first.
    pub outcome: Option<Outcome>,
    /// When a rollback started, and why.
    pub rollback: Option<(SystemTime, String)>,
    /// Every event, in order.
    pub events: Vec<Event>,
    /// Its final state.
    pub state: RunState,
    /// The same report a live run writes (with [`Options::reports`]).
    pub report: Option<Arc<Report>>,
}

impl ReplayedRun {
    /// The phase it ended in, or where it was when the window ended.
    pub fn phase(&self) -> Phase {
        self.outcome
            .as_ref()
            .map(|o| o.phase)
            .unwrap_or(self.state.phase)
    }
}

/// A gate's analyses without a verdict: no data or query errors.
#[derive(Debug, Clone, Default)]
pub struct GateBlind {
    /// Analyses with no data.
    pub no_data: u64,
    /// Analyses whose query failed.
    pub errors: u64,
    /// The first such analysis: when, and why.
    pub first: Option<(SystemTime, String)>,
}

/// The result of a backtest.
pub struct Backtest {
    /// The service.
    pub service: String,
    /// The options replayed.
    pub options: Options,
    /// The runs, in order.
    pub runs: Vec<ReplayedRun>,
    /// What the source could not see.
    pub blind: Blind,
    /// Per gate: analyses without a verdict.
    pub gates: BTreeMap<String, GateBlind>,
    /// What the replay left out of the policy, in words.
    pub left_out: Vec<String>,
    /// Wall-clock time the replay took.
    pub wall: Duration,
}

impl Backtest {
    /// Runs ended in `phase`.
    pub fn count(&self, phase: Phase) -> usize {
        self.runs
            .iter()
            .filter(|r| r.outcome.as_ref().is_some_and(|o| o.phase == phase))
            .count()
    }

    /// The exit code: 1 if a run rolled back, else 5 if one was held, else 0.
    pub fn exit_code(&self) -> u8 {
        if self.runs.iter().any(|r| r.rollback.is_some()) {
            1
        } else if self.count(Phase::Held) > 0 {
            5
        } else {
            0
        }
    }
}

/// The policy's plan as a replay runs it, and what was left out.
fn replayable(policy: &LoadedPolicy) -> (cutover_core::policy::Plan, Vec<String>) {
    let mut plan = policy.plan.clone();
    let mut left_out = Vec::new();
    for (what, list) in [
        ("preflight check", &mut plan.readiness.preflight),
        ("guard", &mut plan.readiness.guards),
    ] {
        let (keep, drop): (Vec<_>, Vec<_>) = list.drain(..).partition(|c| c.query.is_some());
        for c in drop {
            left_out.push(format!(
                "{what} `{}`: it reads a live system, not history; not replayed",
                c.name
            ));
        }
        *list = keep;
    }
    for i in std::mem::take(&mut plan.approvals).into_keys() {
        left_out.push(format!(
            "stage {}'s approval: taken as granted at once",
            i + 1
        ));
    }
    (plan, left_out)
}

/// A policy's Prometheus asked about one window, shared by replays of variants of the policy
/// (`cutover tune` replays several bounds over the same history: one cache).
pub struct Replayer {
    /// The metric source, with its cache.
    pub source: Arc<HistorySource>,
    split: Arc<Mutex<Weights>>,
    interval: Duration,
}

impl Replayer {
    /// The source of `policy`'s Prometheus over the window of `opts`.
    pub fn new(policy: &LoadedPolicy, opts: &Options) -> anyhow::Result<Replayer> {
        let prom = PrometheusSource::new(&policy.policy.prometheus, policy.promql.clone())
            .map_err(|e| anyhow::anyhow!("{}: {e}", policy.path.display()))?;
        let interval = policy.plan.first_interval();
        let split = Arc::new(Mutex::new(Weights::ALL_DR));
        let source = Arc::new(HistorySource::new(
            Arc::new(prom),
            interval,
            opts.to,
            opts.max_samples,
            opts.assume_plan.then(|| split.clone()),
        ));
        Ok(Replayer {
            source,
            split,
            interval,
        })
    }
}

/// The gate queries an analysis of `policy` makes (both sites' request rates, the primary's
/// request count per gate window, each gate's reads; not sequential gates' counts), as the
/// source renders them: what a replay reads over its window up front.
pub fn gate_queries(policy: &LoadedPolicy, source: &HistorySource) -> Vec<String> {
    use cutover_core::Site;
    use cutover_core::metrics::source::{Measure, MetricSource};
    let interval = policy.plan.first_interval();
    let mut out = Vec::new();
    for site in [Site::Primary, Site::Dr] {
        out.push(source.render(&Measure::RequestRate {
            site,
            window: interval,
        }));
    }
    for g in &policy.plan.gates {
        let window = g.window(interval);
        out.push(source.render(&Measure::RequestCount {
            site: Site::Primary,
            window,
        }));
        if g.counted().is_some() {
            continue;
        }
        out.push(source.render(&g.measure(Site::Primary, window)));
        if g.is_per_site() {
            out.push(source.render(&g.measure(Site::Dr, window)));
        }
        // Windows of the assumed split's rates (`--assume-plan` re-weights counts by them).
        for site in [Site::Primary, Site::Dr] {
            out.push(source.render(&Measure::RequestRate { site, window }));
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    out.retain(|q| seen.insert(q.clone()));
    out
}

/// Replays `policy` over the window of `opts` against its Prometheus.
pub async fn backtest(policy: &LoadedPolicy, opts: &Options) -> anyhow::Result<Backtest> {
    let wall = Instant::now();
    let replayer = Replayer::new(policy, opts)?;
    replayer.source.check(opts.from).await.map_err(|e| {
        anyhow::anyhow!("{e}; nothing was replayed (is prometheus.url of the policy right?)")
    })?;
    replayer
        .source
        .prefetch(&gate_queries(policy, &replayer.source), opts.from)
        .await;
    let mut b = replay(&replayer, policy, opts).await;
    b.wall = wall.elapsed();
    Ok(b)
}

/// Replays `policy` with `replayer`'s source (same service, same Prometheus).
pub async fn replay(replayer: &Replayer, policy: &LoadedPolicy, opts: &Options) -> Backtest {
    let wall = Instant::now();
    let (plan, left_out) = replayable(policy);
    let (source, split, interval) = (
        replayer.source.clone(),
        replayer.split.clone(),
        replayer.interval,
    );
    let clock = Arc::new(WindowClock::new(opts.from, opts.to));
    let preflight = plan.readiness.preflight.clone();
    let mut runs = Vec::new();
    let (_tx, shutdown) = tokio::sync::watch::channel(None);
    while !clock.is_over() && runs.len() < opts.max_runs.max(1) {
        let started = clock.now();
        let recorder = Arc::new(Recorder::new(opts.every_analysis));
        let report = opts.reports.then(|| Arc::new(Report::default()));
        let mut observers: Vec<Arc<dyn Observer>> = vec![recorder.clone()];
        if let Some(r) = &report {
            observers.push(r.clone());
        }
        let mut driver = Driver {
            backend: Arc::new(ReplayBackend::new(split.clone())),
            analyzer: Analyzer::new(source.clone(), plan.gates.clone()),
            preflight: preflight.clone(),
            clock: clock.clone(),
            store: None,
            observers,
            shutdown: shutdown.clone(),
            owner: None,
        };
        let id = format!("backtest-{}", runs.len() + 1);
        let mut run = Run::new(plan.clone(), id.clone());
        let outcome = tokio::select! {
            o = driver.drive(&mut run) => Some(o),
            _ = clock.ended() => None,
        };
        let events = recorder.events();
        let rollback = events.iter().find_map(|e| match &e.kind {
            EventKind::RollbackStarted { reason, .. } => Some((e.at, reason.clone())),
            _ => None,
        });
        let ended = clock.now();
        runs.push(ReplayedRun {
            id,
            started,
            ended,
            outcome: outcome.clone(),
            rollback,
            events,
            state: run.state().clone(),
            report,
        });
        if opts.once || outcome.is_none() {
            break;
        }
        // A run that took no time (preflight refused at once) must not start again at the
        // same moment: the next one starts an interval later.
        if ended <= started {
            clock.advance(interval);
        }
    }
    let mut gates: BTreeMap<String, GateBlind> = BTreeMap::new();
    for r in &runs {
        for e in &r.events {
            if let EventKind::Analyzed { results, .. } = &e.kind {
                for g in results {
                    let b = gates.entry(g.name.clone()).or_default();
                    match g.status {
                        GateStatus::NoData => b.no_data += 1,
                        GateStatus::Error => b.errors += 1,
                        _ => continue,
                    }
                    b.first.get_or_insert((e.at, g.reason.clone()));
                }
            }
        }
    }
    gates.retain(|_, b| b.no_data + b.errors > 0);
    let mut left_out = left_out;
    if !opts.once && !clock.is_over() {
        left_out.push(format!(
            "the replay stopped after {} runs (--max-runs) at {}; the rest of the window was not replayed",
            runs.len(),
            humantime::format_rfc3339_seconds(clock.now())
        ));
    }
    Backtest {
        service: plan.service.clone(),
        options: opts.clone(),
        runs,
        blind: source.blind(),
        gates,
        left_out,
        wall: wall.elapsed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(file: &str, text: &str) -> LoadedPolicy {
        cutover_core::policy::parse(file, text, Default::default()).unwrap()
    }

    #[test]
    fn checks_of_live_systems_are_left_out_and_said_and_approvals_granted() {
        let p = parse(
            "orders-postgres.yaml",
            include_str!("../../../policies/orders-postgres.yaml"),
        );
        let (plan, left_out) = replayable(&p);
        assert!(plan.readiness.preflight.is_empty() && plan.readiness.guards.is_empty());
        for name in [
            "replication-caught-up",
            "smoke",
            "replication-lag",
            "capacity",
        ] {
            assert!(
                left_out.iter().any(|l| l.contains(&format!("`{name}`"))),
                "{name}: {left_out:?}"
            );
        }
        // Query checks read Prometheus: replayed.
        let p = parse(
            "checkout.yaml",
            include_str!("../../../policies/checkout.yaml"),
        );
        let (plan, left_out) = replayable(&p);
        assert_eq!(
            plan.readiness.preflight.len(),
            p.plan.readiness.preflight.len()
        );
        assert!(left_out.is_empty(), "{left_out:?}");
        let p = parse(
            "api-route53.yaml",
            include_str!("../../../policies/api-route53.yaml"),
        );
        let (plan, left_out) = replayable(&p);
        assert!(!p.plan.approvals.is_empty() && plan.approvals.is_empty());
        assert!(
            left_out
                .iter()
                .any(|l| l.contains("approval: taken as granted")),
            "{left_out:?}"
        );
    }
}
