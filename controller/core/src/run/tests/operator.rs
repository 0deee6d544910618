//! Someone else on the traffic object: drift, unreadable weights, an operator's brake, a lost lock.

use super::*;

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
    h.tamper = Some((30, Ok(Weights::from_primary(33).unwrap())));
    let o = h.run_healthy();
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
    h.tamper = Some((30, Ok(Weights::from_primary(33).unwrap())));
    let o = h.run_in(|now, w| Traffic {
        primary_errors: Reading::Value(if now >= 60 { 0.2 } else { 0.001 }),
        ..healthy(w.primary())
    });
    assert_eq!(o.phase, Phase::RolledBack, "{o:?}");
    assert_eq!(h.primary_writes(), [10, 0]);
}

#[test]
fn drift_reasserts_or_rolls_back_when_the_policy_says_so() {
    let mut p = plan(&[10, 50, 100]);
    p.on_drift = OnDrift::Reassert;
    let mut h = Harness::new(p);
    h.tamper = Some((30, Ok(Weights::from_primary(33).unwrap())));
    let o = h.run_healthy();
    assert_eq!(o.phase, Phase::Promoted, "{o:?}");
    assert_eq!(
        h.primary_writes(),
        [10, 10, 50, 100],
        "the stage is written again"
    );

    let mut p = plan(&[10, 50, 100]);
    p.on_drift = OnDrift::Rollback;
    let mut h = Harness::new(p);
    h.tamper = Some((30, Ok(Weights::from_primary(33).unwrap())));
    let o = h.run_healthy();
    assert_eq!(o.phase, Phase::RolledBack, "{o:?}");
    assert_eq!(h.primary_writes(), [10, 0]);
    assert!(o.reason.contains("primary 33%"), "{}", o.reason);
}

#[test]
fn an_unreadable_backend_is_reported_at_once_and_never_a_pass() {
    let mut h = Harness::new(plan(&[10, 50, 100]));
    h.tamper = Some((30, Err("weights.json: expected value at line 1".into())));
    let o = h.run_healthy();
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
fn an_operator_brake_rolls_back_at_once_never_stepped_and_ends_the_run() {
    let mut p = plan(&[10, 50, 100]);
    p.rollback.mode = RollbackMode::Stepped;
    let mut h = Harness::new(p);
    h.brake_at = Some(100);
    let o = h.run_healthy();
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
        propagation: Duration::ZERO,
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
fn a_brake_during_a_stepped_rollback_goes_to_zero_at_once() {
    let mut p = plan(&[10, 50, 100]);
    p.rollback.mode = RollbackMode::Stepped;
    let mut run = Run::new(p, "r".into());
    run.step(Observation::Started {
        now: t(0),
        propagation: Duration::ZERO,
        live: Ok(Weights::ALL_DR),
    });
    run.step(Observation::PreflightDone {
        now: t(1),
        results: vec![],
    });
    let mut s = run.step(Observation::WeightsSet {
        now: t(2),
        weights: Weights::from_primary(10).unwrap(),
    });
    // Force a stepped rollback from 100 % by hand: state as if at the last stage.
    run.state.weights = Some(Weights::from_primary(100).unwrap());
    run.state.last_live = run.state.weights;
    let mut ev = Vec::new();
    let r = run.begin_rollback(RollbackCause::Breach, "breach".into(), t(3), &mut ev);
    assert_eq!(r, Request::SetWeights(Weights::from_primary(50).unwrap()));
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
fn a_failed_read_holds_and_on_drift_acts_only_after_the_error_limit() {
    let mut p = plan(&[10, 50, 100]);
    p.on_drift = OnDrift::Rollback;
    let mut h = Harness::new(p);
    h.tamper = Some((30, Err("HTTP 503".into())));
    let o = h.run_healthy();
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
    h.tamper = Some((30, Ok(Weights::from_primary(33).unwrap())));
    h.untamper_at = Some(60);
    let o = h.run_healthy();
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
    h.tamper = Some((30, Ok(Weights::from_primary(33).unwrap())));
    let o = h.run_healthy();
    assert_eq!(o.phase, Phase::Held, "{o:?}");
    let end = h.events.last().unwrap().at;
    assert!(end <= t(300 + 15 + 1), "held at max_duration: {end:?}");
}

#[test]
fn losing_the_lock_during_a_rollback_pages() {
    let mut run = written_first_stage(plan(&[10, 100]), 10);
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
