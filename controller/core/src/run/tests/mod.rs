//! Unit tests of every transition of the state machine, driven by a scripted world.

use std::time::{Duration, SystemTime};

use crate::judge::gate::{GateBudget, GateMeasurement, GateSpec};
use crate::judge::preflight::PreflightResult;
use crate::judge::verdict::Limits;
use crate::weights::{StageWeight, Weights};
use crate::{Analysis, Reading, Span};

use super::*;
use crate::policy::{OnDrift, OnInconclusive, OnSignal, Plan, RollbackMode, RollbackSpec, Stage};

mod control;
mod guards;
mod judging;
mod operator;
mod probe;
mod resume;
mod resume_evidence;
mod rollback;
mod sequential;
mod stages;

const T0: u64 = 1_700_000_000;

fn t(s: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(T0 + s)
}

fn plan(weights: &[u8]) -> Plan {
    let gate = |j: serde_json::Value| {
        serde_json::from_value::<GateSpec>(j)
            .unwrap()
            .compile(&GateBudget {
                min_requests: 100,
                alpha_shares: 1.0,
            })
            .unwrap()
    };
    Plan {
        service: "svc".into(),
        stages: weights
            .iter()
            .map(|w| Stage {
                weight: StageWeight::new(u32::from(*w)).expect("a stage weight"),
                bake: Duration::from_secs(60),
                interval: Duration::from_secs(15),
                max_duration: Duration::from_secs(300),
                judged: true,
            })
            .collect(),
        gates: vec![
            gate(serde_json::json!({"name": "errors", "error_rate": {"max": "1%"}})),
            gate(serde_json::json!({"name": "errors-vs-dr", "error_rate": {"max_vs_dr": "50%"}})),
        ],
        limits: Limits {
            failure_limit: 2,
            consecutive_error_limit: 3,
        },
        on_inconclusive: OnInconclusive::Hold,
        watch_held: Duration::ZERO,
        certify: Default::default(),
        probe: None,
        settle_tolerance: 0.05,
        burn_in: Duration::ZERO,
        rollback: RollbackSpec {
            mode: RollbackMode::Immediate,
            step_interval: Span::secs(10),
            retry_interval: Span::secs(1),
            max_attempts: 4,
        },
        on_signal: OnSignal::Hold,
        on_drift: OnDrift::Hold,
        deadline: None,
        readiness: Default::default(),
        approvals: Default::default(),
    }
}

/// What the scripted world answers to one analysis.
#[derive(Clone)]
struct Traffic {
    share: f64,
    requests: Reading,
    primary_errors: Reading,
    dr_errors: Reading,
}

fn healthy(weight: u8) -> Traffic {
    Traffic {
        share: f64::from(weight) / 100.0,
        requests: Reading::Value(1000.0),
        primary_errors: Reading::Value(0.001),
        dr_errors: Reading::Value(0.001),
    }
}

fn analysis(now: SystemTime, tr: &Traffic) -> Analysis {
    let m = |name: &str| GateMeasurement {
        name: name.into(),
        window: Duration::from_secs(15),
        primary_requests: tr.requests.clone(),
        primary: tr.primary_errors.clone(),
        dr: tr.dr_errors.clone(),
        counts: None,
    };
    Analysis {
        at: now,
        window: Duration::from_secs(15),
        primary_rate: Reading::Value(100.0 * tr.share),
        dr_rate: Reading::Value(100.0 * (1.0 - tr.share)),
        gates: vec![m("errors"), m("errors-vs-dr")],
        guards: Vec::new(),
    }
}

/// Drives a run against a scripted world and records every write requested.
struct Harness {
    run: Run,
    now: u64,
    live: Weights,
    writes: Vec<Weights>,
    events: Vec<Event>,
    /// At this time, someone else sets the live weights (or makes them unreadable).
    tamper: Option<(u64, Result<Weights, String>)>,
    /// Why the live weights cannot be read, once tampered so.
    unreadable: Option<String>,
    /// At this time, an operator pulls the brake (seen at the next analysis).
    brake_at: Option<u64>,
    /// A write reported failed still lands (the API erred after applying it).
    failed_writes_land: bool,
    /// At this time, the tampering is undone: the live split is the last write again.
    untamper_at: Option<u64>,
    /// Readiness results at (now, live): preflight's (instead of the one passing `lag`
    /// check) and every analysis's guards (`guards.rs`).
    readiness: Option<Checks>,
    /// Operator commands, each delivered at the end of the first sleep at or after its time.
    commands: Vec<(u64, Command)>,
    /// Whether an approval webhook answers 2xx at this time.
    webhook: Option<fn(u64) -> bool>,
}

/// The readiness checks' results of a scripted world at (now, live).
type Checks = Box<dyn FnMut(u64, Weights) -> Vec<PreflightResult>>;

impl Harness {
    fn new(plan: Plan) -> Harness {
        Harness {
            run: Run::new(plan, "test".into()),
            now: 0,
            live: Weights::ALL_DR,
            writes: Vec::new(),
            events: Vec::new(),
            tamper: None,
            unreadable: None,
            brake_at: None,
            failed_writes_land: false,
            untamper_at: None,
            readiness: None,
            commands: Vec::new(),
            webhook: None,
        }
    }

    /// Runs to the end. `world(now, live)` gives the traffic; `write(attempt_no, w)` says
    /// whether a write works; `signal_at` delivers SIGTERM during the first sleep after it.
    fn go(
        &mut self,
        mut world: impl FnMut(u64, Weights) -> Traffic,
        mut write: impl FnMut(usize, Weights) -> Result<(), String>,
        signal_at: Option<u64>,
        preflight_ok: bool,
    ) -> Outcome {
        let mut obs = Observation::Started {
            now: t(0),
            propagation: Duration::ZERO,
            live: Ok(self.live),
        };
        for _ in 0..10_000 {
            let step = self.run.step(obs);
            self.events.extend(step.events);
            obs = match step.request {
                Request::Finish(o) => return o,
                Request::Preflight if self.readiness.is_some() => Observation::PreflightDone {
                    now: t(self.now),
                    results: self
                        .readiness
                        .as_mut()
                        .map_or_else(Vec::new, |c| c(self.now, self.live)),
                },
                Request::Preflight => Observation::PreflightDone {
                    now: t(self.now),
                    results: vec![PreflightResult {
                        name: "lag".into(),
                        query: "q".into(),
                        ok: preflight_ok,
                        detail: "d".into(),
                        ..PreflightResult::default()
                    }],
                },
                Request::SetWeights(w) => {
                    self.writes.push(w);
                    match write(self.writes.len(), w) {
                        Ok(()) => {
                            self.live = w;
                            Observation::WeightsSet {
                                now: t(self.now),
                                weights: w,
                            }
                        }
                        Err(e) => {
                            if self.failed_writes_land {
                                self.live = w;
                            }
                            Observation::WeightsFailed {
                                now: t(self.now),
                                error: e,
                                retryable: true,
                                live: Some(Ok(self.live)),
                            }
                        }
                    }
                }
                Request::Sleep(d) => {
                    self.now += d.as_secs();
                    if signal_at.is_some_and(|s| self.now >= s)
                        && !self.run.state().phase.is_terminal()
                        && self.run.state().phase != Phase::RollingBack
                    {
                        Observation::Interrupted {
                            now: t(self.now),
                            signal: "SIGTERM".into(),
                        }
                    } else if let Some(k) = self.commands.iter().position(|(at, _)| self.now >= *at)
                    {
                        let (_, command) = self.commands.remove(k);
                        Observation::Command {
                            now: t(self.now),
                            command,
                        }
                    } else {
                        Observation::Slept { now: t(self.now) }
                    }
                }
                Request::AskApproval { stage, .. } => Observation::ApprovalAnswered {
                    now: t(self.now),
                    stage,
                    granted: self.webhook.is_some_and(|f| f(self.now)),
                    detail: "HTTP 200".into(),
                },
                Request::Analyze { .. } if self.brake_at.is_some_and(|b| self.now >= b) => {
                    self.brake_at = None;
                    Observation::Braked {
                        now: t(self.now),
                        by: "op@host".into(),
                    }
                }
                Request::Analyze { .. } => {
                    if self.tamper.is_none() && self.untamper_at.is_some_and(|u| self.now >= u) {
                        self.untamper_at = None;
                        self.unreadable = None;
                        if let Some(w) = self.writes.last() {
                            self.live = *w;
                        }
                    }
                    if let Some((at, what)) = self.tamper.take() {
                        if self.now >= at {
                            match what {
                                Ok(w) => self.live = w,
                                Err(e) => self.unreadable = Some(e),
                            }
                        } else {
                            self.tamper = Some((at, what));
                        }
                    }
                    let tr = world(self.now, self.live);
                    let mut a = analysis(t(self.now), &tr);
                    if let Some(c) = self.readiness.as_mut() {
                        a.guards = c(self.now, self.live);
                    }
                    Observation::Analyzed {
                        now: t(self.now),
                        analysis: a,
                        live: Some(match &self.unreadable {
                            Some(e) => Err(e.clone()),
                            None => Ok(self.live),
                        }),
                    }
                }
            };
        }
        panic!("the run did not end within 10000 steps");
    }

    /// Runs to the end in `world`, with every write working, no signal, preflight passing.
    fn run_in(&mut self, world: impl FnMut(u64, Weights) -> Traffic) -> Outcome {
        self.go(world, ok_writes, None, true)
    }

    /// Runs to the end with a healthy primary at every weight.
    fn run_healthy(&mut self) -> Outcome {
        self.run_in(|_, w| healthy(w.primary()))
    }

    fn primary_writes(&self) -> Vec<u8> {
        self.writes.iter().map(|w| w.primary()).collect()
    }
}

fn ok_writes(_: usize, _: Weights) -> Result<(), String> {
    Ok(())
}

/// A run of `plan` started on all-DR, past preflight (t = 1 s), whose first stage's write
/// of `weight` was confirmed at t = 2 s.
fn written_first_stage(plan: Plan, weight: u8) -> Run {
    let mut run = Run::new(plan, "r".into());
    run.step(Observation::Started {
        now: t(0),
        propagation: Duration::ZERO,
        live: Ok(Weights::ALL_DR),
    });
    run.step(Observation::PreflightDone {
        now: t(1),
        results: vec![],
    });
    run.step(Observation::WeightsSet {
        now: t(2),
        weights: Weights::from_primary(weight).unwrap(),
    });
    run
}

/// Writes that fail with `error` whenever they set the primary to `weight`, and work
/// otherwise.
fn writes_failing_at(
    weight: u8,
    error: &'static str,
) -> impl FnMut(usize, Weights) -> Result<(), String> {
    move |_, w| {
        if w.primary() == weight {
            Err(error.into())
        } else {
            Ok(())
        }
    }
}

/// A world healthy everywhere except at `weight`, where the traffic is `there`.
fn at_weight(weight: u8, there: Traffic) -> impl FnMut(u64, Weights) -> Traffic {
    move |_, w| {
        if w.primary() == weight {
            there.clone()
        } else {
            healthy(w.primary())
        }
    }
}

/// The world of most run tests: healthy everywhere except the primary at `weight`, which
/// fails `error_rate` of its requests.
fn failing_at(weight: u8, error_rate: f64) -> impl FnMut(u64, Weights) -> Traffic {
    move |_, w| {
        if w.primary() == weight {
            Traffic {
                primary_errors: Reading::Value(error_rate),
                ..healthy(weight)
            }
        } else {
            healthy(w.primary())
        }
    }
}
