//! The plan: a valid policy as typed values, the one thing a run, its adapters and its
//! reports use. Made only by [`super::compile`].

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::PromqlBuilder;
use crate::judge::gate::Gate;
use crate::judge::verdict::Limits;
use crate::policy::approval::StageApproval;
use crate::policy::backend::Backend;
use crate::policy::model::{OnDrift, OnInconclusive, OnSignal, Policy, RollbackSpec};
use crate::policy::validate::{self, Problems};
use crate::units::Span;
use crate::weights::StageWeight;

/// One stage with every timing resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stage {
    /// Primary weight in percent, 1 to 100.
    pub weight: StageWeight,
    /// Minimum time at the stage.
    #[serde(with = "crate::serde_secs")]
    pub bake: Duration,
    /// Time between analyses.
    #[serde(with = "crate::serde_secs")]
    pub interval: Duration,
    /// Undecided this long: inconclusive.
    #[serde(with = "crate::serde_secs")]
    pub max_duration: Duration,
    /// Whether the stage is judged. Only the 100 % that ends a `final_holdout` is not: it is
    /// written and read back once the holdout stage before it passed, and the run ends.
    #[serde(default = "judged")]
    pub judged: bool,
}

fn judged() -> bool {
    true
}

/// A probe: where DR serves nothing, evidence against DR's earlier rate first moves the
/// primary to `weight` for `duration`, where harm is judged against DR's concurrent traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbePlan {
    /// The primary weight written (an earlier judged stage's).
    pub weight: StageWeight,
    /// How long the primary is judged there before going back (unless it is rolled back).
    pub duration: Duration,
}

/// Everything the state machine needs, derived from a valid policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The service.
    pub service: String,
    /// The stages in order.
    pub stages: Vec<Stage>,
    /// The gates, compiled once with their budget (`min_requests`, alpha per stage).
    pub gates: Vec<Gate>,
    /// `failure_limit` and `consecutive_error_limit`.
    pub limits: Limits,
    /// `analysis.on_inconclusive`.
    pub on_inconclusive: OnInconclusive,
    /// `analysis.watch_held` (zero unless `on_inconclusive: hold`).
    pub watch_held: Duration,
    /// `analysis.certify`.
    pub certify: crate::policy::model::Certify,
    /// `analysis.probe`: how a rise at a stage where DR serves nothing is checked against
    /// DR's concurrent traffic before any rollback; `None`: it rolls back at once.
    pub probe: Option<ProbePlan>,
    /// `settle.tolerance` as a fraction.
    pub settle_tolerance: f64,
    /// `settle.burn_in`.
    pub burn_in: Duration,
    /// `rollback.*`.
    pub rollback: RollbackSpec,
    /// `on_signal`.
    pub on_signal: OnSignal,
    /// `on_drift`.
    pub on_drift: OnDrift,
    /// The overall deadline.
    pub deadline: Option<Duration>,
    /// Preflight checks and guards.
    pub readiness: crate::readiness::Readiness,
    /// The stages (by index) whose weight is written only once approved.
    pub approvals: BTreeMap<usize, StageApproval>,
}

impl Plan {
    /// Whether stage `i` is a final holdout's: judged, with the unjudged 100 % after it.
    pub fn is_holdout_stage(&self, i: usize) -> bool {
        self.stages.get(i).is_some_and(|s| s.judged)
            && self.stages.get(i + 1).is_some_and(|next| !next.judged)
    }

    /// The first stage's analysis interval (a valid plan has one; 15 s otherwise): the
    /// interval history is read at when a plan is replayed or tuned.
    pub fn first_interval(&self) -> Duration {
        self.stages
            .first()
            .map_or(Duration::from_secs(15), |s| s.interval)
    }

    /// How long a run lasts at best (every stage passes at its first chance: one interval
    /// to settle, then its bake in whole intervals) and at worst (every judged stage runs
    /// to its `max_duration`, plus an interval, and one is held and watched for
    /// `watch_held`, plus one `analysis.probe`), preflight and rollback aside.
    pub fn duration_bounds(&self) -> (Duration, Duration) {
        let mut best = Duration::ZERO;
        let mut worst = Duration::ZERO;
        for st in self.stages.iter().filter(|s| s.judged) {
            let intervals = st
                .bake
                .as_secs()
                .div_ceil(st.interval.as_secs().max(1))
                .max(1) as u32;
            best += st.interval + st.interval * intervals;
            worst += st.max_duration + st.interval;
        }
        // A run holds at most once, and watches the held stage this long; a probe that
        // starts just before the last stage's max_duration runs to its end.
        let probe = self
            .probe
            .map_or(Duration::ZERO, |p| p.duration + self.burn_in);
        (best, worst + self.watch_held + probe)
    }
}

/// A valid policy as typed values.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The routed object, of exactly one kind.
    pub backend: Backend,
    /// The PromQL of this service's traffic at each site.
    pub promql: PromqlBuilder,
    /// What the state machine runs.
    pub plan: Plan,
}

/// The one conversion from a policy model to typed values: every section is checked (in
/// file order, all problems reported) and, when all are sound, compiled exactly once.
pub fn compile(p: &Policy) -> Result<Compiled, Problems> {
    let mut out = Problems::default();
    validate::service(p, &mut out);
    let backend = validate::backend(p, &mut out);
    validate::prometheus(p, &mut out);
    let promql = validate::sites_and_traffic(p, &mut out);
    let stages = validate::stages(p, &mut out);
    let gates = validate::gates(p, &mut out);
    let approvals = super::approval::approvals(p, &mut out);
    let probe = validate::probe(p, stages.as_deref(), &mut out);
    validate::analysis(p, &mut out);
    validate::preflight(p, &mut out);
    validate::settle_and_rollback(p, &mut out);
    validate::deadline_and_notify(p, &mut out);
    let (Some(backend), Some(promql), Some(stages), Some(gates)) = (backend, promql, stages, gates)
    else {
        if out.count() == 0 {
            out.push(
                "",
                "internal error: a section failed without saying why".into(),
            );
        }
        return Err(out);
    };
    if out.count() > 0 {
        return Err(out);
    }
    Ok(Compiled {
        backend,
        promql,
        plan: Plan {
            service: p.service.clone(),
            stages,
            gates,
            limits: Limits {
                failure_limit: p.analysis.failure_limit,
                consecutive_error_limit: p.analysis.consecutive_error_limit,
            },
            on_inconclusive: p.analysis.on_inconclusive,
            watch_held: match p.analysis.on_inconclusive {
                OnInconclusive::Hold => p.analysis.watch_held.0,
                OnInconclusive::Rollback => Duration::ZERO,
            },
            certify: p.analysis.certify,
            probe,
            settle_tolerance: p.settle.tolerance.fraction(),
            burn_in: p.settle.burn_in.get(),
            rollback: p.rollback.clone(),
            on_signal: p.on_signal,
            on_drift: p.on_drift,
            deadline: p.deadline.map(Span::get),
            readiness: crate::readiness::Readiness {
                preflight: p.preflight.clone(),
                guards: p.guards.clone(),
                on_guard_failure: p.on_guard_failure,
                guard_failure_limit: p.guard_failure_limit.get(),
            },
            approvals,
        },
    })
}
