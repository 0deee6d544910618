//! Readiness in the run: a preflight check that waits, guards that hold a stage, capacity
//! that keeps a weight from being written, and `on_guard_failure` after the limit.

use super::*;
use crate::judge::preflight::PreflightCheck;
use crate::readiness::{OnGuardFailure, Readiness};

fn check(name: &str, wait: Option<u64>) -> PreflightCheck {
    PreflightCheck {
        name: name.into(),
        query: Some("lag".into()),
        max: Some(5.0),
        wait: wait.map(Span::secs),
        interval: Some(Span::secs(5)),
        ..PreflightCheck::default()
    }
}

fn res(name: &str, ok: bool) -> PreflightResult {
    PreflightResult {
        name: name.into(),
        ok,
        kind: "postgres".into(),
        detail: if ok {
            "caught up".into()
        } else {
            "lag 9.0s is above max_lag 5s".into()
        },
        ..PreflightResult::default()
    }
}

fn capacity(covers: f64) -> PreflightResult {
    PreflightResult {
        name: "cap".into(),
        ok: true,
        kind: "kubernetes_capacity".into(),
        covers: Some(covers),
        detail: format!("covers {covers}%"),
        ..PreflightResult::default()
    }
}

fn guarded(weights: &[u8], preflight: Vec<PreflightCheck>, guards: Vec<PreflightCheck>) -> Plan {
    Plan {
        readiness: Readiness {
            preflight,
            guards,
            on_guard_failure: OnGuardFailure::Hold,
            guard_failure_limit: Duration::from_secs(120),
        },
        ..plan(weights)
    }
}

#[test]
fn preflight_waits_for_a_lagging_check_then_starts() {
    let mut h = Harness::new(guarded(&[10, 100], vec![check("lag", Some(20))], vec![]));
    h.readiness = Some(Box::new(|now, _| vec![res("lag", now >= 12)]));
    let o = h.run_healthy();
    assert_eq!(o.exit_code(), 0, "{o:?}");
    let waits = h
        .events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::PreflightWaiting { .. }))
        .count();
    assert_eq!(waits, 3, "checked at 0, 5, 10 s, held at 15 s");
    assert_eq!(h.primary_writes(), [10, 100]);
}

#[test]
fn preflight_that_never_holds_fails_after_its_wait_and_writes_nothing() {
    let mut h = Harness::new(guarded(&[10, 100], vec![check("lag", Some(20))], vec![]));
    h.readiness = Some(Box::new(|_, _| vec![res("lag", false)]));
    let o = h.run_healthy();
    assert_eq!(o.exit_code(), 3, "{o:?}");
    assert!(o.reason.contains("lag 9.0s is above max_lag 5s"), "{o:?}");
    assert!(h.writes.is_empty());
    assert_eq!(h.now, 20, "waited exactly the check's wait");
}

#[test]
fn a_failing_guard_holds_the_stage_and_clearing_it_lets_it_advance() {
    let mut h = Harness::new(guarded(&[10, 50, 100], vec![], vec![check("lag", None)]));
    // The lag grows at 25 % of the way through the first stage and clears at t = 150 s.
    h.readiness = Some(Box::new(|now, _| {
        vec![res("lag", !(30..150).contains(&now))]
    }));
    let o = h.run_healthy();
    assert_eq!(o.exit_code(), 0, "{o:?}");
    assert_eq!(h.primary_writes(), [10, 50, 100]);
    let second = h
        .events
        .iter()
        .find(|e| matches!(e.kind, EventKind::WeightRequested { stage: Some(1), .. }))
        .unwrap();
    let at = second.at.duration_since(t(0)).unwrap().as_secs();
    assert!(at >= 150, "advanced at {at}s while the guard failed");
    assert!(h.events.iter().any(|e| matches!(&e.kind,
        EventKind::Guards { decision, .. } if decision.contains("every guard holds again"))));
}

#[test]
fn a_guard_failing_past_its_limit_ends_held_or_rolls_back() {
    for (on, code, writes) in [
        (OnGuardFailure::Hold, 5, vec![10]),
        (OnGuardFailure::Rollback, 1, vec![10, 0]),
    ] {
        let mut p = guarded(&[10, 50, 100], vec![], vec![check("lag", None)]);
        p.readiness.on_guard_failure = on;
        let mut h = Harness::new(p);
        h.readiness = Some(Box::new(|now, _| vec![res("lag", now < 30)]));
        let o = h.run_healthy();
        assert_eq!(o.exit_code(), code, "{o:?}");
        assert!(o.reason.contains("guard_failure_limit"), "{o:?}");
        assert_eq!(h.primary_writes(), writes);
    }
}

#[test]
fn a_guard_with_no_result_is_never_a_pass() {
    let mut h = Harness::new(guarded(&[10, 100], vec![], vec![check("lag", None)]));
    h.readiness = Some(Box::new(|_, _| Vec::new()));
    let o = h.run_healthy();
    assert_eq!(o.exit_code(), 5, "{o:?}");
    assert_eq!(h.primary_writes(), [10]);
}

#[test]
fn capacity_keeps_a_weight_unwritten_until_it_covers_it() {
    let mut p = guarded(&[10, 25, 50, 100], vec![], vec![check("cap", None)]);
    p.stages
        .iter_mut()
        .for_each(|s| s.max_duration = Duration::from_secs(600));
    let mut h = Harness::new(p);
    // 30 % of DR's capacity until t = 400 s, then all of it.
    h.readiness = Some(Box::new(|now, _| {
        vec![capacity(if now < 400 { 30.0 } else { 100.0 })]
    }));
    let o = h.run_healthy();
    assert_eq!(o.exit_code(), 0, "{o:?}");
    assert_eq!(h.primary_writes(), [10, 25, 50, 100]);
    let fifty = h
        .events
        .iter()
        .find(|e| matches!(e.kind, EventKind::WeightRequested { stage: Some(2), .. }))
        .unwrap();
    assert!(
        fifty.at >= t(400),
        "50% written before the capacity covered it"
    );
}

#[test]
fn capacity_that_does_not_cover_the_first_stage_fails_preflight() {
    let mut h = Harness::new(guarded(&[10, 100], vec![], vec![check("cap", None)]));
    h.readiness = Some(Box::new(|_, _| vec![capacity(5.0)]));
    let o = h.run_healthy();
    assert_eq!(o.exit_code(), 3, "{o:?}");
    assert!(o.reason.contains("covers 5% of traffic"), "{o:?}");
    assert!(h.writes.is_empty());
}
