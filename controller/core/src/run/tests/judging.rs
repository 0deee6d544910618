//! Judging: no data is never a pass, failure and error limits, the global incident, inconclusive stages, the observed share.

use super::*;

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
    let o = h.run_in(|_, w| {
        n += 1;
        // At 25 %, every other analysis fails: not consecutive, still counted.
        if w.primary() == 25 && n % 2 == 0 {
            Traffic {
                primary_errors: Reading::Value(0.05),
                ..healthy(25)
            }
        } else {
            healthy(w.primary())
        }
    });
    assert_eq!(o.phase, Phase::RolledBack, "{o:?}");
    assert_eq!(o.exit_code(), 1);
    assert_eq!(h.primary_writes(), [10, 25, 0]);
    assert!(o.reason.contains("failure_limit"), "{}", o.reason);
}

#[test]
fn a_breach_while_settling_is_not_hidden() {
    let mut h = Harness::new(plan(&[10, 100]));
    // The share never converges, but the primary fails hard meanwhile.
    let o = h.run_in(|_, _| Traffic {
        share: 0.5,
        primary_errors: Reading::Value(0.2),
        ..healthy(10)
    });
    assert_eq!(o.phase, Phase::RolledBack, "{o:?}");
    assert_eq!(h.primary_writes(), [10, 0]);
}

#[test]
fn consecutive_query_errors_roll_back_fail_safe() {
    let mut h = Harness::new(plan(&[10, 100]));
    let o = h.run_in(|now, w| {
        if now > 40 {
            Traffic {
                primary_errors: Reading::Error("connection refused".into()),
                ..healthy(w.primary())
            }
        } else {
            healthy(w.primary())
        }
    });
    assert_eq!(o.phase, Phase::RolledBack, "{o:?}");
    assert!(o.reason.contains("consecutive_error_limit"), "{}", o.reason);
    assert_eq!(h.primary_writes(), [10, 0]);
}

#[test]
fn global_incident_freezes_instead_of_rolling_back() {
    let mut h = Harness::new(plan(&[10, 25, 100]));
    let o = h.run_in(at_weight(
        25,
        Traffic {
            primary_errors: Reading::Value(0.05),
            dr_errors: Reading::Value(0.05),
            ..healthy(25)
        },
    ));
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
    let o = h.run_in(|_, _| Traffic {
        share: 0.0,
        ..healthy(10)
    });
    assert_eq!(o.phase, Phase::Held, "{o:?}");
    assert!(o.reason.contains("never settled"), "{}", o.reason);
    assert_eq!(h.primary_writes(), [10]);
}

#[test]
fn relative_gates_at_100_percent_compare_with_the_last_dr_value() {
    let mut h = Harness::new(plan(&[50, 100]));
    let o = h.run_in(at_weight(
        100,
        // DR serves nothing now; the primary's 0.5 % is far above DR's last 0.1 %.
        Traffic {
            primary_errors: Reading::Value(0.005),
            dr_errors: Reading::Empty,
            ..healthy(100)
        },
    ));
    assert_eq!(o.phase, Phase::RolledBack, "{o:?}");
    assert!(o.reason.contains("DR's last value"), "{}", o.reason);
}

#[test]
fn a_share_outside_the_tolerance_while_judging_is_never_a_pass() {
    // The backend reads 10 %, but a third of the requests reach the primary.
    let mut h = Harness::new(plan(&[10, 50, 100]));
    let o = h.run_in(|now, w| {
        if now >= 30 {
            healthy(34)
        } else {
            healthy(w.primary())
        }
    });
    assert_eq!(o.phase, Phase::Held, "{o:?}");
    assert_eq!(h.primary_writes(), [10]);
    assert!(
        o.reason.contains("observed primary share 34.0%"),
        "{}",
        o.reason
    );
}

/// A stage held at `max_duration` is still judged for `watch_held`: harm that starts during
/// the watch rolls back; healthy traffic never advances it by itself, and once the watch is
/// over the run is held (exit 5) saying so.
#[test]
fn a_held_stage_is_still_watched_and_rolls_back_on_harm() {
    let mut p = plan(&[10, 100]);
    p.watch_held = Duration::from_secs(600);
    let few = Traffic {
        requests: Reading::Value(5.0),
        ..healthy(10)
    };
    let mut h = Harness::new(p.clone());
    let undecided = few.clone();
    let o = h.go(
        move |s, _| {
            if s < 480 {
                undecided.clone()
            } else {
                Traffic {
                    primary_errors: Reading::Value(0.05),
                    ..healthy(10)
                }
            }
        },
        ok_writes,
        None,
        true,
    );
    assert_eq!(o.phase, Phase::RolledBack, "{o:?}");
    assert_eq!(h.primary_writes(), [10, 0]);
    assert!(
        h.events
            .iter()
            .any(|e| matches!(e.kind, EventKind::HeldWatching { stage: 0, .. })),
        "the hold was announced"
    );
    let mut h = Harness::new(p);
    let o = h.go(
        move |s, _| if s < 330 { few.clone() } else { healthy(10) },
        ok_writes,
        None,
        true,
    );
    assert_eq!(o.phase, Phase::Held, "{o:?}");
    assert_eq!(
        h.primary_writes(),
        [10],
        "a watched stage never advances by itself"
    );
    assert!(o.reason.contains("watched for 10m"), "{}", o.reason);
    assert!(h.now >= 300 + 600, "held only after the watch: {}", h.now);
}
