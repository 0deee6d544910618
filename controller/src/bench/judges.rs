//! The four judges the benchmark compares, each a policy for the same state machine.
//!
//! All four allow the primary 50 % more bad requests than DR, see the same simulated runs
//! (same seeds), analyse every 15 s and run the plan 10/25/50/75/100 %:
//!
//! * **flagger** — Flagger-style: absolute thresholds written from DR's known-healthy values
//!   (error rate <= 1.5x DR's, p99 <= 1.5x DR's) over a 1-minute window, checked every
//!   interval; rollback at the 5th failed check (`threshold: 5`); 5 minutes per stage.
//! * **argo** — Argo Rollouts-style analysis comparing with DR at each measurement
//!   (`primary <= dr * 1.5` for the error rate and p99) over a 1-minute window; the analysis
//!   fails past `failureLimit: 2`, i.e. at the 3rd failed measurement; 5 minutes per stage.
//! * **kayenta** — Kayenta-style fixed horizon: after 5 minutes at a stage, a one-sided
//!   Mann-Whitney U test of the primary's 15-second error rates (and p99s) against DR's;
//!   "High" (rollback) when p < 0.05 and the mean is more than 1.5x DR's.
//! * **sequential** — ours: `vs_dr` sequential gates on error counts and on counts of
//!   requests slower than 250 ms, tolerance 50 %, alpha 0.01 over the run, and for errors
//!   `absolute_tolerance: 0.1%` (a 99.9 % SLO's error budget, accepted whatever DR's rate),
//!   a 1-minute minimum soak, advance on certification; at 100 %, where DR serves nothing, a rise
//!   above DR's earlier rate is probed at 50 % against DR's concurrent traffic for 2 minutes
//!   before any rollback (`analysis.probe`, the default).
//! * **seq+holdout** — the same with `final_holdout: 2%`: the last stage is judged at 98 %
//!   against DR's concurrent 2 %, then 100 % is written unjudged.
//!
//! A scenario's [`StageTiming`](super::scenarios::StageTiming) gives one stage its own bake and
//! `max_duration` in every judge's policy (e.g. a stage that lasts past a mid-stage onset).
//!
//! The state machine counts failed checks per stage, so `flagger` here forgives more than
//! Flagger itself (whose count runs over the whole canary): that favours it, not us.

use std::fmt;

use super::scenarios::BenchScenario;

/// A judge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Judge {
    /// Flagger-style threshold with a failed-check count.
    Flagger,
    /// Argo Rollouts-style relative check with failureLimit.
    Argo,
    /// Kayenta-style fixed-horizon Mann-Whitney.
    Kayenta,
    /// cutover's anytime-valid sequential gates.
    Sequential,
    /// The same, with a 2 % DR holdout while the last stage is judged.
    #[value(name = "seq+holdout")]
    SequentialHoldout,
    /// The same as `sequential`, with `certify: cumulative` (the documented faster option).
    #[value(name = "seq+cumulative")]
    SequentialCumulative,
}

impl fmt::Display for Judge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Judge::Flagger => "flagger",
            Judge::Argo => "argo",
            Judge::Kayenta => "kayenta",
            Judge::Sequential => "sequential",
            Judge::SequentialHoldout => "seq+holdout",
            Judge::SequentialCumulative => "seq+cumulative",
        })
    }
}

/// Every judge, in report order.
pub const ALL: [Judge; 6] = [
    Judge::Flagger,
    Judge::Argo,
    Judge::Kayenta,
    Judge::Sequential,
    Judge::SequentialHoldout,
    Judge::SequentialCumulative,
];

impl Judge {
    /// Whether this is one of cutover's sequential judges.
    pub fn is_sequential(self) -> bool {
        matches!(
            self,
            Judge::Sequential | Judge::SequentialHoldout | Judge::SequentialCumulative
        )
    }
}

impl Judge {
    /// The bake of this judge's stages (unless a scenario's stage timing overrides it).
    pub fn policy_bake(self) -> std::time::Duration {
        std::time::Duration::from_secs(match self {
            Judge::Flagger | Judge::Argo | Judge::Kayenta => 300,
            Judge::Sequential | Judge::SequentialHoldout | Judge::SequentialCumulative => 60,
        })
    }

    /// The policy this judge runs for a scenario, as YAML (validated like any policy).
    pub fn policy_yaml(self, sc: &BenchScenario) -> String {
        let max_err = sc.error_rate * 1.5 * 100.0;
        let max_p99 = sc.dr_p99() * 1.5 * 1000.0;
        let bake = format!("{}s", self.policy_bake().as_secs());
        // The gates calibrate their dispersion on the simulated history before the run.
        let history = sc.warmup.as_secs().clamp(600, 86_400);
        let beta = sc.beta.map(|b| format!(", beta: {b}")).unwrap_or_default();
        let (failure_limit, gates) = match self {
            Judge::Flagger => (
                5,
                format!(
                    "  - name: error-rate\n    window: 1m\n    error_rate: {{ max: {max_err:.4}% }}\n\
                     \x20 - name: p99-latency\n    window: 1m\n    latency: {{ quantile: 0.99, max: {max_p99:.0}ms }}\n"
                ),
            ),
            Judge::Argo => (
                3,
                "  - name: error-rate-vs-dr\n    window: 1m\n    error_rate: { max_vs_dr: 50%, slack: 0% }\n\
                 \x20 - name: p99-vs-dr\n    window: 1m\n    latency: { quantile: 0.99, max_vs_dr: 50%, slack: 0ms }\n"
                    .to_string(),
            ),
            Judge::Kayenta => (
                1,
                format!(
                    "  - name: kayenta-errors\n    query: {}\n    max: 0.5\n\
                     \x20 - name: kayenta-latency\n    query: {}\n    max: 0.5\n",
                    super::kayenta::ERRORS,
                    super::kayenta::LATENCY
                ),
            ),
            Judge::Sequential | Judge::SequentialHoldout | Judge::SequentialCumulative => (
                3,
                format!(
                    "  - name: errors-vs-dr\n    error_rate: {{ vs_dr: {{ tolerance: 50%, alpha: 0.01, absolute_tolerance: 0.1%, history: {history}s{beta} }} }}\n\
                     \x20 - name: slow-vs-dr\n    latency: {{ above: {}ms, vs_dr: {{ tolerance: 50%, alpha: 0.01, history: {history}s{beta} }} }}\n",
                    super::scenarios::SLOW_EDGE * 1000.0
                ),
            ),
        };
        let mut stages = String::new();
        for w in [10u8, 25, 50, 75, 100] {
            stages.push_str(&format!("  - weight: {w}\n"));
            if let Some(t) = sc.stage_timing.filter(|t| t.weight == w) {
                stages.push_str(&format!(
                    "    bake: {}s\n    max_duration: {}s\n",
                    t.bake.as_secs(),
                    t.max_duration.as_secs()
                ));
            }
        }
        let max_duration = super::scenarios::MAX_DURATION.as_secs();
        let holdout = if self == Judge::SequentialHoldout {
            "final_holdout: 2%\n"
        } else {
            ""
        };
        // Ours watch a held stage for an hour (the default); the others' tools do not.
        let analysis_extra = match self {
            Judge::SequentialCumulative => "  certify: cumulative\n",
            j if j.is_sequential() => "",
            _ => "  watch_held: 0s\n",
        };
        format!(
            r#"service: bench
backend:
  file:
    path: /nonexistent/bench-weights.json
prometheus:
  url: http://127.0.0.1:9
sites:
  label: site
  primary: primary
  dr: dr
traffic:
  requests: http_requests_total{{service="bench"}}
  errors: 'status=~"5.."'
  latency: http_request_duration_seconds_bucket{{service="bench"}}
defaults:
  bake: {bake}
  interval: 15s
  max_duration: {max_duration}s
stages:
{stages}{holdout}gates:
{gates}analysis:
  min_requests: 20
  failure_limit: {failure_limit}
  consecutive_error_limit: 3
  on_inconclusive: hold
{analysis_extra}settle:
  tolerance: 5%
  burn_in: 0s
"#
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_judges_policy_is_valid_for_every_scenario() {
        for sc in super::super::scenarios::all() {
            for j in ALL {
                let text = j.policy_yaml(&sc);
                if let Err(e) = cutover_core::policy::parse("bench.yaml", &text, Default::default())
                {
                    panic!("{j} on {}: {e}\n{text}", sc.name);
                }
            }
        }
    }
}
