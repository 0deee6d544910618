//! Rollbacks: immediate and stepped, retried writes, exit 10.

use super::*;

#[test]
fn stepped_rollback_walks_down_the_plan_then_to_zero() {
    let mut p = plan(&[10, 25, 50, 100]);
    p.rollback.mode = RollbackMode::Stepped;
    let mut h = Harness::new(p);
    let o = h.run_in(failing_at(50, 0.5));
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
        writes_failing_at(0, "API down"),
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
            if w.primary() == 0 && !failed {
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
        writes_failing_at(0, "permission denied: weights.json.tmp"),
        None,
        true,
    );
    assert_eq!(o.phase, Phase::RolledBack, "{o:?}");
    assert_eq!(o.exit_code(), 1);
    assert_eq!(h.primary_writes(), [10, 0], "no further attempts");
}

#[test]
fn a_stepped_rollback_steps_down_from_the_live_split_when_it_is_lower() {
    let mut p = plan(&[10, 25, 50, 100]);
    p.rollback.mode = RollbackMode::Stepped;
    p.on_drift = OnDrift::Rollback;
    let mut h = Harness::new(p);
    // Someone put everything back on DR by hand at stage 3 (50 %).
    h.tamper = Some((190, Ok(Weights::ALL_DR)));
    let o = h.run_healthy();
    assert_eq!(o.phase, Phase::RolledBack, "{o:?}");
    let w = h.primary_writes();
    assert_eq!(w.last(), Some(&0), "{w:?}");
    let after_peak = &w[w.iter().position(|x| *x == 0).unwrap()..];
    assert_eq!(after_peak, [0], "no step above the live 0 %: {w:?}");
}

#[test]
fn a_stepped_rollback_right_after_a_stage_write_steps_from_that_stage() {
    // The signal lands before any analysis at the new stage: the live split is the write
    // just confirmed, not the previous stage's last reading.
    let mut p = plan(&[10, 25, 50, 100]);
    p.rollback.mode = RollbackMode::Stepped;
    p.on_signal = OnSignal::Rollback;
    let mut h = Harness::new(p);
    let o = h.go(|_, w| healthy(w.primary()), ok_writes, Some(125), true);
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
