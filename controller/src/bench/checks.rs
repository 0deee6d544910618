//! The acceptance checks `cutover bench` prints (and `--check` enforces): the earlier issues'
//! and one per "Done when" line of issue 12, each with its numbers.

use std::time::Duration;

use cutover_core::judge::eprocess::Test;
use cutover_core::policy::plan::Plan;

use super::judges::Judge;
use super::oracle::{Stream, shiryaev_roberts_median, sprt_median};
use super::{Summary, fmt_d, scenarios};

/// The issue's acceptance checks, evaluated on printed results: `(what, passed)`. `beta`:
/// the sequential judges' `beta` when the run set one (`--beta`, the faster option).
pub fn acceptance(results: &[Summary], beta: Option<f64>) -> Vec<(String, bool)> {
    let get = |sc: &str, j: Judge| results.iter().find(|s| s.scenario == sc && s.judge == j);
    let mut out = Vec::new();
    if let Some(s) = get("healthy-1pct", Judge::Sequential) {
        out.push((
            format!(
                "healthy 1%/1% at 100 rps: sequential false rollback {:.1}% <= 1%",
                s.rolled_back * 100.0
            ),
            s.rolled_back <= 0.01,
        ));
        for other in [Judge::Flagger, Judge::Argo] {
            if let Some(o) = get("healthy-1pct", other) {
                out.push((
                    format!(
                        "healthy 1%/1%: sequential false rollback {:.1}% < {other} {:.1}%",
                        s.rolled_back * 100.0,
                        o.rolled_back * 100.0
                    ),
                    s.rolled_back < o.rolled_back,
                ));
            }
        }
    }
    if let Some(s) = get("step-1-5", Judge::Sequential) {
        let m = s.ttr.map(|t| t.0);
        out.push((
            format!(
                "1% -> 5% at the 10% stage: sequential median time to rollback {} <= 60s",
                fmt_d(m)
            ),
            m.is_some_and(|m| m <= Duration::from_secs(60)),
        ));
        if let Some(k) = get("step-1-5", Judge::Kayenta) {
            let km = k.ttr.map(|t| t.0);
            out.push((
                format!(
                    "1% -> 5%: sequential median time to rollback {} < kayenta {}",
                    fmt_d(m),
                    fmt_d(km)
                ),
                m.is_some_and(|m| km.is_none_or(|k| m < k)),
            ));
        }
    }
    if let Some(s) = get("traffic-1000rps", Judge::Sequential) {
        out.push((
            format!(
                "healthy at 1000 rps: sequential median time to promote {} well under 25m",
                fmt_d(s.time_to_promote)
            ),
            s.time_to_promote
                .is_some_and(|t| t <= Duration::from_secs(15 * 60)),
        ));
    }
    if let Some(s) = get("common-rise-at-100", Judge::Sequential) {
        // The holdout's price on a healthy service: what it promotes beside the plain judge.
        let price = match (
            get("healthy-1pct", Judge::SequentialHoldout),
            get("healthy-1pct", Judge::Sequential),
        ) {
            (Some(h), Some(q)) => format!(
                " (healthy-1pct promoted {:.1}% with the holdout, {:.1}% without)",
                h.promoted * 100.0,
                q.promoted * 100.0
            ),
            _ => String::new(),
        };
        out.push((
            format!(
                "common rise at the end: sequential (probing DR's concurrent traffic) false rollback {:.1}% <= 1%{price}",
                s.rolled_back * 100.0
            ),
            s.rolled_back <= 0.01,
        ));
    }
    if let Some(s) = get("slow-leak-1000rps", Judge::Sequential) {
        out.push((
            format!(
                "slow leak at 1000 rps: sequential rolled back {:.1}% >= 95%",
                s.rolled_back * 100.0
            ),
            s.rolled_back >= 0.95,
        ));
    }
    issue12(results, beta, &mut out);
    out
}

/// The runs a rate <= 1 % needs to be claimed (issue 12).
pub const RATE_RUNS: usize = 2000;

/// What an oracle needs for a regression scenario's first change, at the sequential judge's
/// own per-stage alpha and first stage: the onset known too for `zero-baseline` (Wald's
/// test from the onset, against the absolute tolerance), only the rates for
/// `onset-mid-stage` (a Shiryaev–Roberts detector against DR's rate × the tolerance).
fn oracle(name: &str) -> Option<Duration> {
    let (sc, plan, test) = error_test(name)?;
    let stage = plan.stages.first()?;
    let dt = stage.interval.as_secs_f64().max(1.0);
    let n = sc.rps * f64::from(stage.weight.get()) / 100.0 * dt;
    let after = sc.changes.first()?.error_rate?;
    let intervals = |d: Duration| (d.as_secs_f64() / dt).round() as u32;
    let k = match name {
        "zero-baseline" => {
            let s = Stream {
                n,
                before: 0.0,
                after,
                null: test.absolute,
            };
            sprt_median(s, test.alpha, 1000, 1000)
        }
        _ => {
            let onset = match sc.changes.first()?.when {
                cutover_analyzers::simulated::Trigger::AfterWeight { after, .. } => after,
                _ => return None,
            };
            let s = Stream {
                n,
                before: sc.error_rate,
                after,
                null: sc.error_rate * test.ratio,
            };
            let looks = intervals(stage.max_duration);
            shiryaev_roberts_median(s, intervals(onset), looks, test.alpha, 1000)
        }
    };
    Some(Duration::from_secs_f64(f64::from(k) * dt))
}

/// A scenario, the sequential judge's plan for it and that plan's first sequential test
/// (the error gate's).
fn error_test(name: &str) -> Option<(scenarios::BenchScenario, Plan, Test)> {
    let sc = scenarios::all().into_iter().find(|s| s.name == name)?;
    let plan = cutover_core::policy::parse(
        "bench.yaml",
        &Judge::Sequential.policy_yaml(&sc),
        Default::default(),
    )
    .ok()?
    .plan;
    let test = plan.gates.iter().find_map(|g| g.sequential_test())?;
    Some((sc, plan, test))
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// Issue 12's "Done when" lines, one check each (with the numbers), for the sequential judge.
fn issue12(results: &[Summary], beta: Option<f64>, out: &mut Vec<(String, bool)>) {
    let seq = |sc: &str| {
        results
            .iter()
            .find(|s| s.scenario == sc && s.judge == Judge::Sequential)
    };
    // Acceptable primaries: false rollback <= 1 % in every such scenario (healthy-1pct has
    // its own line above).
    // A rise common to both sites once the primary serves 100 %: the default judge probes
    // DR's concurrent traffic before a rollback (`analysis.probe`); `final_holdout` keeps
    // some throughout. Both are checked there.
    let at_100 = |sc: &str| matches!(sc, "common-rise-at-100" | "spikes-aligned-at-100");
    for s in results.iter().filter(|s| {
        s.acceptable
            && s.scenario != "healthy-1pct"
            && (s.judge == Judge::Sequential
                || (at_100(s.scenario) && s.judge == Judge::SequentialHoldout))
    }) {
        let few = if s.runs < RATE_RUNS {
            format!("; fewer than the {RATE_RUNS} runs a rate <= 1% needs")
        } else {
            String::new()
        };
        out.push((
            format!(
                "acceptable {}: {} false rollback {} <= 1% ({} runs{few})",
                s.scenario,
                s.judge,
                pct(s.rolled_back),
                s.runs
            ),
            s.rolled_back <= 0.01,
        ));
    }
    let reached = |s: &Summary| format!("{} of {} runs reached the onset", s.reached_onset, s.runs);
    if let Some(s) = seq("onset-mid-stage") {
        let rb = s.rolled_back_after_onset().unwrap_or(0.0);
        let m = s.median_onset_ttr();
        out.push((
            format!(
                "1% -> 5% mid-stage after 12 min healthy: sequential rolled back {} >= 98%, median {} <= 60s from onset ({}{})",
                pct(rb),
                fmt_d(m),
                reached(s),
                oracle("onset-mid-stage").map_or(String::new(), |o| format!(
                    "; a detector told the rates exactly, not the onset, at the same alpha: median {}",
                    fmt_d(Some(o))
                ))
            ),
            rb >= 0.98 && m.is_some_and(|m| m <= Duration::from_secs(60)),
        ));
    }
    if let Some(s) = seq("step-1-2") {
        let still = s.still_serving.unwrap_or(1.0);
        out.push((
            format!(
                "1% -> 2% at the 10% stage: sequential still serving it 60 min after onset {} <= 10% (held runs count as serving; {})",
                pct(still),
                reached(s)
            ),
            still <= 0.10,
        ));
    }
    if let Some(s) = seq("step-1-5-at-100") {
        let w = s
            .rolled_back_within(Duration::from_secs(120))
            .unwrap_or(0.0);
        // The default judge sees the rise against DR's earlier rate, then confirms it
        // against DR's concurrent traffic at the probe's split; the holdout's 2 % of DR is
        // little to compare with.
        let holdout = results
            .iter()
            .find(|h| h.scenario == s.scenario && h.judge == Judge::SequentialHoldout)
            .map(|h| {
                format!(
                    "; seq+holdout: {} within 2 min, median {}",
                    pct(h
                        .rolled_back_within(Duration::from_secs(120))
                        .unwrap_or(0.0)),
                    fmt_d(h.median_onset_ttr())
                )
            })
            .unwrap_or_default();
        out.push((
            format!(
                "1% -> 5% at the last stage: sequential (a probe, then DR's concurrent traffic) rolled back within 2 min of onset {} >= 95% ({}{holdout})",
                pct(w),
                reached(s)
            ),
            w >= 0.95,
        ));
    }
    if let Some(h) = results
        .iter()
        .find(|h| h.scenario == "step-1-5-at-100" && h.judge == Judge::SequentialHoldout)
    {
        let w = h
            .rolled_back_within(Duration::from_secs(120))
            .unwrap_or(0.0);
        out.push((
            format!(
                "1% -> 5% at the last stage: seq+holdout (probed from its 98%) rolled back within 2 min of onset {} >= 95% ({})",
                pct(w),
                reached(h)
            ),
            w >= 0.95,
        ));
    }
    if let Some(s) = seq("zero-baseline") {
        let rb = s.rolled_back_after_onset().unwrap_or(0.0);
        let m = s.median_onset_ttr();
        out.push((
            format!(
                "0% -> 0.5% vs a 0% DR: sequential{} rolled back {} >= 95%, median {} <= 5m ({}{})",
                error_test("zero-baseline").map_or(String::new(), |(_, _, t)| format!(
                    " (absolute_tolerance {})",
                    pct(t.absolute)
                )),
                pct(rb),
                fmt_d(m),
                reached(s),
                oracle("zero-baseline").map_or(String::new(), |o| format!(
                    "; a test told the onset and the rate exactly, at the same alpha: median {}",
                    fmt_d(Some(o))
                ))
            ),
            rb >= 0.95 && m.is_some_and(|m| m <= Duration::from_secs(300)),
        ));
    }
    // The documented faster option, and its cost where a regression appears only at a
    // higher weight.
    let cumulative = |sc: &str| {
        results
            .iter()
            .find(|s| s.scenario == sc && s.judge == Judge::SequentialCumulative)
    };
    if let Some(s) = cumulative("healthy-1pct") {
        let cost = cumulative("load-dependent")
            .map(|l| {
                format!(
                    "; its cost on load-dependent: rolled back {}, promoted {} (sequential: {})",
                    pct(l.rolled_back),
                    pct(l.promoted),
                    seq("load-dependent")
                        .map(|q| format!("{} / {}", pct(q.rolled_back), pct(q.promoted)))
                        .unwrap_or_else(|| "-".into())
                )
            })
            .unwrap_or_default();
        out.push((
            format!(
                "healthy 1% at 100 rps with certify: cumulative: promoted {} >= 95%, median {} <= 15m{cost}",
                pct(s.promoted),
                fmt_d(s.time_to_promote)
            ),
            s.promoted >= 0.95
                && s.time_to_promote
                    .is_some_and(|m| m <= Duration::from_secs(900)),
        ));
    }
    match (seq("healthy-1pct"), beta) {
        (Some(s), None) => out.push((
            format!(
                "healthy 1% at 100 rps: sequential promoted {} >= 75%",
                pct(s.promoted)
            ),
            s.promoted >= 0.75,
        )),
        // The other faster option: a larger per-stage false-certification budget, and what
        // it lets through.
        (Some(s), Some(b)) => {
            let cost = |sc: &str| {
                seq(sc).map_or(String::new(), |l| {
                    format!(
                        "; {sc}: rolled back {}, promoted {}",
                        pct(l.rolled_back),
                        pct(l.promoted)
                    )
                })
            };
            out.push((
                format!(
                    "healthy 1% at 100 rps with beta {b}: sequential promoted {} >= 95%, median {} <= 15m{}{}",
                    pct(s.promoted),
                    fmt_d(s.time_to_promote),
                    cost("load-dependent"),
                    cost("worse-at-low-traffic")
                ),
                s.promoted >= 0.95
                    && s.time_to_promote
                        .is_some_and(|m| m <= Duration::from_secs(900)),
            ));
        }
        (None, _) => {}
    }
}
