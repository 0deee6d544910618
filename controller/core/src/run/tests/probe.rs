//! Probes at the stage where DR serves nothing (`analysis.probe`): a rise common to both
//! sites is never rolled back, a regression is rolled back from the probe, a rise seen only
//! at full load is held at the probe's split, and a run killed during a probe resumes at a
//! stage of the plan.

use std::cell::Cell;

use super::sequential::{Count, Driven, SeqDriver, sequential_plan, sequential_plan_with};
use super::*;
use crate::policy::ProbePlan;

/// [`sequential_plan`] (10, 50, 100 %) probing at 50 % for `secs`.
fn probing(secs: u64) -> Plan {
    let mut plan = sequential_plan();
    plan.probe = Some(ProbePlan {
        weight: StageWeight::new(50).unwrap(),
        duration: Duration::from_secs(secs),
    });
    plan
}

/// 1000 requests a second split at the live weights; the primary fails `p` and DR `d` of
/// theirs, each given whether the primary has served 100 % yet and the live primary weight.
fn world<'a>(
    reached: &'a Cell<bool>,
    p: impl Fn(bool, u8) -> f64 + 'a,
    d: impl Fn(bool, u8) -> f64 + 'a,
) -> impl FnMut(u64, u64, Weights) -> (Count, Count) + 'a {
    move |from, to, live| {
        if live.primary() == 100 {
            reached.set(true);
        }
        let n = 1000.0 * (to - from) as f64;
        let share = f64::from(live.primary()) / 100.0;
        let (pn, dn) = (n * share, n * (1.0 - share));
        let (r, w) = (reached.get(), live.primary());
        ((pn, (pn * p(r, w)).round()), (dn, (dn * d(r, w)).round()))
    }
}

fn weights_written(d: &Driven) -> Vec<u8> {
    d.state
        .history
        .iter()
        .map(|h| h.weights.primary())
        .collect()
}

/// When `w` % was last written.
fn last_write_at(d: &Driven, w: u8) -> SystemTime {
    d.state
        .history
        .iter()
        .rev()
        .find(|h| h.weights.primary() == w)
        .expect("a write of that weight")
        .at
}

fn probes(d: &Driven) -> (usize, usize) {
    let started = d
        .events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::ProbeStarted { .. }))
        .count();
    let cleared = d
        .events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::ProbeCleared { .. }))
        .count();
    (started, cleared)
}

/// Both sites go from 1 % to 3 % once the primary serves 100 %: against DR's earlier 1 %
/// that reads as harm, against DR's concurrent traffic at the probe it is none.
#[test]
fn a_rise_common_to_both_sites_at_100_is_probed_and_never_rolled_back() {
    let reached = Cell::new(false);
    let rate = |r: bool, _| if r { 0.03 } else { 0.01 };
    let d = SeqDriver::new(probing(120), |_| 0.01)
        .world(world(&reached, rate, rate))
        .drive();
    let o = d.outcome.clone().expect("an end");
    // Not rolled back; not certified either: the primary's 3 % at 100 % is above DR's
    // earlier rate, and what the probe's split showed certifies nothing about 100 %.
    assert_eq!(o.phase, Phase::Held, "{o:?}");
    assert_eq!(d.state.weights.map(|w| w.primary()), Some(100));
    assert!(!d.state.evidence["seq"].certified);
    assert_eq!(probes(&d), (1, 1), "one probe, cleared: {:?}", d.events);
    let written = weights_written(&d);
    assert_eq!(&written[..4], &[10, 50, 100, 50], "{written:?}");
    assert_eq!(
        written[4], 100,
        "back to 100 % after the probe: {written:?}"
    );
    // Once cleared, the one-sample test compares with DR's rate at the probe too: no second
    // probe for the same common cause.
    let ep = &d.state.evidence["seq"];
    assert!(ep.probed.is_some_and(|t| t.total > 0.0), "{ep:?}");
    let cleared = d
        .events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::ProbeCleared { detail, .. } => Some(detail.clone()),
            _ => None,
        })
        .unwrap();
    assert!(
        cleared.contains("no worse than DR's concurrent traffic"),
        "{cleared}"
    );
}

/// Without a probe, the same common cause is rolled back on DR's earlier rate alone.
#[test]
fn without_a_probe_a_common_rise_at_100_rolls_back() {
    let reached = Cell::new(false);
    let rate = |r: bool, _| if r { 0.03 } else { 0.01 };
    let d = SeqDriver::new(sequential_plan(), |_| 0.01)
        .world(world(&reached, rate, rate))
        .drive();
    let o = d.outcome.expect("an end");
    assert_eq!(o.phase, Phase::RolledBack, "{o:?}");
    assert!(o.reason.contains("not ruled out"), "{}", o.reason);
    assert!(o.reason.contains("analysis.probe"), "{}", o.reason);
}

/// The primary alone goes from 1 % to 5 % at 100 % (and stays so): the probe's concurrent
/// comparison rolls it back, within a minute of the probe.
#[test]
fn a_regression_at_100_is_rolled_back_from_the_probe() {
    let reached = Cell::new(false);
    let d = SeqDriver::new(probing(120), |_| 0.01)
        .world(world(
            &reached,
            |r, _| if r { 0.05 } else { 0.01 },
            |_, _| 0.01,
        ))
        .drive();
    let o = d.outcome.clone().expect("an end");
    assert_eq!(o.phase, Phase::RolledBack, "{o:?}");
    assert_eq!(weights_written(&d), vec![10, 50, 100, 50, 0]);
    assert_eq!(probes(&d), (1, 0));
    let at = |w: u8| last_write_at(&d, w);
    let probe_took = at(0).duration_since(at(50)).unwrap();
    assert!(probe_took <= Duration::from_secs(60), "{probe_took:?}");
    assert!(o.reason.contains("stage 3"), "{}", o.reason);
    assert!(
        o.reason.contains("concurrent, at this stage"),
        "{}",
        o.reason
    );
}

/// DR's first count at the probe is empty (a slow DNS TTL, a scrape not yet in): that
/// interval is no evidence, and the common cause is still not rolled back.
#[test]
fn a_probe_interval_without_dr_traffic_never_rolls_back_on_the_one_sample_test() {
    let reached = Cell::new(false);
    let rate = |r: bool, _| if r { 0.03 } else { 0.01 };
    let reached_ref = &reached;
    let mut inner = world(reached_ref, rate, rate);
    let mut probe_looks = 0;
    let d = SeqDriver::new(probing(120), |_| 0.01)
        .world(move |from, to, live| {
            let (p, dr) = inner(from, to, live);
            if reached_ref.get() && live.primary() == 50 {
                probe_looks += 1;
                if probe_looks == 1 {
                    return (p, (0.0, 0.0));
                }
            }
            (p, dr)
        })
        .drive();
    let o = d.outcome.expect("an end");
    assert_ne!(o.phase, Phase::RolledBack, "{o:?}");
}

/// A regression at 100 % while traffic is quiet (1000 requests a second before, 40 after;
/// the primary 0.5 % -> 2.5 %, DR at 0.5 %): a 30 s probe sees too little; it goes on until
/// DR has served enough bad requests to compare with, or clears without raising anything
/// (DR did not rise) and the next probe adds to the same relative evidence. It is rolled
/// back, never left serving at 100 %.
#[test]
fn a_regression_a_short_probe_cannot_see_is_still_rolled_back() {
    let reached = Cell::new(false);
    let d = SeqDriver::new(probing(30), |_| 0.005)
        .world(move |from, to, live| {
            if live.primary() == 100 {
                reached.set(true);
            }
            let rps = if reached.get() { 40.0 } else { 1000.0 };
            let n = rps * (to - from) as f64;
            let share = f64::from(live.primary()) / 100.0;
            let (pn, dn) = (n * share, n * (1.0 - share));
            let p = if reached.get() { 0.025 } else { 0.005 };
            ((pn, (pn * p).round()), (dn, (dn * 0.005).round()))
        })
        .drive();
    let o = d.outcome.clone().expect("an end");
    assert_eq!(o.phase, Phase::RolledBack, "{o:?}");
    assert!(probes(&d).0 >= 1);
}

/// The primary at 2 % at 100 % but 1 % at the probe's 50 % (DR 1 %), with no bake: the
/// probe's split certifies nothing about 100 %, so the stage is never promoted on it.
#[test]
fn a_probe_never_certifies_the_stage_it_left() {
    let mut plan = probing(120);
    for st in &mut plan.stages {
        st.bake = Duration::ZERO;
    }
    let d = SeqDriver::new(plan, |w| if w == 100 { 0.02 } else { 0.01 }).drive();
    let o = d.outcome.clone().expect("an end");
    assert_ne!(o.phase, Phase::Promoted, "{o:?}");
    assert!(probes(&d).0 >= 1);
}

/// Held at the probe's split past max_duration, the stage is still watched (harm rolls
/// back) for `watch_held` before the run exits 5 there.
#[test]
fn a_probe_held_past_max_duration_is_watched_at_its_split() {
    let mut plan = probing(60);
    plan.watch_held = Duration::from_secs(300);
    let reached = Cell::new(false);
    let d = SeqDriver::new(plan, |_| 0.01)
        .world(world(
            &reached,
            |_, w| if w == 100 { 0.03 } else { 0.01 },
            |_, _| 0.01,
        ))
        .drive();
    let o = d.outcome.clone().expect("an end");
    assert_eq!(o.phase, Phase::Held, "{o:?}");
    assert_eq!(d.state.weights.map(|w| w.primary()), Some(50));
    assert!(o.reason.contains("watched for 5m"), "{}", o.reason);
    assert!(
        d.events
            .iter()
            .any(|e| matches!(e.kind, EventKind::HeldWatching { .. }))
    );
}

/// A rise seen only at full load (the primary at 3 % while it serves 100 %, 1 % below):
/// every probe clears, the rise comes back; past `max_duration` the stage is held at the
/// probe's split, never at 100 %, for a person to judge.
#[test]
fn a_rise_seen_only_at_full_load_is_held_at_the_probes_split() {
    let reached = Cell::new(false);
    let d = SeqDriver::new(probing(60), |_| 0.01)
        .world(world(
            &reached,
            |_, w| if w == 100 { 0.03 } else { 0.01 },
            |_, _| 0.01,
        ))
        .drive();
    let o = d.outcome.clone().expect("an end");
    assert_eq!(o.phase, Phase::Held, "{o:?}");
    assert_eq!(d.state.weights.map(|w| w.primary()), Some(50), "{o:?}");
    // Every probe but the last cleared; the last is where the stage is held.
    let (started, cleared) = probes(&d);
    assert!(
        started >= 2 && cleared + 1 == started,
        "{started} {cleared}"
    );
    assert!(o.reason.contains("only at full load"), "{}", o.reason);
    for w in weights_written(&d) {
        assert!([10, 50, 100].contains(&w), "{w}");
    }
}

/// Killed during a probe: with its split landed, the restart goes on with the probe of the
/// 100 % stage, its evidence continuing (no budget spent again); with the write lost, the
/// stage goes on at 100 %. Either way the regression is rolled back and only the plan's
/// weights are written.
#[test]
fn a_run_killed_during_a_probe_resumes_it_or_its_stage() {
    let plan = probing(120);
    for landed in [true, false] {
        let reached = Cell::new(false);
        // The plan writes 50 % once as a stage; the second write of 50 % is the probe's.
        let mut fifty = 0;
        let d = SeqDriver::new(plan.clone(), |_| 0.01)
            .world(world(
                &reached,
                |r, _| if r { 0.05 } else { 0.01 },
                |_, _| 0.01,
            ))
            .kill(move |r, _| match r {
                Request::SetWeights(w) if w.primary() == 50 => {
                    fifty += 1;
                    (fifty == 2).then_some((30, landed))
                }
                _ => None,
            })
            .drive();
        let o = d.outcome.clone().expect("an end");
        let (_, state) = d.resumed.first().expect("a restart").clone();
        assert_eq!(state.stage, Some(2), "landed {landed}");
        assert_eq!(state.probe.is_some(), landed, "{:?}", state.probe);
        if landed {
            assert_eq!(state.display_phase(), "probing");
        }
        let ep = &state.evidence["seq"];
        assert!(ep.intervals > 0, "the stage's evidence continues: {ep:?}");
        assert_eq!(ep.probe.is_some(), landed);
        assert_eq!(o.phase, Phase::RolledBack, "landed {landed}: {o:?}");
        assert!(o.reason.contains("stage 3"), "{}", o.reason);
        for w in weights_written(&d) {
            assert!([0, 10, 50, 100].contains(&w), "{w}");
        }
    }
}

/// Paused during a probe: when the probe's time is up, its split stays (nothing is written
/// while paused), and the primary is still judged there.
#[test]
fn a_paused_probe_keeps_its_split() {
    let reached = Cell::new(false);
    let rate = |r: bool, _| if r { 0.03 } else { 0.01 };
    let d = SeqDriver::new(probing(60), |_| 0.01)
        .world(world(&reached, rate, rate))
        .command(
            |s, _| s.probe.as_ref().is_some_and(|p| p.since.is_some()),
            Action::Pause,
        )
        .until(3 * 3600)
        .drive();
    assert!(d.outcome.is_none(), "{:?}", d.outcome);
    assert_eq!(d.state.weights.map(|w| w.primary()), Some(50));
    assert!(d.state.probe.is_some());
    let stays = d.events.iter().any(|e| match &e.kind {
        EventKind::Analyzed { decision, .. } => decision.contains("staying at the probe's split"),
        _ => false,
    });
    assert!(stays);
    assert_eq!(weights_written(&d), vec![10, 50, 100, 50]);
}

/// A threshold gate failing in the same analysis as the sequential harm: a fixed bound was
/// breached, so the run rolls back as before, without a probe.
#[test]
fn a_breached_threshold_gate_rolls_back_without_a_probe() {
    let mut plan = probing(120);
    let bound = serde_json::from_value::<GateSpec>(serde_json::json!({
        "name": "errors", "error_rate": {"max": "2%"}
    }))
    .unwrap()
    .compile(&GateBudget::new(100, 3, 1))
    .unwrap();
    plan.gates.push(bound);
    let reached = Cell::new(false);
    let rate = |r: bool, _| if r { 0.03 } else { 0.01 };
    let d = SeqDriver::new(plan, |_| 0.01)
        .world(world(&reached, rate, rate))
        .drive();
    let o = d.outcome.clone().expect("an end");
    assert_eq!(o.phase, Phase::RolledBack, "{o:?}");
    assert_eq!(probes(&d), (0, 0));
}

/// A dry run at 100 % that sees the primary above DR's earlier rate says a run would
/// probe, and writes nothing.
#[test]
fn a_dry_run_at_100_says_a_run_would_probe() {
    // A dry run has no earlier stages: the one-sample test compares with the absolute
    // tolerance.
    let mut plan = sequential_plan_with(
        serde_json::json!({"tolerance": "50%", "alpha": 0.01, "absolute_tolerance": "1%"}),
    );
    plan.probe = probing(120).probe;
    let d = SeqDriver::new(plan.clone(), |_| 0.05)
        .dry(Weights::at(StageWeight::FULL))
        .drive();
    let o = d.outcome.expect("an end");
    assert_eq!(o.phase, Phase::Held, "{o:?}");
    assert!(o.reason.contains("a run would probe now"), "{}", o.reason);
    assert!(d.state.history.is_empty());
    plan.probe = None;
    let o = SeqDriver::new(plan, |_| 0.05)
        .dry(Weights::at(StageWeight::FULL))
        .drive()
        .outcome
        .expect("an end");
    assert!(
        o.reason.contains("a run would roll back now"),
        "{}",
        o.reason
    );
}

/// [`probing`] with a 2 % final holdout: 10, 50, 98 % judged, then 100 % unjudged.
fn holdout_probing(secs: u64) -> Plan {
    let mut plan = probing(secs);
    plan.stages = super::plan(&[10, 50, 98, 100]).stages;
    plan.stages[3].judged = false;
    plan
}

/// At a final holdout's stage, the primary alone goes 1 % -> 5 %: above DR's earlier rate
/// at once, through the holdout's 2 % more slowly. A probe at 50 % sees it against DR's
/// concurrent traffic and rolls it back.
#[test]
fn a_regression_at_the_holdout_stage_is_probed_and_rolled_back() {
    let reached = Cell::new(false);
    let d = SeqDriver::new(holdout_probing(120), |_| 0.01)
        .world(move |from, to, live| {
            if live.primary() >= 98 {
                reached.set(true);
            }
            let n = 1000.0 * (to - from) as f64;
            let share = f64::from(live.primary()) / 100.0;
            let (pn, dn) = (n * share, n * (1.0 - share));
            let p = if reached.get() { 0.05 } else { 0.01 };
            ((pn, (pn * p).round()), (dn, (dn * 0.01).round()))
        })
        .drive();
    let o = d.outcome.clone().expect("an end");
    assert_eq!(o.phase, Phase::RolledBack, "{o:?}");
    assert_eq!(weights_written(&d), vec![10, 50, 98, 50, 0]);
    assert_eq!(probes(&d), (1, 0));
    let at = |w: u8| last_write_at(&d, w);
    let took = at(0).duration_since(at(98)).unwrap();
    assert!(took <= Duration::from_secs(120), "{took:?}");
}

/// At a final holdout's stage both sites rise 1 % -> 3 %: the probe finds no harm, DR rose,
/// and nothing is rolled back.
#[test]
fn a_common_rise_at_the_holdout_stage_is_probed_and_never_rolled_back() {
    let reached = Cell::new(false);
    let rate = |r: bool, _| if r { 0.03 } else { 0.01 };
    let d = SeqDriver::new(holdout_probing(120), |_| 0.01)
        .world(move |from, to, live| {
            if live.primary() >= 98 {
                reached.set(true);
            }
            let n = 1000.0 * (to - from) as f64;
            let share = f64::from(live.primary()) / 100.0;
            let (pn, dn) = (n * share, n * (1.0 - share));
            let r = rate(reached.get(), live.primary());
            ((pn, (pn * r).round()), (dn, (dn * r).round()))
        })
        .drive();
    let o = d.outcome.clone().expect("an end");
    assert_ne!(o.phase, Phase::RolledBack, "{o:?}");
    let (started, cleared) = probes(&d);
    assert!(started >= 1 && cleared >= 1, "{started} {cleared}");
    for w in weights_written(&d) {
        assert!([10, 50, 98, 100].contains(&w), "{w}");
    }
}

/// Someone writes 100 % back during a probe, with `on_drift: reassert`: the run writes the
/// probe's split again (never the stage's 100 % while probing), and the probe goes on.
#[test]
fn a_drift_during_a_probe_reasserts_the_probes_split() {
    let mut plan = probing(120);
    plan.on_drift = OnDrift::Reassert;
    let reached = Cell::new(false);
    let rate = |r: bool, _| if r { 0.03 } else { 0.01 };
    let d = SeqDriver::new(plan, |_| 0.01)
        .world(world(&reached, rate, rate))
        .tamper(
            |s, _| s.probe.as_ref().is_some_and(|p| p.since.is_some()),
            Weights::at(StageWeight::FULL),
        )
        .drive();
    let o = d.outcome.clone().expect("an end");
    assert_ne!(o.phase, Phase::RolledBack, "{o:?}");
    let written = weights_written(&d);
    assert_eq!(&written[..5], &[10, 50, 100, 50, 50], "{written:?}");
    assert!(
        d.events
            .iter()
            .any(|e| matches!(e.kind, EventKind::Drift { .. }))
    );
}

/// Killed during a probe and restarted two hours later: the probe goes on, its clock and
/// the stage's starting over (as at any restart), so it may still clear; a common cause is
/// then not held at the probe's split for the time the run was down.
#[test]
fn a_probe_resumed_after_a_long_stop_starts_its_clock_again() {
    let reached = Cell::new(false);
    let rate = |r: bool, _| if r { 0.03 } else { 0.01 };
    let (mut fifty, mut armed, mut killed) = (0, false, false);
    let d = SeqDriver::new(probing(120), |_| 0.01)
        .world(world(&reached, rate, rate))
        .kill(move |r, _| match r {
            Request::SetWeights(w) if w.primary() == 50 => {
                fifty += 1;
                armed = fifty == 2;
                None
            }
            Request::Sleep(_) if armed && !killed => {
                killed = true;
                Some((7200, false))
            }
            _ => None,
        })
        .drive();
    let (at, state) = d.resumed.first().expect("a restart").clone();
    assert_eq!(state.stage, Some(2));
    assert_eq!(state.stage_started, Some(t(at)));
    assert_eq!(state.probe.as_ref().and_then(|p| p.since), Some(t(at)));
    let o = d.outcome.clone().expect("an end");
    assert_eq!(o.phase, Phase::Held, "{o:?}");
    assert_eq!(d.state.weights.map(|w| w.primary()), Some(100), "{o:?}");
    assert!(probes(&d).1 >= 1);
}

/// A gate's test changed between the kill and the restart: the probe's evidence is not
/// whole, so the restart judges the live split's stage (50 %) afresh instead.
#[test]
fn a_probe_whose_gate_changed_on_restart_is_given_up() {
    let reached = Cell::new(false);
    let mut fifty = 0;
    let d = SeqDriver::new(probing(120), |_| 0.01)
        .world(world(
            &reached,
            |r, _| if r { 0.05 } else { 0.01 },
            |_, _| 0.01,
        ))
        .kill(move |r, _| match r {
            Request::SetWeights(w) if w.primary() == 50 => {
                fifty += 1;
                (fifty == 2).then_some((30, true))
            }
            _ => None,
        })
        .on_restart(|s| {
            if let Some(e) = s.evidence_of.as_mut() {
                for t in e.tests.values_mut() {
                    t.ratio = 3.0;
                }
            }
        })
        .drive();
    let (_, state) = d.resumed.first().expect("a restart").clone();
    assert_eq!(state.stage, Some(1), "the 50 % stage");
    assert!(state.probe.is_none());
    assert_eq!(d.outcome.expect("an end").phase, Phase::RolledBack);
    assert!(d.state.probe.is_none(), "a rollback ends the probe");
}
