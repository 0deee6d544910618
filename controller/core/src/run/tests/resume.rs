//! Restarts: a killed run resumes, reconciles a recorded intent, and never adopts a split the plan does not name.

use super::*;

/// A run driven to the point where `at` stages are confirmed, then "killed": its state.
fn killed_after(
    plan_weights: &[u8],
    confirmed: usize,
    pending_landed: Option<bool>,
) -> (RunState, Weights) {
    let mut run = Run::new(plan(plan_weights), "r1".into());
    run.step(Observation::Started {
        now: t(0),
        propagation: Duration::ZERO,
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
            analysis: analysis(now, &healthy(w.primary())),
            live: Some(Ok(w)),
        });
        s = run.step(Observation::Analyzed {
            now,
            analysis: analysis(now, &healthy(w.primary())),
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
    assert_eq!(live.primary(), 25);
    let mut run = Run::resume(plan(&[10, 25, 50, 100]), state);
    let s = run.step(Observation::Started {
        now: t(1000),
        propagation: Duration::ZERO,
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
    assert_eq!(live.primary(), 50);
    let mut run = Run::resume(plan(&[10, 25, 50, 100]), state);
    run.step(Observation::Started {
        now: t(1000),
        propagation: Duration::ZERO,
        live: Ok(live),
    });
    assert_eq!(run.state().stage, Some(2));
    assert_eq!(
        run.state().history.last().unwrap().weights.primary(),
        50,
        "history continuous"
    );
    // ... or it did not: resume the last confirmed stage.
    let (state, live) = killed_after(&[10, 25, 50, 100], 2, Some(false));
    assert_eq!(live.primary(), 25);
    let mut run = Run::resume(plan(&[10, 25, 50, 100]), state);
    run.step(Observation::Started {
        now: t(1000),
        propagation: Duration::ZERO,
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
        propagation: Duration::ZERO,
        live: Ok(Weights::new(33, 67).unwrap()),
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
        propagation: Duration::ZERO,
        live: Ok(Weights::new(50, 50).unwrap()),
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
        probe: false,
    });
    let mut run = Run::resume(plan(&[10, 25, 100]), state.clone());
    let s = run.step(Observation::Started {
        now: t(1000),
        propagation: Duration::ZERO,
        live: Ok(Weights::new(25, 75).unwrap()),
    });
    assert_eq!(
        s.request,
        Request::SetWeights(Weights::ALL_DR),
        "the rollback goes on"
    );
    let mut run = Run::resume(plan(&[10, 25, 100]), state);
    let s = run.step(Observation::Started {
        now: t(1000),
        propagation: Duration::ZERO,
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
        propagation: Duration::ZERO,
        live: Ok(Weights::ALL_DR),
    });
    let Request::Finish(o) = s.request else {
        panic!("{s:?}")
    };
    assert_eq!(o.phase, Phase::PreflightFailed);
    assert!(o.reason.contains("cutover run` again"), "{}", o.reason);
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
