//! Sequential evidence across restarts: a resumed stage continues its e-processes (harm, no
//! worse, and where counting stopped), so a restart neither re-spends the false-rollback
//! budget nor throws away evidence of harm; anywhere else evidence starts from nothing.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Poisson};

use super::sequential::{SeqDriver, sequential_plan, sequential_plan_with};
use super::*;

/// The primary fails 2 % of its requests at the first stage (10 %), against DR's 1 %.
fn regressed(w: u8) -> f64 {
    if w == 10 { 0.02 } else { 0.01 }
}

fn rolled_back(d: &sequential::Driven) -> bool {
    d.outcome
        .as_ref()
        .is_some_and(|o| o.phase == Phase::RolledBack)
}

fn resumed_details(d: &sequential::Driven) -> Vec<String> {
    d.events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Resumed { detail, .. } => Some(detail.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_restart_keeps_the_evidence_of_harm_and_rolls_back_no_later() {
    let never = SeqDriver::new(sequential_plan(), regressed).drive();
    assert!(rolled_back(&never), "{:?}", never.outcome);
    let needed = never.asked.len();
    assert!(needed >= 6, "harm takes a few analyses to show: {needed}");
    // Killed after every 2nd analysis, down 20 s each time.
    let restarted = SeqDriver::new(sequential_plan(), regressed)
        .kill_every(2, 20)
        .drive();
    assert!(rolled_back(&restarted), "{:?}", restarted.outcome);
    assert!(
        restarted.state.restarts >= 2,
        "{}",
        restarted.state.restarts
    );
    assert!(
        restarted.asked.len() <= needed,
        "rolled back after {} analyses, a run never restarted after {needed}",
        restarted.asked.len()
    );
    // Every request is counted exactly once, the downtime with the first analysis after it.
    for w in restarted.asked.windows(2) {
        assert_eq!(w[1].0, w[0].1, "{:?}", restarted.asked);
    }
    let details = resumed_details(&restarted);
    assert!(
        details
            .iter()
            .all(|d| d.contains("evidence continues") && d.contains("20s before the restart")),
        "{details:?}"
    );
    // As restarts used to do it (fresh evidence at every resume): the harm never adds up.
    let fresh = SeqDriver::new(sequential_plan(), regressed)
        .kill_every(2, 20)
        .on_restart(|s| s.evidence_of = None)
        .until(
            never
                .asked
                .last()
                .unwrap()
                .1
                .duration_since(t(0))
                .unwrap()
                .as_secs()
                * 3,
        )
        .drive();
    assert!(!rolled_back(&fresh), "{:?}", fresh.outcome);
}

/// A/A: both sites fail 1 % of requests, drawn per second from a seeded stream, so that a
/// run and its restarted twins see the same requests. The gate's tolerance is small (5 %)
/// and its alpha generous, so that false rollbacks are frequent enough to count (a few in a
/// hundred runs, where the rollback budget of the stage is 1 in 6).
#[test]
fn a_healthy_primary_restarted_every_few_analyses_is_not_rolled_back_more_often() {
    const UNTIL: u64 = 900;
    let plan = || {
        let mut p = sequential_plan_with(serde_json::json!({"tolerance": "5%", "alpha": 0.5}));
        // One long stage: what is measured is false rollbacks at it.
        for s in &mut p.stages {
            s.bake = Duration::from_secs(7200);
            s.max_duration = Duration::from_secs(7200);
        }
        p
    };
    let seeds = 500;
    let (mut never, mut restarted, mut fresh) = (0, 0, 0);
    for seed in 0..seeds {
        let mut rng = StdRng::seed_from_u64(seed);
        // Per second: 100 primary and 900 DR requests, Poisson errors at 1 % each. Prefix
        // sums, so that any `(from, to]` is counted at once.
        let (p, d) = (Poisson::new(1.0).unwrap(), Poisson::new(9.0).unwrap());
        let mut sums = vec![(0.0, 0.0)];
        for s in 0..UNTIL + 120 {
            let (a, b) = sums[s as usize];
            sums.push((a + p.sample(&mut rng), b + d.sample(&mut rng)));
        }
        let world = |from: u64, to: u64, live: Weights| {
            assert_eq!(live.primary(), 10);
            let (f, t) = (sums[from as usize], sums[to as usize]);
            let secs = (to - from) as f64;
            ((100.0 * secs, t.0 - f.0), (900.0 * secs, t.1 - f.1))
        };
        let run = |kill: bool, keep: bool| {
            let mut driver = SeqDriver::new(plan(), |_| 0.01).world(world).until(UNTIL);
            if kill {
                driver = driver.kill_every(3, 10);
            }
            if !keep {
                driver = driver.on_restart(|s| s.evidence_of = None);
            }
            let d = driver.drive();
            if kill && !rolled_back(&d) {
                assert!(d.state.restarts >= 10, "{}", d.state.restarts);
            }
            rolled_back(&d) as u32
        };
        never += run(false, true);
        restarted += run(true, true);
        fresh += run(true, false);
    }
    let rate = |n: u32| f64::from(n) / seeds as f64;
    let alpha_stage = 0.5 / 3.0;
    assert!(
        rate(never) <= alpha_stage,
        "never restarted: {} > {alpha_stage}",
        rate(never)
    );
    assert!(
        rate(restarted) <= rate(never) + 0.02,
        "false rollbacks: {} restarted every 3 analyses, {} never restarted",
        rate(restarted),
        rate(never)
    );
    // What the test would catch: restarts that start fresh evidence re-spend the budget.
    assert!(
        rate(fresh) > rate(never) + 0.05,
        "fresh evidence at every restart: {} against {}",
        rate(fresh),
        rate(never)
    );
}

/// The e-process of the plan's one sequential gate.
fn seq(state: &RunState) -> &EProcess {
    &state.evidence["seq"]
}

/// A healthy run's persisted state at `until` seconds.
fn healthy_at(until: u64) -> RunState {
    let d = SeqDriver::new(sequential_plan(), |_| 0.01)
        .until(until)
        .drive();
    assert!(d.outcome.is_none(), "{:?}", d.outcome);
    d.state
}

/// Resumes `state` under `plan` at `now` with `live` weights: the run and the step's request.
fn resume_at(plan: Plan, state: RunState, now: u64, live: Weights) -> (Run, Step) {
    let mut run = Run::resume(plan, state);
    let step = run.step(Observation::Started {
        now: t(now),
        propagation: Duration::ZERO,
        live: Ok(live),
    });
    (run, step)
}

fn detail(step: &Step) -> String {
    step.events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::Resumed { detail, .. } => Some(detail.clone()),
            _ => None,
        })
        .expect("a resumed event")
}

#[test]
fn a_resume_of_the_same_stage_continues_harm_no_worse_and_counting() {
    // Mid first stage: analyses at 15, 30 and 45 s.
    let state = healthy_at(45);
    let before = seq(&state).clone();
    assert_eq!(before.intervals, 3);
    assert_eq!(before.counted_to, Some(t(45)));
    let (run, step) = resume_at(
        sequential_plan(),
        state,
        100,
        Weights::at(StageWeight::new(10).unwrap()),
    );
    assert!(matches!(step.request, Request::Sleep(_)), "{step:?}");
    let after = run.state();
    assert_eq!(
        seq(after),
        &before,
        "harm, no worse, totals and counted_to, all kept"
    );
    assert_eq!(
        after.stage_started,
        Some(t(100)),
        "the stage still re-bakes"
    );
    assert_eq!(after.phase, Phase::Settling);
    assert_eq!(
        after.evidence_of.as_ref().map(|e| (e.stage, e.weight)),
        Some((0, 10))
    );
    assert!(
        detail(&step).contains("evidence continues"),
        "{}",
        detail(&step)
    );
    // The next analysis counts from where the last one stopped: the downtime once.
    let mut run = run;
    let step = run.step(Observation::Slept { now: t(115) });
    let Request::Analyze { since, .. } = step.request else {
        panic!("{step:?}")
    };
    assert_eq!(since["seq"], t(45));
}

/// A record from before the certification budget's split was recorded keeps the rule its
/// evidence was gathered under (half each); a record with its split keeps it.
#[test]
fn a_resumed_record_without_its_certification_split_keeps_half_each() {
    let mut state = healthy_at(45);
    let recorded = seq(&state).ok_share;
    assert!(recorded.is_some(), "a record now carries its split");
    let keep = state.clone();
    state.evidence.get_mut("seq").unwrap().ok_share = None;
    let at_10 = Weights::at(StageWeight::new(10).unwrap());
    let (run, _) = resume_at(sequential_plan(), state, 100, at_10);
    assert_eq!(seq(run.state()).ok_share, Some(0.5));
    let (run, _) = resume_at(sequential_plan(), keep, 100, at_10);
    assert_eq!(seq(run.state()).ok_share, recorded);
}

#[test]
fn after_a_long_stop_counting_resumes_at_most_max_duration_before_the_restart() {
    let state = healthy_at(45);
    let before = seq(&state).clone();
    // Down for an hour; the stage's max_duration is 5 minutes.
    let restart = 45 + 3600;
    let (run, step) = resume_at(
        sequential_plan(),
        state,
        restart,
        Weights::at(StageWeight::new(10).unwrap()),
    );
    let after = seq(run.state());
    assert_eq!(after.counted_to, Some(t(restart - 300)));
    assert_eq!(
        (
            after.harm.clone(),
            after.ok.clone(),
            after.primary,
            after.intervals
        ),
        (before.harm, before.ok, before.primary, before.intervals),
        "the evidence itself is kept"
    );
    let said = detail(&step);
    assert!(
        said.contains("max_duration 5m") && said.contains("left out"),
        "{said}"
    );
}

#[test]
fn a_signal_held_run_resumed_continues_its_evidence() {
    let state = healthy_at(45);
    let before = seq(&state).clone();
    let (mut run, _) = resume_at(
        sequential_plan(),
        state,
        50,
        Weights::at(StageWeight::new(10).unwrap()),
    );
    let step = run.step(Observation::Interrupted {
        now: t(55),
        signal: "SIGTERM".into(),
    });
    assert!(
        matches!(&step.request, Request::Finish(o) if o.phase == Phase::Aborted),
        "{step:?}"
    );
    assert!(Run::resumable(run.state()));
    let (run, _) = resume_at(
        sequential_plan(),
        run.state().clone(),
        200,
        Weights::at(StageWeight::new(10).unwrap()),
    );
    assert_eq!(run.state().phase, Phase::Settling);
    assert_eq!(seq(run.state()), &before);
}

#[test]
fn a_write_reconciled_either_way_keeps_evidence_only_where_it_was_gathered() {
    // Killed once, when the run asks for the second stage (50 %).
    let asks_50 = |r: &Request| matches!(r, Request::SetWeights(w) if w.primary() == 50);
    for landed in [false, true] {
        let mut once = true;
        let d = SeqDriver::new(sequential_plan(), |_| 0.01)
            .kill(|r, _| (asks_50(r) && std::mem::take(&mut once)).then_some((30, landed)))
            .until(2000)
            .drive();
        let (at, resumed) = &d.resumed[0];
        let killed = d.events.iter().find(|e| matches!(&e.kind, EventKind::WeightRequested { weights, .. } if weights.primary() == 50)).unwrap().at;
        assert_eq!(t(*at), killed + Duration::from_secs(30));
        if landed {
            // The write landed: a new stage, and fresh evidence from the restart on.
            assert_eq!(resumed.stage, Some(1));
            assert_eq!(seq(resumed).intervals, 0);
            assert_eq!(seq(resumed).counted_to, Some(t(*at)));
            assert_eq!(
                resumed.evidence_of.as_ref().map(|e| (e.stage, e.weight)),
                Some((1, 50))
            );
        } else {
            // It did not: the first stage is resumed, its certified evidence with it.
            assert_eq!(resumed.stage, Some(0));
            assert!(seq(resumed).intervals > 0);
            assert!(seq(resumed).certified);
            assert_eq!(seq(resumed).counted_to, Some(killed));
        }
        assert_eq!(d.outcome.map(|o| o.phase), Some(Phase::Promoted));
    }
}

#[test]
fn a_resume_at_another_weight_than_the_evidences_starts_fresh_evidence() {
    let promoted = SeqDriver::new(sequential_plan(), |_| 0.01).drive();
    let second = promoted.state.history[1]
        .at
        .duration_since(t(0))
        .unwrap()
        .as_secs();
    // Mid second stage (50 %), then someone puts the first stage's 10 % back.
    let state = healthy_at(second + 45);
    assert_eq!(state.stage, Some(1));
    assert_eq!(seq(&state).intervals, 3);
    let restart = second + 100;
    let (run, step) = resume_at(
        sequential_plan(),
        state,
        restart,
        Weights::at(StageWeight::new(10).unwrap()),
    );
    let s = run.state();
    assert_eq!(s.stage, Some(0));
    assert_eq!(seq(s).intervals, 0);
    assert!(!seq(s).certified);
    assert_eq!(seq(s).counted_to, Some(t(restart)));
    assert_eq!(
        s.evidence_of.as_ref().map(|e| (e.stage, e.weight)),
        Some((0, 10))
    );
    assert!(
        detail(&step).contains("starts from nothing"),
        "{}",
        detail(&step)
    );
}

#[test]
fn a_gate_whose_tolerance_was_edited_starts_fresh_evidence() {
    let state = healthy_at(45);
    let edited = sequential_plan_with(serde_json::json!({"tolerance": "100%", "alpha": 0.01}));
    let (run, step) = resume_at(
        edited,
        state.clone(),
        100,
        Weights::at(StageWeight::new(10).unwrap()),
    );
    assert_eq!(seq(run.state()).intervals, 0);
    assert!(
        detail(&step).contains("seq starts from nothing"),
        "{}",
        detail(&step)
    );
    // Its alpha is only a boundary: the evidence stays valid.
    let edited = sequential_plan_with(serde_json::json!({"tolerance": "50%", "alpha": 0.05}));
    let (run, _) = resume_at(
        edited,
        state,
        100,
        Weights::at(StageWeight::new(10).unwrap()),
    );
    assert_eq!(seq(run.state()).intervals, 3);
}

#[test]
fn a_record_written_before_evidence_was_kept_loads_and_starts_fresh_evidence() {
    let state = healthy_at(45);
    let mut json = serde_json::to_value(&state).unwrap();
    assert!(json.get("evidence_of").is_some());
    json.as_object_mut().unwrap().remove("evidence_of");
    let old: RunState = serde_json::from_value(json).unwrap();
    assert_eq!(old.evidence_of, None);
    assert_eq!(seq(&old).intervals, 3);
    let (run, step) = resume_at(
        sequential_plan(),
        old,
        100,
        Weights::at(StageWeight::new(10).unwrap()),
    );
    assert_eq!(seq(run.state()).intervals, 0);
    assert!(
        detail(&step).contains("earlier version"),
        "{}",
        detail(&step)
    );
}
