//! `cutover plan`'s prediction: the traffic each stage expects (DR's current rate from
//! Prometheus when reachable, else `--rps`) and how long each sequential gate takes to
//! certify a healthy primary there, with a warning where `max_duration` leaves a large
//! chance of a hold.

use std::fmt::Write;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use cutover_analyzers::prometheus::PrometheusSource;
use cutover_core::Site;
use cutover_core::judge::gate::GateKind;
use cutover_core::metrics::source::{Measure, MetricSource};
use cutover_core::policy::LoadedPolicy;
use cutover_core::run::fmt_d;

use cutover::predict::{Context, Traffic, certify_times};

/// `cutover plan`'s arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct PlanArgs {
    /// The policy file.
    pub(crate) policy: PathBuf,
    /// Requests per second over both sites, for the prediction; default: DR's and the
    /// primary's current rate from the policy's Prometheus.
    #[arg(long)]
    pub(crate) rps: Option<f64>,
    /// Both sites' share of bad requests for the prediction, e.g. 0.01; default: DR's
    /// current share per gate from Prometheus, else 0.01.
    #[arg(long)]
    pub(crate) bad_rate: Option<f64>,
    /// Simulated stages per gate and stage.
    #[arg(long, default_value_t = 300)]
    pub(crate) runs: u32,
    /// Skip the prediction (no Prometheus query).
    #[arg(long)]
    pub(crate) no_predict: bool,
}

/// The chance of a hold above which a stage is warned about.
const HOLD_WARNING: f64 = 0.10;

/// The prediction section, or why there is none.
pub(crate) async fn render(loaded: &LoadedPolicy, args: &PlanArgs) -> String {
    let mut s = String::new();
    let sequential: Vec<_> = loaded
        .plan
        .gates
        .iter()
        .filter(|g| g.is_sequential())
        .collect();
    if sequential.is_empty() || args.no_predict {
        return s;
    }
    let source = PrometheusSource::new(&loaded.policy.prometheus, loaded.promql.clone()).ok();
    let now = SystemTime::now();
    let window = Duration::from_secs(300);
    let ask = |m: Measure| {
        let source = source.as_ref();
        async move {
            match source {
                Some(src) => src.measure(&m, now).await.ok().flatten(),
                None => None,
            }
        }
    };
    let (rps, from) = match args.rps {
        Some(r) => (Some(r), "--rps".to_string()),
        None => {
            let p = ask(Measure::RequestRate {
                site: Site::Primary,
                window,
            })
            .await;
            let d = ask(Measure::RequestRate {
                site: Site::Dr,
                window,
            })
            .await;
            match (p, d) {
                (None, None) => (None, String::new()),
                (p, d) => (
                    Some(p.unwrap_or(0.0).max(0.0) + d.unwrap_or(0.0).max(0.0)),
                    "both sites' request rate over the last 5m in Prometheus".to_string(),
                ),
            }
        }
    };
    let _ = writeln!(s, "\nPredicted time to certify a healthy primary:");
    let Some(rps) = rps.filter(|r| r.is_finite() && *r > 0.0) else {
        let _ = writeln!(
            s,
            "  no traffic to predict from (Prometheus unreachable or no requests); pass --rps"
        );
        return s;
    };
    let _ = writeln!(
        s,
        "  {rps:.1} requests/s over both sites ({from}); the primary as good as DR; Poisson counts (bursty traffic certifies later); {} simulated stages each",
        args.runs
    );
    let _ = writeln!(
        s,
        "  {:>6}  {:>11}  {:<24} {:>9}  {:>8}  {:>8}  {:>9}",
        "weight", "primary rps", "gate", "bad share", "median", "p90", "certified"
    );
    let mut warnings = Vec::new();
    for g in sequential {
        let GateKind::Sequential { test, counted } = &g.kind else {
            continue;
        };
        let bad_rate = match args.bad_rate {
            Some(b) => b,
            None => ask(Measure::BadShare {
                counted: *counted,
                site: Site::Dr,
                window,
            })
            .await
            .filter(|b| b.is_finite() && *b >= 0.0)
            .unwrap_or(0.01),
        };
        let traffic = Traffic { rps, bad_rate };
        let judged: Vec<_> = (0..loaded.plan.stages.len())
            .filter(|&i| loaded.plan.stages[i].judged)
            .collect();
        for (k, &i) in judged.iter().enumerate() {
            let st = &loaded.plan.stages[i];
            let context = Context {
                carried: k
                    .checked_sub(1)
                    .map(|j| (&loaded.plan.stages[judged[j]], loaded.plan.certify)),
                holdout: loaded.plan.is_holdout_stage(i),
                poisson: test.history.is_none(),
            };
            let p = certify_times(
                test.test(),
                st,
                g.min_requests,
                traffic,
                context,
                args.runs,
                1,
            );
            let d = |d: Option<Duration>| d.map_or("-".to_string(), fmt_d);
            let _ = writeln!(
                s,
                "  {:>5}%  {:>11.1}  {:<24} {:>8.3}%  {:>8}  {:>8}  {:>8.0}%",
                st.weight,
                p.primary_rps,
                g.name,
                bad_rate * 100.0,
                d(p.median),
                d(p.p90),
                p.certified * 100.0
            );
            if 1.0 - p.certified > HOLD_WARNING {
                warnings.push(format!(
                    "warning: at {}% the gate {} is not certified within max_duration {} in {:.0}% of simulated stages: the run would hold there; raise max_duration, or a larger beta (e.g. 0.3) or analysis.certify: cumulative (BENCHMARKS.md prints what each lets through), or a larger tolerance or absolute_tolerance",
                    st.weight,
                    g.name,
                    fmt_d(st.max_duration),
                    (1.0 - p.certified) * 100.0
                ));
            }
        }
    }
    for w in warnings {
        let _ = writeln!(s, "  {w}");
    }
    s
}
