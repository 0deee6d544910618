//! Promotion through the stages: preflight, writes and read-backs, settling, signals, the deadline.

use super::*;

#[test]
fn healthy_run_is_promoted_through_every_stage_and_only_plan_weights() {
    let mut h = Harness::new(plan(&[10, 25, 50, 100]));
    let o = h.run_healthy();
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
    h.live = Weights::new(30, 70).unwrap();
    let o = h.run_healthy();
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
        propagation: Duration::ZERO,
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
    let o = h.go(|_, w| healthy(w.primary()), ok_writes, None, false);
    assert_eq!(o.phase, Phase::PreflightFailed);
    assert!(h.writes.is_empty());
}

#[test]
fn forward_write_failures_are_retried_then_rolled_back() {
    let mut h = Harness::new(plan(&[10, 25, 100]));
    let o = h.go(
        |_, w| healthy(w.primary()),
        writes_failing_at(25, "503"),
        None,
        true,
    );
    assert_eq!(o.phase, Phase::RolledBack, "{o:?}");
    assert_eq!(h.primary_writes(), [10, 25, 25, 25, 0]);
}

#[test]
fn signal_holds_by_default_and_rolls_back_when_asked() {
    let mut h = Harness::new(plan(&[10, 25, 100]));
    let o = h.go(|_, w| healthy(w.primary()), ok_writes, Some(100), true);
    assert_eq!(o.phase, Phase::Aborted, "{o:?}");
    assert_eq!(o.exit_code(), 4);
    assert_eq!(h.primary_writes(), [10, 25], "held at a planned weight");
    let mut p = plan(&[10, 25, 100]);
    p.on_signal = OnSignal::Rollback;
    let mut h = Harness::new(p);
    let o = h.go(|_, w| healthy(w.primary()), ok_writes, Some(100), true);
    assert_eq!(o.phase, Phase::Aborted);
    assert_eq!(*h.primary_writes().last().unwrap(), 0);
}

#[test]
fn a_read_back_that_differs_is_a_failed_write() {
    let mut run = Run::new(plan(&[10, 100]), "t".into());
    run.step(Observation::Started {
        now: t(0),
        propagation: Duration::ZERO,
        live: Ok(Weights::ALL_DR),
    });
    let s = run.step(Observation::PreflightDone {
        now: t(0),
        results: vec![],
    });
    assert_eq!(
        s.request,
        Request::SetWeights(Weights::new(10, 90).unwrap())
    );
    let s = run.step(Observation::WeightsSet {
        now: t(1),
        weights: Weights::new(20, 80).unwrap(),
    });
    assert!(matches!(s.request, Request::Sleep(_)), "{s:?}");
    assert_eq!(run.state().pending.as_ref().unwrap().attempts, 1);
    let s = run.step(Observation::Slept { now: t(2) });
    assert_eq!(
        s.request,
        Request::SetWeights(Weights::new(10, 90).unwrap())
    );
}

#[test]
fn a_terminal_run_stays_terminal() {
    let mut run = Run::new(plan(&[10, 100]), "t".into());
    run.step(Observation::Started {
        now: t(0),
        propagation: Duration::ZERO,
        live: Ok(Weights::new(5, 95).unwrap()),
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
    let mut run = Run::new(plan(&[10, 100]), "t".into());
    run.step(Observation::Started {
        now: t(0),
        propagation: Duration::from_secs(60),
        live: Ok(Weights::ALL_DR),
    });
    run.step(Observation::PreflightDone {
        now: t(0),
        results: vec![],
    });
    let s = run.step(Observation::WeightsSet {
        now: t(1),
        weights: Weights::new(10, 90).unwrap(),
    });
    assert_eq!(
        s.request,
        Request::Sleep(Duration::from_secs(60)),
        "TTL 60 s, interval 15 s"
    );
}

#[test]
fn the_deadline_rolls_back() {
    let mut p = plan(&[10, 25, 100]);
    p.deadline = Some(Duration::from_secs(90));
    let mut h = Harness::new(p);
    let o = h.run_in(|_, w| Traffic {
        requests: Reading::Value(10.0),
        ..healthy(w.primary())
    });
    assert_eq!(o.phase, Phase::RolledBack, "{o:?}");
    assert!(o.reason.contains("deadline"), "{}", o.reason);
    assert_eq!(h.primary_writes(), [10, 0]);
}

#[test]
fn settling_with_prometheus_down_says_so_not_no_traffic() {
    let mut run = written_first_stage(plan(&[10, 100]), 10);
    let mut a = analysis(t(17), &healthy(10));
    a.primary_rate = Reading::Error("cannot reach prometheus: connection refused".into());
    a.dr_rate = a.primary_rate.clone();
    let s = run.step(Observation::Analyzed {
        now: t(17),
        analysis: a,
        live: Some(Ok(Weights::from_primary(10).unwrap())),
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

/// A plan whose last stage is judged at 98 % against a 2 % DR holdout, then 100 % unjudged.
fn holdout_plan() -> Plan {
    let mut p = plan(&[10, 50, 98, 100]);
    p.stages[3].judged = false;
    p
}

#[test]
fn a_final_holdout_is_judged_then_100_is_written_without_judging() {
    let mut h = Harness::new(holdout_plan());
    let o = h.run_healthy();
    assert_eq!(o.phase, Phase::Promoted, "{o:?}");
    assert_eq!(h.primary_writes(), [10, 50, 98, 100]);
    assert!(o.reason.contains("judged at 98%"), "{}", o.reason);
    // Every analysis was taken while DR still served: none at 100 %.
    let analysed: Vec<usize> = h
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Analyzed { stage, .. } => Some(*stage),
            _ => None,
        })
        .collect();
    assert!(analysed.contains(&2), "{analysed:?}");
    assert!(!analysed.contains(&3), "{analysed:?}");
}

#[test]
fn a_breach_at_the_holdout_stage_rolls_back_before_100() {
    let mut h = Harness::new(holdout_plan());
    let o = h.run_in(failing_at(98, 0.2));
    assert_eq!(o.phase, Phase::RolledBack, "{o:?}");
    assert_eq!(h.primary_writes(), [10, 50, 98, 0]);
}

#[test]
fn a_run_restarted_after_its_unjudged_100_landed_is_promoted() {
    let mut h = Harness::new(holdout_plan());
    let o = h.run_healthy();
    assert_eq!(o.phase, Phase::Promoted);
    // The same record, as if the pod died right after the last write was confirmed.
    let mut state = h.run.state().clone();
    state.phase = Phase::Settling;
    state.outcome = None;
    let mut run = Run::resume(holdout_plan(), state);
    let s = run.step(Observation::Started {
        now: t(10_000),
        propagation: Duration::ZERO,
        live: Ok(Weights::from_primary(100).unwrap()),
    });
    let Request::Finish(o) = s.request else {
        panic!("{s:?}")
    };
    assert_eq!(o.phase, Phase::Promoted, "{o:?}");
}
