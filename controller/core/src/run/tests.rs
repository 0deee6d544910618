//! Unit tests of every transition of the state machine, driven by a scripted world.

use std::time::{Duration, SystemTime};

use crate::Weights;
use crate::judge::gate::{GateBudget, GateMeasurement, GateSpec};
use crate::judge::preflight::PreflightResult;
use crate::judge::verdict::Limits;
use crate::{Analysis, Reading, Span};

use super::*;
use crate::policy::{OnDrift, OnInconclusive, OnSignal, Plan, RollbackMode, RollbackSpec, Stage};

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
                weight: *w,
                bake: Duration::from_secs(60),
                interval: Duration::from_secs(15),
                max_duration: Duration::from_secs(300),
            })
            .collect(),
        gates: vec![
            gate(serde_json::json!({"name": "errors", "error_rate": {"max": "1%"}})),
            gate(serde_json::json!({"name": "errors-vs-dr", "error_rate": {"max_vs_dr": "50%"}})),
        ],
        min_requests: 100,
        limits: Limits {
            failure_limit: 2,
            consecutive_error_limit: 3,
        },
        on_inconclusive: OnInconclusive::Hold,
        settle_tolerance: 0.05,
        burn_in: Duration::ZERO,
        propagation: Duration::ZERO,
        rollback: RollbackSpec {
            mode: RollbackMode::Immediate,
            step_interval: Span::secs(10),
            retry_interval: Span::secs(1),
            max_attempts: 4,
        },
        on_signal: OnSignal::Hold,
        on_drift: OnDrift::Hold,
        deadline: None,
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
}

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
            live: Ok(self.live),
        };
        for _ in 0..10_000 {
            let step = self.run.step(obs);
            self.events.extend(step.events);
            obs = match step.request {
                Request::Finish(o) => return o,
                Request::Preflight => Observation::PreflightDone {
                    now: t(self.now),
                    results: vec![PreflightResult {
                        name: "lag".into(),
                        query: "q".into(),
                        ok: preflight_ok,
                        detail: "d".into(),
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
                    } else {
                        Observation::Slept { now: t(self.now) }
                    }
                }
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
                    Observation::Analyzed {
                        now: t(self.now),
                        analysis: analysis(t(self.now), &tr),
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

    fn primary_writes(&self) -> Vec<u8> {
        self.writes.iter().map(|w| w.primary).collect()
    }
}

fn ok_writes(_: usize, _: Weights) -> Result<(), String> {
    Ok(())
}

#[test]
fn healthy_run_is_promoted_through_every_stage_and_only_plan_weights() {
    let mut h = Harness::new(plan(&[10, 25, 50, 100]));
    let o = h.go(|_, w| healthy(w.primary), ok_writes, None, true);
    assert_eq!(o.phase, Phase::Promoted, "{o:?}");
    assert_eq!(o.exit_code(), 0);
    assert_eq!(h.primary_writes(), [10, 25, 50, 100]);
    // Each stage baked at least 60 s after its weight was confirmed.
    let hist = &h.run.state().history;
    for pair in hist.windows(2) {
        assert!(pair[1].at.duration_since(pair[0].at).unwrap() >= Duration::from_secs(60));
    }
}

#[test]
fn live_weights_not_all_on_dr_fail_preflight_without_writing() {
    let mut h = Harness::new(plan(&[10, 100]));
    h.live = Weights {
        primary: 30,
        dr: 70,
    };
    let o = h.go(|_, w| healthy(w.primary), ok_writes, None, true);
    assert_eq!(o.phase, Phase::PreflightFailed);
    assert_eq!(o.exit_code(), 3);
    assert!(h.writes.is_empty());
    assert!(o.reason.contains("primary 30%"), "{}", o.reason);
}

#[test]
fn unreadable_backend_fails_preflight() {
    let mut run = Run::new(plan(&[10, 100]), "t".into());
    let s = run.step(Observation::Started {
        now: t(0),
        live: Err("404 virtualservice".into()),
    });
    assert!(matches!(
        s.request,
        Request::Finish(Outcome {
            phase: Phase::PreflightFailed,
            ..
        })
    ));
}

#[test]
fn failed_preflight_changes_nothing() {
    let mut h = Harness::new(plan(&[10, 100]));
    let o = h.go(|_, w| healthy(w.primary), ok_writes, None, false);
    assert_eq!(o.phase, Phase::PreflightFailed);
    assert!(h.writes.is_empty());
}

#[test]
fn nan_empty_and_too_few_requests_never_count_as_a_pass() {
    for (case, tr) in [
        (
            "NaN",
            Traffic {
                primary_errors: Reading::Value(f64::NAN),
                ..healthy(10)
            },
        ),
        (
            "empty",
            Traffic {
                primary_errors: Reading::Empty,
                ..healthy(10)
            },
        ),
        (
            "too few requests",
            Traffic {
                requests: Reading::Value(99.0),
                ..healthy(10)
            },
        ),
        (
            "no request series",
            Traffic {
                requests: Reading::Empty,
                ..healthy(10)
            },
        ),
        (
            "DR silent for a relative gate",
            Traffic {
                dr_errors: Reading::Empty,
                ..healthy(10)
            },
        ),
    ] {
        let mut h = Harness::new(plan(&[10, 100]));
        let o = h.go(|_, _| tr.clone(), ok_writes, None, true);
        assert_eq!(o.phase, Phase::Held, "{case}: {o:?}");
        assert_eq!(o.exit_code(), 5, "{case}");
        assert_eq!(h.primary_writes(), [10], "{case}: never advanced");
        assert!(o.reason.contains("no data"), "{case}: {}", o.reason);
    }
}

#[test]
fn failure_limit_rolls_back_with_one_write_to_dr() {
    let mut h = Harness::new(plan(&[10, 25, 100]));
    let mut n = 0;
    let o = h.go(
        |_, w| {
            n += 1;
            // At 25 %, every other analysis fails: not consecutive, still counted.
            if w.primary == 25 && n % 2 == 0 {
                Traffic {
                    primary_errors: Reading::Value(0.05),
                    ..healthy(25)
                }
            } else {
                healthy(w.primary)
            }
        },
        ok_writes,
        None,
        true,
    );
    assert_eq!(o.phase, Phase::RolledBack, "{o:?}");
    assert_eq!(o.exit_code(), 1);
    assert_eq!(h.primary_writes(), [10, 25, 0]);
    assert!(o.reason.contains("failure_limit"), "{}", o.reason);
}

#[test]
fn a_breach_while_settling_is_not_hidden() {
    let mut h = Harness::new(plan(&[10, 100]));
    // The share never converges, but the primary fails hard meanwhile.
    let o = h.go(
        |_, _| Traffic {
            share: 0.5,
            primary_errors: Reading::Value(0.2),
            ..healthy(10)
        },
        ok_writes,
        None,
        true,
    );
    assert_eq!(o.phase, Phase::RolledBack, "{o:?}");
    assert_eq!(h.primary_writes(), [10, 0]);
}

#[test]
fn consecutive_query_errors_roll_back_fail_safe() {
    let mut h = Harness::new(plan(&[10, 100]));
    let o = h.go(
        |now, w| {
            if now > 40 {
                Traffic {
                    primary_errors: Reading::Error("connection refused".into()),
                    ..healthy(w.primary)
                }
            } else {
                healthy(w.primary)
            }
        },
        ok_writes,
        None,
        true,
    );
    assert_eq!(o.phase, Phase::RolledBack, "{o:?}");
    assert!(o.reason.contains("consecutive_error_limit"), "{}", o.reason);
    assert_eq!(h.primary_writes(), [10, 0]);
}

#[test]
fn global_incident_freezes_instead_of_rolling_back() {
    let mut h = Harness::new(plan(&[10, 25, 100]));
    let o = h.go(
        |_, w| {
            if w.primary == 25 {
                Traffic {
                    primary_errors: Reading::Value(0.05),
                    dr_errors: Reading::Value(0.05),
                    ..healthy(25)
                }
            } else {
                healthy(w.primary)
            }
        },
        ok_writes,
        None,
        true,
    );
    assert_eq!(o.phase, Phase::Held, "{o:?}");
    assert_eq!(o.exit_code(), 5);
    assert_eq!(h.primary_writes(), [10, 25], "no rollback write");
    assert!(o.reason.contains("global incident"), "{}", o.reason);
}

#[test]
fn inconclusive_holds_by_default_and_rolls_back_when_asked() {
    let nodata = |_: u64, _: Weights| Traffic {
        requests: Reading::Value(5.0),
        ..healthy(10)
    };
    let mut h = Harness::new(plan(&[10, 100]));
    let o = h.go(nodata, ok_writes, None, true);
    assert_eq!(o.phase, Phase::Held);
    assert!(o.reason.contains("max_duration"), "{}", o.reason);
    let mut p = plan(&[10, 100]);
    p.on_inconclusive = OnInconclusive::Rollback;
    let mut h = Harness::new(p);
    let o = h.go(nodata, ok_writes, None, true);
    assert_eq!(o.phase, Phase::RolledBack);
    assert_eq!(h.primary_writes(), [10, 0]);
}

#[test]
fn a_share_that_never_converges_is_an_alarm_not_a_pass() {
    let mut h = Harness::new(plan(&[10, 100]));
    let o = h.go(
        |_, _| Traffic {
            share: 0.0,
            ..healthy(10)
        },
        ok_writes,
        None,
        true,
    );
    assert_eq!(o.phase, Phase::Held, "{o:?}");
    assert!(o.reason.contains("never settled"), "{}", o.reason);
    assert_eq!(h.primary_writes(), [10]);
}

#[test]
fn stepped_rollback_walks_down_the_plan_then_to_zero() {
    let mut p = plan(&[10, 25, 50, 100]);
    p.rollback.mode = RollbackMode::Stepped;
    let mut h = Harness::new(p);
    let o = h.go(
        |_, w| {
            if w.primary == 50 {
                Traffic {
                    primary_errors: Reading::Value(0.5),
                    ..healthy(50)
                }
            } else {
                healthy(w.primary)
            }
        },
        ok_writes,
        None,
        true,
    );
    assert_eq!(o.phase, Phase::RolledBack, "{o:?}");
    assert_eq!(h.primary_writes(), [10, 25, 50, 25, 10, 0]);
}

#[test]
fn rollback_writes_are_retried_then_page_with_exit_10() {
    let mut h = Harness::new(plan(&[10, 100]));
    let o = h.go(
        |_, _| Traffic {
            primary_errors: Reading::Value(0.5),
            ..healthy(10)
        },
        |_, w| {
            if w.primary == 0 {
                Err("API down".into())
            } else {
                Ok(())
            }
        },
        None,
        true,
    );
    assert_eq!(o.phase, Phase::RollbackFailed, "{o:?}");
    assert_eq!(o.exit_code(), 10);
    assert!(
        o.reason.contains("the live weights read primary 10%"),
        "says what is live: {}",
        o.reason
    );
    assert_eq!(h.primary_writes(), [10, 0, 0, 0, 0], "max_attempts 4");
}

#[test]
fn a_rollback_write_that_fails_once_is_retried_until_it_sticks() {
    let mut h = Harness::new(plan(&[10, 100]));
    let mut failed = false;
    let o = h.go(
        |_, _| Traffic {
            primary_errors: Reading::Value(0.5),
            ..healthy(10)
        },
        |_, w| {
            if w.primary == 0 && !failed {
                failed = true;
                Err("409 conflict".into())
            } else {
                Ok(())
            }
        },
        None,
        true,
    );
    assert_eq!(o.phase, Phase::RolledBack);
    assert_eq!(h.primary_writes(), [10, 0, 0]);
}

#[test]
fn forward_write_failures_are_retried_then_rolled_back() {
    let mut h = Harness::new(plan(&[10, 25, 100]));
    let o = h.go(
        |_, w| healthy(w.primary),
        |_, w| {
            if w.primary == 25 {
                Err("503".into())
            } else {
                Ok(())
            }
        },
        None,
        true,
    );
    assert_eq!(o.phase, Phase::RolledBack, "{o:?}");
    assert_eq!(h.primary_writes(), [10, 25, 25, 25, 0]);
}

#[test]
fn signal_holds_by_default_and_rolls_back_when_asked() {
    let mut h = Harness::new(plan(&[10, 25, 100]));
    let o = h.go(|_, w| healthy(w.primary), ok_writes, Some(100), true);
    assert_eq!(o.phase, Phase::Aborted, "{o:?}");
    assert_eq!(o.exit_code(), 4);
    assert_eq!(h.primary_writes(), [10, 25], "held at a planned weight");
    let mut p = plan(&[10, 25, 100]);
    p.on_signal = OnSignal::Rollback;
    let mut h = Harness::new(p);
    let o = h.go(|_, w| healthy(w.primary), ok_writes, Some(100), true);
    assert_eq!(o.phase, Phase::Aborted);
    assert_eq!(*h.primary_writes().last().unwrap(), 0);
}

#[test]
fn relative_gates_at_100_percent_compare_with_the_last_dr_value() {
    let mut h = Harness::new(plan(&[50, 100]));
    let o = h.go(
        |_, w| {
            if w.primary == 100 {
                // DR serves nothing now; the primary's 0.5 % is far above DR's last 0.1 %.
                Traffic {
                    primary_errors: Reading::Value(0.005),
                    dr_errors: Reading::Empty,
                    ..healthy(100)
                }
            } else {
                healthy(w.primary)
            }
        },
        ok_writes,
        None,
        true,
    );
    assert_eq!(o.phase, Phase::RolledBack, "{o:?}");
    assert!(o.reason.contains("DR's last value"), "{}", o.reason);
}

#[test]
fn a_read_back_that_differs_is_a_failed_write() {
    let mut run = Run::new(plan(&[10, 100]), "t".into());
    run.step(Observation::Started {
        now: t(0),
        live: Ok(Weights::ALL_DR),
    });
    let s = run.step(Observation::PreflightDone {
        now: t(0),
        results: vec![],
    });
    assert_eq!(
        s.request,
        Request::SetWeights(Weights {
            primary: 10,
            dr: 90
        })
    );
    let s = run.step(Observation::WeightsSet {
        now: t(1),
        weights: Weights {
            primary: 20,
            dr: 80,
        },
    });
    assert!(matches!(s.request, Request::Sleep(_)), "{s:?}");
    assert_eq!(run.state().pending.as_ref().unwrap().attempts, 1);
    let s = run.step(Observation::Slept { now: t(2) });
    assert_eq!(
        s.request,
        Request::SetWeights(Weights {
            primary: 10,
            dr: 90
        })
    );
}

#[test]
fn a_terminal_run_stays_terminal() {
    let mut run = Run::new(plan(&[10, 100]), "t".into());
    run.step(Observation::Started {
        now: t(0),
        live: Ok(Weights { primary: 5, dr: 95 }),
    });
    let s = run.step(Observation::Slept { now: t(1) });
    assert!(matches!(
        s.request,
        Request::Finish(Outcome {
            phase: Phase::PreflightFailed,
            ..
        })
    ));
}

#[test]
fn settling_waits_for_the_dns_ttl_before_judging() {
    let mut p = plan(&[10, 100]);
    p.propagation = Duration::from_secs(60);
    let mut run = Run::new(p, "t".into());
    run.step(Observation::Started {
        now: t(0),
        live: Ok(Weights::ALL_DR),
    });
    run.step(Observation::PreflightDone {
        now: t(0),
        results: vec![],
    });
    let s = run.step(Observation::WeightsSet {
        now: t(1),
        weights: Weights {
            primary: 10,
            dr: 90,
        },
    });
    assert_eq!(
        s.request,
        Request::Sleep(Duration::from_secs(60)),
        "TTL 60 s, interval 15 s"
    );
}

/// A run driven to the point where `at` stages are confirmed, then "killed": its state.
fn killed_after(
    plan_weights: &[u8],
    confirmed: usize,
    pending_landed: Option<bool>,
) -> (RunState, Weights) {
    let mut run = Run::new(plan(plan_weights), "r1".into());
    run.step(Observation::Started {
        now: t(0),
        live: Ok(Weights::ALL_DR),
    });
    let mut s = run.step(Observation::PreflightDone {
        now: t(0),
        results: vec![],
    });
    let mut live = Weights::ALL_DR;
    for i in 0..confirmed {
        let Request::SetWeights(w) = s.request else {
            panic!("{s:?}")
        };
        run.step(Observation::WeightsSet {
            now: t(i as u64 * 100),
            weights: w,
        });
        live = w;
        // Pass the stage: settle, then judge after bake.
        let now = t(i as u64 * 100 + 70);
        run.step(Observation::Analyzed {
            now,
            analysis: analysis(now, &healthy(w.primary)),
            live: Some(Ok(w)),
        });
        s = run.step(Observation::Analyzed {
            now,
            analysis: analysis(now, &healthy(w.primary)),
            live: Some(Ok(w)),
        });
    }
    if let (Some(landed), Request::SetWeights(w)) = (pending_landed, &s.request)
        && landed
    {
        live = *w;
    }
    (run.state().clone(), live)
}

#[test]
fn a_restarted_run_resumes_its_stage_and_rebakes_it() {
    let (state, live) = killed_after(&[10, 25, 50, 100], 2, None);
    assert_eq!(live.primary, 25);
    let mut run = Run::resume(plan(&[10, 25, 50, 100]), state);
    let s = run.step(Observation::Started {
        now: t(1000),
        live: Ok(live),
    });
    assert!(matches!(s.request, Request::Sleep(_)), "{s:?}");
    assert_eq!(run.state().stage, Some(1));
    assert_eq!(run.state().phase, Phase::Settling);
    assert_eq!(
        run.state().stage_started,
        Some(t(1000)),
        "re-baked from the start"
    );
    assert_eq!(run.state().restarts, 1);
    assert_eq!(
        run.state().run_id,
        "r1",
        "the same run, its history continued"
    );
}

#[test]
fn a_write_whose_intent_was_recorded_is_reconciled_either_way() {
    // Killed after asking for 50 %: the write landed.
    let (state, live) = killed_after(&[10, 25, 50, 100], 2, Some(true));
    assert_eq!(live.primary, 50);
    let mut run = Run::resume(plan(&[10, 25, 50, 100]), state);
    run.step(Observation::Started {
        now: t(1000),
        live: Ok(live),
    });
    assert_eq!(run.state().stage, Some(2));
    assert_eq!(
        run.state().history.last().unwrap().weights.primary,
        50,
        "history continuous"
    );
    // ... or it did not: resume the last confirmed stage.
    let (state, live) = killed_after(&[10, 25, 50, 100], 2, Some(false));
    assert_eq!(live.primary, 25);
    let mut run = Run::resume(plan(&[10, 25, 50, 100]), state);
    run.step(Observation::Started {
        now: t(1000),
        live: Ok(live),
    });
    assert_eq!(run.state().stage, Some(1));
}

#[test]
fn a_live_weight_not_in_the_plan_is_rolled_back_with_the_reason() {
    let (state, _) = killed_after(&[10, 25, 50, 100], 2, None);
    let mut run = Run::resume(plan(&[10, 25, 50, 100]), state);
    let s = run.step(Observation::Started {
        now: t(1000),
        live: Ok(Weights {
            primary: 33,
            dr: 67,
        }),
    });
    assert_eq!(s.request, Request::SetWeights(Weights::ALL_DR));
    assert!(
        s.events.iter().any(|e| matches!(&e.kind, EventKind::RollbackStarted { reason, .. } if reason.contains("33%"))),
        "{:?}",
        s.events
    );
}

#[test]
fn a_live_weight_ahead_of_the_record_is_rolled_back_never_adopted() {
    let (state, _) = killed_after(&[10, 25, 50, 100], 1, None);
    let mut run = Run::resume(plan(&[10, 25, 50, 100]), state);
    let s = run.step(Observation::Started {
        now: t(1000),
        live: Ok(Weights {
            primary: 50,
            dr: 50,
        }),
    });
    assert_eq!(s.request, Request::SetWeights(Weights::ALL_DR));
}

#[test]
fn a_rollback_interrupted_by_a_kill_is_finished_on_restart() {
    let (mut state, _) = killed_after(&[10, 25, 100], 2, None);
    state.phase = Phase::RollingBack;
    state.rollback = Some(RollbackProgress {
        cause: RollbackCause::Breach,
        reason: "breach".into(),
        remaining: vec![0],
    });
    state.pending = Some(PendingWrite {
        weights: Weights::ALL_DR,
        stage: None,
        attempts: 0,
    });
    let mut run = Run::resume(plan(&[10, 25, 100]), state.clone());
    let s = run.step(Observation::Started {
        now: t(1000),
        live: Ok(Weights {
            primary: 25,
            dr: 75,
        }),
    });
    assert_eq!(
        s.request,
        Request::SetWeights(Weights::ALL_DR),
        "the rollback goes on"
    );
    let mut run = Run::resume(plan(&[10, 25, 100]), state);
    let s = run.step(Observation::Started {
        now: t(1000),
        live: Ok(Weights::ALL_DR),
    });
    assert!(
        matches!(
            s.request,
            Request::Finish(Outcome {
                phase: Phase::RolledBack,
                ..
            })
        ),
        "{s:?}"
    );
}

#[test]
fn all_on_dr_while_the_record_says_a_stage_is_not_resumed() {
    let (state, _) = killed_after(&[10, 25, 100], 2, None);
    let mut run = Run::resume(plan(&[10, 25, 100]), state);
    let s = run.step(Observation::Started {
        now: t(1000),
        live: Ok(Weights::ALL_DR),
    });
    let Request::Finish(o) = s.request else {
        panic!("{s:?}")
    };
    assert_eq!(o.phase, Phase::PreflightFailed);
    assert!(o.reason.contains("--fresh"), "{}", o.reason);
}

#[test]
fn the_deadline_rolls_back() {
    let mut p = plan(&[10, 25, 100]);
    p.deadline = Some(Duration::from_secs(90));
    let mut h = Harness::new(p);
    let o = h.go(
        |_, w| Traffic {
            requests: Reading::Value(10.0),
            ..healthy(w.primary)
        },
        ok_writes,
        None,
        true,
    );
    assert_eq!(o.phase, Phase::RolledBack, "{o:?}");
    assert!(o.reason.contains("deadline"), "{}", o.reason);
    assert_eq!(h.primary_writes(), [10, 0]);
}

/// A plan with one sequential error gate (alpha 0.01 over 3 stages).
fn sequential_plan() -> Plan {
    let mut p = plan(&[10, 50, 100]);
    let g = serde_json::from_value::<GateSpec>(serde_json::json!({
        "name": "seq", "error_rate": {"vs_dr": {"tolerance": "50%", "alpha": 0.01}}
    }))
    .unwrap()
    .compile(&GateBudget::new(p.min_requests, 3, 1))
    .unwrap();
    p.gates = vec![g];
    p
}

/// Drives a sequential plan: each analysis counts `rps * (now - since)` requests per site at
/// the live split, the primary failing at `primary_rate(weight)` and DR at 1 %. `fail_count`
/// makes the n-th count fail. Returns the outcome, every (since, now) asked for, and the
/// evidence at the start of each stage.
fn drive_sequential(
    primary_rate: impl Fn(u8) -> f64,
    fail_count: Option<usize>,
) -> (Outcome, Vec<(SystemTime, SystemTime)>, Vec<u32>, RunState) {
    use crate::judge::gate::IntervalCounts;
    use crate::metrics::source::{CountReading, Counts};
    let mut run = Run::new(sequential_plan(), "seq".into());
    let mut now = 0u64;
    let mut live = Weights::ALL_DR;
    let mut asked = Vec::new();
    let mut at_stage_start = Vec::new();
    let mut obs = Observation::Started {
        now: t(0),
        live: Ok(live),
    };
    for _ in 0..10_000 {
        let step = run.step(obs);
        obs = match step.request {
            Request::Finish(o) => return (o, asked, at_stage_start, run.state().clone()),
            Request::Preflight => Observation::PreflightDone {
                now: t(now),
                results: vec![],
            },
            Request::SetWeights(w) => {
                live = w;
                let o = Observation::WeightsSet {
                    now: t(now),
                    weights: w,
                };
                at_stage_start.push(u32::MAX);
                o
            }
            Request::Sleep(d) => {
                if at_stage_start.last() == Some(&u32::MAX) {
                    let n = run.state().evidence.get("seq").map_or(0, |e| e.intervals);
                    *at_stage_start.last_mut().unwrap() = n;
                }
                now += d.as_secs();
                Observation::Slept { now: t(now) }
            }
            Request::Analyze { since, .. } => {
                let from = since["seq"];
                asked.push((from, t(now)));
                let secs = t(now).duration_since(from).unwrap().as_secs_f64();
                let share = f64::from(live.primary) / 100.0;
                let n = 1000.0 * secs;
                let counts = |total: f64, rate: f64| {
                    CountReading::Counted(Counts {
                        total,
                        bad: (total * rate).round(),
                        resets: 0,
                    })
                };
                let failing = fail_count == Some(asked.len());
                let c = IntervalCounts {
                    from,
                    primary: if failing {
                        CountReading::Error("prometheus down".into())
                    } else {
                        counts(n * share, primary_rate(live.primary))
                    },
                    dr: counts(n * (1.0 - share), 0.01),
                };
                Observation::Analyzed {
                    now: t(now),
                    analysis: Analysis {
                        at: t(now),
                        window: Duration::from_secs(15),
                        primary_rate: Reading::Value(1000.0 * share),
                        dr_rate: Reading::Value(1000.0 * (1.0 - share)),
                        gates: vec![GateMeasurement {
                            name: "seq".into(),
                            window: Duration::from_secs(15),
                            primary_requests: Reading::Value(n * share),
                            primary: Reading::Empty,
                            dr: Reading::Empty,
                            counts: Some(c),
                        }],
                    },
                    live: Some(Ok(live)),
                }
            }
        };
    }
    panic!("no end");
}

#[test]
fn sequential_evidence_resets_at_every_weight_change_and_intervals_partition_time() {
    let (o, asked, at_start, state) = drive_sequential(|_| 0.01, None);
    assert_eq!(o.phase, Phase::Promoted, "{o:?}");
    // Every stage's e-process starts from nothing.
    assert_eq!(at_start, vec![0, 0, 0], "{at_start:?}");
    // Each analysis counts from where the last one stopped; a stage counts from its start.
    for w in asked.windows(2) {
        let ((_, prev_to), (from, _)) = (w[0], w[1]);
        assert_eq!(from, prev_to, "{asked:?}");
    }
    let starts: Vec<SystemTime> = state.history.iter().map(|h| h.at).collect();
    for s in &starts {
        assert!(
            asked.iter().any(|(f, _)| f == s),
            "stage start {s:?} counted from"
        );
    }
}

#[test]
fn a_failed_count_is_not_lost_but_counted_with_the_next_analysis() {
    let (_, asked, _, _) = drive_sequential(|_| 0.01, Some(2));
    // The 2nd count failed: the 3rd starts where the 2nd did.
    assert_eq!(asked[2].0, asked[1].0, "{asked:?}");
}

#[test]
fn sequential_harm_rolls_back_at_once() {
    let (o, _, _, state) = drive_sequential(|w| if w >= 50 { 0.05 } else { 0.01 }, None);
    assert_eq!(o.phase, Phase::RolledBack, "{o:?}");
    assert!(o.reason.contains("evidence of harm"), "{}", o.reason);
    let weights: Vec<u8> = state.history.iter().map(|h| h.weights.primary).collect();
    assert_eq!(weights, vec![10, 50, 0]);
    assert_eq!(state.counters.failures, 1, "no failure_limit to wait for");
}

fn drift_events(h: &Harness) -> Vec<String> {
    h.events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Drift { found, action, .. } => Some(format!("{found}; {action}")),
            _ => None,
        })
        .collect()
}

#[test]
fn drift_holds_by_default_nothing_advances_and_harm_still_rolls_back() {
    // Someone sets the primary to 33 % while the run judges stage 1 at 10 %.
    let mut h = Harness::new(plan(&[10, 50, 100]));
    h.tamper = Some((30, Ok(Weights::primary(33).unwrap())));
    let o = h.go(|_, w| healthy(w.primary), ok_writes, None, true);
    assert_eq!(o.phase, Phase::Held, "{o:?}");
    assert_eq!(h.primary_writes(), [10], "nothing advances past a drift");
    let d = drift_events(&h);
    assert_eq!(d.len(), 1, "told once, not at every analysis: {d:?}");
    assert!(
        d[0].contains("primary 33%") && d[0].contains("hold"),
        "{d:?}"
    );
    let first_drift = h
        .events
        .iter()
        .find(|e| matches!(e.kind, EventKind::Drift { .. }))
        .unwrap();
    assert!(
        first_drift.at <= t(30 + 15),
        "reported within one analysis interval"
    );
    // Harm during the drift still rolls back.
    let mut h = Harness::new(plan(&[10, 50, 100]));
    h.tamper = Some((30, Ok(Weights::primary(33).unwrap())));
    let o = h.go(
        |now, w| Traffic {
            primary_errors: Reading::Value(if now >= 60 { 0.2 } else { 0.001 }),
            ..healthy(w.primary)
        },
        ok_writes,
        None,
        true,
    );
    assert_eq!(o.phase, Phase::RolledBack, "{o:?}");
    assert_eq!(h.primary_writes(), [10, 0]);
}

#[test]
fn drift_reasserts_or_rolls_back_when_the_policy_says_so() {
    let mut p = plan(&[10, 50, 100]);
    p.on_drift = OnDrift::Reassert;
    let mut h = Harness::new(p);
    h.tamper = Some((30, Ok(Weights::primary(33).unwrap())));
    let o = h.go(|_, w| healthy(w.primary), ok_writes, None, true);
    assert_eq!(o.phase, Phase::Promoted, "{o:?}");
    assert_eq!(
        h.primary_writes(),
        [10, 10, 50, 100],
        "the stage is written again"
    );

    let mut p = plan(&[10, 50, 100]);
    p.on_drift = OnDrift::Rollback;
    let mut h = Harness::new(p);
    h.tamper = Some((30, Ok(Weights::primary(33).unwrap())));
    let o = h.go(|_, w| healthy(w.primary), ok_writes, None, true);
    assert_eq!(o.phase, Phase::RolledBack, "{o:?}");
    assert_eq!(h.primary_writes(), [10, 0]);
    assert!(o.reason.contains("primary 33%"), "{}", o.reason);
}

#[test]
fn an_unreadable_backend_is_reported_at_once_and_never_a_pass() {
    let mut h = Harness::new(plan(&[10, 50, 100]));
    h.tamper = Some((30, Err("weights.json: expected value at line 1".into())));
    let o = h.go(|_, w| healthy(w.primary), ok_writes, None, true);
    assert_eq!(o.phase, Phase::Held, "{o:?}");
    assert_eq!(h.primary_writes(), [10]);
    let d = drift_events(&h);
    assert!(
        d.len() == 1 && d[0].contains("cannot be read") && d[0].contains("line 1"),
        "{d:?}"
    );
    assert!(o.reason.contains("drift"), "{}", o.reason);
}

#[test]
fn a_share_outside_the_tolerance_while_judging_is_never_a_pass() {
    // The backend reads 10 %, but a third of the requests reach the primary.
    let mut h = Harness::new(plan(&[10, 50, 100]));
    let o = h.go(
        |now, w| {
            if now >= 30 {
                healthy(34)
            } else {
                healthy(w.primary)
            }
        },
        ok_writes,
        None,
        true,
    );
    assert_eq!(o.phase, Phase::Held, "{o:?}");
    assert_eq!(h.primary_writes(), [10]);
    assert!(
        o.reason.contains("observed primary share 34.0%"),
        "{}",
        o.reason
    );
}

#[test]
fn an_operator_brake_rolls_back_at_once_never_stepped_and_ends_the_run() {
    let mut p = plan(&[10, 50, 100]);
    p.rollback.mode = RollbackMode::Stepped;
    let mut h = Harness::new(p);
    h.brake_at = Some(100);
    let o = h.go(|_, w| healthy(w.primary), ok_writes, None, true);
    assert_eq!(o.phase, Phase::Aborted, "{o:?}");
    assert_eq!(o.exit_code(), 4);
    let w = h.primary_writes();
    assert_eq!(w[..2], [10, 50], "{w:?}");
    assert_eq!(w.last(), Some(&0), "{w:?}");
    assert!(
        w.windows(2).all(|p| p[1] > p[0] || p[1] == 0),
        "one write to 0 %, never stepped: {w:?}"
    );
    assert!(
        o.reason.contains("operator rollback by op@host"),
        "{}",
        o.reason
    );
    assert!(
        !Run::resumable(h.run.state()),
        "a restart never resumes a braked run"
    );
}

#[test]
fn a_lost_lock_ends_the_run_without_another_write() {
    let mut h = Harness::new(plan(&[10, 50, 100]));
    let mut obs = Observation::Started {
        now: t(0),
        live: Ok(Weights::ALL_DR),
    };
    let mut writes = 0;
    for _ in 0..50 {
        let step = h.run.step(obs);
        obs = match step.request {
            Request::Finish(o) => {
                assert_eq!(o.phase, Phase::Aborted);
                assert!(o.reason.contains("run other"), "{}", o.reason);
                assert_eq!(writes, 1);
                return;
            }
            Request::Preflight => Observation::PreflightDone {
                now: t(1),
                results: vec![],
            },
            Request::SetWeights(w) => {
                writes += 1;
                Observation::WeightsSet {
                    now: t(2),
                    weights: w,
                }
            }
            _ => Observation::LockLost {
                now: t(20),
                detail: "the lock is now held by run other".into(),
            },
        };
    }
    panic!("did not end");
}

#[test]
fn an_operator_rollback_marks_a_stopped_run_so_no_restart_resumes_it() {
    let mut state = Run::new(plan(&[10, 100]), "r".into()).state().clone();
    state.phase = Phase::Judging;
    state.stage = Some(0);
    assert!(Run::resumable(&state));
    Run::mark_operator_rollback(&mut state, "op@host", t(5));
    assert!(!Run::resumable(&state));
    assert_eq!(state.outcome.as_ref().unwrap().exit_code(), 4);
    assert_eq!(state.weights, Some(Weights::ALL_DR));
}

#[test]
fn a_brake_during_a_stepped_rollback_goes_to_zero_at_once() {
    let mut p = plan(&[10, 50, 100]);
    p.rollback.mode = RollbackMode::Stepped;
    let mut run = Run::new(p, "r".into());
    run.step(Observation::Started {
        now: t(0),
        live: Ok(Weights::ALL_DR),
    });
    run.step(Observation::PreflightDone {
        now: t(1),
        results: vec![],
    });
    let mut s = run.step(Observation::WeightsSet {
        now: t(2),
        weights: Weights::primary(10).unwrap(),
    });
    // Force a stepped rollback from 100 % by hand: state as if at the last stage.
    run.state.weights = Some(Weights::primary(100).unwrap());
    run.state.last_live = run.state.weights;
    let mut ev = Vec::new();
    let r = run.begin_rollback(RollbackCause::Breach, "breach".into(), t(3), &mut ev);
    assert_eq!(r, Request::SetWeights(Weights::primary(50).unwrap()));
    s.request = run
        .step(Observation::Braked {
            now: t(4),
            by: "op@host".into(),
        })
        .request;
    assert_eq!(
        s.request,
        Request::SetWeights(Weights::ALL_DR),
        "no step above 0 %"
    );
    let end = run.step(Observation::WeightsSet {
        now: t(5),
        weights: Weights::ALL_DR,
    });
    let Request::Finish(o) = end.request else {
        panic!("{:?}", end.request)
    };
    assert_eq!(o.exit_code(), 4);
    assert!(
        o.reason
            .contains("operator rollback by op@host, during a rollback (breach)"),
        "{}",
        o.reason
    );
}

#[test]
fn a_failed_rollback_write_with_dr_already_live_is_no_page() {
    // The write is reported failed (a stale temporary file, a flaky API), but the split read
    // afterwards is all on DR: the rollback is done, not "page now".
    let mut h = Harness::new(plan(&[10, 100]));
    h.failed_writes_land = true;
    let o = h.go(
        |_, _| Traffic {
            primary_errors: Reading::Value(0.5),
            ..healthy(10)
        },
        |_, w| {
            if w.primary == 0 {
                Err("permission denied: weights.json.tmp".into())
            } else {
                Ok(())
            }
        },
        None,
        true,
    );
    assert_eq!(o.phase, Phase::RolledBack, "{o:?}");
    assert_eq!(o.exit_code(), 1);
    assert_eq!(h.primary_writes(), [10, 0], "no further attempts");
}

#[test]
fn settling_with_prometheus_down_says_so_not_no_traffic() {
    let mut run = Run::new(plan(&[10, 100]), "r".into());
    run.step(Observation::Started {
        now: t(0),
        live: Ok(Weights::ALL_DR),
    });
    run.step(Observation::PreflightDone {
        now: t(1),
        results: vec![],
    });
    run.step(Observation::WeightsSet {
        now: t(2),
        weights: Weights::primary(10).unwrap(),
    });
    let mut a = analysis(t(17), &healthy(10));
    a.primary_rate = Reading::Error("cannot reach prometheus: connection refused".into());
    a.dr_rate = a.primary_rate.clone();
    let s = run.step(Observation::Analyzed {
        now: t(17),
        analysis: a,
        live: Some(Ok(Weights::primary(10).unwrap())),
    });
    let decision = s
        .events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::Analyzed { decision, .. } => Some(decision.clone()),
            _ => None,
        })
        .unwrap();
    assert!(
        decision.contains("the traffic split cannot be measured: cannot reach prometheus"),
        "{decision}"
    );
    assert!(!decision.contains("no traffic observed"), "{decision}");
}

#[test]
fn a_failed_read_holds_and_on_drift_acts_only_after_the_error_limit() {
    let mut p = plan(&[10, 50, 100]);
    p.on_drift = OnDrift::Rollback;
    let mut h = Harness::new(p);
    h.tamper = Some((30, Err("HTTP 503".into())));
    let o = h.go(|_, w| healthy(w.primary), ok_writes, None, true);
    assert_eq!(o.phase, Phase::RolledBack, "{o:?}");
    assert_eq!(h.primary_writes(), [10, 0]);
    let d = drift_events(&h);
    assert_eq!(d.len(), 1, "one event per kind of drift: {d:?}");
    assert!(d[0].contains("hold for now: read 1/3"), "{d:?}");
    let analyses_before_rollback = h
        .events
        .iter()
        .take_while(|e| !matches!(e.kind, EventKind::RollbackStarted { .. }))
        .filter(|e| matches!(e.kind, EventKind::Analyzed { .. }) && e.at >= t(30))
        .count();
    assert_eq!(analyses_before_rollback, 3, "consecutive_error_limit reads");
}

#[test]
fn a_drift_that_clears_rebakes_the_stage_but_max_duration_counts_from_its_start() {
    let mut h = Harness::new(plan(&[10, 50, 100]));
    h.tamper = Some((30, Ok(Weights::primary(33).unwrap())));
    h.untamper_at = Some(60);
    let o = h.go(|_, w| healthy(w.primary), ok_writes, None, true);
    assert_eq!(o.phase, Phase::Promoted, "{o:?}");
    let cleared = h
        .events
        .iter()
        .find(|e| matches!(e.kind, EventKind::DriftCleared { .. }))
        .expect("the drift is over")
        .at;
    let stage2 = h
        .events
        .iter()
        .find(|e| matches!(e.kind, EventKind::WeightConfirmed { stage: Some(1), .. }))
        .unwrap()
        .at;
    assert!(
        stage2.duration_since(cleared).unwrap() >= Duration::from_secs(60),
        "a full bake after the drift cleared"
    );
    // The stage's max_duration still counts from its start: a drift that never clears
    // ends the stage as inconclusive at max_duration, re-bakes notwithstanding.
    let mut h = Harness::new(plan(&[10, 50, 100]));
    h.tamper = Some((30, Ok(Weights::primary(33).unwrap())));
    let o = h.go(|_, w| healthy(w.primary), ok_writes, None, true);
    assert_eq!(o.phase, Phase::Held, "{o:?}");
    let end = h.events.last().unwrap().at;
    assert!(end <= t(300 + 15 + 1), "held at max_duration: {end:?}");
}

#[test]
fn a_stepped_rollback_steps_down_from_the_live_split_when_it_is_lower() {
    let mut p = plan(&[10, 25, 50, 100]);
    p.rollback.mode = RollbackMode::Stepped;
    p.on_drift = OnDrift::Rollback;
    let mut h = Harness::new(p);
    // Someone put everything back on DR by hand at stage 3 (50 %).
    h.tamper = Some((190, Ok(Weights::ALL_DR)));
    let o = h.go(|_, w| healthy(w.primary), ok_writes, None, true);
    assert_eq!(o.phase, Phase::RolledBack, "{o:?}");
    let w = h.primary_writes();
    assert_eq!(w.last(), Some(&0), "{w:?}");
    let after_peak = &w[w.iter().position(|x| *x == 0).unwrap()..];
    assert_eq!(after_peak, [0], "no step above the live 0 %: {w:?}");
}

#[test]
fn losing_the_lock_during_a_rollback_pages() {
    let mut run = Run::new(plan(&[10, 100]), "r".into());
    run.step(Observation::Started {
        now: t(0),
        live: Ok(Weights::ALL_DR),
    });
    run.step(Observation::PreflightDone {
        now: t(1),
        results: vec![],
    });
    run.step(Observation::WeightsSet {
        now: t(2),
        weights: Weights::primary(10).unwrap(),
    });
    let mut ev = Vec::new();
    run.begin_rollback(RollbackCause::Breach, "breach".into(), t(3), &mut ev);
    let s = run.step(Observation::LockLost {
        now: t(4),
        detail: "the lock is now held by run other".into(),
    });
    let Request::Finish(o) = s.request else {
        panic!("{:?}", s.request)
    };
    assert_eq!(o.exit_code(), 10, "{o:?}");
    assert!(
        o.reason.contains("ROLLBACK NOT FINISHED") && o.reason.contains("primary 10%"),
        "{}",
        o.reason
    );
}

#[test]
fn a_stepped_rollback_right_after_a_stage_write_steps_from_that_stage() {
    // The signal lands before any analysis at the new stage: the live split is the write
    // just confirmed, not the previous stage's last reading.
    let mut p = plan(&[10, 25, 50, 100]);
    p.rollback.mode = RollbackMode::Stepped;
    p.on_signal = OnSignal::Rollback;
    let mut h = Harness::new(p);
    let o = h.go(|_, w| healthy(w.primary), ok_writes, Some(125), true);
    assert_eq!(o.exit_code(), 4, "{o:?}");
    let w = h.primary_writes();
    let peak = w
        .iter()
        .position(|x| *x == *w.iter().max().unwrap())
        .unwrap();
    let expected: Vec<u8> = [10u8, 25, 50, 100]
        .into_iter()
        .filter(|s| *s < w[peak])
        .rev()
        .chain([0])
        .collect();
    assert_eq!(w[peak + 1..], expected[..], "{w:?}");
    assert!(w[peak] >= 25, "the signal came after a later stage: {w:?}");
}
